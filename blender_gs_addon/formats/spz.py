"""Niantic .spz: read versions 1–4, write versions 2 and 3 (gzip) and 4 (zstd, optional).

The details: docs/architecture.md, "Format: Niantic .spz".
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator

import numpy as np

from ..conventions.frames import RUB_FROM_RDF
from ..errors import GSError, Report, log_report
from ..quaternions import normalize_quat
from ..sh import rotate_sh_rest
from ..splats import SplatSet
from .reader_contract import ReadLimits, splat_reader

__all__ = ["read_spz", "write_spz", "SH_SIGNS_RUB_FROM_RDF", "SPZ_MAGIC"]

SPZ_MAGIC = 0x5053474E
_LEGACY_HEADER = struct.Struct("<IIIBBBB")  # 16 bytes
_NGSP_HEADER = struct.Struct("<IIIBBBBI12x")  # 32 bytes
_FLAG_ANTIALIASED = 0x1
_FLAG_EXTENSIONS = 0x2
_EXT_COORDINATE_SYSTEM = 0xADBE0003
_COORD_UNSPECIFIED, _COORD_RUB, _COORD_RDF = 0, 4, 6
_COLOR_SCALE = 0.15
_SQRT1_2 = np.sqrt(0.5)
_ALPHA_EDGE = 0.25 / 255.0  # end bytes 0 / 255 decode here instead of ∓inf
_MAX_DEFLATE_RATIO = 1032  # deflate's hard limit on decompressed / compressed size
_SH_DIMS = {0: 0, 1: 3, 2: 8, 3: 15, 4: 24}
_OTHER_SLOTS = np.array([[j for j in range(4) if j != i] for i in range(4)], dtype=np.intp)


def _sh_signs() -> np.ndarray:
    """[15] ±1: RUB coefficient = sign · RDF coefficient, for bands 1–3 in 3DGS order.

    RUB_FROM_RDF is diagonal, so each real SH basis function only changes sign; derive the
    signs from the general rotation code and snap them to exact ±1.
    """
    probe = np.eye(15, dtype=np.float64)[:, :, None].repeat(3, axis=2)  # [15, 15, 3]
    rotated = rotate_sh_rest(probe, RUB_FROM_RDF)
    diag = np.array([rotated[i, i, 0] for i in range(15)])
    if not np.allclose(np.abs(diag), 1.0, atol=1e-6):
        raise AssertionError("RUB_FROM_RDF does not map SH basis functions to ±themselves")
    return np.sign(diag).astype(np.float32)


SH_SIGNS_RUB_FROM_RDF = _sh_signs()  # its own inverse (a 180° turn)


# ---------------------------------------------------------------------------------- reading
_DECODE_STEP = 1 << 20  # splats decoded per step: float64 temporaries stay ~100 MB at most
# Byte → value tables of the reference decoder (same float64 arithmetic, then float32).
def _alpha_table() -> np.ndarray:
    p = np.clip(np.arange(256) / 255.0, _ALPHA_EDGE, 1 - _ALPHA_EDGE)
    return np.log(p / (1.0 - p)).astype(np.float32)


_ALPHA_TABLE = _alpha_table()
_COLOR_TABLE = ((np.arange(256) / 255.0 - 0.5) / _COLOR_SCALE).astype(np.float32)
_SCALE_TABLE = (np.arange(256) / 16.0 - 10.0).astype(np.float32)
_SH_TABLE = (np.arange(256, dtype=np.float32) - np.float32(128.0)) / np.float32(128.0)


def _expected_sizes(version: int, count: int, sh_dim: int) -> list[int]:
    """Byte sizes of positions, alphas, colours, scales, rotations, SH."""
    return [count * (6 if version == 1 else 9), count, count * 3, count * 3,
            count * (4 if version >= 3 else 3), count * sh_dim * 3]


def _check_header(source: str, version: int, count: int, degree: int, *,
                  known: tuple[int, ...]) -> None:
    if version not in known:
        raise GSError(f"{source}: unsupported .spz version {version} (this reader knows "
                      "versions 1-4)")
    if count == 0:
        raise GSError(f"{source}: file contains no splats")
    if count > 0x7FFFFFFF:
        raise GSError(f"{source}: header claims {count:,} splats, more than .spz allows")
    if degree not in _SH_DIMS:
        raise GSError(f"{source}: unsupported SH degree {degree} (.spz allows 0-4)")


def _legacy_header(source: str, head: bytes) -> tuple[tuple, list[int]]:
    """16-byte header of versions 1–3 → (fields, block sizes)."""
    magic, version, count, degree, frac_bits, flags, _ = _LEGACY_HEADER.unpack(head)
    if magic != SPZ_MAGIC:
        raise GSError(f"{source}: not an .spz file (bad magic 0x{magic:08x})")
    if version == 4:
        raise GSError(f"{source}: .spz version 4 inside a gzip stream; version 4 files are "
                      "not gzipped (corrupt or mislabelled file)")
    _check_header(source, version, count, degree, known=(1, 2, 3))
    return (version, count, degree, frac_bits, flags), _expected_sizes(version, count,
                                                                       _SH_DIMS[degree])


def _ignored_tail(source: str, size: str, report: Report) -> None:
    report({"WARNING"}, f"{source}: ignored {size} after the last .spz block: the header's "
                        "splat count or version may not match the data (check the result)")


def _gzip_blocks(source: str, data: bytes, limits: ReadLimits,
                 report: Report) -> tuple[tuple, Iterator[bytes]]:
    """gzip (versions 1–3) → (header fields, the six attribute blocks, inflated one by one)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = inflater.decompress(data, _LEGACY_HEADER.size)
    except zlib.error as err:
        raise GSError(f"{source}: corrupt gzip stream ({err})") from None
    if len(head) < _LEGACY_HEADER.size:
        raise GSError(f"{source}: gzip stream ends inside the 16-byte .spz header")
    header, sizes = _legacy_header(source, head)
    total = sum(sizes)
    if total > _MAX_DEFLATE_RATIO * len(data):
        raise GSError(f"{source}: header claims {header[1]:,} splats ({total:,} bytes) but "
                      f"the {len(data):,}-byte file cannot hold that much (corrupt header)")
    limits.check_claim(header[1], bytes_per_splat=total // header[1], available=len(data),
                       source=source, compressed=True)
    return header, _inflate_blocks(source, inflater, header, sizes, report)


