"""Differentiable 3D Gaussian splatting rasterizer with gsplat's semantics, on CPU and CUDA.

:func:`rasterize` mirrors ``gsplat.rasterization(..., packed=False, render_mode="RGB+ED")``.
CUDA tensors (with CUDA available) go to gsplat's kernels; everything else runs the pure-torch
path, which reproduces gsplat's kernel rules (projection, culling, pixel centres, alpha,
compositing, colours, outputs) so that a scene trained on one device renders the same on the
other. The rules, how the CPU path stays vectorised and memory-bounded, and what ``meta``
holds: docs/architecture.md, "The rasterizer".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..devices import gsplat_cuda_available, gsplat_unavailable_reason
from ..errors import GSError
from ..sh import SH_C0 as _SH_C0
from ..sh import SH_C1 as _SH_C1
from ..sh import SH_C2 as _SH_C2
from ..sh import SH_C3 as _SH_C3

__all__ = [
    "ALPHA_THRESHOLD",
    "ALPHA_MAX",
    "TRANSMITTANCE_MIN",
    "RenderOutput",
    "rasterize",
    "splat_inputs",
    "project_gaussians",
    "quat_to_rotmat",
    "sh_colors",
]

ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
_MAX_EXTEND = 3.33  # gsplat's box half-size in standard deviations
_LOG_T_MIN = math.log(TRANSMITTANCE_MIN)

@dataclass
class RenderOutput:
    """What :func:`rasterize` returns.

    colors: [C, H, W, D] (D = 3 for RGB or SH); alphas: [C, H, W, 1]; depths: [C, H, W, 1]
    expected depth (gsplat "ED"); meta: projection results and DefaultStrategy's ``info`` keys.
    """

    colors: torch.Tensor
    alphas: torch.Tensor
    depths: torch.Tensor
    meta: dict


# --------------------------------------------------------------------------- geometry

def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """[..., 4] wxyz quaternions (any norm) → [..., 3, 3] rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, -1).reshape(q.shape[:-1] + (3, 3))


