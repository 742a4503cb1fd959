"""Fixtures of the siting tests: the brute-force optimum of a tiny problem.

``optimum(problem)`` enumerates every siting with :func:`itertools.combinations`; the
property tests keep problems at most 10 candidates and p ≤ 4 (at most C(10, 4) = 210
sitings) and use integer weights, so objectives are exact sums compared with ``==``.
"""

from __future__ import annotations

import importlib
import itertools
import os
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from anwang.coverage import CoverageProblem


def brute_force(problem: CoverageProblem) -> float:
    """The best objective over every siting of exactly ``p`` sites that keeps the fixed ones."""
    fixed = set(problem.fixed.tolist())
    free = [j for j in range(problem.n_candidates) if j not in fixed]
    best = -np.inf
    for extra in itertools.combinations(free, problem.p - len(fixed)):
        sites = np.asarray(sorted(fixed | set(extra)), dtype=np.int64)
        best = max(best, problem.objective(sites))
    return float(best)


@pytest.fixture(scope="session")
def optimum() -> Callable[[CoverageProblem], float]:
    return brute_force


def reach_within(points: np.ndarray, sites: np.ndarray, radius: float) -> sp.csr_array:
    """The cover of points × sites in the plane: a site reaches the points within
    ``radius`` of it."""
    pairs = cKDTree(sites).query_ball_point(points, radius)
    rows = np.repeat(np.arange(points.shape[0]), [len(p) for p in pairs])
    cols = np.concatenate([np.asarray(p, dtype=np.int64) for p in pairs])
    return sp.csr_array(
        (np.ones(rows.size, dtype=bool), (rows, cols)), shape=(points.shape[0], sites.shape[0])
    )


@pytest.fixture(scope="session")
def disc_cover() -> Callable[[np.ndarray, np.ndarray, float], sp.csr_array]:
    return reach_within


def need(module: str) -> ModuleType:
    """Import a test dependency, or skip (fail under ANWANG_REQUIRE_SERVICES=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"test dependency {module!r} is not installed ({exc}); pip install -e '.[test]'"
        if os.environ.get("ANWANG_REQUIRE_SERVICES", "") not in ("", "0", "false"):
            pytest.fail(msg + " (ANWANG_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="session", name="need")
def need_fixture() -> Callable[[str], ModuleType]:
    """``need("spopt.locate")`` inside a test: the module, or a skip naming it."""
    return need
