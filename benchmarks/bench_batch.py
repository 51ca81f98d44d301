"""Batch reconstruction on Ray: start-up, per-task overhead, items per minute with 1 and 2
concurrent tasks on this machine, and, on paper, what a cluster of N GPUs would do.

The items are one small capture of the built-in toy (Workbench, 16 train + 4 test views at
64²) reconstructed K times under different names with a short fit, so every item costs the
same. The same items run three ways in this process, one after another, one torch thread per
item throughout: in-process without Ray (the reference), on a local Ray offered 1 CPU (one task
at a time) and offered 2 CPUs (two at a time; the batch's default of 1 CPU per task). One
thread each, because two OpenMP threads per fit on a shared 2-core machine spin against each
other and other processes (measured 11× slower under load), which would swamp the scaling.
Each Ray run starts and stops its own Ray, as the command line does; the start-up (``ray.init``
to the first task finished, and shutdown) is measured on its own and taken out of the
steady-state figures.

The cluster projection takes the per-item GPU times measured on an H200 (the cuda section of
docs/benchmarks.md) plus the per-item Ray overhead measured here, and assumes items scale
linearly with GPUs (independent items, one GPU each, a shared output folder fast enough for
one splat file per item).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_GPUS = (1, 8, 64)
# (workload, row name in the cuda section of docs/benchmarks.md, fallback seconds, where)
H200_ITEMS = (
    ("fit, CPU preset (1500 steps, 32 views 128²)",
     "fit CUDA+gsplat, CPU preset: wall time", 14.87, "value"),
    ("fit, GPU preset (21000 steps, 32 views 256²)",
     "fit CUDA+gsplat, GPU preset (21000 steps), toy 32 views 256²: held-out PSNR", 179.0,
     "note"),
    ("lgm (warm model)",
     "reconstruct --backend lgm on CUDA (warm: load + predict + eval + write)", 0.3825,
     "value"),
)


def _capture(folder: Path, resolution: int) -> Path:
    from blender_gs_addon.extension import extension_module

    capture = extension_module("scene.capture")
    capture.capture_main(SimpleNamespace(
        builtin="toy", blend=None, objects=None, rig="sphere", views=16, test_views=4,
        resolution=resolution, engine="WORKBENCH", out=str(folder)), report=lambda *a: None)
    return folder


def _timed_batch(inputs, out: Path, config, executor: str, options=None) -> tuple[float, list]:
    from blender_gs_addon.batch import run_batch

    start = time.perf_counter()
    result = run_batch(inputs, out, config=config, executor=executor, ray_options=options,
                       show_progress=False)
    wall = time.perf_counter() - start
    bad = [r for r in result.rows if r["status"] != "done"]
    if bad:
        raise RuntimeError(f"batch item failed: {bad[0]['error']}")
    return wall, result.rows


def _ray_start_and_task_overhead(repeats: int) -> tuple[float, float, float]:
    """(start-up s, shutdown s, empty-task round trip s) of Ray as the batch starts it."""
    from blender_gs_addon.batch.ray_runner import RayOptions, ray_session

    start = time.perf_counter()
    with ray_session(RayOptions(num_cpus=2)) as ray:
        nothing = ray.remote(lambda: None).options(num_cpus=1)
        ray.get(nothing.remote())  # the first task starts a worker: part of the start-up
        started = time.perf_counter() - start
        tick = time.perf_counter()
        for _ in range(repeats):
            ray.get(nothing.remote())
        round_trip = (time.perf_counter() - tick) / repeats
        tick = time.perf_counter()
    return started, time.perf_counter() - tick, round_trip


def _h200_item_seconds() -> list[tuple[str, float, str]]:
    """Per-item GPU seconds from the cuda section of docs/benchmarks.md (fallbacks: the figures
    of its 2026-12-04 run)."""
    try:
        text = (ROOT / "docs" / "benchmarks.md").read_text().split("\n## cuda", 1)[1]
    except (OSError, IndexError):
        text = ""
    found = []
    for workload, row, fallback, where in H200_ITEMS:
        seconds, source = fallback, "fallback"
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) >= 4 and cells[0] == row:
                cell = cells[1] if where == "value" else cells[3]
                match = re.search(r"([\d.]+) s\b", cell)
                if match:
                    seconds, source = float(match.group(1)), "docs/benchmarks.md"
        found.append((workload, seconds, source))
    return found


def run(quick: bool = False) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    import torch

    from blender_gs_addon.batch import BatchConfig
    from blender_gs_addon.batch.ray_runner import RayOptions

    torch.set_num_threads(1)
    items, steps, res = (2, 40, 32) if quick else (6, 300, 64)
    config = BatchConfig(steps=steps, device="cpu")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        capture = _capture(tmp / "toy", res)
        inputs = [f"item{i}={capture}" for i in range(items)]
        started, stopped, round_trip = _ray_start_and_task_overhead(20 if quick else 100)
        local, rows = _timed_batch(inputs, tmp / "local", config, "local")
        one, rows_one = _timed_batch(inputs, tmp / "ray1", config, "ray",
                              RayOptions(num_cpus=1, cpus_per_task=1))
        two, rows_two = _timed_batch(inputs, tmp / "ray2", config, "ray",
                              RayOptions(num_cpus=2, cpus_per_task=1))
    fixed = started + stopped
    per_item_local = local / items
    steady_one, steady_two = (one - fixed) / items, (two - fixed) / items
    # Time of the Ray run outside the items' own work (their metrics' total_s): scheduling,
    # worker start and torch import, result passing. Same run, so the machine's load cancels.
    overhead = (one - fixed - sum(r["total_s"] for r in rows_one)) / items
    # CPU cores the items' processes got (CPU time over wall): on a shared machine this, not
    # Ray, bounds the scaling.
    cores = [sum(r["cpu_s"] for r in rows_ray) / (wall - fixed)
             for rows_ray, wall in ((rows_one, one), (rows_two, two))]
    note = (f"{items} items: toy 16+4 views at {res}², {steps} fit steps, "
            f"{rows[0]['count']:,} splats; load average {load:.1f} at the start")
    out = [
        {"name": "batch: Ray start-up (init to first task done) + shutdown", "value": fixed,
         "unit": "s", "goal": "info", "note": f"init {started:.1f} s, shutdown {stopped:.1f} s;"
                                               " no dashboard, 100 MB object store"},
        {"name": "batch: Ray empty-task round trip", "value": round_trip * 1e3, "unit": "ms",
         "goal": "info", "note": "ray.get(f.remote()), warm worker"},
        {"name": "batch: per item without Ray (in-process, 1 thread)", "value": per_item_local,
         "unit": "s", "goal": "info", "note": note},
        {"name": "batch: Ray per-item overhead (outside the item's own work)",
         "value": overhead, "unit": "s", "goal": "info",
         "note": "1 task at a time: wall − start-up − Σ item times, per item; includes the "
                 "worker's one torch import"},
        {"name": "batch: items/min on Ray, 1 task at a time", "value": 60.0 / steady_one,
         "unit": "items/min", "goal": "info",
         "note": f"start-up excluded; {60.0 * items / one:.2f} items/min with it"},
        {"name": "batch: items/min on Ray, 2 tasks at a time", "value": 60.0 / steady_two,
         "unit": "items/min", "goal": "info",
         "note": f"start-up excluded; {60.0 * items / two:.2f} items/min with it"},
        {"name": "batch: scaling 2 vs 1 concurrent tasks (2 cores)",
         "value": steady_one / steady_two, "unit": "×", "goal": "info",
         "note": "same items, same run; Ray offered 2 CPUs vs 1, 1 CPU and thread per task"},
        {"name": "batch: CPU cores the tasks got, 2 vs 1 at a time", "value": cores[1] / cores[0],
         "unit": "×", "goal": "info",
         "note": f"{cores[0]:.2f} cores with 1 task, {cores[1]:.2f} with 2 (Σ item CPU time / "
                 f"wall): the machine's other load, not Ray, bounds the scaling when below 2"},
    ]
    return out + _cluster_on_paper(max(overhead, round_trip))


def _cluster_on_paper(overhead: float) -> list[dict]:
    """Items per hour on N GPUs: N / (per-item GPU time on an H200 + Ray's per-item time)."""
    rows = []
    for workload, seconds, source in _h200_item_seconds():
        per_hour = [n * 3600.0 / (seconds + overhead) for n in CLUSTER_GPUS]
        rows.append({"name": f"batch on paper: {workload}, items/hour on N H200s",
                     "value": per_hour[0], "unit": "items/h (N=1)", "goal": "info",
                     "note": ", ".join(f"N={n}: {v:,.0f}/h" for n, v in
                                       zip(CLUSTER_GPUS, per_hour))
                     + f"; {seconds:g} s per item on the GPU ({source}) + {overhead:.2f} s "
                       "Ray overhead per item measured here"})
    return rows
