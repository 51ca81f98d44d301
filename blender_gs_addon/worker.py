"""The reconstruction worker: ``python -m blender_gs_addon.worker`` (protocol in
:mod:`.worker_protocol`).

It runs in any Python environment that has torch (and ideally gsplat and CUDA), serves one job
at a time over stdin/stdout, and stays warm between jobs (models stay loaded on the device).
Everything libraries print goes to stderr: stdout carries protocol lines only.

It exits when stdin closes (the client died or Blender quit) and, on Linux, when its parent
process dies (PR_SET_PDEATHSIG), so no orphan keeps a GPU busy.
"""

from __future__ import annotations

import os
import platform
import queue
import signal
import sys
import threading
import time
import traceback

from . import __version__
from .errors import GSError
from .worker_protocol import PROTOCOL, decode, encode

__all__ = ["serve", "main"]


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
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if should_stop():
                raise _Cancelled()
            progress("wait", min(1.0, elapsed / seconds), f"{elapsed:.1f} s")
            time.sleep(0.02)
        return {"waited": seconds}
    if kind == "reconstruct":
        from .reconstruct import reconstruct

        result = reconstruct(**params, progress=progress, should_stop=should_stop,
                             report=lambda levels, msg: log(next(iter(levels)), msg))
        if result.get("cancelled"):
            raise _Cancelled()
        return result
    raise GSError(f"unknown job kind {kind!r}")


def serve(stdin=None, out_fd: int | None = None) -> int:
    """Serve jobs until shutdown or EOF. Returns the process exit code."""
    stdin = stdin or sys.stdin.buffer
    channel = _Channel(os.dup(sys.stdout.fileno()) if out_fd is None else out_fd)
    # Library output (tqdm, warnings, prints) must not corrupt the protocol stream.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr

    inbox: queue.Queue = queue.Queue()
    cancel = threading.Event()
    current = {"id": None}

    def reader():
        for line in stdin:
            try:
                message = decode(line)
            except ValueError as err:
                channel.send({"type": "error", "id": None, "error_type": "ProtocolError",
                              "message": str(err), "traceback": ""})
                continue
            if message["type"] == "cancel":
                if message.get("id") == current["id"]:
                    cancel.set()
                continue
            inbox.put(message)
        inbox.put({"type": "shutdown"})

    threading.Thread(target=reader, daemon=True, name="worker-stdin").start()

    hello = inbox.get()
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
        message = inbox.get()
        kind = message["type"]
        if kind == "shutdown":
            return 0
        if kind != "job":
            channel.send({"type": "error", "id": message.get("id"), "error_type": "ProtocolError",
                          "message": f"unexpected message type {kind!r}", "traceback": ""})
            continue
        job_id = message.get("id")
        current["id"] = job_id
        cancel.clear()

        def progress(stage, fraction, text="", _id=job_id):
            channel.send({"type": "progress", "id": _id, "stage": stage,
                          "fraction": float(fraction), "message": text})

        def log(level, text, _id=job_id):
            channel.send({"type": "log", "id": _id, "level": level, "message": text})

        try:
            outputs = _run_job(message.get("kind", ""), message.get("params") or {},
                               progress=progress, should_stop=cancel.is_set, log=log)
            channel.send({"type": "result", "id": job_id, "outputs": outputs})
        except _Cancelled:
            channel.send({"type": "cancelled", "id": job_id})
        except Exception as err:  # every failure goes back to the client, the worker lives on
            channel.send({"type": "error", "id": job_id, "error_type": type(err).__name__,
                          "message": str(err), "traceback": traceback.format_exc()})
        finally:
            current["id"] = None


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
    return serve()


if __name__ == "__main__":
    sys.exit(main())
