"""Capture: render training views of scene objects with exact cameras into a NeRF-style data set.

``capture_views(context, objects=…, out_dir=…, rig=…)`` renders the objects from a camera rig
(orbit, sphere, LGM) or from every camera of a collection, as :class:`CaptureOptions` say, and
writes ``transforms_train.json`` / ``transforms_test.json``, RGBA PNGs under ``train/`` and
``test/``, and ``capture.json``. :class:`CaptureSession` does the same a view per call for the
modal operator. Nothing of the user's scene or output folder changes unless every view renders.
How framing, the temporary scene and staging work: docs/architecture.md, "Capture".
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..blender_gs_addon.capture import rigs as capture_rigs
from ..blender_gs_addon.capture.options import (
    DEFAULT_SAMPLES,
    ENGINE_IDS,
    RIGS,
    CaptureOptions,
)
from ..blender_gs_addon.conventions.frames import camera_to_world_from_matrix_world
from ..blender_gs_addon.conventions.lgm_rig import LGM_FOVY_DEG, LGM_RADIUS
from ..blender_gs_addon.datasets.camera_views import CameraView, ViewDataset
from ..blender_gs_addon.datasets.nerf_synthetic import write_transforms
from ..blender_gs_addon.errors import Cancelled, GSError, Report, log_report
from .camera_import import apply_intrinsics, camera_intrinsics, camera_object_matrix

__all__ = [
    "RIGS", "DEFAULT_SAMPLES", "CaptureOptions", "CaptureCancelled", "CaptureSession",
    "capture_views", "selection_bounds", "print_progress", "render_visible_objects",
    "GEOMETRY_TYPES",
]

GEOMETRY_TYPES = {'MESH', 'CURVE', 'SURFACE', 'META', 'FONT', 'CURVES', 'POINTCLOUD', 'VOLUME',
                   'GREASEPENCIL'}
# Workbench anti-aliasing levels (render_aa) by sample count.
_WORKBENCH_AA = ((1, 'OFF'), (5, '5'), (8, '8'), (11, '11'), (16, '16'), (32, '32'))
# What defines a Workbench render's look (the rest of View3DShading is viewport-only).
_WORKBENCH_SHADING = {
    "light", "color_type", "single_color", "studio_light", "studio_light_rotate_z",
    "studio_light_intensity", "use_world_space_lighting", "show_backface_culling",
    "show_xray", "xray_alpha", "show_shadows", "shadow_intensity", "show_cavity", "cavity_type",
    "curvature_ridge_factor", "curvature_valley_factor", "cavity_ridge_factor",
    "cavity_valley_factor", "use_dof", "show_object_outline", "object_outline_color",
    "show_specular_highlight",
}
# Radius of the unit cube's bounding sphere: the auto camera distance keeps all of it in view.
_UNIT_CUBE_RADIUS = math.sqrt(3.0) / 2.0
_TEMP_NAME = "GS Capture (temporary)"


class CaptureCancelled(Cancelled):
    """The user (or a progress callback) stopped a capture; nothing was changed."""


def print_progress(fraction: float, message: str) -> bool:
    """Progress callback for background mode and the command line: one printed line per view."""
    print(f"Capture [{fraction * 100:5.1f}%] {message}", flush=True)
    return True


# ---------------------------------------------------------------------------------- geometry
def _pointer_set(objects) -> set[int]:
    return {obj.original.as_pointer() for obj in objects}


def selection_bounds(objects, depsgraph) -> tuple[np.ndarray, np.ndarray] | None:
    """World-space bounding box ([3], [3]) of the evaluated geometry of ``objects``.

    Meshes count with their evaluated vertices (exact), other geometry and instances (collection
    instances, Geometry Nodes instances, particles) with their bounding-box corners. An object the
    depsgraph did not evaluate (disabled in viewports) counts with its original bounding box.
    Returns None when there is no geometry at all.
    """
    wanted = _pointer_set(objects)
    seen: set[int] = set()
    lows, highs = [], []

    def add(points, matrix) -> None:
        m = np.array(matrix, dtype=np.float64)  # [4, 4]
        world = points @ m[:3, :3].T + m[:3, 3]  # [P, 3]
        lows.append(world.min(axis=0))
        highs.append(world.max(axis=0))

    for inst in depsgraph.object_instances:
        owner = inst.parent if inst.is_instance else inst.object
        if owner is None or owner.original.as_pointer() not in wanted:
            continue
        seen.add(owner.original.as_pointer())
        ob = inst.object
        if ob.type not in GEOMETRY_TYPES:
            continue
        if ob.type == 'MESH' and not inst.is_instance and len(ob.data.vertices):
            co = np.empty(len(ob.data.vertices) * 3, dtype=np.float32)
            ob.data.vertices.foreach_get("co", co)
            add(co.reshape(-1, 3).astype(np.float64), inst.matrix_world)
        elif ob.type != 'MESH':
            add(np.array([tuple(c) for c in ob.bound_box], dtype=np.float64), inst.matrix_world)
    for obj in objects:
        if obj.original.as_pointer() not in seen and obj.type in GEOMETRY_TYPES:
            add(np.array([tuple(c) for c in obj.bound_box], dtype=np.float64), obj.matrix_world)
    if not lows:
        return None
    return np.min(lows, axis=0), np.max(highs, axis=0)


def render_visible_objects(view_layer) -> list[bpy.types.Object]:
    """Objects a render of ``view_layer`` would include (collection exclusion and render
    visibility of collections and objects honoured)."""
    found: dict[int, bpy.types.Object] = {}

    def walk(layer_collection) -> None:
        if layer_collection.exclude or layer_collection.collection.hide_render:
            return
        for obj in layer_collection.collection.objects:
            if not obj.hide_render:
                found.setdefault(obj.as_pointer(), obj)
        for child in layer_collection.children:
            walk(child)

    walk(view_layer.layer_collection)
    return list(found.values())


def _copy_rna_settings(source, target, *, only=None) -> None:
    """Copy every writable plain property (no pointers / collections) of one settings struct to
    another of the same type (or just those named in ``only``); values the target refuses are
    skipped."""
    for prop in source.bl_rna.properties:
        name = prop.identifier
        if prop.is_readonly or prop.type in ('POINTER', 'COLLECTION') or name == "rna_type" \
                or (only and name not in only) or name.startswith(("preview", "debug")):
            continue  # viewport-preview and debug options are not the render's business
        try:
            setattr(target, name, getattr(source, name))
        except (AttributeError, TypeError, ValueError, RuntimeError):
            pass


# ------------------------------------------------------------------------------ render step
def _set_engine(render, engine: str) -> None:
    try:
        render.engine = ENGINE_IDS[engine]
    except TypeError:
        if engine != "EEVEE":
            raise GSError(f"render engine {engine} is not available in this Blender") from None
        render.engine = 'BLENDER_EEVEE_NEXT'  # Blender 4.2–4.4 name


def _render_still(scene: bpy.types.Scene, filepath: Path) -> None:
    """Render ``scene``'s current frame to ``filepath`` (PNG). Tests patch this to fail."""
    scene.render.filepath = str(filepath)
    try:
        bpy.ops.render.render(scene=scene.name, write_still=True)
    except RuntimeError as err:
        raise GSError(f"Blender failed to render {filepath.name}: {str(err).strip()}") from None
    if not filepath.is_file():
        raise GSError(f"Blender did not write {filepath} (render engine "
                      f"{scene.render.engine} failed or was stopped)")


