"""Splat file formats: one module each, and format detection by name and content.

==================  ===============  ===========================================================
format key          extension        module
==================  ===============  ===========================================================
``ply``             .ply             :mod:`.ply` (INRIA 3DGS; binary LE/BE, ascii, f32/f64)
``compressed_ply``  .compressed.ply  :mod:`.compressed_ply` (PlayCanvas / SuperSplat)
``splat``           .splat           :mod:`.splat` (antimatter15, 32 bytes/splat)
``spz``             .spz             :mod:`.spz` (Niantic; v1-v4 read, v2-v4 write)
``gltf``            .glb, .gltf      :mod:`.gltf` (glTF 2.0 KHR_gaussian_splatting; .gltf + .bin)
``sog``             .sog, meta.json  :mod:`.sog` (PlayCanvas SOG v2: zip bundle, or meta.json
                                     with its WebP images beside it)
==================  ===============  ===========================================================

Every reader returns a :class:`~blender_gs_addon.splats.SplatSet` in the 3DGS frame and raises
:class:`~blender_gs_addon.errors.GSError` — and nothing else — naming the file and the problem
for bad input, within the memory bounds of a :class:`ReadLimits` (:mod:`.reader_contract`
holds that promise for every format).

Frames: .ply, compressed .ply, .splat and .sog store the 3DGS frame as it is. .spz follows
Niantic's reference library, which stores right-up-back (RUB) and converts from the .ply frame
(a 180° turn about X, :data:`..conventions.frames.RUB_FROM_RDF`), so our .spz files match
Niantic's and other RUB-aware tools. PlayCanvas's splat-transform writes and reads .spz
*without* that conversion (the data as given): a file converted between the two tools comes out
turned 180° about X. glTF is converted to its own +Y-up frame as Blender does
(:data:`..conventions.frames.GLTF_FROM_RDF`: the file frame shown upright in Blender, then
Blender's world as its glTF exporter writes it; a 180° turn about X), so our .glb opens in
Blender's own glTF importer where this add-on puts the .ply. splat-transform converts .glb with
a 180° turn about Z instead: a .glb converted between the two tools comes out turned 180° about
the up axis (Y of the 3DGS frame).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import GSError, Report, log_report
from ..splats import SplatSet
from .reader_contract import DEFAULT_MAX_SPLATS, ReadLimits, resolve_limits

__all__ = ["FORMATS", "EXTENSIONS", "SPZ_VERSIONS", "DEFAULT_MAX_SPLATS", "ReadLimits",
           "detect_format", "read_splats", "write_splats"]

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
SPZ_VERSIONS = (2, 3, 4)  # .spz versions the writer makes; 3 is the default (every loader)


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
        try:
            with open(path, "rb") as fh:
                head = fh.read(65536)
        except OSError as err:
            raise GSError.from_os_error(os.fspath(path), err) from None
        if b"element chunk " in head.split(b"end_header")[0] and b"packed_position" in head:
            return "compressed_ply"
    return fmt


def read_splats(path: str | os.PathLike, *, format: str | None = None, nonfinite: str = "drop",
                limits: ReadLimits | None = None, report: Report = log_report) -> SplatSet:
    """Read any supported file.

    Args:
        format: a key of :data:`FORMATS` (default: from the name and content).
        nonfinite: 'drop' splats with NaN/Inf (reported) or 'error'.
        limits: :class:`ReadLimits` checked before anything is allocated (default: 50 M
            splats at most, compressed data expanding at most 64×).
    Raises:
        GSError (only) naming the file: unreadable, not a splat file, corrupt, no splats, or
        a claim beyond ``limits``.
    """
    path = os.fspath(path)
    limits = resolve_limits(limits)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "meta.json")):
        path = os.path.join(path, "meta.json")  # the folder of an unbundled SOG
    if os.path.isdir(path):
        raise GSError(f"{path}: is a folder, not a splat file")
    if not os.path.isfile(path):
        raise GSError(f"{path}: no such file")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise GSError(f"unknown splat format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return _function(fmt, 1)(path, nonfinite=nonfinite, limits=limits, report=report)


def write_splats(path: str | os.PathLike, splats: SplatSet, *, format: str | None = None,
                 spz_version: int = 3, report: Report = log_report) -> None:
    """Write ``splats`` in the format named by ``format`` or by the file name.

    ``spz_version`` (2, 3 or 4; only for .spz): 3 is read by every .spz loader; 4 (zstd
    streams with checksums) only by recent ones. The file is written into a temporary folder
    beside it, under its own name, and moved into place when complete — with the files some
    formats write beside it (a .gltf's .bin, an unbundled SOG's images), moved first — so a
    failure (disk full, a refused set) leaves any earlier file of that name untouched and no
    partial file behind.
    """
    path = os.fspath(path)
    fmt = format or detect_format(path, for_writing=True)
    if fmt not in FORMATS:
        raise GSError(f"unknown splat format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if spz_version not in SPZ_VERSIONS:
        raise GSError(f"cannot write .spz version {spz_version}; choose 2, 3 or 4")
    splats.validate(name=path)
    if splats.count == 0:
        raise GSError(f"{path}: no splats to write")
    options = {"version": spz_version} if fmt == "spz" else {}
    folder, name = os.path.split(os.path.abspath(path))
    try:
        # Same folder (so the renames are atomic); the writer sees the real file name, which
        # decides the layout of some formats (.gltf + .bin, meta.json + images).
        staging = tempfile.mkdtemp(dir=folder, prefix=f".{name}.", suffix=".partial")
    except OSError as err:
        raise GSError.from_os_error(path, err, "write") from None
    partial = os.path.join(staging, name)
    try:
        with np.errstate(all="ignore"):
            _function(fmt, 2)(partial, splats, report=_renamed(report, partial, path),
                              **options)
        beside = sorted(n for n in os.listdir(staging) if n != name)
        for entry in [*beside, name]:
            os.replace(os.path.join(staging, entry), os.path.join(folder, entry))
    except GSError as err:
        raise GSError(str(err).replace(partial, path)) from None
    except OSError as err:
        raise GSError.from_os_error(path, err, "write") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _renamed(report: Report, partial: str, path: str) -> Report:
    """``report`` with the temporary file's name replaced by the real one."""
    return lambda levels, message: report(levels, message.replace(partial, path))
