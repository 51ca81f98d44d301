"""Rigging operators: bind a splat object to an armature, rig it as a humanoid, bake poses.

Thin wrappers around ``scene/rigging.py`` and ``scene/humanoid.py``; a GSError becomes an ERROR
report and {'CANCELLED'} with the scene left as it was.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from ..scene import bake, humanoid, rigging, splat_object
from .reporting import reports_gs_errors

__all__ = ["GS_OT_bind_armature", "GS_OT_rig_humanoid", "GS_OT_bake_splats", "CLASSES"]


def _splat_poll(cls, context) -> bool:
    if splat_object.is_splat_object(context.active_object):
        return True
    cls.poll_message_set("The active object is not a splat object")
    return False


class GS_OT_bind_armature(bpy.types.Operator):
    """Skin the active splat object to the selected armature (vertex groups, Armature
    modifier and live splat rotation)"""

    bl_idname = "gs.bind_armature"
    bl_label = "Bind Splats to Armature"
    bl_options = {'REGISTER', 'UNDO'}

    method: EnumProperty(
        name="Weights",
        items=[("auto", "Automatic", "From the splat cloud: distance to bones with a "
                                     "visibility test, smoothed"),
               ("mesh", "From Mesh", "Copy from a skinned mesh's vertex groups at the "
                                     "nearest surface point")],
        default="auto",
    )
    source_mesh: StringProperty(name="Mesh", description="Skinned mesh to copy weights from")
    armature: StringProperty(name="Armature", description="Armature object (default: the "
                                                          "selected armature)")

    @classmethod
    def poll(cls, context):
        return _splat_poll(cls, context)

    @reports_gs_errors
    def execute(self, context):
        obj = context.active_object
        arm = bpy.data.objects.get(self.armature) if self.armature else next(
            (o for o in context.selected_objects if o.type == 'ARMATURE'), None)
        mesh = bpy.data.objects.get(self.source_mesh) if self.source_mesh else None
        rigging.bind_splats(obj, arm, method=self.method, source_mesh=mesh,
                            report=self.report)
        return {'FINISHED'}


class GS_OT_rig_humanoid(bpy.types.Operator):
    """Create Rigify's human metarig, fit it to the active splat object and bind it"""

    bl_idname = "gs.rig_humanoid"
    bl_label = "Rig as Humanoid"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return _splat_poll(cls, context)

    @reports_gs_errors
    def execute(self, context):
        humanoid.rig_humanoid(context.active_object, report=self.report)
        return {'FINISHED'}


class GS_OT_bake_splats(bpy.types.Operator):
    """Write the posed splats of a frame range as a .ply sequence"""

    bl_idname = "gs.bake_splats"
    bl_label = "Bake Posed Splats"
    bl_options = {'REGISTER'}

    directory: StringProperty(name="Folder", subtype='DIR_PATH')
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=1)

    @classmethod
    def poll(cls, context):
        return _splat_poll(cls, context)

    def invoke(self, context, event):
        self.frame_start = context.scene.frame_start
        self.frame_end = context.scene.frame_end
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    @reports_gs_errors
    def execute(self, context):
        bake.bake_splats(context.active_object, frames=(self.frame_start, self.frame_end),
                         out_dir=bpy.path.abspath(self.directory), report=self.report)
        return {'FINISHED'}


CLASSES = (GS_OT_bind_armature, GS_OT_rig_humanoid, GS_OT_bake_splats)
