"""Core skinning: automatic weights of faceless splats, quantisation, exact LBS reference."""

import numpy as np
import pytest

from blender_gs_addon.errors import GSError
from blender_gs_addon.quaternions import quat_to_matrix
from blender_gs_addon.rigging.skinning import (
    blend_skinning,
    bone_weights,
    frame_groups,
    nearest_points,
    polar_rotation,
    quantize_weights,
    segment_distances,
    solid_grid,
)


def cylinder_shell(rng, count, *, radius, z0, z1, x=0.0):
    """Points on the surface of a vertical cylinder (a reconstructed limb is a shell)."""
    z = rng.uniform(z0, z1, count)
    phi = rng.uniform(0, 2 * np.pi, count)
    r = radius * rng.uniform(0.9, 1.0, count)
    return np.stack([x + r * np.cos(phi), r * np.sin(phi), z], 1)


def test_segment_distances_analytic():
    pts = np.array([[0.0, 1.0, 0.5], [0.0, 0.0, 2.0], [3.0, 4.0, -1.0]])
    d, t = segment_distances(pts, np.array([[0.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(d[:, 0], [1.0, 1.0, np.sqrt(26.0)])
    np.testing.assert_allclose(t[:, 0], [0.5, 1.0, 0.0])


def test_solid_grid_fills_the_inside_of_a_shell(rng):
    pts = cylinder_shell(rng, 20000, radius=0.2, z0=0, z1=1)
    grid = solid_grid(pts, resolution=32)
    inside = grid.lookup(grid.index(np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.1]])))
    outside = grid.lookup(grid.index(np.array([[0.5, 0.5, 0.5]])))
    assert inside.all() and not outside.any()


def test_weights_limb_sum_to_one_and_follow_the_bones(rng):
    pts = cylinder_shell(rng, 30000, radius=0.1, z0=0, z1=2)
    heads = np.array([[0, 0, 0], [0, 0, 1.0]])
    tails = np.array([[0, 0, 1.0], [0, 0, 2.0]])
    sw = bone_weights(pts, heads, tails)
    assert sw.bones.shape == (30000, 4)
    np.testing.assert_allclose(sw.weights.sum(1), 1.0, atol=1e-5)
    assert (sw.weights.max(1) > 0).all()
    w_lower = np.where(sw.bones == 0, sw.weights, 0).sum(1)
    assert (w_lower[pts[:, 2] < 0.6] > 0.95).all()
    assert (w_lower[pts[:, 2] > 1.4] < 0.05).all()
    near_joint = np.abs(pts[:, 2] - 1.0) < 0.02
    assert np.all(np.abs(w_lower[near_joint] - 0.5) < 0.2)
    # weights fall monotonically (on average) along the limb
    bins = np.digitize(pts[:, 2], np.linspace(0, 2, 11))
    means = [w_lower[bins == i].mean() for i in range(1, 11)]
    assert np.all(np.diff(means) <= 1e-6)


def test_two_legs_do_not_pull_each_other(rng):
    # A thick left leg beside a thin right leg, 0.06 apart, with its bones off-centre: the
    # inner side of the left leg is nearer to the RIGHT leg's bones, so only the visibility
    # test keeps them apart.
    left = cylinder_shell(rng, 20000, radius=0.15, z0=0, z1=1, x=-0.16)
    right = cylinder_shell(rng, 20000, radius=0.05, z0=0, z1=1, x=0.1)
    pts = np.vstack([left, right])
    heads = np.array([[-0.2, 0, 1.0], [-0.2, 0, 0.5], [0.1, 0, 1.0], [0.1, 0, 0.5]])
    tails = np.array([[-0.2, 0, 0.5], [-0.2, 0, 0.0], [0.1, 0, 0.5], [0.1, 0, 0.0]])
    sw = bone_weights(pts, heads, tails)
    w_right_on_left = np.where(sw.bones[:20000] >= 2, sw.weights[:20000], 0).sum(1)
    w_left_on_right = np.where(sw.bones[20000:] < 2, sw.weights[20000:], 0).sum(1)
    assert w_right_on_left.max() == 0.0
    assert w_left_on_right.max() == 0.0
    # the plain distance rule would have let the right bones pull the left leg's inner side
    plain = bone_weights(pts, heads, tails, visibility=False)
    assert np.where(plain.bones[:20000] >= 2, plain.weights[:20000], 0).sum(1).max() > 0.3


def test_threaded_chunks_give_the_serial_result(rng, monkeypatch):
    # The per-splat pass runs its chunks on a thread pool; small chunks so there are many, and
    # two limbs so chunks differ in their active bones.
    pts = np.vstack([cylinder_shell(rng, 6000, radius=0.1, z0=0, z1=1, x=-0.2),
                     cylinder_shell(rng, 6000, radius=0.1, z0=0, z1=1, x=0.2)])
    heads = np.array([[-0.2, 0, 1.0], [-0.2, 0, 0.5], [0.2, 0, 1.0], [0.2, 0, 0.5]])
    tails = np.array([[-0.2, 0, 0.5], [-0.2, 0, 0.0], [0.2, 0, 0.5], [0.2, 0, 0.0]])
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    threaded = bone_weights(pts, heads, tails, chunk=500)
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    serial = bone_weights(pts, heads, tails, chunk=500)
    np.testing.assert_array_equal(threaded.bones, serial.bones)
    np.testing.assert_array_equal(threaded.weights, serial.weights)
    assert (serial.weights.sum(1) > 0.999).all()


def test_bad_inputs_are_refused(rng):
    pts = cylinder_shell(rng, 1000, radius=0.1, z0=0, z1=1)
    with pytest.raises(GSError, match="no deform bones"):
        bone_weights(pts, np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(GSError, match="farther from every bone"):
        bone_weights(pts + 100.0, np.array([[0, 0, 0.0]]), np.array([[0, 0, 1.0]]))
    messages = []
    stray = np.vstack([pts, [[5.0, 5.0, 5.0]] * 10])
    sw = bone_weights(stray, np.array([[0, 0, 0.0]]), np.array([[0, 0, 1.0]]),
                      report=lambda levels, msg: messages.append((levels, msg)))
    assert any("far outside" in m for _, m in messages)
    np.testing.assert_allclose(sw.weights.sum(1), 1.0, atol=1e-6)


def test_quantize_weights_sum_exactly(rng):
    w = rng.dirichlet(np.ones(4), 5000)
    w[:100, 2:] = 0
    w /= w.sum(1, keepdims=True)
    q = quantize_weights(w)
    assert (q.sum(1) == 255).all()
    assert np.abs(q / 255 - w).max() <= 1 / 255 + 1e-9
    group, ub, ul = frame_groups(np.tile([3, 1, 2, 0], (5000, 1)), q)
    assert (ul.sum(1) == 255).all()
    assert len(ub) == len(np.unique(group))
    np.testing.assert_array_equal(ul[group].sum(1), q.sum(1))


def test_frame_groups_canonical_order():
    bones = np.array([[1, 2, 0, 0], [2, 1, 5, 0], [2, 1, 0, 0]])
    levels = np.array([[100, 155, 0, 0], [155, 100, 0, 0], [155, 100, 0, 0]])
    group, ub, ul = frame_groups(bones, levels)
    assert group[0] == group[1] == group[2] and len(ub) == 1
    np.testing.assert_array_equal(ub[0, :2], [1, 2])
    np.testing.assert_array_equal(ul[0], [100, 155, 0, 0])


def test_nearest_points_matches_brute_force(rng):
    pts = rng.normal(size=(3000, 3))
    qs = np.vstack([rng.normal(size=(500, 3)), rng.normal(size=(20, 3)) * 10])
    idx, d = nearest_points(pts, qs)
    brute = np.linalg.norm(qs[:, None] - pts[None], axis=-1)
    np.testing.assert_array_equal(idx, brute.argmin(1))
    np.testing.assert_allclose(d, brute.min(1))


def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_blend_skinning_exact_cases(rng):
    # single bone weight 1: rigid motion of position and orientation
    a = np.eye(4)
    a[:3, :3] = _rot([1, 0, 0], np.pi / 2)
    a[:3, 3] = [0, 0, 1]
    pos = rng.normal(size=(10, 3))
    q = rng.normal(size=(10, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    bones = np.zeros((10, 4), int)
    w = np.zeros((10, 4))
    w[:, 0] = 1
    p2, q2 = blend_skinning(pos, q, bones, w, a[None])
    np.testing.assert_allclose(p2, pos @ a[:3, :3].T + a[:3, 3], atol=1e-12)
    np.testing.assert_allclose(quat_to_matrix(q2), a[:3, :3] @ quat_to_matrix(q), atol=1e-12)
    # half/half between identity and a 90° turn: polar part is the 45° turn
    mats = np.stack([np.eye(4), a])
    bones[:, 1] = 1
    w[:, :2] = 0.5
    _, q3 = blend_skinning(pos, q, bones, w, mats)
    np.testing.assert_allclose(quat_to_matrix(q3), _rot([1, 0, 0], np.pi / 4)
                               @ quat_to_matrix(q), atol=1e-9)


def test_polar_rotation_is_proper():
    m = np.array([[[2.0, 0, 0], [0, 0.5, 0], [0, 0, 1.0]], [[0, -1.0, 0], [1, 0, 0], [0, 0, 3]]])
    r = polar_rotation(m)
    np.testing.assert_allclose(r[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(r[1], _rot([0, 0, 1], np.pi / 2), atol=1e-12)


def test_transfer_weights_interpolates_on_the_surface():
    from blender_gs_addon.rigging.skinning import transfer_weights

    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.0]])
    tris = np.array([[0, 1, 2], [1, 3, 2]])
    vw = np.array([[1, 0], [0, 1], [1, 0], [0, 1.0]])  # weight of bone 1 = x
    pts = np.array([[0.25, 0.5, 0.3], [0.75, 0.2, -0.1], [2.0, 0.5, 0.0]])
    sw = transfer_weights(pts, verts, tris, vw)
    w1 = np.where(sw.bones == 1, sw.weights, 0).sum(1)
    np.testing.assert_allclose(w1, [0.25, 0.75, 1.0], atol=1e-6)


# ---------------------------------------------------------------------------- humanoid fit
def _tube(rng, count, a, b, radius):
    """Surface points of a capsule-less tube from a to b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    axis = (b - a) / np.linalg.norm(b - a)
    helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    t = rng.uniform(0, 1, count)[:, None]
    phi = rng.uniform(0, 2 * np.pi, count)[:, None]
    return a + t * (b - a) + radius * (np.cos(phi) * e1 + np.sin(phi) * e2)


def _sphere(rng, count, centre, radius):
    d = rng.normal(size=(count, 3))
    return np.asarray(centre) + radius * d / np.linalg.norm(d, axis=1, keepdims=True)


def _box(rng, count, lo, hi):
    return rng.uniform(lo, hi, size=(count, 3))


def human_figure(rng, *, pose="T", count=60000):
    """A 1.8 m stick-figure shell (Z up, facing −Y) and its true joints."""
    drop = 0.0 if pose == "T" else np.radians(35.0)
    parts, truth = [], {"head_top": np.array([0, 0, 1.8])}
    n = count // 12
    parts.append(_sphere(rng, n, (0, 0, 1.69), 0.11))
    parts.append(_tube(rng, n // 2, (0, 0, 1.45), (0, 0, 1.6), 0.05))
    parts.append(_tube(rng, 3 * n, (0, 0, 0.85), (0, 0, 1.47), 0.16))
    for sign, side in ((1, "L"), (-1, "R")):
        shoulder = np.array([sign * 0.17, 0, 1.42])
        direction = np.array([sign * np.cos(drop), 0, -np.sin(drop)])
        wrist = shoulder + 0.6 * direction
        tip = wrist + 0.1 * direction
        parts.append(_tube(rng, n, shoulder, wrist, 0.045))
        parts.append(_tube(rng, n // 3, wrist, tip, 0.035))
        truth[f"wrist.{side}"], truth[f"hand_tip.{side}"] = wrist, tip
        parts.append(_tube(rng, 2 * n, (sign * 0.1, 0, 0.08), (sign * 0.1, 0, 0.88), 0.07))
        parts.append(_box(rng, n // 2, (sign * 0.1 - 0.045, -0.17, 0.0),
                          (sign * 0.1 + 0.045, 0.05, 0.08)))
        truth[f"ankle.{side}"] = np.array([sign * 0.1, 0.0, 0.08])
    return np.vstack(parts), truth


@pytest.mark.parametrize("pose", ["T", "A"])
def test_fit_humanoid_joints_within_ten_percent(rng, pose):
    from blender_gs_addon.rigging.humanoid_fit import fit_humanoid

    pts, truth = human_figure(rng, pose=pose)
    fit = fit_humanoid(pts + [0.3, -0.2, 0.5])
    assert fit.pose == pose
    assert abs(fit.height - 1.8) < 0.02
    for name, where in truth.items():
        err = np.linalg.norm(fit.joints[name] - (where + [0.3, -0.2, 0.5]))
        assert err < 0.1 * 1.8, (name, err)


def test_fit_humanoid_refuses_a_lying_figure(rng):
    from blender_gs_addon.rigging.humanoid_fit import fit_humanoid

    pts, _ = human_figure(rng)
    with pytest.raises(GSError, match="upright"):
        fit_humanoid(pts[:, [2, 1, 0]] * [1, 1, 0.05])


# ---------------------------------------------------------------------------- smoothing graph
def test_smoothing_graph_is_the_knn_graph_of_cell_centroids(rng):
    from blender_gs_addon.rigging.skinning import _cell_knn

    pts = cylinder_shell(rng, 20000, radius=0.1, z0=0, z1=2)
    grid = solid_grid(pts, resolution=32)
    cells = np.argwhere(grid.solid)
    cell_id = np.full(grid.solid.shape, -1)
    cell_id[tuple(cells.T)] = np.arange(len(cells))
    nbr = _cell_knn(grid, pts, cells, cell_id, k=8)
    assert nbr.shape == (len(cells), 8) and (nbr >= 0).mean() > 0.99
    assert not (nbr == np.arange(len(cells))[:, None]).any()  # never itself
    # brute force: centroid of each cell's splats (cell centre for the filled inside), all pairs
    own = cell_id[tuple(grid.index(pts).T)]
    hits = np.bincount(own, minlength=len(cells))
    centroid = grid.origin + (cells + 0.5) * grid.cell
    for axis in range(3):
        sums = np.bincount(own, pts[:, axis], minlength=len(cells))
        centroid[hits > 0, axis] = sums[hits > 0] / hits[hits > 0]
    d = np.linalg.norm(centroid[:, None] - centroid[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    # Compared by distance (the filled inside is a lattice: ties between equally near cells).
    got_d = np.sort(np.take_along_axis(d, np.maximum(nbr, 0), 1), axis=1)
    true_d = np.sort(d, axis=1)[:, :8]
    same = np.isclose(got_d, true_d, rtol=0, atol=1e-9).all(1)
    # exact wherever the 8th neighbour is nearer than two cells (a farther cell's centroid
    # cannot be), which is almost everywhere
    close = true_d[:, 7] < 2 * grid.cell
    assert close.mean() > 0.95 and same[close].all()
    assert same.mean() > 0.98, same.mean()
    # the old 6 face neighbours were not: a shell's nearest centroids are often diagonal
    six = np.abs(cells[nbr] - cells[:, None]).sum(-1) == 1
    assert six.mean() < 0.8


def test_smoothing_evens_out_neighbouring_weights(rng):
    pts = cylinder_shell(rng, 20000, radius=0.1, z0=0, z1=2)
    heads = np.array([[0, 0, 0], [0, 0, 1.0]])
    tails = np.array([[0, 0, 1.0], [0, 0, 2.0]])
    near, _ = nearest_points(pts[1::2], pts[::2])  # each even splat's nearest odd one

    def roughness(**options):
        sw = bone_weights(pts, heads, tails, **options)
        w = np.where(sw.bones == 0, sw.weights, 0).sum(1)
        return np.abs(w[::2] - w[1::2][near]).mean()

    raw, smooth = roughness(smooth_iterations=0), roughness(smooth_iterations=4)
    assert smooth < 0.9 * raw, (smooth, raw)
    assert roughness(smooth_iterations=4, smooth_neighbours=0) == pytest.approx(raw)
