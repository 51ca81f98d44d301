"""The "Gaussian Splatting" render engine: F12 renders of splat objects with our rasterizer.

:class:`GS_RenderEngine` renders every splat object of the evaluated scene (the evaluated —
e.g. armature-deformed — splats, moved to the world with ``matrix_world``, SH bands rotated) from
the scene camera with the project's 3DGS rasterizer (``blender_gs_addon/render/rasterize.py``:
gsplat's kernels on CUDA, the pure-torch path on CPU), the same one reconstruction trains with.
It writes RGBA (premultiplied, as Blender's render results are) and, when the view layer asks
for it, the Depth (Z) pass: the rasterizer's expected camera depth, 1e10 where nothing was hit.

Camera: perspective only, intrinsics from lens, sensor size and fit, shift, render size and
pixel aspect exactly as Blender projects
(``conventions.intrinsics.intrinsics_from_blender_camera``).
Colour: the rasteriser composites the splats' sRGB colours (SH + 0.5) as training did; the
image is then converted to scene-linear (:func:`conventions.colour.display_to_linear`), so the
"Standard" view transform shows exactly the rasteriser's pixels, as native splats show theirs.
Film: transparent film keeps the alpha (premultiplied linear); otherwise the world colour is
composited behind, in sRGB as training composites its background, before the conversion.

Bad input: mesh objects without splat attributes are skipped with a warning; no splats renders
a transparent (or world-coloured) image; no scene camera is a clear error; splats with NaN/Inf
values are dropped with a warning. When torch cannot be imported in Blender's Python the frame
is rendered by the reconstruction worker (the add-on preferences' worker command or Worker
Python, possibly on another machine; the splats go over its pipe as .ply, the image comes back
as .npz), the same computation
(:mod:`blender_gs_addon.render.still`); with no Worker Python set, the engine fails with a
message saying what to configure (:data:`NO_TORCH_MESSAGE`).

:func:`render_dataset_frames` renders a splat file from every frame of a NeRF-synthetic
transforms file with EEVEE, Cycles (through the splat display) or this engine, for the
``render`` command of the CLI.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

from ..blender_gs_addon.conventions.colour import display_to_linear
from ..blender_gs_addon.conventions.frames import (
    camera_to_world_from_matrix_world,
    opengl_c2w_to_viewmat,
)
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.splats import SplatSet, concatenate
from . import display, splat_object
from .camera_import import camera_intrinsics

__all__ = ["ENGINE_ID", "ENGINES", "NO_TORCH_MESSAGE", "GS_RenderEngine", "scene_camera",
           "collect_splats", "rasterize_still", "render_exact", "configure_scene",
           "render_scene_to_array", "render_dataset_frames", "CLASSES"]

ENGINE_ID = "GAUSSIAN_SPLATS"
# CLI names → Blender engine identifiers.
ENGINES = {"exact": ENGINE_ID, "eevee": "BLENDER_EEVEE", "cycles": "CYCLES"}
NO_DEPTH = 1e10  # Z pass value where no splat was hit (Blender's background depth)
# Render samples for native splats in batch renders (render_dataset_frames): Cycles' stochastic
# alpha test needs many to converge; EEVEE's native splats converge in a few.
NATIVE_SAMPLES = {"cycles": 64, "eevee": 8}
NO_TORCH_MESSAGE = (
    "The Gaussian Splatting render engine needs PyTorch, and it cannot be imported in "
    "Blender's own Python ({python}). Set the Worker Python in the add-on preferences "
    "(Edit › Preferences › Add-ons › Gaussian Splats) to an environment with torch, the one "
    "reconstruction uses, and F12 renders through it; or switch the render engine to EEVEE or "
    "Cycles, which draw the splat display")


# ------------------------------------------------------------------------------- the camera
def scene_camera(scene: bpy.types.Scene, depsgraph=None):
    """(viewmat [4, 4] world → camera OpenCV, K [3, 3], width, height) of the scene camera."""
    cam = scene.camera
    if cam is None:
        raise GSError(f"Scene {scene.name!r} has no active camera: add a camera and make it "
                      "the scene camera (Ctrl+Numpad 0) to render splats")
    if depsgraph is not None:
        cam = cam.evaluated_get(depsgraph)
    if cam.type != 'CAMERA':
        raise GSError(f"Scene camera {cam.name!r} is a {cam.type.lower()}, not a camera")
    data = cam.data
    if data.type != 'PERSP':
        raise GSError(f"Camera {cam.name!r} is {data.type.lower()}; Gaussian splats render "
                      "through perspective cameras only")
    render = scene.render
    width = max(1, round(render.resolution_x * render.resolution_percentage / 100))
    height = max(1, round(render.resolution_y * render.resolution_percentage / 100))
    fx, fy, cx, cy = camera_intrinsics(
        data, res_x=width, res_y=height,
        pixel_aspect=render.pixel_aspect_x / render.pixel_aspect_y)
    c2w = camera_to_world_from_matrix_world(np.array(cam.matrix_world, dtype=np.float64))
    viewmat = opengl_c2w_to_viewmat(c2w)
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return viewmat, k, width, height


# ------------------------------------------------------------------------------- the splats
def collect_splats(depsgraph, *, report: Report = log_report) -> SplatSet | None:
    """All splat objects of the evaluated scene as one world-frame SplatSet (None if none).

    Mesh objects without splat attributes are skipped with one warning naming them; splats with
    NaN/Inf values are dropped with a warning; an object whose transform is not a similarity
    (rotation, uniform scale, translation) is skipped with a warning.
    """
    sets, skipped = [], []
    for obj in depsgraph.objects:
        if obj.type not in ('MESH', 'POINTCLOUD'):
            continue
        source = f"Object {obj.name!r}"
        splats = splat_object.evaluated_splats(obj)
        if splats is None:
            skipped.append(obj.name)
            continue
        if splats.count == 0:
            continue
        mask = splats.finite_mask()
        if not mask.all():
            report({'WARNING'}, f"{source}: skipped {int((~mask).sum()):,} of "
                                f"{splats.count:,} splats with NaN or infinite values")
            splats = splats.subset(mask)
            if splats.count == 0:
                continue
        try:
            sets.append(splats.transformed(np.array(obj.matrix_world, dtype=np.float64)))
        except GSError as err:
            report({'WARNING'}, f"{source} skipped: {err}")
    if skipped:
        report({'WARNING'}, f"Skipped {len(skipped)} object(s) without splat attributes: "
                            f"{', '.join(sorted(skipped)[:5])}" + (" …" if len(skipped) > 5
                                                                  else ""))
    if not sets:
        return None
    return sets[0] if len(sets) == 1 else concatenate(sets)


def _world_color(scene) -> tuple[float, float, float]:
    world = scene.world
    if world is None:
        return (0.0, 0.0, 0.0)
    if world.use_nodes and world.node_tree is not None:
        for node in world.node_tree.nodes:
            if node.type == 'BACKGROUND' and not node.inputs["Color"].is_linked:
                rgb = node.inputs["Color"].default_value
                strength = node.inputs["Strength"].default_value
                return tuple(float(c) * strength for c in rgb[:3])
    return tuple(float(c) for c in world.color)


def _still_through_worker(splats: SplatSet, *, viewmat, k, width, height, report) -> dict:
    """The still rendered by the reconstruction worker (the preferences' worker command or
    Worker Python): the splats go over its pipe as a .ply, the image comes back as an .npz."""
    import shutil

    from ..blender_gs_addon.formats import write_splats
    from ..blender_gs_addon.render.still import read_still
    from ..blender_gs_addon.worker.job_dirs import make_job_dir
    from ..blender_gs_addon.worker.transfer import Bundle
    from ..preferences import get_preferences, settings_from
    from . import model_runner

    settings = settings_from(get_preferences())
    if not (settings.worker_python.strip() or settings.worker_command.strip()):
        raise GSError(NO_TORCH_MESSAGE.format(python=sys.executable))
    # The reconstruction's warm worker, started from its long-lived owner thread: a worker
    # dies with the thread that started it, and a render thread ends with the frame.
    client = model_runner.warm_worker(model_runner.worker_launch(settings))
    job_dir = make_job_dir()  # private (0700)
    try:
        write_splats(job_dir / "splats.ply", splats, report=report)
        result = client.run("render", {
            "viewmat": np.asarray(viewmat).tolist(), "K": np.asarray(k).tolist(),
            "width": int(width), "height": int(height), "device": settings.device.lower(),
        }, upload=Bundle.of_files(job_dir, ["splats.ply"]), download_dir=job_dir / "result",
            timeout=600.0)
        if result is None:
            raise GSError("the worker's render was cancelled")
        return read_still(result["still"], width=width, height=height)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def rasterize_still(splats: SplatSet, *, viewmat, k, width: int, height: int,
                    report: Report = log_report) -> dict:
    """The exact rasteriser's still of world-frame ``splats`` (sRGB values, premultiplied over
    black: :func:`blender_gs_addon.render.still.render_still`), in Blender's Python when torch
    imports there, else through the worker (the add-on preferences' Worker Python)."""
    from ..blender_gs_addon.devices import torch_available

    # The same test as reconstruction's: a torch that is installed but fails to import
    # (an ABI or DLL clash) sends the frame to the worker too.
    if torch_available():
        from ..blender_gs_addon.render.still import render_still

        return render_still(splats, viewmat=viewmat, K=k, width=width, height=height)
    return _still_through_worker(splats, viewmat=viewmat, k=k, width=width, height=height,
                                 report=report)


def render_exact(depsgraph, *, report: Report = log_report) -> dict:
    """Render the evaluated scene from its camera with the exact rasterizer.

    Returns {"rgba": [H, W, 4] float32 premultiplied scene-linear (row 0 = top; the
    rasteriser's sRGB image converted, :mod:`conventions.colour`), "depth": [H, W] float32
    (NO_DEPTH where nothing was hit), "splats": count rendered, "seconds": float}.
    """
    start = time.perf_counter()
    scene = depsgraph.scene
    viewmat, k, width, height = scene_camera(scene, depsgraph)
    splats = collect_splats(depsgraph, report=report)
    film = scene.render.film_transparent
    background = None if film else np.asarray(_world_color(scene), np.float64)
    rgba = np.zeros((height, width, 4), np.float32)
    depth = np.full((height, width), NO_DEPTH, np.float32)
    count = 0
    if splats is not None:
        still = rasterize_still(splats, viewmat=viewmat, k=k, width=width, height=height,
                                report=report)
        rgba[..., :3] = still["rgb"]  # sRGB values, premultiplied over black
        rgba[..., 3] = still["alpha"]
        hit = still["alpha"] > 0
        depth[hit] = still["depth"][hit]
        count = splats.count
    rgba[..., :3] = display_to_linear(rgba[..., :3], rgba[..., 3], background)
    if not film:
        rgba[..., 3] = 1.0
    np.nan_to_num(rgba, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return {"rgba": rgba, "depth": depth, "splats": count,
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- the engine
class GS_RenderEngine(bpy.types.RenderEngine):
    """Exact 3D Gaussian splatting renders (F12 stills and animations)."""

    bl_idname = ENGINE_ID
    bl_label = "Gaussian Splatting"
    bl_use_preview = False
    bl_use_postprocess = True
    bl_use_eevee_viewport = True  # the viewport shows the EEVEE display of the splats

    def render(self, depsgraph):
        scene = depsgraph.scene
        width = max(1, round(scene.render.resolution_x * scene.render.resolution_percentage
                             / 100))
        height = max(1, round(scene.render.resolution_y * scene.render.resolution_percentage
                              / 100))

        def report(level, message):
            self.report(level, message)
            log_report(level, message)

        try:
            out = render_exact(depsgraph, report=report)
        except GSError as err:
            self.report({'ERROR'}, str(err))
            self.error_set(str(err))
            return
        result = self.begin_result(0, 0, width, height)
        layer = result.layers[0]
        # Blender's image rows go bottom to top.
        layer.passes["Combined"].rect.foreach_set(np.ascontiguousarray(
            out["rgba"][::-1]).reshape(-1))
        depth_pass = layer.passes.find_by_name("Depth", "")
        if depth_pass is not None:
            depth_pass.rect.foreach_set(np.ascontiguousarray(out["depth"][::-1]).reshape(-1))
        self.end_result(result)
        self.update_stats("", f"{out['splats']:,} splats in {out['seconds']:.2f} s")

    def update_render_passes(self, scene=None, renderlayer=None):
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", 'COLOR')
        if renderlayer.use_pass_z:
            self.register_pass(scene, renderlayer, "Depth", 1, "Z", 'VALUE')

    @classmethod
    def register(cls):
        # Show the standard output/film/pass panels for this engine too.
        for panel in _compatible_panels():
            panel.COMPAT_ENGINES.add(ENGINE_ID)

    @classmethod
    def unregister(cls):
        for panel in _compatible_panels():
            panel.COMPAT_ENGINES.discard(ENGINE_ID)


_PANELS = ("RENDER_PT_format", "RENDER_PT_frame_range", "RENDER_PT_output", "RENDER_PT_film",
           "CYCLES_RENDER_PT_film_transparency", "RENDER_PT_eevee_film",
           "VIEWLAYER_PT_layer_passes", "VIEWLAYER_PT_eevee_layer_passes_data",
           "RENDER_PT_color_management", "DATA_PT_lens", "DATA_PT_camera",
           "DATA_PT_camera_display", "DATA_PT_context_camera")


def _compatible_panels():
    for name in _PANELS:
        panel = getattr(bpy.types, name, None)
        engines = getattr(panel, "COMPAT_ENGINES", None)
        if isinstance(engines, set):
            yield panel


CLASSES = (GS_RenderEngine,)


# --------------------------------------------------------------------------- batch renders
def configure_scene(scene: bpy.types.Scene, engine: str, *, samples: int | None = None) -> None:
    """Render settings under which EEVEE, Cycles and the exact engine agree with the rasterizer.

    Pixel samples at pixel centres (one sample, a tiny pixel filter), transparent film, the
    "Standard" view transform (it shows the splats' sRGB colours unchanged:
    :mod:`conventions.colour`), no dithering; Cycles gets enough transparent bounces to see
    through every splat layer.
    """
    if engine not in ENGINES:
        raise GSError(f"unknown render engine {engine!r}; use {', '.join(ENGINES)}")
    render = scene.render
    render.engine = ENGINES[engine]
    render.film_transparent = True
    render.dither_intensity = 0.0
    render.filter_size = 0.0
    render.use_motion_blur = False
    display.use_standard_view_transform(scene, report=lambda *_: None)
    scene.display_settings.display_device = 'sRGB'
    if engine == "eevee":
        scene.eevee.taa_render_samples = samples or 1
    elif engine == "cycles":
        cycles = scene.cycles
        cycles.samples = samples or 1
        cycles.use_adaptive_sampling = False
        cycles.use_denoising = False
        cycles.pixel_filter_type = 'GAUSSIAN'
        cycles.filter_width = 0.01
        cycles.transparent_max_bounces = 1024
        cycles.min_transparent_bounces = 1024
        cycles.max_bounces = 1024
        cycles.device = 'CPU'


def render_scene_to_array(scene: bpy.types.Scene) -> np.ndarray:
    """Render ``scene`` with its engine; [H, W, 4] float32 premultiplied RGBA, row 0 on top.

    Goes through a float EXR (no view transform is baked into EXR files), read back by Blender.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "render.exr")
        settings = scene.render.image_settings
        old = (settings.file_format, settings.color_depth, scene.render.filepath)
        settings.file_format = 'OPEN_EXR'
        settings.color_mode = 'RGBA'
        settings.color_depth = '32'
        scene.render.filepath = path
        try:
            with bpy.context.temp_override(scene=scene):
                bpy.ops.render.render(write_still=True, scene=scene.name)
        finally:
            settings.file_format, settings.color_depth, scene.render.filepath = old[0], old[1], \
                old[2]
        if not os.path.exists(path):
            raise GSError(f"Scene {scene.name!r}: the render wrote no image")
        image = bpy.data.images.load(path, check_existing=False)
        try:
            width, height = image.size
            pixels = np.empty(width * height * 4, np.float32)
            image.pixels.foreach_get(pixels)
        finally:
            bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1].copy()


def _render_view(scene, cam, view, out: Path, engine: str) -> Path:
    """One frame of :func:`render_dataset_frames`: the camera set to ``view``, rendered to
    ``out/<frame name>.png``."""
    from .camera_import import apply_intrinsics, camera_object_matrix

    settings_cam = apply_intrinsics(cam.data, view)
    render = scene.render
    render.resolution_x, render.resolution_y = view.width, view.height
    render.resolution_percentage = 100
    render.pixel_aspect_x = settings_cam["pixel_aspect_x"]
    render.pixel_aspect_y = settings_cam["pixel_aspect_y"]
    cam.matrix_world = camera_object_matrix(view.camera_to_world, np.eye(4))
    path = out / f"{Path(view.name).name}.png"
    render.filepath = str(path)
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=True, scene=scene.name)
    if not path.exists():
        raise GSError(f"{engine} render of frame {view.name!r} wrote no image")
    return path


def render_dataset_frames(*, splats_path, cameras, out_dir, engine: str = "eevee",
                          resolution: int | None = None, samples: int | None = None,
                          allow_outside_paths: bool = False,
                          report: Report = log_report) -> list[Path]:
    """Render a splat file from every frame of a NeRF-synthetic transforms file to RGBA PNGs
    named after the frames, with EEVEE, Cycles or the exact engine inside Blender.

    The splats are imported as :func:`splat_object.creation_layout` makes them: on Blender
    5.3+ native splats, which EEVEE and Cycles draw themselves (Cycles traces them with a
    stochastic alpha test, so ``samples`` defaults to :data:`NATIVE_SAMPLES` there), before
    that the mesh with the splat display (one sample: the display is deterministic). The work
    happens in a temporary scene that is removed afterwards (the open file is otherwise
    untouched). ``resolution`` rescales the longer image side.
    """
    from ..blender_gs_addon.conventions.frames import FILE_TO_WORLD_UP
    from ..blender_gs_addon.reconstruction.evaluate import cameras_to_render
    from .splat_object import import_splats

    if engine not in ENGINES:
        raise GSError(f"unknown render engine {engine!r}; use {', '.join(ENGINES)}")
    if resolution is not None and resolution < 1:
        raise GSError(f"resolution must be a positive number of pixels, got {resolution}")
    views, out = cameras_to_render(cameras, out_dir, allow_outside_paths=allow_outside_paths)
    scene = bpy.data.scenes.new("GS Render")
    created = []
    try:
        obj = import_splats(splats_path, up_axis=FILE_TO_WORLD_UP, collection=scene.collection,
                            display=False, report=report)
        created.append(obj)
        cam_data = bpy.data.cameras.new("GS Render Camera")
        cam = bpy.data.objects.new("GS Render Camera", cam_data)
        created.append(cam)
        scene.collection.objects.link(cam)
        scene.camera = cam
        native = splat_object.splat_layout(obj) == "NATIVE"
        configure_scene(scene, engine, samples=samples or (
            NATIVE_SAMPLES.get(engine) if native else None))
        if not native:
            display.add_display(obj, scene=scene, report=report)
        settings = scene.render.image_settings
        settings.file_format = 'PNG'
        settings.color_mode = 'RGBA'
        settings.color_depth = '8'
        written = [_render_view(scene, cam, view.resized(resolution), out, engine)
                   for view in views]
        report({'INFO'}, f"Rendered {len(written)} frames with {engine} to {out}")
        return written
    finally:
        for item in created:
            data = item.data
            bpy.data.objects.remove(item)
            if isinstance(data, bpy.types.Mesh):
                bpy.data.meshes.remove(data)
            elif isinstance(data, bpy.types.PointCloud):
                bpy.data.pointclouds.remove(data)
            elif isinstance(data, bpy.types.Camera):
                bpy.data.cameras.remove(data)
        bpy.data.scenes.remove(scene)
