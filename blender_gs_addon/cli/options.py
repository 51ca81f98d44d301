"""Options several commands share, and what they become (limits, .spz version)."""

from __future__ import annotations

import argparse
import os

from ..errors import GSError

__all__ = ["positive_int", "max_splats_option", "spz_version_option", "outside_paths_option",
           "device_option", "read_limits", "spz_version_of"]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def max_splats_option(p) -> None:
    from ..formats.reader_contract import DEFAULT_MAX_SPLATS

    p.add_argument("--max-splats", type=positive_int, metavar="N",
                   help=f"refuse files declaring more splats (default {DEFAULT_MAX_SPLATS:,}); "
                        "checked before anything is allocated")


def spz_version_option(p) -> None:
    p.add_argument("--spz-version", type=int, choices=(2, 3, 4),
                   help=".spz output version (default 3, read by every .spz loader; 4: zstd "
                        "streams with checksums, read by recent loaders only)")


def outside_paths_option(p) -> None:
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let the data set's image paths point outside its folder (.., "
                        "absolute paths, symlinks out); only for data sets you trust")


def device_option(p) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def read_limits(args):
    """ReadLimits from ``--max-splats`` (None: the defaults)."""
    from ..formats import ReadLimits

    return None if args.max_splats is None else ReadLimits(max_splats=args.max_splats)


def spz_version_of(args, output) -> int:
    """``--spz-version`` (default 3), refused for an output that is not .spz."""
    if args.spz_version is None:
        return 3
    if not os.fspath(output).lower().endswith(".spz"):
        raise GSError(f"{output}: --spz-version applies only to .spz output")
    return args.spz_version
