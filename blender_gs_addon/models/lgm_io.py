"""What goes into LGM and what comes out: the camera rig, the input tensor, the splat mapping.

LGM was trained on one fixed rig (:mod:`..conventions.lgm_rig`), in its own Y-up OpenGL world
("GL world"), with 256×256 inputs. Camera matrices here are camera-to-world with OpenGL camera
axes — what Blender cameras and NeRF-synthetic ``transforms.json`` files use, so no column flips
are needed.

The network returns [N, 14] activated Gaussians in the GL world (channel layout
:data:`GAUSSIAN_CHANNELS`); :func:`gaussians_to_splats` turns them into a :class:`SplatSet` in
*Blender* world coordinates of the capture's normalised frame (the frame in which the rig above
was placed).

Torch is imported only inside :func:`build_lgm_input`; everything else is numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..conventions.frames import BLENDER_FROM_Y_UP, Y_UP_FROM_BLENDER, homogeneous
from ..conventions.lgm_rig import (
    LGM_AZIMUTHS_DEG,
    LGM_FOVY_DEG,
    LGM_RADIUS,
    lgm_rig_cameras,
    lgm_rig_cameras_gl,
)
from ..errors import GSError, Report, log_report
from ..sh import SH_C0
from ..splats import SplatSet

__all__ = [
    "GAUSSIAN_CHANNELS",
    "GaussianChannels",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LGM_INPUT_SIZE",
    "LGM_MIN_OPACITY",
    "build_lgm_input",
    "check_lgm_rig",
    "composite_on_white",
    "gaussians_to_splats",
    "lgm_input_rays",
    "plucker_rays",
    "predict_splats",
    "rebase_transform_gl",
]


class GaussianChannels(NamedTuple):
    """Where each attribute sits in the network's 14 output channels (after activation)."""

    position: slice = slice(0, 3)  # GL world, clamp(−1, 1)
    opacity: slice = slice(3, 4)  # sigmoid
    scale: slice = slice(4, 7)  # standard deviations, 0.1·softplus
    rotation: slice = slice(7, 11)  # unit quaternion (w, x, y, z), local → GL world
    rgb: slice = slice(11, 14)  # colour in [0, 1], 0.5·tanh + 0.5
    width: int = 14


GAUSSIAN_CHANNELS = GaussianChannels()

LGM_INPUT_SIZE = 256
# The reference .ply export prunes below this opacity.
LGM_MIN_OPACITY = 0.005
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



