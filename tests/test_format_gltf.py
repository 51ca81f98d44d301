"""glTF KHR_gaussian_splatting: round trips within the documented bounds, the file layout the
extension prescribes (checked by parsing our files by hand), node transforms against the
extension's covariance formula, every accessor form, bad input and fuzzing.

Files for reading are built here by a small independent writer (:func:`build`), not by ours."""

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_fuzz import mutate_json
from reader_fuzz import read_fails_cleanly_or_finite

from blender_gs_addon.conventions.frames import GLTF_FROM_RDF
from blender_gs_addon.errors import GSError
from blender_gs_addon.formats import ReadLimits, detect_format, read_splats, write_splats
from blender_gs_addon.formats.gltf import read_gltf, write_gltf
from blender_gs_addon.quaternions import normalize_quat, quat_to_matrix
from blender_gs_addon.sh import SH_C0, coeffs_for_degree, eval_sh_color
from blender_gs_addon.splats import SplatSet

P = "KHR_gaussian_splatting:"
SH_NAMES = [f"SH_DEGREE_{d}_COEF_{n}" for d in (1, 2, 3) for n in range(2 * d + 1)]


def random_splats(rng, n, degree):
    return SplatSet.from_arrays(
        positions=rng.normal(size=(n, 3)) * 3, log_scales=rng.normal(-3, 1, (n, 3)),
        rotations=rng.normal(size=(n, 4)), opacity_logits=rng.normal(0, 3, n),
        sh_dc=rng.normal(0, 1, (n, 3)),
        sh_rest=rng.normal(0, 0.3, (n, coeffs_for_degree(degree), 3)))


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def same_rotation(a, b):
    """Largest component difference between quaternions ``a`` as read (not renormalised) and
    ``b`` normalised, q and −q being the same rotation."""
    a, b = a.astype(np.float64), normalize_quat(b.astype(np.float64))
    return np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1)).max()


def covariance(s):
    r = quat_to_matrix(s.rotations.astype(np.float64))
    m = r * np.exp(s.log_scales.astype(np.float64))[:, None, :]
    return m @ m.transpose(0, 2, 1)


# ------------------------------------------------------------------ an independent glTF writer
def gltf_attributes(s, *, rotation=(5126, False), scale=(5126, False), opacity=(5126, False)):
    """The extension's attributes of a set already in the glTF frame: semantic → (array,
    componentType, normalized)."""
    q = normalize_quat(s.rotations.astype(np.float64))[:, [1, 2, 3, 0]]
    kinds = {5126: np.float32, 5120: np.int8, 5122: np.int16, 5121: np.uint8, 5123: np.uint16}

    def store(values, form, top):
        comp, norm = form
        if comp == 5126:
            return values.astype(np.float32), comp, False
        return np.rint(values * (top[comp] if norm else 1)).astype(kinds[comp]), comp, norm

    tops = {5120: 127, 5122: 32767, 5121: 255, 5123: 65535}
    out = {"POSITION": (s.positions, 5126, False),
           P + "ROTATION": store(q, rotation, tops),
           P + "SCALE": store(np.exp(s.log_scales.astype(np.float64)), scale, tops),
           P + "OPACITY": store(sigmoid(s.opacity_logits)[:, None], opacity, tops),
           P + "SH_DEGREE_0_COEF_0": (s.sh_dc, 5126, False)}
    for k in range(s.sh_rest.shape[1]):
        out[P + SH_NAMES[k]] = (s.sh_rest[:, k], 5126, False)
    return out


