"""Real spherical harmonics in the 3DGS convention: evaluation and rotation.

Basis and ordering are those of the INRIA 3DGS CUDA rasterizer (and gsplat): for a unit
direction d = (x, y, z) from the camera towards the splat,

    colour(d) = 0.5 + C0 · dc + Σ_k Y_k(d) · rest_k          (then clamped at 0 by renderers)

with band 1 = (−C1·y, C1·z, −C1·x), band 2 and 3 as in :func:`sh_basis`. ``rest`` holds the
coefficients of bands 1..degree in that order, K = (degree+1)² − 1 of them, each an RGB triple.

Rotation: if the scene is rotated by R, the colour seen along direction d is the old colour
seen along Rᵀd. Each band l is an invariant subspace, so there is a (2l+1)×(2l+1) matrix D_l(R)
with rest'_l = D_l · rest_l. We obtain D_l exactly (to float64 rounding) by evaluating the band
on a fixed set of well-spread directions: Y_l(Rᵀ d_i) = Σ_j Y_l,j(d_i) D_l[j, ·], solved by the
precomputed pseudo-inverse. This works for any rotation (and for batches of them) without
Wigner-D recursions, and the test suite checks it against direct evaluation.

The same idea with exactly 2l+1 directions per band (:data:`BAND_SAMPLE_DIRECTIONS`, chosen so
that the square basis matrix A_l[i, k] = Y_l,k(d_i) is well conditioned) gives a form that
needs no matrix algebra per splat, which is how Geometry Nodes rotate the bands of posed
splats (``scene/sh_rotation_nodes.py``): with f_i the band's colour seen along Rᵀ d_i,

    f_i = Σ_k Y_l,k(Rᵀ d_i) · rest_l[k],        rest'_l[j] = Σ_i A_l⁻¹[j, i] · f_i

(:func:`band_sample_inverse` gives the constant A_l⁻¹).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SH_C0",
    "SH_C1",
    "SH_C2",
    "SH_C3",
    "coeffs_for_degree",
    "degree_for_coeffs",
    "sh_basis",
    "eval_sh_color",
    "sh_rotation_matrices",
    "rotate_sh_rest",
    "BAND_SAMPLE_DIRECTIONS",
    "band_sample_inverse",
    "rgb_to_dc",
    "dc_to_rgb",
]

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)

# Number of rest coefficients (bands 1..d) for each SH degree d.
_REST_COUNTS = {0: 0, 1: 3, 2: 8, 3: 15}


def coeffs_for_degree(degree: int) -> int:
    """Rest coefficients (bands 1..degree) per colour channel: 0, 3, 8, 15."""
    return _REST_COUNTS[degree]


def degree_for_coeffs(count: int) -> int | None:
    """Inverse of :func:`coeffs_for_degree`; None when ``count`` is not 0, 3, 8 or 15."""
    for degree, n in _REST_COUNTS.items():
        if n == count:
            return degree
    return None


def rgb_to_dc(rgb: np.ndarray) -> np.ndarray:
    """Colour in [0, 1] → DC coefficient (f_dc)."""
    return (np.asarray(rgb) - 0.5) / SH_C0


def dc_to_rgb(dc: np.ndarray) -> np.ndarray:
    """DC coefficient (f_dc) → colour (unclamped)."""
    return np.asarray(dc) * SH_C0 + 0.5


def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """Evaluate the basis at unit directions.

    Args:
        dirs: [..., 3] unit vectors.
        degree: 0..3.
    Returns:
        [..., (degree+1)²]: the DC term C0 first, then bands 1..degree in 3DGS order.
    """
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    out = [np.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return np.stack(out, axis=-1)


def eval_sh_color(dc: np.ndarray, rest: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Unclamped colour of splats seen along ``dirs``.

    Args:
        dc: [N, 3]; rest: [N, K, 3]; dirs: [N, 3] unit (camera → splat).
    Returns:
        [N, 3] = 0.5 + Σ basis · coefficients.
    """
    degree = degree_for_coeffs(rest.shape[1])
    basis = sh_basis(dirs, degree)  # [N, 1+K]
    coeffs = np.concatenate([dc[:, None, :], rest], axis=1)  # [N, 1+K, 3]
    return 0.5 + np.einsum("nk,nkc->nc", basis, coeffs)


