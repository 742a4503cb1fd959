"""Model reduction: each rule on a hand-made example, and exact row grouping."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from anwang.coverage import CoverageProblem, identity, reduce
from anwang.coverage.reduce import _group_rows_exact, group_rows


def problem(rows: list[list[int]], weights: list[float], p: int, **kw: object) -> CoverageProblem:
    return CoverageProblem(sp.csr_array(np.array(rows, dtype=bool)), weights, p, **kw)  # type: ignore[arg-type]


def test_uncoverable_and_zero_weight_points_leave_the_model() -> None:
    red = reduce(problem([[1, 0], [0, 0], [0, 1], [0, 1]], [1, 5, 0, 2], 1))
    assert red.stats.uncoverable == 1
    assert red.stats.uncoverable_weight == 5
    assert red.stats.zero_weight == 1
    assert red.n_rows == 2
    assert sorted(red.weights.tolist()) == [1, 2]


def test_identical_rows_merge_with_summed_weights() -> None:
    prob = problem([[1, 1, 0], [0, 1, 1], [1, 1, 0], [1, 1, 0]], [1, 2, 3, 4], 1)
    red = reduce(prob, dominance=False)
    assert red.n_rows == 2
    assert red.stats.merged == 2
    assert sorted(red.weights.tolist()) == [2, 8]
    # with dominance, candidate 1 reaches everything the others do; then every row has
    # the same single candidate and all merge into one
    full = reduce(prob)
    assert full.columns.tolist() == [1]
    assert full.n_rows == 1 and full.weights.tolist() == [10]


def test_dominated_candidate_is_dropped_and_identical_ones_keep_the_first() -> None:
    # column 0 ⊂ column 1; columns 2 and 3 identical
    red = reduce(problem([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], [1, 1, 1, 1], 2))
    assert red.columns.tolist() == [1, 2]
    assert red.stats.dominated == 2
    assert red.exact_p is False
    # the lift pads back to p sites
    assert red.lift(np.array([0])).tolist() == [1, 2]
    assert red.lift(np.array([], dtype=np.int64)).size == 2


def test_backup_coverage_needs_two_dominators() -> None:
    rows = [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    # column 0 ⊂ column 1 only: with backup, 0 is the only second unit for rows 0-1
    one = reduce(problem(rows, [5, 5, 1], 2, backup_weight=0.5))
    assert one.columns.tolist() == [0, 1, 2]
    # column 0 ⊂ columns 1 and 2: droppable even with backup
    two = reduce(problem([[1, 1, 1], [1, 1, 1], [0, 1, 1]], [5, 5, 1], 2, backup_weight=0.5))
    assert 0 not in two.columns.tolist()
    # without backup one dominator is enough
    plain = reduce(problem(rows, [5, 5, 1], 2))
    assert plain.columns.tolist() == [1]


def test_fixed_sites_are_folded_into_offsets_and_constant() -> None:
    rows = [[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]]
    prob = problem(rows, [1, 2, 3, 4], 2, fixed=[0])
    red = reduce(prob)
    # rows 0 and 1 are settled by the fixed site (value 3), column 0 leaves the model
    assert red.constant == 3
    assert red.stats.settled == 2
    assert 0 not in red.columns.tolist()
    assert red.p == 1
    best = max(red.value(np.array([c])) for c in range(red.n_cols))
    assert best == 3 + 7  # add candidate 2: rows 2 and 3
    # with backup, a row reached once by a fixed site keeps offset 1
    red_b = reduce(problem(rows, [1, 2, 3, 4], 2, fixed=[0], backup_weight=0.5))
    assert red_b.constant == 1  # row 0: only the fixed site can reach it
    assert sorted(red_b.offset.tolist()) == [0, 0, 1]


def test_identity_keeps_everything() -> None:
    prob = problem([[1, 0], [0, 0], [1, 0]], [1, 1, 1], 1, fixed=[1])
    red = identity(prob)
    assert red.n_rows == 3 and red.n_cols == 2
    assert red.fixed_cols.tolist() == [1]
    assert red.exact_p
    assert red.stats.uncoverable == 1


def test_group_rows_is_exact() -> None:
    rng = np.random.default_rng(3)
    base = rng.random((40, 12)) < 0.3
    a = sp.csr_array(base[rng.integers(0, 40, size=400)])
    key = rng.integers(0, 2, size=400)
    group, first = group_rows(a, key)
    dense = a.toarray()
    for i in range(400):
        r = first[group[i]]
        assert np.array_equal(dense[i], dense[r]) and key[i] == key[r]
    assert np.unique(group).size == first.size
    # groups are numbered by first appearance and agree with the byte-wise grouping
    assert np.all(np.diff(first) > 0)
    g2, f2 = _group_rows_exact(a, key)
    assert np.array_equal(group, g2) and np.array_equal(first, f2)


def test_reduction_on_a_larger_instance_is_fast_and_consistent() -> None:
    rng = np.random.default_rng(11)
    pts = rng.random((3000, 2)) * 20
    sites = rng.random((300, 2)) * 20
    d = np.hypot(pts[:, None, 0] - sites[None, :, 0], pts[:, None, 1] - sites[None, :, 1])
    prob = CoverageProblem(sp.csr_array(d < 1.2), rng.integers(1, 9, 3000), 20)
    red = reduce(prob)
    assert red.stats.seconds < 2
    assert red.n_rows < prob.n_demand
    # every kept column's rows are non-empty and weights add up
    total_kept = red.weights.sum() + red.stats.uncoverable_weight + red.constant
    assert total_kept == prob.total_weight
