"""glTF 2.0 Gaussian splats (KHR_gaussian_splatting): ``.glb`` and ``.gltf`` + ``.bin``.

The details: docs/architecture.md, "Format: glTF KHR_gaussian_splatting".
"""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
import urllib.parse
from pathlib import Path
from typing import Literal

import numpy as np

from .. import __version__
from ..conventions.frames import GLTF_FROM_RDF
from ..errors import GSError, Report, log_report
from ..quaternions import matrix_to_quat, normalize_quat, quat_multiply, quat_to_matrix
from ..sh import SH_C0, rotate_sh_rest, sh_basis
from ..splats import SplatSet, concatenate, split_similarity
from .reader_contract import ReadLimits, splat_reader

__all__ = ["read_gltf", "write_gltf", "EXTENSION_NAME"]

EXTENSION_NAME = "KHR_gaussian_splatting"
_MAX_BUFFER_FILES = 256  # buffer files whose sizes count as stored data (see _stored_bytes)
_PREFIX = EXTENSION_NAME + ":"
_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
_COMPONENTS = {5120: np.dtype("i1"), 5121: np.dtype("u1"), 5122: np.dtype("<i2"),
               5123: np.dtype("<u2"), 5125: np.dtype("<u4"), 5126: np.dtype("<f4")}
_TYPES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_INTS = {(c, norm) for c in (5120, 5121, 5122, 5123) for norm in (False, True)}
# semantic → (accessor type, allowed (componentType, normalized) pairs)
_ATTRIBUTES = {
    "POSITION": ("VEC3", {(5126, False)} | _INTS),  # ints: KHR_mesh_quantization
    "ROTATION": ("VEC4", {(5126, False), (5120, True), (5122, True)}),
    "SCALE": ("VEC3", {(5126, False), (5121, False), (5121, True), (5123, False),
                       (5123, True)}),
    "OPACITY": ("SCALAR", {(5126, False), (5121, True), (5123, True)}),
    "SH": ("VEC3", {(5126, False)}),
    "COLOR_0": ("VEC4", {(5126, False), (5121, True), (5123, True)}),
}
_SUPPORTED_REQUIRED = {EXTENSION_NAME, "KHR_mesh_quantization"}
_OPACITY_EDGE = 2.0 ** -24
_MIN_SCALE = 1e-30  # a zero scale (a flat splat) is kept as this, log −69
_FLIP = np.diag([*GLTF_FROM_RDF.diagonal(), 1.0])  # [4, 4]; a half turn, its own inverse
_SH_DEGREES = {1: 3, 2: 5, 3: 7}


def _frame_sh_signs() -> np.ndarray:
    """[15] ±1: the frame turn (diagonal) multiplies each SH basis function by ±1. The colour
    seen along d afterwards is the colour seen along M·d before (M is its own inverse), so
    each coefficient scales by Y(M·d)/Y(d) at any direction d where Y(d) ≠ 0."""
    d = np.array([0.36, 0.48, 0.8])
    basis = sh_basis(np.stack([d, GLTF_FROM_RDF @ d]), 3)[:, 1:]
    return np.rint(basis[1] / basis[0]).astype(np.float32)


