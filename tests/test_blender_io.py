"""Splat objects in Blender: layout, import/export operators and API, frames, failures.

Runs on bpy from the virtual environment (skipped without it). The ``blender`` fixture gives a
fresh empty file with the extension registered.
"""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from blender_gs_addon import SplatSet
from blender_gs_addon import mesh_layout as object_layout
from blender_gs_addon.conventions.frames import file_to_blender_matrix
from blender_gs_addon.errors import GSError
from blender_gs_addon.formats import read_splats, write_splats

pytestmark = pytest.mark.bpy

_FIELDS = ("positions", "log_scales", "rotations", "opacity_logits", "sh_dc", "sh_rest")


def make_splats(count: int, sh_degree: int, *, seed: int = 0, extra=()) -> SplatSet:
    rng = np.random.default_rng(seed)
    rest = {0: 0, 1: 3, 2: 8, 3: 15}[sh_degree]
    quats = rng.standard_normal((count, 4))
    return SplatSet.from_arrays(
        positions=rng.normal(0, 2, (count, 3)),
        log_scales=rng.normal(-3, 0.5, (count, 3)),
        rotations=quats / np.linalg.norm(quats, axis=1, keepdims=True),
        opacity_logits=rng.normal(0, 2, count),
        sh_dc=rng.normal(0, 1, (count, 3)),
        sh_rest=rng.normal(0, 0.2, (count, rest, 3)),
        extra={name: rng.normal(0, 1, count) for name in extra},
    )


def assert_bit_exact(a: SplatSet, b: SplatSet) -> None:
    for name in _FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert np.array_equal(x.view(np.uint32), y.view(np.uint32)), name
    assert list(a.extra) == list(b.extra)
    for name in a.extra:
        assert np.array_equal(a.extra[name].view(np.uint32), b.extra[name].view(np.uint32))


def data_counts(bpy) -> tuple[int, int, int]:
    return len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.pointclouds)


@pytest.fixture
def api(gs_extension):
    return gs_extension.scene.splat_object


# ------------------------------------------------------------------------------ extension
def test_core_is_one_copy(gs_extension):
    import blender_gs_addon.errors
    import blender_gs_addon.splats

    assert gs_extension.blender_gs_addon.errors.GSError is blender_gs_addon.errors.GSError
    assert sys.modules["gaussian_splats.blender_gs_addon.splats"] is blender_gs_addon.splats
    assert gs_extension.scene.splat_object.GSError is GSError


def test_registered_classes_menus_and_file_handler(blender):
    bpy = blender
    io_splats = sys.modules["gaussian_splats.operators.io_splats"]
    for name in ("GS_OT_import_splats", "GS_OT_export_splats", "GS_FH_splats", "GS_PT_splats"):
        assert hasattr(bpy.types, name), name
    handler = bpy.types.GS_FH_splats
    assert handler.bl_import_operator == "gs.import_splats"
    # Blender 5.3's own importers serve .ply/.spz drops there (native splats), ours the rest;
    # glTF stays Blender's everywhere. Version tuples, never strings.
    ours = [".ply", ".compressed.ply", ".splat", ".spz", ".sog"]
    assert io_splats.drop_extensions((5, 2, 3)) == ours
    assert io_splats.drop_extensions((5, 3, 0)) == [".compressed.ply", ".splat", ".sog"]
    assert io_splats.drop_extensions((10, 0, 0)) == [".compressed.ply", ".splat", ".sog"]
    assert handler.bl_file_extensions.split(";") == io_splats.drop_extensions(bpy.app.version)
    glob = bpy.ops.gs.import_splats.get_rna_type().properties["filter_glob"].default
    assert "*meta.json" in glob.split(";") and "*.glb" in glob.split(";")
    assert handler.poll_drop(SimpleNamespace(area=SimpleNamespace(type='VIEW_3D')))
    assert not handler.poll_drop(SimpleNamespace(area=SimpleNamespace(type='IMAGE_EDITOR')))
    assert not handler.poll_drop(SimpleNamespace(area=None))
    # Undo step for import (a new object); export changes nothing in the file.
    assert {'REGISTER', 'UNDO'} <= bpy.types.GS_OT_import_splats.bl_options
    panel = bpy.types.GS_PT_splats
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == (
        'VIEW_3D', 'UI', "Splats")
    import_draws = bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    export_draws = bpy.types.TOPBAR_MT_file_export._dyn_ui_initialize()
    assert io_splats.menu_import in import_draws
    assert io_splats.menu_export in export_draws
    assert io_splats.MENU_LABEL == "Gaussian Splats (.ply/.splat/.spz/.glb/.sog)"


