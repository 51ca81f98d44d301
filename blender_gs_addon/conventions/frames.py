"""World frames and camera axes: every axis convention of the project, defined once.

The table of what each frame is lives in the package docstring (:mod:`.`) and in
docs/architecture.md. In short: Blender's world is Z up; splat files are in the 3DGS/COLMAP frame
(Y down) and are shown upright by :func:`file_to_blender_matrix`; the Y-up world of OpenGL, glTF
and LGM is :data:`Y_UP_FROM_BLENDER` away; glTF splat files are the composite of the two
(:data:`GLTF_FROM_RDF`); .spz stores right-up-back (:data:`RUB_FROM_RDF`);
cameras are camera-to-world matrices with OpenGL axes, and the rasterizer takes OpenCV
world-to-camera matrices (:func:`opengl_c2w_to_viewmat`).

Every helper accepts numpy arrays (returning float64 numpy) or, where noted, torch tensors
(returning tensors of the same dtype/device); torch is never imported here.
"""

from __future__ import annotations

import numpy as np

from ..errors import GSError
from ..splats import SplatSet

__all__ = [
    "UP_AXES",
    "FILE_TO_WORLD_UP",
    "BLENDER_IMPORTER_UP_AXIS",
    "UNTAGGED_UP_AXIS",
    "RUB_FROM_RDF",
    "GLTF_FROM_RDF",
    "Y_UP_FROM_BLENDER",
    "BLENDER_FROM_Y_UP",
    "OPENCV_FROM_OPENGL",
    "file_to_blender_matrix",
    "splats_file_to_world",
    "splats_world_to_file",
    "homogeneous",
    "transform_points",
    "opengl_c2w_to_viewmat",
    "viewmat_to_opengl_c2w",
    "camera_to_world_from_matrix_world",
    "is_torch_tensor",
]

UP_AXES = {
    "-Y": "3DGS / COLMAP convention (Y down): most .ply, .splat and .spz files",
    "+Y": "Y up (OpenGL, glTF, LGM output)",
    "+Z": "Z up (Blender, no rotation)",
}

# Blender (x, y, z) from a file's (x_f, y_f, z_f), per up axis of the file.
_BLENDER_FROM_FILE = {
    "-Y": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64),  # (x_f, z_f, −y_f)
    "+Y": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64),  # (x_f, −z_f, y_f)
    "+Z": np.eye(3),
}

# The up axis that maps splat files onto the Blender world of data sets: what the importer uses
# by default, and what reconstruction writes its results in (so a result imports aligned).
FILE_TO_WORLD_UP = "-Y"

# The up axis under which Blender's own importer of a format places a file in its world. Export
# uses it for splat objects that carry no up axis of their own (made by Blender's importers or by
# scripts), so a file imported by Blender and exported here gives back the file's values. Blender
# 5.3's .ply importer keeps the file's axes (identity by default: "+Z"); its .spz importer turns
# the data into Z-up, as this project's "-Y" does (measured); its glTF importer turns glTF's Y-up
# world into Z-up (BLENDER_FROM_Y_UP), which through GLTF_FROM_RDF is "-Y" too. Formats Blender
# cannot read follow its .ply rule: the file's axes are the world's.
BLENDER_IMPORTER_UP_AXIS = {"ply": "+Z", "compressed_ply": "+Z", "splat": "+Z", "spz": "-Y",
                            "gltf": "-Y"}
UNTAGGED_UP_AXIS = "+Z"  # the same rule when no format is named

# .spz stores right-up-back; 3DGS files are right-down-forward: a 180° turn about X.
RUB_FROM_RDF = np.diag([1.0, -1.0, -1.0])

# The Y-up world of OpenGL, glTF and LGM from Blender's Z-up world: (x, y, z)_yup = (x, z, −y).
# Blender's own glTF importer and exporter convert with exactly this.
Y_UP_FROM_BLENDER = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)
# +90° about X: (x, y, z)_yup → (x, −z, y) in Blender (the "+Y" up axis of a file).
BLENDER_FROM_Y_UP = Y_UP_FROM_BLENDER.T.copy()

# glTF from the 3DGS file frame, through Blender's world: a 3DGS file shown upright in Blender
# (FILE_TO_WORLD_UP), then that world as Blender's glTF exporter writes it. So a .glb written
# here opens in Blender's glTF importer exactly where this add-on puts the .ply, and a Blender
# scene exported to .glb here faces the way Blender's exporter would make it face. It is a
# half turn about X, (x, y, z) → (x, −y, −z): glTF +Y up is the file's −Y (up), glTF +Z (the
# front, towards the viewer) is the file's −Z (towards the capture cameras). splat-transform
# converts with a half turn about Z instead, so its .glb files read here turned 180° about the
# up axis (formats/gltf.py).
GLTF_FROM_RDF = Y_UP_FROM_BLENDER @ _BLENDER_FROM_FILE[FILE_TO_WORLD_UP]
if not np.array_equal(GLTF_FROM_RDF, np.diag([1.0, -1.0, -1.0])):  # the readers rely on it
    raise AssertionError(f"GLTF_FROM_RDF must be diag(1, -1, -1), got {GLTF_FROM_RDF.tolist()}")

