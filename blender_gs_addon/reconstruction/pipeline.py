"""Captured views in, splats out: the reconstruction pipeline shared by the command line, the
worker and the in-process Blender operator.

Backends:
- ``fit``: per-scene 3DGS optimisation (:mod:`.fit`), from the data set's sparse points
  (``points3d.ply``, as SfM writes it) when it has them, else from random splats in the unit
  cube.
- ``lgm``: the LGM feed-forward network (:mod:`.models.lgm`) on the capture's first four
  training views, which must be the LGM rig (a capture made with ``--rig lgm``).
- ``lgm+fit``: LGM's prediction refined by the fit backend on every training view.

Photos: with ``photos=`` (a folder of photos or a video) the poses are recovered first
(:func:`..poses.recover.recover_poses`, pycolmap) into a data set folder, which is then
reconstructed like a capture; the data set's ``report.json`` gains the held-out scores.

Frames: the capture's cameras live in the normalised Blender world of the capture (the object
scaled into a unit cube at the origin). The output file is written in the 3DGS file convention
of that world (see :mod:`..conventions.frames`): imported with the default up axis it lands
in the normalised frame, and the capture's ``normalisation_transform`` maps it back onto the object.
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


def _poses_first(*, photos, capture, out_path: Path, dataset, pose_options, progress,
                 should_stop, report) -> dict:
    """Recover poses of ``photos`` into a data set folder; its report (or cancelled)."""
    from ..poses.recover import recover_poses

    if capture:
        raise GSError("give either a capture data set or photos, not both")
    folder = Path(dataset) if dataset else out_path.with_name(
        out_path.name.split(".")[0] + "_poses")
    return recover_poses(photos=photos, out=folder, **(pose_options or {}), progress=progress,
                         should_stop=should_stop, report=report)


def _points_init(dataset, config, report: Report):
    """Splats from the data set's ``points3d.ply`` (None when it has none)."""
    from ..datasets.point_cloud import POINTS_FILE, read_point_cloud
    from .fit import splats_from_points

    path = Path(dataset.root or ".") / POINTS_FILE
    if not path.is_file():
        return None
    points, colours = read_point_cloud(path)
    if len(points) < 4:
        return None
    report({"INFO"}, f"fit starts from the data set's {len(points):,} sparse points")
    return splats_from_points(points, colours, sh_degree=config.sh_degree)


