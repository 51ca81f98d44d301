"""How the command line talks: reports as lines (warnings and errors on stderr as
``warning: …`` / ``error: …``), and progress as ``[stage  12.3%] message`` lines."""

from __future__ import annotations

import sys
import time

__all__ = ["stderr_report", "stdout_report", "progress_printer"]


def stderr_report(levels: set, message: str) -> None:
    if "ERROR" in levels or "WARNING" in levels:
        print(f"{'error' if 'ERROR' in levels else 'warning'}: {message}", file=sys.stderr)


def stdout_report(levels: set, message: str) -> None:
    if "ERROR" in levels or "WARNING" in levels:
        stderr_report(levels, message)
    else:
        print(message)


def progress_printer():
    """A ``progress(stage, fraction, message)`` printing at most one line per stage every 2 s."""
    last = {"t": 0.0, "stage": None}

    def progress(stage, fraction, message=""):
        now = time.monotonic()
        if stage != last["stage"] or now - last["t"] > 2.0 or fraction >= 1.0:
            print(f"[{stage} {fraction * 100:5.1f}%] {message}", flush=True)
            last.update(t=now, stage=stage)

    return progress
