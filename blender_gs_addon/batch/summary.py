"""What the user sees of a batch: the summary table (summary.csv, summary.json, the printed
table) and the progress bar.

One row per input, in the order given. ``status``: ``done`` (finished in this run),
``skipped`` (finished in an earlier run: its figures come from its metrics.json), ``failed``
(``error`` says why; the log is under ``_failed/<name>/``), ``cancelled`` (stopped by Ctrl-C;
it runs again next time) or, while the batch runs (``"finished": false`` in summary.json),
``pending``. Times in seconds; PSNR in dB on the item's held-out views (empty when
it has none); ``cpu_s`` is the CPU time of the reconstruction's process (all its threads).
"""

from __future__ import annotations

import csv
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Literal

from .inputs import BatchInput
from .tasks import FAILED, LOG, write_json

__all__ = ["ItemStatus", "COLUMNS", "summary_row", "unfinished_row", "write_summary",
           "format_table", "ProgressBar"]

ItemStatus = Literal["done", "skipped", "failed", "cancelled", "pending"]

COLUMNS = ("name", "status", "count", "psnr", "ssim", "capture_s", "reconstruct_s", "total_s",
           "cpu_s", "device", "host", "kind", "input", "log", "error")


def summary_row(metrics: dict, status: ItemStatus) -> dict:
    """The table row of an item from its metrics (as :func:`.tasks.reconstruct_item` returns
    them or metrics.json holds them)."""
    name = metrics["name"]
    log = f"{name}/{LOG}" if status in ("done", "skipped") else f"{FAILED}/{name}/{LOG}"
    return {"name": name, "status": status, "count": metrics.get("count"),
            "psnr": metrics.get("psnr"), "ssim": metrics.get("ssim"),
            "capture_s": metrics.get("capture_seconds"),
            "reconstruct_s": metrics.get("reconstruct_seconds"),
            "total_s": metrics.get("total_seconds"), "cpu_s": metrics.get("cpu_seconds"),
            "device": metrics.get("device"),
            "host": metrics.get("host"), "kind": metrics.get("kind"),
            "input": metrics.get("input"), "log": log,
            "error": metrics.get("error") or ""}


def unfinished_row(item: BatchInput, status: ItemStatus) -> dict:
    """The row of an item still to come ("pending") or stopped by Ctrl-C ("cancelled")."""
    row = dict.fromkeys(COLUMNS)
    row.update(name=item.name, status=status, kind=item.kind, input=item.source, log="",
               error="cancelled" if status == "cancelled" else "")
    return row


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.1f}"
    return value


def write_summary(out_dir: Path, rows: list[dict], *, started: float, config: dict,
                  finished: bool) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.json`` (each replaced whole, never half-written);
    ``finished``: False while the batch is still running or when it was cancelled."""
    out_dir = Path(out_dir)
    counts = {s: sum(r["status"] == s for r in rows)
              for s in ("done", "skipped", "failed", "cancelled", "pending")}
    json_path, csv_path = out_dir / "summary.json", out_dir / "summary.csv"
    write_json(json_path, {"started": started, "updated": time.time(), "finished": finished,
                           "counts": counts, "config": config, "columns": list(COLUMNS),
                           "items": rows})
    tmp = csv_path.with_name(f".summary.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in COLUMNS})
    os.replace(tmp, csv_path)
    return csv_path, json_path


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of the main columns, for the terminal."""
    head = ("name", "status", "splats", "PSNR dB", "time s", "error")

    def cells(row):
        psnr, total = row.get("psnr"), row.get("total_s")
        return (row["name"], row["status"], "" if row.get("count") is None
                else f"{row['count']:,}", "" if psnr is None else f"{psnr:.2f}",
                "" if total is None else f"{total:.1f}", (row.get("error") or "")[:80])

    table = [head] + [cells(r) for r in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(head) - 1)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + line[-1]
                     for line in table).rstrip()


class ProgressBar:
    """``[#####.....] 5/10 done, 1 failed, 2:03 elapsed, ETA 2:10`` on stderr: redrawn in place
    on a terminal, a line per change elsewhere (logs, CI). ``write`` prints a line above it."""

    def __init__(self, total: int, *, stream=None, width: int = 30):
        self.total, self.width = total, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.done = self.failed = 0

    def _text(self) -> str:
        finished = self.done + self.failed
        filled = int(self.width * finished / max(1, self.total))
        elapsed = time.monotonic() - self.start
        eta = ""
        if 0 < finished < self.total:
            eta = f", ETA {_clock(elapsed / finished * (self.total - finished))}"
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {finished}/{self.total} "
                f"finished{failed}, {_clock(elapsed)} elapsed{eta}")

    def update(self, *, done: int = 0, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        self.stream.write(("\r" + self._text()) if self.tty else self._text() + "\n")
        self.stream.flush()

    def write(self, line: str, stream=None) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        print(line, file=stream or sys.stdout, flush=True)
        if self.tty:
            self.stream.write(self._text())
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
