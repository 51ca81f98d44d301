"""Rigging in Blender: binding, live splat rotation under posing, humanoid template, bake."""

import math

import numpy as np
import pytest

from blender_gs_addon.errors import GSError
from blender_gs_addon.extension import extension_module
from blender_gs_addon.quaternions import quat_to_matrix
from blender_gs_addon.rigging.skinning import blend_skinning
from blender_gs_addon.splats import SplatSet

pytestmark = pytest.mark.bpy


@pytest.fixture
def rig(blender, gs_extension):
    from blender_gs_addon.extension import extension_module

    return extension_module("scene.rigging")


@pytest.fixture(params=["MESH", "NATIVE"])
def layout(request, gs_extension):
    """Both splat-object layouts where this Blender has them (native: 5.3+)."""
    if request.param == "NATIVE" and not gs_extension.scene.native_splats.supported():
        pytest.skip("native Gaussian splats need bpy 5.3+")
    return request.param


def _splat_object(name, positions, rng, *, degree=1, layout=None):
    """A splat object in ``layout`` (default: the one this Blender creates)."""
    from blender_gs_addon.extension import extension_module

    so = extension_module("scene.splat_object")
    s = SplatSet.empty(len(positions), degree)
    s.positions = positions.astype(np.float32)
    q = rng.normal(size=(len(positions), 4))
    s.rotations = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    s.sh_rest = rng.normal(size=s.sh_rest.shape).astype(np.float32)
    return so.create_splat_object(s, name=name, up_axis="+Z", layout=layout), s


def make_armature(bpy, name, chains):
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


def limb_points(rng, count=20000, *, x=0.0, length=2.0, radius=0.1):
    z = rng.uniform(0, length, count)
    phi = rng.uniform(0, 2 * np.pi, count)
    r = radius * rng.uniform(0.9, 1.0, count)
    return np.stack([x + r * np.cos(phi), r * np.sin(phi), z], 1)


def _weights(obj, names):
    """[N, B] weights read back from the vertex groups (test-side check of what was written):
    the object's own, or its cage's for native splats."""
    obj = extension_module("scene.rigging").binding_weights_object(obj)
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


def test_bent_limb_matches_exact_lbs(blender, rig, rng, layout):
    bpy = blender
    pos = limb_points(rng)
    obj, splats = _splat_object("limb", pos, rng, layout=layout)
    obj.rotation_euler = (0.3, 0.0, 0.7)  # the binding works in the object's mesh space
    arm = make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
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
    # SH bands turned by each splat's rotation delta, in the splats every renderer reads
    from blender_gs_addon.sh import rotate_sh_rest

    posed = extension_module("scene.splat_object").evaluated_splats(
        obj.evaluated_get(bpy.context.evaluated_depsgraph_get()))
    delta = quat_to_matrix(got_rot.astype(np.float64)) @ np.swapaxes(
        quat_to_matrix(splats.rotations.astype(np.float64)), -1, -2)
    expected = rotate_sh_rest(splats.sh_rest.astype(np.float64), delta)
    assert np.abs(posed.sh_rest - expected).max() <= 2e-5
    assert np.abs(posed.sh_rest - splats.sh_rest).max() > 0.5


def test_two_legs_bound_separately(blender, rig, rng):
    bpy = blender
    left = limb_points(rng, 10000, x=-0.15, length=1.0)
    right = limb_points(rng, 10000, x=0.15, length=1.0)
    obj, _ = _splat_object("legs", np.vstack([left, right]), rng, degree=0)
    chains = [[(f"thigh.{s}", (x, 0, 1.0), (x, 0, 0.5)), (f"shin.{s}", (x, 0, 0.5), (x, 0, 0.0))]
              for s, x in (("L", -0.15), ("R", 0.15))]
    arm = make_armature(bpy, "legs_rig", chains)
    rig.bind_splats(obj, arm)
    w = _weights(obj, ["thigh.L", "shin.L", "thigh.R", "shin.R"])
    assert w[:10000, 2:].max() == 0 and w[10000:, :2].max() == 0


def test_bad_inputs_leave_the_scene_unchanged(blender, rig, rng, layout):
    bpy = blender
    obj, _ = _splat_object("limb", limb_points(rng, 2000), rng, degree=0, layout=layout)
    arm = make_armature(bpy, "arm", [[("a", (0, 0, 0), (0, 0, 1))]])
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


