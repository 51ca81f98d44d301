"""The work of one batch item, with or without Ray: capture (for .blend inputs), reconstruct,
metrics, log, and the item's folder published only when complete.

Layout of the batch output folder ``DIR``::

    DIR/<name>/                   finished items only: splats.ply, metrics.json, log.txt,
                                  dataset/ (COLMAP inputs: the normalised transforms files;
                                  .blend inputs: the captured views)
    DIR/_failed/<name>/           the last failure of an item: metrics.json (status, error), log.txt
    DIR/.partial-<name>-<token>/  an item being made; renamed to DIR/<name> when complete
    DIR/summary.csv, summary.json the table of the whole batch

An item is written into its ``.partial`` folder, a sibling of its final one (so relative paths
inside stay valid), and becomes ``DIR/<name>`` by one rename once its metrics.json says
``"status": "done"``: a crash, a kill or Ctrl-C can leave a ``.partial`` folder behind (removed
by the next run) but never an unfinished ``DIR/<name>``. Resumption: an item whose
``DIR/<name>/metrics.json`` says done is skipped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..devices import Device
from ..errors import GSError
from .inputs import BatchInput
from .prepare import capture_blend, colmap_dataset

__all__ = ["BatchConfig", "ItemLog", "METRICS", "LOG", "FAILED", "DATASET", "STAGING_PREFIX",
           "new_staging", "finished_metrics", "write_json", "capture_item", "reconstruct_item",
           "run_item", "fail_item"]

METRICS, LOG, DATASET = "metrics.json", "log.txt", "dataset"
FAILED = "_failed"
STAGING_PREFIX = ".partial-"
SPLAT_FORMATS = (".ply", ".compressed.ply", ".spz", ".splat")

Backend = Literal["fit", "lgm", "lgm+fit"]
CaptureRig = Literal["orbit", "sphere"]
CaptureEngine = Literal["CYCLES", "EEVEE", "WORKBENCH"]


@dataclass(frozen=True)
class BatchConfig:
    """How every item of a batch is captured and reconstructed."""

    backend: Backend = "fit"  # reconstruction backend (see reconstruction.pipeline)
    steps: int | None = None  # fit steps; None: the device's preset (cpu 1500, gpu 30000)
    seed: int = 0  # random seed of the fit
    weights: str | None = None  # LGM .safetensors file or folder, same path on every node
    device: Device = "auto"  # in-process runs; a Ray task uses the GPU Ray gave it, else CPU
    splats_format: str = ".ply"  # each item's splat file: splats<format>
    rig: CaptureRig = "sphere"  # .blend inputs: camera rig (LGM backends use the LGM rig)
    views: int = 32  # .blend inputs: training views
    test_views: int = 8  # .blend inputs: held-out views for PSNR/SSIM
    resolution: int = 256  # .blend inputs: square image size in pixels
    engine: CaptureEngine = "EEVEE"  # .blend inputs: render engine of the capture
    colmap_holdout: int = 8  # COLMAP inputs: every N-th photo held out for PSNR/SSIM (0: none)
    force: bool = False  # redo items already finished in the output folder

    def __post_init__(self) -> None:
        if self.splats_format not in SPLAT_FORMATS:
            raise GSError(f"splat format must be one of {', '.join(SPLAT_FORMATS)}, got "
                          f"{self.splats_format!r}")
        if self.views < 1 or self.test_views < 0 or self.resolution < 8:
            raise GSError("capture needs views ≥ 1, test views ≥ 0 and a resolution ≥ 8 px")
        if self.colmap_holdout < 0 or self.colmap_holdout == 1:
            raise GSError("COLMAP hold-out must be 0 (none) or N ≥ 2 (every N-th photo)")


# ----------------------------------------------------------------------------- folders, files
def new_staging(out_dir: Path, name: str) -> Path:
    """A fresh ``.partial`` folder path for item ``name`` (not created)."""
    return Path(out_dir) / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex[:8]}"


def write_json(path: Path, data) -> None:
    """Write JSON so that readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def finished_metrics(out_dir: Path, name: str) -> dict | None:
    """The metrics of item ``name`` when it finished in an earlier run, else None."""
    try:
        metrics = json.loads((Path(out_dir) / name / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "done" else None


def _json_number(value):
    """Floats JSON can hold; inf/NaN (a perfect PSNR) become None."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


class ItemLog:
    """An item's log.txt: timestamped lines, ``report=`` messages and throttled progress. The
    file is opened in binary append mode, so a capture subprocess can write into it too."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = open(self.path, "ab")  # noqa: SIM115 — closed by close()
        self._last_progress = (None, 0.0)

    def line(self, text: str) -> None:
        if self.file.closed:  # after the item's end (an error while publishing it)
            _append_line(self.path, text)
            return
        self.file.write(f"{time.strftime('%H:%M:%S')} {text}\n".encode())
        self.file.flush()

    def report(self, levels: set, message: str) -> None:
        self.line(f"{'/'.join(sorted(levels))}: {message}")

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        last_stage, last_time = self._last_progress
        now = time.monotonic()
        if stage != last_stage or now - last_time > 5.0 or fraction >= 1.0:
            self.line(f"[{stage} {fraction * 100:5.1f}%] {message}")
            self._last_progress = (stage, now)

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def _append_line(path: Path, text: str) -> None:
    """One timestamped line at the end of a log, if it can still be written."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")
    except OSError:
        pass


def _fresh_folder(folder: Path) -> None:
    """An empty folder (a retried task starts over)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def _base_metrics(item: BatchInput, config: BatchConfig) -> dict:
    return {"name": item.name, "input": item.source, "path": str(item.path), "kind": item.kind,
            "status": "failed", "error": "", "host": socket.gethostname(),
            "started": time.time(), "config": asdict(config)}


# ----------------------------------------------------------------------------- failures
def _publish_failure(out_dir: Path, name: str, metrics: dict, staging: Path | None) -> None:
    """``DIR/_failed/<name>``: the failure's metrics.json and log.txt; the staging removed."""
    target = Path(out_dir) / FAILED / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if staging is not None and (staging / LOG).is_file():
        os.replace(staging / LOG, target / LOG)
    else:
        _append_line(target / LOG, f"error: {metrics['error']}")
    write_json(target / METRICS, metrics)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def fail_item(item: BatchInput, out_dir: Path, config: BatchConfig, error: str, *,
              staging: Path | None = None, metrics: dict | None = None) -> dict:
    """Record item ``item`` as failed with ``error`` (one line); returns its metrics."""
    metrics = {**(metrics or _base_metrics(item, config)), "status": "failed", "error": error,
               "finished": time.time()}
    try:
        _publish_failure(Path(out_dir), item.name, metrics, staging)
    except OSError as err:  # the failure is still reported in the summary
        metrics["error"] = f"{error} (and its log could not be kept: {err})"
    return metrics


# ----------------------------------------------------------------------------- the work
def _attempt(step, log: ItemLog) -> str:
    """Run ``step()``; "" when it worked, else the error line (with the traceback in the log
    for unforeseen errors). Interrupts go on."""
    try:
        step()
    except (GSError, OSError) as err:
        return str(err)
    except Exception as err:  # an unforeseen failure fails this item only
        log.line(traceback.format_exc())
        return f"{type(err).__name__}: {err}"
    return ""


def capture_item(item: BatchInput, staging: Path, config: BatchConfig) -> dict:
    """Step 1 of a .blend input (a CPU task): capture into ``staging/dataset``.

    Returns ``{"capture_seconds": s}``, or ``{"error": line}`` when the capture failed (the
    reconstruction step then records the failure). Interrupted: the staging folder is removed.
    """
    staging = Path(staging)
    _fresh_folder(staging)
    log = ItemLog(staging / LOG)
    start = time.perf_counter()
    log.line(f"capture {item.path} ({', '.join(item.objects) or 'the file selection'}): "
             f"{config.views} + {config.test_views} views at {config.resolution}² "
             f"with {config.engine}")
    try:
        error = _attempt(
            lambda: capture_blend(item, staging / DATASET, config, log_file=log.file), log)
    except BaseException:  # cancelled
        log.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if error:
        log.line(f"error: {error}")
    log.close()
    return {"error": error} if error else {"capture_seconds": time.perf_counter() - start}


def _dataset_for(item: BatchInput, staging: Path, config: BatchConfig, log: ItemLog) -> Path:
    if item.kind == "invalid":
        raise GSError(item.problem)
    if item.kind == "colmap":
        log.line(f"COLMAP model {item.path}: normalising into {DATASET}/")
        return colmap_dataset(item.path, staging / DATASET, holdout=config.colmap_holdout,
                              report=log.report)
    if item.kind == "blend":
        return staging / DATASET
    return item.path


def _reconstruct_into(item, staging: Path, config: BatchConfig, log: ItemLog, device) -> dict:
    """Reconstruct the item's data set into the staging folder; the metrics it adds."""
    from ..reconstruction.pipeline import reconstruct

    dataset = _dataset_for(item, staging, config, log)
    log.line(f"reconstruct {dataset} with {config.backend} on {device}")
    cpu_start = time.process_time()
    result = reconstruct(
        capture=str(dataset), out=str(staging / f"splats{config.splats_format}"),
        backend=config.backend, steps=config.steps, weights=config.weights, device=device,
        seed=config.seed, offline=True, progress=log.progress, report=log.report)
    return {"splats": Path(result["splats"]).name, "count": result["count"],
            "sh_degree": result["sh_degree"], "psnr": _json_number(result.get("psnr")),
            "ssim": _json_number(result.get("ssim")), "test_views": result.get("test_views", 0),
            "backend": result["backend"], "device": result["device"], "steps": result["steps"],
            "reconstruct_seconds": result["seconds"],
            "cpu_seconds": time.process_time() - cpu_start,  # all threads of this process
            "normalisation": result["normalisation"]}


def _publish(staging: Path, out_dir: Path, name: str) -> Path:
    """Rename the complete staging folder to ``DIR/<name>`` (replacing a finished item of an
    earlier run, never a folder the batch did not write)."""
    final = out_dir / name
    retired = None
    if final.exists():
        if finished_metrics(out_dir, name) is None:
            raise GSError(f"{final} exists and is not a finished batch item; move it away or "
                          "name the input differently (NAME=PATH)")
        retired = out_dir / f"{STAGING_PREFIX}{name}-replaced-{uuid.uuid4().hex[:8]}"
        os.replace(final, retired)
    os.replace(staging, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    shutil.rmtree(out_dir / FAILED / name, ignore_errors=True)
    return final


def reconstruct_item(item: BatchInput, staging: Path, out_dir: Path, config: BatchConfig, *,
                     captured: dict | None = None, device: str | None = None) -> dict:
    """Step 2 (or the only step) of an item: its data set reconstructed, metrics.json and
    log.txt written, the staging folder published as ``DIR/<name>`` (or the failure recorded
    under ``DIR/_failed/<name>``). Returns the item's metrics (``status`` done or failed).

    ``captured``: what :func:`capture_item` returned for a .blend input. ``device``: where to
    reconstruct (default ``config.device``). Interrupted (a cancelled task, Ctrl-C): the
    staging folder is removed and the interrupt goes on.
    """
    staging, out_dir = Path(staging), Path(out_dir)
    if captured is None:
        _fresh_folder(staging)
    metrics = _base_metrics(item, config)
    metrics["capture_seconds"] = (captured or {}).get("capture_seconds")
    start = time.perf_counter()
    log = ItemLog(staging / LOG)

    def work():
        if captured is not None and "error" in captured:
            raise GSError(captured["error"])
        metrics.update(_reconstruct_into(item, staging, config, log, device or config.device))
        metrics.update(status="done", finished=time.time(), total_seconds=(
            time.perf_counter() - start + (metrics["capture_seconds"] or 0.0)))
        psnr = "none (no test views)" if metrics["psnr"] is None else f"{metrics['psnr']:.2f} dB"
        log.line(f"done: {metrics['count']:,} splats, held-out PSNR {psnr}")
        log.close()
        write_json(staging / METRICS, metrics)
        _publish(staging, out_dir, item.name)

    try:
        error = _attempt(work, log)
    except BaseException:  # cancelled: nothing of the item stays (a published one is whole)
        log.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not error:
        return metrics
    log.close()
    _append_line(staging / LOG, f"error: {error}")
    return fail_item(item, out_dir, config, error, staging=staging, metrics=metrics)


def run_item(item: BatchInput, out_dir, config: BatchConfig | None = None, *,
             device: str | None = None) -> dict:
    """One item from start to end in this process (no Ray): capture if it is a .blend, then
    :func:`reconstruct_item`. Returns its metrics."""
    config = config or BatchConfig()
    out_dir = Path(out_dir)
    staging = new_staging(out_dir, item.name)
    captured = capture_item(item, staging, config) if item.kind == "blend" else None
    return reconstruct_item(item, staging, out_dir, config, captured=captured, device=device)
