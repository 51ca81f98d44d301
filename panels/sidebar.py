"""The "Splats" tab of the 3D viewport sidebar: what the active splat object holds, the
import/export buttons, and one-click reconstruction with its progress bar. Draw code only; the
work happens in the operators."""

from __future__ import annotations

import bpy

from ..scene.splat_object import is_splat_object, splat_count, splat_sh_degree

__all__ = ["GS_PT_splats", "CLASSES"]


class GS_PT_splats(bpy.types.Panel):
    bl_idname = "GS_PT_splats"
    bl_label = "Gaussian Splats"
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Splats"

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        box = layout.box()
        if is_splat_object(obj):
            box.label(text=obj.name, icon='OUTLINER_OB_POINTCLOUD')
            box.label(text=f"{splat_count(obj):,} splats")
            degree = splat_sh_degree(obj)
            box.label(text=f"SH degree {degree}" if degree >= 0 else "SH bands incomplete")
        else:
            box.label(text="No splat object active", icon='INFO')
        row = layout.row(align=True)
        row.operator("gs.import_splats", text="Import", icon='IMPORT')
        row.operator("gs.export_splats", text="Export", icon='EXPORT')
        _draw_reconstruct(layout, context)


def _draw_reconstruct(layout, context) -> None:
    wm = getattr(context, "window_manager", None)
    status = getattr(wm, "gs_reconstruct", None)
    if status is None:  # the reconstruct operators are not registered
        return
    box = layout.box()
    box.label(text="Reconstruct", icon='MOD_PARTICLES')
    if status.running:
        box.progress(factor=status.progress, type='BAR',
                     text=f"{status.progress * 100:.0f}% {status.stage}")
        box.label(text=status.message)
        box.operator("gs.reconstruct_cancel", text="Cancel (Esc)", icon='CANCEL')
        return
    selected = len(getattr(context, "selected_objects", ()))
    col = box.column()
    col.enabled = selected > 0
    col.operator("gs.reconstruct", text=f"Reconstruct Selection ({selected})", icon='PLAY')
    if status.last_result:
        box.label(text=status.last_result, icon='CHECKMARK')


CLASSES = (GS_PT_splats,)
