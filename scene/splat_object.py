"""Splat objects in Blender, in one place: what a splat object is, building them from a SplatSet
or a file, reading them back (original or evaluated), exporting them.

The details: docs/architecture.md, "The splat object".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import bpy
import numpy as np

from ..blender_gs_addon.conventions.frames import (
    BLENDER_IMPORTER_UP_AXIS,
    UNTAGGED_UP_AXIS,
    UP_AXES,
    file_to_blender_matrix,
)
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.formats import (
    EXTENSIONS,
    ReadLimits,
    detect_format,
    read_splats,
    write_splats,
)
from ..blender_gs_addon.mesh_layout import UP_AXIS_PROP, cap_extra_properties
from ..blender_gs_addon.splats import SplatSet
from . import mesh_splats, native_splats

__all__ = [
    "SNAP_TOLERANCE", "Layout", "creation_layout", "create_splat_object", "import_splats",
    "import_splat_files", "splat_layout", "is_splat_object", "require_splat_object",
    "splat_count", "splat_sh_degree", "splat_positions", "read_stored_splats",
    "evaluated_splats", "default_up_axis", "object_to_splats", "export_splats", "export_matrix",
    "remove_splat_object", "SPLAT_MAKING_NODES",
]

SNAP_TOLERANCE = 1e-6

Layout = Literal["NATIVE", "MESH"]
# Layout name → the module that reads and writes it; each answers has_splat_attributes(data),
# missing_attributes(data), refusal(data, name), splat_count, splat_sh_degree, positions,
# read_splats(data, source=..., report=...), splat_fields / attribute_arrays / new_object /
# remove_object (building objects).
_LAYOUTS = {"NATIVE": native_splats, "MESH": mesh_splats}


def creation_layout() -> Layout:
    """The layout this extension makes splat objects in: Blender's native Gaussian splats from
    5.3 on (drawn by Blender in every view), the mesh with the splat display before."""
    return "NATIVE" if native_splats.supported() else "MESH"


def _new_object(splats_or_fields, *, layout: Layout, release: bool, count: int,
                sh_degree: int, name: str, up_axis: str, collection) -> bpy.types.Object:
    module = _LAYOUTS[layout]
    fields = (module.splat_fields(splats_or_fields) if isinstance(splats_or_fields, SplatSet)
              else splats_or_fields)
    return module.new_object(module.attribute_arrays(fields, release=release), count=count,
                             sh_degree=sh_degree, name=name, up_axis=up_axis,
                             collection=collection)


def remove_splat_object(obj: bpy.types.Object) -> None:
    """Remove a splat object this module made, and its data (what failures undo)."""
    module = native_splats if native_splats.is_point_cloud(obj.data) else mesh_splats
    module.remove_object(obj)


# ---------------------------------------------------------------------- building objects
def create_splat_object(splats: SplatSet, *, name: str, up_axis: str = "-Y",
                        collection: bpy.types.Collection | None = None,
                        display: bool = True, layout: Layout | None = None
                        ) -> bpy.types.Object:
    """New splat object holding ``splats`` (file frame) with the file → Blender rotation.

    ``layout``: "NATIVE" or "MESH" (default :func:`creation_layout`). Linked into
    ``collection`` (default: the active collection). The data is filled completely before the
    object is linked; on any error the new data and object are removed again. With
    ``display`` a mesh-layout object gets the Gaussian splat display (:mod:`.display`); native
    splats need none.
    """
    file_to_blender_matrix(up_axis)  # GSError for an unknown axis before anything is made
    splats.validate(name=name)
    layout = layout or creation_layout()
    obj = _new_object(splats, layout=layout, release=False, count=splats.count,
                      sh_degree=splats.sh_degree, name=name, up_axis=up_axis,
                      collection=collection)
    if display and layout == "MESH":
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
            remove_splat_object(obj)
        raise


def _default_name(filepath: str) -> str:
    name = Path(filepath).name
    if name.lower() == "meta.json":  # an unbundled SOG: its folder names the scene
        return Path(filepath).resolve().parent.name or "meta"
    for suffix in sorted(EXTENSIONS, key=len, reverse=True):  # .compressed.ply before .ply
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
                  display: bool = True, layout: Layout | None = None,
                  limits: ReadLimits | None = None,
                  report: Report = log_report) -> bpy.types.Object:
    """Read a splat file (.ply, compressed .ply, .splat, .spz, .glb/.gltf, .sog/meta.json) into
    a new, selected object.

    Args:
        up_axis: the file's up axis (see ``frames.UP_AXES``); "-Y" shows 3DGS files upright.
        name: object and data name (default: the file name without its extension).
        nonfinite: "drop" splats with NaN/Inf values (reported) or "error" to refuse the file.
        layout: "NATIVE" or "MESH" (default :func:`creation_layout`).
        limits: what a file may make the reader allocate (default: 50 M splats at most; the
            import operator passes the *Max Splats* preference).
    Reports "Imported N splats (SH d) in t s". GSError (bpy.data unchanged) for bad files.
    """
    return import_splat_files([filepath], up_axis=up_axis, name=name, nonfinite=nonfinite,
                              collection=collection, display=display, layout=layout,
                              limits=limits,
                              report=report)[0]


def import_splat_files(filepaths: Iterable[str | os.PathLike], *, up_axis: str = "-Y",
                       name: str | None = None, nonfinite: str = "drop",
                       collection: bpy.types.Collection | None = None,
                       display: bool = True, layout: Layout | None = None,
                       limits: ReadLimits | None = None,
                       report: Report = log_report) -> list[bpy.types.Object]:
    """Import several files, all or nothing: if one fails, the objects made so far are removed.

    The new objects end up selected, the last one active. ``name`` applies to every object
    (Blender appends .001 … when more than one is made). At most
    ``mesh_layout.MAX_EXTRA_ATTRIBUTES`` extra properties per file become attributes (warned).
    """
    file_to_blender_matrix(up_axis)  # refuse a bad axis before reading anything
    layout = layout or creation_layout()
    paths = [os.fspath(p) for p in filepaths]
    if not paths:
        raise GSError("no splat files given to import")
    created: list[bpy.types.Object] = []
    try:
        for path in paths:
            start = time.perf_counter()
            splats = read_splats(path, nonfinite=nonfinite, limits=limits, report=report)
            splats = cap_extra_properties(splats, source=path, report=report)
            splats.validate(name=path)
            count, degree = splats.count, splats.sh_degree
            # Hand the arrays over so each is freed once Blender has its copy: peak memory
            # stays near one copy of the splats instead of two.
            fields = _LAYOUTS[layout].splat_fields(splats)
            del splats
            created.append(_new_object(
                fields, layout=layout, release=True, count=count, sh_degree=degree,
                name=name or _default_name(path), up_axis=up_axis, collection=collection))
            report({'INFO'}, f"Imported {count:,} splats (SH {degree}) from "
                             f"{Path(path).name} in {time.perf_counter() - start:.2f} s")
    except BaseException:
        for obj in created:
            remove_splat_object(obj)
        raise
    if display and layout == "MESH":
        _with_display(created, report=report)
    _select_only(created)
    return created


# ---------------------------------------------------------------------- what a splat object is
# Blender 5.3's nodes that make native splats in an object's modifiers (the Import nodes read
# a file; Set Point Cloud Type makes any points splats): such an object's splats live in its
# evaluated geometry, not in its data.
SPLAT_MAKING_NODES = ("GeometryNodeImportSPZ", "GeometryNodeImportPLY",
                      "GeometryNodePointsSetType")


def _makes_splats_in_nodes(obj: bpy.types.Object) -> bool:
    """Cheap test: a Geometry Nodes modifier whose group holds a splat-making node."""
    if not native_splats.supported():
        return False
    for mod in obj.modifiers:
        tree = mod.node_group if mod.type == 'NODES' else None
        if tree is not None and any(n.bl_idname in SPLAT_MAKING_NODES for n in tree.nodes):
            return True
    return False


def _generated_splats(obj: bpy.types.Object):
    """(geometry set that owns it, native splat point cloud) of an object whose modifiers make
    the splats, or None. The point cloud is valid while the geometry set is referenced."""
    if not _makes_splats_in_nodes(obj):
        return None
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    cloud = geometry.pointcloud
    if cloud is None or not native_splats.has_splat_attributes(cloud):
        return None
    return geometry, cloud


def _splat_data(obj: bpy.types.Object | None):
    """(layout, the data holding the splats, what keeps that data alive) or None: the
    object's own data, else (Blender's Import nodes) the native splats its modifiers make."""
    if obj is None:
        return None
    for name, layout_module in _LAYOUTS.items():
        if layout_module.has_splat_attributes(obj.data):
            return name, obj.data, None
    generated = _generated_splats(obj)
    if generated is not None:
        return "NATIVE", generated[1], generated[0]
    return None


def splat_layout(obj: bpy.types.Object | None) -> Layout | None:
    """Which layout ``obj`` holds splats in, or None when it is not a splat object."""
    found = _splat_data(obj)
    return None if found is None else found[0]


def is_splat_object(obj: bpy.types.Object | None) -> bool:
    """True for an object whose data — or, for Blender's Import nodes, whose modifiers' output
    — holds splats in a known layout (cheap for everything else: polls, panels)."""
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
    for layout_module in _LAYOUTS.values():
        reason = layout_module.refusal(obj.data, obj.name)
        if reason is not None:
            return reason
    what = ("a Gaussian splat point cloud or a mesh with splat attributes"
            if native_splats.supported() else "a mesh with splat attributes")
    return f"Object {obj.name!r} is a {obj.type.lower()}, not a splat object ({what})"


def _require_data(obj: bpy.types.Object):
    """(layout module, data, keep-alive) of a splat object; GSError naming what is missing."""
    found = _splat_data(obj)
    if found is None:
        require_splat_object(obj)  # raises with the reason
    name, data, owner = found
    return _LAYOUTS[name], data, owner


def splat_count(obj: bpy.types.Object) -> int:
    module, data, _owner = _require_data(obj)
    return module.splat_count(data)


def splat_sh_degree(obj: bpy.types.Object) -> int:
    """SH degree of the stored splats (what export would write); -1 for an odd band count."""
    module, data, _owner = _require_data(obj)
    return module.splat_sh_degree(data)


def splat_positions(obj: bpy.types.Object) -> np.ndarray:
    """[N, 3] float32 splat centres as stored in the object's data (object space)."""
    module, data, _owner = _require_data(obj)
    return module.positions(data)


