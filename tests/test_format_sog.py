"""PlayCanvas SOG (version 2): round trips within the documented bounds, the file layout checked
by decoding our images by hand, determinism, the codebooks, bad input (zip and image bombs
included) and fuzzing."""

import io
import json
import math
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_fuzz import mutate_json
from PIL import Image
from reader_fuzz import read_fails_cleanly_or_finite

from blender_gs_addon.errors import GSError
from blender_gs_addon.formats import ReadLimits, detect_format, read_splats, write_splats
from blender_gs_addon.formats.codebooks import (
    codebook_error,
    nearest_centroid,
    scalar_codebook,
    vector_palette,
)
from blender_gs_addon.formats.compressed_ply import morton_order
from blender_gs_addon.formats.sog import (
    default_palette_size,
    read_sog,
    texture_shape,
    write_sog,
)
from blender_gs_addon.quaternions import normalize_quat
from blender_gs_addon.sh import coeffs_for_degree
from blender_gs_addon.splats import SplatSet

pytestmark = pytest.mark.skipif(not __import__("PIL.features").features.check("webp"),
                                reason="this Pillow has no WebP support")


def random_splats(rng, n, degree, spread=2.0):
    return SplatSet.from_arrays(
        positions=rng.normal(size=(n, 3)) * spread, log_scales=rng.normal(-4, 1, (n, 3)),
        rotations=rng.normal(size=(n, 4)), opacity_logits=rng.normal(0, 3, n),
        sh_dc=rng.normal(0, 1, (n, 3)),
        sh_rest=rng.normal(0, 0.2, (n, coeffs_for_degree(degree), 3)))


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def log_transform(x):
    return np.sign(x) * np.log1p(np.abs(x))


def quiet(*_):
    pass


def members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("degree", [0, 1, 3])
@pytest.mark.parametrize("name", ["x.sog", "folder/meta.json"])
def test_round_trip_within_documented_bounds(tmp_path, rng, degree, name):
    s = random_splats(rng, 3000, degree)
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    notes = []
    write_splats(path, s, report=lambda lv, m: notes.append(m))
    assert detect_format(path) == "sog"
    back = read_splats(path)
    ref = s.subset(morton_order(s.positions))  # the file is in Morton order
    lp = log_transform(ref.positions.astype(np.float64))
    span = lp.max(0) - lp.min(0)
    bound = (1 + np.abs(ref.positions)) * np.expm1(span / 131070) + 1e-6
    assert (np.abs(back.positions - ref.positions) <= bound).all()
    q = normalize_quat(ref.rotations.astype(np.float64))
    q *= np.where(np.take_along_axis(q, np.abs(q).argmax(1)[:, None], 1) < 0, -1, 1)
    delta = 1 / (255 * math.sqrt(2))
    assert np.abs(back.rotations - q).max() <= 3 * delta + 1e-6  # the rebuilt component: ≤ 3δ
    assert np.linalg.norm(back.rotations - q, axis=1).max() <= 2 * math.sqrt(3) * delta + 1e-6
    error = np.abs(sigmoid(back.opacity_logits) - sigmoid(ref.opacity_logits)).max()
    assert error <= 1 / 510 + 1e-9
    # the codebook errors the writer reported are the errors found
    reported = [float(v.split(",")[0]) for v in notes[0].split("≤ ")[1:3]]
    assert np.abs(back.log_scales - ref.log_scales).max() == pytest.approx(reported[0], rel=6e-3)
    assert np.abs(back.sh_dc - ref.sh_dc).max() == pytest.approx(reported[1], rel=6e-3)
    assert reported[0] < 0.05 and reported[1] < 0.05
    assert back.sh_degree == degree
    if degree:
        rms = float(notes[0].split("RMS ")[1].split(" ")[0])
        err = np.sqrt(np.mean((back.sh_rest.astype(np.float64) - ref.sh_rest) ** 2))
        assert err == pytest.approx(rms, rel=6e-3)
        assert err < 0.6 * np.sqrt(np.mean(ref.sh_rest.astype(np.float64) ** 2))