def check_lgm_rig(cameras: np.ndarray, *, names: Sequence[str] | None = None,
                  source: str = "cameras", fovy_deg: float | None = None,
                  position_tol: float = 1e-3, angle_tol_deg: float = 0.1) -> None:
    """Raise GSError unless ``cameras`` is the LGM rig (in order) in Blender's world.

    Args:
        cameras: [V, 4, 4] camera-to-world, Blender world, OpenGL camera axes.
        names: one label per camera for messages (e.g. the frames' file paths); default
            "view 0" … "view 3".
        source: what the cameras came from, for messages (e.g. the transforms.json path).
        fovy_deg: the cameras' vertical field of view, checked against 49.1° when given.
        position_tol: allowed distance of each camera centre from its rig position.
        angle_tol_deg: allowed rotation between each camera and its rig orientation.
    """
    cams = np.asarray(cameras, dtype=np.float64)
    if cams.ndim != 3 or cams.shape[1:] != (4, 4):
        raise GSError(f"{source}: camera matrices must be [V, 4, 4], got {list(cams.shape)}")
    count = len(cams)
    if count != len(LGM_AZIMUTHS_DEG):
        raise GSError(f"{source}: LGM needs exactly {len(LGM_AZIMUTHS_DEG)} views (azimuth "
                      f"0/90/180/270°, in that order); got {count}")
    labels = list(names) if names is not None else [f"view {i}" for i in range(count)]
    if len(labels) != count:
        raise GSError(f"{source}: {len(labels)} names for {count} cameras")
    if fovy_deg is not None and abs(float(fovy_deg) - LGM_FOVY_DEG) > 0.05:
        raise GSError(f"{source}: vertical field of view is {float(fovy_deg):.3f}°; LGM was "
                      f"trained with {LGM_FOVY_DEG}°")
    rig = lgm_rig_cameras()
    faults = []
    for i in range(count):
        if not np.isfinite(cams[i, :3]).all():
            faults.append(f"{labels[i]!r} has non-finite values")
            continue
        offset = float(np.linalg.norm(cams[i, :3, 3] - rig[i, :3, 3]))
        # Angle of the relative rotation; a scaled or sheared matrix shows up here too.
        cos_angle = (np.trace(rig[i, :3, :3].T @ cams[i, :3, :3]) - 1.0) / 2.0
        angle = float(np.rad2deg(np.arccos(np.clip(cos_angle, -1.0, 1.0))))
        orthonormal = np.allclose(cams[i, :3, :3].T @ cams[i, :3, :3], np.eye(3), atol=1e-4)
        if offset > position_tol or angle > angle_tol_deg or not orthonormal:
            where = np.array2string(cams[i, :3, 3], precision=3, suppress_small=True)
            want = np.array2string(rig[i, :3, 3], precision=3, suppress_small=True)
            faults.append(f"{labels[i]!r} (LGM view {i}, azimuth {LGM_AZIMUTHS_DEG[i]:g}°) is "
                          f"at {where}, expected {want} (off by {offset:.3g}), rotated "
                          f"{angle:.2f}° from the rig orientation"
                          + ("" if orthonormal else ", and its rotation is not orthonormal"))
    if faults:
        raise GSError(f"{source}: not the LGM camera rig (radius {LGM_RADIUS}, elevation 0,"
                      " looking at the origin): " + "; ".join(faults))


# ---------------------------------------------------------------------------------- rays
def rebase_transform_gl(cameras_gl: np.ndarray) -> np.ndarray:
    """[4, 4] rigid transform that moves view 0 to (0, 0, r) with identity rotation.

    Training applied it to every sample's cameras; for the exact rig it is the identity.
    """
    to_canonical = np.eye(4)
    to_canonical[2, 3] = LGM_RADIUS
    return to_canonical @ np.linalg.inv(np.asarray(cameras_gl, dtype=np.float64)[0])


def plucker_rays(cameras_gl: np.ndarray, *, size: int = LGM_INPUT_SIZE,
                 fovy_deg: float = LGM_FOVY_DEG) -> np.ndarray:
    """Plücker embedding of the rays through pixel centres.

    Args:
        cameras_gl: [V, 4, 4] camera-to-world, OpenGL camera axes.
        size: square image side in pixels.
    Returns:
        [V, 6, size, size] float32: (o × d, d) per pixel with unit d, o the camera centre;
        row 0 is the top of the image.
    """
    cams = np.asarray(cameras_gl, dtype=np.float64)
    focal = 0.5 * size / np.tan(0.5 * np.deg2rad(fovy_deg))
    offsets = (np.arange(size) + 0.5 - 0.5 * size) / focal  # [size]
    gx, gy = np.meshgrid(offsets, offsets, indexing="xy")  # [size, size]: x along columns
    dirs_cam = np.stack([gx, -gy, -np.ones_like(gx)], axis=-1)  # image y down → camera y up
    dirs = np.einsum("hwj,vij->vhwi", dirs_cam, cams[:, :3, :3])  # [V, size, size, 3]
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origins = np.broadcast_to(cams[:, None, None, :3, 3], dirs.shape)
    rays = np.concatenate([np.cross(origins, dirs), dirs], axis=-1)  # [V, size, size, 6]
    return np.ascontiguousarray(rays.transpose(0, 3, 1, 2), dtype=np.float32)


def _cameras_gl(cameras: np.ndarray | None) -> np.ndarray:
    if cameras is None:
        return lgm_rig_cameras_gl()
    cams = np.asarray(cameras, dtype=np.float64)
    return homogeneous(Y_UP_FROM_BLENDER) @ cams


