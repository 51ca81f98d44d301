"""Blender 5.3 native splats: import and export of a 1M-splat SH3 .ply against Blender's own.

Runs under ``.venv313`` (Python 3.13, bpy 5.3.0; ``run_benchmarks.py`` picks that interpreter).
Import is our File › Import (a native GAUSSIAN_SPLAT point cloud with the exact copies) against
Blender 5.3's C++ ``wm.ply_import`` of the same file in the same process, best of several
alternating runs, so the ratio does not depend on how busy the machine is. Export writes the
native object back to .ply: ours (exact copies: the file's bytes) and one imported by Blender
(raw values derived from the native ones).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench_io import best_of, import_against_blender  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent


def run(quick: bool = False) -> list[dict]:
    import bpy

    sys.path.insert(0, str(ROOT))
    from blender_gs_addon.extension import extension_module, load_extension
    from blender_gs_addon.formats import write_splats
    from blender_gs_addon.samples import sample_splats

    if tuple(bpy.app.version) < (5, 3, 0):
        return [{"name": "native: skipped", "value": None, "unit": "", "goal": "",
                 "note": f"needs bpy 5.3+ (this is {bpy.app.version_string})"}]
    load_extension().register()
    splat_object = extension_module("scene.splat_object")
    count = 100_000 if quick else 1_000_000
    runs = 2 if quick else 5
    quiet = {"report": lambda *a: None}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.ply")
        write_splats(path, sample_splats("random", count=count, sh_degree=3, seed=1))
        size = os.path.getsize(path)

        def ours():
            obj = splat_object.import_splats(path, **quiet)
            assert splat_object.splat_layout(obj) == "NATIVE"

        t_ours, t_blender = import_against_blender(ours, path, runs)
        version = bpy.app.version_string
        rows.append({"name": f"import {count:,} SH3 .ply ({size / 1e6:.0f} MB) as native splats",
                     "value": t_ours, "unit": "s", "goal": "", "note": f"bpy {version}, best "
                                                                     f"of {runs}"})
        rows.append({"name": "Blender 5.3 wm.ply_import, same file", "value": t_blender,
                     "unit": "s", "goal": "", "note": f"best of {runs}"})
        rows.append({"name": "native import / wm.ply_import", "value": t_ours / t_blender,
                     "unit": "×", "goal": "≤ 1.0", "note": "same process, same file"})

        out = os.path.join(tmp, "out.ply")
        bpy.ops.wm.read_homefile(app_template="", use_empty=True)
        obj = splat_object.import_splats(path, **quiet)
        t_export = best_of(lambda: splat_object.export_splats(obj, out, **quiet), runs)
        same = Path(out).read_bytes() == Path(path).read_bytes()
        rows.append({"name": f"export {count:,} native SH3 splats to .ply", "value": t_export,
                     "unit": "s", "goal": "" if quick else "≤ 0.5",
                     "note": "ours (exact copies): " + ("the file's bytes" if same
                                                        else "NOT the file's bytes")})
        bpy.ops.wm.read_homefile(app_template="", use_empty=True)
        bpy.ops.wm.ply_import(filepath=path)
        theirs = bpy.context.active_object
        t_theirs = best_of(lambda: splat_object.export_splats(theirs, out, **quiet), runs)
        rows.append({"name": "export of Blender's own import of it to .ply", "value": t_theirs,
                     "unit": "s", "goal": "", "note": "log-scales, logits derived from the "
                                                      "native values"})
    return rows
