"""Client side of the worker: start, talk to, cancel and stop ``python -m blender_gs_addon.worker``.

No bpy here: the Blender operator drives a :class:`WorkerClient` from a modal timer (polling
:meth:`WorkerJob.poll`) or, in background mode, blocks in :meth:`WorkerJob.wait`.

Failure handling:
- a dead worker (crash, SIGKILL, OOM) is noticed from its exit code / closed pipe and raised as
  GSError within ~0.1 s of the death (the reader thread sees EOF at once);
- cancel is cooperative first (``cancel`` message, :meth:`WorkerJob.request_cancel` returns at
  once); :meth:`WorkerJob.cancel` terminates the process, then kills it, if the job has not
  ended ``grace`` seconds after the request;
- the worker is stopped when the client is closed, garbage collected, or at interpreter exit
  (atexit), and the worker itself exits when its stdin closes or its parent dies.
"""

from __future__ import annotations

import atexit
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import GSError
from .protocol import PROTOCOL, decode, encode

__all__ = ["WorkerClient", "WorkerJob", "JobEvent"]

_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for client in list(_LIVE):
        client.close(timeout=1.0)


@dataclass
class JobEvent:
    kind: str  # "progress" | "log"
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    level: str = "INFO"


@dataclass
class WorkerJob:
    client: WorkerClient
    id: str
    events: list[JobEvent] = field(default_factory=list)
    done: bool = False
    outputs: dict | None = None
    cancelled: bool = False
    _cancel_sent_at: float | None = None

    def poll(self) -> list[JobEvent]:
        """Non-blocking: events since the last poll. Raises GSError when the job failed."""
        return self.client._pump(self, timeout=0.0)

    def wait(self, *, timeout: float | None = None, on_event=None) -> dict | None:
        """Block until the job ends; returns outputs (None if cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise GSError(f"worker job {self.id} did not finish within {timeout} s")
            for event in self.client._pump(self, timeout=min(0.1, remaining or 0.1)):
                if on_event is not None:
                    on_event(event)
        return self.outputs

    def request_cancel(self) -> None:
        """Send the cooperative cancel and return at once (safe on a UI thread); the job ends
        with a ``cancelled`` message seen by :meth:`poll` / :meth:`wait`. Raises GSError when
        the worker is already dead."""
        if self.done or self._cancel_sent_at is not None:
            return
        self._cancel_sent_at = time.monotonic()
        self.client._send({"type": "cancel", "id": self.id})

    def cancel(self, *, grace: float = 1.0) -> None:
        """Ask the worker to stop this job; terminate the worker if it has not after ``grace``
        seconds (counted from the first cancel request). Blocks up to ``grace`` + ~1 s."""
        if self.done:
            return
        self.request_cancel()
        deadline = self._cancel_sent_at + grace
        while not self.done and time.monotonic() < deadline:
            try:
                self.client._pump(self, timeout=0.05)
            except GSError:
                break
        if not self.done:
            self.client.close(timeout=0.5)
            self.done, self.cancelled = True, True


class WorkerClient:
    """A worker process and its pipes.

    Args:
        python: interpreter of the worker environment (must have torch); default this one.
        env: extra environment variables for the worker.
        startup_timeout: seconds to wait for the worker's hello (torch import can be slow).
    """

    def __init__(self, *, python: str | None = None, env: dict | None = None,
                 startup_timeout: float = 60.0, version: str = __version__):
        self.python = python or sys.executable
        if not os.path.isfile(self.python):
            raise GSError(f"worker Python {self.python!r} does not exist; set the worker "
                          "interpreter in the add-on preferences")
        core = Path(__file__).resolve().parent.parent  # the blender_gs_addon package folder
        core_parent = str(core.parent)
        run_env = {**os.environ, **(env or {})}
        run_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (core_parent, run_env.get("PYTHONPATH", "")) if p)
        run_env["PYTHONUNBUFFERED"] = "1"
        package = core.name
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", f"{package}.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run_env, cwd=core_parent,
                start_new_session=False,
            )
        except OSError as err:
            raise GSError(f"could not start the worker with {self.python!r}: {err}") from None
        self._inbox: queue.Queue = queue.Queue()
        self._stderr_tail: list[str] = []
        self._lock = threading.Lock()
        self.job: WorkerJob | None = None
        threading.Thread(target=self._read_stdout, daemon=True, name="gs-worker-out").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="gs-worker-err").start()
        _LIVE.add(self)
        weakref.finalize(self, WorkerClient._kill, self.proc)
        self._send({"type": "hello", "protocol": PROTOCOL, "version": version})
        hello = self._next(timeout=startup_timeout)
        if hello is None:
            self.close()
            raise GSError(f"the worker ({self.python}) did not answer within "
                          f"{startup_timeout:.0f} s")
        if hello["type"] == "error":
            self.close()
            raise GSError(f"worker refused the connection: {hello['message']}")
        self.info = hello

    # ------------------------------------------------------------------ pipes
    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            try:
                self._inbox.put(decode(line))
            except ValueError as err:
                self._inbox.put({"type": "error", "id": None, "error_type": "ProtocolError",
                                 "message": f"garbled line from worker: {err}"})
        self._inbox.put({"type": "_eof"})

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr_tail = (self._stderr_tail + [line])[-40:]

    def _send(self, message: dict) -> None:
        try:
            with self._lock:
                self.proc.stdin.write(encode(message))
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._death_error() from None

    def _death_error(self) -> GSError:
        try:
            code = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            code = None
        how = ("is not responding" if code is None else
               f"was killed by signal {-code}" if code < 0 else f"exited with code {code}")
        tail = " | ".join(line for line in self._stderr_tail[-3:] if line)
        return GSError(f"the reconstruction worker {how}" + (f" ({tail})" if tail else ""))

    def _next(self, *, timeout: float) -> dict | None:
        try:
            message = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return None
        if message["type"] == "_eof":
            self._inbox.put(message)  # keep reporting death to later calls
            raise self._death_error()
        return message

    # ------------------------------------------------------------------ jobs
    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, kind: str, params: dict | None = None) -> WorkerJob:
        if self.job is not None and not self.job.done:
            raise GSError("the worker is busy with another job")
        job = WorkerJob(client=self, id=uuid.uuid4().hex[:12])
        self.job = job
        self._send({"type": "job", "id": job.id, "kind": kind, "params": params or {}})
        return job

    def run(self, kind: str, params: dict | None = None, *, timeout: float | None = None,
            on_event=None) -> dict | None:
        return self.submit(kind, params).wait(timeout=timeout, on_event=on_event)

    def _pump(self, job: WorkerJob, *, timeout: float) -> list[JobEvent]:
        events: list[JobEvent] = []
        wait = timeout
        while not job.done:
            message = self._next(timeout=wait)
            if message is None:
                break
            wait = 0.0
            if message.get("id") not in (job.id, None):
                continue  # stale message of an earlier, abandoned job
            kind = message["type"]
            if kind == "progress":
                events.append(JobEvent("progress", stage=message.get("stage", ""),
                                       fraction=float(message.get("fraction", 0.0)),
                                       message=message.get("message", "")))
            elif kind == "log":
                events.append(JobEvent("log", message=message.get("message", ""),
                                       level=message.get("level", "INFO")))
            elif kind == "result":
                job.done, job.outputs = True, message.get("outputs") or {}
            elif kind == "cancelled":
                job.done, job.cancelled = True, True
            elif kind == "error":
                job.done = True
                if message.get("traceback"):
                    self._stderr_tail.append(message["traceback"])
                raise GSError(message.get("message") or message.get("error_type", "worker error"))
        job.events.extend(events)
        return events

    # ------------------------------------------------------------------ shutdown
    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self, *, timeout: float = 2.0) -> None:
        """Ask for shutdown, then terminate, then kill; never leaves the process behind."""
        if self.proc.poll() is None:
            try:
                self._send({"type": "shutdown"})
                self.proc.stdin.close()
            except (GSError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)