def lgm_input_rays(cameras: np.ndarray | None = None, *, size: int = LGM_INPUT_SIZE,
                   fovy_deg: float = LGM_FOVY_DEG) -> np.ndarray:
    """[4, 6, size, size] Plücker rays of Blender-world cameras (default: the LGM rig),
    converted to the GL world and re-based as in training."""
    cams_gl = _cameras_gl(cameras)
    return plucker_rays(rebase_transform_gl(cams_gl) @ cams_gl, size=size, fovy_deg=fovy_deg)


# ---------------------------------------------------------------------------------- images
def _to_unit_float(image: np.ndarray, label: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise GSError(f"{label}: pixel type {arr.dtype} is not supported (uint8, uint16 or float)")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise GSError(f"{label}: image has NaN or infinite pixels")
    # Float renders may overshoot [0, 1] (filmic/HDR); the network only ever saw 8-bit images.
    return np.clip(arr, 0.0, 1.0)


def composite_on_white(image: np.ndarray, *, label: str = "image") -> np.ndarray:
    """[H, W, 4] straight-alpha RGBA (or [H, W, 3] RGB) → [H, W, 3] float32 RGB on white."""
    arr = _to_unit_float(image, label)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise GSError(f"{label}: expected an [H, W, 4] RGBA or [H, W, 3] RGB image, got "
                      f"{list(arr.shape)}")
    if arr.shape[2] == 3:
        return arr
    alpha = arr[..., 3:4]
    return arr[..., :3] * alpha + (1.0 - alpha)


def build_lgm_input(images: Sequence[np.ndarray] | np.ndarray,
                    cameras: np.ndarray | None = None, *, names: Sequence[str] | None = None,
                    source: str = "views", fovy_deg: float | None = None,
                    check_rig: bool = True, device=None, dtype=None):
    """The network input for four views.

    Args:
        images: 4 square images [H, W, 4] RGBA (straight alpha, as Blender writes PNG) or
            [H, W, 3] RGB already on white; uint8, uint16 or float in [0, 1]. Same size each.
        cameras: [4, 4, 4] camera-to-world in Blender's world (OpenGL camera axes), e.g. from a
            transforms.json; None means the images were rendered with :func:`lgm_rig_cameras`.
        names: labels of the four frames for messages.
        fovy_deg: the cameras' vertical fov when known; checked with the rig.
        check_rig: refuse cameras that are not the LGM rig (the network only knows that rig).
    Returns:
        torch tensor [1, 4, 9, 256, 256]: ImageNet-normalised RGB then Plücker rays.
    """
    import torch
    import torch.nn.functional as F

    views = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else None
    if views is None or len(views) != len(LGM_AZIMUTHS_DEG):
        got = "one image" if views is None else f"{len(views)} images"
        raise GSError(f"{source}: LGM needs exactly {len(LGM_AZIMUTHS_DEG)} views; got {got}")
    labels = list(names) if names is not None else [f"view {i}" for i in range(len(views))]
    if cameras is not None and check_rig:
        check_lgm_rig(cameras, names=labels, source=source, fovy_deg=fovy_deg)
    rgb = [composite_on_white(img, label=f"{source}: {lab}") for img, lab in zip(views, labels)]
    shapes = {im.shape for im in rgb}
    if len(shapes) != 1:
        raise GSError(f"{source}: the four views differ in size: "
                      + ", ".join(f"{lab} {im.shape[1]}×{im.shape[0]}"
                                  for lab, im in zip(labels, rgb)))
    height, width = rgb[0].shape[:2]
    if height != width:
        raise GSError(f"{source}: views must be square (LGM's rig has fovx = fovy), got "
                      f"{width}×{height}")
    pixels = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2)  # [4, 3, H, W]
    if height != LGM_INPUT_SIZE:
        pixels = F.interpolate(pixels, size=(LGM_INPUT_SIZE, LGM_INPUT_SIZE), mode="bilinear",
                               align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rays = torch.from_numpy(lgm_input_rays(cameras, size=LGM_INPUT_SIZE))
    views_t = torch.cat([(pixels - mean) / std, rays], dim=1).unsqueeze(0)  # [1, 4, 9, S, S]
    return views_t.to(device=device, dtype=dtype or torch.float32)


# ---------------------------------------------------------------------------------- output
def _as_numpy(gaussians) -> np.ndarray:
    if hasattr(gaussians, "detach"):  # a torch tensor, without importing torch here
        gaussians = gaussians.detach().float().cpu().numpy()
    return np.asarray(gaussians, dtype=np.float32)


def gaussians_to_splats(gaussians, *, cameras: np.ndarray | None = None,
                        min_opacity: float = LGM_MIN_OPACITY, name: str = "LGM output",
                        report: Report = log_report) -> SplatSet:
    """Activated network output → SplatSet in Blender world coordinates.

    Args:
        gaussians: [N, 14] or [1, N, 14] (numpy or torch) in :data:`GAUSSIAN_CHANNELS` layout.
        cameras: the Blender-world cameras given to :func:`build_lgm_input`, if any; their
            re-basing is undone (a no-op for the exact rig).
        min_opacity: splats below it are dropped, as the reference export does.
    Returns:
        SplatSet (SH degree 0): positions (x, −z, y) of the GL ones, rotations left-multiplied
        by +90° about X, log scales, logit opacities, f_dc = (rgb − 0.5) / C0.
    """
    ch = GAUSSIAN_CHANNELS
    g = _as_numpy(gaussians)
    if g.ndim == 3 and g.shape[0] == 1:
        g = g[0]
    if g.ndim != 2 or g.shape[1] != ch.width:
        raise GSError(f"{name}: expected Gaussians [N, {ch.width}] (one sample), got "
                      f"{list(g.shape)}")
    opacity = g[:, ch.opacity][:, 0].astype(np.float64)
    keep = opacity >= min_opacity  # NaN opacities are dropped here too
    kept = int(keep.sum())
    if kept == 0:
        raise GSError(f"{name}: none of the {len(g):,} Gaussians has opacity ≥ {min_opacity}; "
                      "the views probably do not show an object the network can see")
    if kept < len(g):
        report({"INFO"}, f"{name}: kept {kept:,} of {len(g):,} Gaussians (opacity ≥ "
                         f"{min_opacity})")
    g = g[keep]
    p = np.clip(opacity[keep], 1e-6, 1.0 - 1e-6)
    splats_gl = SplatSet.from_arrays(
        positions=g[:, ch.position],
        log_scales=np.log(np.maximum(g[:, ch.scale], 1e-8)),
        rotations=g[:, ch.rotation],
        opacity_logits=np.log(p / (1.0 - p)),
        sh_dc=(g[:, ch.rgb] - 0.5) / SH_C0,
        name=name,
    ).drop_nonfinite(source=name, report=report)
    lgm_to_blender = homogeneous(BLENDER_FROM_Y_UP)
    if cameras is not None:
        lgm_to_blender = lgm_to_blender @ np.linalg.inv(rebase_transform_gl(_cameras_gl(cameras)))
    return splats_gl.transformed(lgm_to_blender)


def predict_splats(model, images: Sequence[np.ndarray] | np.ndarray,
                   cameras: np.ndarray | None = None, *, names: Sequence[str] | None = None,
                   source: str = "views", fovy_deg: float | None = None,
                   min_opacity: float = LGM_MIN_OPACITY,
                   report: Report = log_report) -> SplatSet:
    """Four views → SplatSet in Blender's world: :func:`build_lgm_input`, one forward of
    ``model`` (an :class:`~.lgm.LGM`, e.g. from :func:`~.weights.load_lgm`) on its own device,
    then :func:`gaussians_to_splats`."""
    import torch

    weight = next(model.parameters())
    views = build_lgm_input(images, cameras, names=names, source=source, fovy_deg=fovy_deg,
                            device=weight.device, dtype=weight.dtype)
    with torch.inference_mode():
        gaussians = model(views)[0]  # [N, 14]
    return gaussians_to_splats(gaussians, cameras=cameras, min_opacity=min_opacity,
                               name=f"LGM reconstruction of {source}", report=report)
