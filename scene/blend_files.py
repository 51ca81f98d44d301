"""Opening and saving .blend files for the command line, with errors that name the file."""

from __future__ import annotations

import os

import bpy

from ..blender_gs_addon.errors import GSError

__all__ = ["open_blend", "save_blend", "object_named"]


def open_blend(path) -> None:
    """Open ``path`` as the current file; GSError when it is missing or unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise GSError(f"{path}: no such .blend file")
    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path))
    except RuntimeError as err:
        raise GSError(f"{path}: Blender could not open it: {str(err).strip()}") from None


def save_blend(path) -> None:
    """Save the current file as ``path`` (folders created); GSError when that fails."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        bpy.ops.wm.save_as_mainfile(filepath=path, check_existing=False)
    except RuntimeError as err:
        raise GSError(f"{path}: could not save: {str(err).strip()}") from None


def object_named(blend, name: str) -> bpy.types.Object:
    """The object called ``name``; GSError listing the file's objects when there is none."""
    obj = bpy.data.objects.get(name)
    if obj is None:
        names = ", ".join(sorted(o.name for o in bpy.data.objects)) or "none"
        raise GSError(f"{blend}: no object named {name!r} (objects: {names})")
    return obj
