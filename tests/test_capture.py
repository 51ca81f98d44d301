"""Capture (scene/capture.py) and camera import (scene/camera_import.py) with real renders.

Geometry: small markers of pure colours at known 3D points are captured; projecting each point
with the written transforms json (read here with plain ``json``, not our reader) and the stored
normalisation must land within 1 px of the marker's rendered, alpha-weighted centroid in the PNG.
Markers are rendered by Workbench with flat object colours (exact colours, fast) and, for one
rig, by Cycles with emission shaders.

State: a snapshot of everything a user would notice (objects and their transforms, parents,
collections, selection, render / image / colour / engine settings, active camera, frame, world,
datablock names and user counts) must be identical after a capture, a capture that fails
midway, a cancelled one, and every refused bad input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

PALETTE = {
    "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0), "magenta": (1.0, 0.0, 1.0), "cyan": (0.0, 1.0, 1.0),
}
# Asymmetric points (user world) so the normalisation is a real scale + shift.
MARKER_POINTS = {
    "red": (-0.9, 0.3, 1.2), "green": (1.6, -0.4, 1.0), "blue": (0.2, 0.9, 2.4),
    "yellow": (0.5, -0.8, 0.3), "magenta": (-0.4, -0.2, 2.1), "cyan": (1.1, 0.7, 1.6),
}
MARKER_RADIUS = 0.07


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture
def capture(blender, gs_extension):
    from gaussian_splats.scene import capture as module

    return module


@pytest.fixture
def markers(blender):
    """Marker spheres (Workbench flat object colour + an emission material), one parented to an
    unselected, rotated empty; a big unselected distractor cube that must not be rendered."""
    import bmesh

    bpy = blender
    scene = bpy.context.scene
    scene.display.shading.light = 'FLAT'
    scene.display.shading.color_type = 'OBJECT'
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=12, radius=MARKER_RADIUS)
    mesh = bpy.data.meshes.new("marker")
    bm.to_mesh(mesh)
    bm.free()
    parent = bpy.data.objects.new("marker parent", None)
    scene.collection.objects.link(parent)
    parent.location = (0.3, -0.2, 0.5)
    parent.rotation_euler = (0.3, -0.2, 0.9)
    objects = []
    for name, colour in PALETTE.items():
        mat = bpy.data.materials.new(f"emit {name}")
        if mat.node_tree is None:  # Blender < 5 makes node trees on request
            mat.use_nodes = True
        nodes = mat.node_tree.nodes
        nodes.remove(nodes["Principled BSDF"])
        emission = nodes.new("ShaderNodeEmission")
        emission.inputs["Color"].default_value = (*colour, 1.0)
        mat.node_tree.links.new(emission.outputs[0], nodes["Material Output"].inputs[0])
        obj = bpy.data.objects.new(f"marker {name}", mesh.copy())
        obj.data.materials.append(mat)
        obj.color = (*colour, 1.0)
        scene.collection.objects.link(obj)
        objects.append(obj)
    # The magenta marker hangs from the empty: its world position goes through the parent.
    magenta = bpy.data.objects["marker magenta"]
    magenta.parent = parent
    bpy.context.view_layer.update()
    from mathutils import Vector

    magenta.location = parent.matrix_world.inverted() @ Vector(MARKER_POINTS["magenta"])
    for obj in objects:
        if obj is not magenta:
            obj.location = MARKER_POINTS[obj.name.split()[1]]
    bpy.ops.mesh.primitive_cube_add(size=0.5, location=(0.4, 0.1, 1.5))
    distractor = bpy.context.active_object
    distractor.name = "distractor"
    distractor.color = (0.5, 0.5, 0.5, 1.0)
    for obj in bpy.context.scene.objects:
        obj.select_set(obj in objects)
    bpy.context.view_layer.objects.active = objects[0]
    bpy.context.view_layer.update()
    got = {o.name.split()[1]: tuple(o.matrix_world.translation) for o in objects}
    for name, point in MARKER_POINTS.items():
        assert np.allclose(got[name], point, atol=1e-5)
    return objects


# -------------------------------------------------------------------------------- helpers
def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "RGBA", f"{path} is {im.mode}, expected RGBA"
        return np.asarray(im, dtype=np.float64) / 255.0  # [H, W, 4]


def _load_frames(out: Path):
    """(frame dict, split, intrinsics) for every view, normalisation — read with plain json."""
    rows, normalisation = [], None
    for split in ("train", "test"):
        meta = json.loads((out / f"transforms_{split}.json").read_text())
        n = np.array(meta["normalisation_transform"])
        assert normalisation is None or np.array_equal(n, normalisation)
        normalisation = n
        for frame in meta["frames"]:
            def value(key, frame=frame, meta=meta):
                return frame.get(key, meta.get(key))

            k = {key: value(key) for key in ("fl_x", "fl_y", "cx", "cy", "w", "h")}
            rows.append((frame, split, k))
    return rows, normalisation


def _project(point_norm, c2w, k) -> tuple[float, float, float]:
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    x, y, z = w2c[:3, :3] @ point_norm + w2c[:3, 3]
    return k["cx"] + k["fl_x"] * x / -z, k["cy"] - k["fl_y"] * y / -z, -z


def check_markers(out: Path, *, min_checked: int) -> float:
    """Every marker's projection vs its rendered centroid, all views; return the worst error."""
    rows, normalisation = _load_frames(out)
    assert rows
    names = list(PALETTE)
    palette = np.array([PALETTE[n] for n in names])  # [M, 3]
    worst, checked = 0.0, 0
    for frame, _split, k in rows:
        image = _read_png(out / (frame["file_path"] + ".png"))
        assert image.shape == (k["h"], k["w"], 4)
        alpha = image[..., 3]
        mask = alpha > 0.02
        dist = np.linalg.norm(image[..., None, :3] - palette, axis=-1)  # [H, W, M]
        label = dist.argmin(axis=-1)
        projections = {}
        for name in names:
            p = normalisation @ np.array([*MARKER_POINTS[name], 1.0])
            u, v, depth = _project(p[:3], frame["transform_matrix"], k)
            r_px = k["fl_x"] * MARKER_RADIUS * normalisation[0, 0] / depth
            projections[name] = (u, v, r_px)
        # Only the markers were rendered: the (much bigger) unselected cube was not.
        marker_area = sum(math.pi * r**2 for _, _, r in projections.values())
        assert alpha.sum() < 1.5 * marker_area + 6, "an unselected object was rendered"
        for m, name in enumerate(names):
            u, v, r_px = projections[name]
            if not (3 + r_px < u < k["w"] - 3 - r_px and 3 + r_px < v < k["h"] - 3 - r_px):
                continue
            # Markers overlapping on screen may occlude each other: skip those pairs.
            if any(math.hypot(u - u2, v - v2) < r_px + r2 + 3
                   for other, (u2, v2, r2) in projections.items() if other != name):
                continue
            weights = np.where(mask & (label == m), alpha, 0.0)
            total = weights.sum()
            assert total > 0.5 * math.pi * r_px**2, f"{frame['file_path']}: {name} missing"
            rows_i, cols_j = np.indices(weights.shape)
            cu = float(((cols_j + 0.5) * weights).sum() / total)
            cv = float(((rows_i + 0.5) * weights).sum() / total)
            err = math.hypot(cu - u, cv - v)
            assert err < 1.0, (f"{frame['file_path']}: {name} rendered at ({cu:.2f}, {cv:.2f}), "
                               f"projected at ({u:.2f}, {v:.2f})")
            worst = max(worst, err)
            checked += 1
    assert checked >= min_checked, f"only {checked} marker sightings were checkable"
    # Measured: ≤ 0.25 px (Workbench 16× AA, Cycles 4 spp); a 1 % focal-length error exceeds it.
    assert worst < 0.35, f"worst marker error {worst:.3f} px"
    return worst


