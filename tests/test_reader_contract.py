"""The readers' promise: one clear GSError or a visible warning, never a crash, a hang, a huge
allocation, a silent partial result or a stray numpy warning (issue 14).

The reproducer files of the fuzz campaign that found the breaks live in tests/data/reliability/;
the bombs (about 1 MB each) and the 670 KB extra-properties file are built here instead.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_runner import ROOT, run_cli
from fakes import Reports

from blender_gs_addon.errors import GSError
from blender_gs_addon.formats import ReadLimits, read_splats, write_splats
from blender_gs_addon.formats.ply import write_ply
from blender_gs_addon.formats.reader_contract import OPACITY_LOGIT_LIMIT
from blender_gs_addon.splats import SplatSet

DATA = Path(__file__).parent / "data" / "reliability"
MAGIC = 0x5053474E


def read_clean(path, **kwargs):
    """read_splats that fails the test if a Python warning escapes; returns (splats, reports)."""
    reports = Reports()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return read_splats(path, report=reports, **kwargs), reports
        finally:
            assert not caught, [str(w.message) for w in caught]


def splats(count: int, degree: int = 0, seed: int = 0) -> SplatSet:
    rng = np.random.default_rng(seed)
    k = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    return SplatSet.from_arrays(
        positions=rng.normal(size=(count, 3)), log_scales=rng.normal(size=(count, 3)) - 3,
        rotations=rng.normal(size=(count, 4)), opacity_logits=rng.normal(size=count),
        sh_dc=rng.normal(size=(count, 3)), sh_rest=rng.normal(size=(count, k, 3)) * 0.3)


# ------------------------------------------------------------------------------ reproducers
ERRORS = {
    "cply_4_bytes_inserted_after_chunks.compressed.ply": r"4 bytes follow the last element",
    "cply_vertex_count_299_of_300.compressed.ply": r"16 bytes follow the last element",
    "cply_inf_min_x_all_chunks.compressed.ply": r"300 of 300 splats have NaN",
    "ply_vertex_count_0.ply": r"declares no splats \('element vertex 0'\) although 16,800 "
                              r"bytes of data follow",
    "splat_empty.splat": r"the file is empty \(0 bytes\): no splats",
}
WARNINGS = {  # file → (count read, warning)
    "ascii_ply_cut_in_last_number.ply": (1, r"ends inside the last line .* '-0\.7'"),
    "cply_huge_min_r_chunk0.compressed.ply": (63, r"dropped 237 of 300 splats"),
    "spz_raw_count_3_of_4.spz": (3, r"ignored 20 bytes after the last \.spz block"),
    "spz_raw_v3_payload_labelled_v2.spz": (4, r"ignored 4 bytes after the last \.spz block"),
}
# The format cannot tell (documented): .splat stores no count, this v4 file no checksums.
UNDETECTABLE = {"splat_cut_to_2_of_5.splat": 2, "spz_v4_no_checksum.spz": 4}


def test_every_reproducer_is_covered():
    assert sorted(p.name for p in DATA.iterdir()) == sorted({**ERRORS, **WARNINGS,
                                                              **UNDETECTABLE})


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_reproducer_gives_one_clear_error(name):
    with pytest.raises(GSError) as info:
        read_clean(DATA / name)
    assert str(DATA / name) in str(info.value)
    assert re.search(ERRORS[name], str(info.value)), str(info.value)


@pytest.mark.parametrize("name", sorted(WARNINGS))
def test_reproducer_gives_a_visible_warning(name):
    count, pattern = WARNINGS[name]
    result, reports = read_clean(DATA / name)
    assert result.count == count
    assert any(re.search(pattern, m) for m in reports.at("WARNING")), \
        reports.messages


@pytest.mark.parametrize("name", sorted(ERRORS) + sorted(WARNINGS))
def test_reproducer_on_the_command_line(name):
    proc = run_cli("info", DATA / name, "--json", check=False)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    if name in ERRORS:
        assert proc.returncode == 2 and lines[0].startswith("error: ")
    else:
        assert proc.returncode == 0 and lines[0].startswith("warning: ")
        assert json.loads(proc.stdout)["count"] == WARNINGS[name][0]


def test_splat_cuts_inside_a_record_are_errors_at_a_boundary_undetectable(tmp_path):
    data = (DATA / "splat_cut_to_2_of_5.splat").read_bytes()
    assert read_clean(DATA / "splat_cut_to_2_of_5.splat")[0].count == UNDETECTABLE[
        "splat_cut_to_2_of_5.splat"]
    (tmp_path / "c.splat").write_bytes(data[:45])
    with pytest.raises(GSError, match=r"c\.splat: 45 bytes .* cut inside splat 2"):
        read_splats(tmp_path / "c.splat")


# ------------------------------------------------------------------------------ budgets
def _gzip_spz(count: int, degree: int, payload_bytes: int) -> bytes:
    deflater = zlib.compressobj(1, zlib.DEFLATED, 31)
    head = struct.pack("<IIIBBBB", MAGIC, 3, count, degree, 12, 0, 0)
    parts = [deflater.compress(head)]
    for start in range(0, payload_bytes, 1 << 20):
        parts.append(deflater.compress(bytes(min(1 << 20, payload_bytes - start))))
    return b"".join(parts) + deflater.flush()


def _refused_quickly(path, pattern, limits=None):
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(GSError, match=pattern) as info:
        read_clean(path, limits=limits)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * path.stat().st_size + (4 << 20), peak  # nothing sized by the claim
    assert seconds < 1.0
    return str(info.value)


def test_gzip_bomb_is_refused_before_inflating(tmp_path):
    # 300,000 SH3 splats of zeros: 19.5 MB of data in a ~19 KB file (the fuzz campaign's
    # 1 MB files claim 16 M splats; the ratio is the same).
    path = tmp_path / "bomb.spz"
    path.write_bytes(_gzip_spz(300_000, 3, 19_500_000))
    message = _refused_quickly(path, r"bomb\.spz: the header claims 300,000 splats \(19\.5 MB "
                                     r"of data\) from .* an expansion of [0-9,]+:1")
    assert "decompression bomb" in message
    # Permitting more expansion reads it (the claim was true): it is the ratio that refused.
    relaxed = ReadLimits(max_expansion=1e6)
    assert read_splats(path, limits=relaxed, report=Reports()).count == 300_000


def test_zstd_bomb_padded_with_an_extension_is_refused(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    count, degree = 1_000_000, 3
    sizes = [count * 9, count, count * 3, count * 3, count * 4, count * 45]
    streams = [zstandard.ZstdCompressor(level=3).compress(bytes(s)) for s in sizes]
    padding = struct.pack("<II", 0x12345678, 200_000) + bytes(200_000)  # unknown extension
    toc_at = 32 + len(padding)
    header = struct.pack("<IIIBBBBI12x", MAGIC, 4, count, degree, 12, 2, 6, toc_at)
    toc = b"".join(struct.pack("<QQ", len(c), s) for c, s in zip(streams, sizes))
    path = tmp_path / "zbomb.spz"
    path.write_bytes(header + padding + toc + b"".join(streams))
    _refused_quickly(path, r"claims 1,000,000 splats \(65\.0 MB of data\) from .* bomb")


@pytest.mark.parametrize("suffix", [".ply", ".compressed.ply", ".splat", ".spz", ".glb",
                                    ".gltf", ".sog", "meta.json"])
def test_max_splats_refuses_every_format_before_reading(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    write_splats(path, splats(300), report=Reports())
    _refused_quickly(path, r"declares 300 splats, more than the limit of 299 \(raise 'Max "
                           "Splats'", limits=ReadLimits(max_splats=299))
    assert read_splats(path, limits=ReadLimits(max_splats=300)).count == 300


def test_read_limits_are_checked():
    with pytest.raises(GSError, match="max_splats must be a positive"):
        ReadLimits(max_splats=0)
    with pytest.raises(GSError, match="limits must be a ReadLimits"):
        read_splats(DATA / "splat_empty.splat", limits=5)
    limits = ReadLimits()
    limits.check_claim(1000, bytes_per_splat=65, available=65_000, source="f")
    with pytest.raises(GSError, match="f: the header claims 1,001 splats .* only 65,000 bytes"):
        limits.check_claim(1001, bytes_per_splat=65, available=65_000, source="f")
    # compressed: small results pass whatever the ratio, large ones need a plausible ratio
    limits.check_claim(100_000, bytes_per_splat=65, available=1, source="f", compressed=True)
    limits.check_claim(10**6, bytes_per_splat=65, available=2 * 10**6, source="f",
                       compressed=True)
    with pytest.raises(GSError, match="expansion of 65:1"):
        ReadLimits(max_expansion=64).check_claim(10**6, bytes_per_splat=65,
                                                 available=10**6, source="f", compressed=True)


# ------------------------------------------------------------------------------ silent reads
def test_spz_version_4_is_written_with_checksums_and_verified(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "v4.spz"
    source = splats(40, 1)
    write_splats(path, source, spz_version=4, report=Reports())
    data = path.read_bytes()
    assert struct.unpack_from("<II", data) == (MAGIC, 4)
    toc = struct.unpack_from("<I", data, 16)[0]
    start = toc + 16 * 6
    entries = struct.unpack_from("<12Q", data, toc)
    for packed in entries[0::2]:
        assert zstandard.get_frame_parameters(data[start:start + packed]).has_checksum
        start += packed
    clean = read_splats(path)
    # Every single-bit flip in the stream data is an error or changes nothing decoded (a flip
    # in a frame-header bit that does not matter): corruption never reads back silently.
    rng = np.random.default_rng(3)
    first = toc + 16 * 6
    for offset in rng.choice(np.arange(first, len(data)), 150, replace=False):
        broken = bytearray(data)
        broken[offset] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(broken))
        try:
            back = read_splats(path, report=Reports())
        except GSError as err:
            assert "v4.spz: stream" in str(err)
            continue
        np.testing.assert_array_equal(back.positions, clean.positions)
        np.testing.assert_array_equal(back.sh_rest, clean.sh_rest)


def test_spz_trailing_bytes_are_reported_on_every_path(tmp_path):
    path = tmp_path / "t.spz"
    write_splats(path, splats(4), report=Reports())
    raw = gzip.decompress(path.read_bytes())
    for data, pattern in [(raw + b"\0" * 7, "ignored 7 bytes after the last"),
                          (gzip.compress(raw + b"\0" * 7), "ignored 7 bytes after the last"),
                          (path.read_bytes() + b"junk", "4 bytes after the end of the gzip")]:
        path.write_bytes(data)
        back, reports = read_clean(path)
        assert back.count == 4
        assert any(pattern in m for m in reports.at("WARNING")), reports.messages


def test_ascii_rows_must_each_hold_every_value(tmp_path):
    path = tmp_path / "a.ply"
    write_ply(path, splats(3), ascii=True)
    head, body = path.read_bytes().split(b"end_header\n")
    rows = body.decode().splitlines()
    rows[0] += " 1.5"  # one value too many on row 1, one too few on row 2: same total
    rows[1] = rows[1].rsplit(" ", 1)[0]
    path.write_bytes(head + b"end_header\n" + "\n".join(rows).encode() + b"\n")
    with pytest.raises(GSError, match=r"a\.ply: ascii vertex line 1 holds 15 values, "
                                      "expected 14"):
        read_splats(path)


def test_ascii_row_check_counts_lines_across_its_blocks(tmp_path):
    path = tmp_path / "big.ply"
    write_ply(path, splats(9000, 3), ascii=True)  # ~7 MB of text: two 4 MB blocks
    head, body = path.read_bytes().split(b"end_header\n")
    rows = body.split(b"\n")
    rows[8000] += b" 2"
    rows[8001] = rows[8001].rsplit(b" ", 1)[0]
    path.write_bytes(head + b"end_header\n" + b"\n".join(rows))
    with pytest.raises(GSError, match=r"ascii vertex line 8,001 holds 60 values, expected 59"):
        read_splats(path)


def test_infinite_opacity_is_a_value_kept_clamped(tmp_path):
    source = splats(4)
    source.opacity_logits[:] = [np.inf, -np.inf, 0.5, np.nan]
    path = tmp_path / "o.ply"
    write_ply(path, source)
    back, reports = read_clean(path)
    assert back.count == 3  # only the NaN splat is dropped
    np.testing.assert_array_equal(back.opacity_logits, [OPACITY_LOGIT_LIMIT,
                                                        -OPACITY_LOGIT_LIMIT, 0.5])
    assert any("2 splats have an opacity logit of ±inf" in m for m in reports.at("INFO"))
    assert any("dropped 1 of 4 splats" in m for m in reports.at("WARNING"))


def test_twenty_thousand_extra_properties_read_correctly(tmp_path):
    source = splats(3)
    source.extra = {f"e{i}": np.arange(3, dtype=np.float32) + i for i in range(20_000)}
    path = tmp_path / "extras.ply"
    write_ply(path, source)
    back, reports = read_clean(path)
    assert list(back.extra) == list(source.extra)
    np.testing.assert_array_equal(back.extra["e19999"], [19999, 20000, 20001])
    np.testing.assert_array_equal(back.extra["e7"], [7, 8, 9])
    (info,) = reports.at("INFO")
    assert info.endswith("e10, e11 … and 19,988 more") and len(info) < 400


# ------------------------------------------------------------------------------ OS errors
def test_os_errors_become_gserror_with_the_path(tmp_path):
    with pytest.raises(GSError, match=r"x\.ply: no such file"):
        read_splats(tmp_path / "x.ply")
    (tmp_path / "d.ply").mkdir()
    with pytest.raises(GSError, match=r"d\.ply: is a folder"):
        read_splats(tmp_path / "d.ply")
    with pytest.raises(GSError, match=r"missing/out\.ply: cannot write \(No such file"):
        write_splats(tmp_path / "missing" / "out.ply", splats(2))
    with pytest.raises(GSError, match=r"d\.ply: cannot write \(it is a folder"):
        write_splats(tmp_path / "d.ply", splats(2))


def _without_read_permission(code: str, path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python that cannot read ``path`` (mode 000; as root, without the
    capabilities that override file permissions)."""
    path.chmod(0)
    command = [sys.executable, "-c", code, str(path)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


_PRINT_GSERROR = ("import sys\nfrom blender_gs_addon.errors import GSError\n"
                  "from blender_gs_addon.formats import detect_format, read_splats\n"
                  "try:\n    {call}(sys.argv[1])\nexcept GSError as err:\n    print(err)\n")


@pytest.mark.parametrize("call, suffix", [
    ("read_splats", ".ply"), ("read_splats", ".compressed.ply"), ("read_splats", ".splat"),
    ("read_splats", ".spz"), ("read_splats", ".glb"), ("read_splats", ".gltf"),
    ("read_splats", ".sog"), ("read_splats", "meta.json"),
    ("detect_format", ".ply"),  # detection opens a .ply too
])
def test_unreadable_file_is_a_gserror(tmp_path, call, suffix):
    path = tmp_path / f"locked{suffix}"
    write_splats(path, splats(3), report=Reports())
    proc = _without_read_permission(_PRINT_GSERROR.format(call=call), path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip() == f"{path}: cannot read (Permission denied)"


@pytest.mark.parametrize("name", ["keep.spz", "keep.gltf", "meta.json"])
def test_a_failed_write_leaves_the_old_file_and_no_partial_file(tmp_path, name):
    """Also for formats written as several files (.gltf + .bin, meta.json + images)."""
    path = tmp_path / name
    write_splats(path, splats(5), report=Reports())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(before) == {"keep.spz": 1, "keep.gltf": 2, "meta.json": 6}[name]
    bad = splats(5)
    bad.positions[2, 0] = np.nan
    with pytest.raises(GSError, match=rf"{name}: 1 of 5 splats have NaN"):
        write_splats(path, bad, report=Reports())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_disk_full_is_a_gserror_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "big.ply"
    write_splats(path, splats(3), report=Reports())
    before = path.read_bytes()
    # The file size limit makes write() fail with EFBIG like a full disk fails with ENOSPC.
    code = ("import resource, signal, sys\nimport numpy as np\n"
            "from blender_gs_addon.errors import GSError\n"
            "from blender_gs_addon.formats import write_splats\n"
            "from blender_gs_addon.samples import sample_splats\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
            "try:\n    write_splats(sys.argv[1], sample_splats('random', count=5000))\n"
            "except GSError as err:\n    print(err)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith(f"{path}: cannot write (only part of the data was written "
                                  "— is the disk full?")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.ply"]


# ------------------------------------------------------------------------------ CLI options
def test_cli_max_splats_and_spz_version(tmp_path):
    source = tmp_path / "s.ply"
    write_splats(source, splats(300, 1))
    proc = run_cli("info", source, "--max-splats", "299", check=False)
    assert proc.returncode == 2 and "more than the limit of 299" in proc.stderr
    out = tmp_path / "s.spz"
    run_cli("convert", source, out, "--spz-version", "4")
    assert struct.unpack_from("<II", out.read_bytes()) == (MAGIC, 4)
    assert json.loads(run_cli("info", out, "--json").stdout)["count"] == 300
    run_cli("convert", source, out)  # default: version 3 (gzip)
    assert struct.unpack_from("<II", gzip.decompress(out.read_bytes())) == (MAGIC, 3)
    proc = run_cli("convert", source, tmp_path / "x.splat", "--spz-version", "4", check=False)
    assert proc.returncode == 2 and "--spz-version applies only to .spz" in proc.stderr
    proc = run_cli("info", source, "--max-splats", "0", check=False)
    assert proc.returncode == 2 and "positive whole number" in proc.stderr
