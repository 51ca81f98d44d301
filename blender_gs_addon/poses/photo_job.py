"""A reconstruction from photos as the Blender side runs it: the photos (a folder or a video),
the pose options, and the folder the recovered data set is kept in.

The model runs in Blender's Python (``reconstruct(**job.in_process_arguments(...))``) or in a
worker (``job.worker_job()``: the ``photos`` job's parameters and the bundle that carries the
photos there, since a remote worker sees none of this machine's files). Either way the result
arrives as a folder holding ``splats.ply`` and ``dataset/``; :meth:`PhotoJob.install` then
keeps the data set where the user can find it (default: ``<photos>_poses`` beside the photos),
with the splats in it and its ``report.json`` naming this machine's paths. The Blender cameras
show the data set's images as backgrounds, so the data set must outlive the job's scratch
folder.

Nothing half-written is taken for a result: the data set is copied into a hidden folder beside
its place and renamed into place only when complete (:func:`.recover.install_dataset`); an
earlier data set there is kept aside until the caller has used the new one
(:func:`.recover.restore_folder` puts it back when that fails).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GSError
from .dataset import DEFAULT_TEST_EVERY
from .recover import (
    DEFAULT_FRAMES,
    DEFAULT_MAX_SIZE,
    check_dataset_folder,
    install_dataset,
    source_kind,
    update_report,
)

__all__ = ["PhotoJob", "SPLATS_FILE", "DATASET_FOLDER"]

SPLATS_FILE = "splats.ply"  # in the result folder, and in the kept data set
DATASET_FOLDER = "dataset"  # in the result folder


@dataclass(frozen=True)
class PhotoJob:
    """What to reconstruct from photos, and where the recovered data set goes."""

    photos: str
    """A folder of photos or a video file."""
    masks: str | None = None
    """A folder with one mask per photo (white: subject); None: no masks."""
    dataset: str | None = None
    """Folder for the recovered data set; None: ``<photos name>_poses`` beside the photos."""
    frames: int = DEFAULT_FRAMES
    """Frames sampled from a video."""
    max_size: int = DEFAULT_MAX_SIZE
    """Longer side of the working images in pixels (0: full size)."""
    test_every: int = DEFAULT_TEST_EVERY
    """Hold out every n-th placed image for the held-out PSNR (0: none)."""
    up: tuple[float, float, float] | None = None
    """Up direction in COLMAP's world; None: the cameras' average up."""
    threads: int = -1
    """CPU threads for SfM (-1: all cores; 1 gives the same poses every run)."""

    @property
    def source(self) -> Path:
        return Path(os.path.abspath(self.photos))

    @property
    def name(self) -> str:
        """The folder's name or the video's stem: what the results are named after."""
        source = self.source
        return (source.name if source.is_dir() else source.stem) or "Photos"

    @property
    def dataset_folder(self) -> Path:
        if self.dataset:
            return Path(os.path.abspath(self.dataset))
        return self.source.with_name(f"{self.name}_poses")

    def check(self) -> None:
        """GSError naming what is wrong before any work: no such folder or video, masks for a
        video or missing, a data set folder that holds someone else's files."""
        if not str(self.photos).strip():
            raise GSError("choose a folder of photos or a video file")
        source_kind(self.source, masks=self.masks)
        if self.masks and not Path(self.masks).is_dir():
            raise GSError(f"{self.masks}: no such masks folder")
        if self.dataset_folder == self.source:
            raise GSError(f"{self.source}: the data set cannot be written into the photos' "
                          "own folder; choose another data set folder")
        check_dataset_folder(self.dataset_folder)
        _check_writable(self.dataset_folder)

    def pose_options(self) -> dict:
        """recover_poses() keyword arguments."""
        return {"masks": self.masks or None, "frames": self.frames, "max_size": self.max_size,
                "test_every": self.test_every, "threads": self.threads,
                "up": list(self.up) if self.up is not None else None}

    def in_process_arguments(self, result_dir) -> dict:
        """reconstruct() keyword arguments writing the result into ``result_dir``."""
        result_dir = Path(result_dir)
        return {"photos": str(self.source), "dataset": str(result_dir / DATASET_FOLDER),
                "out": str(result_dir / SPLATS_FILE), "pose_options": self.pose_options(),
                "backend": "fit"}

    def worker_job(self):
        """(the ``photos`` job's parameters, the bundle of photos to upload)."""
        from ..worker.transfer import photos_bundle

        bundle, source = photos_bundle(self.source, masks=self.masks or None)
        options = self.pose_options()
        params = {"source": source, "masks": bool(options.pop("masks")), **options,
                  "output": SPLATS_FILE, "photos_label": str(self.source),
                  "masks_label": str(Path(os.path.abspath(self.masks))) if self.masks else None}
        return params, bundle

    def install(self, result_dir) -> tuple[dict, Path | None]:
        """Keep the result folder's data set (the splats moved into it) at
        :attr:`dataset_folder`; returns its report and the earlier data set moved aside (or
        None), which the caller removes once the new one is in use."""
        result_dir = Path(result_dir)
        folder, target = result_dir / DATASET_FOLDER, self.dataset_folder
        splats = result_dir / SPLATS_FILE
        if not (folder / "report.json").is_file() or not splats.is_file():
            raise GSError(f"the reconstruction returned no data set or no splats "
                          f"({result_dir})")
        os.replace(splats, folder / SPLATS_FILE)
        report = update_report(folder, {"source": str(self.source), "dataset": str(target),
                                        "splats": str(target / SPLATS_FILE)})
        return report, install_dataset(folder, target)


def _check_writable(folder: Path) -> None:
    """GSError when the data set could not be written at the end of a long run."""
    # It is made beside its place and renamed there: the parent (or the nearest folder that
    # exists above it) must be writable.
    existing = next((p for p in folder.parents if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise GSError(f"{folder}: cannot write the data set there (no permission); choose "
                      "another data set folder")
