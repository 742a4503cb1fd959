"""Model reduction before solving a siting problem, and the way back to its candidates.

A :class:`Reduction` is the problem the heuristics and the MIP actually see: fewer demand
rows, fewer candidate columns, the fixed sites folded in, and a constant. Its objective
for a choice of columns ``x`` is::

    constant + Σ_i w_i · ([c_i ≥ 1] + β [c_i ≥ 2]),   c_i = offset_i + Σ_{j ∈ N_i} x_j

and :meth:`Reduction.lift` maps an optimal choice of columns to an optimal siting of the
original problem (fixed sites added, padded to exactly ``p`` sites). Every step below keeps
the optimum; "cap" is how many reaches still count at a point: 1 for the plain maximal
covering problem, 2 with backup coverage (β > 0).

1. **Drop demand points no candidate reaches.** No siting changes their contribution (0).
   Their count and weight are kept in :class:`ReductionStats` for reporting.
2. **Fold in the fixed sites.** ``f_i`` fixed sites reach point ``i``. A point with
   ``f_i ≥ cap``, or one that only fixed sites reach, has a value no choice can change: it
   goes into ``constant``. Others keep ``offset_i = f_i``, and the fixed columns leave the
   model (``p`` drops by their number).
3. **Drop demand points of zero weight**: they add nothing to any objective.
4. **Merge demand points with identical candidate sets** (and equal offsets), summing
   their weights: their rows of the constraint matrix are identical, so any siting
   covers them alike. Rows are grouped by two independent 64-bit random set hashes (the
   wrapping sum of a random word per column, computed for all rows at once with
   ``np.add.reduceat``) and the grouping is then verified exactly against the CSR index
   arrays; a hash collision (probability about ``n² / 2¹²⁸``) falls back to exact grouping.
5. **Drop dominated candidates.** Candidate ``k`` dominates ``j`` when ``N(j) ⊆ N(k)``
   (``N`` = the points a candidate reaches), ties between identical columns broken by
   index so that dominance is a strict order. All inclusions come from one sparse product
   ``Cᵀ C`` (its entry ``(j, k)`` is ``|N(j) ∩ N(k)|``; ``N(j) ⊆ N(k)`` iff it equals
   ``|N(j)|``). ``j`` is dropped when it has at least ``need_j = cap − min_{i ∈ N(j)}
   offset_i`` dominators. Why that keeps the optimum: if an optimal siting uses ``j`` and
   some dominator ``k`` it does not use, swapping ``j`` for ``k`` loses nothing (every
   point of ``j`` is also reached by ``k``); if it uses all of them, the points of ``j``
   are already reached ``cap`` times and ``j`` adds nothing, so it can go. That ``j`` has
   ``need_j`` dominators among the candidates that *stay* follows because dominance is
   transitive and a dominator's ``need`` is never smaller: the maximal element of
   ``j``'s dominators has none itself, and the maximal one of the rest at most one.
   Under the plain objective one dominator is enough. Under backup coverage one is not:
   a subset site next to its superset is the cheapest second unit for its points, which
   is why a single dominator only suffices where fixed sites already reach every point of
   ``j`` once. Fixed sites are never dropped (step 2 has removed them), but a fixed site
   covering a point settles it, which is how it "dominates".
   After this the remaining columns may make more rows identical; step 4 runs again
   (dominance itself is unaffected by merging or by removing dominated columns, so two
   passes reach the fixed point).

Because dropped sites may leave fewer than ``p`` useful columns, the reduced model asks
for *at most* ``p`` sites; the objective is monotone, so nothing is lost, and
:meth:`Reduction.lift` pads the siting back to exactly ``p`` with the sites of largest
marginal gain (in the original problem).

Reduction ideas follow the classic ones for set covering (e.g. Toregas & ReVelle 1973,
"Binary logic solutions to a class of location problem", Geographical Analysis 5:145–155,
row and column dominance); the backup-coverage rule above is this module's own and its
argument is given in full.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from anwang.coverage.model import (
    CoverageProblem,
    FloatArray,
    IntArray,
    coverage_counts,
    marginal_gains,
)

__all__ = ["Reduction", "ReductionStats", "identity", "reduce", "restrict"]

_HASH_SEED = 0x616E77616E67  # any fixed seed: the grouping is verified, not trusted


@dataclass(frozen=True)
class ReductionStats:
    demand_points: int
    candidates: int
    rows: int
    """Demand rows in the reduced model."""
    columns: int
    """Candidate columns in the reduced model (fixed ones included only when not folded)."""
    uncoverable: int
    """Demand points no candidate reaches."""
    uncoverable_weight: float
    settled: int
    """Demand points whose value the fixed sites alone decide (in ``constant``)."""
    zero_weight: int
    merged: int
    """Demand points merged into another with the same candidate set."""
    dominated: int
    """Candidates dropped as dominated."""
    seconds: float


@dataclass(frozen=True, eq=False)
class Reduction:
    """The model the solvers see (see the module docstring for its objective)."""

    problem: CoverageProblem
    cover: sp.csr_array
    """``rows × columns``, boolean."""
    weights: FloatArray
    offset: NDArray[np.int32]
    """Reaches of each row already provided by folded-in fixed sites (below ``cap``)."""
    columns: IntArray
    """Original candidate index of each column."""
    p: int
    """Sites to choose among the columns, ``fixed_cols`` included."""
    fixed_cols: IntArray
    """Columns that must be chosen (empty once the fixed sites are folded in)."""
    exact_p: bool
    """True: exactly ``p`` columns; False: at most ``p`` (see the module docstring)."""
    constant: float
    stats: ReductionStats
    _csc: sp.csc_array | None = field(default=None, repr=False)

    @property
    def backup_weight(self) -> float:
        return self.problem.backup_weight

    @property
    def cap(self) -> int:
        return 2 if self.problem.backup_weight > 0 else 1

    @property
    def n_rows(self) -> int:
        return int(self.cover.shape[0])

    @property
    def n_cols(self) -> int:
        return int(self.cover.shape[1])

    @property
    def csc(self) -> sp.csc_array:
        """The cover by columns (built once)."""
        if self._csc is None:
            object.__setattr__(self, "_csc", self.cover.tocsc())
        assert self._csc is not None
        return self._csc

    def counts(self, cols: IntArray) -> NDArray[np.int32]:
        """Reaches per row for a choice of columns, folded fixed sites included."""
        return self.offset + coverage_counts(self.cover, cols)

    def value(self, cols: IntArray) -> float:
        """Objective of a choice of columns; equals the original objective of its lift
        (before padding, which can only add)."""
        c = self.counts(np.asarray(cols, dtype=np.int64))
        v = float(self.weights[c >= 1].sum())
        if self.backup_weight:
            v += self.backup_weight * float(self.weights[c >= 2].sum())
        return self.constant + v

    def lift(self, cols: IntArray) -> IntArray:
        """Original sites for a choice of columns: fixed sites added, padded to exactly
        ``p`` by greedy marginal gain in the original problem (ties: lowest index)."""
        prob = self.problem
        sites = np.union1d(prob.fixed, self.columns[np.asarray(cols, dtype=np.int64)])
        if sites.size > prob.p:
            raise ValueError(f"{sites.size} sites chosen for p = {prob.p}")
        if sites.size < prob.p:
            # rare (only when dominance left fewer useful columns than p): a few mat-vecs
            while sites.size < prob.p:
                counts = coverage_counts(prob.cover, sites)
                gains = marginal_gains(prob.cover, prob.weights, counts, prob.backup_weight)
                gains[sites] = -np.inf
                sites = np.union1d(sites, [int(np.argmax(gains))])
        return sites.astype(np.int64)


def identity(problem: CoverageProblem) -> Reduction:
    """The unreduced model: every demand point and candidate, fixed sites as columns."""
    n, m = problem.cover.shape
    uncoverable = np.diff(problem.cover.indptr) == 0
    return Reduction(
        problem=problem,
        cover=problem.cover,
        weights=problem.weights,
        offset=np.zeros(n, dtype=np.int32),
        columns=np.arange(m, dtype=np.int64),
        p=problem.p,
        fixed_cols=problem.fixed,
        exact_p=True,
        constant=0.0,
        stats=ReductionStats(
            demand_points=n,
            candidates=m,
            rows=n,
            columns=m,
            uncoverable=int(uncoverable.sum()),
            uncoverable_weight=float(problem.weights[uncoverable].sum()),
            settled=0,
            zero_weight=0,
            merged=0,
            dominated=0,
            seconds=0.0,
        ),
    )


def reduce(problem: CoverageProblem, *, dominance: bool = True) -> Reduction:
    """Reduce ``problem`` as described in the module docstring (all steps vectorised)."""
    t0 = time.perf_counter()
    a, w, beta = problem.cover, problem.weights, problem.backup_weight
    cap = 2 if beta > 0 else 1
    n, m = a.shape
    free = np.ones(m, dtype=np.bool_)
    free[problem.fixed] = False
    free_cols = np.flatnonzero(free)

    f = coverage_counts(a, problem.fixed)
    b = a[:, free_cols]
    free_nnz = np.diff(b.indptr)
    uncoverable = np.diff(a.indptr) == 0
    settled = ~uncoverable & ((f >= cap) | (free_nnz == 0))
    constant = float(w[settled & (f >= 1)].sum()) + beta * float(w[settled & (f >= 2)].sum())
    zero = ~uncoverable & ~settled & (w <= 0)
    keep = ~uncoverable & ~settled & ~zero

    rows_b = b[np.flatnonzero(keep)]
    off = f[keep].astype(np.int32)
    rows_b, wk, off = _merge(rows_b, w[keep], off)

    cols = np.arange(rows_b.shape[1])
    if dominance and rows_b.shape[1]:
        drop = _dominated(rows_b, off, cap)
        cols = np.flatnonzero(~drop)
        rows_b = rows_b[:, cols]
        rows_b, wk, off = _merge(rows_b, wk, off)
    rows_b.sort_indices()
    n_kept = int(keep.sum())
    return Reduction(
        problem=problem,
        cover=rows_b,
        weights=wk,
        offset=off,
        columns=free_cols[cols].astype(np.int64),
        p=problem.p - problem.fixed.size,
        fixed_cols=np.zeros(0, dtype=np.int64),
        exact_p=False,
        constant=constant,
        stats=ReductionStats(
            demand_points=n,
            candidates=m,
            rows=int(rows_b.shape[0]),
            columns=int(cols.size),
            uncoverable=int(uncoverable.sum()),
            uncoverable_weight=float(w[uncoverable].sum()),
            settled=int(settled.sum()),
            zero_weight=int(zero.sum()),
            merged=n_kept - int(rows_b.shape[0]),
            dominated=int(free_cols.size - cols.size),
            seconds=time.perf_counter() - t0,
        ),
    )


def restrict(
    red: Reduction, *, zero: NDArray[np.bool_], one: NDArray[np.bool_]
) -> tuple[Reduction, IntArray]:
    """``red`` with the columns of ``zero`` removed and those of ``one`` made fixed — the
    model left after variable fixing (:func:`anwang.coverage.bound.fix_by_reduced_cost`).

    Rows no remaining column reaches keep the value their offset gives them, in
    ``constant``; rows that became identical are merged again. Returns the new reduction
    and, for each of its columns, the column of ``red`` it was. ``value`` and ``lift`` of
    a choice agree with ``red``'s for the same sites; ``stats`` stay those of ``red``.
    """
    zero = np.asarray(zero, dtype=np.bool_)
    one = np.asarray(one, dtype=np.bool_) & ~zero
    keep = np.flatnonzero(~zero)
    fixed = np.zeros(red.n_cols, dtype=np.bool_)
    fixed[red.fixed_cols] = True
    fixed |= one
    a = sp.csr_array(red.cover[:, keep])
    beta = red.backup_weight
    empty = np.diff(a.indptr) == 0
    off = red.offset
    constant = red.constant + float(red.weights[empty & (off >= 1)].sum())
    constant += beta * float(red.weights[empty & (off >= 2)].sum())
    rows = np.flatnonzero(~empty)
    a, w, off = _merge(a[rows], red.weights[rows], off[rows])
    fixed_cols = np.flatnonzero(fixed[keep]).astype(np.int64)
    return (
        replace(
            red,
            cover=a,
            weights=w,
            offset=off,
            columns=red.columns[keep],
            fixed_cols=fixed_cols,
            constant=constant,
            _csc=None,
        ),
        keep.astype(np.int64),
    )


def _merge(
    a: sp.csr_array, w: FloatArray, offset: NDArray[np.int32]
) -> tuple[sp.csr_array, FloatArray, NDArray[np.int32]]:
    group, first = group_rows(a, offset)
    weights = np.bincount(group, weights=w, minlength=first.size).astype(np.float64)
    out = a[first]
    out.sort_indices()
    return out, weights, offset[first]


def group_rows(a: sp.csr_array, key: NDArray[np.integer]) -> tuple[IntArray, IntArray]:
    """Group the rows of ``a`` that have the same column set and the same ``key``.

    Returns ``(group, first)``: the group of every row (numbered by first appearance) and
    the first row of every group. Exact (hash, then verify; see the module docstring).
    """
    a = sp.csr_array(a)
    a.sort_indices()
    n, m = a.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(_HASH_SEED)
    words = rng.integers(0, np.iinfo(np.uint64).max, size=(2, m), dtype=np.uint64, endpoint=True)
    lengths = np.diff(a.indptr)
    sums = np.zeros((2, n), dtype=np.uint64)
    nonempty = lengths > 0
    if a.indices.size:
        starts = a.indptr[:-1][nonempty]
        for k in range(2):
            # wrapping uint64 sums: a hash of the set, independent of order
            sums[k, nonempty] = np.add.reduceat(words[k][a.indices], starts)
    keys = np.column_stack(
        [lengths.astype(np.uint64), np.asarray(key).astype(np.int64).view(np.uint64), *sums]
    )
    _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    group = group.ravel()
    rep = first[group]
    if not np.array_equal(a[rep].indices, a.indices):
        return _group_rows_exact(a, key)
    # number the groups by first appearance
    order = np.argsort(first, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.size)
    return renumber[group].astype(np.int64), first[order].astype(np.int64)


def _group_rows_exact(a: sp.csr_array, key: NDArray[np.integer]) -> tuple[IntArray, IntArray]:
    """Slow exact grouping by the bytes of each row (only after a hash collision)."""
    seen: dict[tuple[int, bytes], int] = {}
    group = np.empty(a.shape[0], dtype=np.int64)
    first: list[int] = []
    for i in range(a.shape[0]):
        k = (int(key[i]), a.indices[a.indptr[i] : a.indptr[i + 1]].tobytes())
        g = seen.setdefault(k, len(first))
        if g == len(first):
            first.append(i)
        group[i] = g
    return group, np.asarray(first, dtype=np.int64)


def _dominated(c: sp.csr_array, offset: NDArray[np.int32], cap: int) -> NDArray[np.bool_]:
    """Columns to drop: empty ones, and those with enough dominators (module docstring)."""
    m = c.shape[1]
    csc = c.tocsc()
    nnz = np.diff(csc.indptr)
    drop = nnz == 0
    ci = sp.csr_array((np.ones(c.indices.size, dtype=np.int32), c.indices, c.indptr), shape=c.shape)
    inter = (ci.T @ ci).tocoo()
    r, k, v = inter.row, inter.col, inter.data
    # k dominates r: N(r) ⊆ N(k), and identical columns only by a lower index
    dom = (r != k) & (v == nnz[r]) & ((nnz[k] > nnz[r]) | (k < r))
    n_dom = np.bincount(r[dom], minlength=m)
    min_off = np.zeros(m, dtype=np.int64)
    has = nnz > 0
    if offset.size and np.any(offset) and csc.indices.size:
        min_off[has] = np.minimum.reduceat(offset[csc.indices], csc.indptr[:-1][has])
    need = cap - min_off
    return np.asarray(drop | (n_dom >= need))
