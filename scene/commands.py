"""The command-line entry points that run inside Blender: ``capture``, ``rig`` and ``bake``.

The core's CLI (:mod:`blender_gs_addon.cli`, the one bridge from the core to this side) parses
the arguments and calls these with the ``argparse`` namespace; they open or build the scene,
call the module that does the work, and print reports as the CLI does.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import bpy

from ..blender_gs_addon.capture.options import CaptureOptions
from ..blender_gs_addon.errors import GSError, Report
from .bake import bake_splats
from .blend_files import object_named, open_blend, save_blend
from .capture import GEOMETRY_TYPES, capture_views, print_progress, render_visible_objects
from .humanoid import rig_humanoid
from .rigging import bind_splats
from .sample_scenes import build_sample_scene

__all__ = ["capture_main", "rig_main", "bake_main", "parse_frames", "print_report"]


def print_report(levels: set, message: str) -> None:
    """A report as one printed line: "error: …", "warning: …" or the message."""
    prefix = "error: " if "ERROR" in levels else "warning: " if "WARNING" in levels else ""
    print(prefix + message, flush=True)


def capture_main(args, *, report: Report | None = None) -> Path:
    """The ``capture`` command: open ``args.blend`` (objects ``args.objects``, comma-separated
    names; default: the file's selection, else every render-visible geometry object) or build
    ``args.builtin`` into an empty file, then :func:`capture_views` with printed progress.

    Reads ``args``: blend, objects, builtin, out, and the capture settings that
    :meth:`CaptureOptions.from_command_line` reads.
    """
    report = report or print_report
    builtin = getattr(args, "builtin", None)
    blend = getattr(args, "blend", None)
    if bool(builtin) == bool(blend):
        raise GSError("give exactly one of --blend FILE or --builtin NAME")
    if builtin:
        # Factory startup file, not factory settings: preferences and add-ons stay as they are.
        bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True, app_template="")
        objects = build_sample_scene(builtin)
    else:
        open_blend(blend)
        objects = _objects_from_names(getattr(args, "objects", None), blend)
    return capture_views(bpy.context, objects=objects, out_dir=getattr(args, "out", None),
                         options=CaptureOptions.from_command_line(args),
                         progress=print_progress, report=report)


def _objects_from_names(names, blend) -> list[bpy.types.Object]:
    scene = bpy.context.scene
    if names:
        wanted = [n.strip() for n in str(names).split(",") if n.strip()]
        missing = [n for n in wanted if n not in bpy.data.objects]
        if missing:
            available = ", ".join(sorted(o.name for o in scene.objects)) or "none"
            raise GSError(f"{blend}: no object named {', '.join(map(repr, missing))} "
                          f"(objects: {available})")
        return [bpy.data.objects[n] for n in wanted]
    selected = list(bpy.context.selected_objects)
    if selected:
        return selected
    return [obj for obj in render_visible_objects(bpy.context.view_layer)
            if obj.type in GEOMETRY_TYPES]


def parse_frames(text: str) -> tuple[int, int]:
    """"A:B" → (A, B), inclusive; GSError for anything else."""
    try:
        a, b = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise GSError(f"frames must be A:B (two whole numbers), got {text!r}") from None
    if b < a:
        raise GSError(f"frame range {text!r} is empty")
    return a, b


def rig_main(args: argparse.Namespace) -> int:
    """``rig --blend IN --object NAME (--armature ARM | --template humanoid) --out OUT``."""
    open_blend(args.blend)
    obj = object_named(args.blend, args.object)
    template = getattr(args, "template", None)
    arm_name = getattr(args, "armature", None)
    if bool(template) == bool(arm_name):
        raise GSError("give exactly one of --armature NAME or --template humanoid")
    if template:
        if template != "humanoid":
            raise GSError(f"unknown template {template!r}; the one template is 'humanoid'")
        armature = rig_humanoid(obj, report=print_report)
    else:
        armature = object_named(args.blend, arm_name)
        bind_splats(obj, armature, report=print_report)
    save_blend(args.out)
    print(f"Saved {os.path.abspath(args.out)}: {obj.name!r} bound to {armature.name!r}")
    return 0


def bake_main(args: argparse.Namespace) -> int:
    """``bake --blend IN --object NAME --frames A:B --out DIR``."""
    frames = parse_frames(args.frames)
    open_blend(args.blend)
    obj = object_named(args.blend, args.object)
    bake_splats(obj, frames=frames, out_dir=args.out, report=print_report)
    return 0
