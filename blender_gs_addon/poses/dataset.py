"""Recovered poses → our NeRF-synthetic data set, in an upright, normalised world.

COLMAP's world has no meaningful orientation, origin or scale. The data set's world is made
from it by a similarity N (COLMAP world of ``sparse/0`` → data set world, kept in
``report.json`` as ``colmap_to_dataset``), chosen so that results arrive upright in Blender:

* **up**: the cameras' average up vector (people hold cameras level, and orbit a subject from
  above as much as below), or a vector given in COLMAP's world; it becomes +Z.
* **centre**: the point nearest to every camera's optical axis (what the cameras look at), or,
  when the axes are nearly parallel (a forward-facing capture), the median of the SfM points.
* **scale**: the SfM points within the median camera distance of the centre, their 2–98 %
  extent, become a unit cube (as captures are normalised); without such points the median
  camera distance becomes 2.
* **heading**: turned about +Z so the first placed camera looks from −Y (Blender's front
  view) at the point the cameras look at.

The data set's world *is* the Blender world the results belong in, so its
``normalisation_transform`` is the identity: every reader and the Blender side (camera import,
the reconstruction job), which place results by the inverse of that transform, put splats and
cameras upright at the origin, the subject in a unit cube, as they are in the data set. (A
capture's normalisation leads back to the captured objects; COLMAP's world leads nowhere.)

Files: ``images/`` (working copies, PNG), ``transforms_train.json`` / ``transforms_test.json``
(every ``test_every``-th placed image held out for evaluation), ``points3d.ply`` (SfM points in
the data set's world, INRIA's layout), ``sparse/0/`` (the COLMAP model, COLMAP's world) and
``report.json`` (:func:`pose_report`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..conventions.frames import OPENCV_FROM_OPENGL
from ..datasets.camera_views import CameraView, ViewDataset
from ..datasets.nerf_synthetic import write_transforms
from ..datasets.point_cloud import POINTS_FILE, write_point_cloud
from ..errors import GSError, Report, log_report

__all__ = ["camera_up", "world_normalisation", "transform_cameras", "pose_views",
           "write_pose_dataset", "pose_report", "pose_summary", "held_out_names",
           "DEFAULT_TEST_EVERY"]

DEFAULT_TEST_EVERY = 8  # as 3DGS holds out every 8th image of its real scenes
_MIN_FOR_TEST = 10  # fewer placed images than this: no hold-out, all train


def camera_up(world_from_camera) -> np.ndarray:
    """[3] unit average up vector of [N, 4, 4] OpenCV cameras (their −Y axis)."""
    ups = -np.asarray(world_from_camera, dtype=np.float64)[:, :3, 1]  # [N, 3]
    mean = ups.mean(0)
    norm = np.linalg.norm(mean)
    if norm < 1e-6:
        raise GSError("the cameras' up vectors cancel out; give the up direction explicitly")
    return mean / norm


def _rotation_to_z(up: np.ndarray) -> np.ndarray:
    """[3, 3] the smallest rotation taking unit ``up`` to +Z."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(up, z)
    s, c = np.linalg.norm(axis), float(up @ z)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def _look_centre(world_from_camera: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Least-squares point nearest every optical axis; the points' median when ill-posed."""
    centres = world_from_camera[:, :3, 3]  # [N, 3]
    dirs = world_from_camera[:, :3, 2]  # [N, 3] OpenCV +Z: viewing direction
    projectors = np.eye(3) - dirs[:, :, None] * dirs[:, None, :]  # [N, 3, 3]
    a = projectors.sum(0)
    b = np.einsum("nij,nj->i", projectors, centres)
    eig = np.linalg.eigvalsh(a)
    if eig[0] > 0.05 * len(centres):  # axes spread over > ~13°: a well-posed meeting point
        centre = np.linalg.solve(a, b)
        forward = np.einsum("ni,ni->n", centre - centres, dirs)
        if np.median(forward) > 0:  # in front of the cameras, not behind
            return centre
    if len(points):
        return np.median(points, axis=0)
    return centres.mean(0) + dirs.mean(0) * np.linalg.norm(centres - centres.mean(0), axis=1).mean()


def world_normalisation(world_from_camera, points, *, up=None) -> tuple[np.ndarray, np.ndarray]:
    """(N [4, 4] similarity COLMAP world → data set world, up [3] in COLMAP's world).

    ``world_from_camera``: [N, 4, 4] OpenCV cameras; ``points``: [P, 3] SfM points; ``up``:
    None for the cameras' average up, else a vector in COLMAP's world.
    """
    poses = np.asarray(world_from_camera, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if up is None:
        up = camera_up(poses)
    up = np.asarray(up, dtype=np.float64).reshape(3)
    if not np.isfinite(up).all() or np.linalg.norm(up) < 1e-12:
        raise GSError(f"the up direction must be a non-zero vector, got {up.tolist()}")
    up = up / np.linalg.norm(up)
    centre = _look_centre(poses, points)
    first = _rotation_to_z(up) @ (poses[0, :3, 3] - centre)
    heading = math.atan2(first[0], -first[1])  # angle of the first camera from −Y about +Z
    c, s = math.cos(heading), math.sin(heading)
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ _rotation_to_z(up)
    radius = float(np.median(np.linalg.norm(poses[:, :3, 3] - centre, axis=1)))
    near = points[np.linalg.norm(points - centre, axis=1) < radius] if radius > 0 else points
    size = 0.0
    if len(near) >= 10:
        local = (near - centre) @ rot.T
        lo, hi = np.percentile(local, 2, axis=0), np.percentile(local, 98, axis=0)
        size = float((hi - lo).max())
        centre = centre + rot.T @ (0.5 * (lo + hi))  # the points' box centre
    scale = 1.0 / size if size > 1e-9 else 2.0 / max(radius, 1e-9)
    out = np.eye(4)
    out[:3, :3] = scale * rot
    out[:3, 3] = -scale * rot @ centre
    return out, up


def transform_cameras(similarity, world_from_camera) -> np.ndarray:
    """[N, 4, 4] OpenCV cameras in COLMAP's world → OpenGL camera-to-world in the data set's
    world (rotation without the similarity's scale, centre mapped by it)."""
    m = np.asarray(similarity, dtype=np.float64)
    scale = np.cbrt(np.linalg.det(m[:3, :3]))
    poses = np.asarray(world_from_camera, dtype=np.float64)
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3, :3] = (m[:3, :3] / scale) @ poses[:, :3, :3]
    out[:, :3, 3] = poses[:, :3, 3] @ m[:3, :3].T + m[:3, 3]
    return out @ OPENCV_FROM_OPENGL


def held_out_names(names: list[str], test_every: int) -> set[str]:
    """Names held out for evaluation: every ``test_every``-th (from the 4th, so the first,
    front camera trains), none with fewer than 10 images or ``test_every`` 0."""
    if not test_every or len(names) < _MIN_FOR_TEST:
        return set()
    offset = min(3, test_every - 1)
    return {n for i, n in enumerate(names) if i % test_every == offset}


def pose_views(sfm, similarity, images_dir, *, test_every: int) -> list[CameraView]:
    """One CameraView per placed image, in the data set's world."""
    c2w = transform_cameras(similarity, sfm.world_from_camera)
    held_out = held_out_names(sfm.registered, test_every)
    (width, height), (fx, fy), (cx, cy) = sfm.image_size, sfm.focal, sfm.principal_point
    return [CameraView(name=Path(name).stem, file_path=Path(images_dir) / name, width=width,
                       height=height, fx=fx, fy=fy, cx=cx, cy=cy, camera_to_world=matrix,
                       split="test" if name in held_out else "train")
            for name, matrix in zip(sfm.registered, c2w)]


def write_pose_dataset(sfm, folder, *, up=None, test_every: int = DEFAULT_TEST_EVERY,
                       report: Report = log_report) -> ViewDataset:
    """Write transforms, points3d.ply and sparse/0 into ``folder`` (which already holds
    ``images/``) for an :class:`~.sfm.SfmResult`; the data set written."""
    import shutil

    folder = Path(folder)
    similarity, up_vector = world_normalisation(sfm.world_from_camera, sfm.points, up=up)
    views = pose_views(sfm, similarity, folder / "images", test_every=test_every)
    dataset = ViewDataset(views=views, root=folder,
                          metadata={"colmap_to_dataset": similarity,
                                    "up_colmap": up_vector.tolist()})
    write_transforms(dataset, folder, report=report)
    points = sfm.points @ similarity[:3, :3].T + similarity[:3, 3]
    write_point_cloud(folder / POINTS_FILE, points, sfm.colours)
    sparse = folder / "sparse" / "0"
    sparse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(sfm.sparse_dir, sparse)
    return dataset


def pose_report(sfm, dataset: ViewDataset, *, source, seconds: dict) -> dict:
    """The per-run report (JSON-able): images placed / total, the ones left out and why,
    reprojection error, focal length, settings, up vector, timings."""
    return {
        "source": str(source),
        "images": len(sfm.names),
        "placed": len(sfm.registered),
        "left_out": sfm.left_out,
        "left_out_reasons": sfm.left_out_reasons,
        "reprojection_error_px": sfm.reprojection_error,
        "focal_length_px": list(sfm.focal),
        "image_size": list(sfm.image_size),
        "field_of_view_deg": math.degrees(2.0 * math.atan(0.5 * max(sfm.image_size)
                                                          / sfm.focal[0])),
        "points": int(len(sfm.points)),
        "models": sfm.models,
        "settings": sfm.settings,
        "train_views": len(dataset.split_views("train")),
        "held_out": [v.name for v in dataset.split_views("test")],
        "up_colmap": dataset.metadata["up_colmap"],
        "colmap_to_dataset": dataset.metadata["colmap_to_dataset"].tolist(),
        "seconds": {k: round(float(v), 3) for k, v in seconds.items()},
    }


def pose_summary(report: dict) -> str:
    """One line of a :func:`pose_report`: 'placed 22/24 images (left out: a.png, b.png);
    reprojection error 0.54 px; focal length 170.2 px (41.2°)'."""
    from .photos import name_list

    left = report.get("left_out") or []
    focal = report["focal_length_px"][0]
    error = report.get("reprojection_error_px")
    return (f"placed {report['placed']}/{report['images']} images"
            + (f" (left out: {name_list(left)})" if left else "")
            + ("; reprojection error " + (f"{error:.2f} px" if error is not None else "n/a"))
            + f"; focal length {focal:.1f} px ({report['field_of_view_deg']:.1f}°)")
