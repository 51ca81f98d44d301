"""Rigging native splats (Blender 5.3+ point clouds) and turning SH bands in Geometry Nodes.

The SH rotation's sampled form is checked in numpy against :func:`rotate_sh_rest` (bpy-free),
and its Geometry Nodes groups against it on a mesh (any bpy). The rest needs bpy 5.3+: a bound
native object stays a Gaussian splat point cloud whose evaluated positions follow exact linear
blend skinning, rotations the blended bone rotation and SH bands the same rotation; bake, the
exact engine and Cycles read the posed splats; failures and unbinding leave the object exactly
as it was; NaN never crashes bind, bake or render.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_rigging import limb_points, make_armature

from blender_gs_addon.errors import GSError
from blender_gs_addon.extension import extension_module
from blender_gs_addon.quaternions import quat_to_matrix
from blender_gs_addon.rigging.skinning import blend_skinning
from blender_gs_addon.sh import (
    BAND_SAMPLE_DIRECTIONS,
    band_sample_inverse,
    rotate_sh_rest,
    sh_basis,
)
from blender_gs_addon.splats import SplatSet

_BANDS = {1: slice(0, 3), 2: slice(3, 8), 3: slice(8, 15)}


def _random_rotations(rng, count):
    q = rng.normal(size=(count, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


# ---------------------------------------------------------------------------- bpy-free
def test_sampled_band_rotation_is_rotate_sh_rest():
    """c'_j = Σ_i A⁻¹[j, i] Σ_k Y_k(Rᵀ d_i) c_k, the nodes' form, is the reference rotation."""
    rng = np.random.default_rng(0)
    rest = rng.normal(size=(300, 15, 3))
    rot = quat_to_matrix(_random_rotations(rng, 300))  # [N, 3, 3]
    expected = rotate_sh_rest(rest, rot)
    for band, cols in _BANDS.items():
        dirs = BAND_SAMPLE_DIRECTIONS[band]  # [2l+1, 3]
        inverse = band_sample_inverse(band)
        assert np.linalg.cond(np.linalg.inv(inverse)) < 2.0  # float32 nodes lose < 2 ulps·2
        turned = np.einsum("id,ndk->nik", dirs, rot)  # rows Rᵀ d_i
        basis = sh_basis(turned, 3)[..., cols.start + 1:cols.stop + 1]  # [N, 2l+1, 2l+1]
        seen = np.einsum("nik,nkc->nic", basis, rest[:, cols])  # f_i
        got = np.einsum("ji,nic->njc", inverse, seen)
        np.testing.assert_allclose(got, expected[:, cols], atol=1e-12)


# ---------------------------------------------------------------------------- Geometry Nodes
def _sh_rotation_modifier(bpy, obj, names_in, names_out, rotation_attribute):
    sh_nodes = extension_module("scene.sh_rotation_nodes")
    nodes = extension_module("scene.display.nodes")
    tree = bpy.data.node_groups.new("rotate sh test", 'GeometryNodeTree')
    tree.interface.new_socket("Geometry", in_out='INPUT', socket_type='NodeSocketGeometry')
    tree.interface.new_socket("Geometry", in_out='OUTPUT', socket_type='NodeSocketGeometry')
    g = nodes.GeometryNodeBuilder(tree)
    geometry = g.node("NodeGroupInput").outputs[0]
    out = g.node("NodeGroupOutput")
    rotation = g.attribute(rotation_attribute, 'QUATERNION')
    turned = sh_nodes.rotated_sh(g, rotation, [g.attribute(n, 'FLOAT_VECTOR') for n in names_in])
    for name, value in zip(names_out, turned):  # new names: nothing reads a stored value
        geometry = g.store(geometry, name, value, 'FLOAT_VECTOR')
    tree.links.new(geometry, out.inputs[0])
    mod = obj.modifiers.new("rotate sh", 'NODES')
    mod.node_group = tree


@pytest.mark.bpy
def test_sh_rotation_nodes_match_numpy(blender, gs_extension):
    """The node groups, in float32, against the float64 reference: max error per band."""
    bpy = blender
    rng = np.random.default_rng(1)
    count = 400
    rest = rng.normal(0, 0.5, (count, 15, 3)).astype(np.float32)
    quats = _random_rotations(rng, count).astype(np.float32)
    mesh = bpy.data.meshes.new("sh")
    mesh.vertices.add(count)
    names_in = [f"c{k}" for k in range(15)]
    names_out = [f"turned{k}" for k in range(15)]
    for k, name in enumerate(names_in):
        mesh.attributes.new(name, 'FLOAT_VECTOR', 'POINT').data.foreach_set(
            "vector", np.ascontiguousarray(rest[:, k]).ravel())
    mesh.attributes.new("q", 'QUATERNION', 'POINT').data.foreach_set("value", quats.ravel())
    obj = bpy.data.objects.new("sh", mesh)
    bpy.context.collection.objects.link(obj)
    _sh_rotation_modifier(bpy, obj, names_in, names_out, "q")
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    got = np.empty((15, count, 3), np.float32)
    for k, name in enumerate(names_out):
        evaluated.attributes[name].data.foreach_get("vector", got[k].reshape(-1))
    got = got.transpose(1, 0, 2)
    expected = rotate_sh_rest(rest.astype(np.float64), quat_to_matrix(quats.astype(np.float64)))
    scale = np.abs(rest).max()
    for band, cols in _BANDS.items():
        error = np.abs(got[:, cols] - expected[:, cols]).max()
        assert error <= 4e-6 * scale, (band, error)
    assert np.abs(got - rest).max() > 0.5  # really turned


# ---------------------------------------------------------------------------- native binding
@pytest.fixture
def native(blender, gs_extension):
    if not gs_extension.scene.native_splats.supported():
        pytest.skip(f"bpy {blender.app.version_string} has no native Gaussian splats (5.3+)")
    return gs_extension.scene


def _native_limb(scene, rng, count, *, degree=3, name="limb", log_scale=-4.0):
    splats = SplatSet.empty(count, degree)
    splats.positions = limb_points(rng, count).astype(np.float32)
    splats.rotations = rng.normal(size=(count, 4)).astype(np.float32)  # not normalised
    splats.log_scales = rng.normal(log_scale, 0.3, (count, 3)).astype(np.float32)
    splats.opacity_logits = rng.normal(0, 2, count).astype(np.float32)
    splats.sh_dc = rng.normal(0, 1, (count, 3)).astype(np.float32)
    splats.sh_rest = rng.normal(0, 0.3, splats.sh_rest.shape).astype(np.float32)
    obj = scene.splat_object.create_splat_object(splats, name=name, up_axis="+Z")
    assert scene.splat_object.splat_layout(obj) == "NATIVE"
    return obj, splats


def _two_bones(bpy):
    return make_armature(bpy, "arm", [[("upper", (0, 0, 0), (0, 0, 1)),
                                       ("lower", (0, 0, 1), (0, 0, 2))]])


def _bend(arm, bone="lower", angle=math.pi / 2):
    pb = arm.pose.bones[bone]
    pb.rotation_mode = 'XYZ'
    pb.rotation_euler = (angle, 0, 0)


def _cage_weights(scene, obj, names):
    cage = scene.rigging.binding_weights_object(obj)
    assert cage is not None and cage.type == 'MESH' and cage is not obj
    w = np.zeros((len(cage.data.vertices), len(names)))
    column = {cage.vertex_groups[n].index: i for i, n in enumerate(names)}
    for v in cage.data.vertices:
        for g in v.groups:
            w[v.index, column[g.group]] = g.weight
    return w


def _attribute_values(data) -> dict:
    """name → (type, domain, raw bytes) of every attribute of ``data``."""
    out = {}
    for attr in data.attributes:
        if attr.name.startswith("."):
            continue
        width = {"FLOAT": 1, "INT": 1, "FLOAT_VECTOR": 3, "FLOAT4": 4, "QUATERNION": 4}[
            attr.data_type]
        key = "vector" if attr.data_type in ("FLOAT_VECTOR", "FLOAT4") else "value"
        values = np.empty(len(attr.data) * width,
                          np.int32 if attr.data_type == "INT" else np.float32)
        attr.data.foreach_get(key, values)
        out[attr.name] = (attr.data_type, attr.domain, values.tobytes())
    return out


def _object_state(bpy, obj) -> dict:
    """Everything binding may touch, for exact before/after comparisons."""
    return {
        "type": (obj.type, obj.data.name, obj.data.type, obj.mode),
        "attributes": _attribute_values(obj.data),
        "data_props": {k: obj.data[k] for k in obj.data.keys()},
        "props": {k: obj[k] for k in obj.keys()},
        "modifiers": [(m.name, m.type) for m in obj.modifiers],
        "matrix": tuple(map(tuple, obj.matrix_world)),
        "objects": sorted(o.name for o in bpy.data.objects),
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "pointclouds": sorted(p.name for p in bpy.data.pointclouds),
    }


@pytest.mark.bpy
def test_native_binding_poses_positions_rotations_and_sh(blender, native, rng):
    bpy = blender
    obj, splats = _native_limb(native, rng, 3000)
    obj.location, obj.rotation_euler = (0.5, -0.2, 0.1), (0.3, 0.0, 0.7)
    arm = _two_bones(bpy)
    arm.location, arm.rotation_euler = (0.5, -0.2, 0.1), (0.3, 0.0, 0.7)
    before = _object_state(bpy, obj)["attributes"]
    native.rigging.bind_splats(obj, arm)
    # The point cloud is still the same native object with the same data, posed by one
    # Geometry Nodes modifier; the weights live on the hidden cage.
    assert (obj.type, obj.data.type) == ('POINTCLOUD', 'GAUSSIAN_SPLAT')
    assert _object_state(bpy, obj)["attributes"] == before
    assert [m.name for m in obj.modifiers] == ["GS Pose"]
    assert obj["gs_cage_object"] == "limb GS cage" and obj["gs_armature"] == "arm"
    _bend(arm)
    names = ["upper", "lower"]
    w = _cage_weights(native, obj, names)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    got_pos, got_rot = native.rigging.evaluated_splats(obj)
    bones = np.tile(np.arange(2), (len(w), 1))
    ref_pos, ref_rot = blend_skinning(splats.positions, splats.rotations, bones, w,
                                      native.rigging.bone_matrices(obj, arm, names))
    assert np.abs(got_pos - splats.positions).max() > 0.5  # it really moved
    assert np.linalg.norm(got_pos - ref_pos, axis=1).max() <= 2e-4
    ra, rb = quat_to_matrix(got_rot.astype(np.float64)), quat_to_matrix(ref_rot)
    cos = (np.trace(np.swapaxes(ra, -1, -2) @ rb, axis1=-2, axis2=-1) - 1) / 2
    angles = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert np.median(angles) <= 1.0 and np.percentile(angles, 99) <= 5.0

    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    assert evaluated.data.type == 'GAUSSIAN_SPLAT'
    posed = native.splat_object.evaluated_splats(evaluated)
    np.testing.assert_array_equal(posed.positions, got_pos)
    # SH bands turned by each splat's rotation delta (posed ⊗ rest⁻¹), as bake does in numpy.
    delta = ra @ np.swapaxes(quat_to_matrix(splats.rotations.astype(np.float64)), -1, -2)
    expected = rotate_sh_rest(splats.sh_rest.astype(np.float64), delta)
    assert np.abs(posed.sh_rest - expected).max() <= 1e-5
    assert np.abs(posed.sh_rest - splats.sh_rest).max() > 0.3
    # Scales, opacities and colours pass through bit for bit.
    for field in ("log_scales", "opacity_logits", "sh_dc"):
        np.testing.assert_array_equal(getattr(posed, field), getattr(splats, field))


@pytest.mark.bpy
def test_failed_native_bind_and_unbind_leave_the_object_exactly_as_it_was(blender, native,
                                                                          rng, monkeypatch):
    bpy = blender
    rig = native.rigging
    obj, _ = _native_limb(native, rng, 1500, degree=1)
    arm = _two_bones(bpy)
    original = _object_state(bpy, obj)
    groups_before = sorted(g.name for g in bpy.data.node_groups)

    arm.data.bones["lower"].use_deform = arm.data.bones["upper"].use_deform = False
    with pytest.raises(GSError, match="no deform bones"):
        rig.bind_splats(obj, arm)
    arm.data.bones["lower"].use_deform = arm.data.bones["upper"].use_deform = True
    arm.location = (50, 0, 0)
    with pytest.raises(GSError, match="farther from every bone"):
        rig.bind_splats(obj, arm)
    arm.location = (0, 0, 0)
    assert _object_state(bpy, obj) == original

    def fail(*args, **kwargs):
        raise GSError("injected failure")

    for target in ("_set_input", "_make_helper", "_make_cage", "_write_groups"):
        with monkeypatch.context() as m:
            m.setattr(rig, target, fail)
            with pytest.raises(GSError, match="injected"):
                rig.bind_splats(obj, arm)
        assert _object_state(bpy, obj) == original, target
        assert sorted(g.name for g in bpy.data.node_groups) == groups_before, target

    # A working binding survives a failed re-bind, and still poses.
    rig.bind_splats(obj, arm)
    _bend(arm)
    bound = _object_state(bpy, obj)
    posed = rig.evaluated_splats(obj)
    with monkeypatch.context() as m:
        m.setattr(rig, "_set_input", fail)
        with pytest.raises(GSError, match="injected"):
            rig.bind_splats(obj, arm)
    assert _object_state(bpy, obj) == bound
    for got, want in zip(rig.evaluated_splats(obj), posed):
        np.testing.assert_array_equal(got, want)
    # A re-bind replaces the helpers; unbinding gives back exactly the original object.
    rig.bind_splats(obj, arm)
    assert _object_state(bpy, obj)["objects"] == bound["objects"]
    rig.unbind_splats(obj)
    assert _object_state(bpy, obj) == original


@pytest.mark.bpy
def test_posed_native_splats_reach_bake_and_the_exact_engine(blender, native, rng, tmp_path):
    from blender_gs_addon.formats import read_splats

    bpy = blender
    obj, splats = _native_limb(native, rng, 1500, degree=2)
    arm = _two_bones(bpy)
    native.rigging.bind_splats(obj, arm)
    pb = arm.pose.bones["upper"]
    pb.rotation_mode = 'XYZ'
    for frame, angle in ((1, 0.0), (2, math.pi / 2)):
        pb.rotation_euler = (angle, 0, 0)
        pb.keyframe_insert("rotation_euler", frame=frame)
    paths = native.bake.bake_splats(obj, frames=(1, 2), out_dir=tmp_path)
    first, second = read_splats(paths[0]), read_splats(paths[1])
    np.testing.assert_allclose(first.positions, splats.positions, atol=1e-5)
    np.testing.assert_allclose(first.sh_rest, splats.sh_rest, atol=1e-5)
    turn = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]])  # the root bone: everything turns
    np.testing.assert_allclose(second.positions, splats.positions @ turn.T, atol=1e-5)
    np.testing.assert_allclose(quat_to_matrix(second.rotations),
                               turn @ quat_to_matrix(splats.rotations), atol=1e-5)
    np.testing.assert_allclose(second.sh_rest, rotate_sh_rest(splats.sh_rest, turn), atol=1e-4)
    np.testing.assert_array_equal(second.log_scales, splats.log_scales)
    np.testing.assert_allclose(second.opacity_logits, splats.opacity_logits, atol=1e-5)
    # The exact engine reads the posed splats of frame 2: Geometry Nodes' SH in float32.
    bpy.context.scene.frame_set(2)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    collected = native.render_engine.collect_splats(depsgraph)
    np.testing.assert_allclose(collected.positions, second.positions, atol=1e-5)
    np.testing.assert_allclose(collected.sh_rest, second.sh_rest, atol=1e-5)


def _render(bpy, engine, scene):
    scene.render.resolution_x = scene.render.resolution_y = 32
    engine.configure_scene(scene, "cycles", samples=4)
    scene.cycles.seed = 7
    return engine.render_scene_to_array(scene)


def _copy_point_cloud(bpy, source, name):
    """A new GAUSSIAN_SPLAT point cloud object holding ``source``'s attribute values bit for
    bit (Cycles' stochastic transparency decorrelates at the last bit of a rotation)."""
    cloud = bpy.data.pointclouds.new(name)
    cloud.resize(len(source.points))
    cloud.type = 'GAUSSIAN_SPLAT'
    for attr in source.attributes:
        if attr.name.startswith("."):
            continue
        width = {"FLOAT": 1, "FLOAT_VECTOR": 3, "FLOAT4": 4, "QUATERNION": 4}[attr.data_type]
        key = "vector" if attr.data_type in ("FLOAT_VECTOR", "FLOAT4") else "value"
        values = np.empty(len(attr.data) * width, np.float32)
        attr.data.foreach_get(key, values)
        target = cloud.attributes.get(attr.name) or cloud.attributes.new(
            attr.name, attr.data_type, 'POINT')
        target.data.foreach_set(key, values)
    obj = bpy.data.objects.new(name, cloud)
    bpy.context.collection.objects.link(obj)
    return obj


@pytest.mark.bpy
def test_cycles_draws_the_posed_native_splats(blender, native, rng):
    """Blender renders the bound object natively, posed: exactly the image of a plain native
    point cloud holding the posed values, and not the rest pose's image."""
    bpy = blender
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -4.0, 1.0), (math.pi / 2, 0.0, 0.0)
    scene.camera = cam
    obj, _ = _native_limb(native, rng, 600, degree=3, log_scale=-2.5)
    arm = _two_bones(bpy)
    rest_image = _render(bpy, native.render_engine, scene)
    native.rigging.bind_splats(obj, arm)
    _bend(arm, angle=math.pi / 3)
    posed_image = _render(bpy, native.render_engine, scene)
    obj.hide_render = True
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    _copy_point_cloud(bpy, evaluated, "posed copy")
    copy_image = _render(bpy, native.render_engine, scene)
    assert posed_image[..., 3].mean() > 0.05
    np.testing.assert_array_equal(posed_image, copy_image)
    assert np.abs(posed_image - rest_image).mean() > 0.01


