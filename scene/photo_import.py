"""The result of a reconstruction from photos in Blender: the splats and the recovered cameras,
each camera showing its photo as background image, in one new collection "<name> Photos"
(the splat object, and the cameras in a child collection "<name> Cameras").

The pose data set's world is upright (+Z the cameras' average up, or the chosen up) and is the
Blender world the results belong in (its normalisation is the identity), so splats and cameras
land upright at the origin, the subject in a unit cube; looking through a camera (Numpad 0)
shows its photo where the splats fall, at the render size set to the photos'.

All or nothing: on any error every datablock made here is removed again (the collection with
it, which unlinks it from the scene), the scene's camera is put back, and the data set kept on
disk is put back as it was, so the scene and ``bpy.data`` stay as they were.
"""

from __future__ import annotations

import shutil

import bpy
import numpy as np
from mathutils import Matrix

from ..blender_gs_addon.conventions.frames import file_to_blender_matrix
from ..blender_gs_addon.datasets.nerf_synthetic import read_transforms
from ..blender_gs_addon.errors import Report, log_report
from ..blender_gs_addon.poses.photo_job import SPLATS_FILE, PhotoJob
from ..blender_gs_addon.poses.recover import restore_folder
from .camera_import import create_view_cameras, set_scene_resolution
from .splat_object import import_splats

__all__ = ["import_photo_result", "build_photo_collection"]

# The kinds of datablock building the collection can make (objects first: they use the rest).
_KINDS = ("objects", "meshes", "pointclouds", "cameras", "materials", "node_groups", "images",
          "collections")


def _datablocks() -> dict[str, set]:
    return {kind: set(getattr(bpy.data, kind)) for kind in _KINDS if hasattr(bpy.data, kind)}


def _remove_new(before: dict[str, set]) -> None:
    """Remove every datablock made since ``before`` (:func:`_datablocks`)."""
    for kind, old in before.items():
        blocks = getattr(bpy.data, kind)
        for block in [b for b in blocks if b not in old]:
            blocks.remove(block)


def build_photo_collection(dataset_folder, *, name: str, scene, view_layer,
                           report: Report = log_report):
    """(collection "<name> Photos", the splat object) from a kept pose data set: one camera per
    placed photo with the photo as background, and its ``splats.ply``. The scene's render size
    becomes the photos' size, a scene without an active camera gets the first photo's camera
    (the view to render from), and the splat object is selected and active."""
    dataset = read_transforms(dataset_folder, report=report)
    undo = np.linalg.inv(dataset.normalisation)  # [4, 4]; the identity for a pose data set
    before, camera_before = _datablocks(), scene.camera
    photos = bpy.data.collections.new(f"{name} Photos")
    try:
        cameras = create_view_cameras(dataset, scene=scene, name=f"{name} Cameras",
                                      world_to_blender=file_to_blender_matrix("+Z") @ undo,
                                      images=True, parent=photos, report=report)
        scene.collection.children.link(photos)
        if scene.camera is None:  # before the splats: their display projects through it
            scene.camera = cameras.objects[0]
        obj = import_splats(dataset.root / SPLATS_FILE, up_axis="-Y", name=f"{name} Splats",
                            collection=photos, report=report)
        obj.matrix_basis = Matrix(undo.tolist()) @ obj.matrix_basis
    except BaseException:
        scene.camera = camera_before
        _remove_new(before)
        raise
    set_scene_resolution(scene, dataset, report=report)
    if scene.camera is not camera_before:
        report({'INFO'}, f"Scene {scene.name!r}: active camera {scene.camera.name} (the first "
                         "photo's view)")
    for other in view_layer.objects:
        other.select_set(other == obj)
    view_layer.objects.active = obj
    return photos, obj


def import_photo_result(job: PhotoJob, result_dir, *, scene, view_layer,
                        report: Report = log_report):
    """Keep the result's data set (:meth:`PhotoJob.install`) and build the collection from it;
    (collection, splat object, the data set's report). On failure the data set folder is as it
    was before (an earlier data set there comes back) and nothing is added to Blender."""
    pose_report, old = job.install(result_dir)
    try:
        collection, obj = build_photo_collection(job.dataset_folder, name=job.name,
                                                 scene=scene, view_layer=view_layer,
                                                 report=report)
    except BaseException:
        restore_folder(job.dataset_folder, old)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return collection, obj, pose_report
