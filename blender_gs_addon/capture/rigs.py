"""Camera rigs for capturing views of an object, and framing the object for them.

All rigs live in Blender's world around the origin (where :func:`normalisation_transform` puts
the selection) and return camera-to-world matrices with OpenGL camera axes — a Blender camera
object with that ``matrix_world`` sees exactly this view. Cameras "track to" the origin with
world +Z up (Blender's Track To constraint with −Z to the target and Y up).

Angles: azimuth 0 is the front view, a camera on −Y looking along +Y; azimuth grows
counter-clockwise seen from above (90 on +X, 180 on +Y, 270 on −X). Elevation is the angle above
the XY plane. A camera at azimuth a, elevation e and radius r sits at
``r · (cos e · sin a, −cos e · cos a, sin e)``.

Field of view of the rigs: ``fov_deg`` spans the larger image side (Blender's AUTO sensor fit),
square pixels, principal point at the image centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..conventions.lgm_rig import (
    LGM_AZIMUTHS_DEG,
    LGM_BACKGROUND,
    LGM_ELEVATION_DEG,
    LGM_FOVY_DEG,
    LGM_RADIUS,
)
from ..datasets.camera_views import CameraView
from ..errors import GSError

__all__ = [
    "RigCameras",
    "orbit_rig",
    "sphere_rig",
    "lgm_rig",
    "look_at_origin",
    "camera_position",
    "normalisation_transform",
    "subject_bounds_from_cameras",
]



@dataclass(eq=False)
class RigCameras:
    """N cameras sharing one set of intrinsics."""

    camera_to_world: np.ndarray  # [N, 4, 4] float64, OpenGL camera axes, Blender world
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    azimuth_deg: np.ndarray  # [N]
    elevation_deg: np.ndarray  # [N]
    names: list[str] = field(default_factory=list)
    background: tuple[float, float, float] | None = None  # colour the renders should sit on

    def __len__(self) -> int:
        return len(self.camera_to_world)

    @property
    def positions(self) -> np.ndarray:
        """[N, 3] camera centres."""
        return self.camera_to_world[:, :3, 3].copy()

    def to_views(
        self, folder, *, split: str = "train", extension: str = ".png"
    ) -> list[CameraView]:
        """One CameraView per camera, image ``folder/<name><extension>`` (not rendered here)."""
        folder = Path(folder)
        return [
            CameraView(
                name=name,
                file_path=folder / f"{name}{extension}",
                width=self.width,
                height=self.height,
                fx=self.fx,
                fy=self.fy,
                cx=self.cx,
                cy=self.cy,
                camera_to_world=c2w,
                split=split,
            )
            for name, c2w in zip(self.names, self.camera_to_world)
        ]


# ---------------------------------------------------------------------------------- placement
def _cos_sin_deg(deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of degrees, exact (0, ±1) at multiples of 90° so rig positions are clean."""
    deg = np.asarray(deg, dtype=np.float64)
    rad = np.radians(deg)
    c, s = np.cos(rad), np.sin(rad)
    quarter = deg / 90.0
    exact = quarter == np.round(quarter)
    k = np.mod(np.round(quarter), 4).astype(int)
    c = np.where(exact, np.array([1.0, 0.0, -1.0, 0.0])[k], c)
    s = np.where(exact, np.array([0.0, 1.0, 0.0, -1.0])[k], s)
    return c, s


def camera_position(azimuth_deg, elevation_deg, radius) -> np.ndarray:
    """[N, 3] camera centres for azimuth/elevation arrays (module docstring convention)."""
    ca, sa = _cos_sin_deg(np.atleast_1d(azimuth_deg))
    ce, se = _cos_sin_deg(np.atleast_1d(elevation_deg))
    return np.stack([ce * sa, -ce * ca, se], axis=-1) * float(radius)


