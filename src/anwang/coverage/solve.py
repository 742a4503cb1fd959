"""Exact siting: the maximal covering MIP, an injected solver, and :func:`optimize`.

Formulation
-----------
The maximal covering location problem (MCLP; Church & ReVelle 1974, "The maximal
covering location problem", Papers of the Regional Science Association 32:101–118), with
the optional backup-coverage term of Hogan & ReVelle (1986, "Concepts and applications of
backup coverage", Management Science 32:1434–1444), written over a
:class:`~anwang.coverage.reduce.Reduction` (columns ``j``, rows ``i`` with weights
``w_i``, the set ``N_i`` of columns reaching row ``i``, offsets ``o_i`` from folded-in
fixed sites)::

    maximise    Σ_i w_i y_i  +  β Σ_i w_i u_i  +  constant
    subject to  y_i + u_i − Σ_{j ∈ N_i} x_j ≤ o_i      for every row i
                Σ_j x_j = p      (≤ p on a reduced model; see anwang.coverage.reduce)
                x_j = 1          for fixed columns
                x_j ∈ {0, 1},    0 ≤ y_i ≤ 1,   0 ≤ u_i ≤ 1

(without backup, β = 0 and there are no ``u``). ``y_i`` is "row ``i`` is reached",
``u_i`` "reached twice".

**Why y and u may be continuous.** Fix any binary ``x``; then ``c_i = o_i + Σ x_j`` is an
integer and the rest of the problem splits into one tiny LP per row: maximise
``w_i (y_i + β u_i)`` over ``y_i + u_i ≤ c_i``, ``0 ≤ y_i, u_i ≤ 1``. For ``c_i = 0`` the
only point is 0; for ``c_i ≥ 2`` the point ``y = u = 1`` is feasible and best; for
``c_i = 1`` the vertices are ``(1, 0)`` and ``(0, 1)``, and ``(1, 0)`` wins because
``w_i ≥ 0`` and ``β ≤ 1``. So every binary ``x`` has an integral best ``(y, u)``, the
MIP with continuous ``y, u`` has the same optimum as the all-binary one, and the solver
branches on the ``x`` alone. (For β > 1 the case ``c_i = 1`` would prefer ``u``, which is
one reason :class:`~anwang.coverage.model.CoverageProblem` refuses it.) Hogan & ReVelle's
``u_i ≤ y_i`` is left out for the same reason: with β ≤ 1 some optimum satisfies it.

The constraint matrix is assembled in CSC form from the cover matrix with sparse block
operations and handed to the solver whole (``Highs.passModel``), with no Python loop over
rows or non-zeros.

Solver
------
:class:`Solver` is the port: anything that maximises a :class:`MipModel` within a time
limit, optionally from a start, and reports a :class:`MipResult` (values, objective, dual
bound). :class:`HighsSolver` is the production implementation (HiGHS via ``highspy``).

:func:`optimize`
----------------
Reduce the model (:mod:`anwang.coverage.reduce`) and run greedy + interchange
(:mod:`anwang.coverage.heuristics`); their submodularity bound may already prove the
siting optimal. Then, with a solver that can also relax (:class:`RelaxingSolver`, which
:class:`HighsSolver` is):

1. the LP relaxation, whose duals give a bound (:func:`anwang.coverage.bound.dual_bound`);
   it comes before the local search, in the time the search leaves it, so that where it
   is tight (a small model, or one greedy + interchange already solves) the run ends at
   once instead of after the search's patience;
2. the iterated local search, for its share of the time limit (not shortened by the
   LP's seconds), until it finds a siting within the gap tolerance of the bound; its
   patience ends it early only when no helper thread is solving regions (below) — with
   one, it goes on in one-second slices from the best siting, a new seed each;
3. fixing of sites by reduced cost against the best siting
   (:func:`~anwang.coverage.bound.fix_by_reduced_cost`), from the LP's reduced costs;
4. for the plain MCLP, the Lagrangian decomposition bound by region
   (:class:`~anwang.coverage.bound.RegionalBound`), its regions solved by the same
   solver (HiGHS without presolve, sub-MIP heuristics or strong branching:
   :meth:`HighsSolver.for_regions`) — a region of more than ``split_columns`` sites
   first through its halves and quarters, which take seconds where the whole region of a
   dense core may not finish in the minute — for at most ``decomposition_share`` of the time left
   after the LP (by default all of it: the whole-model MIP moves the bound less than the
   regions do on the instances of ``bench/bench_siting.py``). With a second CPU, a helper
   thread starts on the regions as soon as the LP's duals are known, beside the local
   search, and the calling thread joins it when the search ends; once no region is left
   to take while the helper still solves one, the calling thread goes back to the local
   search until the helper is done; when every region is done with time to spare, a
   coarse pass bounds the model again over regions of about ``coarse_columns`` sites,
   and the smaller bound counts;
5. the MIP on the model with the fixed sites, warm-started from the best siting when it
   keeps them, for the rest of the time (all of it without a decomposition, or whatever
   the regions leave when they all finish early).

Each step stops the run as soon as the best bound is within the solver's gap tolerance
of the best siting. The better of the heuristic siting and the MIP incumbent is returned
with the lowest of the bounds: submodularity, LP dual, decomposition, and the MIP's
(taken as ``max(best siting, MIP bound)`` after fixing, which only excludes sitings no
better than the best one). A solver without ``relax`` runs the local search (against
the submodularity bound) and then goes straight to step 5.

What to expect: every bound here starts from the LP relaxation. Where demand is dense
and continuous, fractional posts tile the dense core in a way whole posts cannot, and the
relaxation can sit tenths of a percent to about 1 % above the best siting; cuts, fixing
and the decomposition lower it by a part of that in a minute
(``docs/performance.md``, "Post siting", measures each). Where the relaxation is tight,
the run ends early with status ``optimal``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from anwang.core.errors import ValidationFailed
from anwang.coverage.bound import (
    DecompositionBound,
    RegionalBound,
    RegionalSolve,
    dual_bound,
    fix_by_reduced_cost,
)
from anwang.coverage.heuristics import (
    SearchEnd,
    greedy_interchange,
    perturb_and_search,
    upper_bound,
)
from anwang.coverage.model import CoverageProblem, FloatArray, IntArray, objective_value
from anwang.coverage.reduce import Reduction, ReductionStats, identity, restrict
from anwang.coverage.reduce import reduce as reduce_problem

if TYPE_CHECKING:
    from highspy._core import _Highs

__all__ = [
    "HighsSolver",
    "LpResult",
    "MipModel",
    "MipResult",
    "MipStatus",
    "RelaxingSolver",
    "SitingResult",
    "Solver",
    "SolveStatus",
    "mclp_model",
    "optimize",
    "regional_model",
    "relative_gap",
    "start_values",
]


class MipStatus(StrEnum):
    OPTIMAL = "optimal"
    """Solved to the solver's gap tolerance."""
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    STOPPED = "stopped"
    """Any other end: interrupted, an iteration or memory limit, a solver error."""