def test_palette_as_large_as_the_set_stores_each_coefficient_as_its_nearest_code(tmp_path, rng):
    s = random_splats(rng, 40, 2)  # 40 splats, 64 palette entries: every splat its own entry
    write_sog(tmp_path / "x.sog", s, palette_size=64, report=quiet)
    back = read_sog(tmp_path / "x.sog")
    ref = s.subset(morton_order(s.positions))
    book = np.array(json.loads(members(tmp_path / "x.sog")["meta.json"])["shN"]["codebook"])
    nearest = book[np.abs(ref.sh_rest[..., None] - book).argmin(-1)]
    np.testing.assert_allclose(back.sh_rest, nearest, atol=1e-7)
    assert np.abs(back.sh_rest - ref.sh_rest).max() < 0.02


def test_saving_a_read_sog_again_loses_nothing(tmp_path, rng):
    write_sog(tmp_path / "a.sog", random_splats(rng, 4000, 3), report=quiet)
    first = read_sog(tmp_path / "a.sog")
    write_sog(tmp_path / "b.sog", first, report=quiet)
    second = read_sog(tmp_path / "b.sog")
    order = morton_order(first.positions)
    for key in ("log_scales", "sh_dc", "sh_rest", "opacity_logits"):
        np.testing.assert_array_equal(getattr(second, key), getattr(first.subset(order), key))
    np.testing.assert_allclose(second.positions, first.subset(order).positions, rtol=1e-6)
    a, b = second.rotations, first.subset(order).rotations
    error = np.minimum(np.abs(a - b).max(1), np.abs(a + b).max(1))  # q and −q: one rotation
    assert (error <= 1e-6).mean() > 0.99  # ties for the largest component may re-pack
    assert error.max() <= 3 / (255 * math.sqrt(2))


def test_file_layout_decoded_by_hand(tmp_path, rng):
    s = random_splats(rng, 1000, 3)
    write_sog(tmp_path / "x.sog", s, report=quiet)
    files = members(tmp_path / "x.sog")
    meta = json.loads(files["meta.json"])
    assert meta["version"] == 2 and meta["count"] == 1000
    w, h = texture_shape(1000)
    assert (w, h) == (32, 32) and w * h >= 1000
    images = {name: pixels(data) for name, data in files.items() if name.endswith(".webp")}
    for name in ("means_l.webp", "means_u.webp", "quats.webp", "scales.webp", "sh0.webp",
                 "shN_labels.webp"):
        assert images[name].shape == (h, w, 4), name
    ref = s.subset(morton_order(s.positions))
    texel = lambda name: images[name].reshape(-1, 4)[:1000]  # noqa: E731
    q16 = texel("means_l.webp")[:, :3].astype(np.int64) + 256 * texel("means_u.webp")[:, :3]
    mins, maxs = np.array(meta["means"]["mins"]), np.array(meta["means"]["maxs"])
    np.testing.assert_allclose(mins, log_transform(ref.positions.astype(np.float64)).min(0))
    log_pos = log_transform(ref.positions.astype(np.float64))
    expect = np.rint((log_pos - mins) / (maxs - mins) * 65535)
    np.testing.assert_array_equal(q16, expect)
    quats = texel("quats.webp")
    assert set(np.unique(quats[:, 3])) <= {252, 253, 254, 255}
    q = normalize_quat(ref.rotations.astype(np.float64))
    np.testing.assert_array_equal(quats[:, 3] - 252, np.abs(q).argmax(1))
    sh0 = texel("sh0.webp")
    np.testing.assert_array_equal(sh0[:, 3], np.rint(sigmoid(ref.opacity_logits) * 255))
    book = np.array(meta["sh0"]["codebook"])
    assert len(book) <= 256 and (np.diff(book) > 0).all()
    assert np.abs(book[sh0[:, :3]] - ref.sh_dc).max() <= np.diff(book).max() / 2 + 1e-6
    shn = meta["shN"]
    assert shn["bands"] == 3 and shn["count"] == min(default_palette_size(1000), 1000)
    centroids = images["shN_centroids.webp"]
    assert centroids.shape[1] == 64 * 15 and centroids.shape[0] == math.ceil(shn["count"] / 64)
    labels = texel("shN_labels.webp")[:, 0].astype(np.int64) + 256 * texel("shN_labels.webp")[:, 1]
    assert labels.max() < shn["count"]
    entry = centroids[:, :, :3].reshape(-1, 15, 3)[labels]  # [N, 15, 3] codebook indices
    decoded = np.array(shn["codebook"])[entry]
    np.testing.assert_allclose(read_sog(tmp_path / "x.sog").sh_rest, decoded, atol=1e-6)


