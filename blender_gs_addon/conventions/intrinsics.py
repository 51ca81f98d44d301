"""Pinhole intrinsics: the matrices the rasterizer takes, and a Blender camera's sensor fit.

Pixels: continuous image coordinates with the top-left corner of the top-left pixel at (0, 0),
rows going down, so pixel (i, j) covers [j, j+1) × [i, i+1) and a centred principal point is
(width / 2, height / 2) — the COLMAP, NeRF, nerfstudio and gsplat convention. ``K`` is
[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] for OpenCV camera axes (see :mod:`.frames`).

:func:`intrinsics_from_blender_camera` reproduces Blender's view plane (sensor fit, shift, pixel
aspect) and :func:`blender_camera_from_intrinsics` is its inverse, so a data set's cameras and
Blender cameras agree to the pixel. Every helper accepts numpy arrays (float64 out) or torch
tensors (same dtype/device out); torch is never imported here.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GSError
from .frames import is_torch_tensor

__all__ = ["intrinsics", "intrinsics_from_fov", "intrinsics_from_blender_camera",
           "blender_camera_from_intrinsics"]


def intrinsics(fx, fy, cx, cy):
    """Pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].

    Scalars give [3, 3]; equal-length 1-D arrays/tensors give [C, 3, 3]. The result is torch when
    any argument is a tensor (dtype/device of the first tensor), float64 numpy otherwise.
    """
    values = (fx, fy, cx, cy)
    tensors = [v for v in values if is_torch_tensor(v)]
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
        if is_torch_tensor(fov):
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
    if is_torch_tensor(fx) or is_torch_tensor(fy):
        return intrinsics(fx, fy, cx, cy)
    return intrinsics(fx, fy, np.full(np.shape(fx), cx), np.full(np.shape(fx), cy))


def intrinsics_from_blender_camera(
    *,
    lens_mm: float,
    sensor_width: float,
    sensor_height: float,
    sensor_fit: str,
    shift_x: float,
    shift_y: float,
    res_x: int,
    res_y: int,
    pixel_aspect: float = 1.0,
) -> tuple[float, float, float, float]:
    """A perspective Blender camera's pinhole intrinsics (fx, fy, cx, cy) in pixels.

    Reproduces Blender's view plane (``BKE_camera_params_compute_viewplane``): the sensor size
    is ``sensor_height`` for VERTICAL fit, ``sensor_width`` otherwise (AUTO too); the fitted
    image side is the wider one for AUTO (comparing ``res · pixel aspect``); shift is in units of
    that fitted side. ``res_x``, ``res_y``: the rendered size (resolution × percentage / 100).
    ``pixel_aspect``: ``render.pixel_aspect_x / render.pixel_aspect_y``. ``cy`` grows with
    ``−shift_y`` because image rows go down.
    """
    try:
        lens, sw, sh = float(lens_mm), float(sensor_width), float(sensor_height)
        sx, sy, aspect = float(shift_x), float(shift_y), float(pixel_aspect)
    except (TypeError, ValueError):
        raise GSError("camera settings must be numbers") from None
    if not all(math.isfinite(v) for v in (lens, sw, sh, sx, sy, aspect)):
        raise GSError("camera settings must be finite")
    if lens <= 0 or sw <= 0 or sh <= 0 or aspect <= 0:
        raise GSError(
            f"lens ({lens}), sensor size ({sw}×{sh}) and pixel aspect ({aspect}) must be positive"
        )
    if int(res_x) != res_x or int(res_y) != res_y or res_x < 1 or res_y < 1:
        raise GSError(f"resolution must be positive whole numbers, got {res_x}×{res_y}")
    fit = str(sensor_fit).upper()
    if fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
        raise GSError(f"sensor fit must be AUTO, HORIZONTAL or VERTICAL, got {sensor_fit!r}")

    ycor = 1.0 / aspect  # Blender: pixel_aspect_y / pixel_aspect_x
    sensor = sh if fit == "VERTICAL" else sw
    if fit == "AUTO":
        fit = "HORIZONTAL" if res_x * aspect >= res_y else "VERTICAL"
    viewfac = res_x if fit == "HORIZONTAL" else ycor * res_y  # view-plane units per sensor
    fx = lens * viewfac / sensor
    fy = fx / ycor
    cx = 0.5 * res_x - sx * viewfac
    cy = 0.5 * res_y + sy * viewfac / ycor
    return fx, fy, cx, cy


def blender_camera_from_intrinsics(
    *,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    sensor_width: float = 36.0,
) -> dict:
    """Blender camera + render settings that reproduce pinhole intrinsics exactly.

    Returns ``lens_mm``, ``sensor_width``, ``sensor_height``, ``sensor_fit`` ("HORIZONTAL"),
    ``shift_x``, ``shift_y``, ``pixel_aspect_x``, ``pixel_aspect_y`` (both ≥ 1, as Blender
    requires); the inverse of :func:`intrinsics_from_blender_camera`.
    """
    vals = [float(v) for v in (fx, fy, cx, cy, sensor_width)]
    if not all(math.isfinite(v) for v in vals) or fx <= 0 or fy <= 0 or sensor_width <= 0:
        raise GSError(f"intrinsics must be finite with positive focal lengths (fx={fx}, fy={fy})")
    if width < 1 or height < 1:
        raise GSError(f"image size must be positive, got {width}×{height}")
    ycor = fx / fy
    if ycor >= 1.0:
        aspect_x, aspect_y = 1.0, ycor
    else:
        aspect_x, aspect_y = 1.0 / ycor, 1.0
    return {
        "lens_mm": fx * sensor_width / width,
        "sensor_width": float(sensor_width),
        "sensor_height": float(sensor_width) * height * ycor / width,
        "sensor_fit": "HORIZONTAL",
        "shift_x": (0.5 * width - cx) / width,
        "shift_y": (cy - 0.5 * height) * ycor / width,
        "pixel_aspect_x": aspect_x,
        "pixel_aspect_y": aspect_y,
    }