def _fibonacci_dirs(count: int) -> np.ndarray:
    i = np.arange(count, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / count
    r = np.sqrt(1.0 - z * z)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


_SAMPLE_DIRS = _fibonacci_dirs(64)  # [S, 3]
_BAND_SLICES = {1: slice(1, 4), 2: slice(4, 9), 3: slice(9, 16)}
_PINV = {
    band: np.linalg.pinv(sh_basis(_SAMPLE_DIRS, 3)[:, sl]) for band, sl in _BAND_SLICES.items()
}  # band → [2l+1, S]


def sh_rotation_matrices(rotation: np.ndarray, degree: int) -> list[np.ndarray]:
    """Per-band matrices D_l with rest'_l = D_l · rest_l after rotating the scene by R.

    Args:
        rotation: [3, 3] or [N, 3, 3] proper rotation matrices.
        degree: highest band wanted (0..3).
    Returns:
        list over bands 1..degree of [2l+1, 2l+1] (or [N, 2l+1, 2l+1]) float64 arrays.
    """
    rot = np.asarray(rotation, dtype=np.float64)
    # Rows of rot_dirs are Rᵀ d_i:  (Rᵀ d)ᵀ = dᵀ R.
    rot_dirs = _SAMPLE_DIRS @ rot  # [..., S, 3]
    basis = sh_basis(rot_dirs, degree)  # [..., S, (degree+1)²]
    return [_PINV[band] @ basis[..., _BAND_SLICES[band]] for band in range(1, degree + 1)]


def rotate_sh_rest(rest: np.ndarray, rotation: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """Rotate SH rest coefficients.

    Args:
        rest: [N, K, 3] coefficients of bands 1..degree.
        rotation: [3, 3] (one rotation for all splats) or [N, 3, 3] (one per splat).
        chunk: splats per batch for per-splat rotations (bounds temporary memory).
    Returns:
        [N, K, 3] array of rest's dtype.
    """
    degree = degree_for_coeffs(rest.shape[1])
    if not degree:
        return rest.copy()
    rotation = np.asarray(rotation, dtype=np.float64)
    out = np.empty_like(rest)
    if rotation.ndim == 2:
        n = rest.shape[0]
        for band, mat in enumerate(sh_rotation_matrices(rotation, degree), start=1):
            sl = slice(_BAND_SLICES[band].start - 1, _BAND_SLICES[band].stop - 1)
            width = sl.stop - sl.start
            # One GEMM over all splats: [2l+1, 2l+1] @ [2l+1, N·3].
            flat = np.ascontiguousarray(rest[:, sl, :].transpose(1, 0, 2)).reshape(width, -1)
            rotated = (mat.astype(rest.dtype) @ flat).reshape(width, n, 3)
            out[:, sl, :] = rotated.transpose(1, 0, 2)
        return out
    for start in range(0, rest.shape[0], chunk):
        stop = min(start + chunk, rest.shape[0])
        mats = sh_rotation_matrices(rotation[start:stop], degree)
        for band, mat in enumerate(mats, start=1):
            sl = slice(_BAND_SLICES[band].start - 1, _BAND_SLICES[band].stop - 1)
            out[start:stop, sl, :] = np.einsum("njk,nkc->njc", mat, rest[start:stop, sl, :])
    return out


# Directions for the sampled rotation of each band: the axes for band 1 (A_1 is a signed
# permutation times C1: condition number 1); for bands 2 and 3 sets found by a random search
# and local refinement (seed 0) minimising the condition number of A_l (≈ 1.56 and ≈ 1.94;
# the best of 20,000 random sets was 1.73 and 2.45), stored to 4 decimals and normalised.
_BAND_DIRECTIONS_4DP = {
    1: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    2: ((-0.4733, -0.4706, -0.7447), (-0.1337, 0.2840, -0.9495), (0.3538, -0.6870, -0.6347),
        (-0.0609, 0.9931, -0.1000), (0.7213, -0.5624, 0.4044)),
    3: ((-0.0321, 0.7771, -0.6285), (0.0856, 0.5087, 0.8567), (-0.6576, -0.7208, 0.2190),
        (0.7314, -0.6110, 0.3030), (0.3753, -0.2674, 0.8875), (0.9627, -0.1114, -0.2467),
        (-0.6487, 0.5453, 0.5309)),
}
BAND_SAMPLE_DIRECTIONS = {
    band: np.asarray(d) / np.linalg.norm(d, axis=1, keepdims=True)
    for band, d in _BAND_DIRECTIONS_4DP.items()
}  # band → [2l+1, 3] unit vectors


def band_sample_inverse(band: int) -> np.ndarray:
    """[2l+1, 2l+1] float64 A_l⁻¹ for band ``band`` (1..3): A_l[i, k] = Y_l,k(d_i) at
    :data:`BAND_SAMPLE_DIRECTIONS` (see the module docstring)."""
    basis = sh_basis(BAND_SAMPLE_DIRECTIONS[band], 3)[:, _BAND_SLICES[band]]  # [2l+1, 2l+1]
    return np.linalg.inv(basis)