def _rna_values(struct) -> dict:
    values = {}
    for prop in struct.bl_rna.properties:
        if prop.type in ('POINTER', 'COLLECTION') or prop.identifier in (
                "rna_type", "wireframe_color_type"):  # the latter warns when read headless
            continue
        try:
            value = getattr(struct, prop.identifier)
        except AttributeError:
            continue
        if hasattr(value, "__len__") and not isinstance(value, str):
            value = tuple(value)
        values[prop.identifier] = value
    return values


def snapshot(bpy) -> dict:
    """Everything a capture must leave as it was."""
    scene = bpy.context.scene
    layer = bpy.context.view_layer
    blocks = {}
    for attr in ("objects", "meshes", "cameras", "lights", "materials", "images", "scenes",
                 "collections", "worlds", "node_groups", "actions", "textures"):
        blocks[attr] = sorted((x.name, x.users) for x in getattr(bpy.data, attr))
    objects = {
        o.name: (
            tuple(tuple(row) for row in o.matrix_world), tuple(o.location),
            tuple(o.rotation_euler), tuple(o.scale), o.parent.name if o.parent else None,
            sorted(c.name for c in o.users_collection), o.select_get(), o.hide_render,
            o.hide_viewport, o.data.name if o.data else None,
        )
        for o in bpy.data.objects
    }
    settings = {
        "render": _rna_values(scene.render),
        "image": _rna_values(scene.render.image_settings),
        "view": _rna_values(scene.view_settings),
        "display": _rna_values(scene.display),
        "shading": _rna_values(scene.display.shading),
        "cycles": _rna_values(scene.cycles),
        "eevee": _rna_values(scene.eevee),
    }
    cameras = {c.name: _rna_values(c) for c in bpy.data.cameras}
    return {
        "blocks": blocks, "objects": objects, "settings": settings, "cameras": cameras,
        "camera": scene.camera.name if scene.camera else None,
        "frame": (scene.frame_current, scene.frame_start, scene.frame_end),
        "active": layer.objects.active.name if layer.objects.active else None,
        "world": scene.world.name if scene.world else None,
        "context_scene": bpy.context.scene.name,
    }


def assert_same_state(before: dict, after: dict) -> None:
    for key in before:
        assert before[key] == after[key], f"scene changed: {key}"


