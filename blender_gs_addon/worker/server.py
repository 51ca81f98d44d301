"""The reconstruction worker: ``python -m blender_gs_addon.worker`` (protocol in
:mod:`.protocol`).

It runs in any Python environment that has torch (and ideally gsplat and CUDA), serves one job
at a time over stdin/stdout, and stays warm between jobs (models stay loaded on the device).
Everything libraries print goes to stderr: stdout carries protocol lines only. The pipe may be
a local subprocess's or an SSH session's: a job's input and output files travel in-band
(:mod:`.transfer`) and live only in the job's private scratch folder here.

Robustness: a line that is too long, not JSON, nested too deeply or not a message gets one
``ProtocolError`` reply and the worker keeps serving; job parameters are checked before any
work (:mod:`.job_params`); results are always valid JSON (NaN/Inf become null); a heartbeat
line goes out every :data:`~.protocol.HEARTBEAT_INTERVAL` seconds so a client notices a
stopped or cut-off worker within seconds.

It exits when stdin closes (the client died, Blender quit, the SSH connection dropped): at
once when idle, and within :data:`EOF_GRACE` seconds when a job runs (the job is cancelled
first, then the process exits regardless, removing the job's folder), on every platform. On
Linux it also exits when its parent process dies (PR_SET_PDEATHSIG). So no orphan keeps a GPU
busy.

At start it removes job folders (``gs_reconstruct_*`` in its temporary directory) of this
user that nothing has touched for a day: what a crashed Blender or a killed worker left behind.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import GSError
from .job_dirs import make_job_dir, sweep_stale_job_dirs
from .job_params import InvalidParameters, check_job
from .jobs import JobCancelled, environment, run_job
from .protocol import (
    HEARTBEAT_INTERVAL,
    MAX_LINE,
    PROTOCOL,
    Overlong,
    decode,
    encode,
    read_lines,
)
from .transfer import (
    Bundle,
    BundleReceiver,
    bundle_messages,
    folder_files,
    format_megabytes,
)

__all__ = ["serve", "main", "EOF_GRACE"]

# Seconds a running job gets to stop after stdin closed before the process exits anyway: the
# parent is gone, so nobody waits for the result.
EOF_GRACE = 0.5
# Signals that end the worker with its job folder removed: a plain kill, and the hang-up a
# dropped SSH session can deliver (by default it would end the process with the folder left).
_LEAVE_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                       if hasattr(signal, name))
_PROGRESS_EVERY = 0.2  # seconds between upload progress messages


class _Channel:
    """Thread-safe writer of protocol lines to the real stdout."""

    def __init__(self, fd: int):
        self._out = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()
        self.on_closed = lambda: None  # runs before the process exits on a closed pipe

    def send(self, message: dict) -> None:
        try:
            data = encode(message)
        except (TypeError, ValueError) as err:  # a result JSON cannot hold: say so instead
            data = encode({"type": "error", "id": message.get("id"),
                           "error_type": "ProtocolError", "traceback": "",
                           "message": f"the worker could not encode its reply: {err}"})
        with self._lock:
            try:
                self._out.write(data)
            except (BrokenPipeError, OSError):
                self.on_closed()
                os._exit(0)  # the client is gone; nobody to report to

    def error(self, job_id, error_type: str, message: str, **extra) -> None:
        self.send({"type": "error", "id": job_id, "error_type": error_type,
                   "message": message, "traceback": "", **extra})


@dataclass(eq=False)
class _Job:
    id: str
    kind: str
    params: dict
    cancel: threading.Event = field(default_factory=threading.Event)
    folder: Path | None = None
    receiver: BundleReceiver | None = None  # while the job's input arrives
    last_progress: float = 0.0

    def discard(self) -> None:
        if self.receiver is not None:
            self.receiver.abort()
            self.receiver = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class _Server:
    """The accepted job and the handling of every incoming line (on the stdin thread); the
    main thread takes ``("run", job)`` and ``("message", message)`` items off ``inbox``."""

    def __init__(self, channel: _Channel):
        self.channel = channel
        self.inbox: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.job: _Job | None = None
        channel.on_closed = self.discard_job  # a dropped link leaves no job folder behind

    def discard_job(self) -> None:
        job = self.job
        if job is not None:
            job.discard()

    def claim_signals(self) -> None:
        """(Re)install :meth:`terminate` for the leave signals. Again after each import that
        may take them: pycolmap's glog installs a C failure handler for SIGTERM on import,
        which would end the process without removing the job's folder."""
        if threading.current_thread() is threading.main_thread():
            for signum in _LEAVE_SIGNALS:
                signal.signal(signum, self.terminate)

    def terminate(self, signum: int = signal.SIGTERM, _frame=None) -> None:
        """SIGTERM (also what PR_SET_PDEATHSIG sends when the parent, e.g. sshd, dies) or
        SIGHUP (the session hung up): leave at once, without the job's folder."""
        self.discard_job()
        os._exit(128 + int(signum))

    # -------------------------------------------------------------- the stdin thread
    def read(self, in_fd: int) -> None:
        for line in read_lines(in_fd):
            try:
                self.on_line(line)
            except Exception as err:  # the reader must never die: it is the worker's ear
                self.channel.error(None, "ProtocolError", f"the worker could not handle a "
                                   f"message: {type(err).__name__}: {err}")
        self.on_eof()

    def on_line(self, line) -> None:
        if isinstance(line, Overlong):
            self.channel.error(None, "ProtocolError", f"a protocol line of {line.size:,} bytes "
                               f"exceeds the {MAX_LINE:,}-byte limit; it was ignored")
            return
        try:
            message = decode(line)
        except ValueError as err:
            self.channel.error(None, "ProtocolError", str(err))
            return
        handler = {"job": self.on_job, "data": self.on_data, "data_end": self.on_data_end,
                   "cancel": self.on_cancel}.get(message["type"])
        if handler is None:
            self.inbox.put(("message", message))
        else:
            handler(message)

    def on_job(self, message: dict) -> None:
        job_id = message.get("id")
        if not isinstance(job_id, str) or not 0 < len(job_id) <= 100:
            self.channel.error(None, "ProtocolError", "a job needs an id (1 to 100 characters)")
            return
        running = self.job
        if running is not None:
            self.channel.error(job_id, "Busy", f"the worker is busy with job {running.id}; it "
                               "runs one job at a time (wait for it or cancel it)",
                               running=running.id)
            return
        files = message.get("files") or []
        try:
            params = check_job(message.get("kind"), message.get("params", {}), files)
        except InvalidParameters as err:
            self.channel.error(job_id, "InvalidParameters", str(err))
            return
        job = self.job = _Job(id=job_id, kind=message["kind"], params=params)
        try:
            job.folder = make_job_dir()
            if files:  # the job starts once its input has arrived whole
                job.receiver = BundleReceiver(job.folder, files, size=message.get("size"))
                return
        except (GSError, OSError) as err:
            self.fail(job, "TransferError", f"the job's input cannot be received: {err}")
            return
        self.inbox.put(("run", job))

    def receiving(self, message: dict) -> _Job | None:
        job = self.job
        if job is None or job.receiver is None or message.get("id") != job.id:
            return None  # the rest of a cancelled or failed transfer
        return job

    def on_data(self, message: dict) -> None:
        job = self.receiving(message)
        if job is None:
            return
        try:
            job.receiver.write_base64(message.get("data"))
        except (GSError, OSError) as err:
            self.fail(job, "TransferError", f"the job's input could not be received: {err}")
            return
        now = time.monotonic()
        if now - job.last_progress >= _PROGRESS_EVERY:
            job.last_progress = now
            received, total = job.receiver.received, job.receiver.total
            self.channel.send({"type": "progress", "id": job.id, "stage": "upload",
                               "fraction": received / max(1, total),
                               "message": format_megabytes(received, total)})

    def on_data_end(self, message: dict) -> None:
        job = self.receiving(message)
        if job is None:
            return
        try:
            job.receiver.finish(message.get("size"), message.get("sha256"))
        except (GSError, OSError) as err:
            self.fail(job, "TransferError", f"the job's input could not be received: {err}")
            return
        total = job.receiver.total
        job.receiver = None
        self.channel.send({"type": "progress", "id": job.id, "stage": "upload",
                           "fraction": 1.0, "message": format_megabytes(total, total)})
        self.inbox.put(("run", job))

    def on_cancel(self, message: dict) -> None:
        with self.lock:
            job = self.job
            if job is None or job.id != message.get("id"):
                return  # a job that already ended, or never was: nothing to stop
            job.cancel.set()
            if job.receiver is None:
                return  # running: it stops at its next look at the flag
            self.job = None
        job.discard()
        self.channel.send({"type": "cancelled", "id": job.id})

    def fail(self, job: _Job, error_type: str, text: str) -> None:
        job.discard()
        with self.lock:
            if self.job is job:
                self.job = None
        self.channel.error(job.id, error_type, text)

    def on_eof(self) -> None:
        # The client closed our stdin or died. A running job is cancelled and gets a moment
        # to stop; then the process ends whatever the job is doing (a model forward cannot
        # be interrupted), as nobody is left to take its result.
        job = self.job
        if job is not None:
            job.cancel.set()

            def exit_now():
                job.discard()
                os._exit(0)

            timer = threading.Timer(EOF_GRACE if job.receiver is None else 0.0, exit_now)
            timer.daemon = True
            timer.start()
        self.inbox.put(("message", {"type": "shutdown"}))

    # --------------------------------------------------------------- the main thread
    def run(self, job: _Job) -> None:
        def progress(stage, fraction, text=""):
            self.channel.send({"type": "progress", "id": job.id, "stage": stage,
                               "fraction": float(fraction), "message": text})

        def log(level, text):
            self.channel.send({"type": "log", "id": job.id, "level": level, "message": text})

        try:
            outputs, files = run_job(job.kind, job.params, job.folder,
                                     progress=progress, should_stop=job.cancel.is_set, log=log)
            sent = self.send_files(job, files)
            reply = ({"type": "result", "id": job.id, "outputs": outputs,
                      **({"files": files} if files else {})}
                     if sent else {"type": "cancelled", "id": job.id})
        except JobCancelled:
            reply = {"type": "cancelled", "id": job.id}
        except Exception as err:  # every failure goes back to the client, the worker lives on
            reply = {"type": "error", "id": job.id, "error_type": type(err).__name__,
                     "message": str(err), "traceback": traceback.format_exc()}
        self.claim_signals()  # the job may have imported a library that took them
        job.discard()
        # Free the slot before answering: a client that submits its next job the moment it
        # reads this reply must not be told the worker is busy.
        with self.lock:
            self.job = None
        self.channel.send(reply)

    def send_files(self, job: _Job, files: dict) -> bool:
        """Send the job's output files; False when the job was cancelled meanwhile."""
        if not files:
            return True
        paths = []
        for relative in files.values():  # a folder (ending in "/") goes with all its files
            paths += (folder_files(job.folder, relative) if relative.endswith("/")
                      else [relative])
        bundle = Bundle.of_files(job.folder, list(dict.fromkeys(paths)))
        self.channel.send({"type": "files", "id": job.id, "files": bundle.manifest(),
                           "size": bundle.size})
        for message in bundle_messages(job.id, bundle, should_stop=job.cancel.is_set):
            self.channel.send(message)
            if message["type"] == "data_end":
                return True
        return False


