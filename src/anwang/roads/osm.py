"""Import the drivable road network of an OpenStreetMap ``.osm.pbf`` extract.

Reading uses pyosmium (the ``osmium`` package, imported only when :func:`import_pbf`
runs): libosmium decodes the file, caches node locations and hands over only ways with a
``highway`` tag; everything after that is vectorised numpy.

Rules
-----
**Drivable ways.** ``highway`` is one of :data:`DRIVABLE_HIGHWAYS` (the classes of
:data:`anwang.roads.graph.DEFAULT_SPEEDS_KMH`), not ``area=yes``, not a
``service=`` parking aisle, driveway, parking or drive-through, and the most specific
access tag present (``motorcar`` > ``motor_vehicle`` > ``vehicle`` > ``access``) is not
``no``, ``private``, ``agricultural`` or ``forestry``. Everything else with a ``highway``
tag is counted in :attr:`ImportReport.skipped_ways` by reason, never an error.

**Direction.** ``oneway=yes|true|1`` keeps the way's direction, ``oneway=-1|reverse``
reverses it, ``oneway=no|false|0`` is two-way; without a ``oneway`` tag,
``junction=roundabout|circular`` and ``highway=motorway`` are one-way. Ways with
``oneway=reversible|alternating`` (direction changes with the time of day) are skipped;
other values are treated as two-way and counted in :attr:`ImportReport.warnings`.

**Topology.** Every OSM node of a drivable way is a graph node, so edges are the way's
segments: ways are split at every shared node (intersections) and the graph keeps the
full geometry, with each edge's length the great-circle length of its segment. A way
referencing nodes missing from the extract (cut at the extract's edge) keeps the runs of
nodes that are present; it is counted in :attr:`ImportReport.ways_cut_at_edge`.

**Speed.** A parseable ``maxspeed`` (``maxspeed:forward``/``maxspeed:backward`` per
direction when present; numbers in km/h, ``mph``, ``knots``, ``zone30``-style values,
the lowest of ``;``-separated values) sets the edge's speed; otherwise the class speed
applies (:data:`~anwang.roads.graph.DEFAULT_SPEEDS_KMH` overridden by ``speeds``).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np

from anwang.core.errors import ValidationFailed
from anwang.roads.graph import OSM_ROAD_CLASSES, RoadGraph, haversine_m

__all__ = [
    "BLOCKED_ACCESS",
    "DRIVABLE_HIGHWAYS",
    "EXCLUDED_SERVICE",
    "ImportReport",
    "ProgressCallback",
    "import_pbf",
    "parse_maxspeed",
    "way_direction",
    "way_skip_reason",
]

ProgressCallback = Callable[[str, float], None]
"""``progress(stage, fraction)``: stage name and overall fraction done (0..1)."""

DRIVABLE_HIGHWAYS: Final[frozenset[str]] = frozenset(OSM_ROAD_CLASSES)
EXCLUDED_SERVICE: Final = frozenset({"parking_aisle", "driveway", "parking", "drive-through"})
BLOCKED_ACCESS: Final = frozenset({"no", "private", "agricultural", "forestry"})
_ACCESS_KEYS: Final = ("motorcar", "motor_vehicle", "vehicle", "access")
_FORWARD: Final = frozenset({"yes", "true", "1"})
_BACKWARD: Final = frozenset({"-1", "reverse"})
_TWO_WAY: Final = frozenset({"no", "false", "0"})
_VARIABLE: Final = frozenset({"reversible", "alternating"})
_ROUNDABOUT: Final = frozenset({"roundabout", "circular"})
_CLASS_INDEX: Final = {name: i for i, name in enumerate(OSM_ROAD_CLASSES)}
_SPEED_RE: Final = re.compile(r"^(\d+(?:[.,]\d+)?)\s*(km/h|kmh|kph|mph|knots)?$")
_ZONE_RE: Final = re.compile(r"^(?:[a-z]{2}:)?zone:?(\d+)$")
_UNIT: Final = {None: 1.0, "km/h": 1.0, "kmh": 1.0, "kph": 1.0, "mph": 1.609344, "knots": 1.852}


@dataclass
class ImportReport:
    """What :func:`import_pbf` found and did. Plain data; :meth:`as_dict` is JSON-ready."""

    path: str
    nodes: int = 0
    edges: int = 0
    oneway_edges: int = 0
    """Edges whose reverse does not exist."""
    weak_components: int = 0
    strong_components: int = 0
    largest_scc_nodes: int = 0
    highway_ways: int = 0
    """Ways with a ``highway`` tag that were read."""
    ways_used: int = 0
    ways_cut_at_edge: int = 0
    """Drivable ways referencing nodes missing from the extract (kept in parts)."""
    skipped_ways: dict[str, int] = field(default_factory=dict)
    """Reason → number of ``highway`` ways not imported."""
    warnings: dict[str, int] = field(default_factory=dict)
    """Tag values that were not understood and how they were treated → count."""
    edges_with_maxspeed: int = 0
    total_length_km: float = 0.0
    seconds: float = 0.0

    @property
    def largest_scc_share(self) -> float:
        return self.largest_scc_nodes / self.nodes if self.nodes else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["largest_scc_share"] = round(self.largest_scc_share, 4)
        return out

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        out = [
            f"nodes {self.nodes:,}, edges {self.edges:,} ({self.oneway_edges:,} one-way), "
            f"{self.total_length_km:,.1f} km",
            f"components: {self.weak_components:,} weak, {self.strong_components:,} strong; "
            f"largest strong {self.largest_scc_nodes:,} nodes ({self.largest_scc_share:.1%})",
            f"ways: {self.highway_ways:,} with highway=*, {self.ways_used:,} used, "
            f"{self.ways_cut_at_edge:,} cut at the extract's edge",
            f"edges with a speed limit: {self.edges_with_maxspeed:,}",
        ]
        out += [f"skipped {n:,}: {r}" for r, n in sorted(self.skipped_ways.items(), key=_by_count)]
        out += [f"warning {n:,}: {r}" for r, n in sorted(self.warnings.items(), key=_by_count)]
        return out


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


# --------------------------------------------------------------------------------------
# tag rules (pure, unit-tested)


def way_skip_reason(tags: Mapping[str, str]) -> str | None:
    """Why a way with these tags is not a drivable road, or None if it is."""
    hw = tags.get("highway")
    if hw is None:
        return "no highway tag"
    if hw not in DRIVABLE_HIGHWAYS:
        return f"highway={hw}"
    if tags.get("area") == "yes":
        return "area=yes"
    service = tags.get("service")
    if hw == "service" and service in EXCLUDED_SERVICE:
        return f"service={service}"
    for key in _ACCESS_KEYS:
        value = tags.get(key)
        if value is not None:
            if value in BLOCKED_ACCESS:
                return f"{key}={value}"
            break
    if tags.get("oneway") in _VARIABLE:
        return f"oneway={tags['oneway']}"
    return None


def way_direction(tags: Mapping[str, str]) -> tuple[int, str | None]:
    """(+1 one-way along the way, -1 one-way against it, 0 two-way; warning or None)."""
    raw = tags.get("oneway")
    if raw is None:
        implied = tags.get("junction") in _ROUNDABOUT or tags.get("highway") == "motorway"
        return (1 if implied else 0), None
    value = raw.strip().lower()
    if value in _FORWARD:
        return 1, None
    if value in _BACKWARD:
        return -1, None
    if value in _TWO_WAY:
        return 0, None
    return 0, f"oneway={raw} treated as two-way"


def parse_maxspeed(value: str | None) -> float | None:
    """Speed limit in km/h from a ``maxspeed`` value, or None when not parseable.

    Accepts plain numbers (km/h), ``km/h``/``kmh``/``kph``/``mph``/``knots`` units,
    ``zone30``/``zone:30``/``DE:zone30`` and ``;``-separated lists (the lowest wins).
    Symbolic values (``none``, ``signals``, ``XX:urban``) give None. Results outside
    1-250 km/h are rejected.
    """
    if value is None:
        return None
    parts = [p.strip().lower() for p in value.split(";") if p.strip()]
    speeds = []
    for p in parts:
        m = _SPEED_RE.match(p)
        if m:
            kmh = float(m.group(1).replace(",", ".")) * _UNIT[m.group(2)]
        else:
            z = _ZONE_RE.match(p)
            if not z:
                return None
            kmh = float(z.group(1))
        if not 1.0 <= kmh <= 250.0:
            return None
        speeds.append(kmh)
    return min(speeds) if speeds else None


# --------------------------------------------------------------------------------------
# import


@dataclass
class _Ways:
    """Accumulated drivable ways, flat."""

    refs: list[int] = field(default_factory=list)
    lons: list[float] = field(default_factory=list)
    lats: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # node refs per way
    way_id: list[int] = field(default_factory=list)
    direction: list[int] = field(default_factory=list)
    cls: list[int] = field(default_factory=list)
    max_fwd: list[float] = field(default_factory=list)
    max_bwd: list[float] = field(default_factory=list)


def import_pbf(
    path: str | PathLike[str],
    *,
    speeds: Mapping[str, float] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[RoadGraph, ImportReport]:
    """Build the drivable :class:`RoadGraph` of an ``.osm.pbf`` extract (rules: see the
    module docstring) and report what was found.

    Raises ``ValidationFailed`` (field ``path``) when the file cannot be read as OSM data
    or holds no drivable road; problems with single ways are reported, never raised.
    """
    started = time.perf_counter()

    def report_progress(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    src = Path(path)
    if not src.is_file():
        raise ValidationFailed.on("path", f"no such file: {os.fspath(path)}")
    try:
        import osmium
        import osmium.filter
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "importing OSM extracts needs the 'osmium' package (pyosmium): pip install osmium"
        ) from exc

    rep = ImportReport(path=os.fspath(path))
    skipped: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    acc = _Ways()
    report_progress("reading", 0.0)
    processor = (
        osmium.FileProcessor(os.fspath(src), osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    try:
        for obj in processor:
            way: Any = obj
            rep.highway_ways += 1
            tags = {t.k: t.v for t in way.tags}
            reason = way_skip_reason(tags)
            if reason is not None:
                skipped[reason] += 1
                continue
            direction, warning = way_direction(tags)
            if warning:
                warnings[warning] += 1
            speed = parse_maxspeed(tags.get("maxspeed"))
            if speed is None and "maxspeed" in tags:
                warnings[f"maxspeed={tags['maxspeed']} not parsed, class speed used"] += 1
            fwd = parse_maxspeed(tags.get("maxspeed:forward")) or speed
            bwd = parse_maxspeed(tags.get("maxspeed:backward")) or speed
            count = 0
            for nd in way.nodes:
                loc = nd.location
                acc.refs.append(nd.ref)
                if loc.valid():
                    acc.lons.append(loc.lon)
                    acc.lats.append(loc.lat)
                else:
                    acc.lons.append(math.nan)
                    acc.lats.append(math.nan)
                count += 1
            acc.lengths.append(count)
            acc.way_id.append(way.id)
            acc.direction.append(direction)
            acc.cls.append(_CLASS_INDEX[tags["highway"]])
            acc.max_fwd.append(fwd or 0.0)
            acc.max_bwd.append(bwd or 0.0)
    except RuntimeError as exc:
        raise ValidationFailed.on("path", f"not a readable OSM file ({exc})") from None

    report_progress("building", 0.6)
    graph = _build(acc, rep, skipped, speeds)
    rep.skipped_ways = dict(skipped)
    rep.warnings = dict(warnings)
    if graph.n_edges == 0:
        raise ValidationFailed.on("path", "the extract holds no drivable road")

    report_progress("components", 0.85)
    rep.nodes, rep.edges = graph.n_nodes, graph.n_edges
    rep.oneway_edges = int(graph.is_oneway().sum())
    rep.weak_components, _ = graph.components(strong=False)
    rep.strong_components, _ = graph.components(strong=True)
    rep.largest_scc_nodes = int(graph.largest_component_mask(strong=True).sum())
    if graph.maxspeed_kmh is not None:
        rep.edges_with_maxspeed = int(np.count_nonzero(graph.maxspeed_kmh))
    rep.total_length_km = round(float(graph.length_m.astype(np.float64).sum()) / 1000.0, 3)
    rep.seconds = round(time.perf_counter() - started, 3)
    report_progress("done", 1.0)
    return graph, rep


def _build(
    acc: _Ways,
    rep: ImportReport,
    skipped: Counter[str],
    speeds: Mapping[str, float] | None,
) -> RoadGraph:
    """Vectorised: segments of the accumulated ways → RoadGraph."""
    refs = np.asarray(acc.refs, dtype=np.int64)
    lon = np.asarray(acc.lons, dtype=np.float64)
    lat = np.asarray(acc.lats, dtype=np.float64)
    per_way = np.asarray(acc.lengths, dtype=np.int64)
    n_ways = per_way.shape[0]
    owner = np.repeat(np.arange(n_ways), per_way)
    present = ~np.isnan(lon)

    cut = np.bincount(owner[~present], minlength=n_ways) > 0
    rep.ways_cut_at_edge = int(cut.sum())

    # Segment k joins way-node k and k+1 of the same way, both present and distinct.
    a = np.arange(refs.shape[0] - 1) if refs.shape[0] else np.zeros(0, dtype=np.int64)
    seg = (owner[a] == owner[a + 1]) & present[a] & present[a + 1] & (refs[a] != refs[a + 1])
    a = a[seg]
    b = a + 1
    seg_way = owner[a]
    has_seg = np.bincount(seg_way, minlength=n_ways) > 0
    no_inside = ~has_seg & cut
    if no_inside.any():
        skipped["no segment inside the extract"] += int(no_inside.sum())
    degenerate = ~has_seg & ~cut
    if degenerate.any():
        skipped["fewer than two distinct nodes"] += int(degenerate.sum())
    rep.ways_used = int(has_seg.sum())

    used = np.concatenate([a, b])
    node_refs, first, inverse = np.unique(refs[used], return_index=True, return_inverse=True)
    u, v = inverse[: a.shape[0]], inverse[a.shape[0] :]
    node_lat, node_lon = lat[used][first], lon[used][first]
    length = haversine_m(lat[a], lon[a], lat[b], lon[b])

    direction = np.asarray(acc.direction, dtype=np.int8)[seg_way]
    cls = np.asarray(acc.cls, dtype=np.uint8)[seg_way]
    way_id = np.asarray(acc.way_id, dtype=np.int64)[seg_way]
    fwd = direction >= 0
    bwd = direction <= 0
    max_f = np.asarray(acc.max_fwd, dtype=np.float32)[seg_way]
    max_b = np.asarray(acc.max_bwd, dtype=np.float32)[seg_way]
    return RoadGraph.from_edges(
        node_lat,
        node_lon,
        np.concatenate([u[fwd], v[bwd]]),
        np.concatenate([v[fwd], u[bwd]]),
        np.concatenate([length[fwd], length[bwd]]),
        road_class=np.concatenate([cls[fwd], cls[bwd]]),
        road_class_names=OSM_ROAD_CLASSES,
        maxspeed_kmh=np.concatenate([max_f[fwd], max_b[bwd]]),
        speeds=speeds,
        osm_way_id=np.concatenate([way_id[fwd], way_id[bwd]]),
        osm_node_id=node_refs,
        meta={"source": "openstreetmap", "file": Path(rep.path).name},
    )
