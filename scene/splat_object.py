"""Splat objects in Blender: build them from a SplatSet or a file, read them back, export them.

The layout (attribute names and types) is defined bpy-free in
:mod:`blender_gs_addon.object_layout`; this module does the bpy calls. Values are copied with
``foreach_set``/``foreach_get`` on contiguous float32 arrays, never per splat in Python.

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

import bpy
import numpy as np
from mathutils import Matrix

from ..blender_gs_addon import object_layout as layout
from ..blender_gs_addon.axes import file_to_blender_matrix
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.formats import read_splats, write_splats
from ..blender_gs_addon.splats import SplatSet

__all__ = [
    "SNAP_TOLERANCE", "create_splat_object", "import_splats", "import_splat_files",
    "object_to_splats", "export_splats", "is_splat_object", "splat_count", "splat_sh_degree",
    "export_matrix",
]

SNAP_TOLERANCE = 1e-6


# ---------------------------------------------------------------------- building objects
def create_splat_object(splats: SplatSet, *, name: str, up_axis: str = "-Y",
                        collection: bpy.types.Collection | None = None,
                        display: bool = True) -> bpy.types.Object:
    """New mesh object holding ``splats`` (file frame) with the file → Blender rotation.

    Linked into ``collection`` (default: the active collection). The mesh is filled completely
    before the object is linked; on any error the new mesh and object are removed again.
    With ``display`` the object gets the Gaussian splat display (``splat_display``).
    """
    file_to_blender_matrix(up_axis)  # GSError for an unknown axis before anything is made
    splats.validate(name=name)
    obj = _new_splat_object(layout.splat_attribute_arrays(splats), count=splats.count,
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
    from .splat_display import add_display, display_support_problem

    problem = display_support_problem()
    if problem is not None:
        report({'WARNING'}, problem)
        return
    try:
        for obj in objects:
            add_display(obj, report=report)
    except BaseException:
        for obj in objects:
            mesh = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)
        raise


def _new_splat_object(arrays, *, count: int, sh_degree: int, name: str, up_axis: str,
                      collection: bpy.types.Collection | None) -> bpy.types.Object:
    matrix = file_to_blender_matrix(up_axis)  # [4, 4]
    mesh = bpy.data.meshes.new(name)
    obj = None
    try:
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
        mesh[layout.SH_DEGREE_PROP] = sh_degree
        mesh[layout.UP_AXIS_PROP] = up_axis
        obj = bpy.data.objects.new(name, mesh)
        obj.matrix_basis = Matrix(matrix.tolist())
        if collection is None:
            collection = bpy.context.collection or bpy.context.scene.collection
        collection.objects.link(obj)
    except BaseException:
        if obj is not None:
            bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        raise
    return obj


def _default_name(filepath: str) -> str:
    name = Path(filepath).name
    if name.lower() == "meta.json":  # an unbundled SOG: its folder names the scene
        return Path(filepath).resolve().parent.name or "meta"
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
                  display: bool = True, report: Report = log_report) -> bpy.types.Object:
    """Read a splat file (.ply, compressed .ply, .splat, .spz, .glb/.gltf, .sog/meta.json) into
    a new, selected object.

    Args:
        up_axis: the file's up axis (see ``axes.UP_AXES``); "-Y" shows 3DGS files upright.
        name: object and mesh name (default: the file name without its extension).
        nonfinite: "drop" splats with NaN/Inf values (reported) or "error" to refuse the file.
    Reports "Imported N splats (SH d) in t s". GSError (bpy.data unchanged) for bad files.
    """
    return import_splat_files([filepath], up_axis=up_axis, name=name, nonfinite=nonfinite,
                              collection=collection, display=display, report=report)[0]


def import_splat_files(filepaths: Iterable[str | os.PathLike], *, up_axis: str = "-Y",
                       name: str | None = None, nonfinite: str = "drop",
                       collection: bpy.types.Collection | None = None,
                       display: bool = True,
                       report: Report = log_report) -> list[bpy.types.Object]:
    """Import several files, all or nothing: if one fails, the objects made so far are removed.

    The new objects end up selected, the last one active. ``name`` applies to every object
    (Blender appends .001 … when more than one is made).
    """
    file_to_blender_matrix(up_axis)  # refuse a bad axis before reading anything
    paths = [os.fspath(p) for p in filepaths]
    if not paths:
        raise GSError("no splat files given to import")
    created: list[bpy.types.Object] = []
    try:
        for path in paths:
            start = time.perf_counter()
            splats = read_splats(path, nonfinite=nonfinite, report=report)
            splats.validate(name=path)
            count, degree = splats.count, splats.sh_degree
            # Hand the arrays over so each is freed once Blender has its copy: peak memory
            # stays near one copy of the splats instead of two.
            arrays = layout.release_attribute_arrays(layout.splat_fields(splats))
            del splats
            created.append(_new_splat_object(
                arrays, count=count, sh_degree=degree, name=name or _default_name(path),
                up_axis=up_axis, collection=collection))
            report({'INFO'}, f"Imported {count:,} splats (SH {degree}) from "
                             f"{Path(path).name} in {time.perf_counter() - start:.2f} s")
    except BaseException:
        for obj in created:
            mesh = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)
        raise
    if display:
        _with_display(created, report=report)
    _select_only(created)
    return created


# ---------------------------------------------------------------------- reading objects back
def _point_attributes(mesh: bpy.types.Mesh) -> dict[str, str]:
    return {a.name: a.data_type for a in mesh.attributes if a.domain == 'POINT'}


def is_splat_object(obj: bpy.types.Object | None) -> bool:
    """True for a mesh object with the splat attributes (cheap; used by polls and panels)."""
    if obj is None or obj.type != 'MESH':
        return False
    attributes = obj.data.attributes
    for name in (layout.SCALE, layout.ROTATION, layout.OPACITY, layout.SH_DC):
        attr = attributes.get(name)
        if attr is None or attr.domain != 'POINT':
            return False
    return True


def splat_count(obj: bpy.types.Object) -> int:
    return len(obj.data.vertices)


def splat_sh_degree(obj: bpy.types.Object) -> int:
    """SH degree from the count of ``gs_sh_rest_*`` attributes (what export would write)."""
    count = sum(1 for a in obj.data.attributes if a.name.startswith(layout.SH_REST_PREFIX))
    return {0: 0, 3: 1, 8: 2, 15: 3}.get(count, -1)


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
    if obj.type != 'MESH':
        raise GSError(f"{source} is a {obj.type.lower()}, not a splat object (a mesh with "
                      "splat attributes)")
    if obj.mode == 'EDIT':
        obj.update_from_editmode()
    mesh = obj.data
    attributes = mesh.attributes

    def fetch(spec: layout.AttributeSpec, out: np.ndarray) -> None:
        attributes[spec.name].data.foreach_get(spec.foreach_key, out)

    splats = layout.splats_from_attributes(_point_attributes(mesh), len(mesh.vertices), fetch,
                                           source=source)
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
                  report: Report = log_report) -> None:
    """Write the splats of ``obj`` to ``filepath`` (format from ``format`` or the file name:
    "ply", "compressed_ply", "splat", "spz"). Reports "Exported N splats … in t s"."""
    start = time.perf_counter()
    splats = object_to_splats(obj, apply_transform=apply_transform, up_axis=up_axis)
    path = os.fspath(filepath)
    write_splats(path, splats, format=format, report=report)
    report({'INFO'}, f"Exported {splats.count:,} splats (SH {splats.sh_degree}) to "
                     f"{Path(path).name} in {time.perf_counter() - start:.2f} s")