def _user_camera_scene(bpy):
    """A user camera and non-default render settings that the capture must not disturb."""
    scene = bpy.context.scene
    data = bpy.data.cameras.new("user camera")
    cam = bpy.data.objects.new("user camera", data)
    scene.collection.objects.link(cam)
    cam.location = (5.0, -5.0, 3.0)
    scene.camera = cam
    scene.frame_current = 7
    scene.render.resolution_x, scene.render.resolution_y = 333, 222
    scene.render.engine = 'CYCLES'
    scene.render.filepath = "//user_render_"
    scene.view_settings.view_transform = 'AgX'
    bpy.context.view_layer.update()  # matrix_world is derived: compare evaluated states


def _look_at(obj, target) -> None:
    from mathutils import Vector

    direction = Vector(target) - obj.location
    obj.rotation_euler = direction.to_track_quat('-Z', 'Y').to_euler()


# ---------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("rig, resolution", [("orbit", (120, 80)), ("sphere", 96),
                                              ("lgm", 96)])
def test_rig_markers_land_on_their_projections(capture, markers, tmp_path, rig, resolution):
    out = capture.capture_views(
        objects=markers, rig=rig, views=6, elevations=(-20.0, 35.0), test_views=3,
        resolution=resolution, engine="WORKBENCH", samples=16, transparent=True,
        out_dir=tmp_path / "ds")
    rows, normalisation = _load_frames(out)
    expected_train = {"orbit": 12, "sphere": 6, "lgm": 4}[rig]
    assert [s for _, s, _ in rows].count("train") == expected_train
    assert [s for _, s, _ in rows].count("test") == 3
    worst = check_markers(out, min_checked=3 * len(rows))
    assert worst < 1.0
    # The stored normalisation puts the markers' bounding box into a unit cube at the origin.
    pts = np.array([[*p, 1.0] for p in MARKER_POINTS.values()]) @ normalisation.T
    lo = pts[:, :3].min(0) - MARKER_RADIUS * normalisation[0, 0]
    hi = pts[:, :3].max(0) + MARKER_RADIUS * normalisation[0, 0]
    assert (hi - lo).max() == pytest.approx(1.0, abs=2e-3)
    assert np.allclose((hi + lo) / 2, 0.0, atol=2e-3)


def test_lgm_rig_is_the_lgm_camera_set(capture, markers, tmp_path):
    out = capture.capture_views(objects=markers, rig="lgm", resolution=64, engine="WORKBENCH",
                                out_dir=tmp_path / "lgm")
    meta = json.loads((out / "transforms_train.json").read_text())
    assert meta["w"] == meta["h"] == 64
    assert 2 * math.degrees(math.atan(32 / meta["fl_y"])) == pytest.approx(49.1, abs=1e-9)
    centres = np.array([f["transform_matrix"] for f in meta["frames"]])[:, :3, 3]
    assert np.allclose(centres, [[0, -1.5, 0], [1.5, 0, 0], [0, 1.5, 0], [-1.5, 0, 0]],
                       atol=1e-12)
    assert meta["background_color"] == [1.0, 1.0, 1.0]
    image = _read_png(out / "train" / "view_000.png")
    assert np.allclose(image[..., 3], 1.0)  # composited on white, opaque
    assert np.allclose(image[0, 0], 1.0)
    assert (np.abs(image[..., :3] - 1.0).max(axis=-1) > 0.5).sum() >= 6  # markers show


def test_cycles_emission_markers(capture, markers, tmp_path):
    out = capture.capture_views(objects=markers, rig="orbit", views=4, elevations=(10.0,),
                                resolution=(96, 72), engine="CYCLES", samples=4,
                                out_dir=tmp_path / "cy")
    check_markers(out, min_checked=12)


@pytest.mark.parametrize("resolution", [(112, 80), (72, 100)])
def test_scene_cameras_with_shift_and_sensor_fit(capture, markers, tmp_path, blender,
                                                 resolution):
    bpy = blender
    rig = bpy.data.collections.new("Rig")
    bpy.context.scene.collection.children.link(rig)
    settings = [  # (sensor fit, sensor w, sensor h, lens, shift x, shift y, location, scale)
        ('HORIZONTAL', 36.0, 24.0, 30.0, 0.1, -0.05, (1.5, -6.0, 3.0), 1.0),
        ('VERTICAL', 36.0, 20.0, 28.0, -0.08, 0.12, (-5.0, -3.0, 2.0), 2.0),
        ('AUTO', 32.0, 18.0, 24.0, 0.05, 0.07, (4.0, 4.0, 4.0), 1.0),
        ('AUTO', 36.0, 24.0, 35.0, 0.0, 0.0, (-3.0, 5.0, -1.0), 0.5),
    ]
    for i, (fit, sw, sh, lens, sx, sy, loc, scale) in enumerate(settings):
        data = bpy.data.cameras.new(f"cam {i}")
        data.sensor_fit, data.sensor_width, data.sensor_height = fit, sw, sh
        data.lens, data.shift_x, data.shift_y = lens, sx, sy
        data.dof.use_dof = True  # the capture must render it sharp anyway
        obj = bpy.data.objects.new(f"cam {i}", data)
        rig.objects.link(obj)
        obj.location = loc
        obj.scale = (scale, scale, scale)
        _look_at(obj, (0.4, 0.0, 1.3))
    bpy.context.view_layer.update()
    out = capture.capture_views(bpy.context, rig="cameras", camera_collection=rig, test_views=1,
                                resolution=resolution, engine="WORKBENCH", samples=16,
                                out_dir=tmp_path / "cams")
    rows, _ = _load_frames(out)
    assert sorted(f["name"] for f, _, _ in rows) == [f"cam {i}" for i in range(4)]
    assert [s for _, s, _ in rows].count("test") == 1
    # The shifts really moved the principal point away from the centre.
    assert any(abs(k["cx"] - k["w"] / 2) > 3 for _, _, k in rows)
    check_markers(out, min_checked=12)


