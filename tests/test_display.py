"""The splat display (EEVEE, Cycles) and the exact render engine against analytic projections.

A single Gaussian with known mean and covariance must land where the EWA projection puts it,
with its analytic alpha footprint, in all three renderers; a random set must agree between the
displays and the exact engine (PSNR floors); bad input renders without crashing.
"""

from __future__ import annotations

import logging
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_torch

from blender_gs_addon import SplatSet, devices
from blender_gs_addon import mesh_layout as layout
from blender_gs_addon.conventions.colour import (
    display_to_linear,
    linear_to_srgb,
    srgb_to_linear,
)
from blender_gs_addon.errors import GSError
from blender_gs_addon.extension import extension_module

pytestmark = pytest.mark.bpy


@pytest.fixture
def mods(gs_extension):
    ext = gs_extension
    import bpy

    from blender_gs_addon.extension import extension_module

    engine = extension_module("scene.render_engine")
    if not engine.GS_RenderEngine.is_registered:  # registered by the extension once wired in
        bpy.utils.register_class(engine.GS_RenderEngine)
    return (ext.scene.splat_object, extension_module("scene.display"), engine)


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
    obj = splat_object.create_splat_object(splats, name="one", layout="MESH")
    obj.rotation_euler = (1.4, 0.2, 0.3)  # any similarity: the display works in object frame
    obj.scale = (1.3, 1.3, 1.3)
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.4, -2.5, 0.6), (1.35, 0.0, 0.1), shift=(0.04, -0.03))
    width, height = 48, 36
    scene.render.resolution_x, scene.render.resolution_y = width, height
    mean2d, cov = _analytic(bpy, obj, scene.camera, splats, width, height)
    opacity = 1 / (1 + math.exp(-2.0))
    expected = _alpha_map(mean2d, cov, opacity, width, height)
    # SH + 0.5 is sRGB; Blender's renders hold it scene-linear (as native splats do).
    colour = srgb_to_linear(0.5 + 0.28209479177387814 * np.array([0.9, -0.4, 0.2]))
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
    obj = splat_object.create_splat_object(splats, name="one", layout="MESH")
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

    splats = _random_splats(400)
    obj = splat_object.create_splat_object(splats, name="random", layout="MESH")
    obj.location = (0.1, 0.2, -0.1)
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.3, -4.0, 0.5), (1.47, 0.0, 0.05))
    width, height = 56, 42
    scene.render.resolution_x, scene.render.resolution_y = width, height
    images = {}
    for name in ("exact", "cycles", "eevee"):
        engine.configure_scene(scene, name)
        images[name] = engine.render_scene_to_array(scene)
    # The engine's camera and transforms against the rasteriser given them directly: its sRGB
    # image, converted to scene-linear after compositing.
    view = _scene_view(engine, scene)
    still = _rasterize(engine, splats.transformed(np.array(obj.matrix_world)), view)
    linear = display_to_linear(still["rgb"], still["alpha"])
    assert np.abs(images["exact"][..., :3] - linear).max() < 1e-4
    assert np.abs(images["exact"][..., 3] - still["alpha"]).max() < 1e-4
    assert images["exact"][..., 3].mean() > 0.3  # the set fills the view
    # The displays convert each splat's colour and blend in linear light, as Blender's native
    # splats do: against the rasteriser blending the converted colours, measured here (bpy
    # 5.0.1, CPU, 56×42, 400 splats) EEVEE 63.8 dB, Cycles 93.2 dB. The floors are the issue's
    # goals (EEVEE ≥ 30, Cycles ≥ 28 dB): conservative, so other Blender versions and GPU
    # drivers pass, yet a misplaced, flipped or mis-sized splat set (≈ 10–20 dB) fails.
    reference = _core_render(splats, obj, view)
    eevee, cycles, exact = (_clipped(images[name]) for name in ("eevee", "cycles", "exact"))
    assert _psnr(eevee, reference) >= 30.0
    assert _psnr(cycles, reference) >= 28.0
    # Blending in linear light differs from the exact engine's sRGB blend only where
    # semi-transparent splats of different colours overlap: 26.2 dB on this dense set.
    assert _psnr(cycles, exact) < _psnr(cycles, reference) - 10.0
    assert _psnr(cycles, exact) >= 20.0


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
    obj = splat_object.create_splat_object(splats, name="nan", layout="MESH")
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


