"""Reader robustness: a long mutation-fuzz campaign over every splat reader, the reproducer
bombs refused, and the cost of many extra .ply properties.

The cases and the outcome classes are defined in tests/reader_fuzz.py (its docstring gives the
precise definition of each class); the test suite runs a 400-case slice of the same cases.
Rows: the number of cases, the count of each bad class (goal 0), the good classes, the slowest
read and the highest peak allocation of any case; then the time and peak allocation to refuse
decompression bombs of the sizes the fuzz campaign found (built here, not stored), and info /
Blender import of a .ply with 20,000 extra properties.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

_IMPORT_PROBE = r"""
import sys, time
sys.path.insert(0, {root!r})
import bpy
from blender_gs_addon.extension import extension_module
splat_object = extension_module("scene.splat_object")
bpy.ops.wm.read_homefile(app_template="", use_empty=True)
start = time.perf_counter()
splat_object.import_splats({path!r}, display=False, report=lambda *a: None)
print("@@", time.perf_counter() - start)
"""


def _campaign(cases: int) -> list[dict]:
    from hypothesis import HealthCheck, given, settings
    from reader_fuzz import BAD_CLASSES, BUDGET_BYTES, GOOD_CLASSES, HANG_SECONDS, Tally, run_case
    from reader_fuzz import cases as case_strategy

    tally = Tally()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        @settings(max_examples=cases, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=case_strategy())
        def campaign(case):
            tally.add(case, run_case(case, folder))

        campaign()
    seconds = time.perf_counter() - start
    rows = [{"name": "fuzz cases (hypothesis, derandomized)", "value": tally.total,
             "unit": "cases", "goal": "≥ 10,000",
             "note": f"{seconds:.0f} s; a valid file (13 writers: .ply LE/BE/ascii, compressed "
                     ".ply, .splat, .spz v2/v3/v3 raw/v4, .glb float/int8 rotations, .gltf with "
                     "an embedded buffer, .sog; 1–300 splats, SH 0–3) with one mutation (bit "
                     "flip, byte set, cut, insertion, deletion, appended tail, duplicated range, "
                     "edited header or JSON number, or any of these inside the .spz gzip stream, "
                     "the .glb JSON or binary chunk, or the .sog meta.json or an image, packed "
                     "again); classes defined in tests/reader_fuzz.py"}]
    for kind in sorted(tally.by_kind):
        counts = tally.by_kind[kind]
        bad = sum(counts.get(k, 0) for k in BAD_CLASSES)
        rows.append({"name": f"cases: {kind}", "value": sum(counts.values()), "unit": "cases",
                     "goal": "bad 0", "note": f"bad {bad}; " + ", ".join(
                         f"{k} {counts.get(k, 0):,}" for k in GOOD_CLASSES if counts.get(k))})
    notes = {"crash": "the read raised anything but GSError (MemoryError included)",
             "hang": f"the read ran over {HANG_SECONDS:g} s (a timer interrupts it)",
             "over_budget": f"the read's peak traced allocation (tracemalloc: Python objects "
                            f"and numpy buffers) exceeded {BUDGET_BYTES >> 20} MiB; inputs are "
                            "< 256 KB, which the default limits let decode to 16 MiB at most",
             "silent_count_change": "the reader returned a count different from the generating "
                                    "file's without any WARNING or ERROR report",
             "leaked_warning": "a Python warning (numpy RuntimeWarning, …) was emitted during "
                               "the read instead of being handled",
             "unnamed_error": "a GSError whose message does not name the file"}
    for klass in BAD_CLASSES:
        example = tally.examples.get(klass, "")
        rows.append({"name": f"bad: {klass}", "value": tally.counts.get(klass, 0),
                     "unit": "", "goal": "0",
                     "note": notes[klass] + (f"; e.g. {example[:200]}" if example else "")})
    good = ", ".join(f"{k} {tally.counts.get(k, 0):,}" for k in GOOD_CLASSES)
    rows.append({"name": "good outcomes", "value": sum(tally.counts.get(k, 0)
                                                       for k in GOOD_CLASSES),
                 "unit": "", "goal": "all", "note": good + " — error: one GSError naming "
                 "the file; warned: a result with a WARNING; same_count: the generating count "
                 "(values may differ: only gzip and .spz v4 carry checksums); splat_record_cut: "
                 "a .splat cut or extended by whole 32-byte records, which no reader can tell "
                 "(the format stores no count)"})
    rows.append({"name": "slowest read", "value": tally.max_seconds, "unit": "s",
                 "goal": f"< {HANG_SECONDS:g}", "note": "inputs ≤ 256 KB, with tracemalloc"})
    rows.append({"name": "highest peak allocation", "value": tally.max_peak_bytes / 2**20,
                 "unit": "MiB", "goal": f"< {BUDGET_BYTES >> 20}", "note": "tracemalloc"})
    return rows


def _gzip_bomb(path: Path, count: int, degree: int) -> None:
    """A gzip .spz whose header claims ``count`` splats of zeros (all of them present)."""
    dims = {0: 0, 3: 15}[degree]
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [deflater.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, count, degree, 12, 0, 0))]
    remaining = count * (20 + 3 * dims)
    block = bytes(1 << 22)
    while remaining > 0:
        parts.append(deflater.compress(block[:min(remaining, len(block))]))
        remaining -= len(block)
    path.write_bytes(b"".join(parts) + deflater.flush())


def _glb_instance_bomb(path: Path, nodes: int) -> int:
    """A .glb of 16 SH-1 splats shown by ``nodes`` node instances; returns the splats claimed."""
    import json

    import numpy as np

    from blender_gs_addon.formats.gltf import write_gltf
    from blender_gs_addon.splats import SplatSet

    rng = np.random.default_rng(0)
    write_gltf(path, SplatSet.from_arrays(
        positions=rng.normal(size=(16, 3)), log_scales=rng.normal(-3, 1, (16, 3)),
        rotations=rng.normal(size=(16, 4)), opacity_logits=rng.normal(size=16),
        sh_dc=rng.normal(size=(16, 3)), sh_rest=rng.normal(size=(16, 3, 3))),
        report=lambda *a: None)
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + length])
    doc["nodes"] = [{"mesh": 0}] * nodes
    doc["scenes"] = [{"nodes": list(range(nodes))}]
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    blob = data[28 + length:]
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 28 + len(text) + len(blob))
                     + struct.pack("<II", len(text), 0x4E4F534A) + text
                     + struct.pack("<II", len(blob), 0x004E4942) + blob)
    return 16 * nodes


def _sog_count_bomb(path: Path, count: int) -> int:
    """A .sog of 100 splats whose meta.json claims ``count``; returns ``count``."""
    import io
    import json
    import zipfile

    import numpy as np

    from blender_gs_addon.formats import write_splats
    from blender_gs_addon.splats import SplatSet

    rng = np.random.default_rng(0)
    write_splats(path, SplatSet.from_arrays(
        positions=rng.normal(size=(100, 3)), log_scales=rng.normal(-3, 1, (100, 3)),
        rotations=rng.normal(size=(100, 4)), opacity_logits=rng.normal(size=100),
        sh_dc=rng.normal(size=(100, 3))), report=lambda *a: None)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(members["meta.json"])
    meta["count"] = count
    members["meta.json"] = json.dumps(meta).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(out.getvalue())
    return count


def _bombs(folder: Path, quick: bool) -> list[dict]:
    from blender_gs_addon.errors import GSError
    from blender_gs_addon.formats import read_splats

    sizes = [(1_613_193, 3)] if quick else [(1_613_193, 3), (16_131_938, 3), (52_428_800, 0)]
    bombs = []
    for count, degree in sizes:
        path = folder / f"bomb_{count}.spz"
        _gzip_bomb(path, count, degree)
        bombs.append((path, f"gzip bomb {path.stat().st_size / 1e6:.2f} MB claiming "
                            f"{count:,} SH{degree} splats"))
    path = folder / "instances.glb"
    claimed = _glb_instance_bomb(path, 20_000 if quick else 100_000)
    bombs.append((path, f".glb {path.stat().st_size / 1e6:.2f} MB: 16 SH1 splats shown by "
                        f"{claimed // 16:,} node instances ({claimed:,} splats)"))
    path = folder / "count.sog"
    claimed = _sog_count_bomb(path, 5_000_000 if quick else 40_000_000)
    bombs.append((path, f".sog {path.stat().st_size / 1e3:.1f} KB: meta.json claims "
                        f"{claimed:,} SH0 splats (images of 100)"))
    rows = []
    for path, label in bombs:
        seconds = _refusal_seconds(path, read_splats, GSError)
        tracemalloc.start()  # a second read for the peak: tracemalloc slows Python code ~10×
        try:
            read_splats(path, report=lambda *a: None)
            outcome = "read (not refused!)"
        except GSError as err:
            outcome = str(err).split(": ", 1)[1][:90]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"name": label, "value": seconds * 1000,
                     "unit": "ms", "goal": "refused, < 1000 ms",
                     "note": f"best of 3; peak {peak / 2**20:.1f} MiB (tracemalloc); {outcome}"})
    return rows


def _refusal_seconds(path: Path, read, error) -> float:
    """Best of three (the campaign before leaves the garbage collector busy)."""
    import gc

    gc.collect()
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        try:
            read(path, report=lambda *a: None)
        except error:
            pass
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def _extra_properties(folder: Path) -> list[dict]:
    import gc

    import numpy as np

    from blender_gs_addon.formats import read_splats
    from blender_gs_addon.formats.ply import write_ply
    from blender_gs_addon.splats import SplatSet

    rows = []
    gc.collect()
    for count in (2_000, 20_000):
        splats = SplatSet.empty(3)
        splats.extra = {f"e{i}": np.full(3, i, np.float32) for i in range(count)}
        path = folder / f"extra_{count}.ply"
        write_ply(path, splats)
        seconds = []
        for _ in range(3):  # best of three: the campaign before leaves the collector busy
            start = time.perf_counter()
            read_splats(path, report=lambda *a: None)
            seconds.append(time.perf_counter() - start)
        rows.append({"name": f"read .ply with {count:,} extra properties", "value":
                     min(seconds), "unit": "s", "goal": "< 1 (linear)",
                     "note": "what `info` does (best of 3)"})
        probe = _IMPORT_PROBE.format(root=str(ROOT), path=str(path))
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        value = next((float(line[2:]) for line in run.stdout.splitlines()
                      if line.startswith("@@")), None)
        rows.append({"name": f"Blender import, {count:,} extra properties", "value": value,
                     "unit": "s", "goal": "< 1",
                     "note": "the first 1,024 extras become attributes (Blender's attribute "
                             "creation is quadratic); the rest are left out with a warning"})
    return rows


def run(quick: bool = False) -> list[dict]:
    rows = _campaign(1_000 if quick else 12_000)
    with tempfile.TemporaryDirectory() as folder:
        rows += _bombs(Path(folder), quick)
        rows += _extra_properties(Path(folder))
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)

