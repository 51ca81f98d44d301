"""LGM big forward time with random weights: CPU fp32 and, where there is one, CUDA fp16.

Batch 1, four views. The full 4×256² CPU forward (~0.9 TMAC) takes minutes on a small machine;
``quick`` measures 4×64² instead (1/16 of the work) and says so in the row.
"""

from __future__ import annotations

import time


def _time_forward(model, views, *, repeats: int, sync=None) -> float:
    """Best of ``repeats`` timed forwards (the first CUDA call includes kernel selection)."""
    import torch

    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            model(views)
            if sync is not None:
                sync()
            best = min(best, time.perf_counter() - start)
    return best


def run(quick: bool = False) -> list[dict]:
    import torch

    from blender_gs_addon.models.lgm import build_lgm

    rows = []
    size = 64 if quick else 256
    start = time.perf_counter()
    model = build_lgm("big", device="cpu", dtype=torch.float32)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    rows.append({"name": "LGM big: build with random init (CPU)", "value": build_s, "unit": "s",
                 "goal": "info", "note": f"{params:,} parameters"})
    views = torch.randn(1, 4, 9, size, size)
    cpu_s = _time_forward(model, views, repeats=1)
    rows.append({"name": f"LGM big: forward CPU fp32, batch 1, 4×{size}²", "value": cpu_s,
                 "unit": "s", "goal": "info",
                 "note": f"{torch.get_num_threads()} threads; "
                         + ("quick: 1/16 of the real input" if quick else "random weights")})
    del model

    if torch.cuda.is_available():
        device = torch.device("cuda")
        model = build_lgm("big", device=device, dtype=torch.float16)
        views = torch.randn(1, 4, 9, 256, 256, device=device, dtype=torch.float16)
        _time_forward(model, views, repeats=2, sync=torch.cuda.synchronize)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        cuda_s = _time_forward(model, views, repeats=10, sync=torch.cuda.synchronize)
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append({"name": "LGM big: forward CUDA fp16, batch 1, 4×256²", "value": cuda_s,
                     "unit": "s", "goal": "≤ 0.035 s on an H200",
                     "note": f"{torch.cuda.get_device_name(0)}, peak {peak:.2f} GiB"})
    else:
        rows.append({"name": "LGM big: forward CUDA fp16, batch 1, 4×256²", "value": None,
                     "unit": "s", "goal": "≤ 0.035 s on an H200",
                     "note": "no CUDA device on this machine; measured on an H200: see the cuda "
                             "section (13 ms)"})
    return rows


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
