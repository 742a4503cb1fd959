"""Greedy and interchange: exact incremental gains, local optimality, fixed sites."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import scipy.sparse as sp

from anwang.coverage import CoverageProblem, identity, reduce
from anwang.coverage.heuristics import (
    SearchEnd,
    _State,
    greedy,
    greedy_interchange,
    interchange,
    perturb_and_search,
)
from anwang.coverage.model import marginal_gains


def instance(seed: int, n: int = 400, m: int = 60, p: int = 8, **kw: object) -> CoverageProblem:
    rng = np.random.default_rng(seed)
    pts, sites = rng.random((n, 2)) * 10, rng.random((m, 2)) * 10
    d = np.hypot(pts[:, None, 0] - sites[None, :, 0], pts[:, None, 1] - sites[None, :, 1])
    return CoverageProblem(sp.csr_array(d < 1.5), rng.integers(1, 9, n), p, **kw)  # type: ignore[arg-type]


def test_incremental_gains_stay_exact() -> None:
    prob = instance(1, backup_weight=0.5)
    red = identity(prob)
    state = _State(red)
    rng = np.random.default_rng(0)
    for j in rng.choice(red.n_cols, size=12, replace=False):
        state.add(int(j))
    for j in np.flatnonzero(state.chosen)[:4]:
        state.remove(int(j))
    chosen = np.flatnonzero(state.chosen)
    counts = red.counts(chosen)
    assert np.array_equal(state.counts, counts)
    expected = marginal_gains(red.cover, red.weights, counts, red.backup_weight)
    assert np.allclose(state.gains, expected)


def test_greedy_picks_the_largest_gain_first_and_keeps_fixed_sites() -> None:
    prob = instance(2, fixed=[5, 7])
    red = identity(prob)
    cols = greedy(red)
    assert cols.size == prob.p
    assert {5, 7} <= set(cols.tolist())
    # one more step from fixed {5, 7}: the first free pick is the best single addition
    unfixed = identity(instance(2))
    first = greedy(dataclasses.replace(unfixed, p=1))
    gains = marginal_gains(unfixed.cover, unfixed.weights, unfixed.offset, 0.0)
    assert gains[first[0]] == gains.max()


def test_interchange_ends_in_a_local_optimum() -> None:
    for backup in (0.0, 0.5):
        prob = instance(3, m=25, p=5, backup_weight=backup, fixed=[0])
        red = identity(prob)
        cols, swaps = interchange(red, greedy(red))
        assert 0 in cols
        value = red.value(cols)
        # no single swap of a non-fixed site improves the siting
        for out, add in itertools.product(set(cols.tolist()) - {0}, range(red.n_cols)):
            if add in cols:
                continue
            trial = np.asarray(sorted(set(cols.tolist()) - {out} | {add}))
            assert red.value(trial) <= value + 1e-9


def test_search_improves_or_keeps_and_is_reproducible() -> None:
    prob = instance(4, n=800, m=120, p=10)
    red = reduce(prob)
    start, _ = interchange(red, greedy(red))
    a = perturb_and_search(red, start, deadline=float("inf"), max_rounds=40, seed=7).cols
    b = perturb_and_search(red, start, deadline=float("inf"), max_rounds=40, seed=7).cols
    assert np.array_equal(a, b)
    assert red.value(a) >= red.value(start)
    heur = greedy_interchange(red, max_rounds=40, seed=7)
    assert heur.objective == prob.objective(heur.sites) >= heur.greedy_objective
    assert heur.sites.size == prob.p
    assert heur.bound >= heur.objective


def test_search_stops_at_its_target_and_its_patience() -> None:
    prob = instance(4, n=800, m=120, p=10)
    red = reduce(prob)
    start, _ = interchange(red, greedy(red))
    inf = float("inf")
    full = perturb_and_search(red, start, deadline=inf, max_rounds=40, seed=7)
    assert full.end is SearchEnd.ROUNDS and full.rounds == 40 and full.improved > 0
    # a start already worth the target: no round at all
    there = perturb_and_search(red, start, deadline=inf, target=red.value(start), seed=7)
    assert there.end is SearchEnd.TARGET and there.rounds == 0
    assert np.array_equal(there.cols, start) and there.improved == 0
    # a target just above the start: the first better siting ends the search
    first = perturb_and_search(
        red, start, deadline=inf, max_rounds=40, target=red.value(start) + 0.5, seed=7
    )
    assert first.end is SearchEnd.TARGET and first.improved == 1
    assert 0 < first.rounds <= full.rounds
    # patience, in rounds or in seconds, without a better siting
    rounds = perturb_and_search(red, full.cols, deadline=inf, patience=3, seed=7)
    assert rounds.end is SearchEnd.PATIENCE and rounds.rounds >= 3
    seconds = perturb_and_search(red, start, deadline=inf, patience_s=0.0, seed=7)
    assert seconds.end is SearchEnd.PATIENCE and seconds.rounds == 0


def test_interchange_limited_to_candidates_brings_in_only_those() -> None:
    for backup in (0.0, 0.5):
        prob = instance(5, m=30, p=5, backup_weight=backup, fixed=[1])
        red = identity(prob)
        start = greedy(red)
        everything, _ = interchange(red, start, candidates=np.arange(red.n_cols))
        assert np.array_equal(everything, interchange(red, start)[0])
        outside = np.setdiff1d(np.arange(red.n_cols), start)
        allowed = np.union1d(start, outside[::3])
        cols, _ = interchange(red, start, candidates=allowed)
        assert 1 in cols and cols.size == start.size
        assert set(cols.tolist()) <= set(allowed.tolist())
        value = red.value(cols)
        assert value >= red.value(start)
        # a local optimum among the allowed swaps
        for out, add in itertools.product(set(cols.tolist()) - {1}, allowed.tolist()):
            if add in cols:
                continue
            trial = np.asarray(sorted(set(cols.tolist()) - {out} | {add}))
            assert red.value(trial) <= value + 1e-9


def test_search_with_local_swaps_keeps_a_feasible_siting() -> None:
    prob = instance(6, n=800, m=120, p=10, fixed=[3])
    red = identity(prob)
    start, _ = interchange(red, greedy(red))
    for local in (True, False):
        cols = perturb_and_search(
            red, start, deadline=float("inf"), max_rounds=30, seed=1, local_swaps=local
        ).cols
        assert cols.size == prob.p and 3 in cols
        assert red.value(cols) >= red.value(start)
