"""Greedy and interchange: exact incremental gains, local optimality, fixed sites."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import scipy.sparse as sp

from anwang.coverage import CoverageProblem, identity, reduce
from anwang.coverage.heuristics import (
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
    a, _ = perturb_and_search(red, start, deadline=float("inf"), max_rounds=40, seed=7)
    b, _ = perturb_and_search(red, start, deadline=float("inf"), max_rounds=40, seed=7)
    assert np.array_equal(a, b)
    assert red.value(a) >= red.value(start)
    heur = greedy_interchange(red, max_rounds=40, seed=7)
    assert heur.objective == prob.objective(heur.sites) >= heur.greedy_objective
    assert heur.sites.size == prob.p
    assert heur.bound >= heur.objective
