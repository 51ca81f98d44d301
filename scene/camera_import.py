"""Blender cameras for the views of a data set, each showing its image as a camera background.

``import_camera_views(path)`` reads a NeRF-synthetic / nerfstudio ``transforms*.json`` (a file
or a folder) or a COLMAP sparse model (``cameras`` + ``images``, ``.bin`` or ``.txt``) and puts
one camera object per view into a new collection. Looking through a camera (Numpad 0) with the
scene's render size set to the view's shows its image exactly where the camera's projection of
the scene falls, so a user can check that a data set lines up with the scene.

Placement: captured data sets (ours) store ``normalisation_transform`` (original Blender world →
data set world); by default the cameras are put back into the original world with its inverse,
so they line up with the captured object. Other data sets are in their own world; ``up_axis``
(see :mod:`blender_gs_addon.conventions.frames`) turns it into Blender's (COLMAP worlds are usually
"−Y" up).

Intrinsics: :func:`apply_intrinsics` sets lens, sensor (HORIZONTAL fit) and shift so that the
camera reproduces (fx, cx, cy) exactly for the view's width × height at any render size with the
same aspect. Blender has one pixel aspect per scene, not per camera: a view with fx ≠ fy gets the
right vertical focal length only if the scene's pixel aspect is set (``set_resolution`` does that
when all views agree).

On any error every datablock this module created is removed again.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..blender_gs_addon.conventions.frames import UP_AXES, file_to_blender_matrix
from ..blender_gs_addon.conventions.intrinsics import (
    blender_camera_from_intrinsics,
    intrinsics_from_blender_camera,
)
from ..blender_gs_addon.datasets.camera_views import CameraView, ViewDataset
from ..blender_gs_addon.errors import GSError, Report, log_report

__all__ = ["read_view_dataset", "import_camera_views", "create_view_cameras", "apply_intrinsics",
           "camera_intrinsics", "camera_object_matrix", "set_scene_resolution"]

_MAX_CAMERAS = 10_000


# ----------------------------------------------------------------------------------- reading
def _colmap_sparse_folder(path: Path) -> Path | None:
    """The sparse model folder ``path`` points at (itself, its parent for a model file, or a
    ``sparse/0`` / ``sparse`` below it), or None when it is not a COLMAP model."""
    if path.is_file():
        if path.stem in ("cameras", "images", "points3D") and path.suffix in (".bin", ".txt"):
            return path.parent
        return None
    for candidate in (path, path / "sparse" / "0", path / "sparse"):
        for ext in (".bin", ".txt"):
            if (candidate / f"cameras{ext}").is_file() and (candidate / f"images{ext}").is_file():
                return candidate
    return None


def read_view_dataset(path, *, check_images: bool = True,
                      report: Report = log_report) -> tuple[ViewDataset, str]:
    """Read a transforms.json data set or a COLMAP model; return it and its kind
    ("transforms" or "colmap")."""
    from ..blender_gs_addon.datasets.colmap import read_colmap_model
    from ..blender_gs_addon.datasets.nerf_synthetic import read_transforms

    path = Path(bpy.path.abspath(str(path)))
    if not path.exists():
        raise GSError(f"{path}: no such file or folder")
    sparse = _colmap_sparse_folder(path)
    if sparse is not None and not (path.is_file() and path.suffix == ".json"):
        return read_colmap_model(sparse, check_images=check_images, report=report), "colmap"
    if path.is_file() and path.suffix.lower() != ".json":
        raise GSError(f"{path}: not a transforms*.json file nor a COLMAP cameras/images file")
    return read_transforms(path, check_images=check_images, report=report), "transforms"


# -------------------------------------------------------------------------------- intrinsics
def camera_intrinsics(camera: bpy.types.Camera, *, res_x: int, res_y: int,
                      pixel_aspect: float = 1.0) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of a perspective camera rendered at ``res_x`` × ``res_y``
    (lens, sensor fit and shift as Blender projects): the inverse of :func:`apply_intrinsics`."""
    return intrinsics_from_blender_camera(
        lens_mm=camera.lens, sensor_width=camera.sensor_width, sensor_height=camera.sensor_height,
        sensor_fit=camera.sensor_fit, shift_x=camera.shift_x, shift_y=camera.shift_y,
        res_x=res_x, res_y=res_y, pixel_aspect=pixel_aspect)


