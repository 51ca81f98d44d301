"""From a batch input to a transforms.json data set that the reconstruction pipeline reads.

- transforms.json data sets are read where they are;
- COLMAP models become a data set beside the item's results (json only; the photos stay where
  they are, referenced by relative paths): COLMAP's world has no scale or origin, so it is
  normalised as photo data sets are (:func:`..capture.rigs.subject_bounds_from_cameras`: what
  the cameras look at fits a unit cube, where the fit starts its splats), and every N-th photo
  is held out for PSNR/SSIM (as INRIA 3DGS's ``--eval`` does with N = 8);
- .blend files are captured by the ``capture`` command of this package in a subprocess of this
  Python (so Blender state never carries from one item to the next), into the item's folder.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import GSError, Report
from .inputs import BatchInput

__all__ = ["colmap_dataset", "capture_command", "capture_blend"]

# The LGM backends read LGM's own 4 views at its input size (see scene.reconstruct_job).
LGM_CAPTURE_RESOLUTION = 256


def colmap_dataset(sparse_dir: Path, folder: Path, *, holdout: int, report: Report) -> Path:
    """Write ``folder``/transforms_{train,test}.json for the COLMAP model in ``sparse_dir``.

    The world is normalised (module docstring; ``normalisation_transform`` is stored, so
    results map back onto COLMAP's world) and view i is a test view when ``i % holdout == 0``
    (``holdout`` 0: none). Returns ``folder``.
    """
    from ..capture.rigs import normalisation_transform, subject_bounds_from_cameras
    from ..datasets.camera_views import ViewDataset
    from ..datasets.colmap import read_colmap_model
    from ..datasets.nerf_synthetic import write_transforms

    views = read_colmap_model(sparse_dir, report=report).views
    if len(views) < 2:
        raise GSError(f"{sparse_dir}: {len(views)} registered image(s); a reconstruction needs "
                      "several views")
    c2ws = np.stack([v.camera_to_world for v in views])  # [V, 4, 4]
    fovs = np.array([2.0 * math.atan(min(0.5 * v.width / v.fx, 0.5 * v.height / v.fy))
                     for v in views])  # [V]
    lo, hi = subject_bounds_from_cameras(
        c2ws, fovs, hint=f"{sparse_dir} cannot be framed for the fit")
    normalisation = normalisation_transform(lo, hi)  # uniform scale + translation
    moved = []
    for i, view in enumerate(views):
        c2w = view.camera_to_world.copy()
        c2w[:3, 3] = normalisation[:3, :3] @ c2w[:3, 3] + normalisation[:3, 3]
        split = "test" if holdout > 0 and i % holdout == 0 else "train"
        moved.append(replace(view, camera_to_world=c2w, split=split,
                             file_path=_image_inside(view.file_path, folder / "images", i)))
    write_transforms(ViewDataset(views=moved, normalisation=normalisation, root=folder), folder,
                     report=report)
    return folder


def _image_inside(image: Path | None, images: Path, index: int) -> Path | None:
    """The photo linked (or, across file systems, copied) into the data set's own ``images``
    folder, so the data set is self-contained: readers confine image paths to the data set's
    folder, and the published item stays valid when the COLMAP input moves."""
    if image is None:
        return None
    images.mkdir(parents=True, exist_ok=True)
    target = images / f"{index:05d}_{Path(image).name}"
    try:
        os.link(image, target)
    except OSError:
        shutil.copy2(image, target)
    return target


def capture_command(item: BatchInput, folder: Path, config) -> list[str]:
    """The ``python -m blender_gs_addon capture`` command line for a .blend input."""
    lgm = config.backend in ("lgm", "lgm+fit")
    command = [
        sys.executable, "-m", "blender_gs_addon", "capture", "--blend", str(item.path),
        "--rig", "lgm" if lgm else config.rig, "--views", str(config.views),
        "--test-views", str(config.test_views),
        "--resolution", str(LGM_CAPTURE_RESOLUTION if lgm else config.resolution),
        "--engine", config.engine, "--out", str(folder),
    ]
    if item.objects:
        command += ["--objects", ",".join(item.objects)]
    return command


def capture_blend(item: BatchInput, folder: Path, config, *, log_file) -> Path:
    """Capture a .blend input into ``folder`` with the capture command in a subprocess whose
    output goes to ``log_file`` (an open binary file). The subprocess is stopped when this is
    interrupted (a cancelled task). GSError with the command's own ``error:`` line on failure.
    """
    from ..extension import extension_root

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(extension_root()), env.get("PYTHONPATH", "")) if p)
    log_file.flush()
    proc = subprocess.Popen(capture_command(item, folder, config), stdout=log_file,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        code = proc.wait()
    except BaseException:  # cancelled: the render must not outlive its task
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if code != 0:
        raise GSError(_capture_error(Path(log_file.name), item.path, code))
    return folder


def _capture_error(log: Path, blend: Path, code: int) -> str:
    """The capture command's ``error:`` line from the log, else a pointer to the log."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-50:]
    except OSError:
        lines = []
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    if errors:
        return f"capture: {errors[-1]}"
    return f"capture of {blend.name} failed (exit status {code}); see the item's log.txt"
