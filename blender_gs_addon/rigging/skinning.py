"""Bone weights for faceless splats, and exact linear blend skinning (LBS) of Gaussians.

Blender's bone-heat weights need faces; on loose points they degenerate (one bone at weight 1
almost everywhere). :func:`bone_weights` computes weights from the geometry of the splat cloud
itself, vectorised and without any template data, in five steps (solid occupancy, visibility,
falloff, smoothing over a kNN graph, per splat): docs/architecture.md, "Automatic bone weights".

:func:`quantize_weights` turns them into the 1/255 levels Blender's vertex groups are written
with; :func:`frame_groups` finds the distinct weight rows (splats sharing a row share their
blended rotation). :func:`blend_skinning` is exact LBS of positions and Gaussian orientations
(rotation = polar part of M = Σ w_j A_j[:3, :3]), the reference the Blender path is tested
against.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import GSError, Report, log_report
from ..quaternions import matrix_to_quat, quat_multiply

__all__ = [
    "SkinWeights", "segment_distances", "solid_grid", "bone_weights", "quantize_weights",
    "frame_groups", "polar_rotation", "blend_skinning", "nearest_points", "transfer_weights",
    "check_far",
]

WEIGHT_LEVELS = 255  # vertex-group weights are written in steps of 1/255


@dataclass
class SkinWeights:
    """Up to K influences per splat: ``bones`` [N, K] int32 (index into the bone list; entries
    with weight 0 are padding) and ``weights`` [N, K] float32 summing to 1 per row."""

    bones: np.ndarray
    weights: np.ndarray


# ---------------------------------------------------------------------------- geometry
def segment_distances(points: np.ndarray, heads: np.ndarray, tails: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to each bone segment.

    Args:
        points: [N, 3]; heads, tails: [B, 3].
    Returns:
        (distance [N, B], t [N, B] in [0, 1]: closest point = head + t · (tail − head)).
    """
    p = np.asarray(points, np.float64)[:, None, :]  # [N, 1, 3]
    h = np.asarray(heads, np.float64)[None]  # [1, B, 3]
    axis = np.asarray(tails, np.float64)[None] - h  # [1, B, 3]
    length2 = np.maximum((axis * axis).sum(-1), 1e-30)  # [1, B]
    t = np.clip(((p - h) * axis).sum(-1) / length2, 0.0, 1.0)  # [N, B]
    closest = h + t[..., None] * axis
    return np.linalg.norm(p - closest, axis=-1), t


@dataclass
class _Grid:
    origin: np.ndarray  # [3] corner of cell (0, 0, 0)
    cell: float
    solid: np.ndarray  # [X, Y, Z] bool

    def index(self, points: np.ndarray) -> np.ndarray:
        """[..., 3] points → [..., 3] int cell indices (may be outside the grid)."""
        return np.floor((points - self.origin) / self.cell).astype(np.int64)

    def lookup(self, cells: np.ndarray) -> np.ndarray:
        """[..., 3] int cell indices → [...] bool solid (False outside the grid)."""
        dims = np.array(self.solid.shape)
        inside = ((cells >= 0) & (cells < dims)).all(-1)
        clipped = np.clip(cells, 0, dims - 1)
        return inside & self.solid[clipped[..., 0], clipped[..., 1], clipped[..., 2]]


