"""Splat file formats: one module each, and format detection by name and content.

==================  ===============  ===========================================================
format key          extension        module
==================  ===============  ===========================================================
``ply``             .ply             :mod:`.ply` (INRIA 3DGS; binary LE/BE, ascii, f32/f64)
``compressed_ply``  .compressed.ply  :mod:`.compressed_ply` (PlayCanvas / SuperSplat)
``splat``           .splat           :mod:`.splat` (antimatter15, 32 bytes/splat)
``spz``             .spz             :mod:`.spz` (Niantic; v2/v3 read+write, v4 read)
==================  ===============  ===========================================================

Every reader returns a :class:`~blender_gs_addon.splats.SplatSet` in the 3DGS frame and raises
:class:`~blender_gs_addon.errors.GSError` naming the file and the problem for bad input.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import GSError, Report, log_report
from ..splats import SplatSet

__all__ = ["FORMATS", "EXTENSIONS", "detect_format", "read_splats", "write_splats"]

FORMATS = {
    "ply": ("ply", "read_ply", "write_ply"),
    "compressed_ply": ("compressed_ply", "read_compressed_ply", "write_compressed_ply"),
    "splat": ("splat", "read_splat", "write_splat"),
    "spz": ("spz", "read_spz", "write_spz"),
}
EXTENSIONS = {".ply": "ply", ".compressed.ply": "compressed_ply", ".splat": "splat",
              ".spz": "spz"}


def _function(fmt: str, which: int):
    module = importlib.import_module(f".{FORMATS[fmt][0]}", __name__)
    return getattr(module, FORMATS[fmt][which])


def detect_format(path: str | os.PathLike, *, for_writing: bool = False) -> str:
    """Format key from the file name; for reading a .ply, the header decides (chunk element)."""
    name = Path(path).name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed_ply"
    suffix = Path(name).suffix
    if suffix not in EXTENSIONS:
        raise GSError(f"{path}: unknown splat file extension {suffix!r}; use "
                      + ", ".join(EXTENSIONS))
    fmt = EXTENSIONS[suffix]
    if fmt == "ply" and not for_writing and os.path.isfile(path):
        with open(path, "rb") as fh:
            head = fh.read(65536)
        if b"element chunk " in head.split(b"end_header")[0] and b"packed_position" in head:
            return "compressed_ply"
    return fmt


def read_splats(path: str | os.PathLike, *, format: str | None = None, nonfinite: str = "drop",
                report: Report = log_report) -> SplatSet:
    """Read any supported file. ``nonfinite``: 'drop' (report the count) or 'error'."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise GSError(f"{path}: no such file")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise GSError(f"unknown splat format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return _function(fmt, 1)(path, nonfinite=nonfinite, report=report)


def write_splats(path: str | os.PathLike, splats: SplatSet, *, format: str | None = None,
                 report: Report = log_report) -> None:
    """Write ``splats`` in the format named by ``format`` or by the file name."""
    path = os.fspath(path)
    fmt = format or detect_format(path, for_writing=True)
    if fmt not in FORMATS:
        raise GSError(f"unknown splat format {fmt!r}; choose one of {', '.join(FORMATS)}")
    splats.validate(name=path)
    _function(fmt, 2)(path, splats, report=report)