# ------------------------------------------------------------------------------- state
def test_scene_unchanged_by_a_capture(capture, markers, tmp_path, blender):
    bpy = blender
    _user_camera_scene(bpy)
    before = snapshot(bpy)
    capture.capture_views(bpy.context, rig="sphere", views=3, test_views=1, resolution=48,
                          engine="WORKBENCH", transparent=False, background=(0.2, 0.3, 0.4),
                          out_dir=tmp_path / "ok")
    assert_same_state(before, snapshot(bpy))
    image = _read_png(tmp_path / "ok" / "train" / "view_000.png")
    assert np.allclose(image[0, 0], [0.2, 0.3, 0.4, 1.0], atol=1 / 255)


def _existing_output(folder: Path) -> dict:
    folder.mkdir()
    (folder / "keep.txt").write_text("user file")
    (folder / "transforms_train.json").write_text("old data set")
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_failure_midway_restores_everything(capture, markers, tmp_path, blender, monkeypatch):
    from blender_gs_addon.errors import GSError

    bpy = blender
    _user_camera_scene(bpy)
    out = tmp_path / "ds"
    files = _existing_output(out)
    real = capture._render_still
    calls = []

    def failing(scene, path):
        calls.append(path)
        if len(calls) == 3:
            raise GSError("simulated render failure")
        real(scene, path)

    monkeypatch.setattr(capture, "_render_still", failing)
    before = snapshot(bpy)
    with pytest.raises(GSError, match="simulated render failure"):
        capture.capture_views(bpy.context, rig="orbit", views=4, elevations=(0.0,),
                              resolution=32, engine="WORKBENCH", out_dir=out)
    assert len(calls) == 3
    assert_same_state(before, snapshot(bpy))
    assert _files(out) == files
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "transforms_train.json"]

    # A new output folder that the failed capture created is gone again.
    fresh = tmp_path / "new" / "deeper"
    calls.clear()
    with pytest.raises(GSError):
        capture.capture_views(bpy.context, rig="orbit", views=4, elevations=(0.0,),
                              resolution=32, engine="WORKBENCH", out_dir=fresh)
    assert not (tmp_path / "new").exists()
    assert_same_state(before, snapshot(bpy))


def test_cancel_restores_everything(capture, markers, tmp_path, blender):
    bpy = blender
    _user_camera_scene(bpy)
    out = tmp_path / "ds"
    files = _existing_output(out)
    before = snapshot(bpy)
    seen = []

    def progress(fraction, message):
        seen.append((fraction, message))
        return len(seen) < 3

    with pytest.raises(capture.CaptureCancelled):
        capture.capture_views(bpy.context, rig="orbit", views=4, elevations=(0.0,),
                              resolution=32, engine="WORKBENCH", out_dir=out, progress=progress)
    assert len(seen) == 3 and seen[0][0] == 0.0 and seen[2][0] == pytest.approx(0.5)
    assert_same_state(before, snapshot(bpy))
    assert _files(out) == files


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_cleanly(capture, markers, tmp_path, blender):
    from blender_gs_addon.errors import GSError

    bpy = blender
    _user_camera_scene(bpy)
    for obj in bpy.context.scene.objects:
        obj.select_set(False)
    empty_rig = bpy.data.collections.new("No cameras")
    bpy.context.scene.collection.children.link(empty_rig)
    dot_mesh = bpy.data.meshes.new("dot")
    dot_mesh.from_pydata([(0.0, 0.0, 0.0)], [], [])
    dot = bpy.data.objects.new("dot", dot_mesh)
    bpy.context.scene.collection.objects.link(dot)
    flat = bpy.data.objects.new("squashed", markers[0].data)
    flat.scale = (0.0, 0.0, 0.0)
    bpy.context.scene.collection.objects.link(flat)
    lamp = bpy.data.objects.new("lamp", bpy.data.lights.new("lamp", 'POINT'))
    bpy.context.scene.collection.objects.link(lamp)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    bpy.context.view_layer.update()
    before = snapshot(bpy)
    common = {"resolution": 16, "engine": "WORKBENCH", "out_dir": tmp_path / "out"}
    cases = [
        ({}, "no objects selected"),
        ({"objects": [lamp]}, "no geometry"),
        ({"objects": markers, "rig": "cameras", "camera_collection": empty_rig}, "no cameras"),
        ({"objects": markers, "out_dir": a_file / "sub"}, "cannot write"),
        ({"objects": [dot]}, "zero-size"),
        ({"objects": [flat]}, "zero-size"),
        ({"objects": markers, "rig": "lgm", "resolution": (64, 32)}, "square"),
        ({"objects": markers, "engine": "POVRAY"}, "unknown render engine"),
        ({"objects": markers, "rig": "spiral"}, "unknown capture rig"),
        ({"objects": markers, "resolution": 0}, "resolution"),
        ({"objects": markers, "views": 0}, "views"),
        ({"objects": markers, "views": "many"}, "whole number"),
        ({"objects": markers, "fov": 200}, "field of view"),
        ({"objects": markers, "radius": -1.0}, "distance"),
        ({"objects": markers, "elevations": (0.0, 100.0)}, "elevations"),
        ({"objects": markers, "transparent": False, "background": (2, 0, 0)}, "background"),
    ]
    for options, message in cases:
        with pytest.raises(GSError, match=message):
            capture.capture_views(bpy.context, **{**common, **options})
        assert_same_state(before, snapshot(bpy))
    assert not (tmp_path / "out").exists()
    assert a_file.read_text() == "x"


