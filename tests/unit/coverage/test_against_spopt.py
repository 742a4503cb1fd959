"""The same optimum as PySAL spopt's MCLP, an independent implementation (when installed)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from anwang.coverage import CoverageProblem, HighsSolver, optimize


# spopt 0.7 builds its model with PuLP APIs that PuLP 3 deprecates: their warning, not ours
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pulp")
@pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_optimum_agrees_with_spopt(need: Callable[[str], ModuleType], seed: int) -> None:
    locate = need("spopt.locate")
    pulp = need("pulp")
    rng = np.random.default_rng(seed)
    demand, sites = rng.random((150, 2)) * 8, rng.random((25, 2)) * 8
    weights = rng.integers(1, 20, 150).astype(np.float64)
    cost = cdist(demand, sites)
    fixed = np.array([3]) if seed == 3 else np.zeros(0, dtype=np.int64)
    theirs = locate.MCLP.from_cost_matrix(
        cost,
        weights,
        service_radius=1.5,
        p_facilities=5,
        predefined_facilities_arr=np.isin(np.arange(25), fixed).astype(int) if fixed.size else None,
    ).solve(pulp.HiGHS(msg=False, gapRel=0.0))
    their_sites = [j for j, v in enumerate(theirs.fac_vars) if v.value() > 0.5]

    problem = CoverageProblem.from_times(cost, 1.5, weights, 5, fixed=fixed)
    ours = optimize(problem, solver=HighsSolver(mip_rel_gap=0.0))
    assert ours.objective == pytest.approx(pulp.value(theirs.problem.objective))
    assert ours.objective == problem.objective(their_sites)
