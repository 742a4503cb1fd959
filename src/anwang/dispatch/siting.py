"""Response circles on the road network: demand, coverage shares, isochrones, siting.

This is the platform side of :mod:`anwang.coverage` (the pure engine): it turns the
database (posts, demand layers, jurisdictions) and the road graph into arrays, hands
them to the engine, and turns the answers back into JSON, GeoJSON and CSV.

**Demand.** Demand points are road nodes of the graph's main component, weighted:

* by a demand layer (``population`` by default when one is loaded): each weighted
  point adds its weight to its nearest node (points farther than
  :data:`anwang.roads.service.MAX_SNAP_M` from the network are left out and counted);
* by past incidents (the reserved layer :data:`PAST_INCIDENTS`, the last 365 days);
* without a layer, every node weighs 1 (road density stands in for activity).

Only nodes with positive weight are demand rows. Each node is labelled with the
district it lies in, for the per-district shares.

**Reach.** Travel *from* a post to the demand (forward search), by free-flow time,
bounded by the largest threshold; reached (node, time) pairs are kept sparse.

**Isochrones** are drawn as the union of H3 cells (resolution :data:`ISO_RESOLUTION`,
about 0.7 km² each) that hold a reached road node: faithful to the network (a motorway
without exits reaches little around it) and cheap to draw.

**Siting** chooses ``p`` quick-response posts among candidates — today's posts, one
road node per H3 cell where there is demand (the nodes of highest weight, at most
``max_candidates``), and any imported list — with :func:`anwang.coverage.optimize`
(greedy + interchange, then the exact MCLP on HiGHS with a time limit) and compares
the result with today's siting (:func:`anwang.coverage.compare`).

Everything heavy runs synchronously in the caller's thread: routes call it from
FastAPI's thread pool (plain ``def`` routes), never on the event loop.
"""

from __future__ import annotations

import csv
import io
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, TypeVar, cast

import h3
import numpy as np
import scipy.sparse as sp
import shapely
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra
from shapely.geometry import shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from anwang import coverage
from anwang.auth import service as auth_service
from anwang.core import audit
from anwang.core.errors import FieldError, NotFound, ValidationFailed
from anwang.core.events import new_id, utcnow
from anwang.dispatch import posts as posts_service
from anwang.dispatch.config import PostKind
from anwang.dispatch.models import Incident, Post, SitingPlan
from anwang.roads.graph import RoadGraph
from anwang.roads.service import LoadedGraph, snap_points

DEFAULT_LAYER: Final = "population"
PAST_INCIDENTS: Final = "past_incidents"
ISO_RESOLUTION: Final = 8
CANDIDATE_RESOLUTION: Final = 8
DEFAULT_MINUTES: Final = (1.0, 3.0, 5.0)
MAX_MINUTES: Final = 30.0
_CHUNK_BYTES: Final = 64 * 2**20


# --------------------------------------------------------------------------------------
# small caches keyed by what they derive from


_T = TypeVar("_T")