def _inflate_blocks(source: str, inflater, header: tuple, sizes: list[int],
                    report: Report) -> Iterator[bytes]:
    done = 0
    for size in sizes:
        block = b""
        try:
            while len(block) < size:
                more = inflater.decompress(inflater.unconsumed_tail, size - len(block))
                if not more:
                    break
                block += more
        except zlib.error as err:
            raise GSError(f"{source}: corrupt gzip stream ({err})") from None
        if len(block) < size:
            what = "the gzip stream ends" if inflater.eof else "the file is truncated"
            raise GSError(f"{source}: header claims {header[1]:,} splats ({sum(sizes):,} "
                          f"bytes of data) but {what} after {done + len(block):,} bytes")
        done += size
        yield block
    # Read on (boundedly) to the end of the stream, so zlib checks the gzip CRC and length,
    # and to reach extension records.
    try:
        # (Once at the end, zlib would append its unconsumed input to unused_data again.)
        tail = b"" if inflater.eof else inflater.decompress(inflater.unconsumed_tail, 1 << 16)
    except zlib.error as err:
        raise GSError(f"{source}: corrupt gzip stream ({err})") from None
    if not inflater.eof and not inflater.unconsumed_tail:
        raise GSError(f"{source}: gzip stream is truncated (its end and checksum are missing)")
    if header[4] & _FLAG_EXTENSIONS:
        _check_extensions(source, tail, report)
    elif tail:
        _ignored_tail(source, f"{len(tail):,} bytes" if inflater.eof else "more than "
                      f"{len(tail):,} bytes", report)
    if inflater.unused_data:
        report({"WARNING"}, f"{source}: ignored {len(inflater.unused_data):,} bytes after the "
                            "end of the gzip stream")


