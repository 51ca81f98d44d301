"""The CUDA checks and figures, run on a machine with an NVIDIA GPU (no Blender needed).

    python benchmarks/cuda_checks.py --captures DIR --out RESULTS.json [--budget-s 480]

``DIR`` holds capture data sets made beforehand with the ``capture`` command (Blender is not
needed on the GPU machine): ``toy128`` and ``toy256`` (sphere rig, 32 train + 8 test views) and
``toy_lgm`` (the LGM rig, 4 views at 256² + 8 test views). Stages, each written to the JSON as
soon as it ends so a run cut short keeps what it measured:

1. gsplat's CUDA extension is JIT-compiled in a background process (it takes minutes) while
2. the LGM "big" network runs on the GPU with random weights: forward time at fp16 and bf16
   (batch 1, 4×256², best of 10 after warm-up), peak memory, and the fp16/bf16 output against
   fp32 on the same weights; then the real loader reads random weights saved as safetensors
   and the ``lgm`` backend reconstructs ``toy_lgm`` end to end.
3. the CUDA test of tests/test_rasterize.py (our torch path against gsplat, values and
   gradients), and forward+backward times of gsplat against our torch path on the same GPU.
4. the fit backend with gsplat: the CPU preset on ``toy128`` (compare with the CPU figures in
   docs/benchmarks.md) and the GPU preset, shortened to the time left, on ``toy256``.

``benchmarks/run_benchmarks.py --cuda-json RESULTS.json`` turns the JSON into the ``cuda``
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class Results:
    def __init__(self, path: Path):
        self.path = path
        self.data = {"rows": [], "errors": [], "started": time.time()}

    def row(self, name, value, unit="", goal="", note=""):
        self.data["rows"].append({"name": name, "value": value, "unit": unit, "goal": goal,
                                  "note": note})
        print(f"  {name}: {value} {unit} {note}", flush=True)
        self.save()

    def set(self, key, value):
        self.data[key] = value
        self.save()

    def error(self, stage):
        text = traceback.format_exc()
        print(text, flush=True)
        self.data["errors"].append({"stage": stage, "traceback": text[-3000:]})
        self.save()

    def save(self):
        self.path.write_text(json.dumps(self.data, indent=1))


def _cuda_time(fn, *, repeats: int, warmup: int = 2) -> float:
    """Best wall time of ``fn`` in seconds with the GPU synchronised around it."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def stage_lgm(res: Results) -> dict:
    """Forward times; returns the fp16 random weights for the loader stage."""
    import torch

    from blender_gs_addon.models.lgm import build_lgm

    torch.manual_seed(0)
    model32 = build_lgm("big", device="cuda", dtype=torch.float32)
    views = torch.randn(1, 4, 9, 256, 256, device="cuda")
    with torch.inference_mode():
        ref = model32(views).float()
        t32 = _cuda_time(partial(model32, views), repeats=5)
    res.row("LGM big: forward CUDA fp32, batch 1, 4×256²", t32, "s")
    state = {k: v.detach().half().contiguous() for k, v in model32.state_dict().items()}
    del model32
    torch.cuda.empty_cache()
    for dtype, label in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
        model = build_lgm("big", device="cuda", dtype=dtype)
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
        x = views.to(dtype)
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            out = model(x).float()
            seconds = _cuda_time(partial(model, x), repeats=10)
        peak = torch.cuda.max_memory_allocated() / 2**30
        finite = bool(torch.isfinite(out).all())
        err = (out - ref).abs()
        rel = float(err.max() / ref.abs().max().clamp_min(1e-12))
        res.row(f"LGM big: forward CUDA {label}, batch 1, 4×256²", seconds, "s",
                "≤ 0.035 s on an H200" if label == "fp16" else "",
                f"peak {peak:.2f} GiB; vs fp32: max |Δ| {float(err.max()):.3g} "
                f"(rel {rel:.2g}), mean |Δ| {float(err.mean()):.3g}, finite {finite}")
        del model
        torch.cuda.empty_cache()

    return state


def stage_lgm_reconstruct(res: Results, captures: Path, tmp: Path, state: dict) -> None:
    from safetensors.torch import save_file

    from blender_gs_addon.reconstruction.pipeline import reconstruct

    weights = tmp / "lgm_random.safetensors"
    save_file(state, str(weights))
    res.row("LGM random-weight checkpoint written", weights.stat().st_size / 2**20, "MiB",
            note="fp16, the published key layout")
    for attempt in ("cold", "warm"):
        start = time.perf_counter()
        out = reconstruct(capture=str(captures / "toy_lgm"), out=str(tmp / "lgm.ply"),
                          backend="lgm", weights=str(weights), device="cuda", seed=0,
                          offline=True, report=lambda *a: None)
        res.row(f"reconstruct --backend lgm on CUDA ({attempt}: load + predict + eval + write)",
                time.perf_counter() - start, "s",
                note=f"{out['count']:,} splats; random weights, so PSNR means nothing")


def _render_step(params, cams, backend):
    from blender_gs_addon.render.rasterize import rasterize

    out = rasterize(**params, **cams, backend=backend)
    (out.colors.sum() + out.alphas.sum()).backward()


