"""antimatter15 .splat: 32 bytes per splat, no header, little endian.

The details: docs/architecture.md, "Format: antimatter15 .splat".
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import GSError, Report, log_report
from ..sh import SH_C0
from ..splats import SplatSet
from .reader_contract import ReadLimits, splat_reader

__all__ = ["read_splat", "write_splat", "splat_sort_order", "SPLAT_DTYPE", "ROTATION_ERROR_BOUND"]

SPLAT_DTYPE = np.dtype([
    ("position", "<f4", (3,)),
    ("scale", "<f4", (3,)),
    ("rgba", "u1", (4,)),
    ("rotation", "u1", (4,)),  # w, x, y, z
])
assert SPLAT_DTYPE.itemsize == 32

# Largest rotation angle (radians) between a unit quaternion and its write → read image.
ROTATION_ERROR_BOUND = 2.0 * float(np.arcsin(1.0 / 128.0))

_ALPHA_CLAMP = (0.5 / 255.0, 254.5 / 255.0)
_LOG_SCALE_RANGE = (float(np.log(np.finfo(np.float32).tiny)),
                    float(np.log(np.finfo(np.float32).max)))


def _read_splat(source: str, *, limits: ReadLimits, report: Report) -> tuple[SplatSet, bool]:
    """Read an antimatter15 .splat file (SH degree 0, quaternions normalised):
    ``read_splat(path, *, nonfinite="drop", limits=None, report=log_report)``.

    The format stores no splat count: a size that is not a multiple of 32 bytes (a cut inside
    a record) is an error, but a file cut (or extended) by whole records cannot be told from
    a smaller (larger) one by any reader.
    """
    with open(source, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise GSError(f"{source}: the file is empty (0 bytes): no splats")
        if size % SPLAT_DTYPE.itemsize:
            raise GSError(f"{source}: {size:,} bytes is not a multiple of 32; not a .splat "
                          f"file, or cut inside splat {size // SPLAT_DTYPE.itemsize + 1:,}")
        count = size // SPLAT_DTYPE.itemsize
        limits.check_count(count, source=source)
        records = np.fromfile(fh, dtype=SPLAT_DTYPE, count=count)
    if records.shape[0] != count:
        raise GSError(f"{source}: file ended early (read {records.shape[0]:,} splats)")
    log_scales = np.log(records["scale"].astype(np.float64))  # ≤ 0 → -inf/NaN → dropped
    rgba = records["rgba"].astype(np.float64) / 255.0
    alpha = np.clip(rgba[:, 3], *_ALPHA_CLAMP)
    quats = records["rotation"].astype(np.float64) - 128.0
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = quats / norms  # byte pattern 128,128,128,128 → NaN → dropped as non-finite
    splats = SplatSet(
        positions=np.ascontiguousarray(records["position"], dtype=np.float32),
        log_scales=log_scales.astype(np.float32),
        rotations=quats.astype(np.float32),
        opacity_logits=np.log(alpha / (1.0 - alpha)).astype(np.float32),
        sh_dc=((rgba[:, :3] - 0.5) / SH_C0).astype(np.float32),
        sh_rest=np.zeros((count, 0, 3), np.float32),
    )
    return splats, False


read_splat = splat_reader(_read_splat)


def splat_sort_order(splats: SplatSet) -> np.ndarray:
    """[N] indices in the reference order: descending exp(s0+s1+s2)·sigmoid(opacity)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge scales sort first (or last: NaN)
        size = np.exp(splats.log_scales.astype(np.float64).sum(axis=1))
        key = -size * _sigmoid(splats.opacity_logits)
    return np.argsort(key, kind="stable")


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """[N] float64 sigmoid without overflow warnings for |logit| > 709."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def encode_splat_records(splats: SplatSet) -> np.ndarray:
    """[N] SPLAT_DTYPE records in the set's own order (no sorting, no checks)."""
    out = np.empty(splats.count, SPLAT_DTYPE)
    out["position"] = splats.positions
    with np.errstate(over="ignore"):  # out-of-range scales are reported by the writer
        out["scale"] = np.exp(splats.log_scales.astype(np.float64))
    colour = np.clip(0.5 + SH_C0 * splats.sh_dc.astype(np.float64), 0.0, 1.0)
    alpha = _sigmoid(splats.opacity_logits)
    out["rgba"][:, :3] = np.rint(colour * 255.0)
    out["rgba"][:, 3] = np.rint(alpha * 255.0)
    quats = splats.rotations.astype(np.float64)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    # q and −q are the same rotation; make the largest-magnitude component negative, since
    # −1 maps to byte 0 exactly but +1 would need byte 256 (see the module docstring).
    largest = np.take_along_axis(quats, np.abs(quats).argmax(axis=1)[:, None], axis=1)
    quats *= np.where(largest > 0, -1.0, 1.0)
    out["rotation"] = np.clip(np.rint(quats * 128.0 + 128.0), 0, 255)
    return out


def write_splat(path: str | os.PathLike, splats: SplatSet, *, nonfinite: str = "drop",
                report: Report = log_report) -> None:
    """Write an antimatter15 .splat file (sorted; SH bands and extras dropped with a WARNING).

    ``nonfinite``: splats with NaN/Inf or a zero quaternion have no 8-bit encoding; ``"drop"``
    them (reported) or ``"error"``.
    """
    target = os.fspath(path)
    splats.validate(name=target)
    if splats.count == 0:
        raise GSError(f"{target}: no splats to write (readers refuse a file without splats)")
    if splats.sh_degree:
        report({"WARNING"}, f"{target}: .splat stores no view-dependent colour; dropped "
                            f"{splats.sh_degree} SH band(s) (degree {splats.sh_degree} → 0)")
    if splats.extra:
        report({"WARNING"}, f"{target}: .splat has no room for extra properties; dropped "
                            + ", ".join(splats.extra))
    with np.errstate(over="ignore"):  # float32 quaternion norms of huge components
        splats = splats.drop_nonfinite(source=target, policy=nonfinite, report=report)
    outside = (splats.log_scales > _LOG_SCALE_RANGE[1]) | (splats.log_scales < _LOG_SCALE_RANGE[0])
    if outside.any():
        report({"WARNING"}, f"{target}: {int(outside.any(axis=1).sum()):,} splats have scales "
                            "outside float32's normal range (stored inexactly, as 0 or as "
                            "infinity; readers drop the last two)")
    records = encode_splat_records(splats)[splat_sort_order(splats)]
    try:
        records.tofile(target)
    except OSError as err:
        raise GSError.from_os_error(target, err, "write") from None
