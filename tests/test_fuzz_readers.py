"""Fuzz slice of every splat reader (the long campaign is benchmarks/bench_fuzz.py).

Mutated valid files (tests/reader_fuzz.py defines the cases and the outcome classes) must each
give one GSError naming the file, a result with a warning, or the generating count — never a
crash, a hang, an allocation over budget, a silent count change or a leaked numpy warning.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from reader_fuzz import (
    BAD_CLASSES,
    COUNTS,
    KINDS,
    Case,
    Tally,
    apply_mutation,
    base_file,
    cases,
    run_case,
)

from blender_gs_addon.formats import read_splats


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unmutated_files_read_back_with_their_count(tmp_path, kind):
    for degree in KINDS[kind][1]:
        outcome = run_case(Case(kind, COUNTS[-1], degree, ("append", b"")), str(tmp_path))
        assert outcome.klass == "same_count", (kind, degree, outcome)
        path = tmp_path / ("case" + KINDS[kind][0])
        back = read_splats(path, report=lambda *a: None)
        assert back.count == COUNTS[-1] and back.sh_degree == degree


def test_mutations_do_what_they_say():
    data = bytes(range(10))
    assert apply_mutation(data, ("flip", 3, 1)) == bytes([0, 1, 2, 1, 4, 5, 6, 7, 8, 9])
    assert apply_mutation(data, ("cut", 4)) == data[:4]
    assert apply_mutation(data, ("insert", 2, b"ab")) == data[:2] + b"ab" + data[2:]
    assert apply_mutation(data, ("delete", 2, 3)) == data[:2] + data[5:]
    assert apply_mutation(data, ("duplicate", 1, 2)) == data[:3] + data[1:3] + data[3:]
    ply = base_file("ply_le", 5, 0)
    edited = apply_mutation(ply, ("number", 2, 7))  # "ply", "1.0" → 1, 0, then the count
    assert b"element vertex 7\n" in edited and len(edited) == len(ply)


def test_fuzz_slice_has_no_bad_outcomes(tmp_path):
    tally = Tally()

    @settings(max_examples=400, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(case=cases())
    def check(case):
        tally.add(case, run_case(case, str(tmp_path)))

    check()
    assert tally.total == 400
    assert tally.bad() == dict.fromkeys(BAD_CLASSES, 0), tally.examples
    # the slice really exercises the readers: errors, warnings and clean reads all occur
    assert tally.counts.get("error", 0) > 50 and tally.counts.get("warned", 0) > 5
    assert tally.counts.get("same_count", 0) > 50