def reconstruct(*, capture: str | None = None, out: str, backend: str = "fit",
                steps: int | None = None, weights: str | None = None, device: str = "auto",
                seed: int = 0, preset: str | None = None, offline: bool | None = None,
                variant: str = "big", dtype: str | None = None, photos: str | None = None,
                dataset: str | None = None, pose_options: dict | None = None,
                allow_outside_paths: bool = False, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None,
                report: Report = log_report) -> dict:
    """Reconstruct the capture folder ``capture`` (or ``photos``) and write the splats to
    ``out``.

    ``photos``: a folder of photos or a video; its poses are recovered first into the data set
    folder ``dataset`` (default: ``<out name>_poses`` beside ``out``) with ``pose_options``
    (keyword arguments of :func:`.poses.recover.recover_poses`: masks, frames, max_size, …).
    ``variant`` is the LGM preset the weights are for ("big": the published ones) and
    ``dtype`` the model's precision ("fp16", "bf16", "fp32"; default fp16 on CUDA, fp32 on
    CPU). ``should_stop`` is polled between stages (after reading, after LGM, before the
    evaluation, before writing) and at every fit step; once it says yes, nothing more is
    written and the result has ``cancelled`` True. The capture's images must lie inside its
    folder unless ``allow_outside_paths`` (see :func:`..datasets.camera_views.check_inside`).

    Returns a JSON-able dict: splats (path), count, sh_degree, backend, device, seconds,
    steps, stopped (why the fit stopped early, "" if it did not), cancelled, psnr/ssim on
    the capture's test views when it has any (:func:`held_out_metrics`: psnr None with a
    ``psnr_note`` when it is unbounded), and with photos ``poses`` (the pose report).
    """
    from ..datasets.nerf_synthetic import read_transforms

    progress = progress or (lambda stage, fraction, message: None)
    stop_requested = should_stop or (lambda: False)
    if backend not in BACKENDS:
        raise GSError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    out_path = Path(out)
    if out_path.suffix.lower() not in (".ply", ".splat", ".spz"):
        raise GSError(f"{out}: the output must be a .ply, .compressed.ply, .splat or .spz file")
    start = time.perf_counter()
    device = resolve_device(device)
    result = {"backend": backend, "device": device, "steps": 0, "stopped": "",
              "cancelled": False}
    if photos:
        poses = _poses_first(photos=photos, capture=capture, out_path=out_path,
                             dataset=dataset, pose_options=pose_options, progress=progress,
                             should_stop=stop_requested, report=report)
        if poses["cancelled"]:
            return {**result, "cancelled": True}
        capture, result["poses"] = poses["dataset"], poses
    elif not capture:
        raise GSError("nothing to reconstruct: give a capture data set or photos")
    dataset = read_transforms(capture, allow_outside_paths=allow_outside_paths, report=report)

    resolve_dtype(dtype, device)  # a bad dtype fails before any work
    if stop_requested():
        return {**result, "cancelled": True}
    init = None
    if backend in ("lgm", "lgm+fit"):
        init = _lgm_splats(dataset, weights=weights, variant=variant, dtype=dtype,
                           device=device, offline=offline, progress=progress,
                           should_stop=stop_requested, report=report)
        if init is None or stop_requested():
            return {**result, "cancelled": True}
    splats = init
    if backend in ("fit", "lgm+fit"):
        fitted = _fit(dataset, init, preset=preset, device=device, steps=steps, seed=seed,
                      progress=progress, should_stop=stop_requested, report=report)
        result.update(steps=fitted.steps_run, stopped=fitted.stopped, fit_seconds=fitted.seconds,
                      cancelled=fitted.stopped == "cancelled")
        if result["cancelled"]:
            return result
        splats = fitted.splats
    if stop_requested():  # before the evaluation
        return {**result, "cancelled": True}
    return _evaluate_and_write(splats, dataset, out_path, result, start=start, device=device,
                               poses=bool(photos), progress=progress,
                               should_stop=stop_requested, report=report)


def _fit(dataset, init, *, preset, device, steps, seed, progress: Progress, should_stop,
         report: Report):
    """The fit backend on the data set's training views (from ``init``, else its points)."""
    from .fit import fit_preset, fit_splats, views_from_dataset

    progress("load", 0.0, "loading training views")
    views = views_from_dataset(dataset.split_views("train"))
    config = fit_preset(preset or ("gpu" if device == "cuda" else "cpu"), steps=steps)
    if init is None:
        init = _points_init(dataset, config, report)

    def on_progress(p):
        progress("fit", p.step / p.steps, f"step {p.step}/{p.steps}, loss {p.loss:.4f}, "
                                          f"{p.splats:,} splats, ETA {p.eta:.0f} s")

    return fit_splats(views=views, config=config, init=init, device=device, seed=seed,
                      progress=on_progress, should_stop=should_stop, report=report)


def _evaluate_and_write(splats, dataset, out_path: Path, result: dict, *, start: float, device,
                        poses: bool, progress: Progress, should_stop, report: Report) -> dict:
    """Held-out scores (when the data set has test views), then the splat file."""
    from ..conventions.frames import splats_world_to_file
    from ..formats import write_splats
    from .evaluate import evaluate_splats

    if dataset.split_views("test"):
        progress("eval", 0.0, "evaluating on held-out views")
        result.update(held_out_metrics(evaluate_splats(splats, dataset, split="test",
                                                       device=device)))
    if should_stop():  # before writing: a cancelled job leaves no output behind
        return {**result, "cancelled": True}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_splats(out_path, splats_world_to_file(splats), report=report)
    result.update(splats=str(out_path.resolve()), count=splats.count,
                  sh_degree=splats.sh_degree, seconds=time.perf_counter() - start,
                  normalisation=dataset.normalisation.tolist())
    if poses:
        from ..poses.recover import update_report

        scores = {key: result[key] for key in ("psnr", "ssim", "test_views", "splats", "steps")
                  if key in result}
        scores["seconds"] = {**result["poses"].get("seconds", {}),
                             "fit": round(result.get("fit_seconds", 0.0), 3)}
        result["poses"] = {**result.get("poses", {}), **update_report(dataset.root, scores)}
    progress("done", 1.0, f"{splats.count:,} splats written to {out_path}")
    return result
