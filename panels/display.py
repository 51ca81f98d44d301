"""Sidebar sub-panel with the active splat object's display options (draw code only)."""

from __future__ import annotations

import textwrap

import bpy

from ..scene.display import OPTION_NAMES, camera_problem, display_modifier, input_property
from ..scene.display.modifier import input_ids
from ..scene.splat_object import is_splat_object, splat_layout
from .sidebar import SplatsSubPanel

__all__ = ["GS_PT_display", "CLASSES"]


class GS_PT_display(SplatsSubPanel, bpy.types.Panel):
    bl_idname = "GS_PT_display"
    bl_label = "Display"

    @classmethod
    def poll(cls, context):
        return is_splat_object(context.active_object)

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        if context.scene.view_settings.view_transform != 'Standard':
            layout.operator("gs.use_standard_view", icon='COLOR')
        if splat_layout(obj) == "NATIVE":
            layout.label(text="Drawn by Blender (native splats)", icon='INFO')
            return
        mod = display_modifier(obj)
        if mod is None:
            layout.operator("gs.add_display", icon='SHADING_RENDERED')
            return
        ids = input_ids(mod.node_group)
        problem = camera_problem(context.scene)
        if problem is not None:
            box = layout.box().column(align=True)
            for i, line in enumerate(textwrap.wrap(problem, 38)):
                box.label(text=line, icon='ERROR' if i == 0 else 'BLANK1')
        col = layout.column()
        for name in OPTION_NAMES:
            if name in ids:
                owner, prop = input_property(mod, ids[name])
                col.prop(owner, prop, text=name)
        row = layout.row(align=True)
        row.prop(mod, "show_viewport", text="Viewport")
        row.prop(mod, "show_render", text="Render")
        layout.operator("gs.remove_display", icon='X')


CLASSES = (GS_PT_display,)
