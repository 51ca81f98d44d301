"""Where the reconstruction model runs, and the lifecycle of the worker process that runs it.

- :func:`use_in_process` decides, from the preferences' execution mode, whether the model runs in
  Blender's own Python (torch imports there) or in the worker
  (:mod:`blender_gs_addon.worker.client`); :func:`worker_launch` says how that worker starts:
  on the local Python the preferences point to (:func:`worker_python`) or through their worker
  command (``ssh gpu-box …``: a remote GPU machine; everything travels over the pipe).
- The worker stays warm between jobs (models stay loaded): :func:`get_worker` /
  :func:`warm_worker` / :func:`start_worker` hand out the one warm worker, starting it on first
  use; :func:`stop_worker` stops it (add-on unregister, interpreter exit), and it exits by
  itself when Blender dies.
- :func:`release_job` cancels a worker job without blocking the caller: the cooperative request
  goes out at once, the grace period (:data:`CANCEL_GRACE`) and terminating the worker if the
  job outlives it run on the worker's owner thread.
- :func:`check_environment` is the preferences' *Check Worker* button.
- :func:`sweep_once` removes day-old job folders once per Blender session.
"""

from __future__ import annotations

import atexit
import os
import shlex
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import bpy

from ..blender_gs_addon.devices import torch_available, torch_unavailable_reason
from ..blender_gs_addon.errors import GSError
from ..blender_gs_addon.poses.packages import pycolmap_available, pycolmap_unavailable_reason
from ..blender_gs_addon.worker.offload import STARTUP_TIMEOUT, describe_environment, require_torch
from ..preferences import DEFAULTS, Settings

__all__ = [
    "WORKER_STARTUP_TIMEOUT", "CANCEL_GRACE", "use_in_process", "worker_python",
    "worker_launch", "get_worker",
    "warm_worker", "start_worker", "current_worker", "release_job", "stop_worker",
    "sweep_once", "check_environment",
]

WORKER_STARTUP_TIMEOUT = STARTUP_TIMEOUT  # seconds: first torch + CUDA import is slow
CANCEL_GRACE = 1.0              # seconds a worker job gets to stop before the worker is killed


# ------------------------------------------------------------------------ where the model runs
def use_in_process(settings: Settings, *, photos: bool = False) -> bool:
    """Decide, from the preferences' execution mode (AUTO / IN_PROCESS / SUBPROCESS), whether
    the model runs in Blender's own Python (torch imports there) or in the worker.

    AUTO runs in Blender's Python when torch imports there, except when a Worker Command is set:
    someone who configured a remote worker (usually a GPU box) means it to be used. With
    ``photos`` (pose recovery first) Blender's Python also needs pycolmap: AUTO goes to the
    worker without it, IN_PROCESS says so."""
    mode = settings.execution
    if mode == "SUBPROCESS":
        return False
    if mode == "IN_PROCESS":
        if not torch_available():
            raise GSError(f"the add-on is set to run the model inside Blender, but "
                          f"{torch_unavailable_reason() or 'torch is unavailable'} (Python "
                          f"{sys.version.split()[0]}); choose 'Worker Process' or 'Automatic' "
                          "in the add-on preferences and point it at a Python with torch")
        if photos and not pycolmap_available():
            raise GSError(f"the add-on is set to run the model inside Blender, but pose "
                          f"recovery needs pycolmap and {pycolmap_unavailable_reason()}; "
                          "choose 'Worker Process' or 'Automatic' in the add-on preferences "
                          "(the worker's Python needs pycolmap)")
        return True
    if mode != "AUTO":
        raise GSError(f"unknown execution mode {mode!r}; choose AUTO, IN_PROCESS or SUBPROCESS")
    if getattr(settings, "worker_command", "").strip():
        return False
    return torch_available() and (not photos or pycolmap_available())


def worker_python(settings: Settings) -> str:
    """The worker's interpreter: the preference (``~`` and Blender's ``//`` expanded), else this
    Python."""
    path = settings.worker_python.strip()
    if not path:
        return sys.executable
    return os.path.abspath(os.path.expanduser(bpy.path.abspath(path)))


def worker_launch(settings: Settings) -> dict:
    """How the worker starts: {"command": …} when the preferences give a worker command (a
    remote machine through ssh), else {"python": :func:`worker_python`}; the keyword arguments
    of :class:`~blender_gs_addon.worker.client.WorkerClient`."""
    command = settings.worker_command.strip()
    return {"command": command} if command else {"python": worker_python(settings)}


# ---------------------------------------------------------------------------- the warm worker
_WORKER: dict = {"client": None}
_WORKER_LOCK = threading.Lock()
# The worker asks Linux to stop it when its parent dies (PR_SET_PDEATHSIG), and "parent" there
# means the THREAD that started it: a worker started from a short-lived thread is killed when
# that thread ends. So workers are started from one long-lived thread (its start-up, with the
# torch import, must not block Blender's main thread either).
_OWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gs-worker-owner")


