"""Slow, obviously correct dense rasterizer: every pixel against every Gaussian, one at a time.

Same inputs, outputs and semantics as :func:`.rasterize.rasterize` (which documents them); this
version follows gsplat's CUDA kernel literally — a loop over the Gaussians in depth order that
updates every pixel's transmittance and its "done" flag — and shares no code with the fast path
(its own quaternion, covariance, Jacobian, SH and matrix inverse), so the tests can compare the
two. Cost is O(C · N · H · W) with N Python iterations per camera: small scenes only.
"""

from __future__ import annotations

import math

import torch

from .rasterize import RenderOutput

__all__ = ["rasterize_reference"]

_ALPHA_THRESHOLD = 1.0 / 255.0


def _rotation(q: torch.Tensor) -> torch.Tensor:
    """[N, 4] wxyz → [N, 3, 3] via the matrix form of q v q*."""
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z], -1),
    ], -2)


def _sh_basis(d: torch.Tensor, degree: int) -> torch.Tensor:
    """[N, 3] unit directions → [N, (degree+1)²] (3DGS order, as blender_gs_addon.sh.sh_basis)."""
    x, y, z = d.unbind(-1)
    cols = [torch.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        c1 = 0.4886025119029199
        cols += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        cols += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                 0.31539156525252005 * (2 * z * z - x * x - y * y),
                 -1.0925484305920792 * x * z, 0.5462742152960396 * (x * x - y * y)]
    if degree >= 3:
        cols += [-0.5900435899266435 * y * (3 * x * x - y * y), 2.890611442640554 * x * y * z,
                 -0.4570457994644658 * y * (4 * z * z - x * x - y * y),
                 0.3731763325901154 * z * (2 * z * z - 3 * x * x - 3 * y * y),
                 -0.4570457994644658 * x * (4 * z * z - x * x - y * y),
                 1.445305721320277 * z * (x * x - y * y),
                 -0.5900435899266435 * x * (x * x - 3 * y * y)]
    return torch.stack(cols, -1)


def rasterize_reference(  # noqa: PLR0915 (one obviously correct reference, read top to bottom)
        *, means, quats, scales, opacities, colors, viewmats, Ks, width: int, height: int,
        near_plane: float = 0.01, far_plane: float = 1e10, sh_degree: int | None = None,
        backgrounds=None, eps2d: float = 0.3) -> RenderOutput:
    """Dense version of :func:`.rasterize.rasterize` (no chunking, no pairs)."""
    n_cams, n = viewmats.shape[0], means.shape[0]
    rot = _rotation(quats)
    cov3d = rot @ torch.diag_embed(scales * scales) @ rot.transpose(1, 2)  # [N, 3, 3]
    jj, ii = torch.meshgrid(torch.arange(width, dtype=means.dtype),
                            torch.arange(height, dtype=means.dtype), indexing="xy")
    pix = torch.stack([jj + 0.5, ii + 0.5], -1).reshape(-1, 2).to(means.device)  # [HW, 2]
    out_colors, out_alphas, out_depths, all_radii = [], [], [], []
    for cam in range(n_cams):
        r_view, t_view = viewmats[cam, :3, :3], viewmats[cam, :3, 3]
        k = Ks[cam]
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        p = means @ r_view.T + t_view  # [N, 3] camera space
        cov_c = r_view @ cov3d @ r_view.T  # [N, 3, 3]
        x, y, z = p.unbind(-1)
        # gsplat clamps the Jacobian's x/z, y/z to 1.3× the half field of view.
        lim_x = (-(cx / fx + 0.3 * 0.5 * width / fx), (width - cx) / fx + 0.3 * 0.5 * width / fx)
        lim_y = (-(cy / fy + 0.3 * 0.5 * height / fy),
                 (height - cy) / fy + 0.3 * 0.5 * height / fy)
        tx = z * torch.clamp(x / z, lim_x[0].item(), lim_x[1].item())
        ty = z * torch.clamp(y / z, lim_y[0].item(), lim_y[1].item())
        zero = torch.zeros_like(z)
        jac = torch.stack([torch.stack([fx / z, zero, -fx * tx / (z * z)], -1),
                           torch.stack([zero, fy / z, -fy * ty / (z * z)], -1)], -2)  # [N,2,3]
        cov2d = jac @ cov_c @ jac.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype)
        det = torch.linalg.det(cov2d)
        mean2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)  # [N, 2]

        if sh_degree is None:
            col = colors if colors.dim() == 2 else colors[cam]
        else:
            coeffs = colors if colors.dim() == 3 else colors[cam]
            campos = -r_view.T @ t_view
            d = means - campos
            d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)
            basis = _sh_basis(d, sh_degree)  # [N, (d+1)²]
            col = torch.clamp_min(
                (basis[:, :, None] * coeffs[:, : basis.shape[1]]).sum(1) + 0.5, 0.0)

        t_pix = torch.ones(height * width, dtype=means.dtype)
        done = torch.zeros(height * width, dtype=torch.bool)
        acc = torch.zeros(height * width, col.shape[1], dtype=means.dtype)
        acc_depth = torch.zeros(height * width, dtype=means.dtype)
        radii = torch.zeros(n, 2, dtype=torch.int32)
        plain = [t.detach() for t in (z, opacities, det, cov2d, mean2d)]
        for i in torch.argsort(plain[0], stable=True).tolist():
            zi, op, det_i = float(plain[0][i]), float(plain[1][i]), float(plain[2][i])
            if not (near_plane <= zi <= far_plane) or det_i <= 0 or op < _ALPHA_THRESHOLD:
                continue
            extend = min(3.33, math.sqrt(2.0 * math.log(op / _ALPHA_THRESHOLD)))
            rx = math.ceil(extend * math.sqrt(float(plain[3][i, 0, 0])))
            ry = math.ceil(extend * math.sqrt(float(plain[3][i, 1, 1])))
            mx, my = float(plain[4][i, 0]), float(plain[4][i, 1])
            if (rx <= 0 and ry <= 0) or mx + rx <= 0 or mx - rx >= width or my + ry <= 0 \
                    or my - ry >= height:
                continue
            radii[i] = torch.tensor([rx, ry], dtype=torch.int32)
            conic = torch.linalg.inv(cov2d[i])
            delta = mean2d[i] - pix  # [HW, 2]
            sigma = 0.5 * (delta @ conic * delta).sum(-1)
            alpha = torch.clamp_max(opacities[i] * torch.exp(-sigma), 0.999)
            active = ~done & (sigma >= 0) & (alpha >= _ALPHA_THRESHOLD)
            next_t = t_pix * (1.0 - alpha)
            stops = active & (next_t <= 1e-4)
            done = done | stops
            used = active & ~stops
            weight = torch.where(used, alpha * t_pix, torch.zeros_like(alpha))
            acc = acc + weight[:, None] * col[i]
            acc_depth = acc_depth + weight * z[i]
            t_pix = torch.where(used, next_t, t_pix)
        alpha_img = 1.0 - t_pix
        if backgrounds is not None:
            acc = acc + t_pix[:, None] * backgrounds[cam]
        out_colors.append(acc.reshape(height, width, -1))
        out_alphas.append(alpha_img.reshape(height, width, 1))
        out_depths.append((acc_depth / alpha_img.clamp_min(1e-10)).reshape(height, width, 1))
        all_radii.append(radii)
    meta = {"radii": torch.stack(all_radii), "width": width, "height": height,
            "n_cameras": n_cams}
    return RenderOutput(colors=torch.stack(out_colors), alphas=torch.stack(out_alphas),
                        depths=torch.stack(out_depths), meta=meta)