# ------------------------------------------------------------------------- per-object options
def _scene_view(engine, scene):
    """The scene camera as a CameraView (for the core renderer)."""
    import bpy

    from blender_gs_addon.datasets.camera_views import CameraView

    bpy.context.view_layer.update()  # matrix_world of objects moved since the last update

    viewmat, k, w, h = engine.scene_camera(scene)
    return CameraView(name="v", file_path=None, width=w, height=h, fx=k[0, 0], fy=k[1, 1],
                      cx=k[0, 2], cy=k[1, 2], camera_to_world=np.linalg.inv(viewmat) @ np.diag(
                          [1.0, -1.0, -1.0, 1.0]), split="test")


def _rasterize(engine, splats: SplatSet, view) -> dict:
    """The exact rasteriser's still of world-frame splats (in this Python with torch, else in
    the worker, as F12 does)."""
    from blender_gs_addon.conventions.frames import opengl_c2w_to_viewmat

    return engine.rasterize_still(splats, viewmat=opengl_c2w_to_viewmat(view.camera_to_world),
                                  k=view.intrinsics_matrix(), width=view.width,
                                  height=view.height)


def _core_render(splats: SplatSet, obj, view) -> np.ndarray:
    """[H, W, 4] premultiplied scene-linear RGBA (colour clamped to [0, 1]) of the object's
    splats as the display draws them: the rasteriser blending each splat's colour seen from
    ``view``, converted to linear per splat (SH baked into a linear DC term for this camera)."""
    from blender_gs_addon.sh import SH_C0, eval_sh_color

    world = splats.transformed(np.array(obj.matrix_world))
    dirs = world.positions - view.camera_to_world[:3, 3]
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    colour = srgb_to_linear(eval_sh_color(world.sh_dc, world.sh_rest, dirs))
    baked = SplatSet.from_arrays(positions=world.positions, log_scales=world.log_scales,
                                 rotations=world.rotations, opacity_logits=world.opacity_logits,
                                 sh_dc=(colour - 0.5) / SH_C0)
    still = _rasterize(extension_module("scene.render_engine"), baked, view)
    return np.concatenate([np.clip(still["rgb"], 0.0, 1.0), still["alpha"][..., None]], axis=-1)


def _clipped(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[..., :3] = np.clip(out[..., :3], 0.0, 1.0)  # as _core_render clamps its reference
    return out


def _option_scene(bpy, splat_object, engine, splats, *, name="opts"):
    obj = splat_object.create_splat_object(splats, name=name, layout="MESH")
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.2, -4.0, 0.4), (1.47, 0.0, 0.05))
    scene.render.resolution_x, scene.render.resolution_y = 40, 30
    engine.configure_scene(scene, "cycles")
    return obj, scene, _scene_view(engine, scene)


def test_sh_degree_option_matches_exact_engine_at_that_degree(blender, mods):
    splat_object, display, engine = mods
    bpy = blender
    splats = _random_splats(150, seed=11)
    splats = SplatSet.from_arrays(  # strong view-dependent bands: each degree looks different
        positions=splats.positions, log_scales=splats.log_scales, rotations=splats.rotations,
        opacity_logits=splats.opacity_logits, sh_dc=splats.sh_dc, sh_rest=splats.sh_rest * 4)
    obj, scene, view = _option_scene(bpy, splat_object, engine, splats)
    full = _core_render(splats, obj, view)
    for degree in (1, 2):
        display.set_display_options(obj, sh_degree=degree)
        image = _clipped(engine.render_scene_to_array(scene))
        same = _core_render(splats.with_sh_degree(degree), obj, view)
        assert _psnr(image, same) >= 40.0, degree
        assert _psnr(image, full) < _psnr(image, same) - 10.0, degree  # the option took effect