# ------------------------------------------------------------------------------ import
def _world_to_pixels(bpy, scene, cam, point) -> tuple[float, float]:
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    ndc = world_to_camera_view(scene, cam, Vector(point))
    return ndc.x * scene.render.resolution_x, (1.0 - ndc.y) * scene.render.resolution_y


def test_imported_cameras_project_like_the_data_set(capture, markers, tmp_path, blender):
    from gaussian_splats.scene import camera_import

    bpy = blender
    out = capture.capture_views(objects=markers, rig="orbit", views=3, elevations=(15.0,),
                                test_views=1, resolution=(80, 60), engine="WORKBENCH",
                                out_dir=tmp_path / "ds")
    collection = camera_import.import_camera_views(out)
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y) == (80, 60)
    cams = sorted(collection.objects, key=lambda o: o.name)
    assert [c.name for c in cams] == ["test_000", "train_000", "train_001", "train_002"]
    rows, normalisation = _load_frames(out)
    by_name = {f["name"]: (f, k) for f, _, k in rows}
    bpy.context.view_layer.update()
    for cam in cams:
        frame, k = by_name[cam.name]
        assert cam.data.show_background_images
        image = cam.data.background_images[0].image
        assert Path(image.filepath).resolve() == (out / (frame["file_path"] + ".png")).resolve()
        for point in MARKER_POINTS.values():
            # Cameras are back in the original world: Blender's own projection of the original
            # point matches the data set's projection of the normalised point.
            u, v = _world_to_pixels(bpy, scene, cam, point)
            p = normalisation @ np.array([*point, 1.0])
            u2, v2, _ = _project(p[:3], frame["transform_matrix"], k)
            assert (u, v) == pytest.approx((u2, v2), abs=1e-3)


def test_import_shifted_cameras_and_colmap(capture, tmp_path, blender, gs_extension):
    """Off-centre principal points and non-square images through transforms and COLMAP."""
    from gaussian_splats.scene import camera_import

    from blender_gs_addon.datasets.camera_views import CameraView, ViewDataset
    from blender_gs_addon.datasets.colmap import write_colmap_model
    from blender_gs_addon.datasets.nerf_synthetic import write_transforms

    bpy = blender
    rng = np.random.default_rng(5)
    views = []
    for i in range(3):
        angle = 2 * math.pi * i / 3
        eye = np.array([3 * math.sin(angle), -3 * math.cos(angle), 1.0])
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
        views.append(CameraView(name=f"v{i}", file_path=tmp_path / "images" / f"v{i}.png",
                                width=90, height=70, fx=80.0, fy=80.0,
                                cx=45 + rng.uniform(-9, 9), cy=35 + rng.uniform(-7, 7),
                                camera_to_world=c2w))
    dataset = ViewDataset(views=views)
    write_transforms(dataset, tmp_path / "nerf")
    write_colmap_model(dataset, tmp_path / "colmap" / "sparse" / "0")
    points = rng.uniform(-0.5, 0.5, size=(5, 3))
    for source, up in ((tmp_path / "nerf", "AUTO"), (tmp_path / "colmap", "+Z")):
        collection = camera_import.import_camera_views(source, up_axis=up, images=False)
        bpy.context.view_layer.update()
        scene = bpy.context.scene
        assert len(collection.objects) == 3
        for view in views:
            cam = next(o for o in collection.objects if Path(o["gs_view"]).stem == view.name)
            expected = view.project(points)
            got = [_world_to_pixels(bpy, scene, cam, p) for p in points]
            assert np.allclose(got, expected, atol=1e-3), source