def _signed_permutation(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices [4], signs [4]) with q ⊗ p = p[:, indices] · signs for a unit quaternion q
    along one axis (a half turn): left multiplication by it permutes and negates components,
    which is exact in float32."""
    rows = quat_multiply(q, np.eye(4))  # row j: q ⊗ e_j
    indices = np.abs(rows).argmax(axis=0)
    return indices, rows[indices, np.arange(4)].astype(np.float32)


_SH_SIGNS = _frame_sh_signs()
_HALF_TURN = matrix_to_quat(GLTF_FROM_RDF)  # (w, x, y, z) of the frame change
_TO_GLTF = _signed_permutation(_HALF_TURN)
_FROM_GLTF = _signed_permutation(_HALF_TURN * [1.0, -1.0, -1.0, -1.0])  # the inverse turn


def _change_frame(splats: SplatSet, *, to_gltf: bool, sh: bool = True) -> SplatSet:
    """3DGS ↔ glTF frame: sign flips and a quaternion permutation, exact in float32 (the
    quaternion turns by q_M ⊗ q to glTF and by q_M⁻¹ ⊗ q back, so a round trip returns the
    same quaternion, not its negative). SH bands are flipped in place (the reader owns them)
    unless ``sh`` is False (the writer flips each coefficient as it stores it)."""
    indices, signs = _TO_GLTF if to_gltf else _FROM_GLTF
    if sh:
        splats.sh_rest *= _SH_SIGNS[:splats.sh_rest.shape[1], None]
    return SplatSet(
        positions=splats.positions * GLTF_FROM_RDF.diagonal().astype(np.float32),
        log_scales=splats.log_scales, rotations=splats.rotations[:, indices] * signs,
        opacity_logits=splats.opacity_logits, sh_dc=splats.sh_dc, sh_rest=splats.sh_rest,
        extra=dict(splats.extra))


# ---------------------------------------------------------------------------------- container
def _parse_glb(data: bytes, source: str) -> tuple[dict, bytes | None]:
    if len(data) < 20:
        raise GSError(f"{source}: file too short for a GLB header")
    magic, version, length = struct.unpack_from("<III", data)
    if magic != _GLB_MAGIC:
        raise GSError(f"{source}: not a GLB file (bad magic)")
    if version != 2:
        raise GSError(f"{source}: GLB version {version} is not supported (glTF 2.0 only)")
    if length > len(data):
        raise GSError(f"{source}: GLB header says {length:,} bytes but the file has "
                      f"{len(data):,} (truncated)")
    chunks, offset = [], 12
    while offset + 8 <= length:
        size, kind = struct.unpack_from("<II", data, offset)
        if size > length - offset - 8:
            raise GSError(f"{source}: GLB chunk at byte {offset} ({size:,} bytes) runs past "
                          "the end of the file")
        chunks.append((kind, memoryview(data)[offset + 8:offset + 8 + size]))  # no copy
        offset += 8 + size
    if not chunks or chunks[0][0] != _JSON_CHUNK:
        raise GSError(f"{source}: GLB file does not start with a JSON chunk")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == _BIN_CHUNK else None
    return _parse_json(bytes(chunks[0][1]), source), binary


def _parse_json(text: bytes, source: str) -> dict:
    try:
        doc = json.loads(text.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise GSError(f"{source}: glTF JSON is not valid ({err})") from None
    if not isinstance(doc, dict):
        raise GSError(f"{source}: glTF JSON must be an object")
    version = str(doc.get("asset", {}).get("version", "")) if isinstance(
        doc.get("asset"), dict) else ""
    if not version.startswith("2."):
        raise GSError(f"{source}: not a glTF 2.0 asset (asset.version {version or 'missing'})")
    required = doc.get("extensionsRequired", [])
    missing = [e for e in required if e not in _SUPPORTED_REQUIRED] if isinstance(
        required, list) else ["(malformed extensionsRequired)"]
    if missing:
        raise GSError(f"{source}: requires glTF extension(s) {', '.join(map(str, missing))}, "
                      "which this reader does not support")
    return doc


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Document:
    """A parsed glTF: JSON plus lazily loaded buffers, with checked element access."""

    def __init__(self, source: str, doc: dict, binary: bytes | memoryview | None):
        self.source, self.doc, self.binary = source, doc, binary
        self.folder = os.path.dirname(os.path.abspath(source))
        self._buffers: dict[int, bytes | memoryview] = {}

    def item(self, kind: str, index, what: str) -> dict:
        items = self.doc.get(kind)
        if not _is_int(index) or not isinstance(items, list) or not 0 <= index < len(items) \
                or not isinstance(items[index], dict):
            raise GSError(f"{self.source}: {what} refers to {kind}[{index!r}], which does not "
                          "exist")
        return items[index]

    def buffer(self, index: int) -> bytes | memoryview:
        if index not in self._buffers:
            info = self.item("buffers", index, "a buffer view")
            declared = info.get("byteLength")
            if not _is_int(declared) or declared < 0:
                raise GSError(f"{self.source}: buffers[{index}] has a bad byteLength "
                              f"{declared!r}")
            data = self._load_buffer(index, info, declared)
            if declared > len(data):
                raise GSError(f"{self.source}: buffers[{index}] declares byteLength "
                              f"{declared:,} but holds {len(data):,} bytes")
            self._buffers[index] = data
        return self._buffers[index]

    def _load_buffer(self, index: int, info: dict, declared: int) -> bytes | memoryview:
        uri = info.get("uri")
        if uri is None:
            if index != 0 or self.binary is None:
                raise GSError(f"{self.source}: buffers[{index}] has no uri and there is no "
                              "GLB binary chunk for it")
            return self.binary
        if not isinstance(uri, str):
            raise GSError(f"{self.source}: buffers[{index}].uri must be a string")
        if uri.startswith("data:"):
            head, _, payload = uri.partition(",")
            if not head.endswith(";base64"):
                raise GSError(f"{self.source}: buffers[{index}] data URI is not base64")
            try:
                return base64.b64decode(payload, validate=True)
            except ValueError:
                raise GSError(f"{self.source}: buffers[{index}] has a corrupt base64 data "
                              "URI") from None
        path = urllib.parse.unquote(uri)
        if "://" in uri or os.path.isabs(path) or "\0" in path:
            raise GSError(f"{self.source}: buffers[{index}] points to {uri!r}; only files "
                          "next to the .gltf (relative paths) are read")
        try:
            with open(os.path.join(self.folder, path), "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise GSError(f"{self.source}: buffer {path!r} is not a regular file")
                return fh.read(declared)  # the file may be longer; never read past the buffer
        except OSError as err:
            raise GSError(f"{self.source}: cannot read buffer file {path!r} "
                          f"({err.strerror or err})") from None


# ---------------------------------------------------------------------------------- accessors
def _view_bytes(doc: _Document, view_index, what: str
                ) -> tuple[bytes | memoryview, int, int, int | None]:
    """(buffer, start, length, byteStride) of a buffer view, checked to lie in its buffer."""
    view = doc.item("bufferViews", view_index, what)
    offset, length = view.get("byteOffset", 0), view.get("byteLength")
    stride = view.get("byteStride")
    if not _is_int(offset) or not _is_int(length) or offset < 0 or length < 0 \
            or (stride is not None and (not _is_int(stride) or stride <= 0)):
        raise GSError(f"{doc.source}: bufferViews[{view_index}] has a bad byteOffset, "
                      "byteLength or byteStride")
    data = doc.buffer(view.get("buffer"))
    if offset + length > len(data):
        raise GSError(f"{doc.source}: bufferViews[{view_index}] ({offset:,} + {length:,} "
                      f"bytes) overruns its buffer of {len(data):,} bytes")
    return data, offset, length, stride


def _strided(doc: _Document, view_index, offset, count: int, width: int, dtype: np.dtype,
             what: str, *, packed: bool = False) -> np.ndarray:
    """[count, width] elements of ``dtype`` read from a buffer view, bounds-checked."""
    data, start, length, stride = _view_bytes(doc, view_index, what)
    element = width * dtype.itemsize
    stride = element if packed or stride is None else stride
    if not _is_int(offset) or offset < 0 or stride < element:
        raise GSError(f"{doc.source}: {what} has a bad byteOffset or a byteStride smaller "
                      "than its element")
    need = offset + stride * (count - 1) + element if count else 0
    if need > length:
        raise GSError(f"{doc.source}: {what} needs {need:,} bytes of bufferViews"
                      f"[{view_index}], which has {length:,} (accessor overruns its buffer view)")
    return np.ndarray((count, width), dtype=dtype, buffer=data, offset=start + offset,
                      strides=(stride, dtype.itemsize))


def _accessor(doc: _Document, index, semantic: str, key: str, count: int | None = None
              ) -> np.ndarray:
    """[count, width] float32 values of an attribute accessor (normalised ints scaled)."""
    what = f"accessor {index!r} ({semantic})"
    acc = doc.item("accessors", index, semantic)
    kind, allowed = _ATTRIBUTES[key]
    component, normalized = acc.get("componentType"), acc.get("normalized", False) is True
    if acc.get("type") != kind or not _is_int(component) or (component, normalized) not in allowed:
        raise GSError(f"{doc.source}: {what} is {acc.get('type')!r} of component type "
                      f"{component!r}{' normalized' if normalized else ''}; "
                      f"KHR_gaussian_splatting allows {kind} of {_allowed_words(allowed)}")
    n = acc.get("count")
    if not _is_int(n) or n < 0 or (count is not None and n != count):
        raise GSError(f"{doc.source}: {what} has count {n!r}, expected {count}")
    dtype, width = _COMPONENTS[component], _TYPES[kind]
    if "bufferView" in acc:
        raw = _strided(doc, acc["bufferView"], acc.get("byteOffset", 0), n, width, dtype, what)
        values = raw.astype(np.float32)
    else:
        values = np.zeros((n, width), np.float32)
    if "sparse" in acc:
        _apply_sparse(doc, acc["sparse"], values, width, dtype, what)
    if normalized:
        top = float(np.iinfo(dtype).max)
        values /= top
        if dtype.kind == "i":
            np.maximum(values, -1.0, out=values)
    return values


def _apply_sparse(doc: _Document, sparse, values: np.ndarray, width: int, dtype: np.dtype,
                  what: str) -> None:
    """Overwrite the rows a sparse accessor lists (indices strictly increasing, < count)."""
    if not isinstance(sparse, dict) or not isinstance(sparse.get("indices"), dict) \
            or not isinstance(sparse.get("values"), dict):
        raise GSError(f"{doc.source}: {what} has a malformed 'sparse' object")
    n, idx_info, val_info = sparse.get("count"), sparse["indices"], sparse["values"]
    if not _is_int(n) or not 1 <= n <= len(values) or \
            idx_info.get("componentType") not in (5121, 5123, 5125):
        raise GSError(f"{doc.source}: {what} has a bad sparse count or index type")
    rows = _strided(doc, idx_info.get("bufferView"), idx_info.get("byteOffset", 0), n, 1,
                    _COMPONENTS[idx_info["componentType"]], what + " sparse indices",
                    packed=True)[:, 0].astype(np.int64)
    if rows.max() >= len(values) or (np.diff(rows) <= 0).any():
        raise GSError(f"{doc.source}: {what} sparse indices must be increasing and < "
                      f"{len(values)}")
    values[rows] = _strided(doc, val_info.get("bufferView"), val_info.get("byteOffset", 0), n,
                            width, dtype, what + " sparse values", packed=True)


def _allowed_words(allowed: set) -> str:
    names = {5120: "byte", 5121: "unsigned byte", 5122: "short", 5123: "unsigned short",
             5126: "float"}
    return ", ".join(sorted(("normalized " if norm else "") + names[c] for c, norm in allowed))


# ---------------------------------------------------------------------------------- scene
def _node_matrix(node: dict, index: int, source: str) -> np.ndarray:
    """[4, 4] local matrix of a node (``matrix`` column-major, or T·R·S)."""
    try:
        if "matrix" in node:
            m = np.asarray(node["matrix"], dtype=np.float64)
            if m.shape != (16,):
                raise ValueError("matrix must have 16 numbers")
            return m.reshape(4, 4).T
        t = np.asarray(node.get("translation", [0, 0, 0]), dtype=np.float64).reshape(3)
        x, y, z, w = np.asarray(node.get("rotation", [0, 0, 0, 1]), dtype=np.float64).reshape(4)
        s = np.asarray(node.get("scale", [1, 1, 1]), dtype=np.float64).reshape(3)
    except (ValueError, TypeError) as err:
        raise GSError(f"{source}: nodes[{index}] has a malformed transform ({err})") from None
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(np.array([w, x, y, z])) * s[None, :]
    out[:3, 3] = t
    return out


class _Instances:
    """The nodes that show a mesh in the scene: ``meshes`` lists (mesh index, slot); world
    matrices are computed on demand (:meth:`world`), so a scene can be counted — and refused —
    before a matrix is built for each of its nodes."""

    def __init__(self, doc: _Document):
        gltf, source = doc.doc, doc.source
        self.meshes: list[tuple[int, int]] = []
        self._nodes: list[tuple[dict, int, int]] = []  # (node, its index, parent slot or -1)
        self._worlds: dict[int, np.ndarray] = {-1: np.eye(4)}
        self._source = source
        nodes = gltf.get("nodes") or []
        if not nodes:
            self.meshes = [(i, -1) for i in range(len(gltf.get("meshes") or []))]
            return
        if not isinstance(nodes, list):
            raise GSError(f"{source}: 'nodes' must be a list")
        if gltf.get("scenes"):
            scene = doc.item("scenes", gltf.get("scene", 0), "the default scene")
            roots = _indices(scene.get("nodes", []), "the scene's nodes", source)
        else:
            children = {c for i, n in enumerate(nodes) if isinstance(n, dict)
                        for c in _indices(n.get("children", []), f"nodes[{i}].children", source)}
            roots = [i for i in range(len(nodes)) if i not in children]
        # glTF node hierarchies are disjoint trees: a node met twice is a cycle or a shared child.
        stack, seen = [(r, -1) for r in reversed(roots)], set()
        while stack:  # (kept lean: a scene may have hundreds of thousands of nodes)
            index, parent = stack.pop()
            node = nodes[index] if 0 <= index < len(nodes) else None
            if type(node) is not dict:
                doc.item("nodes", index, "the node hierarchy")  # raises, naming the node
            if index in seen:
                raise GSError(f"{source}: nodes[{index}] appears twice in the scene's hierarchy "
                              "(a cycle, or a node with two parents)")
            seen.add(index)
            slot = len(self._nodes)
            self._nodes.append((node, index, parent))
            if "mesh" in node:
                self.meshes.append((node["mesh"], slot))
            if "children" in node:
                kids = _indices(node["children"], f"nodes[{index}].children", source)
                stack.extend((c, slot) for c in reversed(kids))

    def world(self, slot: int) -> np.ndarray:
        """[4, 4] world matrix of the node in ``slot`` (parents' matrices kept for siblings)."""
        chain = []
        while slot not in self._worlds:
            chain.append(slot)
            slot = self._nodes[slot][2]
        world = self._worlds[slot]
        for slot in reversed(chain):
            node, index, _ = self._nodes[slot]
            world = self._worlds[slot] = world @ _node_matrix(node, index, self._source)
        return world


def _indices(value, what: str, source: str) -> list[int]:
    # type() rather than _is_int (the same test: JSON true/false are bool, not int), as a
    # scene may list hundreds of thousands of nodes
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise GSError(f"{source}: {what} must be a list of indices")
    return value


# ---------------------------------------------------------------------------------- reading
def _sh_semantics(attributes: dict, where: str, source: str, report: Report) -> list[str]:
    """The SH rest semantics in 3DGS order, checked to form complete degrees."""
    names = []
    for degree, width in _SH_DEGREES.items():
        present = [f"{_PREFIX}SH_DEGREE_{degree}_COEF_{n}" in attributes for n in range(width)]
        if not any(present):
            break
        if not all(present):
            raise GSError(f"{source}: {where} defines SH degree {degree} only partially")
        names += [f"{_PREFIX}SH_DEGREE_{degree}_COEF_{n}" for n in range(width)]
    higher = [a for a in attributes if a.startswith(f"{_PREFIX}SH_DEGREE_")
              and a not in names and not a.startswith(f"{_PREFIX}SH_DEGREE_0_")]
    if higher:
        if any(a.startswith(f"{_PREFIX}SH_DEGREE_{d}_") for d in (1, 2, 3) for a in higher):
            raise GSError(f"{source}: {where} has SH degrees with a lower degree missing")
        report({"WARNING"}, f"{source}: {where}: SH degrees above 3 dropped")
    return names


def _primitive_splats(doc: _Document, prim: dict, where: str, report: Report) -> SplatSet:
    """One splat primitive → SplatSet in the glTF frame (float32)."""
    source = doc.source
    ext = prim["extensions"][EXTENSION_NAME] if isinstance(prim.get("extensions"), dict) \
        and isinstance(prim["extensions"].get(EXTENSION_NAME), dict) else {}
    if prim.get("mode", 4) != 0:
        raise GSError(f"{source}: {where} has mode {prim.get('mode', 4)}; splat primitives "
                      "must be POINTS (0)")
    if ext.get("kernel", "ellipse") != "ellipse":
        report({"WARNING"}, f"{source}: {where}: kernel {ext.get('kernel')!r} read as ellipse")
    if ext.get("colorSpace") == "lin_rec709_display":
        report({"WARNING"}, f"{source}: {where} holds linear colours (lin_rec709_display); "
                            "they are kept as stored, and Blender shows them as sRGB")
    attrs = prim.get("attributes")
    if not isinstance(attrs, dict):
        raise GSError(f"{source}: {where} has no attributes")
    required = ["POSITION"] + [_PREFIX + n for n in ("ROTATION", "SCALE", "OPACITY",
                                                     "SH_DEGREE_0_COEF_0")]
    missing = [a for a in required if a not in attrs]
    if missing:
        raise GSError(f"{source}: {where} lacks the required attribute(s) "
                      + ", ".join(missing))
    if "bufferView" not in doc.item("accessors", attrs["POSITION"], where + " POSITION"):
        raise GSError(f"{source}: {where} POSITION has no buffer view (no splat data)")
    positions = _accessor(doc, attrs["POSITION"], "POSITION", "POSITION")
    n = len(positions)
    xyzw = _accessor(doc, attrs[_PREFIX + "ROTATION"], "ROTATION", "ROTATION", n)
    scales = _accessor(doc, attrs[_PREFIX + "SCALE"], "SCALE", "SCALE", n)
    opacity = _accessor(doc, attrs[_PREFIX + "OPACITY"], "OPACITY", "OPACITY", n)[:, 0]
    sh_names = _sh_semantics(attrs, where, source, report)
    rest = np.empty((n, len(sh_names), 3), np.float32)
    for k, name in enumerate(sh_names):
        rest[:, k] = _accessor(doc, attrs[name], name, "SH", n)
    return SplatSet(
        positions=positions, log_scales=_log_scales(scales),
        rotations=np.ascontiguousarray(xyzw[:, [3, 0, 1, 2]]),
        opacity_logits=_logits(opacity, where, source, report),
        sh_dc=_accessor(doc, attrs[_PREFIX + "SH_DEGREE_0_COEF_0"], "SH_DEGREE_0_COEF_0",
                        "SH", n),
        sh_rest=rest)


def _log_scales(scales: np.ndarray) -> np.ndarray:
    """Linear scales → log; 0 (a flat splat) stays representable, negatives become NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        kept = np.where(scales == 0, np.float32(_MIN_SCALE), scales)
        return np.log(kept).astype(np.float32)


def _logits(opacity: np.ndarray, where: str, source: str, report: Report) -> np.ndarray:
    outside = int(((opacity < -1e-6) | (opacity > 1 + 1e-6)).sum())
    if outside:
        report({"WARNING"}, f"{source}: {where}: {outside:,} opacities outside [0, 1] "
                            "clamped")
    p = np.clip(opacity.astype(np.float64), _OPACITY_EDGE, 1.0 - _OPACITY_EDGE)
    return np.log(p / (1.0 - p)).astype(np.float32)


def _place(splats: SplatSet, world: np.ndarray, where: str, source: str) -> SplatSet:
    """Apply a node's world matrix (in the glTF frame), then convert to the 3DGS frame."""
    if np.array_equal(world, np.eye(4)):
        return _change_frame(splats, to_gltf=False)
    matrix = _FLIP @ world
    if not np.isfinite(matrix).all():
        raise GSError(f"{source}: {where} has a non-finite node transform")
    try:
        split_similarity(matrix)
    except GSError:
        return _affine(splats, matrix, where, source)
    return splats.transformed(matrix)


def _affine(splats: SplatSet, matrix: np.ndarray, where: str, source: str) -> SplatSet:
    """Apply a general (non-uniformly scaled) transform: Σ' = A·Σ·Aᵀ, decomposed again."""
    a = matrix[:3, :3]
    if np.linalg.det(a) <= 0:
        raise GSError(f"{source}: {where} is placed by a mirroring or degenerate node "
                      "transform, which splats cannot represent")
    u, _, vt = np.linalg.svd(a)
    turn = u @ vt  # the rotation part (polar decomposition), used for the SH
    factor = a @ quat_to_matrix(splats.rotations.astype(np.float64)) \
        * np.exp(splats.log_scales.astype(np.float64))[:, None, :]  # [N, 3, 3] = A·R·S
    variances, axes = np.linalg.eigh(factor @ factor.transpose(0, 2, 1))
    axes[np.linalg.det(axes) < 0, :, 0] *= -1.0  # proper rotations only
    return SplatSet(
        positions=(splats.positions.astype(np.float64) @ a.T + matrix[:3, 3]).astype(np.float32),
        log_scales=(0.5 * np.log(np.maximum(variances, _MIN_SCALE ** 2))).astype(np.float32),
        rotations=matrix_to_quat(axes).astype(np.float32),
        opacity_logits=splats.opacity_logits.copy(), sh_dc=splats.sh_dc.copy(),
        sh_rest=rotate_sh_rest(splats.sh_rest, turn), extra={})


def _mesh_splat_primitives(doc: _Document, mesh_index
                           ) -> tuple[list[tuple[dict, str, int, int]], int]:
    """([(primitive, name, splat count, SH coefficients)], primitives skipped) of a mesh."""
    mesh = doc.item("meshes", mesh_index, "a node")
    primitives = mesh.get("primitives", [])
    if not isinstance(primitives, list):
        raise GSError(f"{doc.source}: meshes[{mesh_index}].primitives must be a list")
    found, skipped = [], 0
    for p, prim in enumerate(primitives):
        if not isinstance(prim, dict):
            raise GSError(f"{doc.source}: meshes[{mesh_index}].primitives[{p}] is not an "
                          "object")
        attrs = prim.get("attributes") if isinstance(prim.get("attributes"), dict) else {}
        ext = prim.get("extensions") if isinstance(prim.get("extensions"), dict) else {}
        if EXTENSION_NAME not in ext and not any(a.startswith(_PREFIX) for a in attrs):
            skipped += 1
            continue
        where = f"meshes[{mesh_index}].primitives[{p}]"
        count = doc.item("accessors", attrs.get("POSITION"), where + " POSITION").get(
            "count", 0) if "POSITION" in attrs else 0
        coeffs = sum(a.startswith(f"{_PREFIX}SH_DEGREE_") for a in attrs) - 1
        found.append((prim, where, count if _is_int(count) and count > 0 else 0,
                      min(max(coeffs, 0), 15)))
    return found, skipped


def _splat_primitives(doc: _Document, report: Report, limits: ReadLimits, stored: int
                      ) -> list[tuple[dict, str, np.ndarray]]:
    """(primitive, name for messages, world matrix) of every splat primitive in the scene,
    with the total splat count checked against ``limits`` before anything is decoded."""
    instances = _Instances(doc)
    meshes: dict = {}  # mesh index → its splat primitives (a mesh may be shown many times)
    per_mesh: dict = {}  # mesh index → (splats, decoded bytes, primitives skipped)
    total = decoded = skipped = 0
    for mesh_index, _slot in instances.meshes:
        if not _is_int(mesh_index) or mesh_index not in meshes:
            found, skipped_here = _mesh_splat_primitives(doc, mesh_index)
            meshes[mesh_index] = found
            per_mesh[mesh_index] = (sum(count for _, _, count, _ in found), sum(
                count * 4 * (14 + 3 * coeffs) for _, _, count, coeffs in found), skipped_here)
        splats, size, skipped_here = per_mesh[mesh_index]
        total, decoded, skipped = total + splats, decoded + size, skipped + skipped_here
    # Node instances repeat a primitive's stored data: treat the scene as data expanded from
    # the file's bytes (float32 values), so a few bytes of nodes cannot claim millions of splats.
    limits.check_claim(total, bytes_per_splat=-(-decoded // max(total, 1)), available=stored,
                       compressed=True, source=doc.source)
    if skipped:
        report({"INFO"}, f"{doc.source}: ignored {skipped} primitive(s) without "
                         f"{EXTENSION_NAME}")
    return [(prim, where, instances.world(slot)) for mesh_index, slot in instances.meshes
            for prim, where, _, _ in meshes[mesh_index]]


def _stored_bytes(doc: _Document, size: int) -> int:
    """Bytes the scene's data can come from: the file and the buffer files beside it."""
    buffers = doc.doc.get("buffers")
    for info in buffers[:_MAX_BUFFER_FILES] if isinstance(buffers, list) else []:
        uri = info.get("uri") if isinstance(info, dict) else None
        if isinstance(uri, str) and not uri.startswith("data:") and "://" not in uri:
            path = urllib.parse.unquote(uri)
            try:
                if not os.path.isabs(path):
                    size += os.path.getsize(os.path.join(doc.folder, path))
            except (OSError, ValueError):
                pass  # a missing buffer file is named when the accessor needs it
    return size


def _read_gltf(source: str, *, limits: ReadLimits, report: Report) -> tuple[SplatSet, bool]:
    """Read the KHR_gaussian_splatting primitives of a .glb or .gltf file:
    ``read_gltf(path, *, nonfinite="drop", limits=None, report=log_report)``.

    Args:
        limits: :class:`ReadLimits`: the splats of all primitives and node instances together
            are checked against it before anything is decoded (instances count as data
            expanded from the file's bytes).
    Returns:
        SplatSet in the 3DGS frame, node transforms applied.
    Raises:
        GSError naming the file and the problem (see the module docstring).
    """
    data = Path(source).read_bytes()
    if data[:4] == b"glTF":
        doc = _Document(source, *_parse_glb(data, source))
    else:
        doc = _Document(source, _parse_json(data, source), None)
    try:
        found = _splat_primitives(doc, report, limits, _stored_bytes(doc, len(data)))
        parts = [_place(splats, world, where, source) for prim, where, world in found
                 if (splats := _primitive_splats(doc, prim, where, report)).count]
    except GSError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
        # A value of an unexpected JSON type that the checks above did not name.
        raise GSError(f"{source}: malformed glTF document ({type(err).__name__}: {err})") from None
    if not parts:
        raise GSError(f"{source}: no {EXTENSION_NAME} splats in the scene")
    return (parts[0] if len(parts) == 1 else concatenate(parts)), False


read_gltf = splat_reader(_read_gltf)


# ---------------------------------------------------------------------------------- writing
RotationStorage = Literal["float", "int16", "int8"]


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _attribute_arrays(splats: SplatSet, rotation: RotationStorage, color_fallback: bool
                      ) -> list[tuple[str, np.ndarray, int, bool]]:
    """(semantic, [N, width] array, componentType, normalized) of each attribute, glTF frame."""
    s = _change_frame(splats, to_gltf=True, sh=False)
    q = normalize_quat(s.rotations.astype(np.float64))[:, [1, 2, 3, 0]]  # xyzw
    if rotation == "float":
        rot = (q.astype(np.float32), 5126, False)
    else:
        top = 32767 if rotation == "int16" else 127
        rot = (np.rint(q * top).astype("<i2" if rotation == "int16" else "i1"),
               5122 if rotation == "int16" else 5120, True)
    out = [("POSITION", s.positions, 5126, False), (_PREFIX + "ROTATION", *rot),
           (_PREFIX + "SCALE", np.exp(s.log_scales.astype(np.float64)).astype(np.float32),
            5126, False),
           (_PREFIX + "OPACITY", s.opacities().astype(np.float32)[:, None], 5126, False),
           (_PREFIX + "SH_DEGREE_0_COEF_0", s.sh_dc, 5126, False)]
    k = 0
    for degree in range(1, s.sh_degree + 1):
        for n in range(_SH_DEGREES[degree]):
            out.append((f"{_PREFIX}SH_DEGREE_{degree}_COEF_{n}", s.sh_rest[:, k] * _SH_SIGNS[k],
                        5126, False))
            k += 1
    if color_fallback:
        rgb = _srgb_to_linear(np.clip(s.sh_dc.astype(np.float64) * SH_C0 + 0.5, 0.0, 1.0))
        rgba = np.concatenate([rgb, s.opacities()[:, None]], axis=1)
        out.append(("COLOR_0", np.rint(rgba * 255.0).astype(np.uint8), 5121, True))
    return out


def _document(attributes, count: int, *, bin_uri: str | None) -> tuple[dict, int]:
    """glTF JSON for tightly packed attributes, and the binary buffer's length."""
    views, accessors, names, offset = [], [], {}, 0
    for i, (semantic, array, component, normalized) in enumerate(attributes):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": array.nbytes,
                      "target": 34962})
        acc = {"bufferView": i, "componentType": component, "count": count,
               "type": {1: "SCALAR", 3: "VEC3", 4: "VEC4"}[array.shape[1]]}
        if normalized:
            acc["normalized"] = True
        if semantic == "POSITION":
            acc["min"] = array.min(axis=0).astype(np.float64).tolist()
            acc["max"] = array.max(axis=0).astype(np.float64).tolist()
        accessors.append(acc)
        names[semantic] = i
        offset += array.nbytes + (-array.nbytes % 4)
    buffer = {"byteLength": offset}
    if bin_uri is not None:
        buffer["uri"] = bin_uri
    primitive = {"attributes": names, "mode": 0, "extensions": {EXTENSION_NAME: {
        "kernel": "ellipse", "colorSpace": "srgb_rec709_display",
        "projection": "perspective", "sortingMethod": "cameraDistance"}}}
    return {
        "asset": {"version": "2.0", "generator": f"blender_gs_addon {__version__}"},
        "extensionsUsed": [EXTENSION_NAME], "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "splats"}], "meshes": [{"primitives": [primitive]}],
        "buffers": [buffer], "bufferViews": views, "accessors": accessors,
    }, offset


