"""antimatter15 .splat: byte layout, sort order, quantisation bounds, bad input, fuzz."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import Reports

from blender_gs_addon.errors import GSError
from blender_gs_addon.formats.splat import (
    ROTATION_ERROR_BOUND,
    SPLAT_DTYPE,
    read_splat,
    splat_sort_order,
    write_splat,
)
from blender_gs_addon.sh import SH_C0
from blender_gs_addon.splats import SplatSet


def random_splats(rng, n: int, *, degree: int = 0, wide: bool = False) -> SplatSet:
    k = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    spread = 6.0 if wide else 1.0  # wide: many colours and opacities beyond the 8-bit range
    return SplatSet.from_arrays(
        positions=rng.normal(size=(n, 3)) * 5, log_scales=rng.normal(size=(n, 3)) - 2,
        rotations=rng.normal(size=(n, 4)), opacity_logits=rng.normal(size=n) * 3 * spread,
        sh_dc=rng.normal(size=(n, 3)) * spread, sh_rest=rng.normal(size=(n, k, 3)),
    )


def quat_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N] rotation angle between the rotations of quaternions a and b (any norm)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    dot = np.clip(np.abs((a * b).sum(axis=1)), 0.0, 1.0)
    return 2.0 * np.arccos(dot)


def round_trip(tmp_path, splats, **kw):
    path = tmp_path / "a.splat"
    write_splat(path, splats, report=Reports(), **kw)
    order = splat_sort_order(splats)
    return splats.subset(order), read_splat(path, report=Reports()), path


def test_layout_of_one_splat(tmp_path):
    splats = SplatSet.from_arrays(
        positions=[[1.5, -2.0, 3.25]], log_scales=np.log([[0.5, 2.0, 1.0]]),
        rotations=[[2.0, 0.0, 0.0, 0.0]], opacity_logits=[0.0],
        sh_dc=[[0.0, (1.0 - 0.5) / SH_C0, (0.0 - 0.5) / SH_C0]],
    )
    path = tmp_path / "one.splat"
    write_splat(path, splats)
    data = path.read_bytes()
    assert len(data) == 32
    assert np.array_equal(np.frombuffer(data[:12], "<f4"), [1.5, -2.0, 3.25])
    assert np.allclose(np.frombuffer(data[12:24], "<f4"), [0.5, 2.0, 1.0], rtol=1e-7)
    # RGB 0.5·255 = 127.5 rounds to 128 (round half to even), 255, 0; alpha 0.5 → 128
    assert list(data[24:28]) == [128, 255, 0, 128]
    # identity, largest component made negative: −1 → byte 0
    assert list(data[28:32]) == [0, 128, 128, 128]


def test_sort_order_matches_reference(tmp_path, rng):
    splats = random_splats(rng, 300)
    _, back, path = round_trip(tmp_path, splats)
    # reference: ascending −exp(s0+s1+s2)·sigmoid(opacity)
    log_scales = splats.log_scales.astype(np.float64)
    key = -np.exp(log_scales.sum(1)) / (1 + np.exp(-splats.opacity_logits.astype(np.float64)))
    expected = splats.positions[np.argsort(key)]
    assert np.array_equal(back.positions, expected)
    assert not np.array_equal(back.positions, splats.positions)
    stored = np.fromfile(path, SPLAT_DTYPE)
    assert np.array_equal(stored["position"], expected)


def test_quantisation_error_bounds(tmp_path, rng):
    splats = random_splats(rng, 20000, wide=True)
    ref, back, _ = round_trip(tmp_path, splats)
    assert back.count == ref.count and back.sh_degree == 0
    # positions: exact
    assert np.array_equal(back.positions, ref.positions)
    # scales: float32 rounding of exp (2⁻²⁴ relative) and of the log (half an ulp)
    bound = 2.0**-24 + np.spacing(np.abs(ref.log_scales)).astype(np.float64) / 2
    assert np.all(np.abs(back.log_scales.astype(np.float64) - ref.log_scales) <= bound)
    # colour: ≤ 0.5/255 after clipping to [0, 1]
    colour = np.clip(0.5 + SH_C0 * ref.sh_dc.astype(np.float64), 0, 1)
    colour_back = 0.5 + SH_C0 * back.sh_dc.astype(np.float64)
    error = np.abs(colour_back - colour)
    assert error.max() <= 0.5 / 255 + 1e-6
    assert error.max() > 0.45 / 255  # the bound is tight, so the test can see a regression
    # opacity: ≤ 0.5/255 in sigmoid space, finite even for alpha bytes 0 and 255
    assert np.isfinite(back.opacity_logits).all()
    opacity_error = np.abs(back.opacities() - ref.opacities())
    assert opacity_error.max() <= 0.5 / 255 + 1e-6
    # rotation: unit quaternions within the derived angle bound
    assert np.allclose(np.linalg.norm(back.rotations, axis=1), 1.0, atol=1e-6)
    angles = quat_angle(back.rotations.astype(np.float64), ref.rotations.astype(np.float64))
    assert angles.max() <= ROTATION_ERROR_BOUND + 1e-6
    assert ROTATION_ERROR_BOUND == pytest.approx(0.015625, abs=1e-5)


def test_rotation_bound_holds_near_axis_aligned(tmp_path, rng):
    """Quaternions with one component near ±1: the case where naive writers clip at 255."""
    n = 2000
    quats = np.zeros((n, 4))
    quats[np.arange(n), rng.integers(0, 4, n)] = rng.choice([-1.0, 1.0], n)
    quats += rng.normal(size=(n, 4)) * 0.02
    splats = random_splats(rng, n)
    splats.rotations = quats.astype(np.float32)
    ref, back, _ = round_trip(tmp_path, splats)
    angles = quat_angle(back.rotations.astype(np.float64), ref.rotations.astype(np.float64))
    assert angles.max() <= ROTATION_ERROR_BOUND + 1e-6


def test_scale_outside_float32_range_warns(tmp_path, rng):
    splats = random_splats(rng, 4)
    splats.log_scales[1, 2] = 95.0
    splats.log_scales[2, 0] = -110.0
    reports = Reports()
    write_splat(tmp_path / "s.splat", splats, report=reports)
    assert any("2 splats have scales outside" in m for m in reports.at("WARNING"))
    assert read_splat(tmp_path / "s.splat", report=Reports()).count == 2


def test_extreme_values_write_quietly(tmp_path, rng):
    import warnings

    splats = random_splats(rng, 4)
    splats.opacity_logits[:] = [-1e30, 1e30, 800.0, -800.0]
    splats.log_scales[0] = 1e30
    splats.rotations[1] = [3e38, -3e38, 1e-30, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_splat(tmp_path / "x.splat", splats, report=Reports())
        back = read_splat(tmp_path / "x.splat", report=Reports())
    assert back.count == 3  # the infinite scale is dropped on read
    assert np.sort(back.opacities()) == pytest.approx([0.5 / 255, 254.5 / 255, 254.5 / 255])
    half = np.sqrt(0.5)
    assert np.abs(np.abs(back.rotations) - [half, half, 0, 0]).max(axis=1).min() < 1e-6


def test_extreme_alpha_reads_finite(tmp_path):
    records = np.zeros(2, SPLAT_DTYPE)
    records["scale"] = 1.0
    records["rgba"][:, 3] = [0, 255]
    records["rotation"] = [[255, 128, 128, 128], [0, 128, 128, 128]]
    path = tmp_path / "alpha.splat"
    records.tofile(path)
    back = read_splat(path)
    assert np.isfinite(back.opacity_logits).all()
    assert back.opacities() == pytest.approx([0.5 / 255, 254.5 / 255], abs=1e-7)
    assert np.allclose(back.rotations, [[1, 0, 0, 0], [-1, 0, 0, 0]])


def test_sh_and_extras_dropped_with_warning(tmp_path, rng):
    splats = random_splats(rng, 10, degree=3)
    splats.extra["t"] = np.zeros(10, np.float32)
    reports = Reports()
    write_splat(tmp_path / "sh.splat", splats, report=reports)
    warnings = " ".join(reports.at("WARNING"))
    assert "3 SH band" in warnings and "extra properties; dropped t" in warnings
    assert read_splat(tmp_path / "sh.splat").sh_degree == 0


def test_nonfinite_rows(tmp_path, rng):
    splats = random_splats(rng, 10)
    splats.positions[4, 0] = np.nan
    reports = Reports()
    write_splat(tmp_path / "n.splat", splats, report=reports)
    assert any("1 of 10" in m for m in reports.at("WARNING"))
    assert read_splat(tmp_path / "n.splat").count == 9
    with pytest.raises(GSError, match="n2.splat"):
        write_splat(tmp_path / "n2.splat", splats, nonfinite="error")
    # reading: a zero quaternion and a zero scale are dropped and reported
    records = np.fromfile(tmp_path / "n.splat", SPLAT_DTYPE)
    records["rotation"][2] = 128
    records["scale"][5, 1] = 0.0
    records.tofile(tmp_path / "bad.splat")
    reports = Reports()
    assert read_splat(tmp_path / "bad.splat", report=reports).count == 7
    assert any("2 of 9" in m for m in reports.at("WARNING"))
    with pytest.raises(GSError, match="bad.splat"):
        read_splat(tmp_path / "bad.splat", nonfinite="error")


@pytest.mark.parametrize("size", [1, 31, 33, 100])
def test_size_not_multiple_of_32(tmp_path, size):
    path = tmp_path / "odd.splat"
    path.write_bytes(bytes(size))
    with pytest.raises(GSError, match=rf"odd\.splat.*{size} bytes.*multiple of 32"):
        read_splat(path)


def test_empty_and_missing(tmp_path):
    (tmp_path / "e.splat").write_bytes(b"")
    with pytest.raises(GSError, match=r"e\.splat: the file is empty \(0 bytes\): no splats"):
        read_splat(tmp_path / "e.splat")
    with pytest.raises(GSError, match="no splats to write"):
        write_splat(tmp_path / "w.splat", SplatSet.empty(0))
    with pytest.raises(GSError, match="nope.splat"):
        read_splat(tmp_path / "nope.splat")


def test_gsplat_splat_file_reads(tmp_path, rng):
    """gsplat's own .splat writer (truncating quantiser) is readable within twice our bounds."""
    torch = pytest.importorskip("torch")
    from gsplat import export_splats

    splats = random_splats(rng, 40)
    path = tmp_path / "g.splat"
    export_splats(
        means=torch.from_numpy(splats.positions), scales=torch.from_numpy(splats.log_scales),
        quats=torch.from_numpy(splats.rotations),
        opacities=torch.from_numpy(splats.opacity_logits),
        sh0=torch.from_numpy(splats.sh_dc[:, None, :]), shN=torch.zeros(40, 0, 3),
        format="splat", save_to=str(path),
    )
    back = read_splat(path)
    assert back.count == 40
    # gsplat sorts by Morton code; match splats by position (exact)
    order = np.lexsort(splats.positions.T)
    back_order = np.lexsort(back.positions.T)
    assert np.array_equal(back.positions[back_order], splats.positions[order])
    colour = np.clip(0.5 + SH_C0 * splats.sh_dc[order].astype(np.float64), 0, 1)
    assert np.abs(0.5 + SH_C0 * back.sh_dc[back_order] - colour).max() <= 1 / 255 + 1e-6


def test_registry_dispatch(tmp_path, rng):
    from blender_gs_addon.formats import read_splats, write_splats

    splats = random_splats(rng, 5)
    write_splats(tmp_path / "r.splat", splats, report=Reports())
    assert read_splats(tmp_path / "r.splat").count == 5


def test_fuzz_random_bytes(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    whole_records = st.integers(0, 20).flatmap(lambda n: st.binary(min_size=32 * n,
                                                                   max_size=32 * n))

    @settings(max_examples=200, deadline=5000, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(st.binary(max_size=32 * 20), whole_records))
    def check(data):
        path = tmp_path / "fuzz.splat"
        path.write_bytes(data)
        try:
            splats = read_splat(path, report=lambda levels, message: None)
        except GSError:
            return
        splats.validate(name="fuzz")
        assert splats.count == 0 or splats.finite_mask().all()
        assert np.isfinite(splats.opacity_logits).all()

    check()