def test_sample_scene_is_deterministic_and_textured(blender, gs_extension):
    from gaussian_splats.scene.sample_scenes import SAMPLE_SCENES, build_sample_scene

    from blender_gs_addon.errors import GSError

    bpy = blender

    def geometry():
        objs = build_sample_scene("toy")
        out = {}
        for obj in objs:
            co = np.zeros(len(obj.data.vertices) * 3, np.float32)
            obj.data.vertices.foreach_get("co", co)
            out[obj.name] = (co, obj.active_material.name)
        return objs, out

    objs, first = geometry()
    assert "toy" in SAMPLE_SCENES and len(objs) >= 5
    assert all(o.type == 'MESH' and len(o.data.polygons) > 0 for o in objs)
    node_types = {n.bl_idname for o in objs for n in o.active_material.node_tree.nodes}
    assert {"ShaderNodeTexChecker", "ShaderNodeTexNoise"} <= node_types
    assert "ShaderNodeEmission" not in node_types
    assert any(o.type == 'LIGHT' for o in bpy.context.scene.objects)
    assert bpy.context.scene.world is not None
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    _, second = geometry()
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name][0], second[name][0])
    with pytest.raises(GSError, match="unknown sample scene"):
        build_sample_scene("nope")


# ---------------------------------------------------------------------------- operators
def test_operators_in_background(capture, markers, tmp_path, blender, capsys):
    bpy = blender
    _user_camera_scene(bpy)
    props = bpy.context.scene.gs_capture
    props.rig, props.views, props.test_views = "sphere", 3, 1
    props.resolution_x, props.resolution_y = 40, 30
    props.engine, props.film = "WORKBENCH", "TRANSPARENT"
    props.output_dir = str(tmp_path / "op")
    before = snapshot(bpy)
    assert bpy.ops.gs.capture_views() == {'FINISHED'}
    assert_same_state(before, snapshot(bpy))
    printed = capsys.readouterr().out
    assert "Capture [100.0%]" in printed
    meta = json.loads((tmp_path / "op" / "transforms_train.json").read_text())
    assert (meta["w"], meta["h"], len(meta["frames"])) == (40, 30, 3)

    props.output_dir = "//relative_to_unsaved_file/"
    with pytest.raises(RuntimeError, match="not saved"):
        bpy.ops.gs.capture_views()
    assert_same_state(before, snapshot(bpy))

    result = bpy.ops.gs.import_camera_views(filepath=str(tmp_path / "op" / "transforms_test.json"))
    assert result == {'FINISHED'}
    imported = [o for o in bpy.data.objects if o.get("gs_split") == "test"]
    assert [o.name for o in imported] == ["test_000"]
    with pytest.raises(RuntimeError, match="no such file"):
        bpy.ops.gs.import_camera_views(filepath=str(tmp_path / "missing" / "transforms.json"))


def test_capture_main_builtin_and_blend(tmp_path, blender, capsys):
    from argparse import Namespace

    from gaussian_splats.scene import commands

    from blender_gs_addon.errors import GSError

    bpy = blender
    args = Namespace(builtin="toy", blend=None, objects=None, rig="sphere", views=2,
                     test_views=1, resolution="48x32", engine="WORKBENCH", out=str(tmp_path / "a"))
    out = commands.capture_main(args)
    meta = json.loads((out / "transforms_train.json").read_text())
    assert (meta["w"], meta["h"], len(meta["frames"])) == (48, 32, 2)
    info = json.loads((out / "capture.json").read_text())
    assert info["objects"][0].startswith("GS Toy") and info["engine"] == "WORKBENCH"
    assert "Capture [100.0%]" in capsys.readouterr().out
    image = _read_png(out / "train" / "view_000.png")
    assert image[..., 3].max() == 1.0 and image[..., 3].min() == 0.0  # the toy, transparent film

    blend = tmp_path / "toy.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    args = Namespace(builtin=None, blend=str(blend), objects="GS Toy Head,GS Toy Body",
                     rig="lgm", views=4, test_views=0, resolution=32, engine="WORKBENCH",
                     out=str(tmp_path / "b"))
    out = commands.capture_main(args)
    info = json.loads((out / "capture.json").read_text())
    assert info["objects"] == ["GS Toy Head", "GS Toy Body"] and info["views"]["train"] == 4
    args.objects = "GS Toy Head,Nope"
    with pytest.raises(GSError, match="no object named 'Nope'"):
        commands.capture_main(args)
    args.blend = str(tmp_path / "missing.blend")
    with pytest.raises(GSError, match="no such .blend"):
        commands.capture_main(args)


# ------------------------------------------------------------------ EEVEE and the CLI contract
def test_eevee_emission_markers(capture, markers, tmp_path):
    """EEVEE (software GL here, ~10 s a view) lands markers as exactly as the other engines."""
    out = capture.capture_views(objects=markers, rig="orbit", views=2, elevations=(15.0,),
                                resolution=(64, 48), engine="EEVEE", samples=4,
                                out_dir=tmp_path / "ee")
    check_markers(out, min_checked=6)


def _run_cli(*args):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-m", "blender_gs_addon", *map(str, args)],
                          capture_output=True, text=True, cwd=root, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(root)})