def look_at_origin(positions, *, azimuth_deg=None) -> np.ndarray:
    """[N, 3] camera centres → [N, 4, 4] camera-to-world looking at the origin, world +Z up.

    The camera's +X (right) is forward × up; straight above or below the origin that is
    undefined and the right vector of ``azimuth_deg`` (or +X without it) is used, so a camera
    at the pole still belongs to its orbit ring.
    """
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    dist = np.linalg.norm(p, axis=1)  # [N]
    if not np.isfinite(p).all() or (dist <= 0).any():
        raise GSError("camera positions must be finite and away from the origin they look at")
    forward = -p / dist[:, None]  # [N, 3]
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right_len = np.linalg.norm(right, axis=1)
    if azimuth_deg is not None:
        ca, sa = _cos_sin_deg(np.broadcast_to(azimuth_deg, dist.shape))
        fallback = np.stack([ca, sa, np.zeros_like(ca)], axis=1)
    else:
        fallback = np.tile([1.0, 0.0, 0.0], (len(p), 1))
    polar = right_len < 1e-9
    right = np.where(polar[:, None], fallback, right / np.where(polar, 1.0, right_len)[:, None])
    back = -forward
    up = np.cross(back, right)
    out = np.zeros((len(p), 4, 4))
    out[:, :3, 0] = right
    out[:, :3, 1] = up
    out[:, :3, 2] = back
    out[:, :3, 3] = p
    out[:, 3, 3] = 1.0
    return out + 0.0  # no negative zeros in written files


def _rig_intrinsics(fov_deg: float, width: int, height: int) -> tuple[float, float, float, float]:
    if not (isinstance(width, int | np.integer) and isinstance(height, int | np.integer)):
        raise GSError(f"image size must be whole numbers, got {width}×{height}")
    if width < 1 or height < 1:
        raise GSError(f"image size must be positive, got {width}×{height}")
    if not (0.0 < fov_deg < 180.0):
        raise GSError(f"field of view must be between 0 and 180 degrees, got {fov_deg}")
    f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2.0)
    return f, f, 0.5 * width, 0.5 * height


def _check_radius(radius: float) -> float:
    radius = float(radius)
    if not (math.isfinite(radius) and radius > 0):
        raise GSError(f"camera radius must be a positive number, got {radius}")
    return radius


def _rig(azimuths, elevations, radius, fov_deg, width, height, *, background=None) -> RigCameras:
    radius = _check_radius(radius)
    fx, fy, cx, cy = _rig_intrinsics(fov_deg, width, height)
    az = np.asarray(azimuths, dtype=np.float64)
    el = np.asarray(elevations, dtype=np.float64)
    c2w = look_at_origin(camera_position(az, el, radius), azimuth_deg=az)
    return RigCameras(
        camera_to_world=c2w,
        width=int(width),
        height=int(height),
        fx=fx,
        fy=fy,
        cx=cx,
        cy=cy,
        azimuth_deg=az,
        elevation_deg=el,
        names=[f"view_{i:03d}" for i in range(len(az))],
        background=background,
    )


# ----------------------------------------------------------------------------------------- rigs
def orbit_rig(
    *,
    azimuth_count: int,
    elevations_deg=(0.0,),
    radius: float,
    fov_deg: float,
    width: int = 512,
    height: int = 512,
    azimuth_offset_deg: float = 0.0,
) -> RigCameras:
    """Rings of ``azimuth_count`` evenly spaced cameras at each elevation (ring-major order)."""
    if not isinstance(azimuth_count, int | np.integer) or azimuth_count < 1:
        raise GSError(f"azimuth count must be a positive whole number, got {azimuth_count}")
    elevations = np.atleast_1d(np.asarray(elevations_deg, dtype=np.float64))
    if elevations.size == 0 or not np.isfinite(elevations).all() or (np.abs(elevations) > 90).any():
        raise GSError(f"elevations must be between −90 and 90 degrees, got {elevations.tolist()}")
    ring = float(azimuth_offset_deg) + 360.0 * np.arange(azimuth_count) / azimuth_count
    az = np.tile(ring, len(elevations))
    el = np.repeat(elevations, azimuth_count)
    return _rig(az, el, radius, fov_deg, width, height)


