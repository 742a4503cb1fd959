"""Bounds on the best siting beyond the MIP solver's own, and variables fixed by them.

Three tools, all valid whatever the dual values they start from (an interior-point dual
without crossover, a dual of an earlier model): every bound below is *computed* from the
multipliers it is given, never taken on trust from a solver.

LP dual bound — :func:`dual_bound`
    For ``maximise cᵀz + c₀`` subject to ``L ≤ Az ≤ U``, ``l ≤ z ≤ u`` (a
    :class:`~anwang.coverage.solve.MipModel`) and *any* row multipliers ``r`` — projected so
    that ``r_i ≥ 0`` where ``L_i = −∞`` and ``r_i ≤ 0`` where ``U_i = +∞`` — write the
    reduced costs ``d = c − Aᵀr``. For every ``z`` in the feasible set,
    ``cᵀz = rᵀAz + dᵀz``, and ``rᵀAz ≤ Σ_i max(r_i U_i, r_i L_i)`` (a positive multiplier
    meets the upper row bound, a negative one the lower), ``dᵀz ≤ Σ_j max(d_j l_j,
    d_j u_j)``. Their sum plus ``c₀`` is an upper bound on every feasible objective, integer
    or not: weak LP duality, written out so that it needs no optimal dual (e.g. Bertsimas &
    Tsitsiklis 1997, *Introduction to Linear Optimization*, ch. 4).

Reduced-cost fixing — :func:`fix_by_reduced_cost`
    The same inequality with ``z_j`` held at one end of ``[0, 1]``: every solution with
    ``x_j = 1`` has value at most ``D + min(d_j, 0)``, every one with ``x_j = 0`` at most
    ``D − max(d_j, 0)``, where ``D`` is the dual bound above. When that is below the
    incumbent's value ``z``, no solution *better than the incumbent* takes that value, and
    ``x_j`` can be fixed the other way (the classic reduced-cost fixing; e.g. Nemhauser &
    Wolsey 1988, *Integer and Combinatorial Optimization*). Fixing keeps
    every siting strictly better than ``z``, so the best siting is the better of ``z``
    and the optimum of the fixed model, and ``max(z, bound of the fixed model)`` bounds
    the original. On covering models the rule has a ceiling worth knowing: a site's
    reduced cost is ``Σ_{i ∈ N(j)} π_i − λ ≥ −λ`` (``λ`` the dual of ``Σ x = p``), so
    no site is fixed to 0 while the gap ``D − z`` exceeds one post's worth, ``λ``.

Lagrangian decomposition by region — :func:`decomposition_bound`
    For the plain MCLP (β = 0; Church & ReVelle 1974). Partition the demand rows into
    regions ``G_k`` (:func:`partition`) and let ``C_k`` be the sites reaching some row of
    ``G_k`` (regions share the sites near their borders). Give every pair (region ``k``,
    site ``j ∈ C_k``) a price ``u_jk``, and let ``U_j = Σ_k u_jk``. For every siting
    ``x`` the objective ``f(x) = Σ_k f_k(x)`` (``f_k`` the weight of ``G_k`` it covers)
    equals ``Σ_j U_j x_j + Σ_k (f_k(x) − Σ_{j ∈ C_k} u_jk x_j)``, so

        OPT ≤ max_{Σ x = p} Σ_j U_j x_j  +  Σ_k h_k,
        h_k = max over x ∈ {0, 1}^{C_k} of  f_k(x) − Σ_j u_jk x_j,

    each region solved on its own with no limit on its number of sites — the Lagrangian
    decomposition (variable splitting) of Guignard & Kim 1987, "Lagrangean
    decomposition: a model yielding stronger Lagrangean bounds", Mathematical Programming
    39:215–228, applied to the copies of the sites held by each region. The first term is
    the ``p`` largest ``U_j`` (fixed sites first). Prices come from the LP dual
    (``π`` on the coverage rows, ``λ`` on the cardinality row): ``u_jk = λ · π(N(j) ∩
    G_k) / π(N(j))``, λ split by the dual weight the site collects in each region. With
    these prices every region's LP relaxation is bounded by its share of the LP dual,
    ``D_k = Σ_{i ∈ G_k} (w_i − π_i)⁺ + Σ_{j ∈ C_k} (π(N(j) ∩ G_k) − u_jk)⁺``, and
    ``λp + Σ_k D_k`` *is* the LP dual bound — so solving regions exactly can only lower
    it, by the sum of the regions' own integrality gaps. A region whose LP share is met
    by the incumbent's restriction to it (to a tolerance) is already exact and is not
    solved; a region the solver cannot finish contributes its dual bound, or ``D_k``.
    Before a region is solved, its sites are fixed by its own reduced costs
    ``π(N(j) ∩ G_k) − u_jk`` against the incumbent's value there — the rule above on the
    region's model, whose slack is the region's part of the gap only; a regional siting
    breaking a fixing is worth no more than the incumbent's, which the region's value
    never falls below anyway.
    A region is itself decomposed the same way: cut its rows into parts and split each
    of its sites' prices ``u_jk`` among the parts by the dual weight the site collects in
    each (the very rule above applied to the finer partition), and ``h_k`` is at most the
    sum of the parts' values. :class:`RegionalBound` halves large regions so, and halves
    the halves, and counts each region at the smaller of its own bound and its parts' sum:
    the parts' bound is weaker than an exact region's, but a part of a few hundred sites
    takes seconds where a dense core of a thousand may not finish in minutes.
    Regions split by no row at all are the connected components of the model, where the
    bound is the textbook per-component Lagrangian bound of the cardinality constraint
    (Fisher 1981, "The Lagrangian relaxation method for solving integer programming
    problems", Management Science 27:1–18). Galvão & ReVelle (1996, "A Lagrangean
    heuristic for the maximal covering location problem", EJOR 88:114–123) relax the
    coverage rows instead; that bound equals the LP bound, which is why it is not used
    here.

What the decomposition buys depends on where the LP's integrality gap lives. Where it is
spread over the whole dense core of a city — fractional posts tiling the core — only
regions as large as the core remove it, and those are as hard as the whole model;
``docs/performance.md`` ("Post siting") measures how far it gets in a minute.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from anwang.coverage.model import FloatArray, IntArray
from anwang.coverage.reduce import Reduction

log = logging.getLogger(__name__)

__all__ = [
    "DecompositionBound",
    "RegionalBound",
    "RegionalSolve",
    "decomposition_bound",
    "dual_bound",
    "fix_by_reduced_cost",
    "partition",
]


# --------------------------------------------------------------------------------------
# LP duality


def _project(row_lower: FloatArray, row_upper: FloatArray, duals: FloatArray) -> FloatArray:
    r = np.nan_to_num(np.asarray(duals, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    r = np.where(np.isneginf(row_lower), np.maximum(r, 0.0), r)
    return np.where(np.isposinf(row_upper), np.minimum(r, 0.0), r)


def dual_bound(
    objective: FloatArray,
    offset: float,
    matrix: sp.csc_array,
    row_lower: FloatArray,
    row_upper: FloatArray,
    col_lower: FloatArray,
    col_upper: FloatArray,
    duals: FloatArray,
) -> tuple[float, FloatArray, FloatArray]:
    """Upper bound of ``maximise cᵀz + offset`` from row multipliers (module docstring).

    Returns ``(bound, r, d)``: the bound (``inf`` where an infinite variable bound meets a
    non-zero reduced cost), the projected multipliers and the reduced costs.
    """
    r = _project(row_lower, row_upper, duals)
    d = np.asarray(objective, dtype=np.float64) - np.asarray(matrix.T @ r)
    with np.errstate(invalid="ignore"):
        rows = np.where(r > 0, r * row_upper, np.where(r < 0, r * row_lower, 0.0))
        cols = np.where(d > 0, d * col_upper, np.where(d < 0, d * col_lower, 0.0))
    total = float(offset) + float(rows.sum()) + float(cols.sum())
    return (total if math.isfinite(total) else math.inf), r, d


def fix_by_reduced_cost(
    bound: float,
    reduced_costs: FloatArray,
    col_lower: FloatArray,
    col_upper: FloatArray,
    incumbent: float,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Variables in ``[0, 1]`` that no siting better than ``incumbent`` sets to 1 (first
    mask: fix to 0) or to 0 (second mask: fix to 1), given a :func:`dual_bound` and its
    reduced costs. Only variables free in ``[0, 1]`` are fixed; a relative tolerance of
    1e-9 keeps rounding from fixing anything it should not."""
    d = np.asarray(reduced_costs, dtype=np.float64)
    free = (np.asarray(col_lower) == 0.0) & (np.asarray(col_upper) == 1.0)
    tol = 1e-9 * max(1.0, abs(incumbent), abs(bound) if math.isfinite(bound) else 0.0)
    if not math.isfinite(bound):
        none = np.zeros(d.size, dtype=np.bool_)
        return none, none.copy()
    at_one = bound + np.minimum(d, 0.0)  # best with z_j = 1
    at_zero = bound - np.maximum(d, 0.0)  # best with z_j = 0
    return free & (at_one < incumbent - tol), free & (at_zero < incumbent - tol)


