"""Blender 5.3's native Gaussian splats (Cycles, EEVEE) against this project's exact engine.

The same splats from the same cameras: a random set (sample "random": 20k translucent splats
in a cube), a structured one (sample "torus": 20k splats on a knot) and, when the environment
variable ``GS_BENCH_SPLATS`` names one, a reconstruction's .ply (e.g. the demo's), each unposed
and posed (bound to a two-bone chain through the set, the upper bone turned 45°: native splats
stay native, their positions, rotations and SH bands posed by Geometry Nodes,
scene/native_pose_nodes.py).

How: the Blender part runs in a Python with bpy ≥ 5.3 (``GS_BPY53_PYTHON``, else the
repository's ``.venv313``), in a subprocess; it renders each camera with Cycles and EEVEE to
float EXR and writes the splats the exact engine reads from the evaluated scene
(``render_engine.collect_splats``: world frame, posed) as .ply. This process renders those
with the exact engine's rasterizer (torch, CPU) and compares.

Colour: native splats take SH + 0.5 as sRGB and blend in scene-linear light; the exact engine
blends SH + 0.5 as display values. Both images are compared as display-referred sRGB straight
colour (native: scene-linear through the Standard view transform, i.e. the sRGB curve; what an
RGBA PNG saved under Standard holds) composited over the same white background in display
space. Rows per set, pose and engine: PSNR and mean colour bias (native − exact, over all pixels
and channels). Diagnostics say what limits the agreement:

- *the rasterizer blending as Blender does*: the exact rasterizer fed each splat's colour for
  that camera in linear light (SH evaluated per view in numpy, DC only), without the 3DGS
  screen-space low-pass (eps2d 0.3 px² → 0), the result through the sRGB curve. Native vs it is
  the renderers' own difference: ray-traced (Cycles: stochastic transparency) or quantised and
  rasterised (EEVEE) Gaussians.
- *exact vs exact blending in linear light*, *exact vs exact without its low-pass*: each
  convention of the 3DGS rasterizer alone.
- *Cycles noise*: Cycles at the benchmark's samples vs 4× as many; *EEVEE noise*: EEVEE at a
  quarter of the benchmark's samples vs the benchmark's.
- *8-bit SH*: the exact render with SH rest coefficients stored as 8 bits in [−1, 1] (Cycles'
  storage, read from its kernel) vs the exact render.
- *SH not turned*: the posed splats drawn by Cycles with their rest SH bands, what Blender
  would show without the SH rotation.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BACKGROUND = 1.0  # white, in display values
POSES = ("unposed", "posed")
ENGINES = ("cycles", "eevee")


def native_python() -> str | None:
    """A Python whose bpy draws native Gaussian splats (5.3+), or None."""
    candidates = [os.environ.get("GS_BPY53_PYTHON", ""), str(ROOT / ".venv313" / "bin" /
                                                            "python")]
    for python in candidates:
        if not python or not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import bpy; print(tuple(bpy.app.version) >= "
                                              "(5, 3, 0))"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip().endswith("True"):
            return python
    return None


def _settings(quick: bool) -> dict:
    return {"count": 5000 if quick else 20000, "cameras": 2 if quick else 4,
            "size": 64 if quick else 128, "cycles_samples": 64 if quick else 256,
            "eevee_samples": 8 if quick else 32}


def _sets(quick: bool) -> dict:
    from blender_gs_addon.formats import read_splats
    from blender_gs_addon.samples import sample_splats

    count = _settings(quick)["count"]
    sets = {"random": sample_splats("random", count=count, sh_degree=3),
            "structured": sample_splats("torus", count=count, sh_degree=3)}
    reconstruction = os.environ.get("GS_BENCH_SPLATS")  # e.g. the demo's out/splats.ply
    if reconstruction:
        sets["reconstruction"] = read_splats(reconstruction)
    return sets


# ---------------------------------------------------------------------------- Blender part
def _cameras(bpy, centre, radius, count, size):
    from mathutils import Vector

    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    cams = []
    for i in range(count):
        azimuth, elevation = 2 * math.pi * (i + 0.125) / count, math.radians(20 + 15 * (i % 2))
        data = bpy.data.cameras.new(f"cam{i}")
        data.lens = 50.0
        cam = bpy.data.objects.new(f"cam{i}", data)
        scene.collection.objects.link(cam)
        offset = Vector((math.cos(elevation) * math.sin(azimuth),
                         -math.cos(elevation) * math.cos(azimuth), math.sin(elevation)))
        cam.location = Vector(centre) + offset * (radius * 2.6)
        cam.rotation_euler = (-offset).to_track_quat('-Z', 'Y').to_euler()
        cams.append(cam)
    return cams


def _pose(bpy, scene_mods, obj, lo, hi):
    """Bind ``obj`` to a two-bone chain from ``lo`` to ``hi`` (world) and turn the upper bone."""
    data = bpy.data.armatures.new("chain")
    arm = bpy.data.objects.new("chain", data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    mid = (np.asarray(lo) + np.asarray(hi)) / 2
    with bpy.context.temp_override(active_object=arm, object=arm, selected_objects=[arm]):
        bpy.ops.object.mode_set(mode='EDIT')
        lower, upper = data.edit_bones.new("lower"), data.edit_bones.new("upper")
        lower.head, lower.tail, upper.head, upper.tail = tuple(lo), tuple(mid), tuple(mid), \
            tuple(hi)
        upper.parent, upper.use_connect = lower, True
        bpy.ops.object.mode_set(mode='OBJECT')
    scene_mods.rigging.bind_splats(obj, arm, report=lambda *_: None)
    bone = arm.pose.bones["upper"]
    bone.rotation_mode = 'XYZ'
    bone.rotation_euler = (math.radians(45), 0.0, 0.0)
    bpy.context.view_layer.update()
    return arm


def _render_set(bpy, mods, splats, name, pose, settings, out: Path) -> dict:
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    scene = bpy.context.scene
    obj = mods.splat_object.create_splat_object(splats, name=name, up_axis="-Y")
    bpy.context.view_layer.update()
    world = np.array(obj.matrix_world)
    points = splats.positions @ world[:3, :3].T + world[:3, 3]
    lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
    timings = {}
    if pose == "posed":
        base = np.array([centre[0], centre[1], lo[2]])
        start = time.perf_counter()
        _pose(bpy, mods, obj, base, np.array([centre[0], centre[1], hi[2]]))
        timings["bind"] = time.perf_counter() - start
    cams = _cameras(bpy, centre, radius, settings["cameras"], settings["size"])
    depsgraph = bpy.context.evaluated_depsgraph_get()
    collected = mods.render_engine.collect_splats(depsgraph)
    from blender_gs_addon.formats import write_splats

    write_splats(out / f"{name}_{pose}.ply", collected)
    images, views = {}, []
    for cam in cams:
        scene.camera = cam
        viewmat, k, width, height = mods.render_engine.scene_camera(scene, depsgraph)
        views.append((viewmat, k))
    plan = [("cycles", "cycles", settings["cycles_samples"]),
            ("eevee", "eevee", settings["eevee_samples"])]
    if pose == "unposed":  # the engines' own noise: more samples, and fewer for EEVEE
        plan += [("cycles_4x", "cycles", 4 * settings["cycles_samples"]),
                 ("eevee_quarter", "eevee", max(1, settings["eevee_samples"] // 4))]
    for label, engine, samples in plan:
        mods.render_engine.configure_scene(scene, engine, samples=samples)
        start = time.perf_counter()
        frames = []
        for cam in cams:
            scene.camera = cam
            frames.append(mods.render_engine.render_scene_to_array(scene))
        timings[label] = (time.perf_counter() - start) / len(cams)
        images[label] = np.stack(frames)
    if pose == "posed":  # the same pose with the SH bands left as they were
        pose_mod = obj.modifiers["GS Pose"]
        pose_mod.node_group = mods.native_pose_nodes.native_pose_node_group(0)
        mods.render_engine.configure_scene(scene, "cycles", samples=settings["cycles_samples"])
        frames = []
        for cam in cams:
            scene.camera = cam
            frames.append(mods.render_engine.render_scene_to_array(scene))
        images["cycles_sh_not_turned"] = np.stack(frames)
    np.savez(out / f"{name}_{pose}.npz", viewmats=np.stack([v for v, _ in views]),
             Ks=np.stack([k for _, k in views]), **images)
    return timings


def blender_part(out: Path, quick: bool) -> None:
    """Runs under bpy ≥ 5.3: native renders and the exact engine's splats into ``out``."""
    import bpy

    from blender_gs_addon.extension import extension_module, load_extension

    load_extension().register()

    class mods:  # noqa: N801 - a namespace of the extension's scene modules
        splat_object = extension_module("scene.splat_object")
        render_engine = extension_module("scene.render_engine")
        rigging = extension_module("scene.rigging")
        native_pose_nodes = extension_module("scene.native_pose_nodes")

    settings = _settings(quick)
    timings = {}
    for name, splats in _sets(quick).items():
        for pose in POSES:
            timings[f"{name}_{pose}"] = _render_set(bpy, mods, splats, name, pose, settings,
                                                    out)
    (out / "timings.json").write_text(json.dumps({"timings": timings,
                                                  "blender": bpy.app.version_string,
                                                  "sets": list(_sets(quick))}))


