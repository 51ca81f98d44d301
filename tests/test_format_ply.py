"""INRIA 3DGS .ply read/write: bit-exact round trips, hand-made files, bad input, other readers."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from fakes import Reports

from blender_gs_addon.errors import GSError
from blender_gs_addon.formats.ply import ply_property_names, read_ply, write_ply
from blender_gs_addon.splats import SplatSet

FIELDS = ("positions", "log_scales", "rotations", "opacity_logits", "sh_dc", "sh_rest")


def random_splats(rng, n: int, degree: int, *, extra: tuple[str, ...] = ()) -> SplatSet:
    k = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    out = SplatSet.from_arrays(
        positions=rng.normal(size=(n, 3)) * 10, log_scales=rng.normal(size=(n, 3)) - 3,
        rotations=rng.normal(size=(n, 4)), opacity_logits=rng.normal(size=n) * 3,
        sh_dc=rng.normal(size=(n, 3)), sh_rest=rng.normal(size=(n, k, 3)) * 0.3,
        extra={name: rng.normal(size=n) for name in extra},
    )
    if n >= 4:
        # values that text formats and byte swapping like to get wrong
        out.positions[0] = [-0.0, 1e-45, 3.4028235e38]
        out.positions[1] = [np.float32(0.1), np.float32(1) / np.float32(3), -1.17549435e-38]
        out.sh_dc[2] = [16777217.0, -123456.789, 7e-39]
    return out


def assert_bit_equal(a: SplatSet, b: SplatSet) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert y.dtype == np.float32 and y.flags.c_contiguous, name
        assert np.array_equal(x.view(np.uint32), y.view(np.uint32)), name
    assert list(a.extra) == list(b.extra)
    for name in a.extra:
        assert np.array_equal(a.extra[name].view(np.uint32), b.extra[name].view(np.uint32))


def header_and_body(path) -> tuple[list[str], bytes]:
    data = open(path, "rb").read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode().splitlines(), data[end:]


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("encoding", ["le", "be", "ascii"])
@pytest.mark.parametrize("normals", [False, True])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_bit_exact(tmp_path, rng, encoding, normals, degree):
    splats = random_splats(rng, 37, degree, extra=("t", "red") if degree == 2 else ())
    path = tmp_path / "a.ply"
    write_ply(path, splats, include_normals=normals, ascii=encoding == "ascii",
              byte_order=">" if encoding == "be" else "<")
    back = read_ply(path, report=Reports())
    assert_bit_equal(splats, back)


def test_binary_layout_matches_inria(tmp_path, rng):
    """Check the bytes themselves: INRIA order, float32 LE, f_rest channel-major."""
    splats = random_splats(rng, 11, 3, extra=("t",))
    path = tmp_path / "a.ply"
    write_ply(path, splats, include_normals=True)
    lines, body = header_and_body(path)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(45)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "t"]
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 11"]
    assert lines[3:-1] == [f"property float {n}" for n in names]
    assert ply_property_names(splats, include_normals=True) == names
    assert ply_property_names(splats)[:4] == ["x", "y", "z", "f_dc_0"]
    table = np.frombuffer(body, "<f4").reshape(11, len(names))
    col = {n: i for i, n in enumerate(names)}
    assert np.array_equal(table[:, col["nx"]:col["nz"] + 1], np.zeros((11, 3)))
    for c in range(3):
        for k in range(15):
            assert np.array_equal(table[:, col[f"f_rest_{c * 15 + k}"]], splats.sh_rest[:, k, c])
    assert np.array_equal(table[:, col["opacity"]], splats.opacity_logits)
    assert np.array_equal(table[:, col["rot_0"]:col["rot_3"] + 1], splats.rotations)
    assert np.array_equal(table[:, col["t"]], splats.extra["t"])


def test_big_endian_bytes_are_swapped(tmp_path, rng):
    splats = random_splats(rng, 5, 0)
    write_ply(tmp_path / "le.ply", splats)
    write_ply(tmp_path / "be.ply", splats, byte_order=">")
    lines, body_be = header_and_body(tmp_path / "be.ply")
    assert lines[1] == "format binary_big_endian 1.0"
    _, body_le = header_and_body(tmp_path / "le.ply")
    assert np.array_equal(np.frombuffer(body_be, ">f4"), np.frombuffer(body_le, "<f4"))


def test_ascii_file_is_text_with_nine_digits(tmp_path, rng):
    splats = random_splats(rng, 4, 0)
    write_ply(tmp_path / "a.ply", splats, ascii=True)
    lines, body = header_and_body(tmp_path / "a.ply")
    assert lines[1] == "format ascii 1.0"
    rows = body.decode().splitlines()
    assert len(rows) == 4 and len(rows[0].split()) == 14
    assert float(rows[2].split()[3]) == splats.sh_dc[2, 0] == 16777216.0  # f32(16777217)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_a_file_without_splats_is_an_error(tmp_path, fmt):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
             "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    head = ["ply", f"format {fmt} 1.0", "element vertex 0",
            *(f"property float {n}" for n in names), "end_header", ""]
    path = tmp_path / "e.ply"
    path.write_bytes("\n".join(head).encode())
    with pytest.raises(GSError, match=r"e\.ply: the header declares no splats"):
        read_ply(path)
    path.write_bytes("\n".join(head).encode() + bytes(56 * 3))  # rows after a lying count
    with pytest.raises(GSError, match="no splats .* although 168 bytes of data follow"):
        read_ply(path)
    with pytest.raises(GSError, match="no splats to write"):
        write_ply(tmp_path / "w.ply", SplatSet.empty(0, 1))


# ------------------------------------------------------------------------ hand-made files
def _hand_file(path, fmt: str, props: list[tuple[str, str]], rows: np.ndarray, *,
               before: bytes = b"", before_header: str = "", after_header: str = "",
               after: bytes = b"") -> None:
    header = f"ply\nformat {fmt} 1.0\ncomment made by hand\n{before_header}"
    header += f"element vertex {len(rows)}\n"
    header += "".join(f"property {t} {n}\n" for n, t in props)
    header += after_header + "end_header\n"
    with open(path, "wb") as fh:
        fh.write(header.encode())
        fh.write(before)
        if fmt == "ascii":
            fh.write("".join(" ".join(repr(float(v)) for v in row) + "\n"
                             for row in rows).encode())
        else:
            order = ">" if fmt == "binary_big_endian" else "<"
            codes = {"float": "f4", "double": "f8", "uchar": "u1", "int": "i4", "short": "i2"}
            dtype = np.dtype([(n, order + codes[t]) for n, t in props])
            rec = np.empty(len(rows), dtype)
            for j, (n, _) in enumerate(props):
                rec[n] = rows[:, j]
            fh.write(rec.tobytes())
        fh.write(after)


def _shuffled_props(rng, k: int, ptype: str) -> list[tuple[str, str]]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * k)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    order = rng.permutation(len(names))
    return [(names[i], ptype) for i in order]


def _expected_from_rows(props, rows, k):
    col = {n: j for j, (n, _) in enumerate(props)}

    def take(*names):
        return np.stack([rows[:, col[n]] for n in names], axis=1).astype(np.float32)

    rest = np.zeros((len(rows), k, 3), np.float32)
    for c in range(3):
        for j in range(k):
            rest[:, j, c] = rows[:, col[f"f_rest_{c * k + j}"]]
    return dict(
        positions=take("x", "y", "z"), sh_dc=take("f_dc_0", "f_dc_1", "f_dc_2"),
        opacity_logits=take("opacity")[:, 0], log_scales=take("scale_0", "scale_1", "scale_2"),
        rotations=take("rot_0", "rot_1", "rot_2", "rot_3"), sh_rest=rest,
    )


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
@pytest.mark.parametrize("ptype", ["float", "double"])
def test_hand_written_shuffled_file(tmp_path, rng, fmt, ptype):
    k = 8
    props = _shuffled_props(rng, k, ptype)
    rows = rng.normal(size=(23, len(props)))
    if ptype == "float":
        rows = rows.astype(np.float32).astype(np.float64)
    _hand_file(tmp_path / "h.ply", fmt, props, rows)
    back = read_ply(tmp_path / "h.ply", report=Reports())
    for name, want in _expected_from_rows(props, rows, k).items():
        assert np.array_equal(getattr(back, name), want), name
    assert back.extra == {}  # normals are not extras


def test_mixed_property_types_and_extra_kept(tmp_path, rng):
    props = [(n, "double") for n in ("x", "y", "z")] + [("red", "uchar"), ("t", "int")]
    props += [(n, "float") for n in ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0",
                                     "scale_1", "scale_2")]
    props += [(f"rot_{i}", "short") for i in range(4)]
    rows = rng.normal(size=(9, len(props))).astype(np.float32).astype(np.float64)
    rows[:, 3] = rng.integers(0, 256, 9)
    rows[:, 4] = rng.integers(-10**6, 10**6, 9)
    rows[:, -4:] = rng.integers(1, 300, (9, 4))
    _hand_file(tmp_path / "m.ply", "binary_little_endian", props, rows)
    reports = Reports()
    back = read_ply(tmp_path / "m.ply", report=reports)
    for name, want in _expected_from_rows(props, rows, 0).items():
        assert np.array_equal(getattr(back, name), want), name
    assert list(back.extra) == ["red", "t"]
    assert np.array_equal(back.extra["red"], rows[:, 3].astype(np.float32))
    assert np.array_equal(back.extra["t"], rows[:, 4].astype(np.float32))
    assert any("red" in m and "t" in m for m in reports.at("INFO"))

    dropped = Reports()
    back = read_ply(tmp_path / "m.ply", keep_extra=False, report=dropped)
    assert back.extra == {}
    assert any("red" in m for m in dropped.at("WARNING"))


def test_other_elements_are_skipped(tmp_path, rng):
    props = _shuffled_props(rng, 3, "float")
    rows = rng.normal(size=(6, len(props))).astype(np.float32).astype(np.float64)
    before = np.zeros(2, np.dtype([("a", "<f8"), ("b", "<f4")])).tobytes()  # element camera
    after = b"\x03" + np.arange(3, dtype="<i4").tobytes()  # one face with a list
    _hand_file(tmp_path / "o.ply", "binary_little_endian", props, rows, before=before,
               before_header="element camera 2\nproperty double a\nproperty float b\n",
               after_header="element face 1\nproperty list uchar int vertex_indices\n",
               after=after)
    back = read_ply(tmp_path / "o.ply", report=Reports())
    assert np.array_equal(back.positions, _expected_from_rows(props, rows, 3)["positions"])


def test_list_element_before_vertex_in_binary_is_refused(tmp_path, rng):
    props = _shuffled_props(rng, 0, "float")
    rows = rng.normal(size=(2, len(props)))
    _hand_file(tmp_path / "l.ply", "binary_little_endian", props, rows,
               before=b"\x01" + np.zeros(1, "<i4").tobytes(),
               before_header="element face 1\nproperty list uchar int vertex_indices\n")
    with pytest.raises(GSError, match=r"l\.ply.*'face'.*list"):
        read_ply(tmp_path / "l.ply")


def test_empty_list_element_before_vertex_in_binary_is_fine(tmp_path, rng):
    props = _shuffled_props(rng, 0, "float")
    rows = rng.normal(size=(2, len(props))).astype(np.float32).astype(np.float64)
    _hand_file(tmp_path / "l.ply", "binary_little_endian", props, rows,
               before_header="element face 0\nproperty list uchar int vertex_indices\n")
    back = read_ply(tmp_path / "l.ply", report=Reports())
    assert np.array_equal(back.positions, _expected_from_rows(props, rows, 0)["positions"])


def test_ascii_with_list_element_before_vertex_and_crlf(tmp_path, rng):
    props = _shuffled_props(rng, 0, "double")
    rows = rng.normal(size=(4, len(props)))
    _hand_file(tmp_path / "a.ply", "ascii", props, rows, before=b"3 0 1 2\r\n4 0 1 2 3\r\n",
               before_header="element face 2\nproperty list uchar int vertex_indices\n")
    data = open(tmp_path / "a.ply", "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    open(tmp_path / "a.ply", "wb").write(data)
    back = read_ply(tmp_path / "a.ply", report=Reports())
    for name, want in _expected_from_rows(props, rows, 0).items():
        assert np.array_equal(getattr(back, name), want), name


# ---------------------------------------------------------------------------- non-finite rows
def test_nan_rows_dropped_and_reported(tmp_path, rng):
    splats = random_splats(rng, 20, 1, extra=("t",))
    splats.positions[3, 1] = np.nan
    splats.sh_rest[7, 2, 0] = np.inf
    splats.extra["t"][11] = -np.inf
    splats.rotations[13] = 0.0
    path = tmp_path / "n.ply"
    write_ply(path, splats)
    reports = Reports()
    back = read_ply(path, report=reports)
    keep = np.setdiff1d(np.arange(20), [3, 7, 11, 13])
    assert_bit_equal(splats.subset(keep), back)
    warnings = reports.at("WARNING")
    assert any("4" in m and "20" in m and "n.ply" in m for m in warnings), warnings

    with pytest.raises(GSError, match=r"n\.ply.*4 of 20"):
        read_ply(path, nonfinite="error")


def test_nan_rows_dropped_in_ascii(tmp_path, rng):
    splats = random_splats(rng, 6, 0)
    splats.opacity_logits[2] = np.nan
    write_ply(tmp_path / "n.ply", splats, ascii=True)
    back = read_ply(tmp_path / "n.ply", report=Reports())
    assert_bit_equal(splats.subset(np.array([0, 1, 3, 4, 5])), back)


def test_all_nan_is_an_error(tmp_path, rng):
    splats = random_splats(rng, 5, 0)
    splats.log_scales[:] = np.nan
    write_ply(tmp_path / "all.ply", splats)
    with pytest.raises(GSError, match=r"all\.ply.*all of them"):
        read_ply(tmp_path / "all.ply")


# --------------------------------------------------------------------------------- bad input
def _valid_bytes(rng, n=8, degree=1, **options) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_ply(os.path.join(d, "v.ply"), random_splats(rng, n, degree), **options)
        with open(os.path.join(d, "v.ply"), "rb") as fh:
            return fh.read()


def test_lying_header_fails_fast(tmp_path, rng):
    data = _valid_bytes(rng, 4, 0).replace(b"element vertex 4", b"element vertex 1000000000000")
    path = tmp_path / "liar.ply"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(GSError) as info:
        read_ply(path)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert "liar.ply" in message and "1,000,000,000,000" in message
    assert f"{len(data):,} bytes" in message


def test_lying_ascii_header_fails_fast(tmp_path, rng):
    path = tmp_path / "liar.ply"
    write_ply(path, random_splats(rng, 3, 0), ascii=True)
    path.write_bytes(path.read_bytes().replace(b"vertex 3", b"vertex 999999999999"))
    with pytest.raises(GSError, match=r"liar\.ply.*999,999,999,999"):
        read_ply(path)


@pytest.mark.parametrize("ascii", [False, True])
def test_truncated_file(tmp_path, rng, ascii):
    path = tmp_path / "cut.ply"
    write_ply(path, random_splats(rng, 10, 2), ascii=ascii)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 300])
    with pytest.raises(GSError, match=r"cut\.ply"):
        read_ply(path)


def test_trailing_garbage_is_a_warning(tmp_path, rng):
    splats = random_splats(rng, 10, 1)
    path = tmp_path / "tail.ply"
    write_ply(path, splats)
    with open(path, "ab") as fh:
        fh.write(b"\x00garbage")
    reports = Reports()
    assert_bit_equal(splats, read_ply(path, report=reports))
    assert any("8 trailing bytes" in m for m in reports.at("WARNING"))


@pytest.mark.parametrize("content", [
    b"", b"hello world\n", b"ply\n", b"ply\nformat binary_little_endian 1.0\n",
    bytes(range(256)) * 4, b"ply\nformat binary_little_endian 2.0\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 1\nproperty foo x\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 99" + b"9" * 5000 + b"\nend_header\n",
])
def test_not_a_ply(tmp_path, content):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(GSError, match=r"bad\.ply"):
        read_ply(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(GSError, match="nope.ply"):
        read_ply(tmp_path / "nope.ply")
    with pytest.raises(GSError, match=str(tmp_path.name)):
        read_ply(tmp_path)


def test_mesh_ply_is_not_a_splat_file(tmp_path):
    path = tmp_path / "mesh.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                     b"property float y\nproperty float z\nproperty uchar red\n"
                     b"end_header\n0 0 0 255\n")
    with pytest.raises(GSError) as info:
        read_ply(path)
    message = str(info.value)
    assert "mesh.ply" in message and "does not look like a Gaussian splat" in message
    assert "f_dc_0" in message and "rot_3" in message and "opacity" in message


def test_wrong_sh_count_names_it(tmp_path, rng):
    props = _shuffled_props(rng, 0, "float") + [(f"f_rest_{i}", "float") for i in range(12)]
    _hand_file(tmp_path / "sh.ply", "binary_little_endian", props,
               np.zeros((2, len(props))))
    with pytest.raises(GSError, match=r"sh\.ply.*12 f_rest"):
        read_ply(tmp_path / "sh.ply")


def test_no_vertex_element(tmp_path):
    path = tmp_path / "nv.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement face 0\n"
                     b"property list uchar int vertex_indices\nend_header\n")
    with pytest.raises(GSError, match=r"nv\.ply.*no 'vertex' element"):
        read_ply(path)


def test_bad_write_arguments(tmp_path, rng):
    splats = random_splats(rng, 3, 0, extra=("bad name",))
    with pytest.raises(GSError, match="bad name"):
        write_ply(tmp_path / "w.ply", splats)
    with pytest.raises(GSError, match="byte_order"):
        write_ply(tmp_path / "w.ply", random_splats(rng, 3, 0), byte_order="big")
    with pytest.raises(GSError, match="w.ply"):
        write_ply(tmp_path / "missing_dir" / "w.ply", random_splats(rng, 3, 0))


def test_registry_dispatch(tmp_path, rng):
    from blender_gs_addon.formats import read_splats, write_splats

    splats = random_splats(rng, 9, 3, extra=("t",))
    write_splats(tmp_path / "r.ply", splats)
    assert_bit_equal(splats, read_splats(tmp_path / "r.ply", report=Reports()))


# ----------------------------------------------------------------------------- other readers
@pytest.mark.bpy
def test_blender_ply_importer_reads_our_file(tmp_path, rng):
    bpy = pytest.importorskip("bpy")
    if tuple(bpy.app.version) >= (5, 3, 0):
        pytest.skip("Blender 5.3+ reads a 3DGS .ply as native splats, not a mesh of raw "
                    "properties: tests/test_native_splats.py checks those against our files")
    bpy.ops.wm.read_homefile(app_template="")
    splats = random_splats(rng, 64, 3)
    path = tmp_path / "for_blender.ply"
    write_ply(path, splats)
    assert bpy.ops.wm.ply_import(filepath=str(path)) == {"FINISHED"}
    mesh = bpy.context.selected_objects[0].data
    assert len(mesh.vertices) == 64

    def attribute(name):
        attr = mesh.attributes[name]
        assert attr.data_type == "FLOAT" and attr.domain == "POINT"
        values = np.empty(64, np.float32)
        attr.data.foreach_get("value", values)
        return values

    positions = np.empty(64 * 3, np.float32)
    mesh.vertices.foreach_get("co", positions)
    assert np.array_equal(positions.reshape(64, 3), splats.positions)
    for i in range(3):
        assert np.array_equal(attribute(f"f_dc_{i}"), splats.sh_dc[:, i])
        assert np.array_equal(attribute(f"scale_{i}"), splats.log_scales[:, i])
    for c in range(3):
        for k in range(15):
            assert np.array_equal(attribute(f"f_rest_{c * 15 + k}"), splats.sh_rest[:, k, c])
    assert np.array_equal(attribute("opacity"), splats.opacity_logits)
    for i in range(4):
        assert np.array_equal(attribute(f"rot_{i}"), splats.rotations[:, i])


@pytest.mark.parametrize("degree", [0, 3])
def test_gsplat_exporter_file_reads_back(tmp_path, rng, degree):
    torch = pytest.importorskip("torch")
    from gsplat import export_splats

    splats = random_splats(rng, 50, degree)
    splats.opacity_logits[:5] = -9.0  # sigmoid < 1/255: dropped by gsplat's compressed writer
    path = tmp_path / "gsplat.ply"
    export_splats(
        means=torch.from_numpy(splats.positions), scales=torch.from_numpy(splats.log_scales),
        quats=torch.from_numpy(splats.rotations),
        opacities=torch.from_numpy(splats.opacity_logits),
        sh0=torch.from_numpy(splats.sh_dc[:, None, :]), shN=torch.from_numpy(splats.sh_rest),
        format="ply", save_to=str(path),
    )
    back = read_ply(path, report=Reports())
    keep = splats.opacities() > 1 / 255
    # gsplat 1.5.3's plain .ply writer keeps every finite splat; only its compressed writer
    # applies the 1/255 opacity cut. Accept either, but the kept rows must be bit-exact.
    expected = splats if back.count == splats.count else splats.subset(keep)
    assert back.count in (splats.count, int(keep.sum()))
    assert_bit_equal(expected, back)


# -------------------------------------------------------------------------------------- fuzz
def _seed_files() -> list[bytes]:
    rng = np.random.default_rng(7)
    return [
        _valid_bytes(rng, 40, 1),
        _valid_bytes(rng, 30, 0, byte_order=">", include_normals=True),
        _valid_bytes(rng, 12, 2, ascii=True),
    ]


SEED_FILES = _seed_files()
_TYPES = ["float", "double", "uchar", "int", "short", "char", "uint16", "float64", "long"]
_NAMES = ["x", "y", "z", "nx", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
          "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "f_rest_0", "f_rest_8", "t", "red"]
_STANDARD = [f"property float {n}" for n in _NAMES[:3] + _NAMES[4:15]]


def _read_or_gserror(path) -> None:
    try:
        splats = read_ply(path, report=lambda levels, message: None)
    except GSError:
        return
    splats.validate(name="fuzz")
    with np.errstate(over="ignore"):
        assert splats.count == 0 or splats.finite_mask().all()


def test_fuzz_mutated_files(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=5000, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(which=st.integers(0, len(SEED_FILES) - 1),
           edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6),
           cut=st.one_of(st.none(), st.floats(0, 1)),
           append=st.binary(max_size=64))
    def check(which, edits, cut, append):
        data = bytearray(SEED_FILES[which])
        for where, value in edits:
            data[min(int(where * len(data)), len(data) - 1)] = value
        if cut is not None:
            data = data[: int(cut * len(data))]
        path = tmp_path / "fuzz.ply"
        path.write_bytes(bytes(data) + append)
        _read_or_gserror(path)

    check()


def test_fuzz_random_headers(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    prop = st.one_of(
        st.builds("property {} {}".format, st.sampled_from(_TYPES), st.sampled_from(_NAMES)),
        st.builds("property list uchar int {}".format, st.sampled_from(["vertex_indices", "x"])),
    )
    line = st.one_of(
        st.just("comment fuzz"), prop,
        st.lists(st.sampled_from(["ply", "format", "ascii", "1.0", "end_header", "element"]),
                 min_size=1, max_size=3).map(" ".join),
    )
    element = st.builds(
        lambda name, n, props: [f"element {name} {n}", *props],
        st.sampled_from(["face", "camera"]),
        st.one_of(st.integers(0, 4), st.integers(0, 10**15)), st.lists(prop, max_size=3))
    before = st.lists(element, max_size=2).map(lambda blocks: sum(blocks, []))

    @settings(max_examples=200, deadline=5000, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(fmt=st.sampled_from(["ascii", "binary_little_endian", "binary_big_endian"]),
           count=st.one_of(st.integers(0, 8), st.integers(0, 10**15)),
           before=before, after=st.lists(st.one_of(line, element.map("\n".join)), max_size=2),
           standard=st.sampled_from([True, True, True, False]), body=st.binary(max_size=600),
           seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)), text_body=st.booleans())
    def check(fmt, count, before, after, standard, body, seed, text_body):
        header = ["ply", f"format {fmt} 1.0", *before, f"element vertex {count}"]
        header += (_STANDARD if standard else []) + after + ["end_header"]
        if text_body:
            numbers = [str(b - 128) for b in body]
            body = "\n".join(" ".join(numbers[i:i + 14]) for i in range(0, len(numbers), 14))
            body = body.encode()
        elif seed is not None and count <= 8:  # the right size for the standard properties
            body = np.random.default_rng(seed).bytes(56 * count) + body[:seed % 3]
        path = tmp_path / "fuzz.ply"
        path.write_bytes(("\n".join(header) + "\n").encode() + body)
        _read_or_gserror(path)

    check()
