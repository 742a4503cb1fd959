"""The road graph: a directed graph in CSR arrays, shared by the demo city and OSM imports.

Nodes are junctions and shape points (``lat``/``lon`` in degrees). The out-edges of node
``u`` are the positions ``indptr[u]:indptr[u+1]`` of the edge arrays; ``indices`` holds
their head nodes, sorted within each row, and there are no self-loops and no parallel
edges (:meth:`RoadGraph.from_edges` merges them), so an edge is identified by its
``(tail, head)`` pair. A two-way road is two directed edges, a one-way street one.

Per edge: ``length_m`` (metres, > 0), ``time_s`` (free-flow seconds, > 0), and optionally
``road_class`` (uint8 index into ``road_class_names``), ``maxspeed_kmh`` (a posted speed
limit taken from the source, 0 where there is none) and ``osm_way_id``. Per node,
optionally, ``osm_node_id``.

Travel times follow from the speeds: an edge with a speed limit is driven at that
limit, any other at its class speed (:data:`DEFAULT_SPEEDS_KMH`, overridable per class,
:meth:`RoadGraph.with_speeds`). Optional **time-of-day factors** multiply the free-flow
times at query time: a 24-entry array (one multiplier per hour of the day) or a 24 ×
n_classes array (one column per road class), selected by the ``hour`` argument of the
routing functions.

:meth:`RoadGraph.save` writes one ``.npz`` file of plain arrays plus a JSON header (no
pickled objects); :meth:`RoadGraph.load` reads it back without copying or sorting, so a
graph of several hundred thousand nodes loads in a few tens of milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

from anwang.core.geo import EARTH_RADIUS_M, haversine_m

__all__ = [
    "DEFAULT_SPEEDS_KMH",
    "EARTH_RADIUS_M",
    "FALLBACK_SPEED_KMH",
    "FORMAT",
    "OSM_ROAD_CLASSES",
    "Metric",
    "RoadGraph",
    "haversine_m",
]

FORMAT: Final = "anwang.roads.graph/1"
"""Format tag written into every saved graph; :meth:`RoadGraph.load` refuses others."""

"""Mean Earth radius (IUGG) in metres, used for great-circle lengths and the local frame."""

DEFAULT_SPEEDS_KMH: Final[Mapping[str, float]] = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "unclassified": 30.0,
    "residential": 30.0,
    "service": 15.0,
    "living_street": 10.0,
    "motorway_link": 70.0,
    "trunk_link": 60.0,
    "primary_link": 50.0,
    "secondary_link": 40.0,
    "tertiary_link": 35.0,
    "road": 30.0,
}
"""Free-flow speed in km/h per road class (OSM ``highway`` values)."""

FALLBACK_SPEED_KMH: Final = 30.0
"""Speed of a road class missing from the speed table."""

OSM_ROAD_CLASSES: Final[tuple[str, ...]] = tuple(DEFAULT_SPEEDS_KMH)
"""Road class names of an imported OSM graph; ``road_class`` indexes this tuple."""

Metric = Literal["time", "distance"]

_CACHE_LIMIT: Final = 64  # cached weight arrays / matrices per graph before the cache resets


def _speed_table(names: tuple[str, ...], speeds: Mapping[str, float] | None) -> NDArray[np.float64]:
    """Speed in km/h per class index: the defaults, overridden by ``speeds``."""
    merged = dict(DEFAULT_SPEEDS_KMH)
    if speeds:
        merged.update({str(k): float(v) for k, v in speeds.items()})
    bad = {k: v for k, v in merged.items() if not (math.isfinite(v) and v > 0.0)}
    if bad:
        raise ValueError(f"speeds must be positive km/h values, got {bad}")
    return np.array([merged.get(n, FALLBACK_SPEED_KMH) for n in names], dtype=np.float64)


def _as(a: ArrayLike, dtype: Any) -> Any:
    return np.ascontiguousarray(a, dtype=dtype)


@dataclass(frozen=True, eq=False)
class RoadGraph:
    """Directed road graph in CSR form (see the module docstring for the conventions).

    Build one with :meth:`from_edges`, :meth:`from_road_network` or
    :func:`anwang.roads.osm.import_pbf`, or read one with :meth:`load`. The instance is
    immutable; derived arrays (edge tails, weight matrices, the reverse graph) are cached
    on it.
    """

    indptr: NDArray[np.int32]
    indices: NDArray[np.int32]
    length_m: NDArray[np.float32]
    time_s: NDArray[np.float32]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    road_class: NDArray[np.uint8] | None = None
    road_class_names: tuple[str, ...] = ()
    maxspeed_kmh: NDArray[np.float32] | None = None
    osm_way_id: NDArray[np.int64] | None = None
    osm_node_id: NDArray[np.int64] | None = None
    speeds_kmh: Mapping[str, float] = field(default_factory=dict)
    """Speeds the times were computed with; empty when the source supplied the times."""
    time_factors: NDArray[np.float32] | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    # ----------------------------------------------------------------------------------
    # construction and validation

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "indptr", _as(self.indptr, np.int32))
        s(self, "indices", _as(self.indices, np.int32))
        s(self, "length_m", _as(self.length_m, np.float32))
        s(self, "time_s", _as(self.time_s, np.float32))
        s(self, "lat", _as(self.lat, np.float64))
        s(self, "lon", _as(self.lon, np.float64))
        s(self, "road_class_names", tuple(str(x) for x in self.road_class_names))
        s(self, "speeds_kmh", {str(k): float(v) for k, v in dict(self.speeds_kmh).items()})
        s(self, "meta", {str(k): str(v) for k, v in dict(self.meta).items()})
        for name, dtype in (
            ("road_class", np.uint8),
            ("maxspeed_kmh", np.float32),
            ("osm_way_id", np.int64),
            ("osm_node_id", np.int64),
            ("time_factors", np.float32),
        ):
            value = getattr(self, name)
            if value is not None:
                s(self, name, _as(value, dtype))
        self._validate()

    def _validate(self) -> None:
        n, m = self.lat.shape[0], self.indices.shape[0]

        def fail(msg: str) -> None:
            raise ValueError(f"invalid RoadGraph: {msg}")

        if self.lon.shape != (n,):
            fail("lat and lon differ in length")
        if self.indptr.shape != (n + 1,) or self.indptr[0] != 0 or self.indptr[-1] != m:
            fail("indptr must have n_nodes + 1 entries from 0 to n_edges")
        if n and np.any(np.diff(self.indptr) < 0):
            fail("indptr must be non-decreasing")
        for name in ("length_m", "time_s", "road_class", "maxspeed_kmh", "osm_way_id"):
            value = getattr(self, name)
            if value is not None and value.shape != (m,):
                fail(f"{name} must have one entry per edge")
        if self.osm_node_id is not None and self.osm_node_id.shape != (n,):
            fail("osm_node_id must have one entry per node")
        if m:
            if self.indices.min() < 0 or self.indices.max() >= n:
                fail("edge head out of range")
            if not (np.all(np.isfinite(self.length_m)) and self.length_m.min() > 0):
                fail("length_m must be finite and > 0")
            if not (np.all(np.isfinite(self.time_s)) and self.time_s.min() > 0):
                fail("time_s must be finite and > 0")
            key = self.edge_keys()
            if np.any(np.diff(key) <= 0):
                fail("edges must be sorted by (tail, head) without parallel edges")
            if np.any(self.edge_tails() == self.indices):
                fail("self-loops are not allowed")
        if not (np.all(np.isfinite(self.lat)) and np.all(np.isfinite(self.lon))):
            fail("coordinates must be finite")
        if (
            self.road_class is not None
            and m
            and self.road_class.max() >= max(1, len(self.road_class_names))
        ):
            fail("road_class index outside road_class_names")
        if self.time_factors is not None:
            self._check_factors(self.time_factors)

    def _check_factors(self, factors: NDArray[np.float32]) -> None:
        k = len(self.road_class_names)
        if factors.shape not in ((24,), (24, k)) or (factors.ndim == 2 and self.road_class is None):
            raise ValueError(
                f"time factors must have shape (24,) or (24, n_classes={k}) with road classes, "
                f"got {factors.shape}"
            )
        if not (np.all(np.isfinite(factors)) and factors.min() > 0):
            raise ValueError("time factors must be finite and > 0")

    @classmethod
    def from_edges(
        cls,
        lat: ArrayLike,
        lon: ArrayLike,
        src: ArrayLike,
        dst: ArrayLike,
        length_m: ArrayLike,
        *,
        time_s: ArrayLike | None = None,
        road_class: ArrayLike | None = None,
        road_class_names: tuple[str, ...] = (),
        maxspeed_kmh: ArrayLike | None = None,
        speeds: Mapping[str, float] | None = None,
        osm_way_id: ArrayLike | None = None,
        osm_node_id: ArrayLike | None = None,
        time_factors: ArrayLike | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> RoadGraph:
        """Build a graph from an edge list (``src[k] → dst[k]``, node indices).

        Self-loops are dropped. Parallel edges are merged into one that keeps the shorter
        length and, independently, the shorter time (so both metrics stay exact); its other
        attributes come from the shorter edge. Lengths are clamped to at least 1 cm.

        ``time_s`` is computed from the speeds when not given: ``maxspeed_kmh`` where it is
        > 0, else the class speed from ``speeds`` over :data:`DEFAULT_SPEEDS_KMH` (a class
        missing from both gets :data:`FALLBACK_SPEED_KMH`, a graph without classes that
        speed everywhere).
        """
        lat_a = _as(lat, np.float64)
        n = lat_a.shape[0]
        s = np.asarray(src, dtype=np.int64).ravel()
        d = np.asarray(dst, dtype=np.int64).ravel()
        m = s.shape[0]
        if d.shape[0] != m:
            raise ValueError("src and dst differ in length")
        if m and (min(s.min(), d.min()) < 0 or max(s.max(), d.max()) >= n):
            raise ValueError("edge endpoint out of range")
        length = np.maximum(np.asarray(length_m, dtype=np.float64).ravel(), 0.01)
        if length.shape[0] != m or not np.all(np.isfinite(length)):
            raise ValueError("length_m must be finite, one per edge")
        names = tuple(road_class_names)
        rc = None if road_class is None else np.asarray(road_class, dtype=np.uint8).ravel()
        ms = None if maxspeed_kmh is None else np.asarray(maxspeed_kmh, dtype=np.float32).ravel()
        way = None if osm_way_id is None else np.asarray(osm_way_id, dtype=np.int64).ravel()
        given_time = time_s is not None
        if given_time:
            t = np.asarray(time_s, dtype=np.float64).ravel()
            if t.shape[0] != m or not (np.all(np.isfinite(t)) and (m == 0 or t.min() > 0)):
                raise ValueError("time_s must be finite and > 0, one per edge")
            used_speeds: dict[str, float] = {}
        else:
            t, used_speeds = _edge_times(length, rc, names, ms, speeds)

        keep = s != d
        order = np.lexsort((length[keep], d[keep], s[keep]))
        idx = np.flatnonzero(keep)[order]
        key = s[idx] * np.int64(max(n, 1)) + d[idx]
        first = np.ones(idx.shape[0], dtype=bool)
        first[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(first)
        best_time = np.minimum.reduceat(t[idx], starts) if idx.size else t[idx]
        kept = idx[starts]
        counts = np.bincount(s[kept], minlength=n)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            indptr=indptr.astype(np.int32),
            indices=d[kept].astype(np.int32),
            length_m=length[kept].astype(np.float32),
            time_s=np.maximum(best_time, 1e-3).astype(np.float32),
            lat=lat_a,
            lon=_as(lon, np.float64),
            road_class=None if rc is None else rc[kept],
            road_class_names=names,
            maxspeed_kmh=None if ms is None else ms[kept],
            osm_way_id=None if way is None else way[kept],
            osm_node_id=None if osm_node_id is None else _as(osm_node_id, np.int64),
            speeds_kmh=used_speeds,
            time_factors=None if time_factors is None else _as(time_factors, np.float32),
            meta=dict(meta or {}),
        )

    @classmethod
    def from_road_network(cls, rn: Any, *, speeds: Mapping[str, float] | None = None) -> RoadGraph:
        """Adapt a demo-city :class:`anwang.demo.city.RoadNetwork` (duck-typed).

        The network's own travel times are kept unless ``speeds`` is given, in which case
        times are recomputed from the class speeds (demo roads carry no speed limits).
        """
        return cls.from_edges(
            rn.lat,
            rn.lon,
            rn.src,
            rn.dst,
            rn.length_m,
            time_s=None if speeds is not None else rn.travel_time_s,
            road_class=rn.road_class,
            road_class_names=tuple(rn.road_class_names),
            speeds=speeds,
            meta={"source": "anwang.demo.city"},
        )

    # ----------------------------------------------------------------------------------
    # basic properties

    @property
    def n_nodes(self) -> int:
        return int(self.lat.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.indices.shape[0])

    def edge_tails(self) -> NDArray[np.int32]:
        """Tail (source) node of every edge, the companion of ``indices`` (cached)."""
        got = self._cache.get("tails")
        if got is None:
            degree = self.indptr[1:].astype(np.int64) - self.indptr[:-1]
            got = np.repeat(np.arange(self.n_nodes, dtype=np.int32), degree)
            self._cache["tails"] = got
        return got

    def edge_keys(self) -> NDArray[np.int64]:
        """``tail * n_nodes + head`` per edge; strictly increasing (cached)."""
        got = self._cache.get("keys")
        if got is None:
            got = self.edge_tails().astype(np.int64) * np.int64(self.n_nodes) + self.indices
            self._cache["keys"] = got
        return got

    def edge_ids(self, tails: ArrayLike, heads: ArrayLike) -> NDArray[np.int64]:
        """Edge position of each ``tails[i] → heads[i]`` pair, -1 where there is no edge."""
        u = np.asarray(tails, dtype=np.int64)
        v = np.asarray(heads, dtype=np.int64)
        keys = self.edge_keys()
        want = u * np.int64(self.n_nodes) + v
        pos = np.searchsorted(keys, want)
        pos_c = np.minimum(pos, max(keys.shape[0] - 1, 0))
        ok = (pos < keys.shape[0]) & (keys[pos_c] == want) if keys.size else np.zeros_like(u, bool)
        return np.where(ok, pos_c, -1).astype(np.int64)

    def is_oneway(self) -> NDArray[np.bool_]:
        """Per edge: True if the reverse edge does not exist."""
        return np.asarray(self.edge_ids(self.indices, self.edge_tails()) < 0, dtype=bool)

    def speed_kmh(self) -> NDArray[np.float64]:
        """Free-flow speed of every edge implied by its length and time."""
        return self.length_m.astype(np.float64) / self.time_s.astype(np.float64) * 3.6

    def bounds(self) -> tuple[float, float, float, float]:
        """(min_lon, min_lat, max_lon, max_lat) of the nodes."""
        return (
            float(self.lon.min()),
            float(self.lat.min()),
            float(self.lon.max()),
            float(self.lat.max()),
        )

    # ----------------------------------------------------------------------------------
    # speeds and time-of-day factors

    def with_speeds(
        self, speeds: Mapping[str, float] | None = None, *, use_maxspeed: bool = True
    ) -> RoadGraph:
        """A copy whose times follow ``speeds`` (over the defaults) and, if
        ``use_maxspeed``, the per-edge speed limits."""
        ms = self.maxspeed_kmh if use_maxspeed else None
        t, used = _edge_times(
            self.length_m.astype(np.float64), self.road_class, self.road_class_names, ms, speeds
        )
        return replace(self, time_s=t.astype(np.float32), speeds_kmh=used)

    def with_time_factors(self, factors: ArrayLike | None) -> RoadGraph:
        """A copy with time-of-day factors: shape (24,) or (24, n_classes), or None."""
        return replace(self, time_factors=None if factors is None else _as(factors, np.float32))

    def edge_weights(
        self,
        by: Metric = "time",
        *,
        hour: int | None = None,
        time_factors: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """Edge costs as float64: metres for ``"distance"``, seconds for ``"time"``.

        For ``"time"`` with an ``hour`` (0-23), the free-flow times are multiplied by that
        hour's factor from ``time_factors`` (or the graph's own factors); without an hour,
        or without any factors, they are the free-flow times. Cached per (metric, factors).
        """
        if by == "distance":
            key: tuple[Any, ...] = ("w", "distance")
        elif by == "time":
            factors = self._factors(hour, time_factors)
            key = ("w", "time", None if factors is None else factors.tobytes())
        else:
            raise ValueError(f"unknown metric {by!r}; use 'time' or 'distance'")
        got: NDArray[np.float64] | None = self._cache.get(key)
        if got is not None:
            return got
        if by == "distance":
            w = self.length_m.astype(np.float64)
        else:
            w = self.time_s.astype(np.float64)
            if factors is not None:
                w = w * (factors[self.road_class] if factors.ndim else float(factors))
        self._remember(key, w)
        return w

    def _factors(
        self, hour: int | None, time_factors: ArrayLike | None
    ) -> NDArray[np.float64] | None:
        """The factor (scalar array, or one per class) in force at ``hour``."""
        if hour is None:
            return None
        if isinstance(hour, bool) or not isinstance(hour, int | np.integer) or not 0 <= hour < 24:
            raise ValueError(f"hour must be an integer 0-23, got {hour!r}")
        table = self.time_factors if time_factors is None else _as(time_factors, np.float32)
        if table is None:
            return None
        self._check_factors(table)
        return np.asarray(table[int(hour)], dtype=np.float64)

    def _remember(self, key: Any, value: Any) -> None:
        if len(self._cache) > _CACHE_LIMIT:
            for k in list(self._cache):
                if isinstance(k, tuple) and k[0] in ("w", "csr"):
                    self._cache.pop(k, None)
        self._cache[key] = value

    # ----------------------------------------------------------------------------------
    # sparse matrices for scipy.sparse.csgraph

    def csr(
        self,
        by: Metric = "time",
        *,
        reverse: bool = False,
        hour: int | None = None,
        time_factors: ArrayLike | None = None,
    ) -> csr_array:
        """``n × n`` CSR matrix of edge costs for ``scipy.sparse.csgraph`` (cached).

        ``reverse=True`` gives the transposed graph (every edge turned around), whose
        shortest paths *from* a node are the forward graph's shortest paths *to* it.
        """
        w = self.edge_weights(by, hour=hour, time_factors=time_factors)
        key = ("csr", id(w), reverse)
        got = self._cache.get(key)
        if got is not None and got[0] is w:
            return got[1]
        n = self.n_nodes
        if reverse:
            perm, rindptr, rindices = self._reverse_structure()
            mat = csr_array((w[perm], rindices, rindptr), shape=(n, n))
        else:
            mat = csr_array((w, self.indices, self.indptr), shape=(n, n))
        self._remember(key, (w, mat))
        return mat

    def _reverse_structure(
        self,
    ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int32]]:
        got = self._cache.get("reverse")
        if got is None:
            perm = np.argsort(self.indices, kind="stable")
            counts = np.bincount(self.indices, minlength=self.n_nodes)
            rindptr = np.zeros(self.n_nodes + 1, dtype=np.int64)
            np.cumsum(counts, out=rindptr[1:])
            got = (perm, rindptr.astype(np.int32), self.edge_tails()[perm])
            self._cache["reverse"] = got
        return got

    # ----------------------------------------------------------------------------------
    # components and subgraphs

    def components(self, *, strong: bool = True) -> tuple[int, NDArray[np.int32]]:
        """(number of components, component label per node), strong or weak."""
        key = ("components", strong)
        got = self._cache.get(key)
        if got is None:
            n, labels = connected_components(
                self.csr("distance"), directed=True, connection="strong" if strong else "weak"
            )
            got = (int(n), labels.astype(np.int32))
            self._cache[key] = got
        return got

    def largest_component_mask(self, *, strong: bool = True) -> NDArray[np.bool_]:
        """Boolean mask of the nodes of the largest (strongly) connected component."""
        _, labels = self.components(strong=strong)
        if labels.size == 0:
            return np.zeros(0, dtype=bool)
        return np.asarray(labels == np.argmax(np.bincount(labels)), dtype=bool)

    def subgraph(self, node_mask: ArrayLike) -> RoadGraph:
        """The graph induced by the nodes where ``node_mask`` is True, renumbered in order."""
        mask = np.asarray(node_mask, dtype=bool)
        if mask.shape != (self.n_nodes,):
            raise ValueError("node_mask must have one entry per node")
        new_id = np.cumsum(mask) - 1
        tails, heads = self.edge_tails(), self.indices
        keep = mask[tails] & mask[heads]
        # Kept edges stay sorted by (tail, head) because renumbering preserves order.
        counts = np.bincount(new_id[tails[keep]], minlength=int(mask.sum()))
        indptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])

        def pick(a: Any) -> Any:
            return None if a is None else a[keep]

        return replace(
            self,
            indptr=indptr,
            indices=new_id[heads[keep]],
            length_m=self.length_m[keep],
            time_s=self.time_s[keep],
            lat=self.lat[mask],
            lon=self.lon[mask],
            road_class=pick(self.road_class),
            maxspeed_kmh=pick(self.maxspeed_kmh),
            osm_way_id=pick(self.osm_way_id),
            osm_node_id=None if self.osm_node_id is None else self.osm_node_id[mask],
        )

    def largest_component(self, *, strong: bool = True) -> RoadGraph:
        """The subgraph of the largest strongly (or weakly) connected component."""
        return self.subgraph(self.largest_component_mask(strong=strong))

    # ----------------------------------------------------------------------------------
    # save / load

    def save(self, path: str | PathLike[str], *, compress: bool = False) -> Path:
        """Write the graph to exactly ``path`` as one ``.npz`` (plain arrays, no pickle).

        The file is written beside the target and renamed into place, so a reader never
        sees half a file. Uncompressed by default: loading is then a plain read.
        """
        target = Path(path)
        header = {
            "format": FORMAT,
            "road_class_names": list(self.road_class_names),
            "speeds_kmh": dict(self.speeds_kmh),
            "meta": dict(self.meta),
        }
        arrays: dict[str, Any] = {
            "header": np.array(json.dumps(header, ensure_ascii=False)),
            "indptr": self.indptr,
            "indices": self.indices,
            "length_m": self.length_m,
            "time_s": self.time_s,
            "lat": self.lat,
            "lon": self.lon,
        }
        for name in ("road_class", "maxspeed_kmh", "osm_way_id", "osm_node_id", "time_factors"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                (np.savez_compressed if compress else np.savez)(fh, **arrays)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | PathLike[str]) -> RoadGraph:
        """Read a graph written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(path, allow_pickle=False) as data:
            if "header" not in data.files:
                raise ValueError(f"{os.fspath(path)} is not a saved RoadGraph")
            header = json.loads(str(data["header"][()]))
            if header.get("format") != FORMAT:
                raise ValueError(f"unsupported road graph format {header.get('format')!r}")
            arrays = {name: data[name] for name in data.files if name != "header"}
        return cls(
            road_class_names=tuple(header.get("road_class_names", ())),
            speeds_kmh=header.get("speeds_kmh", {}),
            meta=header.get("meta", {}),
            **arrays,
        )

    def summary(self) -> dict[str, Any]:
        """Counts for logs and status pages."""
        n_scc, _ = self.components(strong=True)
        return {
            "nodes": self.n_nodes,
            "edges": self.n_edges,
            "oneway_edges": int(self.is_oneway().sum()),
            "strong_components": n_scc,
            "largest_scc_nodes": int(self.largest_component_mask().sum()),
            "total_length_km": round(float(self.length_m.astype(np.float64).sum()) / 1000.0, 3),
        }


def _edge_times(
    length_m: NDArray[np.float64],
    road_class: NDArray[np.uint8] | None,
    names: tuple[str, ...],
    maxspeed_kmh: NDArray[np.float32] | None,
    speeds: Mapping[str, float] | None,
) -> tuple[NDArray[np.float64], dict[str, float]]:
    """Free-flow seconds per edge, and the class speeds that were used."""
    if road_class is not None and names:
        table = _speed_table(names, speeds)
        v = table[road_class]
        used = {n: float(x) for n, x in zip(names, table.tolist(), strict=True)}
    else:
        fallback = float((speeds or {}).get("*", FALLBACK_SPEED_KMH))
        v = np.full(length_m.shape, fallback)
        used = {"*": fallback}
    if maxspeed_kmh is not None:
        v = np.where(maxspeed_kmh > 0, maxspeed_kmh.astype(np.float64), v)
    return length_m / (v / 3.6), used
