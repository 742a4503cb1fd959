"""optimize() with HiGHS and with solver doubles; the model; HighsSolver's options."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from anwang.core.errors import ValidationFailed
from anwang.coverage import (
    CoverageProblem,
    HighsSolver,
    MipModel,
    MipResult,
    MipStatus,
    SolveStatus,
    heuristics,
    identity,
    mclp_model,
    optimize,
    reduce,
)
from anwang.coverage.heuristics import SearchEnd
from anwang.coverage.model import IntArray
from anwang.coverage.solve import FloatArray, LpResult, regional_model

DiscCover = Callable[[np.ndarray, np.ndarray, float], sp.csr_array]


def instance(seed: int, n: int = 600, m: int = 80, p: int = 8, **kw: object) -> CoverageProblem:
    rng = np.random.default_rng(seed)
    pts, sites = rng.random((n, 2)) * 10, rng.random((m, 2)) * 10
    d = np.hypot(pts[:, None, 0] - sites[None, :, 0], pts[:, None, 1] - sites[None, :, 1])
    return CoverageProblem(sp.csr_array(d < 1.2), rng.integers(1, 9, n), p, **kw)  # type: ignore[arg-type]


class NoSolution:
    """A solver that gives up at once, without a solution or a bound."""

    def solve(
        self, model: MipModel, *, start: FloatArray | None = None, time_limit_s: float | None = None
    ) -> MipResult:
        return MipResult(MipStatus.STOPPED, None, None, math.inf, 0.0)


class WorseIncumbent:
    """A solver hitting its time limit with an incumbent worse than the warm start."""

    def __init__(self) -> None:
        self.start: FloatArray | None = None
        self.limit: float | None = None

    def solve(
        self, model: MipModel, *, start: FloatArray | None = None, time_limit_s: float | None = None
    ) -> MipResult:
        self.start, self.limit = start, time_limit_s
        assert start is not None
        worse = start.copy()
        worse[:] = 0.0
        worse[0] = 1.0  # one site: never better than greedy, whose first pick is the best one
        return MipResult(MipStatus.TIME_LIMIT, worse, model.offset, 1e12, 0.01)


def test_optimize_reports_a_consistent_result() -> None:
    prob = instance(1)
    res = optimize(prob, time_limit_s=20)
    assert res.status is SolveStatus.OPTIMAL
    assert res.sites.size == prob.p
    assert res.objective == prob.objective(res.sites)
    assert res.bound >= res.objective
    assert res.gap <= 1e-3
    assert res.covered_share == pytest.approx(res.covered_weight / prob.total_weight)
    assert res.reduction.rows <= prob.n_demand
    d = res.as_dict()
    assert set(d) >= {"objective", "bound", "gap", "status", "seconds", "sites"}
    assert d["status"] == "optimal" and d["sites"] == res.sites.tolist()


class CountingHighs:
    """HiGHS, counting the LP relaxations and MIPs it is asked for."""

    mip_rel_gap = 1e-3

    def __init__(self) -> None:
        self.highs = HighsSolver(mip_rel_gap=self.mip_rel_gap)
        self.relaxed = 0
        self.solved = 0

    def relax(self, model: MipModel, *, time_limit_s: float | None = None) -> LpResult | None:
        self.relaxed += 1
        return self.highs.relax(model, time_limit_s=time_limit_s)

    def solve(
        self,
        model: MipModel,
        *,
        start: FloatArray | None = None,
        time_limit_s: float | None = None,
        mip_rel_gap: float | None = None,
    ) -> MipResult:
        self.solved += 1
        return self.highs.solve(
            model, start=start, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap
        )


def test_a_tight_lp_ends_the_run_before_the_local_search_spends_its_patience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # greedy + interchange is already optimal here and the LP relaxation proves it; the
    # submodularity bound (far above) does not, so the run needs the LP, which comes
    # before the local search: no round of it is run, rather than its patience of
    # 2 × columns rounds without a better siting
    prob = instance(1)
    red = reduce(prob)
    interchanges = 0
    interchange = heuristics.interchange

    def counted(*args: Any, **kwargs: Any) -> tuple[IntArray, int]:
        nonlocal interchanges
        interchanges += 1
        return interchange(*args, **kwargs)

    monkeypatch.setattr(heuristics, "interchange", counted)
    solver = CountingHighs()
    res = optimize(prob, solver=solver, time_limit_s=60)
    assert interchanges == 1  # greedy + interchange's own; every round runs one more
    assert res.status is SolveStatus.OPTIMAL
    assert res.lp_before_search and res.lp_bound is not None
    assert res.lp_bound == pytest.approx(res.objective, rel=1e-9)
    assert res.search_end is SearchEnd.TARGET
    assert res.search_rounds == 0 < 2 * red.n_cols
    assert solver.relaxed == 1 and solver.solved == 0
    assert res.source == "heuristic" and res.objective == res.heuristic_objective
    assert res.gap <= 1e-9


def test_a_loose_lp_leaves_the_local_search_to_run_and_the_mip_to_close() -> None:
    # here the LP bound is the optimum, which the local search does not find: it runs
    # after the LP, gives up without reaching the bound, and the MIP closes the gap
    prob = instance(1, n=1500, m=200, p=12)
    res = optimize(prob, time_limit_s=60)
    assert res.lp_before_search and res.lp_bound is not None
    assert res.search_rounds > 0 and res.search_end is SearchEnd.PATIENCE
    assert res.heuristic_objective < res.lp_bound
    assert res.status is SolveStatus.OPTIMAL and res.source == "mip"
    assert res.heuristic_seconds >= res.search_seconds > 0


def test_the_heuristic_siting_stands_when_the_solver_has_nothing() -> None:
    prob = instance(2)
    res = optimize(prob, solver=NoSolution())
    assert res.status is SolveStatus.STOPPED
    assert res.source == "heuristic"
    assert res.objective == res.heuristic_objective
    assert math.isfinite(res.bound) and res.bound >= res.objective  # the submodular bound


def test_a_worse_mip_incumbent_does_not_replace_the_heuristic() -> None:
    prob = instance(3)
    solver = WorseIncumbent()
    res = optimize(prob, solver=solver, time_limit_s=30)
    assert res.status is SolveStatus.TIME_LIMIT
    assert res.source == "heuristic"
    assert res.objective == res.heuristic_objective
    assert solver.limit is not None and 0 < solver.limit <= 30
    # the solver's bound (1e12) is looser than the heuristic's own: the tighter one is kept
    assert res.bound < 1e12


def test_time_limit_is_respected(disc_cover: DiscCover) -> None:
    # one dense cluster: hard enough that HiGHS is still at its root node when time is up
    rng = np.random.default_rng(4)
    pts, sites = rng.normal(0, 4, size=(8000, 2)), rng.normal(0, 4, size=(800, 2))
    cover = disc_cover(pts, sites, 1.2)
    prob = CoverageProblem(cover, rng.integers(1, 9, 8000), 40)
    t0 = time.perf_counter()
    res = optimize(prob, time_limit_s=1.5)
    assert time.perf_counter() - t0 < 4.0
    assert res.status is SolveStatus.TIME_LIMIT
    assert res.sites.size == 40
    assert math.isfinite(res.bound) and res.bound >= res.objective
    assert res.gap == (res.bound - res.objective) / res.objective


class SlowLp(CountingHighs):
    """HiGHS whose LP relaxation takes ``delay`` seconds longer, as on a larger model."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def relax(self, model: MipModel, *, time_limit_s: float | None = None) -> LpResult | None:
        t0 = time.perf_counter()
        time.sleep(self.delay)
        lp = super().relax(model, time_limit_s=time_limit_s)
        return None if lp is None else dataclasses.replace(lp, seconds=time.perf_counter() - t0)