def test_scale_multiplier_matches_exact_with_log_scales_plus_ln2(blender, mods):
    splat_object, display, engine = mods
    bpy = blender
    splats = _random_splats(120, seed=12).with_sh_degree(0)
    obj, scene, view = _option_scene(bpy, splat_object, engine, splats)
    display.set_display_options(obj, scale_multiplier=2.0)
    image = _clipped(engine.render_scene_to_array(scene))
    doubled = SplatSet.from_arrays(
        positions=splats.positions, log_scales=splats.log_scales + math.log(2.0),
        rotations=splats.rotations, opacity_logits=splats.opacity_logits, sh_dc=splats.sh_dc,
        sh_rest=splats.sh_rest)
    assert _psnr(image, _core_render(doubled, obj, view)) >= 40.0
    assert _psnr(image, _core_render(splats, obj, view)) < 30.0
    # The covered area grows: twice the scale, about four times the footprint.
    assert image[..., 3].sum() > 1.5 * _core_render(splats, obj, view)[..., 3].sum()


def _evaluated(bpy, obj):
    """(quads drawn, None or the points drawn: {"position", "radius", "color"} arrays)."""
    dg = bpy.context.evaluated_depsgraph_get()
    ob = obj.evaluated_get(dg)
    quads = len(ob.data.polygons)
    assert len(ob.data.vertices) == 4 * quads
    geometry = ob.evaluated_geometry()  # owns the point cloud: read it while alive
    cloud = geometry.pointcloud
    if cloud is None:
        return quads, None
    n = len(cloud.points)
    out = {"position": np.empty(3 * n, np.float32), "radius": np.empty(n, np.float32),
           "color": np.empty(4 * n, np.float32)}
    cloud.attributes["position"].data.foreach_get("vector", out["position"])
    cloud.attributes["radius"].data.foreach_get("value", out["radius"])
    cloud.attributes["gsd_color"].data.foreach_get("color", out["color"])
    out["position"] = out["position"].reshape(-1, 3)
    out["color"] = out["color"].reshape(-1, 4)
    return quads, out


def test_opacity_threshold_and_viewport_points(blender, mods):
    splat_object, display, engine = mods
    bpy = blender
    from blender_gs_addon.sh import SH_C0

    splats = _random_splats(200, seed=13)
    obj, scene, view = _option_scene(bpy, splat_object, engine, splats)
    opacity = splats.opacities()
    above = opacity >= 0.6
    assert 20 < above.sum() < 180  # a mid-range threshold
    display.set_display_options(obj, opacity_threshold=0.6)
    quads, cloud = _evaluated(bpy, obj)
    assert cloud is None and quads == above.sum()
    # Viewport points: one point per kept splat at its centre, DC colour, radius the largest
    # scale times the multiplier; no quads in the viewport.
    display.set_display_options(obj, viewport_points=True, scale_multiplier=1.5)
    quads, cloud = _evaluated(bpy, obj)
    assert quads == 0 and cloud is not None and len(cloud["radius"]) == above.sum()
    np.testing.assert_allclose(cloud["position"], splats.positions[above], atol=1e-6)
    np.testing.assert_allclose(cloud["radius"], 1.5 * np.exp(splats.log_scales[above]).max(1),
                               rtol=1e-5)
    np.testing.assert_allclose(cloud["color"][:, :3], np.maximum(
        SH_C0 * splats.sh_dc[above] + 0.5, 0.0), atol=1e-5)
    # Renders still draw the Gaussians (viewport only), with the threshold applied.
    display.set_display_options(obj, scale_multiplier=1.0)
    image = _clipped(engine.render_scene_to_array(scene))
    assert _psnr(image, _core_render(splats.subset(above), obj, view)) >= 40.0


def test_no_camera_or_orthographic_camera_shows_points_and_says_why(blender, mods):
    splat_object, display, _engine = mods
    bpy = blender
    splats = _random_splats(50, seed=15)
    kept = int((splats.opacities() >= 1 / 255).sum())
    obj = splat_object.create_splat_object(splats, name="s", display=False, layout="MESH")
    scene = bpy.context.scene
    messages = []
    display.add_display(obj, report=lambda level, msg: messages.append((set(level), msg)))
    assert any('WARNING' in lv and "no active camera" in m for lv, m in messages)
    quads, cloud = _evaluated(bpy, obj)
    assert quads == 0 and len(cloud["radius"]) == kept
    cam = _camera(bpy, "cam", (0.0, -4.0, 0.0), (math.pi / 2, 0.0, 0.0))
    scene.camera = cam
    assert display.camera_problem(scene) is None
    quads, cloud = _evaluated(bpy, obj)
    assert quads == kept and cloud is None
    cam.data.type = 'ORTHO'
    assert "orthographic" in display.camera_problem(scene)
    quads, cloud = _evaluated(bpy, obj)
    assert quads == 0 and len(cloud["radius"]) == kept
    empty = bpy.data.objects.new("not a camera", None)
    scene.collection.objects.link(empty)
    scene.camera = empty
    assert "not a camera" in display.camera_problem(scene)
    quads, cloud = _evaluated(bpy, obj)
    assert quads == 0 and len(cloud["radius"]) == kept


