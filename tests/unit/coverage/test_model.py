"""CoverageProblem validation, coverage shares per threshold and district, comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from anwang.core.errors import ValidationFailed
from anwang.coverage import (
    CoverageProblem,
    Move,
    analyze,
    compare,
    cover_within,
    coverage_share,
)

# 4 demand points × 3 candidates: 0 reaches {0, 1}, 1 reaches {1, 2}, 2 reaches {3}
COVER = sp.csr_array(
    np.array(
        [
            [1, 0, 0],
            [1, 1, 0],
            [0, 1, 0],
            [0, 0, 1],
        ],
        dtype=bool,
    )
)
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0])


def reasons(exc: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, str]:
    return {e.field: e.reason for e in exc.value.errors}


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"cover": sp.csr_array((4, 0), dtype=bool)}, "cover", "candidate list is empty"),
        ({"cover": sp.csr_array((0, 3), dtype=bool), "weights": []}, "cover", "no demand"),
        ({"p": 4}, "p", "only 3 candidates"),
        ({"p": 0}, "p", "at least 1"),
        ({"p": 2.5}, "p", "integer"),
        ({"p": True}, "p", "integer"),
        ({"p": 1, "fixed": [0, 1]}, "fixed", "more than p = 1"),
        ({"fixed": [3]}, "fixed", "out of range 0..2"),
        ({"fixed": [-1]}, "fixed", "out of range"),
        ({"fixed": [1, 1]}, "fixed", "more than once"),
        ({"fixed": [0.5]}, "fixed", "integers"),
        ({"weights": [1.0, -2.0, 3.0, 4.0]}, "weights", "not be negative (demand point 1"),
        ({"weights": [1.0, math.nan, 3.0, 4.0]}, "weights", "finite"),
        ({"weights": [1.0, 2.0]}, "weights", "has 2 entries, but cover has 4"),
        ({"backup_weight": 1.5}, "backup_weight", "between 0 and 1"),
        ({"backup_weight": -0.1}, "backup_weight", "between 0 and 1"),
        ({"cover": np.ones(3, dtype=bool)}, "cover", "2-D"),
    ],
)
def test_bad_input_names_field_and_reason(
    kwargs: dict[str, object], field: str, fragment: str
) -> None:
    args: dict[str, object] = {"cover": COVER, "weights": WEIGHTS, "p": 2, **kwargs}
    with pytest.raises(ValidationFailed) as exc:
        CoverageProblem(**args)  # type: ignore[arg-type]
    assert exc.value.status == 422
    assert exc.value.code == "anwang.validation_failed"
    assert field in reasons(exc)
    assert fragment in reasons(exc)[field]


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ValidationFailed) as exc:
        CoverageProblem(COVER, [-1.0, 0, 0, 0], 9, [7], 2.0)
    assert set(reasons(exc)) == {"weights", "p", "fixed", "backup_weight"}


def test_problem_normalises_its_inputs() -> None:
    dense = np.array([[0, 2], [1, 0]])
    problem = CoverageProblem(dense, [1, 2], 1, np.array([1], dtype=np.int32))
    assert isinstance(problem.cover, sp.csr_array)
    assert problem.cover.dtype == np.bool_
    assert problem.fixed.dtype == np.int64
    assert problem.weights.dtype == np.float64
    assert not problem.weights.flags.writeable
    assert problem.objective([1]) == 1.0
    assert problem.covered_share([0, 1]) == 1.0


def test_cover_within_dense_and_sparse() -> None:
    times = np.array([[30.0, np.inf], [200.0, 180.0], [np.nan, 0.0]])
    assert cover_within(times, 180).toarray().tolist() == [
        [True, False],
        [False, True],
        [False, True],
    ]
    stored = sp.csr_array(
        (np.array([0.0, 181.0, 60.0]), (np.array([0, 1, 2]), np.array([0, 0, 1]))), shape=(3, 2)
    )
    # a stored zero is a point at the site itself: covered
    assert cover_within(stored, 180).toarray().tolist() == [
        [True, False],
        [False, False],
        [False, True],
    ]
    with pytest.raises(ValidationFailed):
        cover_within(times, -1)
    problem = CoverageProblem.from_times(times, 180, [1, 1, 1], 1, fixed=[1])
    assert problem.fixed.tolist() == [1]


def test_coverage_share() -> None:
    assert coverage_share(COVER, WEIGHTS, [0]) == pytest.approx(0.3)
    assert coverage_share(COVER, WEIGHTS, [0, 2]) == pytest.approx(0.7)
    assert coverage_share(COVER, WEIGHTS, []) == 0.0
    assert coverage_share(COVER, np.zeros(4), [0]) == 0.0
    with pytest.raises(ValidationFailed) as exc:
        coverage_share(COVER, WEIGHTS, [5])
    assert "chosen" in reasons(exc)


def test_analyze_per_threshold_and_district() -> None:
    one = sp.csr_array(np.array([[1, 0], [0, 0], [0, 0], [0, 1]], dtype=bool))
    three = sp.csr_array(np.array([[1, 0], [1, 0], [0, 0], [0, 1]], dtype=bool))
    five = sp.csr_array(np.ones((4, 2), dtype=bool))
    res = analyze({5: five, 1: one, 3: three}, WEIGHTS, districts=["天宁", "天宁", "钟楼", "钟楼"])
    assert [r.minutes for r in res] == [1.0, 3.0, 5.0]
    assert [r.share for r in res] == pytest.approx([0.5, 0.7, 1.0])
    by_district = {d.district: d for d in res[1].districts}
    assert by_district["天宁"].share == 1.0
    assert by_district["钟楼"].covered_weight == 4.0
    assert by_district["钟楼"].share == pytest.approx(4 / 7)
    assert res[0].covered.tolist() == [True, False, False, True]
    # only the first post
    only_first = analyze({3: three}, WEIGHTS, [0])
    assert only_first[0].share == pytest.approx(0.3)
    assert only_first[0].districts == ()


def test_analyze_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValidationFailed):
        analyze({})
    with pytest.raises(ValidationFailed):
        analyze({1: COVER, 3: COVER[:2]})
    with pytest.raises(ValidationFailed):
        analyze({1: COVER}, districts=["a"])


def test_compare_lists_coverage_changes_and_moves() -> None:
    cover = sp.csr_array(np.eye(4, dtype=bool))
    # candidates on a line; before = {0, 1}, after = {2, 3}
    xy = np.array([[0.0, 0.0], [10.0, 0.0], [11.0, 0.0], [30.0, 0.0]])
    cmp = compare([0, 1], [1, 3], cover=cover, coordinates=xy)
    assert cmp.kept.tolist() == [1]
    assert cmp.removed.tolist() == [0]
    assert cmp.added.tolist() == [3]
    assert cmp.newly_covered.tolist() == [3]
    assert cmp.no_longer_covered.tolist() == [0]
    assert cmp.moves == (Move(0, 3, 30.0),)
    assert cmp.share_before == cmp.share_after == 0.5


def test_compare_matches_removed_to_added_by_minimum_total_distance() -> None:
    # removed 0 (x=0) and 1 (x=4), added 2 (x=2) and 3 (x=7): pairing nearest-first may
    # take 1→2 (2 m) and leave 0→3 (7 m), 9 m in all; the assignment finds 0→2 + 1→3, 5 m.
    cover = sp.csr_array(np.eye(4, dtype=bool))
    xy = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 0.0], [7.0, 0.0]])
    cmp = compare([0, 1], [2, 3], cover=cover, coordinates=xy)
    assert sorted((m.from_site, m.to_site) for m in cmp.moves) == [(0, 2), (1, 3)]
    assert sum(m.distance_m or 0 for m in cmp.moves) == pytest.approx(5.0)


def test_compare_with_unequal_counts_and_without_coordinates() -> None:
    cover = sp.csr_array(np.eye(4, dtype=bool))
    xy = np.array([[0.0, 0.0], [100.0, 0.0], [1.0, 0.0], [50.0, 0.0]])
    cmp = compare([0, 1], [2], cover=cover, coordinates=xy, weights=[1, 1, 1, 1])
    assert set(cmp.moves) == {Move(0, 2, 1.0), Move(1, None)}
    plain = compare([0, 1], [2, 3], cover=cover)
    assert set(plain.moves) == {Move(0, None), Move(1, None), Move(None, 2), Move(None, 3)}
    with pytest.raises(ValidationFailed):
        compare([0], [1], cover=cover, coordinates=np.zeros((3, 2)))


def test_compare_geographic_distances() -> None:
    cover = sp.csr_array(np.eye(2, dtype=bool))
    latlon = np.array([[31.78, 119.95], [31.79, 119.95]])  # 0.01° of latitude
    cmp = compare([0], [1], cover=cover, coordinates=latlon, latlon=True)
    assert cmp.moves[0].distance_m == pytest.approx(1111.95, rel=1e-4)