def _shift_or(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one cell along each axis (6-neighbourhood)."""
    out = mask.copy()
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(1, None), slice(None, -1)
        out[tuple(lo)] |= mask[tuple(hi)]
        out[tuple(hi)] |= mask[tuple(lo)]
    return out


def solid_grid(points: np.ndarray, *, resolution: int = 64) -> _Grid:
    """Filled occupancy grid of a point cloud (see the module docstring, step 1)."""
    pts = np.asarray(points, np.float64)
    lo, hi = pts.min(0), pts.max(0)
    cell = float(max((hi - lo).max(), 1e-9)) / resolution
    origin = lo - 2.0 * cell  # a free border so the outside flood fill can go round
    dims = np.floor((hi - origin) / cell).astype(np.int64) + 3
    occupied = np.zeros(dims, bool)
    idx = np.floor((pts - origin) / cell).astype(np.int64)
    occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    occupied = _shift_or(occupied)
    # Enclosure vote: an empty cell is inside when occupied cells lie ahead of it in at least
    # four of the six axis directions. Unlike a flood fill from outside this also fills open
    # tubes (a limb cut off at the grid's edge) and tolerates holes in the shell, and it keeps
    # the gap between two legs empty (occupied only towards ±x there).
    votes = np.zeros(dims, np.int8)
    for axis in range(3):
        votes += np.logical_or.accumulate(occupied, axis=axis)
        votes += np.flip(np.logical_or.accumulate(np.flip(occupied, axis), axis=axis), axis)
    solid = occupied | (votes >= 4)
    for axis in range(3):  # the border stays empty: paths clipped onto it count as outside
        index = [slice(None)] * 3
        for end in (0, -1):
            index[axis] = end
            solid[tuple(index)] = False
    return _Grid(origin=origin, cell=cell, solid=solid)


# ---------------------------------------------------------------------------- weights
def _visibility(grid: _Grid, starts: np.ndarray, targets: np.ndarray, *,
                chunk: int = 65536) -> np.ndarray:
    """[P] bool: the straight path from each start [P, 3] to its target [P, 3] stays solid."""
    length = np.linalg.norm(targets - starts, axis=1) / grid.cell  # [P] in cells
    # A path longer than the grid's diagonal leaves the grid: hidden, and never marched (a
    # bone far away must not make the sample arrays huge).
    out = length <= float(np.linalg.norm(grid.solid.shape))
    order = np.argsort(length)[:int(out.sum())]  # similar lengths share a chunk
    dims = np.array(grid.solid.shape)
    flat = grid.solid.ravel()  # its border layer is never solid: clipping lands there
    stride = (int(dims[1] * dims[2]), int(dims[2]))
    budget = 1 << 22  # sample points per chunk
    a = 0
    while a < len(order):
        samples = max(2, int(np.ceil(2.0 * length[order[min(a + chunk, len(order)) - 1]])))
        size = max(1, min(chunk, budget // samples))
        idx = order[a:a + size]
        a += size
        s = ((starts[idx] - grid.origin) / grid.cell).astype(np.float32)  # grid units
        delta = ((targets[idx] - starts[idx]) / grid.cell).astype(np.float32)
        d = length[idx].astype(np.float32)
        frac = (np.arange(1, samples, dtype=np.float32) / samples)[:, None]  # [S, 1]
        pos = s[None] + frac[..., None] * delta[None]  # [S, c, 3] half a cell apart or less
        cells = pos.astype(np.int32)  # positions are ≥ −1, so truncation is fine here
        np.maximum(cells, 0, out=cells)
        np.minimum(cells, (dims - 1).astype(np.int32), out=cells)
        ok = flat[(cells[..., 0] * stride[0] + cells[..., 1] * stride[1]) + cells[..., 2]]
        along = frac * d[None]  # [S, c]
        ok |= (along < 1.0) | (d[None] - along < 1.0)  # the ends' own cells
        # Up to one cell of empty path is forgiven: the shell's dilation leaves such notches
        # at open ends and thin parts; a real gap (between legs) is wider.
        out[idx] = (~ok).sum(0) <= 2
    return out


# The 5×5×5 block of cells around a cell, itself left out.
_BLOCK = np.array([(i, j, k) for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)
                   if (i, j, k) != (0, 0, 0)], np.int64)


def _cell_knn(grid: _Grid, points: np.ndarray, solid_cells: np.ndarray, cell_id: np.ndarray,
              *, k: int, chunk: int = 8192) -> np.ndarray:
    """[C, k] the k nearest solid cells of every solid cell (−1 pads cells with fewer).

    Each cell stands for the centroid of its splats (the cell centre for solid cells without
    splats: the filled inside). Candidates are the 124 cells of the 5×5×5 block around a cell;
    a cell farther out has its centroid more than two cells away, so the result is the exact
    kNN graph of the centroids wherever the k-th neighbour is nearer than two cells (all but
    isolated cells). O(124 C) work, independent of the splat count apart from the centroids.
    """
    count = len(solid_cells)
    own = cell_id[tuple(grid.index(points).T)]
    inside_points = own >= 0  # always all: occupied cells are solid; guarded all the same
    own, points = own[inside_points], points[inside_points]
    sums = np.stack([np.bincount(own, points[:, axis], minlength=count) for axis in range(3)],
                    1)
    hits = np.bincount(own, minlength=count)[:, None]
    centre = grid.origin + (solid_cells + 0.5) * grid.cell
    centroid = np.where(hits > 0, sums / np.maximum(hits, 1), centre)  # [C, 3]
    # Flat lookups in a copy of the cell table padded by two: no bounds tests per candidate.
    padded = np.full(np.array(cell_id.shape) + 4, -1, np.int64)
    padded[2:-2, 2:-2, 2:-2] = cell_id
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1], np.int64)
    flat_table = padded.ravel()
    self_flat = (solid_cells + 2) @ strides  # [C]
    block_flat = _BLOCK @ strides  # [124]
    c32 = centroid.astype(np.float32)
    k = min(int(k), len(_BLOCK))
    out = np.full((count, k), -1, np.int64)
    for a in range(0, count, chunk):
        ids = flat_table[self_flat[a:a + chunk, None] + block_flat[None]]  # [c, 124]
        diff = c32[np.maximum(ids, 0)] - c32[a:a + chunk, None]
        dist = np.einsum("cbi,cbi->cb", diff, diff)  # squared: only the order matters
        dist[ids < 0] = np.inf
        pick = np.argpartition(dist, k - 1, axis=1)[:, :k]
        nearest = np.take_along_axis(ids, pick, 1)
        nearest[~np.isfinite(np.take_along_axis(dist, pick, 1))] = -1
        out[a:a + chunk] = nearest
    return out


def _normalise(w: np.ndarray) -> np.ndarray:
    total = w.sum(-1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def bone_weights(points: np.ndarray, heads: np.ndarray, tails: np.ndarray, *,
                 max_influences: int = 4, falloff: float = 4.0, resolution: int = 96,
                 smooth_iterations: int = 4, smooth_strength: float = 0.5,
                 smooth_neighbours: int = 8,
                 visibility: bool = True, far_factor: float = 1.0, source: str = "splats",
                 report: Report = log_report, chunk: int = 131072) -> SkinWeights:
    """Automatic weights of N points against B bone segments (module docstring).

    Args:
        points: [N, 3] splat centres; heads, tails: [B, 3] deform bones, same frame.
        far_factor: splats farther than ``far_factor`` × the armature's size from every bone
            are reported (a WARNING); when more than half are, GSError (the armature is
            probably not placed on the splats).
        smooth_iterations, smooth_strength, smooth_neighbours: the smoothing of step 4 (rounds,
            α, and k of the k-nearest-neighbour graph, at most 124; 0: no smoothing).
    Returns:
        SkinWeights with [N, max_influences] arrays.
    """
    pts = np.asarray(points, np.float64)
    heads = np.asarray(heads, np.float64).reshape(-1, 3)
    tails = np.asarray(tails, np.float64).reshape(-1, 3)
    n, b = len(pts), len(heads)
    if b == 0:
        raise GSError(f"{source}: no deform bones to bind to")
    if n == 0:
        raise GSError(f"{source}: no splats to bind")
    if not (np.isfinite(pts).all() and np.isfinite(heads).all() and np.isfinite(tails).all()):
        raise GSError(f"{source}: splat positions or bones are not finite")
    check_far(pts, heads, tails, far_factor=far_factor, source=source, report=report)
    grid = solid_grid(pts, resolution=resolution)
    solid_cells = np.argwhere(grid.solid)  # [C, 3]
    centres = grid.origin + (solid_cells + 0.5) * grid.cell
    dist, t = segment_distances(centres, heads, tails)  # [C, B]
    # Bones beyond 3x the nearest distance would get under 1/81 of the weight: dropped, which
    # also keeps the visibility marching to a few short paths per cell.
    candidate = dist <= 3.0 * dist.min(1, keepdims=True) + 1e-12
    if visibility:
        rows, cols = np.nonzero(candidate)
        targets = heads[cols] + t[rows, cols, None] * (tails - heads)[cols]
        vis = np.zeros_like(candidate)
        vis[rows, cols] = _visibility(grid, centres[rows], targets)
        # Sees no bone (a stray splat, a hole in a sparse shell): the nearest bone alone —
        # never all of them, which would let a neighbouring limb in.
        blind = np.flatnonzero(~vis.any(1))
        vis[blind, dist[blind].argmin(1)] = True
        # A hidden bone more than twice as near as every visible one is an open end or a thin
        # part of the shell, not a neighbouring limb: let it be seen.
        nearest_visible = np.where(vis, dist, np.inf).min(1, keepdims=True)
        vis |= candidate & (dist * 2.0 < nearest_visible)
    else:
        vis = candidate
    eps = 0.5 * grid.cell
    raw = _normalise(vis / (dist + eps) ** falloff)  # [C, B]

    # Dense per-cell tables so neighbours and trilinear corners are plain array lookups.
    cell_id = np.full(grid.solid.shape, -1, np.int64)
    cell_id[tuple(solid_cells.T)] = np.arange(len(solid_cells))
    w = raw
    if smooth_iterations > 0 and smooth_neighbours > 0:
        nbr = _cell_knn(grid, pts, solid_cells, cell_id, k=smooth_neighbours)  # [C, k]
        has = nbr >= 0
        counts = np.maximum(has.sum(1, keepdims=True), 1)
        for _ in range(smooth_iterations):
            mean = (w[np.maximum(nbr, 0)] * has[..., None]).sum(1) / counts
            w = _normalise(((1 - smooth_strength) * w + smooth_strength * mean) * vis)
    # Padded tables: row −1 (last) is an all-zero "not solid" cell.
    w_table = np.vstack([w, np.zeros((1, b))]).astype(np.float32)
    vis_table = np.vstack([vis, np.ones((1, b), bool)])
    out_bones, out_w = _splat_weights(grid, pts, cell_id, w_table, vis_table, heads, tails,
                                      max_influences=max_influences, chunk=chunk)
    return SkinWeights(bones=out_bones, weights=out_w)


def _morton(cells: np.ndarray) -> np.ndarray:
    """[N, 3] non-negative int cell indices (< 2^21) → [N] Z-order keys."""
    def spread(x):
        x = x.astype(np.uint64) & np.uint64(0x1FFFFF)
        for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF),
                            (8, 0x100F00F00F00F00F), (4, 0x10C30C30C30C30C3),
                            (2, 0x1249249249249249)):
            x = (x | (x << np.uint64(shift))) & np.uint64(mask)
        return x
    return (spread(cells[:, 0]) << np.uint64(2)) | (spread(cells[:, 1]) << np.uint64(1)) | \
        spread(cells[:, 2])


def _splat_weights(grid, pts, cell_id, w_table, vis_table, heads, tails, *, max_influences,
                   chunk):
    """Per splat (module docstring, step 5): ([N, K] bones, [N, K] weights)."""
    n, b = len(pts), w_table.shape[1]
    k = min(max_influences, b)
    out_bones = np.zeros((n, max_influences), np.int32)
    out_w = np.zeros((n, max_influences), np.float32)
    dims = np.array(grid.solid.shape)
    flat_id = cell_id.ravel()
    strides = np.array([dims[1] * dims[2], dims[2], 1], np.int64)
    corners = np.array([((c >> 2) & 1, (c >> 1) & 1, c & 1) for c in range(8)], np.int64)
    # Splats in Z-order of their cells: a chunk then covers a compact region that touches a
    # few bones, and interpolation and top-k run over those bones' columns only (the full
    # [N, bones] arrays were most of a 1M-splat bind's time).
    own_cells = np.clip(grid.index(pts), 0, dims - 1)
    order = np.argsort(_morton(own_cells), kind="stable")
    own_all = flat_id[own_cells @ strides]
    chunk = max(1, min(chunk, 8192))

    def run(a: int) -> None:
        idx = order[a:a + chunk]
        p = pts[idx]
        g = (p - grid.origin) / grid.cell - 0.5
        base = np.floor(g).astype(np.int64)
        frac = (g - base).astype(np.float32)
        # Corner cells always lie inside the grid (its free border); clipped all the same.
        np.clip(base, 0, dims - 2, out=base)
        ids = flat_id[(base @ strides)[:, None] + corners @ strides]  # [c, 8], −1: not solid
        own = own_all[idx]
        in_chunk = np.zeros(len(w_table), bool)
        in_chunk[ids.ravel()] = True
        in_chunk[own] = True
        active = np.flatnonzero(w_table[in_chunk].any(0))  # bones with weight in this region
        if len(active) == 0:
            active = np.arange(b)
        wa = w_table[:, active]
        lo_hi = np.stack([1.0 - frac, frac], 1)  # [c, 2, 3]
        # corner (x, y, z) ↦ index 4x + 2y + z, the order of ``corners``
        tri = (lo_hi[:, :, None, None, 0] * lo_hi[:, None, :, None, 1]
               * lo_hi[:, None, None, :, 2]).reshape(len(p), 8)
        acc = tri[:, 0, None] * wa[ids[:, 0]]  # trilinear blend of the 8 corners
        for corner in range(1, 8):
            acc += tri[:, corner, None] * wa[ids[:, corner]]
        masked = acc * vis_table[own[:, None], active[None, :]]
        empty = ~masked.any(1)
        masked[empty] = wa[own[empty]]
        ka = min(k, len(active))
        top = np.argpartition(-masked, ka - 1, axis=1)[:, :ka] if ka < len(active) else \
            np.tile(np.arange(len(active)), (len(p), 1))
        top_w = np.take_along_axis(masked, top, 1)
        rank = np.argsort(-top_w, axis=1)
        top = active[np.take_along_axis(top, rank, 1)]
        top_w = _normalise(np.take_along_axis(top_w, rank, 1))
        still = top_w.sum(1) <= 0  # numerically nothing: the nearest bone alone
        if still.any():
            d, _ = segment_distances(p[still], heads, tails)
            top[still] = 0
            top[still, 0] = d.argmin(1)
            top_w[still] = 0
            top_w[still, 0] = 1.0
        out_bones[idx, :ka] = top
        out_w[idx, :ka] = top_w

    # Chunks write disjoint rows and numpy drops the GIL in their bulk operations, so
    # threads share the work (the interpreter's part between them stays serial).
    starts = range(0, n, chunk)
    workers = min(4, os.cpu_count() or 1, len(starts))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for a in starts:
            run(a)
    return out_bones, out_w


def check_far(points: np.ndarray, heads: np.ndarray, tails: np.ndarray, *,
              far_factor: float = 1.0, source: str = "splats",
              report: Report = log_report) -> None:
    """GSError when most points are farther than ``far_factor`` × the armature's size from
    every bone (the armature is not placed on the splats); a WARNING when some are."""
    pts = np.asarray(points, np.float64)
    heads = np.asarray(heads, np.float64).reshape(-1, 3)
    tails = np.asarray(tails, np.float64).reshape(-1, 3)
    ends = np.vstack([heads, tails])
    size = float(np.linalg.norm(ends.max(0) - ends.min(0)))
    size = max(size, float(np.linalg.norm(tails - heads, axis=1).max()), 1e-9)
    sample = pts[:: max(1, len(pts) // 20000)]
    d, _ = segment_distances(sample, heads, tails)
    far = d.min(1) > far_factor * size
    if far.mean() > 0.5:
        raise GSError(f"{source}: most splats are farther from every bone than the armature "
                      f"is long ({size:.3g}); place the armature on the splats (and apply "
                      "object transforms) before binding")
    if far.any():
        report({'WARNING'}, f"{source}: about {far.mean():.1%} of the splats are far outside "
                            "the armature; they follow the nearest bones")


def nearest_points(points: np.ndarray, queries: np.ndarray, *, chunk: int = 65536
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Index [Q] into ``points`` [P, 3] of the nearest point to each query [Q, 3], and distance.

    A uniform grid hash (about two points per cell): the 27 cells around the query are
    searched; queries with no candidate there are answered by a coarser grid, repeatedly.
    """
    pts = np.asarray(points, np.float64)
    qs = np.asarray(queries, np.float64)
    if len(pts) == 0:
        raise GSError("nearest_points: no points to search")
    lo = np.minimum(pts.min(0), qs.min(0)) if len(qs) else pts.min(0)
    hi = np.maximum(pts.max(0), qs.max(0)) if len(qs) else pts.max(0)
    extent = max(float((hi - lo).max()), 1e-9)
    cell = max(extent / max(1.0, (len(pts) / 2.0) ** (1 / 3)), extent * 1e-4)
    best = np.full(len(qs), -1, np.int64)
    best_d = np.full(len(qs), np.inf)
    todo = np.arange(len(qs))
    while len(todo):
        _grid_nearest(pts, qs, todo, lo, cell, best, best_d, chunk)
        # A hit in the 27-cell block is exact only when closer than one cell.
        todo = todo[~(best_d[todo] <= cell)]
        if cell > 4 * extent:
            d = np.linalg.norm(qs[todo, None, :] - pts[None], axis=-1) if len(todo) else None
            if d is not None:
                best[todo], best_d[todo] = d.argmin(1), d.min(1)
            break
        cell *= 2.0
    return best, best_d


def _grid_nearest(pts, qs, todo, lo, cell, best, best_d, chunk):
    keys3 = np.floor((pts - lo) / cell).astype(np.int64) + 1
    dims = keys3.max(0) + 3
    dims = np.maximum(dims, np.floor((qs[todo] - lo) / cell).astype(np.int64).max(0) + 3)
    key = (keys3[:, 0] * dims[1] + keys3[:, 1]) * dims[2] + keys3[:, 2]
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    for a in range(0, len(todo), chunk):
        q_idx = todo[a:a + chunk]
        qc = np.floor((qs[q_idx] - lo) / cell).astype(np.int64) + 1
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dz in (-1, 0, 1):
                    c = qc + (dx, dy, dz)
                    k = (c[:, 0] * dims[1] + c[:, 1]) * dims[2] + c[:, 2]
                    start = np.searchsorted(sorted_keys, k, "left")
                    stop = np.searchsorted(sorted_keys, k, "right")
                    counts = stop - start
                    if not counts.any():
                        continue
                    rows = np.repeat(np.arange(len(q_idx)), counts)
                    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts,
                                                               counts)
                    cand = order[np.repeat(start, counts) + offs]
                    d = np.linalg.norm(qs[q_idx[rows]] - pts[cand], axis=1)
                    # Per-row minimum: sort by (row, d) and take the first of each row.
                    srt = np.lexsort((d, rows))
                    first = np.ones(len(srt), bool)
                    first[1:] = rows[srt][1:] != rows[srt][:-1]
                    r, dd, cc = rows[srt][first], d[srt][first], cand[srt][first]
                    better = dd < best_d[q_idx[r]]
                    best_d[q_idx[r[better]]] = dd[better]
                    best[q_idx[r[better]]] = cc[better]


