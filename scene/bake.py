"""Baking a posed splat object: the splats of a frame range written as .ply files, each splat
moved, turned and its SH bands rotated as its bones move it (for viewers that cannot rig)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import bpy
import numpy as np

from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.formats import write_splats
from ..blender_gs_addon.quaternions import normalize_quat, quat_to_matrix
from ..blender_gs_addon.sh import rotate_sh_rest
from . import splat_object
from .rigging import evaluated_splats

__all__ = ["bake_splats"]


def bake_splats(obj: bpy.types.Object, *, frames: tuple[int, int], out_dir: str | os.PathLike,
                up_axis: str | None = None, report: Report = log_report) -> list[str]:
    """Write the posed splats of frames A..B (inclusive) as ``<name>_<frame>.ply``.

    Positions and rotations come from the evaluated object (mesh layout or native splats), SH
    bands 1-3 are rotated by each splat's rotation delta (posed ⊗ rest⁻¹, in float64 from the
    rest coefficients); scales, opacities and colours stay. The object's transform is applied
    as on export (file frame of ``up_axis``; default: the axis the object was imported with, or
    for one without, the axis Blender's .ply importer assumes). Splats with NaN or infinite
    values are left out with a warning. Restores the current frame.
    """
    splat_object.require_splat_object(obj, allow_empty=False)
    if up_axis is None:
        up_axis = splat_object.default_up_axis(obj, "ply")
    first, last = int(frames[0]), int(frames[1])
    if last < first:
        raise GSError(f"frame range {first}:{last} is empty")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GSError(f"{out}: cannot create the output folder: {err}") from None
    # The stored splats, none left out: the evaluated ones correspond to them one to one.
    rest = splat_object.read_stored_splats(obj, report=report)
    rest_t = np.swapaxes(quat_to_matrix(rest.rotations.astype(np.float64)), -1, -2)
    scene = bpy.context.scene
    current = scene.frame_current
    stem = bpy.path.clean_name(obj.name)
    written = []
    start = time.perf_counter()
    try:
        for frame in range(first, last + 1):
            scene.frame_set(frame)
            pos, rot = evaluated_splats(obj)
            posed = rest.copy()
            posed.positions = pos
            unit = normalize_quat(rot)  # a NaN row would become the identity: kept NaN
            posed.rotations = np.where(np.isfinite(rot).all(axis=1, keepdims=True), unit,
                                       np.nan).astype(np.float32)
            with np.errstate(invalid="ignore"):  # NaN splats stay NaN, and are dropped below
                delta = quat_to_matrix(rot.astype(np.float64)) @ rest_t  # [N, 3, 3]
                posed.sh_rest = rotate_sh_rest(rest.sh_rest, delta)
            posed = posed.drop_nonfinite(source=f"Object {obj.name!r}, frame {frame}",
                                         report=report)
            matrix = splat_object.export_matrix(obj, up_axis=up_axis)
            if not np.array_equal(matrix, np.eye(4)):
                posed = posed.transformed(matrix)
            path = out / f"{stem}_{frame:04d}.ply"
            write_splats(path, posed, format="ply", report=report)
            written.append(str(path))
    finally:
        scene.frame_set(current)
    report({'INFO'}, f"Baked {len(written)} frames of {rest.count:,} splats to {out} in "
                     f"{time.perf_counter() - start:.2f} s")
    return written
