"""The native layout of a splat object: a Blender 5.3+ point cloud of type ``GAUSSIAN_SPLAT``.

Blender draws these as splats itself in EEVEE, Cycles and Workbench, from every view. The
attribute names, types and the exact-copy rule are defined bpy-free in
:mod:`blender_gs_addon.native_layout`; this module makes the bpy calls: build a point cloud
object from attribute arrays (``foreach_set``, never per splat), tell whether data carries the
layout, and read a SplatSet back (original or evaluated data). It answers the same questions as
:mod:`.mesh_splats`, so :mod:`.splat_object` treats both layouts alike.

Point clouds made by Blender's own importers (.ply, .spz, the Import nodes) or by scripts are
read the same way; they lack the exact copies, so their raw values are derived (bounds in
:mod:`blender_gs_addon.native_layout`).

A point cloud takes no Armature modifier and no vertex groups (measured on 5.3), which is why
binding needs its own path for this layout.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..blender_gs_addon import native_layout as native
from ..blender_gs_addon.conventions.frames import file_to_blender_matrix
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.splats import SplatSet
from .object_building import build_object

__all__ = ["MIN_VERSION", "supported", "is_point_cloud", "missing_attributes",
           "has_splat_attributes", "refusal", "splat_count", "splat_sh_degree", "positions",
           "read_splats", "splat_fields", "attribute_arrays", "new_object", "remove_object"]

MIN_VERSION = (5, 3, 0)  # the first Blender that draws GAUSSIAN_SPLAT point clouds


def supported() -> bool:
    """Whether this Blender has native Gaussian splats (a version comparison, not a string)."""
    return tuple(bpy.app.version) >= MIN_VERSION


def is_point_cloud(data) -> bool:
    return isinstance(data, bpy.types.PointCloud)


def _attribute_types(cloud) -> dict[str, str]:
    return {a.name: a.data_type for a in cloud.attributes if a.domain == 'POINT'}


def missing_attributes(cloud) -> list[str]:
    """The required attributes a point cloud lacks (empty: Blender draws its splats as stored);
    a wrong type reads "name (TYPE, not EXPECTED)"."""
    return native.missing_attributes(_attribute_types(cloud))


def has_splat_attributes(data) -> bool:
    """True for a GAUSSIAN_SPLAT point cloud with every required attribute (cheap: polls)."""
    return (is_point_cloud(data) and getattr(data, "type", None) == native.GAUSSIAN_SPLAT
            and not missing_attributes(data))


def refusal(data, name: str) -> str | None:
    """Why object ``name`` with this data is not a splat object, for point clouds (None for
    other data, or for a valid one)."""
    if not is_point_cloud(data):
        return None
    kind = getattr(data, "type", None)
    if kind is None:
        version = ".".join(map(str, MIN_VERSION[:2]))
        return (f"Object {name!r} is a point cloud; Blender draws Gaussian splats from point "
                f"clouds from {version} on (this is {bpy.app.version_string}): import a splat "
                "file to make a splat object")
    if kind != native.GAUSSIAN_SPLAT:
        return (f"Object {name!r} is a point cloud of type {kind.title()}, not 3D Gaussian "
                "Splat: set its type (Properties › Data › Type) or import a splat file")
    missing = missing_attributes(data)
    if missing:
        return (f"Object {name!r} is a Gaussian splat point cloud without "
                f"{', '.join(missing)}: Blender draws such splats with scale 1e-3 and opacity "
                "0.5; add the attributes (as Blender's .ply importer writes them) or import "
                "the file again")
    return None


def splat_count(cloud) -> int:
    return len(cloud.points)


def splat_sh_degree(cloud) -> int:
    """SH degree export would write (0-3) from the ``radiance:sh_*`` attributes."""
    return native.native_sh_degree(_attribute_types(cloud))


def positions(cloud) -> np.ndarray:
    """[N, 3] float32 splat centres as stored (object space)."""
    out = np.empty(len(cloud.points) * 3, np.float32)
    if len(out):
        cloud.attributes[native.POSITION].data.foreach_get("vector", out)
    return out.reshape(-1, 3)


def read_splats(cloud, *, source: str, report: Report = log_report) -> SplatSet:
    """The SplatSet a native point cloud holds (no transform); exact copies used where valid."""
    attributes = _attribute_types(cloud)
    count = len(cloud.points)

    def fetch(spec: native.NativeSpec, out: np.ndarray) -> None:
        if count:
            cloud.attributes[spec.name].data.foreach_get(spec.foreach_key, out)

    if count == 0 and native.POSITION not in attributes:
        attributes[native.POSITION] = "FLOAT_VECTOR"  # an empty cloud has no position yet
    return native.splats_from_native(attributes, count, fetch, source=source, report=report)


def splat_fields(splats: SplatSet) -> dict[str, object]:
    """The arrays of ``splats`` in a dict :func:`attribute_arrays` can release."""
    return native.native_fields(splats)


def attribute_arrays(fields: dict, *, release: bool):
    """(NativeSpec, flat float32 array) pairs for :func:`new_object`."""
    return native.native_attribute_arrays(fields, release=release)


def new_object(arrays, *, count: int, sh_degree: int, name: str, up_axis: str,
               collection: bpy.types.Collection | None) -> bpy.types.Object:
    """A new native splat object filled with ``arrays`` ((NativeSpec, float32 values) pairs, as
    :func:`attribute_arrays` gives) and the file → Blender rotation of ``up_axis`` as its
    matrix (the data keeps the file's values, as Blender's .ply importer keeps them), linked
    into ``collection``. Removed again on error."""
    if not supported():
        raise GSError(f"native Gaussian splats need Blender {'.'.join(map(str, MIN_VERSION))} "
                      f"or newer (this is {bpy.app.version_string})")
    file_to_blender_matrix(up_axis)  # GSError for an unknown axis before anything is made
    cloud = bpy.data.pointclouds.new(name)

    def fill() -> None:
        cloud.resize(count)
        cloud.type = native.GAUSSIAN_SPLAT
        for spec, values in arrays:
            attr = cloud.attributes.get(spec.name) or cloud.attributes.new(
                spec.name, spec.data_type, 'POINT')
            if attr is None:
                raise GSError(f"{name}: Blender refused the attribute {spec.name!r}")
            if count:
                attr.data.foreach_set(spec.foreach_key, values)
            del values

    return build_object(cloud, fill, name=name, sh_degree=sh_degree, up_axis=up_axis,
                        collection=collection, remove_data=bpy.data.pointclouds.remove)


def remove_object(obj: bpy.types.Object) -> None:
    """Remove a splat object and its point cloud (what a failed import or build undoes)."""
    cloud = obj.data
    bpy.data.objects.remove(obj)
    if cloud is not None and cloud.users == 0:
        bpy.data.pointclouds.remove(cloud)