@dataclass(frozen=True, eq=False)
class MipModel:
    """``maximise objective·z + offset`` s.t. ``row_lower ≤ matrix z ≤ row_upper``,
    ``col_lower ≤ z ≤ col_upper``, ``z_j`` integer where ``integer``. Infinite bounds
    are ``±inf``."""

    objective: FloatArray
    offset: float
    matrix: sp.csc_array
    row_lower: FloatArray
    row_upper: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    integer: NDArray[np.bool_]

    @property
    def n_cols(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def n_rows(self) -> int:
        return int(self.matrix.shape[0])

    def value(self, z: FloatArray) -> float:
        """The objective at ``z`` (offset included)."""
        return float(np.asarray(z, dtype=np.float64) @ self.objective) + float(self.offset)


@dataclass(frozen=True, eq=False)
class MipResult:
    status: MipStatus
    values: FloatArray | None
    """Best solution found, or None."""
    objective: float | None
    bound: float
    """Dual (upper) bound on the optimum, offset included; ``inf`` if unknown."""
    seconds: float
    nodes: int = 0


class Solver(Protocol):
    """Maximises a :class:`MipModel`. ``start``, when given, is a feasible solution to
    begin from; ``time_limit_s`` a wall-clock limit the solver must respect (None: its
    own default)."""

    def solve(
        self,
        model: MipModel,
        *,
        start: FloatArray | None = None,
        time_limit_s: float | None = None,
    ) -> MipResult: ...


@dataclass(frozen=True, eq=False)
class LpResult:
    """The LP relaxation of a :class:`MipModel` (integrality dropped)."""

    objective: float | None
    """Its optimum (offset included), or None if the solver stopped before it."""
    values: FloatArray | None
    row_duals: FloatArray
    """One multiplier per row, in the convention ``c = Aᵀr + d`` (``d`` the reduced
    costs): ``r ≥ 0`` on a row bounded above when maximising. They need not be optimal:
    :func:`anwang.coverage.bound.dual_bound` makes any of them a valid bound."""
    seconds: float


@runtime_checkable
class RelaxingSolver(Solver, Protocol):
    """A :class:`Solver` that also solves LP relaxations, and takes a relative gap per
    call (the regions of the decomposition bound are solved to a tighter gap than the
    whole model: their gaps add up)."""

    def relax(self, model: MipModel, *, time_limit_s: float | None = None) -> LpResult | None: ...

    def solve(
        self,
        model: MipModel,
        *,
        start: FloatArray | None = None,
        time_limit_s: float | None = None,
        mip_rel_gap: float | None = None,
    ) -> MipResult: ...


def _new_highs() -> _Highs:
    # The public ``highspy.Highs`` enables its callbacks in ``__init__``, and that first
    # call prints HiGHS's banner straight to the C-level stdout — before any option can
    # be set — which would corrupt ``--json`` output of the CLI. The compiled class
    # underneath does not; it has every method used here.
    try:
        from highspy._core import _Highs

        return _Highs()
    except ImportError:  # pragma: no cover - depends on the highspy layout
        import highspy

        return highspy.Highs()  # type: ignore[no-untyped-call]


class HighsSolver:
    """HiGHS (``highspy``) branch and cut.

    ``time_limit_s`` caps every solve (the caller's limit applies too, the smaller wins);
    it is enforced from HiGHS's interrupt callbacks as well as its own clock, with a
    margin (:attr:`MARGIN_S`); ``mip_rel_gap`` is HiGHS's relative-gap stopping
    tolerance; ``threads`` HiGHS's thread count (HiGHS keeps one scheduler per process, so
    use one value per process). ``lp_solver`` is HiGHS's ``mip_lp_solver``: ``"ipm"``
    solves the root LP by interior point, which on covering LPs (highly degenerate for
    the dual simplex) was 3–4 times faster in ``bench/bench_siting.py``; the re-solves
    after cuts and in the tree still use the dual simplex. ``log`` prints HiGHS's log.

    It is a :class:`RelaxingSolver`: :meth:`relax` solves the LP relaxation, and
    :meth:`solve` takes a gap per call.
    """

    MARGIN_S = 4.0
    """Stop this much before the limit (at most a tenth of it): HiGHS's clock checks are
    seconds apart during root cut rounds on the benchmark's 20,000-row model."""

    def __init__(
        self,
        time_limit_s: float | None = None,
        mip_rel_gap: float = 1e-3,
        threads: int | None = None,
        *,
        lp_solver: str = "ipm",
        presolve: bool = True,
        sub_mips: bool = True,
        strong_branching: bool = True,
        random_seed: int = 0,
        log: bool = False,
    ) -> None:
        if time_limit_s is not None and not (math.isfinite(time_limit_s) and time_limit_s > 0):
            raise ValidationFailed.on("time_limit_s", "must be a positive number of seconds")
        if not (math.isfinite(mip_rel_gap) and mip_rel_gap >= 0):
            raise ValidationFailed.on("mip_rel_gap", "must be a non-negative fraction")
        if threads is not None and threads < 1:
            raise ValidationFailed.on("threads", "must be at least 1")
        if lp_solver not in ("choose", "simplex", "ipm"):
            raise ValidationFailed.on("lp_solver", "must be 'choose', 'simplex' or 'ipm'")
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap
        self.threads = threads
        self.lp_solver = lp_solver
        self.presolve = presolve
        self.sub_mips = sub_mips
        self.strong_branching = strong_branching
        self.random_seed = random_seed
        self.log = log

    def _limit(self, time_limit_s: float | None) -> float | None:
        limits = [t for t in (self.time_limit_s, time_limit_s) if t is not None]
        if not limits:
            return None
        # HiGHS only looks at the clock between steps, and on large covering models one
        # round of root-node cut separation takes seconds: keep a margin for it
        limit = max(min(limits), 1e-3)
        return limit - min(0.1 * limit, self.MARGIN_S)

    def _highs(self, model: MipModel, limit: float | None, *, integer: bool) -> _Highs | None:
        """A HiGHS instance holding ``model`` (integrality dropped unless ``integer``)."""
        import highspy

        h = _new_highs()
        h.setOptionValue("output_flag", self.log)
        h.setOptionValue("random_seed", int(self.random_seed))
        h.setOptionValue("presolve", "on" if self.presolve else "off")
        h.setOptionValue("mip_lp_solver", self.lp_solver)
        if not self.sub_mips:
            for heuristic in ("rins", "rens", "root_reduced_cost"):
                h.setOptionValue(f"mip_heuristic_run_{heuristic}", False)
        if not self.strong_branching:
            h.setOptionValue("mip_pscost_minreliable", 0)
        if limit is not None:
            h.setOptionValue("time_limit", limit)
        if self.threads is not None:
            h.setOptionValue("threads", int(self.threads))
        inf = highspy.kHighsInf
        a = model.matrix
        status = h.passModel(
            model.n_cols,
            model.n_rows,
            int(a.nnz),
            1,  # column-wise
            -1,  # maximise
            float(model.offset),
            np.ascontiguousarray(model.objective, dtype=np.float64),
            np.nan_to_num(model.col_lower, neginf=-inf, posinf=inf),
            np.nan_to_num(model.col_upper, neginf=-inf, posinf=inf),
            np.nan_to_num(model.row_lower, neginf=-inf, posinf=inf),
            np.nan_to_num(model.row_upper, neginf=-inf, posinf=inf),
            a.indptr[:-1].astype(np.int32),
            a.indices.astype(np.int32),
            a.data.astype(np.float64),
            (model.integer if integer else np.zeros(model.n_cols, dtype=np.bool_)).astype(
                np.int32
            ),
        )
        return None if status == highspy.HighsStatus.kError else h

    @staticmethod
    def _watch(
        h: _Highs, deadline: float, stop: Callable[[], bool] | None = None
    ) -> Callable[[], bool]:
        """Interrupt ``h`` from its callbacks at ``deadline`` or once ``stop()`` is true;
        returns "was it interrupted"."""
        import highspy

        interrupted = False

        def stop_at_deadline(
            _kind: highspy.cb.HighsCallbackType,
            _message: str,
            _out: highspy.cb.HighsCallbackOutput,
            data_in: highspy.cb.HighsCallbackInput,
            _user: object,
        ) -> None:
            nonlocal interrupted
            if time.perf_counter() >= deadline or (stop is not None and stop()):
                interrupted = True
                data_in.user_interrupt = True

        h.setCallback(stop_at_deadline, None)
        kinds = highspy.cb.HighsCallbackType
        for kind in (
            kinds.kCallbackMipInterrupt,
            kinds.kCallbackSimplexInterrupt,
            kinds.kCallbackIpmInterrupt,
        ):
            h.startCallback(kind)
        return lambda: interrupted

    def relax(self, model: MipModel, *, time_limit_s: float | None = None) -> LpResult | None:
        """The LP relaxation by interior point without crossover (the duals need not be
        a vertex: they only feed bounds that are valid for any duals). None if HiGHS
        rejects the model or stops before an optimum."""
        import highspy

        t0 = time.perf_counter()
        limit = self._limit(time_limit_s)
        h = self._highs(model, limit, integer=False)
        if h is None:
            return None
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "off")
        if limit is not None:
            self._watch(h, t0 + limit)
        h.run()
        ms = highspy.HighsModelStatus
        if h.getModelStatus() == ms.kModelEmpty:
            return LpResult(
                float(model.offset), np.zeros(model.n_cols), np.zeros(model.n_rows),
                time.perf_counter() - t0,
            )  # fmt: skip
        if h.getModelStatus() != ms.kOptimal and not (
            limit is not None and time.perf_counter() >= t0 + limit
        ):
            # the interior point without crossover occasionally ends "unknown" on tiny,
            # degenerate models: the dual simplex settles them
            h.setOptionValue("solver", "simplex")
            h.clearSolver()
            h.run()
        if h.getModelStatus() != ms.kOptimal:
            return None
        sol = h.getSolution()
        return LpResult(
            float(h.getInfo().objective_function_value),
            np.asarray(sol.col_value, dtype=np.float64),
            np.asarray(sol.row_dual, dtype=np.float64),
            time.perf_counter() - t0,
        )

    def without_presolve(self) -> HighsSolver:
        """The same solver with HiGHS's presolve off."""
        return self._with(presolve=False)

    def for_regions(self) -> HighsSolver:
        """The same solver as the decomposition's regions use it, for their bound: no
        presolve (a region's model has no rows to remove), none of the sub-MIP
        heuristics (RINS, RENS, root reduced cost: the start is the incumbent, already
        good), and branching by pseudo-costs without strong branching to make them
        reliable. Each of these saves time on the two large regions of the benchmark's
        urban core, where the root node's sub-MIPs and strong branching took most of
        it: with all three, 10.6 + 11.4 s instead of 20.2 + 22.3 s for the same
        bounds (``docs/performance.md``)."""
        return self._with(presolve=False, sub_mips=False, strong_branching=False)

    def _with(self, **changes: bool) -> HighsSolver:
        kept: dict[str, bool] = {
            "presolve": self.presolve, "sub_mips": self.sub_mips,
            "strong_branching": self.strong_branching,
        }  # fmt: skip
        kept.update(changes)
        return HighsSolver(
            self.time_limit_s, self.mip_rel_gap, self.threads, lp_solver=self.lp_solver,
            random_seed=self.random_seed, log=self.log, **kept,
        )  # fmt: skip

    def solve(
        self,
        model: MipModel,
        *,
        start: FloatArray | None = None,
        time_limit_s: float | None = None,
        mip_rel_gap: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> MipResult:
        """Branch and cut; ``mip_rel_gap`` overrides the solver's gap for this call, and
        the solve is interrupted (status ``time_limit``) once ``stop()`` is true.

        HiGHS 1.16's presolve can carry a start into its reduced model with the wrong
        objective value (higher than the start's own, on a 5 × 5 covering model in the
        tests): the search then stops at once, "optimal", returning the start and that
        value as objective and bound. The bound stays valid (nothing it pruned beat the
        inflated value), but the siting and the status are wrong. So the objective HiGHS
        reports is checked against the model's value at the point it returns, and on a
        mismatch the solve is run again from the same start with presolve off, in the
        time left.
        """
        t0 = time.perf_counter()
        res = self._solve(model, start, time_limit_s, mip_rel_gap, stop)
        if (
            start is not None
            and self.presolve
            and res.values is not None
            and res.objective is not None
            and not _agrees(res.objective, model.value(res.values))
        ):
            left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - t0)
            if left is None or left > 0:
                again = self.without_presolve()._solve(model, start, left, mip_rel_gap, stop)
                return dataclasses.replace(
                    again,
                    bound=min(again.bound, res.bound),
                    seconds=time.perf_counter() - t0,
                    nodes=res.nodes + again.nodes,
                )
            # no time to repeat it: keep the (valid) bound, not the claim or the objective
            return dataclasses.replace(
                res, status=MipStatus.STOPPED, objective=model.value(res.values),
                seconds=time.perf_counter() - t0,
            )  # fmt: skip
        return res

    def _solve(
        self,
        model: MipModel,
        start: FloatArray | None,
        time_limit_s: float | None,
        mip_rel_gap: float | None,
        stop: Callable[[], bool] | None = None,
    ) -> MipResult:
        import highspy

        t0 = time.perf_counter()
        limit = self._limit(time_limit_s)
        h = self._highs(model, limit, integer=True)
        if h is None:
            return MipResult(MipStatus.STOPPED, None, None, math.inf, time.perf_counter() - t0)
        gap = self.mip_rel_gap if mip_rel_gap is None else mip_rel_gap
        h.setOptionValue("mip_rel_gap", float(gap))
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = np.asarray(start, dtype=np.float64).tolist()
            sol.value_valid = True
            h.setSolution(sol)
        interrupted = (
            self._watch(h, t0 + limit if limit is not None else math.inf, stop)
            if limit is not None or stop is not None
            else (lambda: False)
        )
        h.run()
        model_status = h.getModelStatus()
        info = h.getInfo()
        ms = highspy.HighsModelStatus
        mip_status = {
            ms.kOptimal: MipStatus.OPTIMAL,
            ms.kTimeLimit: MipStatus.TIME_LIMIT,
            ms.kInfeasible: MipStatus.INFEASIBLE,
        }.get(model_status, MipStatus.STOPPED)
        if interrupted() and mip_status is MipStatus.STOPPED:
            mip_status = MipStatus.TIME_LIMIT
        values = None
        objective = None
        if info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible:
            values = np.asarray(h.getSolution().col_value, dtype=np.float64)
            objective = float(info.objective_function_value)
        bound = float(info.mip_dual_bound)
        if not math.isfinite(bound) or abs(bound) >= highspy.kHighsInf:
            bound = math.inf
        return MipResult(
            mip_status,
            values,
            objective,
            bound,
            time.perf_counter() - t0,
            nodes=int(info.mip_node_count),
        )


