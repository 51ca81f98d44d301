"""Captured views in, splats out: the reconstruction pipeline shared by the command line, the
worker and the in-process Blender operator.

Backends:
- ``fit``: per-scene 3DGS optimisation (:mod:`.fit`) from random splats in the unit cube.
- ``lgm``: the LGM feed-forward network (:mod:`.models.lgm`) on the capture's first four
  training views, which must be the LGM rig (a capture made with ``--rig lgm``).
- ``lgm+fit``: LGM's prediction refined by the fit backend on every training view.

Frames: the capture's cameras live in the normalised Blender world of the capture (the object
scaled into a unit cube at the origin). The output file is written in the 3DGS file convention
of that world (see :mod:`..conventions.frames`): imported with the default up axis it lands in the
normalised frame, and the capture's ``normalisation_transform`` maps it back onto the object.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from ..devices import resolve_device, resolve_dtype
from ..errors import GSError, Report, log_report

__all__ = ["BACKENDS", "reconstruct", "held_out_metrics", "held_out_summary"]

BACKENDS = ("fit", "lgm", "lgm+fit")

# Models stay loaded between jobs of a warm worker, keyed by what makes them differ: weights
# file (path, size, modification time: a replaced file is reloaded), variant, device, dtype.
# One entry at most, so two models never share the device's memory.
_MODEL_CACHE: dict = {}

Progress = Callable[[str, float, str], None]


def _lgm_splats(dataset, *, weights, variant, dtype, device, offline, progress: Progress,
                should_stop, report: Report):
    import numpy as np

    from ..datasets.camera_views import load_view_image
    from ..models.lgm_io import check_lgm_rig, predict_splats
    from ..models.weights import load_lgm, resolve_lgm_weights

    views = dataset.split_views("train")[:4]
    if len(views) < 4:
        raise GSError(f"{dataset.root}: LGM needs 4 training views (the LGM rig); the capture "
                      f"has {len(dataset.split_views('train'))}")
    fovy = math.degrees(2.0 * math.atan(views[0].height / (2.0 * views[0].fy)))
    # The cheap checks first: a wrong rig should not wait for 830 MB of weights.
    check_lgm_rig(np.stack([v.camera_to_world for v in views]), names=[v.name for v in views],
                  source=str(dataset.root), fovy_deg=fovy)
    images = [load_view_image(v) for v in views]
    progress("lgm", 0.05, "loading LGM weights")
    path = resolve_lgm_weights(weights, offline=offline, report=report)
    torch_dtype = resolve_dtype(dtype, device)
    info = path.stat()
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns, variant, device, str(torch_dtype))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()  # one model on the device at a time
        _MODEL_CACHE[key] = load_lgm(path, variant=variant, device=device, dtype=torch_dtype,
                                     report=report)
    model = _MODEL_CACHE[key]
    if should_stop():  # loading big weights takes seconds: look again before the forward
        return None
    progress("lgm", 0.4, "running LGM")
    splats = predict_splats(
        model, images,
        np.stack([v.camera_to_world for v in views]), names=[v.name for v in views],
        source=str(dataset.root), fovy_deg=fovy, report=report,
    )
    progress("lgm", 1.0, f"LGM predicted {splats.count:,} splats")
    return splats


def held_out_metrics(metrics: dict) -> dict:
    """psnr / ssim / test_views of :func:`~.evaluate.evaluate_splats`' result, as JSON holds
    them: an unbounded PSNR (render and ground truth identical) is None, with ``psnr_note``
    saying why."""
    psnr = metrics["psnr"]
    out = {"psnr": psnr, "ssim": metrics["ssim"], "test_views": metrics["views"]}
    if not math.isfinite(psnr):
        out["psnr"] = None
        out["psnr_note"] = ("the held-out views see no splats" if not metrics.get("coverage")
                            else "the held-out views are matched exactly")
    return out


def held_out_summary(result: dict) -> str:
    """'held-out PSNR 31.20 dB' / 'held-out PSNR n/a (the held-out views see no splats)', or
    "" without held-out views."""
    if "psnr" not in result:
        return ""
    if result["psnr"] is None:
        return f"held-out PSNR n/a ({result.get('psnr_note') or 'not a finite number'})"
    return f"held-out PSNR {result['psnr']:.2f} dB"


def reconstruct(*, capture: str, out: str, backend: str = "fit", steps: int | None = None,
                weights: str | None = None, device: str = "auto", seed: int = 0,
                preset: str | None = None, offline: bool | None = None,
                variant: str = "big", dtype: str | None = None,
                allow_outside_paths: bool = False,
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                report: Report = log_report) -> dict:
    """Reconstruct the capture folder ``capture`` and write the splats to ``out``.

    ``variant`` is the LGM preset the weights are for ("big": the published ones) and
    ``dtype`` the model's precision ("fp16", "bf16", "fp32"; default fp16 on CUDA, fp32 on
    CPU). ``should_stop`` is polled between stages (after reading, after LGM, before the
    evaluation, before writing) and at every fit step; once it says yes, nothing more is
    written and the result has ``cancelled`` True. The capture's images must lie inside its
    folder unless ``allow_outside_paths`` (see :func:`.datasets.camera_views.check_inside`).

    Returns a JSON-able dict: splats (path), count, sh_degree, backend, device, seconds,
    steps, stopped (why the fit stopped early, "" if it did not), cancelled, and psnr/ssim on
    the capture's test views when it has any (:func:`held_out_metrics`: psnr None with a
    ``psnr_note`` when it is unbounded).
    """
    from ..conventions.frames import splats_world_to_file
    from ..datasets.nerf_synthetic import read_transforms
    from ..formats import write_splats
    from .evaluate import evaluate_splats
    from .fit import fit_preset, fit_splats, views_from_dataset

    progress = progress or (lambda stage, fraction, message: None)
    stop_requested = should_stop or (lambda: False)
    if backend not in BACKENDS:
        raise GSError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    out_path = Path(out)
    if out_path.suffix.lower() not in (".ply", ".splat", ".spz"):
        raise GSError(f"{out}: the output must be a .ply, .compressed.ply, .splat or .spz file")
    start = time.perf_counter()
    dataset = read_transforms(capture, allow_outside_paths=allow_outside_paths, report=report)
    device = resolve_device(device)
    result = {"backend": backend, "device": device, "steps": 0, "stopped": "",
              "cancelled": False}

    resolve_dtype(dtype, device)  # a bad dtype fails before any work
    if stop_requested():
        result["cancelled"] = True
        return result

    init = None
    if backend in ("lgm", "lgm+fit"):
        init = _lgm_splats(dataset, weights=weights, variant=variant, dtype=dtype,
                           device=device, offline=offline, progress=progress,
                           should_stop=stop_requested, report=report)
        if init is None or stop_requested():
            result["cancelled"] = True
            return result
    splats = init
    if backend in ("fit", "lgm+fit"):
        progress("load", 0.0, "loading training views")
        views = views_from_dataset(dataset.split_views("train"))
        config = fit_preset(preset or ("gpu" if device == "cuda" else "cpu"), steps=steps)

        def on_progress(p):
            progress("fit", p.step / p.steps, f"step {p.step}/{p.steps}, loss {p.loss:.4f}, "
                                              f"{p.splats:,} splats, ETA {p.eta:.0f} s")

        fitted = fit_splats(views=views, config=config, init=init, device=device, seed=seed,
                            progress=on_progress, should_stop=stop_requested, report=report)
        result.update(steps=fitted.steps_run, stopped=fitted.stopped,
                      cancelled=fitted.stopped == "cancelled")
        if result["cancelled"]:
            return result
        splats = fitted.splats
    if stop_requested():  # before the evaluation
        result["cancelled"] = True
        return result

    if dataset.split_views("test"):
        progress("eval", 0.0, "evaluating on held-out views")
        result.update(held_out_metrics(evaluate_splats(splats, dataset, split="test",
                                                       device=device)))
    if stop_requested():  # before writing: a cancelled job leaves no output behind
        result["cancelled"] = True
        return result
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_splats(out_path, splats_world_to_file(splats), report=report)
    result.update(splats=str(out_path.resolve()), count=splats.count,
                  sh_degree=splats.sh_degree, seconds=time.perf_counter() - start,
                  normalisation=dataset.normalisation.tolist())
    progress("done", 1.0, f"{splats.count:,} splats written to {out_path}")
    return result