# ---------------------------------------------------------------------------- comparison
def srgb_to_linear(c):
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c):
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)  # the Standard view transform clips
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.maximum(c, 0.0031308) ** (1 / 2.4)
                    - 0.055)


def _composite(straight, alpha):
    return straight * alpha[..., None] + BACKGROUND * (1.0 - alpha[..., None])


def _unpremultiply(rgb, alpha):
    return np.where(alpha[..., None] > 1e-6, rgb / np.maximum(alpha[..., None], 1e-6), 0.0)


def native_display(frame):
    """[H, W, 4] premultiplied scene-linear EXR → composited display sRGB [H, W, 3]."""
    alpha = np.clip(frame[..., 3].astype(np.float64), 0.0, 1.0)
    return _composite(linear_to_srgb(_unpremultiply(frame[..., :3], alpha)), alpha)


def _exact(splats, viewmat, k, size, eps2d: float = 0.3):
    """The exact engine's rasterizer (``render_still``'s call, with its low-pass ``eps2d``):
    (premultiplied rgb [H, W, 3], alpha [H, W]) float64."""
    import torch

    from blender_gs_addon.render.rasterize import rasterize, splat_inputs

    def t(a):
        return torch.as_tensor(np.asarray(a, np.float64)[None], dtype=torch.float32)

    with torch.no_grad():
        out = rasterize(**splat_inputs(splats, device=torch.device("cpu")), viewmats=t(viewmat),
                        Ks=t(k), width=size, height=size, eps2d=eps2d)
    return (out.colors[0].numpy().astype(np.float64),
            out.alphas[0, ..., 0].numpy().astype(np.float64))


