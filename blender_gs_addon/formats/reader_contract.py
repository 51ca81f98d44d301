"""What every splat reader promises, kept in one place so each format (and new ones) gets it.

The promise: a file gives a SplatSet or **one** clear :class:`GSError` naming the file — never
a crash, a hang, a huge allocation, a silent partial result or a numpy warning on stderr.

* :class:`ReadLimits` bounds what a file may make a reader allocate. A reader checks the count
  its header declares (times the bytes each splat needs) *before* it allocates or decompresses
  anything, with :meth:`ReadLimits.check_claim`:

  - ``max_splats`` (default :data:`DEFAULT_MAX_SPLATS`, 50 M ≈ 12 GB at SH degree 3): more is
    refused at once, naming the claim (Blender preference *Max Splats*, CLI ``--max-splats``);
  - stored data must be there: a claim needing more bytes than the file holds is refused;
  - compressed data may expand at most ``max_expansion`` times (decoded bytes / compressed
    bytes) once the decoded size exceeds ``expansion_allowance``. Real .spz files expand
    1.2–4.5× (measured on 200,000-splat sets, SH 0 and 3, version 3 and 4; 4.4× with all SH
    bands zero); a decompression bomb (a megabyte of gzip or zstd claiming millions of zero
    splats) about 1000×, so it is refused in microseconds, before a byte is inflated.

* :func:`splat_reader` wraps a format's read function: it turns OS errors (missing, permission,
  is-a-folder) and MemoryError into GSError with the path, silences numpy floating-point
  warnings (readers handle non-finite values themselves), refuses a file with no splats, and
  then treats non-finite values the same way for every format (:func:`finish_values`): an
  opacity logit of ±inf is a *value* (fully opaque / transparent; splat-transform writes them)
  and is clamped to ±:data:`OPACITY_LOGIT_LIMIT`; any other NaN/Inf drops the splat (reported)
  or refuses the file (``nonfinite="error"``).

A format module writes ``read_x(source, *, limits, report, **options) -> (SplatSet, finite)``
(``finite``: True when the decoder guarantees every value is finite, so the scan is skipped)
and exposes ``read_x = splat_reader(_read_x)``; callers use
``read_x(path, *, nonfinite="drop", limits=None, report=log_report, **options)``.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import GSError, Report, log_report
from ..splats import SplatSet

__all__ = ["DEFAULT_MAX_SPLATS", "OPACITY_LOGIT_LIMIT", "ReadLimits", "resolve_limits",
           "splat_reader", "finish_values"]

DEFAULT_MAX_SPLATS = 50_000_000
# sigmoid(±30) is 1 / 0 in float32 (and within 1e-13 in float64): still fully opaque or
# transparent, but finite for every later computation and encoder.
OPACITY_LOGIT_LIMIT = 30.0


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds checked before a reader allocates or decompresses (module docstring)."""

    max_splats: int = DEFAULT_MAX_SPLATS  # most splats a file may declare
    max_expansion: float = 64.0  # most decoded bytes per compressed byte (see allowance)
    expansion_allowance: int = 16 << 20  # decoded bytes never refused for their ratio

    def __post_init__(self) -> None:
        whole = isinstance(self.max_splats, numbers.Integral) and not isinstance(
            self.max_splats, bool)
        if not (whole and self.max_splats >= 1):
            raise GSError(f"max_splats must be a positive whole number, got {self.max_splats!r}")
        if not self.max_expansion >= 1 or self.expansion_allowance < 0:
            raise GSError("max_expansion must be at least 1 and expansion_allowance not "
                          "negative")

    def check_count(self, count: int, *, source: str) -> None:
        """Refuse a declared splat count above ``max_splats``."""
        if count > self.max_splats:
            raise GSError(f"{source}: the file declares {count:,} splats, more than the limit "
                          f"of {self.max_splats:,} (raise 'Max Splats' in the add-on "
                          "preferences or --max-splats if the file is genuine)")

    def check_claim(self, count: int, *, bytes_per_splat: int, available: int, source: str,
                    compressed: bool = False) -> None:
        """Before allocating: refuse a claim of ``count`` splats of ``bytes_per_splat`` stored
        bytes each that the file cannot back.

        Args:
            available: bytes the file has for that data — stored bytes (``compressed=False``:
                the claim must fit in them) or compressed bytes (``compressed=True``: the claim
                may expand them at most ``max_expansion`` times, beyond the allowance).
        """
        self.check_count(count, source=source)
        need = count * bytes_per_splat
        if not compressed and need > available:
            raise GSError(f"{source}: the header claims {count:,} splats ({bytes_per_splat} "
                          f"bytes each, {need:,} in all) but only {available:,} bytes of data "
                          "follow (truncated file or a lying header)")
        if compressed and need > self.expansion_allowance and need > self.max_expansion * max(
                available, 1):
            raise GSError(f"{source}: the header claims {count:,} splats ({_bytes(need)} of "
                          f"data) from {_bytes(available)} of compressed data, an expansion of "
                          f"{need / max(available, 1):,.0f}:1 (real files stay under "
                          f"{self.max_expansion:.0f}:1); refused as a likely decompression "
                          "bomb")


def resolve_limits(limits: ReadLimits | None) -> ReadLimits:
    """``limits`` or the defaults."""
    if limits is None:
        return ReadLimits()
    if not isinstance(limits, ReadLimits):
        raise GSError(f"limits must be a ReadLimits, got {type(limits).__name__}")
    return limits


def finish_values(splats: SplatSet, *, source: str, nonfinite: str,
                  report: Report) -> SplatSet:
    """Clamp ±inf opacity logits (a value: fully opaque or transparent), then drop (reported)
    or refuse splats with any other NaN/Inf or a zero quaternion."""
    logits = splats.opacity_logits
    infinite = np.isinf(logits)
    if infinite.any():
        splats.opacity_logits = np.clip(logits, -OPACITY_LOGIT_LIMIT, OPACITY_LOGIT_LIMIT)
        report({"INFO"}, f"{source}: {int(infinite.sum()):,} splats have an opacity logit of "
                         f"±inf (fully opaque or transparent); kept with ±{OPACITY_LOGIT_LIMIT:g}")
    return splats.drop_nonfinite(source=source, policy=nonfinite, report=report)


ReadTable = Callable[..., tuple[SplatSet, bool]]


def splat_reader(read_table: ReadTable) -> Callable[..., SplatSet]:
    """Wrap ``read_table(source, *, limits, report, **options) -> (splats, finite)`` into a
    reader keeping the promise of the module docstring."""

    @functools.wraps(read_table)
    def read(path: str | os.PathLike, *, nonfinite: str = "drop",
             limits: ReadLimits | None = None, report: Report = log_report,
             **options) -> SplatSet:
        source = os.fspath(path)
        if nonfinite not in ("drop", "error"):
            raise GSError(f"unknown non-finite policy {nonfinite!r}; use 'drop' or 'error'")
        limits = resolve_limits(limits)
        try:
            with np.errstate(all="ignore"):
                splats, finite = read_table(source, limits=limits, report=report, **options)
                splats.validate(name=source)
                if splats.count == 0:
                    raise GSError(f"{source}: the file contains no splats")
                if finite:
                    return splats
                return finish_values(splats, source=source, nonfinite=nonfinite,
                                     report=report)
        except OSError as err:
            raise GSError.from_os_error(source, err) from None
        except MemoryError:
            raise GSError(f"{source}: not enough memory to read this file (lower its size or "
                          "free memory)") from None

    return read
