"""Timing of the pure-torch CPU rasterizer (blender_gs_addon.render.rasterize.rasterize).

``run(quick) -> list[dict]`` rows for benchmarks/run_benchmarks.py; ``python
benchmarks/bench_rasterize.py [--quick]`` prints them. Scene (as in
shared/reference/gsplat-cpu.md): N Gaussians uniform in [−1, 1]³, scales 0.01–0.06
(log-uniform), random rotations, opacities 0.1–0.9, one camera at distance 4 with a 50° field of
view, 2 torch threads; each figure is the minimum over repeats (the machine may be shared).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

THREADS = 2


def _scene(n: int, size: int, seed: int = 0):
    import torch

    from blender_gs_addon.conventions.intrinsics import intrinsics_from_fov

    gen = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.rand(n, 3, generator=gen) * 2 - 1,
        "quats": torch.randn(n, 4, generator=gen),
        "scales": torch.exp(torch.rand(n, 3, generator=gen) * math.log(6.0)) * 0.01,
        "opacities": torch.rand(n, generator=gen) * 0.8 + 0.1,
        "colors": torch.rand(n, 3, generator=gen),
    }
    viewmat = torch.eye(4)[None].clone()
    viewmat[0, 2, 3] = 4.0
    ks = torch.tensor(intrinsics_from_fov(width=size, height=size, fov_x=math.radians(50)),
                      dtype=torch.float32)[None]
    return params, {"viewmats": viewmat, "Ks": ks, "width": size, "height": size}


def _best_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    best = math.inf
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best * 1000.0


def _measure(n: int, size: int, repeats: int, clock=time.perf_counter) -> dict:
    import torch

    from blender_gs_addon.render.rasterize import rasterize

    params, cams = _scene(n, size)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}

    def forward():
        with torch.no_grad():
            return rasterize(**params, **cams)

    def forward_backward():
        out = rasterize(**leaves, **cams)
        (out.colors.sum() + out.alphas.sum() + 0.1 * out.depths.sum()).backward()

    forward_backward()  # warm-up (allocator, lazy imports)
    return {"forward": _best_ms(forward, repeats, clock),
            "forward+backward": _best_ms(forward_backward, repeats, clock),
            "pairs": forward().meta["n_pairs"]}


def run(quick: bool = False) -> list[dict]:
    import torch

    torch.set_num_threads(THREADS)
    cases = [(1_000, 128), (10_000, 128)] if quick else [
        (1_000, 128), (10_000, 128), (100_000, 128), (10_000, 256)]
    repeats = 3 if quick else 7
    rows = []
    for n, size in cases:
        m = _measure(n, size, repeats)
        label = f"N={n:,} at {size}×{size}"
        note = f"{THREADS} threads, {m['pairs']:,} composited (Gaussian, pixel) pairs"
        goal = "≤ 100 ms" if (n, size) == (10_000, 128) else ""
        rows.append({"name": f"rasterize forward, {label}", "value": round(m["forward"], 1),
                     "unit": "ms", "goal": "", "note": note})
        rows.append({"name": f"rasterize forward+backward, {label}",
                     "value": round(m["forward+backward"], 1), "unit": "ms", "goal": goal,
                     "note": note})
    # Process CPU time on one thread: stable even when other jobs share the cores (two-thread
    # wall times swing by 2× or more on a busy machine: every parallel op waits for both).
    torch.set_num_threads(1)
    m = _measure(10_000, 128, repeats, clock=time.process_time)
    rows.append({"name": "rasterize forward+backward, N=10,000 at 128×128, 1 thread CPU time",
                 "value": round(m["forward+backward"], 1), "unit": "ms", "goal": "",
                 "note": "process CPU time, not wall"})
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']}: {row['value']} {row['unit']}  (goal {row['goal'] or '—'}; "
              f"{row['note']})")
