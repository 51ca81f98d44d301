"""Image losses and metrics in torch: PSNR, SSIM (Gaussian window), and the 3DGS training loss.

Images are [B, H, W, 3] (channels last, as the rasterizer returns them), values in [0, 1].
"""

from __future__ import annotations

import math

__all__ = ["psnr", "ssim", "ssim_reference", "l1_dssim_loss"]


def psnr(a, b) -> float:
    """PSNR in dB over all pixels and channels; inf for identical images."""
    import torch

    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_kernel(size: int, sigma: float, device, dtype):
    import torch

    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()  # [size]


def ssim(a, b, *, window: int = 11, sigma: float = 1.5, c1: float = 0.01**2,
         c2: float = 0.03**2):
    """Mean SSIM (Wang et al. 2004) with a separable Gaussian window, 'valid' borders.

    Args:
        a, b: [B, H, W, C] in [0, 1]; H and W ≥ window.
    Returns:
        scalar tensor (differentiable).
    """
    import torch.nn.functional as F

    x = a.permute(0, 3, 1, 2)  # [B, C, H, W]
    y = b.permute(0, 3, 1, 2)
    channels = x.shape[1]
    g = _gaussian_kernel(window, sigma, x.device, x.dtype)
    gx = g.view(1, 1, 1, window).expand(channels, 1, 1, window)
    gy = g.view(1, 1, window, 1).expand(channels, 1, window, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, gx, groups=channels), gy, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def ssim_reference(a, b, *, window: int = 11, sigma: float = 1.5) -> float:
    """Slow, direct SSIM: explicit weighted sums per window position (tests only)."""
    import torch

    c1, c2 = 0.01**2, 0.03**2
    g = _gaussian_kernel(window, sigma, a.device, torch.float64)
    w2 = torch.outer(g, g)  # [window, window]
    x, y = a.double(), b.double()
    _, h, wd, _ = x.shape
    vals = []
    for i in range(h - window + 1):
        for j in range(wd - window + 1):
            px = x[:, i : i + window, j : j + window, :]
            py = y[:, i : i + window, j : j + window, :]
            mx = (px * w2[None, :, :, None]).sum((1, 2))
            my = (py * w2[None, :, :, None]).sum((1, 2))
            vx = (px**2 * w2[None, :, :, None]).sum((1, 2)) - mx**2
            vy = (py**2 * w2[None, :, :, None]).sum((1, 2)) - my**2
            cxy = (px * py * w2[None, :, :, None]).sum((1, 2)) - mx * my
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2))
                        / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(torch.stack(vals).mean())


def l1_dssim_loss(render, target, *, ssim_weight: float = 0.2):
    """(1 − λ)·L1 + λ·(1 − SSIM), the 3DGS photometric loss."""
    l1 = (render - target).abs().mean()
    if ssim_weight == 0:
        return l1
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim(render, target))