def exact_display(splats, viewmat, k, size, eps2d: float = 0.3):
    """The exact engine's colour (display values, blended as such) composited on white."""
    rgb, alpha = _exact(splats, viewmat, k, size, eps2d)
    return _composite(np.clip(_unpremultiply(rgb, alpha), 0.0, 1.0), alpha)


def linear_light_display(splats, viewmat, k, size, eps2d: float = 0.3):
    """The exact rasterizer blending each splat's view colour in linear light, as Blender does
    (with ``eps2d`` = 0: without the 3DGS rasterizer's screen-space low-pass either)."""
    from blender_gs_addon.sh import dc_to_rgb, eval_sh_color, rgb_to_dc

    centre = np.linalg.inv(viewmat)[:3, 3]  # camera centre, world
    dirs = splats.positions.astype(np.float64) - centre
    dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-12)
    colour = np.maximum(eval_sh_color(splats.sh_dc.astype(np.float64),
                                      splats.sh_rest.astype(np.float64), dirs), 0.0)
    flat = splats.copy()
    flat.sh_dc = rgb_to_dc(srgb_to_linear(colour)).astype(np.float32)
    flat.sh_rest = np.zeros((splats.count, 0, 3), np.float32)
    assert np.allclose(dc_to_rgb(flat.sh_dc), srgb_to_linear(colour), atol=1e-5)
    rgb, alpha = _exact(flat, viewmat, k, size, eps2d)
    return _composite(linear_to_srgb(_unpremultiply(rgb, alpha)), alpha)


def _psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-20)))


def _row(name, a, b, note, goal="info"):
    bias = float(np.mean(a - b))
    return [{"name": f"{name}: PSNR", "value": _psnr(a, b), "unit": "dB", "goal": goal,
             "note": note},
            {"name": f"{name}: mean colour bias", "value": bias, "unit": "",
             "goal": "|bias| <= 0.01" if goal != "info" else "info", "note": note}]