def _skinned_plane(bpy):
    """A skinned mesh for the two-bone limb: a plane along z (0 to 2) whose "lower" weight
    is z / 2 and "upper" weight 1 − z / 2."""
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
    return mesh


def test_rebind_replaces_and_mesh_transfer(blender, rig, rng):
    bpy = blender
    obj, _ = _splat_object("limb", limb_points(rng, 3000), rng, degree=0)
    arm = make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                      ("lower", (0, 0, 1), (0, 0, 2))]])
    rig.bind_splats(obj, arm)
    count = len(bpy.data.objects)
    mesh = _skinned_plane(bpy)
    rig.bind_splats(obj, arm, method="mesh", source_mesh=mesh)
    assert len(bpy.data.objects) == count + 1  # the helper was replaced, not duplicated
    w = _weights(obj, ["upper", "lower"])
    z = extension_module("scene.splat_object").splat_positions(obj)[:, 2]
    assert np.abs(w[:, 1] - np.clip(z / 2, 0, 1)).max() < 0.02


@pytest.mark.parametrize("pose", ["T", "A"])
def test_rig_humanoid_fits_and_poses(blender, rig, rng, pose):
    from test_skinning import human_figure

    from blender_gs_addon.extension import extension_module

    humanoid = extension_module("scene.humanoid")
    pts, truth = human_figure(rng, pose=pose, count=30000)
    obj, _ = _splat_object("person", pts, rng, degree=0)
    messages = []
    arm = humanoid.rig_humanoid(obj, report=lambda levels, msg: messages.append(msg))
    assert any(f"({pose}-pose input)" in m for m in messages), messages
    bones = arm.data.bones
    checks = {"head_top": bones["spine.006"].tail_local, "wrist.L": bones["hand.L"].head_local,
              "wrist.R": bones["hand.R"].head_local, "ankle.L": bones["foot.L"].head_local,
              "ankle.R": bones["foot.R"].head_local}
    for name, where in checks.items():
        assert np.linalg.norm(np.array(where) - truth[name]) < 0.1 * 1.8, name
    # posable: raising the left upper arm moves the left hand's splats, not the right arm's
    arm.pose.bones["upper_arm.L"].rotation_mode = 'XYZ'
    arm.pose.bones["upper_arm.L"].rotation_euler = (0, 0, math.pi / 3)
    moved = np.linalg.norm(rig.evaluated_splats(obj)[0] - pts, axis=1)
    left_hand = pts[:, 0] > truth["wrist.L"][0] - 0.02
    assert left_hand.sum() > 100 and moved[left_hand].min() > 0.1
    assert moved[pts[:, 0] < -0.4].max() < 1e-5


def _keyed_limb(bpy, rig, rng, count, *, bone, keys, layout=None):
    """A two-bone limb of ``count`` SH1 splats, bound, with ``bone`` keyed to (frame, angle
    about X) pairs; returns (positions, object, splats, armature)."""
    pos = limb_points(rng, count)
    obj, splats = _splat_object("limb", pos, rng, degree=1, layout=layout)
    arm = make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                      ("lower", (0, 0, 1), (0, 0, 2))]])
    rig.bind_splats(obj, arm)
    pb = arm.pose.bones[bone]
    pb.rotation_mode = 'XYZ'
    for frame, angle in keys:
        pb.rotation_euler = (angle, 0, 0)
        pb.keyframe_insert("rotation_euler", frame=frame)
    return pos, obj, splats, arm


def test_bake_writes_posed_sequence(blender, rig, rng, tmp_path, layout):
    from blender_gs_addon.formats import read_splats
    from blender_gs_addon.sh import rotate_sh_rest

    bpy = blender
    pos, obj, splats, arm = _keyed_limb(bpy, rig, rng, 2000, bone="upper",
                                        keys=((1, 0.0), (2, math.pi / 2)), layout=layout)
    paths = extension_module("scene.bake").bake_splats(obj, frames=(1, 2), out_dir=tmp_path)
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
        extension_module("scene.commands").parse_frames("3-4")


