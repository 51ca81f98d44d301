"""PlayCanvas / SuperSplat compressed .ply (``*.compressed.ply``): read and write.

The details: docs/architecture.md, "Format: PlayCanvas compressed .ply".
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import GSError, Report, log_report
from ..quaternions import normalize_quat
from ..sh import SH_C0, coeffs_for_degree
from ..splats import SplatSet
from .ply_header import PlyElement, read_ply_header
from .reader_contract import ReadLimits, splat_reader

__all__ = ["read_compressed_ply", "write_compressed_ply", "CHUNK_SIZE"]

CHUNK_SIZE = 256
_RANGE_PROPS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z",
                "max_scale_x", "max_scale_y", "max_scale_z")
_COLOR_PROPS = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
_PACKED_PROPS = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
_LOG_SCALE_LIMIT = 20.0
# Below this chunk range the reference packs 0 (the value is stored as the chunk minimum).
_MIN_RANGE = 1e-5
# Opacity bytes 0 / 255 decode to these instead of logit(0) = -inf / logit(1) = +inf; both
# re-encode to the same byte.
_ALPHA_EDGE = 0.25 / 255.0
# _OTHER_SLOTS[largest] = the three quaternion slots stored in the 10-bit fields, in order.
_OTHER_SLOTS = np.array([[j for j in range(4) if j != i] for i in range(4)], dtype=np.intp)
_SQRT1_2 = np.sqrt(0.5)


# ---------------------------------------------------------------------------------- reading
def _sh_byte_table() -> np.ndarray:
    """[256] float32: decoded f_rest value for each stored byte (reference decoder)."""
    b = np.arange(256, dtype=np.float64)
    n = (b + 0.5) / 256.0
    n[0], n[255] = 0.0, 1.0
    return ((n - 0.5) * 8.0).astype(np.float32)


def _alpha_logits(alpha_bytes: np.ndarray) -> np.ndarray:
    """[N] uint8 sigmoid·255 → [N] float32 finite logits."""
    p = np.clip(alpha_bytes.astype(np.float64) / 255.0, _ALPHA_EDGE, 1.0 - _ALPHA_EDGE)
    return np.log(p / (1.0 - p)).astype(np.float32)


def _element_columns(raw: np.ndarray, element: PlyElement, names, *, source: str,
                     kind: str | None = None) -> list[np.ndarray]:
    """Fields ``names`` of a structured array, checking they exist (and their numpy kind)."""
    have = dict(element.properties)
    missing = [n for n in names if n not in have]
    if missing:
        raise GSError(f"{source}: element {element.name!r} lacks properties "
                      + ", ".join(missing))
    if kind is not None:
        wrong = [n for n in names if have[n] != kind]
        if wrong:
            raise GSError(f"{source}: properties {', '.join(wrong)} of element "
                          f"{element.name!r} must be of type {_TYPE_WORD[kind]}")
    return [raw[n] for n in names]


_TYPE_WORD = {"u4": "uint", "u1": "uchar", "f4": "float"}


def _unpack_unorm(values: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """Bit field of uint32 ``values`` as float64 in [0, 1]."""
    top = (1 << bits) - 1
    return ((values >> np.uint32(shift)) & np.uint32(top)).astype(np.float64) / top


def unpack_rotations(packed: np.ndarray) -> np.ndarray:
    """[N] uint32 2-10-10-10 → [N, 4] float32 (w, x, y, z) quaternions (reference decoding)."""
    which = (packed >> np.uint32(30)).astype(np.intp)
    small = np.stack([(_unpack_unorm(packed, s, 10) - 0.5) * np.sqrt(2.0) for s in (20, 10, 0)],
                     axis=1)  # [N, 3]
    largest = np.sqrt(np.maximum(0.0, 1.0 - (small * small).sum(axis=1)))
    out = np.empty((len(packed), 4), np.float64)
    np.put_along_axis(out, _OTHER_SLOTS[which], small, axis=1)
    np.put_along_axis(out, which[:, None], largest[:, None], axis=1)
    return out.astype(np.float32)


def _read_compressed_ply(source: str, *, limits: ReadLimits,
                         report: Report) -> tuple[SplatSet, bool]:
    """Read a PlayCanvas compressed .ply (both chunk layouts, SH degree 0–3):
    ``read_compressed_ply(path, *, nonfinite="drop", limits=None, report=log_report)``.

    Args:
        path: the file.
        nonfinite: 'drop' (report how many) or 'error' for splats decoded as NaN/Inf
            (only possible when the chunk ranges themselves are not finite).
        limits: :class:`ReadLimits` (default: 50 M splats at most).
        report: ``report({'WARNING'}, msg)`` callback.
    Returns:
        SplatSet in the file's (3DGS) frame, in file order.
    Raises:
        GSError naming the file for anything that is not a well-formed compressed .ply —
        including bytes after the last element (the element sizes are exact, so extra bytes
        mean a wrong count or inserted bytes, and the data would decode shifted).
    """
    with open(source, "rb") as fh:
        data = fh.read()
    header = read_ply_header(data, source=source)
    if header.format == "ascii":
        raise GSError(f"{source}: compressed .ply must be binary, this one is ascii")
    chunk_el, vertex_el, sh_el = (header.element(n) for n in ("chunk", "vertex", "sh"))
    if chunk_el is None or vertex_el is None:
        raise GSError(f"{source}: not a compressed splat .ply (needs 'chunk' and 'vertex' "
                      "elements)")
    count = vertex_el.count
    if count == 0:
        raise GSError(f"{source}: file contains no splats ('element vertex 0')")
    limits.check_count(count, source=source)
    chunks_needed = -(-count // CHUNK_SIZE)
    if chunk_el.count != chunks_needed:
        raise GSError(f"{source}: {count:,} splats need {chunks_needed:,} chunks of "
                      f"{CHUNK_SIZE}, the file has {chunk_el.count:,}")
    blocks, end = _element_blocks(data, header, source=source)
    unknown = [e.name for e in header.elements if e.name not in ("chunk", "vertex", "sh")]
    if unknown:
        report({"WARNING"}, f"{source}: ignored unknown elements {', '.join(unknown)}")
    decoded = _decode(blocks, chunk_el, vertex_el, sh_el, source=source)  # names bad columns
    if end != len(data):
        raise GSError(f"{source}: {len(data) - end:,} bytes follow the last element; the "
                      "header's counts do not describe this file (a wrong count or inserted "
                      "bytes would decode shifted data)")
    return decoded


read_compressed_ply = splat_reader(_read_compressed_ply)


def _element_blocks(data: bytes, header, *,
                    source: str) -> tuple[dict[str, np.ndarray], int]:
    """Structured views of every element's rows, and the offset where the last one ends."""
    blocks: dict[str, np.ndarray] = {}
    offset = header.header_size
    for element in header.elements:
        if element.has_list:
            raise GSError(f"{source}: element {element.name!r} has list properties; not a "
                          "compressed splat .ply")
        dtype = element.dtype(header.byte_order)
        size = element.count * dtype.itemsize
        if offset + size > len(data):
            raise GSError(f"{source}: file is truncated: element {element.name!r} needs "
                          f"{size:,} bytes at offset {offset:,} but the file has "
                          f"{len(data):,} bytes")
        if element.name in blocks:
            raise GSError(f"{source}: element {element.name!r} appears twice")
        blocks[element.name] = np.frombuffer(data, dtype=dtype, count=element.count,
                                             offset=offset)
        offset += size
    return blocks, offset


