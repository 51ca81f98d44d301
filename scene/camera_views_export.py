"""A data set from scene cameras with background images (photos the user lined up by hand).

``dataset_from_cameras`` is the inverse of :mod:`.camera_import`: every perspective camera of a
collection (default: the whole scene) that shows an image as its camera background becomes one
view of a NeRF-synthetic data set that the ``fit`` backend and other 3DGS trainers read. The
images are copied beside the transforms files, unchanged.

Intrinsics: Blender draws a background image over the camera frame, whose shape is the scene's
render size and pixel aspect. The camera's pinhole at that size
(:func:`blender_gs_addon.conventions.intrinsics.intrinsics_from_blender_camera`: lens, sensor fit,
shift)
is scaled to the image's pixel size. With the frame method *Stretch* that scaling may differ
in x and y; *Fit* and *Crop* only agree with the frame when the image has the frame's aspect,
so other aspects are refused, as are background offsets, rotations, scales and flips (the
image would no longer sit on the frame).

Framing, as a capture does it: with ``objects`` the data set world is normalised so that their
bounding box fits a unit cube at the origin. Without objects the subject is taken to be where
the cameras look: the point nearest to all optical axes (least squares), with a half size of
``0.6 · d · tan(fov/2)`` at the cameras' median distance ``d`` from it, the size of something
that fills most of the views. Either way ``normalisation_transform`` is stored, so results map
back onto the scene.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..blender_gs_addon.capture import rigs as capture_rigs
from ..blender_gs_addon.conventions.frames import camera_to_world_from_matrix_world
from ..blender_gs_addon.datasets.camera_views import CameraView, ViewDataset
from ..blender_gs_addon.datasets.nerf_synthetic import write_transforms
from ..blender_gs_addon.errors import GSError, Report, log_report
from .camera_import import camera_intrinsics, camera_object_matrix

__all__ = ["dataset_from_cameras", "cameras_with_backgrounds"]


def cameras_with_backgrounds(collection) -> list[tuple]:
    """(camera object, CameraBackgroundImage) for every camera in ``collection`` with an image
    background, sorted by name; the first shown image background of each camera counts."""
    found = []
    for obj in sorted(collection.all_objects, key=lambda o: o.name):
        if obj.type != 'CAMERA':
            continue
        for bg in obj.data.background_images:
            shown = getattr(bg, "show_background_image", True)
            if bg.source == 'IMAGE' and bg.image is not None and shown:
                found.append((obj, bg))
                break
    return found


def _check_background(obj, bg) -> None:
    where = f"camera {obj.name!r}"
    if obj.data.type != 'PERSP':
        raise GSError(f"{where}: only perspective cameras make views (it is {obj.data.type})")
    if any(abs(v) > 1e-6 for v in bg.offset) or abs(bg.rotation) > 1e-6 \
            or abs(bg.scale - 1.0) > 1e-6 or bg.use_flip_x or bg.use_flip_y:
        raise GSError(f"{where}: its background image is offset, rotated, scaled or flipped, so "
                      "it does not cover the camera frame; reset those settings")


def _image_file(obj, image: bpy.types.Image) -> Path:
    where = f"camera {obj.name!r}"
    if image.packed_file is not None or image.source != 'FILE':
        raise GSError(f"{where}: background image {image.name!r} is packed or generated; "
                      "unpack it to a file first (File › External Data › Unpack Resources)")
    path = Path(bpy.path.abspath(image.filepath, library=image.library))
    if not path.is_file():
        raise GSError(f"{where}: background image file {path} does not exist")
    return path


@dataclass
class _Photo:
    """One camera's photo, measured in the user's world."""

    name: str                  # the camera's name
    path: Path                 # the image file
    width: int                 # image size in pixels
    height: int
    intrinsics: tuple          # (fx, fy, cx, cy) in the image's pixels
    camera_to_world: np.ndarray  # [4, 4] OpenGL camera axes, user world
    fov: float                 # radians across the narrower field of view


def _render_frame(scene) -> tuple[int, int, float]:
    """The camera frame's pixel size (render size × percentage) and pixel aspect x / y."""
    render = scene.render
    res_x = round(render.resolution_x * render.resolution_percentage / 100)
    res_y = round(render.resolution_y * render.resolution_percentage / 100)
    return res_x, res_y, render.pixel_aspect_x / render.pixel_aspect_y