def _raw_blocks(source: str, data: bytes, limits: ReadLimits,
                report: Report) -> tuple[tuple, Iterator[memoryview]]:
    """An ungzipped version 1–3 payload (not in the spec; PlayCanvas reads these too)."""
    if len(data) < _LEGACY_HEADER.size:
        raise GSError(f"{source}: file too short for an .spz header")
    header, sizes = _legacy_header(source, data[:_LEGACY_HEADER.size])
    total = sum(sizes)
    payload = memoryview(data)[_LEGACY_HEADER.size:]
    limits.check_claim(header[1], bytes_per_splat=total // header[1], available=len(payload),
                       source=source)
    if header[4] & _FLAG_EXTENSIONS:
        _check_extensions(source, bytes(payload[total:total + (1 << 16)]), report)
    elif len(payload) > total:
        _ignored_tail(source, f"{len(payload) - total:,} bytes", report)
    offsets = np.cumsum([0, *sizes])
    return header, (payload[a:b] for a, b in zip(offsets[:-1], offsets[1:]))


def _load_zstandard(source: str):
    try:
        import zstandard
    except ImportError:
        raise GSError(f"{source}: is a version 4 .spz (zstd streams); reading it needs the "
                      "Python package 'zstandard' (pip install zstandard), which is not "
                      "installed") from None
    return zstandard


def _ngsp_blocks(source: str, data: bytes, limits: ReadLimits,
                 report: Report) -> tuple[tuple, Iterator[bytes]]:
    """Version 4 container → (header fields, the six attribute blocks, decompressed lazily)."""
    if len(data) < _NGSP_HEADER.size:
        raise GSError(f"{source}: file too short for an .spz version 4 header")
    magic, version, count, degree, frac_bits, flags, n_streams, toc = _NGSP_HEADER.unpack_from(
        data)
    _check_header(source, version, count, degree, known=(4,))
    limits.check_count(count, source=source)
    sizes = _expected_sizes(version, count, _SH_DIMS[degree])
    wanted = [s for s in sizes if s]
    if n_streams != len(wanted):
        raise GSError(f"{source}: has {n_streams} data streams, expected {len(wanted)} for SH "
                      f"degree {degree}")
    toc_end = toc + 16 * n_streams
    if toc < _NGSP_HEADER.size or toc_end > len(data):
        raise GSError(f"{source}: table of contents at byte {toc} lies outside the file")
    spans = _stream_spans(source, data, toc, wanted, count)
    limits.check_claim(count, bytes_per_splat=sum(sizes) // count,
                       available=sum(b - a for a, b in spans), source=source, compressed=True)
    if flags & _FLAG_EXTENSIONS:
        _check_extensions(source, data[_NGSP_HEADER.size:toc], report)
    zstandard = _load_zstandard(source)
    streams = (_unzstd(zstandard, source, i, data[a:b], size)
               for i, ((a, b), size) in enumerate(zip(spans, wanted)))
    header = (version, count, degree, frac_bits, flags)
    return header, (next(streams) if size else b"" for size in sizes)


def _stream_spans(source: str, data: bytes, toc: int, wanted: list[int],
                  count: int) -> list[tuple[int, int]]:
    """(start, stop) of each zstd stream, checked against the table of contents."""
    entries = struct.unpack_from(f"<{2 * len(wanted)}Q", data, toc)
    offset = toc + 16 * len(wanted)
    spans = []
    for i, size in enumerate(wanted):
        packed, unpacked = entries[2 * i], entries[2 * i + 1]
        if unpacked != size:
            raise GSError(f"{source}: stream {i} holds {unpacked:,} bytes, expected {size:,} "
                          f"for {count:,} splats")
        if packed > len(data) - offset:
            raise GSError(f"{source}: stream {i} extends past the end of the file "
                          "(truncated)")
        spans.append((offset, offset + packed))
        offset += packed
    if offset != len(data):
        raise GSError(f"{source}: {len(data) - offset:,} unexpected bytes after the last "
                      "stream (corrupt table of contents)")
    return spans