# ---------------------------------------------------------------------------- failure paths
def _binding_state(bpy, obj):
    """Everything a binding consists of, for before/after comparisons."""
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "node_groups": sorted(g.name for g in bpy.data.node_groups),
        "modifiers": [(m.name, m.type) for m in obj.modifiers],
        "groups": [vg.name for vg in obj.vertex_groups],
        "attributes": sorted(a.name for a in obj.data.attributes),
        "props": {k: obj[k] for k in ("gs_frames_object", "gs_armature") if k in obj},
    }


def test_failed_bind_leaves_the_earlier_binding_intact(blender, rig, rng, monkeypatch):
    """The mesh layout (native splats: tests/test_native_rigging.py)."""
    bpy = blender
    pos = limb_points(rng, 3000)
    obj, _ = _splat_object("limb", pos, rng, degree=0, layout="MESH")
    arm = make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                      ("lower", (0, 0, 1), (0, 0, 2))]])
    other = make_armature(bpy, "other", [[("a", (0, 0, 0), (0, 0, 0.7)),
                                          ("b", (0, 0, 0.7), (0, 0, 1.4)),
                                          ("c", (0, 0, 1.4), (0, 0, 2))]])

    def fail(*args, **kwargs):
        raise GSError("injected failure")

    # 1. No earlier binding: a failure late in the build (helper made, modifiers added)
    # leaves nothing behind, not even the node group it created.
    empty = _binding_state(bpy, obj)
    with monkeypatch.context() as m:
        m.setattr(rig, "_set_input", fail)
        with pytest.raises(GSError, match="injected"):
            rig.bind_splats(obj, arm)
    assert _binding_state(bpy, obj) == empty
    assert empty["modifiers"] == [("Splat Display", 'NODES')] and empty["groups"] == []

    # 2. A working binding survives a failed re-bind to another armature.
    rig.bind_splats(obj, arm)
    before = _binding_state(bpy, obj)
    weights = _weights(obj, ["upper", "lower"])
    pb = arm.pose.bones["lower"]
    pb.rotation_mode = 'XYZ'
    pb.rotation_euler = (math.pi / 2, 0, 0)
    posed_pos, posed_rot = rig.evaluated_splats(obj)
    for target in ("_set_input", "_make_helper", "_write_groups"):
        with monkeypatch.context() as m:
            m.setattr(rig, target, fail)
            with pytest.raises(GSError, match="injected"):
                rig.bind_splats(obj, other)
        assert _binding_state(bpy, obj) == before, target
        np.testing.assert_array_equal(_weights(obj, ["upper", "lower"]), weights)
        got_pos, got_rot = rig.evaluated_splats(obj)
        np.testing.assert_array_equal(got_pos, posed_pos)
        np.testing.assert_array_equal(got_rot, posed_rot)
    assert np.abs(posed_pos - pos).max() > 0.5  # the surviving binding still deforms
    assert before["modifiers"][:2] == [("GS Armature", 'ARMATURE'), ("GS Rotation", 'NODES')]
    assert before["groups"] == ["upper", "lower"] and "gs_frame_group" in before["attributes"]

    # 3. A successful re-bind replaces it completely (no temporary names left).
    rig.bind_splats(obj, other)
    after = _binding_state(bpy, obj)
    assert after["groups"] == ["a", "b", "c"]
    assert after["modifiers"] == before["modifiers"]
    assert after["objects"] == before["objects"] and after["meshes"] == before["meshes"]
    assert after["props"] == {"gs_frames_object": "limb GS frames", "gs_armature": "other"}


def test_mesh_transfer_refuses_a_far_armature(blender, rig, rng):
    bpy = blender
    obj, _ = _splat_object("limb", limb_points(rng, 2000), rng, degree=0)
    arm = make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                      ("lower", (0, 0, 1), (0, 0, 2))]])
    bpy.ops.mesh.primitive_cube_add(size=0.5, location=(0, 0, 1))
    mesh = bpy.context.active_object
    mesh.vertex_groups.new(name="upper").add(list(range(8)), 1.0, 'REPLACE')
    arm.location = (50, 0, 0)  # the skinned mesh is on the splats, the armature is not
    state = _binding_state(bpy, obj)
    with pytest.raises(GSError, match="farther from every bone"):
        rig.bind_splats(obj, arm, method="mesh", source_mesh=mesh)
    assert _binding_state(bpy, obj) == state
    arm.location = (0, 0, 0)
    rig.bind_splats(obj, arm, method="mesh", source_mesh=mesh)  # the same call, placed: binds
    groups = extension_module("scene.rigging").binding_weights_object(obj).vertex_groups
    assert [vg.name for vg in groups] == ["upper"]


