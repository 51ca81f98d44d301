"""Operators for the splat display, and the "Gaussian Splatting" render engine's registration.

Thin wrappers around ``scene/display.py``; the render engine class lives in
``scene/render_engine.py`` and is registered with these classes.
"""

from __future__ import annotations

import bpy

from ..scene import display, render_engine
from ..scene.splat_object import splat_layout
from .reporting import reports_gs_errors

__all__ = ["GS_OT_add_display", "GS_OT_remove_display", "GS_OT_use_standard_view", "CLASSES"]


def _targets(context) -> list[bpy.types.Object]:
    """Selected and active splat objects of the mesh layout (Blender draws native splats)."""
    objects = [o for o in context.selected_objects if splat_layout(o) == "MESH"]
    active = context.active_object
    if splat_layout(active) == "MESH" and active not in objects:
        objects.append(active)
    return objects


class GS_OT_add_display(bpy.types.Operator):
    """Show the selected splat objects as Gaussians (EEVEE, Cycles) for the active camera"""

    bl_idname = "gs.add_display"
    bl_label = "Add Splat Display"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return bool(_targets(context))

    @reports_gs_errors
    def execute(self, context):
        for obj in _targets(context):
            display.add_display(obj, scene=context.scene, report=self.report)
        return {'FINISHED'}


class GS_OT_remove_display(bpy.types.Operator):
    """Remove the Gaussian display from the selected splat objects (the splats stay)"""

    bl_idname = "gs.remove_display"
    bl_label = "Remove Splat Display"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return any(display.display_modifier(o) for o in _targets(context))

    def execute(self, context):
        removed = sum(display.remove_display(o) for o in _targets(context))
        self.report({'INFO'}, f"Removed the display from {removed} object(s)")
        return {'FINISHED'}


class GS_OT_use_standard_view(bpy.types.Operator):
    """Set the scene's view transform to Standard so splats show exactly their trained colours
    (AgX and Filmic tone-map them like any render)"""

    bl_idname = "gs.use_standard_view"
    bl_label = "Show Trained Colours"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        display.use_standard_view_transform(context.scene, report=self.report)
        return {'FINISHED'}


CLASSES = (GS_OT_add_display, GS_OT_remove_display, GS_OT_use_standard_view) + \
    render_engine.CLASSES
