"""Splat objects in Blender, in one place: what a splat object is, building them from a SplatSet
or a file, reading them back (original or evaluated), exporting them.

Every other module asks this one: :func:`is_splat_object` / :func:`require_splat_object` (the
error names what is missing), :func:`read_stored_splats`, :func:`evaluated_splats`,
:func:`splat_positions`, :func:`object_to_splats` (world transform baked). A splat object stores
its splats in one of the layouts of :data:`_LAYOUTS` (today the mesh layout of
:mod:`.mesh_splats`); a new layout is one more module with the same functions.

Frames: the mesh holds the file's values; the object's matrix is
``axes.file_to_blender_matrix(up_axis)``, so a 3DGS file (−Y up) shows upright. Export undoes
the same rotation after the world matrix: M = file_to_blender(up_axis)⁻¹ · matrix_world. Blender
keeps the rotation as float32 Euler angles, so a 90° turn comes back with 7.5e-8 in its zero
entries; entries of M's 3×3 part within :data:`SNAP_TOLERANCE` of −1, 0 or 1 are snapped, and
when M is then exactly the identity the stored values are written untouched (bit-exact round
trips). Otherwise the set is moved with ``SplatSet.transformed(M)``.

Export reads the ORIGINAL mesh attributes, never the evaluated mesh: a display modifier
(Geometry Nodes turning points into quads) or an Armature modifier changes the evaluated
geometry, and the file must hold the splats themselves.

Every function that creates datablocks removes them again when it fails, so an error leaves
``bpy.data`` exactly as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import bpy
import numpy as np

from ..blender_gs_addon import mesh_layout as layout
from ..blender_gs_addon.conventions.frames import file_to_blender_matrix
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.formats import ReadLimits, read_splats, write_splats
from ..blender_gs_addon.splats import SplatSet
from . import mesh_splats

__all__ = [
    "SNAP_TOLERANCE", "Layout", "create_splat_object", "import_splats", "import_splat_files",
    "splat_layout", "is_splat_object", "require_splat_object", "splat_count", "splat_sh_degree",
    "splat_positions", "read_stored_splats", "evaluated_splats", "object_to_splats",
    "export_splats", "export_matrix",
]

SNAP_TOLERANCE = 1e-6

Layout = Literal["MESH"]
# Layout name → the module that reads and writes it; each answers has_splat_attributes(data),
# splat_count, splat_sh_degree, positions and read_splats(data, source=...).
_LAYOUTS = {"MESH": mesh_splats}


# ---------------------------------------------------------------------- building objects
def create_splat_object(splats: SplatSet, *, name: str, up_axis: str = "-Y",
                        collection: bpy.types.Collection | None = None,
                        display: bool = True) -> bpy.types.Object:
    """New mesh object holding ``splats`` (file frame) with the file → Blender rotation.

    Linked into ``collection`` (default: the active collection). The mesh is filled completely
    before the object is linked; on any error the new mesh and object are removed again.
    With ``display`` the object gets the Gaussian splat display (:mod:`.display`).
    """
    file_to_blender_matrix(up_axis)  # GSError for an unknown axis before anything is made
    splats.validate(name=name)
    obj = mesh_splats.new_object(layout.splat_attribute_arrays(splats), count=splats.count,
                            sh_degree=splats.sh_degree, name=name, up_axis=up_axis,
                            collection=collection)
    if display:
        _with_display([obj])
    return obj


def _with_display(objects: list[bpy.types.Object], *, report: Report = log_report) -> None:
    """Hook: the splat display on new objects (removed again with them on failure).

    On a Blender without the display's node types (before 4.5) the objects stay, without the
    display, and a warning says so: the exact render engine still renders them.
    """
    from .display import add_display, display_support_problem

    problem = display_support_problem()
    if problem is not None:
        report({'WARNING'}, problem)
        return
    try:
        for obj in objects:
            add_display(obj, report=report)
    except BaseException:
        for obj in objects:
            mesh_splats.remove_object(obj)
        raise


def _default_name(filepath: str) -> str:
    name = Path(filepath).name
    for suffix in (".compressed.ply", ".ply", ".splat", ".spz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return Path(name).stem or name


def _select_only(objects: list[bpy.types.Object]) -> None:
    view_layer = bpy.context.view_layer
    visible = []
    for obj in objects:
        # select_set also brings the view layer's object list up to date after linking.
        try:
            obj.select_set(True, view_layer=view_layer)
        except RuntimeError:  # linked to a collection outside this view layer
            continue
        visible.append(obj)
    if not visible:
        return
    for other in view_layer.objects:
        if other not in visible:
            other.select_set(False)
    view_layer.objects.active = visible[-1]


def import_splats(filepath: str | os.PathLike, *, up_axis: str = "-Y", name: str | None = None,
                  nonfinite: str = "drop", collection: bpy.types.Collection | None = None,
                  display: bool = True, limits: ReadLimits | None = None,
                  report: Report = log_report) -> bpy.types.Object:
    """Read a splat file (.ply, compressed .ply, .splat, .spz) into a new, selected object.

    Args:
        up_axis: the file's up axis (see ``axes.UP_AXES``); "-Y" shows 3DGS files upright.
        name: object and mesh name (default: the file name without its extension).
        nonfinite: "drop" splats with NaN/Inf values (reported) or "error" to refuse the file.
        limits: what a file may make the reader allocate (default: 50 M splats at most; the
            import operator passes the *Max Splats* preference).
    Reports "Imported N splats (SH d) in t s". GSError (bpy.data unchanged) for bad files.
    """
    return import_splat_files([filepath], up_axis=up_axis, name=name, nonfinite=nonfinite,
                              collection=collection, display=display, limits=limits,
                              report=report)[0]


def import_splat_files(filepaths: Iterable[str | os.PathLike], *, up_axis: str = "-Y",
                       name: str | None = None, nonfinite: str = "drop",
                       collection: bpy.types.Collection | None = None,
                       display: bool = True, limits: ReadLimits | None = None,
                       report: Report = log_report) -> list[bpy.types.Object]:
    """Import several files, all or nothing: if one fails, the objects made so far are removed.

    The new objects end up selected, the last one active. ``name`` applies to every object
    (Blender appends .001 … when more than one is made). At most
    ``layout.MAX_EXTRA_ATTRIBUTES`` extra properties per file become attributes (warned).
    """
    file_to_blender_matrix(up_axis)  # refuse a bad axis before reading anything
    paths = [os.fspath(p) for p in filepaths]
    if not paths:
        raise GSError("no splat files given to import")
    created: list[bpy.types.Object] = []
    try:
        for path in paths:
            start = time.perf_counter()
            splats = read_splats(path, nonfinite=nonfinite, limits=limits, report=report)
            splats = layout.cap_extra_properties(splats, source=path, report=report)
            splats.validate(name=path)
            count, degree = splats.count, splats.sh_degree
            # Hand the arrays over so each is freed once Blender has its copy: peak memory
            # stays near one copy of the splats instead of two.
            arrays = layout.release_attribute_arrays(layout.splat_fields(splats))
            del splats
            created.append(mesh_splats.new_object(
                arrays, count=count, sh_degree=degree, name=name or _default_name(path),
                up_axis=up_axis, collection=collection))
            report({'INFO'}, f"Imported {count:,} splats (SH {degree}) from "
                             f"{Path(path).name} in {time.perf_counter() - start:.2f} s")
    except BaseException:
        for obj in created:
            mesh_splats.remove_object(obj)
        raise
    if display:
        _with_display(created, report=report)
    _select_only(created)
    return created


# ---------------------------------------------------------------------- what a splat object is
def splat_layout(obj: bpy.types.Object | None) -> Layout | None:
    """Which layout ``obj`` stores splats in, or None when it is not a splat object."""
    if obj is None:
        return None
    for name, layout_module in _LAYOUTS.items():
        if layout_module.has_splat_attributes(obj.data):
            return name
    return None


def is_splat_object(obj: bpy.types.Object | None) -> bool:
    """True for an object whose data holds splats in a known layout (cheap: polls, panels)."""
    return splat_layout(obj) is not None


def require_splat_object(obj: bpy.types.Object | None, *, allow_empty: bool = True) -> Layout:
    """The layout of ``obj``; GSError naming what is missing when it is not a splat object."""
    if obj is None:
        raise GSError("no splat object given (select one, or import a splat file)")
    layout_name = splat_layout(obj)
    if layout_name is None:
        raise GSError(_not_a_splat_object(obj))
    if not allow_empty and splat_count(obj) == 0:
        raise GSError(f"Object {obj.name!r} has no splats")
    return layout_name


def _not_a_splat_object(obj: bpy.types.Object) -> str:
    data = obj.data
    if isinstance(data, bpy.types.Mesh):
        missing = mesh_splats.missing_attributes(data)
        return (f"Object {obj.name!r} has no splat attributes (missing {', '.join(missing)}); "
                "import a splat file to make a splat object")
    return (f"Object {obj.name!r} is a {obj.type.lower()}, not a splat object (a mesh with "
            "splat attributes)")


def _layout_module(obj: bpy.types.Object):
    return _LAYOUTS[require_splat_object(obj)]


def splat_count(obj: bpy.types.Object) -> int:
    return _layout_module(obj).splat_count(obj.data)


def splat_sh_degree(obj: bpy.types.Object) -> int:
    """SH degree of the stored splats (what export would write); -1 for an odd band count."""
    return _layout_module(obj).splat_sh_degree(obj.data)


def splat_positions(obj: bpy.types.Object) -> np.ndarray:
    """[N, 3] float32 splat centres as stored in the object's data (object space)."""
    return _layout_module(obj).positions(obj.data)


