"""Splat I/O: Blender import/export of a 1M-splat SH3 .ply, peak memory, and format speeds.

Import is compared with Blender's own C++ ``bpy.ops.wm.ply_import`` on the same file in the
same process (best of several runs each, alternating), so the ratio does not depend on how
busy the machine is. Peak memory is measured in a fresh subprocess: the kernel's high-water
mark (VmHWM) is reset just before the import, so it is the import's own peak over what the
process already held.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_MEMORY_PROBE = r"""
import sys, json
sys.path.insert(0, {root!r})
import bpy
from blender_gs_addon.extension import extension_module
splat_object = extension_module("scene.splat_object")
bpy.ops.wm.read_homefile(app_template="", use_empty=True)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
splat_object.import_splats({path!r}, report=lambda *a: None)
print("@@" + json.dumps({{"before": before, "peak": status("VmHWM:")}}))
"""


def best_of(fn, runs: int) -> float:
    """The shortest of ``runs`` timed calls of ``fn`` (seconds)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def import_against_blender(import_file, path: str, runs: int) -> tuple[float, float]:
    """(best time of ``import_file()``, best time of Blender's ``wm.ply_import`` of ``path``),
    each into an empty file, alternating so both see the same machine load; one warm-up of
    each first (page cache, code paths)."""
    import bpy

    def ours():
        bpy.ops.wm.read_homefile(app_template="", use_empty=True)
        import_file()

    def blenders():
        bpy.ops.wm.read_homefile(app_template="", use_empty=True)
        bpy.ops.wm.ply_import(filepath=path)

    ours()
    blenders()
    t_ours, t_blender = float("inf"), float("inf")
    for _ in range(runs):
        t_ours = min(t_ours, best_of(ours, 1))
        t_blender = min(t_blender, best_of(blenders, 1))
    return t_ours, t_blender


def run(quick: bool = False) -> list[dict]:
    import json

    import bpy

    sys.path.insert(0, str(ROOT))
    from blender_gs_addon.extension import extension_module
    from blender_gs_addon.formats import read_splats, write_splats
    from blender_gs_addon.samples import sample_splats

    splat_object = extension_module("scene.splat_object")
    count = 100_000 if quick else 1_000_000
    runs = 2 if quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.ply")
        splats = sample_splats("random", count=count, sh_degree=3, seed=1)
        write_splats(path, splats)
        size = os.path.getsize(path)
        del splats

        t_ours, t_blender = import_against_blender(
            lambda: splat_object.import_splats(path, report=lambda *a: None), path, runs)
        rows.append({"name": f"import {count:,} SH3 .ply ({size / 1e6:.0f} MB)", "value": t_ours,
                     "unit": "s", "goal": "", "note": f"best of {runs}"})
        rows.append({"name": "Blender wm.ply_import, same file", "value": t_blender,
                     "unit": "s", "goal": "", "note": f"best of {runs}"})
        rows.append({"name": "import / wm.ply_import", "value": t_ours / t_blender, "unit": "×",
                     "goal": "≤ 1.3", "note": "same process, same file; the display group "
                                             "appended from its cache (next row)"})
        # What the very first import with a new Blender version pays once on top: building
        # the display node group through the API (later files append the cached copy).
        display = extension_module("scene.display")
        cache = extension_module("scene.display.cache")
        cached = cache.cache_path
        cache.cache_path = lambda: None
        try:
            def build():
                bpy.ops.wm.read_homefile(app_template="", use_empty=True)
                start = time.perf_counter()
                display.display_node_group()
                return time.perf_counter() - start

            t_build = min(build() for _ in range(2))
        finally:
            cache.cache_path = cached
        rows.append({"name": "display node group: first build, once per Blender version",
                     "value": t_build, "unit": "s", "goal": "",
                     "note": "later files append it from the cache in a few ms"})

        bpy.ops.wm.read_homefile(app_template="", use_empty=True)
        obj = splat_object.import_splats(path, report=lambda *a: None)
        out = os.path.join(tmp, "out.ply")
        t_export = best_of(lambda: splat_object.export_splats(obj, out, report=lambda *a: None),
                         runs)
        rows.append({"name": f"export {count:,} SH3 splats to .ply", "value": t_export,
                     "unit": "s", "goal": "≤ 0.5" if not quick else "", "note": "untransformed"})
        obj.location = (1.0, 2.0, 3.0)
        obj.rotation_euler = (0.3, 0.2, 0.1)
        bpy.context.view_layer.update()
        t_moved = best_of(lambda: splat_object.export_splats(obj, out, report=lambda *a: None), 2)
        rows.append({"name": "export with a baked rotation (SH rotated)", "value": t_moved,
                     "unit": "s", "goal": "", "note": ""})

        probe = _MEMORY_PROBE.format(root=str(ROOT), path=path)
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("@@")]
        if line:
            mem = json.loads(line[0][2:])
            extra = mem["peak"] - mem["before"]
            rows.append({"name": "import peak memory over baseline", "value": extra / size,
                         "unit": "× file size", "goal": "≤ 2",
                         "note": f"{extra / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"})

        splats = read_splats(path)
        for name in ("x.ply", "x.compressed.ply", "x.spz", "x.splat"):
            target = os.path.join(tmp, name)
            t_w = best_of(lambda target=target: write_splats(target, splats,
                                                           report=lambda *a: None), 1)
            t_r = best_of(lambda target=target: read_splats(target, report=lambda *a: None), 2)
            per = os.path.getsize(target) / count
            rows.append({"name": f"{name[2:]} write / read, {count:,} SH3", "value": t_w,
                         "unit": "s write", "goal": "",
                         "note": f"read {t_r:.2f} s, {per:.1f} bytes/splat"})
    return rows
