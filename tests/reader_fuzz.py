"""Mutation fuzzing of every splat reader: shared by tests/test_fuzz_readers.py (a fast slice in
the test suite) and benchmarks/bench_fuzz.py (the long campaign written to docs/benchmarks.md).

A *case* is a valid file made by our own writers (format, splat count, SH degree) plus ONE
mutation drawn by hypothesis: a bit flip, a byte set, a cut, an insertion, a deletion, an
appended tail, a duplicated range, an edited header number (PLY header numbers, .spz header and
table-of-contents fields, glTF and SOG JSON numbers) — and the same mutations applied *inside*
a container and packed again, so that count and version lies reach the decoder: inside the
gzip stream of .spz (recompressed), the JSON or binary chunk of a .glb (chunk lengths
rewritten), meta.json or an image of a .sog (re-zipped). Each case is read with
:func:`read_splats` (default :class:`ReadLimits`) and put in exactly one outcome class:

Bad classes (the campaign must find none):

* ``crash``: the reader raised anything but GSError (MemoryError included).
* ``hang``: the read took longer than :data:`HANG_SECONDS` (interrupted by a timer).
* ``over_budget``: the read's peak traced allocation (tracemalloc: Python objects and numpy
  buffers) exceeded :data:`BUDGET_BYTES`. Every input is under 256 KB; the most the default
  limits let such an input decode to is 16 MiB (the expansion allowance), and a reader's peak
  is a small multiple of what it decodes, so a read above 256 MiB means a claim was trusted.
* ``silent_count_change``: the reader returned a count different from the generating file's
  without any WARNING or ERROR report.
* ``leaked_warning``: a Python warning (numpy RuntimeWarning, DeprecationWarning, …) was
  emitted during the read instead of being handled.
* ``unnamed_error``: a GSError whose message does not name the file.

Good classes: ``error`` (one GSError naming the file), ``warned`` (a result with a warning
report), ``same_count`` (a result with the generating count; values may differ — only .spz
version 4 and gzip carry checksums). One documented class is neither: ``splat_record_cut``,
a .splat file cut or extended by whole 32-byte records, which reads as fewer (more) splats
because the format stores no count — no reader can tell.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import signal
import struct
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from blender_gs_addon.errors import GSError
from blender_gs_addon.formats import read_splats, write_splats
from blender_gs_addon.formats.gltf import write_gltf
from blender_gs_addon.formats.ply import write_ply
from blender_gs_addon.splats import SplatSet

HANG_SECONDS = 10.0
BUDGET_BYTES = 256 << 20
BAD_CLASSES = ("crash", "hang", "over_budget", "silent_count_change", "leaked_warning",
               "unnamed_error")
GOOD_CLASSES = ("error", "warned", "same_count", "splat_record_cut")

# kind → (file suffix, SH degrees it can hold)
KINDS = {
    "ply_le": (".ply", (0, 1, 3)),
    "ply_be": (".ply", (0, 3)),
    "ply_ascii": (".ply", (0, 1)),
    "compressed_ply": (".compressed.ply", (0, 1, 3)),
    "splat": (".splat", (0,)),
    "spz_v2": (".spz", (0, 2)),
    "spz_v3": (".spz", (0, 1, 3)),
    "spz_v3_raw": (".spz", (0, 3)),
    "spz_v4": (".spz", (0, 3)),
    "glb": (".glb", (0, 1, 3)),
    "glb_int8": (".glb", (0, 3)),  # int8 rotations, no COLOR_0
    "gltf_embedded": (".gltf", (0, 2)),  # one JSON file, the buffer as a base64 data URI
    "sog": (".sog", (0, 1, 3)),
}
COUNTS = (1, 2, 5, 31, 256, 300)
INTERESTING = (0, 1, 2, 3, 4, 5, 255, 256, 299, 300, 301, 0x7FFF, 0xFFFF, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 50_000_001, 10**9)



def read_fails_cleanly_or_finite(read, path) -> SplatSet | None:
    """What every reader promises for any bytes: one GSError, or a valid set of finite values
    (returned; None after the GSError). ``read(path, report=...)`` is a format's reader."""
    try:
        splats = read(path, report=lambda *_: None)
    except GSError:
        return None
    splats.validate(name="fuzz", require_finite=True)
    return splats