def apply_intrinsics(camera: bpy.types.Camera, view: CameraView, *,
                     sensor_width: float = 36.0) -> dict:
    """Set a perspective camera's lens, sensor and shift from ``view``'s pinhole intrinsics.

    Returns the settings dict of
    :func:`blender_gs_addon.conventions.intrinsics.blender_camera_from_intrinsics` (its pixel
    aspect entries are for the scene, which this does not touch).
    """
    settings = blender_camera_from_intrinsics(
        fx=view.fx, fy=view.fy, cx=view.cx, cy=view.cy, width=view.width, height=view.height,
        sensor_width=sensor_width,
    )
    camera.type = 'PERSP'
    camera.lens_unit = 'MILLIMETERS'
    camera.sensor_fit = settings["sensor_fit"]
    camera.sensor_width = settings["sensor_width"]
    camera.sensor_height = settings["sensor_height"]
    camera.lens = settings["lens_mm"]
    camera.shift_x = settings["shift_x"]
    camera.shift_y = settings["shift_y"]
    return settings


def camera_object_matrix(camera_to_world: np.ndarray, world_to_blender: np.ndarray) -> Matrix:
    """Blender ``matrix_world`` (no scale) of a camera: ``world_to_blender`` · c2w, with the
    similarity's scale taken out of the rotation (a camera's scale does not change its view)."""
    m = np.asarray(world_to_blender, dtype=np.float64) @ np.asarray(camera_to_world, np.float64)
    lengths = np.linalg.norm(m[:3, :3], axis=0)  # [3]
    if (lengths < 1e-12).any() or not np.isfinite(m).all():
        raise GSError("camera placement is degenerate (zero or non-finite scale)")
    m[:3, :3] /= lengths
    return Matrix(m.tolist())


# ---------------------------------------------------------------------------------- building
def create_view_cameras(dataset: ViewDataset, *, scene: bpy.types.Scene, name: str,
                        world_to_blender: np.ndarray, images: bool = True,
                        parent: bpy.types.Collection | None = None,
                        report: Report = log_report) -> bpy.types.Collection:
    """One camera object per view in a new collection ``name`` under ``parent`` (default:
    ``scene``'s master collection); returns the collection. ``world_to_blender`` [4, 4] maps
    the data set's world into Blender's. Each camera keeps its view's name, split and size as
    custom properties (``gs_view``, ``gs_split``, ``gs_size``)."""
    if not dataset.views:
        raise GSError(f"{name}: the data set has no views")
    if len(dataset.views) > _MAX_CAMERAS:
        raise GSError(f"{name}: {len(dataset.views)} views is more cameras than is useful to "
                      f"show (limit {_MAX_CAMERAS})")
    created_objects, created_cameras, created_images = [], [], []
    images_before = set(bpy.data.images)
    collection = bpy.data.collections.new(name)
    try:
        (parent or scene.collection).children.link(collection)
        centres = np.stack([camera_object_matrix(v.camera_to_world, world_to_blender)
                            .to_translation() for v in dataset.views])  # [N, 3]
        spread = float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max())
        display_size = max(spread * 0.05, 1e-3) if spread > 0 else 0.2
        for view in dataset.views:
            cam = bpy.data.cameras.new(view.name)
            created_cameras.append(cam)
            apply_intrinsics(cam, view)
            cam.display_size = display_size
            obj = bpy.data.objects.new(view.name, cam)
            created_objects.append(obj)
            obj.matrix_world = camera_object_matrix(view.camera_to_world, world_to_blender)
            obj["gs_view"] = view.name
            obj["gs_split"] = view.split
            obj["gs_size"] = [view.width, view.height]
            collection.objects.link(obj)
            if images and view.file_path is not None:
                _add_background(cam, view, report=report)
        created_images = [im for im in bpy.data.images if im not in images_before]
    except BaseException:
        created_images = [im for im in bpy.data.images if im not in images_before]
        for obj in created_objects:
            bpy.data.objects.remove(obj)
        for cam in created_cameras:
            bpy.data.cameras.remove(cam)
        for im in created_images:
            bpy.data.images.remove(im)
        bpy.data.collections.remove(collection)
        raise
    return collection


