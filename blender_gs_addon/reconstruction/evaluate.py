"""Render splats from a data set's cameras and score them against its images (PSNR, SSIM).

Frames: splat files are in the 3DGS file convention (+Y down); the data set's cameras are in a
Blender (Z-up) world. :data:`FILE_TO_WORLD_UP` names the up axis that maps one onto the other
(see :mod:`blender_gs_addon.conventions.frames`), the same mapping the Blender importer uses, so a
file that
imports aligned in Blender also evaluates aligned here.
"""

from __future__ import annotations

import numpy as np

from ..conventions.frames import file_to_blender_matrix
from ..errors import GSError
from ..splats import SplatSet

__all__ = ["FILE_TO_WORLD_UP", "splats_file_to_world", "splats_world_to_file", "render_views",
           "evaluate_splats", "cameras_to_render", "render_frames_exact"]

FILE_TO_WORLD_UP = "-Y"


def splats_file_to_world(splats: SplatSet) -> SplatSet:
    """3DGS file frame → Blender world frame (the inverse of :func:`splats_world_to_file`)."""
    return splats.transformed(file_to_blender_matrix(FILE_TO_WORLD_UP))


def splats_world_to_file(splats: SplatSet) -> SplatSet:
    """Blender world frame → 3DGS file frame, for writing results other tools show upright."""
    return splats.transformed(np.linalg.inv(file_to_blender_matrix(FILE_TO_WORLD_UP)))


def render_views(splats: SplatSet, views, *, background=(1.0, 1.0, 1.0), device: str = "cpu",
                 sh_degree: int | None = None):
    """Render world-frame splats into each view.

    Args:
        splats: in the Blender world of the views (see :func:`splats_file_to_world`).
        views: CameraView sequence (one image size).
        background: RGB the renders are composited on.
    Returns:
        (rgb [V, H, W, 3], alpha [V, H, W, 1]) float32 numpy arrays.
    """
    import torch

    from ..render.rasterize import rasterize, splat_inputs

    if not views:
        raise GSError("no views to render")
    sizes = {(v.width, v.height) for v in views}
    if len(sizes) != 1:
        raise GSError(f"views differ in size: {sorted(sizes)}")
    width, height = sizes.pop()
    degree = splats.sh_degree if sh_degree is None else min(sh_degree, splats.sh_degree)
    dev = torch.device(device)

    def t(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)

    inputs = {**splat_inputs(splats, device=dev), "sh_degree": degree}
    rgbs, alphas = [], []
    with torch.no_grad():
        for view in views:
            out = rasterize(
                **inputs, viewmats=t(view.world_to_camera_opencv()[None]),
                Ks=t(view.intrinsics_matrix()[None]), width=width, height=height,
                backgrounds=t(np.asarray(background, np.float32)[None]),
            )
            rgbs.append(out.colors[0].clamp(0, 1).cpu().numpy())
            alphas.append(out.alphas[0].cpu().numpy())
    return np.stack(rgbs), np.stack(alphas)


def evaluate_splats(splats: SplatSet, dataset, *, split: str = "test", device: str = "cpu",
                    background=None) -> dict:
    """PSNR and SSIM of world-frame ``splats`` on one split of ``dataset``.

    Both render and ground truth are composited on ``background`` (default: the data set's
    background colour, else white). Returns {"psnr", "ssim", "views", "split", "coverage"
    (share of pixels a splat covers), "per_view"}; psnr is inf for identical images.
    """
    import torch

    from ..datasets.camera_views import composite_on_background, load_view_image
    from .image_metrics import psnr, ssim

    views = dataset.split_views(split)
    if not views:
        raise GSError(f"the data set has no {split!r} views to evaluate on (splits: "
                      f"{', '.join(dataset.splits) or 'none'})")
    bg = background or dataset.background or (1.0, 1.0, 1.0)
    rendered, alphas = render_views(splats, views, background=bg, device=device)
    truth = np.stack([composite_on_background(load_view_image(v), bg) for v in views])
    per_view = []
    for i, view in enumerate(views):
        a, b = torch.from_numpy(rendered[i][None]), torch.from_numpy(truth[i][None])
        per_view.append({"name": view.name, "psnr": psnr(a, b), "ssim": float(ssim(a, b))})
    a, b = torch.from_numpy(rendered), torch.from_numpy(truth)
    # Share of pixels any splat covers (alpha ≥ 1/255): 0 means the views see no splats.
    coverage = float(np.mean(alphas >= 1.0 / 255.0))
    return {"psnr": psnr(a, b), "ssim": float(ssim(a, b)), "views": len(views), "split": split,
            "coverage": coverage, "per_view": per_view}


def cameras_to_render(cameras, out_dir, *, allow_outside_paths: bool = False) -> tuple:
    """(views, output folder) for rendering every frame of a transforms file: the cameras only
    (images need not exist), GSError when there is none; the folder is made."""
    from pathlib import Path

    from ..datasets.nerf_synthetic import read_transforms

    dataset = read_transforms(cameras, check_images=False,
                              allow_outside_paths=allow_outside_paths)
    if not dataset.views:
        raise GSError(f"{cameras}: no frames to render")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return dataset.views, out


def render_frames_exact(*, splats_path, cameras, out_dir, resolution: int | None = None,
                        device: str = "auto", allow_outside_paths: bool = False) -> list:
    """Render a splat file from every frame of a NeRF-synthetic transforms file to PNGs.

    PNGs are RGBA (transparent film) and named after the frames' file names, so they can be
    compared with the data set's own images. ``resolution`` rescales the longer side (the
    intrinsics scale with it). Rendered with our exact rasterizer; the command line renders
    EEVEE and Cycles frames through the Blender side (``scene.render_engine``) instead. The
    frames' image paths must lie inside the cameras file's folder unless ``allow_outside_paths``.
    """
    from pathlib import Path

    from PIL import Image

    from ..devices import resolve_device
    from ..formats import read_splats

    splats = splats_file_to_world(read_splats(splats_path))
    views, out = cameras_to_render(cameras, out_dir, allow_outside_paths=allow_outside_paths)
    dev = resolve_device(device)
    written = []
    for view in views:
        view = view.resized(resolution)
        rgb, alpha = render_views(splats, [view], background=(0.0, 0.0, 0.0), device=dev)
        straight = np.where(alpha[0] > 1e-6, rgb[0] / np.maximum(alpha[0], 1e-6), 0.0)
        rgba = np.clip(np.concatenate([straight, alpha[0]], axis=-1), 0.0, 1.0)
        path = out / f"{Path(view.name).name}.png"
        Image.fromarray((rgba * 255.0 + 0.5).astype(np.uint8), "RGBA").save(path)
        written.append(path)
    return written