def read_stored_splats(obj: bpy.types.Object, *, report: Report = log_report) -> SplatSet:
    """The splats of the ORIGINAL data of ``obj`` (object space, no modifiers, no transform);
    for splats made by Blender's Import nodes in its modifiers, what those make."""
    if obj.mode == 'EDIT':
        obj.update_from_editmode()
    module, data, _owner = _require_data(obj)  # _owner keeps generated data alive
    return module.read_splats(data, source=f"Object {obj.name!r}", report=report)


def evaluated_splats(obj_eval: bpy.types.Object, *, report: Report = log_report
                     ) -> SplatSet | None:
    """The splats of an EVALUATED object (object space; modifiers applied), or None without.

    A native splat object evaluates to its point cloud. With the mesh display the evaluated
    geometry is the display's quads and the splats are the instance the display keeps; a mesh
    whose Geometry Nodes make a Gaussian splat point cloud evaluates to that point cloud. Both
    are read while the geometry set that owns them is alive.
    """
    source = f"Object {obj_eval.name!r}"
    for layout_module in _LAYOUTS.values():
        if layout_module.has_splat_attributes(obj_eval.data):
            return layout_module.read_splats(obj_eval.data, source=source, report=report)
    geometry = obj_eval.evaluated_geometry()
    candidates = [getattr(geometry, "pointcloud", None)]
    for ref in geometry.instance_references():
        candidates += [getattr(ref, "mesh", None), getattr(ref, "pointcloud", None)]
    for data in candidates:
        for layout_module in _LAYOUTS.values():
            if data is not None and layout_module.has_splat_attributes(data):
                return layout_module.read_splats(data, source=source, report=report)
    return None