def _decode(blocks: dict[str, np.ndarray], chunk_el: PlyElement, vertex_el: PlyElement,
            sh_el: PlyElement | None, *, source: str) -> tuple[SplatSet, bool]:
    """Decoded splats, and whether every value is finite by construction."""
    count = vertex_el.count
    chunks_needed = chunk_el.count
    chunk_names = chunk_el.property_names()
    has_color = any(n in chunk_names for n in _COLOR_PROPS)
    chunk_cols = _element_columns(blocks["chunk"], chunk_el,
                                  _RANGE_PROPS + (_COLOR_PROPS if has_color else ()),
                                  source=source)
    ranges = np.stack(chunk_cols, axis=1).astype(np.float64)  # [C, 12 or 18]
    packed = _element_columns(blocks["vertex"], vertex_el, _PACKED_PROPS, source=source,
                              kind="u4")
    # Work on [C, 256] grids (last chunk zero-padded) so chunk ranges broadcast per row.
    grid = np.zeros((4, chunks_needed * CHUNK_SIZE), np.uint32)
    for row, column in enumerate(packed):
        grid[row, :count] = column
    pos_p, rot_p, scale_p, color_p = grid.reshape(4, chunks_needed, CHUNK_SIZE)

    def lerp(lo_col: int, hi_col: int, t: np.ndarray) -> np.ndarray:  # [C, 256] → [N]
        value = ranges[:, lo_col, None] * (1.0 - t) + ranges[:, hi_col, None] * t
        return value.reshape(-1)[:count]

    positions = np.empty((count, 3), np.float32)
    log_scales = np.empty((count, 3), np.float32)
    for axis, (shift, bits) in enumerate(((21, 11), (11, 10), (0, 11))):
        positions[:, axis] = lerp(axis, axis + 3, _unpack_unorm(pos_p, shift, bits))
        log_scales[:, axis] = lerp(6 + axis, 9 + axis, _unpack_unorm(scale_p, shift, bits))
    sh_dc = np.empty((count, 3), np.float32)
    for channel, shift in enumerate((24, 16, 8)):
        t = _unpack_unorm(color_p, shift, 8)
        color = lerp(12 + channel, 15 + channel, t) if has_color else t.reshape(-1)[:count]
        sh_dc[:, channel] = (color - 0.5) / SH_C0
    opacity = _alpha_logits((color_p.reshape(-1)[:count] & np.uint32(0xFF)).astype(np.uint8))

    splats = SplatSet(
        positions=positions,
        log_scales=log_scales,
        rotations=unpack_rotations(rot_p.reshape(-1)[:count]),
        opacity_logits=opacity,
        sh_dc=sh_dc,
        sh_rest=_decode_sh_rest(blocks.get("sh"), sh_el, count, source=source),
    )
    # With finite ranges and colours every other decoded value is finite by construction.
    return splats, bool(np.isfinite(ranges).all() and np.isfinite(sh_dc).all())


