"""Snapping, routes, travel-cost vectors and reachability on a :class:`RoadGraph`.

Every search is one call of :func:`scipy.sparse.csgraph.dijkstra`: one source for a
route or a one-to-many vector, the reversed graph (transposed CSR) for many-to-one, and
several sources at once (``indices=[...]``, ``min_only`` for a combined coverage) for
reachability. A ``limit`` bounds the search wherever a cutoff is known. No Python loop
runs over the nodes of the graph; the only loop walks the predecessors of one route.

Costs are seconds for ``by="time"`` (free-flow times, multiplied by the time-of-day
factor of ``hour`` when one is given — see :meth:`RoadGraph.edge_weights`) and metres for
``by="distance"``. Unreachable entries of cost vectors are ``inf``.

Errors are :class:`anwang.core.errors.ValidationFailed`: a point too far from any road
(field ``lat/lon``, reason ``"outside the road network's area"``), a bad node index or
argument, and :class:`Unreachable` (code ``anwang.roads.unreachable``) when no route
exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from anwang.core.errors import FieldError, ValidationFailed
from anwang.roads.graph import EARTH_RADIUS_M, Metric, RoadGraph, haversine_m

__all__ = [
    "OUTSIDE_AREA",
    "Reachability",
    "Route",
    "Snap",
    "Snapper",
    "Unreachable",
    "many_to_one",
    "nearest_sources",
    "one_to_many",
    "reachable_within",
    "route",
    "route_nodes",
    "snapper_for",
]

OUTSIDE_AREA: Final = "outside the road network's area"
_NO_PRED: Final = -9999  # scipy's marker for "no predecessor"
_CHUNK_BYTES: Final = 64 * 2**20  # float64 distance rows per dijkstra call in reachability
_ROUTE_LIMITS: Final = (2.0, 5.0)  # bounded attempts, in multiples of the crow-fly bound


class Unreachable(ValidationFailed):
    """No route exists between the two points (for example a one-way island)."""

    code = "anwang.roads.unreachable"
    title = "No route between these points"


# --------------------------------------------------------------------------------------
# argument checks


def _metric(by: str) -> Metric:
    if by not in ("time", "distance"):
        raise ValidationFailed.on("by", "must be 'time' or 'distance'")
    return by  # type: ignore[return-value]


def _hour(hour: int | None) -> int | None:
    if hour is None:
        return None
    if isinstance(hour, bool) or not isinstance(hour, int | np.integer) or not 0 <= hour < 24:
        raise ValidationFailed.on("hour", "must be an integer from 0 to 23")
    return int(hour)


def _nodes(graph: RoadGraph, nodes: ArrayLike, field_name: str) -> NDArray[np.int64]:
    arr = np.asarray(nodes)
    if arr.dtype.kind not in "iu":
        if arr.size == 0:
            return np.zeros(arr.shape, dtype=np.int64)
        raise ValidationFailed.on(field_name, "must be node indices (integers)")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= graph.n_nodes):
        raise ValidationFailed.on(field_name, f"node index outside 0..{graph.n_nodes - 1}")
    return out


def _node(graph: RoadGraph, node: Any, field_name: str) -> int:
    arr = _nodes(graph, node, field_name)
    if arr.ndim != 0:
        raise ValidationFailed.on(field_name, "must be a single node index")
    return int(arr)


def _cutoff(by: Metric, cutoff_s: float | None, cutoff_m: float | None) -> float:
    """The dijkstra ``limit``: ``cutoff_s`` for time, ``cutoff_m`` for distance."""
    if by == "time":
        value, other, other_name = cutoff_s, cutoff_m, "cutoff_m"
    else:
        value, other, other_name = cutoff_m, cutoff_s, "cutoff_s"
    if other is not None:
        raise ValidationFailed.on(other_name, f"does not apply to by={by!r}")
    if value is None:
        return math.inf
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValidationFailed.on(
            "cutoff_s" if by == "time" else "cutoff_m", "must be a non-negative number"
        )
    return value


def _weights(
    graph: RoadGraph, by: Metric, hour: int | None, time_factors: ArrayLike | None, reverse: bool
) -> Any:
    try:
        return graph.csr(by, reverse=reverse, hour=_hour(hour), time_factors=time_factors)
    except ValueError as exc:
        raise ValidationFailed.on("time_factors", str(exc)) from None


# --------------------------------------------------------------------------------------
# snapping


class Snap(NamedTuple):
    """A point snapped to its nearest graph node."""

    node: int
    distance_m: float


class Snapper:
    """Nearest graph node of a coordinate, with a k-d tree in a local metric plane.

    Nodes are projected equirectangularly around the centre of their bounding box
    (metres east/north); the few nearest candidates from the tree are then re-ranked by
    great-circle distance, so the reported distance is exact and the projection's scale
    error (which grows with the area's north-south extent) cannot pick a farther node
    except among near-ties. ``nodes`` restricts snapping to some nodes (indices or a
    boolean mask, for example :meth:`RoadGraph.largest_component_mask`).
    ``max_distance_m`` is the default limit of :meth:`snap` and :meth:`snap_many`.
    """

    _CANDIDATES: Final = 4

    def __init__(
        self,
        graph: RoadGraph,
        *,
        nodes: ArrayLike | None = None,
        max_distance_m: float | None = None,
    ) -> None:
        if nodes is None:
            ids = np.arange(graph.n_nodes, dtype=np.int64)
        else:
            sel = np.asarray(nodes)
            if sel.dtype == bool:
                if sel.shape != (graph.n_nodes,):
                    raise ValidationFailed.on("nodes", "a mask needs one entry per node")
                ids = np.flatnonzero(sel)
            else:
                ids = _nodes(graph, sel, "nodes").ravel()
        if ids.size == 0:
            raise ValidationFailed.on("nodes", "the road network has no node to snap to")
        self.graph = graph
        self.node_ids = ids.astype(np.int64)
        self.max_distance_m = max_distance_m
        lat, lon = graph.lat[ids], graph.lon[ids]
        self._lat0 = 0.5 * (float(lat.min()) + float(lat.max()))
        self._lon0 = 0.5 * (float(lon.min()) + float(lon.max()))
        self._kx = EARTH_RADIUS_M * math.radians(1.0) * math.cos(math.radians(self._lat0))
        self._ky = EARTH_RADIUS_M * math.radians(1.0)
        self._tree = cKDTree(self._project(lat, lon), balanced_tree=False, compact_nodes=False)

    def _project(self, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack([(lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky])

    def snap(self, lat: float, lon: float, *, max_distance_m: float | None = None) -> Snap:
        """(node, great-circle distance in m) of the nearest node to one point."""
        nodes, dist = self.snap_many([lat], [lon], max_distance_m=max_distance_m)
        return Snap(int(nodes[0]), float(dist[0]))

    def snap_many(
        self,
        lat: ArrayLike,
        lon: ArrayLike,
        *,
        max_distance_m: float | None = None,
        strict: bool = True,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Vectorised :meth:`snap`: arrays of nodes and distances in metres.

        A point farther than ``max_distance_m`` (or the snapper's default) from every
        node raises ``ValidationFailed`` (field ``lat/lon``, reason
        :data:`OUTSIDE_AREA`); with ``strict=False`` its node is -1 instead.
        """
        la = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lo = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        if la.shape != lo.shape or la.ndim != 1:
            raise ValidationFailed.on("lat/lon", "lat and lon must be equally long 1-d sequences")
        if not (
            np.all(np.isfinite(la))
            and np.all(np.isfinite(lo))
            and np.all(np.abs(la) <= 90.0)
            and np.all(np.abs(lo) <= 180.0)
        ):
            raise ValidationFailed.on("lat/lon", "not a valid coordinate")
        if la.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        k = min(self._CANDIDATES, self.node_ids.size)
        _, cand = self._tree.query(self._project(la, lo), k=k)
        cand = np.asarray(cand, dtype=np.int64).reshape(la.size, k)
        ids = self.node_ids[cand]
        d = haversine_m(la[:, None], lo[:, None], self.graph.lat[ids], self.graph.lon[ids])
        best = np.argmin(d, axis=1)
        rows = np.arange(la.size)
        nodes, dist = ids[rows, best], np.asarray(d[rows, best], dtype=np.float64)
        limit = self.max_distance_m if max_distance_m is None else max_distance_m
        if limit is not None:
            far = dist > float(limit)
            if far.any():
                if strict:
                    raise ValidationFailed(
                        f"lat/lon: {OUTSIDE_AREA} ({int(far.sum())} of {la.size} points farther "
                        f"than {float(limit):.0f} m from a road)",
                        errors=[FieldError("lat/lon", OUTSIDE_AREA)],
                    )
                nodes = np.where(far, -1, nodes)
        return nodes, dist


def snapper_for(graph: RoadGraph) -> Snapper:
    """The graph's default snapper over all nodes (built once, cached on the graph)."""
    got = graph._cache.get("snapper")
    if got is None:
        got = Snapper(graph)
        graph._cache["snapper"] = got
    return got


# --------------------------------------------------------------------------------------
# routes


@dataclass(frozen=True)
class Route:
    """One route: totals, node path and GeoJSON geometry.

    ``distance_m`` and ``duration_s`` are the totals along ``nodes`` whatever metric the
    route minimised (``by``); ``duration_s`` includes the time-of-day factor of ``hour``.
    ``coordinates`` is the LineString as ``[[lon, lat], ...]`` (a route that starts and
    ends at one node repeats that point, as a LineString needs two positions).
    ``snap_m`` are the distances from the two requested points to their nodes.
    """

    distance_m: float
    duration_s: float
    nodes: NDArray[np.int64]
    coordinates: list[list[float]]
    by: Metric
    hour: int | None = None
    snap_m: tuple[float, float] = (0.0, 0.0)

    @property
    def geometry(self) -> dict[str, Any]:
        return {"type": "LineString", "coordinates": self.coordinates}

    def to_geojson(self) -> dict[str, Any]:
        """GeoJSON Feature with the totals as properties."""
        return {
            "type": "Feature",
            "geometry": self.geometry,
            "properties": {
                "distance_m": round(self.distance_m, 1),
                "duration_s": round(self.duration_s, 1),
                "by": self.by,
                "hour": self.hour,
                "snap_m": [round(self.snap_m[0], 1), round(self.snap_m[1], 1)],
            },
        }


def route(
    graph: RoadGraph,
    from_latlon: tuple[float, float],
    to_latlon: tuple[float, float],
    *,
    by: Metric = "time",
    hour: int | None = None,
    time_factors: ArrayLike | None = None,
    max_snap_m: float | None = None,
    snapper: Snapper | None = None,
) -> Route:
    """Shortest route between two (lat, lon) points, each snapped to its nearest node.

    ``max_snap_m`` rejects points farther than that from the network (``ValidationFailed``
    on ``lat/lon``); ``snapper`` replaces the graph's default one (e.g. one restricted to
    the largest strongly connected component). Raises :class:`Unreachable` when the
    destination cannot be reached.
    """
    sn = snapper if snapper is not None else snapper_for(graph)
    pts = np.asarray([from_latlon, to_latlon], dtype=np.float64)
    if pts.shape != (2, 2):
        raise ValidationFailed.on("lat/lon", "points must be (lat, lon) pairs")
    nodes, dist = sn.snap_many(pts[:, 0], pts[:, 1], max_distance_m=max_snap_m)
    r = route_nodes(
        graph, int(nodes[0]), int(nodes[1]), by=by, hour=hour, time_factors=time_factors
    )
    return Route(
        distance_m=r.distance_m,
        duration_s=r.duration_s,
        nodes=r.nodes,
        coordinates=r.coordinates,
        by=r.by,
        hour=r.hour,
        snap_m=(float(dist[0]), float(dist[1])),
    )


def route_nodes(
    graph: RoadGraph,
    source: int,
    target: int,
    *,
    by: Metric = "time",
    hour: int | None = None,
    time_factors: ArrayLike | None = None,
) -> Route:
    """Shortest route from node ``source`` to node ``target``.

    The search first runs with a ``limit`` of a few times a crow-fly lower bound of the
    cost (exact for every node within the limit) and widens only if the target lies
    beyond it, so short urban routes do not search the whole city.
    """
    by = _metric(by)
    s = _node(graph, source, "from")
    t = _node(graph, target, "to")
    mat = _weights(graph, by, hour, time_factors, reverse=False)
    bound = _lower_bound(graph, by, s, t, hour, time_factors)
    limits = [bound * f + 1.0 for f in _ROUTE_LIMITS] + [math.inf]
    for limit in limits:
        dist, pred = dijkstra(mat, directed=True, indices=s, return_predecessors=True, limit=limit)
        if math.isfinite(dist[t]):
            break
    else:
        raise Unreachable(
            "the destination cannot be reached by road from the start point",
            errors=[FieldError("to", "cannot be reached by road from the start point")],
        )
    path = [t]
    node = t
    while node != s:
        node = int(pred[node])
        if node == _NO_PRED:  # pragma: no cover - dijkstra guarantees a chain
            raise RuntimeError("broken predecessor chain")
        path.append(node)
    nodes = np.asarray(path[::-1], dtype=np.int64)
    edges = graph.edge_ids(nodes[:-1], nodes[1:])
    length = float(graph.length_m[edges].astype(np.float64).sum())
    times = graph.edge_weights("time", hour=_hour(hour), time_factors=time_factors)
    duration = float(times[edges].sum())
    coords_nodes = nodes if nodes.size > 1 else np.repeat(nodes, 2)
    coordinates = np.column_stack(
        [np.round(graph.lon[coords_nodes], 6), np.round(graph.lat[coords_nodes], 6)]
    ).tolist()
    return Route(
        distance_m=length,
        duration_s=duration,
        nodes=nodes,
        coordinates=coordinates,
        by=by,
        hour=_hour(hour),
    )


def _lower_bound(
    graph: RoadGraph,
    by: Metric,
    s: int,
    t: int,
    hour: int | None,
    time_factors: ArrayLike | None,
) -> float:
    """A cost no route from ``s`` to ``t`` can beat: crow-fly metres, or crow-fly metres
    at the graph's fastest edge speed."""
    crow = float(haversine_m(graph.lat[s], graph.lon[s], graph.lat[t], graph.lon[t]))
    if by == "distance":
        return crow
    factors = None if time_factors is None else np.asarray(time_factors).tobytes()
    key = ("w", "vmax", hour, factors)
    vmax = graph._cache.get(key)
    if vmax is None:
        w = graph.edge_weights("time", hour=_hour(hour), time_factors=time_factors)
        vmax = float(np.max(graph.length_m / w)) if w.size else 1.0
        graph._remember(key, vmax)
    return crow / vmax


# --------------------------------------------------------------------------------------
# cost vectors


def one_to_many(
    graph: RoadGraph,
    source_node: int,
    targets: ArrayLike | None = None,
    *,
    cutoff_s: float | None = None,
    cutoff_m: float | None = None,
    by: Metric = "time",
    hour: int | None = None,
    time_factors: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Cost from ``source_node`` to each of ``targets`` (all nodes when None).

    One bounded Dijkstra: entries beyond ``cutoff_s`` (time) / ``cutoff_m`` (distance)
    or unreachable are ``inf``.
    """
    by = _metric(by)
    s = _node(graph, source_node, "source_node")
    limit = _cutoff(by, cutoff_s, cutoff_m)
    mat = _weights(graph, by, hour, time_factors, reverse=False)
    dist = np.asarray(dijkstra(mat, directed=True, indices=s, limit=limit), dtype=np.float64)
    return dist if targets is None else dist[_nodes(graph, targets, "targets")]


def many_to_one(
    graph: RoadGraph,
    sources: ArrayLike | None,
    target_node: int,
    *,
    cutoff_s: float | None = None,
    cutoff_m: float | None = None,
    by: Metric = "time",
    hour: int | None = None,
    time_factors: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Cost from each of ``sources`` (all nodes when None) to ``target_node``.

    One bounded Dijkstra on the reversed graph (transposed CSR) from the target.
    """
    by = _metric(by)
    t = _node(graph, target_node, "target_node")
    limit = _cutoff(by, cutoff_s, cutoff_m)
    mat = _weights(graph, by, hour, time_factors, reverse=True)
    dist = np.asarray(dijkstra(mat, directed=True, indices=t, limit=limit), dtype=np.float64)
    return dist if sources is None else dist[_nodes(graph, sources, "sources")]


def nearest_sources(
    graph: RoadGraph,
    target_node: int,
    candidates: ArrayLike,
    *,
    k: int | None = 1,
    cutoff_s: float | None = None,
    cutoff_m: float | None = None,
    by: Metric = "time",
    hour: int | None = None,
    time_factors: ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The ``k`` candidates (e.g. the nodes of available units) that reach
    ``target_node`` soonest: (positions in ``candidates``, costs), best first.

    One reverse Dijkstra from the target bounded by the cutoff, then a partial sort;
    candidates that cannot arrive within the cutoff are left out, so fewer than ``k``
    (or none) may come back. ``k=None`` returns every candidate that arrives in time.
    """
    cand = _nodes(graph, candidates, "candidates").ravel()
    costs = many_to_one(
        graph,
        cand,
        target_node,
        cutoff_s=cutoff_s,
        cutoff_m=cutoff_m,
        by=by,
        hour=hour,
        time_factors=time_factors,
    )
    finite = np.flatnonzero(np.isfinite(costs))
    if k is not None:
        if k < 1:
            raise ValidationFailed.on("k", "must be at least 1")
        if finite.size > k:
            finite = finite[np.argpartition(costs[finite], k - 1)[:k]]
    order = finite[np.lexsort((finite, costs[finite]))]
    return order.astype(np.int64), costs[order]


# --------------------------------------------------------------------------------------
# reachability


@dataclass(frozen=True)
class Reachability:
    """Travel times from several sources, bounded by the largest cutoff.

    Per source (``combined=False``): ``time_s`` has shape (n_sources, n_nodes).
    Combined: shape (n_nodes,), the time from the quickest source, and ``nearest`` names
    that source (a position in ``sources``, -1 where no source arrives in time).
    Entries beyond the largest cutoff are ``inf``.
    """

    sources: NDArray[np.int64]
    cutoffs_s: NDArray[np.float64]
    time_s: NDArray[np.float32]
    nearest: NDArray[np.int32] | None = None

    @property
    def combined(self) -> bool:
        return self.time_s.ndim == 1

    def within(self, cutoff_s: float) -> NDArray[np.bool_]:
        """Boolean array (same shape as ``time_s``): reached within ``cutoff_s`` seconds."""
        if cutoff_s > float(self.cutoffs_s[-1]):
            raise ValidationFailed.on("cutoff_s", "larger than the largest computed cutoff")
        return self.time_s <= np.float32(cutoff_s)

    def band(self) -> NDArray[np.int8]:
        """Index of the smallest cutoff each node is reached within, -1 if none (same shape
        as ``time_s``): the isochrone ring of each node."""
        b = np.searchsorted(self.cutoffs_s.astype(np.float32), self.time_s, side="left")
        return np.where(b < self.cutoffs_s.size, b, -1).astype(np.int8)

    def counts(self) -> NDArray[np.int64]:
        """Nodes reached within each cutoff: shape (n_sources, n_cutoffs), or (n_cutoffs,)."""
        per_cut = [(self.time_s <= c).sum(axis=-1) for c in self.cutoffs_s.astype(np.float32)]
        return np.stack(per_cut, axis=-1).astype(np.int64)


def reachable_within(
    graph: RoadGraph,
    sources: ArrayLike,
    cutoffs: Sequence[float] = (60.0, 180.0, 300.0),
    *,
    combined: bool = False,
    hour: int | None = None,
    time_factors: ArrayLike | None = None,
    reverse: bool = False,
) -> Reachability:
    """Which nodes each source reaches within each cutoff (seconds): isochrones, coverage.

    Multi-source Dijkstra bounded by the largest cutoff. ``combined=True`` runs a single
    ``min_only`` search: the time from the quickest source to every node (coverage of a
    set of posts). Otherwise each source gets its own row; sources are searched in
    chunks so the float64 work array stays small. ``reverse=True`` measures travel
    *to* the sources instead (who can reach the post within the cutoff).
    """
    src = _nodes(graph, sources, "sources").ravel()
    cuts = np.sort(np.asarray(cutoffs, dtype=np.float64).ravel())
    if cuts.size == 0 or not np.all(np.isfinite(cuts)) or cuts[0] < 0:
        raise ValidationFailed.on("cutoffs", "must be one or more non-negative numbers of seconds")
    limit = float(cuts[-1])
    mat = _weights(graph, "time", hour, time_factors, reverse=reverse)
    n = graph.n_nodes
    if src.size == 0:
        shape = (n,) if combined else (0, n)
        nearest = np.full(n, -1, dtype=np.int32) if combined else None
        return Reachability(src, cuts, np.full(shape, np.inf, dtype=np.float32), nearest)
    if combined:
        dist, _, origin = dijkstra(
            mat, directed=True, indices=src, limit=limit, min_only=True, return_predecessors=True
        )
        order = np.argsort(src, kind="stable")
        pos = order[np.searchsorted(src[order], np.maximum(origin, 0))]
        nearest = np.where(origin >= 0, pos, -1).astype(np.int32)
        return Reachability(src, cuts, dist.astype(np.float32), nearest)
    out = np.empty((src.size, n), dtype=np.float32)
    chunk = max(1, _CHUNK_BYTES // (8 * max(n, 1)))
    for start in range(0, src.size, chunk):
        part = src[start : start + chunk]
        out[start : start + part.size] = dijkstra(
            mat, directed=True, indices=part, limit=limit
        ).reshape(part.size, n)
    return Reachability(src, cuts, out)