@pytest.mark.bpy
def test_nan_in_native_attributes_never_crashes_bind_bake_or_render(blender, native, rng,
                                                                   tmp_path):
    bpy = blender
    obj, _ = _native_limb(native, rng, 1200, degree=1)
    data = obj.data
    for name, width, row, col in (("position", 3, 3, 0), ("rotation", 4, 5, 1),
                                  ("radiance:base", 4, 7, 3), ("radiance:sh_1", 3, 9, 2),
                                  ("scale", 3, 11, 0)):
        attr = data.attributes[name]
        key = "vector" if width == 3 or name == "radiance:base" else "value"
        values = np.empty(len(data.points) * width, np.float32)
        attr.data.foreach_get(key, values)
        values[row * width + col] = np.nan
        attr.data.foreach_set(key, values)
    arm = _two_bones(bpy)
    messages = []
    native.rigging.bind_splats(obj, arm, report=lambda levels, msg: messages.append(msg))
    assert any("1 of 1,200 splats have NaN or infinite positions" in m for m in messages)
    _bend(arm)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    collected = native.render_engine.collect_splats(
        depsgraph, report=lambda levels, msg: messages.append(msg))
    assert collected.count == 1195 and np.isfinite(collected.positions).all()
    paths = native.bake.bake_splats(obj, frames=(1, 1), out_dir=tmp_path,
                                    report=lambda levels, msg: messages.append(msg))
    from blender_gs_addon.formats import read_splats

    assert read_splats(paths[0]).count == 1195
    assert any("dropped 5 of 1,200" in m for m in messages), messages
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -6.0, 1.0), (math.pi / 2, 0.0, 0.0)
    scene.camera = cam
    image = _render(bpy, native.render_engine, scene)
    assert np.isfinite(image).all() and image[..., 3].max() > 0.1
    all_nan = native.splat_object.create_splat_object(
        SplatSet.empty(4, 0), name="nothing", up_axis="+Z")
    positions = np.full(12, np.nan, np.float32)
    all_nan.data.attributes["position"].data.foreach_set("vector", positions)
    state = _object_state(bpy, all_nan)
    with pytest.raises(GSError, match="no splat has a finite position"):
        native.rigging.bind_splats(all_nan, arm)
    assert _object_state(bpy, all_nan) == state