def build(path, meshes, *, nodes=None, scenes=None, extra=None, glb=True, mode=0,
          interleave=False):
    """Write a glTF: ``meshes`` is a list of meshes, each a list of attribute dicts (one per
    primitive). Returns the JSON document written."""
    blob, views, accessors, gl_meshes = bytearray(), [], [], []
    types = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}
    for prims in meshes:
        gl_prims = []
        for attrs in prims:
            names = {}
            if interleave:  # one buffer view, every attribute interleaved, 4-byte aligned
                arrays = [np.ascontiguousarray(a[0]).reshape(len(a[0]), -1) for a in attrs.values()]
                sizes = [a.dtype.itemsize * a.shape[1] for a in arrays]
                pads = [-s % 4 for s in sizes]
                stride = sum(sizes) + sum(pads)
                n = len(arrays[0])
                rows = np.zeros((n, stride), np.uint8)
                col = 0
                for a, size, pad in zip(arrays, sizes, pads):
                    rows[:, col:col + size] = a.view(np.uint8).reshape(n, size)
                    col += size + pad
                views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": rows.nbytes,
                              "byteStride": stride})
                blob += rows.tobytes()
                col = 0
                for (sem, (a, comp, norm)), size, pad in zip(attrs.items(), sizes, pads):
                    a = np.asarray(a).reshape(len(a), -1)
                    acc = {"bufferView": len(views) - 1, "byteOffset": col, "componentType": comp,
                           "count": len(a), "type": types[a.shape[1]]}
                    col += size + pad
                    if norm:
                        acc["normalized"] = True
                    names[sem] = len(accessors)
                    accessors.append(acc)
            else:
                for sem, (a, comp, norm) in attrs.items():
                    a = np.ascontiguousarray(a).reshape(len(a), -1)
                    views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": a.nbytes})
                    blob += a.tobytes() + b"\0" * (-a.nbytes % 4)
                    acc = {"bufferView": len(views) - 1, "componentType": comp, "count": len(a),
                           "type": types[a.shape[1]]}
                    if norm:
                        acc["normalized"] = True
                    names[sem] = len(accessors)
                    accessors.append(acc)
            gl_prims.append({"attributes": names, "mode": mode, "extensions": {
                "KHR_gaussian_splatting": {"kernel": "ellipse",
                                           "colorSpace": "srgb_rec709_display"}}})
        gl_meshes.append({"primitives": gl_prims})
    doc = {"asset": {"version": "2.0"}, "extensionsUsed": ["KHR_gaussian_splatting"],
           "meshes": gl_meshes, "accessors": accessors, "bufferViews": views,
           "buffers": [{"byteLength": len(blob)}],
           "nodes": nodes if nodes is not None else [{"mesh": i} for i in range(len(meshes))]}
    doc["scenes"] = scenes if scenes is not None else [{"nodes": list(range(len(doc["nodes"])))}]
    doc.update(extra or {})
    write_container(path, doc, bytes(blob), glb=glb)
    return doc


def write_container(path, doc, blob, *, glb=True):
    if not glb:
        import base64

        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(
            blob).decode()
        path.write_text(json.dumps(doc))
        return
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 28 + len(text) + len(blob))
                     + struct.pack("<II", len(text), 0x4E4F534A) + text
                     + struct.pack("<II", len(blob), 0x004E4942) + blob)


def parse_glb(path):
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", data)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    jlen, jtype = struct.unpack_from("<II", data, 12)
    assert jtype == 0x4E4F534A and jlen % 4 == 0
    doc = json.loads(data[20:20 + jlen])
    blen, btype = struct.unpack_from("<II", data, 20 + jlen)
    assert btype == 0x004E4942 and blen % 4 == 0 and 28 + jlen + blen == len(data)
    return doc, data[28 + jlen:]


