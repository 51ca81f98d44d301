"""Rigging in Blender: binding, live splat rotation under posing, humanoid template, bake."""

import math

import numpy as np
import pytest

from blender_gs_addon.errors import GSError
from blender_gs_addon.quaternions import quat_to_matrix
from blender_gs_addon.skinning import blend_skinning
from blender_gs_addon.splats import SplatSet

pytestmark = pytest.mark.bpy


@pytest.fixture
def rig(blender, gs_extension):
    from blender_gs_addon.extension import extension_module

    return extension_module("scene.rigging")


def _splat_object(name, positions, rng, *, degree=1):
    from blender_gs_addon.extension import extension_module

    so = extension_module("scene.splat_object")
    s = SplatSet.empty(len(positions), degree)
    s.positions = positions.astype(np.float32)
    q = rng.normal(size=(len(positions), 4))
    s.rotations = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    s.sh_rest = rng.normal(size=s.sh_rest.shape).astype(np.float32)
    return so.create_splat_object(s, name=name, up_axis="+Z"), s


def _armature(bpy, name, chains):
    """chains: list of [(bone name, head, tail)], each chain parented and connected."""
    data = bpy.data.armatures.new(name)
    arm = bpy.data.objects.new(name, data)
    bpy.context.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode='EDIT')
    for chain in chains:
        parent = None
        for bone, head, tail in chain:
            eb = data.edit_bones.new(bone)
            eb.head, eb.tail = head, tail
            if parent is not None:
                eb.parent, eb.use_connect = parent, True
            parent = eb
    bpy.ops.object.mode_set(mode='OBJECT')
    return arm


def _limb(rng, count=20000, *, x=0.0, length=2.0, radius=0.1):
    z = rng.uniform(0, length, count)
    phi = rng.uniform(0, 2 * np.pi, count)
    r = radius * rng.uniform(0.9, 1.0, count)
    return np.stack([x + r * np.cos(phi), r * np.sin(phi), z], 1)


def _weights(obj, names):
    """[N, B] weights read back from the vertex groups (test-side check of what was written)."""
    w = np.zeros((len(obj.data.vertices), len(names)))
    column = {obj.vertex_groups[n].index: i for i, n in enumerate(names)
              if n in obj.vertex_groups}
    for v in obj.data.vertices:
        for g in v.groups:
            w[v.index, column[g.group]] = g.weight
    return w


def _angles(qa, qb):
    ra, rb = quat_to_matrix(qa), quat_to_matrix(qb)
    cos = (np.trace(np.swapaxes(ra, -1, -2) @ rb, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_bent_limb_matches_exact_lbs(blender, rig, rng):
    bpy = blender
    pos = _limb(rng)
    obj, splats = _splat_object("limb", pos, rng)
    obj.rotation_euler = (0.3, 0.0, 0.7)  # the binding works in the object's mesh space
    arm = _armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                  ("lower", (0, 0, 1), (0, 0, 2))]])
    arm.location = (0.5, 0, 0)
    arm.rotation_euler = (0.3, 0.0, 0.7)
    obj.location = (0.5, 0, 0)
    rig.bind_splats(obj, arm)
    names = ["upper", "lower"]
    w = _weights(obj, names)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert (w.max(1) > 0).all()
    arm.pose.bones["lower"].rotation_mode = 'XYZ'
    arm.pose.bones["lower"].rotation_euler = (math.pi / 2, 0, 0)  # no frame change
    got_pos, got_rot = rig.evaluated_splats(obj)
    mats = rig.bone_matrices(obj, arm, names)
    bones = np.tile(np.arange(2), (len(pos), 1))
    ref_pos, ref_rot = blend_skinning(pos, splats.rotations, bones, w, mats)
    assert np.abs(got_pos - pos).max() > 0.5  # it really moved
    assert np.linalg.norm(got_pos - ref_pos, axis=1).max() <= 1e-4 * 2.0
    ang = _angles(got_rot, ref_rot)
    assert np.median(ang) <= 1.0 and np.percentile(ang, 99) <= 5.0
    # rotations are not just the rest ones (the joint region really rotates)
    assert np.percentile(_angles(got_rot, splats.rotations), 90) > 45


def test_two_legs_bound_separately(blender, rig, rng):
    bpy = blender
    left, right = _limb(rng, 10000, x=-0.15, length=1.0), _limb(rng, 10000, x=0.15, length=1.0)
    obj, _ = _splat_object("legs", np.vstack([left, right]), rng, degree=0)
    chains = [[(f"thigh.{s}", (x, 0, 1.0), (x, 0, 0.5)), (f"shin.{s}", (x, 0, 0.5), (x, 0, 0.0))]
              for s, x in (("L", -0.15), ("R", 0.15))]
    arm = _armature(bpy, "legs_rig", chains)
    rig.bind_splats(obj, arm)
    w = _weights(obj, ["thigh.L", "shin.L", "thigh.R", "shin.R"])
    assert w[:10000, 2:].max() == 0 and w[10000:, :2].max() == 0