def _decode_sh_rest(block: np.ndarray | None, sh_el: PlyElement | None, count: int, *,
                    source: str) -> np.ndarray:
    """[N, K, 3] float32 SH bands 1–3 from the ``sh`` element (K = 0 without one)."""
    # gsplat writes an 'sh' element without properties at SH degree 0; read it as degree 0.
    if sh_el is None or not sh_el.properties:
        return np.zeros((count, 0, 3), np.float32)
    columns = len(sh_el.properties)
    if columns not in (9, 24, 45):
        raise GSError(f"{source}: 'sh' element has {columns} properties; expected 9, 24 "
                      "or 45 (SH degree 1-3)")
    if sh_el.count != count:
        raise GSError(f"{source}: 'sh' element has {sh_el.count:,} rows for {count:,} "
                      "splats")
    k = columns // 3
    names = [f"f_rest_{i}" for i in range(columns)]
    if sh_el.property_names() == names and all(c == "u1" for _, c in sh_el.properties):
        sh_bytes = block.view(np.uint8).reshape(count, columns)
    else:
        sh_bytes = np.stack(_element_columns(block, sh_el, names, source=source,
                                             kind="u1"), axis=1)  # [N, 3K]
    # f_rest is channel-major (c·K + k); the set wants [N, K, 3].
    return _sh_byte_table()[sh_bytes.reshape(count, 3, k).transpose(0, 2, 1)]


