"""Response circles and post siting: coverage shares, comparisons and the maximal covering
location problem, solved exactly with an injected MIP solver.

* :mod:`anwang.coverage.model` — :class:`CoverageProblem` (a boolean demand × candidate
  cover matrix, weights, ``p``, fixed sites, optional backup coverage), coverage shares
  per threshold and district (:func:`analyze`), and before/after comparisons with the
  moves of posts (:func:`compare`);
* :mod:`anwang.coverage.reduce` — exact model reduction (uncoverable and settled demand,
  identical demand rows merged, dominated candidates dropped), the model left after
  variable fixing (:func:`restrict`), and the way back;
* :mod:`anwang.coverage.heuristics` — greedy with exact incremental gains, then
  Teitz–Bart interchange, with a submodularity bound;
* :mod:`anwang.coverage.bound` — the LP dual bound of any multipliers, reduced-cost
  fixing, and the Lagrangian decomposition bound by region (Guignard & Kim 1987);
* :mod:`anwang.coverage.solve` — the MCLP formulation (Church & ReVelle 1974; backup
  coverage after Hogan & ReVelle 1986), the :class:`Solver` port (and
  :class:`RelaxingSolver`, which also solves LP relaxations) with :class:`HighsSolver`,
  and :func:`optimize`.

The package is pure numpy/scipy (and ``highspy`` when the HiGHS solver is used): no
database, nothing of the platform but :mod:`anwang.core.errors`. Reachability comes in as
a matrix; computing it on the road network is :mod:`anwang.roads`' job.
"""

from anwang.coverage.bound import (
    DecompositionBound,
    decomposition_bound,
    dual_bound,
    fix_by_reduced_cost,
    partition,
)
from anwang.coverage.heuristics import (
    HeuristicSolution,
    greedy,
    greedy_interchange,
    interchange,
)
from anwang.coverage.model import (
    CoverageProblem,
    DistrictCoverage,
    Move,
    SitingComparison,
    ThresholdCoverage,
    analyze,
    compare,
    cover_within,
    coverage_share,
)
from anwang.coverage.reduce import Reduction, ReductionStats, identity, reduce, restrict
from anwang.coverage.solve import (
    HighsSolver,
    LpResult,
    MipModel,
    MipResult,
    MipStatus,
    RelaxingSolver,
    SitingResult,
    Solver,
    SolveStatus,
    mclp_model,
    optimize,
)

__all__ = [
    "CoverageProblem",
    "DecompositionBound",
    "DistrictCoverage",
    "HeuristicSolution",
    "HighsSolver",
    "LpResult",
    "MipModel",
    "MipResult",
    "MipStatus",
    "Move",
    "Reduction",
    "ReductionStats",
    "RelaxingSolver",
    "SitingComparison",
    "SitingResult",
    "SolveStatus",
    "Solver",
    "ThresholdCoverage",
    "analyze",
    "compare",
    "cover_within",
    "coverage_share",
    "decomposition_bound",
    "dual_bound",
    "fix_by_reduced_cost",
    "greedy",
    "greedy_interchange",
    "identity",
    "interchange",
    "mclp_model",
    "optimize",
    "partition",
    "reduce",
    "restrict",
]
