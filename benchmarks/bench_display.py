"""Viewing fidelity and speed of the splat display (EEVEE, Cycles) against the exact engine.

For a fixed random splat set and a structured one (splats lying flat on a sphere), render with
the EEVEE display, the Cycles display and the exact engine from the same cameras and report
PSNR(display vs exact) over premultiplied RGBA; then time EEVEE and the exact engine (CPU) on
100k splats at 512² (wall and process CPU seconds: the machine may be shared).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _random_set(count: int, seed: int = 0):
    from blender_gs_addon import SplatSet

    rng = np.random.default_rng(seed)
    return SplatSet.from_arrays(
        positions=rng.normal(0, 0.5, (count, 3)), log_scales=rng.normal(-3.0, 0.5, (count, 3)),
        rotations=rng.normal(size=(count, 4)), opacity_logits=rng.normal(0, 2, count),
        sh_dc=rng.normal(0, 1, (count, 3)), sh_rest=rng.normal(0, 0.15, (count, 15, 3)))


def _sphere_set(count: int, seed: int = 1):
    """Flat splats tangent to a unit sphere, coloured by position (a surface-like model)."""
    from blender_gs_addon import SplatSet
    from blender_gs_addon.quaternions import matrix_to_quat

    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(count, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    tangent = np.cross(normal, rng.normal(size=(count, 3)))
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    rot = np.stack([tangent, np.cross(normal, tangent), normal], axis=-1)  # columns
    spacing = math.sqrt(4 * math.pi / count)
    log_scales = np.log(np.stack([np.full(count, spacing), np.full(count, spacing * 0.7),
                                  np.full(count, spacing * 0.02)], -1))
    return SplatSet.from_arrays(
        positions=normal * 0.8, log_scales=log_scales, rotations=matrix_to_quat(rot),
        opacity_logits=np.full(count, 2.0), sh_dc=(normal * 0.5 + 0.5 - 0.5) / 0.28209479,
        sh_rest=rng.normal(0, 0.05, (count, 15, 3)))


def _setup(bpy, modules, splats, size: int):
    splat_object, _display, _engine = modules
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    obj = splat_object.create_splat_object(splats, name="bench")
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.5, -3.2, 0.8), (1.33, 0.0, 0.15)
    scene.camera = cam
    scene.render.resolution_x = scene.render.resolution_y = size
    return scene, obj


def _psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-20)))


def _render(engine, scene, name):
    engine.configure_scene(scene, name)
    wall, cpu = time.perf_counter(), time.process_time()
    image = engine.render_scene_to_array(scene)
    return image, time.perf_counter() - wall, time.process_time() - cpu


def run(quick: bool) -> list[dict]:
    import bpy

    from blender_gs_addon.extension import extension_module, load_extension

    ext = load_extension()
    if not hasattr(bpy.types, "GS_OT_import_splats"):
        ext.register()
    engine = extension_module("scene.render_engine")
    if not engine.GS_RenderEngine.is_registered:
        bpy.utils.register_class(engine.GS_RenderEngine)
    modules = (ext.scene.splat_object, extension_module("scene.display"), engine)
    rows = []
    size = 96 if quick else 256
    count = 1000 if quick else 5000
    for label, splats in (("random", _random_set(count)), ("sphere", _sphere_set(count))):
        scene, _obj = _setup(bpy, modules, splats, size)
        exact, _, _ = _render(engine, scene, "exact")
        for name, goal in (("eevee", 30.0), ("cycles", 28.0)):
            image, _, _ = _render(engine, scene, name)
            rows.append({"name": f"display_psnr_{name}_vs_exact_{label}",
                         "value": round(_psnr(image, exact), 2), "unit": "dB",
                         "goal": f">= {goal:g}",
                         "note": f"{count} splats SH3, {size}x{size}, premultiplied RGBA"})

    big, res = (20_000, 256) if quick else (100_000, 512)
    scene, _obj = _setup(bpy, modules, _random_set(big, seed=5), res)
    _render(engine, scene, "eevee")  # shader compilation and first evaluation
    _, wall, cpu = _render(engine, scene, "eevee")
    rows.append({"name": "eevee_display_render_time", "value": round(wall, 2), "unit": "s",
                 "goal": "", "note": f"{big:,} splats at {res}², wall (process CPU "
                                     f"{cpu:.2f} s), after a warm-up render"})
    _, wall, cpu = _render(engine, scene, "exact")
    rows.append({"name": "exact_engine_render_time_cpu", "value": round(wall, 2), "unit": "s",
                 "goal": "", "note": f"{big:,} splats at {res}², torch CPU path, wall "
                                     f"(process CPU {cpu:.2f} s)"})

    # Viewport points exist for very large sets: their evaluation must skip the projection,
    # the SH and the depth sort that the quads need.
    display = modules[1]
    obj = _obj

    def evaluation(points: bool) -> float:
        display.set_display_options(obj, viewport_points=points)
        best = float("inf")
        for _ in range(3):
            obj.update_tag()
            start = time.perf_counter()
            bpy.context.evaluated_depsgraph_get().update()
            best = min(best, time.perf_counter() - start)
        return best

    quads, points = evaluation(False), evaluation(True)
    display.set_display_options(obj, viewport_points=False)
    rows.append({"name": "display evaluation, viewport points / quads", "value": points / quads,
                 "unit": "×", "goal": "< 0.4", "note": f"{big:,} splats: points "
                                                       f"{points * 1e3:.1f} ms, quads "
                                                       f"{quads * 1e3:.1f} ms, same run"})
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
