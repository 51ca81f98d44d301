"""Job folders: private scratch folders named ``gs_reconstruct_*`` in the temporary directory,
and the sweep that removes a crash's day-old leftovers.

Both sides of the worker protocol keep their files in such folders (the Blender side its
capture and the received splats, the worker each job's input and output) and remove them when
the job ends; :func:`sweep_stale_job_dirs` runs when a worker starts and once per Blender
session.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from .protocol import JOB_DIR_PREFIX

__all__ = ["STALE_AFTER", "make_job_dir", "sweep_stale_job_dirs"]

# Job folders untouched for this long belong to no live job (jobs write into them throughout).
STALE_AFTER = 24 * 3600.0


def make_job_dir() -> Path:
    """A new private (mode 0700) job folder in the temporary directory."""
    return Path(tempfile.mkdtemp(prefix=JOB_DIR_PREFIX))


def _newest_mtime(path: str, own: os.stat_result) -> float:
    """The latest modification time of a folder and its direct entries: a job writes into
    sub-folders (capture/), which updates their times but not the job folder's."""
    newest = own.st_mtime
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
    except OSError:
        pass
    return newest


def sweep_stale_job_dirs(*, root: str | os.PathLike | None = None,
                         max_age: float = STALE_AFTER, now: float | None = None) -> list[Path]:
    """Remove ``gs_reconstruct_*`` folders in ``root`` (default: the temporary directory) that
    belong to this user and were last modified more than ``max_age`` seconds before ``now``.

    Symbolic links and plain files with that name are left alone (they are not ours, and
    following a link could delete someone else's data). Returns the folders removed.
    """
    root = Path(tempfile.gettempdir() if root is None else root)
    now = time.time() if now is None else float(now)
    uid = os.getuid() if hasattr(os, "getuid") else None  # Windows: the temp dir is per user
    removed: list[Path] = []
    try:
        with os.scandir(root) as entries:
            candidates = [e for e in entries if e.name.startswith(JOB_DIR_PREFIX)]
    except OSError:
        return removed
    for entry in candidates:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue
        if now - _newest_mtime(entry.path, info) < max_age:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            removed.append(Path(entry.path))
    return removed