@pytest.mark.parametrize("delay", [0.0, 1.5])
def test_the_mip_is_not_started_without_the_time_for_its_root_lp(delay: float) -> None:
    # the loose-LP instance needs the MIP; with a 4 s limit it gets the time the search
    # leaves, about 2 s: enough after a quick LP, less than an LP of 1.5 s, and then
    # HiGHS, which would not finish its root, is not started to overrun the limit
    prob = instance(1, n=1500, m=200, p=12)
    solver = SlowLp(delay)
    t0 = time.perf_counter()
    res = optimize(prob, solver=solver, time_limit_s=4.0, decomposition_share=0.0)
    took = time.perf_counter() - t0
    assert solver.relaxed == 1 and res.lp_seconds >= delay
    if delay:
        assert solver.solved == 0 and res.mip_seconds == 0.0
        assert res.status is SolveStatus.TIME_LIMIT and res.source == "heuristic"
        assert took < 4.0
    else:
        assert solver.solved == 1 and res.mip_seconds > 0
    assert res.sites.size == 12 and res.objective <= res.bound


def test_the_model_is_built_whole_and_sized_as_formulated() -> None:
    prob = instance(5, backup_weight=0.5, fixed=[3])
    for red in (identity(prob), reduce(prob)):
        model = mclp_model(red)
        n, m = red.n_rows, red.n_cols
        assert model.matrix.shape == (n + 1, m + 2 * n)
        assert model.matrix.nnz == red.cover.nnz + 2 * n + m
        assert model.integer.sum() == m
        assert np.all(model.col_lower[red.fixed_cols] == 1)
    plain = mclp_model(reduce(instance(5)))
    assert plain.matrix.shape[1] == plain.matrix.shape[0] - 1 + plain.integer.sum()


