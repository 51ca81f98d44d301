"""How far recovered cameras are from known ones: similarity alignment (Umeyama) and pose errors.

SfM recovers cameras only up to a similarity (rotation, translation, scale) of the world, so
recovered camera centres are first aligned to the known ones by the least-squares similarity,
then compared: centre distance and the angle between the camera rotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GSError

__all__ = ["similarity_alignment", "PoseErrors", "pose_errors"]


def similarity_alignment(source, target) -> np.ndarray:
    """[4, 4] similarity M (s·R, t) minimising Σ‖M·source_i − target_i‖² (Umeyama 1991).

    ``source``, ``target``: [N, 3] corresponding points, N ≥ 3 and not all on one line.
    """
    src = np.asarray(source, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(target, dtype=np.float64).reshape(-1, 3)
    if len(src) != len(dst) or len(src) < 3:
        raise GSError(f"similarity alignment needs ≥ 3 point pairs, got {len(src)}/{len(dst)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    covariance = b.T @ a / len(src)  # [3, 3]
    u, sigma, vt = np.linalg.svd(covariance)
    if sigma[1] < 1e-12 * max(sigma[0], 1e-300):
        raise GSError("similarity alignment: the points lie on a line (rotation undetermined)")
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ flip @ vt
    variance = (a * a).sum() / len(src)
    scale = float(np.trace(np.diag(sigma) @ flip) / variance)
    out = np.eye(4)
    out[:3, :3] = scale * rot
    out[:3, 3] = mu_d - scale * rot @ mu_s
    return out


@dataclass(frozen=True)
class PoseErrors:
    """Errors of recovered cameras after aligning them to the known ones."""

    alignment: np.ndarray  # [4, 4] similarity recovered world → known world
    centre_errors: np.ndarray  # [N] distances in the known world's units
    rotation_errors_deg: np.ndarray  # [N] angle between known and aligned camera rotations
    scene_radius: float  # mean distance of the known centres from their mean

    @property
    def centre_error_percent(self) -> float:
        """Median centre error as a percentage of the scene radius."""
        return float(100.0 * np.median(self.centre_errors) / self.scene_radius)

    @property
    def rotation_error_deg(self) -> float:
        """Median rotation error in degrees."""
        return float(np.median(self.rotation_errors_deg))


def pose_errors(recovered_c2w, known_c2w) -> PoseErrors:
    """Compare [N, 4, 4] camera-to-world matrices of the same cameras (same camera axes).

    The similarity is fitted to the camera centres; rotation errors compare each known
    rotation with the recovered one turned by the similarity's rotation.
    """
    rec = np.asarray(recovered_c2w, dtype=np.float64)
    known = np.asarray(known_c2w, dtype=np.float64)
    if rec.shape != known.shape or rec.ndim != 3 or rec.shape[1:] != (4, 4):
        raise GSError(f"pose errors need two [N, 4, 4] stacks, got {rec.shape} and {known.shape}")
    align = similarity_alignment(rec[:, :3, 3], known[:, :3, 3])
    scale = np.cbrt(np.linalg.det(align[:3, :3]))
    turn = align[:3, :3] / scale
    centres = rec[:, :3, 3] @ align[:3, :3].T + align[:3, 3]  # [N, 3]
    centre_errors = np.linalg.norm(centres - known[:, :3, 3], axis=1)
    aligned = np.einsum("jk,nkl->njl", turn, rec[:, :3, :3])  # [N, 3, 3]
    # ‖R₁ − R₂‖_F = 2√2·sin(θ/2): exact near 0, where arccos of the trace loses digits.
    chord = np.linalg.norm(aligned - known[:, :3, :3], axis=(1, 2)) / (2.0 * np.sqrt(2.0))
    radius = float(np.linalg.norm(known[:, :3, 3] - known[:, :3, 3].mean(0), axis=1).mean())
    return PoseErrors(alignment=align, centre_errors=centre_errors,
                      rotation_errors_deg=np.degrees(2.0 * np.arcsin(np.clip(chord, 0.0, 1.0))),
                      scene_radius=max(radius, 1e-12))