def test_cycles_transparent_bounces_raised_never_lowered(blender, mods):
    splat_object, display, engine = mods
    bpy = blender
    n = 40  # a stack of 40 splats along the view axis: one pixel sees all of them
    rng = np.random.default_rng(16)
    splats = SplatSet.from_arrays(
        positions=np.c_[rng.normal(0, 0.02, n), np.linspace(-1, 1, n), rng.normal(0, 0.02, n)],
        log_scales=np.full((n, 3), -1.6), rotations=np.tile([1.0, 0, 0, 0], (n, 1)),
        opacity_logits=np.full(n, -0.8), sh_dc=rng.normal(0, 1, (n, 3)))
    obj = splat_object.create_splat_object(splats, name="stack", up_axis="+Z", layout="MESH")
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.0, -5.0, 0.0), (math.pi / 2, 0.0, 0.0))
    scene.render.resolution_x = scene.render.resolution_y = 24
    engine.configure_scene(scene, "cycles")  # 1 sample, no transparent Russian roulette
    exact = _core_render(splats, obj, _scene_view(engine, scene))
    scene.cycles.transparent_max_bounces = 8  # Blender's default
    assert _psnr(_clipped(engine.render_scene_to_array(scene)), exact) < 25.0
    messages = []
    display.add_display(obj, report=lambda level, msg: messages.append(msg))
    assert scene.cycles.transparent_max_bounces == display.CYCLES_TRANSPARENT_BOUNCES
    assert any("transparent bounces 8 → 256" in m for m in messages)
    assert _psnr(_clipped(engine.render_scene_to_array(scene)), exact) >= 40.0
    scene.cycles.transparent_max_bounces = 700
    messages.clear()
    display.add_display(obj, report=lambda level, msg: messages.append(msg))
    assert scene.cycles.transparent_max_bounces == 700
    assert not any("bounces" in m for m in messages)


# ------------------------------------------------------------------------ depth, animation
def _read_exr_channel(path, channel: str) -> np.ndarray:
    """One float channel of an uncompressed (multi-part) scanline OpenEXR file, row 0 on top."""
    b = Path(path).read_bytes()
    assert b[:4] == b"\x76\x2f\x31\x01"
    multipart = bool(struct.unpack_from("<i", b, 4)[0] & 0x1000)
    i, headers = 8, []
    while True:
        header = {}
        while b[i] != 0:
            j = b.index(b"\0", i)
            k = b.index(b"\0", j + 1)
            size = struct.unpack_from("<i", b, k + 1)[0]
            header[b[i:j].decode()] = b[k + 5:k + 5 + size]
            i = k + 5 + size
        i += 1
        headers.append(header)
        if not multipart or b[i] == 0:
            i += int(multipart)
            break
    tables = []
    for h in headers:
        x0, y0, x1, y1 = struct.unpack("<4i", h["dataWindow"])
        assert h["compression"] == b"\0", "write the EXR with exr_codec 'NONE'"
        count = struct.unpack("<i", h["chunkCount"])[0] if multipart else y1 - y0 + 1
        tables.append(np.frombuffer(b, "<u8", count, i))
        i += 8 * count
    for part, h in enumerate(headers):
        chans, c, p = [], h["channels"], 0
        while c[p] != 0:
            q = c.index(b"\0", p)
            chans.append((c[p:q].decode(), struct.unpack_from("<i", c, q + 1)[0]))
            p = q + 17
        if channel not in [name for name, _ in chans]:
            continue
        x0, y0, x1, y1 = struct.unpack("<4i", h["dataWindow"])
        out = np.empty((y1 - y0 + 1, x1 - x0 + 1), np.float32)
        for offset in tables[part]:
            off = int(offset) + 4 * int(multipart)
            y = struct.unpack_from("<i", b, off)[0]
            off += 8
            for name, kind in chans:
                row = np.frombuffer(b, {0: "<u4", 1: "<f2", 2: "<f4"}[kind], out.shape[1], off)
                off += row.nbytes
                if name == channel:
                    out[y - y0] = row
        return out
    raise KeyError(channel)