def _photo(obj, bg, depsgraph, frame: tuple[int, int, float]) -> _Photo:
    """A camera's background photo with the camera's pinhole scaled to the photo's pixels;
    GSError when the photo does not cover the camera frame exactly."""
    _check_background(obj, bg)
    path = _image_file(obj, bg.image)
    width, height = (int(v) for v in bg.image.size)
    if width < 1 or height < 1:
        raise GSError(f"camera {obj.name!r}: background image {path} could not be read")
    res_x, res_y, pixel_aspect = frame
    evaluated = obj.evaluated_get(depsgraph)
    fx, fy, cx, cy = camera_intrinsics(evaluated.data, res_x=res_x, res_y=res_y,
                                       pixel_aspect=pixel_aspect)
    sx, sy = width / res_x, height / res_y
    if bg.frame_method != 'STRETCH' and abs(sx / sy - 1.0) > 1e-3:
        raise GSError(f"camera {obj.name!r}: image {width}×{height} has another aspect than "
                      f"the render size {res_x}×{res_y}; set the background's frame method "
                      "to Stretch or the render size to the photo's")
    c2w = camera_to_world_from_matrix_world(np.array(evaluated.matrix_world))
    fov = 2.0 * math.atan(min(0.5 * width / (fx * sx), 0.5 * height / (fy * sy)))
    return _Photo(obj.name, path, width, height, (fx * sx, fy * sy, cx * sx, cy * sy), c2w, fov)


def _subject_bounds(photos: list[_Photo], objects, depsgraph) -> tuple[np.ndarray, np.ndarray]:
    """The box to normalise: the objects' bounds, else where the cameras look ([3], [3])."""
    from .capture import selection_bounds

    if not objects:
        return capture_rigs.subject_bounds_from_cameras(
            np.stack([p.camera_to_world for p in photos]), np.array([p.fov for p in photos]),
            hint="select the objects to frame instead")
    bounds = selection_bounds(objects, depsgraph)
    if bounds is None:
        raise GSError("the selected objects have no geometry to frame")
    return bounds


def _views(photos: list[_Photo], normalisation: np.ndarray, out: Path,
           test_views: int) -> list[CameraView]:
    """The data set's views in the normalised world, ``test_views`` of them spread evenly."""
    n = len(photos)
    test_ids = {min(n - 1, int((i + 0.5) * n / test_views)) for i in range(test_views)}
    views = []
    for i, photo in enumerate(photos):
        split = "test" if i in test_ids else "train"
        fx, fy, cx, cy = photo.intrinsics
        views.append(CameraView(
            name=photo.name, width=photo.width, height=photo.height, fx=fx, fy=fy, cx=cx, cy=cy,
            file_path=out / split / f"{bpy.path.clean_name(photo.name)}{photo.path.suffix.lower()}",
            camera_to_world=np.array(camera_object_matrix(photo.camera_to_world, normalisation)),
            split=split))
    return views


def _write(dataset: ViewDataset, photos: list[_Photo], out: Path, report: Report) -> None:
    """Copy the photos and write the transforms; a folder made here is removed on failure."""
    created = not out.exists()
    try:
        for view, photo in zip(dataset.views, photos):
            view.file_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo.path, view.file_path)
        write_transforms(dataset, out, report=report)
    except OSError as err:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise GSError(f"{out}: could not write the data set ({err.strerror or err})") from None
    except GSError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def dataset_from_cameras(*, scene: bpy.types.Scene, out_dir, collection=None, objects=None,
                         test_views: int = 0, report: Report = log_report) -> Path:
    """Write a NeRF-synthetic data set of the cameras with background images; returns its folder.

    Args:
        scene: whose render size, pixel aspect and cameras are used.
        out_dir: folder to write (created; must not already hold a data set).
        collection: cameras to use (default: every camera in the scene).
        objects: frame these objects (their bounding box) instead of guessing the subject.
        test_views: views held out as the test split, spread evenly.
    """
    collection = collection or scene.collection
    found = cameras_with_backgrounds(collection)
    if not found:
        raise GSError(f"no camera in {collection.name!r} has a background image; add the "
                      "photos as camera background images (Camera › Background Images)")
    if not 0 <= test_views < len(found):
        raise GSError(f"test_views must be between 0 and {len(found) - 1} for {len(found)} "
                      "cameras with background images")
    out = Path(out_dir)
    if (out / "transforms_train.json").exists():
        raise GSError(f"{out} already holds a data set; choose an empty folder")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    frame = _render_frame(scene)
    photos = [_photo(obj, bg, depsgraph, frame) for obj, bg in found]
    normalisation = capture_rigs.normalisation_transform(
        *_subject_bounds(photos, objects, depsgraph))
    dataset = ViewDataset(views=_views(photos, normalisation, out, test_views),
                          normalisation=normalisation, root=out)
    _write(dataset, photos, out, report)
    n = len(photos)
    report({'INFO'}, f"Wrote a data set of {n} camera views ({n - test_views} train, "
                     f"{test_views} test) to {out}")
    return out