def _unzstd(zstandard, source: str, index: int, frame: bytes, size: int) -> bytes:
    """Exactly ``size`` bytes from one zstd stream, never more; its checksum (when the writer
    stored one) is verified, and anything after the frame is an error."""
    where = f"{source}: stream {index}"
    try:
        declared = zstandard.get_frame_parameters(frame).content_size
    except zstandard.ZstdError as err:
        raise GSError(f"{where} is not valid zstd data ({err})") from None
    if declared not in (zstandard.CONTENTSIZE_UNKNOWN, size):
        raise GSError(f"{where}'s frame declares {declared:,} bytes, expected {size:,}")
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame),
                                                             read_across_frames=True)
        out = b""
        while len(out) < size:  # a reader may return short reads
            more = reader.read(size - len(out))
            if not more:
                break
            out += more
        extra = reader.read(1)
    except zstandard.ZstdError as err:
        raise GSError(f"{where} is corrupt ({err})") from None
    if len(out) != size or extra:
        raise GSError(f"{where} decompresses to {'more than ' if extra else ''}"
                      f"{len(out):,} bytes, expected {size:,} (truncated or corrupt)")
    return out


def _check_extensions(source: str, records: bytes, report: Report) -> None:
    """Refuse data stored in a frame we do not convert; ignore other extension records."""
    offset = 0
    while offset + 8 <= len(records):
        kind, length = struct.unpack_from("<II", records, offset)
        payload = records[offset + 8:offset + 8 + length]
        if kind == _EXT_COORDINATE_SYSTEM and len(payload) >= 4:
            frame = struct.unpack_from("<I", payload)[0]
            if frame not in (_COORD_UNSPECIFIED, _COORD_RUB):
                raise GSError(f"{source}: data is stored in coordinate system code {frame} "
                              "(Adobe coordinate-system extension); only RUB files are "
                              "supported")
        elif kind != _EXT_COORDINATE_SYSTEM:
            report({"INFO"}, f"{source}: ignored .spz extension 0x{kind:08x}")
        offset += 8 + length


def _table_lookup(table: np.ndarray, raw, out: np.ndarray) -> None:
    """out[...] = table[raw] for a uint8 buffer, in steps (np.take makes intp indices)."""
    codes = np.frombuffer(raw, np.uint8)
    flat = out.reshape(-1)
    step = 4 * _DECODE_STEP
    for s in range(0, codes.size, step):
        np.take(table, codes[s:s + step], out=flat[s:s + step])


def _decode_positions(raw, version: int, frac_bits: int, out: np.ndarray) -> None:
    """out [N, 3] float32 ← positions block, RUB (file) → RDF: (x, −y, −z)."""
    flip = np.array([1.0, -1.0, -1.0])
    count = out.shape[0]
    if version == 1:
        half = np.frombuffer(raw, "<f2").reshape(count, 3)
    else:
        triples = np.frombuffer(raw, np.uint8).reshape(count, 3, 3)
    for s in range(0, count, _DECODE_STEP):
        if version == 1:
            values = half[s:s + _DECODE_STEP].astype(np.float64)
        else:
            b = triples[s:s + _DECODE_STEP].astype(np.int32)
            fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
            fixed = (fixed ^ 0x800000) - 0x800000  # sign-extend 24 → 32 bits
            values = fixed * 2.0 ** -frac_bits
        out[s:s + _DECODE_STEP] = values * flip


def _decode_rotations(raw, version: int, out: np.ndarray) -> None:
    """out [N, 4] float32 (w, x, y, z) in RDF ← rotations block (x, y, z, w in RUB)."""
    count = out.shape[0]
    if version >= 3:
        packed_all = np.frombuffer(raw, "<u4")
    else:
        bytes_all = np.frombuffer(raw, np.uint8).reshape(count, 3)
    for s in range(0, count, _DECODE_STEP):
        n = min(_DECODE_STEP, count - s)
        xyzw = np.empty((n, 4), np.float64)
        if version >= 3:
            packed = packed_all[s:s + n].astype(np.uint32)
            largest = (packed >> np.uint32(30)).astype(np.intp)
            small = np.empty((n, 3), np.float64)
            for k, shift in enumerate((20, 10, 0)):
                field = packed >> np.uint32(shift)
                mag = (field & np.uint32(0x1FF)) * (_SQRT1_2 / 511.0)
                small[:, k] = np.where(field & np.uint32(0x200), -mag, mag)
            np.put_along_axis(xyzw, _OTHER_SLOTS[largest], small, axis=1)
            rebuilt = np.sqrt(np.maximum(0.0, 1.0 - (small * small).sum(axis=1)))
            np.put_along_axis(xyzw, largest[:, None], rebuilt[:, None], axis=1)
        else:
            xyz = bytes_all[s:s + n] / 127.5 - 1.0
            xyzw[:, :3] = xyz
            xyzw[:, 3] = np.sqrt(np.maximum(0.0, 1.0 - (xyz * xyz).sum(axis=1)))
        out[s:s + n] = np.stack([xyzw[:, 3], xyzw[:, 0], -xyzw[:, 1], -xyzw[:, 2]], axis=1)


