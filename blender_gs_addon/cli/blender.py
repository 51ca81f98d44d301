"""The one bridge from the core to the Blender side: commands that need Blender get bpy and a
module of the extension from here (``tests/test_architecture.py`` allows no other core module
to import bpy or load the Blender side)."""

from __future__ import annotations

from ..errors import GSError

__all__ = ["blender_module", "fresh_scene"]


def blender_module(module: str):
    """(bpy, a module of the extension's Blender side, e.g. "scene.commands"); a clear error
    when bpy is missing."""
    try:
        import bpy
    except ImportError as err:
        raise GSError(f"this command needs the bpy module (pip install bpy==5.0.1, or run inside "
                      f"Blender): {err}") from None
    from ..extension import extension_module

    return bpy, extension_module(module)


def fresh_scene(bpy) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
