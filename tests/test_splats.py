"""Core data model: validation, transforms (SH rotation checked by evaluation), edits."""

import numpy as np
import pytest

from blender_gs_addon import GSError, SplatSet, concatenate
from blender_gs_addon.quaternions import (
    matrix_to_quat,
    normalize_quat,
    quat_multiply,
    quat_to_matrix,
)
from blender_gs_addon.samples import sample_splats
from blender_gs_addon.sh import (
    coeffs_for_degree,
    eval_sh_color,
    rotate_sh_rest,
    sh_basis,
    sh_rotation_matrices,
)


def _random_rotation(rng):
    return quat_to_matrix(normalize_quat(rng.normal(size=4)))


def _unit(rng, n):
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_sh_basis_is_orthonormal_up_to_c0_normalisation(rng):
    # Real SH are orthonormal on the sphere: ∫ Y_i Y_j dω = δ_ij. Monte Carlo over 2e5 dirs.
    dirs = _unit(rng, 200_000)
    basis = sh_basis(dirs, 3)
    gram = basis.T @ basis * (4 * np.pi / len(dirs))
    assert np.allclose(gram, np.eye(16), atol=0.02)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_rotation_matches_evaluation_at_rotated_directions(rng, degree):
    n = 200
    dc = rng.normal(size=(n, 3))
    rest = rng.normal(size=(n, coeffs_for_degree(degree), 3))
    rot = _random_rotation(rng)
    dirs = _unit(rng, n)
    # After rotating the scene by R, looking along R·d sees what d saw before.
    before = eval_sh_color(dc, rest, dirs)
    after = eval_sh_color(dc, rotate_sh_rest(rest, rot), dirs @ rot.T)
    assert np.abs(after - before).max() < 1e-10


def test_sh_rotation_per_splat_batch_equals_single(rng):
    rest = rng.normal(size=(50, 15, 3))
    rots = np.stack([_random_rotation(rng) for _ in range(50)])
    batched = rotate_sh_rest(rest, rots, chunk=7)
    single = np.stack([rotate_sh_rest(rest[i : i + 1], rots[i])[0] for i in range(50)])
    assert np.allclose(batched, single, atol=1e-12)


def test_sh_rotation_matrices_are_orthogonal_and_compose(rng):
    a, b = _random_rotation(rng), _random_rotation(rng)
    da, db, dab = (sh_rotation_matrices(m, 3) for m in (a, b, a @ b))
    for band in range(3):
        assert np.allclose(da[band] @ da[band].T, np.eye(2 * band + 3), atol=1e-12)
        assert np.allclose(da[band] @ db[band], dab[band], atol=1e-12)


def test_quaternion_matrix_round_trip_and_product(rng):
    q = normalize_quat(rng.normal(size=(500, 4)))
    q = np.where(q[:, :1] < 0, -q, q)
    assert np.allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-12)
    p = normalize_quat(rng.normal(size=(500, 4)))
    prod = quat_to_matrix(quat_multiply(p, q))
    assert np.allclose(prod, quat_to_matrix(p) @ quat_to_matrix(q), atol=1e-12)


def _covariances(s: SplatSet) -> np.ndarray:
    r = quat_to_matrix(s.rotations.astype(np.float64))
    sc = np.exp(s.log_scales.astype(np.float64))
    return r @ (sc[:, :, None] ** 2 * np.swapaxes(r, 1, 2))


def test_similarity_transform_moves_everything_consistently(rng):
    s = sample_splats("random", count=300, sh_degree=3, seed=3)
    rot = _random_rotation(rng)
    scale, trans = 2.5, np.array([0.3, -1.0, 4.0])
    m = np.eye(4)
    m[:3, :3] = scale * rot
    m[:3, 3] = trans
    t = s.transformed(m)
    assert np.allclose(t.positions, s.positions @ (scale * rot).T + trans, atol=1e-5)
    # Covariance transforms as (sR) Σ (sR)ᵀ.
    expect = (scale * rot) @ _covariances(s) @ (scale * rot).T
    assert np.allclose(_covariances(t), expect, rtol=1e-4, atol=1e-9)
    # View-dependent colour: seen from R·d after == seen from d before.
    dirs = _unit(rng, s.count)
    before = eval_sh_color(s.sh_dc, s.sh_rest, dirs)
    after = eval_sh_color(t.sh_dc, t.sh_rest, dirs @ rot.T)
    assert np.abs(after - before).max() < 1e-5
    assert np.array_equal(t.opacity_logits, s.opacity_logits)