# Flips camera Y and Z: OpenGL camera axes ↔ OpenCV/COLMAP camera axes (its own inverse).
# c2w_opencv = c2w_opengl @ OPENCV_FROM_OPENGL.
OPENCV_FROM_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def is_torch_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch."""
    return type(x).__module__.startswith("torch")


def homogeneous(rotation) -> np.ndarray:
    """[3, 3] → [4, 4] with the rotation in the upper-left block."""
    out = np.eye(4)
    out[:3, :3] = rotation
    return out


def transform_points(matrix, points) -> np.ndarray:
    """[N, 3] points through a [4, 4] affine matrix (float64 out)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]


def file_to_blender_matrix(up_axis: str) -> np.ndarray:
    """[4, 4] rotation taking a file's frame with the given up axis into Blender's world."""
    try:
        rot = _BLENDER_FROM_FILE[up_axis]
    except KeyError:
        raise GSError(f"unknown up axis {up_axis!r}; choose one of {', '.join(UP_AXES)}") from None
    return homogeneous(rot)


def splats_file_to_world(splats: SplatSet) -> SplatSet:
    """3DGS file frame → Blender world frame (the inverse of :func:`splats_world_to_file`)."""
    return splats.transformed(file_to_blender_matrix(FILE_TO_WORLD_UP))


def splats_world_to_file(splats: SplatSet) -> SplatSet:
    """Blender world frame → 3DGS file frame, for writing results other tools show upright."""
    return splats.transformed(np.linalg.inv(file_to_blender_matrix(FILE_TO_WORLD_UP)))


def _check_matrices(m, what: str):
    shape = tuple(m.shape)
    if len(shape) not in (2, 3) or shape[-2:] != (4, 4):
        raise GSError(f"{what}: expected a [4, 4] or [C, 4, 4] matrix, got shape {shape}")


def _flip_like(m):
    import torch

    return torch.as_tensor(OPENCV_FROM_OPENGL, dtype=m.dtype, device=m.device)


def opengl_c2w_to_viewmat(c2w):
    """Camera-to-world (OpenGL camera axes) → world-to-camera (OpenCV camera axes).

    What the rasterizer (and gsplat) call ``viewmats`` and COLMAP calls [R | t].

    Args:
        c2w: [4, 4] or [C, 4, 4] (numpy or torch); may contain scale, the general inverse is used.
    Returns:
        Same shape: ``inverse(c2w · OPENCV_FROM_OPENGL)``.
    """
    if is_torch_tensor(c2w):
        import torch

        _check_matrices(c2w, "opengl_c2w_to_viewmat")
        return torch.linalg.inv(c2w @ _flip_like(c2w))
    c2w = np.asarray(c2w, dtype=np.float64)
    _check_matrices(c2w, "opengl_c2w_to_viewmat")
    return np.linalg.inv(c2w @ OPENCV_FROM_OPENGL)


def viewmat_to_opengl_c2w(viewmat):
    """Inverse of :func:`opengl_c2w_to_viewmat`."""
    if is_torch_tensor(viewmat):
        import torch

        _check_matrices(viewmat, "viewmat_to_opengl_c2w")
        return torch.linalg.inv(viewmat) @ _flip_like(viewmat)
    viewmat = np.asarray(viewmat, dtype=np.float64)
    _check_matrices(viewmat, "viewmat_to_opengl_c2w")
    return np.linalg.inv(viewmat) @ OPENCV_FROM_OPENGL


def camera_to_world_from_matrix_world(matrix_world) -> np.ndarray:
    """A Blender camera object's ``matrix_world`` [4, 4] → camera-to-world without scale.

    Blender camera matrices already use OpenGL camera axes; only object scale is removed (each
    rotation column normalised, as ``Matrix.normalized()`` and ``world_to_camera_view`` do).
    """
    m = np.array(matrix_world, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise GSError("camera matrix_world must be a finite 4×4 matrix")
    lengths = np.linalg.norm(m[:3, :3], axis=0)
    if (lengths < 1e-12).any():
        raise GSError("camera object has zero scale on an axis")
    out = m.copy()
    out[:3, :3] /= lengths
    return out
