"""The worker protocol: JSON messages, one per line, over the worker's stdin and stdout.

The worker (``python -m blender_gs_addon.worker``) talks only through pipes; it opens no socket.
Bulk data never travels inside JSON: inputs and outputs are files in the job folder (a capture
data set in, a .ply of splats out).

Client → worker
    ``{"type": "hello", "protocol": 1, "version": "0.1.0"}``   first message; the worker answers
        with its own hello or with an error of type ``VersionMismatch`` and exits.
    ``{"type": "job", "id": "…", "kind": "reconstruct" | "check" | "wait", "params": {…}}``
        one job at a time; a second job while one runs is answered with an error ``Busy``.
    ``{"type": "cancel", "id": "…"}``     cooperative cancel of the running job.
    ``{"type": "shutdown"}``              finish and exit (EOF on stdin does the same).

Worker → client
    ``{"type": "hello", "protocol": 1, "version": …, "python": …, "torch": …, "cuda": bool,
       "gsplat": …, "pid": …}``
    ``{"type": "progress", "id": …, "stage": "fit", "fraction": 0.42, "message": "…"}``
    ``{"type": "log", "id": …, "level": "INFO" | "WARNING", "message": "…"}``
    ``{"type": "result", "id": …, "outputs": {…}}``        e.g. {"splats": "/job/splats.ply"}
    ``{"type": "error", "id": …, "error_type": "GSError", "message": "…",
       "traceback": "…"}``                                   traceback only for the log
    ``{"type": "cancelled", "id": …}``

Job kinds: ``reconstruct`` (params as :func:`blender_gs_addon.reconstruct.reconstruct`),
``check`` (what torch/gsplat/CUDA the worker has), ``wait`` (a diagnostic job that reports
progress for ``seconds`` and honours cancel; used by the tests and the "Check worker" button).
"""

from __future__ import annotations

import json

PROTOCOL = 1
MAX_LINE = 1 << 20  # a protocol line is small; anything larger is a broken peer

__all__ = ["PROTOCOL", "MAX_LINE", "encode", "decode"]


def encode(message: dict) -> bytes:
    """One message → one line of UTF-8 JSON (no embedded newlines)."""
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode(line: bytes) -> dict:
    """One line → message dict; ValueError for anything that is not a JSON object with a type."""
    if len(line) > MAX_LINE:
        raise ValueError(f"protocol line of {len(line)} bytes exceeds {MAX_LINE}")
    message = json.loads(line.decode("utf-8"))
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError(f"not a protocol message: {line[:200]!r}")
    return message