def _splats(count: int, degree: int, seed: int) -> SplatSet:
    rng = np.random.default_rng(seed)
    k = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    return SplatSet.from_arrays(
        positions=rng.normal(size=(count, 3)), log_scales=rng.normal(size=(count, 3)) - 3,
        rotations=rng.normal(size=(count, 4)), opacity_logits=rng.normal(size=count) * 3,
        sh_dc=rng.normal(size=(count, 3)), sh_rest=rng.normal(size=(count, k, 3)) * 0.3)


_BASES: dict[tuple[str, int, int], bytes] = {}


def base_file(kind: str, count: int, degree: int) -> bytes:
    """The bytes of a valid file of ``kind`` (cached: the same inputs give the same bytes)."""
    key = (kind, count, degree)
    if key not in _BASES:
        splats = _splats(count, degree, seed=count * 10 + degree)
        quiet = lambda levels, message: None  # noqa: E731
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "base" + KINDS[kind][0])
            if kind.startswith("ply"):
                write_ply(path, splats, ascii=kind == "ply_ascii",
                          byte_order=">" if kind == "ply_be" else "<", report=quiet)
            elif kind == "glb_int8":
                write_gltf(path, splats, rotation="int8", color_fallback=False, report=quiet)
            else:
                version = {"spz_v2": 2, "spz_v4": 4}.get(kind, 3)
                write_splats(path, splats, spz_version=version, report=quiet)
            data = Path(path).read_bytes()
            if kind == "gltf_embedded":
                data = _embedded_gltf(data, Path(folder, "base.bin").read_bytes())
        _BASES[key] = gzip.decompress(data) if kind == "spz_v3_raw" else data
    return _BASES[key]


def _embedded_gltf(text: bytes, binary: bytes) -> bytes:
    """A .gltf with its .bin moved into a base64 data URI (one self-contained file)."""
    import base64
    import json

    doc = json.loads(text)
    doc["buffers"][0]["uri"] = ("data:application/octet-stream;base64,"
                                + base64.b64encode(binary).decode("ascii"))
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------------- containers
def _glb_chunks(data: bytes) -> tuple[bytes, bytes] | None:
    """(JSON chunk, binary chunk) of a well-formed .glb, or None."""
    if len(data) < 28 or data[:4] != b"glTF":
        return None
    json_length = struct.unpack_from("<I", data, 12)[0]
    text = data[20:20 + json_length]
    bin_length = struct.unpack_from("<I", data, 20 + json_length)[0] if len(
        data) >= 28 + json_length else 0
    return text, data[28 + json_length:28 + json_length + bin_length]


def _glb(text: bytes, binary: bytes) -> bytes:
    """A .glb of two chunks, padded and with every length consistent."""
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    return (struct.pack("<III", 0x46546C67, 2, 28 + len(text) + len(binary))
            + struct.pack("<II", len(text), 0x4E4F534A) + text
            + struct.pack("<II", len(binary), 0x004E4942) + binary)