def test_bad_inputs_leave_the_scene_unchanged(blender, rig, rng):
    bpy = blender
    obj, _ = _splat_object("limb", _limb(rng, 2000), rng, degree=0)
    arm = _armature(bpy, "arm", [[("a", (0, 0, 0), (0, 0, 1))]])
    arm.data.bones["a"].use_deform = False
    state = (len(bpy.data.objects), len(obj.modifiers), len(obj.vertex_groups))
    with pytest.raises(GSError, match="no deform bones"):
        rig.bind_splats(obj, arm)
    arm.data.bones["a"].use_deform = True
    arm.location = (100, 0, 0)
    with pytest.raises(GSError, match="farther from every bone"):
        rig.bind_splats(obj, arm)
    plain = bpy.data.objects.new("plain", bpy.data.meshes.new("plain"))
    bpy.context.collection.objects.link(plain)
    with pytest.raises(GSError, match="no splat attributes"):
        rig.bind_splats(plain, arm)
    assert state == (len(bpy.data.objects) - 1, len(obj.modifiers), len(obj.vertex_groups))
    # the operator reports the error (bpy.ops raises it in background mode) and cancels
    bpy.context.view_layer.objects.active = obj
    with bpy.context.temp_override(active_object=obj, selected_objects=[obj, arm]):
        with pytest.raises(RuntimeError, match="farther from every bone"):
            bpy.ops.gs.bind_armature(armature=arm.name)
    assert state == (len(bpy.data.objects) - 1, len(obj.modifiers), len(obj.vertex_groups))


def test_rebind_replaces_and_mesh_transfer(blender, rig, rng):
    bpy = blender
    obj, _ = _splat_object("limb", _limb(rng, 3000), rng, degree=0)
    arm = _armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                  ("lower", (0, 0, 1), (0, 0, 2))]])
    rig.bind_splats(obj, arm)
    count = len(bpy.data.objects)
    # a skinned mesh: a thin plane along z whose "lower" weight is z / 2
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=4, y_subdivisions=8, size=1.0)
    mesh = bpy.context.active_object
    mesh.scale = (0.5, 2.0, 1.0)
    mesh.rotation_euler = (math.pi / 2, 0, 0)
    mesh.location = (0, 0, 1.0)
    bpy.ops.object.transform_apply(location=True, rotation=True, scale=True)
    up, lo = mesh.vertex_groups.new(name="upper"), mesh.vertex_groups.new(name="lower")
    for v in mesh.data.vertices:
        t = min(max(v.co.z / 2.0, 0.0), 1.0)
        lo.add([v.index], t, 'REPLACE')
        up.add([v.index], 1 - t, 'REPLACE')
    rig.bind_splats(obj, arm, method="mesh", source_mesh=mesh)
    assert len(bpy.data.objects) == count + 1  # the helper was replaced, not duplicated
    w = _weights(obj, ["upper", "lower"])
    z = np.array([v.co.z for v in obj.data.vertices])
    assert np.abs(w[:, 1] - np.clip(z / 2, 0, 1)).max() < 0.02


def test_rig_humanoid_fits_and_poses(blender, rig, rng):
    from test_skinning import human_figure

    from blender_gs_addon.extension import extension_module

    humanoid = extension_module("scene.humanoid")
    pts, truth = human_figure(rng, pose="T", count=30000)
    obj, _ = _splat_object("person", pts, rng, degree=0)
    arm = humanoid.rig_humanoid(obj)
    bones = arm.data.bones
    checks = {"head_top": bones["spine.006"].tail_local, "wrist.L": bones["hand.L"].head_local,
              "wrist.R": bones["hand.R"].head_local, "ankle.L": bones["foot.L"].head_local,
              "ankle.R": bones["foot.R"].head_local}
    for name, where in checks.items():
        assert np.linalg.norm(np.array(where) - truth[name]) < 0.1 * 1.8, name
    # posable: raising the left forearm moves the left hand's splats, not the right's
    arm.pose.bones["upper_arm.L"].rotation_mode = 'XYZ'
    arm.pose.bones["upper_arm.L"].rotation_euler = (0, 0, math.pi / 3)
    moved = np.linalg.norm(rig.evaluated_splats(obj)[0] - pts, axis=1)
    assert moved[pts[:, 0] > 0.8].min() > 0.1
    assert moved[pts[:, 0] < -0.6].max() < 1e-5


def test_bake_writes_posed_sequence(blender, rig, rng, tmp_path):
    from blender_gs_addon.formats import read_splats
    from blender_gs_addon.sh import rotate_sh_rest

    bpy = blender
    pos = _limb(rng, 2000)
    obj, splats = _splat_object("limb", pos, rng, degree=1)
    arm = _armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                  ("lower", (0, 0, 1), (0, 0, 2))]])
    rig.bind_splats(obj, arm)
    pb = arm.pose.bones["upper"]
    pb.rotation_mode = 'XYZ'
    for frame, angle in ((1, 0.0), (2, math.pi / 2)):
        pb.rotation_euler = (angle, 0, 0)
        pb.keyframe_insert("rotation_euler", frame=frame)
    paths = rig.bake_splats(obj, frames=(1, 2), out_dir=tmp_path)
    assert [p.rsplit("_", 1)[1] for p in paths] == ["0001.ply", "0002.ply"]
    first, second = read_splats(paths[0]), read_splats(paths[1])
    np.testing.assert_allclose(first.positions, pos, atol=1e-5)
    # frame 2: everything turned 90° about x by the root bone (weights are irrelevant)
    turn = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]])
    np.testing.assert_allclose(second.positions, pos @ turn.T, atol=1e-5)
    np.testing.assert_allclose(quat_to_matrix(second.rotations),
                               turn @ quat_to_matrix(splats.rotations), atol=1e-5)
    np.testing.assert_allclose(second.sh_rest, rotate_sh_rest(splats.sh_rest, turn), atol=1e-4)
    assert bpy.context.scene.frame_current == 1
    with pytest.raises(GSError, match="A:B"):
        rig.parse_frames("3-4")
