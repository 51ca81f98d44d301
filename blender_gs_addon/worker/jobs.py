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


def _reconstruct(params: dict, folder: Path, *, progress, should_stop, log) -> tuple[dict, dict]:
    from ..reconstruction.pipeline import reconstruct

    options = dict(params)
    output = options.pop("output")
    if options["weights"] is not None:  # a path on this (the worker's) machine
        options["weights"] = os.path.expanduser(options["weights"])
    result = reconstruct(capture=str(folder / "capture"), out=str(folder / output), **options,
                         progress=progress, should_stop=should_stop,
                         report=lambda levels, msg: log(next(iter(levels)), msg))
    if result.get("cancelled"):
        raise JobCancelled()
    result.pop("splats")
    return result, {"splats": output}


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
    raise ValueError(f"no runner for job kind {kind!r}")  # job_params knows every kind
