"""Built-in sample splat sets, generated procedurally (no files needed).

Used by the demo, the benchmarks and the tests: a structured, colourful set with all fields
populated (anisotropic scales, random rotations, view-dependent SH), in the 3DGS file frame
(+Y down), so it imports upright in Blender like any real capture.
"""

from __future__ import annotations

import numpy as np

from .errors import GSError
from .quaternions import normalize_quat
from .sh import coeffs_for_degree, rgb_to_dc
from .splats import SplatSet

__all__ = ["SAMPLES", "sample_splats"]

SAMPLES = {
    "torus": "a rainbow torus knot of anisotropic splats",
    "random": "uniformly random splats in a cube (benchmarks)",
}


def sample_splats(kind: str = "torus", *, count: int = 20000, sh_degree: int = 3,
                  seed: int = 0) -> SplatSet:
    """A reproducible sample set of ``count`` splats with SH up to ``sh_degree``."""
    if kind not in SAMPLES:
        raise GSError(f"unknown sample {kind!r}; choose one of {', '.join(SAMPLES)}")
    if count < 1:
        raise GSError(f"sample count must be positive, got {count}")
    rng = np.random.default_rng(seed)
    if kind == "torus":
        t = rng.uniform(0.0, 2.0 * np.pi, count)  # [N] along a (2, 3) torus knot
        phi = rng.uniform(0.0, 2.0 * np.pi, count)  # [N] around the tube
        r_major, r_tube = 0.35 + 0.15 * np.cos(3 * t), 0.08
        centre = np.stack([r_major * np.cos(2 * t), r_major * np.sin(2 * t),
                           0.15 * np.sin(3 * t)], axis=1)  # [N, 3]
        offset = r_tube * np.stack([np.cos(phi) * np.cos(2 * t), np.cos(phi) * np.sin(2 * t),
                                    np.sin(phi)], axis=1)
        pos_zup = centre + offset
        # The knot is modelled Z-up; store it in the 3DGS file frame (Y down): y_f = −z, z_f = y.
        positions = np.stack([pos_zup[:, 0], -pos_zup[:, 2], pos_zup[:, 1]], axis=1)
        hue = t / (2.0 * np.pi)
        rgb = 0.5 + 0.45 * np.stack([np.cos(2 * np.pi * (hue + k / 3.0)) for k in range(3)], 1)
        log_scales = np.log(rng.uniform(0.004, 0.02, (count, 3)))
        opacity = rng.uniform(0.6, 0.98, count)
    else:
        positions = rng.uniform(-1.0, 1.0, (count, 3))
        rgb = rng.uniform(0.0, 1.0, (count, 3))
        log_scales = np.log(rng.uniform(0.005, 0.05, (count, 3)))
        opacity = rng.uniform(0.05, 0.99, count)
    rotations = normalize_quat(rng.normal(size=(count, 4)))
    rest = rng.normal(0.0, 0.08, (count, coeffs_for_degree(sh_degree), 3))
    return SplatSet.from_arrays(
        positions=positions, log_scales=log_scales, rotations=rotations,
        opacity_logits=np.log(opacity / (1.0 - opacity)), sh_dc=rgb_to_dc(rgb), sh_rest=rest,
        name=f"sample {kind}",
    )
