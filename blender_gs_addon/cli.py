"""Command line: ``python -m blender_gs_addon <command> …``.

File commands (``info``, ``convert``) need only numpy. Commands that touch a .blend
(``import``, ``export``, ``demo``) need the ``bpy`` module and load the Blender side of the
extension through :func:`blender_gs_addon.extension.load_extension`.

A user error (:class:`GSError`: a bad file, a missing object, …) exits with status 2 and one
line on stderr, ``error: <message>``, and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from .axes import UP_AXES
from .errors import GSError

__all__ = ["main", "build_parser"]


def _stderr_report(levels: set, message: str) -> None:
    if "ERROR" in levels or "WARNING" in levels:
        print(f"{'error' if 'ERROR' in levels else 'warning'}: {message}", file=sys.stderr)


def _stdout_report(levels: set, message: str) -> None:
    if "ERROR" in levels or "WARNING" in levels:
        _stderr_report(levels, message)
    else:
        print(message)


# ---------------------------------------------------------------------------- file commands
def cmd_info(args) -> int:
    from .formats import detect_format, read_splats

    fmt = detect_format(args.file)
    splats = read_splats(args.file, format=fmt, report=_stderr_report)
    lo, hi = splats.bbox()
    info = {
        "file": os.path.abspath(args.file),
        "format": fmt,
        "count": splats.count,
        "sh_degree": splats.sh_degree,
        "bbox_min": [float(v) for v in lo],
        "bbox_max": [float(v) for v in hi],
        "extra_properties": sorted(splats.extra),
        "file_size": os.path.getsize(args.file),
    }
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_convert(args) -> int:
    from .formats import detect_format, read_splats, write_splats

    start = time.perf_counter()
    splats = read_splats(args.input, report=_stderr_report)
    if args.sh_degree is not None:
        splats = splats.with_sh_degree(args.sh_degree)
    out_fmt = detect_format(args.output, for_writing=True)
    write_splats(args.output, splats, format=out_fmt, report=_stderr_report)
    print(f"Converted {splats.count:,} splats (SH {splats.sh_degree}) to {out_fmt} "
          f"{args.output} in {time.perf_counter() - start:.2f} s")
    return 0


# ---------------------------------------------------------------------------- Blender commands
def _blender():
    """Import bpy and the extension's Blender side, with a clear error when bpy is missing."""
    try:
        import bpy
    except ImportError as err:
        raise GSError(f"this command needs the bpy module (pip install bpy==5.0.1, or run inside "
                      f"Blender): {err}") from None
    from .extension import load_extension

    return bpy, load_extension()


def _fresh_scene(bpy) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _open_blend(bpy, path: str) -> None:
    if not os.path.isfile(path):
        raise GSError(f"{path}: no such .blend file")
    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path))
    except RuntimeError as err:
        raise GSError(f"{path}: Blender could not open it: {str(err).strip()}") from None


def _save_blend(bpy, path: str) -> None:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        bpy.ops.wm.save_as_mainfile(filepath=path, check_existing=False)
    except RuntimeError as err:
        raise GSError(f"{path}: could not save: {str(err).strip()}") from None


def cmd_import(args) -> int:
    bpy, ext = _blender()
    _fresh_scene(bpy)
    obj = ext.scene.splat_object.import_splats(
        args.file, up_axis=args.up_axis, name=args.name, report=_stdout_report
    )
    _save_blend(bpy, args.blend)
    print(f"Saved {args.blend} with object {obj.name!r}")
    return 0


def cmd_export(args) -> int:
    bpy, ext = _blender()
    _open_blend(bpy, args.blend)
    obj = bpy.data.objects.get(args.object)
    if obj is None:
        names = ", ".join(sorted(o.name for o in bpy.data.objects)) or "none"
        raise GSError(f"{args.blend}: no object named {args.object!r} (objects: {names})")
    ext.scene.splat_object.export_splats(
        obj, args.output, apply_transform=not args.no_transform, up_axis=args.up_axis,
        report=_stdout_report,
    )
    return 0


def cmd_demo(args) -> int:
    """Built-in sample → every format → Blender scene → .blend (the foundation demo)."""
    from .formats import read_splats, write_splats
    from .samples import sample_splats

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splats = sample_splats("torus", count=args.count, sh_degree=3, seed=0)
    print(f"Sample: {splats.count:,} splats, SH {splats.sh_degree}")
    current = out / "sample.ply"
    write_splats(current, splats)
    for name in ("sample.compressed.ply", "sample.spz", "sample.splat"):
        start = time.perf_counter()
        write_splats(out / name, read_splats(current, report=_stdout_report),
                     report=_stdout_report)
        back = read_splats(out / name, report=_stdout_report)
        err = float(abs(back.positions - splats.positions).max())
        print(f"  {name:<22} {os.path.getsize(out / name):>11,} bytes, "
              f"max position error {err:.2e}, {time.perf_counter() - start:.2f} s")
    bpy, ext = _blender()
    _fresh_scene(bpy)
    for name in ("sample.ply", "sample.spz"):
        obj = ext.scene.splat_object.import_splats(out / name, report=_stdout_report)
        obj.location.x += 1.2 if name.endswith(".spz") else 0.0
    _save_blend(bpy, out / "demo.blend")
    print(f"Saved {out / 'demo.blend'}")
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m blender_gs_addon",
        description="Gaussian splats for Blender: file conversion, Blender import/export.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="summarise a splat file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert between .ply, .compressed.ply, .splat, .spz")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--sh-degree", type=int, choices=range(4), help="truncate SH bands")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("import", help="import a splat file into a fresh scene and save a .blend")
    p.add_argument("file")
    p.add_argument("--blend", required=True, help="the .blend to write")
    p.add_argument("--name", help="object name (default: the file's stem)")
    p.add_argument("--up-axis", default="-Y", choices=list(UP_AXES))
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a splat object of a .blend to a file")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True)
    p.add_argument("output")
    p.add_argument("--up-axis", default="-Y", choices=list(UP_AXES))
    p.add_argument("--no-transform", action="store_true",
                   help="write the mesh values without baking the object's world transform")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="run the end-to-end demo on the built-in sample")
    p.add_argument("--out", default="out")
    p.add_argument("--count", type=int, default=20000)
    p.set_defaults(func=cmd_demo)
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