def test_fixed_sites_and_backup_through_highs() -> None:
    prob = instance(6, fixed=[0, 1], backup_weight=0.3, p=6)
    res = optimize(prob, solver=HighsSolver(mip_rel_gap=0.0), time_limit_s=20)
    assert {0, 1} <= set(res.sites.tolist())
    assert res.status is SolveStatus.OPTIMAL
    unreduced = optimize(prob, solver=HighsSolver(mip_rel_gap=0.0), reduce=False)
    assert unreduced.objective == res.objective


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"time_limit_s": 0}, "time_limit_s"),
        ({"time_limit_s": math.inf}, "time_limit_s"),
        ({"mip_rel_gap": -1.0}, "mip_rel_gap"),
        ({"threads": 0}, "threads"),
        ({"lp_solver": "barrier"}, "lp_solver"),
    ],
)
def test_highs_solver_rejects_bad_options(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        HighsSolver(**kwargs)  # type: ignore[arg-type]
    assert exc.value.errors[0].field == field


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_limit_s": 0},
        {"time_limit_s": math.nan},
        {"search_share": 1.0},
        {"decomposition_share": 1.5},
        {"region_columns": 0},
        {"split_columns": 0},
        {"split_columns": 1.5},
        {"split_columns": True},
        {"coarse_columns": 0},
        {"coarse_columns": 2.5},
        {"coarse_columns": False},
    ],
)
def test_optimize_rejects_bad_options(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        optimize(instance(7), **kwargs)  # type: ignore[arg-type]
    assert exc.value.errors[0].field == next(iter(kwargs))


# --------------------------------------------------------------------------------------
# HiGHS and warm starts


def regional_optimum(cover: np.ndarray, weights: np.ndarray, prices: np.ndarray) -> float:
    """max Σ w_i [row i reached] − Σ price_j x_j over every x ∈ {0, 1}^m, by enumeration."""
    m = cover.shape[1]
    xs = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
    reached = (xs @ cover.T.astype(np.int64)) > 0
    return float(np.max(reached @ weights - xs @ prices))


def test_a_start_that_presolve_carries_over_wrongly_does_not_end_the_search() -> None:
    # HiGHS 1.16's presolve values this all-zero start (worth 0) at 178.2 in its reduced
    # model, stops at once and reports the start as optimal with objective 178.2
    cover = np.array(
        [[1, 0, 1, 1, 0], [1, 0, 1, 0, 0], [1, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]
    )
    weights = np.array([37.0, 37.0, 77.0, 10.0, 81.0])
    prices = np.array([423.4, 1.0, 512.2, 486.5, 16.8])
    model = regional_model(sp.csr_array(cover), weights, prices, np.zeros(5, dtype=np.bool_))
    best = regional_optimum(cover, weights, prices)
    res = HighsSolver(mip_rel_gap=0.0).solve(model, start=np.zeros(10))
    assert res.status is MipStatus.OPTIMAL
    assert res.values is not None and res.objective is not None
    assert model.value(res.values) == pytest.approx(best) == pytest.approx(res.objective)
    assert res.bound == pytest.approx(best)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 7))