def get_worker(launch: dict):
    """The warm worker started as ``launch`` says (:func:`worker_launch`; started on first use,
    blocks for its start-up). Call it on the owner thread (:func:`start_worker`,
    :func:`warm_worker`) unless the caller outlives the worker anyway (tests, scripts)."""
    from ..blender_gs_addon.worker.client import WorkerClient

    with _WORKER_LOCK:
        client = _WORKER["client"]
        same = client is not None and (client.python, client.command) == (
            launch.get("python"), launch.get("command"))
        if client is not None and (not same or not client.alive):
            client.close(timeout=2.0)
            client = _WORKER["client"] = None
        if client is None:
            client = WorkerClient(**launch, startup_timeout=WORKER_STARTUP_TIMEOUT)
            require_torch(client)
            _WORKER["client"] = client
        return client


def start_worker(launch: dict) -> Future:
    """The warm worker for ``launch`` as a Future, started on the owner thread: returns at
    once (for Blender's main thread, which polls the Future)."""
    return _OWNER.submit(get_worker, launch)


def warm_worker(launch: dict):
    """The warm worker for ``launch``, started from the owner thread when there is none;
    blocks until it is up (for callers that already run off Blender's main thread or can
    wait, such as a render)."""
    return start_worker(launch).result()


def current_worker():
    """The warm worker client, or None when none is running."""
    return _WORKER["client"]


def release_job(job, on_released: Callable[[], None]) -> Future | None:
    """Cancel a worker job without waiting for it: the cooperative request goes out now; the
    grace period, and terminating the worker if the job outlives it, run on the owner thread.
    That thread also starts workers, so the next session's job is only submitted once this one
    has gone. ``on_released()`` runs (on the owner thread) once the job has stopped. Returns
    that Future, or None when there was nothing to release (``on_released`` is then not
    called)."""
    if job is None or job.done:
        return None
    try:
        job.request_cancel()
    except GSError:
        return None  # the worker died: nothing of ours runs any more

    def reap():
        try:
            job.cancel(grace=CANCEL_GRACE)
        except GSError:
            pass  # it died while stopping: just as gone
        finally:
            if not job.client.alive:
                with _WORKER_LOCK:
                    if _WORKER["client"] is job.client:
                        _WORKER["client"] = None
            on_released()

    return _OWNER.submit(reap)


def stop_worker() -> None:
    """Stop the warm worker, if any (add-on unregister, Blender exit)."""
    with _WORKER_LOCK:
        client, _WORKER["client"] = _WORKER["client"], None
    if client is not None:
        client.close(timeout=2.0)


atexit.register(stop_worker)


_SWEPT: dict = {"done": False}


def sweep_once() -> None:
    """Remove this user's day-old job folders once per Blender session (the worker does the
    same when it starts; the in-process path never starts one)."""
    if _SWEPT["done"]:
        return
    _SWEPT["done"] = True
    from ..blender_gs_addon.worker.job_dirs import sweep_stale_job_dirs

    try:
        sweep_stale_job_dirs()
    except OSError:
        pass  # leftovers are untidy, not a reason to refuse a reconstruction


# ------------------------------------------------------------------------ the Check button
def check_environment(settings: Settings = DEFAULTS, *, timeout: float = 120.0) -> dict:
    """What the model would run with: this Python's torch, and the worker's torch / gsplat / CUDA
    (over the link, for a worker command).

    Returns {"in_process": bool, "in_process_note": str, "worker": {python, torch, gsplat,
    cuda, device_name} or None, "worker_error": str, "summary": [lines]}. Uses a fresh worker
    (closed again), so a busy warm worker is not disturbed.
    """
    from ..blender_gs_addon.worker.client import WorkerClient

    here = torch_available()
    info = {"in_process": here, "in_process_note": "" if here else torch_unavailable_reason(),
            "worker": None, "worker_error": ""}
    launch = worker_launch(settings)
    try:
        with WorkerClient(**launch, startup_timeout=timeout) as client:
            info["worker"] = client.run("check", timeout=timeout)
    except GSError as err:
        info["worker_error"] = str(err)
    info["summary"] = _summary(settings, info, _label(launch))
    return info


def _label(launch: dict) -> str:
    """'ssh gpu-box' for a worker command, the interpreter's path for a local worker."""
    from ..blender_gs_addon.worker.client import command_label

    if "python" in launch:
        return launch["python"]
    try:
        return command_label(shlex.split(launch["command"]))
    except ValueError:  # unbalanced quotes: the error line says so
        return launch["command"]


def _summary(settings: Settings, info: dict, worker: str) -> list[str]:
    here = info["in_process"]
    lines = [f"Blender's Python {sys.version.split()[0]}: "
             + ("torch imports" if here else info["in_process_note"] or "no torch")]
    if info["worker"] is not None:
        lines.append(f"Worker {worker} ({describe_environment(info['worker'])})")
    else:
        lines.append(f"Worker {worker}: {info['worker_error']}")
    try:
        lines.append("Reconstruction will run " + (
            "inside Blender" if use_in_process(settings) else "in the worker process"))
    except GSError as err:
        lines.append(str(err))
    return lines
