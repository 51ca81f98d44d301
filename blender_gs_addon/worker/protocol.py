"""The worker protocol: JSON messages, one per line, over the worker's stdin and stdout.

The details: docs/architecture.md, "The worker protocol".
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
