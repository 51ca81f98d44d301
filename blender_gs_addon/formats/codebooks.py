"""Codebooks for lossy splat formats: 1-D scalar codebooks and a k-means vector palette.

Both are plain numpy (they run in Blender's Python, which has no torch), deterministic (the
palette for a given ``seed``) and vectorised:

* :func:`scalar_codebook` — up to 256 values for a set of scalars (SOG's scales, colours and
  SH palette values): the optimal grouping of a ≤ 512-bin histogram (dynamic programming,
  exact for the binned data) under a squared error in which each bin counts as count^½, so the
  sparse tails get entries too. Every value is stored as its nearest entry: its error is at
  most half the gap between the two entries around it (:func:`codebook_error` measures it).
  Sets with at most ``size`` distinct values are stored exactly.
* :func:`vector_palette` — k-means over vectors (SOG's SH palette: up to 65,536 centroids of
  45 numbers for a million splats). Brute-force Lloyd at that size costs ~6·10¹² flops per
  iteration, so it is done in two levels: a coarse k-means (√k clusters, on a sample) splits the
  points, then each coarse cluster gets its share of the k centroids (in proportion to its
  points) and its own k-means (stopping once < 0.1 % of its labels change). Each point is
  compared with about 2·√k centroids instead of k; the result is a local optimum of the same
  objective, as Lloyd's algorithm gives anyway. Vectors with at most k distinct values (SH read
  from a SOG) are kept exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["scalar_codebook", "nearest_scalar", "codebook_error", "vector_palette",
           "nearest_centroid"]

_POINT_CHUNK = 32768  # points per distance block at most
_BLOCK_FLOATS = 1 << 22  # and at most 16 MiB of float32 distances per block
_COARSE_SAMPLE = 32768  # points the coarse level is fitted on
_HALF_BINS = 256  # histogram of a scalar codebook: ≤ 512 bins, so the DP is ~0.07·10⁹ steps


# ---------------------------------------------------------------------------------- scalars
def scalar_codebook(values: np.ndarray, size: int = 256, *, alpha: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Codebook for scalars and the index of each value's nearest entry.

    Args:
        values: any shape, finite.
        size: entries wanted (≤ 256 for uint8 indices).
        alpha: density weighting of the objective (see :func:`_optimal_partition`): 1 is
            plain squared error, where the dense middle takes nearly every entry and rare
            extreme values (often the largest splats) end up far from any; 0.5 gives the
            tails entries too, for about the same mean error.
    Returns:
        (codebook [m] float32 ascending, m ≤ size; indices of ``values``' shape, uint8 when
        m ≤ 256 else uint16).
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return np.zeros(1, np.float32), np.zeros(np.shape(values), np.uint8)
    ordered = np.sort(flat).astype(np.float64)  # [n]
    distinct = np.unique(ordered)
    if len(distinct) <= size:
        centres = distinct
    else:
        means, weights = _histogram(ordered, alpha)
        centres = means if len(means) <= size else _optimal_partition(means, weights, size)
    codebook = np.unique(centres.astype(np.float32))  # float32 rounding can merge neighbours
    index = nearest_scalar(codebook, flat).reshape(np.shape(values))
    return codebook, index.astype(np.uint8 if len(codebook) <= 256 else np.uint16)


def _histogram(ordered: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values → ([H] bin means, [H] bin weights count^alpha), H ≤ 2·_HALF_BINS.

    Bin edges are the union of equal-count and equal-width edges: dense regions get narrow
    bins from the first, sparse tails from the second.
    """
    n = len(ordered)
    edges = np.unique(np.concatenate([
        ordered[np.linspace(0, n - 1, _HALF_BINS + 1).astype(np.int64)],
        np.linspace(ordered[0], ordered[-1], _HALF_BINS + 1)]))[1:-1]
    cuts = np.concatenate([[0], np.searchsorted(ordered, edges, side="left"), [n]])
    prefix = np.concatenate([[0.0], np.cumsum(ordered)])
    counts = np.diff(cuts)
    full = counts > 0
    means = (prefix[cuts[1:]] - prefix[cuts[:-1]])[full] / counts[full]
    return means, counts[full].astype(np.float64) ** alpha


