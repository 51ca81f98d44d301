"""PlayCanvas SOG (Spatially Ordered Gaussians), version 2: read and write.

The details: docs/architecture.md, "Format: PlayCanvas SOG".
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from .. import __version__
from ..errors import GSError, Report, log_report
from ..quaternions import normalize_quat
from ..sh import coeffs_for_degree
from ..splats import SplatSet
from .codebooks import codebook_error, scalar_codebook, vector_palette
from .compressed_ply import morton_order
from .image_bundle import ImageBundle, encode_webp, write_bundle
from .reader_contract import ReadLimits, splat_reader

__all__ = ["read_sog", "write_sog", "SOG_VERSION", "texture_shape", "default_palette_size"]

SOG_VERSION = 2
META_NAME = "meta.json"
_MAX_TEXELS = 16383  # WebP's largest width/height
_PALETTE_WIDTH = 64  # palette entries per row of shN_centroids
_ALPHA_EDGE = 0.25 / 255.0
_SQRT2 = math.sqrt(2.0)
_OTHER_SLOTS = np.array([[j for j in range(4) if j != i] for i in range(4)], dtype=np.intp)
_SECTIONS = {"means": 2, "scales": 1, "quats": 1, "sh0": 1}  # section → image files


def texture_shape(count: int) -> tuple[int, int]:
    """(width, height) of the per-splat images for ``count`` splats (splat-transform's rule)."""
    width = max(4, math.ceil(math.sqrt(count) / 4) * 4)
    return width, max(4, math.ceil(count / width / 4) * 4)


def default_palette_size(count: int) -> int:
    """SH palette entries for ``count`` splats: 1024 per 1024 splats, as a power of two,
    between 64 and 65536 (splat-transform's rule)."""
    return int(min(64.0, 2.0 ** math.floor(math.log2(max(count, 1) / 1024))) * 1024)


# ---------------------------------------------------------------------------------- reading
def _section(meta: dict, name: str, source: str) -> dict:
    value = meta.get(name)
    if not isinstance(value, dict):
        raise GSError(f"{source}: meta.json lacks the '{name}' section")
    files = value.get("files")
    wanted = _SECTIONS.get(name, 2)
    if (not isinstance(files, list) or len(files) < wanted
            or not all(isinstance(f, str) for f in files[:wanted])):
        raise GSError(f"{source}: meta.json '{name}.files' must name {wanted} image file(s)")
    return value


def _numbers(section: dict, key: str, where: str, source: str, *, length: int | None = None
             ) -> np.ndarray:
    """A list of finite numbers from meta.json as float64 (length checked when given)."""
    value = section.get(key)
    ok = isinstance(value, list) and value and (length is None or len(value) == length)
    if ok:
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    array = np.asarray(value, dtype=np.float64) if ok else None
    if array is None or not (np.abs(array) <= np.finfo(np.float32).max).all() \
            or (length is None and len(array) > 65536):
        size = f"{length} " if length else ""
        raise GSError(f"{source}: meta.json '{where}.{key}' must be a list of {size}finite "
                      "float32 numbers")
    return array


def _read_meta(bundle: ImageBundle, source: str, limits: ReadLimits) -> tuple[dict, int]:
    """meta.json and its splat count, checked against ``limits`` with what the count decodes
    to (values and per-splat images) against the bytes the bundle stores."""
    meta = bundle.read_json()
    version = meta.get("version")
    if version is None:
        raise GSError(f"{source}: meta.json has no 'version': a legacy SOG (version 1), which "
                      "this reader does not support; convert it with a newer splat-transform")
    if version != SOG_VERSION:
        raise GSError(f"{source}: SOG version {version!r} is not supported: this reader knows "
                      f"version {SOG_VERSION}, which every PlayCanvas tool reads and writes "
                      "(no specification of a later version was available to implement it "
                      "from); save the "
                      f"file as SOG version {SOG_VERSION} with the tool that made it")
    count = meta.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise GSError(f"{source}: meta.json 'count' must be a positive integer, got {count!r}")
    limits.check_count(count, source=source)
    shn = meta.get("shN") if isinstance(meta.get("shN"), dict) else {}
    bands = shn.get("bands") if shn.get("bands") in (1, 2, 3) else 0
    images = len(_SECTIONS) + 1 + (1 if bands else 0)  # means has two
    names = [f for section in meta.values() if isinstance(section, dict)
             for f in (section.get("files") if isinstance(section.get("files"), list) else [])
             if isinstance(f, str)][:16]
    limits.check_claim(count, bytes_per_splat=4 * (14 + 3 * coeffs_for_degree(bands) + images),
                       available=bundle.stored_size(names), compressed=True, source=source)
    return meta, count


def _image(bundle: ImageBundle, name: str, max_pixels: int, *, need: int, what: str
           ) -> np.ndarray:
    """[W·H, 4] uint8 texels of one image, checked to hold at least ``need`` texels."""
    pixels = bundle.image(name, byte_limit=8 * max_pixels + 65536, max_pixels=max_pixels)
    if pixels.shape[0] * pixels.shape[1] < need:
        raise GSError(f"{bundle.source}: {name} ({what}) has {pixels.shape[1]}x"
                      f"{pixels.shape[0]} pixels, too few for {need:,} entries")
    return pixels.reshape(-1, 4)


def _lookup(codebook: np.ndarray, index: np.ndarray, what: str, source: str) -> np.ndarray:
    if index.size and int(index.max()) >= len(codebook):
        raise GSError(f"{source}: {what} refers to codebook entry {int(index.max())}, but the "
                      f"codebook has {len(codebook)}")
    return codebook.astype(np.float32)[index]


def _decode_means(lo: np.ndarray, hi: np.ndarray, section: dict, source: str) -> np.ndarray:
    mins = _numbers(section, "mins", "means", source, length=3)
    maxs = _numbers(section, "maxs", "means", source, length=3)
    q = lo[:, :3].astype(np.float64) + 256.0 * hi[:, :3]  # [N, 3] 16-bit
    span = np.where(maxs - mins == 0, 1.0, maxs - mins)
    log_pos = mins + span * (q / 65535.0)
    with np.errstate(over="ignore"):
        return (np.sign(log_pos) * np.expm1(np.abs(log_pos))).astype(np.float32)


def _decode_quats(q: np.ndarray, source: str) -> np.ndarray:
    """[N, 4] uint8 → [N, 4] float32 (w, x, y, z)."""
    tag = q[:, 3].astype(np.intp) - 252
    bad = (tag < 0).sum()
    if bad:
        raise GSError(f"{source}: {bad:,} splats in the quats image have no valid "
                      "largest-component tag (alpha 252-255)")
    small = (q[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / _SQRT2  # [N, 3]
    out = np.empty((len(q), 4), np.float64)
    np.put_along_axis(out, _OTHER_SLOTS[tag], small, axis=1)
    largest = np.sqrt(np.maximum(0.0, 1.0 - (small * small).sum(axis=1)))
    np.put_along_axis(out, tag[:, None], largest[:, None], axis=1)
    return out.astype(np.float32)


def _quats_of_count(bundle: ImageBundle, section: dict, count: int, limit: int,
                    report: Report) -> np.ndarray:
    """[count, 4] quats texels; a WARNING when texels after ``count`` hold splats too (writers
    leave that padding empty, so the count is likely wrong: the reader cannot tell more)."""
    texels = _image(bundle, section["files"][0], limit, need=count, what="quats")
    beyond = int((texels[count:, 3] >= 252).sum())
    if beyond:
        report({"WARNING"}, f"{bundle.source}: meta.json 'count' is {count:,}, but the quats "
                            f"image holds {beyond:,} more splats after them (a wrong count?); "
                            f"read {count:,}")
    return texels[:count]


def _decode_sh(bundle: ImageBundle, meta: dict, count: int, limit: int, source: str
               ) -> np.ndarray:
    """[N, K, 3] SH bands from the palette, or [N, 0, 3] without a ``shN`` section."""
    shn = meta.get("shN")
    if shn is None or (isinstance(shn, dict) and shn.get("bands") == 0):
        return np.zeros((count, 0, 3), np.float32)
    section = _section(meta, "shN", source)
    bands, entries = section.get("bands"), section.get("count")
    if bands not in (1, 2, 3):
        raise GSError(f"{source}: meta.json 'shN.bands' must be 1, 2 or 3, got {bands!r}")
    if not isinstance(entries, int) or isinstance(entries, bool) or not 1 <= entries <= 65536:
        raise GSError(f"{source}: meta.json 'shN.count' must be 1-65536, got {entries!r}")
    k = coeffs_for_degree(bands)
    codebook = _numbers(section, "codebook", "shN", source)
    rows = -(-entries // _PALETTE_WIDTH)
    cen = bundle.image(section["files"][0], byte_limit=8 * _PALETTE_WIDTH * k * rows + 65536,
                       max_pixels=_PALETTE_WIDTH * k * rows)
    if cen.shape[1] != _PALETTE_WIDTH * k:
        raise GSError(f"{source}: {section['files'][0]} is {cen.shape[1]} pixels wide; an SH "
                      f"palette of degree {bands} needs {_PALETTE_WIDTH * k}")
    available = min(entries, cen.shape[0] * _PALETTE_WIDTH)
    lab = _image(bundle, section["files"][1], limit, need=count, what="SH labels")[:count]
    labels = lab[:, 0].astype(np.int64) | (lab[:, 1].astype(np.int64) << 8)
    if int(labels.max()) >= available:
        raise GSError(f"{source}: shN labels refer to palette entry {int(labels.max())}, but "
                      f"the palette has {available}")
    table = cen[:, :, :3].reshape(-1, k, 3)[:available]  # [E, K, 3] codebook indices
    palette = _lookup(codebook, table, "shN_centroids", source)
    return palette[labels]


def _read_sog(source: str, *, limits: ReadLimits, report: Report) -> tuple[SplatSet, bool]:
    """Read a SOG, a ``.sog`` zip bundle or a ``meta.json`` with its images beside it:
    ``read_sog(path, *, nonfinite="drop", limits=None, report=log_report)``.

    Args:
        nonfinite: 'drop' or 'error' for splats decoded as NaN/Inf (only positions whose
            stored range overflows float32 can be).
        limits: :class:`ReadLimits` checked before anything is decompressed (module docstring).
    Returns:
        SplatSet in the 3DGS frame, in file (Morton) order.
    Raises:
        GSError naming the file: not a SOG, unsupported version, bad or missing fields,
        images too small for the count or larger than it can need, indices out of range, a
        claim beyond ``limits``.
    """
    expect_zip = not source.lower().endswith(".json")
    with ImageBundle(source, json_name=META_NAME, expect_zip=expect_zip,
                     limits=limits) as bundle:
        meta, count = _read_meta(bundle, source, limits)
        if meta.get("model") not in (None, "default"):
            report({"WARNING"}, f"{source}: splat model {meta['model']!r} is read as ordinary "
                                "3D Gaussians")
        sections = {name: _section(meta, name, source) for name in _SECTIONS}
        limit = 4 * count + 65536  # texels: writers pad the images to a multiple of 4 rows

        def per_splat(name: str, index: int = 0) -> np.ndarray:
            return _image(bundle, sections[name]["files"][index], limit, need=count,
                          what=name)[:count]

        positions = _decode_means(per_splat("means", 0), per_splat("means", 1),
                                  sections["means"], source)
        rotations = _decode_quats(_quats_of_count(bundle, sections["quats"], count, limit,
                                                  report), source)
        scales = per_splat("scales")
        log_scales = _lookup(_numbers(sections["scales"], "codebook", "scales", source),
                             scales[:, :3], "scales", source)
        sh0 = per_splat("sh0")
        sh_dc = _lookup(_numbers(sections["sh0"], "codebook", "sh0", source), sh0[:, :3],
                        "sh0", source)
        alpha = np.clip(sh0[:, 3] / 255.0, _ALPHA_EDGE, 1.0 - _ALPHA_EDGE)
        sh_rest = _decode_sh(bundle, meta, count, limit, source)
    splats = SplatSet(positions=positions, log_scales=log_scales, rotations=rotations,
                      opacity_logits=np.log(alpha / (1.0 - alpha)).astype(np.float32),
                      sh_dc=sh_dc, sh_rest=sh_rest)
    return splats, False  # positions can overflow float32: the wrapper scans


read_sog = splat_reader(_read_sog)


# ---------------------------------------------------------------------------------- writing
def _texels(rows: np.ndarray, width: int, height: int, fill_alpha: int = 255) -> np.ndarray:
    """[N, c] uint8 per-splat values → [H, W, 4] image (unused texels zero, alpha filled)."""
    image = np.zeros((width * height, 4), np.uint8)
    image[:, 3] = fill_alpha
    image[:len(rows), :rows.shape[1]] = rows
    return image.reshape(height, width, 4)


def _encode_means(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """[N, 3] → (low bytes [N, 3], high bytes [N, 3], meta section without files)."""
    log_pos = np.sign(positions.astype(np.float64)) * np.log1p(np.abs(positions))
    mins, maxs = log_pos.min(axis=0), log_pos.max(axis=0)
    span = maxs - mins
    t = np.where(span > 0, (log_pos - mins) / np.where(span > 0, span, 1.0), 0.0)
    q = np.clip(np.rint(t * 65535.0), 0, 65535).astype(np.uint16)
    return ((q & 0xFF).astype(np.uint8), (q >> 8).astype(np.uint8),
            {"mins": mins.tolist(), "maxs": maxs.tolist()})


def _encode_quats(rotations: np.ndarray) -> np.ndarray:
    """[N, 4] (w, x, y, z) → [N, 4] uint8 (three components, 252 + largest index)."""
    q = normalize_quat(rotations.astype(np.float64))
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(np.take_along_axis(q, largest[:, None], axis=1) < 0, -q, q)
    others = np.take_along_axis(q, _OTHER_SLOTS[largest], axis=1)  # [N, 3]
    packed = np.clip(np.rint(255.0 * (others * _SQRT2 * 0.5 + 0.5)), 0, 255)
    return np.concatenate([packed, 252 + largest[:, None]], axis=1).astype(np.uint8)


def _encode_sh(rest: np.ndarray, palette_size: int, iterations: int, seed: int
               ) -> tuple[np.ndarray, np.ndarray, dict, float]:
    """[N, K, 3] → (labels [N, 2] uint8, centroids image, meta section, RMS error)."""
    n, k = rest.shape[:2]
    vectors = rest.reshape(n, 3 * k)
    centroids, labels = vector_palette(vectors, palette_size, iterations=iterations, seed=seed)
    codebook, index = scalar_codebook(centroids)  # index: [E, 3K] uint8
    entries = len(centroids)
    rows = -(-entries // _PALETTE_WIDTH)
    image = np.zeros((rows * _PALETTE_WIDTH * k, 4), np.uint8)
    image[:, 3] = 255
    image[:entries * k, :3] = index.reshape(entries * k, 3)
    table = codebook[index]  # [E, 3K] the palette as it will decode
    squares = sum(float(np.square(table[labels[i:i + 65536]] - vectors[i:i + 65536],
                                  dtype=np.float64).sum()) for i in range(0, n, 65536))
    rms = math.sqrt(squares / vectors.size)
    label_bytes = np.stack([labels & 0xFF, labels >> 8], axis=1).astype(np.uint8)
    section = {"count": entries, "bands": {3: 1, 8: 2, 15: 3}[k],
               "codebook": codebook.astype(np.float64).tolist()}
    return label_bytes, image.reshape(rows, _PALETTE_WIDTH * k, 4), section, rms


def _check_writable(splats: SplatSet, source: str) -> None:
    if splats.count == 0:
        raise GSError(f"{source}: no splats to write")
    splats.validate(name=source, require_finite=True)
    width, height = texture_shape(splats.count)
    if max(width, height) > _MAX_TEXELS:
        raise GSError(f"{source}: {splats.count:,} splats need {width}x{height} images, more "
                      f"than WebP's {_MAX_TEXELS} pixel limit")


def write_sog(path: str | os.PathLike, splats: SplatSet, *, palette_size: int | None = None,
              iterations: int = 10, seed: int = 0, webp_effort: int = 1,
              report: Report = log_report) -> None:
    """Write a SOG version 2: a ``.sog`` zip, or ``…meta.json`` with the images beside it.

    Args:
        palette_size: SH palette entries (≤ 65536); None = :func:`default_palette_size`.
        iterations: k-means iterations of the SH palette (per level).
        seed: seed of the palette's k-means; the same seed gives the same file.
        webp_effort: 0-6, lossless WebP effort (1 is fast; 6 makes files ~5 % smaller).
    Raises:
        GSError for an empty set, NaN/Inf values, or more splats than WebP images can hold.
    """
    source = os.fspath(path)
    _check_writable(splats, source)
    palette = default_palette_size(splats.count) if palette_size is None else palette_size
    if not 1 <= palette <= 65536:
        raise GSError(f"SOG palette size must be 1-65536, got {palette}")
    if splats.extra:
        report({"WARNING"}, f"{source}: SOG cannot store the extra properties "
                            + ", ".join(sorted(splats.extra)))
    order = morton_order(splats.positions)
    s = splats.subset(order)
    width, height = texture_shape(s.count)
    images, meta = _encode_images(s, width, height, palette, iterations, seed, source, report)
    files = {name: encode_webp(pixels, effort=webp_effort) for name, pixels in images.items()}
    files[META_NAME] = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    zipped = not source.lower().endswith(".json")
    write_bundle(source, files, zipped=zipped, json_name=META_NAME)


def _encode_images(s: SplatSet, width: int, height: int, palette: int, iterations: int,
                   seed: int, source: str, report: Report) -> tuple[dict, dict]:
    """Morton-ordered set → ({file name: [H, W, 4] image}, meta.json content)."""
    lo, hi, means = _encode_means(s.positions)
    scale_book, scale_index = scalar_codebook(s.log_scales)
    dc_book, dc_index = scalar_codebook(s.sh_dc)
    alpha = np.clip(np.rint(s.opacities() * 255.0), 0, 255).astype(np.uint8)
    images = {
        "means_l.webp": _texels(lo, width, height),
        "means_u.webp": _texels(hi, width, height),
        # padding with tag 0 (no splat), as splat-transform pads: a count too large is an error
        "quats.webp": _texels(_encode_quats(s.rotations), width, height, fill_alpha=0),
        "scales.webp": _texels(scale_index, width, height),
        "sh0.webp": _texels(np.concatenate([dc_index, alpha[:, None]], axis=1), width, height),
    }
    meta = {
        "version": SOG_VERSION, "asset": {"generator": f"blender_gs_addon {__version__}"},
        "count": s.count,
        "means": {**means, "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": scale_book.astype(np.float64).tolist(), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": dc_book.astype(np.float64).tolist(), "files": ["sh0.webp"]},
    }
    message = (f"{source}: codebook errors: log-scale ≤ "
               f"{codebook_error(s.log_scales, scale_book, scale_index):.3g}, SH DC ≤ "
               f"{codebook_error(s.sh_dc, dc_book, dc_index):.3g}")
    if s.sh_degree:
        labels, centroids, shn, rms = _encode_sh(s.sh_rest, palette, iterations, seed)
        images["shN_centroids.webp"] = centroids
        images["shN_labels.webp"] = _texels(labels, width, height)
        meta["shN"] = {**shn, "files": ["shN_centroids.webp", "shN_labels.webp"]}
        message += f", SH bands RMS {rms:.3g} ({shn['count']:,}-entry palette)"
    report({"INFO"}, message)
    return images, meta
