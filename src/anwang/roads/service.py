"""The city's road graph for the running platform: loaded once per process, then shared.

The graph lives in ``<data_dir>/roads.graph.npz`` (:data:`GRAPH_FILE`), written by
``anwang roads import`` (an OpenStreetMap extract) or by the demo loader (the generated
city). :func:`load` reads it on first use and again only when the file's modification
time or size changes, so replacing the file (both writers rename a finished file into
place) is picked up by every process without a restart, and a request never sees half a
graph.

Dispatch and coverage snap to the largest strongly connected component only
(:attr:`LoadedGraph.snapper`): an incident or a unit is never matched to a node of a
small island (a loop cut off by one-way streets at the extract's edge) from which
nothing else can be reached, so every unit can reach every incident. A plain route
between two points (:func:`route_between`) snaps to the nearest node of any piece
(:attr:`LoadedGraph.snapper_all`) and says so when there is no route. A point farther
than :data:`MAX_SNAP_M` from the nodes it may snap to is outside the network's area.

Errors: no graph file → :class:`~anwang.core.errors.Unavailable`
(``anwang.roads.no_graph``); a bad or far-away point → ``ValidationFailed`` naming the
caller's field; no route → :class:`~anwang.roads.routing.Unreachable`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from anwang.core.errors import Unavailable, ValidationFailed
from anwang.roads.graph import Metric, RoadGraph
from anwang.roads.routing import OUTSIDE_AREA, Route, Snap, Snapper, route_nodes

__all__ = [
    "GRAPH_FILE",
    "MAX_SNAP_M",
    "LoadedGraph",
    "graph_path",
    "load",
    "parse_latlon",
    "route_between",
    "snap_point",
]

GRAPH_FILE: Final = "roads.graph.npz"
#: A point farther than this from every road (metres) is outside the network's area.
MAX_SNAP_M: Final = 1500.0


@dataclass(frozen=True, eq=False)
class LoadedGraph:
    """A graph as loaded from one version of the file, with its platform snapper."""

    graph: RoadGraph
    path: Path
    mtime_ns: int
    size: int
    snapper: Snapper
    """Snaps to the largest strongly connected component."""
    snapper_all: Snapper
    """Snaps to any node."""

    @property
    def version(self) -> tuple[str, int, int]:
        """Changes whenever the file does: a key for caches derived from the graph."""
        return (str(self.path), self.mtime_ns, self.size)


_lock = threading.Lock()
_loaded: dict[Path, LoadedGraph] = {}


def graph_path(data_dir: Path) -> Path:
    return Path(data_dir) / GRAPH_FILE


def load(data_dir: Path) -> LoadedGraph:
    """The graph of ``data_dir``, read once per file version (thread-safe)."""
    path = graph_path(data_dir).resolve()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise Unavailable(
            f"no road network is loaded: run `anwang roads import FILE.osm.pbf` or "
            f"`anwang demo` to write {GRAPH_FILE}",
            code="anwang.roads.no_graph",
        ) from None
    got = _loaded.get(path)
    if got is not None and got.mtime_ns == st.st_mtime_ns and got.size == st.st_size:
        return got
    with _lock:
        got = _loaded.get(path)
        if got is not None and got.mtime_ns == st.st_mtime_ns and got.size == st.st_size:
            return got
        graph = RoadGraph.load(path)
        snapper = Snapper(
            graph, nodes=graph.largest_component_mask(strong=True), max_distance_m=MAX_SNAP_M
        )
        snapper_all = Snapper(graph, max_distance_m=MAX_SNAP_M)
        got = LoadedGraph(graph, path, st.st_mtime_ns, st.st_size, snapper, snapper_all)
        _loaded[path] = got
        return got


def parse_latlon(value: str | None, field_name: str) -> tuple[float, float]:
    """``"lat,lon"`` in degrees → (lat, lon); anything else is a 422 on ``field_name``."""
    if value is None or not value.strip():
        raise ValidationFailed.on(field_name, "required, as 'lat,lon' in degrees")
    parts = value.split(",")
    if len(parts) != 2:
        raise ValidationFailed.on(field_name, "must be 'lat,lon' in degrees")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValidationFailed.on(field_name, "must be 'lat,lon' in degrees") from None
    check_latlon(lat, lon, field_name)
    return lat, lon


def check_latlon(lat: float, lon: float, field_name: str) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValidationFailed.on(field_name, "not a valid coordinate (lat -90..90, lon -180..180)")


def snap_point(
    loaded: LoadedGraph, lat: float, lon: float, *, field_name: str, main_only: bool = True
) -> Snap:
    """The nearest node (of the main component unless ``main_only`` is False), or a 422
    on ``field_name``."""
    check_latlon(lat, lon, field_name)
    snapper = loaded.snapper if main_only else loaded.snapper_all
    nodes, dist = snapper.snap_many([lat], [lon], strict=False)
    if int(nodes[0]) < 0:
        raise ValidationFailed.on(
            field_name, f"{OUTSIDE_AREA} (more than {MAX_SNAP_M:.0f} m from a road)"
        )
    return Snap(int(nodes[0]), float(dist[0]))


def snap_points(
    loaded: LoadedGraph, lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`snap_point`: node per point, -1 where outside the area."""
    return loaded.snapper.snap_many(lat, lon, strict=False)


def route_between(
    loaded: LoadedGraph,
    origin: tuple[float, float],
    destination: tuple[float, float],
    *,
    by: Metric = "time",
    hour: int | None = None,
    fields: tuple[str, str] = ("from", "to"),
) -> Route:
    """The shortest route between two (lat, lon) points, each snapped to its nearest
    node of any piece of the network; errors name ``fields``. Raises
    :class:`~anwang.roads.routing.Unreachable` when no route exists."""
    if by not in ("time", "distance"):
        raise ValidationFailed.on("by", "must be 'time' or 'distance'")
    a = snap_point(loaded, *origin, field_name=fields[0], main_only=False)
    b = snap_point(loaded, *destination, field_name=fields[1], main_only=False)
    r = route_nodes(loaded.graph, a.node, b.node, by=by, hour=hour)
    return Route(
        distance_m=r.distance_m,
        duration_s=r.duration_s,
        nodes=r.nodes,
        coordinates=r.coordinates,
        by=r.by,
        hour=r.hour,
        snap_m=(a.distance_m, b.distance_m),
    )
