"""The mesh layout of a splat object: one loose vertex per splat plus ``gs_*`` point attributes.

The attribute names and types are defined bpy-free in :mod:`blender_gs_addon.mesh_layout`; this
module does the bpy calls for them: build a mesh object from attribute arrays, tell whether a
mesh carries the layout, and read a SplatSet back from a mesh (original or evaluated). Values are
copied with ``foreach_set``/``foreach_get`` on contiguous float32 arrays, never per splat.

A mesh can take an Armature modifier and vertex groups, which is why splats are meshes on
Blender versions without native splats, and why rigging works on this layout.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..blender_gs_addon import mesh_layout as layout
from ..blender_gs_addon.conventions.frames import file_to_blender_matrix
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.splats import SplatSet
from .object_building import build_object

__all__ = ["REQUIRED", "missing_attributes", "has_splat_attributes", "refusal", "new_object",
           "read_splats", "positions", "splat_count", "splat_sh_degree", "splat_fields",
           "attribute_arrays", "remove_object"]

REQUIRED = (layout.SCALE, layout.ROTATION, layout.OPACITY, layout.SH_DC)


def missing_attributes(mesh: bpy.types.Mesh) -> list[str]:
    """The layout's required POINT attributes that ``mesh`` lacks (empty: it is a splat mesh)."""
    attributes = mesh.attributes
    missing = []
    for name in REQUIRED:
        attr = attributes.get(name)
        if attr is None or attr.domain != 'POINT':
            missing.append(name)
    return missing


def has_splat_attributes(mesh) -> bool:
    """True for a mesh with every required splat attribute (cheap; polls and panels use it)."""
    return isinstance(mesh, bpy.types.Mesh) and not missing_attributes(mesh)


def refusal(data, name: str) -> str | None:
    """Why object ``name`` with this mesh is not a splat object (None for other data, or for a
    valid splat mesh)."""
    if not isinstance(data, bpy.types.Mesh):
        return None
    missing = missing_attributes(data)
    if not missing:
        return None
    return (f"Object {name!r} has no splat attributes (missing {', '.join(missing)}); "
            "import a splat file to make a splat object")


def splat_count(mesh: bpy.types.Mesh) -> int:
    return len(mesh.vertices)


def splat_sh_degree(mesh: bpy.types.Mesh) -> int:
    """SH degree from the count of ``gs_sh_rest_*`` attributes (what export would write)."""
    rest = sum(1 for a in mesh.attributes if a.name.startswith(layout.SH_REST_PREFIX))
    return {0: 0, 3: 1, 8: 2, 15: 3}.get(rest, -1)


def positions(mesh: bpy.types.Mesh) -> np.ndarray:
    """[N, 3] float32 splat centres as stored (the file frame of the object's data)."""
    out = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes[layout.POSITION].data.foreach_get("vector", out)
    return out.reshape(-1, 3)


def read_splats(mesh: bpy.types.Mesh, *, source: str, report: Report = log_report) -> SplatSet:
    """The SplatSet a mesh holds (its raw attribute values; no transform). ``report`` is unused:
    the mesh layout holds the raw values, so nothing is ever derived or dropped."""
    attributes = {a.name: a.data_type for a in mesh.attributes if a.domain == 'POINT'}

    def fetch(spec: layout.AttributeSpec, out: np.ndarray) -> None:
        mesh.attributes[spec.name].data.foreach_get(spec.foreach_key, out)

    return layout.splats_from_attributes(attributes, len(mesh.vertices), fetch, source=source)


def splat_fields(splats: SplatSet) -> dict[str, object]:
    """The arrays of ``splats`` in a dict :func:`attribute_arrays` can release."""
    return layout.splat_fields(splats)


def attribute_arrays(fields: dict, *, release: bool):
    """(AttributeSpec, flat float32 array) pairs for :func:`new_object`."""
    return layout.attribute_arrays(fields, release=release)


def remove_object(obj: bpy.types.Object) -> None:
    """Remove a splat object and its mesh (what a failed import or build undoes)."""
    mesh = obj.data
    bpy.data.objects.remove(obj)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)


def new_object(arrays, *, count: int, sh_degree: int, name: str, up_axis: str,
               collection: bpy.types.Collection | None) -> bpy.types.Object:
    """A new mesh object filled with ``arrays`` ((AttributeSpec, float32 values) pairs, as
    :func:`blender_gs_addon.mesh_layout.splat_attribute_arrays` gives) and the file → Blender
    rotation of ``up_axis`` as its matrix, linked into ``collection``. Removed again on error."""
    file_to_blender_matrix(up_axis)  # GSError for an unknown axis before anything is made
    mesh = bpy.data.meshes.new(name)

    def fill() -> None:
        mesh.vertices.add(count)
        for spec, values in arrays:
            if spec.name == layout.POSITION:
                # The position attribute takes a memcpy; vertices.foreach_set("co") goes
                # element by element (measured 2 ms vs 100 ms at 1e6).
                # (A mesh without vertices has no position attribute until one is made.)
                attr = mesh.attributes.get(layout.POSITION) or mesh.attributes.new(
                    layout.POSITION, "FLOAT_VECTOR", "POINT")
            else:
                attr = mesh.attributes.new(spec.name, spec.data_type, "POINT")
                if attr is None:
                    raise GSError(f"{name}: Blender refused the attribute {spec.name!r}")
            attr.data.foreach_set(spec.foreach_key, values)
            del values
        mesh.update()

    return build_object(mesh, fill, name=name, sh_degree=sh_degree, up_axis=up_axis,
                        collection=collection, remove_data=bpy.data.meshes.remove)
