"""The "Splats" tab of the 3D viewport sidebar: what the active splat object holds, the
import/export buttons, and one-click reconstruction with its progress bar. Draw code only; the
work happens in the operators."""

from __future__ import annotations

import bpy

from ..scene.splat_object import is_splat_object, splat_count, splat_layout, splat_sh_degree

__all__ = ["SplatsSidebarPanel", "SplatsSubPanel", "SceneSettingsSubPanel", "GS_PT_splats",
           "GS_PT_capture", "GS_PT_photos", "GS_PT_rigging", "CLASSES"]


class SplatsSidebarPanel:
    """Where every panel of the extension sits: the "Splats" tab of the 3D viewport's sidebar."""

    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Splats"


class SplatsSubPanel(SplatsSidebarPanel):
    """A sub-panel of :class:`GS_PT_splats`."""

    bl_parent_id = "GS_PT_splats"


class SceneSettingsSubPanel(SplatsSubPanel):
    """A closed sub-panel that draws a settings group of the scene (``scene.<settings>``),
    shown when that group is registered."""

    bl_options = {'DEFAULT_CLOSED'}
    settings = ""

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, cls.settings, None) is not None


class GS_PT_splats(SplatsSidebarPanel, bpy.types.Panel):
    bl_idname = "GS_PT_splats"
    bl_label = "Gaussian Splats"

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        box = layout.box()
        if is_splat_object(obj):
            box.label(text=obj.name, icon='OUTLINER_OB_POINTCLOUD')
            box.label(text=f"{splat_count(obj):,} splats")
            degree = splat_sh_degree(obj)
            box.label(text=f"SH degree {degree}" if degree >= 0 else "SH bands incomplete")
            box.label(text="Native splats (drawn by Blender)" if splat_layout(obj) == "NATIVE"
                      else "Mesh splats (riggable)")
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
    props = getattr(getattr(context, "scene", None), "gs_capture", None)
    if props is not None:
        box.prop(props, "reconstruct_dataset")
    col = box.column()
    if props is not None and props.reconstruct_dataset.strip():
        col.operator("gs.reconstruct", text="Reconstruct Data Set", icon='PLAY')
    else:
        selected = len(getattr(context, "selected_objects", ()))
        col.enabled = selected > 0
        col.operator("gs.reconstruct", text=f"Reconstruct Selection ({selected})", icon='PLAY')
    _draw_photos_row(box, context)
    if status.last_result:
        box.label(text=status.last_result, icon='CHECKMARK')


def _draw_photos_row(box, context) -> None:
    photos = getattr(getattr(context, "scene", None), "gs_photos", None)
    if photos is None:
        return
    col = box.column(align=True)
    col.prop(photos, "photos", text="Photos")
    row = col.row()
    row.enabled = bool(photos.photos.strip())
    row.operator("gs.reconstruct_photos", text="Reconstruct from Photos", icon='IMAGE_DATA')


class GS_PT_photos(SceneSettingsSubPanel, bpy.types.Panel):
    """Options of Reconstruct from Photos (the folder or video is in the Reconstruct box)."""

    bl_idname = "GS_PT_photos"
    bl_label = "From Photos"
    settings = "gs_photos"

    def draw(self, context):
        photos = context.scene.gs_photos
        col = self.layout.column()
        for name in ("masks", "dataset", "frames", "max_size", "test_every", "steps", "threads",
                     "up"):
            col.prop(photos, name)


class GS_PT_capture(SceneSettingsSubPanel, bpy.types.Panel):
    """Capture settings: used by Capture Views and by Reconstruct."""

    bl_idname = "GS_PT_capture"
    bl_label = "Capture"
    settings = "gs_capture"

    def draw(self, context):
        from ..operators.capture import draw_capture_settings

        draw_capture_settings(self.layout, context.scene.gs_capture, context=context)


class GS_PT_rigging(SplatsSubPanel, bpy.types.Panel):
    """Binding splats to an armature, the humanoid template and baking."""

    bl_idname = "GS_PT_rigging"
    bl_label = "Rigging"
    bl_options = {'DEFAULT_CLOSED'}

    @classmethod
    def poll(cls, context):
        return is_splat_object(context.active_object)

    def draw(self, context):
        col = self.layout.column(align=True)
        col.operator("gs.bind_armature", icon='ARMATURE_DATA')
        col.operator("gs.rig_humanoid", icon='OUTLINER_OB_ARMATURE')
        col.operator("gs.bake_splats", icon='EXPORT')


CLASSES = (GS_PT_splats, GS_PT_photos, GS_PT_capture, GS_PT_rigging)
