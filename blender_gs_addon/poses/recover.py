"""Photos or a video in, a posed data set out: the pose-recovery job.

:func:`recover_poses` is what the command line (``poses``), :func:`blender_gs_addon.
reconstruct.reconstruct` (``photos=``) and a worker job call. It takes JSON-able arguments,
reports ``progress(stage, fraction, message)`` with stages ``photos`` / ``frames``,
``extract``, ``match``, ``map``, ``dataset``, and polls ``should_stop()`` between images and
inside every pycolmap call.

Nothing half-written is left as if finished: everything is written into a hidden staging folder
beside ``out`` (``.<name>.partial-<id>``) and renamed to ``out`` only when the data set is
complete; an error or a cancel removes the staging folder and leaves ``out`` as it was. An
existing ``out`` is replaced only when it is empty or an earlier pose data set (it has a
``report.json`` of ours), so a mistyped folder never loses someone's files.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..errors import GSError, Report, log_report
from .dataset import DEFAULT_TEST_EVERY, pose_report, write_pose_dataset
from .packages import require_pycolmap
from .photos import (
    PhotoInfo,
    check_photo_set,
    find_masks,
    focal_prior,
    inspect_photo,
    list_photos,
    name_list,
    prepare_images,
)
from .sfm import SfmCancelled, SfmConfig, run_sfm
from .video import VIDEO_SUFFIXES, sample_video_frames

__all__ = ["recover_poses", "REPORT_FILE", "DEFAULT_FRAMES", "DEFAULT_MAX_SIZE",
           "update_report", "source_kind", "check_dataset_folder", "publish_folder",
           "install_dataset", "restore_folder"]

REPORT_FILE = "report.json"
DEFAULT_FRAMES = 100  # frames sampled from a video
DEFAULT_MAX_SIZE = 1600  # longer side of the working images (and of the data set's images)

Progress = Callable[[str, float, str], None]


def _check_options(*, frames, max_size, test_every, camera_model, matcher, threads) -> None:
    checks = [
        (isinstance(frames, int) and frames >= 1, f"frames must be at least 1, got {frames!r}"),
        (isinstance(max_size, int) and (max_size == 0 or max_size >= 16),
         f"the working image size must be 0 (full size) or at least 16 pixels, got "
         f"{max_size!r}"),
        (isinstance(test_every, int) and test_every >= 0,
         f"test_every must be 0 (no held-out views) or more, got {test_every!r}"),
        (camera_model in ("SIMPLE_PINHOLE", "PINHOLE"),
         f"camera model must be SIMPLE_PINHOLE or PINHOLE, got {camera_model!r}"),
        (matcher in ("auto", "exhaustive", "sequential"),
         f"matcher must be auto, exhaustive or sequential, got {matcher!r}"),
        (isinstance(threads, int) and (threads == -1 or threads >= 1),
         f"threads must be -1 (all cores) or at least 1, got {threads!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise GSError(message)


def check_dataset_folder(out) -> None:
    """GSError unless ``out`` may receive a pose data set: missing, an empty folder, or an
    earlier pose data set of ours (it has our ``report.json``), so a mistyped folder never
    loses someone's files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GSError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_pose_dataset(out):
        raise GSError(f"{out}: the folder is not empty and is not a pose data set of ours; "
                      "choose a new or empty folder")


def _is_pose_dataset(folder: Path) -> bool:
    try:
        return "placed" in json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def publish_folder(staging, out, *, keep_old: bool = False) -> Path | None:
    """Move the finished folder ``staging`` to ``out`` (same file system), replacing what is
    there. The replaced folder is removed, or with ``keep_old`` moved to a hidden sibling whose
    path is returned (:func:`restore_folder` puts it back; the caller removes it otherwise)."""
    staging, out = Path(staging), Path(out)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None and not keep_old:
        shutil.rmtree(old, ignore_errors=True)
        return None
    return old


def restore_folder(out, old: Path | None) -> None:
    """Undo :func:`publish_folder` with ``keep_old``: remove ``out``, put ``old`` back."""
    shutil.rmtree(out, ignore_errors=True)
    if old is not None:
        Path(old).rename(out)


def install_dataset(folder, out) -> Path | None:
    """Copy the finished data set ``folder`` (anywhere, e.g. a worker's download) to ``out``
    as :func:`recover_poses` publishes: checked first (:func:`check_dataset_folder`), copied
    into a hidden staging folder beside ``out``, then renamed into place. Returns the replaced
    earlier data set, moved aside (see :func:`publish_folder`), or None."""
    out = Path(out).absolute()
    check_dataset_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(folder, staging)
        return publish_folder(staging, out, keep_old=True)
    except OSError as err:
        raise GSError(f"{out}: cannot write the data set here ({err})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _photo_images(source: Path, staging: Path, *, masks, max_size: int, progress: Progress,
                  should_stop) -> tuple[list[str], tuple[int, int], list[PhotoInfo]] | None:
    """Check and copy a folder's photos (and masks) into ``staging``."""
    paths = list_photos(source)
    infos = []
    for i, path in enumerate(paths):
        infos.append(inspect_photo(path))
        progress("photos", 0.2 * (i + 1) / len(paths), f"read {path.name}")
    check_photo_set(infos, source=source)
    mask_paths = find_masks(masks, paths) if masks else None
    progress("photos", 0.2, f"preparing {len(infos)} photos")
    prepared = prepare_images(infos, staging / "images", max_size=max_size, masks=mask_paths,
                              colmap_masks_dir=staging / "work" / "masks" if masks else None,
                              should_stop=should_stop)
    if prepared is None:
        return None
    progress("photos", 1.0, f"{len(prepared)} photos ready")
    return [p.name for p in prepared], (prepared[0].width, prepared[0].height), infos