def test_same_seed_same_bytes_other_seed_other_palette(tmp_path, rng):
    s = random_splats(rng, 5000, 1)
    write_sog(tmp_path / "a.sog", s, report=quiet)
    write_sog(tmp_path / "b.sog", s, report=quiet)
    write_sog(tmp_path / "c.sog", s, seed=1, report=quiet)
    assert (tmp_path / "a.sog").read_bytes() == (tmp_path / "b.sog").read_bytes()
    assert members(tmp_path / "a.sog")["shN_centroids.webp"] != \
        members(tmp_path / "c.sog")["shN_centroids.webp"]
    same = members(tmp_path / "c.sog")["means_l.webp"]
    assert members(tmp_path / "a.sog")["means_l.webp"] == same


def test_opacity_end_bytes_and_flat_ranges_stay_finite(tmp_path, rng):
    s = random_splats(rng, 64, 0)
    s.opacity_logits[:2] = [-40.0, 40.0]  # bytes 0 and 255
    s.positions[:, 2] = 1.5  # a flat axis: zero range
    write_sog(tmp_path / "x.sog", s, report=quiet)
    back = read_sog(tmp_path / "x.sog", nonfinite="error")
    assert back.count == 64 and np.isfinite(back.opacity_logits).all()
    # alpha 0 keeps its colour (WebP "exact"; splat-transform's encoder loses it)
    invisible = np.argmin(back.opacity_logits)
    expect = s.sh_dc[np.argmin(s.opacity_logits)]
    assert np.abs(back.sh_dc[invisible] - expect).max() < 0.05
    ends = np.sort(sigmoid(back.opacity_logits))[[0, -1]]
    np.testing.assert_allclose(ends, [0.25 / 255, 1 - 0.25 / 255])
    np.testing.assert_allclose(back.positions[:, 2], 1.5, rtol=1e-6)


def test_writer_refuses_what_it_cannot_store(tmp_path, rng):
    s = random_splats(rng, 10, 0)
    s.sh_dc[2, 0] = np.inf
    with pytest.raises(GSError, match="NaN or infinite"):
        write_sog(tmp_path / "x.sog", s)
    with pytest.raises(GSError, match="no splats"):
        write_sog(tmp_path / "x.sog", SplatSet.empty(0))
    with pytest.raises(GSError, match="palette size"):
        write_sog(tmp_path / "x.sog", random_splats(rng, 10, 1), palette_size=70000)
    assert not (tmp_path / "x.sog").exists()


# ------------------------------------------------------------------ codebooks
def test_scalar_codebook_bounds_and_exact_small_sets(rng):
    values = rng.normal(0, 1, 20000).astype(np.float32)
    book, index = scalar_codebook(values)
    assert len(book) == 256 and index.dtype == np.uint8 and (np.diff(book) > 0).all()
    err = np.abs(values - book[index])
    nearest = np.abs(values[:, None] - book[None, :]).min(1)
    np.testing.assert_allclose(err, nearest, atol=1e-7)  # every value takes its nearest entry
    assert codebook_error(values, book, index) == pytest.approx(err.max())
    assert err.max() < 0.06  # tails get entries too (plain MSE leaves ~0.5 here)
    few = np.repeat(np.arange(10, dtype=np.float32) * 0.37, 5)
    book, index = scalar_codebook(few)
    np.testing.assert_array_equal(book[index], few)


def test_vector_palette_is_exact_small_deterministic_and_improves_on_its_start(rng):
    x = rng.normal(size=(300, 9)).astype(np.float32)
    c, lab = vector_palette(x, 512)
    np.testing.assert_array_equal(c[lab], x)
    x = (rng.normal(size=(20, 9))[rng.integers(0, 20, 6000)]
         + rng.normal(0, 0.05, (6000, 9))).astype(np.float32)  # 20 tight clusters
    c1, l1 = vector_palette(x, 64, seed=3)
    c2, l2 = vector_palette(x, 64, seed=3)
    np.testing.assert_array_equal(c1, c2) and np.testing.assert_array_equal(l1, l2)
    assert len(c1) == 64 and l1.max() < 64
    np.testing.assert_array_equal(l1, nearest_centroid(x, c1))  # labels are nearest centroids
    rms = np.sqrt(((x - c1[l1]) ** 2).sum(1).mean())
    start = x[np.random.default_rng(0).choice(6000, 64, replace=False)]
    rms_start = np.sqrt(((x - start[nearest_centroid(x, start)]) ** 2).sum(1).mean())
    assert rms < 0.8 * rms_start and rms < 0.2


