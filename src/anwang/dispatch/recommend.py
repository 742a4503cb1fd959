"""Ranking units by travel time to an incident, and the coverage each unit alone holds.

Pure numpy/scipy over a :class:`~anwang.roads.graph.RoadGraph`; no database.

**Ranking** (:func:`rank_units`) runs ONE bounded Dijkstra on the reversed graph from
the incident's node. Its distances at the units' nodes are their travel times *to* the
incident, and its predecessor tree holds every unit's fastest route at once: on the
reversed graph ``pred[v]`` is the next node from ``v`` towards the incident on the road,
so walking ``pred`` from a unit's node traces its route forward. Only the routes of the
units asked for are walked. Ties are broken by the units' order, so the ranking is
deterministic.

**Coverage held alone** (:func:`coverage_held`): for units standing at ``sources``,
which demand nodes each reaches within ``cutoff_s``, and how much demand weight only that
unit reaches. Sending the unit away loses exactly that weight from the city's coverage
(until it is back). Searches are bounded by the cutoff and run in chunks of sources,
keeping only the reached (sparse) part of each chunk, so memory stays small on large
graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.csgraph import dijkstra

from anwang.core.errors import ValidationFailed
from anwang.roads.graph import RoadGraph

__all__ = [
    "CoverageHeld", "Ranking", "coverage_held", "rank_nearest", "rank_units", "route_of",
]

_NO_PRED: Final = -9999
_CHUNK_BYTES: Final = 64 * 2**20
_CHUNK_SOURCES: Final = 16


@dataclass(frozen=True, eq=False)
class Ranking:
    """Travel times of every unit to the incident, and their order.

    ``eta_s[i]`` is unit ``i``'s time in seconds (``inf`` beyond the cutoff or
    unreachable); ``order`` lists unit positions best first, units that cannot arrive
    last (in their given order).
    """

    incident_node: int
    unit_nodes: NDArray[np.int64]
    eta_s: NDArray[np.float64]
    order: NDArray[np.int64]
    _pred: NDArray[np.int32]

    def reachable(self, i: int) -> bool:
        return bool(math.isfinite(self.eta_s[i]))


def rank_units(
    graph: RoadGraph,
    incident_node: int,
    unit_nodes: ArrayLike,
    *,
    cutoff_s: float | None = None,
    hour: int | None = None,
) -> Ranking:
    """Rank units standing at ``unit_nodes`` by their travel time to ``incident_node``."""
    nodes = np.asarray(unit_nodes, dtype=np.int64).ravel()
    n = graph.n_nodes
    if not 0 <= int(incident_node) < n or (nodes.size and (nodes.min() < 0 or nodes.max() >= n)):
        raise ValidationFailed.on("node", f"node index outside 0..{n - 1}")
    limit = math.inf if cutoff_s is None else float(cutoff_s)
    mat = graph.csr("time", reverse=True, hour=hour)
    dist, pred = dijkstra(
        mat, directed=True, indices=int(incident_node), limit=limit, return_predecessors=True
    )
    eta = np.asarray(dist, dtype=np.float64)[nodes]
    order = np.lexsort((np.arange(nodes.size), eta)).astype(np.int64)
    return Ranking(int(incident_node), nodes, eta, order, np.asarray(pred, dtype=np.int32))


def rank_nearest(
    graph: RoadGraph,
    incident_node: int,
    unit_nodes: ArrayLike,
    *,
    want: int,
    cutoffs_s: tuple[float, ...] = (900.0, 3600.0),
    hour: int | None = None,
) -> Ranking:
    """:func:`rank_units` bounded by the first of ``cutoffs_s`` within which at least
    ``want`` units (or all of them) arrive: a city-wide search only when the incident
    is far from everyone, so the usual search stays small."""
    nodes = np.asarray(unit_nodes, dtype=np.int64).ravel()
    need = min(want, nodes.size)
    ranking = None
    for cutoff in cutoffs_s:
        ranking = rank_units(graph, incident_node, nodes, cutoff_s=cutoff, hour=hour)
        if int(np.isfinite(ranking.eta_s).sum()) >= need:
            break
    assert ranking is not None, "give at least one cutoff"
    return ranking


@dataclass(frozen=True)
class RouteOf:
    nodes: NDArray[np.int64]
    distance_m: float
    duration_s: float
    coordinates: list[list[float]]


def route_of(graph: RoadGraph, ranking: Ranking, i: int, *, hour: int | None = None) -> RouteOf:
    """The fastest route of unit ``i`` of ``ranking`` to the incident (forward order).

    Raises ``ValidationFailed`` if that unit cannot reach the incident.
    """
    if not ranking.reachable(i):
        raise ValidationFailed.on("unit", "cannot reach the incident by road")
    node = int(ranking.unit_nodes[i])
    target = ranking.incident_node
    path = [node]
    while node != target:
        node = int(ranking._pred[node])
        if node == _NO_PRED:  # pragma: no cover - dijkstra guarantees a chain
            raise RuntimeError("broken predecessor chain")
        path.append(node)
    nodes = np.asarray(path, dtype=np.int64)
    if nodes.size > 1:
        edges = graph.edge_ids(nodes[:-1], nodes[1:])
        length = float(graph.length_m[edges].astype(np.float64).sum())
        duration = float(graph.edge_weights("time", hour=hour)[edges].sum())
    else:
        length = duration = 0.0
    drawn = nodes if nodes.size > 1 else np.repeat(nodes, 2)
    coords = np.column_stack(
        [np.round(graph.lon[drawn], 6), np.round(graph.lat[drawn], 6)]
    ).tolist()
    return RouteOf(nodes, length, duration, coords)


@dataclass(frozen=True, eq=False)
class CoverageHeld:
    """Coverage of a set of units within one cutoff.

    ``total_weight`` is the demand of the whole graph; ``covered_weight`` what at
    least one unit reaches; ``alone_weight[i]`` what only unit ``i`` reaches — the loss
    if it leaves. ``reach`` is the sparse ``n_sources × n_nodes`` "reaches" matrix.
    """

    cutoff_s: float
    total_weight: float
    covered_weight: float
    alone_weight: NDArray[np.float64]
    reach: sp.csr_array

    @property
    def covered_share(self) -> float:
        return self.covered_weight / self.total_weight if self.total_weight > 0 else 0.0

    def alone_share(self, i: int) -> float:
        return float(self.alone_weight[i]) / self.total_weight if self.total_weight > 0 else 0.0


def coverage_held(
    graph: RoadGraph,
    sources: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    cutoff_s: float = 180.0,
    hour: int | None = None,
) -> CoverageHeld:
    """Which nodes each source reaches within ``cutoff_s`` and what it alone covers.

    ``weights`` is the demand per node (1 each when omitted).
    """
    src = np.asarray(sources, dtype=np.int64).ravel()
    n = graph.n_nodes
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise ValidationFailed.on("weights", "one demand weight per node")
    if src.size and (src.min() < 0 or src.max() >= n):
        raise ValidationFailed.on("sources", f"node index outside 0..{n - 1}")
    mat = graph.csr("time", hour=hour)
    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    # small chunks keep each distance block in the CPU cache while it is scanned
    chunk = max(1, min(_CHUNK_SOURCES, _CHUNK_BYTES // (8 * max(n, 1))))
    for start in range(0, src.size, chunk):
        part = src[start : start + chunk]
        d = dijkstra(mat, directed=True, indices=part, limit=float(cutoff_s))
        r, c = np.nonzero(np.reshape(d, (part.size, n)) <= cutoff_s)
        rows.append(r.astype(np.int64) + start)
        cols.append(c.astype(np.int64))
    r_all = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c_all = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    reach = sp.csr_array(
        (np.ones(r_all.size, dtype=np.bool_), (r_all, c_all)), shape=(src.size, n)
    )
    counts = np.bincount(c_all, minlength=n)
    alone_node = counts == 1
    alone = np.bincount(r_all[alone_node[c_all]], weights=w[c_all[alone_node[c_all]]],
                        minlength=src.size).astype(np.float64)
    return CoverageHeld(
        cutoff_s=float(cutoff_s),
        total_weight=float(w.sum()),
        covered_weight=float(w[counts > 0].sum()),
        alone_weight=alone,
        reach=reach,
    )
