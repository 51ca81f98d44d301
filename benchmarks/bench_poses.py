"""Pose recovery (pycolmap, CPU): seconds per stage and accuracy at 40 / 120 views, 256² / 512².

A textured object (tests/photo_subject.py: three image-textured primitives, Workbench, flat
light) is rendered from orbit cameras (40 views: 2 rings of 20 at 0° and 30°; 120 views: 3
rings of 40 at −15°, 15°, 45°), composited over grey as photos with the film's alpha as masks;
``recover_poses`` recovers the poses with the default settings; then the fit runs from the
recovered data set (initialised from its SfM points). Accuracy is measured against the known
cameras after a similarity alignment (medians).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIT_STEPS = 200
LAYOUTS = {40: (20, "0,30"), 120: (40, "-15,15,45")}  # views → (per ring, elevations)


def _one(tmp: Path, views: int, resolution: int, fit_steps: int) -> list[dict]:
    import numpy as np
    from photo_subject import photos_from_capture, render_subject

    from blender_gs_addon.datasets import read_transforms
    from blender_gs_addon.poses.alignment import pose_errors
    from blender_gs_addon.poses.recover import recover_poses
    from blender_gs_addon.reconstruction.pipeline import reconstruct

    per_ring, elevations = LAYOUTS[views]
    start = time.perf_counter()
    capture = render_subject(tmp, views_per_ring=per_ring, resolution=resolution,
                             elevations=elevations)
    t_render = time.perf_counter() - start
    truth = read_transforms(capture)
    photos_from_capture(truth, tmp / "photos", tmp / "masks")
    report = recover_poses(photos=tmp / "photos", out=tmp / "poses", masks=tmp / "masks",
                           report=lambda *a: None)
    recovered = read_transforms(tmp / "poses")
    by_name = {Path(v.name).name: v for v in truth.views}
    errors = pose_errors(recovered.camera_to_world_stack(),
                         np.stack([by_name[v.name].camera_to_world for v in recovered.views]))
    start = time.perf_counter()
    fitted = reconstruct(capture=str(tmp / "poses"), out=str(tmp / "s.ply"), steps=fit_steps,
                         device="cpu", report=lambda *a: None)
    t_fit = time.perf_counter() - start
    tag = f"poses {views} views {resolution}²"
    s = report["seconds"]
    note = (f"placed {report['placed']}/{report['images']}, render {t_render:.1f} s "
            f"(Workbench), settings {report['settings']}")
    rows = [{"name": f"{tag}: {stage}", "value": s[stage], "unit": "s", "goal": "",
             "note": note if stage == "extract" else ""}
            for stage in ("extract", "match", "map")]
    true_f = truth.views[0].fx
    rows += [
        {"name": f"{tag}: fit ({fit_steps} steps)", "value": t_fit, "unit": "s", "goal": "",
         "note": f"load, fit ({fitted['fit_seconds'] / fit_steps:.3f} s/step), eval, write; "
                 f"from {report['points']:,} SfM points; held-out PSNR "
                 f"{fitted['psnr']:.2f} dB on {fitted['test_views']} views; load average "
                 f"{os.getloadavg()[0]:.1f}"},
        {"name": f"{tag}: placed", "value": report["placed"] / report["images"] * 100,
         "unit": "%", "goal": "≥ 95", "note": f"left out: {report['left_out'] or 'none'}"},
        {"name": f"{tag}: centre error", "value": errors.centre_error_percent,
         "unit": "% of radius", "goal": "≤ 2", "note": "median, after similarity alignment"},
        {"name": f"{tag}: rotation error", "value": errors.rotation_error_deg, "unit": "°",
         "goal": "≤ 1.5", "note": "median"},
        {"name": f"{tag}: reprojection error", "value": report["reprojection_error_px"],
         "unit": "px", "goal": "", "note": f"focal {report['focal_length_px'][0]:.1f} px "
                                           f"(true {true_f:.1f})"},
    ]
    return rows


def run(quick: bool = False) -> list[dict]:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    cases = [(40, 256)] if quick else [(40, 256), (120, 256), (40, 512), (120, 512)]
    rows = []
    for views, resolution in cases:
        with tempfile.TemporaryDirectory() as tmp:
            rows += _one(Path(tmp), views, resolution, 100 if quick else FIT_STEPS)
    return rows
