"""Exactness on random tiny instances (hypothesis), against brute-force enumeration."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from anwang.coverage import CoverageProblem, HighsSolver, identity, optimize, reduce
from anwang.coverage.heuristics import greedy, greedy_interchange, interchange, upper_bound
from anwang.coverage.solve import mclp_model, relative_gap, start_values

Optimum = Callable[[CoverageProblem], float]

EXACT = HighsSolver(mip_rel_gap=0.0)
"""Gap tolerance 0: with integer weights the MIP must then hit the optimum exactly."""


@st.composite
def problems(
    draw: st.DrawFn, *, fixed: bool | None = None, backup: bool | None = None
) -> CoverageProblem:
    """n_demand ≤ 30, n_candidates ≤ 10, p ≤ 4, integer weights 0..9; ``fixed`` and
    ``backup`` None mean either. Some rows and columns are copied, as in real cover
    matrices (demand points in the same cell, candidates on the same block)."""
    n = draw(st.integers(1, 30))
    m = draw(st.integers(1, 10))
    density = draw(st.sampled_from([0.05, 0.15, 0.3, 0.6]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cover = rng.random((n, m)) < density
    if draw(st.booleans()):
        cover[rng.integers(0, n, size=n // 3)] = cover[rng.integers(0, n)]
        cover[:, rng.integers(0, m)] = cover[:, rng.integers(0, m)]
    weights = rng.integers(0, 10, size=n).astype(np.float64)
    p = draw(st.integers(1, min(4, m)))
    use_fixed = draw(st.booleans()) if fixed is None else fixed
    chosen = rng.choice(m, size=draw(st.integers(1, p)) if use_fixed else 0, replace=False)
    use_backup = draw(st.booleans()) if backup is None else backup
    beta = draw(st.sampled_from([0.25, 0.5, 1.0])) if use_backup else 0.0
    return CoverageProblem(sp.csr_array(cover), weights, p, chosen, beta)


def reduced_optimum(problem: CoverageProblem) -> float:
    """Brute force over the reduced model: at most ``p`` of its columns, plus its constant."""
    import itertools

    red = reduce(problem)
    best = red.value(np.zeros(0, dtype=np.int64))
    for k in range(1, min(red.p, red.n_cols) + 1):
        for cols in itertools.combinations(range(red.n_cols), k):
            best = max(best, red.value(np.asarray(cols, dtype=np.int64)))
    return best


@settings(max_examples=120, deadline=None)
@given(problems(fixed=False, backup=False))
def test_optimize_equals_brute_force_plain(optimum: Optimum, problem: CoverageProblem) -> None:
    result = optimize(problem, solver=EXACT)
    assert result.objective == optimum(problem)
    assert result.sites.size == problem.p
    assert result.status == "optimal"


@settings(max_examples=120, deadline=None)
@given(problems(fixed=True), st.booleans())
def test_optimize_equals_brute_force_with_fixed_sites(
    optimum: Optimum, problem: CoverageProblem, use_reduction: bool
) -> None:
    result = optimize(problem, solver=EXACT, reduce=use_reduction)
    assert result.objective == optimum(problem)
    assert set(problem.fixed.tolist()) <= set(result.sites.tolist())
    assert result.sites.size == problem.p == np.unique(result.sites).size


@settings(max_examples=80, deadline=None)
@given(problems(backup=True), st.booleans())
def test_optimize_equals_brute_force_with_backup(
    optimum: Optimum, problem: CoverageProblem, use_reduction: bool
) -> None:
    result = optimize(problem, solver=EXACT, reduce=use_reduction)
    assert result.objective == optimum(problem)


@settings(max_examples=150, deadline=None)
@given(problems())
def test_reduction_preserves_the_optimum(optimum: Optimum, problem: CoverageProblem) -> None:
    assert reduced_optimum(problem) == optimum(problem)
    red = reduce(problem)
    assert red.n_rows <= problem.n_demand and red.n_cols <= problem.n_candidates
    # the reduced objective of any choice is the original objective of its lift (unpadded)
    cols = np.arange(min(red.p, red.n_cols), dtype=np.int64)
    lifted = np.union1d(problem.fixed, red.columns[cols])
    assert red.value(cols) == problem.objective(lifted)


@settings(max_examples=150, deadline=None)
@given(problems(), st.booleans())
def test_heuristics_never_exceed_the_optimum_and_keep_fixed_sites(
    optimum: Optimum, problem: CoverageProblem, use_reduction: bool
) -> None:
    best = optimum(problem)
    red = reduce(problem) if use_reduction else identity(problem)
    start = greedy(red)
    cols, _ = interchange(red, start)
    for chosen in (start, cols):
        assert set(red.fixed_cols.tolist()) <= set(chosen.tolist())
        assert chosen.size <= red.p
        sites = red.lift(chosen)
        assert sites.size == problem.p
        assert set(problem.fixed.tolist()) <= set(sites.tolist())
        assert problem.objective(sites) <= best
    assert red.value(cols) >= red.value(start)
    assert upper_bound(red, cols) >= best
    heur = greedy_interchange(red, max_rounds=30, seed=1)
    assert heur.objective <= best <= heur.bound


@settings(max_examples=60, deadline=None)
@given(problems())
def test_reported_gap_agrees_with_objective_and_bound(problem: CoverageProblem) -> None:
    result = optimize(problem, solver=HighsSolver(mip_rel_gap=0.2))
    assert result.bound >= result.objective >= 0
    assert result.gap == relative_gap(result.objective, result.bound)
    if result.objective > 0:
        assert result.gap == (result.bound - result.objective) / result.objective
    assert result.covered_weight <= problem.total_weight


@settings(max_examples=60, deadline=None)
@given(problems(), st.booleans())
def test_warm_start_is_feasible_and_priced_like_the_reduction(
    problem: CoverageProblem, use_reduction: bool
) -> None:
    red = reduce(problem) if use_reduction else identity(problem)
    cols, _ = interchange(red, greedy(red))
    model = mclp_model(red)
    z = start_values(red, cols)
    lhs = model.matrix @ z
    assert np.all(lhs <= model.row_upper + 1e-9) and np.all(lhs >= model.row_lower - 1e-9)
    assert np.all(z >= model.col_lower) and np.all(z <= model.col_upper)
    assert float(model.objective @ z) + model.offset == red.value(cols)