def _composite_file(path: Path, background) -> None:
    """Composite a straight-alpha RGBA PNG onto a colour in place (display space, alpha → 1)."""
    image = bpy.data.images.load(str(path))
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        rgba = pixels.reshape(-1, 4)  # [P, 4]
        alpha = rgba[:, 3:4]
        rgba[:, :3] = rgba[:, :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
        rgba[:, 3] = 1.0
        image.pixels.foreach_set(pixels)
        image.save()
    finally:
        bpy.data.images.remove(image)


# ------------------------------------------------------------------------------- the session
@dataclass
class _PlannedView:
    view: CameraView          # the data set's view (normalised world, final file path)
    staging_path: Path        # where Blender writes it first
    matrix_world: Matrix      # render camera placement in the user's world
    source_camera: bpy.types.Object | None  # scene-camera rig: the camera it copies


def _render_size(options: CaptureOptions, scene) -> tuple[int, int]:
    """(width, height) of the renders: the options' resolution, else the scene's render size."""
    if options.resolution is not None:
        return options.resolution
    pct = scene.render.resolution_percentage / 100.0
    return (max(1, round(scene.render.resolution_x * pct)),
            max(1, round(scene.render.resolution_y * pct)))


def _renderable_objects(objects, report: Report) -> list[bpy.types.Object]:
    """The objects that render; GSError when none of them has geometry that renders."""
    objects = [obj for obj in (objects or ()) if obj is not None]
    if not objects:
        raise GSError("nothing to capture: no objects selected (select the objects to "
                      "render, or pass objects=)")
    hidden = [obj.name for obj in objects if obj.hide_render]
    shown = [obj for obj in objects if not obj.hide_render]
    if hidden:
        report({'WARNING'}, f"objects disabled in renders are left out: {', '.join(hidden)}")
    has_geometry = [obj for obj in shown if obj.type in GEOMETRY_TYPES or (
        obj.type == 'EMPTY' and obj.instance_type == 'COLLECTION' and obj.instance_collection)]
    if not has_geometry:
        names = ", ".join(obj.name for obj in objects)
        raise GSError(f"nothing to capture: the selection ({names}) has no geometry that "
                      "renders (only lights, cameras, empties, or objects disabled in renders)")
    return shown


def _collection_cameras(scene, collection) -> list[bpy.types.Object]:
    """The perspective cameras of ``collection`` (a collection, its name, or None: the whole
    scene), sorted by name; GSError when there are none or some are not perspective."""
    if isinstance(collection, str):
        found = bpy.data.collections.get(collection)
        if found is None:
            raise GSError(f"no collection named {collection!r} for the scene-camera rig")
        collection = found
    if collection is None:
        # No collection named: every camera of the scene, as "capture from my cameras"
        # means to a user who never sorted them into a collection.
        collection = scene.collection
    cameras = sorted((obj for obj in collection.all_objects if obj.type == 'CAMERA'),
                     key=lambda obj: obj.name)
    if not cameras:
        where = ("the scene" if collection == scene.collection
                 else f"collection {collection.name!r}")
        raise GSError(f"{where} has no cameras for the scene-camera rig")
    bad = [cam.name for cam in cameras if cam.data.type != 'PERSP']
    if bad:
        raise GSError(f"only perspective cameras can be captured; not perspective: "
                      f"{', '.join(bad)}")
    return cameras


class CaptureSession:
    """One capture, runnable a view at a time: ``begin()``, ``step()`` until it returns False,
    ``finish()`` → data set folder; ``close()`` always (restores the scene, discards the output
    of an unfinished capture). The constructor only validates; it changes nothing.

    Args:
        scene: the scene whose objects, lights, world and frame are rendered.
        objects: what to capture.
        options: how (:class:`CaptureOptions`; validated here, default: its defaults).
        out_dir: the data set folder (created; existing files of the same names replaced).
        view_layer: whose render-visible lights are used (default: the scene's first).
    After the constructor ``options`` holds the validated options and ``size`` the render size.
    """

    def __init__(self, scene: bpy.types.Scene, *, objects, options: CaptureOptions | None = None,
                 out_dir, view_layer=None, report: Report = log_report):
        self.scene = scene
        self.view_layer = view_layer or scene.view_layers[0]
        self.report = report
        self.options = (options or CaptureOptions()).validate(report)
        self.size = _render_size(self.options, scene)
        self.objects = _renderable_objects(objects, report)
        self.cameras: list[bpy.types.Object] = []
        if self.options.rig == "cameras":
            self.cameras = _collection_cameras(scene, self.options.camera_collection)
            if self.options.test_views >= len(self.cameras):
                raise GSError(f"{self.options.test_views} test views leave no training views "
                              f"among the {len(self.cameras)} cameras")
        if not out_dir:
            raise GSError("no output folder given")
        self.out_dir = Path(bpy.path.abspath(str(out_dir))).absolute()

        self._plan: list[_PlannedView] = []
        self._index = 0
        self._temp_scene = None
        self._temp_camera = None
        self._temp_camera_data = []
        self._render_result_existed = "Render Result" in bpy.data.images
        self._staging: Path | None = None
        self._created_dirs: list[Path] = []
        self._finished = False
        self._closed = False
        self._started = None
        self._render_seconds: list[float] = []
        self.normalisation = np.eye(4)
        self.bbox = None
        self.message = "preparing"

    @property
    def samples(self) -> int:
        """Samples per pixel the views render with."""
        return self.options.samples

    # ---------------------------------------------------------------------------- begin
    @property
    def total(self) -> int:
        return len(self._plan)

    @property
    def done(self) -> int:
        """Views rendered so far."""
        return self._index

    @property
    def fraction(self) -> float:
        return self._index / len(self._plan) if self._plan else 0.0

    def begin(self) -> None:
        """Make the staging folder, the temporary scene and camera, measure and plan."""
        self._started = time.perf_counter()
        self._make_staging()
        temp = self._make_temp_scene()
        with bpy.context.temp_override(scene=temp, view_layer=temp.view_layers[0]):
            depsgraph = bpy.context.evaluated_depsgraph_get()
        self.bbox = self._measure(depsgraph)
        self.normalisation = capture_rigs.normalisation_transform(*self.bbox)
        self._plan = self._plan_views(depsgraph)

        cam_data = bpy.data.cameras.new(_TEMP_NAME)
        self._temp_camera_data.append(cam_data)
        self._temp_camera = bpy.data.objects.new(_TEMP_NAME, cam_data)
        temp.collection.objects.link(self._temp_camera)
        temp.camera = self._temp_camera
        self.message = f"rendering {self.total} views with {self.options.engine}"

    def _make_temp_scene(self) -> bpy.types.Scene:
        """The scene the views render in: the objects, the user's render-visible lights and
        world, the frame, and render settings of its own."""
        temp = bpy.data.scenes.new(_TEMP_NAME)
        self._temp_scene = temp
        linked: set[int] = set()
        lights = [obj for obj in render_visible_objects(self.view_layer) if obj.type == 'LIGHT']
        # The rig's cameras are evaluated with the objects, never rendered.
        for obj in [*self.objects, *lights, *self.cameras]:
            if obj.as_pointer() not in linked:
                temp.collection.objects.link(obj)
                linked.add(obj.as_pointer())
        temp.world = self.scene.world
        temp.frame_current = self.scene.frame_current
        self._configure_output(temp)
        self._configure_engine(temp)
        return temp

    def _measure(self, depsgraph) -> tuple[np.ndarray, np.ndarray]:
        """The objects' world bounding box ([3], [3]); GSError when there is nothing to frame."""
        bounds = selection_bounds(self.objects, depsgraph)
        names = ", ".join(obj.name for obj in self.objects)
        if bounds is None:
            raise GSError(f"nothing to capture: the selection ({names}) has no geometry")
        lo, hi = bounds
        if float((hi - lo).max()) <= 1e-9 * max(1.0, float(np.abs(lo).max())):
            raise GSError(f"the selection ({names}) has a zero-size bounding box at "
                          f"{lo.round(6).tolist()}; nothing to frame")
        return lo, hi

    def _make_staging(self) -> None:
        out = self.out_dir
        missing = []
        probe = out
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise GSError(f"{out}: cannot write the data set there ({probe} is a file)")
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self._created_dirs.append(folder)
            staging = out / f".gs_capture_{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            self._staging = staging
            (staging / "train").mkdir()
            (staging / "test").mkdir()
            with open(staging / "probe", "wb") as fh:
                fh.write(b"ok")
            (staging / "probe").unlink()
        except OSError as err:
            raise GSError(f"{out}: cannot write the data set there ({err.strerror or err})") \
                from None

    def _configure_output(self, temp: bpy.types.Scene) -> None:
        """Size, film and file settings: straight-alpha 8-bit RGBA PNGs, "Standard" colours."""
        render = temp.render
        render.resolution_x, render.resolution_y = self.size
        render.resolution_percentage = 100
        render.pixel_aspect_x = render.pixel_aspect_y = 1.0
        render.use_border = False
        render.use_motion_blur = False
        render.use_compositing = False
        render.use_sequencer = False
        render.film_transparent = True
        render.use_file_extension = True
        render.use_overwrite = True
        render.threads_mode = self.scene.render.threads_mode
        render.threads = self.scene.render.threads
        settings = render.image_settings
        settings.file_format = 'PNG'
        settings.color_mode = 'RGBA'
        settings.color_depth = '8'
        settings.compression = 15
        view = temp.view_settings
        view.view_transform = 'Standard'
        view.look = 'None'
        view.exposure = 0.0
        view.gamma = 1.0
        temp.display_settings.display_device = self.scene.display_settings.display_device

    def _configure_engine(self, temp: bpy.types.Scene) -> None:
        """The engine with the user's settings for it and the options' samples."""
        engine, samples = self.options.engine, self.options.samples
        _set_engine(temp.render, engine)
        if engine == "CYCLES":
            _copy_rna_settings(self.scene.cycles, temp.cycles)
            temp.cycles.samples = samples
            temp.cycles.use_adaptive_sampling = True
            temp.cycles.film_transparent_glass = False
            # Several views of the same scene: keep the BVH and textures between them.
            temp.render.use_persistent_data = True
        elif engine == "EEVEE":
            _copy_rna_settings(self.scene.eevee, temp.eevee)
            temp.eevee.taa_render_samples = samples
        else:
            _copy_rna_settings(self.scene.display.shading, temp.display.shading,
                               only=_WORKBENCH_SHADING)
            temp.display.render_aa = next(
                (aa for n, aa in reversed(_WORKBENCH_AA) if samples >= n), 'OFF')

    # ----------------------------------------------------------------------------- plan
    def _rig_cameras(self, count: int, *, test: bool) -> capture_rigs.RigCameras:
        w, h = self.size
        rig = self.options.rig
        if rig == "lgm" and not test:
            return capture_rigs.lgm_rig(resolution=w)
        if rig == "lgm":
            fov, radius = LGM_FOVY_DEG, LGM_RADIUS
        else:
            fov, radius = self.options.fov, self.options.radius or self._auto_radius()
        if rig == "orbit" and not test:
            return capture_rigs.orbit_rig(azimuth_count=count,
                                          elevations_deg=self.options.elevations,
                                          radius=radius, fov_deg=fov, width=w, height=h)
        cameras = capture_rigs.sphere_rig(count=count, radius=radius, fov_deg=fov, width=w,
                                          height=h)
        if test:
            # Turn the held-out spiral away from the training one (golden-angle spiral too).
            turn = np.eye(4)
            angle = math.radians(0.5 * 180.0 * (3.0 - math.sqrt(5.0)))
            turn[:2, :2] = [[math.cos(angle), -math.sin(angle)],
                            [math.sin(angle), math.cos(angle)]]
            cameras.camera_to_world = turn @ cameras.camera_to_world
        return cameras

    def _auto_radius(self) -> float:
        """Distance at which the normalised selection's bounding sphere (centred on the origin,
        at most the unit cube's) fits the narrower image side's field of view."""
        w, h = self.size
        half_wide = math.radians(self.options.fov) / 2.0
        half_narrow = math.atan(math.tan(half_wide) * min(w, h) / max(w, h))
        sphere = _UNIT_CUBE_RADIUS
        if self.bbox is not None:
            half_extent = 0.5 * (self.bbox[1] - self.bbox[0]) * self.normalisation[0, 0]
            sphere = float(np.linalg.norm(half_extent))
        return 1.02 * sphere / math.sin(half_narrow)

    def _plan_views(self, depsgraph) -> list[_PlannedView]:
        if self.options.rig == "cameras":
            return self._plan_scene_cameras(depsgraph)
        return self._plan_rig()

    def _planned(self, name: str, split: str, index: int, c2w: np.ndarray, intrinsics,
                 matrix_world, source=None) -> _PlannedView:
        """One view: ``c2w`` [4, 4] in the normalised world, ``intrinsics`` (fx, fy, cx, cy),
        ``matrix_world`` the render camera's placement in the user's world."""
        file_name = f"view_{index:03d}.png"
        w, h = self.size
        fx, fy, cx, cy = intrinsics
        view = CameraView(name=name, file_path=self.out_dir / split / file_name, width=w,
                          height=h, fx=fx, fy=fy, cx=cx, cy=cy, camera_to_world=c2w,
                          split=split)
        return _PlannedView(view, self._staging / split / file_name, matrix_world, source)

    def _plan_scene_cameras(self, depsgraph) -> list[_PlannedView]:
        """The cameras rig: every camera as it is, test views spread evenly among them."""
        n, k = len(self.cameras), self.options.test_views
        test_ids = {min(n - 1, int((i + 0.5) * n / k)) for i in range(k)} if k else set()
        counters = {"train": 0, "test": 0}
        plan = []
        for i, cam in enumerate(self.cameras):
            evaluated = cam.evaluated_get(depsgraph)
            c2w_user = camera_to_world_from_matrix_world(np.array(evaluated.matrix_world))
            c2w = np.array(camera_object_matrix(c2w_user, self.normalisation))
            # Square pixels: the capture renders with pixel aspect 1.
            intrinsics = camera_intrinsics(evaluated.data, res_x=self.size[0],
                                           res_y=self.size[1])
            split = "test" if i in test_ids else "train"
            plan.append(self._planned(cam.name, split, counters[split], c2w, intrinsics,
                                      Matrix(c2w_user.tolist()), source=cam))
            counters[split] += 1
        return plan

    def _plan_rig(self) -> list[_PlannedView]:
        """Orbit / sphere / lgm: the rig's training cameras, then its held-out spiral."""
        denormalisation = np.linalg.inv(self.normalisation)
        splits = [("train", self._rig_cameras(self.options.views, test=False))]
        if self.options.test_views:
            splits.append(("test", self._rig_cameras(self.options.test_views, test=True)))
        plan = []
        for split, rig in splits:
            intrinsics = (rig.fx, rig.fy, rig.cx, rig.cy)
            for i, c2w in enumerate(rig.camera_to_world):
                plan.append(self._planned(f"{split}_{i:03d}", split, i, c2w, intrinsics,
                                          camera_object_matrix(c2w, denormalisation)))
        return plan

    # ----------------------------------------------------------------------------- step
    def step(self) -> bool:
        """Render the next view; False when all are done (then call :meth:`finish`)."""
        if self._index >= len(self._plan):
            return False
        planned = self._plan[self._index]
        self.message = (f"view {self._index + 1}/{self.total} "
                        f"({planned.view.split}/{planned.staging_path.stem})")
        self._set_camera(planned)
        start = time.perf_counter()
        _render_still(self._temp_scene, planned.staging_path)
        if self.options.background is not None:
            _composite_file(planned.staging_path, self.options.background)
        self._render_seconds.append(time.perf_counter() - start)
        self._index += 1
        return self._index < len(self._plan)

    def _set_camera(self, planned: _PlannedView) -> None:
        temp_cam = self._temp_camera
        scale = float(self.normalisation[0, 0])
        if planned.source_camera is not None:
            data = planned.source_camera.data.copy()
            self._temp_camera_data.append(data)
            data.dof.use_dof = False  # a training image must be sharp
            old = temp_cam.data
            temp_cam.data = data
            if old is not self._temp_camera_data[0]:
                self._temp_camera_data.remove(old)
                bpy.data.cameras.remove(old)
        else:
            data = temp_cam.data
            apply_intrinsics(data, planned.view)
            data.clip_start = 0.01 / scale
            data.clip_end = (2.0 * (self.options.radius or self._auto_radius()) + 2.0) / scale
        temp_cam.matrix_world = planned.matrix_world

    # ---------------------------------------------------------------------------- finish
    def finish(self) -> Path:
        """Move the images into ``out_dir`` and write the transforms and capture.json."""
        if self._index < len(self._plan):
            raise GSError("capture is not complete; render every view before finishing")
        dataset = ViewDataset(views=[p.view for p in self._plan],
                              normalisation=self.normalisation,
                              background=self.options.background, root=self.out_dir)
        self._move_into_place()
        write_transforms(dataset, self.out_dir, report=self.report)
        self._write_capture_info(dataset)
        self._finished = True
        self._created_dirs.clear()  # they hold the data set now
        self.report({'INFO'}, f"Captured {len(self._plan)} views ({self.options.engine}, "
                              f"{self.size[0]}×{self.size[1]}) in "
                              f"{sum(self._render_seconds):.1f} s → {self.out_dir}")
        return self.out_dir

    def _move_into_place(self) -> None:
        try:
            for split in ("train", "test"):
                (self.out_dir / split).mkdir(exist_ok=True)
            for planned in self._plan:
                os.replace(planned.staging_path, planned.view.file_path)
        except OSError as err:
            raise GSError(f"{self.out_dir}: cannot move the rendered images into place "
                          f"({err})") from None

    def _write_capture_info(self, dataset: ViewDataset) -> None:
        """capture.json: the settings, what was captured, the framing and the timing."""
        seconds = float(np.sum(self._render_seconds))
        options = self.options
        info = {
            "rig": options.rig,
            "engine": options.engine,
            "samples": options.samples,
            "resolution": list(self.size),
            "transparent": options.transparent,
            "background_color": None if options.background is None else list(options.background),
            "objects": [obj.name for obj in self.objects],
            "blend_file": bpy.data.filepath or None,
            "frame": self.scene.frame_current,
            "bbox_min": self.bbox[0].tolist(),
            "bbox_max": self.bbox[1].tolist(),
            "normalisation_transform": self.normalisation.tolist(),
            "views": {"train": len(dataset.split_views("train")),
                      "test": len(dataset.split_views("test"))},
            "render_seconds": seconds,
            "seconds_per_view": seconds / max(1, len(self._render_seconds)),
            "first_view_seconds": self._render_seconds[0] if self._render_seconds else None,
        }
        try:
            with open(self.out_dir / "capture.json", "w", encoding="utf-8") as fh:
                json.dump(info, fh, indent=2)
                fh.write("\n")
        except OSError as err:
            raise GSError(f"{self.out_dir / 'capture.json'}: cannot write ({err})") from None

    @property
    def render_seconds(self) -> list[float]:
        """Seconds each rendered view took (render + write + compositing)."""
        return list(self._render_seconds)

    # ----------------------------------------------------------------------------- close
    def close(self) -> None:
        """Remove every temporary datablock and the staging folder; idempotent."""
        if self._closed:
            return
        self._closed = True
        errors = []
        try:
            if self._temp_scene is not None:
                bpy.data.scenes.remove(self._temp_scene, do_unlink=True)
        except (ReferenceError, RuntimeError) as err:
            errors.append(err)
        self._temp_scene = None
        try:
            if self._temp_camera is not None:
                bpy.data.objects.remove(self._temp_camera, do_unlink=True)
        except (ReferenceError, RuntimeError) as err:
            errors.append(err)
        self._temp_camera = None
        for data in self._temp_camera_data:
            try:
                bpy.data.cameras.remove(data, do_unlink=True)
            except (ReferenceError, RuntimeError) as err:
                errors.append(err)
        self._temp_camera_data = []
        if not self._render_result_existed:
            result = bpy.data.images.get("Render Result")
            if result is not None and result.type == 'RENDER_RESULT':
                bpy.data.images.remove(result)
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        for folder in reversed(self._created_dirs):
            try:
                folder.rmdir()
            except OSError:
                pass
        if errors:
            self.report({'WARNING'}, f"capture clean-up: {errors[0]}")

    def __enter__(self) -> CaptureSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------- the call
def capture_views(context_or_scene=None, *, objects=None, out_dir,
                  options: CaptureOptions | None = None, progress=None,
                  report: Report = log_report, **settings) -> Path:
    """Render views of ``objects`` and write a NeRF-synthetic data set; return its folder.

    Args:
        context_or_scene: a context (its scene, view layer and selection) or a Scene (default
            ``bpy.context``).
        objects: the objects to capture (default: the selected objects).
        out_dir: the data set folder (created; existing files of the same names replaced).
        options: how to capture (:class:`CaptureOptions`); ``settings`` are its fields as
            keywords (``rig="sphere", views=24, …``), given alone or to change ``options``.
        progress: ``callback(fraction, message) -> bool``; returning False cancels
            (:class:`CaptureCancelled`).
    Raises:
        GSError for bad input (a bad option naming its field, no selection, no cameras,
        zero-size selection, unwritable folder, render failure); the scene and ``out_dir`` are
        then as they were.
    """
    options = CaptureOptions(**settings) if options is None else replace(options, **settings)
    context_or_scene = context_or_scene or bpy.context
    if isinstance(context_or_scene, bpy.types.Scene):
        scene, view_layer = context_or_scene, context_or_scene.view_layers[0]
        if objects is None:
            objects = [obj for obj in scene.objects if obj.select_get(view_layer=view_layer)]
    else:
        scene, view_layer = context_or_scene.scene, context_or_scene.view_layer
        if objects is None:
            objects = list(context_or_scene.selected_objects)
    session = CaptureSession(scene, objects=objects, options=options, out_dir=out_dir,
                             view_layer=view_layer, report=report)
    with session:
        session.begin()
        if progress is not None and progress(0.0, session.message) is False:
            raise CaptureCancelled("capture cancelled; nothing was written")
        more = True
        while more:
            more = session.step()
            if progress is not None and progress(session.fraction, session.message) is False:
                raise CaptureCancelled("capture cancelled; nothing was written")
        return session.finish()
