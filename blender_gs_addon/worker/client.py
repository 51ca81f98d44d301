"""Client side of the worker: start, talk to, cancel and stop a worker process.

The worker is ``python -m blender_gs_addon.worker`` on a local Python (``python=``), or whatever
a command starts (``command=``, e.g. ``ssh gpu-box /opt/splats/bin/python -m
blender_gs_addon.worker``): the same protocol over the process's pipes either way, files
in-band (:mod:`.transfer`), so nothing assumes a shared filesystem. No port is opened here; a
remote link's authentication is SSH's.

No bpy here: the Blender operator drives a :class:`WorkerClient` from a modal timer (polling
:meth:`WorkerJob.poll`) or, in background mode, blocks in :meth:`WorkerJob.wait`. Nothing a
caller does blocks on the pipe: a writer thread sends (uploads stream from there), a reader
thread receives (downloads are written from there).

Failure handling:
- a dead worker or a dropped connection (crash, SIGKILL, OOM, ssh gone) is noticed from the
  closed pipe and raised as GSError within ~0.1 s, with the exit code and the last lines of
  its stderr (ssh's own error, the remote shell's "No such file");
- a stopped, hung or cut-off worker is noticed when its heartbeat has been missing for
  ``heartbeat_timeout`` seconds (:data:`~.protocol.HEARTBEAT_TIMEOUT`); the worker is then
  killed and the job fails with a message saying so;
- cancel is cooperative first (``cancel`` message, :meth:`WorkerJob.request_cancel` returns at
  once); :meth:`WorkerJob.cancel` terminates the process, then kills it, if the job has not
  ended ``grace`` seconds after the request;
- a version mismatch is refused at the hello, naming both versions;
- the worker is stopped when the client is closed, garbage collected, or at interpreter exit
  (atexit), and the worker itself exits when its stdin closes or its parent dies.
"""

from __future__ import annotations

import atexit
import os
import queue
import shlex
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
from . import protocol
from .protocol import (
    HEARTBEAT_INTERVAL,
    PROTOCOL,
    Overlong,
    decode,
    encode,
    read_lines,
)
from .transfer import Bundle, BundleReceiver, bundle_messages, format_megabytes

__all__ = ["WorkerClient", "WorkerJob", "JobEvent", "command_label"]

_LIVE: weakref.WeakSet = weakref.WeakSet()
_PROGRESS_EVERY = 0.2  # seconds between download progress events
# ssh's notes that are no error (a first connection to a host, with a throwaway known_hosts).
_NOISE_PREFIXES = ("Warning: Permanently added",)


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


