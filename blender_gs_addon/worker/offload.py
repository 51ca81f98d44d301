"""Running the model somewhere else, for callers without Blender (the command line) and with it
(the scene side uses :func:`require_torch` and :func:`describe_environment`).

:func:`reconstruct_in_worker` sends a data set folder to a worker (a local Python, or a command
such as ``ssh gpu-box …``), streams its progress, and writes the splats it sends back to
``out`` only once they have arrived whole and checked: a failed, cancelled or cut-off run
leaves no file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import GSError, Report, log_report
from .client import WorkerClient
from .job_params import OUTPUT_NAME
from .protocol import JOB_DIR_PREFIX
from .transfer import dataset_bundle

__all__ = ["require_torch", "require_pycolmap_in", "describe_environment", "output_name_for",
           "reconstruct_in_worker", "STARTUP_TIMEOUT"]

STARTUP_TIMEOUT = 120.0  # seconds: first torch + CUDA import on a cold disk is slow


def require_torch(client: WorkerClient) -> None:
    """GSError (the worker closed) when the worker's Python cannot import torch."""
    if client.info.get("torch"):
        return
    why = client.info.get("torch_error", "no torch module")
    client.close()
    raise GSError(f"the worker {client.label} (Python {client.info.get('python', '?')}) cannot "
                  f"import torch ({why}); install torch in that environment or point the "
                  "add-on at one that has it")


def require_pycolmap_in(client: WorkerClient) -> None:
    """GSError when the worker's Python cannot import pycolmap (pose recovery); the worker
    stays up for other jobs."""
    if client.info.get("pycolmap"):
        return
    why = client.info.get("pycolmap_error", "no pycolmap module")
    raise GSError(f"the worker {client.label} (Python {client.info.get('python', '?')}) cannot "
                  f"import pycolmap ({why}), which recovering camera poses from photos needs; "
                  "install it there (pip install pycolmap==4.2.1)")


def describe_environment(info: dict) -> str:
    """'Python 3.11.7: torch 2.13.0, gsplat 1.5.3, CUDA yes (NVIDIA H100), pycolmap 4.2.1'
    from a hello or a ``check`` job's result."""
    cuda = f"yes ({info.get('device_name')})" if info.get("cuda") else "no"
    return (f"Python {info.get('python')}: torch {info.get('torch') or 'missing'}, "
            f"gsplat {info.get('gsplat') or 'missing'}, CUDA {cuda}, "
            f"pycolmap {info.get('pycolmap') or 'missing'}")


def output_name_for(out) -> str:
    """The worker-side file name that gives ``out``'s format (splats.spz for x.spz, …)."""
    name = Path(out).name.lower()
    suffix = ".compressed.ply" if name.endswith(".compressed.ply") else Path(name).suffix
    candidate = f"splats{suffix}"
    if not OUTPUT_NAME.fullmatch(candidate):
        raise GSError(f"{out}: the output must be a .ply, .compressed.ply, .splat or .spz file")
    return candidate


def reconstruct_in_worker(*, capture, out, params: dict, command: str | None = None,
                          python: str | None = None, progress=None,
                          report: Report = log_report) -> dict:
    """Reconstruct data set folder ``capture`` in a worker and write the splats to ``out``.

    ``params``: the reconstruct job's parameters (backend, steps, weights — a path on the
    worker's machine —, device, seed, preset, offline, dtype). ``progress(stage, fraction,
    message)`` sees upload, the model's stages and download. Returns the job's result with
    ``splats`` the written file and ``transfer`` {"payload_bytes", "upload_seconds",
    "download_seconds", "wire_bytes"}.
    """
    out = Path(out).resolve()
    name = output_name_for(out)
    bundle = dataset_bundle(capture, report=report)
    out.parent.mkdir(parents=True, exist_ok=True)
    with WorkerClient(python=python, command=command, startup_timeout=STARTUP_TIMEOUT) as client:
        require_torch(client)
        scratch = Path(tempfile.mkdtemp(prefix=JOB_DIR_PREFIX, dir=out.parent))
        try:
            wire_before = client.bytes_sent + client.bytes_received
            job = client.submit("reconstruct", {**params, "output": name}, upload=bundle,
                                download_dir=scratch)
            result = job.wait(on_event=lambda e: _forward(e, progress, report))
            if result is None:
                raise GSError("the reconstruction was cancelled")
            os.replace(result["splats"], out)  # whole and checked: now it is a result
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result["splats"] = str(out)
        result["transfer"] = {
            "payload_bytes": job.payload_bytes, "upload_seconds": job.upload_seconds,
            "download_seconds": job.download_seconds,
            "wire_bytes": client.bytes_sent + client.bytes_received - wire_before}
    return result


def _forward(event, progress, report: Report) -> None:
    if event.kind == "progress":
        if progress is not None:
            progress(event.stage, event.fraction, event.message)
    else:
        report({event.level}, event.message)