def _add_background(cam: bpy.types.Camera, view: CameraView, *, report: Report) -> None:
    path = Path(view.file_path)
    if not path.is_file():
        report({'WARNING'}, f"view {view.name!r}: image {path} is missing; camera has no "
                            "background image")
        return
    try:
        image = bpy.data.images.load(str(path), check_existing=True)
    except RuntimeError as err:
        report({'WARNING'}, f"view {view.name!r}: Blender cannot load {path} ({err}); camera "
                            "has no background image")
        return
    background = cam.background_images.new()
    background.image = image
    # The view's image covers exactly the camera frame when the render size has its aspect.
    background.frame_method = 'STRETCH'
    background.alpha = 0.8
    cam.show_background_images = True


def import_camera_views(path, *, context=None, up_axis: str = "AUTO",
                        use_normalisation: bool = True, set_resolution: bool = True,
                        images: bool = True, split: str | None = None,
                        report: Report = log_report) -> bpy.types.Collection:
    """Cameras (with background images) for the views of a data set; returns their collection.

    ``path``: a transforms*.json, a folder holding them, or a COLMAP sparse folder / model file.
    ``up_axis``: "AUTO" (transforms: "+Z", Blender's world; COLMAP: "−Y") or a key of
    :data:`blender_gs_addon.conventions.frames.UP_AXES`. ``use_normalisation``: put captured
    cameras back onto
    the original object (inverse of the stored normalisation). ``set_resolution``: set the
    scene's render size (and pixel aspect) to the views' when they all agree. ``split``: only
    views of that split ("train", "test", …).
    """
    context = context or bpy.context
    scene = context.scene
    dataset, kind = read_view_dataset(path, check_images=False, report=report)
    if split is not None:
        dataset.views = dataset.split_views(split)
        if not dataset.views:
            raise GSError(f"{path}: no views in split {split!r}")
    if up_axis == "AUTO":
        up_axis = "-Y" if kind == "colmap" else "+Z"
    if up_axis not in UP_AXES:
        raise GSError(f"unknown up axis {up_axis!r}; choose AUTO or one of {', '.join(UP_AXES)}")
    world_to_blender = file_to_blender_matrix(up_axis)
    if use_normalisation:
        world_to_blender = world_to_blender @ dataset.denormalisation()
    root = Path(dataset.root) if dataset.root is not None else Path(path)
    name = f"Views {root.name or root}"
    collection = create_view_cameras(dataset, scene=scene, name=name,
                                     world_to_blender=world_to_blender, images=images,
                                     report=report)
    if set_resolution:
        set_scene_resolution(scene, dataset, report=report)
    report({'INFO'}, f"Imported {len(dataset.views)} cameras from {path} into collection "
                     f"{collection.name!r}")
    return collection


def set_scene_resolution(scene, dataset: ViewDataset, *, report: Report) -> None:
    """The scene's render size (and pixel aspect) set to the views' when they all agree, so
    looking through a view's camera frames its background image exactly; else a warning."""
    sizes = {(v.width, v.height) for v in dataset.views}
    aspects = {round(v.fx / v.fy, 6) for v in dataset.views}
    if len(sizes) != 1 or len(aspects) != 1:
        report({'WARNING'}, "the views have different image sizes or pixel aspects; the scene's "
                            "render size was left alone, so some cameras frame differently from "
                            "their images")
        return
    (width, height), view = sizes.pop(), dataset.views[0]
    settings = blender_camera_from_intrinsics(fx=view.fx, fy=view.fy, cx=view.cx, cy=view.cy,
                                              width=width, height=height)
    render = scene.render
    render.resolution_x, render.resolution_y = width, height
    render.resolution_percentage = 100
    render.pixel_aspect_x = settings["pixel_aspect_x"]
    render.pixel_aspect_y = settings["pixel_aspect_y"]
