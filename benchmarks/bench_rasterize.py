"""Timing of the pure-torch CPU rasterizer (blender_gs_addon.render.rasterize).

``run() -> dict`` returns figures for docs/benchmarks.md; ``python benchmarks/bench_rasterize.py``
prints them. Scene: N Gaussians uniform in [−1, 1]³, scales 0.01–0.06 (log-uniform), random
rotations, opacities 0.1–0.9, one camera at distance 4 with a 50° field of view (as in
shared/reference/gsplat-cpu.md), 2 torch threads, minimum over repeats.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _scene(n: int, size: int, seed: int = 0):
    import torch

    from blender_gs_addon.render.cameras import intrinsics_from_fov

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


def _time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def run(*, cases=((1_000, 128), (10_000, 128), (100_000, 128), (10_000, 256)),
        repeats: int = 5, threads: int = 2) -> dict:
    """Forward and forward+backward times (ms) and composited pair counts per case."""
    import torch

    from blender_gs_addon.render.rasterize import rasterize

    torch.set_num_threads(threads)
    figures = {"threads": threads}
    for n, size in cases:
        params, cams = _scene(n, size)
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}

        def forward():
            with torch.no_grad():
                return rasterize(**params, **cams)

        def forward_backward():
            out = rasterize(**leaves, **cams)
            (out.colors.sum() + out.alphas.sum()).backward()
            return out

        forward_backward()  # warm-up
        key = f"N={n} {size}x{size}"
        figures[f"{key} forward ms"] = round(_time(forward, repeats), 1)
        figures[f"{key} forward+backward ms"] = round(_time(forward_backward, repeats), 1)
        figures[f"{key} pairs"] = forward().meta["n_pairs"]
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value}")