def test_capture_command_views_and_scene_cameras(markers, tmp_path, blender):
    """``--views N`` writes N training views; ``--rig cameras`` without a collection takes every
    camera of the file."""
    bpy = blender
    for i, loc in enumerate([(5.0, -4.0, 3.0), (-4.0, -5.0, 2.0), (0.5, 6.0, 1.0)]):
        obj = bpy.data.objects.new(f"photo cam {i}", bpy.data.cameras.new(f"photo cam {i}"))
        bpy.context.scene.collection.objects.link(obj)
        obj.location = loc
        _look_at(obj, (0.4, 0.0, 1.3))
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    proc = _run_cli("capture", "--blend", blend, "--objects", ",".join(o.name for o in markers),
                    "--rig", "cameras", "--resolution", "40x30", "--engine", "WORKBENCH",
                    "--out", tmp_path / "cams")
    assert proc.returncode == 0, proc.stderr
    rows, _ = _load_frames(tmp_path / "cams")
    assert sorted(f["name"] for f, _, _ in rows) == [f"photo cam {i}" for i in range(3)]

    proc = _run_cli("capture", "--builtin", "toy", "--rig", "orbit", "--views", 3,
                    "--resolution", 24, "--engine", "WORKBENCH", "--out", tmp_path / "orbit")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "orbit" / "transforms_train.json").read_text())
    assert len(meta["frames"]) == 3

    empty = tmp_path / "empty.blend"
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    bpy.ops.wm.save_as_mainfile(filepath=str(empty))
    proc = _run_cli("capture", "--blend", empty, "--rig", "cameras", "--resolution", 24,
                    "--engine", "WORKBENCH", "--out", tmp_path / "none")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the scene has no cameras" in lines[0]
    assert not (tmp_path / "none" / "transforms_train.json").exists()


# ------------------------------------------------------------- data set from camera photos
def _photo(path: Path, width: int, height: int, seed: int) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def _photo_cameras(bpy, tmp_path):
    """Four cameras with lens/sensor-fit/shift variety, each showing a photo as background."""
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 112, 80
    scene.render.resolution_percentage = 100
    settings = [  # (fit, sensor w, h, lens, shift x, y, location, photo size, frame method)
        ('HORIZONTAL', 36.0, 24.0, 30.0, 0.1, -0.05, (1.5, -6.0, 3.0), (56, 40), 'FIT'),
        ('VERTICAL', 36.0, 20.0, 28.0, -0.08, 0.12, (-5.0, -3.0, 2.0), (112, 80), 'CROP'),
        ('AUTO', 32.0, 18.0, 24.0, 0.05, 0.07, (4.0, 4.0, 4.0), (70, 40), 'STRETCH'),
        ('AUTO', 36.0, 24.0, 35.0, 0.0, 0.0, (-3.0, 5.0, -1.0), (28, 20), 'FIT'),
    ]
    cams = []
    for i, (fit, sw, sh, lens, sx, sy, loc, (w, h), method) in enumerate(settings):
        data = bpy.data.cameras.new(f"photo {i}")
        data.sensor_fit, data.sensor_width, data.sensor_height = fit, sw, sh
        data.lens, data.shift_x, data.shift_y = lens, sx, sy
        obj = bpy.data.objects.new(f"photo {i}", data)
        scene.collection.objects.link(obj)
        obj.location = loc
        _look_at(obj, (0.4, 0.0, 1.3))
        bg = data.background_images.new()
        bg.image = bpy.data.images.load(str(_photo(tmp_path / f"p{i}.png", w, h, i)))
        bg.frame_method = method
        data.show_background_images = True
        cams.append(obj)
    bpy.context.view_layer.update()
    return cams


def test_dataset_from_camera_photos_projects_like_blender(markers, tmp_path, blender):
    """Every marker projects, through the written data set, where Blender's own camera frame
    (world_to_camera_view: lens, sensor fit, shift, render aspect) puts it in the photo."""
    from bpy_extras.object_utils import world_to_camera_view
    from gaussian_splats.scene.camera_views_export import dataset_from_cameras

    from blender_gs_addon.datasets.nerf_synthetic import read_transforms

    bpy = blender
    scene = bpy.context.scene
    cams = _photo_cameras(bpy, tmp_path)
    out = dataset_from_cameras(scene=scene, out_dir=tmp_path / "ds", objects=markers,
                               test_views=1)
    dataset = read_transforms(out)
    assert len(dataset.views) == 4 and len(dataset.split_views("test")) == 1
    points = np.array(list(MARKER_POINTS.values()))  # [6, 3] user world
    normalised = points @ dataset.normalisation[:3, :3].T + dataset.normalisation[:3, 3]
    assert np.abs(normalised).max() < 0.5 + 1e-6  # the markers fill the unit cube
    from mathutils import Vector

    for view, cam in zip(sorted(dataset.views, key=lambda v: v.name), cams):
        assert view.name == cam.name and view.file_path.is_file()
        size = bpy.data.images[f"p{cams.index(cam)}.png"].size
        assert (view.width, view.height) == tuple(size)
        ours = view.project(normalised)  # [6, 2] pixels
        frame = np.array([tuple(world_to_camera_view(scene, cam, Vector(p))) for p in points])
        blender_px = np.stack([frame[:, 0] * view.width, (1.0 - frame[:, 1]) * view.height], 1)
        np.testing.assert_allclose(ours, blender_px, atol=1e-3)


