"""Rigging commands inside Blender: ``rig`` (bind to an armature or the humanoid template)
and ``bake`` (posed frames to .ply)."""

from __future__ import annotations

from .blender import blender_module

__all__ = ["add_commands"]


def add_commands(sub) -> None:
    p = sub.add_parser("rig", help="bind a splat object to an armature or a humanoid template")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True, help="the splat object")
    rig_src = p.add_mutually_exclusive_group(required=True)
    rig_src.add_argument("--armature", help="an armature object in the .blend")
    rig_src.add_argument("--template", choices=["humanoid"], help="fit a human metarig")
    p.add_argument("--out", required=True, help="the .blend to write")
    p.set_defaults(func=cmd_rig)

    p = sub.add_parser("bake", help="write the posed splats of a frame range as .ply files")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True)
    p.add_argument("--frames", required=True, help="A:B, inclusive")
    p.add_argument("--out", required=True, help="folder for <name>_<frame>.ply")
    p.set_defaults(func=cmd_bake)


def cmd_rig(args) -> int:
    return blender_module("scene.commands")[1].rig_main(args)


def cmd_bake(args) -> int:
    return blender_module("scene.commands")[1].bake_main(args)