class _Lru:
    """A small thread-safe LRU cache."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key: Any, value: _T) -> _T:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


_demand_cache = _Lru(8)
_district_cache = _Lru(4)
_cell_cache = _Lru(4)


# --------------------------------------------------------------------------------------
# demand


@dataclass(frozen=True, eq=False)
class Demand:
    """Demand weight per node of the graph and the demand rows (nodes with weight)."""

    layer: str | None
    weights: NDArray[np.float64]
    """One weight per graph node (0 off the main component)."""
    nodes: NDArray[np.int64]
    """Nodes with positive weight, ascending: the rows of every cover matrix."""
    points: int
    """Points of the layer that were used (0 for uniform node weights)."""
    outside: int
    """Points of the layer too far from the network to count."""

    @property
    def row_weights(self) -> NDArray[np.float64]:
        return self.weights[self.nodes]

    @property
    def total(self) -> float:
        return float(self.weights.sum())


def _main_mask(graph: RoadGraph) -> NDArray[np.bool_]:
    return graph.largest_component_mask(strong=True)


def demand(session: Session, loaded: LoadedGraph, layer: str | None = None) -> Demand:
    """The demand of ``layer`` (see the module docstring); ``None`` picks
    :data:`DEFAULT_LAYER` when it is loaded, else uniform node weights."""
    if layer is None:
        layer = DEFAULT_LAYER if posts_service.layer_version(session, DEFAULT_LAYER) else ""
    if layer == PAST_INCIDENTS:
        since = utcnow() - timedelta(days=365)
        rows = session.execute(
            select(Incident.lat, Incident.lon).where(Incident.received_at >= since)
            .execution_options(skip_scope=True)
        ).all()
        version: Any = ("incidents", len(rows), hash(tuple(rows)))
        key = (loaded.version, layer, version)
        got = _demand_cache.get(key)
        if got is not None:
            return cast(Demand, got)
        lat = [r[0] for r in rows]
        lon = [r[1] for r in rows]
        return _demand_cache.put(key, _snap_demand(loaded, layer, lat, lon, [1.0] * len(rows)))
    if layer:
        posts_service.check_layer(layer)
        version = posts_service.layer_version(session, layer)
        if version is None:
            raise NotFound(f"no demand layer {layer!r} is loaded",
                           code="anwang.dispatch.layer_not_found")
        key = (loaded.version, layer, version)
        got = _demand_cache.get(key)
        if got is not None:
            return cast(Demand, got)
        lat, lon, w = posts_service.layer_points(session, layer)
        return _demand_cache.put(key, _snap_demand(loaded, layer, lat, lon, w))
    key = (loaded.version, "", None)
    got = _demand_cache.get(key)
    if got is not None:
        return cast(Demand, got)
    weights = _main_mask(loaded.graph).astype(np.float64)
    return _demand_cache.put(key, Demand(None, weights, np.flatnonzero(weights > 0), 0, 0))


def _snap_demand(
    loaded: LoadedGraph, layer: str, lat: Sequence[float], lon: Sequence[float],
    w: Sequence[float],
) -> Demand:
    n = loaded.graph.n_nodes
    weights = np.zeros(n, dtype=np.float64)
    outside = 0
    if lat:
        nodes, _ = snap_points(loaded, np.asarray(lat), np.asarray(lon))
        ok = nodes >= 0
        outside = int((~ok).sum())
        weights = np.bincount(nodes[ok], weights=np.asarray(w, dtype=np.float64)[ok],
                              minlength=n).astype(np.float64)
    return Demand(layer, weights, np.flatnonzero(weights > 0), len(lat) - outside, outside)


# --------------------------------------------------------------------------------------
# districts and H3 cells of the nodes


@dataclass(frozen=True, eq=False)
class Districts:
    codes: list[str]
    names: dict[str, str]
    label: NDArray[np.str_]
    """District code per graph node ('' outside every district)."""


def districts(session: Session, loaded: LoadedGraph) -> Districts:
    rows = auth_service.list_jurisdictions(session, level="district")
    version = tuple((j.code, len(j.geometry), hash(j.geometry)) for j in rows)
    key = (loaded.version, version)
    got = _district_cache.get(key)
    if got is not None:
        return cast(Districts, got)
    g = loaded.graph
    label = np.full(g.n_nodes, "", dtype=object)
    if rows:
        tree = shapely.STRtree([shape(_json(j.geometry)) for j in rows])
        pts = shapely.points(g.lon, g.lat)
        pi, di = tree.query(pts, predicate="intersects")
        codes = np.array([j.code for j in rows], dtype=object)
        # a node on a shared border belongs to the larger code, as in auth.locate
        order = np.lexsort((codes[di], pi))
        label[pi[order]] = codes[di[order]]
    result = Districts(
        [j.code for j in rows], {j.code: j.name for j in rows}, label.astype(str)
    )
    return _district_cache.put(key, result)


def _json(text: str) -> Any:
    import json

    return json.loads(text)


def node_cells(loaded: LoadedGraph, resolution: int = ISO_RESOLUTION) -> NDArray[np.object_]:
    """The H3 cell of every node (cached per graph version and resolution)."""
    key = (loaded.version, resolution)
    got = _cell_cache.get(key)
    if got is not None:
        return cast(NDArray[np.object_], got)
    g = loaded.graph
    cells = np.array(
        [h3.latlng_to_cell(la, lo, resolution) for la, lo in zip(g.lat.tolist(), g.lon.tolist(),
                                                                    strict=True)],
        dtype=object,
    )
    return _cell_cache.put(key, cells)


# --------------------------------------------------------------------------------------
# reach


@dataclass(frozen=True, eq=False)
class Reach:
    """Sparse travel times from sources: entry k is source ``src[k]`` reaching node
    ``node[k]`` in ``time_s[k]`` seconds (only times ≤ the bound are kept)."""

    n_sources: int
    n_nodes: int
    src: NDArray[np.int64]
    node: NDArray[np.int64]
    time_s: NDArray[np.float32]

    def cover(self, max_s: float, rows: NDArray[np.int64]) -> sp.csr_array:
        """Boolean ``len(rows) × n_sources``: source reaches demand row within ``max_s``."""
        pos = np.full(self.n_nodes, -1, dtype=np.int64)
        pos[rows] = np.arange(rows.size)
        keep = (self.time_s <= max_s) & (pos[self.node] >= 0)
        return sp.csr_array(
            (np.ones(int(keep.sum()), dtype=np.bool_), (pos[self.node[keep]], self.src[keep])),
            shape=(rows.size, self.n_sources),
        )

    def nodes_of(self, source: int, max_s: float) -> NDArray[np.int64]:
        sel = (self.src == source) & (self.time_s <= max_s)
        return np.asarray(self.node[sel], dtype=np.int64)


def reach_from(graph: RoadGraph, sources: NDArray[np.int64], max_s: float) -> Reach:
    """Forward travel times from each source, bounded by ``max_s`` (chunked searches)."""
    n = graph.n_nodes
    mat = graph.csr("time")
    src_parts: list[NDArray[np.int64]] = []
    node_parts: list[NDArray[np.int64]] = []
    time_parts: list[NDArray[np.float32]] = []
    chunk = max(1, _CHUNK_BYTES // (8 * max(n, 1)))
    for start in range(0, sources.size, chunk):
        part = sources[start : start + chunk]
        d = np.reshape(dijkstra(mat, directed=True, indices=part, limit=max_s), (part.size, n))
        r, c = np.nonzero(d <= max_s)
        src_parts.append(r.astype(np.int64) + start)
        node_parts.append(c.astype(np.int64))
        time_parts.append(d[r, c].astype(np.float32))
    cat = np.concatenate
    return Reach(
        int(sources.size), n,
        cat(src_parts) if src_parts else np.zeros(0, np.int64),
        cat(node_parts) if node_parts else np.zeros(0, np.int64),
        cat(time_parts) if time_parts else np.zeros(0, np.float32),
    )


def parse_minutes(
    value: str | Sequence[float] | None, field_name: str = "minutes"
) -> tuple[float, ...]:
    """``"1,3,5"`` or numbers → sorted unique thresholds in minutes (0 < m ≤ 30)."""
    if value is None or value == "":
        return DEFAULT_MINUTES
    raw = value.split(",") if isinstance(value, str) else list(value)
    try:
        mins = sorted({float(m) for m in raw})
    except (TypeError, ValueError):
        raise ValidationFailed.on(field_name, "must be numbers of minutes, e.g. 1,3,5") from None
    if not mins or any(not (math.isfinite(m) and 0 < m <= MAX_MINUTES) for m in mins):
        raise ValidationFailed.on(field_name, f"each must be above 0 and at most {MAX_MINUTES:g}")
    if len(mins) > 6:
        raise ValidationFailed.on(field_name, "at most 6 thresholds")
    return tuple(mins)


# --------------------------------------------------------------------------------------
# posts on the network


@dataclass(frozen=True, eq=False)
class PlacedPosts:
    posts: list[Post]
    """The posts that lie on the network (others are in ``outside``)."""
    nodes: NDArray[np.int64]
    outside: list[Post]


def place_posts(loaded: LoadedGraph, rows: Sequence[Post]) -> PlacedPosts:
    if not rows:
        return PlacedPosts([], np.zeros(0, np.int64), [])
    nodes, _ = snap_points(loaded, np.array([p.lat for p in rows]), np.array([p.lon for p in rows]))
    ok = nodes >= 0
    return PlacedPosts(
        [p for p, k in zip(rows, ok, strict=True) if k],
        nodes[ok].astype(np.int64),
        [p for p, k in zip(rows, ok, strict=True) if not k],
    )


def current_posts(session: Session, kind: str | None = PostKind.QUICK_RESPONSE) -> list[Post]:
    return list(posts_service.list_posts(session, kind=kind, active=True))


# --------------------------------------------------------------------------------------
# analysis


def analyze(
    session: Session,
    loaded: LoadedGraph,
    *,
    minutes: Sequence[float] = DEFAULT_MINUTES,
    layer: str | None = None,
    kind: str | None = PostKind.QUICK_RESPONSE,
) -> dict[str, Any]:
    """Share of demand the active posts (of ``kind``; None: every kind) reach within each
    threshold, city-wide and per district, and what each post reaches."""
    t0 = time.perf_counter()
    mins = parse_minutes(list(minutes))
    dem = demand(session, loaded, layer)
    dist = districts(session, loaded)
    placed = place_posts(loaded, current_posts(session, kind))
    reach = reach_from(loaded.graph, placed.nodes, mins[-1] * 60.0)
    rows = dem.nodes
    covers = {m: reach.cover(m * 60.0, rows) for m in mins}
    labels = dist.label[rows] if dist.codes else None
    if rows.size == 0:
        raise ValidationFailed.on("layer", "the demand layer has no weight on the network")
    if placed.nodes.size == 0:
        empty = {m: sp.csr_array((rows.size, 1), dtype=np.bool_) for m in mins}
        result = coverage.analyze(empty, dem.row_weights, [], districts=labels)
    else:
        result = coverage.analyze(covers, dem.row_weights, districts=labels)
    w = dem.row_weights
    reached = {m: np.asarray(covers[m].T.astype(np.float64) @ w) for m in mins}
    total = dem.total if dem.total > 0 else 1.0
    per_post = [
        {
            "post_id": p.id, "code": p.code, "name": p.name, "kind": p.kind, "circle": p.circle,
            "lat": p.lat, "lon": p.lon,
            "reached_share": {_mkey(m): round(float(reached[m][j]) / total, 6) for m in mins},
        }
        for j, p in enumerate(placed.posts)
    ]
    return {
        "layer": dem.layer,
        "demand_points": int(rows.size),
        "demand_weight": dem.total,
        "layer_points_outside": dem.outside,
        "posts": len(placed.posts),
        "posts_outside_network": [p.code for p in placed.outside],
        "thresholds": [
            {
                "minutes": t.minutes,
                "covered_weight": t.covered_weight,
                "total_weight": t.total_weight,
                "share": round(t.share, 6),
                "districts": [
                    {"code": d.district, "name": dist.names.get(d.district, d.district),
                     "share": round(d.share, 6), "covered_weight": d.covered_weight,
                     "total_weight": d.total_weight}
                    for d in t.districts if d.district
                ],
            }
            for t in result
        ],
        "per_post": per_post,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _mkey(m: float) -> str:
    return f"{m:g}"


# --------------------------------------------------------------------------------------
# isochrones


def isochrones(
    session: Session,
    loaded: LoadedGraph,
    *,
    minutes: Sequence[float] = DEFAULT_MINUTES,
    post_id: str | None = None,
    combined: bool = False,
    kind: str | None = PostKind.QUICK_RESPONSE,
) -> dict[str, Any]:
    """GeoJSON FeatureCollection of reachable areas: per post and threshold, or (with
    ``combined``) one area per threshold for all posts together. Features carry
    ``minutes`` and, per post, ``post_id``/``code``; larger thresholds come first so
    that the smaller areas draw on top."""
    mins = parse_minutes(list(minutes))
    rows = [posts_service.get_post(session, post_id=post_id)] if post_id else current_posts(
        session, kind)
    placed = place_posts(loaded, rows)
    if post_id and not placed.posts:
        raise ValidationFailed.on("post", "the post lies outside the road network's area")
    reach = reach_from(loaded.graph, placed.nodes, mins[-1] * 60.0)
    cells = node_cells(loaded)
    features: list[dict[str, Any]] = []
    if combined:
        for m in reversed(mins):
            sel = reach.time_s <= m * 60.0
            geom = _cells_geometry(set(cells[reach.node[sel]].tolist()))
            if geom is not None:
                features.append({"type": "Feature", "geometry": geom,
                                 "properties": {"minutes": m, "posts": len(placed.posts)}})
    else:
        for m in reversed(mins):
            for j, p in enumerate(placed.posts):
                geom = _cells_geometry(set(cells[reach.nodes_of(j, m * 60.0)].tolist()))
                if geom is None:
                    continue
                features.append({"type": "Feature", "geometry": geom, "properties": {
                    "minutes": m, "post_id": p.id, "code": p.code, "name": p.name,
                    "kind": p.kind}})
    return {"type": "FeatureCollection", "features": features}


def _cells_geometry(cells: set[str]) -> dict[str, Any] | None:
    if not cells:
        return None
    geo: dict[str, Any] = h3.cells_to_geo(sorted(cells))
    coords = geo["coordinates"]
    # h3 writes (lng, lat) tuples; GeoJSON wants lists
    if geo["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": _lists(coords)}
    return {"type": "MultiPolygon", "coordinates": [_lists(poly) for poly in coords]}


def _lists(rings: Any) -> list[list[list[float]]]:
    return [[[round(float(x), 6), round(float(y), 6)] for x, y in ring] for ring in rings]


# --------------------------------------------------------------------------------------
# siting


@dataclass(frozen=True)
class Candidate:
    lat: float
    lon: float
    node: int
    source: str
    """``existing`` (a post of today), ``network`` (generated) or ``imported``."""
    post: Post | None = None


def network_candidates(
    loaded: LoadedGraph, dem: Demand, limit: int, exclude: set[int]
) -> list[int]:
    """One node per H3 cell (resolution :data:`CANDIDATE_RESOLUTION`) that holds demand:
    its heaviest node (ties: the lowest index); the cells of most demand first, at most
    ``limit`` of them. Deterministic."""
    if limit <= 0 or dem.nodes.size == 0:
        return []
    cells = node_cells(loaded, CANDIDATE_RESOLUTION)[dem.nodes]
    w = dem.row_weights
    order = np.lexsort((dem.nodes, -w, cells.astype(str)))
    c_sorted = cells[order].astype(str)
    first = np.ones(order.size, dtype=bool)
    first[1:] = c_sorted[1:] != c_sorted[:-1]
    group = np.cumsum(first) - 1
    cell_weight = np.bincount(group, weights=w[order])
    heads = dem.nodes[order[first]]
    rank = np.lexsort((heads, -cell_weight))
    out: list[int] = []
    for k in rank:
        node = int(heads[k])
        if node in exclude:
            continue
        out.append(node)
        if len(out) >= limit:
            break
    return out


def parse_candidates_csv(text: str) -> tuple[list[tuple[float, float]], list[dict[str, Any]]]:
    """Imported candidate sites: CSV with ``lat`` and ``lon`` columns."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not {"lat", "lon"} <= set(reader.fieldnames or []):
        raise ValidationFailed.on("candidates", "the CSV needs 'lat' and 'lon' columns")
    out: list[tuple[float, float]] = []
    errors: list[dict[str, Any]] = []
    for line, row in enumerate(reader, start=2):
        try:
            r = posts_service.check_demand_row(row.get("lat"), row.get("lon"), 1)
            out.append((r.lat, r.lon))
        except ValidationFailed as exc:
            errors += [{"line": line, **e.as_dict()} for e in exc.errors]
    return out, errors