def test_depth_pass_of_single_splat_is_its_camera_depth(blender, mods, tmp_path):
    splat_object, _display, engine = mods
    bpy = blender
    splats = _single([0.1, 0.2, 0.0], [-1.5, -2.0, -1.8], [0.9, 0.1, 0.3, -0.2], 3.0,
                     [0.5, 0.0, 0.0])
    obj = splat_object.create_splat_object(splats, name="one", layout="MESH")
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.3, -4.0, 0.5), (1.5, 0.0, 0.1))
    width, height = 32, 24
    engine.configure_scene(scene, "exact")
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.view_layers[0].use_pass_z = True
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0+
        settings.media_type = 'MULTI_LAYER_IMAGE'
    settings.file_format = 'OPEN_EXR_MULTILAYER'
    settings.exr_codec = 'NONE'
    settings.color_depth = '32'
    scene.render.filepath = str(tmp_path / "depth.exr")
    bpy.ops.render.render(write_still=True)
    depth = _read_exr_channel(tmp_path / "depth.exr", "ViewLayer.Depth.Z")
    alpha = _read_exr_channel(tmp_path / "depth.exr", "ViewLayer.Combined.A")
    # Camera-space depth of the mean (along the view axis), from Blender's own matrices.
    world = np.array(obj.matrix_world) @ np.r_[splats.positions[0], 1.0]
    z = -(np.linalg.inv(np.array(scene.camera.matrix_world)) @ world)[2]
    mean2d, _cov = _analytic(bpy, obj, scene.camera, splats, width, height)
    hit = alpha > 0
    assert hit.sum() > 20 and hit[int(mean2d[1]), int(mean2d[0])]
    np.testing.assert_allclose(depth[hit], z, rtol=2e-5)
    assert (depth[~hit] == engine.NO_DEPTH).all()


def test_two_frame_animation_follows_keyed_camera(blender, mods, tmp_path):
    splat_object, _display, engine = mods
    bpy = blender
    from PIL import Image

    splats = _single([0.0, 0.0, 0.0], [-1.8, -2.2, -2.0], [0.9, 0.2, -0.1, 0.3], 2.5,
                     [0.2, 0.4, -0.3])
    obj = splat_object.create_splat_object(splats, name="one", layout="MESH")
    scene = bpy.context.scene
    cam = _camera(bpy, "cam", (0.0, -4.0, 0.0), (math.pi / 2, 0.0, 0.0))
    scene.camera = cam
    for frame, location in ((1, (-0.25, -4.0, 0.1)), (2, (0.3, -3.5, -0.15))):
        cam.location = location
        cam.keyframe_insert("location", frame=frame)
    width, height = 32, 24
    scene.frame_start, scene.frame_end = 1, 2
    opacity = 1 / (1 + math.exp(-2.5))
    jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    for name in ("exact", "eevee"):
        engine.configure_scene(scene, name)
        scene.render.resolution_x, scene.render.resolution_y = width, height
        settings = scene.render.image_settings
        settings.file_format, settings.color_mode, settings.color_depth = 'PNG', 'RGBA', '8'
        scene.render.filepath = str(tmp_path / name / "f_####")
        bpy.ops.render.render(animation=True)
        centroids = []
        for frame in (1, 2):
            scene.frame_set(frame)
            mean2d, cov = _analytic(bpy, obj, cam, splats, width, height)
            expected = _alpha_map(mean2d, cov, opacity, width, height)
            image = np.asarray(Image.open(tmp_path / name / f"f_{frame:04d}.png"), np.float64)
            alpha = image[..., 3] / 255.0
            assert np.abs(alpha - expected).max() < 0.01, (name, frame)
            centroid = np.array([(alpha * jj).sum(), (alpha * ii).sum()]) / alpha.sum()
            want = np.array([(expected * jj).sum(), (expected * ii).sum()]) / expected.sum()
            assert np.abs(centroid - want).max() < 0.05, (name, frame)
            centroids.append(centroid)
        assert np.abs(centroids[0] - centroids[1]).max() > 3  # the camera really moved


