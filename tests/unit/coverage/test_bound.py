"""Bounds and fixing (anwang.coverage.bound) against brute force on tiny random problems.

Every claim is checked by enumerating all sitings: the LP dual bound and the
decomposition bound never fall below the optimum, whatever multipliers they are given;
reduced-cost fixing never excludes a siting better than the incumbent; the restricted
model values sitings as the model it came from.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from anwang.coverage import CoverageProblem, HighsSolver, identity, optimize, reduce
from anwang.coverage.bound import (
    DecompositionBound,
    RegionalBound,
    RegionalSolve,
    _bisect,
    decomposition_bound,
    dual_bound,
    fix_by_reduced_cost,
    partition,
)
from anwang.coverage.heuristics import greedy, interchange
from anwang.coverage.reduce import Reduction, restrict
from anwang.coverage.solve import _region_solver, mclp_model, regional_model

Optimum = Callable[[CoverageProblem], float]
HIGHS = HighsSolver(mip_rel_gap=0.0)
DiscCover = Callable[[np.ndarray, np.ndarray, float], sp.csr_array]


@st.composite
def problems(draw: st.DrawFn, *, backup: bool = False) -> CoverageProblem:
    """n_demand ≤ 25, n_candidates ≤ 9, p ≤ 4, integer weights; some fixed sites."""
    n = draw(st.integers(1, 25))
    m = draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cover = rng.random((n, m)) < draw(st.sampled_from([0.1, 0.25, 0.5]))
    weights = rng.integers(0, 10, size=n).astype(np.float64)
    p = draw(st.integers(1, min(4, m)))
    fixed = rng.choice(m, size=draw(st.integers(0, p)) if draw(st.booleans()) else 0, replace=False)
    beta = draw(st.sampled_from([0.25, 1.0])) if backup else 0.0
    return CoverageProblem(sp.csr_array(cover), weights, p, fixed, beta)


def choices(red: Reduction) -> Iterator[np.ndarray]:
    """Every feasible choice of columns of ``red`` (exactly or at most ``p``, fixed kept)."""
    free = np.setdiff1d(np.arange(red.n_cols), red.fixed_cols)
    room = red.p - red.fixed_cols.size
    sizes = [room] if red.exact_p else range(room + 1)
    for k in sizes:
        for extra in itertools.combinations(free.tolist(), min(k, free.size)):
            yield np.union1d(red.fixed_cols, np.asarray(extra, dtype=np.int64)).astype(np.int64)


def best_value(red: Reduction) -> float:
    return max(red.value(c) for c in choices(red))


def model_bound(red: Reduction, duals: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    m = mclp_model(red)
    return dual_bound(
        m.objective, m.offset, m.matrix, m.row_lower, m.row_upper, m.col_lower, m.col_upper, duals
    )


def lp_duals(red: Reduction) -> np.ndarray:
    lp = HIGHS.relax(mclp_model(red))
    assert lp is not None
    return lp.row_duals


@settings(max_examples=120, deadline=None)
@given(st.booleans().flatmap(lambda b: problems(backup=b)), st.booleans(), st.integers(0, 99))
def test_dual_bound_holds_for_any_multipliers(
    optimum: Optimum, problem: CoverageProblem, use_reduction: bool, seed: int
) -> None:
    red = reduce(problem) if use_reduction else identity(problem)
    n_rows = mclp_model(red).n_rows
    rng = np.random.default_rng(seed)
    for duals in (rng.normal(0, 5, n_rows), lp_duals(red), np.zeros(n_rows)):
        bound, r, _ = model_bound(red, duals)
        assert bound >= optimum(problem) - 1e-7
        assert np.all(r[:-1] >= 0)  # coverage rows are bounded above only
    # the LP's own duals give the LP optimum, up to the interior point's tolerance
    lp = HIGHS.relax(mclp_model(red))
    assert lp is not None and lp.objective is not None
    assert model_bound(red, lp.row_duals)[0] == pytest.approx(lp.objective, rel=1e-5, abs=1e-5)


@settings(max_examples=150, deadline=None)
@given(problems(), st.booleans(), st.booleans(), st.integers(0, 99))
def test_fixing_never_excludes_a_siting_better_than_the_incumbent(
    problem: CoverageProblem, backup: bool, use_reduction: bool, seed: int
) -> None:
    if backup:
        problem = CoverageProblem(problem.cover, problem.weights, problem.p, problem.fixed, 0.5)
    red = reduce(problem) if use_reduction else identity(problem)
    model = mclp_model(red)
    rng = np.random.default_rng(seed)
    all_choices = list(choices(red))
    # incumbents from poor to optimal: a random choice, greedy, the best one
    values = [red.value(c) for c in all_choices]
    incumbents = [values[int(rng.integers(len(values)))], red.value(greedy(red)), max(values)]
    duals = [lp_duals(red), rng.normal(0, 3, model.n_rows)]
    m = red.n_cols
    for z, r in itertools.product(incumbents, duals):
        bound, _, d = model_bound(red, r)
        zero, one = fix_by_reduced_cost(
            bound, d[:m], model.col_lower[:m], model.col_upper[:m], z
        )
        for cols, value in zip(all_choices, values, strict=True):
            if value > z:
                x = np.zeros(m, dtype=bool)
                x[cols] = True
                assert not np.any(x & zero), "a better siting uses a site fixed to 0"
                assert np.all(x[one]), "a better siting leaves out a site fixed to 1"


@settings(max_examples=120, deadline=None)
@given(problems(), st.booleans(), st.integers(0, 99))
def test_restricted_model_values_sitings_like_its_source(
    problem: CoverageProblem, use_reduction: bool, seed: int
) -> None:
    red = reduce(problem) if use_reduction else identity(problem)
    rng = np.random.default_rng(seed)
    zero = rng.random(red.n_cols) < 0.3
    one = ~zero & (rng.random(red.n_cols) < 0.2)
    sub, keep = restrict(red, zero=zero, one=one)
    assert sub.n_cols == int((~zero).sum()) and keep.tolist() == np.flatnonzero(~zero).tolist()
    assert set(np.flatnonzero(one[keep]).tolist()) <= set(sub.fixed_cols.tolist())
    for k in range(min(sub.n_cols, 3) + 1):
        for cols in itertools.combinations(range(sub.n_cols), k):
            c = np.asarray(cols, dtype=np.int64)
            assert sub.value(c) == pytest.approx(red.value(keep[c]))
            if np.union1d(problem.fixed, sub.columns[c]).size <= problem.p:
                assert sub.lift(c).tolist() == red.lift(keep[c]).tolist()


def brute_region(
    cover: sp.csr_array,
    weights: np.ndarray,
    prices: np.ndarray,
    fixed: np.ndarray,
    start: np.ndarray,
    time_limit_s: float,
) -> RegionalSolve:
    """The regional problem by enumeration (at most 9 sites here)."""
    m = cover.shape[1]
    dense = cover.toarray()
    best = -np.inf
    for bits in itertools.product([0, 1], repeat=m):
        x = np.asarray(bits, dtype=bool)
        if np.any(fixed & ~x):
            continue
        covered = dense[:, x].any(axis=1) if m else np.zeros(cover.shape[0], dtype=bool)
        best = max(best, float(weights[covered].sum() - prices[x].sum()))
    return RegionalSolve(best, True)


def highs_region(
    cover: sp.csr_array,
    weights: np.ndarray,
    prices: np.ndarray,
    fixed: np.ndarray,
    start: np.ndarray,
    time_limit_s: float,
) -> RegionalSolve:
    res = HIGHS.solve(regional_model(cover, weights, prices, fixed), time_limit_s=10)
    return RegionalSolve(res.bound, res.status == "optimal")


@settings(max_examples=150, deadline=None)
@given(
    problems(), st.booleans(), st.integers(0, 99), st.sampled_from(["lp", "random"]),
    st.sampled_from([None, 1, 2, 4]),
)  # fmt: skip
def test_decomposition_bound_holds_for_any_partition_and_prices(
    optimum: Optimum,
    problem: CoverageProblem,
    use_reduction: bool,
    seed: int,
    duals: str,
    split_above: int | None,
) -> None:
    red = reduce(problem) if use_reduction else identity(problem)
    rng = np.random.default_rng(seed)
    n_rows = mclp_model(red).n_rows
    r = lp_duals(red) if duals == "lp" else rng.normal(0, 4, n_rows)
    labels = rng.integers(0, 3, red.n_rows)
    incumbent = greedy(red)
    for solver in (brute_region, highs_region):
        dec = decomposition_bound(
            red, r[:-1], float(r[-1]), incumbent, solver, deadline=float("inf"), regions=labels,
            split_above=split_above,
        )  # fmt: skip
        assert dec.bound >= optimum(problem) - 1e-6
        assert dec.bound <= dec.lp_bound
        assert dec.unfinished == 0
    if duals == "lp":
        # with the LP's prices, the regions' LP shares add up to the LP dual bound
        lp_bound = model_bound(red, r)[0]
        assert dec.lp_bound == pytest.approx(lp_bound, rel=1e-6, abs=1e-6)


def test_decomposition_is_exact_on_independent_components(optimum: Optimum) -> None:
    # two blocks no site shares: the regions are the components, each solved exactly;
    # the bound is the Lagrangian bound of Σ x = p, here met by the optimum
    block = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool)
    cover = sp.block_diag([block, block]).tocsr().astype(bool)
    prob = CoverageProblem(cover, np.array([5, 4, 3, 2, 5, 4, 3, 2.0]), 2)
    red = identity(prob)
    labels = partition(red, target_columns=100)
    assert np.unique(labels).size == 2 and labels[:4].tolist() == [labels[0]] * 4
    r = lp_duals(red)
    dec = decomposition_bound(
        red, r[:-1], float(r[-1]), greedy(red), brute_region, deadline=float("inf")
    )
    assert dec.regions == 2
    assert optimum(prob) <= dec.bound <= dec.lp_bound + 1e-9


def test_partition_cuts_a_long_chain_into_regions_of_about_the_target() -> None:
    # a path: site j reaches rows j and j + 1
    n = 60
    cover = np.zeros((n + 1, n), dtype=bool)
    cover[np.arange(n), np.arange(n)] = True
    cover[np.arange(n) + 1, np.arange(n)] = True
    red = identity(CoverageProblem(sp.csr_array(cover), np.ones(n + 1), 3))
    labels = partition(red, target_columns=10)
    assert np.unique(labels).size == 6
    # regions are runs of consecutive rows (compact on the chain)
    assert np.count_nonzero(np.diff(labels)) == 5


def test_optimize_reports_its_bounds_in_order() -> None:
    # one dense cluster: the LP relaxation is 0.6 % above the optimum; the regions,
    # solved exactly, bring the bound down to the siting without any branching
    rng = np.random.default_rng(0)
    pts, sites = rng.normal(0, 3, (1500, 2)), rng.normal(0, 3, (150, 2))
    d = np.hypot(pts[:, None, 0] - sites[None, :, 0], pts[:, None, 1] - sites[None, :, 1])
    prob = CoverageProblem(sp.csr_array(d < 1.0), rng.integers(1, 9, 1500), 10)
    res = optimize(prob, time_limit_s=20, region_columns=40)
    assert res.lp_bound is not None and res.decomposition is not None
    assert res.lp_bound > 1.001 * res.objective
    assert res.objective <= res.bound <= res.decomposition.bound + 1e-6
    assert res.decomposition.bound <= res.decomposition.lp_bound
    assert res.decomposition.regions > 1 and res.decomposition.unfinished == 0
    assert res.status == "optimal" and res.gap <= 1e-3


def clustered(seed: int) -> CoverageProblem:
    rng = np.random.default_rng(seed)
    pts, sites = rng.normal(0, 3, (1500, 2)), rng.normal(0, 3, (150, 2))
    d = np.hypot(pts[:, None, 0] - sites[None, :, 0], pts[:, None, 1] - sites[None, :, 1])
    return CoverageProblem(sp.csr_array(d < 1.0), rng.integers(1, 9, 1500), 10)


def test_a_coarse_pass_lowers_the_bound_where_small_regions_leave_a_gap() -> None:
    # regions of about 8 sites leave the bound 0.5 % above the optimum; once they are
    # done, the coarse pass over whole components brings it down to the optimum, the
    # siting of the local search is within the gap tolerance of it (the search's rounds
    # depend on the machine: it ends at the optimum, or 2 below), and the MIP is not
    # needed
    prob = clustered(0)
    res = optimize(
        prob, time_limit_s=20, region_columns=8, coarse_columns=1000, split_columns=None
    )
    first, coarse = res.decomposition, res.coarse
    assert first is not None and coarse is not None
    assert coarse.regions < first.regions and coarse.unfinished == 0
    assert first.bound > res.objective + 10.0
    exact = HIGHS.solve(mclp_model(identity(prob)), time_limit_s=20)
    assert exact.objective is not None
    assert coarse.bound == pytest.approx(exact.objective) == pytest.approx(res.bound)
    assert res.objective <= res.bound and res.gap <= 1e-3
    assert res.status == "optimal" and res.mip_seconds == 0.0
    # without the coarse pass the same run needs the MIP to close the gap
    plain = optimize(
        prob, time_limit_s=20, region_columns=8, coarse_columns=None, split_columns=None
    )
    assert plain.coarse is None and plain.mip_seconds > 0.0
    assert res.objective <= plain.objective <= exact.objective + 1e-6


@pytest.mark.parametrize("seed", [1, 2])
def test_fixing_shrinks_the_mip_and_keeps_the_optimum(seed: int) -> None:
    prob = clustered(seed)
    res = optimize(prob, solver=HIGHS, time_limit_s=20, decomposition_share=0)
    assert res.fixed_out > 0  # the LP gap is below one post's worth: sites leave
    exact = HIGHS.solve(mclp_model(identity(prob)), time_limit_s=20)
    assert exact.objective is not None
    assert res.objective == pytest.approx(exact.objective)
    assert res.status == "optimal" and res.objective <= res.bound <= res.lp_bound + 1e-6


def test_a_solver_that_cannot_relax_goes_straight_to_the_mip() -> None:
    class MipOnly:
        def __init__(self) -> None:
            self.calls = 0

        def solve(self, model, *, start=None, time_limit_s=None):  # type: ignore[no-untyped-def]
            self.calls += 1
            return HIGHS.solve(model, start=start, time_limit_s=time_limit_s)

    solver = MipOnly()
    res = optimize(clustered(3), solver=solver, time_limit_s=20)
    assert solver.calls == 1
    assert res.lp_bound is None and res.decomposition is None and res.fixed_out == 0
    assert res.status == "optimal"


# --------------------------------------------------------------------------------------
# regions solved by several threads


class RecordingRegions:
    """A regional solver (HiGHS) that records the thread of each call and can fail."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.threads: list[str] = []
        self.fail_on = fail_on

    def __call__(self, cover, weights, prices, fixed, start, time_limit_s) -> RegionalSolve:  # type: ignore[no-untyped-def]
        name = threading.current_thread().name
        self.threads.append(name)
        if self.fail_on is not None and name.startswith(self.fail_on):
            raise RuntimeError("the region's solver failed")
        time.sleep(0.01)  # long enough for the other thread to take a region meanwhile
        return highs_region(cover, weights, prices, fixed, start, time_limit_s)