def _compare_set(folder: Path, name: str, pose: str, settings: dict) -> list[dict]:
    from blender_gs_addon.formats import read_splats

    splats = read_splats(folder / f"{name}_{pose}.ply")
    data = np.load(folder / f"{name}_{pose}.npz")
    size = settings["size"]
    views = list(zip(data["viewmats"], data["Ks"]))

    def each(render, *args):
        return np.stack([render(splats, v, k, size, *args) for v, k in views])

    exact, blender_like = each(exact_display), each(linear_light_display, 0.0)
    native = {label: np.stack([native_display(f) for f in data[label]])
              for label in data.files if label not in ("viewmats", "Ks")}
    where = f"{name}, {pose}"
    note = f"{splats.count:,} splats SH {splats.sh_degree}, {len(views)} cameras at {size}²"
    rows = []
    for engine in ENGINES:
        samples = settings[f"{engine}_samples"]
        rows += _row(f"{where}: native {engine} vs exact", native[engine], exact,
                     f"{note}, {samples} samples", goal="as high as native allows")
        rows += _row(f"{where}: native {engine} vs the rasterizer blending as Blender does",
                     native[engine], blender_like, "linear light, no 0.3 px² low-pass: the "
                                                   "renderer's own differences")
    rows += _row(f"{where}: exact vs exact blending in linear light", exact,
                 each(linear_light_display), "the blending space alone")
    rows += _row(f"{where}: exact vs exact without its 0.3 px² low-pass", exact,
                 each(exact_display, 0.0), "the 3DGS rasterizer's screen-space dilation alone")
    if "cycles_4x" in native:
        rows += _row(f"{where}: Cycles noise ({settings['cycles_samples']} vs "
                     f"{4 * settings['cycles_samples']} samples)", native["cycles"],
                     native["cycles_4x"], "stochastic transparency")
        quarter = max(1, settings["eevee_samples"] // 4)
        rows += _row(f"{where}: EEVEE noise ({quarter} vs {settings['eevee_samples']} "
                     "samples)", native["eevee_quarter"], native["eevee"],
                     "if noise falls as 1/√samples, the benchmark's EEVEE image is ~7 dB "
                     "better than this")
        quantised = splats.copy()
        quantised.sh_rest = (np.round((np.clip(splats.sh_rest, -1, 1) + 1) * 127.5) / 127.5
                             - 1).astype(np.float32)
        rows += _row(f"{where}: exact with 8-bit SH vs exact",
                     np.stack([exact_display(quantised, v, k, size) for v, k in views]), exact,
                     "SH rest stored as 8 bits in [−1, 1] (Cycles, EEVEE)")
        opacity = np.clip(np.round(255 / (1 + np.exp(-splats.opacity_logits.astype(
            np.float64)))), 0.5, 254.5) / 255  # 8 bits, kept off 0 and 1 for the logit
        quantised.opacity_logits = np.log(opacity / (1 - opacity)).astype(np.float32)
        rows += _row(f"{where}: exact with 8-bit SH and opacity vs exact",
                     np.stack([exact_display(quantised, v, k, size) for v, k in views]), exact,
                     "EEVEE also stores opacity in 8 bits")
    if "cycles_sh_not_turned" in native:
        rows += _row(f"{where}: native cycles with the SH bands not turned vs the rasterizer "
                     "blending as Blender does", native["cycles_sh_not_turned"], blender_like,
                     "what the posed splats would look like without the SH rotation")
    return rows


def compare(folder: Path, quick: bool) -> list[dict]:
    """The rows, from the Blender part's output in ``folder``."""
    settings = _settings(quick)
    info = json.loads((folder / "timings.json").read_text())
    rows = []
    for name in info["sets"]:
        for pose in POSES:
            rows += _compare_set(folder, name, pose, settings)
    for key, timing in info["timings"].items():
        rows.append({"name": f"render time per camera, {key.replace('_', ', ')}",
                     "value": timing["cycles"], "unit": "s", "goal": "info",
                     "note": f"Cycles; EEVEE {timing['eevee']:.2f} s (first includes shader "
                             f"compilation); bpy {info['blender']}"})
    return rows


def run(quick: bool = False) -> list[dict]:
    python = native_python()
    if python is None:
        return [{"name": "native render", "value": None, "unit": "", "goal": "",
                 "note": "skipped: no Python with bpy >= 5.3 (set GS_BPY53_PYTHON or make "
                         ".venv313)"}]
    with tempfile.TemporaryDirectory() as tmp:
        command = [python, str(Path(__file__).resolve()), "--blender-part", tmp]
        proc = subprocess.run(command + (["--quick"] if quick else []), cwd=ROOT,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1])
        return compare(Path(tmp), quick)


if __name__ == "__main__":
    # --blender-part DIR: the renders (under bpy >= 5.3); --compare DIR: the rows from them.
    sys.path.insert(0, str(ROOT))
    quick = "--quick" in sys.argv
    for flag, action in (("--blender-part", blender_part), ("--compare", compare)):
        if flag in sys.argv:
            result = action(Path(sys.argv[sys.argv.index(flag) + 1]), quick)
            break
    else:
        result = run(quick=quick)
    if result is not None:
        print(json.dumps(result, indent=1))