def read_stored_splats(obj: bpy.types.Object) -> SplatSet:
    """The splats of the ORIGINAL data of ``obj`` (object space, no modifiers, no transform)."""
    if obj.mode == 'EDIT':
        obj.update_from_editmode()
    return _layout_module(obj).read_splats(obj.data, source=f"Object {obj.name!r}")


def evaluated_splats(obj_eval: bpy.types.Object) -> SplatSet | None:
    """The splats of an EVALUATED object (object space; modifiers applied), or None without.

    With the splat display the evaluated geometry is the display's quads; the splats are the
    instance the display keeps, read while the geometry set that owns it is alive.
    """
    source = f"Object {obj_eval.name!r}"
    for layout_module in _LAYOUTS.values():
        if layout_module.has_splat_attributes(obj_eval.data):
            return layout_module.read_splats(obj_eval.data, source=source)
    geometry = obj_eval.evaluated_geometry()
    for ref in geometry.instance_references():
        for layout_module in _LAYOUTS.values():
            data = getattr(ref, "mesh", None) or getattr(ref, "pointcloud", None)
            if data is not None and layout_module.has_splat_attributes(data):
                return layout_module.read_splats(data, source=source)
    return None


# ---------------------------------------------------------------------- reading objects back
def export_matrix(obj: bpy.types.Object, *, up_axis: str = "-Y") -> np.ndarray:
    """[4, 4] float64 M = file_to_blender(up_axis)⁻¹ · matrix_world, rotation part snapped."""
    to_file = np.linalg.inv(file_to_blender_matrix(up_axis))
    # obj.matrix_world is stale until the depsgraph runs (e.g. right after import or after a
    # script moved the object); the evaluated object has parents and constraints applied.
    world = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).matrix_world
    m = to_file @ np.array(world, dtype=np.float64)
    lin = m[:3, :3]
    for target in (-1.0, 0.0, 1.0):
        lin[np.abs(lin - target) <= SNAP_TOLERANCE] = target
    return m


