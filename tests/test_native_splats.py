"""Blender 5.3's native Gaussian splats as a splat-object layout.

The bpy-free half (:mod:`blender_gs_addon.native_layout`) runs everywhere: arrays out and back
bit for bit through the exact copies, derived values within their documented bounds, edits
winning over stale copies. The rest needs bpy 5.3+ (skipped with the reason on older bpy): our
imports make native objects; Blender's own .ply/.spz importers' objects export back to the
file's values and our files import into Blender's importers as our objects hold them; bad
native data is refused by name or skipped with a warning, never a crash.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_blender_io import assert_bit_exact

from blender_gs_addon import SplatSet
from blender_gs_addon import native_layout as native
from blender_gs_addon.conventions.frames import file_to_blender_matrix
from blender_gs_addon.errors import GSError
from blender_gs_addon.extension import extension_module
from blender_gs_addon.formats import read_splats, write_splats
from blender_gs_addon.quaternions import quat_to_matrix


def make_splats(count: int, sh_degree: int, *, seed: int = 0, extra=()) -> SplatSet:
    rng = np.random.default_rng(seed)
    rest = {0: 0, 1: 3, 2: 8, 3: 15}[sh_degree]
    return SplatSet.from_arrays(
        positions=rng.normal(0, 2, (count, 3)), log_scales=rng.normal(-3, 1.0, (count, 3)),
        rotations=rng.standard_normal((count, 4)),  # not normalised, as trainers store them
        opacity_logits=rng.normal(0, 4, count), sh_dc=rng.normal(0, 1, (count, 3)),
        sh_rest=rng.normal(0, 0.2, (count, rest, 3)),
        extra={name: rng.normal(0, 1, count) for name in extra})


def covariances(rotations, log_scales) -> np.ndarray:
    m = quat_to_matrix(rotations.astype(np.float64)) * np.exp(
        log_scales.astype(np.float64))[:, None, :]
    return m @ np.swapaxes(m, -1, -2)


def logit_bound(logits, ulps: float = 2.0) -> np.ndarray:
    """The documented bound of a logit derived from a float32 opacity ``ulps`` float32 steps
    off the true sigmoid (ours: ½; Blender's .ply importer: up to 1.9, measured), plus the
    float32 rounding of the logit."""
    logits = np.asarray(logits, np.float64)
    p = 1 / (1 + np.exp(-logits))
    step = np.spacing(p.astype(np.float32)).astype(np.float64)
    return ulps * step / (p * (1 - p)) + 2.0 ** -24 * np.abs(logits) + 1e-12


def _stored(splats: SplatSet) -> dict[str, tuple[str, np.ndarray]]:
    return {spec.name: (spec.data_type, values.copy()) for spec, values in
            native.native_attribute_arrays(native.native_fields(splats))}


def _rebuild(stored, count, *, report=None):
    def fetch(spec, out):
        out[:] = stored[spec.name][1]

    types = {name: data_type for name, (data_type, _values) in stored.items()}
    kwargs = {} if report is None else {"report": report}
    return native.splats_from_native(types, count, fetch, source="'test'", **kwargs)


# ------------------------------------------------------------------ the bpy-free half
def test_native_arrays_hold_activated_values_and_come_back_bit_exact():
    splats = make_splats(2000, 3, extra=("t", "a_b"))
    stored = _stored(splats)
    assert list(stored)[:7] == ["position", "scale", "gs_scale", "rotation", "gs_rotation",
                                "radiance:base", "gs_opacity"]
    assert [stored[f"radiance:sh_{k}"][0] for k in range(15)] == ["FLOAT_VECTOR"] * 15
    assert stored["radiance:base"][0] == "FLOAT4" and stored["rotation"][0] == "QUATERNION"
    scale = stored["scale"][1].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(scale, np.exp(splats.log_scales.astype(np.float64)), rtol=1e-7)
    base = stored["radiance:base"][1].reshape(-1, 4)
    assert np.array_equal(base[:, :3], splats.sh_dc)
    np.testing.assert_allclose(base[:, 3], 1 / (1 + np.exp(-splats.opacity_logits.astype(
        np.float64))), rtol=1e-7, atol=1e-9)
    unit = stored["rotation"][1].reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-7)
    assert np.array_equal(stored["radiance:sh_7"][1].reshape(-1, 3), splats.sh_rest[:, 7])
    assert_bit_exact(_rebuild(stored, 2000), splats)
    # Released: the same arrays, each handed over once.
    fields = native.native_fields(splats.copy())
    released = {spec.name: values.copy()
                for spec, values in native.native_attribute_arrays(fields, release=True)}
    assert fields == {"extra": {}}
    assert all(np.array_equal(released[name], values) for name, (_t, values) in stored.items())


def test_unit_quaternions_need_no_rotation_copy():
    splats = make_splats(300, 0)
    signs = np.random.default_rng(1).choice([-0.5, 0.5], (300, 4))
    splats.rotations = signs.astype(np.float32)  # unit length exactly, as normalised stays
    splats.rotations[:100] = [0.0, 0.0, 1.0, 0.0]
    stored = _stored(splats)
    assert "gs_rotation" not in stored
    assert_bit_exact(_rebuild(stored, 300), splats)


def test_without_exact_copies_values_are_derived_within_the_bounds():
    splats = make_splats(5000, 1)
    splats.opacity_logits[:4] = [30.0, -120.0, 16.0, -16.0]  # p rounds to 1 / to 0
    splats.log_scales[0] = [-200.0, 0.0, 3.0]  # exp underflows to 0
    stored = {name: value for name, value in _stored(splats).items()
              if not name.startswith("gs_")}
    back = _rebuild(stored, 5000)
    for name in ("positions", "sh_dc", "sh_rest"):
        assert np.array_equal(getattr(back, name), getattr(splats, name)), name
    np.testing.assert_allclose(back.log_scales[1:], splats.log_scales[1:], rtol=0, atol=2.5e-7)
    assert back.log_scales[0, 0] == np.float32(np.log(np.finfo(np.float32).tiny))
    err = np.abs(back.opacity_logits[4:] - splats.opacity_logits[4:])
    assert (err <= logit_bound(splats.opacity_logits[4:], 0.5)).all(), err.max()
    assert back.opacity_logits[0] == pytest.approx(16.635532, abs=1e-5)  # p = 1 − 2⁻²⁴
    assert back.opacity_logits[1] == pytest.approx(-87.336544, abs=1e-4)  # smallest normal
    assert np.isfinite(back.opacity_logits).all()
    np.testing.assert_allclose(back.rotations, native.normalised_rotations(splats.rotations))


def test_an_edited_native_value_wins_over_its_stale_copy():
    splats = make_splats(100, 0)
    stored = _stored(splats)
    stored["scale"][1].reshape(-1, 3)[5] = [0.5, 0.25, 2.0]  # edited in Blender
    stored["radiance:base"][1].reshape(-1, 4)[7, 3] = 0.5
    stored["rotation"][1].reshape(-1, 4)[9] = [0.0, 1.0, 0.0, 0.0]
    back = _rebuild(stored, 100)
    np.testing.assert_allclose(back.log_scales[5], np.log([0.5, 0.25, 2.0]), atol=1e-7)
    assert back.opacity_logits[7] == 0.0
    assert np.array_equal(back.rotations[9], [0.0, 1.0, 0.0, 0.0])
    keep = np.setdiff1d(np.arange(100), [5, 7, 9])
    assert_bit_exact(back.subset(keep), splats.subset(keep))


def test_missing_attributes_sh_degree_four_and_nan():
    assert native.missing_attributes({"position": "FLOAT_VECTOR"}) == [
        "scale", "rotation", "radiance:base"]
    assert native.missing_attributes({"scale": "FLOAT_VECTOR", "rotation": "QUATERNION",
                                      "radiance:base": "FLOAT_COLOR"}) == [
        "radiance:base (FLOAT_COLOR, not FLOAT4)"]
    with pytest.raises(GSError, match="'x' lacks the splat attributes scale, radiance:base"):
        native.splats_from_native({"position": "FLOAT_VECTOR", "rotation": "QUATERNION"}, 0,
                                  lambda spec, out: None, source="'x'")
    splats = make_splats(50, 3)
    stored = _stored(splats)
    for k in range(15, 24):  # Blender reads SH degree 4; our formats stop at 3
        stored[f"radiance:sh_{k}"] = ("FLOAT_VECTOR", np.ones(150, np.float32))
    stored["radiance:base"][1][0] = np.nan
    messages = []
    back = _rebuild(stored, 50, report=lambda levels, msg: messages.append((levels, msg)))
    assert back.sh_degree == 3 and np.array_equal(back.sh_rest, splats.sh_rest)
    assert messages == [({'WARNING'}, "'test': 24 SH coefficients; kept degree 3 and dropped "
                                      "the degree-4 band")]
    assert np.isnan(back.sh_dc[0, 0]) and (~back.finite_mask()).sum() == 1
    del stored["radiance:sh_2"]  # an incomplete band
    assert native.native_sh_degree({k: v[0] for k, v in stored.items()}) == 0


# ------------------------------------------------------------------ Blender 5.3+
@pytest.fixture
def native_api(blender, gs_extension):
    if not gs_extension.scene.native_splats.supported():
        pytest.skip(f"bpy {blender.app.version_string} has no native Gaussian splats (5.3+)")
    return gs_extension.scene.splat_object


def _attribute(obj, name, width):
    attr = obj.data.attributes[name]
    key = "vector" if attr.data_type in ("FLOAT_VECTOR", "FLOAT4") else "value"
    out = np.empty(len(obj.data.points) * width, np.float32)
    attr.data.foreach_get(key, out)
    return out.reshape(-1, width) if width > 1 else out


@pytest.mark.bpy
def test_our_import_makes_a_native_splat_object(native_api, tmp_path):
    bpy = pytest.importorskip("bpy")
    splats = make_splats(400, 3, extra=("t",))
    path = tmp_path / "scan.ply"
    write_splats(path, splats)
    assert bpy.ops.gs.import_splats(filepath=str(path)) == {'FINISHED'}
    obj = bpy.context.active_object
    assert (obj.type, obj.data.type, native_api.splat_layout(obj)) == (
        'POINTCLOUD', 'GAUSSIAN_SPLAT', "NATIVE")
    assert native_api.splat_count(obj) == 400 and native_api.splat_sh_degree(obj) == 3
    assert not obj.modifiers and obj.data["gs_up_axis"] == "-Y"
    assert np.array_equal(_attribute(obj, "position", 3), splats.positions)
    np.testing.assert_allclose(_attribute(obj, "scale", 3), np.exp(splats.log_scales),
                               rtol=2e-7)
    base = _attribute(obj, "radiance:base", 4)
    assert np.array_equal(base[:, :3], splats.sh_dc)
    np.testing.assert_allclose(base[:, 3], splats.opacities(), rtol=2e-7, atol=1e-9)
    assert np.array_equal(_attribute(obj, "radiance:sh_14", 3), splats.sh_rest[:, 14])
    assert np.array_equal(_attribute(obj, "gs_extra_t", 1), splats.extra["t"])
    out = tmp_path / "again.ply"
    native_api.export_splats(obj, out)
    assert out.read_bytes() == path.read_bytes()
    with pytest.raises(GSError, match="native splats, which Blender draws itself"):
        extension_module("scene.display").add_display(obj)
    assert not bpy.ops.gs.add_display.poll()  # the display is for mesh splats


@pytest.mark.bpy
def test_blender_ply_import_exports_back_to_the_file_values(native_api, tmp_path):
    bpy = pytest.importorskip("bpy")
    splats = make_splats(600, 3)
    path = tmp_path / "b.ply"
    write_splats(path, splats)
    bpy.ops.wm.ply_import(filepath=str(path))
    obj = bpy.context.active_object
    assert native_api.splat_layout(obj) == "NATIVE" and "gs_up_axis" not in obj.data
    assert native_api.default_up_axis(obj, "ply") == "+Z"
    out = tmp_path / "ours.ply"
    assert bpy.ops.gs.export_splats(filepath=str(out)) == {'FINISHED'}
    back = read_splats(out)
    for name in ("positions", "sh_dc", "sh_rest"):
        assert np.array_equal(getattr(back, name), getattr(splats, name)), name
    # Blender keeps exp(scale), the unit quaternion and sigmoid(opacity) in float32.
    np.testing.assert_allclose(back.log_scales, splats.log_scales, rtol=0, atol=2.5e-7)
    np.testing.assert_allclose(back.rotations, native.normalised_rotations(splats.rotations),
                               rtol=0, atol=1.2e-7)
    err = np.abs(back.opacity_logits - splats.opacity_logits)
    assert (err <= logit_bound(splats.opacity_logits)).all(), err.max()
    # The reverse: what we write, Blender's importer reads as our object holds it.
    ours = native_api.import_splats(path)
    out2 = tmp_path / "ours2.ply"
    native_api.export_splats(ours, out2)
    bpy.ops.wm.ply_import(filepath=str(out2))
    theirs = bpy.context.active_object
    for name, width in (("position", 3), ("radiance:sh_3", 3)):
        assert np.array_equal(_attribute(theirs, name, width), _attribute(ours, name, width))
    base_theirs, base_ours = _attribute(theirs, "radiance:base", 4), _attribute(
        ours, "radiance:base", 4)
    assert np.array_equal(base_theirs[:, :3], base_ours[:, :3])
    np.testing.assert_allclose(base_theirs[:, 3], base_ours[:, 3], rtol=2.4e-7, atol=1e-30)
    np.testing.assert_allclose(_attribute(theirs, "scale", 3), _attribute(ours, "scale", 3),
                               rtol=2.4e-7)
    np.testing.assert_allclose(_attribute(theirs, "rotation", 4),
                               _attribute(ours, "rotation", 4), atol=1.2e-7)


@pytest.mark.bpy
def test_blender_spz_import_exports_back_to_the_file_values(native_api, tmp_path):
    bpy = pytest.importorskip("bpy")
    path = tmp_path / "a.spz"
    write_splats(path, make_splats(500, 1))
    original = read_splats(path)
    bpy.ops.wm.spz_import(filepath=str(path))
    obj = bpy.context.active_object
    assert native_api.default_up_axis(obj, "spz") == "-Y"  # Blender's .spz import is upright
    out = tmp_path / "ours.spz"
    native_api.export_splats(obj, out)
    back = read_splats(out)
    for name in ("positions", "sh_dc", "sh_rest", "opacity_logits", "log_scales"):
        np.testing.assert_allclose(getattr(back, name), getattr(original, name), rtol=0,
                                   atol=1e-6, err_msg=name)
    # Blender's importer may turn a splat's local axes by 180°: the same Gaussian.
    np.testing.assert_allclose(covariances(back.rotations, back.log_scales),
                               covariances(original.rotations, original.log_scales), atol=1e-6)
    # The reverse: our .spz, read by Blender, lands where our object shows it.
    ours = native_api.import_splats(path)
    bpy.context.view_layer.update()
    bpy.ops.wm.spz_import(filepath=str(out))
    theirs = bpy.context.active_object
    world = np.array(ours.matrix_world)
    expected = _attribute(ours, "position", 3) @ world[:3, :3].T + world[:3, 3]
    np.testing.assert_allclose(_attribute(theirs, "position", 3), expected, atol=1e-6)


@pytest.mark.bpy
@pytest.mark.parametrize("filename", ["s.splat", "s.spz", "s.compressed.ply"])
def test_native_splats_export_to_every_format(native_api, tmp_path, filename):
    bpy = pytest.importorskip("bpy")
    splats = make_splats(256, 0 if filename.endswith(".splat") else 1, seed=3)
    source = tmp_path / "source.ply"
    write_splats(source, splats)
    bpy.ops.wm.ply_import(filepath=str(source))
    obj = bpy.context.active_object
    obj.location = (1.0, 0.5, -2.0)  # baked into the file
    out = tmp_path / filename
    # No format given: the file name decides (x.spz writes .spz, not PLY bytes).
    assert bpy.ops.gs.export_splats(filepath=str(out)) == {'FINISHED'}
    # Blender's .ply importer keeps the file's axes (up axis "+Z" here); .spz is written the
    # way Blender's .spz importer reads it (upright, "-Y"), so Blender puts it back here.
    axis = {"s.spz": "-Y"}.get(filename, "+Z")
    assert native_api.default_up_axis(obj, filename.split(".", 1)[1].replace(".", "_")) == axis
    bpy.context.view_layer.update()
    matrix = np.linalg.inv(file_to_blender_matrix(axis)) @ np.array(obj.matrix_world)
    reference = tmp_path / ("ref" + filename[1:])
    write_splats(reference, splats.transformed(matrix))
    got, want = read_splats(out), read_splats(reference)
    assert got.count == want.count == 256
    order = lambda s: np.lexsort(s.positions.T)  # noqa: E731 (writers may reorder)
    np.testing.assert_allclose(got.positions[order(got)], want.positions[order(want)],
                               atol=1e-5)
    np.testing.assert_allclose(got.sh_dc[order(got)], want.sh_dc[order(want)], atol=1e-6)


@pytest.mark.bpy
def test_bad_native_objects_are_refused_by_name(native_api):
    bpy = pytest.importorskip("bpy")
    cloud = bpy.data.pointclouds.new("pts")
    cloud.resize(3)
    obj = bpy.data.objects.new("pts", cloud)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    assert not native_api.is_splat_object(obj) and not bpy.ops.gs.export_splats.poll()
    with pytest.raises(GSError, match="'pts' is a point cloud of type Points, not 3D Gaussian"):
        native_api.require_splat_object(obj)
    cloud.type = 'GAUSSIAN_SPLAT'
    cloud.attributes.new("scale", "FLOAT_VECTOR", "POINT")
    with pytest.raises(GSError, match="without rotation, radiance:base: Blender draws such "
                                      "splats with scale 1e-3 and opacity 0.5"):
        native_api.object_to_splats(obj)


@pytest.mark.bpy
def test_nan_in_native_attributes_is_skipped_with_a_warning(native_api, tmp_path, gs_extension):
    bpy = pytest.importorskip("bpy")
    splats = make_splats(40, 1)
    obj = native_api.create_splat_object(splats, name="nan")
    base = _attribute(obj, "radiance:base", 4)
    base[3, 3] = np.nan
    obj.data.attributes["radiance:base"].data.foreach_set("vector", base.reshape(-1))
    scale = _attribute(obj, "scale", 3)
    scale[5, 1] = -1.0  # a negative scale: no Gaussian
    obj.data.attributes["scale"].data.foreach_set("vector", scale.reshape(-1))
    messages = []
    path = tmp_path / "nan.spz"
    native_api.export_splats(obj, path, report=lambda levels, msg: messages.append(msg))
    assert read_splats(path).count == 38
    assert any("dropped 2 of 40 splats" in m for m in messages)
    # The exact engine's collection of the evaluated scene skips them too.
    engine = extension_module("scene.render_engine")
    collected = engine.collect_splats(bpy.context.evaluated_depsgraph_get(),
                                      report=lambda levels, msg: messages.append(msg))
    assert collected.count == 38
    assert any("skipped 2 of 40 splats" in m for m in messages)


@pytest.mark.bpy
def test_evaluated_native_splats_reach_the_render_engine(native_api, gs_extension):
    bpy = pytest.importorskip("bpy")
    splats = make_splats(64, 2)
    obj = native_api.create_splat_object(splats, name="world")
    obj.location = (0.5, -1.0, 2.0)
    bpy.context.view_layer.update()
    engine = extension_module("scene.render_engine")
    collected = engine.collect_splats(bpy.context.evaluated_depsgraph_get())
    expected = native_api.object_to_splats(obj, apply_transform=False).transformed(
        np.array(obj.matrix_world))
    np.testing.assert_allclose(collected.positions, expected.positions, atol=1e-6)
    np.testing.assert_allclose(collected.sh_rest, expected.sh_rest, atol=1e-6)
    np.testing.assert_allclose(collected.opacity_logits, splats.opacity_logits, atol=1e-6)


@pytest.mark.bpy
@pytest.mark.parametrize("node, suffix", [("GeometryNodeImportPLY", ".ply"),
                                          ("GeometryNodeImportSPZ", ".spz")])
def test_splats_made_by_blenders_import_nodes_export_back(native_api, tmp_path, node, suffix):
    """An object whose Geometry Nodes import a splat file (Blender 5.3's Import PLY / SPZ
    nodes) is a splat object: its splats are the evaluated ones, exported to the file's
    values like Blender's importers' objects."""
    bpy = pytest.importorskip("bpy")
    path = tmp_path / f"n{suffix}"
    write_splats(path, make_splats(300, 1, seed=5))
    original = read_splats(path)
    tree = bpy.data.node_groups.new("import", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out='OUTPUT', socket_type='NodeSocketGeometry')
    reader = tree.nodes.new(node)
    reader.inputs["Path"].default_value = str(path)
    tree.links.new(reader.outputs[0], tree.nodes.new("NodeGroupOutput").inputs[0])
    obj = bpy.data.objects.new("nodes", bpy.data.meshes.new("nodes"))
    bpy.context.scene.collection.objects.link(obj)
    obj.modifiers.new("Import", 'NODES').node_group = tree
    assert native_api.splat_layout(obj) == "NATIVE" and native_api.splat_count(obj) == 300
    out = tmp_path / f"back{suffix}"
    native_api.export_splats(obj, out)
    back = read_splats(out)
    np.testing.assert_allclose(back.positions, original.positions, atol=1e-6)
    np.testing.assert_allclose(back.sh_rest, original.sh_rest, atol=1e-6)
    np.testing.assert_allclose(covariances(back.rotations, back.log_scales),
                               covariances(original.rotations, original.log_scales), atol=1e-6)
    obj.modifiers.clear()  # no nodes: an empty mesh, named as not a splat object
    with pytest.raises(GSError, match="'nodes' has no splat attributes"):
        native_api.require_splat_object(obj)


@pytest.mark.bpy
def test_capture_renders_native_splats_for_reconstruction(native_api, tmp_path):
    """Reconstruction's capture takes native splat objects like any geometry: Blender draws
    them (Workbench here) into the data set, placed by the splats' bounds."""
    bpy = pytest.importorskip("bpy")
    from PIL import Image

    from blender_gs_addon.datasets.nerf_synthetic import read_transforms

    rng = np.random.default_rng(8)
    n = 3000
    direction = rng.normal(size=(n, 3))
    splats = SplatSet.from_arrays(
        positions=0.5 * direction / np.linalg.norm(direction, axis=1, keepdims=True),
        log_scales=np.full((n, 3), -3.0), rotations=np.tile([1.0, 0, 0, 0], (n, 1)),
        opacity_logits=np.full(n, 4.0), sh_dc=rng.normal(0, 0.5, (n, 3)))
    obj = native_api.create_splat_object(splats, name="ball", up_axis="+Z")
    obj.location = (3.0, 0.0, 1.0)
    capture = extension_module("scene.capture")
    folder = capture.capture_views(bpy.context, objects=[obj], rig="orbit", views=2,
                                   elevations=(10.0,), resolution=32, engine="WORKBENCH",
                                   out_dir=tmp_path / "cap", report=lambda *a: None)
    dataset = read_transforms(folder)
    for view in dataset.views:
        alpha = np.asarray(Image.open(view.file_path))[..., 3] / 255.0
        assert 0.1 < (alpha > 0.5).mean() < 0.9  # the ball fills the middle of the frame
    # The data set is normalised around the splats: the ball's centre goes to the origin.
    np.testing.assert_allclose(dataset.normalisation[:3, :3] @ [3.0, 0.0, 1.0]
                               + dataset.normalisation[:3, 3], 0.0, atol=0.05)
