"""Wrapping filled splat data in a new object: the steps every layout shares.

A layout module (:mod:`.mesh_splats`, :mod:`.native_splats`) makes its datablock and fills it;
:func:`build_object` tags the data with the SH degree and up axis, wraps it in an object whose
matrix is the file → Blender rotation of the up axis, links it into a collection, and on any
error removes what it made, so a failed import leaves ``bpy.data`` as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import bpy
from mathutils import Matrix

from ..blender_gs_addon.conventions.frames import file_to_blender_matrix
from ..blender_gs_addon.mesh_layout import SH_DEGREE_PROP, UP_AXIS_PROP

__all__ = ["build_object"]


def build_object(data, fill: Callable[[], None], *, name: str, sh_degree: int, up_axis: str,
                 collection: bpy.types.Collection | None,
                 remove_data: Callable[[object], None]) -> bpy.types.Object:
    """``fill()`` the new ``data``, then a new object ``name`` around it with the file →
    Blender matrix of ``up_axis``, linked into ``collection`` (default: the active one).
    On any error the object and ``data`` (through ``remove_data``) are removed again."""
    matrix = file_to_blender_matrix(up_axis)  # [4, 4]; GSError before anything is filled
    obj = None
    try:
        fill()
        data[SH_DEGREE_PROP] = sh_degree
        data[UP_AXIS_PROP] = up_axis
        obj = bpy.data.objects.new(name, data)
        obj.matrix_basis = Matrix(matrix.tolist())
        if collection is None:
            collection = bpy.context.collection or bpy.context.scene.collection
        collection.objects.link(obj)
    except BaseException:
        if obj is not None:
            bpy.data.objects.remove(obj)
        remove_data(data)
        raise
    return obj