@dataclass(frozen=True)
class SitingInput:
    """A siting problem as :func:`optimize` builds it from the database and the network."""

    problem: coverage.CoverageProblem
    minutes: float
    demand: Demand
    existing: PlacedPosts
    candidates: list[Candidate]
    """The problem's columns: today's posts first, then imported and generated sites."""
    fixed: list[int]
    """Columns kept (``keep``)."""
    cover: sp.csr_array


def siting_input(
    session: Session,
    loaded: LoadedGraph,
    *,
    p: int,
    minutes: float = 3.0,
    keep: Sequence[str] = (),
    layer: str | None = None,
    generate: bool = True,
    max_candidates: int = 2000,
    imported: Sequence[tuple[float, float]] = (),
    backup_weight: float = 0.0,
) -> SitingInput:
    """The maximal-covering problem of :func:`optimize` (same arguments), checked: demand
    rows from the layer, candidate columns (today's posts, imported sites, generated
    ones) and who reaches whom within ``minutes`` on free-flow times."""
    (mins,) = parse_minutes([minutes])
    if isinstance(p, bool) or not isinstance(p, int):
        raise ValidationFailed.on("p", "must be a whole number of posts")
    if not 1 <= max_candidates <= 20_000:
        raise ValidationFailed.on("max_candidates", "must be 1 to 20,000")
    dem = demand(session, loaded, layer)
    if dem.nodes.size == 0:
        raise ValidationFailed.on("layer", "the demand layer has no weight on the network")
    existing = place_posts(loaded, current_posts(session))
    cands: list[Candidate] = [
        Candidate(post.lat, post.lon, int(node), "existing", post)
        for post, node in zip(existing.posts, existing.nodes.tolist(), strict=True)
    ]
    taken = {c.node for c in cands}
    bad_keep = [code for code in keep if code not in {c.post.code for c in cands if c.post}]
    if bad_keep:
        raise ValidationFailed.on(
            "keep", f"not an active quick-response post on the network: {', '.join(bad_keep)}")
    if imported:
        lat = np.array([a for a, _ in imported])
        lon = np.array([b for _, b in imported])
        nodes, _ = snap_points(loaded, lat, lon)
        if np.any(nodes < 0):
            i = int(np.flatnonzero(nodes < 0)[0])
            raise ValidationFailed.on(
                "candidates", f"candidate {i + 1} lies outside the road network's area")
        for (a, b), node in zip(imported, nodes.tolist(), strict=True):
            if node not in taken:
                cands.append(Candidate(a, b, int(node), "imported"))
                taken.add(int(node))
    if generate:
        room = max(0, max_candidates - len(cands))
        g = loaded.graph
        for node in network_candidates(loaded, dem, room, taken):
            cands.append(Candidate(float(g.lat[node]), float(g.lon[node]), node, "network"))
    if not cands:
        raise ValidationFailed.on("candidates", "the candidate list is empty",
                                  code="anwang.dispatch.no_candidates")
    if p > len(cands):
        raise ValidationFailed.on(
            "p", f"asks for {p} posts but there are only {len(cands)} candidates")
    cand_nodes = np.array([c.node for c in cands], dtype=np.int64)
    reach = reach_from(loaded.graph, cand_nodes, mins * 60.0)
    cover = reach.cover(mins * 60.0, dem.nodes)
    fixed = [i for i, c in enumerate(cands) if c.post is not None and c.post.code in keep]
    try:
        problem = coverage.CoverageProblem(
            cover, dem.row_weights, p, np.asarray(fixed, dtype=np.int64), backup_weight)
    except ValidationFailed as exc:
        raise _rename(exc, {"fixed": "keep", "cover": "candidates"}) from None
    return SitingInput(problem, mins, dem, existing, cands, fixed, cover)


