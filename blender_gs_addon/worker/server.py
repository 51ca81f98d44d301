"""The reconstruction worker: ``python -m blender_gs_addon.worker`` (protocol in
:mod:`.protocol`).

It runs in any Python environment that has torch (and ideally gsplat and CUDA), serves one job
at a time over stdin/stdout, and stays warm between jobs (models stay loaded on the device).
Everything libraries print goes to stderr: stdout carries protocol lines only.

It exits when stdin closes (the client died or Blender quit): at once when idle, and within
:data:`EOF_GRACE` seconds when a job runs (the job is cancelled first, then the process exits
regardless), on every platform. On Linux it also exits when its parent process dies
(PR_SET_PDEATHSIG). So no orphan keeps a GPU busy.

At start it removes job folders (``gs_reconstruct_*`` in the temporary directory) of this
user that nothing has touched for a day: what a crashed Blender or a killed worker left behind.
"""

from __future__ import annotations

import os
import platform
import queue
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from .. import __version__
from ..errors import GSError
from .protocol import JOB_DIR_PREFIX, PROTOCOL, decode, encode

__all__ = ["serve", "main", "sweep_stale_job_dirs", "EOF_GRACE", "STALE_AFTER"]

# Seconds a running job gets to stop after stdin closed before the process exits anyway: the
# parent is gone, so nobody waits for the result.
EOF_GRACE = 0.5
# Job folders untouched for this long belong to no live job (jobs write into them throughout).
STALE_AFTER = 24 * 3600.0


class _Cancelled(Exception):
    pass


class _Channel:
    """Thread-safe writer of protocol lines to the real stdout."""

    def __init__(self, fd: int):
        self._out = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()

    def send(self, message: dict) -> None:
        data = encode(message)
        with self._lock:
            try:
                self._out.write(data)
            except (BrokenPipeError, OSError):
                os._exit(0)  # the client is gone; nobody to report to


def _newest_mtime(path: str, own: os.stat_result) -> float:
    """The latest modification time of a folder and its direct entries: a job writes into
    sub-folders (capture/), which updates their times but not the job folder's."""
    newest = own.st_mtime
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
    except OSError:
        pass
    return newest


def sweep_stale_job_dirs(*, root: str | os.PathLike | None = None,
                         max_age: float = STALE_AFTER, now: float | None = None) -> list[Path]:
    """Remove ``gs_reconstruct_*`` folders in ``root`` (default: the temporary directory) that
    belong to this user and were last modified more than ``max_age`` seconds before ``now``.

    Symbolic links and plain files with that name are left alone (they are not ours, and
    following a link could delete someone else's data). Returns the folders removed.
    """
    root = Path(tempfile.gettempdir() if root is None else root)
    now = time.time() if now is None else float(now)
    uid = os.getuid() if hasattr(os, "getuid") else None  # Windows: the temp dir is per user
    removed: list[Path] = []
    try:
        with os.scandir(root) as entries:
            candidates = [e for e in entries if e.name.startswith(JOB_DIR_PREFIX)]
    except OSError:
        return removed
    for entry in candidates:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue
        if now - _newest_mtime(entry.path, info) < max_age:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            removed.append(Path(entry.path))
    return removed


def _environment() -> dict:
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


def _run_job(kind: str, params: dict, *, progress, should_stop, log) -> dict:
    if kind == "check":
        return _environment()
    if kind == "wait":
        seconds = float(params.get("seconds", 1.0))
        # cancellable=False stands for a step that cannot be interrupted (a network forward):
        # what the client's grace period and terminate are for.
        cancellable = bool(params.get("cancellable", True))
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if cancellable and should_stop():
                raise _Cancelled()
            progress("wait", min(1.0, elapsed / seconds), f"{elapsed:.1f} s")
            time.sleep(0.02)
        return {"waited": seconds}
    if kind == "render":
        # One exact still (the render engine's F12 when Blender's Python has no torch): the
        # splats come in as a .ply in the job folder, the arrays go back as an .npz beside it.
        from ..formats import read_splats
        from ..render.still import render_still, write_still

        progress("render", 0.0, "rendering")
        still = render_still(read_splats(params["splats"]), viewmat=params["viewmat"],
                             K=params["K"], width=params["width"], height=params["height"],
                             device=params.get("device", "auto"))
        return {"still": str(write_still(params["out"], still))}
    if kind == "reconstruct":
        from ..reconstruction.pipeline import reconstruct

        result = reconstruct(**params, progress=progress, should_stop=should_stop,
                             report=lambda levels, msg: log(next(iter(levels)), msg))
        if result.get("cancelled"):
            raise _Cancelled()
        return result
    raise GSError(f"unknown job kind {kind!r}")


