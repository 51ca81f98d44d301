""""Rig as humanoid": Rigify's basic human metarig fitted to a splat cloud, then bound.

The metarig comes from Rigify, which ships with Blender (no SMPL-X or other body-model data).
Its rest pose is scaled to the figure's height (metarig: 1.98 m to the top of the head) and
placed on the figure's axis; then the bones that matter most for posing are moved onto the
joints :func:`blender_gs_addon.humanoid_fit.fit_humanoid` estimates from the points (head top,
shoulders, elbows, wrists, hands, hips, knees, ankles, toes; T- or A-pose arms). The user can
edit the bones afterwards and re-bind with "Bind to Armature".
"""

from __future__ import annotations

import addon_utils
import bpy
import numpy as np

from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.humanoid_fit import fit_humanoid
from . import rigging

__all__ = ["METARIG_HEIGHT", "create_metarig", "fit_metarig", "rig_humanoid"]

METARIG_HEIGHT = 1.98  # top of spine.006 in Rigify's basic human metarig


def create_metarig(name: str) -> bpy.types.Object:
    """A new Rigify basic human metarig (29 bones) in the active collection, active."""
    if not addon_utils.check("rigify")[1]:  # (enabled by default, loaded now)
        try:
            addon_utils.enable("rigify", default_set=True, persistent=True)
        except Exception as err:  # an add-on failing to load raises anything
            raise GSError(f"Rigify (shipped with Blender) could not be enabled: {err}") from None
    if not hasattr(bpy.types, "OBJECT_OT_armature_basic_human_metarig_add"):
        raise GSError("Rigify's human metarig is not available in this Blender")
    before = set(bpy.data.objects)
    if bpy.context.mode != 'OBJECT':
        bpy.ops.object.mode_set(mode='OBJECT')
    bpy.ops.object.armature_basic_human_metarig_add()
    created = [o for o in bpy.data.objects if o not in before and o.type == 'ARMATURE']
    if not created:
        raise GSError("Rigify did not create a metarig")
    arm = created[0]
    arm.name = name
    arm.location = (0.0, 0.0, 0.0)
    return arm


def fit_metarig(arm: bpy.types.Object, points_world: np.ndarray, *, source: str) -> str:
    """Move the metarig's bones onto the joints estimated from ``points_world``; returns the
    detected pose ("T" or "A")."""
    fit = fit_humanoid(points_world, source=source)
    j = fit.joints
    scale = fit.height / METARIG_HEIGHT
    base = np.array([j["hips"][0], j["hips"][1], fit.floor])
    to_arm = np.linalg.inv(np.array(arm.matrix_world, np.float64))

    def local(p):
        return tuple(to_arm[:3, :3] @ np.asarray(p, np.float64) + to_arm[:3, 3])

    view_layer = bpy.context.view_layer
    view_layer.objects.active = arm
    with bpy.context.temp_override(active_object=arm, object=arm, selected_objects=[arm]):
        bpy.ops.object.mode_set(mode='EDIT')
        try:
            bones = arm.data.edit_bones
            for eb in bones:  # scale and place the whole rest pose first
                head = base + scale * np.array(eb.head)
                tail = base + scale * np.array(eb.tail)
                eb.head, eb.tail = local(head), local(tail)

            def put(name, head=None, tail=None):
                eb = bones.get(name)
                if eb is None:
                    return
                if head is not None:
                    eb.head = local(head)
                if tail is not None:
                    eb.tail = local(tail)

            put("spine.006", tail=j["head_top"])
            for s in ("L", "R"):
                shoulder, elbow, wrist = j[f"shoulder.{s}"], j[f"elbow.{s}"], j[f"wrist.{s}"]
                put(f"shoulder.{s}", tail=shoulder)
                put(f"upper_arm.{s}", head=shoulder, tail=elbow)
                put(f"forearm.{s}", head=elbow, tail=wrist)
                put(f"hand.{s}", head=wrist, tail=wrist + 0.5 * (j[f"hand_tip.{s}"] - wrist))
                hip, knee, ankle, toe = j[f"hip.{s}"], j[f"knee.{s}"], j[f"ankle.{s}"], \
                    j[f"toe.{s}"]
                ball = ankle + 0.6 * (toe - ankle)
                ball[2] = toe[2]
                put(f"thigh.{s}", head=hip, tail=knee)
                put(f"shin.{s}", head=knee, tail=ankle)
                put(f"foot.{s}", head=ankle, tail=ball)
                put(f"toe.{s}", head=ball, tail=toe)
            for eb in bones:
                eb.bbone_segments = 1  # plain LBS: what the live rotation reproduces exactly
        finally:
            bpy.ops.object.mode_set(mode='OBJECT')
    return fit.pose


def rig_humanoid(obj: bpy.types.Object, *, report: Report = log_report) -> bpy.types.Object:
    """Create a metarig, fit it to splat object ``obj`` and bind; returns the armature.

    On any failure the new armature is removed again and ``obj`` is left as it was.
    """
    rigging._check_splat_object(obj)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    world = np.array(obj.evaluated_get(depsgraph).matrix_world, np.float64)
    points = rigging._transform(world, rigging._positions(obj.data).astype(np.float64))
    source = f"Object {obj.name!r}"
    fit_humanoid(points, source=source)  # refuse a non-figure before anything is created
    active = bpy.context.view_layer.objects.active
    arm = create_metarig(f"{obj.name} rig")
    try:
        pose = fit_metarig(arm, points, source=source)
        rigging.bind_splats(obj, arm, report=report)
    except BaseException:
        data = arm.data
        bpy.data.objects.remove(arm)
        if data.users == 0:
            bpy.data.armatures.remove(data)
        if active is not None and active.name in bpy.data.objects:
            bpy.context.view_layer.objects.active = active
        raise
    report({'INFO'}, f"Rigged {obj.name!r} as a humanoid ({pose}-pose input); edit the bones "
                     "of " + repr(arm.name) + " and bind again to refine")
    return arm