# ---------------------------------------------------------------------------- quantisation
def quantize_weights(weights: np.ndarray, *, levels: int = WEIGHT_LEVELS) -> np.ndarray:
    """[N, K] weights summing to 1 → [N, K] int levels summing to ``levels`` per row.

    Largest-remainder rounding, so a row's quantised weights still sum to exactly 1 and no
    splat loses its last influence. A row of zeros stays zeros. float32 throughout (a 1M-splat
    bind calls this twice): a remainder within float32 rounding of a tie may round the other
    way, which moves one level between two influences of that row.
    """
    w = np.asarray(weights, np.float32)
    total = w.sum(1, keepdims=True)  # [N, 1]
    scaled = w * (np.float32(levels) / np.where(total > 0, total, np.float32(1)))
    q = scaled.astype(np.int32)  # floor, the values being non-negative
    deficit = levels - q.sum(1)  # [N] in [0, K)
    deficit[total[:, 0] <= 0] = 0
    # Rank of each remainder in its row, largest first, ties to the lower column (a stable
    # descending sort): K(K−1) column comparisons, several times faster than row argsorts.
    r = scaled - q
    cols = [np.ascontiguousarray(r[:, j]) for j in range(r.shape[1])]
    rank = np.zeros(r.shape, np.int16)
    for i, ri in enumerate(cols):
        for j, rj in enumerate(cols):
            if j < i:
                rank[:, i] += rj >= ri
            elif j > i:
                rank[:, i] += rj > ri
    q += rank < deficit[:, None]
    return q


