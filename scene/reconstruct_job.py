"""One-click reconstruction in Blender: capture the selection → reconstruct → import the splats
on top of the source objects; or photos (a folder or a video) → poses and fit → the splats and
the recovered cameras in a new collection (:mod:`.photo_import`).

:class:`ReconstructSession` runs the three stages either a slice at a time (``step()`` from a
modal operator's timer; never blocks for long) or all at once (``run()``, background mode and
scripts). The model runs

- in-process, in a background thread, when torch imports cleanly in this Python, or
- in the warm worker subprocess;

which one, and the worker's lifecycle, is :mod:`.model_runner`'s business.

Files: every job gets a private folder (``tempfile.mkdtemp``: mode 0700) holding the capture
data set and the splat file; it is removed when the session closes. A worker gets the data set
and sends the splats back over its pipe (it may run on another machine), so it never reads or
writes this folder itself. From photos, the worker gets the photos (the ``photos`` job) and
sends back the splats and the posed data set, which is kept beside the photos (or where the
:class:`~blender_gs_addon.poses.photo_job.PhotoJob` says) only once the import succeeds.

Scene state: the capture restores everything it touches; the splats are imported in a single
all-or-nothing call at the very end, so a cancel or a failure at any stage leaves the scene as
it was.

Cancel never blocks Blender's main thread: it raises the stop flag, which the model polls
between stages and at every fit step, and returns. An in-process model thread may finish its
current step later (a network forward cannot be interrupted); whatever it returns is thrown
away. A worker job gets :data:`.model_runner.CANCEL_GRACE` seconds to stop cooperatively,
after which the worker is terminated (the next job starts a fresh one).
The job folder is removed once nothing writes into it any more.

Errors are :class:`GSError` with the text of whatever failed (capture, data-set reader,
worker, importer).
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import replace
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..blender_gs_addon.capture.options import CaptureOptions
from ..blender_gs_addon.datasets.nerf_synthetic import read_transforms
from ..blender_gs_addon.errors import Cancelled, GSError, Report, log_report
from ..blender_gs_addon.poses.photo_job import PhotoJob
from ..blender_gs_addon.reconstruction.pipeline import held_out_summary
from ..blender_gs_addon.worker.offload import require_pycolmap_in
from ..blender_gs_addon.worker.protocol import JOB_DIR_PREFIX
from ..blender_gs_addon.worker.transfer import dataset_bundle
from ..preferences import DEFAULTS, Settings, backend_from_item
from . import model_runner
from .capture import CaptureCancelled, CaptureSession
from .photo_import import import_photo_result
from .splat_object import import_splats

__all__ = [
    "STAGES", "DEFAULT_CAPTURE", "ReconstructSession", "ReconstructCancelled", "active_session",
    "last_result", "print_progress",
]

STAGES = ("idle", "capture", "reconstruct", "import", "done", "cancelled", "failed")

# Share of the progress bar each stage gets (the model dominates the wall time).
_SPAN = {"capture": (0.0, 0.25), "reconstruct": (0.25, 0.97), "import": (0.97, 1.0)}
# From photos there is no capture: the model's stages share the bar (poses, then the fit).
_PHOTO_SPAN = {"capture": (0.0, 0.0), "reconstruct": (0.0, 0.97), "import": (0.97, 1.0)}
_PHOTO_STAGES = {"upload": (0.0, 0.05), "photos": (0.05, 0.1), "frames": (0.05, 0.1),
                 "extract": (0.1, 0.25), "match": (0.25, 0.32), "map": (0.32, 0.4),
                 "dataset": (0.4, 0.42), "load": (0.42, 0.43), "fit": (0.43, 0.95),
                 "eval": (0.95, 0.98), "done": (0.98, 0.98), "download": (0.98, 1.0)}

# Capture settings when the caller gives none (the operator passes the scene's gs_capture).
DEFAULT_CAPTURE = CaptureOptions(rig="orbit", views=16, elevations=(0.0, 30.0), resolution=256,
                                 engine="EEVEE", test_views=0)

LGM_RESOLUTION = 256  # LGM's input size; the rig renders square views at this size


class ReconstructCancelled(Cancelled):
    """The reconstruction was cancelled; the scene is as it was."""


# ------------------------------------------------------------------------------- the session
def print_progress(stage: str, fraction: float, message: str) -> None:
    """Progress printer for background mode: one line per stage change, else at most 1/s."""
    print(f"Reconstruct [{fraction * 100:5.1f}%] {stage}: {message}", flush=True)


class _Throttle:
    """Pass on a stage change at once, a new message at most every ``every`` seconds."""

    def __init__(self, sink, every: float = 1.0):
        self.sink, self.every, self.last, self.seen = sink, every, 0.0, (None, None)

    def __call__(self, stage, fraction, message):
        now = time.monotonic()
        if (stage, message) == self.seen:
            return
        if stage != self.seen[0] or now - self.last >= self.every:
            self.seen, self.last = (stage, message), now
            self.sink(stage, fraction, message)


_ACTIVE: dict = {"session": None, "last": None}


def active_session() -> ReconstructSession | None:
    """The session that is running now (one at a time), if any."""
    return _ACTIVE["session"]


def last_result() -> dict | None:
    """The result of the last successful reconstruction in this Blender session: the
    reconstruct() dict (splats, count, normalisation, device, seconds, …) plus object (name of
    the imported object), job_dir (removed by now), in_process and python (the worker's)."""
    return _ACTIVE["last"]


def _online_access() -> bool:
    """Blender's "Allow Online Access" (True on versions before it existed)."""
    return bool(getattr(bpy.app, "online_access", True))


def _use_lgm_rig(options: CaptureOptions, backend: str, report: Report) -> CaptureOptions:
    """LGM reads exactly its own 4 views; any other rig would feed it wrong cameras."""
    if options.rig == "lgm":
        return options
    resolution = options.resolution
    report({'INFO'}, f"the {backend} backend needs LGM's 4 views: capturing with the LGM rig")
    return replace(options, rig="lgm", fov=None, radius=None,
                   resolution=resolution if isinstance(resolution, int) else LGM_RESOLUTION)


class ReconstructSession:
    """Capture ``objects`` → reconstruct → import, steppable or synchronous.

    Args:
        context: gives the scene and view layer (and the selection when ``objects`` is None).
        objects: what to capture (default: the selected objects).
        capture: how to capture: :class:`CaptureOptions` or a dict of its fields (default:
            :data:`DEFAULT_CAPTURE`).
        settings: preference values (:class:`preferences.Settings`).
        backend: "fit", "lgm" or "lgm+fit" (default: the preferences' default backend).
        steps: fit steps (None: the backend's default); seed: random seed.
        name: name of the new object (default: "<active object> Splats").
        keep_files: keep the job folder (debugging); it is reported.
        dataset: reconstruct this data set folder instead of capturing.
        photos: reconstruct from photos instead (:class:`PhotoJob`): poses first, then the
            fit; the result is a collection with the splats and the recovered cameras.
        report: ``report(levels, message)``, called from the thread that calls step/run.

    Use: ``start()``, then ``step()`` until it returns False (or ``run()``); ``cancel()`` any
    time; ``close()`` always (idempotent; ``run()`` closes itself). After success ``object``
    holds the imported splat object and ``result`` the reconstruction result dict (from photos
    with ``poses``, the data set's report, and ``collection``, the new collection's name).
    """

    def __init__(self, context, *, objects=None, capture: CaptureOptions | dict | None = None,
                 settings: Settings = DEFAULTS, backend: str | None = None,
                 steps: int | None = None, seed: int = 0, name: str | None = None,
                 keep_files: bool = False, dataset: str | os.PathLike | None = None,
                 photos: PhotoJob | None = None, report: Report = log_report):
        self.scene = context.scene
        self.view_layer = context.view_layer
        self.objects = list(context.selected_objects if objects is None else objects)
        self.capture_options = (CaptureOptions(**capture) if isinstance(capture, dict)
                                else capture or DEFAULT_CAPTURE)
        self.settings = settings
        self.backend = backend or backend_from_item(settings.default_backend)
        self.steps = None if not steps else int(steps)
        self.seed = int(seed)
        active = getattr(context, "active_object", None)
        base = active if active in self.objects else (self.objects[0] if self.objects else None)
        # An existing data set (a capture, transforms.json photos, the cameras-with-photos
        # export) is reconstructed as it is: no capture, no objects needed.
        self.dataset = Path(os.path.abspath(os.fspath(dataset))) if dataset else None
        self.photos = photos
        if photos is not None:
            base_name = photos.name
        elif self.dataset is not None:
            base_name = self.dataset.name
        else:
            base_name = base.name if base else "Capture"
        self.name = name or f"{base_name} Splats"
        self.keep_files = keep_files
        self.report = report
        if self.backend not in ("fit", "lgm", "lgm+fit"):
            raise GSError(f"unknown backend {self.backend!r}; choose fit, lgm or lgm+fit")
        if photos is not None and self.backend != "fit":
            raise GSError(f"photos are reconstructed with the fit backend, not {self.backend} "
                          "(LGM needs its own 4-view rig)")
        if self.dataset is None and self.backend != "fit":
            self.capture_options = _use_lgm_rig(self.capture_options, self.backend, report)
        self.in_process = model_runner.use_in_process(settings, photos=photos is not None)
        # How the worker starts (a local Python or a command such as ssh), None in-process.
        self.worker = None if self.in_process else model_runner.worker_launch(settings)
        self.python = None if self.worker is None else (
            self.worker.get("python") or self.worker["command"])

        self.stage = "idle"
        self.stage_fraction = 0.0
        self.message = "not started"
        self.result: dict | None = None
        self.object: bpy.types.Object | None = None
        self.error: str = ""
        self.job_dir: Path | None = None
        self._capture: CaptureSession | None = None
        self._capture_dir: Path | None = None
        self._stop = threading.Event()
        self._events: queue.Queue = queue.Queue()  # (kind, payload) from model threads
        self._thread: threading.Thread | None = None
        self._thread_outcome: dict = {}
        self._upload = None  # the photos' bundle for the worker
        self._job = None  # WorkerJob while the worker runs ours
        self._worker_start: Future | None = None
        self._reaper: Future | None = None  # the cancelled worker job's grace period
        self._closed = False
        self._cleanup_lock = threading.Lock()
        self._writers = 0  # model thread / cancelled worker job still writing into job_dir
        self._started = None

    # -------------------------------------------------------------------------- progress
    @property
    def fraction(self) -> float:
        """Overall progress 0‥1 (capture, reconstruct and import weighted)."""
        if self.stage == "done":
            return 1.0
        lo, hi = (_PHOTO_SPAN if self.photos else _SPAN).get(self.stage, (0.0, 0.0))
        return lo + (hi - lo) * min(1.0, max(0.0, self.stage_fraction))

    @property
    def running(self) -> bool:
        return self.stage in ("capture", "reconstruct", "import")

    def _set(self, stage: str, fraction: float, message: str) -> None:
        self.stage, self.stage_fraction, self.message = stage, fraction, message

    def _model_progress(self, stage: str, fraction: float, message: str) -> None:
        """The model's progress: from photos each of its stages has its part of the bar."""
        if self.photos is not None and stage in _PHOTO_STAGES:
            lo, hi = _PHOTO_STAGES[stage]
            fraction = lo + (hi - lo) * min(1.0, max(0.0, float(fraction)))
        elif stage == "done":
            fraction = 1.0
        self.stage_fraction = float(fraction)
        self.message = f"{stage}: {message}" if message else stage

    # ----------------------------------------------------------------------------- start
    def start(self) -> None:
        """Validate, make the private job folder and begin the capture."""
        if self.stage != "idle":
            raise GSError("this reconstruction has already been started")
        other = _ACTIVE["session"]
        if other is not None and other is not self and other.running:
            raise GSError("another reconstruction is running; wait for it or cancel it (Esc)")
        self._started = time.perf_counter()
        model_runner.sweep_once()
        self.job_dir = Path(tempfile.mkdtemp(prefix=JOB_DIR_PREFIX))  # mode 0700
        _ACTIVE["session"] = self
        if self.photos is not None:
            try:
                self._start_photos()
            except BaseException as err:
                self._fail(err)
                raise
            return
        if self.dataset is not None:
            try:
                read_transforms(self.dataset, check_images=True, report=self.report)
            except BaseException as err:
                self._fail(err)
                raise
            self._capture_dir = self.dataset
            self._set("reconstruct", 0.0, "starting the model")
            self._launch()
            return
        self._capture_dir = self.job_dir / "capture"
        try:
            self._capture = CaptureSession(
                self.scene, objects=self.objects, options=self.capture_options,
                out_dir=self._capture_dir, view_layer=self.view_layer, report=self.report)
            self._set("capture", 0.0, "preparing the capture")
            self._capture.begin()
            self.message = self._capture.message
        except BaseException as err:
            self._fail(err)
            raise

    def _start_photos(self) -> None:
        """Check the photos and the data set folder (and pack the photos for the worker)
        before the model starts: bad input is named at once, not after minutes."""
        self.photos.check()
        if not self.in_process:
            self._upload = self.photos.worker_job()
        self._set("reconstruct", 0.0, "starting the model")
        self._launch()

    # ------------------------------------------------------------------------------ step
    def step(self, *, budget: float = 0.05) -> bool:
        """Do a slice of work; True while there is more. Never waits for the model: it only
        collects its progress. Raises GSError on failure (the session is then closed)."""
        if self.stage == "idle":
            self.start()
            return True
        if not self.running:
            return False
        try:
            if self.stage == "capture":
                self._step_capture()
            elif self.stage == "reconstruct":
                self._step_reconstruct(wait=0.0, budget=budget)
            elif self.stage == "import":
                self._import()
        except BaseException as err:
            self._fail(err)
            raise
        return self.running

    def _step_capture(self) -> None:
        capture = self._capture
        more = capture.step()
        self._set("capture", capture.fraction, capture.message)
        if more:
            return
        capture.finish()
        capture.close()
        self._capture = None
        self._set("reconstruct", 0.0, "starting the model")
        self._launch()

    # ------------------------------------------------------------------------- the model
    def _params(self) -> dict:
        """The model's options; the worker gets its data set and sends the splats in-band,
        so paths (capture, out) are added only for the in-process run."""
        settings = self.settings
        if self.photos is not None:  # the fit only: no weights, no downloads
            return {"steps": self.steps, "device": settings.device.lower(), "seed": self.seed}
        weights = settings.weights.strip() or None
        if weights and (self.worker is None or "python" in self.worker):
            weights = os.path.abspath(os.path.expanduser(bpy.path.abspath(weights)))
        # else: a path on the remote worker's machine, expanded over there.
        return {
            "backend": self.backend, "steps": self.steps, "weights": weights,
            "device": settings.device.lower(), "seed": self.seed,
            # Blender's "Allow Online Access" off (Preferences › System) means no downloads,
            # as the extension platform asks of every add-on.
            "offline": True if settings.offline or not _online_access() else None,
        }

    def _launch(self) -> None:
        """Start the model: a thread running reconstruct() here, or a thread starting the
        worker (its torch import takes seconds) after which the job is submitted."""
        if self.photos is not None:
            params = {**self._params(),
                      **self.photos.in_process_arguments(self.job_dir / "result")}
        else:
            params = {**self._params(), "capture": str(self._capture_dir),
                      "out": str(self.job_dir / "splats.ply")}
        events, stop, outcome = self._events, self._stop, self._thread_outcome

        def in_process():
            from ..blender_gs_addon.reconstruction.pipeline import reconstruct

            try:
                outcome["result"] = reconstruct(
                    **params, should_stop=stop.is_set,
                    progress=lambda s, f, m: events.put(("progress", (s, f, m))),
                    report=lambda levels, msg: events.put(("report", (levels, msg))))
            except BaseException as err:
                outcome["error"] = err
                outcome["traceback"] = traceback.format_exc()
            finally:
                self._writer_done()

        if self.in_process:
            self.message = "running the model in Blender's Python"
            self._thread = threading.Thread(target=in_process, daemon=True,
                                            name="gs-reconstruct")
            with self._cleanup_lock:
                self._writers += 1
            self._thread.start()
        else:
            self.message = f"starting the worker ({self.python})"
            self._worker_start = model_runner.start_worker(self.worker)

    def _writer_done(self) -> None:
        # A cancelled session may have closed while the model was finishing its step; the
        # folder is then removed here, once nothing writes into it any more.
        with self._cleanup_lock:
            self._writers -= 1
            remove = self._closed and self._writers == 0
        if remove:
            self._remove_job_dir()

    def _drain(self) -> None:
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "progress":
                self._model_progress(*payload)
            else:
                levels, message = payload
                self.report(set(levels), message)

    def _step_reconstruct(self, *, wait: float, budget: float) -> None:
        if self.in_process:
            self._thread.join(timeout=wait)
            self._drain()
            if self._thread.is_alive():
                return
            self._collect(self._thread_outcome)
            return
        if self._job is None:
            try:
                client = self._worker_start.result(timeout=wait or 0.0)
            except FuturesTimeout:
                return
            if self._stop.is_set():
                raise ReconstructCancelled("reconstruction cancelled")
            self._submit(client)
            return
        deadline = time.monotonic() + max(wait, budget)
        while True:
            for event in self._job.poll():
                if event.kind == "progress":
                    self._model_progress(event.stage, event.fraction, event.message)
                else:
                    self.report({event.level}, event.message)
            if self._job.done or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if self._job.done:
            if self._job.cancelled:
                raise ReconstructCancelled("reconstruction cancelled")
            self._collect({"result": self._job.outputs})

    def _submit(self, client) -> None:
        """Our job to the warm worker: the photos, or the data set to reconstruct."""
        if self.photos is not None:
            require_pycolmap_in(client)
            params, upload = self._upload
            kind, params = "photos", {**self._params(), **params}
        else:
            kind, params = "reconstruct", self._params()
            upload = dataset_bundle(self._capture_dir, report=self.report)
        self._job = client.submit(kind, params, upload=upload,
                                  download_dir=self.job_dir / "result")
        self.message = f"worker pid {client.info.get('pid')}: reconstructing"

    def _collect(self, outcome: dict) -> None:
        if "error" in outcome:
            err = outcome["error"]
            if isinstance(err, GSError):
                raise err
            print(outcome.get("traceback", ""), file=sys.stderr)
            raise GSError(f"reconstruction failed: {type(err).__name__}: {err}") from err
        result = outcome.get("result") or {}
        if result.get("cancelled") or self._stop.is_set():
            raise ReconstructCancelled("reconstruction cancelled")
        if "splats" not in result or "normalisation" not in result:
            raise GSError(f"the reconstruction returned no splats ({result})")
        if self.photos is not None and "poses" not in result:
            raise GSError(f"the reconstruction returned no poses ({result})")
        self.result = result
        self._set("import", 0.0, f"importing {result.get('count', 0):,} splats")

    # ---------------------------------------------------------------------------- import
    def _import(self) -> None:
        if self.photos is not None:
            self._import_photos()
        else:
            self._import_on_objects()
        seconds = time.perf_counter() - self._started
        self.result["total_seconds"] = seconds
        held_out = held_out_summary(self.result)
        if self.result.get("psnr_note"):
            self.report({'WARNING'}, f"Held-out PSNR not available: {self.result['psnr_note']}")
        self._set("done", 1.0, f"{self.result.get('count', 0):,} splats in {seconds:.1f} s "
                               f"({'in Blender' if self.in_process else 'worker'}, "
                               f"{self.result.get('device', '?')})"
                               + (f", {held_out}" if held_out else ""))
        _ACTIVE["last"] = {**self.result, "object": self.object.name,
                           "job_dir": str(self.job_dir), "in_process": self.in_process,
                           "python": self.python}
        self.close()

    def _import_photos(self) -> None:
        """The data set kept, the splats and cameras in a new collection (all or nothing)."""
        collection, obj, poses = import_photo_result(
            self.photos, self.job_dir / "result", scene=self.scene,
            view_layer=self.view_layer, report=self.report)
        self.object = obj
        self.result.update(poses=poses, dataset=str(self.photos.dataset_folder),
                           splats=poses["splats"], collection=collection.name)

    def _import_on_objects(self) -> None:
        normalisation = np.asarray(self.result["normalisation"], dtype=np.float64)  # [4, 4]
        if normalisation.shape != (4, 4) or not np.isfinite(normalisation).all():
            raise GSError(f"the capture's normalisation is not a finite 4×4 matrix "
                          f"({self.result['normalisation']})")
        undo = Matrix(np.linalg.inv(normalisation).tolist())
        obj = import_splats(self.result["splats"], up_axis="-Y", name=self.name,
                            report=self.report)
        # The file is in the capture's normalised world; this puts it back on the objects.
        # matrix_basis, not matrix_world: a new object's matrix_world is only brought up to
        # date by the next depsgraph evaluation (it still reads as the identity here).
        obj.matrix_basis = undo @ obj.matrix_basis
        self.object = obj

    # ------------------------------------------------------------------------ synchronous
    def run(self, *, progress: Callable[[str, float, str], None] | None = print_progress,
            ) -> bpy.types.Object:
        """Everything in one call (background mode, scripts); returns the splat object.
        ``progress(stage, overall_fraction, message)`` is throttled to about one call a
        second."""
        notify = _Throttle(progress) if progress is not None else None
        try:
            if self.stage == "idle":
                self.start()
            while self.running:
                if self.stage == "reconstruct":
                    try:
                        self._step_reconstruct(wait=0.2, budget=0.2)
                    except BaseException as err:
                        self._fail(err)
                        raise
                else:
                    self.step()
                if notify is not None:
                    notify(self.stage, self.fraction, self.message)
        finally:
            self.close()
        if self.stage != "done":
            raise ReconstructCancelled("reconstruction cancelled")
        return self.object

    # ------------------------------------------------------------------- cancel / close
    def cancel(self) -> bool:
        """Stop at whatever stage; the scene is left as it was. Returns at once (the model is
        told to stop and left to do so in the background: see :meth:`wait_released`). False
        when there is nothing left to cancel (already done, failed or cancelled)."""
        if not self.running and self.stage != "idle":
            return False
        self._set("cancelled", 0.0, "cancelled")
        self.close()
        return True

    def _fail(self, err: BaseException) -> None:
        if isinstance(err, ReconstructCancelled | CaptureCancelled):
            self._set("cancelled", 0.0, str(err))
        else:
            self.error = str(err)
            self._set("failed", 0.0, self.error)
        self.close()

    def _release_job(self) -> None:
        """Cancel our worker job without waiting for it (:func:`.model_runner.release_job`);
        the job folder stays until the job has stopped writing into it."""
        with self._cleanup_lock:
            self._writers += 1
        self._reaper = model_runner.release_job(self._job, self._writer_done)
        if self._reaper is None:  # nothing ran any more
            self._writer_done()

    def wait_released(self, timeout: float | None = None) -> bool:
        """Block until a cancelled session's model has stopped (the in-process thread ended,
        the worker job cancelled or the worker terminated) and its folder is gone; True when
        it has within ``timeout`` seconds. Not for Blender's main thread: tests, scripts."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left():
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if self._thread is not None:
            self._thread.join(timeout=left())
            if self._thread.is_alive():
                return False
        if self._reaper is not None:
            try:
                self._reaper.result(timeout=left())
            except FuturesTimeout:
                return False
        with self._cleanup_lock:
            return self._writers == 0

    def close(self) -> None:
        """Stop the model if it still runs, restore the scene after an unfinished capture and
        remove the job folder (now, or when the model has stopped writing into it)."""
        with self._cleanup_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._release_job()
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        with self._cleanup_lock:
            busy = self._writers > 0  # the last writer removes the folder when it ends
        if self.keep_files and self.job_dir is not None:
            self.report({'INFO'}, f"job files kept in {self.job_dir}")
        elif not busy:
            self._remove_job_dir()
        if _ACTIVE["session"] is self:
            _ACTIVE["session"] = None

    def _remove_job_dir(self) -> None:
        if self.job_dir is not None and not self.keep_files:
            shutil.rmtree(self.job_dir, ignore_errors=True)

    def __enter__(self) -> ReconstructSession:
        return self

    def __exit__(self, *exc) -> None:
        if self.running:
            self.cancel()
        self.close()
