"""The worker protocol: JSON messages, one per line, over the worker's stdin and stdout.

The worker (``python -m blender_gs_addon.worker``) talks only through pipes; it opens no socket.
Bulk data never travels inside JSON: inputs and outputs are files in the job folder (a capture
data set in, a .ply of splats out).

Client → worker
    ``{"type": "hello", "protocol": 1, "version": "0.1.0"}``   first message; the worker answers
        with its own hello or with an error of type ``VersionMismatch`` and exits.
    ``{"type": "job", "id": "…", "kind": "reconstruct" | "render" | "check" | "wait",
    "params": {…}}``
        one job at a time: a job sent while another is accepted or running is answered with an
        error of type ``Busy`` (its ``id`` the refused job's, ``running`` the running job's id)
        and not queued.
    ``{"type": "cancel", "id": "…"}``     cooperative cancel of that job; honoured from the
        moment the job line has arrived (it may be sent right behind it), ignored for a job
        that already ended. The job ends with ``cancelled`` (or its result, if it was done).
    ``{"type": "shutdown"}``              finish the running job, then exit.
    EOF on stdin                          the client is gone: exit at once when idle; a running
        job is cancelled and the process exits within half a second regardless.

Worker → client
    ``{"type": "hello", "protocol": 1, "version": …, "python": …, "torch": …, "cuda": bool,
       "gsplat": …, "pid": …}``
    ``{"type": "progress", "id": …, "stage": "fit", "fraction": 0.42, "message": "…"}``
    ``{"type": "log", "id": …, "level": "INFO" | "WARNING", "message": "…"}``
    ``{"type": "result", "id": …, "outputs": {…}}``        e.g. {"splats": "/job/splats.ply"}
    ``{"type": "error", "id": …, "error_type": "GSError", "message": "…",
       "traceback": "…"}``                                   traceback only for the log
    ``{"type": "cancelled", "id": …}``

Job folders: the client creates them private to the user (mode 0700) with the name prefix
:data:`JOB_DIR_PREFIX` in the temporary directory and removes them; the worker removes this
user's folders of that name left untouched for a day (a crash's leftovers) when it starts.

Job kinds: ``reconstruct`` (params as :func:`blender_gs_addon.reconstruction.pipeline.reconstruct`),
``render`` (one exact still: ``splats`` a .ply path, ``viewmat`` 4×4, ``K`` 3×3, ``width``,
``height``, ``device``, ``out`` the .npz to write; result ``{"still": out}``, arrays as
:func:`blender_gs_addon.render.still.read_still` reads them), ``check`` (what
torch/gsplat/CUDA the worker has), ``wait`` (a diagnostic job that reports progress for
``seconds`` and honours cancel unless ``cancellable`` is false; used by the tests).
"""

from __future__ import annotations

import json

PROTOCOL = 1
MAX_LINE = 1 << 20  # a protocol line is small; anything larger is a broken peer
JOB_DIR_PREFIX = "gs_reconstruct_"

__all__ = ["PROTOCOL", "MAX_LINE", "JOB_DIR_PREFIX", "encode", "decode"]


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
