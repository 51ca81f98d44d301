"""Capture speed: seconds per rendered view of the built-in "toy" sample, per engine and size.

Each configuration runs a real capture (orbit rig, engine default samples: Cycles 64, EEVEE 32,
Workbench 8 — see DEFAULT_SAMPLES in blender_gs_addon/capture/options.py) into a temporary
folder and reports the first view and the steady state (mean of the later views) separately:
EEVEE compiles its shaders during the first render, Cycles builds its BVH then (persistent data
keeps it for the rest). A view's time includes writing its PNG.

    .venv/bin/python benchmarks/run_benchmarks.py --only capture [--quick]
"""

from __future__ import annotations

import tempfile
import time

GOALS = {
    "WORKBENCH": "< 0.5 s/view",
    "EEVEE": "< 2 s/view with a GPU (CPU software GL: informative only)",
    "CYCLES": "< 30 s/view at 512² on CPU",
}


def _capture_seconds(bpy, capture, samples_module, engine: str, size: int, views: int):
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    objects = samples_module.build_sample_scene("toy")
    with tempfile.TemporaryDirectory() as tmp:
        options = capture.CaptureOptions(rig="orbit", views=views, elevations=(20.0,),
                                         resolution=size, engine=engine)
        session = capture.CaptureSession(bpy.context.scene, objects=objects, options=options,
                                         out_dir=tmp, report=lambda levels, message: None)
        with session:
            session.begin()
            while session.step():
                pass
            session.finish()
            return session.render_seconds, session.samples


def run(quick: bool) -> list[dict]:
    try:
        import bpy
    except ImportError:
        return [{"name": "capture: skipped", "value": None, "unit": "", "goal": "",
                 "note": "bpy is not installed"}]
    from blender_gs_addon.extension import load_extension

    load_extension()
    from gaussian_splats.scene import capture, sample_scenes

    sizes = (256,) if quick else (256, 512)
    rows = []
    for engine in ("WORKBENCH", "CYCLES", "EEVEE"):
        views = 2 if quick or engine == "EEVEE" else 4
        for size in sizes:
            start = time.perf_counter()
            seconds, samples = _capture_seconds(bpy, capture, sample_scenes, engine, size, views)
            total = time.perf_counter() - start
            note = (f"toy sample, orbit rig, {samples} samples, {views} views, "
                    f"capture total {total:.1f} s incl. scene set-up")
            rows.append({"name": f"capture {engine} {size}² first view", "value": seconds[0],
                         "unit": "s", "goal": GOALS[engine],
                         "note": note + ("; includes shader compilation" if engine == "EEVEE"
                                         else "")})
            steady = sum(seconds[1:]) / max(1, len(seconds) - 1)
            rows.append({"name": f"capture {engine} {size}² per view (steady)", "value": steady,
                         "unit": "s/view", "goal": GOALS[engine], "note": note})
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for row in run(quick="--quick" in sys.argv):
        print(row)