def test_failed_humanoid_rig_restores_rigify(blender, rig, rng, monkeypatch):
    import addon_utils
    from test_skinning import human_figure

    from blender_gs_addon.extension import extension_module

    bpy = blender
    humanoid = extension_module("scene.humanoid")
    addon_utils.disable("rigify", default_set=True)
    assert addon_utils.check("rigify") == (False, False)
    bpy.context.preferences.is_dirty = False  # as after start-up: nothing to auto-save
    pts, _ = human_figure(rng, pose="T", count=12000)
    obj, _ = _splat_object("person", pts, rng, degree=0)
    state = _binding_state(bpy, obj)
    armatures = len(bpy.data.armatures)

    def fail(*args, **kwargs):
        raise GSError("injected failure")

    with monkeypatch.context() as m:
        m.setattr(rig, "bind_splats", fail)
        with pytest.raises(GSError, match="injected"):
            humanoid.rig_humanoid(obj)
    assert _binding_state(bpy, obj) == state and len(bpy.data.armatures) == armatures
    assert addon_utils.check("rigify") == (False, False)
    assert "rigify" not in bpy.context.preferences.addons
    assert not bpy.context.preferences.is_dirty
    # success loads Rigify for the session only, and does not mark the preferences for saving
    humanoid.rig_humanoid(obj)
    import sys

    assert addon_utils.check("rigify")[1]
    assert sys.modules["rigify"].__addon_persistent__ is False
    assert not bpy.context.preferences.is_dirty


# ---------------------------------------------------------------------------- operators
def _op_context(bpy, obj, *others):
    bpy.context.view_layer.objects.active = obj
    return bpy.context.temp_override(active_object=obj, object=obj,
                                     selected_objects=[obj, *others])


def test_rig_humanoid_operator_matches_the_api(blender, rig, rng):
    from test_skinning import human_figure

    from blender_gs_addon.extension import extension_module

    bpy = blender
    humanoid = extension_module("scene.humanoid")
    pts, _ = human_figure(rng, pose="A", count=12000)
    api_obj, _ = _splat_object("api", pts, rng, degree=0)
    op_obj, _ = _splat_object("op", pts, rng, degree=0)
    api_arm = humanoid.rig_humanoid(api_obj)
    with _op_context(bpy, op_obj):
        assert bpy.ops.gs.rig_humanoid() == {'FINISHED'}
    op_arm = bpy.data.objects[op_obj["gs_armature"]]
    assert op_arm != api_arm and op_arm.type == 'ARMATURE'
    names = [b.name for b in api_arm.data.bones if b.use_deform]
    assert len(names) > 20 and names == [b.name for b in op_arm.data.bones if b.use_deform]
    for name in names:
        a, b = api_arm.data.bones[name], op_arm.data.bones[name]
        np.testing.assert_allclose(a.head_local, b.head_local, atol=1e-6)
        np.testing.assert_allclose(a.tail_local, b.tail_local, atol=1e-6)
    np.testing.assert_array_equal(_weights(op_obj, names), _weights(api_obj, names))
    # the operator refuses a non-figure with the error the API raises, and changes nothing
    blob, _ = _splat_object("blob", rng.normal(size=(2000, 3)) * [1, 1, 0.05], rng)
    count = len(bpy.data.objects)
    with pytest.raises(GSError):
        humanoid.rig_humanoid(blob)
    with _op_context(bpy, blob), pytest.raises(RuntimeError, match="upright|figure"):
        bpy.ops.gs.rig_humanoid()
    assert len(bpy.data.objects) == count and "GS Armature" not in blob.modifiers


def test_bind_operator_mesh_method_matches_the_api(blender, rig, rng):
    bpy = blender
    pos = limb_points(rng, 3000)
    api_obj, _ = _splat_object("api", pos, rng, degree=0)
    op_obj, _ = _splat_object("op", pos, rng, degree=0)
    arm = make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                      ("lower", (0, 0, 1), (0, 0, 2))]])
    mesh = _skinned_plane(bpy)
    rig.bind_splats(api_obj, arm, method="mesh", source_mesh=mesh)
    with _op_context(bpy, op_obj, arm):
        assert bpy.ops.gs.bind_armature(method="mesh", source_mesh=mesh.name) == {'FINISHED'}
    w = _weights(op_obj, ["upper", "lower"])
    np.testing.assert_array_equal(w, _weights(api_obj, ["upper", "lower"]))
    assert np.abs(w[:, 1] - np.clip(pos[:, 2] / 2, 0, 1)).max() < 0.02  # really transferred
    assert op_obj["gs_armature"] == "arm"