# ------------------------------------------------------------------ bad input
def _bundle(tmp_path, rng, n=100, degree=1):
    write_sog(tmp_path / "ok.sog", random_splats(rng, n, degree), report=quiet)
    return members(tmp_path / "ok.sog")


def _rezip(path, files, sizes=None):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)


def _meta_edit(change):
    def apply(files):
        meta = json.loads(files["meta.json"])
        change(meta)
        files["meta.json"] = json.dumps(meta).encode()
    return apply


def _png(rgba):
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG")
    return out.getvalue()


def _webp_bomb(files):
    out = io.BytesIO()
    Image.fromarray(np.zeros((16383, 2000, 4), np.uint8), "RGBA").save(
        out, "WEBP", lossless=True, quality=0, method=0)
    files["scales.webp"] = out.getvalue()


def _bad_labels(files):
    lab = pixels(files["shN_labels.webp"]).copy()
    lab[0, 0, :2] = 255  # label 65535
    files["shN_labels.webp"] = _png(lab)


def _bad_quat_tag(files):
    q = pixels(files["quats.webp"]).copy()
    q[0, 0, 3] = 7
    files["quats.webp"] = _png(q)


def _tiny_image(files):
    files["sh0.webp"] = _png(np.zeros((2, 2, 4), np.uint8))


def _jpeg(files):
    out = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(out, "JPEG")
    files["sh0.webp"] = out.getvalue()


BAD = {
    "no 'version'": _meta_edit(lambda m: m.pop("version")),
    "SOG version 3": _meta_edit(lambda m: m.update(version=3)),
    "'count' must be a positive integer": _meta_edit(lambda m: m.update(count=-4)),
    "declares 1,000,000,000 splats, more than the limit": _meta_edit(
        lambda m: m.update(count=10**9)),
    "expansion of .* likely decompression bomb": _meta_edit(lambda m: m.update(count=5_000_000)),
    "lacks the 'quats' section": _meta_edit(lambda m: m.pop("quats")),
    "must name 2 image file": _meta_edit(lambda m: m["means"].update(files=["means_l.webp"])),
    "'means.mins' must be a list of 3 finite": _meta_edit(lambda m: m["means"].update(mins=[0, 1])),
    "refers to codebook entry": _meta_edit(lambda m: m["scales"].update(codebook=[0.5, 0.25])),
    "'shN.bands' must be 1, 2 or 3": _meta_edit(lambda m: m["shN"].update(bands=4)),
    "points outside the bundle": _meta_edit(lambda m: m["sh0"].update(files=["../../x.webp"])),
    "lacks sh1.webp": _meta_edit(lambda m: m["sh0"].update(files=["sh1.webp"])),
    "an image bomb": _webp_bomb,
    "palette entry 65535": _bad_labels,
    "largest-component tag": _bad_quat_tag,
    "too few for 100": _tiny_image,
    "JPEG image": _jpeg,
    "not valid JSON": lambda files: files.update({"meta.json": b"{not json"}),
    "no meta.json at its root": lambda files: files.pop("meta.json"),
}


@pytest.mark.parametrize("words", list(BAD))
def test_bad_bundles_are_one_clear_error(tmp_path, rng, words):
    files = _bundle(tmp_path, rng)
    BAD[words](files)
    path = tmp_path / "bad.sog"
    _rezip(path, files)
    with pytest.raises(GSError, match=words) as err:
        read_sog(path)
    assert str(path) in str(err.value)


def test_zip_bomb_is_refused_from_its_declared_size(tmp_path, rng):
    files = _bundle(tmp_path, rng, n=100, degree=0)
    files["sh0.webp"] = b"\0" * (64 << 20)  # deflates to ~64 KiB; the budget is ~3 MB
    path = tmp_path / "bomb.sog"
    _rezip(path, files)
    assert path.stat().st_size < 200_000
    with pytest.raises(GSError, match="decompression bomb"):
        read_sog(path)
    # within the byte budget, a member is still held to the limits' expansion ratio
    files["sh0.webp"] = b"\0" * (1 << 19)  # 512 KiB (the budget is 593,024) deflating to ~1 KiB
    _rezip(path, files)
    with pytest.raises(GSError, match=r"sh0.webp declares 524,288 bytes from [\d,]+ compressed"):
        read_sog(path, limits=ReadLimits(expansion_allowance=0))