# ------------------------------------------------------------------------------ layout
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_object_layout(blender, api, degree):
    bpy = blender
    splats = make_splats(50, degree, extra=("t", "a"))
    obj = api.create_splat_object(splats, name="cloud", layout="MESH")  # riggable everywhere
    mesh = obj.data
    assert obj.type == 'MESH' and len(mesh.vertices) == 50 and len(mesh.edges) == 0
    attrs = {a.name: (a.data_type, a.domain) for a in mesh.attributes
             if not a.name.startswith(".")}
    expected = {"position": ("FLOAT_VECTOR", 'POINT'), "gs_scale": ("FLOAT_VECTOR", 'POINT'),
                "gs_rotation": ("QUATERNION", 'POINT'), "gs_opacity": ("FLOAT", 'POINT'),
                "gs_sh_dc": ("FLOAT_VECTOR", 'POINT'),
                "gs_extra_t": ("FLOAT", 'POINT'), "gs_extra_a": ("FLOAT", 'POINT')}
    for k in range(1, {0: 0, 1: 3, 3: 15}[degree] + 1):
        expected[f"gs_sh_rest_{k}"] = ("FLOAT_VECTOR", 'POINT')
    assert attrs == expected
    assert mesh["gs_sh_degree"] == degree and mesh["gs_up_axis"] == "-Y"
    assert set(mesh.keys()) == {"gs_sh_degree", "gs_up_axis"}

    def get(name, width):
        out = np.empty(50 * width, np.float32)
        key = "vector" if mesh.attributes[name].data_type == "FLOAT_VECTOR" else "value"
        mesh.attributes[name].data.foreach_get(key, out)
        return out.reshape(50, width) if width > 1 else out

    co = np.empty(150, np.float32)
    mesh.vertices.foreach_get("co", co)
    assert np.array_equal(co.reshape(50, 3), splats.positions)
    assert np.array_equal(get("gs_scale", 3), splats.log_scales)
    assert np.array_equal(get("gs_rotation", 4), splats.rotations)
    assert np.array_equal(get("gs_opacity", 1), splats.opacity_logits)
    assert np.array_equal(get("gs_sh_dc", 3), splats.sh_dc)
    for k in range(splats.sh_rest.shape[1]):
        assert np.array_equal(get(f"gs_sh_rest_{k + 1}", 3), splats.sh_rest[:, k, :])
    assert np.array_equal(get("gs_extra_t", 1), splats.extra["t"])
    # Blender keeps the rotation as float32 Euler angles: -90° about X, to 7.5e-8.
    np.testing.assert_allclose(obj.matrix_basis, file_to_blender_matrix("-Y"), atol=1e-7)
    np.testing.assert_allclose(obj.rotation_euler, (-math.pi / 2, 0, 0), atol=1e-7)
    assert obj.name in bpy.context.scene.collection.objects
    assert api.is_splat_object(obj) and api.splat_sh_degree(obj) == degree
    assert api.splat_count(obj) == 50
    # Back without the transform: the stored values, bit for bit.
    assert_bit_exact(api.object_to_splats(obj, apply_transform=False), splats)