def _optimal_partition(means: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` centres minimising Σ weight·(mean − centre)² over contiguous groups of
    bins: exact dynamic programming, vectorised over the group's last bin (O(size·H²))."""
    h = len(means)
    w = np.concatenate([[0.0], np.cumsum(weights)])
    wx = np.concatenate([[0.0], np.cumsum(weights * means)])
    wxx = np.concatenate([[0.0], np.cumsum(weights * means * means)])
    last, first = np.arange(h)[:, None], np.arange(h)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        span = wx[last + 1] - wx[first]
        cost = (wxx[last + 1] - wxx[first]) - span * span / (w[last + 1] - w[first])
    # cost[j, s]: bins s..j as one group (rows by last bin, so the minimum runs along rows)
    cost = np.where(first <= last, np.maximum(cost, 0.0), np.inf)  # [H, H]
    best = cost[:, 0].copy()  # best[j]: bins 0..j in one group
    split = np.zeros((size, h), np.int32)  # split[m, j]: first bin of the last group
    total = np.empty((h, h - 1))
    rows = np.arange(h)
    for m in range(1, size):
        np.add(cost[:, 1:], best[None, :-1], out=total)  # groups end at s−1, the last is s..j
        split[m] = np.argmin(total, axis=1) + 1
        best = total[rows, split[m] - 1]
        best[:m] = np.inf
    centres, j = np.empty(size), h - 1
    for m in range(size - 1, -1, -1):
        start = split[m, j] if m else 0
        centres[m] = (wx[j + 1] - wx[start]) / (w[j + 1] - w[start])
        j = start - 1
    return centres


def nearest_scalar(codebook: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[n] index of the entry of an ascending ``codebook`` nearest to each value."""
    cb = codebook.astype(np.float64)
    mids = (cb[1:] + cb[:-1]) * 0.5
    return np.searchsorted(mids, values.astype(np.float64), side="left")


def codebook_error(values: np.ndarray, codebook: np.ndarray, index: np.ndarray) -> float:
    """Largest |value − codebook[index]|."""
    if np.size(values) == 0:
        return 0.0
    return float(np.abs(np.asarray(values, np.float64) - codebook[index].astype(np.float64)).max())


# ---------------------------------------------------------------------------------- vectors
def vector_palette(points: np.ndarray, size: int, *, iterations: int = 10, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """k-means palette of ``points`` (two-level, see the module docstring).

    Args:
        points: [N, D] finite.
        size: centroids wanted; with N ≤ size every point is its own centroid (exact).
        iterations: Lloyd iterations per level.
        seed: the random seeds (sample, initial centroids) come from this; same seed, same
            palette.
    Returns:
        (centroids [K, D] float32 with K = min(N, size), labels [N] int64 in [0, K)).
    """
    x = np.ascontiguousarray(points, dtype=np.float32)
    n = len(x)
    if n <= size:
        return x.copy(), np.arange(n, dtype=np.int64)
    exact = _distinct_rows(x, size)
    if exact is not None:  # e.g. SH read from a SOG: saving it again loses nothing
        return exact
    rng = np.random.default_rng(seed)
    coarse_k = int(min(size, max(1, 2 ** round(np.log2(np.sqrt(size))))))
    sample = x if n <= _COARSE_SAMPLE else x[np.sort(rng.choice(n, _COARSE_SAMPLE, replace=False))]
    coarse, _ = _lloyd(sample, coarse_k, iterations, rng)
    groups = nearest_centroid(x, coarse)  # [N]
    shares = _split_count(np.bincount(groups, minlength=len(coarse)), size)
    order = np.argsort(groups, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=len(coarse)))])
    centroids, labels, base = [], np.empty(n, np.int64), 0
    for g, share in enumerate(shares):
        members = order[bounds[g]:bounds[g + 1]]
        if share == 0:
            continue
        c, lab = _lloyd(x[members], int(share), iterations, rng)
        centroids.append(c)
        labels[members] = lab + base
        base += len(c)
    return np.concatenate(centroids).astype(np.float32), labels


def _distinct_rows(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct rows, index of each row) when there are at most ``size``, else None. Tried
    only when a sample of the first column is already that repetitive (cheap to rule out)."""
    if len(np.unique(x[:4096, 0])) > min(size, 256):
        return None
    rows = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1])))[:, 0]
    distinct, index = np.unique(rows, return_inverse=True)
    if len(distinct) > size:
        return None
    return distinct.view(np.float32).reshape(len(distinct), x.shape[1]).copy(), index.astype(
        np.int64).reshape(-1)


def _split_count(sizes: np.ndarray, total: int) -> np.ndarray:
    """Integers ∝ ``sizes`` summing to ``total`` (largest remainder), each ≤ its size and ≥ 1
    for a non-empty group."""
    sizes = sizes.astype(np.int64)
    ideal = sizes * (total / max(1, sizes.sum()))
    share = np.minimum(np.maximum(np.floor(ideal).astype(np.int64), (sizes > 0).astype(np.int64)),
                       sizes)
    left = total - int(share.sum())
    if left > 0:
        room = sizes - share
        order = np.argsort(-(ideal - share), kind="stable")
        for g in order:  # ≤ √k groups: a loop over groups, not over points
            give = int(min(left, room[g]))
            share[g] += give
            left -= give
            if left == 0:
                break
    elif left < 0:
        order = np.argsort(ideal - share, kind="stable")
        for g in order:
            take = int(min(-left, share[g] - 1))
            share[g] -= max(take, 0)
            left += max(take, 0)
            if left == 0:
                break
    return share


def _lloyd(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """Plain k-means from ``k`` distinct random points: ([k', D] centroids, [n] labels),
    k' = min(k, n). Stops early once fewer than 0.1 % of the labels change."""
    n = len(x)
    if n <= k:
        return x.copy(), np.arange(n, dtype=np.int64)
    centroids = x[np.sort(rng.choice(n, k, replace=False))].copy()
    labels = None
    for step in range(iterations + 1):
        new_labels, dist = nearest_centroid(x, centroids, with_distance=True)
        if step == iterations or (labels is not None
                                  and np.count_nonzero(new_labels != labels) <= n // 1000):
            return centroids, new_labels
        labels = new_labels
        centroids, empty = _means_by_label(x, labels, k)
        if empty.any():  # re-seed with the points worst served (deterministic)
            worst = np.argsort(-dist, kind="stable")[: int(empty.sum())]
            centroids[empty] = x[worst]
    return centroids, labels


def _means_by_label(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """([k, D] float32 mean of the rows with each label, [k] bool label unused)."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=k)
    used = counts > 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[used]
    sums = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)  # [used, D]
    means = np.zeros((k, x.shape[1]), np.float32)
    means[used] = sums / counts[used, None]
    return means, ~used


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, *, with_distance: bool = False):
    """[n] index of the nearest centroid (squared Euclidean), in blocks of rows; with
    ``with_distance`` also the [n] squared distances."""
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    scaled = np.ascontiguousarray(-2.0 * c.T)  # [D, k]
    c_sq = (c.astype(np.float64) ** 2).sum(1).astype(np.float32)  # [k]
    labels = np.empty(len(x), np.int64)
    dist = np.empty(len(x), np.float32) if with_distance else None
    block_rows = max(1, min(_POINT_CHUNK, (_BLOCK_FLOATS // max(1, len(c)))))
    for start in range(0, len(x), block_rows):
        block = x[start:start + block_rows]
        d = block @ scaled  # [b, k]; |x|² is the same for every centroid, so it is left out
        d += c_sq
        lab = np.argmin(d, axis=1)
        labels[start:start + len(block)] = lab
        if with_distance:
            dist[start:start + len(block)] = (np.take_along_axis(d, lab[:, None], 1)[:, 0]
                                              + np.einsum("ij,ij->i", block, block))
    return (labels, dist) if with_distance else labels