def test_highs_from_any_start_returns_the_optimum_it_reports(seed: int, n: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    cover = (rng.random((n, m)) < rng.choice([0.25, 0.5, 0.75])).astype(np.int64)
    weights = rng.integers(0, 100, n).astype(np.float64)
    prices = np.round(rng.random(m) * 2 * max(weights.sum() / m, 1.0), 1)
    model = regional_model(sp.csr_array(cover), weights, prices, np.zeros(m, dtype=np.bool_))
    x = (rng.random(m) < 0.5).astype(np.float64)
    start = np.concatenate([x, np.minimum(cover @ x, 1.0)])
    best = regional_optimum(cover, weights, prices)
    res = HighsSolver(mip_rel_gap=0.0).solve(model, start=start)
    assert res.values is not None and res.objective is not None
    assert model.value(res.values) == pytest.approx(res.objective, abs=1e-6)
    assert res.objective == pytest.approx(best, abs=1e-6)
    assert res.bound >= best - 1e-6


def test_the_regions_solver_drops_sub_mips_and_strong_branching_and_keeps_the_rest() -> None:
    base = HighsSolver(time_limit_s=30, mip_rel_gap=1e-5, lp_solver="simplex", random_seed=3)
    model = mclp_model(identity(instance(1)))
    options = {
        "presolve": ("on", "off"),
        "mip_heuristic_run_rins": (True, False),
        "mip_heuristic_run_rens": (True, False),
        "mip_heuristic_run_root_reduced_cost": (True, False),
        "mip_pscost_minreliable": (8, 0),
        "mip_lp_solver": ("simplex", "simplex"),
        "random_seed": (3, 3),
        "time_limit": (27.0, 27.0),
    }
    for k, solver in enumerate((base, base.for_regions())):
        h = solver._highs(model, solver._limit(None), integer=True)
        assert h is not None
        for name, values in options.items():
            assert h.getOptionValue(name)[1] == values[k], name
    assert base.for_regions().mip_rel_gap == 1e-5
    assert base.for_regions().without_presolve().sub_mips is False


def test_the_regions_solver_finds_the_optimum_of_a_region_it_must_branch_on(
    disc_cover: DiscCover,
) -> None:
    # a region of 120 sites, priced so that many subsets compete: HiGHS's defaults close
    # it at the root; without sub-MIPs and strong branching the regions' solver branches,
    # and ends at the same optimum
    rng = np.random.default_rng(2)
    pts, sites = rng.random((900, 2)) * 10, rng.random((120, 2)) * 10
    cover = disc_cover(pts, sites, 1.8)
    weights = rng.integers(1, 9, pts.shape[0]).astype(np.float64)
    prices = np.round(0.9 * weights.sum() / 60 * (0.5 + rng.random(120)), 1)
    model = regional_model(cover, weights, prices, np.zeros(120, dtype=np.bool_))
    start = np.zeros(model.n_cols)
    default, regions = (
        solver.solve(model, start=start, mip_rel_gap=1e-9, time_limit_s=60)
        for solver in (HighsSolver(), HighsSolver().for_regions())
    )
    assert regions.nodes > 1
    for res in (default, regions):
        assert res.status is MipStatus.OPTIMAL and res.values is not None
    assert regions.bound == pytest.approx(default.bound, rel=1e-9)
    assert model.value(regions.values) == pytest.approx(default.objective, rel=1e-9)