# --------------------------------------------------------------------------------------
# regions


def partition(red: Reduction, *, target_columns: int = 250) -> IntArray:
    """A region for every row of ``red``: connected components of the model, the large
    ones cut into about ``size / target_columns`` regions.

    Sites are joined when they reach a common row; a large component is cut by the
    farthest-point rule on that graph's hop distance (the k-centre heuristic of Gonzalez
    1985, "Clustering to minimize the maximum intercluster distance", Theoretical Computer
    Science 38:293–306): each new centre is the site farthest from the centres so far,
    and every site joins its nearest centre (one multi-source search). A row joins the
    region of most of its sites (ties: the lowest region). Deterministic.
    """
    return _partition_cover(red.cover, target_columns)


def _partition_cover(a: sp.csr_array, target_columns: int) -> IntArray:
    """:func:`partition` of a rows × sites cover matrix."""
    n, m = a.shape
    if n == 0 or m == 0:
        return np.zeros(n, dtype=np.int64)
    ones = sp.csr_array((np.ones(a.nnz, dtype=np.float32), a.indices, a.indptr), shape=a.shape)
    graph = sp.csr_array(ones.T @ ones)
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.data[:] = 1.0
    n_comp, comp = connected_components(graph, directed=False)
    label = np.empty(m, dtype=np.int64)
    next_label = 0
    target = max(1, int(target_columns))
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        k = max(1, math.ceil(members.size / target))
        if k == 1:
            label[members] = next_label
            next_label += 1
            continue
        sub = graph[members][:, members]
        centres = [0]
        dist = dijkstra(sub, directed=False, indices=0, unweighted=True)
        for _ in range(k - 1):
            far = int(np.argmax(dist))
            if dist[far] <= 0:
                break
            centres.append(far)
            dist = np.minimum(dist, dijkstra(sub, directed=False, indices=far, unweighted=True))
        _, _, source = dijkstra(
            sub, directed=False, indices=centres, unweighted=True, min_only=True,
            return_predecessors=True,
        )  # fmt: skip
        order = np.argsort(centres)
        pos = order[np.searchsorted(np.asarray(centres)[order], source)]
        label[members] = next_label + pos
        next_label += len(centres)
    return _vote(np.repeat(np.arange(n), np.diff(a.indptr)), label[a.indices], n)


