""""Rig as humanoid": Rigify's basic human metarig fitted to a splat cloud, then bound.

The metarig comes from Rigify, which ships with Blender (no SMPL-X or other body-model data).
Its rest pose is scaled to the figure's height (metarig: 1.98 m to the top of the head) and
placed on the figure's axis; then the bones that matter most for posing are moved onto the
joints :func:`blender_gs_addon.rigging.humanoid_fit.fit_humanoid` estimates from the points (head
top,
shoulders, elbows, wrists, hands, hips, knees, ankles, toes; T- or A-pose arms). The user can
edit the bones afterwards and re-bind with "Bind to Armature".
"""

from __future__ import annotations

import importlib

import addon_utils
import bpy
import numpy as np

from ..blender_gs_addon.conventions.frames import transform_points
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.rigging.humanoid_fit import fit_humanoid
from . import rigging, splat_object

__all__ = ["METARIG_HEIGHT", "create_metarig", "fit_metarig", "rig_humanoid"]

METARIG_HEIGHT = 1.98  # top of spine.006 in Rigify's basic human metarig


def _enable_rigify() -> bool:
    """Load Rigify for this session if it is not loaded; True when this call loaded it.

    Not persistent: the user's add-on choice is not changed for later sessions. Rigify's own
    register() reads its add-on preferences entry, so the entry must exist (``default_set``);
    the preferences' dirty flag is restored so that auto-saved preferences do not keep it.
    """
    if addon_utils.check("rigify")[1]:
        return False
    prefs = bpy.context.preferences
    dirty = prefs.is_dirty
    try:
        mod = addon_utils.enable("rigify", default_set=True, persistent=False)
    except Exception as err:  # an add-on failing to load raises anything
        mod, error = None, err
    else:
        error = "it did not load"
    prefs.is_dirty = dirty
    if mod is None or not addon_utils.check("rigify")[1]:
        _disable_rigify()
        raise GSError(f"Rigify (shipped with Blender) could not be enabled: {error}")
    return True


def _disable_rigify() -> None:
    """Undo :func:`_enable_rigify` (the add-on and its preferences entry)."""
    prefs = bpy.context.preferences
    dirty = prefs.is_dirty
    try:
        addon_utils.disable("rigify", default_set=True)
    except Exception:  # noqa: BLE001 - best effort while another error is on its way
        pass
    prefs.is_dirty = dirty


def _remove_armature(arm: bpy.types.Object) -> None:
    data = arm.data
    bpy.data.objects.remove(arm)
    if data.users == 0:
        bpy.data.armatures.remove(data)


def create_metarig(name: str) -> bpy.types.Object:
    """A new Rigify basic human metarig (29 bones) in the active collection, active.

    Loads Rigify for the session when needed; on failure it is unloaded again."""
    enabled_here = _enable_rigify()
    arm = None
    try:
        try:
            basic_human = importlib.import_module("rigify.metarigs.Basic.basic_human")
        except ImportError:
            raise GSError("Rigify's human metarig is not available in this Blender") from None
        if bpy.context.mode != 'OBJECT':
            bpy.ops.object.mode_set(mode='OBJECT')
        # Rigify's "add metarig" operator reads ``context.active_object`` after adding an
        # armature, which an operator run under a context override (the panel's button in a
        # script, tests) pins to the splat object; building the metarig into our own armature
        # with the module Rigify's operator calls needs no such context.
        data = bpy.data.armatures.new(name)
        arm = bpy.data.objects.new(name, data)
        bpy.context.collection.objects.link(arm)
        bpy.context.view_layer.objects.active = arm
        with bpy.context.temp_override(active_object=arm, object=arm, selected_objects=[arm],
                                       selected_editable_objects=[arm]):
            basic_human.create(arm)
            bpy.ops.object.mode_set(mode='OBJECT')
        if not any(b.use_deform for b in data.bones):
            raise GSError("Rigify did not create a metarig")
    except BaseException:
        if arm is not None:
            _remove_armature(arm)
        if enabled_here:
            _disable_rigify()
        raise
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

    On any failure the new armature is removed again, ``obj`` is left as it was (an earlier
    binding included) and Rigify is unloaded again if this call loaded it.
    """
    splat_object.require_splat_object(obj, allow_empty=False)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    world = np.array(obj.evaluated_get(depsgraph).matrix_world, np.float64)
    points = transform_points(world, splat_object.splat_positions(obj).astype(np.float64))
    points = points[np.isfinite(points).all(axis=1)]  # NaN splats stay unbound (bind warns)
    source = f"Object {obj.name!r}"
    fit_humanoid(points, source=source)  # refuse a non-figure before anything is created
    active = bpy.context.view_layer.objects.active
    rigify_before = addon_utils.check("rigify")[1]
    arm = create_metarig(f"{obj.name} rig")
    try:
        pose = fit_metarig(arm, points, source=source)
        rigging.bind_splats(obj, arm, report=report)
    except BaseException:
        _remove_armature(arm)
        if active is not None and active.name in bpy.data.objects:
            bpy.context.view_layer.objects.active = active
        if not rigify_before:
            _disable_rigify()
        raise
    report({'INFO'}, f"Rigged {obj.name!r} as a humanoid ({pose}-pose input); edit the bones "
                     "of " + repr(arm.name) + " and bind again to refine")
    return arm
