"""Camera conventions of the renderer: OpenCV world→camera matrices and pinhole intrinsics.

The rasterizer (like gsplat) takes ``viewmats`` [C, 4, 4] mapping world points to camera
coordinates with OpenCV axes (x right, y down, z forward) and ``Ks`` [C, 3, 3] whose pixel
centres sit at integer + 0.5 (pixel (i, j) covers [j, j+1) × [i, i+1), so ``cx = width / 2``
is the image centre).

Blender cameras and NeRF-synthetic ``transform_matrix`` entries are camera-to-world matrices
with OpenGL camera axes (x right, y up, looking down −z); :func:`opengl_c2w_to_viewmat` converts
them. Every helper accepts numpy arrays (returning float64 numpy) or torch tensors (returning
tensors of the same dtype/device); torch is never imported here.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GSError

__all__ = ["opengl_c2w_to_viewmat", "viewmat_to_opengl_c2w", "intrinsics_from_fov",
           "intrinsics"]

# OpenGL camera axes → OpenCV camera axes: flip y and z.
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _check_matrices(m, what: str):
    shape = tuple(m.shape)
    if len(shape) not in (2, 3) or shape[-2:] != (4, 4):
        raise GSError(f"{what}: expected a [4, 4] or [C, 4, 4] matrix, got shape {shape}")


def opengl_c2w_to_viewmat(c2w):
    """Camera-to-world (OpenGL camera axes) → world-to-camera (OpenCV camera axes).

    Args:
        c2w: [4, 4] or [C, 4, 4] (numpy or torch); may contain scale, the general inverse is used.
    Returns:
        Same shape: ``inverse(c2w · diag(1, −1, −1, 1))``.
    """
    if _is_torch(c2w):
        import torch

        _check_matrices(c2w, "opengl_c2w_to_viewmat")
        flip = torch.as_tensor(_GL_TO_CV, dtype=c2w.dtype, device=c2w.device)
        return torch.linalg.inv(c2w @ flip)
    c2w = np.asarray(c2w, dtype=np.float64)
    _check_matrices(c2w, "opengl_c2w_to_viewmat")
    return np.linalg.inv(c2w @ _GL_TO_CV)


def viewmat_to_opengl_c2w(viewmat):
    """Inverse of :func:`opengl_c2w_to_viewmat`."""
    if _is_torch(viewmat):
        import torch

        _check_matrices(viewmat, "viewmat_to_opengl_c2w")
        flip = torch.as_tensor(_GL_TO_CV, dtype=viewmat.dtype, device=viewmat.device)
        return torch.linalg.inv(viewmat) @ flip
    viewmat = np.asarray(viewmat, dtype=np.float64)
    _check_matrices(viewmat, "viewmat_to_opengl_c2w")
    return np.linalg.inv(viewmat) @ _GL_TO_CV


def intrinsics(fx, fy, cx, cy):
    """Pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].

    Scalars give [3, 3]; equal-length 1-D arrays/tensors give [C, 3, 3]. The result is torch when
    any argument is a tensor (dtype/device of the first tensor), float64 numpy otherwise.
    """
    values = (fx, fy, cx, cy)
    tensors = [v for v in values if _is_torch(v)]
    if tensors:
        import torch

        ref = tensors[0]
        fx, fy, cx, cy = (torch.as_tensor(v, dtype=ref.dtype, device=ref.device) for v in values)
        fx, fy, cx, cy = torch.broadcast_tensors(fx, fy, cx, cy)
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        rows = [torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1),
                torch.stack([zero, zero, one], -1)]
        return torch.stack(rows, -2)
    fx, fy, cx, cy = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    if fx.ndim > 1:
        raise GSError(f"intrinsics: expected scalars or 1-D arrays, got shape {fx.shape}")
    k = np.zeros(fx.shape + (3, 3))
    k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = fx, fy, cx, cy, 1.0
    return k


def intrinsics_from_fov(*, width: int, height: int, fov_x=None, fov_y=None):
    """Pinhole intrinsics from full field-of-view angles in radians, principal point at centre.

    ``fx = width / (2 tan(fov_x / 2))``, ``fy = height / (2 tan(fov_y / 2))``. With only one
    angle the pixels are square (fx = fy), which is how NeRF-synthetic's ``camera_angle_x`` and
    Blender's sensor fit are meant. Angles may be scalars or 1-D arrays/tensors (→ [C, 3, 3]).
    """
    if width <= 0 or height <= 0:
        raise GSError(f"intrinsics_from_fov: image size must be positive, got {width}×{height}")
    if fov_x is None and fov_y is None:
        raise GSError("intrinsics_from_fov: give fov_x, fov_y or both")

    def focal(fov, size):
        if _is_torch(fov):
            import torch

            if bool(((fov <= 0) | (fov >= math.pi)).any()):
                raise GSError("intrinsics_from_fov: field of view must lie in (0, π) radians")
            return 0.5 * size / torch.tan(0.5 * fov)
        fov = np.asarray(fov, dtype=np.float64)
        if np.any((fov <= 0) | (fov >= math.pi)) or not np.all(np.isfinite(fov)):
            raise GSError("intrinsics_from_fov: field of view must lie in (0, π) radians")
        return 0.5 * size / np.tan(0.5 * fov)

    fx = focal(fov_x, width) if fov_x is not None else None
    fy = focal(fov_y, height) if fov_y is not None else None
    if fx is None:
        fx = fy
    if fy is None:
        fy = fx
    cx, cy = 0.5 * width, 0.5 * height
    if _is_torch(fx) or _is_torch(fy):
        return intrinsics(fx, fy, cx, cy)
    return intrinsics(fx, fy, np.full(np.shape(fx), cx), np.full(np.shape(fx), cy))