class _Jobs:
    """Which job the worker has accepted, shared by the stdin reader and the main loop.

    The reader accepts a job (or answers Busy) and creates its cancel flag the moment the job
    line arrives, so a cancel sent right behind it is honoured even though the main loop has
    not picked the job up yet.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.id: str | None = None
        self.cancel: threading.Event | None = None

    def accept(self, job_id) -> tuple[threading.Event | None, str | None]:
        """(cancel flag, None) for a new job, or (None, id of the running job) when busy."""
        with self.lock:
            if self.cancel is not None:
                return None, self.id
            self.id, self.cancel = job_id, threading.Event()
            return self.cancel, None

    def cancel_job(self, job_id) -> bool:
        with self.lock:
            if self.cancel is None or job_id != self.id:
                return False  # a job that already ended, or never was: nothing to stop
            self.cancel.set()
            return True

    def cancel_any(self) -> bool:
        with self.lock:
            if self.cancel is None:
                return False
            self.cancel.set()
            return True

    def finish(self) -> None:
        with self.lock:
            self.id, self.cancel = None, None


def serve(stdin=None, out_fd: int | None = None) -> int:
    """Serve jobs until shutdown or EOF. Returns the process exit code."""
    stdin = stdin or sys.stdin.buffer
    channel = _Channel(os.dup(sys.stdout.fileno()) if out_fd is None else out_fd)
    # Library output (tqdm, warnings, prints) must not corrupt the protocol stream.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr

    inbox: queue.Queue = queue.Queue()  # (message, cancel flag of an accepted job or None)
    jobs = _Jobs()

    def reader():
        for line in stdin:
            try:
                message = decode(line)
            except ValueError as err:
                channel.send({"type": "error", "id": None, "error_type": "ProtocolError",
                              "message": str(err), "traceback": ""})
                continue
            kind = message["type"]
            if kind == "cancel":
                jobs.cancel_job(message.get("id"))
                continue
            if kind == "job":
                flag, running = jobs.accept(message.get("id"))
                if flag is None:
                    channel.send({"type": "error", "id": message.get("id"),
                                  "error_type": "Busy", "running": running,
                                  "message": f"the worker is busy with job {running}; it runs "
                                             "one job at a time (wait for it or cancel it)",
                                  "traceback": ""})
                    continue
                inbox.put((message, flag))
                continue
            inbox.put((message, None))
        # EOF: the client closed our stdin or died. A running job is cancelled and gets a
        # moment to stop; then the process ends whatever the job is doing (a model forward
        # cannot be interrupted), as nobody is left to take its result.
        if jobs.cancel_any():
            timer = threading.Timer(EOF_GRACE, os._exit, args=(0,))
            timer.daemon = True
            timer.start()
        inbox.put(({"type": "shutdown"}, None))

    threading.Thread(target=reader, daemon=True, name="worker-stdin").start()

    hello, _ = inbox.get()
    if hello.get("type") != "hello":
        channel.send({"type": "error", "id": None, "error_type": "ProtocolError",
                      "message": "the first message must be hello", "traceback": ""})
        return 2
    if hello.get("protocol") != PROTOCOL or hello.get("version") != __version__:
        channel.send({"type": "error", "id": None, "error_type": "VersionMismatch",
                      "message": f"worker is version {__version__} (protocol {PROTOCOL}); the "
                                 f"add-on is version {hello.get('version')} (protocol "
                                 f"{hello.get('protocol')}). Point the add-on at a worker "
                                 "environment with the same version.", "traceback": ""})
        return 3
    channel.send({"type": "hello", "protocol": PROTOCOL, "version": __version__,
                  "pid": os.getpid(), **_environment()})

    while True:
        message, cancel = inbox.get()
        kind = message["type"]
        if kind == "shutdown":
            return 0
        if kind != "job":
            channel.send({"type": "error", "id": message.get("id"), "error_type": "ProtocolError",
                          "message": f"unexpected message type {kind!r}", "traceback": ""})
            continue
        job_id = message.get("id")

        def progress(stage, fraction, text="", _id=job_id):
            channel.send({"type": "progress", "id": _id, "stage": stage,
                          "fraction": float(fraction), "message": text})

        def log(level, text, _id=job_id):
            channel.send({"type": "log", "id": _id, "level": level, "message": text})

        try:
            outputs = _run_job(message.get("kind", ""), message.get("params") or {},
                               progress=progress, should_stop=cancel.is_set, log=log)
            reply = {"type": "result", "id": job_id, "outputs": outputs}
        except _Cancelled:
            reply = {"type": "cancelled", "id": job_id}
        except Exception as err:  # every failure goes back to the client, the worker lives on
            reply = {"type": "error", "id": job_id, "error_type": type(err).__name__,
                     "message": str(err), "traceback": traceback.format_exc()}
        # Free the slot before answering: a client that submits its next job the moment it
        # reads this reply must not be told the worker is busy.
        jobs.finish()
        channel.send(reply)


def _die_with_parent() -> None:
    if sys.platform != "linux":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


def main() -> int:
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    # In the background: a slow temporary disk must not delay the hello.
    threading.Thread(target=sweep_stale_job_dirs, daemon=True, name="worker-sweep").start()
    return serve()


if __name__ == "__main__":
    sys.exit(main())