def _zip_members(data: bytes) -> dict[str, bytes] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _zip(members: dict[str, bytes]) -> bytes:
    """A zip as the SOG writer makes it (JSON deflated, images stored)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED
                             if name.endswith(".json") else zipfile.ZIP_STORED)
    return out.getvalue()


def _inside(data: bytes, mutation: tuple, *, binary: bool, index: int = 0) -> bytes:
    """``mutation`` applied inside a container: gzip stream; .glb JSON (or, with ``binary``,
    binary) chunk; .sog meta.json (or, with ``binary``, the ``index``-th image)."""
    if data[:2] == b"\x1f\x8b":
        return gzip.compress(apply_mutation(gzip.decompress(data), mutation), compresslevel=1)
    chunks = _glb_chunks(data)
    if chunks is not None:
        text, blob = chunks
        if binary:
            return _glb(text, apply_mutation(blob, mutation))
        return _glb(apply_mutation(text, mutation), blob)
    members = _zip_members(data)
    if members:
        json_names = [n for n in members if n.endswith(".json")]
        images = sorted(n for n in members if not n.endswith(".json"))
        name = images[index % len(images)] if binary and images else json_names[0]
        members[name] = apply_mutation(members[name], mutation)
        return _zip(members)
    return apply_mutation(data, mutation)


# ---------------------------------------------------------------------------------- mutations
def _header_numbers(data: bytes) -> list[tuple[int, int]]:
    """(start, stop) of every decimal number in a PLY header."""
    end = data.find(b"end_header")
    head = data[:end if end > 0 else min(len(data), 4096)]
    return [m.span() for m in re.finditer(rb"\d+", head)]


_JSON_NUMBER = re.compile(rb"(?<=[:\[,])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?=[,\]}])")


def _json_numbers(data: bytes) -> list[tuple[int, int]]:
    """(start, stop) of every number value in compact JSON text."""
    return [m.span() for m in _JSON_NUMBER.finditer(data)]


def _binary_fields(data: bytes) -> list[int]:
    """Offsets of the 4-byte header fields of .spz (16-byte legacy or 32-byte v4 header and,
    for v4, the table of contents)."""
    if len(data) >= 32 and data[:4] == b"NGSP" and data[4:8] == struct.pack("<I", 4):
        streams, toc = data[15], struct.unpack_from("<I", data, 16)[0]
        toc_fields = range(toc, min(len(data) - 3, toc + 16 * streams), 4)
        return [4, 8, 12, 16, *toc_fields]
    return [4, 8, 12, 13, 14]


def apply_mutation(data: bytes, mutation: tuple) -> bytes:
    """``data`` with one mutation applied (see :func:`mutations` for the tuples)."""
    kind, *args = mutation
    n = len(data)
    if kind == "inner":  # inside gzip (.spz), the .glb JSON chunk, the .sog meta.json
        return _inside(data, args[0], binary=False)
    if kind == "member":  # the .glb binary chunk, an image of a .sog
        return _inside(data, args[1], binary=True, index=args[0])
    if kind == "append":
        return data + args[0]
    if n == 0:
        return data
    at = args[0] % n if args and isinstance(args[0], int) else 0
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (1 << args[1])]) + data[at + 1:]
    if kind == "set":
        return data[:at] + bytes([args[1]]) + data[at + 1:]
    if kind == "cut":
        return data[:at]
    if kind == "insert":
        return data[:at] + args[1] + data[at:]
    if kind == "delete":
        return data[:at] + data[at + args[1]:]
    if kind == "duplicate":
        return data[:at + args[1]] + data[at:at + args[1]] + data[at + args[1]:]
    if kind == "number":  # a PLY header number, a JSON number, a .spz header field
        if data[:4] == b"glTF" or data[:2] == b"PK":
            return _inside(data, mutation, binary=False)  # the JSON of .glb / .sog
        spans = _header_numbers(data) if data[:3] == b"ply" else (
            _json_numbers(data) if data[:1] == b"{" else [])
        if spans:
            a, b = spans[args[0] % len(spans)]
            return data[:a] + str(args[1]).encode() + data[b:]
        offsets = [o for o in _binary_fields(data) if o + 4 <= n]
        if not offsets:
            return data
        o = offsets[args[0] % len(offsets)]
        return data[:o] + struct.pack("<I", args[1] & 0xFFFFFFFF) + data[o + 4:]
    raise ValueError(f"unknown mutation {kind!r}")


def mutations(kind: str) -> st.SearchStrategy:
    """One mutation for a file of ``kind`` (offsets are taken modulo the file length; small
    offsets — the headers — are drawn as often as anywhere)."""
    offset = st.one_of(st.integers(0, 96), st.integers(0, 1 << 20))
    tail = st.one_of(st.binary(min_size=1, max_size=64),
                     st.sampled_from([b"\0" * 4, b"\0" * 16, b"\0" * 32, b"\n", b" 1\n"]))
    plain = st.one_of(
        st.tuples(st.just("flip"), offset, st.integers(0, 7)),
        st.tuples(st.just("set"), offset, st.integers(0, 255)),
        st.tuples(st.just("cut"), offset),
        st.tuples(st.just("insert"), offset, tail),
        st.tuples(st.just("delete"), offset, st.integers(1, 64)),
        st.tuples(st.just("append"), tail),
        st.tuples(st.just("duplicate"), offset, st.integers(1, 64)),
        st.tuples(st.just("number"), st.integers(0, 63),
                  st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**32 - 1))),
    )
    if kind in ("spz_v2", "spz_v3"):
        return st.one_of(plain, st.tuples(st.just("inner"), plain))
    if kind in ("glb", "glb_int8", "sog"):
        return st.one_of(plain, st.tuples(st.just("inner"), plain),
                         st.tuples(st.just("member"), st.integers(0, 7), plain))
    return plain


@dataclass(frozen=True)
class Case:
    kind: str
    count: int
    degree: int
    mutation: tuple


@st.composite
def cases(draw) -> Case:
    kind = draw(st.sampled_from(sorted(KINDS)))
    return Case(kind, draw(st.sampled_from(COUNTS)), draw(st.sampled_from(KINDS[kind][1])),
                draw(mutations(kind)))


# ---------------------------------------------------------------------------------- running
class _Hang(BaseException):
    """Raised by the timer inside a read that runs too long (not an Exception: readers'
    ``except Exception`` must not swallow it)."""


def _on_alarm(signum, frame):
    raise _Hang()


@dataclass
class Outcome:
    klass: str
    seconds: float
    peak_bytes: int
    detail: str = ""


@dataclass
class Tally:
    """Outcome counts of a campaign, with the first example of each bad class."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    max_seconds: float = 0.0
    max_peak_bytes: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind → class → cases

    def add(self, case: Case, outcome: Outcome) -> None:
        self.counts[outcome.klass] = self.counts.get(outcome.klass, 0) + 1
        kind = self.by_kind.setdefault(case.kind, {})
        kind[outcome.klass] = kind.get(outcome.klass, 0) + 1
        self.max_seconds = max(self.max_seconds, outcome.seconds)
        self.max_peak_bytes = max(self.max_peak_bytes, outcome.peak_bytes)
        if outcome.klass in BAD_CLASSES and outcome.klass not in self.examples:
            self.examples[outcome.klass] = f"{case}: {outcome.detail}"

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def bad(self) -> dict[str, int]:
        return {k: self.counts.get(k, 0) for k in BAD_CLASSES}