@pytest.mark.bpy
def test_a_linked_splat_object_is_refused_by_name(blender, gs_extension, rng, tmp_path):
    """Any layout: an object linked from another file cannot take modifiers."""
    bpy = blender
    splats = SplatSet.empty(300, 0)
    splats.positions = limb_points(rng, 300).astype(np.float32)
    gs_extension.scene.splat_object.create_splat_object(splats, name="limb", up_axis="+Z")
    library = tmp_path / "library.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(library))
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    with bpy.data.libraries.load(str(library), link=True) as (source, target):
        target.objects = ["limb"]
    linked = target.objects[0]
    bpy.context.collection.objects.link(linked)
    arm = _two_bones(bpy)
    modifiers = [m.name for m in linked.modifiers]
    with pytest.raises(GSError, match="'limb' is linked from .*library.blend.*make it local"):
        gs_extension.scene.rigging.bind_splats(linked, arm)
    assert [m.name for m in linked.modifiers] == modifiers
    assert sorted(o.name for o in bpy.data.objects) == ["arm", "limb"]


@pytest.mark.bpy
def test_rig_humanoid_on_a_native_object(blender, native, rng):
    from test_skinning import human_figure

    pts, truth = human_figure(rng, pose="T", count=12000)
    splats = SplatSet.empty(len(pts), 1)
    splats.positions = pts.astype(np.float32)
    obj = native.splat_object.create_splat_object(splats, name="person", up_axis="+Z")
    arm = native.humanoid.rig_humanoid(obj)
    assert obj.type == 'POINTCLOUD' and obj["gs_armature"] == arm.name
    arm.pose.bones["upper_arm.L"].rotation_mode = 'XYZ'
    arm.pose.bones["upper_arm.L"].rotation_euler = (0, 0, math.pi / 3)
    moved = np.linalg.norm(native.rigging.evaluated_splats(obj)[0] - pts, axis=1)
    left_hand = pts[:, 0] > truth["wrist.L"][0] - 0.02
    assert left_hand.sum() > 100 and moved[left_hand].min() > 0.1
    assert moved[pts[:, 0] < -0.4].max() < 1e-5
