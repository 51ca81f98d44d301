"""One exact still of a SplatSet from one pinhole camera: what F12 and the worker's ``render``
job both call, so a frame rendered in Blender's Python and one rendered in the worker are the
same computation.

:func:`render_still` takes the splats already in the camera's world (the render engine moves
every object there), a world → OpenCV-camera ``viewmat`` and intrinsics ``K``, and returns
premultiplied RGB on black, alpha and the expected depth. :func:`write_still` /
:func:`read_still` pass the result through a job folder as a plain ``.npz`` (no pickles).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GSError
from ..splats import SplatSet

__all__ = ["render_still", "write_still", "read_still"]

_KEYS = ("rgb", "alpha", "depth")


def render_still(splats: SplatSet, *, viewmat, K, width: int, height: int,
                 device: str = "auto") -> dict:
    """Render ``splats`` with the exact rasterizer (gsplat on CUDA, the torch path on CPU).

    Args:
        viewmat: [4, 4] world → camera (OpenCV axes). K: [3, 3] pixel intrinsics.
        device: "auto" (CUDA when torch sees one), "cpu" or "cuda".
    Returns:
        {"rgb": [H, W, 3] float32 premultiplied, "alpha": [H, W] float32,
         "depth": [H, W] float32 expected camera depth, meaningful where alpha > 0}.
    """
    import torch

    from ..devices import resolve_device
    from .rasterize import rasterize, splat_inputs

    dev = torch.device(resolve_device(device))

    def t(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)

    with torch.no_grad():
        out = rasterize(**splat_inputs(splats, device=dev),
                        viewmats=t(np.asarray(viewmat, np.float64)[None]),
                        Ks=t(np.asarray(K, np.float64)[None]), width=int(width),
                        height=int(height))
    return {"rgb": out.colors[0].cpu().numpy(), "alpha": out.alphas[0, ..., 0].cpu().numpy(),
            "depth": out.depths[0, ..., 0].cpu().numpy()}


def write_still(path, still: dict) -> Path:
    path = Path(path)
    np.savez(path, **{k: np.asarray(still[k], np.float32) for k in _KEYS})
    return path


def read_still(path, *, width: int, height: int) -> dict:
    """The arrays written by :func:`write_still`, checked against the expected size."""
    try:
        with np.load(path, allow_pickle=False) as data:
            still = {k: np.array(data[k], np.float32) for k in _KEYS}
    except (OSError, KeyError, ValueError) as err:
        raise GSError(f"{path}: the worker's render is unreadable ({err})") from None
    shapes = {k: v.shape[:2] for k, v in still.items()}
    if any(s != (height, width) for s in shapes.values()):
        raise GSError(f"{path}: the worker rendered {shapes}, expected {height}×{width}")
    return still