@pytest.mark.parametrize(
    "matrix, words",
    [
        (np.diag([1.0, 2.0, 1.0, 1.0]), "non-uniform"),
        (np.diag([1.0, 1.0, -1.0, 1.0]), "mirror"),
        (np.diag([0.0, 0.0, 0.0, 1.0]), "collapse"),
        (np.full((4, 4), np.nan), "finite"),
        (np.eye(3), "4x4"),
    ],
)
def test_bad_transforms_are_refused(matrix, words):
    s = sample_splats("random", count=10, sh_degree=0)
    with pytest.raises(GSError, match=words):
        s.transformed(matrix)


def test_validate_names_the_problem():
    s = SplatSet.empty(5, sh_degree=1)
    s.rotations = np.zeros((4, 4), np.float32)
    with pytest.raises(GSError, match="rotations must have shape"):
        s.validate(name="thing")
    s = SplatSet.empty(5, sh_degree=1)
    s.sh_rest = np.zeros((5, 4, 3), np.float32)
    with pytest.raises(GSError, match="4 coefficients"):
        s.validate()
    s = SplatSet.empty(5)
    s.positions = s.positions.astype(np.float64)
    with pytest.raises(GSError, match="float32"):
        s.validate()


def test_nonfinite_rows_dropped_and_reported_or_refused():
    s = sample_splats("random", count=20, sh_degree=2)
    s.positions[3, 1] = np.nan
    s.sh_rest[7, 4, 2] = np.inf
    s.rotations[9] = 0.0
    messages = []
    kept = s.drop_nonfinite(source="f.ply", report=lambda lv, m: messages.append((lv, m)))
    assert kept.count == 17
    assert messages == [({"WARNING"}, "f.ply: dropped 3 of 20 splats with NaN or infinite values")]
    with pytest.raises(GSError, match="3 of 20"):
        s.drop_nonfinite(source="f.ply", policy="error")
    s.opacity_logits[:] = np.nan
    with pytest.raises(GSError, match="all of them"):
        s.drop_nonfinite(source="f.ply")


def test_concatenate_pads_sh_and_keeps_common_extras():
    a = sample_splats("random", count=10, sh_degree=1)
    b = sample_splats("random", count=5, sh_degree=3, seed=9)
    a.extra = {"t": np.arange(10, dtype=np.float32), "u": np.ones(10, np.float32)}
    b.extra = {"t": np.zeros(5, np.float32)}
    c = concatenate([a, b])
    assert c.count == 15 and c.sh_degree == 3
    assert np.array_equal(c.sh_rest[:10, :3], a.sh_rest) and not c.sh_rest[:10, 3:].any()
    assert list(c.extra) == ["t"]
    c.validate()


def test_prune_and_truncate():
    s = sample_splats("random", count=1000, sh_degree=3)
    pruned = s.prune(min_opacity=0.5, max_scale=0.03)
    assert (pruned.opacities() >= 0.5).all() and (pruned.scales() <= 0.03 + 1e-7).all()
    assert pruned.count == int(((s.opacities() >= 0.5) & (s.scales() <= 0.03).all(1)).sum())
    t = s.with_sh_degree(1)
    assert t.sh_degree == 1 and np.array_equal(t.sh_rest, s.sh_rest[:, :3])
    with pytest.raises(GSError):
        s.with_sh_degree(4)


def test_sample_sets_are_reproducible_and_valid():
    a = sample_splats("torus", count=500, seed=1)
    b = sample_splats("torus", count=500, seed=1)
    a.validate(require_finite=True)
    assert np.array_equal(a.positions, b.positions)
    assert np.allclose(np.linalg.norm(a.rotations, axis=1), 1, atol=1e-6)
    with pytest.raises(GSError, match="unknown sample"):
        sample_splats("cube")


def test_empty_sets_are_valid_and_finite():
    s = SplatSet.empty(0, sh_degree=3)
    s.validate()
    assert s.finite_mask().shape == (0,)
    assert s.drop_nonfinite(source="empty").count == 0
    assert s.transformed(np.eye(4)).count == 0