def _bisect(
    a: sp.csr_array, limit: int, row_weight: FloatArray | None = None
) -> tuple[IntArray, IntArray] | None:
    """Cut the rows of a region's cover ``a`` (rows × all sites) in two when the region
    has more than ``limit`` sites: the row masks of the halves, or None.

    Sites are joined by the rows they share, weighted by how many or, given
    ``row_weight`` (one non-negative value per row), by the rows' total weight; a graph
    in pieces is
    cut into its largest piece and the rest, a connected one at the median of its
    Fiedler vector — spectral bisection (Fiedler 1973; Pothen, Simon & Liou 1990,
    "Partitioning sparse matrices with eigenvectors of graphs", SIAM J. Matrix Anal.
    Appl. 11:430–452), here the second eigenvector of the normalised adjacency
    ``D^-½ W D^-½``, which ARPACK finds from a fixed start, so the cut is deterministic.
    Halves of equal site counts share few rows, and so few sites: the parts' bounds lose
    little to their border. :class:`RegionalBound` weights the rows by their LP duals
    (plus a floor of a thousandth of the largest, so that rows of no dual weight still
    hold the graph together): the cut then runs where the dual weight is thin, a site on
    it collects its dual weight, and so its price, mostly on one side, and each half
    prices its border sites nearer to what they are worth to it. On the benchmark's H3
    instance, both halves of its urban core (1,086 sites) solved exactly, they left 262
    of the bound above the siting there, where the halves cut by row counts left 615. A
    row goes with most of its sites.
    """
    sites = np.unique(a.indices)
    if sites.size <= limit or a.shape[0] < 2:
        return None
    local = sp.csr_array(
        (np.ones(a.nnz), np.searchsorted(sites, a.indices), a.indptr),
        shape=(a.shape[0], sites.size),
    )
    weighted = local
    if row_weight is not None:
        weighted = sp.csr_array(sp.diags_array(np.asarray(row_weight, dtype=np.float64)) @ local)
    graph = sp.csr_array(local.T @ weighted)
    graph.setdiag(0)
    graph.eliminate_zeros()
    n_comp, comp = connected_components(graph, directed=False)
    if n_comp > 1:
        side = comp != np.argmax(np.bincount(comp))
    elif sites.size < 3:  # too small for the eigensolver
        side = np.arange(sites.size) >= sites.size // 2
    else:
        degree = np.asarray(graph.sum(axis=1)).ravel()
        scale = sp.diags_array(1.0 / np.sqrt(np.maximum(degree, 1e-300)))
        normalised = sp.csr_array(scale @ graph @ scale)
        start = np.sqrt(degree) + np.linspace(0.0, 1e-3, sites.size)
        try:
            values, vectors = eigsh(normalised, k=2, which="LA", v0=start)
        except ArpackNoConvergence:
            return None
        fiedler = vectors[:, int(np.argmin(values))] / np.sqrt(np.maximum(degree, 1e-300))
        side = np.zeros(sites.size, dtype=np.bool_)
        side[np.argsort(fiedler, kind="stable")[sites.size // 2 :]] = True
    rows = _vote(
        np.repeat(np.arange(a.shape[0]), np.diff(local.indptr)),
        side[local.indices].astype(np.int64), a.shape[0],
    )  # fmt: skip
    first = rows == 0
    if first.all() or not first.any():
        return None
    return np.flatnonzero(first), np.flatnonzero(~first)


def _vote(rows: IntArray, labels: IntArray, n: int) -> IntArray:
    """For each of ``n`` rows, its most frequent label among the pairs (ties: lowest)."""
    k = int(labels.max()) + 1 if labels.size else 1
    keys, counts = np.unique(rows * k + labels, return_counts=True)
    r, lab = np.divmod(keys, k)
    order = np.lexsort((lab, -counts, r))
    first = np.ones(order.size, dtype=np.bool_)
    first[1:] = r[order][1:] != r[order][:-1]
    out = np.zeros(n, dtype=np.int64)
    out[r[order][first]] = lab[order][first]
    return out


# --------------------------------------------------------------------------------------
# Lagrangian decomposition


@dataclass(frozen=True)
class RegionalSolve:
    """What a regional solve returns: an upper bound on ``h_k`` and whether it is exact."""

    bound: float
    exact: bool


RegionalSolver = Callable[
    [sp.csr_array, FloatArray, FloatArray, NDArray[np.bool_], FloatArray, float],
    RegionalSolve,
]
"""``(cover, weights, prices, fixed, start, time_limit_s) -> RegionalSolve``: maximise
``Σ_i w_i [row i covered] − Σ_j price_j x_j`` over ``x ∈ {0, 1}`` with the ``fixed`` sites
at 1, ``start`` a feasible ``x``; :mod:`anwang.coverage.solve` provides it on the MIP
solver."""


@dataclass(frozen=True)
class DecompositionBound:
    bound: float
    """Upper bound on the optimum of the reduced model (its ``constant`` included)."""
    lp_bound: float
    """The LP dual bound the prices came from (the bound before any region is solved)."""
    regions: int
    exact_at_start: int
    """Regions whose LP share the incumbent already meets: not solved."""
    solved: int
    """Regions solved exactly."""
    unfinished: int
    """Regions left at their LP share or at the solver's bound when time ran out."""
    largest_columns: int
    """Sites in the largest region solved or attempted (after fixing)."""
    fixed_out: int
    """(Site, region) pairs fixed to 0 by the region's reduced costs."""
    fixed_in: int
    """(Site, region) pairs fixed to 1."""
    seconds: float
    parts: int = 0
    """Parts the large regions were cut into (:class:`RegionalBound`)."""
    parts_solved: int = 0
    """Parts solved exactly."""
    unfinished_by_parts: int = 0
    """Unfinished regions whose parts gave a bound below their LP share."""
    left_to_parts: int = 0
    """Regions and parts not solved whole because their parts did not finish, or took
    longer than the time left."""


class RegionalBound:
    """The Lagrangian decomposition bound of the plain MCLP (module docstring), as work
    that several threads can share.

    The constructor prices every (site, region) pair from the LP duals and computes the
    regions' LP shares — the LP dual bound, before any region is solved. A region of more
    than ``split_above`` sites is also cut into parts (in halves, :func:`_bisect`, and the
    halves again until every part is small enough), each part priced by the same rule:
    a site's price in a region is the sum of its prices in the region's parts, so the
    parts decompose the region as the regions decompose the model and the parts' values
    add up to a bound on the region's. :meth:`work` then solves parts and regions,
    smallest first, until none is left or its deadline; a region counts the smaller of
    its own bound and its parts' sum. Parts take seconds where a large region of a dense
    urban core may not finish in the minute, so a large region gets a bound well below
    its LP share first and its own, tighter one only if there is time.

    Any number of threads may call :meth:`work` at once (each takes the next region, so
    two large regions are solved side by side; the solver must allow concurrent calls,
    as HiGHS with one model per call does, and releases the interpreter while it runs).
    Each region is judged against the incumbent :meth:`work` reads when it takes the
    region: a region whose LP share that siting meets is exact and skipped (and so are
    its parts), and the region's sites are fixed by its reduced costs against that
    siting's value there, so a thread started before the local search ends uses the
    siting of the moment, never a stale bound. :meth:`result` adds up what is known at
    any time.

    ``duals`` are the multipliers of the coverage rows (one per row of ``red``),
    ``cardinality_dual`` that of ``Σ x = p`` (``≤ p`` on a reduced model: then it must be
    ≥ 0, and a negative value is taken as 0); both are projected, and the bound is valid
    for any values. ``regions`` overrides :func:`partition`; ``split_above=None`` cuts
    no region into parts.
    """

    def __init__(
        self,
        red: Reduction,
        duals: FloatArray,
        cardinality_dual: float,
        *,
        target_columns: int = 250,
        regions: IntArray | None = None,
        split_above: int | None = None,
    ) -> None:
        if red.backup_weight > 0:
            raise ValueError("the decomposition bound is for the plain MCLP (no backup weight)")
        t0 = time.perf_counter()
        a, w = red.cover, red.weights
        n, m = a.shape
        pi = np.maximum(np.nan_to_num(np.asarray(duals, dtype=np.float64)), 0.0)
        lam = float(np.nan_to_num(cardinality_dual))
        if not red.exact_p:
            lam = max(lam, 0.0)
        fixed = np.zeros(m, dtype=np.bool_)
        fixed[red.fixed_cols] = True
        covered_before = red.offset >= 1  # reached by folded-in fixed sites: settled
        constant = red.constant + float(w[covered_before].sum())
        live = np.flatnonzero(~covered_before)
        label = partition(red, target_columns=target_columns) if regions is None else regions
        label = np.asarray(label, dtype=np.int64)

        # the regions (nodes 0 … top−1) and their parts: the rows of every node
        live_label = label[live]
        order = np.argsort(live_label, kind="stable")
        cuts = np.flatnonzero(np.diff(live_label[order])) + 1
        node_rows: list[IntArray] = list(np.split(live[order], cuts)) if live.size else []
        parent: list[int] = [-1] * len(node_rows)
        top = len(node_rows)
        if split_above is not None:
            limit = max(1, int(split_above))
            floor = 1e-3 * max(float(pi.max(initial=0.0)), 1e-9)  # rows of no dual weight
            k = 0
            while k < len(node_rows):  # parts are appended, and cut in turn
                rows = node_rows[k]
                halves = _bisect(sp.csr_array(a[rows]), limit, pi[rows] + floor)
                if halves is not None:
                    for half in halves:
                        node_rows.append(node_rows[k][half])
                        parent.append(k)
                k += 1
        n_nodes = len(node_rows)

        # price of every (site, node) pair: λ split by the dual weight collected there
        rows_cov = np.repeat(np.arange(n), np.diff(a.indptr))
        keep = ~covered_before[rows_cov]
        total_mass = _sum_by(a.indices[keep], weights=pi[rows_cov[keep]], minlength=m)
        total_count = _sum_by(a.indices[keep], np.ones(int(keep.sum())), minlength=m)
        member_rows = np.concatenate(node_rows) if node_rows else np.zeros(0, np.int64)
        member_node = np.repeat(np.arange(n_nodes), [r.size for r in node_rows])
        gathered = sp.csr_array(a[member_rows]) if member_rows.size else sp.csr_array((0, m))
        per_member = np.diff(gathered.indptr)
        nnz_row = np.repeat(member_rows, per_member)
        nnz_node = np.repeat(member_node, per_member)
        pair_key, pair_of = np.unique(
            nnz_node * m + gathered.indices.astype(np.int64), return_inverse=True
        )
        pair_node, pair_site = np.divmod(pair_key, m)
        pair_mass = _sum_by(pair_of, weights=pi[nnz_row], minlength=pair_key.size)
        pair_count = _sum_by(pair_of, np.ones(pair_of.size), minlength=pair_key.size)
        share = np.where(
            total_mass[pair_site] > 1e-12,
            pair_mass / np.maximum(total_mass[pair_site], 1e-300),
            pair_count / np.maximum(total_count[pair_site], 1.0),
        )
        price = lam * share
        in_any = total_count > 0
        u_total = np.where(in_any, lam, 0.0)  # the prices of a site's regions add up to λ

        # the master: the p largest U_j (fixed ones always), λp when every site is priced
        u_free = np.where(in_any & ~fixed, u_total, 0.0)
        u_free[fixed] = -np.inf
        k_free = max(red.p - int(fixed.sum()), 0)
        best_u = np.sort(u_free[np.isfinite(u_free)])[::-1][:k_free]
        if not red.exact_p:
            best_u = best_u[best_u > 0]
        master = float(u_total[fixed].sum()) + float(best_u.sum())

        # each node's share of the LP dual
        gain = pair_mass - price
        site_term = np.where(fixed[pair_site], gain, np.maximum(gain, 0.0))
        lp_share = _sum_by(pair_node, weights=site_term, minlength=n_nodes)
        lp_share += _sum_by(member_node, weights=np.maximum(w[member_rows] - pi[member_rows],
                                                            0.0), minlength=n_nodes)  # fmt: skip

        self._red, self._fixed = red, fixed
        self._rows = node_rows
        self._parent = np.asarray(parent, dtype=np.int64)
        self._children: list[list[int]] = [[] for _ in range(n_nodes)]
        for child, up in enumerate(parent):
            if up >= 0:
                self._children[up].append(child)
        self._pair_site, self._price, self._pair_mass = pair_site, price, pair_mass
        self._pairs = np.searchsorted(pair_node, np.arange(n_nodes + 1))
        self._top = top
        self._constant, self._master = constant, master
        self.lp_share = lp_share
        self.lp_bound = constant + master + float(lp_share[:top].sum())
        self._tol = 1e-9 * max(1.0, abs(self.lp_bound))
        # smallest first: parts before their region, and small regions finish where one
        # large region could take all the time (ties: the larger LP share first)
        size = np.diff(self._pairs)
        self._size = size
        self._order = np.lexsort((-lp_share, size)).tolist()
        self._value = lp_share.copy()
        self._state = np.zeros(n_nodes, dtype=np.int8)  # 0 open, 1 exact at start, 2 solved
        self._took = np.zeros(n_nodes)  # seconds of each node's solve
        self._skipped = 0
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        """Set: no region is taken any more (a solve under way ends when its solver
        checks the same event, as :mod:`anwang.coverage.solve`'s does)."""
        self._largest = self._fixed_out = self._fixed_in = 0
        self._started = t0
        self._seconds = 0.0

    @property
    def parts(self) -> int:
        """Parts of regions (nodes below the regions)."""
        return len(self._rows) - self._top

    def _take(self, deadline: float) -> int | None:
        with self._lock:
            if not self._order or self.cancelled.is_set() or (
                time.perf_counter() >= deadline - 0.05
            ):
                return None
            return int(self._order.pop(0))

    def _at_incumbent(self, k: int, chosen: NDArray[np.bool_]) -> float:
        """The incumbent's value in node ``k``: ``f_k(x) − Σ_j u_jk x_j``."""
        g_k = self._rows[k]
        reached = np.asarray(self._red.cover[g_k] @ chosen.astype(np.float64)) >= 1
        lo, hi = self._pairs[k], self._pairs[k + 1]
        paid = float(self._price[lo:hi][chosen[self._pair_site[lo:hi]]].sum())
        return float(self._red.weights[g_k][reached].sum()) - paid

    def _effective(self, k: int, value: FloatArray) -> float:
        """Node ``k``'s bound: its own, or its parts' sum if smaller."""
        kids = self._children[k]
        if not kids:
            return float(value[k])
        return min(float(value[k]), sum(self._effective(c, value) for c in kids))

    def _settled(self, k: int, chosen: NDArray[np.bool_]) -> bool:
        """Whether node ``k`` needs no solve: it or a region it is part of is exact at
        the incumbent, or is already solved (marks what it finds)."""
        up = k
        while up >= 0:
            if self._state[up] != 0:
                return True
            if self.lp_share[up] - self._at_incumbent(up, chosen) <= self._tol:
                with self._lock:
                    self._state[up] = 1
                return True
            up = int(self._parent[up])
        kids = self._children[k]
        if kids:
            with self._lock:
                value = self._value.copy()
            at_inc = self._at_incumbent(k, chosen)
            parts = sum(self._effective(c, value) for c in kids)
            if parts - at_inc <= self._tol:  # the parts meet the incumbent: exact
                with self._lock:
                    self._value[k] = min(self._value[k], max(parts, at_inc))
                    self._state[k] = 2
                return True
        return False

    def _hopeless(self, k: int, deadline: float) -> bool:
        """Whether node ``k`` is left to its parts: a solve of one of them ended
        unfinished, or they all finished but took longer together than the time left —
        a region is harder than its halves together, so it would not finish, and the
        thread is better used elsewhere (the local search, in
        :mod:`anwang.coverage.solve`). A part still being solved by another thread does
        not count: the region is solved."""
        kids = self._children[k]
        if not kids:
            return False
        with self._lock:
            failed = any(self._took[c] > 0 and self._state[c] == 0 for c in kids)
            done = all(self._state[c] != 0 for c in kids)
            took = float(self._took[kids].sum())
            if not failed and not (done and took > deadline - time.perf_counter()):
                return False
            self._skipped += 1
        log.debug("region %d left to its parts (%.1f s for them)", k, took)
        return True

    def work(
        self, incumbent: Callable[[], IntArray], solve_region: RegionalSolver, deadline: float
    ) -> None:
        """Solve regions until none is left or ``deadline`` (a :func:`time.perf_counter`
        instant); ``incumbent()`` gives the best siting (columns of the model) so far."""
        a, fixed = self._red.cover, self._fixed
        while (k := self._take(deadline)) is not None:
            chosen = np.zeros(a.shape[1], dtype=np.bool_)
            chosen[np.asarray(incumbent(), dtype=np.int64)] = True
            if self._settled(k, chosen):
                continue
            if self._hopeless(k, deadline):
                continue
            at_inc = self._at_incumbent(k, chosen)
            g_k = self._rows[k]
            lo, hi = self._pairs[k], self._pairs[k + 1]
            c_k = self._pair_site[lo:hi]  # sorted: pair keys are ordered by site
            prices = self._price[lo:hi]
            # reduced-cost fixing inside the region, against the incumbent's value there
            out, into = fix_by_reduced_cost(
                float(self.lp_share[k]), self._pair_mass[lo:hi] - prices,
                fixed[c_k].astype(np.float64), np.ones(c_k.size), at_inc,
            )  # fmt: skip
            stay = ~out
            with self._lock:
                self._fixed_out += int(out.sum())
                self._fixed_in += int(into.sum())
            if not stay.any():  # no site left: nothing covered, nothing paid
                with self._lock:
                    self._value[k] = max(0.0, at_inc)
                    self._state[k] = 2
                continue
            sub = a[g_k][:, c_k[stay]]
            reached = np.diff(sub.indptr) > 0  # rows no staying site reaches: worth 0
            sub = sp.csr_array(sub[reached])
            start = chosen[c_k[stay]] | into[stay]
            with self._lock:
                self._largest = max(self._largest, int(stay.sum()))
            t_k = time.perf_counter()
            left = deadline - t_k
            res = solve_region(
                sub, self._red.weights[g_k[reached]], prices[stay], (fixed[c_k] | into)[stay],
                start.astype(np.float64), left,
            )  # fmt: skip
            with self._lock:
                if res.bound < self._value[k]:
                    # a siting breaking a fixing is worth at most the incumbent's here
                    self._value[k] = max(res.bound, at_inc)
                if res.exact:
                    self._state[k] = 2
                self._took[k] = time.perf_counter() - t_k
            log.debug(
                "%s %d (%d rows, %d sites): %.1f s, LP share %.1f, incumbent %.1f, bound "
                "%.1f%s", "region" if k < self._top else "part", k, sub.shape[0], sub.shape[1],
                time.perf_counter() - t_k, self.lp_share[k], at_inc, res.bound,
                "" if res.exact else " (unfinished)",
            )  # fmt: skip
        with self._lock:
            self._seconds = max(self._seconds, time.perf_counter() - self._started)

    def result(self, incumbent: IntArray) -> DecompositionBound:
        """The bound from what is solved so far; regions not solved count as exact at
        the start when ``incumbent`` meets their LP share, by their parts where those
        give less than their LP share, unfinished otherwise."""
        chosen = np.zeros(self._red.cover.shape[1], dtype=np.bool_)
        chosen[np.asarray(incumbent, dtype=np.int64)] = True
        with self._lock:
            state, value = self._state.copy(), self._value.copy()
            seconds = self._seconds
        exact = solved = unfinished = by_parts = 0
        total = 0.0
        for k in range(self._top):
            effective = self._effective(k, value)
            total += effective
            if state[k] == 2:
                solved += 1
            elif state[k] == 1 or self.lp_share[k] - self._at_incumbent(k, chosen) <= (
                self._tol
            ):
                exact += 1
            else:
                unfinished += 1
                if effective < value[k] - self._tol:
                    by_parts += 1
        parts_solved = int(np.count_nonzero(state[self._top :] == 2))
        bound = self._constant + self._master + total
        return DecompositionBound(
            bound=min(bound, self.lp_bound),
            lp_bound=self.lp_bound,
            regions=self._top,
            exact_at_start=exact,
            solved=solved,
            unfinished=unfinished,
            largest_columns=self._largest,
            fixed_out=self._fixed_out,
            fixed_in=self._fixed_in,
            seconds=seconds,
            parts=self.parts,
            parts_solved=parts_solved,
            unfinished_by_parts=by_parts,
            left_to_parts=self._skipped,
        )


def decomposition_bound(
    red: Reduction,
    duals: FloatArray,
    cardinality_dual: float,
    incumbent: IntArray,
    solve_region: RegionalSolver,
    *,
    deadline: float,
    target_columns: int = 250,
    regions: IntArray | None = None,
    workers: int = 1,
    split_above: int | None = None,
) -> DecompositionBound:
    """The Lagrangian decomposition bound of the plain MCLP (module docstring), its
    regions solved by ``workers`` threads (:class:`RegionalBound`) until ``deadline``
    (a :func:`time.perf_counter` instant). ``incumbent`` (columns of ``red``) decides
    which regions are already exact and starts the others."""
    dec = RegionalBound(
        red, duals, cardinality_dual, target_columns=target_columns, regions=regions,
        split_above=split_above,
    )
    inc = np.asarray(incumbent, dtype=np.int64)
    helpers = [
        threading.Thread(target=dec.work, args=(lambda: inc, solve_region, deadline))
        for _ in range(max(int(workers), 1) - 1)
    ]
    for t in helpers:
        t.start()
    dec.work(lambda: inc, solve_region, deadline)
    for t in helpers:
        t.join()
    return dec.result(inc)


def _sum_by(index: IntArray, weights: FloatArray, *, minlength: int) -> FloatArray:
    """``np.bincount`` with weights, always float (it returns integers when empty)."""
    return np.bincount(index, weights=weights, minlength=minlength).astype(np.float64)
