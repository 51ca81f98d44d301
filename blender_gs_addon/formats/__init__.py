"""Splat file formats: one module each, and format detection by name and content.

==================  ===============  ===========================================================
format key          extension        module
==================  ===============  ===========================================================
``ply``             .ply             :mod:`.ply` (INRIA 3DGS; binary LE/BE, ascii, f32/f64)
``compressed_ply``  .compressed.ply  :mod:`.compressed_ply` (PlayCanvas / SuperSplat)
``splat``           .splat           :mod:`.splat` (antimatter15, 32 bytes/splat)
``spz``             .spz             :mod:`.spz` (Niantic; v2/v3 read+write, v4 read)
``gltf``            .glb, .gltf      :mod:`.gltf` (glTF 2.0 KHR_gaussian_splatting; .gltf + .bin)
``sog``             .sog, meta.json  :mod:`.sog` (PlayCanvas SOG v2: zip bundle, or meta.json
                                     with its WebP images beside it)
==================  ===============  ===========================================================

Every reader returns a :class:`~blender_gs_addon.splats.SplatSet` in the 3DGS frame and raises
:class:`~blender_gs_addon.errors.GSError` naming the file and the problem for bad input.

Frames: .ply, compressed .ply, .splat and .sog store the 3DGS frame as it is. .spz follows
Niantic's reference library, which stores right-up-back (RUB) and converts from the .ply frame
(a 180° turn about X, :data:`..axes.RUB_FROM_RDF`), so our .spz files match Niantic's and
other RUB-aware tools. PlayCanvas's splat-transform writes and reads .spz *without* that
conversion (the data as given): a file converted between the two tools comes out turned 180°
about X. glTF is converted to its own +Y-up frame (:data:`..axes.GLTF_FROM_RDF`), as
splat-transform does, so .glb files agree between the two.
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
    "gltf": ("gltf", "read_gltf", "write_gltf"),
    "sog": ("sog", "read_sog", "write_sog"),
}
# File name endings → format; "meta.json" is matched on the whole name (an unbundled SOG).
EXTENSIONS = {".ply": "ply", ".compressed.ply": "compressed_ply", ".splat": "splat",
              ".spz": "spz", ".glb": "gltf", ".gltf": "gltf", ".sog": "sog", "meta.json": "sog"}


def _function(fmt: str, which: int):
    module = importlib.import_module(f".{FORMATS[fmt][0]}", __name__)
    return getattr(module, FORMATS[fmt][which])


def detect_format(path: str | os.PathLike, *, for_writing: bool = False) -> str:
    """Format key from the file name; for reading a .ply, the header decides (chunk element),
    and a folder holding a meta.json is an unbundled SOG."""
    name = Path(path).name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed_ply"
    if name.endswith("meta.json") or (not for_writing and os.path.isdir(path)
                                      and os.path.isfile(os.path.join(path, "meta.json"))):
        return "sog"
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
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "meta.json")):
        path = os.path.join(path, "meta.json")  # the folder of an unbundled SOG
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