# ---------------------------------------------------------------------------------- writing
def _spread_bits_21(v: np.ndarray) -> np.ndarray:
    """uint64 values < 2**21 → bits moved to every third position (Morton interleave)."""
    v = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton_order(positions: np.ndarray) -> np.ndarray:
    """[N] int index sorting [N, 3] centres along a 63-bit Z-order curve of their bounding box.

    Finer than the reference's 10-bit code with recursive refinement of big buckets, to the
    same effect: consecutive runs of 256 splats are spatially compact.
    """
    pos = positions.astype(np.float64)
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    extent = hi - lo
    scale = np.where(extent > 0, ((1 << 21) - 1) / np.where(extent > 0, extent, 1.0), 0.0)
    cells = np.clip((pos - lo) * scale, 0, (1 << 21) - 1).astype(np.uint64)  # [N, 3]
    code = (_spread_bits_21(cells[:, 0]) | (_spread_bits_21(cells[:, 1]) << np.uint64(1))
            | (_spread_bits_21(cells[:, 2]) << np.uint64(2)))
    return np.argsort(code, kind="stable")


def _pack_unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _normalize_in_range(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reference ``normalize`` of values [C, 256] into [0, 1] by their chunk's lo/hi [C, 1].

    lo/hi are the chunk's own extremes, so only rounding can leave [0, 1]; a range below 1e-5
    stores 0 except for the maximum itself, which stores 1 (as the reference does).
    """
    span = hi - lo
    small = span < _MIN_RANGE
    t = (values - lo) / np.where(small, 1.0, span)
    np.clip(t, 0.0, 1.0, out=t)
    if small.any():
        t = np.where(small, (values >= hi) & (values > lo), t)
    return t


def pack_rotations(quats: np.ndarray) -> np.ndarray:
    """[N, 4] (w, x, y, z) → [N] uint32 2-10-10-10 (largest index, then the others)."""
    q = normalize_quat(quats.astype(np.float64))
    largest = np.argmax(np.abs(q), axis=1)
    flip = np.take_along_axis(q, largest[:, None], axis=1) < 0
    q = np.where(flip, -q, q)
    others = np.take_along_axis(q, _OTHER_SLOTS[largest], axis=1)  # [N, 3]
    fields = _pack_unorm(others * _SQRT1_2 + 0.5, 10)
    return ((largest.astype(np.uint32) << np.uint32(30)) | (fields[:, 0] << np.uint32(20))
            | (fields[:, 1] << np.uint32(10)) | fields[:, 2])


def _check_writable(splats: SplatSet, source: str) -> None:
    if splats.count == 0:
        raise GSError(f"{source}: no splats to write")
    bad = ~np.isfinite(splats.positions).all(1)
    bad |= ~np.isfinite(splats.rotations).all(1)
    bad |= np.isnan(splats.log_scales).any(1) | np.isnan(splats.opacity_logits)
    bad |= ~np.isfinite(splats.sh_dc).all(1)
    bad |= ~np.isfinite(splats.sh_rest.reshape(splats.count, -1)).all(1)
    if bad.any():
        raise GSError(f"{source}: {int(bad.sum()):,} of {splats.count:,} splats have NaN or "
                      "infinite values; drop them before writing")


def write_compressed_ply(path: str | os.PathLike, splats: SplatSet, *,
                         report: Report = log_report) -> None:
    """Write ``splats`` as a PlayCanvas compressed .ply (18-float chunks, Morton order).

    SH bands are kept (``sh`` element) for degree 1–3; ``extra`` properties are not stored.
    Raises GSError for an empty set or non-finite values (log-scales may be ±inf: clamped).
    """
    source = os.fspath(path)
    splats.validate(name=source)
    _check_writable(splats, source)
    if splats.extra:
        report({"WARNING"}, f"{source}: compressed .ply cannot store the extra properties "
                            + ", ".join(sorted(splats.extra)))
    count = splats.count
    order = morton_order(splats.positions)
    n_chunks = -(-count // CHUNK_SIZE)
    # Pad the last chunk by repeating the last splat: it does not change any chunk range.
    padded = np.concatenate([order, np.full(n_chunks * CHUNK_SIZE - count, order[-1])])

    def quantise(values: np.ndarray, bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """[N, k] float32 → ([C·256] uint32 packed fields, [C, 2k] float32 lo then hi)."""
        # [k, C, 256]: reductions over the contiguous last axis are the fast ones.
        grid = np.take(np.ascontiguousarray(values.T), padded, axis=1)
        grid = grid.reshape(len(bits), n_chunks, CHUNK_SIZE)
        lo, hi = grid.min(axis=2), grid.max(axis=2)  # [k, C], exact float32 extremes
        packed = np.zeros((n_chunks, CHUNK_SIZE), np.uint32)
        shift = sum(bits)
        for axis, b in enumerate(bits):
            shift -= b
            t = _normalize_in_range(grid[axis].astype(np.float64),
                                    lo[axis, :, None].astype(np.float64),
                                    hi[axis, :, None].astype(np.float64))
            packed |= _pack_unorm(t, b) << np.uint32(shift)
        return packed.reshape(-1), np.concatenate([lo.T, hi.T], axis=1)

    pos_packed, pos_range = quantise(splats.positions, (11, 10, 11))
    log_s = np.clip(splats.log_scales, -_LOG_SCALE_LIMIT, _LOG_SCALE_LIMIT)
    scale_packed, scale_range = quantise(log_s, (11, 10, 11))
    # The reference rounds colours to float32 before taking ranges; so do we, so the chunk
    # ranges are exactly the extreme colours.
    color = (splats.sh_dc.astype(np.float64) * SH_C0 + 0.5).astype(np.float32)
    color_packed, color_range = quantise(color, (8, 8, 8))
    opacity = np.take(splats.opacities(), padded)
    color_packed = (color_packed << np.uint32(8)) | _pack_unorm(opacity, 8)
    rot_packed = pack_rotations(np.take(splats.rotations, padded, axis=0))

    chunk_table = np.concatenate([pos_range, scale_range, color_range], axis=1)  # [C, 18]
    vertex = np.stack([pos_packed, rot_packed, scale_packed, color_packed], axis=1)[:count]

    degree = splats.sh_degree
    k = coeffs_for_degree(degree)
    lines = ["ply", "format binary_little_endian 1.0", "comment Generated by blender_gs_addon",
             f"element chunk {n_chunks}"]
    lines += [f"property float {name}" for name in _RANGE_PROPS + _COLOR_PROPS]
    lines += [f"element vertex {count}"] + [f"property uint {name}" for name in _PACKED_PROPS]
    if degree:
        lines += [f"element sh {count}"] + [f"property uchar f_rest_{i}" for i in range(3 * k)]
    lines.append("end_header\n")

    try:
        with open(source, "wb") as fh:
            fh.write("\n".join(lines).encode("ascii"))
            fh.write(chunk_table.astype("<f4").tobytes())
            fh.write(vertex.astype("<u4").tobytes())
            if degree:
                # floor((v/8 + 0.5)·256) = floor(32·v) + 128 exactly, and 32·v is exact in
                # float32, so this matches the reference's float64 arithmetic bit for bit.
                sh_bytes = np.floor(splats.sh_rest * np.float32(32.0))
                np.clip(sh_bytes, -128, 127, out=sh_bytes)
                sh_bytes = (sh_bytes + 128).astype(np.uint8)  # [N, K, 3]
                sh_bytes = np.take(sh_bytes, order, axis=0).transpose(0, 2, 1)  # channel-major
                fh.write(np.ascontiguousarray(sh_bytes).tobytes())
    except OSError as err:
        raise GSError.from_os_error(source, err, "write") from None
