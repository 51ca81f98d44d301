"""The colour convention: a splat's colour (SH evaluated + 0.5) is display-referred sRGB.

Training compares renders with captured images as their 8-bit sRGB values (the capture writes
PNGs through the "Standard" view transform), so the colours a 3DGS model learns are the sRGB
pixel values it shows. Blender 5.3's native splats take them the same way: Cycles and EEVEE
evaluate SH + 0.5, clamp below at 0, and convert with the sRGB transfer function into
scene-linear light (Cycles' ``color_srgb_to_linear``, read in the kernel that ships with
bpy 5.3.0). This project does the same everywhere a splat's colour enters Blender:

- the mesh display (Blender 4.5-5.2) converts each splat's colour in its material, as native
  splats do, and EEVEE / Cycles blend the converted colours;
- the exact render engine converts the rasteriser's composited image (:func:`display_to_linear`),
  so Blender's "Standard" view transform shows exactly the pixels the rasteriser, and training,
  produce.

The two differ only where semi-transparent splats of different colours overlap: Blender blends
in linear light, the rasteriser (like training) blends sRGB values. Under "Standard" the
scene-linear values come back as the sRGB values (the view transform is the inverse
function); other view transforms (AgX, Filmic) tone-map them as they do every other render.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SRGB_THRESHOLD", "srgb_to_linear", "linear_to_srgb", "display_to_linear"]

SRGB_THRESHOLD = 0.04045  # below it the sRGB curve is linear (slope 1/12.92)


def srgb_to_linear(values) -> np.ndarray:
    """sRGB-encoded values → linear, as Cycles' ``color_srgb_to_linear``: negatives → 0, the
    power branch continues above 1 (float64 in, float64 out; any shape)."""
    c = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        high = ((np.maximum(c, SRGB_THRESHOLD) + 0.055) / 1.055) ** 2.4
    return np.where(c < SRGB_THRESHOLD, np.maximum(c, 0.0) / 12.92, high)


def linear_to_srgb(values) -> np.ndarray:
    """Inverse of :func:`srgb_to_linear` on values ≥ 0 (negatives → 0)."""
    c = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    return np.where(c < 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def display_to_linear(rgb: np.ndarray, alpha: np.ndarray,
                      background: np.ndarray | None = None) -> np.ndarray:
    """A rasterised image (sRGB values, premultiplied over black) → scene-linear RGB.

    Args:
        rgb: [H, W, 3] Σ colour · weight, the rasteriser's output.
        alpha: [H, W] its coverage.
        background: [3] scene-linear colour behind the splats, or None for a transparent film.
    Returns:
        [H, W, 3] float32: with a background, the linear value of (rgb + (1 − alpha) ·
        sRGB(background)), i.e. composited as training composites, then converted; without,
        premultiplied linear (the straight colour rgb / alpha converted, times alpha).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64)[..., None]  # [H, W, 1]
    if background is not None:
        behind = linear_to_srgb(np.asarray(background, dtype=np.float64))  # [3]
        return srgb_to_linear(rgb + (1.0 - a) * behind).astype(np.float32)
    straight = np.divide(rgb, a, out=np.zeros_like(rgb), where=a > 0)
    return (srgb_to_linear(straight) * a).astype(np.float32)