# ------------------------------------------------------------------------------ bad input
def test_nan_in_sh_or_rotation_never_breaks_eevee(blender, mods):
    splat_object, _display, engine = mods
    bpy = blender
    splats = _random_splats(40, seed=17)
    obj = splat_object.create_splat_object(splats, name="nan", layout="MESH")
    rest = splats.sh_rest.copy()
    rest[[3, 4], 7, 1] = np.nan
    rest[9, 0, 0] = np.inf
    for k in (0, 7):  # the layout stores one vector attribute per SH term
        obj.data.attributes[layout.sh_rest_attribute(k)].data.foreach_set(
            "vector", np.ascontiguousarray(rest[:, k]).reshape(-1))
    rot = splats.rotations.copy()
    rot[[11, 12]] = np.nan
    obj.data.attributes["gs_rotation"].data.foreach_set("value", rot.reshape(-1))
    obj.data.update()
    bad = np.zeros(40, bool)
    bad[[3, 4, 9, 11, 12]] = True
    good = ~bad & (splats.opacities() >= 1 / 255)
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.2, -4.0, 0.4), (1.47, 0.0, 0.05))
    assert len(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.polygons) == \
        good.sum()
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    engine.configure_scene(scene, "eevee")
    image = engine.render_scene_to_array(scene)
    assert np.isfinite(image).all() and image[..., 3].max() > 0.1
    view = _scene_view(engine, scene)
    assert _psnr(_clipped(image), _core_render(splats.subset(~bad), obj, view)) >= 30.0


@needs_torch  # the in-process half; without torch every exact render here is the worker's
def test_exact_engine_without_torch_renders_through_the_worker(blender, mods, monkeypatch):
    """No torch in Blender's Python: with no Worker Python set, F12 says what to configure;
    with one, the frame comes from the worker and equals the in-process render."""
    from gaussian_splats.preferences import ensure_preferences
    from gaussian_splats.scene import model_runner

    splat_object, _display, engine = mods
    bpy = blender
    scene = bpy.context.scene
    scene.camera = _camera(bpy, "cam", (0.0, -4.0, 0.0), (math.pi / 2, 0.0, 0.0))
    scene.render.resolution_x, scene.render.resolution_y = 40, 30
    engine.configure_scene(scene, "exact")
    scene.render.film_transparent = True
    splat_object.create_splat_object(_random_splats(60, seed=5), name="s", layout="MESH")
    in_process = engine.render_exact(bpy.context.evaluated_depsgraph_get())
    assert in_process["rgba"][..., 3].max() > 0.1

    prefs = ensure_preferences()
    saved = prefs.worker_python
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    # ... as Blender's Python without torch would have found on its first look.
    monkeypatch.setitem(devices._TORCH_STATE, "ok", False)
    try:
        prefs.worker_python = ""
        with pytest.raises(GSError) as err:
            engine.render_exact(bpy.context.evaluated_depsgraph_get())
        text = str(err.value)
        for words in ("Worker Python", "add-on preferences", "EEVEE or Cycles", sys.executable):
            assert words in text, words
        with pytest.raises(RuntimeError, match="Set the Worker Python"):
            bpy.ops.render.render()

        prefs.worker_python = sys.executable  # this environment has torch
        through_worker = engine.render_exact(bpy.context.evaluated_depsgraph_get())
        assert "torch" not in sys.modules or sys.modules["torch"] is None
    finally:
        prefs.worker_python = saved
        model_runner.stop_worker()
    # The same rasterizer on the same data: equal up to float32 rounding of the .ply trip.
    np.testing.assert_allclose(through_worker["rgba"], in_process["rgba"], atol=1e-5)
    hit = in_process["rgba"][..., 3] > 0.01
    np.testing.assert_allclose(through_worker["depth"][hit], in_process["depth"][hit],
                               rtol=1e-5)


