"""Splat file commands: ``info``, ``convert`` (numpy only), ``import``, ``export`` (bpy)."""

from __future__ import annotations

import json
import os
import time

from ..conventions.frames import UP_AXES
from .blender import blender_module, fresh_scene
from .options import max_splats_option, read_limits, spz_version_of, spz_version_option
from .output import stderr_report, stdout_report

__all__ = ["add_commands"]


def add_commands(sub) -> None:
    p = sub.add_parser("info", help="summarise a splat file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    max_splats_option(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert between splat formats (from each file's extension)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--sh-degree", type=int, choices=range(4), help="truncate SH bands")
    max_splats_option(p)
    spz_version_option(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("import", help="import a splat file into a fresh scene and save a .blend")
    p.add_argument("file")
    p.add_argument("--blend", required=True, help="the .blend to write")
    p.add_argument("--name", help="object name (default: the file's stem)")
    p.add_argument("--up-axis", default="-Y", choices=list(UP_AXES))
    max_splats_option(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a splat object of a .blend to a file")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True)
    p.add_argument("output")
    p.add_argument("--up-axis", default=None, choices=list(UP_AXES),
                   help="the written file's up axis (default: the one the object was imported "
                        "with; for splats from Blender's own importers, their axes)")
    p.add_argument("--no-transform", action="store_true",
                   help="write the stored values without baking the object's world transform")
    spz_version_option(p)
    p.set_defaults(func=cmd_export)


def cmd_info(args) -> int:
    from ..formats import detect_format, read_splats

    fmt = detect_format(args.file)
    splats = read_splats(args.file, format=fmt, limits=read_limits(args), report=stderr_report)
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
    from ..formats import detect_format, read_splats, write_splats

    start = time.perf_counter()
    spz_version = spz_version_of(args, args.output)
    splats = read_splats(args.input, limits=read_limits(args), report=stderr_report)
    if args.sh_degree is not None:
        splats = splats.with_sh_degree(args.sh_degree)
    out_fmt = detect_format(args.output, for_writing=True)
    write_splats(args.output, splats, format=out_fmt, spz_version=spz_version,
                 report=stderr_report)
    print(f"Converted {splats.count:,} splats (SH {splats.sh_degree}) to {out_fmt} "
          f"{args.output} in {time.perf_counter() - start:.2f} s")
    return 0


def cmd_import(args) -> int:
    bpy, splat_object = blender_module("scene.splat_object")
    fresh_scene(bpy)
    obj = splat_object.import_splats(
        args.file, up_axis=args.up_axis, name=args.name, limits=read_limits(args),
        report=stdout_report
    )
    blender_module("scene.blend_files")[1].save_blend(args.blend)
    print(f"Saved {args.blend} with object {obj.name!r}")
    return 0


def cmd_export(args) -> int:
    spz_version = spz_version_of(args, args.output)
    bpy, splat_object = blender_module("scene.splat_object")
    blend_files = blender_module("scene.blend_files")[1]
    blend_files.open_blend(args.blend)
    obj = blend_files.object_named(args.blend, args.object)
    splat_object.export_splats(
        obj, args.output, apply_transform=not args.no_transform, up_axis=args.up_axis,
        spz_version=spz_version, report=stdout_report,
    )
    return 0


