"""The splat data model: one :class:`SplatSet` holds N 3D Gaussians as numpy arrays.

Conventions (the same as the INRIA 3DGS .ply, so files map 1:1):

==================  ============  =========================================================
field               shape/dtype   meaning
==================  ============  =========================================================
``positions``       [N, 3] f32    centres, in the set's own frame (see *frames* below)
``log_scales``      [N, 3] f32    log of the standard deviations along the local axes
``rotations``       [N, 4] f32    quaternions (w, x, y, z): local → set frame; the
                                  rotation of q/|q| (kept as the file stored them, as
                                  3DGS trainers do; transforms and writers normalise)
``opacity_logits``  [N] f32       opacity = sigmoid(logit)
``sh_dc``           [N, 3] f32    SH DC per RGB channel: colour = 0.5 + C0 · dc
``sh_rest``         [N, K, 3] f32 SH bands 1..degree, coefficient-major, RGB inner;
                                  K = 0, 3, 8, 15 for degree 0..3 (see :mod:`.sh`)
``extra``           {name: [N]}   other per-splat float properties read from a file
==================  ============  =========================================================

Covariance = R S² Rᵀ with R from the quaternion and S = diag(exp(log_scales)).

Frames: a set read from any file is in the usual 3DGS convention (the COLMAP/OpenCV world of
INRIA .ply files: +Y points *down*, +Z forward). Readers of formats that store another frame
(.spz stores RUB) convert on read. :mod:`.conventions.frames` holds the mapping into Blender's Z-up
world.

Everything here is vectorised; a SplatSet of a million splats is about 240 MB at SH degree 3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import GSError, Report, log_report
from .quaternions import matrix_to_quat, normalize_quat, quat_multiply
from .sh import coeffs_for_degree, degree_for_coeffs, rotate_sh_rest

__all__ = ["SplatSet", "concatenate"]

_FIELDS = ("positions", "log_scales", "rotations", "opacity_logits", "sh_dc", "sh_rest")


@dataclass(eq=False)
class SplatSet:
    positions: np.ndarray  # [N, 3]
    log_scales: np.ndarray  # [N, 3]
    rotations: np.ndarray  # [N, 4] (w, x, y, z)
    opacity_logits: np.ndarray  # [N]
    sh_dc: np.ndarray  # [N, 3]
    sh_rest: np.ndarray  # [N, K, 3]
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # name → [N]

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, count: int, sh_degree: int = 0) -> SplatSet:
        """Zero-filled set (identity rotations) of ``count`` splats."""
        rotations = np.zeros((count, 4), np.float32)
        rotations[:, 0] = 1.0
        return cls(
            positions=np.zeros((count, 3), np.float32),
            log_scales=np.zeros((count, 3), np.float32),
            rotations=rotations,
            opacity_logits=np.zeros(count, np.float32),
            sh_dc=np.zeros((count, 3), np.float32),
            sh_rest=np.zeros((count, coeffs_for_degree(sh_degree), 3), np.float32),
        )

    @classmethod
    def from_arrays(cls, *, positions, log_scales, rotations, opacity_logits, sh_dc,
                    sh_rest=None, extra=None, name: str = "splats") -> SplatSet:
        """Build from array-likes, casting to contiguous float32, then :meth:`validate`."""
        n = len(positions)
        rest = np.zeros((n, 0, 3), np.float32) if sh_rest is None else sh_rest

        def f32(a):
            return np.ascontiguousarray(a, dtype=np.float32)

        out = cls(
            positions=f32(positions), log_scales=f32(log_scales), rotations=f32(rotations),
            opacity_logits=f32(opacity_logits).reshape(-1), sh_dc=f32(sh_dc), sh_rest=f32(rest),
            extra={k: f32(v).reshape(-1) for k, v in (extra or {}).items()},
        )
        out.validate(name=name)
        return out

    # ------------------------------------------------------------------ properties
    @property
    def count(self) -> int:
        return int(self.positions.shape[0])

    def __len__(self) -> int:
        return self.count

    @property
    def sh_degree(self) -> int:
        degree = degree_for_coeffs(self.sh_rest.shape[1])
        if degree is None:
            raise GSError(f"sh_rest has {self.sh_rest.shape[1]} coefficients; expected 0/3/8/15")
        return degree

    def scales(self) -> np.ndarray:
        """[N, 3] standard deviations, exp(log_scales)."""
        return np.exp(self.log_scales)

    def opacities(self) -> np.ndarray:
        """[N] opacity in (0, 1)."""
        return 1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))

    def base_colors(self) -> np.ndarray:
        """[N, 3] view-independent colour 0.5 + C0 · dc (unclamped)."""
        from .sh import dc_to_rgb

        return dc_to_rgb(self.sh_dc)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """(min [3], max [3]) of the centres; zeros for an empty set."""
        if self.count == 0:
            return np.zeros(3), np.zeros(3)
        return self.positions.min(axis=0).astype(np.float64), self.positions.max(axis=0).astype(
            np.float64
        )

    # ------------------------------------------------------------------ checks
    def validate(self, *, name: str = "splats", require_finite: bool = False) -> None:
        """Raise GSError naming ``name`` if shapes, dtypes or (optionally) values are wrong."""
        n = self.count
        expected = {
            "positions": (n, 3), "log_scales": (n, 3), "rotations": (n, 4),
            "opacity_logits": (n,), "sh_dc": (n, 3),
        }
        if self.positions.ndim != 2 or self.positions.shape[1] != 3:
            raise GSError(f"{name}: positions must be [N, 3], got {self.positions.shape}")
        for key, shape in expected.items():
            arr = getattr(self, key)
            if arr.shape != shape:
                raise GSError(f"{name}: {key} must have shape {shape}, got {arr.shape}")
        if self.sh_rest.ndim != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3:
            raise GSError(f"{name}: sh_rest must be [N, K, 3], got {self.sh_rest.shape}")
        if degree_for_coeffs(self.sh_rest.shape[1]) is None:
            raise GSError(f"{name}: sh_rest has {self.sh_rest.shape[1]} coefficients per "
                          "channel; expected 0, 3, 8 or 15 (SH degree 0-3)")
        for key in _FIELDS:
            if getattr(self, key).dtype != np.float32:
                raise GSError(f"{name}: {key} must be float32, got {getattr(self, key).dtype}")
        for key, arr in self.extra.items():
            if arr.shape != (n,):
                raise GSError(f"{name}: extra property {key!r} must have shape ({n},)")
        if require_finite:
            bad = int((~self.finite_mask()).sum())
            if bad:
                raise GSError(f"{name}: {bad} of {n} splats have NaN or infinite values")

    def finite_mask(self) -> np.ndarray:
        """[N] bool: every field of the splat is finite (extras included) and its quaternion is
        not all zeros."""
        n = self.count
        ok = np.isfinite(self.positions).all(1)
        ok &= np.isfinite(self.log_scales).all(1)
        ok &= np.isfinite(self.rotations).all(1)
        ok &= (self.rotations != 0).any(1)  # no norm: huge float32 values would overflow it
        ok &= np.isfinite(self.opacity_logits)
        ok &= np.isfinite(self.sh_dc).all(1)
        if self.sh_rest.shape[1]:
            ok &= np.isfinite(self.sh_rest.reshape(n, self.sh_rest.shape[1] * 3)).all(1)
        for arr in self.extra.values():
            ok &= np.isfinite(arr)
        return ok

    def drop_nonfinite(self, *, source: str, policy: str = "drop",
                       report: Report = log_report) -> SplatSet:
        """Handle rows with NaN/Inf (or a zero quaternion) explicitly.

        ``policy="drop"`` removes them and reports how many; ``"error"`` refuses the data. A set
        in which *every* splat is bad is always refused (never an empty result in silence).
        """
        mask = self.finite_mask()
        bad = int(self.count - mask.sum())
        if bad == 0:
            return self
        if policy not in ("drop", "error"):
            raise GSError(f"unknown non-finite policy {policy!r}; use 'drop' or 'error'")
        if policy == "error" or bad == self.count:
            raise GSError(f"{source}: {bad} of {self.count} splats have NaN or infinite values"
                          + (" (all of them)" if bad == self.count else ""))
        report({"WARNING"}, f"{source}: dropped {bad:,} of {self.count:,} splats with NaN or "
                            "infinite values")
        return self.subset(mask)

    # ------------------------------------------------------------------ edits
    def subset(self, index: np.ndarray) -> SplatSet:
        """New set with the splats selected by a bool mask or integer index array."""
        return SplatSet(
            positions=self.positions[index], log_scales=self.log_scales[index],
            rotations=self.rotations[index], opacity_logits=self.opacity_logits[index],
            sh_dc=self.sh_dc[index], sh_rest=self.sh_rest[index],
            extra={k: v[index] for k, v in self.extra.items()},
        )

    def prune(self, *, min_opacity: float = 0.0, max_scale: float | None = None) -> SplatSet:
        """Drop splats with opacity < ``min_opacity`` or any scale > ``max_scale``."""
        keep = self.opacities() >= min_opacity
        if max_scale is not None:
            keep &= (self.log_scales <= np.log(max_scale)).all(axis=1)
        return self.subset(keep)

    def with_sh_degree(self, degree: int) -> SplatSet:
        """Truncate (or zero-pad) the SH bands to ``degree``."""
        if degree not in (0, 1, 2, 3):
            raise GSError(f"SH degree must be 0-3, got {degree}")
        k = coeffs_for_degree(degree)
        have = self.sh_rest.shape[1]
        if k <= have:
            rest = np.ascontiguousarray(self.sh_rest[:, :k, :])
        else:
            rest = np.zeros((self.count, k, 3), np.float32)
            rest[:, :have, :] = self.sh_rest
        return SplatSet(self.positions, self.log_scales, self.rotations, self.opacity_logits,
                        self.sh_dc, rest, dict(self.extra))

    def copy(self) -> SplatSet:
        return SplatSet(*(getattr(self, k).copy() for k in _FIELDS),
                        extra={k: v.copy() for k, v in self.extra.items()})

    def normalized(self) -> SplatSet:
        """Same set with unit quaternions (zero quaternions become identity)."""
        out = self.copy()
        out.rotations = normalize_quat(self.rotations).astype(np.float32)
        return out

    def transformed(self, matrix: np.ndarray) -> SplatSet:
        """Apply a similarity transform (rotation · uniform scale + translation).

        Args:
            matrix: [4, 4]; its upper 3×3 must be s·R with s > 0 and R a proper rotation.
        Moves positions, rotates quaternions, adds log(s) to the log-scales and rotates SH
        bands 1–3. Raises GSError for shear, non-uniform scale, reflection or a singular matrix.
        """
        rot, scale, trans = split_similarity(matrix)
        pos = self.positions.astype(np.float64) @ (scale * rot).T + trans
        q_r = matrix_to_quat(rot)
        quats = quat_multiply(q_r, self.rotations.astype(np.float64))
        return SplatSet(
            positions=pos.astype(np.float32),
            log_scales=(self.log_scales + np.float32(np.log(scale))).astype(np.float32),
            rotations=quats.astype(np.float32),
            opacity_logits=self.opacity_logits.copy(),
            sh_dc=self.sh_dc.copy(),
            sh_rest=rotate_sh_rest(self.sh_rest, rot),
            extra={k: v.copy() for k, v in self.extra.items()},
        )


def split_similarity(matrix: np.ndarray, *, tol: float = 1e-4) -> tuple[np.ndarray, float,
                                                                          np.ndarray]:
    """[4, 4] similarity → (R [3, 3], s, t [3]); GSError when it is not one."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise GSError(f"transform must be a finite 4x4 matrix, got shape {m.shape}")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-9):
        raise GSError("transform has a projective last row; expected an affine matrix")
    lin = m[:3, :3]
    det = np.linalg.det(lin)
    if det <= 0:
        raise GSError("transform mirrors or collapses space (determinant ≤ 0); splat "
                      "rotations cannot represent a reflection")
    scale = float(np.cbrt(det))
    rot = lin / scale
    if not np.allclose(rot @ rot.T, np.eye(3), atol=tol):
        raise GSError("transform has non-uniform scale or shear; only rotation, uniform scale "
                      "and translation can be applied to splats")
    return rot, scale, m[:3, 3].copy()


def concatenate(sets: Sequence[SplatSet] | Iterable[SplatSet]) -> SplatSet:
    """Join sets; SH degree becomes the highest among them (others zero-padded).

    Extra properties are kept only when every set has them.
    """
    sets = list(sets)
    if not sets:
        raise GSError("nothing to concatenate")
    degree = max(s.sh_degree for s in sets)
    sets = [s.with_sh_degree(degree) for s in sets]
    common = set(sets[0].extra)
    for s in sets[1:]:
        common &= set(s.extra)
    return SplatSet(
        *(np.concatenate([getattr(s, k) for s in sets], axis=0) for k in _FIELDS),
        extra={k: np.concatenate([s.extra[k] for s in sets]) for k in sorted(common)},
    )