def _agrees(reported: float, actual: float) -> bool:
    return abs(reported - actual) <= 1e-6 * max(1.0, abs(reported), abs(actual))


# --------------------------------------------------------------------------------------
# the model


def mclp_model(red: Reduction) -> MipModel:
    """The MCLP (with backup coverage when β > 0) of a reduction, as a :class:`MipModel`.

    Variables in order ``x`` (columns), ``y`` (rows), then ``u`` (rows) with backup.
    """
    n, m = red.n_rows, red.n_cols
    beta = red.backup_weight
    backup = beta > 0
    a = sp.csc_array(red.cover, dtype=np.float64)
    eye = sp.eye_array(n, format="csc")
    ones = sp.csc_array(np.ones((1, m)))
    top = [-a, eye] + ([eye] if backup else [])
    bottom = [ones, None] + ([None] if backup else [])
    matrix = sp.csc_array(sp.block_array([top, bottom], format="csc"))
    matrix.sort_indices()
    n_var = m + n * (2 if backup else 1)
    objective = np.concatenate(
        [np.zeros(m), red.weights] + ([beta * red.weights] if backup else [])
    )
    col_lower = np.zeros(n_var)
    col_lower[red.fixed_cols] = 1.0
    col_upper = np.ones(n_var)
    row_lower = np.concatenate([np.full(n, -np.inf), [red.p if red.exact_p else -np.inf]])
    row_upper = np.concatenate([red.offset.astype(np.float64), [float(red.p)]])
    integer = np.zeros(n_var, dtype=np.bool_)
    integer[:m] = True
    return MipModel(
        objective=objective,
        offset=red.constant,
        matrix=matrix,
        row_lower=row_lower,
        row_upper=row_upper,
        col_lower=col_lower,
        col_upper=col_upper,
        integer=integer,
    )


