"""Command line: ``python -m blender_gs_addon <command> …``.

One module per group of commands, each adding its sub-parsers with ``add_commands(sub)``:
:mod:`.files` (info, convert, import, export), :mod:`.reconstruction` (capture, reconstruct,
check-worker, eval, render), :mod:`.photos` (poses), :mod:`.batch`, :mod:`.rigging` (rig,
bake), :mod:`.demo`. File commands need only numpy; commands that touch a .blend need the
``bpy`` module and reach the Blender side only through :mod:`.blender`, the core's one bridge
to it.

A user error (:class:`GSError`: a bad file, a missing object, …) exits with status 2 and one
line on stderr, ``error: <message>``, and no traceback.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import GSError
from . import batch, demo, files, photos, reconstruction, rigging

__all__ = ["main", "build_parser"]

COMMAND_MODULES = (files, reconstruction, photos, batch, rigging, demo)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (the contract for every user error); --help still
    prints the full usage."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m blender_gs_addon",
        description="Gaussian splats for Blender: files, capture, reconstruction, rigging.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        # Unwritable output folders, full disks: the user's problem, said in one line.
        print(f"error: {err}", file=sys.stderr)
        return 2