def test_layout_arrays_without_blender():
    """object_layout alone: generator order, release mode frees as it goes, grouping."""
    splats = make_splats(1000, 3, extra=("t",))
    stored = {spec.name: (spec.data_type, values.copy())
              for spec, values in object_layout.splat_attribute_arrays(splats)}
    fields = object_layout.splat_fields(splats.copy())
    released = {spec.name: values.copy()
                for spec, values in object_layout.release_attribute_arrays(fields)}
    assert fields == {"extra": {}}  # every array was handed over
    assert list(released) == list(stored)
    for name, (_type, values) in stored.items():
        assert np.array_equal(released[name], values)
    assert np.array_equal(stored["gs_sh_rest_7"][1].reshape(-1, 3), splats.sh_rest[:, 6, :])

    def fetch(spec, out):
        out[:] = stored[spec.name][1]

    types = {name: dtype for name, (dtype, _values) in stored.items()}
    small_groups = object_layout.SH_GROUP_BYTES
    try:
        object_layout.SH_GROUP_BYTES = 1000 * 12 * 4  # four coefficients per group
        back = object_layout.splats_from_attributes(types, 1000, fetch, source="test")
    finally:
        object_layout.SH_GROUP_BYTES = small_groups
    assert_bit_exact(back, splats)
    with pytest.raises(GSError, match="'thing' has no splat attributes"):
        object_layout.find_layout({"position": "FLOAT_VECTOR"}, source="'thing'")
    broken = dict(types)
    del broken["gs_sh_rest_4"]
    with pytest.raises(GSError, match="gs_sh_rest_1"):
        object_layout.find_layout(broken, source="x")
    with pytest.raises(GSError, match="67 bytes"):
        object_layout.extra_attribute("x" * 60)


# ------------------------------------------------------------------------------ import
def test_operator_and_api_give_identical_results(blender, api, tmp_path):
    bpy = blender
    path = tmp_path / "scene.ply"
    splats = make_splats(300, 3, extra=("t",))
    write_splats(path, splats)

    assert bpy.ops.gs.import_splats(filepath=str(path), up_axis="+Y") == {'FINISHED'}
    by_operator = bpy.context.active_object
    assert by_operator.name == "scene" and by_operator.select_get()
    by_api = api.import_splats(path, up_axis="+Y")
    assert by_api.name == "scene.001"
    assert bpy.context.active_object == by_api and not by_operator.select_get()
    bpy.context.view_layer.update()
    assert np.array_equal(by_operator.matrix_world, by_api.matrix_world)
    for apply in (False, True):
        assert_bit_exact(api.object_to_splats(by_operator, apply_transform=apply, up_axis="+Y"),
                         api.object_to_splats(by_api, apply_transform=apply, up_axis="+Y"))

    bpy.context.view_layer.objects.active = by_operator
    op_file, api_file = tmp_path / "op.ply", tmp_path / "api.ply"
    assert bpy.ops.gs.export_splats(filepath=str(op_file), up_axis="+Y") == {'FINISHED'}
    api.export_splats(by_api, api_file, up_axis="+Y")
    assert op_file.read_bytes() == api_file.read_bytes() == path.read_bytes()


def test_multi_file_import_and_report(blender, api, tmp_path):
    bpy = blender
    for i in range(2):
        write_splats(tmp_path / f"part{i}.ply", make_splats(10 + i, 0, seed=i))
    result = bpy.ops.gs.import_splats(directory=str(tmp_path), files=[
        {"name": "part0.ply"}, {"name": "part1.ply"}])
    assert result == {'FINISHED'}
    objects = sorted(bpy.context.selected_objects, key=lambda o: o.name)
    assert [(o.name, api.splat_count(o)) for o in objects] == [("part0", 10), ("part1", 11)]

    messages = []
    api.import_splats(tmp_path / "part1.ply", name="named",
                      report=lambda levels, msg: messages.append((levels, msg)))
    assert bpy.data.objects.get("named") is not None
    assert any(levels == {'INFO'} and msg.startswith("Imported 11 splats (SH 0)")
               for levels, msg in messages)


@pytest.mark.parametrize("degree", [0, 3])
def test_ply_round_trip_is_bit_exact(blender, api, tmp_path, degree):
    original = make_splats(500, degree, seed=degree, extra=("t", "a_b", "q"))
    first = tmp_path / "first.ply"
    write_splats(first, original)
    obj = api.import_splats(first)
    second = tmp_path / "second.ply"
    api.export_splats(obj, second)  # default: apply transform, -Y up
    assert second.read_bytes() == first.read_bytes()
    assert_bit_exact(read_splats(second), original)
    # Blender → file → Blender: the new object holds the same bits as the first.
    again = api.import_splats(second)
    assert_bit_exact(api.object_to_splats(again, apply_transform=False),
                     api.object_to_splats(obj, apply_transform=False))