def run_case(case: Case, folder: str) -> Outcome:
    """Write the mutated file into ``folder``, read it, classify the outcome."""
    data = apply_mutation(base_file(case.kind, case.count, case.degree), case.mutation)
    path = os.path.join(folder, "case" + KINDS[case.kind][0])
    with open(path, "wb") as fh:
        fh.write(data)
    reports: list[tuple[set, str]] = []
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                result = read_splats(path, report=lambda lv, m: reports.append((lv, m)))
                error = None
            except GSError as err:
                result, error = None, err
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _Hang:
        return Outcome("hang", time.perf_counter() - start, tracemalloc.get_traced_memory()[1])
    except BaseException as err:  # noqa: BLE001 — classifying every escape is the point
        peak = tracemalloc.get_traced_memory()[1]
        return Outcome("crash", time.perf_counter() - start, peak, f"{type(err).__name__}: {err}")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - start
    klass, detail = _classify(case, data, path, result, error, reports, caught)
    if peak > BUDGET_BYTES:
        klass, detail = "over_budget", f"peak {peak:,} bytes"
    return Outcome(klass, seconds, peak, detail)


def _classify(case: Case, data: bytes, path: str, result, error, reports,
              caught) -> tuple[str, str]:
    if caught:
        return "leaked_warning", str(caught[0].message)
    if error is not None:
        named = os.path.basename(path) in str(error)
        return ("error", "") if named else ("unnamed_error", str(error))
    warned = any(lv & {"WARNING", "ERROR"} for lv, _ in reports)
    if result.count == case.count:
        return ("warned" if warned else "same_count"), ""
    if warned:
        return "warned", ""
    if case.kind == "splat" and len(data) % 32 == 0:
        return "splat_record_cut", ""
    return "silent_count_change", f"{case.count} → {result.count}"