# ---------------------------------------------------------------------- reading objects back
def default_up_axis(obj: bpy.types.Object, format: str | None = None) -> str:
    """The up axis export uses for ``obj`` unless told otherwise: the one it was imported or
    made with (``gs_up_axis`` on its data); for a splat object without one (made by Blender's
    own importers or by a script) the axis under which Blender's importer of ``format`` places
    a file (``frames.BLENDER_IMPORTER_UP_AXIS``), so the file's values come back."""
    data = obj.data
    stored = data.get(UP_AXIS_PROP) if data is not None else None
    if stored in UP_AXES:
        return stored
    return BLENDER_IMPORTER_UP_AXIS.get(format, UNTAGGED_UP_AXIS)


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


def _may_be_nonfinite(splats: SplatSet) -> bool:
    """False when no value is NaN/Inf and no quaternion is zero: one sum per array (NaN and
    ±inf propagate through a sum) instead of SplatSet.finite_mask's full-size masks. A sum
    that overflows only sends the set to the exact check."""
    with np.errstate(over="ignore", invalid="ignore"):
        for arr in (splats.positions, splats.log_scales, splats.rotations,
                    splats.opacity_logits, splats.sh_dc, splats.sh_rest, *splats.extra.values()):
            if arr.size and not np.isfinite(np.add.reduce(arr, axis=None)):
                return True
    return bool(splats.count) and not np.any(splats.rotations, axis=1).all()