def sphere_rig(
    *,
    count: int,
    radius: float,
    fov_deg: float,
    width: int = 512,
    height: int = 512,
    min_elevation_deg: float = -90.0,
) -> RigCameras:
    """``count`` cameras spread evenly (Fibonacci spiral, equal area each) over the sphere, or
    over the cap above ``min_elevation_deg`` (e.g. 0 for the upper hemisphere); top first."""
    if not isinstance(count, int | np.integer) or count < 1:
        raise GSError(f"view count must be a positive whole number, got {count}")
    if not (-90.0 <= min_elevation_deg < 90.0):
        raise GSError(f"minimum elevation must be in [−90, 90), got {min_elevation_deg}")
    z_min = math.sin(math.radians(min_elevation_deg))
    # Equal steps in z give equal areas (Archimedes); the golden angle spreads azimuths.
    z = 1.0 - (1.0 - z_min) * (np.arange(count) + 0.5) / count  # [N]
    el = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))
    golden_deg = 180.0 * (3.0 - math.sqrt(5.0))
    az = np.mod(golden_deg * np.arange(count), 360.0)
    return _rig(az, el, radius, fov_deg, width, height)


def lgm_rig(*, resolution: int = 512) -> RigCameras:
    """Exactly the four views LGM was trained on: elevation 0, azimuths 0/90/180/270 (front, +X,
    back, −X) in that order, radius 1.5, vertical fov 49.1°, square images, white background."""
    return _rig(
        LGM_AZIMUTHS_DEG,
        [LGM_ELEVATION_DEG] * 4,
        LGM_RADIUS,
        LGM_FOVY_DEG,
        resolution,
        resolution,
        background=LGM_BACKGROUND,
    )


# -------------------------------------------------------------------------------------- framing
def normalisation_transform(bbox_min, bbox_max, *, target_size: float = 1.0) -> np.ndarray:
    """[4, 4] uniform scale + translation taking a bounding box into a cube of side
    ``target_size`` centred at the origin (the largest side becomes ``target_size``).

    Store it with the data set; ``inv(M)`` maps results back onto the original object.
    """
    lo = np.asarray(bbox_min, dtype=np.float64).reshape(-1)
    hi = np.asarray(bbox_max, dtype=np.float64).reshape(-1)
    if lo.shape != (3,) or hi.shape != (3,):
        raise GSError("bounding box corners must be 3 numbers each")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise GSError("bounding box has non-finite coordinates")
    if (hi < lo).any():
        raise GSError(f"bounding box max {hi.tolist()} is below its min {lo.tolist()}")
    size = float((hi - lo).max())
    if size <= 0.0:
        raise GSError("the selection has zero size (its bounding box is a point); nothing to frame")
    if not (math.isfinite(target_size) and target_size > 0):
        raise GSError(f"target size must be a positive number, got {target_size}")
    scale = target_size / size
    out = np.eye(4)
    out[:3, :3] *= scale
    out[:3, 3] = -scale * 0.5 * (lo + hi)
    return out


def subject_bounds_from_cameras(camera_to_world, fov_rad, *, hint: str = "") -> tuple:
    """Bounding box ([3], [3]) of what posed cameras look at, for framing a data set that has
    no object to measure (photos, COLMAP models).

    The centre is the point nearest to every optical axis (least squares: Σ (I − d dᵀ) p =
    Σ (I − d dᵀ) o over camera origins o and viewing directions d); the half size is
    ``0.6 · D · tan(fov/2)`` at the cameras' median distance D from it, the size of something
    that fills most of the views. ``camera_to_world``: [V, 4, 4] with OpenGL camera axes;
    ``fov_rad``: [V] each view's smaller field of view. ``hint`` ends the error messages.
    """
    c2ws = np.asarray(camera_to_world, dtype=np.float64)  # [V, 4, 4]
    origins = c2ws[:, :3, 3]  # [V, 3]
    dirs = -c2ws[:, :3, 2]  # [V, 3] OpenGL cameras look along −z
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [V, 3, 3]
    lhs, rhs = proj.sum(0), np.einsum("vij,vj->i", proj, origins)
    suffix = f"; {hint}" if hint else ""
    if len(c2ws) < 2 or np.linalg.cond(lhs) > 1e8:
        raise GSError("the cameras' optical axes are parallel, so where they look is "
                      f"undefined{suffix}")
    centre = np.linalg.solve(lhs, rhs)  # [3]
    if (np.einsum("vi,vi->v", centre - origins, dirs) <= 0).any():
        raise GSError(f"the point the cameras look at lies behind some of them{suffix}")
    distance = float(np.median(np.linalg.norm(centre - origins, axis=1)))
    half = 0.6 * distance * math.tan(0.5 * float(np.min(fov_rad)))
    return centre - half, centre + half
