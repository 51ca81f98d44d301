"""Fit backend on the built-in sample: 32 train views + 8 held-out views at 128², CPU.

The views are captured from the built-in "toy" scene with Workbench (the scene is procedural,
so the benchmark needs no files), then the default CPU preset runs; held-out PSNR/SSIM are
measured with the exact rasterizer on white, the NeRF-synthetic protocol.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(quick: bool = False) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from types import SimpleNamespace

    import torch

    from blender_gs_addon.extension import extension_module
    from blender_gs_addon.reconstruction.fit import FIT_PRESETS
    from blender_gs_addon.reconstruction.pipeline import reconstruct

    capture = extension_module("scene.capture")
    torch.set_num_threads(os.cpu_count() or 1)
    views, res = (8, 64) if quick else (32, 128)
    steps = 200 if quick else FIT_PRESETS["cpu"].steps
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        capture.capture_main(SimpleNamespace(
            builtin="toy", blend=None, objects=None, rig="sphere", views=views, test_views=8,
            resolution=res, engine="WORKBENCH", out=os.path.join(tmp, "cap")),
            report=lambda *a: None)
        t_capture = time.perf_counter() - start
        result = reconstruct(capture=os.path.join(tmp, "cap"), out=os.path.join(tmp, "s.ply"),
                             backend="fit", steps=steps, device="cpu", seed=0,
                             report=lambda *a: None)
    note = f"{views} train + 8 test views at {res}², {steps} steps, {result['count']:,} splats"
    return [
        {"name": "fit: held-out PSNR (built-in toy)", "value": result["psnr"], "unit": "dB",
         "goal": "≥ 28" if not quick else "", "note": note},
        {"name": "fit: held-out SSIM", "value": result["ssim"], "unit": "", "goal": "",
         "note": ""},
        {"name": "fit: wall time (CPU, default steps)", "value": result["seconds"], "unit": "s",
         "goal": "≤ 300" if not quick else "", "note": "load, fit, eval, write"},
        {"name": "fit: seconds per step", "value": result["seconds"] / max(1, result["steps"]),
         "unit": "s", "goal": "", "note": ""},
        {"name": "capture for the fit (Workbench)", "value": t_capture, "unit": "s", "goal": "",
         "note": f"{views + 8} views"},
    ]