def test_blender_without_display_nodes_imports_splats_with_a_warning(blender, mods, monkeypatch,
                                                                     tmp_path, caplog):
    splat_object, display, _engine = mods
    bpy = blender
    from blender_gs_addon.formats import write_splats

    settings = extension_module("scene.display.scene_settings")
    assert "GeometryNodeCameraInfo" in settings.REQUIRED_NODE_TYPES
    assert display.display_support_problem() is None  # this Blender has them all
    # Blender 4.2–4.4 lack Camera Info; pretend this one lacks a node type.
    monkeypatch.setattr(settings, "REQUIRED_NODE_TYPES",
                        settings.REQUIRED_NODE_TYPES + ("GeometryNodeNotInThisBlender",))
    splats = _random_splats(10)
    obj = splat_object.create_splat_object(splats, name="s", display=False, layout="MESH")
    with pytest.raises(GSError, match=r"needs Blender 4\.5 or newer.*GeometryNodeNotInThis"):
        display.add_display(obj)
    with caplog.at_level(logging.WARNING, logger="blender_gs_addon"):
        obj = splat_object.create_splat_object(splats, name="t", layout="MESH")
    assert display.display_modifier(obj) is None and len(obj.data.vertices) == 10
    assert any("Blender 4.5" in r.getMessage() for r in caplog.records)
    path = tmp_path / "s.ply"
    write_splats(path, splats)
    assert bpy.ops.gs.import_splats(filepath=str(path)) == {'FINISHED'}
    imported = bpy.context.active_object  # native on 5.3+: drawn by Blender, no display
    assert imported.name.startswith("s") and splat_object.splat_count(imported) == 10
    assert display.display_modifier(imported) is None


def test_display_group_is_appended_from_the_cache_in_later_files(blender, mods, monkeypatch,
                                                                 tmp_path):
    """The ~350-node group is built once, written to a cache .blend, and appended in later
    files: the same tree, one material, nothing linked; a damaged cache is rebuilt."""
    _splat_object, display, _engine = mods
    bpy = blender
    cache = tmp_path / "display.blend"
    monkeypatch.setattr(extension_module("scene.display.cache"), "cache_path", lambda: cache)

    def shape(tree):
        return (sorted(n.bl_idname for n in tree.nodes),
                sorted((link.from_node.bl_idname, link.from_socket.identifier,
                        link.to_node.bl_idname, link.to_socket.identifier)
                       for link in tree.links))

    built = display.display_node_group()
    assert cache.is_file() and len(built.nodes) > 300
    built_shape = shape(built)
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    appended = display.display_node_group()
    assert shape(appended) == built_shape
    tree = extension_module("scene.display.tree")
    assert appended.get(tree.VERSION_PROP) == tree.TREE_VERSION
    assert not appended.use_fake_user and len(bpy.data.libraries) == 0
    assert [m.name for m in bpy.data.materials] == [display.MATERIAL_NAME]
    assert display.display_material() == bpy.data.materials[display.MATERIAL_NAME]
    assert display.display_node_group() == appended  # up to date: kept

    # A file that already has the splat material builds (no second material is appended).
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    display.display_material()
    assert shape(display.display_node_group()) == built_shape
    assert len(bpy.data.materials) == 1

    # A damaged cache file: built again, and the cache rewritten.
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    cache.write_bytes(b"BLENDER-not really")
    assert shape(display.display_node_group()) == built_shape
    assert cache.read_bytes()[:7] == b"BLENDER" and cache.stat().st_size > 100_000