def _video_images(source: Path, staging: Path, *, frames: int, max_size: int,
                  progress: Progress, should_stop):
    progress("frames", 0.0, f"sampling {frames} frames from {source.name}")
    written = sample_video_frames(source, staging / "images", count=frames, max_size=max_size,
                                  should_stop=should_stop)
    if written is None:
        return None
    infos = [inspect_photo(p) for p in written]
    check_photo_set(infos, source=f"{source} (sampled frames)")
    progress("frames", 1.0, f"{len(written)} frames sampled")
    return [p.name for p in written], (infos[0].width, infos[0].height), infos


def source_kind(source, *, masks=None) -> str:
    """"folder" or "video" for a pose source; GSError naming what is wrong with it (missing,
    neither a folder nor a video file, masks given for a video)."""
    source = Path(source)
    if source.is_dir():
        return "folder"
    if not source.exists():
        raise GSError(f"{source}: no such folder or video file")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise GSError(f"{source}: neither a folder of photos nor a video file "
                      f"({', '.join(s.lstrip('.') for s in VIDEO_SUFFIXES)})")
    if masks:
        raise GSError("masks are for a folder of photos; for a video, sample its frames "
                      "into a folder first and give masks for them")
    return "video"


def _source_images(source: Path, staging: Path, *, masks, frames, max_size, progress,
                   should_stop):
    if source_kind(source, masks=masks) == "folder":
        return _photo_images(source, staging, masks=masks, max_size=max_size,
                             progress=progress, should_stop=should_stop)
    return _video_images(source, staging, frames=frames, max_size=max_size,
                         progress=progress, should_stop=should_stop)


def recover_poses(*, photos, out, masks=None, frames: int = DEFAULT_FRAMES,
                  max_size: int = DEFAULT_MAX_SIZE, test_every: int = DEFAULT_TEST_EVERY,
                  up=None, camera_model: str = "SIMPLE_PINHOLE", matcher: str = "auto",
                  threads: int = -1, seed: int = 0, progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  report: Report = log_report) -> dict:
    """Recover camera poses of ``photos`` (a folder of photos or a video file) and write the
    data set folder ``out`` (see :mod:`.dataset`).

    ``masks``: a folder with one mask per photo (white: subject, black: ignored; it becomes
    the images' alpha). ``frames``: how many frames to sample from a video. ``max_size``:
    longer side of the working images in pixels (0: full size). ``test_every``: hold out every
    n-th placed image for evaluation (0: none). ``up``: None for the cameras' average up, or
    [x, y, z] in COLMAP's world. ``camera_model``, ``matcher``, ``threads``, ``seed``: see
    :class:`.sfm.SfmConfig`.

    Returns the report (:func:`.dataset.pose_report`) plus ``dataset`` (the folder) and
    ``cancelled``; a cancelled run returns ``{"cancelled": True}`` and writes nothing.
    """
    progress = progress or (lambda stage, fraction, message: None)
    should_stop = should_stop or (lambda: False)
    source, out = Path(photos).absolute(), Path(out).absolute()
    _check_options(frames=frames, max_size=max_size, test_every=test_every,
                   camera_model=camera_model, matcher=matcher, threads=threads)
    require_pycolmap()  # before any work: a missing package is the first thing to hear about
    check_dataset_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    try:
        staging.mkdir()
        images = _source_images(source, staging, masks=masks, frames=frames,
                                max_size=max_size, progress=progress, should_stop=should_stop)
        if images is None:
            return {"cancelled": True}
        names, size, infos = images
        prepare_seconds = time.perf_counter() - start
        config = SfmConfig(camera_model=camera_model, matcher=matcher, threads=threads,
                           seed=seed, focal_prior=focal_prior(infos, size))
        mask_dir = staging / "work" / "masks" if masks else None
        sfm = run_sfm(staging / "images", names, staging / "work", size=size, config=config,
                      mask_dir=mask_dir, progress=progress, should_stop=should_stop,
                      report=report)
        progress("dataset", 0.0, "writing the data set")
        dataset = write_pose_dataset(sfm, staging, up=up, test_every=test_every, report=report)
        result = pose_report(sfm, dataset, source=source,
                             seconds={"prepare": prepare_seconds, **sfm.seconds})
        shutil.rmtree(staging / "work")
        update_report(staging, result)
        if should_stop():
            return {"cancelled": True}
        publish_folder(staging, out)
    except SfmCancelled:
        return {"cancelled": True}
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if sfm.left_out:
        report({"WARNING"}, f"placed {len(sfm.registered)} of {len(sfm.names)} images; left "
                            "out: " + name_list(f"{n} ({r})"
                                                for n, r in sfm.left_out_reasons.items()))
    progress("dataset", 1.0, f"placed {len(sfm.registered)} of {len(sfm.names)} images")
    return {**result, "dataset": str(out), "cancelled": False,
            "seconds_total": time.perf_counter() - start}


def update_report(folder, values: dict) -> dict:
    """Merge ``values`` into ``folder``/report.json (written whole, then renamed into place)."""
    path = Path(folder) / REPORT_FILE
    try:
        current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        current = {}
    current.update(values)
    temp = path.with_name(f".{REPORT_FILE}.{uuid.uuid4().hex[:8]}")
    try:
        temp.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
        temp.replace(path)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise GSError(f"{path}: cannot write the report ({err})") from None
    return current