def object_to_splats(obj: bpy.types.Object, *, apply_transform: bool = True,
                     up_axis: str = "-Y") -> SplatSet:
    """The splats of a splat object, in the file frame of ``up_axis``.

    With ``apply_transform`` the object's world matrix is baked in (positions, rotations,
    scales and SH bands); without it the stored values come back as they are. Reads the
    original mesh, not the evaluated one (modifiers are for display and rigging).
    """
    source = f"Object {obj.name!r}"
    splats = read_stored_splats(obj)
    if not apply_transform:
        return splats
    matrix = export_matrix(obj, up_axis=up_axis)
    if np.array_equal(matrix, np.eye(4)):
        return splats
    try:
        return splats.transformed(matrix)
    except GSError as err:
        raise GSError(f"{source} cannot be exported with its transform: {err} (make the scale "
                      "uniform, or export without applying the transform)") from None


def export_splats(obj: bpy.types.Object, filepath: str | os.PathLike, *,
                  format: str | None = None, apply_transform: bool = True, up_axis: str = "-Y",
                  spz_version: int = 3, report: Report = log_report) -> None:
    """Write the splats of ``obj`` to ``filepath`` (format from ``format`` or the file name:
    "ply", "compressed_ply", "splat", "spz"; ``spz_version`` 2, 3 or 4 for .spz). Reports
    "Exported N splats … in t s"."""
    start = time.perf_counter()
    splats = object_to_splats(obj, apply_transform=apply_transform, up_axis=up_axis)
    path = os.fspath(filepath)
    write_splats(path, splats, format=format, spz_version=spz_version, report=report)
    report({'INFO'}, f"Exported {splats.count:,} splats (SH {splats.sh_degree}) to "
                     f"{Path(path).name} in {time.perf_counter() - start:.2f} s")