def optimize(
    session: Session,
    loaded: LoadedGraph,
    *,
    p: int,
    minutes: float = 3.0,
    keep: Sequence[str] = (),
    layer: str | None = None,
    generate: bool = True,
    max_candidates: int = 2000,
    imported: Sequence[tuple[float, float]] = (),
    backup_weight: float = 0.0,
    time_limit_s: float = 60.0,
    actor: str,
    actor_role: str | None = None,
    save: bool = True,
    solver: coverage.Solver | None = None,
) -> dict[str, Any]:
    """Re-site ``p`` quick-response posts to reach the most demand within ``minutes``.

    ``keep`` lists post codes that must stay. Today's posts are always candidates;
    ``generate`` adds road-network candidates, ``imported`` (lat, lon) sites more. The
    answer (also stored as a :class:`SitingPlan` when ``save``) has the solver's
    ``objective``, ``bound`` and ``gap`` (a fraction), ``covered_share_before`` (today's
    posts) and ``covered_share_after``, per-district shares, the chosen ``sites``, the
    ``moves`` and the areas newly covered and no longer covered (H3 cells).
    """
    t0 = time.perf_counter()
    given = siting_input(
        session, loaded, p=p, minutes=minutes, keep=keep, layer=layer, generate=generate,
        max_candidates=max_candidates, imported=imported, backup_weight=backup_weight,
    )  # fmt: skip
    problem, mins, dem, existing = given.problem, given.minutes, given.demand, given.existing
    cands, fixed, cover = given.candidates, given.fixed, given.cover
    prep_s = time.perf_counter() - t0
    res = coverage.optimize(problem, solver=solver, time_limit_s=time_limit_s)
    before = np.arange(len(existing.posts), dtype=np.int64)
    after = res.sites
    coords = np.array([[c.lat, c.lon] for c in cands])
    cmp = coverage.compare(before, after, cover=cover, weights=dem.row_weights,
                           coordinates=coords, latlon=True)
    dist = districts(session, loaded)
    labels = dist.label[dem.nodes] if dist.codes else None
    per_district: list[dict[str, Any]] = []
    if labels is not None:
        t_before = coverage.analyze({mins: cover}, dem.row_weights,
                                    before if before.size else [], districts=labels)[0]
        t_after = coverage.analyze({mins: cover}, dem.row_weights, after, districts=labels)[0]
        per_district = [
            {"code": x.district, "name": dist.names.get(x.district, x.district),
             "share_before": round(x.share, 6), "share_after": round(y.share, 6)}
            for x, y in zip(t_before.districts, t_after.districts, strict=True) if x.district
        ]
    cells = node_cells(loaded)
    w = dem.row_weights

    def area(idx: NDArray[np.int64]) -> dict[str, Any]:
        return {"points": int(idx.size), "weight": float(w[idx].sum()),
                "share": float(w[idx].sum()) / dem.total if dem.total > 0 else 0.0,
                "cells": sorted(set(cells[dem.nodes[idx]].tolist()))}

    def site(i: int) -> dict[str, Any]:
        c = cands[i]
        return {"index": i, "lat": round(c.lat, 6), "lon": round(c.lon, 6), "source": c.source,
                "post_id": c.post.id if c.post else None,
                "code": c.post.code if c.post else None,
                "name": c.post.name if c.post else None, "kept": i in fixed}

    out: dict[str, Any] = {
        "minutes": mins,
        "p": p,
        "layer": dem.layer,
        "objective": res.objective,
        "bound": res.bound,
        "gap": res.gap,
        "status": res.status.value,
        "source": res.source,
        "covered_share_before": cmp.share_before,
        "covered_share_after": cmp.share_after,
        "covered_weight_after": res.covered_weight,
        "total_weight": dem.total,
        "candidates": {"total": len(cands),
                       "existing": sum(c.source == "existing" for c in cands),
                       "network": sum(c.source == "network" for c in cands),
                       "imported": sum(c.source == "imported" for c in cands)},
        "demand_points": int(dem.nodes.size),
        "kept": [c.post.code for c in (cands[i] for i in fixed) if c.post is not None],
        "sites": [site(int(i)) for i in after],
        "before": [site(int(i)) for i in before],
        "moves": [
            {"from": site(m.from_site) if m.from_site is not None else None,
             "to": site(m.to_site) if m.to_site is not None else None,
             "distance_m": None if m.distance_m is None else round(m.distance_m, 1)}
            for m in cmp.moves
        ],
        "newly_covered": area(cmp.newly_covered),
        "no_longer_covered": area(cmp.no_longer_covered),
        "districts": per_district,
        "posts_outside_network": [x.code for x in existing.outside],
        "reduction": {k: v for k, v in vars(res.reduction).items()
                      if isinstance(v, int | float | str)},
        "heuristic_objective": res.heuristic_objective,
        "solver_seconds": res.seconds,
        "seconds": round(time.perf_counter() - t0, 3),
        "prepare_seconds": round(prep_s, 3),
    }
    if save:
        plan = SitingPlan(
            id=new_id(), created_at=utcnow(), created_by=actor, minutes=mins, p=p,
            params={"keep": list(keep), "layer": dem.layer, "generate": generate,
                    "max_candidates": max_candidates, "imported": len(imported),
                    "backup_weight": backup_weight, "time_limit_s": time_limit_s},
            result=_finite(out),
        )
        session.add(plan)
        session.flush()
        out["plan_id"] = plan.id
        audit.record(
            session, "anwang.dispatch.siting.optimized", actor=actor, actor_role=actor_role,
            subject=f"siting:{plan.id}", result_count=p,
            data={"minutes": mins, "p": p, "keep": list(keep), "gap": _num(res.gap),
                  "share_before": round(cmp.share_before, 6),
                  "share_after": round(cmp.share_after, 6)},
        )
    return cast(dict[str, Any], _finite(out))


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _finite(obj: Any) -> Any:
    """JSON has no infinity: an unknown bound or gap becomes null."""
    if isinstance(obj, float):
        return _num(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _rename(exc: ValidationFailed, names: dict[str, str]) -> ValidationFailed:
    errors = [FieldError(names.get(e.field, e.field), e.reason) for e in exc.errors]
    first = errors[0] if errors else FieldError("p", exc.detail)
    return ValidationFailed(f"{first.field}: {first.reason}", errors=errors)


def get_plan(session: Session, *, plan_id: str) -> SitingPlan:
    plan = session.get(SitingPlan, plan_id)
    if plan is None:
        raise NotFound(f"no siting plan {plan_id!r}", code="anwang.dispatch.plan_not_found")
    return plan


def latest_plans(session: Session, *, limit: int = 10) -> Sequence[SitingPlan]:
    return session.scalars(
        select(SitingPlan).order_by(SitingPlan.created_at.desc()).limit(limit)).all()


def plan_geojson(plan: SitingPlan) -> dict[str, Any]:
    """The plan's sites (``siting: after``), today's posts (``before``), moves as lines
    and the newly / no longer covered areas, as one FeatureCollection."""
    r = plan.result
    feats: list[dict[str, Any]] = []
    for which in ("before", "sites"):
        for s in r.get(which, []):
            feats.append({"type": "Feature",
                          "geometry": {"type": "Point", "coordinates": [s["lon"], s["lat"]]},
                          "properties": {"siting": "after" if which == "sites" else "before",
                                         **{k: s[k] for k in ("index", "code", "name", "source",
                                                               "kept")}}})
    for m in r.get("moves", []):
        if m["from"] and m["to"]:
            feats.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [
                [m["from"]["lon"], m["from"]["lat"]], [m["to"]["lon"], m["to"]["lat"]]]},
                "properties": {"move": True, "from": m["from"]["code"],
                               "distance_m": m["distance_m"]}})
    for key in ("newly_covered", "no_longer_covered"):
        geom = _cells_geometry(set(r.get(key, {}).get("cells", [])))
        if geom is not None:
            feats.append({"type": "Feature", "geometry": geom, "properties": {"area": key}})
    return {"type": "FeatureCollection", "features": feats,
            "properties": {"plan_id": plan.id, "minutes": plan.minutes, "p": plan.p}}


def plan_csv(plan: SitingPlan) -> str:
    """One line per site after re-siting, with the move that brings it there."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["siting", "lat", "lon", "source", "post_code", "moved_from", "move_distance_m"])
    moved_to = {m["to"]["index"]: m for m in plan.result.get("moves", []) if m["to"]}
    for s in plan.result.get("sites", []):
        m = moved_to.get(s["index"])
        w.writerow(["after", s["lat"], s["lon"], s["source"], s["code"] or "",
                    (m["from"]["code"] or "") if m and m["from"] else "",
                    m["distance_m"] if m and m["distance_m"] is not None else ""])
    for m in plan.result.get("moves", []):
        if m["from"] and not m["to"]:
            s = m["from"]
            w.writerow(["closed", s["lat"], s["lon"], s["source"], s["code"] or "", "", ""])
    return buf.getvalue()
