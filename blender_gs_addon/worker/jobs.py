"""What the worker does for each job kind, inside the job's private scratch folder.

:func:`run_job` gets parameters already checked by :mod:`.job_params` and the folder the job's
input bundle was written to, and returns ``(outputs, files)``: the JSON result and the output
files to send back (output name → path relative to the folder). Weights and devices are
resolved here, on the worker's side.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

__all__ = ["JobCancelled", "environment", "run_job"]


class JobCancelled(Exception):
    """The job saw the cancel flag and stopped."""


def environment() -> dict:
    """This Python's torch / CUDA / gsplat, for the hello and the ``check`` job."""
    info = {"python": platform.python_version(), "torch": None, "cuda": False, "gsplat": None,
            "device_name": None}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = bool(torch.cuda.is_available())
        if info["cuda"]:
            info["device_name"] = torch.cuda.get_device_name(0)
    except Exception as err:  # an unusable torch is a fact to report, not a crash
        info["torch_error"] = f"{type(err).__name__}: {err}"
    try:
        import gsplat

        info["gsplat"] = gsplat.__version__
    except Exception as err:
        info["gsplat_error"] = f"{type(err).__name__}: {err}"
    info["pycolmap"] = None  # pose recovery (the photos job)
    try:
        import pycolmap

        info["pycolmap"] = pycolmap.__version__
    except Exception as err:
        info["pycolmap_error"] = f"{type(err).__name__}: {err}"
    return info


def _wait(params: dict, *, progress, should_stop) -> dict:
    seconds = params["seconds"]
    # cancellable=False stands for a step that cannot be interrupted (a network forward):
    # what the client's grace period and terminate are for.
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        if params["cancellable"] and should_stop():
            raise JobCancelled()
        progress("wait", min(1.0, elapsed / seconds), f"{elapsed:.1f} s")
        time.sleep(0.02)
    return {"waited": seconds}


def _render(params: dict, folder: Path, *, progress) -> tuple[dict, dict]:
    # One exact still (the render engine's F12 when Blender's Python has no torch).
    from ..formats import read_splats
    from ..render.still import render_still, write_still

    progress("render", 0.0, "rendering")
    still = render_still(read_splats(folder / "splats.ply"), viewmat=params["viewmat"],
                         K=params["K"], width=params["width"], height=params["height"],
                         device=params["device"])
    write_still(folder / "still.npz", still)
    return {"width": params["width"], "height": params["height"]}, {"still": "still.npz"}


def _run_pipeline(folder: Path, output: str, options: dict, *, progress, should_stop,
                  report) -> dict:
    """reconstruct() writing ``folder/output``; JobCancelled when it was cancelled."""
    from ..reconstruction.pipeline import reconstruct

    result = reconstruct(out=str(folder / output), **options, progress=progress,
                         should_stop=should_stop, report=report)
    if result.get("cancelled"):
        raise JobCancelled()
    result.pop("splats")
    return result


def _reconstruct(params: dict, folder: Path, *, progress, should_stop, log) -> tuple[dict, dict]:
    options = dict(params)
    output = options.pop("output")
    if options["weights"] is not None:  # a path on this (the worker's) machine
        options["weights"] = os.path.expanduser(options["weights"])
    result = _run_pipeline(folder, output, {**options, "capture": str(folder / "capture")},
                           progress=progress, should_stop=should_stop,
                           report=lambda levels, msg: log(next(iter(levels)), msg))
    return result, {"splats": output}


def _photos(params: dict, folder: Path, *, progress, should_stop, log) -> tuple[dict, dict]:
    # Poses, then the fit; the data set (images, transforms, points, report.json, the COLMAP
    # model) goes back as the folder dataset/ beside the splats.
    from ..errors import GSError
    from .job_params import POSE_PARAMS

    options = dict(params)
    output, source = options.pop("output"), options.pop("source")
    labels = [(str(folder / name), label) for name, label in (
        (source, options.pop("photos_label")), ("masks", options.pop("masks_label")))
        if label]

    def named(text: str) -> str:  # the sender's names for the job's own paths
        for path, label in labels:
            text = text.replace(path, label)
        return text

    pose_options = {name: options.pop(name) for name in POSE_PARAMS}
    if options.pop("masks"):
        pose_options["masks"] = str(folder / "masks")
    try:
        result = _run_pipeline(
            folder, output, {**options, "photos": str(folder / source), "backend": "fit",
                             "dataset": str(folder / "dataset"), "pose_options": pose_options},
            progress=lambda stage, fraction, text: progress(stage, fraction, named(text)),
            should_stop=should_stop,
            report=lambda levels, msg: log(next(iter(levels)), named(msg)))
    except GSError as err:
        raise GSError(named(str(err))) from None
    result["poses"]["source"] = named(result["poses"]["source"])
    return result, {"splats": output, "dataset": "dataset/"}


def run_job(kind: str, params: dict, folder: Path, *, progress, should_stop,
            log) -> tuple[dict, dict]:
    """Run one checked job in ``folder``; (outputs, {output name: relative file path})."""
    if kind == "check":
        return environment(), {}
    if kind == "wait":
        return _wait(params, progress=progress, should_stop=should_stop), {}
    if kind == "render":
        return _render(params, folder, progress=progress)
    if kind == "reconstruct":
        return _reconstruct(params, folder, progress=progress, should_stop=should_stop,
                            log=log)
    if kind == "photos":
        return _photos(params, folder, progress=progress, should_stop=should_stop, log=log)
    raise ValueError(f"no runner for job kind {kind!r}")  # job_params knows every kind