def stage_gsplat(res: Results) -> None:
    import torch
    from bench_rasterize import _scene

    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_rasterize.py"], cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    res.set("pytest_rasterize", tail)
    res.row("tests/test_rasterize.py on the GPU machine (incl. torch path vs gsplat CUDA)",
            proc.returncode, "exit", "0", tail[-1] if tail else "")

    for n, size in ((10_000, 128), (100_000, 512), (1_000_000, 1024)):
        params, cams = _scene(n, size)
        params = {k: v.cuda().requires_grad_(True) for k, v in params.items()}
        cams = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in cams.items()}
        times = {}
        for backend in ("gsplat", "torch"):
            if backend == "torch" and n > 100_000:
                continue

            times[backend] = _cuda_time(partial(_render_step, params, cams, backend), repeats=5)
        note = f"{n:,} splats at {size}²"
        res.row(f"rasterize fwd+bwd CUDA gsplat, N={n:,} at {size}²", times["gsplat"] * 1e3,
                "ms", note=note)
        if "torch" in times:
            res.row(f"rasterize fwd+bwd CUDA torch path, N={n:,} at {size}²",
                    times["torch"] * 1e3, "ms",
                    note=f"{times['torch'] / times['gsplat']:.1f}× gsplat's time")


def stage_fit(res: Results, captures: Path, tmp: Path, deadline: float) -> None:
    from blender_gs_addon.reconstruction.pipeline import reconstruct

    out = reconstruct(capture=str(captures / "toy128"), out=str(tmp / "fit_cpu_preset.ply"),
                      backend="fit", device="cuda", preset="cpu", seed=0,
                      report=lambda *a: None)
    res.row("fit CUDA+gsplat, CPU preset (1500 steps), toy 32 views 128²: held-out PSNR",
            out["psnr"], "dB", "≥ 28", f"SSIM {out['ssim']:.4f}, {out['count']:,} splats")
    res.row("fit CUDA+gsplat, CPU preset: wall time", out["seconds"], "s",
            note=f"{out['steps'] / out['seconds']:.0f} steps/s incl. load/eval/write")
    left = deadline - time.time()
    # Measured rate × time left, with room for evaluation and writing.
    rate = out["steps"] / out["seconds"]
    steps = int(min(30_000, max(1000, rate * (left - 40) * 0.8)) // 500 * 500)
    if left < 60:
        res.row("fit CUDA, GPU preset", None, note="skipped: out of time")
        return
    out = reconstruct(capture=str(captures / "toy256"), out=str(tmp / "fit_gpu_preset.ply"),
                      backend="fit", device="cuda", preset="gpu", steps=steps, seed=0,
                      report=lambda *a: None)
    res.row(f"fit CUDA+gsplat, GPU preset ({steps} steps), toy 32 views 256²: held-out PSNR",
            out["psnr"], "dB", "", f"SSIM {out['ssim']:.4f}, {out['count']:,} splats, "
            f"{out['seconds']:.1f} s, stopped: {out['stopped'] or 'no'}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--captures", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=420)
    args = parser.parse_args()
    start = time.time()
    deadline = start + args.budget_s
    res = Results(Path(args.out))
    captures = Path(args.captures).resolve()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "gs_cuda_checks"
    tmp.mkdir(parents=True, exist_ok=True)

    import numpy
    import torch
    from run_benchmarks import machine

    res.set("machine", machine())
    res.set("versions", {"torch": torch.__version__, "cuda": torch.version.cuda,
                         "numpy": numpy.__version__, "python": sys.version.split()[0]})
    print(res.data["machine"], res.data["versions"], flush=True)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1

    build_log = Path(args.out).with_name("gsplat_build.log")
    # One extension cache for the build below and the pytest run (conftest only sets a default).
    os.environ["TORCH_EXTENSIONS_DIR"] = str(tmp / "torch_extensions")
    env = {**os.environ, "MAX_JOBS": str(os.cpu_count() or 8),
           "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0")}
    build_start = time.time()
    build = subprocess.Popen(
        [sys.executable, "-c", "from gsplat.cuda._backend import _C; assert _C is not None"],
        stdout=build_log.open("w"), stderr=subprocess.STDOUT, env=env)

    print("== lgm", flush=True)
    state = None
    try:
        state = stage_lgm(res)
    except Exception:
        res.error("lgm")

    print("== gsplat build", flush=True)
    try:
        code = build.wait(timeout=max(10.0, deadline - time.time() - 120))
    except subprocess.TimeoutExpired:
        build.kill()
        code = "timeout"
    res.row("gsplat 1.5.3 CUDA extension JIT build (first use)", time.time() - build_start, "s",
            note=f"exit {code}; MAX_JOBS={env['MAX_JOBS']}, arch {env['TORCH_CUDA_ARCH_LIST']}")
    os.environ.update(MAX_JOBS=env["MAX_JOBS"], TORCH_CUDA_ARCH_LIST=env["TORCH_CUDA_ARCH_LIST"])
    if code != 0:  # the eval below renders with gsplat: no point going on without it
        return 0
    # The evaluation inside reconstruct renders with gsplat, hence after the build.
    print("== lgm reconstruct", flush=True)
    try:
        if state is not None:
            stage_lgm_reconstruct(res, captures, tmp, state)
            del state
    except Exception:
        res.error("lgm reconstruct")

    print("== rasterize", flush=True)
    try:
        stage_gsplat(res)
    except Exception:
        res.error("rasterize")
    print("== fit", flush=True)
    try:
        stage_fit(res, captures, tmp, deadline)
    except Exception:
        res.error("fit")
    res.set("seconds", time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