# ------------------------------------------------------------------------ colour convention
@pytest.mark.slow
def test_capture_fit_render_under_standard_reproduces_the_captured_pixels(blender, mods,
                                                                          tmp_path):
    """SH + 0.5 is display-referred sRGB end to end: a capture (PNGs through "Standard"), a fit
    to it, and an F12 render of the result through "Standard" give back the captured pixels
    as well as the rasteriser itself does — the exact engine converts to scene-linear and the
    view transform converts back. (Treating the colours as linear instead washes the render
    out: 5.7 dB lower here.) On Blender 5.3 Blender's own native rendering of the same splats
    is held to its measured distance (it blends in linear light and ray-traces the Gaussians
    in 3D: 4.0 dB below the rasteriser, mean colour −0.017)."""
    from PIL import Image

    from blender_gs_addon.conventions.frames import opengl_c2w_to_viewmat, splats_file_to_world
    from blender_gs_addon.datasets.nerf_synthetic import read_transforms
    from blender_gs_addon.formats import read_splats

    _splat_object, _display, engine = mods
    bpy = blender
    job = extension_module("scene.reconstruct_job")
    cameras = extension_module("scene.camera_import")
    objects = extension_module("scene.sample_scenes").build_sample_scene("toy")
    capture = {"rig": "sphere", "views": 6, "test_views": 1, "resolution": 32,
               "engine": "WORKBENCH", "transparent": True}
    preferences = extension_module("preferences")
    settings = preferences.settings_from(preferences.ensure_preferences())  # worker if no torch
    session = job.ReconstructSession(bpy.context, objects=objects, capture=capture,
                                     backend="fit", steps=20, seed=0, keep_files=True,
                                     settings=settings, report=lambda *a: None)
    obj = session.run(progress=None)
    folder = Path(session.job_dir)
    try:
        dataset = read_transforms(folder / "capture" / "transforms_test.json")
        view = dataset.split_views("test")[0]
        truth = np.asarray(Image.open(view.file_path), np.float64) / 255.0  # straight RGBA
        # The rasteriser on the fit's own file, in the capture's world, as an 8-bit PNG.
        splats = splats_file_to_world(read_splats(session.result["splats"]))
        still = engine.rasterize_still(splats, viewmat=opengl_c2w_to_viewmat(
            view.camera_to_world), k=view.intrinsics_matrix(), width=view.width,
            height=view.height)
        alpha = still["alpha"][..., None]
        straight = np.divide(still["rgb"], alpha, out=np.zeros_like(still["rgb"]),
                             where=alpha > 0)
        core = np.round(np.clip(np.concatenate([straight, alpha], -1), 0, 1) * 255) / 255
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    for source in objects:
        source.hide_render = True
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("view")
    cam = bpy.data.objects.new("view", cam_data)
    scene.collection.objects.link(cam)
    camera_settings = cameras.apply_intrinsics(cam_data, view)
    cam.matrix_world = cameras.camera_object_matrix(view.camera_to_world,
                                                    dataset.denormalisation())
    scene.camera = cam
    render = scene.render
    render.resolution_x, render.resolution_y = view.width, view.height
    render.resolution_percentage = 100
    render.pixel_aspect_x = camera_settings["pixel_aspect_x"]
    render.pixel_aspect_y = camera_settings["pixel_aspect_y"]

    def blender_png(name: str) -> np.ndarray:
        scene.view_settings.view_transform = 'Standard'
        image = render.image_settings
        image.file_format, image.color_mode, image.color_depth = 'PNG', 'RGBA', '8'
        render.filepath = str(tmp_path / name)
        bpy.ops.render.render(write_still=True)
        return np.asarray(Image.open(tmp_path / f"{name}.png"), np.float64) / 255.0

    def psnr(a, b):
        a, b = a.copy(), b.copy()
        a[..., :3] *= a[..., 3:]
        b[..., :3] *= b[..., 3:]
        return _psnr(a, b)

    engine.configure_scene(scene, "exact")
    exact = blender_png("exact")
    assert psnr(core, truth) >= 20.0  # 20 fit steps learnt the views: 25.2 dB measured
    assert psnr(exact, core) >= 45.0  # F12 under Standard: the rasteriser's own pixels (109 dB)
    assert abs(psnr(exact, truth) - psnr(core, truth)) < 0.2
    washed = exact.copy()  # what showing the sRGB values as linear light would give
    washed[..., :3] = linear_to_srgb(washed[..., :3])
    assert psnr(washed, truth) < psnr(core, truth) - 3.0
    if obj.type == 'POINTCLOUD':  # Blender 5.3's own rendering of the native splats
        engine.configure_scene(scene, "cycles", samples=64)
        native = blender_png("native")
        assert psnr(native, truth) >= psnr(core, truth) - 6.0
        bias = np.mean(native[..., :3] * native[..., 3:] - truth[..., :3] * truth[..., 3:])
        assert abs(bias) < 0.04