def test_reader_contract_limits_and_refused_versions(tmp_path, rng):
    files = _bundle(tmp_path, rng, n=100, degree=1)
    _rezip(tmp_path / "x.sog", files)
    assert read_splats(tmp_path / "x.sog", limits=ReadLimits(max_splats=100)).count == 100
    with pytest.raises(GSError, match="declares 100 splats, more than the limit of 99"):
        read_splats(tmp_path / "x.sog", limits=ReadLimits(max_splats=99))
    meta = json.loads(files["meta.json"])
    meta["version"] = 3  # announced, but no specification or tool to implement it from
    files["meta.json"] = json.dumps(meta).encode()
    _rezip(tmp_path / "v3.sog", files)
    with pytest.raises(GSError, match=r"v3.sog: SOG version 3 is not supported: this reader "
                                      r"knows version 2.*save the file as SOG version 2"):
        read_splats(tmp_path / "v3.sog")


def test_not_a_zip_and_folder_form_errors(tmp_path, rng):
    (tmp_path / "x.sog").write_bytes(b"PK\3\4 not really")
    with pytest.raises(GSError, match="not a zip"):
        read_sog(tmp_path / "x.sog")
    files = _bundle(tmp_path, rng)
    folder = tmp_path / "scene"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    assert read_splats(folder).count == 100  # a folder with a meta.json reads as its SOG
    (folder / "quats.webp").unlink()
    with pytest.raises(GSError, match="quats.webp is missing"):
        read_sog(folder / "meta.json")


@settings(max_examples=40, deadline=3000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bundles_fail_cleanly_or_read_finite(tmp_path, data):
    files = _bundle(tmp_path, np.random.default_rng(5), n=50, degree=1)
    name = data.draw(st.sampled_from(sorted(files)))
    raw = bytearray(files[name])
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[i] = data.draw(st.integers(0, 255))
        else:
            del raw[i:i + data.draw(st.integers(1, 16))]
    files[name] = bytes(raw)
    _read_fails_cleanly_or_finite(tmp_path, files)


def _read_fails_cleanly_or_finite(tmp_path, files):
    path = tmp_path / "fuzz.sog"
    _rezip(path, files)
    read_fails_cleanly_or_finite(read_sog, path)


@settings(max_examples=120, deadline=3000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_meta_json_fails_cleanly_or_reads_finite(tmp_path, data):
    """Any JSON value anywhere in meta.json: a GSError or a valid set, never a crash."""
    files = _bundle(tmp_path, np.random.default_rng(6), n=50, degree=1)
    meta = json.loads(files["meta.json"])
    mutate_json(meta, data)
    files["meta.json"] = json.dumps(meta).encode()
    _read_fails_cleanly_or_finite(tmp_path, files)


def test_a_wrong_count_is_an_error_or_a_warning_never_silent(tmp_path, rng):
    """Writers (ours, splat-transform) leave the texels after the last splat empty (quaternion
    tag 0): a count raised into them is an error, a count lowered below the splats a warning."""
    s = random_splats(rng, 300, 0)
    write_splats(tmp_path / "x.sog", s, report=quiet)
    files = members(tmp_path / "x.sog")
    assert pixels(files["quats.webp"]).reshape(-1, 4)[300:, 3].max() == 0  # 20 x 16 texels
    for count in (310, 290):
        meta = json.loads(files["meta.json"])
        meta["count"] = count
        _rezip(tmp_path / f"{count}.sog", {**files, "meta.json": json.dumps(meta).encode()})
    with pytest.raises(GSError, match="10 splats in the quats image have no valid"):
        read_sog(tmp_path / "310.sog")
    messages = []
    assert read_sog(tmp_path / "290.sog", report=lambda lv, m: messages.append((lv, m))).count \
        == 290
    assert any("WARNING" in lv and "'count' is 290, but the quats image holds 10 more" in m
               for lv, m in messages)
