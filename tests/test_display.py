"""The splat display (EEVEE, Cycles) and the exact render engine against analytic projections.

A single Gaussian with known mean and covariance must land where the EWA projection puts it,
with its analytic alpha footprint, in all three renderers; a random set must agree between the
displays and the exact engine (PSNR floors); bad input renders without crashing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from blender_gs_addon import SplatSet
from blender_gs_addon.errors import GSError

pytestmark = pytest.mark.bpy


@pytest.fixture
def mods(gs_extension):
    ext = gs_extension
    import bpy

    from blender_gs_addon.extension import extension_module

    engine = extension_module("scene.render_engine")
    if not engine.GS_RenderEngine.is_registered:  # registered by the extension once wired in
        bpy.utils.register_class(engine.GS_RenderEngine)
    return (ext.scene.splat_object, extension_module("scene.splat_display"), engine)


def _single(position, log_scales, quat, opacity_logit, dc) -> SplatSet:
    return SplatSet.from_arrays(
        positions=np.array([position]), log_scales=np.array([log_scales]),
        rotations=np.array([quat]), opacity_logits=np.array([opacity_logit]),
        sh_dc=np.array([dc]), sh_rest=np.zeros((1, 0, 3)))


def _camera(bpy, name, location, rotation, *, lens=40.0, shift=(0.0, 0.0)):
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    bpy.context.scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = location, rotation
    cam.data.lens = lens
    cam.data.shift_x, cam.data.shift_y = shift
    return cam


def _analytic(bpy, obj, cam, splats: SplatSet, width, height):
    """mean2d [2], Σ₂ᴅ [2, 2] (with gsplat's 0.3 px² blur) from Blender's own camera matrices."""
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    p = np.array(cam.calc_matrix_camera(dg, x=width, y=height), dtype=np.float64)
    fx, fy = p[0, 0] * width / 2, p[1, 1] * height / 2
    cx, cy = width / 2 * (1 - p[0, 2]), height / 2 * (1 + p[1, 2])
    world_to_cam = np.linalg.inv(np.array(cam.matrix_world, dtype=np.float64))
    local_to_cv = np.diag([1.0, -1.0, -1.0, 1.0]) @ world_to_cam @ np.array(obj.matrix_world)
    mean = local_to_cv[:3, :3] @ splats.positions[0] + local_to_cv[:3, 3]
    w, x, y, z = splats.rotations[0] / np.linalg.norm(splats.rotations[0])
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    m = local_to_cv[:3, :3] @ rot @ np.diag(np.exp(splats.log_scales[0].astype(np.float64)))
    jac = np.array([[fx / mean[2], 0, -fx * mean[0] / mean[2] ** 2],
                    [0, fy / mean[2], -fy * mean[1] / mean[2] ** 2]])
    cov = jac @ m @ m.T @ jac.T + 0.3 * np.eye(2)
    mean2d = np.array([fx * mean[0] / mean[2] + cx, fy * mean[1] / mean[2] + cy])
    return mean2d, cov


def _alpha_map(mean2d, cov, opacity, width, height):
    jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d = np.stack([jj - mean2d[0], ii - mean2d[1]], -1)
    q = np.einsum("hwi,ij,hwj->hw", d, np.linalg.inv(cov), d)
    alpha = np.minimum(opacity * np.exp(-0.5 * q), 0.999)
    return np.where(alpha >= 1 / 255, alpha, 0.0)


def test_single_gaussian_lands_at_analytic_pixel_in_all_renderers(blender, mods):
    splat_object, display, engine = mods
    bpy = blender
    splats = _single([0.2, -0.1, 0.3], [-2.0, -3.2, -2.6], [0.9, 0.3, -0.2, 0.25], 2.0,
                     [0.9, -0.4, 0.2])
    obj = splat_object.create_splat_object(splats, name="one")
    obj.rotation_euler = (1.4, 0.2, 0.3)  # any similarity: the display works in object frame
    obj.scale = (1.3, 1.3, 1.3)
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.4, -2.5, 0.6), (1.35, 0.0, 0.1), shift=(0.04, -0.03))
    width, height = 48, 36
    scene.render.resolution_x, scene.render.resolution_y = width, height
    mean2d, cov = _analytic(bpy, obj, scene.camera, splats, width, height)
    opacity = 1 / (1 + math.exp(-2.0))
    expected = _alpha_map(mean2d, cov, opacity, width, height)
    colour = np.maximum(0.5 + 0.28209479177387814 * np.array([0.9, -0.4, 0.2]), 0)
    assert 8 < mean2d[0] < width - 8 and 8 < mean2d[1] < height - 8  # the test sees it all
    for name in ("exact", "cycles", "eevee"):
        engine.configure_scene(scene, name)
        image = engine.render_scene_to_array(scene)
        alpha = image[..., 3]
        assert np.abs(alpha - expected).max() < 0.01, name
        jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        centroid = np.array([(alpha * jj).sum(), (alpha * ii).sum()]) / alpha.sum()
        want = np.array([(expected * jj).sum(), (expected * ii).sum()]) / expected.sum()
        assert np.abs(centroid - want).max() < 0.05, name
        rgb = image[..., :3]
        np.testing.assert_allclose(rgb, expected[..., None] * colour, atol=0.01, err_msg=name)


def test_quads_follow_camera_moves_and_active_camera_changes(blender, mods):
    splat_object, display, _engine = mods
    bpy = blender
    splats = _single([0.0, 0.1, -0.2], [-1.5, -2.5, -2.0], [0.8, -0.1, 0.4, 0.3], 1.0,
                     [0.0, 0.0, 0.0])
    obj = splat_object.create_splat_object(splats, name="one")
    scene = bpy.context.scene
    width, height = 64, 40
    scene.render.resolution_x, scene.render.resolution_y = width, height
    cams = [_camera(bpy, "a", (0.0, -3.0, 0.3), (1.5, 0.0, 0.0)),
            _camera(bpy, "b", (2.5, 1.0, 1.0), (1.2, 0.0, 2.0), lens=70.0, shift=(0.1, 0.0))]
    seen = []
    for cam, move in ((cams[0], None), (cams[0], (0.3, -2.0, -0.4)), (cams[1], None)):
        scene.camera = cam
        if move is not None:
            cam.location = move
        mean2d, cov = _analytic(bpy, obj, cam, splats, width, height)
        dg = bpy.context.evaluated_depsgraph_get()
        mesh = obj.evaluated_get(dg).data
        assert len(mesh.polygons) == 1 and len(mesh.vertices) == 4
        co = np.empty(12, np.float32)
        mesh.attributes["position"].data.foreach_get("vector", co)
        uv = np.empty(12, np.float32)
        mesh.attributes["gsd_uv"].data.foreach_get("vector", uv)
        world = np.array(obj.matrix_world) @ np.c_[co.reshape(4, 3), np.ones(4)].T
        p = np.array(cam.calc_matrix_camera(dg, x=width, y=height)) @ np.linalg.inv(
            np.array(cam.matrix_world)) @ world
        pix = np.stack([(p[0] / p[3] + 1) * width / 2, (1 - p[1] / p[3]) * height / 2], -1)
        d = pix - mean2d
        q = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        np.testing.assert_allclose(q, (uv.reshape(4, 3)[:, :2] ** 2).sum(1), rtol=1e-3)
        np.testing.assert_allclose(pix.mean(0), mean2d, atol=1e-3)
        seen.append(pix)
    assert np.abs(seen[0] - seen[1]).max() > 1 and np.abs(seen[0] - seen[2]).max() > 1


def _random_splats(count, seed=0) -> SplatSet:
    rng = np.random.default_rng(seed)
    return SplatSet.from_arrays(
        positions=rng.normal(0, 0.5, (count, 3)), log_scales=rng.normal(-2.5, 0.4, (count, 3)),
        rotations=rng.normal(size=(count, 4)), opacity_logits=rng.normal(0, 1.5, count),
        sh_dc=rng.normal(0, 1, (count, 3)), sh_rest=rng.normal(0, 0.2, (count, 15, 3)))


def _psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-20)))


def test_displays_match_exact_engine_on_random_set(blender, mods):
    splat_object, display, engine = mods
    bpy = blender
    from blender_gs_addon.datasets.camera_views import CameraView
    from blender_gs_addon.evaluate import render_views

    splats = _random_splats(400)
    obj = splat_object.create_splat_object(splats, name="random")
    obj.location = (0.1, 0.2, -0.1)
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.3, -4.0, 0.5), (1.47, 0.0, 0.05))
    width, height = 56, 42
    scene.render.resolution_x, scene.render.resolution_y = width, height
    images = {}
    for name in ("exact", "cycles", "eevee"):
        engine.configure_scene(scene, name)
        images[name] = engine.render_scene_to_array(scene)
    # The engine's camera and transforms against the core renderer used directly.
    viewmat, k, w, h = engine.scene_camera(scene)
    view = CameraView(name="v", file_path=None, width=w, height=h, fx=k[0, 0], fy=k[1, 1],
                      cx=k[0, 2], cy=k[1, 2], camera_to_world=np.linalg.inv(viewmat) @ np.diag(
                          [1.0, -1.0, -1.0, 1.0]), split="test")
    rgb, alpha = render_views(splats.transformed(np.array(obj.matrix_world)), [view],
                              background=(0.0, 0.0, 0.0))
    # (render_views clamps colours to [0, 1]; the engine keeps them as rendered.)
    assert np.abs(np.clip(images["exact"][..., :3], 0, 1) - rgb[0]).max() < 1e-4
    assert np.abs(images["exact"][..., 3] - alpha[0, ..., 0]).max() < 1e-4
    assert images["exact"][..., 3].mean() > 0.3  # the set fills the view
    exact = images["exact"]
    assert _psnr(images["eevee"], exact) >= 35.0
    assert _psnr(images["cycles"], exact) >= 35.0


def test_bad_input(blender, mods):
    splat_object, display, engine = mods
    bpy = blender
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 24, 16
    messages = []

    def report(level, msg):
        messages.append((set(level), msg))

    # No camera: a clear error.
    with pytest.raises(GSError, match="no active camera"):
        engine.render_exact(bpy.context.evaluated_depsgraph_get(), report=report)
    scene.camera = _camera(bpy, "cam", (0.0, -4.0, 0.0), (math.pi / 2, 0.0, 0.0))
    # Empty scene: transparent with transparent film, else the world's colour.
    out = engine.render_exact(bpy.context.evaluated_depsgraph_get(), report=report)
    assert out["rgba"].shape == (16, 24, 4) and (out["rgba"][..., 3] == 1).all()
    scene.render.film_transparent = True
    out = engine.render_exact(bpy.context.evaluated_depsgraph_get(), report=report)
    assert out["rgba"].shape == (16, 24, 4) and not out["rgba"].any()
    assert (out["depth"] == engine.NO_DEPTH).all()
    # A mesh without splat attributes: skipped with a warning naming it; no display for it.
    cube = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    scene.collection.objects.link(cube)
    with pytest.raises(GSError, match="no splat attributes"):
        display.add_display(cube)
    # NaN attributes: dropped by the display and the engine, never a crash or NaN pixels.
    splats = _random_splats(30, seed=3)
    obj = splat_object.create_splat_object(splats, name="nan")
    opac = splats.opacity_logits.copy()
    opac[[2, 5]] = np.nan
    obj.data.attributes["gs_opacity"].data.foreach_set("value", opac)
    pos = splats.positions.copy()
    pos[7] = np.inf
    obj.data.attributes["position"].data.foreach_set("vector", pos.reshape(-1))
    obj.data.update()
    messages.clear()
    out = engine.render_exact(bpy.context.evaluated_depsgraph_get(), report=report)
    assert np.isfinite(out["rgba"]).all() and out["rgba"][..., 3].max() > 0
    assert any("Cube" in m for _, m in messages)
    assert any("NaN" in m and "3 of 30" in m for _, m in messages)
    dg = bpy.context.evaluated_depsgraph_get()
    quads = len(obj.evaluated_get(dg).data.polygons)
    assert quads <= 27
    engine.configure_scene(scene, "cycles")
    image = engine.render_scene_to_array(scene)
    assert np.isfinite(image).all()
    # Options and removal.
    display.set_display_options(obj, opacity_threshold=1.0)
    assert len(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.polygons) == 0
    with pytest.raises(GSError, match="SH degree"):
        display.set_display_options(obj, sh_degree=5)
    assert display.remove_display(obj) and not display.remove_display(obj)
    assert len(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices) == 30