def _heartbeat(channel: _Channel) -> None:
    while True:
        time.sleep(HEARTBEAT_INTERVAL)
        channel.send({"type": "heartbeat"})


def _handshake(server: _Server) -> int | None:
    """Read the client's hello and answer it; an exit code when the connection is refused."""
    kind, hello = server.inbox.get()
    channel = server.channel
    if kind != "message" or hello.get("type") != "hello":
        channel.error(None, "ProtocolError", "the first message must be hello")
        return 2
    if hello.get("protocol") != PROTOCOL or hello.get("version") != __version__:
        channel.error(None, "VersionMismatch",
                      f"the worker is version {__version__} (protocol {PROTOCOL}); the add-on "
                      f"is version {hello.get('version')} (protocol {hello.get('protocol')}). "
                      "Install the same version of the extension's core in the worker "
                      "environment.", worker_version=__version__, worker_protocol=PROTOCOL)
        return 3
    # From here on the client hears from us every HEARTBEAT_INTERVAL, also while the torch
    # import below takes its seconds.
    threading.Thread(target=_heartbeat, args=(channel,), daemon=True,
                     name="worker-heartbeat").start()
    info = environment()  # imports torch, gsplat and pycolmap
    server.claim_signals()
    channel.send({"type": "hello", "protocol": PROTOCOL, "version": __version__,
                  "pid": os.getpid(), **info})
    return None