def start_values(red: Reduction, cols: IntArray) -> FloatArray:
    """A full feasible solution of :func:`mclp_model` for the chosen columns."""
    x = np.zeros(red.n_cols)
    x[cols] = 1.0
    counts = red.counts(cols)
    y = np.minimum(counts, 1).astype(np.float64)
    parts = [x, y]
    if red.backup_weight > 0:
        parts.append(np.clip(counts - 1, 0, 1).astype(np.float64))
    return np.concatenate(parts)


def _columns(red: Reduction, values: FloatArray) -> IntArray | None:
    """The chosen columns of a solver solution, or None if it breaks the model."""
    cols = np.flatnonzero(values[: red.n_cols] > 0.5).astype(np.int64)
    count_ok = cols.size == red.p if red.exact_p else cols.size <= red.p
    if not count_ok or not np.all(np.isin(red.fixed_cols, cols)):
        return None
    return cols


def relative_gap(objective: float, bound: float) -> float:
    """``(bound − objective) / objective``: 0 when they meet, ``inf`` if the objective is 0
    and the bound is not."""
    if bound <= objective:
        return 0.0
    if objective <= 0:
        return math.inf
    return (bound - objective) / objective


# --------------------------------------------------------------------------------------
# optimize


class SolveStatus(StrEnum):
    OPTIMAL = "optimal"
    """Proved optimal to the solver's gap tolerance (or trivially)."""
    TIME_LIMIT = "time_limit"
    """The time ran out: the best siting found and a bound are reported."""
    STOPPED = "stopped"
    """The solver stopped otherwise; the heuristic siting and its bound are reported."""