def accessor_array(doc, blob, index):
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = {5126: "<f4", 5120: "i1", 5122: "<i2", 5121: "u1", 5123: "<u2"}[acc["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
    start = view["byteOffset"] + acc.get("byteOffset", 0)
    return np.frombuffer(blob, dtype, acc["count"] * width, start).reshape(acc["count"], width)


# ------------------------------------------------------------------ writing and reading back
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_round_trip_within_documented_bounds(tmp_path, rng, degree, suffix):
    s = random_splats(rng, 500, degree)
    s.opacity_logits[:3] = [25.0, -25.0, 0.0]  # beyond float32 sigmoid: clamped to ±16.6
    path = tmp_path / f"x{suffix}"
    write_splats(path, s)
    assert detect_format(path) == "gltf"
    back = read_splats(path)
    np.testing.assert_array_equal(back.positions, s.positions)
    np.testing.assert_array_equal(back.sh_dc, s.sh_dc)
    np.testing.assert_array_equal(back.sh_rest, s.sh_rest)
    # the normalised quaternion as stored (float32), sign included: the frame change is exact
    expect = normalize_quat(s.rotations.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(back.rotations, expect)
    assert same_rotation(back.rotations, s.rotations) <= 6e-8
    bound = 2.4e-7 + 2**-24 * np.abs(s.log_scales).max()
    assert np.abs(back.log_scales - s.log_scales).max() <= bound
    assert np.abs(sigmoid(back.opacity_logits) - sigmoid(s.opacity_logits)).max() <= 6e-8
    assert np.abs(back.opacity_logits[:2]).max() <= 16.7 and np.isfinite(back.opacity_logits).all()
    if suffix == ".gltf":
        assert (tmp_path / "x.bin").is_file()


def test_written_glb_has_the_layout_the_extension_prescribes(tmp_path, rng):
    s = random_splats(rng, 300, 3)
    path = tmp_path / "x.glb"
    write_gltf(path, s)
    doc, blob = parse_glb(path)
    assert "KHR_gaussian_splatting" in doc["extensionsUsed"] and doc["asset"]["version"] == "2.0"
    prim = doc["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0
    assert prim["extensions"]["KHR_gaussian_splatting"]["kernel"] == "ellipse"
    assert prim["extensions"]["KHR_gaussian_splatting"]["colorSpace"] == "srgb_rec709_display"
    attrs = prim["attributes"]
    expected = {"POSITION", "COLOR_0", P + "ROTATION", P + "SCALE", P + "OPACITY",
                P + "SH_DEGREE_0_COEF_0"} | {P + n for n in SH_NAMES}
    assert set(attrs) == expected
    for view in doc["bufferViews"]:
        assert view["byteOffset"] % 4 == 0
    flip = np.array([1.0, -1.0, -1.0])  # glTF from the 3DGS frame: (x, y, z) → (x, −y, −z)
    np.testing.assert_array_equal(GLTF_FROM_RDF, np.diag(flip))
    pos = accessor_array(doc, blob, attrs["POSITION"])
    np.testing.assert_array_equal(pos, s.positions * flip)
    acc = doc["accessors"][attrs["POSITION"]]
    np.testing.assert_allclose(acc["min"], pos.min(0))
    np.testing.assert_allclose(acc["max"], pos.max(0))
    # ROTATION: unit xyzw of R_x(180°)·q: (0, 1, 0, 0) ⊗ (w, x, y, z) = (−x, w, −z, y)
    q = normalize_quat(s.rotations.astype(np.float64))
    expect_xyzw = np.stack([q[:, 0], -q[:, 3], q[:, 2], -q[:, 1]], 1)  # x', y', z', w'
    rot = accessor_array(doc, blob, attrs[P + "ROTATION"]).astype(np.float64)
    assert same_rotation(rot[:, [3, 0, 1, 2]], expect_xyzw[:, [3, 0, 1, 2]]) <= 2e-7
    np.testing.assert_allclose(np.linalg.norm(rot, axis=1), 1, atol=1e-6)
    # the stored rotation is M·R, so the covariance stored is M·Σ·Mᵀ (the splat in glTF's frame)
    m = np.diag(flip)
    np.testing.assert_allclose(quat_to_matrix(rot[:, [3, 0, 1, 2]]), m @ quat_to_matrix(q),
                               atol=1e-6)
    np.testing.assert_allclose(accessor_array(doc, blob, attrs[P + "SCALE"]),
                               np.exp(s.log_scales.astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(accessor_array(doc, blob, attrs[P + "OPACITY"])[:, 0],
                               sigmoid(s.opacity_logits), atol=1e-7)
    # SH band ℓ: a half turn about an axis multiplies each basis function by ±1
    d = rng.normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rest = np.stack([accessor_array(doc, blob, attrs[P + n]) for n in SH_NAMES], 1)
    dc = accessor_array(doc, blob, attrs[P + "SH_DEGREE_0_COEF_0"])
    np.testing.assert_allclose(eval_sh_color(dc, rest, d * flip),
                               eval_sh_color(s.sh_dc, s.sh_rest, d),
                               atol=1e-5)
    # COLOR_0: linear (sRGB-decoded) base colour and opacity, 8-bit
    c0 = accessor_array(doc, blob, attrs["COLOR_0"]) / 255.0
    srgb = np.clip(0.5 + SH_C0 * s.sh_dc.astype(np.float64), 0, 1)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    assert np.abs(c0[:, :3] - linear).max() <= 0.5 / 255 + 1e-9
    assert np.abs(c0[:, 3] - sigmoid(s.opacity_logits)).max() <= 0.5 / 255 + 1e-9


@pytest.mark.parametrize("storage, bound", [("int16", 1 / 65534), ("int8", 1 / 254)])
def test_integer_rotations_round_trip_within_bounds(tmp_path, rng, storage, bound):
    s = random_splats(rng, 400, 1)
    write_gltf(tmp_path / "x.glb", s, rotation=storage, color_fallback=False)
    doc, _ = parse_glb(tmp_path / "x.glb")
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"][P + "ROTATION"]]
    assert acc["componentType"] == (5122 if storage == "int16" else 5120) and acc["normalized"]
    assert "COLOR_0" not in doc["meshes"][0]["primitives"][0]["attributes"]
    back = read_gltf(tmp_path / "x.glb")
    assert same_rotation(back.rotations, s.rotations) <= bound + 1e-7


def test_writer_refuses_what_it_cannot_store(tmp_path, rng):
    s = random_splats(rng, 10, 0)
    s.positions[3, 1] = np.nan
    with pytest.raises(GSError, match="NaN or infinite"):
        write_gltf(tmp_path / "x.glb", s)
    with pytest.raises(GSError, match="no splats"):
        write_gltf(tmp_path / "x.glb", SplatSet.empty(0))
    s = random_splats(rng, 10, 0)
    s.log_scales[0, 0] = 100.0
    with pytest.raises(GSError, match="float32"):
        write_gltf(tmp_path / "x.glb", s)
    with pytest.raises(GSError, match="rotation storage"):
        write_gltf(tmp_path / "x.glb", random_splats(rng, 10, 0), rotation="half")


# ------------------------------------------------------------------ reading others' files
def in_gltf_frame(s):
    """What an independent writer stores for a 3DGS-frame set: the set turned into glTF's."""
    return s.transformed(np.diag([*GLTF_FROM_RDF.diagonal(), 1.0]))


@pytest.mark.parametrize("glb", [True, False])
@pytest.mark.parametrize("interleave", [False, True])
def test_reads_independently_built_files(tmp_path, rng, glb, interleave):
    s = random_splats(rng, 200, 2)
    path = tmp_path / ("x.glb" if glb else "x.gltf")
    build(path, [[gltf_attributes(in_gltf_frame(s))]], glb=glb, interleave=interleave)
    back = read_gltf(path)
    np.testing.assert_allclose(back.positions, s.positions, atol=1e-6)
    np.testing.assert_allclose(back.sh_rest, s.sh_rest, atol=1e-6)
    assert same_rotation(back.rotations, s.rotations) <= 1e-6
    np.testing.assert_allclose(back.log_scales, s.log_scales, atol=1e-5)


@pytest.mark.parametrize("rotation, scale, opacity, tol", [
    ((5120, True), (5121, True), (5121, True), 1 / 254),
    ((5122, True), (5123, True), (5123, True), 1 / 65534),
    ((5126, False), (5121, False), (5126, False), 1e-6),
    ((5126, False), (5123, False), (5126, False), 1e-6),
])
def test_reads_every_accessor_form_the_extension_allows(tmp_path, rng, rotation, scale, opacity,
                                                         tol):
    s = random_splats(rng, 100, 0)
    if scale[1]:  # normalised: scales in [0, 1]
        s.log_scales[:] = np.log(rng.uniform(0.01, 1.0, (100, 3)))
    elif scale[0] != 5126:  # plain integers: whole-number scales
        s.log_scales[:] = np.log(rng.integers(1, 200, (100, 3)))
    g = in_gltf_frame(s)
    build(tmp_path / "x.glb", [[gltf_attributes(g, rotation=rotation, scale=scale,
                                                opacity=opacity)]])
    back = read_gltf(tmp_path / "x.glb")
    assert same_rotation(back.rotations, s.rotations) <= tol + 1e-7
    step = {5121: 1 / 255, 5123: 1 / 65535}.get(scale[0], 0) if scale[1] else 0
    true = np.exp(s.log_scales.astype(np.float64))
    assert (np.abs(np.exp(back.log_scales) - true) <= step / 2 + 1e-6 * np.maximum(true, 1)).all()
    ostep = {5121: 1 / 255, 5123: 1 / 65535}.get(opacity[0], 0)
    error = np.abs(sigmoid(back.opacity_logits) - sigmoid(s.opacity_logits)).max()
    assert error <= ostep / 2 + 1e-6


def test_sparse_accessor_and_zero_scales(tmp_path, rng):
    s = random_splats(rng, 50, 0)
    g = in_gltf_frame(s)
    doc = build(tmp_path / "x.glb", [[gltf_attributes(g)]])
    # Make the DC coefficients sparse: a zero base plus every 10th row replaced.
    _, blob = parse_glb(tmp_path / "x.glb")
    rows = np.arange(0, 50, 10, dtype=np.uint16)
    values = g.sh_dc[rows]
    blob = bytearray(blob)
    idx_view = {"buffer": 0, "byteOffset": len(blob), "byteLength": rows.nbytes}
    blob += rows.tobytes() + b"\0" * (-rows.nbytes % 4)
    val_view = {"buffer": 0, "byteOffset": len(blob), "byteLength": values.nbytes}
    blob += values.tobytes()
    doc["bufferViews"] += [idx_view, val_view]
    n_views = len(doc["bufferViews"])
    attributes = doc["meshes"][0]["primitives"][0]["attributes"]
    dc = doc["accessors"][attributes[P + "SH_DEGREE_0_COEF_0"]]
    del dc["bufferView"]
    dc["sparse"] = {"count": 5, "indices": {"bufferView": n_views - 2, "componentType": 5123},
                    "values": {"bufferView": n_views - 1}}
    scale = doc["accessors"][attributes[P + "SCALE"]]
    view = doc["bufferViews"][scale["bufferView"]]
    blob[view["byteOffset"]:view["byteOffset"] + 4] = np.float32(0).tobytes()  # a flat splat
    doc["buffers"][0]["byteLength"] = len(blob)
    write_container(tmp_path / "y.glb", doc, bytes(blob))
    back = read_gltf(tmp_path / "y.glb")
    expect = np.zeros((50, 3), np.float32)
    expect[rows] = s.sh_dc[rows]
    np.testing.assert_array_equal(back.sh_dc, expect)
    assert back.count == 50 and np.isfinite(back.log_scales).all()  # the flat splat is kept
    del doc["accessors"][attributes["POSITION"]]["bufferView"]
    write_container(tmp_path / "z.glb", doc, bytes(blob))
    with pytest.raises(GSError, match="POSITION has no buffer view"):
        read_gltf(tmp_path / "z.glb")


def test_node_transform_follows_the_extension_formula(tmp_path, rng):
    """World = T·R·S of a node: positions M·p + t, covariance M·C·Cᵀ·Mᵀ, SH turned by R."""
    g = random_splats(rng, 300, 3)  # data as stored in the file (glTF frame)
    angle, axis = 0.7, np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    quat_xyzw = [*(np.sin(angle / 2) * axis), np.cos(angle / 2)]
    node = {"mesh": 0, "translation": [1.0, -2.0, 3.0], "rotation": quat_xyzw,
            "scale": [1.5, 1.5, 1.5]}
    build(tmp_path / "x.glb", [[gltf_attributes(g)]], nodes=[node])
    back = read_gltf(tmp_path / "x.glb")
    r = quat_to_matrix(np.array([quat_xyzw[3], *quat_xyzw[:3]]))
    flip = np.diag(GLTF_FROM_RDF.diagonal())
    m = flip @ (1.5 * r)
    np.testing.assert_allclose(back.positions, g.positions @ m.T + flip @ [1.0, -2.0, 3.0],
                               atol=1e-5)
    np.testing.assert_allclose(covariance(back), m @ covariance(g) @ m.T, rtol=1e-4, atol=1e-9)
    d = rng.normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    turn = flip @ r  # colour seen along d now = colour seen along turnᵀ·d before
    np.testing.assert_allclose(eval_sh_color(back.sh_dc, back.sh_rest, d),
                               eval_sh_color(g.sh_dc, g.sh_rest, d @ turn), atol=1e-4)


def test_non_uniform_node_scale_is_applied_to_the_covariance(tmp_path, rng):
    g = random_splats(rng, 200, 1)
    node = {"mesh": 0, "matrix": [2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 1]}
    build(tmp_path / "x.glb", [[gltf_attributes(g)]], nodes=[node])
    back = read_gltf(tmp_path / "x.glb")
    m = np.diag(GLTF_FROM_RDF.diagonal()) @ np.diag([2.0, 1.0, 0.5])
    np.testing.assert_allclose(covariance(back), m @ covariance(g) @ m.T, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(back.positions, g.positions @ m.T, atol=1e-5)
    mirror = {"mesh": 0, "scale": [-1, 1, 1]}
    build(tmp_path / "m.glb", [[gltf_attributes(g)]], nodes=[mirror])
    with pytest.raises(GSError, match="mirroring"):
        read_gltf(tmp_path / "m.glb")


def test_several_primitives_nodes_and_instances(tmp_path, rng):
    a, b = random_splats(rng, 40, 1), random_splats(rng, 30, 3)
    nodes = [{"children": [1], "translation": [0, 10, 0]},
             {"mesh": 0, "translation": [1, 0, 0]},  # world: (1, 10, 0)
             {"mesh": 0},
             {"mesh": 1, "scale": [2, 2, 2]}]  # not in the scene
    triangles = {"POSITION": (np.zeros((3, 3), np.float32), 5126, False)}
    doc = build(tmp_path / "x.glb",
                [[gltf_attributes(a), gltf_attributes(b)], [gltf_attributes(b)]],
                nodes=nodes, scenes=[{"nodes": [0, 2]}, {"nodes": [3]}])
    messages = []
    back = read_gltf(tmp_path / "x.glb", report=lambda lv, m: messages.append(m))
    assert back.count == 2 * (40 + 30) and back.sh_degree == 3
    flip = GLTF_FROM_RDF.diagonal()
    np.testing.assert_allclose(back.positions[:40], (a.positions + [1, 10, 0]) * flip, atol=1e-5)
    np.testing.assert_allclose(back.positions[70:110], a.positions * flip, atol=1e-6)
    assert not back.sh_rest[:40, 3:].any()  # degree-1 primitive padded with zeros
    # the other scene, chosen as default, has the scaled instance only
    doc["scene"] = 1
    _, blob = parse_glb(tmp_path / "x.glb")
    write_container(tmp_path / "y.glb", doc, blob)
    assert read_gltf(tmp_path / "y.glb").count == 30
    # a plain mesh primitive next to the splats is ignored, with a note
    mesh_doc = build(tmp_path / "z.glb", [[gltf_attributes(a)], [triangles]], mode=0)
    mesh_doc["meshes"][1]["primitives"][0].pop("extensions")
    _, blob = parse_glb(tmp_path / "z.glb")
    write_container(tmp_path / "z.glb", mesh_doc, blob)
    notes = []
    assert read_gltf(tmp_path / "z.glb", report=lambda lv, m: notes.append(m)).count == 40
    assert any("without KHR_gaussian_splatting" in n for n in notes)


def test_zero_and_full_opacity_are_kept_clamped(tmp_path, rng):
    g = random_splats(rng, 20, 0)
    attrs = gltf_attributes(g)
    opacity = attrs[P + "OPACITY"][0].copy()
    opacity[:4, 0] = [0.0, 1.0, 0.0, 1.0]
    attrs[P + "OPACITY"] = (opacity, 5126, False)
    build(tmp_path / "x.glb", [[attrs]])
    back = read_gltf(tmp_path / "x.glb", nonfinite="error")
    assert back.count == 20 and np.isfinite(back.opacity_logits).all()
    assert back.opacity_logits[0] < -16 and back.opacity_logits[1] > 16


def test_nan_values_follow_the_policy(tmp_path, rng):
    g = random_splats(rng, 20, 0)
    attrs = gltf_attributes(g)
    pos = attrs["POSITION"][0].copy()
    pos[5, 0] = np.nan
    attrs["POSITION"] = (pos, 5126, False)
    build(tmp_path / "x.glb", [[attrs]])
    messages = []
    assert read_gltf(tmp_path / "x.glb", report=lambda lv, m: messages.append(m)).count == 19
    assert any("dropped 1 of 20" in m for m in messages)
    with pytest.raises(GSError, match="1 of 20 splats have NaN"):
        read_gltf(tmp_path / "x.glb", nonfinite="error")


# ------------------------------------------------------------------ bad input
def _valid(tmp_path, rng):
    g = random_splats(rng, 16, 1)
    path = tmp_path / "ok.glb"
    doc = build(path, [[gltf_attributes(g)]])
    return doc, parse_glb(path)[1]


def _mutate_doc(change):
    def apply(doc, blob):
        change(doc)
        return doc, blob
    return apply


def _attr(doc, name):
    return doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"][name]]


BAD_DOCS = {
    "requires glTF extension": _mutate_doc(lambda d: d.update(
        extensionsRequired=["KHR_gaussian_splatting_compression_spz_2"])),
    "lacks the required attribute": _mutate_doc(
        lambda d: d["meshes"][0]["primitives"][0]["attributes"].pop(P + "ROTATION")),
    "only partially": _mutate_doc(
        lambda d: d["meshes"][0]["primitives"][0]["attributes"].pop(P + "SH_DEGREE_1_COEF_2")),
    "overruns its buffer view": _mutate_doc(lambda d: _attr(d, P + "SCALE").update(count=17)
                                            or _attr(d, "POSITION").update(count=17)
                                            or [_attr(d, k).update(count=17) for k in
                                                d["meshes"][0]["primitives"][0]["attributes"]]),
    "overruns its buffer of": _mutate_doc(lambda d: d["bufferViews"][0].update(byteLength=10**6)),
    "allows VEC4": _mutate_doc(lambda d: _attr(d, P + "ROTATION").update(componentType=5121,
                                                                         normalized=True)),
    "must be POINTS": _mutate_doc(lambda d: d["meshes"][0]["primitives"][0].update(mode=4)),
    "appears twice": _mutate_doc(lambda d: d["nodes"][0].update(children=[0])),
    "does not exist": _mutate_doc(lambda d: d["meshes"][0]["primitives"][0]["attributes"].update(
        {"POSITION": 99})),
    "has count": _mutate_doc(lambda d: _attr(d, P + "OPACITY").update(count=3)),
    "not a glTF 2.0": _mutate_doc(lambda d: d["asset"].update(version="1.0")),
    "points to": _mutate_doc(lambda d: d["buffers"][0].update(uri="https://example.com/x.bin")),
    "no KHR_gaussian_splatting splats": _mutate_doc(
        lambda d: d.update(meshes=[{"primitives": []}])),
}


@pytest.mark.parametrize("words", list(BAD_DOCS))
def test_bad_documents_are_one_clear_error(tmp_path, rng, words):
    doc, blob = _valid(tmp_path, rng)
    doc, blob = BAD_DOCS[words](doc, blob)
    path = tmp_path / "bad.glb"
    write_container(path, doc, blob)
    with pytest.raises(GSError, match=words) as err:
        read_gltf(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("cut, words", [
    (lambda b: b[:10], "too short"),
    (lambda b: b"glTX" + b[4:], "not valid"),  # not GLB magic: parsed as JSON text, which fails
    (lambda b: b[:4] + struct.pack("<I", 1) + b[8:], "GLB version 1"),
    (lambda b: b[:-100], "truncated"),
    (lambda b: b[:8] + struct.pack("<I", len(b)) + b[12:16] + struct.pack("<I", 7) + b[20:],
     "does not start with a JSON chunk"),
    (lambda b: b[:12] + struct.pack("<I", 10**7) + b[16:], "runs past the end"),
])
def test_bad_containers_are_one_clear_error(tmp_path, rng, cut, words):
    _valid(tmp_path, rng)
    path = tmp_path / "bad.glb"
    path.write_bytes(cut((tmp_path / "ok.glb").read_bytes()))
    with pytest.raises(GSError, match=words):
        read_gltf(path)


def test_splat_limits_are_checked_before_decoding(tmp_path, rng):
    doc, blob = _valid(tmp_path, rng)
    doc["nodes"] = [{"mesh": 0} for _ in range(20)]
    doc["scenes"] = [{"nodes": list(range(20))}]
    write_container(tmp_path / "many.glb", doc, blob)
    assert read_gltf(tmp_path / "many.glb").count == 320
    with pytest.raises(GSError, match="declares 320 splats, more than the limit of 100"):
        read_gltf(tmp_path / "many.glb", limits=ReadLimits(max_splats=100))
    with pytest.raises(GSError, match="declares 320 splats, more than the limit of 100"):
        read_splats(tmp_path / "many.glb", limits=ReadLimits(max_splats=100))


def test_node_instances_are_bounded_by_the_expansion_guard(tmp_path, rng):
    """Nodes repeat a primitive's data: a few bytes of nodes claiming millions of splats from
    16 stored ones are refused before anything is decoded, as a decompression bomb."""
    doc, blob = _valid(tmp_path, rng)
    for nodes in (1_000, 12_000):  # × 16 SH-1 splats: 1.5 MB, 17.7 MB decoded (allowance 16)
        doc["nodes"] = [{"mesh": 0} for _ in range(nodes)]
        doc["scenes"] = [{"nodes": list(range(nodes))}]
        write_container(tmp_path / f"{nodes}.glb", doc, blob)
    assert read_splats(tmp_path / "1000.glb").count == 16_000
    with pytest.raises(GSError, match="expansion of .*likely decompression bomb") as err:
        read_splats(tmp_path / "12000.glb")
    assert "192,000 splats" in str(err.value) and "12000.glb" in str(err.value)


def test_buffer_files_are_read_only_as_far_as_declared(tmp_path, rng):
    g = random_splats(rng, 16, 0)
    doc = build(tmp_path / "x.gltf", [[gltf_attributes(g)]], glb=False)
    blob = parse_data_uri(doc)
    (tmp_path / "x.bin").write_bytes(blob + b"\0" * 1000)  # longer than declared: fine
    doc["buffers"][0]["uri"] = "x.bin"
    (tmp_path / "x.gltf").write_text(json.dumps(doc))
    assert read_gltf(tmp_path / "x.gltf").count == 16
    doc["buffers"][0]["uri"] = os.path.relpath("/dev/zero", tmp_path)  # endless, not a file
    (tmp_path / "x.gltf").write_text(json.dumps(doc))
    with pytest.raises(GSError, match="is not a regular file"):
        read_gltf(tmp_path / "x.gltf")
    (tmp_path / "x.bin").write_bytes(blob[:100])
    doc["buffers"][0]["uri"] = "x.bin"
    (tmp_path / "x.gltf").write_text(json.dumps(doc))
    with pytest.raises(GSError, match="declares byteLength .* but holds 100 bytes"):
        read_gltf(tmp_path / "x.gltf")


def parse_data_uri(doc):
    import base64

    return base64.b64decode(doc["buffers"][0]["uri"].split(",", 1)[1])


@settings(max_examples=60, deadline=2000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_fail_cleanly_or_read_finite(tmp_path, data):
    rng = np.random.default_rng(7)
    doc, blob = _valid(tmp_path, rng)
    raw = bytearray((tmp_path / "ok.glb").read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[i] = data.draw(st.integers(0, 255))
        else:
            del raw[i:i + data.draw(st.integers(1, 64))]
    path = tmp_path / "fuzz.glb"
    path.write_bytes(bytes(raw))
    read_fails_cleanly_or_finite(read_gltf, path)



@settings(max_examples=150, deadline=2000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_json_fails_cleanly_or_reads_finite(tmp_path, data):
    """Any JSON value anywhere in the document: a GSError or a valid set, never a crash."""
    doc, blob = _valid(tmp_path, np.random.default_rng(8))
    mutate_json(doc, data)
    path = tmp_path / "fuzz.glb"
    write_container(path, doc, blob)
    read_fails_cleanly_or_finite(read_gltf, path)


# ------------------------------------------------------------------ Blender 5.3's own importer
BLENDER_PROBE = r"""
import json, sys
import bpy
import numpy as np
root, ply, glb, out = sys.argv[-4:]
sys.path.insert(0, root)
from blender_gs_addon.extension import extension_module
from blender_gs_addon.formats import read_splats
from blender_gs_addon.quaternions import quat_to_matrix
from blender_gs_addon.sh import rotate_sh_rest
splat_object = extension_module("scene.splat_object")
bpy.ops.wm.read_factory_settings(use_empty=True)
quiet = lambda *a: None
ours = splat_object.import_splats(ply, display=False, report=quiet)  # this add-on, the .ply
before = set(bpy.data.objects)
bpy.ops.import_scene.gltf(filepath=glb)  # Blender's own glTF importer, our .glb of that .ply
theirs = next(o for o in bpy.data.objects if o not in before)
bpy.context.view_layer.update()

def world(obj):
    cloud, n = obj.data, len(obj.data.points)
    def get(name, width, key):
        values = np.empty(n * width, np.float32)
        cloud.attributes[name].data.foreach_get(key, values)
        return values.reshape(n, width).astype(np.float64)
    m = np.array(obj.matrix_world)
    r = m[:3, :3] @ quat_to_matrix(get('rotation', 4, 'value'))
    r = r * get('scale', 3, 'vector')[:, None, :]  # M·R·S
    sh = np.stack([get(f'radiance:sh_{k}', 3, 'vector') for k in range(15)], 1)
    base = get('radiance:base', 4, 'vector')
    return {"type": cloud.type, "count": n, "matrix": m,
            "position": get('position', 3, 'vector') @ m[:3, :3].T + m[:3, 3],
            "covariance": r @ r.transpose(0, 2, 1), "base": base,
            "sh": rotate_sh_rest(sh, m[:3, :3])}

a, b = world(ours), world(theirs)


def cov(splats):
    m = quat_to_matrix(splats.rotations) * np.exp(splats.log_scales)[:, None, :]
    return m @ m.transpose(0, 2, 1)

scale = np.abs(a["covariance"]).max(axis=(1, 2))[:, None, None]
# Blender's object from its glTF import, exported here (no up axis of its own: Blender's glTF
# import convention), must give back the .glb's splats.
splat_object.export_splats(theirs, out, report=quiet)
again, first = read_splats(out), read_splats(glb)
print(json.dumps({
    "types": [a["type"], b["type"]], "counts": [a["count"], b["count"]],
    "their_matrix_is_identity": bool(np.allclose(b["matrix"], np.eye(4))),
    "position": float(np.abs(a["position"] - b["position"]).max()),
    "covariance": float((np.abs(a["covariance"] - b["covariance"]) / scale).max()),
    "base": float(np.abs(a["base"] - b["base"]).max()),
    "sh": float(np.abs(a["sh"] - b["sh"]).max()),
    "export_position": float(np.abs(again.positions - first.positions).max()),
    "export_covariance": float(np.abs(cov(again) - cov(first)).max()
                               / np.abs(cov(first)).max()),
    "export_opacity": float(np.abs(1 / (1 + np.exp(-again.opacity_logits))
                                   - 1 / (1 + np.exp(-first.opacity_logits))).max()),
    "export_sh": float(np.abs(again.sh_rest - first.sh_rest).max()),
}))
"""


def test_blender_53_imports_our_glb_where_we_import_the_ply(tmp_path, rng):
    """Blender 5.3's bundled glTF importer (an independent KHR_gaussian_splatting reader) turns
    our .glb of a .ply into a Gaussian-splat point cloud that coincides, splat for splat and in
    world space, with this add-on's import of the .ply — no turn between them — and exporting
    that object here gives the .glb's splats back (Blender's glTF axis convention)."""
    import subprocess
    from pathlib import Path

    python = os.environ.get("GS_BPY53_PYTHON")
    if not python:
        pytest.skip("set GS_BPY53_PYTHON to a Python with bpy 5.3 (python3.13 -m pip install "
                    "bpy==5.3.0) to check our .glb against Blender's own importer")
    s = random_splats(rng, 300, 3).normalized()
    write_splats(tmp_path / "x.ply", s)
    write_gltf(tmp_path / "x.glb", s)
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([python, "-c", BLENDER_PROBE, root, str(tmp_path / "x.ply"),
                           str(tmp_path / "x.glb"), str(tmp_path / "back.glb")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["types"] == ["GAUSSIAN_SPLAT"] * 2 and result["counts"] == [300, 300]
    assert result["their_matrix_is_identity"]
    assert result["position"] <= 1e-5 and result["covariance"] <= 1e-5
    assert result["base"] <= 1e-6 and result["sh"] <= 1e-5
    assert result["export_position"] <= 1e-5 and result["export_covariance"] <= 1e-5
    assert result["export_opacity"] <= 1e-7 and result["export_sh"] <= 1e-5
