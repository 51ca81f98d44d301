"""Running a batch: inputs resolved, the output folder checked and locked, items finished in an
earlier run skipped, bad inputs failed alone, the rest run on Ray (or here, one after another),
and the summary rewritten as each item finishes.

Only one batch writes to an output folder at a time (a lock file, ``DIR/.batch.lock``, held
while it runs); the folders of items a killed run left unfinished (``DIR/.partial-*``) are
removed when the next run starts.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import GSError
from .inputs import BatchInput, resolve_inputs
from .summary import ProgressBar, format_table, summary_row, unfinished_row, write_summary
from .tasks import STAGING_PREFIX, BatchConfig, fail_item, finished_metrics, run_item

__all__ = ["Executor", "BatchResult", "prepare_output", "run_batch"]

Executor = Literal["ray", "local"]
LOCK_NAME = ".batch.lock"


@dataclass
class BatchResult:
    """What a batch did: one summary row per input (see :mod:`.summary`), and its files."""

    rows: list[dict]
    out_dir: Path
    summary_csv: Path
    summary_json: Path

    @property
    def counts(self) -> dict:
        return {s: sum(r["status"] == s for r in self.rows)
                for s in ("done", "skipped", "failed", "cancelled")}

    def table(self) -> str:
        return format_table(self.rows)


def prepare_output(out) -> Path:
    """The output folder, created; GSError (one line) when it cannot be created or written."""
    out_dir = Path(out).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise GSError(f"{out_dir}: the output exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise GSError(f"{out_dir}: the output folder cannot be created or written "
                      f"({err.strerror or err})") from None
    return out_dir


@contextmanager
def _output_lock(out_dir: Path):
    """Hold ``DIR/.batch.lock`` (POSIX advisory lock, freed by the OS if this process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(out_dir / LOCK_NAME, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise GSError(f"{out_dir}: another batch is writing to this folder; wait for it "
                          "to finish or choose another output folder") from None
        yield


def _remove_unfinished(out_dir: Path) -> None:
    for leftover in out_dir.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


class _BatchTable:
    """The summary rows as they come in: written after each one and shown to the user."""

    def __init__(self, items, out_dir: Path, config: BatchConfig, settings: dict, show: bool):
        self.items, self.out_dir, self.show = items, out_dir, show
        self.settings = {"config": asdict(config), **settings}
        self.rows: dict[str, dict] = {}
        self.started = time.time()
        self.bar = ProgressBar(len(items)) if show else None

    def record(self, item: BatchInput, row: dict, *, quiet: bool = False) -> None:
        self.rows[item.name] = row
        if self.bar is not None:
            if not quiet:
                self.bar.write(*_item_line(row))
            self.bar.update(done=row["status"] in ("done", "skipped"),
                            failed=row["status"] == "failed")
        self.write(finished=False)

    def on_result(self, item: BatchInput, metrics: dict) -> None:
        self.record(item, summary_row(metrics, metrics["status"]))

    def ordered(self, unfinished: str = "pending") -> list[dict]:
        return [self.rows.get(i.name) or unfinished_row(i, unfinished) for i in self.items]

    def write(self, *, finished: bool, unfinished: str = "pending"):
        return write_summary(self.out_dir, self.ordered(unfinished), started=self.started,
                             config=self.settings, finished=finished)

    def close(self, *, cancelled: bool) -> BatchResult:
        """The final summary: the items without a result are cancelled ones."""
        csv_path, json_path = self.write(finished=not cancelled, unfinished="cancelled")
        if self.bar is not None:
            self.bar.close()
        return BatchResult(self.ordered("cancelled"), self.out_dir, csv_path, json_path)


def _item_line(row: dict) -> tuple[str, object]:
    """The line printed when an item ends, and its stream."""
    if row["status"] == "failed":
        return f"error: {row['name']}: {row['error']}", sys.stderr
    psnr = "" if row.get("psnr") is None else f", PSNR {row['psnr']:.2f} dB"
    return (f"done {row['name']}: {row['count']:,} splats{psnr} in {row['total_s']:.1f} s",
            sys.stdout)


def _plan(table: _BatchTable, config: BatchConfig) -> list[BatchInput]:
    """Skip finished items, fail the ones that cannot run; the items left to run."""
    todo = []
    for item in table.items:
        earlier = None if config.force else finished_metrics(table.out_dir, item.name)
        if earlier is not None:
            table.record(item, summary_row(earlier, "skipped"), quiet=True)
        elif item.kind == "invalid" or (table.out_dir / item.name).exists() and (
                finished_metrics(table.out_dir, item.name) is None):
            problem = item.problem or (f"{table.out_dir / item.name} exists and is not a "
                                       "finished batch item; move it away or name the input "
                                       "differently (NAME=PATH)")
            table.on_result(item, fail_item(item, table.out_dir, config, problem))
        else:
            todo.append(item)
    skipped = len(table.items) - len(todo) - sum(
        r["status"] == "failed" for r in table.rows.values())
    if skipped and table.bar is not None:
        table.bar.write(f"skipped {skipped} item(s) finished in an earlier run (--force redoes "
                        "them)", sys.stderr)
    return todo


def run_batch(inputs, out, *, config: BatchConfig | None = None, executor: Executor = "ray",
              ray_options=None, show_progress: bool = True) -> BatchResult:
    """Reconstruct every input (paths, see :mod:`.inputs`) into the folder ``out``.

    ``executor``: "ray" (each item a Ray task; ``ray_options`` a :class:`.ray_runner.RayOptions`)
    or "local" (one after another in this process, no Ray). ``show_progress``: print a line
    per item and a progress bar. Returns the summary; GSError for a bad batch (no inputs, two
    inputs with one name, an output folder that cannot be written) before anything runs. A
    bad input fails alone. Ctrl-C: running items are stopped and removed, the summary written
    (them as cancelled) and KeyboardInterrupt raised again.
    """
    config = config or BatchConfig()
    items = resolve_inputs(inputs)
    out_dir = prepare_output(out)
    with _output_lock(out_dir):
        _remove_unfinished(out_dir)
        table = _BatchTable(items, out_dir, config, {"executor": executor}, show_progress)
        todo = _plan(table, config)
        try:
            if todo and executor == "ray":
                from .ray_runner import RayOptions, run_on_ray

                run_on_ray(todo, out_dir, config, ray_options or RayOptions(), table.on_result)
            elif todo:
                for item in todo:
                    table.on_result(item, run_item(item, out_dir, config))
        except KeyboardInterrupt:
            table.close(cancelled=True)
            _remove_unfinished(out_dir)
            raise
        return table.close(cancelled=False)
