"""The worker protocol: JSON messages, one per line, over the worker's stdin and stdout.

The worker (``python -m blender_gs_addon.worker``) talks only through that pipe, which may be a
local subprocess's or an ``ssh`` session's: it opens no socket, and nothing assumes the two
sides share a filesystem. Files travel in-band as *bundles* (:mod:`.transfer`): a manifest of
relative paths and sizes, then the bytes in base64 chunks of :data:`CHUNK_BYTES`, then the
size and SHA-256 of the whole stream.

Client → worker
    ``{"type": "hello", "protocol": 2, "version": "0.1.0"}``   first message; the worker answers
        with its own hello or with an error of type ``VersionMismatch`` (naming both sides'
        versions) and exits.
    ``{"type": "job", "id": "…", "kind": "reconstruct" | "photos" | "render" | "check" |
    "wait",
    "params": {…}, "files": [{"path": "capture/transforms_train.json", "size": 1234}, …],
    "size": total}``
        one job at a time. Its parameters are checked at once (error ``InvalidParameters``
        naming the parameter). When ``files`` is not empty the job's input follows as
        ``data`` lines and a ``data_end`` line; the job starts once that has arrived and its
        checksum matched (error ``TransferError`` otherwise). A job sent while another is
        accepted or running is answered with an error of type ``Busy`` (its ``id`` the refused
        job's, ``running`` the running job's id) and not queued.
    ``{"type": "data", "id": "…", "data": "<base64>"}``      the next chunk of the job's input
    ``{"type": "data_end", "id": "…", "size": n, "sha256": "…"}``
    ``{"type": "cancel", "id": "…"}``     cooperative cancel of that job; honoured from the
        moment the job line has arrived (also while its input is still arriving), ignored for a
        job that already ended. The job ends with ``cancelled`` (or its result, if it was done).
    ``{"type": "shutdown"}``              finish the running job, then exit.
    EOF on stdin                          the client is gone: exit at once when idle; a running
        job is cancelled and the process exits within half a second regardless.

Worker → client
    ``{"type": "hello", "protocol": 2, "version": …, "python": …, "torch": …, "cuda": bool,
       "gsplat": …, "pycolmap": …, "pid": …}``
    ``{"type": "heartbeat"}``             every :data:`HEARTBEAT_INTERVAL` seconds from the
        hello on, busy or idle: a client that has seen nothing for :data:`HEARTBEAT_TIMEOUT`
        seconds knows the worker is stopped, hung, or cut off.
    ``{"type": "progress", "id": …, "stage": "fit", "fraction": 0.42, "message": "…"}``
        (stage ``upload`` while the job's input arrives)
    ``{"type": "log", "id": …, "level": "INFO" | "WARNING", "message": "…"}``
    ``{"type": "files", "id": …, "files": [{"path": "splats.ply", "size": n}], "size": n}``,
        ``data`` lines and ``data_end``: the job's output files, before its result
    ``{"type": "result", "id": …, "outputs": {…}, "files": {"splats": "splats.ply"}}``
        ``files`` maps output names to paths in the bundle just sent; a path ending in ``/``
        names a folder, whose files the bundle holds (``"dataset": "dataset/"``)
    ``{"type": "error", "id": …, "error_type": "GSError", "message": "…",
       "traceback": "…"}``                                   traceback only for the log
    ``{"type": "cancelled", "id": …}``

Every line is at most :data:`MAX_LINE` bytes: a longer one is discarded unread and answered
with one ``ProtocolError``; so is a line that is not a JSON object with a ``type`` (however
deeply nested). Numbers are finite: NaN and infinities are written as ``null``.

Job folders: each side keeps its files in private folders (mode 0700) named
:data:`JOB_DIR_PREFIX`… in its own temporary directory and removes them; the worker removes
this user's folders of that name left untouched for a day (a crash's leftovers) when it starts.

Job kinds (parameters in :mod:`.job_params`): ``reconstruct`` (input: a data set under
``capture/``; output file ``splats``), ``photos`` (input: photos under ``photos/``, or one
video ``photos/<name>``, masks under ``masks/``; poses recovered with pycolmap, then the fit;
outputs ``splats`` and the folder ``dataset``, the posed data set with its report.json),
``render`` (one exact still; input ``splats.ply``; output file ``still``, an .npz as
:func:`blender_gs_addon.render.still.read_still` reads it),
``check`` (what torch/gsplat/CUDA the worker has), ``wait`` (a diagnostic job that reports
progress for ``seconds`` and honours cancel unless ``cancellable`` is false; for tests).
"""

from __future__ import annotations

import json
import math
import os

PROTOCOL = 2
MAX_LINE = 1 << 20          # bytes: a protocol line is small; anything larger is a broken peer
CHUNK_BYTES = 192 * 1024    # payload bytes per data line (256 KiB of base64)
HEARTBEAT_INTERVAL = 0.5    # seconds between the worker's heartbeats
HEARTBEAT_TIMEOUT = 5.0     # seconds of silence after which the client gives the worker up
JOB_DIR_PREFIX = "gs_reconstruct_"

__all__ = ["PROTOCOL", "MAX_LINE", "CHUNK_BYTES", "HEARTBEAT_INTERVAL", "HEARTBEAT_TIMEOUT",
           "JOB_DIR_PREFIX", "encode", "decode", "json_safe", "Overlong", "read_lines"]


def json_safe(value):
    """``value`` with every non-finite float replaced by None, tuples as lists and numpy
    scalars / arrays as Python numbers / lists: something JSON can always hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy
        return json_safe(value.tolist())
    return value


def encode(message: dict) -> bytes:
    """One message → one line of UTF-8 JSON (no embedded newlines, no NaN/Infinity)."""
    return (json.dumps(json_safe(message), separators=(",", ":"), allow_nan=False)
            + "\n").encode()


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def decode(line: bytes) -> dict:
    """One line → message dict; ValueError for anything that is not a JSON object with a type
    (too long, not UTF-8, not JSON, nested too deeply, NaN/Infinity, another type)."""
    if len(line) > MAX_LINE:
        raise ValueError(f"protocol line of {len(line):,} bytes exceeds {MAX_LINE:,}")
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("protocol line nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"not a JSON protocol line ({err})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError(f"not a protocol message: {line[:200]!r}")
    return message


class Overlong:
    """Stands in for a line longer than the limit, which was skipped without being kept."""

    def __init__(self, size: int):
        self.size = size


def read_lines(fd: int, *, limit: int = MAX_LINE, on_bytes=None):
    """Lines (bytes, newline stripped) read from file descriptor ``fd`` until EOF.

    A line longer than ``limit`` bytes is never held in memory: it is skipped and yielded as
    :class:`Overlong`. ``on_bytes()`` is called whenever bytes arrive (the liveness clock).
    """
    buffer = bytearray()
    skipping = 0  # bytes of an overlong line skipped so far
    while True:
        try:
            block = os.read(fd, 1 << 16)
        except OSError:
            block = b""
        if not block:
            if buffer and not skipping:
                yield bytes(buffer)
            elif skipping:
                yield Overlong(skipping + len(buffer))
            return
        if on_bytes is not None:
            on_bytes()
        buffer += block
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > limit or skipping:
                    skipping += len(buffer)
                    buffer.clear()
                break
            if skipping:
                yield Overlong(skipping + end)
                skipping = 0
            elif end > limit:
                yield Overlong(end)
            else:
                yield bytes(buffer[:end])
            del buffer[:end + 1]