def test_dataset_from_camera_photos_operator_and_bad_input(tmp_path, blender):
    from blender_gs_addon.datasets.nerf_synthetic import read_transforms

    bpy = blender
    cams = _photo_cameras(bpy, tmp_path)
    for obj in bpy.context.scene.objects:
        obj.select_set(False)
    # No selection: framed around where the cameras look, which they all do at one point.
    assert bpy.ops.gs.dataset_from_cameras(directory=str(tmp_path / "op")) == {'FINISHED'}
    dataset = read_transforms(tmp_path / "op")
    target = dataset.normalisation @ np.array([0.4, 0.0, 1.3, 1.0])
    np.testing.assert_allclose(target[:3], 0.0, atol=1e-6)
    with pytest.raises(RuntimeError, match="already holds a data set"):
        bpy.ops.gs.dataset_from_cameras(directory=str(tmp_path / "op"))

    cams[0].data.background_images[0].rotation = 0.3
    with pytest.raises(RuntimeError, match="camera 'photo 0'.*rotated"):
        bpy.ops.gs.dataset_from_cameras(directory=str(tmp_path / "bad1"))
    cams[0].data.background_images[0].rotation = 0.0
    cams[2].data.background_images[0].frame_method = 'FIT'  # a 70×40 photo on a 112×80 frame
    with pytest.raises(RuntimeError, match="camera 'photo 2'.*another aspect"):
        bpy.ops.gs.dataset_from_cameras(directory=str(tmp_path / "bad2"))
    for cam in cams:
        cam.data.background_images.clear()
    with pytest.raises(RuntimeError, match="has a background image"):
        bpy.ops.gs.dataset_from_cameras(directory=str(tmp_path / "bad3"))
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3))


# ------------------------------------------------------------------------- the modal path
def _modal_capture(bpy, gs_extension, markers):
    """gs.capture_views's modal methods on a stand-in operator and context (background mode
    has no event loop, so the test plays the timer and the Esc key)."""
    from types import SimpleNamespace

    from fakes import RecordingWindowManager, plain_operator
    from gaussian_splats.operators.capture import GS_OT_capture_views as op_class

    reports, status = [], []
    op = plain_operator(op_class, lambda levels, message: reports.append((set(levels), message)))
    wm = RecordingWindowManager()
    context = SimpleNamespace(
        scene=bpy.context.scene, view_layer=bpy.context.view_layer, selected_objects=markers,
        window_manager=wm, window="window", area=None,
        workspace=SimpleNamespace(status_text_set=status.append))
    return op, context, wm, reports, status


def test_modal_capture_shows_progress_and_esc_restores(markers, tmp_path, blender,
                                                       gs_extension):
    from types import SimpleNamespace

    bpy = blender
    _user_camera_scene(bpy)
    props = bpy.context.scene.gs_capture
    props.rig, props.views, props.test_views = "sphere", 3, 0
    props.resolution_x, props.resolution_y = 32, 24
    props.engine, props.film = "WORKBENCH", "TRANSPARENT"
    props.output_dir = str(tmp_path / "modal")
    before = snapshot(bpy)
    tick = SimpleNamespace(type='TIMER', value='NOTHING', timer="timer")  # the operator's timer
    esc = SimpleNamespace(type='ESC', value='PRESS')

    op, context, wm, reports, status = _modal_capture(bpy, gs_extension, markers)
    assert op._start_modal(context) == {'RUNNING_MODAL'}
    assert wm.calls[:3] == [("progress_begin", 0, 3), "timer_add", "modal_handler_add"]
    assert op.modal(context, tick) == {'RUNNING_MODAL'}  # one view rendered
    assert ("progress", 1) in wm.calls and "Esc to cancel" in status[-1]
    assert op.modal(context, esc) == {'CANCELLED'}
    assert wm.calls[-2:] == ["timer_remove", "progress_end"] and status[-1] is None
    assert any("cancelled" in m for _, m in reports)
    assert_same_state(before, snapshot(bpy))
    assert not (tmp_path / "modal" / "transforms_train.json").exists()

    op, context, wm, reports, status = _modal_capture(bpy, gs_extension, markers)
    assert op._start_modal(context) == {'RUNNING_MODAL'}
    results = [op.modal(context, tick) for _ in range(10)]
    assert results.index({'FINISHED'}) == 2 or results.index({'FINISHED'}) == 3
    assert [c for c in wm.calls if isinstance(c, tuple) and c[0] == "progress"][-1][1] == 3
    assert_same_state(before, snapshot(bpy))
    meta = json.loads((tmp_path / "modal" / "transforms_train.json").read_text())
    assert len(meta["frames"]) == 3