@dataclass(frozen=True)
class SitingResult:
    sites: IntArray
    """Chosen candidates (sorted), exactly ``p``, fixed ones included."""
    objective: float
    """Covered weight (+ β × doubly covered weight) of ``sites``."""
    bound: float
    """Upper bound on the best objective of any siting."""
    gap: float
    """``(bound − objective) / objective``, a fraction (0.001 = 0.1 %)."""
    status: SolveStatus
    seconds: float
    covered_weight: float
    covered_share: float
    """Share of the total demand weight reached by at least one site."""
    source: str
    """``"mip"`` or ``"heuristic"``: which produced ``sites``."""
    heuristic_objective: float
    heuristic_seconds: float
    mip_seconds: float
    reduction: ReductionStats
    lp_bound: float | None = None
    """The LP relaxation's dual bound (None: no relaxation was solved)."""
    lp_seconds: float = 0.0
    fixed_out: int = 0
    """Sites fixed to 0 by reduced cost (no better siting uses them)."""
    fixed_in: int = 0
    """Sites fixed to 1 by reduced cost (every better siting uses them)."""
    decomposition: DecompositionBound | None = None
    """The Lagrangian decomposition bound and how it was reached (None: not run)."""
    coarse: DecompositionBound | None = None
    """The decomposition bound's coarse pass, over larger regions (None: not run)."""
    search_rounds: int = 0
    """Rounds of the iterated local search."""
    search_seconds: float = 0.0
    """Seconds of the iterated local search (part of ``heuristic_seconds``)."""
    search_end: SearchEnd | None = None
    """Why the local search stopped (None: it was not run)."""
    lp_before_search: bool = False
    """The LP relaxation was solved before the local search (its bound then stops the
    search), not after it."""

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready values (the CLI's ``--json``)."""
        return {
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "status": self.status.value,
            "seconds": self.seconds,
            "sites": [int(s) for s in self.sites],
            "covered_weight": self.covered_weight,
            "covered_share": self.covered_share,
            "source": self.source,
            "heuristic_objective": self.heuristic_objective,
        }


def optimize(
    problem: CoverageProblem,
    *,
    solver: Solver | None = None,
    time_limit_s: float = 60.0,
    reduce: bool = True,
    search_share: float = 0.35,
    decomposition_share: float = 1.0,
    region_columns: int = 60,
    split_columns: int | None = 150,
    coarse_columns: int | None = 120,
    seed: int = 0,
) -> SitingResult:
    """Site ``problem.p`` posts to maximise coverage, within ``time_limit_s`` seconds of
    wall clock for the whole call.

    Steps (module docstring): reduce the model (:func:`anwang.coverage.reduce.reduce`;
    ``reduce=False`` keeps it as given, for comparison), greedy + interchange; the LP
    relaxation; the iterated local search for ``search_share`` of the time limit, counted
    from the end of the LP (it stops early at a siting within the solver's gap tolerance
    of the bound, and gives up after ``max(20, min(2000, 2 × columns))`` rounds without a
    better siting or, the LP bound known, after ten times the LP's seconds, at least half
    a second, without one); then reduced-cost fixing and — for the plain MCLP — the
    decomposition bound over regions of about ``region_columns`` sites — a region of
    more than ``split_columns`` sites first bounded by its halves, and theirs, which
    finish where a large region of a dense core may not (``None``: no halves), then, if
    time is left, again over regions of about ``coarse_columns`` sites (``None``: no
    second pass) — for at
    most ``decomposition_share`` of the time left after the LP (begun by a helper thread
    beside the search when there is a second CPU); then the MIP, warm-started, for the
    rest. The defaults give about a third of the limit to the local search, which on the
    benchmark's density instance reaches the siting that half the limit did, and let the
    calling thread join the helper on the regions sooner: the two large regions of the
    urban core then both finish within the minute, where with half the limit one did
    not (``docs/performance.md``). ``solver`` defaults to ``HighsSolver()`` (0.1 %
    relative gap), whose tolerance also ends the run early. ``seed`` makes the local
    search reproducible (unless a time limit cuts it short).
    """
    if not (isinstance(time_limit_s, int | float) and math.isfinite(time_limit_s)):
        raise ValidationFailed.on("time_limit_s", "must be a positive number of seconds")
    if time_limit_s <= 0:
        raise ValidationFailed.on("time_limit_s", "must be a positive number of seconds")
    if not (isinstance(search_share, int | float) and 0 <= search_share < 1):
        raise ValidationFailed.on("search_share", "must be a fraction in [0, 1)")
    if not (isinstance(decomposition_share, int | float) and 0 <= decomposition_share <= 1):
        raise ValidationFailed.on("decomposition_share", "must be a fraction in [0, 1]")
    if isinstance(region_columns, bool) or not isinstance(region_columns, int) or (
        region_columns < 1
    ):
        raise ValidationFailed.on("region_columns", "must be a positive whole number of sites")
    if split_columns is not None and (
        isinstance(split_columns, bool) or not isinstance(split_columns, int) or split_columns < 1
    ):
        raise ValidationFailed.on(
            "split_columns", "must be a positive whole number of sites, or None"
        )
    if coarse_columns is not None and (
        isinstance(coarse_columns, bool) or not isinstance(coarse_columns, int)
        or coarse_columns < 1
    ):
        raise ValidationFailed.on(
            "coarse_columns", "must be a positive whole number of sites, or None"
        )
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    red = reduce_problem(problem) if reduce else identity(problem)
    heur = greedy_interchange(red, deadline=t0 + time_limit_s / 2, seed=seed)
    solver = solver if solver is not None else HighsSolver()
    run = _Run(red, heur.cols, heur.bound, getattr(solver, "mip_rel_gap", 1e-3))
    run.heuristic_seconds = heur.seconds
    run.split_columns = split_columns
    run.coarse_columns = coarse_columns
    free = red.n_cols - red.fixed_cols.size
    if red.n_rows == 0 or free <= red.p - red.fixed_cols.size or run.closed(strict=True):
        run.bound = run.value  # nothing to decide, or the bound meets the siting
        run.status = SolveStatus.OPTIMAL
    else:
        search_s = search_share * time_limit_s - (time.perf_counter() - t0)
        if search_share > 0 and isinstance(solver, RelaxingSolver):
            # the LP first, in the time the search leaves it; the search keeps its share
            run.relax(solver, deadline - max(search_s, 0.0))
            run.lp_before_search = run.lp is not None
            # the regions start now, in helper threads, beside the search
            run.start_regions(solver, deadline, decomposition_share, region_columns)
        try:
            if search_share > 0:  # stops before its first round if the LP closed the gap
                run.search(
                    min(time.perf_counter() + max(search_s, 0.0), deadline),
                    patience=max(20, min(2000, 2 * red.n_cols)),
                    seed=seed,
                )
            if not run.closed():
                run.improve(solver, deadline, decomposition_share, region_columns)
            else:
                run.status = SolveStatus.OPTIMAL
        finally:
            run.finish_regions(work=False)
    sites = red.lift(run.best)
    objective = problem.objective(sites)
    bound = max(run.bound, objective)
    covered = objective_value(problem.cover, problem.weights, sites)
    total = problem.total_weight
    gap = relative_gap(objective, bound)
    status = SolveStatus.OPTIMAL if gap <= run.tolerance else run.status
    return SitingResult(
        sites=sites,
        objective=objective,
        bound=bound,
        gap=gap,
        status=status,
        seconds=time.perf_counter() - t0,
        covered_weight=covered,
        covered_share=covered / total if total > 0 else 0.0,
        source=run.source,
        heuristic_objective=problem.objective(red.lift(run.heuristic_best)),
        heuristic_seconds=run.heuristic_seconds,
        mip_seconds=run.mip_seconds,
        reduction=red.stats,
        lp_bound=run.lp_bound,
        lp_seconds=run.lp_seconds,
        fixed_out=run.fixed_out,
        fixed_in=run.fixed_in,
        decomposition=run.decomposition,
        coarse=run.coarse,
        search_rounds=run.search_rounds,
        search_seconds=run.search_seconds,
        search_end=run.search_end,
        lp_before_search=run.lp_before_search,
    )


REGION_GAP = 1e-6
"""Relative gap the regions of the decomposition bound are solved to: their gaps add up."""


def regional_model(
    cover: sp.csr_array, weights: FloatArray, prices: FloatArray, fixed: NDArray[np.bool_]
) -> MipModel:
    """A region of the decomposition bound: ``maximise Σ_i w_i y_i − Σ_j price_j x_j``
    s.t. ``y_i ≤ Σ_{j ∈ N_i} x_j``, ``x`` binary (fixed sites at 1), ``0 ≤ y ≤ 1`` —
    the MCLP of :func:`mclp_model` without its cardinality row, sites priced instead.
    Variables ``x`` then ``y``."""
    n, m = cover.shape
    a = sp.csc_array(cover, dtype=np.float64)
    matrix = sp.csc_array(sp.hstack([-a, sp.eye_array(n, format="csc")], format="csc"))
    matrix.sort_indices()
    col_lower = np.zeros(m + n)
    col_lower[:m][fixed] = 1.0
    integer = np.zeros(m + n, dtype=np.bool_)
    integer[:m] = True
    return MipModel(
        objective=np.concatenate([-np.asarray(prices, dtype=np.float64), weights]),
        offset=0.0,
        matrix=matrix,
        row_lower=np.full(n, -np.inf),
        row_upper=np.zeros(n),
        col_lower=col_lower,
        col_upper=np.ones(m + n),
        integer=integer,
    )


def _region_solver(
    solver: RelaxingSolver, stop: Callable[[], bool] | None = None
) -> Callable[
    [sp.csr_array, FloatArray, FloatArray, NDArray[np.bool_], FloatArray, float], RegionalSolve
]:
    """The regions' solver: ``solver``, for HiGHS as :meth:`HighsSolver.for_regions`
    sets it up, interrupted once ``stop()`` is true."""
    highs = solver.for_regions() if isinstance(solver, HighsSolver) else None

    def solve_region(
        cover: sp.csr_array,
        weights: FloatArray,
        prices: FloatArray,
        fixed: NDArray[np.bool_],
        start: FloatArray,
        time_limit_s: float,
    ) -> RegionalSolve:
        model = regional_model(cover, weights, prices, fixed)
        y = np.minimum(np.asarray(cover @ start), 1.0)
        values = np.concatenate([start, y])
        if highs is not None:
            res = highs.solve(
                model, start=values, time_limit_s=time_limit_s, mip_rel_gap=REGION_GAP,
                stop=stop,
            )  # fmt: skip
        else:
            res = solver.solve(
                model, start=values, time_limit_s=time_limit_s, mip_rel_gap=REGION_GAP
            )
        return RegionalSolve(res.bound, res.status is MipStatus.OPTIMAL)

    return solve_region


@dataclass(frozen=True, eq=False)
class _Lp:
    """The LP relaxation of the reduced model: its dual bound, the projected duals and
    the reduced costs (:func:`anwang.coverage.bound.dual_bound`)."""

    model: MipModel
    bound: float
    duals: FloatArray
    reduced_costs: FloatArray


class _Run:
    """The state of one :func:`optimize` call after greedy + interchange: the best siting
    (columns of ``red``), the best bound, and what each step added."""

    LP_PATIENCE = 10.0
    """Once the LP bound is known, the local search gives up after this many times the
    LP's seconds (at least :attr:`MIN_PATIENCE_S`) without a new best: on a small model
    the solver, whose work the LP measures, then closes the gap sooner than more rounds."""
    MIN_PATIENCE_S = 0.5

    def __init__(self, red: Reduction, best: IntArray, bound: float, tolerance: float) -> None:
        self.red = red
        self.best = best
        self.value = red.value(best)
        self.bound = bound
        self.tolerance = float(tolerance)
        self.status = SolveStatus.TIME_LIMIT
        self.source = "heuristic"
        self.heuristic_best = best
        self.heuristic_seconds = 0.0
        self.search_rounds = 0
        self.search_seconds = 0.0
        self.search_end: SearchEnd | None = None
        self.mip_seconds = 0.0
        self.lp_tried = False
        self.lp_before_search = False
        self.lp_bound: float | None = None
        self.lp_seconds = 0.0
        self.lp: _Lp | None = None
        self.fixed_out = 0
        self.fixed_in = 0
        self.decomposition: DecompositionBound | None = None
        self.regions: RegionalBound | None = None
        self.seed = 0
        self.split_columns: int | None = None
        self.coarse_columns: int | None = None
        self.coarse: DecompositionBound | None = None
        self._slices = 0
        self._regions_until = 0.0
        self._solve_region: Callable[..., RegionalSolve] | None = None
        self._regions_solver: RelaxingSolver | None = None
        self._helpers: list[threading.Thread] = []
        self._helper_error: BaseException | None = None

    def closed(self, *, strict: bool = False) -> bool:
        """The bound meets the siting (``strict``: to rounding), or is within tolerance."""
        if self.bound - self.value <= 1e-9 * max(1.0, abs(self.value)):
            return True
        return not strict and relative_gap(self.value, self.bound) <= self.tolerance

    def target(self) -> float:
        """The least value of a siting that :meth:`closed` accepts against the bound."""
        b = self.bound
        if not math.isfinite(b):
            return math.inf
        return b - max(self.tolerance / (1.0 + self.tolerance) * abs(b), 1e-9 * max(1.0, abs(b)))

    def relax(self, solver: RelaxingSolver, until: float) -> None:
        """The LP relaxation and its dual bound, by ``until`` (a perf_counter instant)."""
        self.lp_tried = True
        if time.perf_counter() >= until:
            return
        model = mclp_model(self.red)
        lp = solver.relax(model, time_limit_s=until - time.perf_counter())
        if lp is None:
            return
        self.lp_seconds = lp.seconds
        d_bound, r, d = dual_bound(
            model.objective, model.offset, model.matrix, model.row_lower,
            model.row_upper, model.col_lower, model.col_upper, lp.row_duals,
        )  # fmt: skip
        self.lp_bound = d_bound
        self.lp = _Lp(model, d_bound, r, d)
        self.bound = min(self.bound, d_bound)

    def search(self, until: float, *, patience: int, seed: int) -> None:
        """The iterated local search from the best siting, until ``until``, its patience,
        or a siting within tolerance of the bound known by then."""
        self.seed = seed
        patience_s = None
        if self.lp_bound is not None:
            patience_s = max(self.MIN_PATIENCE_S, self.LP_PATIENCE * self.lp_seconds)
        found = perturb_and_search(
            self.red, self.best, deadline=until, patience=patience, patience_s=patience_s,
            target=self.target(), seed=seed,
        )  # fmt: skip
        self.search_rounds, self.search_end = found.rounds, found.end
        self.search_seconds = found.seconds
        self.heuristic_seconds += found.seconds
        if found.improved:
            self.best = self.heuristic_best = found.cols
            self.value = self.red.value(found.cols)
            # the submodular bound at the new siting may be the tighter one
            self.bound = min(self.bound, upper_bound(self.red, found.cols))
        if found.end is SearchEnd.PATIENCE:
            # its patience is for handing the time to the solver; while a helper solves
            # regions the search has this thread to itself and goes on from the best
            # siting with new seeds, which keep finding better ones on large models
            self._search_while_helped(until)

    HELPERS = 1 if (os.cpu_count() or 1) > 1 else 0
    """Threads that solve the decomposition's regions beside the calling thread: from
    the end of the LP relaxation, while the local search runs, and after it, two large
    regions side by side. HiGHS releases the interpreter while it solves, so a second
    CPU does the regions' work; with one CPU there is no helper and the regions wait for
    the search, as the calling thread solves them after it."""

    def start_regions(
        self, solver: Solver, deadline: float, share: float, region_columns: int
    ) -> None:
        """Set up the decomposition bound from the LP duals, for ``share`` of the time
        left until ``deadline``, and start its helper threads (:attr:`HELPERS`). Does
        nothing without an LP, for backup coverage, or once started."""
        red, lp = self.red, self.lp
        if self.regions is not None or lp is None or red.backup_weight > 0 or share <= 0:
            return
        if not isinstance(solver, RelaxingSolver) or self.closed():
            return
        now = time.perf_counter()
        self._regions_until = now + share * max(deadline - now, 0.0)
        self._regions_solver = solver
        self._launch(region_columns)

    def _launch(self, region_columns: int) -> RegionalBound:
        """A decomposition bound over regions of about ``region_columns`` sites, priced
        by the LP's duals, made :attr:`regions`, with its helper threads started."""
        assert self.lp is not None and self._regions_solver is not None
        red, r = self.red, self.lp.duals
        regions = RegionalBound(
            red, r[: red.n_rows], float(r[red.n_rows]), target_columns=region_columns,
            split_above=self.split_columns,
        )
        self.regions = regions
        self._solve_region = _region_solver(self._regions_solver, stop=regions.cancelled.is_set)
        for _ in range(self.HELPERS):
            helper = threading.Thread(target=self._help, name="siting-regions", daemon=True)
            helper.start()
            self._helpers.append(helper)
        return regions

    def _join_helpers(self) -> None:
        """Wait for the helper threads, and raise what failed in one."""
        for helper in self._helpers:
            helper.join()
        self._helpers = []
        if self._helper_error is not None:
            error, self._helper_error = self._helper_error, None
            raise error

    def _help(self) -> None:
        assert self.regions is not None and self._solve_region is not None
        try:
            self.regions.work(lambda: self.best, self._solve_region, self._regions_until)
        except BaseException as exc:  # re-raised by finish_regions in the calling thread
            self._helper_error = exc
            self.regions.cancelled.set()

    SLICE_S = 1.0
    """Length of a slice of local search while a helper solves the last region."""

    def _search_while_helped(self, until: float | None = None) -> None:
        """While a helper is solving regions, go on with the local search from the best
        siting, a slice at a time (a new seed each), until the helpers are done, the
        regions' time is up, or ``until``."""
        until = self._regions_until if until is None else min(until, self._regions_until)
        while any(h.is_alive() for h in self._helpers):
            now = time.perf_counter()
            if now >= until - 0.1 or self.closed():
                return
            self._slices += 1
            found = perturb_and_search(
                self.red, self.best, deadline=min(now + self.SLICE_S, until),
                target=self.target(), seed=self.seed + self._slices,
            )  # fmt: skip
            self.search_rounds += found.rounds
            self.search_seconds += found.seconds
            self.heuristic_seconds += found.seconds
            if found.improved and self.red.value(found.cols) > self.value:
                self.best = self.heuristic_best = found.cols
                self.value = self.red.value(found.cols)

    def finish_regions(self, *, work: bool) -> None:
        """Solve the regions left in this thread too (``work``) or cancel them, wait for
        the helpers, and take the decomposition bound."""
        regions = self.regions
        if regions is None:
            return
        if work and self._solve_region is not None:
            regions.work(lambda: self.best, self._solve_region, self._regions_until)
            self._search_while_helped()
        else:
            regions.cancelled.set()
        self._join_helpers()
        self.decomposition = regions.result(self.best)
        self.bound = min(self.bound, self.decomposition.bound)
        if work:
            self._coarse_pass()

    COARSE_MIN_S = 5.0
    """The coarse pass of the decomposition bound runs only with this much time left."""

    def _coarse_pass(self) -> None:
        """Once every region is done with time to spare, the decomposition bound again
        over regions of about :attr:`coarse_columns` sites (their large ones halved as
        the first pass's), by this thread and the helpers, until the regions' time is up;
        the smaller of the two bounds counts. Coarser regions split fewer sites' prices
        at their borders, and the halves of a large one follow the sparsest cuts of its
        sites' graph, where the first pass's regions are grown from centres: on the
        benchmark's H3 instance the coarse pass lowers the bound, on the density one
        its core does not finish and the first pass's bound stands."""
        lp, first = self.lp, self.regions
        if self.coarse_columns is None or lp is None or first is None or self.closed():
            return
        if self._regions_solver is None or (
            self._regions_until - time.perf_counter() < self.COARSE_MIN_S
        ):
            return
        coarse = self._launch(self.coarse_columns)
        try:
            assert self._solve_region is not None
            coarse.work(lambda: self.best, self._solve_region, self._regions_until)
        except BaseException:
            coarse.cancelled.set()
            raise
        finally:
            self.regions = first  # the first pass's bound is the one reported as such
            self._join_helpers()
        self.coarse = coarse.result(self.best)
        self.bound = min(self.bound, self.coarse.bound)

    def improve(
        self, solver: Solver, deadline: float, share: float, region_columns: int
    ) -> None:
        red = self.red
        work, keep = red, np.arange(red.n_cols, dtype=np.int64)
        at_fixing = -math.inf  # the value fixings were made against
        if isinstance(solver, RelaxingSolver) and not self.lp_tried:
            self.relax(solver, deadline)
            if self.closed():
                self.status = SolveStatus.OPTIMAL
                return
        lp = self.lp
        if isinstance(solver, RelaxingSolver) and lp is not None and time.perf_counter() < deadline:
            model, d, d_bound = lp.model, lp.reduced_costs, lp.bound
            m = red.n_cols
            zero, one = fix_by_reduced_cost(
                d_bound, d[:m], model.col_lower[:m], model.col_upper[:m], self.value
            )
            self.fixed_out, self.fixed_in = int(zero.sum()), int(one.sum())
            if red.backup_weight == 0 and share > 0:
                self.start_regions(solver, deadline, share, region_columns)
                self.finish_regions(work=True)
                if self.closed():
                    self.status = SolveStatus.OPTIMAL
                    return
            if zero.any() or one.any():
                n_fixed = int(red.fixed_cols.size) + int(one.sum())
                if n_fixed > red.p or (red.exact_p and m - int(zero.sum()) < red.p):
                    # no siting keeps every fixing: none is better than the best one
                    self.bound = self.value
                    self.status = SolveStatus.OPTIMAL
                    return
                work, keep = restrict(red, zero=zero, one=one)
                at_fixing = self.value
        left = deadline - time.perf_counter()
        if left <= 0 or (self.lp_bound is not None and left < self.lp_seconds):
            # the MIP would not finish its root LP, which alone took the LP's seconds:
            # it could add nothing, and HiGHS would overrun the limit finding that out
            return
        chosen = np.zeros(red.n_cols, dtype=np.bool_)
        chosen[self.best] = True
        start_cols = np.flatnonzero(chosen[keep])
        keeps_fixings = int(start_cols.size) == int(self.best.size) and bool(
            np.all(chosen[keep][work.fixed_cols])
        )
        res = solver.solve(
            mclp_model(work),
            start=start_values(work, start_cols) if keeps_fixings else None,
            time_limit_s=max(deadline - time.perf_counter(), 1e-3),
        )
        self.mip_seconds = res.seconds
        cols = _columns(work, res.values) if res.values is not None else None
        if cols is not None:
            value = work.value(cols)
            if value > self.value:
                self.best, self.value, self.source = keep[cols], value, "mip"
        mip_bound = res.bound
        if res.status is MipStatus.INFEASIBLE and at_fixing > -math.inf:
            mip_bound = at_fixing  # no siting keeps the fixings: none beats the incumbent
        if math.isfinite(mip_bound):
            self.bound = min(self.bound, max(mip_bound, at_fixing))
        self.status = {
            MipStatus.OPTIMAL: SolveStatus.OPTIMAL,
            MipStatus.TIME_LIMIT: SolveStatus.TIME_LIMIT,
        }.get(res.status, SolveStatus.STOPPED)