def object_to_splats(obj: bpy.types.Object, *, apply_transform: bool = True,
                     up_axis: str | None = None, format: str | None = None,
                     report: Report = log_report) -> SplatSet:
    """The splats of a splat object, in the file frame of ``up_axis``.

    With ``apply_transform`` the object's world matrix is baked in (positions, rotations,
    scales and SH bands); without it the stored values come back as they are. ``up_axis``
    defaults to :func:`default_up_axis` for ``format``. Reads the original data, not the
    evaluated one (modifiers are for display and rigging). Splats with NaN or infinite values
    (possible in data written by other tools) are left out with a warning; GSError when every
    splat has them.
    """
    source = f"Object {obj.name!r}"
    splats = read_stored_splats(obj, report=report)
    if _may_be_nonfinite(splats):
        splats = splats.drop_nonfinite(source=source, report=report)
    if not apply_transform:
        return splats
    matrix = export_matrix(obj, up_axis=up_axis or default_up_axis(obj, format))
    if np.array_equal(matrix, np.eye(4)):
        return splats
    try:
        return splats.transformed(matrix)
    except GSError as err:
        raise GSError(f"{source} cannot be exported with its transform: {err} (make the scale "
                      "uniform, or export without applying the transform)") from None


def export_splats(obj: bpy.types.Object, filepath: str | os.PathLike, *,
                  format: str | None = None, apply_transform: bool = True,
                  up_axis: str | None = None, spz_version: int = 3,
                  report: Report = log_report) -> None:
    """Write the splats of ``obj`` to ``filepath``: the format is ``format`` ("ply",
    "compressed_ply", "splat", "spz", …) or, when None, the file name's; ``up_axis`` defaults to
    :func:`default_up_axis`; ``spz_version`` 2, 3 or 4 for .spz. Reports "Exported N splats …
    in t s"."""
    start = time.perf_counter()
    path = os.fspath(filepath)
    fmt = format or detect_format(path, for_writing=True)
    splats = object_to_splats(obj, apply_transform=apply_transform, up_axis=up_axis,
                              format=fmt, report=report)
    write_splats(path, splats, format=fmt, spz_version=spz_version, report=report)
    report({'INFO'}, f"Exported {splats.count:,} splats (SH {splats.sh_degree}) to "
                     f"{Path(path).name} in {time.perf_counter() - start:.2f} s")