def _write_binary(fh, attributes) -> None:
    for _semantic, array, _c, _n in attributes:
        fh.write(memoryview(np.ascontiguousarray(array)).cast("B"))
        fh.write(b"\0" * (-array.nbytes % 4))


def write_gltf(path: str | os.PathLike, splats: SplatSet, *, rotation: RotationStorage = "float",
               color_fallback: bool = True, report: Report = log_report) -> None:
    """Write ``splats`` (3DGS frame) as glTF KHR_gaussian_splatting, converted to glTF's frame.

    A path ending in ``.gltf`` gets a JSON file plus ``<name>.bin`` beside it; anything else
    (``.glb``) one binary file.

    Args:
        rotation: accessor storage of the quaternions: "float", or normalised "int16"/"int8".
        color_fallback: also write COLOR_0 (4 bytes per splat) for viewers without the
            extension.
    Raises:
        GSError for an empty set, NaN/Inf values or scales beyond float32.
    """
    source = os.fspath(path)
    if rotation not in ("float", "int16", "int8"):
        raise GSError(f"unknown rotation storage {rotation!r}; use float, int16 or int8")
    if splats.count == 0:
        raise GSError(f"{source}: no splats to write")
    splats.validate(name=source, require_finite=True)
    if float(splats.log_scales.max()) > 88.7:
        raise GSError(f"{source}: scales up to exp({float(splats.log_scales.max()):.1f}) do not "
                      "fit float32")
    if splats.extra:
        report({"WARNING"}, f"{source}: glTF splats cannot store the extra properties "
                            + ", ".join(sorted(splats.extra)))
    attributes = _attribute_arrays(splats, rotation, color_fallback)
    separate = source.lower().endswith(".gltf")
    bin_path = os.path.splitext(source)[0] + ".bin"
    doc, length = _document(attributes, splats.count,
                            bin_uri=urllib.parse.quote(os.path.basename(bin_path))
                            if separate else None)
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    try:
        if separate:
            with open(bin_path, "wb") as fh:
                _write_binary(fh, attributes)
            with open(source, "wb") as fh:
                fh.write(text)
            return
        text += b" " * (-len(text) % 4)
        with open(source, "wb") as fh:
            fh.write(struct.pack("<III", _GLB_MAGIC, 2, 12 + 8 + len(text) + 8 + length))
            fh.write(struct.pack("<II", len(text), _JSON_CHUNK) + text)
            fh.write(struct.pack("<II", length, _BIN_CHUNK))
            _write_binary(fh, attributes)
    except OSError as err:
        raise GSError(f"{source}: cannot write file ({err.strerror or err})") from None