@dataclass(eq=False)
class WorkerJob:
    """One job on a worker. ``outputs`` once done: the result, with every output file's name
    mapped to its path under ``download_dir``. Transfer figures: ``upload_seconds`` (submit →
    the worker has the whole input), ``download_seconds``, ``payload_bytes`` (both ways)."""

    client: WorkerClient
    id: str
    upload: Bundle | None = None
    download_dir: Path | None = None
    events: list[JobEvent] = field(default_factory=list)
    done: bool = False
    outputs: dict | None = None
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.monotonic)
    upload_seconds: float | None = None
    download_seconds: float | None = None
    payload_bytes: int = 0
    receiver: BundleReceiver | None = None    # the output files while they arrive
    downloaded: BundleReceiver | None = None  # ... and once they all have
    _cancel_sent_at: float | None = None
    _last_progress: float = 0.0

    def poll(self) -> list[JobEvent]:
        """Non-blocking: events since the last poll. Raises GSError when the job failed."""
        return self.client.pump(self, timeout=0.0)

    def wait(self, *, timeout: float | None = None, on_event=None) -> dict | None:
        """Block until the job ends; returns outputs (None if cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise GSError(f"worker job {self.id} did not finish within {timeout} s")
            for event in self.client.pump(self, timeout=min(0.1, remaining or 0.1)):
                if on_event is not None:
                    on_event(event)
        return self.outputs

    @property
    def stopping(self) -> bool:
        return self.done or self._cancel_sent_at is not None

    def request_cancel(self) -> None:
        """Send the cooperative cancel and return at once (safe on a UI thread); the job ends
        with a ``cancelled`` message seen by :meth:`poll` / :meth:`wait`. Raises GSError when
        the worker is already dead."""
        if self.stopping:
            return
        self._cancel_sent_at = time.monotonic()
        self.client.send({"type": "cancel", "id": self.id})

    def cancel(self, *, grace: float = 1.0) -> None:
        """Ask the worker to stop this job; terminate the worker if it has not after ``grace``
        seconds (counted from the first cancel request). Blocks up to ``grace`` + ~1 s."""
        if self.done:
            return
        self.request_cancel()
        deadline = self._cancel_sent_at + grace
        while not self.done and time.monotonic() < deadline:
            try:
                self.client.pump(self, timeout=0.05)
            except GSError:
                break
        if not self.done:
            self.client.close(timeout=0.5)
            self.finish(cancelled=True)

    def finish(self, *, cancelled: bool = False, outputs: dict | None = None) -> None:
        """Mark the job ended; a download that did not complete is removed."""
        self.done, self.cancelled, self.outputs = True, cancelled, outputs
        if self.receiver is not None:
            self.receiver.abort()
            self.receiver = None


def _python_launch(python: str, env: dict | None):
    """argv, environment and folder to run the worker on a local interpreter."""
    if not os.path.isfile(python):
        raise GSError(f"worker Python {python!r} does not exist; set the worker "
                      "interpreter in the add-on preferences")
    core = Path(__file__).resolve().parent.parent  # the blender_gs_addon package folder
    run_env = {**os.environ, **(env or {})}
    run_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(core.parent), run_env.get("PYTHONPATH", "")) if p)
    run_env["PYTHONUNBUFFERED"] = "1"
    return [python, "-m", f"{core.name}.worker"], run_env, str(core.parent)


def _command_launch(command: str, env: dict | None):
    """argv and environment to run the worker through a command (ssh …)."""
    try:
        argv = shlex.split(command)
    except ValueError as err:
        raise GSError(f"the worker command cannot be read ({err}): {command}") from None
    if not argv:
        raise GSError("the worker command is empty")
    return argv, {**os.environ, **(env or {})}, None


def command_label(argv: list[str]) -> str:
    """How messages name a worker command: 'ssh HOST' for ssh, else the command, shortened."""
    if Path(argv[0]).name == "ssh":
        takes_value = set("BbcDEeFIiJLlmOopQRSWw")  # ssh's options that take an argument
        args = iter(argv[1:])
        for arg in args:
            if arg.startswith("-") and len(arg) > 1:
                if len(arg) == 2 and arg[1] in takes_value:
                    next(args, None)
                continue
            return f"ssh {arg}"
    text = shlex.join(argv)
    return text if len(text) <= 60 else text[:59] + "…"


class WorkerClient:
    """A worker process and its pipes.

    Args:
        python: interpreter of a local worker environment (must have torch); default this one.
        command: instead, a command line that starts a worker and speaks the protocol on its
            stdin/stdout, e.g. ``ssh gpu-box /opt/splats/bin/python -m blender_gs_addon.worker``
            (split like a POSIX shell would; run without a shell).
        env: extra environment variables for the local process.
        startup_timeout: seconds to wait for the worker's hello (torch import can be slow).
        heartbeat_timeout: seconds of silence after which the worker is given up (default
            :data:`~.protocol.HEARTBEAT_TIMEOUT`, read when the client is made).
    """

    def __init__(self, *, python: str | None = None, command: str | None = None,
                 env: dict | None = None, startup_timeout: float = 60.0,
                 version: str = __version__, heartbeat_timeout: float | None = None):
        self.command = command.strip() if command and command.strip() else None
        if self.command and python:
            raise GSError("give the worker a Python or a command, not both")
        self.python = None if self.command else (python or sys.executable)
        if self.command:
            self.argv, run_env, cwd = _command_launch(self.command, env)
            self.label = command_label(self.argv)
        else:
            self.argv, run_env, cwd = _python_launch(self.python, env)
            self.label = self.python
        self.heartbeat_timeout = (protocol.HEARTBEAT_TIMEOUT if heartbeat_timeout is None
                                  else heartbeat_timeout)
        self.info: dict | None = None
        self.job: WorkerJob | None = None
        self.bytes_sent = self.bytes_received = 0
        self._start(run_env, cwd)
        self.send({"type": "hello", "protocol": PROTOCOL, "version": version})
        self.info = self._await_hello(startup_timeout)

    def _start(self, run_env: dict, cwd: str | None) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=run_env, cwd=cwd,
                # A command (ssh) gets no terminal to prompt on: a missing key fails at once.
                start_new_session=self.command is not None)
        except OSError as err:
            raise GSError(f"could not start the worker ({self.label}): "
                          f"{err.strerror or err}") from None
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self._stderr_tail: list[str] = []
        self._noise: list[str] = []  # stdout lines before the hello (a login banner)
        self._hello_seen = self._heartbeats = False
        self._last_heard = time.monotonic()
        self._lost: GSError | None = None
        for target, name in ((self._read_stdout, "out"), (self._read_stderr, "err"),
                             (self._write_stdin, "in")):
            thread = threading.Thread(target=target, daemon=True, name=f"gs-worker-{name}")
            thread.start()
            if name == "err":
                self._stderr_thread = thread
        _LIVE.add(self)
        weakref.finalize(self, WorkerClient._kill, self.proc)

    def _await_hello(self, timeout: float) -> dict:
        try:
            hello = self._next(timeout=timeout)
        except GSError:
            self.close(timeout=0.5)
            raise
        if hello is None:
            self.close()
            raise GSError(f"the worker ({self.label}) did not answer within {timeout:.0f} s")
        if hello["type"] != "hello":
            self.close()
            raise GSError(f"the worker ({self.label}) refused the connection: "
                          f"{hello.get('message') or hello}")
        return hello

    # ------------------------------------------------------------------ pipes
    def _heard(self) -> None:
        self._last_heard = time.monotonic()

    def _read_stdout(self) -> None:
        for line in read_lines(self.proc.stdout.fileno(), on_bytes=self._heard):
            if isinstance(line, Overlong):
                self.bytes_received += line.size + 1
                self._inbox.put(_garbled(f"a line of {line.size:,} bytes"))
                continue
            self.bytes_received += len(line) + 1
            try:
                message = decode(line)
            except ValueError as err:
                if not self._hello_seen:  # a login banner or a shell's chatter: not ours
                    self._noise.append(line[:200].decode("utf-8", "replace"))
                else:
                    self._inbox.put(_garbled(str(err)))
                continue
            kind = message["type"]
            self._hello_seen = self._hello_seen or kind == "hello"
            if kind == "heartbeat":
                self._heartbeats = True
            elif kind in ("files", "data", "data_end"):
                self._receive(message)
            else:
                self._inbox.put(message)
        self._inbox.put({"type": "_eof"})

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line and not line.startswith(_NOISE_PREFIXES):
                self._stderr_tail = (self._stderr_tail + [line])[-40:]

    def _write_stdin(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                if isinstance(item, WorkerJob):
                    self._upload(item)
                else:
                    self._write(item)
            except OSError:
                break  # the pipe closed: the reader reports the death
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def _write(self, message: dict) -> None:
        data = encode(message)
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        self.bytes_sent += len(data)

    def _upload(self, job: WorkerJob) -> None:
        """Stream the job's input files (on the writer thread); a cancel stops it between
        chunks. A file that cannot be read fails the job here and cancels it there."""
        messages = bundle_messages(job.id, job.upload, should_stop=lambda: job.stopping)
        while True:
            try:
                message = next(messages, None)
            except (GSError, OSError) as err:
                self._inbox.put({"type": "error", "id": job.id, "error_type": "TransferError",
                                 "message": f"the job's input could not be sent: {err}"})
                self._write({"type": "cancel", "id": job.id})
                return
            if message is None:
                return
            self._write(message)

    def send(self, message: dict) -> None:
        """Queue ``message`` for the worker (never blocks); GSError when it is dead."""
        if self.proc.poll() is not None:
            raise self._death_error()
        self._outbox.put(message)

    def _receive(self, message: dict) -> None:
        """A ``files`` / ``data`` / ``data_end`` line of the current job's output (reader
        thread)."""
        job = self.job
        if job is None or job.done or message.get("id") != job.id:
            return
        try:
            self._receive_into(job, message)
        except (GSError, OSError) as err:
            if job.receiver is not None:
                job.receiver.abort()
                job.receiver = None
            self._inbox.put({"type": "error", "id": job.id, "error_type": "TransferError",
                             "message": f"the worker's result could not be received: {err}"})

    def _receive_into(self, job: WorkerJob, message: dict) -> None:
        kind = message["type"]
        if kind == "files":
            if job.download_dir is None:
                raise GSError("the worker sent files for a job that expects none")
            job.receiver = BundleReceiver(job.download_dir, message.get("files"),
                                          size=message.get("size"))
            return
        receiver = job.receiver
        if receiver is None:
            return
        if kind == "data":
            receiver.write_base64(message.get("data"))
            now = time.monotonic()
            if now - job._last_progress >= _PROGRESS_EVERY:
                job._last_progress = now
                self._inbox.put({"type": "progress", "id": job.id, "stage": "download",
                                 "fraction": receiver.received / max(1, receiver.total),
                                 "message": format_megabytes(receiver.received,
                                                             receiver.total)})
            return
        receiver.finish(message.get("size"), message.get("sha256"))
        job.downloaded, job.receiver = receiver, None
        job.download_seconds = receiver.seconds
        job.payload_bytes += receiver.total

    def _death_error(self) -> GSError:
        if self._lost is not None:
            return self._lost
        try:
            code = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr_thread.join(timeout=1.0)  # its last words explain the exit
        ssh = code == 255 and Path(self.argv[0]).name == "ssh"
        if code is None:
            how = "is not responding"
        elif code < 0:
            how = f"was killed by signal {-code}"
        elif ssh:
            how = ("lost its SSH connection" if self._hello_seen else "could not be reached "
                   "over SSH") + " (ssh exited with code 255)"
        else:
            how = f"exited with code {code}"
        when = "" if self._hello_seen or ssh else " before answering"
        tail = " | ".join((self._stderr_tail or self._noise)[-3:])
        return GSError(f"the reconstruction worker ({self.label}) {how}{when}"
                       + (f": {tail}" if tail else ""))

    def _check_heartbeat(self) -> None:
        """GSError (the worker killed) once it has been silent for ``heartbeat_timeout``."""
        if self._lost is not None:
            raise self._lost
        if not self._heartbeats or self.proc.poll() is not None:
            return
        silent = time.monotonic() - self._last_heard
        if silent <= self.heartbeat_timeout:
            return
        self._lost = GSError(
            f"the reconstruction worker ({self.label}) has sent nothing for {silent:.1f} s "
            f"(it reports every {HEARTBEAT_INTERVAL:g} s): it was stopped or hangs, or the "
            "connection to it stalled. It has been stopped; the next job starts a new one.")
        self._kill(self.proc)
        raise self._lost

    def _next(self, *, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                self._check_heartbeat()
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    message = self._inbox.get(timeout=min(left, 0.1))
                except queue.Empty:
                    continue
            if message["type"] == "_eof":
                self._inbox.put(message)  # keep reporting death to later calls
                raise self._death_error()
            return message

    # ------------------------------------------------------------------ jobs
    @property
    def alive(self) -> bool:
        """Running and heard from recently (a silent worker is killed here)."""
        if self.proc.poll() is not None:
            return False
        try:
            self._check_heartbeat()
        except GSError:
            return False
        return True

    def submit(self, kind: str, params: dict | None = None, *, upload: Bundle | None = None,
               download_dir=None) -> WorkerJob:
        """Start a job; ``upload``: its input files; ``download_dir``: where its output files
        go (a private folder the caller owns)."""
        if self.job is not None and not self.job.done:
            raise GSError("the worker is busy with another job")
        self._check_heartbeat()
        job = WorkerJob(client=self, id=uuid.uuid4().hex[:12], upload=upload,
                        download_dir=None if download_dir is None else Path(download_dir))
        self.job = job
        message = {"type": "job", "id": job.id, "kind": kind, "params": params or {}}
        if upload is not None and upload.files:
            message.update(files=upload.manifest(), size=upload.size)
            job.payload_bytes = upload.size
        self.send(message)
        if upload is not None and upload.files:
            self._outbox.put(job)  # its data lines follow, from the writer thread
        return job

    def run(self, kind: str, params: dict | None = None, *, timeout: float | None = None,
            on_event=None, upload: Bundle | None = None, download_dir=None) -> dict | None:
        job = self.submit(kind, params, upload=upload, download_dir=download_dir)
        return job.wait(timeout=timeout, on_event=on_event)

    def pump(self, job: WorkerJob, *, timeout: float) -> list[JobEvent]:
        """Take the worker's messages for ``job`` (waiting up to ``timeout`` for the first);
        its events, in order. Raises GSError when the job failed or the worker is gone."""
        events: list[JobEvent] = []
        wait = timeout
        while not job.done:
            message = self._next(timeout=wait)
            if message is None:
                break
            wait = 0.0
            if message.get("id") not in (job.id, None):
                continue  # stale message of an earlier, abandoned job
            event = self._handle(job, message)
            if event is not None:
                events.append(event)
        job.events.extend(events)
        return events

    def _handle(self, job: WorkerJob, message: dict) -> JobEvent | None:
        kind = message["type"]
        if kind == "progress":
            if message.get("stage") == "upload" and message.get("fraction") == 1.0:
                job.upload_seconds = time.monotonic() - job.submitted_at
            return JobEvent("progress", stage=message.get("stage", ""),
                            fraction=float(message.get("fraction") or 0.0),
                            message=message.get("message", ""))
        if kind == "log":
            return JobEvent("log", message=message.get("message", ""),
                            level=message.get("level", "INFO"))
        if kind == "result":
            try:
                outputs = self._outputs(job, message)
            except GSError:
                job.finish()
                raise
            job.finish(outputs=outputs)
        elif kind == "cancelled":
            job.finish(cancelled=True)
        elif kind == "error":
            job.finish()
            if message.get("traceback"):
                self._stderr_tail.append(message["traceback"])
            raise GSError(message.get("message") or message.get("error_type", "worker error"))
        return None

    @staticmethod
    def _outputs(job: WorkerJob, message: dict) -> dict:
        outputs = dict(message.get("outputs") or {})
        files = message.get("files") or {}
        if files and job.downloaded is None:
            raise GSError("the worker's result files did not arrive")
        for name, relative in files.items():
            path = job.downloaded.path(relative.rstrip("/"))
            if relative.endswith("/") and not path.is_dir():  # a folder output, empty
                raise GSError(f"the worker's result folder {relative} did not arrive")
            outputs[name] = str(path)
        return outputs

    # ------------------------------------------------------------------ shutdown
    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self, *, timeout: float = 2.0) -> None:
        """Ask for shutdown, then terminate, then kill; never leaves the process behind."""
        if self.proc.poll() is None:
            self._outbox.put({"type": "shutdown"})
            self._outbox.put(None)  # then the writer closes the worker's stdin
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


def _garbled(what: str) -> dict:
    return {"type": "error", "id": None, "error_type": "ProtocolError",
            "message": f"garbled line from the worker: {what}"}