def frame_groups(bones: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Distinct (bone, level) rows: splats in a group have the same blended bone rotation.

    Args:
        bones: [N, K] int; levels: [N, K] int (0 = padding).
    Returns:
        (group [N] int32, group_bones [U, K] int32, group_levels [U, K] int32); rows are put
        in a canonical order (by bone, padding last) before comparing.
    """
    lv = np.asarray(levels, np.int64)
    pad = int(max(int(np.max(bones, initial=0)), 0)) + 1  # sorts after every bone
    b = np.where(lv > 0, bones, pad).astype(np.int64)
    order = np.argsort(b, axis=1, kind="stable")
    b = np.take_along_axis(b, order, 1)
    lv = np.take_along_axis(lv, order, 1)
    lv[b == pad] = 0
    # Rows packed into one int64 key (two when they do not fit): unique on integers is many
    # times faster than on [N, 2K] void rows.
    k = b.shape[1]
    b_base, l_base = pad + 1, int(lv.max(initial=0)) + 1
    if k * (np.log2(b_base) + np.log2(l_base)) < 62:
        key = np.zeros(len(b), np.int64)
        for j in range(k):
            key = (key * b_base + b[:, j]) * l_base + lv[:, j]
    else:
        rows = np.ascontiguousarray(np.hstack([b, lv]))
        key = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    ub = b[first]
    ub[ub == pad] = 0
    return group.astype(np.int32).ravel(), ub.astype(np.int32), lv[first].astype(np.int32)


# ---------------------------------------------------------------------------- reference LBS
def polar_rotation(m: np.ndarray) -> np.ndarray:
    """[..., 3, 3] → the rotation of the polar decomposition M = R·P (proper, det +1)."""
    u, _, vt = np.linalg.svd(np.asarray(m, np.float64))
    d = np.sign(np.linalg.det(u @ vt))
    u = u.copy()
    u[..., :, 2] *= d[..., None]
    return u @ vt


def blend_skinning(positions: np.ndarray, rotations: np.ndarray, bones: np.ndarray,
                   weights: np.ndarray, matrices: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Exact LBS of Gaussians.

    Args:
        positions: [N, 3]; rotations: [N, 4] wxyz; bones, weights: [N, K];
        matrices: [B, 4, 4] bone deformation matrices (posed · rest⁻¹) in the points' frame.
    Returns:
        (positions [N, 3] = Σ w A x, rotations [N, 4] = quat(polar(Σ w A₃ₓ₃)) ⊗ q), float64.
    """
    a = np.asarray(matrices, np.float64)[bones]  # [N, K, 4, 4]
    blended = (np.asarray(weights, np.float64)[..., None, None] * a).sum(1)  # [N, 4, 4]
    x = np.asarray(positions, np.float64)
    pos = np.einsum("nij,nj->ni", blended[:, :3, :3], x) + blended[:, :3, 3]
    rot = matrix_to_quat(polar_rotation(blended[:, :3, :3]))
    return pos, quat_multiply(rot, np.asarray(rotations, np.float64))


# ---------------------------------------------------------------------------- mesh transfer
def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of triangles (a, b, c) [..., 3] to points p [..., 3]: (distance [...],
    barycentric [..., 3])."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = np.maximum((n * n).sum(-1), 1e-30)
    ap = p - a
    # barycentrics of the projection onto the plane
    v = (np.cross(ap, ac) * n).sum(-1) / nn
    w = (np.cross(ab, ap) * n).sum(-1) / nn
    u = 1.0 - v - w
    bary = np.stack([u, v, w], -1)
    inside = (bary >= 0).all(-1)
    best_d = np.where(inside, np.abs((ap * n).sum(-1)) / np.sqrt(nn), np.inf)
    best_b = np.where(inside[..., None], bary, 0.0)
    corners = (a, b, c)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        e = corners[j] - corners[i]
        t = np.clip(((p - corners[i]) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-30), 0, 1)
        d = np.linalg.norm(p - (corners[i] + t[..., None] * e), axis=-1)
        better = ~inside & (d < best_d)
        edge_b = np.zeros_like(bary)
        edge_b[..., i], edge_b[..., j] = 1.0 - t, t
        best_d = np.where(better, d, best_d)
        best_b = np.where(better[..., None], edge_b, best_b)
    return best_d, best_b


def transfer_weights(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
                     vertex_weights: np.ndarray, *, max_influences: int = 4,
                     chunk: int = 65536) -> SkinWeights:
    """Weights copied from a skinned mesh at each point's nearest surface point.

    Args:
        points: [N, 3]; vertices: [V, 3]; triangles: [T, 3] int; vertex_weights: [V, B].
    The nearest vertex is found with :func:`nearest_points`; the nearest surface point is
    then searched on the triangles around that vertex, and the weights of its triangle are
    interpolated barycentrically, cut to the ``max_influences`` largest and renormalised.
    Points whose surface point has no weight take the nearest weighted vertex's weights.
    """
    verts = np.asarray(vertices, np.float64)
    tris = np.asarray(triangles, np.int64).reshape(-1, 3)
    vw = np.asarray(vertex_weights, np.float64)
    pts = np.asarray(points, np.float64)
    b = vw.shape[1]
    weighted = vw.sum(1) > 0
    if not weighted.any():
        raise GSError("the source mesh has no weights in the armature's deform bones")
    nearest, _ = nearest_points(verts, pts)
    nearest_weighted, _ = nearest_points(verts[weighted], pts)
    nearest_weighted = np.flatnonzero(weighted)[nearest_weighted]
    # Triangles around each vertex, padded with −1 to the largest valence.
    if len(tris):
        owner = tris.ravel()
        order = np.argsort(owner, kind="stable")
        counts = np.bincount(owner, minlength=len(verts))
        valence = int(min(counts.max(), 32))
        starts = np.cumsum(counts) - counts
        slot = np.arange(len(owner)) - np.repeat(starts, counts)
        keep = slot < valence
        ring = np.full((len(verts), valence), -1, np.int64)
        ring[owner[order][keep], slot[keep]] = (order // 3)[keep]
    k = min(max_influences, b)
    out_bones = np.zeros((len(pts), max_influences), np.int32)
    out_w = np.zeros((len(pts), max_influences), np.float32)
    for a0 in range(0, len(pts), chunk):
        p = pts[a0:a0 + chunk]
        if len(tris):
            cand = ring[nearest[a0:a0 + chunk]]  # [c, R]
            tri = tris[np.maximum(cand, 0)]  # [c, R, 3]
            d, bary = _closest_on_triangles(p[:, None], verts[tri[..., 0]], verts[tri[..., 1]],
                                            verts[tri[..., 2]])
            d = np.where(cand >= 0, d, np.inf)
            pick = d.argmin(1)
            rows = np.arange(len(p))
            tri_p, bary_p = tri[rows, pick], bary[rows, pick]  # [c, 3], [c, 3]
            w = (bary_p[..., None] * vw[tri_p]).sum(1)  # [c, B]
            w[~np.isfinite(d[rows, pick])] = 0
        else:
            w = np.zeros((len(p), b))
        empty = w.sum(1) <= 0
        w[empty] = vw[nearest_weighted[a0:a0 + chunk][empty]]
        top = np.argsort(-w, axis=1)[:, :k]
        top_w = _normalise(np.take_along_axis(w, top, 1))
        out_bones[a0:a0 + chunk, :k] = top
        out_w[a0:a0 + chunk, :k] = top_w
    return SkinWeights(bones=out_bones, weights=out_w)