def test_imported_file_shows_upright(blender, api, tmp_path):
    bpy = blender
    path = tmp_path / "up.ply"
    splats = make_splats(3, 0)
    # Splat 0 at the origin, splat 1 "above" it in the 3DGS convention (−Y up), 2 in front.
    splats.positions[:] = [[0, 0, 0], [0, -1, 0], [0, 0, -1]]
    write_splats(path, splats)
    obj = api.import_splats(path)
    bpy.context.view_layer.update()
    world = np.array(obj.matrix_world)

    def world_position(index):
        co = api.splat_positions(obj)[index]
        return (world @ np.array([*co, 1.0]))[:3]

    np.testing.assert_allclose(world_position(1), [0, 0, 1], atol=1e-6)  # up is +Z
    np.testing.assert_allclose(world_position(2), [0, -1, 0], atol=1e-6)  # faces the front view
    for axis, position in (("+Y", [0, 1, 0]), ("+Z", [0, 0, 1])):
        splats.positions[1] = position
        write_splats(path, splats)
        obj = api.import_splats(path, up_axis=axis)
        bpy.context.view_layer.update()
        world = np.array(obj.matrix_world)
        np.testing.assert_allclose(world_position(1), [0, 0, 1], atol=1e-6)


# ------------------------------------------------------------------------------ export
def test_export_bakes_the_object_transform(blender, api, tmp_path):
    bpy = blender
    splats = make_splats(200, 3, extra=("t",))
    obj = api.create_splat_object(splats, name="moved")
    obj.location = (1.5, -2.0, 0.25)
    obj.rotation_euler = (0.3, -1.1, 2.0)
    obj.scale = (1.7, 1.7, 1.7)
    bpy.context.view_layer.update()
    matrix = np.linalg.inv(file_to_blender_matrix("-Y")) @ np.array(obj.matrix_world)
    expected = splats.transformed(matrix)
    exported = api.object_to_splats(obj)
    for name in _FIELDS:
        np.testing.assert_allclose(getattr(exported, name), getattr(expected, name),
                                   rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(exported.extra["t"], splats.extra["t"])
    # Where a splat is in the world, there it is in the written (-Y up) file.
    world = (np.array(obj.matrix_world) @ np.c_[splats.positions, np.ones(200)].T)[:3].T
    to_file = np.linalg.inv(file_to_blender_matrix("-Y")[:3, :3])
    np.testing.assert_allclose(exported.positions, world @ to_file.T, atol=1e-5)
    # The operator writes the same thing.
    path = tmp_path / "moved.ply"
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.gs.export_splats(filepath=str(path)) == {'FINISHED'}
    assert_bit_exact(read_splats(path), exported)
    # No transform: raw values.
    assert_bit_exact(api.object_to_splats(obj, apply_transform=False), splats)


def test_export_follows_the_parent(blender, api):
    bpy = blender
    splats = make_splats(20, 1)
    obj = api.create_splat_object(splats, name="child")
    parent = bpy.data.objects.new("parent", None)
    bpy.context.scene.collection.objects.link(parent)
    parent.location = (0, 0, 3)
    obj.parent = parent
    exported = api.object_to_splats(obj)  # world matrix evaluated, not the stale one
    # Blender +Z is file −Y: three units up.
    np.testing.assert_allclose(exported.positions - splats.positions, [[0, -3, 0]] * 20,
                               atol=1e-5)


def test_non_uniform_scale_is_a_clean_error(blender, api, tmp_path):
    bpy = blender
    obj = api.create_splat_object(make_splats(10, 0), name="squashed")
    obj.scale = (1, 2, 1)
    with pytest.raises(GSError, match="'squashed'.*non-uniform scale"):
        api.object_to_splats(obj)
    path = tmp_path / "squashed.ply"
    bpy.context.view_layer.objects.active = obj
    with pytest.raises(RuntimeError, match="non-uniform scale"):
        bpy.ops.gs.export_splats(filepath=str(path))
    assert not path.exists()
    api.export_splats(obj, path, apply_transform=False)  # raw values still export
    assert read_splats(path).count == 10


def test_export_poll_and_non_splat_objects(blender, api):
    bpy = blender
    assert not bpy.ops.gs.export_splats.poll()
    mesh = bpy.data.meshes.new("plain")
    mesh.vertices.add(3)
    plain = bpy.data.objects.new("plain", mesh)
    bpy.context.scene.collection.objects.link(plain)
    bpy.context.view_layer.objects.active = plain
    assert not bpy.ops.gs.export_splats.poll()
    with pytest.raises(GSError, match="Object 'plain' has no splat attributes"):
        api.object_to_splats(plain)
    empty = bpy.data.objects.new("nothing", None)
    with pytest.raises(GSError, match="'nothing' is a empty, not a splat object"):
        api.object_to_splats(empty)
    obj = api.create_splat_object(make_splats(5, 0), name="ok")
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.gs.export_splats.poll()


def test_export_format_and_extension(blender, api, tmp_path):
    bpy = blender
    splats = make_splats(64, 0)
    obj = api.create_splat_object(splats, name="fmt")
    bpy.context.view_layer.objects.active = obj
    path = tmp_path / "fmt.splat"
    assert bpy.ops.gs.export_splats(filepath=str(path), format="splat") == {'FINISHED'}
    back = read_splats(path)
    assert back.count == 64
    np.testing.assert_allclose(np.sort(back.positions, axis=0),
                               np.sort(splats.positions, axis=0), atol=1e-6)
    # check() keeps the file name in step with the format, .compressed.ply included.
    io_splats = sys.modules["gaussian_splats.operators.io_splats"]
    chosen = {"format"}
    fake = SimpleNamespace(filepath="/x/name.ply", format="compressed_ply",
                           properties=SimpleNamespace(is_property_set=chosen.__contains__))
    fake._extension = lambda: io_splats._EXPORT_FORMATS[fake.format][0]
    fake._format_from_name = lambda: io_splats.GS_OT_export_splats._format_from_name(fake)
    assert io_splats.GS_OT_export_splats.check(fake, None)
    assert fake.filepath == "/x/name.compressed.ply"
    fake.format = "spz"
    io_splats.GS_OT_export_splats.check(fake, None)
    assert fake.filepath == "/x/name.spz"
    chosen.clear()  # no format chosen: a typed extension picks it
    fake.filepath = "/x/name.splat"
    assert not io_splats.GS_OT_export_splats.check(fake, None)
    assert (fake.format, fake.filepath) == ("splat", "/x/name.splat")


def test_export_takes_the_format_from_the_file_name(blender, api, tmp_path):
    """Without ``format=`` the file name decides, on every Blender version (it used to write
    PLY bytes into x.spz)."""
    bpy = blender
    splats = make_splats(100, 1)
    obj = api.create_splat_object(splats, name="named")
    bpy.context.view_layer.objects.active = obj
    for name in ("x.spz", "x.splat", "x.compressed.ply", "x.ply"):
        path = tmp_path / name
        assert bpy.ops.gs.export_splats(filepath=str(path)) == {'FINISHED'}
        back = read_splats(path)  # reads by content for .ply, by name otherwise
        assert back.count == 100, name
    assert (tmp_path / "x.spz").read_bytes()[:2] == b"\x1f\x8b"  # gzip, not "ply"
    # An explicit format still wins (the name is the user's).
    assert bpy.ops.gs.export_splats(filepath=str(tmp_path / "y.bin"), format="splat") == {
        'FINISHED'}
    assert read_splats(tmp_path / "y.bin", format="splat").count == 100
    path = tmp_path / "x2.spz"
    api.export_splats(obj, path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"


# ------------------------------------------------------------------------------ failures
def _lying_ply(path):
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\n"
              + "".join(f"property float {n}\n" for n in (
                  "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0",
                  "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"))
              + "end_header\n")
    path.write_bytes(header.encode() + bytes(56 * 10))


def test_corrupt_file_cancels_and_leaves_data_unchanged(blender, api, tmp_path):
    bpy = blender
    api.create_splat_object(make_splats(5, 0), name="existing")
    before = data_counts(bpy)
    lying = tmp_path / "lying.ply"
    _lying_ply(lying)
    with pytest.raises(RuntimeError, match="lying.ply"):
        bpy.ops.gs.import_splats(filepath=str(lying))
    assert data_counts(bpy) == before
    garbage = tmp_path / "garbage.splat"
    garbage.write_bytes(b"\x01" * 33)
    with pytest.raises(GSError, match="garbage.splat"):
        api.import_splats(garbage)
    assert data_counts(bpy) == before

    # The operator itself: {'CANCELLED'} and one ERROR report.
    reports = []
    io_splats = sys.modules["gaussian_splats.operators.io_splats"]
    fake = SimpleNamespace(
        as_keywords=lambda ignore=(): {"up_axis": "-Y", "nonfinite": "drop"},
        _filepaths=lambda: [str(lying)],
        report=lambda levels, msg: reports.append((levels, msg)),
    )
    assert io_splats.GS_OT_import_splats.execute(fake, bpy.context) == {'CANCELLED'}
    assert len(reports) == 1 and reports[0][0] == {'ERROR'} and "lying.ply" in reports[0][1]
    assert data_counts(bpy) == before


def test_failure_part_way_removes_what_was_made(blender, api, tmp_path):
    bpy = blender
    before = data_counts(bpy)
    too_long = make_splats(5, 1, extra=("x" * 70,))
    with pytest.raises(GSError, match="67 bytes"):
        api.create_splat_object(too_long, name="long")
    assert data_counts(bpy) == before
    good = tmp_path / "good.ply"
    write_splats(good, make_splats(5, 0))
    bad = tmp_path / "bad.ply"
    _lying_ply(bad)
    with pytest.raises(GSError, match="bad.ply"):
        api.import_splat_files([good, bad])
    assert data_counts(bpy) == before
    with pytest.raises(GSError, match="unknown up axis"):
        api.import_splats(good, up_axis="Y")
    assert data_counts(bpy) == before


def test_non_finite_rows(blender, api, tmp_path):
    bpy = blender
    splats = make_splats(20, 0)
    splats.opacity_logits[3] = np.nan
    path = tmp_path / "nan.ply"
    write_splats(path, splats)
    messages = []
    obj = api.import_splats(path, report=lambda levels, msg: messages.append((levels, msg)))
    assert api.splat_count(obj) == 19
    assert any(levels == {'WARNING'} and "dropped 1" in msg for levels, msg in messages)
    before = data_counts(bpy)
    with pytest.raises(RuntimeError, match="NaN"):
        bpy.ops.gs.import_splats(filepath=str(path), nonfinite="error")
    assert data_counts(bpy) == before


def test_snapping_keeps_real_rotations(blender, api):
    """Only float32 noise around 0/±1 is snapped; a small real rotation is exported."""
    bpy = blender
    obj = api.create_splat_object(make_splats(4, 0), name="tilted")
    obj.rotation_euler.x -= math.radians(0.01)  # 1.7e-4 rad: far above the snap tolerance
    bpy.context.view_layer.update()
    matrix = api.export_matrix(obj)
    assert not np.array_equal(matrix, np.eye(4))
    assert abs(matrix[1, 2]) > 1e-4


class _RecordingLayout:
    """Stands in for UILayout: records labels and operator buttons."""

    def __init__(self, log):
        self.log = log

    def box(self):
        return self

    def row(self, align=False):
        return self

    def label(self, text="", icon='NONE'):
        self.log.append(("label", text))

    def operator(self, idname, text="", icon='NONE'):
        self.log.append(("operator", idname))


def test_sidebar_panel_draws_count_and_buttons(blender, api):
    bpy = blender
    log = []
    panel = SimpleNamespace(layout=_RecordingLayout(log))
    bpy.types.GS_PT_splats.draw(panel, SimpleNamespace(active_object=None))
    assert ("label", "No splat object active") in log
    assert ("operator", "gs.import_splats") in log and ("operator", "gs.export_splats") in log
    log.clear()
    obj = api.create_splat_object(make_splats(1234, 2), name="shown")
    bpy.types.GS_PT_splats.draw(panel, SimpleNamespace(active_object=obj))
    assert ("label", "1,234 splats") in log and ("label", "SH degree 2") in log


@pytest.mark.parametrize("filename", ["s.splat", "s.spz", "s.compressed.ply", "s.glb", "s.sog",
                                      "s/meta.json"])
def test_every_format_through_the_operators(blender, api, tmp_path, filename):
    bpy = blender
    path = tmp_path / filename
    path.parent.mkdir(exist_ok=True)
    write_splats(path, make_splats(300, 0 if filename.endswith(".splat") else 1))
    expected = read_splats(path)
    assert bpy.ops.gs.import_splats(filepath=str(path)) == {'FINISHED'}
    obj = bpy.context.active_object
    assert obj.name == "s"
    assert_bit_exact(api.object_to_splats(obj, apply_transform=False), expected)
    fmt = {"s.splat": "splat", "s.spz": "spz", "s.compressed.ply": "compressed_ply",
           "s.glb": "gltf", "s.sog": "sog", "s/meta.json": "sog"}[filename]
    again = tmp_path / ("again" + (filename[1:] if filename[1] == "." else ".sog"))
    assert bpy.ops.gs.export_splats(filepath=str(again), format=fmt) == {'FINISHED'}
    back = read_splats(again)
    assert back.count == 300
    np.testing.assert_allclose(np.sort(back.positions, axis=0),
                               np.sort(expected.positions, axis=0), atol=2e-3)


def test_empty_set(blender, api):
    obj = api.create_splat_object(SplatSet.empty(0, 3), name="empty")
    assert api.splat_count(obj) == 0
    back = api.object_to_splats(obj)
    assert back.count == 0 and back.sh_degree == 3


# ------------------------------------------------------------------------------ reliability
def test_import_refuses_files_over_the_max_splats_preference(blender, api, tmp_path):
    from gaussian_splats.preferences import ensure_preferences

    bpy = blender
    path = tmp_path / "many.spz"
    write_splats(path, make_splats(300, 0))
    prefs = ensure_preferences()
    saved = prefs.max_splats
    before = data_counts(bpy)
    try:
        prefs.max_splats = 299
        with pytest.raises(RuntimeError, match=r"many\.spz: the file declares 300 splats, more "
                                               r"than the limit of 299 \(raise 'Max Splats'"):
            bpy.ops.gs.import_splats(filepath=str(path))
        assert data_counts(bpy) == before
        prefs.max_splats = 300
        assert bpy.ops.gs.import_splats(filepath=str(path)) == {'FINISHED'}
    finally:
        prefs.max_splats = saved


def test_export_operator_writes_spz_version_4_on_request(blender, api, tmp_path):
    import gzip
    import struct

    bpy = blender
    source = make_splats(50, 1)
    bpy.context.view_layer.objects.active = api.create_splat_object(source, name="s")
    for version, path in (("4", tmp_path / "v4.spz"), ("3", tmp_path / "v3.spz")):
        assert bpy.ops.gs.export_splats(filepath=str(path), format="spz",
                                        spz_version=version) == {'FINISHED'}
        data = path.read_bytes()
        if version == "3":
            data = gzip.decompress(data)
        assert struct.unpack_from("<II", data) == (0x5053474E, int(version))
        np.testing.assert_allclose(read_splats(path).positions, source.positions, atol=2e-4)
    # version 3 stays the default
    assert bpy.ops.gs.export_splats(filepath=str(tmp_path / "d.spz"), format="spz") == \
        {'FINISHED'}
    assert (tmp_path / "d.spz").read_bytes()[:2] == b"\x1f\x8b"


def test_import_keeps_at_most_the_attribute_cap_of_extra_properties(blender, api, tmp_path):
    cap = object_layout.MAX_EXTRA_ATTRIBUTES
    names = [f"p{i}" for i in range(cap + 76)]
    path = tmp_path / "wide.ply"
    write_splats(path, make_splats(4, 0, extra=names))
    messages = []
    obj = api.import_splats(path, report=lambda levels, msg: messages.append((levels, msg)))
    extras = [a.name for a in obj.data.attributes if a.name.startswith("gs_extra_")]
    assert extras == [f"gs_extra_p{i}" for i in range(cap)]
    (warning,) = [m for lv, m in messages if "WARNING" in lv and "extra" in m]
    assert f"{cap + 76:,} extra per-splat properties; the first {cap:,} become attributes, " \
           f"the other 76 (p{cap} …) are left out" in warning
    back = api.object_to_splats(obj, apply_transform=False)
    np.testing.assert_array_equal(back.extra[f"p{cap - 1}"],
                                  read_splats(path).extra[f"p{cap - 1}"])