def test_bake_operator_matches_the_api(blender, rig, rng, tmp_path):
    from blender_gs_addon.formats import read_splats

    bpy = blender
    pos, obj, _, arm = _keyed_limb(bpy, rig, rng, 1500, bone="lower",
                                   keys=((1, 0.0), (3, math.pi / 2)))
    api = extension_module("scene.bake").bake_splats(obj, frames=(2, 3), out_dir=tmp_path / "api")
    with _op_context(bpy, obj):
        assert bpy.ops.gs.bake_splats(directory=str(tmp_path / "op"), frame_start=2,
                                      frame_end=3) == {'FINISHED'}
    op = sorted(str(p) for p in (tmp_path / "op").iterdir())
    assert [p.rsplit("/", 1)[1] for p in op] == ["limb_0002.ply", "limb_0003.ply"]
    for a, b in zip(api, op):
        sa, sb = read_splats(a), read_splats(b)
        for field in ("positions", "rotations", "sh_rest", "log_scales"):
            np.testing.assert_array_equal(getattr(sa, field), getattr(sb, field))
    # frame 2 is half way to the bend, frame 3 bent: the files differ, and from the rest
    two, three = read_splats(op[0]), read_splats(op[1])
    assert np.abs(two.positions - pos).max() > 0.1
    assert np.abs(three.positions - two.positions).max() > 0.1


# ---------------------------------------------------------------------------- display
def test_posed_splats_reach_the_exact_renderer(blender, rig, rng):
    """Bound, posed and displayed: the render engine's splats are the exact-LBS ones."""
    from blender_gs_addon.extension import extension_module
    from blender_gs_addon.quaternions import matrix_to_quat, quat_multiply

    bpy = blender
    display = extension_module("scene.display")
    engine = extension_module("scene.render_engine")
    pos = limb_points(rng, 5000)
    obj, splats = _splat_object("limb", pos, rng, degree=1, layout="MESH")
    arm = make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                      ("lower", (0, 0, 1), (0, 0, 2))]])
    obj.modifiers.remove(display.display_modifier(obj))  # added below, after posing
    obj.location, obj.rotation_euler = (1.0, 2.0, 0.5), (0.0, 0.4, 0.3)
    arm.location, arm.rotation_euler = (1.0, 2.0, 0.5), (0.0, 0.4, 0.3)
    rig.bind_splats(obj, arm)
    names = ["upper", "lower"]
    w = _weights(obj, names)
    pb = arm.pose.bones["lower"]
    pb.rotation_mode = 'XYZ'
    pb.rotation_euler = (math.pi / 2, 0, 0)
    display.add_display(obj)
    assert [m.name for m in obj.modifiers] == ["GS Armature", "GS Rotation", "Splat Display"]
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    got = engine.collect_splats(depsgraph)
    assert got is not None and got.count == len(pos)

    mats = rig.bone_matrices(obj, arm, names)
    bones = np.tile(np.arange(2), (len(pos), 1))
    ref_pos, ref_rot = blend_skinning(pos, splats.rotations, bones, w, mats)
    world = np.array(obj.matrix_world, np.float64)  # rotation + translation here
    ref_pos = ref_pos @ world[:3, :3].T + world[:3, 3]
    ref_rot = quat_multiply(matrix_to_quat(world[:3, :3])[None], ref_rot)
    assert np.linalg.norm(got.positions - ref_pos, axis=1).max() <= 1e-4 * 2.0
    ang = _angles(got.rotations.astype(np.float64), ref_rot)
    assert np.median(ang) <= 1.0 and np.percentile(ang, 99) <= 5.0
    # the renderer sees the pose, not the rest splats
    rest_world = pos @ world[:3, :3].T + world[:3, 3]
    assert np.abs(got.positions - rest_world).max() > 0.5
    assert np.percentile(_angles(got.rotations.astype(np.float64), quat_multiply(
        matrix_to_quat(world[:3, :3])[None], splats.rotations.astype(np.float64))), 90) > 45