@pytest.mark.parametrize("seed", [0, 3])
def test_two_workers_give_the_bound_of_one(seed: int) -> None:
    # every region solved exactly has the same value whichever thread solves it, and
    # whatever incumbent it was judged against
    prob = clustered(seed)
    red = reduce(prob)
    r = lp_duals(red)
    inc = greedy(red)
    one, two = RecordingRegions(), RecordingRegions()
    a = decomposition_bound(
        red, r[:-1], float(r[-1]), inc, one, deadline=math.inf, target_columns=15
    )
    b = decomposition_bound(
        red, r[:-1], float(r[-1]), inc, two, deadline=math.inf, target_columns=15, workers=2
    )
    assert a.unfinished == b.unfinished == 0 and a.solved >= 2
    assert b.bound == pytest.approx(a.bound, rel=1e-9)
    assert (b.solved, b.exact_at_start) == (a.solved, a.exact_at_start)
    assert len(set(two.threads)) == 2 and len(set(one.threads)) == 1


def test_a_region_judged_against_a_better_siting_later_keeps_the_bound_valid() -> None:
    # the incumbent changes while the regions are worked on (as the local search
    # improves it): each region uses the siting of the moment, and the bound holds
    prob = clustered(4)
    red = reduce(prob)
    r = lp_duals(red)
    dec = RegionalBound(red, r[:-1], float(r[-1]), target_columns=15)
    sitings = [greedy(red), interchange(red, greedy(red))[0]]
    calls = iter(range(10**6))

    def incumbent() -> np.ndarray:
        return sitings[min(next(calls) // 3, 1)]

    dec.work(incumbent, highs_region, math.inf)
    res = dec.result(sitings[1])
    assert res.unfinished == 0 and res.solved >= 2
    exact = HIGHS.solve(mclp_model(identity(prob)), time_limit_s=60)
    assert exact.status == "optimal" and exact.objective is not None
    assert exact.objective - 1e-6 <= res.bound <= res.lp_bound


def test_a_failure_in_a_helper_thread_reaches_the_caller() -> None:
    prob = clustered(0)
    solver = HelperHighs(fail)
    with pytest.raises(RuntimeError, match="region's solver failed"):
        optimize(prob, solver=solver, time_limit_s=20, region_columns=15)


class HelperHighs(HighsSolver):
    """HiGHS that runs ``on_helper()`` before each solve on the regions' helper thread."""

    def __init__(self, on_helper: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_helper = on_helper

    def for_regions(self) -> HighsSolver:
        return self

    def solve(self, model, *, start=None, time_limit_s=None, mip_rel_gap=None, stop=None):  # type: ignore[no-untyped-def, override]
        if threading.current_thread().name == "siting-regions":
            self.on_helper()
        return super().solve(
            model, start=start, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, stop=stop
        )


def fail() -> None:
    raise RuntimeError("the region's solver failed")


def test_cancelling_the_regions_interrupts_a_solve_under_way(disc_cover: DiscCover) -> None:
    # a region big enough to take HiGHS many seconds, cancelled after a quarter second
    rng = np.random.default_rng(5)
    pts, sites = rng.random((6000, 2)) * 30, rng.random((700, 2)) * 30
    cover = disc_cover(pts, sites, 2.0)
    prob = CoverageProblem(cover, rng.integers(1, 9, pts.shape[0]).astype(float), 40)
    red = reduce(prob)
    r = lp_duals(red)
    dec = RegionalBound(red, r[:-1], float(r[-1]), regions=np.zeros(red.n_rows, np.int64))
    solve = _region_solver(HighsSolver(), stop=dec.cancelled.is_set)
    worker = threading.Thread(target=dec.work, args=(lambda: greedy(red), solve, math.inf))
    t0 = time.perf_counter()
    worker.start()
    time.sleep(0.25)
    dec.cancelled.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert time.perf_counter() - t0 < 3  # uncancelled, HiGHS takes about 5 s here
    res = dec.result(greedy(red))
    assert res.unfinished == 1 and res.bound <= res.lp_bound


def test_the_calling_thread_searches_while_the_helper_solves_a_region() -> None:
    prob = clustered(0)
    res = optimize(
        prob, solver=HelperHighs(lambda: time.sleep(2.0), mip_rel_gap=0.0), time_limit_s=20,
        search_share=0.02, region_columns=15,
    )  # fmt: skip
    assert res.decomposition is not None and res.decomposition.solved >= 2
    # the search's own share is 0.4 s; slices of a second follow while the helper sleeps
    assert res.search_seconds > 1.0 + 0.4
    assert res.objective <= res.bound


def chain(n: int) -> sp.csr_array:
    """A path: site j reaches rows j and j + 1."""
    cover = np.zeros((n + 1, n), dtype=bool)
    cover[np.arange(n), np.arange(n)] = True
    cover[np.arange(n) + 1, np.arange(n)] = True
    return sp.csr_array(cover)


def test_bisection_halves_a_region_into_balanced_compact_parts() -> None:
    halves = _bisect(chain(60), 10)
    assert halves is not None
    first, second = halves
    # every row in exactly one half, each half a run of consecutive rows, balanced
    assert np.array_equal(np.sort(np.concatenate(halves)), np.arange(61))
    for half in halves:
        assert np.all(np.diff(half) == 1)
    assert abs(first.size - second.size) <= 2
    # deterministic, and a region within the limit is not cut
    again = _bisect(chain(60), 10)
    assert again is not None and np.array_equal(again[0], first)
    assert _bisect(chain(60), 60) is None
    # a region in pieces is cut between its pieces
    blocks = sp.csr_array(sp.block_diag([chain(5).toarray(), chain(8).toarray()]))
    parts = _bisect(blocks, 4)
    assert parts is not None
    assert sorted(map(set, (p.tolist() for p in parts)), key=len) == [
        set(range(6)), set(range(6, 15)),
    ]


def ring(n: int) -> sp.csr_array:
    """A cycle: site j reaches rows j and j + 1 (mod n)."""
    cover = np.zeros((n, n), dtype=bool)
    cover[np.arange(n), np.arange(n)] = True
    cover[(np.arange(n) + 1) % n, np.arange(n)] = True
    return sp.csr_array(cover)


@pytest.mark.parametrize("light", [(3, 23), (11, 31), (17, 37)])
def test_weighted_bisection_cuts_a_ring_where_the_rows_weigh_least(
    light: tuple[int, int],
) -> None:
    # a ring must be cut twice; by row counts every opposite pair of rows is as good
    # (ARPACK's start picks rows 0 and 20); weighted, it is cut at the two light rows,
    # each half a run of the ring between them
    weight = np.ones(40)
    weight[list(light)] = 1e-3
    halves = _bisect(ring(40), 30, weight)
    assert halves is not None
    a, b = light
    inside = set(range(a, b))  # rows a … b−1 hold sites a … b−1 whole
    got = sorted((set(h.tolist()) for h in halves), key=lambda h: min(h))
    # the light rows themselves may go either way: each is shared by one site per half
    for half in got:
        core = half - {a, b}
        assert core <= inside or not (core & inside)
    assert {len(h) for h in got} <= {19, 20, 21}


def test_parts_bound_a_region_the_solver_cannot_finish(disc_cover: DiscCover) -> None:
    # one region of 150 sites that the solver "cannot finish" (it gives up on anything
    # larger than 50 sites): without parts the region stays at its LP share; with parts
    # of at most 40 sites, solved exactly, the bound drops and still holds
    rng = np.random.default_rng(1)
    pts, sites = rng.random((1500, 2)) * 10, rng.random((150, 2)) * 10
    cover = disc_cover(pts, sites, 1.6)
    prob = CoverageProblem(cover, rng.integers(1, 9, pts.shape[0]), 10)
    red = reduce(prob)
    r = lp_duals(red)
    calls: list[int] = []

    def small_only(cover, weights, prices, fixed, start, limit):  # type: ignore[no-untyped-def]
        calls.append(cover.shape[1])
        if cover.shape[1] > 50:
            return RegionalSolve(math.inf, False)
        return highs_region(cover, weights, prices, fixed, start, limit)

    one = np.zeros(red.n_rows, dtype=np.int64)
    inc = interchange(red, greedy(red))[0]
    whole = decomposition_bound(
        red, r[:-1], float(r[-1]), inc, small_only, deadline=math.inf, regions=one
    )
    assert whole.unfinished == 1 and whole.bound == pytest.approx(whole.lp_bound)
    calls.clear()
    split = decomposition_bound(
        red, r[:-1], float(r[-1]), inc, small_only, deadline=math.inf, regions=one,
        split_above=40,
    )  # fmt: skip
    assert split.parts >= 4 and split.parts_solved >= 2
    assert split.unfinished == 1 and split.unfinished_by_parts == 1
    # the parts came first, smallest first; the halves (over 50 sites) ended unfinished,
    # so the whole region, which could only take longer, was not tried
    assert min(calls) <= 40 and max(calls) > 50
    assert split.left_to_parts >= 1 and split.solved == 0
    exact = HIGHS.solve(mclp_model(identity(prob)), time_limit_s=60)
    assert exact.status == "optimal" and exact.objective is not None
    assert exact.objective - 1e-6 <= split.bound < whole.bound - 1.0


def test_a_region_exact_at_the_incumbent_is_not_solved_through_its_parts() -> None:
    # disjoint stars: the LP is integral and greedy optimal, so every region meets its
    # LP share at the incumbent and nothing is solved, parts included
    star = np.ones((6, 3), dtype=bool)
    cover = sp.csr_array(sp.block_diag([star] * 4).astype(bool))
    prob = CoverageProblem(cover, np.arange(24, dtype=np.float64) + 1, 2)
    red = identity(prob)
    r = lp_duals(red)
    calls: list[int] = []

    def counting(cover, weights, prices, fixed, start, limit):  # type: ignore[no-untyped-def]
        calls.append(cover.shape[1])
        return highs_region(cover, weights, prices, fixed, start, limit)

    dec = decomposition_bound(
        red, r[:-1], float(r[-1]), greedy(red), counting, deadline=math.inf,
        regions=np.zeros(red.n_rows, dtype=np.int64), split_above=3,
    )  # fmt: skip
    assert dec.parts >= 2 and calls == []
    assert dec.exact_at_start == 1
    assert dec.bound == pytest.approx(red.value(greedy(red)))


def test_the_search_outlasts_its_patience_while_a_helper_solves_regions() -> None:
    # on this small model the search's patience is half a second; with a helper busy on
    # the regions (3 s a region) it goes on for its whole share (6 s of 20) in slices
    prob = clustered(0)
    res = optimize(
        prob, solver=HelperHighs(lambda: time.sleep(3.0), mip_rel_gap=0.0), time_limit_s=20,
        search_share=0.3, region_columns=15,
    )  # fmt: skip
    assert res.search_end == "patience"
    assert res.search_seconds > 4.0
    assert res.objective <= res.bound


def test_a_region_is_tried_whole_only_if_its_parts_leave_it_the_time() -> None:
    # parts that finish quickly leave the region the time to be solved whole; parts
    # that took longer together than the time left do not
    prob = clustered(3)
    red = reduce(prob)
    r = lp_duals(red)
    one = np.zeros(red.n_rows, dtype=np.int64)
    inc = greedy(red)

    def run(pause: float, deadline_s: float) -> tuple[list[int], DecompositionBound]:
        calls: list[int] = []

        def slow_parts(cover, weights, prices, fixed, start, limit):  # type: ignore[no-untyped-def]
            calls.append(cover.shape[1])
            if cover.shape[1] > 40:  # halves and the region itself
                time.sleep(pause)
            return highs_region(cover, weights, prices, fixed, start, limit)

        dec = decomposition_bound(
            red, r[:-1], float(r[-1]), inc, slow_parts,
            deadline=time.perf_counter() + deadline_s, regions=one, split_above=40,
        )  # fmt: skip
        return calls, dec

    t0 = time.perf_counter()
    quick, dec = run(0.0, 60.0)
    elapsed = time.perf_counter() - t0
    assert dec.left_to_parts == 0 and dec.solved == 1 and dec.parts >= 2
    halves = sum(size > 40 for size in quick) - 1
    assert halves >= 2
    # the halves slowed down so that together they take a second each plus the whole
    # quick run: at least 2 s more than the time they leave, about a second plus that run
    pause = 1.0 + elapsed / halves
    _, dec = run(pause, halves * pause + elapsed + 1.0)
    assert dec.left_to_parts >= 1 and dec.solved == 0
    assert dec.bound <= dec.lp_bound