def serve(in_fd: int | None = None, out_fd: int | None = None) -> int:
    """Serve jobs until shutdown or EOF. Returns the process exit code."""
    in_fd = sys.stdin.fileno() if in_fd is None else in_fd
    channel = _Channel(os.dup(sys.stdout.fileno()) if out_fd is None else out_fd)
    # Library output (tqdm, warnings, prints) must not corrupt the protocol stream.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    server = _Server(channel)
    server.claim_signals()
    threading.Thread(target=server.read, args=(in_fd,), daemon=True,
                     name="worker-stdin").start()
    refused = _handshake(server)
    if refused is not None:
        return refused
    while True:
        kind, item = server.inbox.get()
        if kind == "run":
            server.run(item)
        elif item["type"] == "shutdown":
            return 0
        else:
            channel.error(item.get("id"), "ProtocolError",
                          f"unexpected message type {item['type']!r}")


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
    for signum in _LEAVE_SIGNALS:  # until serve() has a job to drop
        signal.signal(signum, lambda number, _frame: os._exit(128 + number))
    # In the background: a slow temporary disk must not delay the hello.
    threading.Thread(target=sweep_stale_job_dirs, daemon=True, name="worker-sweep").start()
    code = serve()
    # Leave without the interpreter's shutdown: the stdin and heartbeat threads are daemons
    # blocked in system calls, and nothing is left to flush but stderr.
    sys.stderr.flush()
    os._exit(code)