def sh_colors(coeffs: torch.Tensor, dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Spherical-harmonics sum Σ_k Y_k(d) · coeffs_k in the 3DGS basis (without the +0.5).

    Args:
        coeffs: [..., K, D] with K ≥ (degree+1)² (extra coefficients are ignored, as in gsplat).
        dirs: [..., 3] directions camera → splat (normalised here).
        degree: 0..3.
    Returns:
        [..., D].
    """
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z = d[..., 0:1], d[..., 1:2], d[..., 2:3]  # [..., 1] broadcast over channels
    out = _SH_C0 * coeffs[..., 0, :]
    if degree >= 1:
        out = out + _SH_C1 * (-y * coeffs[..., 1, :] + z * coeffs[..., 2, :]
                              - x * coeffs[..., 3, :])
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis2 = (x * y, y * z, 2.0 * zz - xx - yy, x * z, xx - yy)
        for k, (c, b) in enumerate(zip(_SH_C2, basis2)):
            out = out + (c * b) * coeffs[..., 4 + k, :]
    if degree >= 3:
        basis3 = (
            y * (3.0 * xx - yy), x * y * z, y * (4.0 * zz - xx - yy),
            z * (2.0 * zz - 3.0 * xx - 3.0 * yy), x * (4.0 * zz - xx - yy), z * (xx - yy),
            x * (xx - 3.0 * yy),
        )
        for k, (c, b) in enumerate(zip(_SH_C3, basis3)):
            out = out + (c * b) * coeffs[..., 9 + k, :]
    return out


@dataclass
class Projection:
    """Per camera and Gaussian screen-space data ([C, N, ...]); ``radii`` 0 means culled."""

    means2d: torch.Tensor  # [C, N, 2] pixels
    conics: torch.Tensor  # [C, N, 3] upper triangle (a, b, c) of Σ₂ᴅ⁻¹
    depths: torch.Tensor  # [C, N] camera z
    radii: torch.Tensor  # [C, N, 2] int32


def project_gaussians(means,  # [N, 3] world
                      quats,  # [N, 4] wxyz, any norm
                      scales,  # [N, 3] activated
                      opacities,  # [N] activated
                      viewmats,  # [C, 4, 4] world → camera, OpenCV axes
                      Ks,  # [C, 3, 3]
                      *, width: int, height: int, near_plane: float = 0.01,
                      far_plane: float = 1e10, eps2d: float = 0.3) -> Projection:
    """EWA projection and culling with gsplat's rules (see the module docstring)."""
    rot = quat_to_rotmat(quats)  # [N, 3, 3]
    m = rot * scales[:, None, :]  # [N, 3, 3]; covariance = m mᵀ
    r = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", r, means) + t[:, None, :]  # [C, N, 3]
    x, y, z = means_c.unbind(-1)  # [C, N]

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    in_depth = (z >= near_plane) & (z <= far_plane)
    # Culled entries get z = 1 so no inf/NaN reaches autograd (0·inf would poison gradients).
    z_safe = torch.where(in_depth, z, torch.ones_like(z))
    rz = 1.0 / z_safe
    lim_x_pos = (width - cx) / fx + 0.15 * width / fx
    lim_x_neg = cx / fx + 0.15 * width / fx
    lim_y_pos = (height - cy) / fy + 0.15 * height / fy
    lim_y_neg = cy / fy + 0.15 * height / fy
    tx = z_safe * torch.minimum(torch.maximum(x * rz, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y * rz, -lim_y_neg), lim_y_pos)
    # Rows of J·R_view (J = [[fx/z, 0, −fx tx/z²], [0, fy/z, −fy ty/z²]]), then (J R m)(J R m)ᵀ.
    j0 = (fx * rz)[..., None] * r[:, None, 0, :] - (fx * tx * rz * rz)[..., None] * r[:, None, 2, :]
    j1 = (fy * rz)[..., None] * r[:, None, 1, :] - (fy * ty * rz * rz)[..., None] * r[:, None, 2, :]
    u0 = (j0[..., :, None] * m).sum(-2)  # [C, N, 3]
    u1 = (j1[..., :, None] * m).sum(-2)
    s00 = (u0 * u0).sum(-1) + eps2d
    s11 = (u1 * u1).sum(-1) + eps2d
    s01 = (u0 * u1).sum(-1)
    det = s00 * s11 - s01 * s01
    valid = in_depth & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([s11 / det_safe, -s01 / det_safe, s00 / det_safe], -1)  # [C, N, 3]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)  # [C, N, 2]

    with torch.no_grad():
        op = opacities.detach()[None, :].expand_as(z)
        extend = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = extend.clamp_max(_MAX_EXTEND)
        rx = torch.ceil(extend * torch.sqrt(s00.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(s11.detach().clamp_min(0)))
        mx, my = means2d.detach().unbind(-1)
        visible = (valid & (op >= ALPHA_THRESHOLD) & ((rx > 0) | (ry > 0))
                   & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height))
        radii = torch.where(visible[..., None], torch.stack([rx, ry], -1), 0.0)
        radii = radii.to(torch.int32)  # NaN inputs end up culled with radius 0
    means2d = torch.where(visible[..., None], means2d, torch.zeros_like(means2d))
    return Projection(means2d=means2d, conics=conics, depths=z, radii=radii)


# --------------------------------------------------------------------------- compositing

class _PairComposite(torch.autograd.Function):
    """Alpha of each (Gaussian, pixel) pair and front-to-back compositing, in closed form.

    forward(params [6+D, V] = rows (mean2d x, y, conic a, b, c, opacity, features…),
            g [P] Gaussian column of each pair, pix [P] pixel, px [P], py [P] pixel-centre
            coordinates, seg_start [P], carry [HW] log transmittance left by nearer chunks,
            done [HW] bool pixels stopped in nearer chunks, abs_sink)
      → (out [D, HW] Σ w·features, log_t [HW] log transmittance after this chunk,
         done [HW] pixels stopped so far)

    Pairs are sorted by (pixel, depth): each pixel's pairs form a contiguous run that begins at
    index ``seg_start``. Pairs below the alpha threshold are inert; pairs whose inclusive
    transmittance would be ≤ 1e-4 are excluded (gsplat's stop rule; monotone, so they are a
    tail of each run), and a stopped pixel takes nothing from later chunks. Parameters are laid
    out one per row so every per-pair quantity is a contiguous vector (strided columns are ~10×
    slower on CPU). ``abs_sink`` ([2, V] or None)
    accumulates Σ_pairs |∂L/∂mean2d| (gsplat's absgrad).
    """

    @staticmethod
    def forward(ctx, params, g, pix, px, py, seg_start, carry, done, abs_sink):
        pg = params.index_select(1, g)  # [6+D, P]
        dx = pg[0] - px
        dy = pg[1] - py
        sigma = 0.5 * (pg[2] * dx * dx + pg[4] * dy * dy) + pg[3] * dx * dy
        raw = pg[5] * torch.exp(-sigma)
        alpha = raw.clamp_max(ALPHA_MAX) * ((sigma >= 0) & (raw >= ALPHA_THRESHOLD))
        log1m = torch.log1p(-alpha)  # [P]
        # Running sums over all runs at once: float64 so a run's prefix keeps full precision.
        excl = torch.cumsum(log1m.double(), 0) - log1m
        log_t = (excl - excl.index_select(0, seg_start)).to(alpha.dtype) + carry.index_select(
            0, pix)  # [P] log T in front of the pair
        below = (log_t + log1m) <= _LOG_T_MIN
        stopped = below & (alpha > 0)  # a hit that would end the ray: it and all behind drop
        done_out = done.index_fill(0, pix[stopped], True)
        trans = torch.exp(log_t) * ~(below | done.index_select(0, pix))  # [P], 0 past the stop
        w = alpha * trans
        n_feats = params.shape[0] - 6
        out = torch.zeros(n_feats, carry.shape[0], dtype=pg.dtype, device=pg.device)
        for k in range(n_feats):
            out[k].index_add_(0, pix, w * pg[6 + k])
        log_t_out = carry.index_add(0, pix, log1m * (trans > 0))
        ctx.save_for_backward(params, g, pix, px, py, seg_start, alpha, trans)
        ctx.abs_sink = abs_sink
        ctx.mark_non_differentiable(done_out)
        return out, log_t_out, done_out

    @staticmethod
    def backward(ctx, grad_out, grad_log_t, _grad_done):
        params, g, pix, px, py, seg_start, alpha, trans = ctx.saved_tensors
        pg = params.index_select(1, g)  # [6+D, P]
        feats = pg[6:]
        w = alpha * trans
        g_pix = grad_out.index_select(1, pix)  # [D, P]
        # out_p = Σ_i w_i f_i, w_i = α_i T_i, T_i = exp(carry) Π_{j<i}(1−α_j), log T_out = carry +
        # Σ log(1−α_i):  ∂/∂α_i = T_i (f_i·g) − (Σ_{j>i} w_j f_j·g + g_T) / (1−α_i).
        feat_dot = (g_pix * feats).sum(0)  # [P]
        s64 = (feat_dot * w).double()
        incl = torch.cumsum(s64, 0)
        run_incl = incl - (incl - s64).index_select(0, seg_start)  # Σ_{j≤i} in the run
        total = torch.zeros(grad_log_t.shape[0], dtype=torch.float64,
                            device=grad_log_t.device).index_add_(0, pix, s64)
        after = (total.index_select(0, pix) - run_incl).to(alpha.dtype)  # Σ_{j>i} in the run
        g_t = grad_log_t.index_select(0, pix)
        grad_alpha = trans * feat_dot - (after + g_t) * (trans > 0) / (1.0 - alpha)
        # alpha = opacity·exp(−σ) where it is neither below the threshold nor capped.
        live = (alpha > 0) & (alpha < ALPHA_MAX)
        g_raw = grad_alpha * alpha * live  # ∂L/∂α · α = −∂L/∂σ
        dx = pg[0] - px
        dy = pg[1] - py
        a, b, c, op = pg[2], pg[3], pg[4], pg[5]
        g_mx = -g_raw * (a * dx + b * dy)
        g_my = -g_raw * (c * dy + b * dx)
        columns = [g_mx, g_my, -0.5 * g_raw * dx * dx, -g_raw * dx * dy, -0.5 * g_raw * dy * dy,
                   g_raw / op]
        columns += list(g_pix * w)  # [P] each
        # One 1-D index_add per parameter: much faster on CPU than a [P, K] index_add.
        grad_params = torch.zeros_like(params)  # [6+D, V]
        for row, col in zip(grad_params, columns):
            row.index_add_(0, g, col)
        if ctx.abs_sink is not None:
            ctx.abs_sink[0].index_add_(0, g, g_mx.abs())
            ctx.abs_sink[1].index_add_(0, g, g_my.abs())
        grad_carry = total.to(grad_log_t.dtype) + grad_log_t
        return grad_params, None, None, None, None, None, grad_carry, None, None


def _abs_flusher(sink, vis, abs_v):
    # Runs when m2's gradient is complete, i.e. after every chunk's backward filled abs_v.
    def hook(grad):
        sink.index_add_(0, vis, abs_v.t())

    return hook


def _row_spans(mx, my, con, op, radii, *, width: int, height: int):
    """Pixel runs that can reach alpha ≥ 1/255, one per (Gaussian, image row) of its box.

    alpha ≥ 1/255 ⇔ σ(d) = ½ dᵀ Q d ≤ ln(255·opacity): for a row's fixed dy that is an interval of
    dx (a quadratic inequality), widened by a safety margin; the exact per-pixel test is still
    applied afterwards. Returns row_g [R] (Gaussian of the row), first pixel index [R] and
    length [R] (0 for empty rows), all int64.
    """
    device = mx.device
    mx, my, op = mx.double(), my.double(), op.double()
    con = con.double()
    rad = radii.double()
    y0 = torch.ceil(my - rad[:, 1] - 0.5).clamp(0, height).long()
    y1 = torch.floor(my + rad[:, 1] - 0.5).clamp(-1, height - 1).long()
    x0 = torch.ceil(mx - rad[:, 0] - 0.5).clamp(0, width)
    x1 = torch.floor(mx + rad[:, 0] - 0.5).clamp(-1, width - 1)
    n_rows = (y1 - y0 + 1).clamp_min(0)  # [V]
    row_g = torch.repeat_interleave(torch.arange(mx.shape[0], device=device), n_rows)  # [R]
    first_row = torch.cumsum(n_rows, 0) - n_rows
    row_y = y0.index_select(0, row_g) + torch.arange(row_g.shape[0], device=device) \
        - first_row.index_select(0, row_g)
    dy = my.index_select(0, row_g) - (row_y.double() + 0.5)
    a, b, c = con.index_select(0, row_g).unbind(-1)
    s_max = torch.log(op * 255.0).clamp_min(0).index_select(0, row_g)
    # ½a dx² + b dy dx + ½c dy² − s_max ≤ 0  ⇔  dx ∈ (−b dy ± √disc) / a.
    root = torch.sqrt((b * dy) ** 2 - a * (c * dy * dy - 2.0 * s_max)).nan_to_num(0.0)
    centre = mx.index_select(0, row_g) + b * dy / a  # pixel centre u = mx − dx
    half = root / a
    margin = 0.05
    j0 = torch.maximum(torch.ceil(centre - half - 0.5 - margin), x0.index_select(0, row_g))
    j1 = torch.minimum(torch.floor(centre + half - 0.5 + margin), x1.index_select(0, row_g))
    length = (j1 - j0 + 1).clamp_min(0).long()
    start = row_y * width + j0.clamp_min(0).long()
    return row_g, start, length


def _drop_done_rows(done, row_start, lengths, *, width: int, height: int):
    """Lengths with rows whose pixels have all stopped set to 0 (done [HW] bool)."""
    grid = done.view(height, width).to(torch.int32)
    cum = torch.nn.functional.pad(torch.cumsum(grid, 1), (1, 0)).flatten()  # [H·(W+1)]
    y = torch.div(row_start, width, rounding_mode="floor")
    last = cum.numel() - 1
    first = (row_start + y).clamp_max(last)  # the run's start in the padded rows
    n_done = cum.index_select(0, (first + lengths).clamp_max(last)) - cum.index_select(0, first)
    return torch.where(n_done == lengths, torch.zeros_like(lengths), lengths)


def _chunk_rows(row_g, row_len, *, n_gaussians: int, budget: int) -> list[int]:
    """Row boundaries splitting the depth-sorted Gaussians into chunks of about ``budget``
    pairs (whole rows of whole Gaussians; a chunk holds at least one Gaussian, at most one image
    of pairs more). Later chunks skip rows whose pixels all stopped already.

    Args:
        row_g: [R] Gaussian (depth rank) of each row span. row_len: [R] pixels in each span.
    """
    row_cum = torch.cumsum(row_len, 0)
    total = int(row_cum[-1]) if row_cum.numel() else 0
    bounds = [0]
    if total > budget:
        n_rows = torch.bincount(row_g, minlength=n_gaussians)
        g_row_end = torch.cumsum(n_rows, 0)  # rows of Gaussians < k+1 end here
        g_cum = torch.cat([row_cum.new_zeros(1), row_cum]).index_select(0, g_row_end)
        marks = torch.arange(1, total // budget + 1, device=row_len.device) * budget
        cut_g = torch.searchsorted(g_cum, marks, right=True)
        cut_rows = torch.cat([g_row_end.new_zeros(1), g_row_end]).index_select(0, cut_g)
        bounds += sorted(set(cut_rows.tolist()) - {0, row_g.numel()})
    bounds.append(row_g.numel())
    return bounds


def _render_camera(means2d,  # [N, 2] pixels
                   conics,  # [N, 3] inverse 2D covariance (a, b, c)
                   opacities,  # [N]
                   depths,  # [N] camera z
                   radii,  # [N, 2] pixel radii, 0 where culled
                   features: Callable, *, width: int, height: int, max_pairs: int,
                   absgrad_sink=None):
    """One camera: [N, ...] projections → (feature image [HW, D], log T [HW], n_pairs).

    ``features(index [V]) -> [V, D]`` supplies colours (and the depth channel) of the visible
    Gaussians; ``absgrad_sink`` ([N, 2] tensor) receives Σ |∂L/∂means2d| per pair when given.
    """
    device = means2d.device
    hw = width * height
    vis = torch.nonzero((radii > 0).all(-1)).squeeze(1)  # [V]
    order = torch.argsort(depths.detach().index_select(0, vis), stable=True)
    vis = vis.index_select(0, order)  # front to back
    feats = features(vis)  # [V, D]
    carry = torch.zeros(hw, dtype=means2d.dtype, device=device)
    out = torch.zeros(feats.shape[1], hw, dtype=feats.dtype, device=device)
    if vis.numel() == 0:
        return out.t(), carry, 0
    m2 = means2d.index_select(0, vis)  # [V, 2]
    con = conics.index_select(0, vis)  # [V, 3]
    op = opacities.index_select(0, vis)  # [V]
    params = torch.cat([m2.t(), con.t(), op[None], feats.t()], 0)  # [6+D, V]
    abs_sink = None
    if absgrad_sink is not None and params.requires_grad:
        abs_sink = torch.zeros(2, vis.shape[0], dtype=params.dtype, device=device)
        # Scattered to the camera's [N, 2] buffer once the backward pass has filled it.
        m2.register_hook(_abs_flusher(absgrad_sink, vis, abs_sink))

    with torch.no_grad():
        mx, my = m2.detach().unbind(-1)
        row_g, row_start, row_len = _row_spans(mx, my, con.detach(), op.detach(),
                                               radii.index_select(0, vis), width=width,
                                               height=height)
        row_bounds = _chunk_rows(row_g, row_len, n_gaussians=vis.numel(),
                                 budget=max(int(max_pairs), hw))

    n_pairs = 0
    done = torch.zeros(hw, dtype=torch.bool, device=device)
    for r0, r1 in zip(row_bounds[:-1], row_bounds[1:]):
        with torch.no_grad():
            lengths = row_len[r0:r1]
            if r0 > 0:
                lengths = _drop_done_rows(done, row_start[r0:r1], lengths, width=width,
                                          height=height)
            n = int(lengths.sum())
            if n == 0:
                continue
            # Pixel index of every pair: the row's start pixel plus the position in the run.
            offset = torch.repeat_interleave(row_start[r0:r1] - (torch.cumsum(lengths, 0) -
                                                                 lengths), lengths)
            pix = (offset + torch.arange(n, device=device)).to(torch.int32)
            g = torch.repeat_interleave(row_g[r0:r1], lengths)  # depth rank order
            # int32 keys sort twice as fast; int64 indices make index_add_ take its fast path.
            pix, perm = torch.sort(pix, stable=True)  # by pixel, depth order kept inside runs
            px = (pix % width).to(m2.dtype) + 0.5  # pixel centres
            py = torch.div(pix, width, rounding_mode="floor").to(m2.dtype) + 0.5
            pix = pix.long()
            g = g.index_select(0, perm)
            per_pixel = torch.bincount(pix, minlength=hw)
            seg_start = (torch.cumsum(per_pixel, 0) - per_pixel).index_select(0, pix)
        n_pairs += n
        chunk_out, carry, done = _PairComposite.apply(params, g, pix, px, py, seg_start, carry,
                                                      done, abs_sink)
        out = out + chunk_out
    return out.t(), carry, n_pairs


# --------------------------------------------------------------------------- public API

def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                  sh_degree, backgrounds):
    def fail(msg):
        raise GSError(f"rasterize: {msg}")

    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        fail(f"image size must be positive integers, got {width!r}×{height!r}")
    if means.dim() != 2 or means.shape[1] != 3:
        fail(f"means must be [N, 3], got {tuple(means.shape)}")
    n = means.shape[0]
    if tuple(quats.shape) != (n, 4):
        fail(f"quats must be [{n}, 4], got {tuple(quats.shape)}")
    if tuple(scales.shape) != (n, 3):
        fail(f"scales must be [{n}, 3], got {tuple(scales.shape)}")
    if tuple(opacities.shape) != (n,):
        fail(f"opacities must be [{n}], got {tuple(opacities.shape)}")
    if viewmats.dim() != 3 or tuple(viewmats.shape[1:]) != (4, 4):
        fail(f"viewmats must be [C, 4, 4], got {tuple(viewmats.shape)}")
    c = viewmats.shape[0]
    if tuple(Ks.shape) != (c, 3, 3):
        fail(f"Ks must be [{c}, 3, 3], got {tuple(Ks.shape)}")
    if sh_degree is None:
        if not (colors.dim() == 2 and colors.shape[0] == n) and not (
                colors.dim() == 3 and tuple(colors.shape[:2]) == (c, n)):
            fail(f"colors must be [{n}, D] or [{c}, {n}, D], got {tuple(colors.shape)}")
    else:
        if sh_degree not in (0, 1, 2, 3):
            fail(f"sh_degree must be 0..3, got {sh_degree!r}")
        need = (sh_degree + 1) ** 2
        ok = (colors.dim() == 3 and colors.shape[0] == n) or (
            colors.dim() == 4 and tuple(colors.shape[:2]) == (c, n))
        if not ok or colors.shape[-1] != 3 or colors.shape[-2] < need:
            fail(f"SH coefficients must be [{n}, K≥{need}, 3] (or per camera), "
                 f"got {tuple(colors.shape)}")
    if backgrounds is not None:
        d = 3 if sh_degree is not None else colors.shape[-1]
        if tuple(backgrounds.shape) != (c, d):
            fail(f"backgrounds must be [{c}, {d}], got {tuple(backgrounds.shape)}")


def rasterize(*, means, quats, scales, opacities, colors, viewmats, Ks, width: int, height: int,
              near_plane: float = 0.01, far_plane: float = 1e10, sh_degree: int | None = None,
              backgrounds=None, eps2d: float = 0.3, absgrad: bool = False,
              backend: str = "auto", max_pairs: int = 1 << 20) -> RenderOutput:
    """Render N Gaussians into C pinhole cameras (gsplat semantics, differentiable).

    Args:
        means: [N, 3] world positions. quats: [N, 4] wxyz, any norm. scales: [N, 3] activated
            (exp of log-scales). opacities: [N] activated (sigmoid of logits).
        colors: [N, D] or [C, N, D] colours when ``sh_degree`` is None; else SH coefficients
            [N, K, 3] or [C, N, K, 3] in 3DGS order (DC first) with K ≥ (sh_degree+1)².
        viewmats: [C, 4, 4] world→camera, OpenCV axes (see :mod:`..conventions`). Ks: [C, 3, 3].
        width, height: image size in pixels.
        near_plane, far_plane: depth range of kept Gaussian centres.
        backgrounds: [C, D] composited as ``colour + (1 − alpha) · background``, or None (black).
        eps2d: low-pass variance (px²) added to every projected covariance.
        absgrad: also accumulate ``meta["means2d"].absgrad`` (Σ over pixels of |∂L/∂mean2d|) in
            the backward pass, for DefaultStrategy(absgrad=True).
        backend: "auto" (gsplat's CUDA kernels for CUDA tensors when CUDA is available, else the
            torch path), "torch" or "gsplat".
        max_pairs: CPU path memory bound: (Gaussian, pixel) box pairs handled at once per camera
            (at least one image's worth).
    Returns:
        :class:`RenderOutput` (colors [C, H, W, D], alphas [C, H, W, 1], depths [C, H, W, 1]
        expected depth, meta). meta holds means2d [C, N, 2], radii [C, N, 2], depths [C, N],
        conics [C, N, 3], width, height, n_cameras, gaussian_ids (None), packed (False), and on
        the torch path n_pairs (composited pairs, all cameras).
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                  sh_degree, backgrounds)
    on_cuda = means.is_cuda and torch.cuda.is_available()
    if backend == "auto":
        backend = "gsplat" if on_cuda and gsplat_cuda_available() else "torch"
    if backend == "gsplat":
        if not on_cuda:
            raise GSError("rasterize: the gsplat backend needs CUDA tensors and a CUDA device")
        if not gsplat_cuda_available():
            raise GSError(f"rasterize: gsplat's CUDA extension is not available "
                          f"({gsplat_unavailable_reason()})")
        return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width,
                                 height, near_plane, far_plane, sh_degree, backgrounds, eps2d,
                                 absgrad)
    if backend != "torch":
        raise GSError(f"rasterize: backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    return _rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width=width,
                            height=height, near_plane=near_plane, far_plane=far_plane,
                            sh_degree=sh_degree, backgrounds=backgrounds, eps2d=eps2d,
                            absgrad=absgrad, max_pairs=max_pairs)


def _camera_features(colors, means, depths, campos, sh_degree: int | None, cam: int):
    """The per-Gaussian features camera ``cam`` composites: colour (given, or SH evaluated for
    the direction camera → mean, + 0.5, clamped at 0) and depth, for Gaussian indices ``idx``."""

    def features(idx):  # idx: [M] → [M, D + 1]
        if sh_degree is None:
            col = colors if colors.dim() == 2 else colors[cam]
            col = col.index_select(0, idx)
        else:
            coeffs = colors if colors.dim() == 3 else colors[cam]
            dirs = means.index_select(0, idx) - campos[cam]
            col = torch.clamp_min(
                sh_colors(coeffs.index_select(0, idx), dirs, sh_degree) + 0.5, 0.0)
        return torch.cat([col, depths[cam].index_select(0, idx)[:, None]], 1)

    return features


def _rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, *, width, height,
                     near_plane, far_plane, sh_degree, backgrounds, eps2d, absgrad,
                     max_pairs) -> RenderOutput:
    """The pure-torch path of :func:`rasterize` (arguments and result as there)."""
    n_cams = viewmats.shape[0]
    proj = project_gaussians(means, quats, scales, opacities, viewmats, Ks, width=width,
                             height=height, near_plane=near_plane, far_plane=far_plane,
                             eps2d=eps2d)
    means2d = proj.means2d
    absgrad_buf = None
    if absgrad and means2d.requires_grad:
        absgrad_buf = torch.zeros_like(means2d.detach())
        means2d.absgrad = absgrad_buf
    campos = torch.linalg.inv(viewmats)[:, :3, 3] if sh_degree is not None else None  # [C, 3]
    images, log_ts, n_pairs = [], [], 0
    for cam in range(n_cams):
        img, log_t, pairs = _render_camera(
            means2d[cam], proj.conics[cam], opacities, proj.depths[cam], proj.radii[cam],
            _camera_features(colors, means, proj.depths, campos, sh_degree, cam),
            width=width, height=height, max_pairs=max_pairs,
            absgrad_sink=None if absgrad_buf is None else absgrad_buf[cam])
        images.append(img)
        log_ts.append(log_t)
        n_pairs += pairs
    feats = torch.stack(images).reshape(n_cams, height, width, -1)  # [C, H, W, D+1]
    trans = torch.exp(torch.stack(log_ts)).reshape(n_cams, height, width, 1)
    alphas = 1.0 - trans
    out_colors = feats[..., :-1]
    if backgrounds is not None:
        out_colors = out_colors + trans * backgrounds[:, None, None, :]
    depths = feats[..., -1:] / alphas.clamp_min(1e-10)
    meta = {
        "means2d": means2d, "radii": proj.radii, "depths": proj.depths, "conics": proj.conics,
        "opacities": opacities[None, :].expand(n_cams, -1), "width": width, "height": height,
        "n_cameras": n_cams, "gaussian_ids": None, "camera_ids": None, "packed": False,
        "n_pairs": n_pairs,
    }
    return RenderOutput(colors=out_colors, alphas=alphas, depths=depths, meta=meta)


def splat_inputs(splats, *, device) -> dict:
    """A SplatSet as the splat keyword arguments of :func:`rasterize` on ``device``.

    Returns:
        {"means": [N, 3], "quats": [N, 4], "scales": [N, 3], "opacities": [N],
         "colors": [N, K, 3] SH coefficients (DC first), "sh_degree": int}; float32 tensors.
    """
    import numpy as np

    def t(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    coeffs = np.concatenate([splats.sh_dc[:, None, :], splats.sh_rest], axis=1)  # [N, K, 3]
    return {"means": t(splats.positions), "quats": t(splats.rotations),
            "scales": t(splats.scales()), "opacities": t(splats.opacities()),
            "colors": t(coeffs), "sh_degree": splats.sh_degree}


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                      near_plane, far_plane, sh_degree, backgrounds, eps2d, absgrad):
    from gsplat import rasterization

    render, alphas, meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
        packed=False, backgrounds=backgrounds, render_mode="RGB+ED", absgrad=absgrad)
    meta = dict(meta)
    meta["packed"] = False
    return RenderOutput(colors=render[..., :-1], alphas=alphas, depths=render[..., -1:],
                        meta=meta)