def _decode_sh(raw, dim: int, out: np.ndarray) -> None:
    """out [N, K, 3] float32 ← SH block [N, dim, 3] (K = min(dim, 15)), RUB → RDF signs."""
    count, k = out.shape[:2]
    if not k:
        return
    codes = np.frombuffer(raw, np.uint8).reshape(count, dim, 3)
    step = max(1, 4 * _DECODE_STEP // (3 * dim))
    for s in range(0, count, step):
        np.take(_SH_TABLE, codes[s:s + step, :k], out=out[s:s + step])
    out *= SH_SIGNS_RUB_FROM_RDF[:k, None]


def _decode(blocks: Iterator, version: int, count: int, degree: int, frac_bits: int,
            source: str, report: Report) -> SplatSet:
    """Decode the six blocks one at a time straight into the result (a block is dropped as
    soon as it is decoded, so peak memory is the result plus one block)."""
    dim = _SH_DIMS[degree]
    if degree == 4:
        report({"WARNING"}, f"{source}: SH band 4 dropped (only bands up to 3 are supported)")
    out = SplatSet(
        positions=np.empty((count, 3), np.float32), log_scales=np.empty((count, 3), np.float32),
        rotations=np.empty((count, 4), np.float32), opacity_logits=np.empty(count, np.float32),
        sh_dc=np.empty((count, 3), np.float32),
        sh_rest=np.empty((count, min(dim, 15), 3), np.float32))
    _decode_positions(next(blocks), version, frac_bits, out.positions)
    _table_lookup(_ALPHA_TABLE, next(blocks), out.opacity_logits)
    _table_lookup(_COLOR_TABLE, next(blocks), out.sh_dc)
    _table_lookup(_SCALE_TABLE, next(blocks), out.log_scales)
    _decode_rotations(next(blocks), version, out.rotations)
    _decode_sh(next(blocks), dim, out.sh_rest)
    for _ in blocks:  # runs the stream's end checks (gzip CRC, trailing data)
        pass
    return out


def _read_spz(source: str, *, limits: ReadLimits, report: Report) -> tuple[SplatSet, bool]:
    """Read a Niantic .spz file (versions 1–3 gzip, version 4 zstd):
    ``read_spz(path, *, nonfinite="drop", limits=None, report=log_report)``.

    Args:
        path: the file.
        nonfinite: 'drop' or 'error' for splats with NaN/Inf (only possible from float16
            positions of version 1 files).
        limits: :class:`ReadLimits`: the claimed count and the expansion of the compressed
            data are checked before anything is inflated.
        report: ``report({'WARNING'}, msg)`` callback.
    Returns:
        SplatSet in the 3DGS (RDF) frame; SH degree 4 files lose band 4 (with a warning).
    Raises:
        GSError naming the file: bad magic, unknown version, truncated or oversized streams,
        a header inconsistent with the data, a failed zstd checksum, SH degree > 4, version 4
        without ``zstandard``, or a claim beyond ``limits``.
    """
    with open(source, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        header, blocks = _gzip_blocks(source, data, limits, report)
    elif len(data) >= 8 and struct.unpack_from("<II", data) in ((SPZ_MAGIC, 1), (SPZ_MAGIC, 2),
                                                                 (SPZ_MAGIC, 3)):
        header, blocks = _raw_blocks(source, data, limits, report)
    elif len(data) >= 4 and struct.unpack_from("<I", data)[0] == SPZ_MAGIC:
        header, blocks = _ngsp_blocks(source, data, limits, report)
    else:
        raise GSError(f"{source}: not an .spz file (neither gzip data nor an NGSP header)")
    version, count, degree, frac_bits, _flags = header
    splats = _decode(blocks, version, count, degree, frac_bits, source, report)
    return splats, version != 1  # every value of versions 2–4 is finite by construction


read_spz = splat_reader(_read_spz)


# ---------------------------------------------------------------------------------- writing
def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C++ std::round (halves away from zero), which the reference packer uses; exact in
    the input's dtype (np.rint rounds halves to even, so fix up the exact ties)."""
    r = np.rint(x)
    whole = np.trunc(x)
    tie = np.abs(x - whole) == 0.5
    if tie.any():
        r[tie] = (whole + np.sign(x))[tie]
    return r


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round_half_away(x), 0, 255).astype(np.uint8)


def _quantize_sh(values: np.ndarray, bits: int) -> np.ndarray:
    """Reference quantizeSH: 8-bit, then to the centre of 2^(8-bits)-wide buckets."""
    bucket = 1 << (8 - bits)
    q = _round_half_away(values.astype(np.float32) * np.float32(128.0)) + np.float32(128.0)
    q = np.floor((q + bucket // 2) / bucket) * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def _pack_smallest_three(xyzw: np.ndarray) -> np.ndarray:
    """[N, 4] unit (x, y, z, w) → [N] uint32 (reference packQuaternionSmallestThree)."""
    largest = np.argmax(np.abs(xyzw), axis=1)
    negate = np.take_along_axis(xyzw, largest[:, None], axis=1)[:, 0] < 0
    others = np.take_along_axis(xyzw, _OTHER_SLOTS[largest], axis=1)  # [N, 3]
    sign = (others < 0) ^ negate[:, None]
    mag = np.minimum(np.floor(511.0 * np.abs(others) / _SQRT1_2 + 0.5), 511).astype(np.uint32)
    fields = (sign.astype(np.uint32) << np.uint32(9)) | mag
    return ((largest.astype(np.uint32) << np.uint32(30)) | (fields[:, 0] << np.uint32(20))
            | (fields[:, 1] << np.uint32(10)) | fields[:, 2])


def _choose_fractional_bits(positions_rub: np.ndarray, requested: int | None,
                            source: str, report: Report) -> int:
    limit = (1 << 23) - 1
    extent = float(np.abs(positions_rub).max())
    if requested is not None:
        if not 0 <= requested <= 23:
            raise GSError(f"fractional_bits must be 0-23, got {requested}")
        if extent * (1 << requested) > limit:
            raise GSError(f"{source}: positions up to {extent:g} do not fit 24-bit fixed point "
                          f"with {requested} fractional bits")
        return requested
    bits = 12
    while bits > 0 and extent * (1 << bits) > limit:
        bits -= 1
    if extent > limit:
        raise GSError(f"{source}: positions up to {extent:g} are too large for .spz "
                      "(24-bit fixed point); scale the scene down")
    if bits < 12:
        report({"WARNING"}, f"{source}: positions reach {extent:g}, so .spz precision drops "
                            f"to {bits} fractional bits (step {2.0 ** -bits:g})")
    return bits


def _pack(splats: SplatSet, version: int, frac_bits: int | None, sh1_bits: int,
          sh_rest_bits: int, source: str, report: Report) -> tuple[bytes, list[bytes]]:
    """SplatSet → (header-less fields as a tuple for the caller, [six attribute blocks])."""
    n = splats.count
    flip = np.array([1.0, -1.0, -1.0])
    pos_rub = splats.positions.astype(np.float64) * flip
    bits = _choose_fractional_bits(pos_rub, frac_bits, source, report)
    fixed = _round_half_away(pos_rub * (1 << bits)).astype(np.int64) & 0xFFFFFF
    pos_block = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, fixed >> 16], axis=-1)
    pos_block = pos_block.astype(np.uint8).reshape(n, 9)

    alpha_block = _to_u8(splats.opacities() * 255.0)
    color_block = _to_u8(splats.sh_dc.astype(np.float64) * (_COLOR_SCALE * 255.0) + 127.5)
    scale_block = _to_u8((splats.log_scales.astype(np.float64) + 10.0) * 16.0)

    q = normalize_quat(splats.rotations.astype(np.float64))  # zero quaternion → identity
    xyzw = np.stack([q[:, 1], -q[:, 2], -q[:, 3], q[:, 0]], axis=1)  # RDF → RUB, xyzw
    if version >= 3:
        rot_block = _pack_smallest_three(xyzw).astype("<u4")
    else:
        xyzw = np.where(xyzw[:, 3:] < 0, -xyzw, xyzw)
        rot_block = _to_u8(xyzw[:, :3] * 127.5 + 127.5)

    k = splats.sh_rest.shape[1]
    sh = splats.sh_rest * SH_SIGNS_RUB_FROM_RDF[:k, None]  # [N, K, 3]
    sh_block = np.empty((n, k, 3), np.uint8)
    if k:
        sh_block[:, :3] = _quantize_sh(sh[:, :3], sh1_bits)
        sh_block[:, 3:] = _quantize_sh(sh[:, 3:], sh_rest_bits)
    blocks = [np.ascontiguousarray(b).tobytes() for b in
              (pos_block, alpha_block, color_block, scale_block, rot_block, sh_block)]
    return bits, blocks


def write_spz(path: str | os.PathLike, splats: SplatSet, *, version: int = 3,
              fractional_bits: int | None = None, sh1_bits: int = 5, sh_rest_bits: int = 4,
              compression_level: int | None = None, report: Report = log_report) -> None:
    """Write ``splats`` (3DGS/RDF frame) as .spz, converting to the file's RUB frame.

    Args:
        version: 3 (default; gzip, smallest-three rotations — read by every .spz loader),
            2 (gzip, older 8-bit rotations), or 4 (zstd streams; needs ``zstandard``).
        fractional_bits: fixed-point fraction bits of positions; None = 12 (the reference's
            value) unless the scene extent needs fewer (a warning says so).
        sh1_bits, sh_rest_bits: significant bits kept for SH band 1 and bands 2–3 (1–8;
            the reference defaults 5 and 4 help compression).
        compression_level: gzip level (default 1) or zstd level (default 3). The
            reference's 6 / 12 make files only 1-3 % smaller but write 6-15× slower.
    Raises:
        GSError for an empty set, non-finite values, or positions beyond 24-bit range.
    """
    source = os.fspath(path)
    if version not in (2, 3, 4):
        raise GSError(f"cannot write .spz version {version}; choose 2, 3 or 4")
    for name, value in (("sh1_bits", sh1_bits), ("sh_rest_bits", sh_rest_bits)):
        if not 1 <= value <= 8:
            raise GSError(f"{name} must be 1-8, got {value}")
    splats.validate(name=source)
    if splats.count == 0:
        raise GSError(f"{source}: no splats to write (.spz loaders reject empty files)")
    bad = ~splats.finite_mask()
    if bad.any():
        raise GSError(f"{source}: {int(bad.sum()):,} of {splats.count:,} splats have NaN or "
                      "infinite values; drop them before writing")
    if splats.extra:
        report({"WARNING"}, f"{source}: .spz cannot store the extra properties "
                            + ", ".join(sorted(splats.extra)))
    zstandard = _load_zstandard(source) if version == 4 else None
    bits, blocks = _pack(splats, version, fractional_bits, sh1_bits, sh_rest_bits, source,
                         report)
    degree = splats.sh_degree
    if version == 4:
        # Checksums: without them a corrupted stream decodes silently (gzip has its CRC).
        compressor = zstandard.ZstdCompressor(
            level=3 if compression_level is None else compression_level, write_checksum=True)
        streams = [compressor.compress(b) for b in blocks if b]
        toc = b"".join(struct.pack("<QQ", len(c), len(b))
                       for c, b in zip(streams, [b for b in blocks if b]))
        header = _NGSP_HEADER.pack(SPZ_MAGIC, 4, splats.count, degree, bits, 0, len(streams),
                                   _NGSP_HEADER.size)
        parts = [header, toc, *streams]
    else:
        header = _LEGACY_HEADER.pack(SPZ_MAGIC, version, splats.count, degree, bits, 0, 0)
        deflater = zlib.compressobj(1 if compression_level is None else compression_level,
                                    zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [deflater.compress(header)]
        parts += [deflater.compress(b) for b in blocks]
        parts.append(deflater.flush())
    try:
        with open(source, "wb") as fh:
            for part in parts:
                fh.write(part)
    except OSError as err:
        raise GSError.from_os_error(source, err, "write") from None
