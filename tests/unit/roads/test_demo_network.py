"""The demo city's road network through the RoadGraph adapter (seed 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anwang.demo.city import DEFAULT_SPEED_KMH, ROAD_CLASSES
from anwang.roads.graph import RoadGraph, haversine_m
from anwang.roads.routing import (
    Snapper,
    one_to_many,
    reachable_within,
    route,
    route_nodes,
)


def test_adapter_keeps_the_network(demo_graph: RoadGraph) -> None:
    g = demo_graph
    assert g.n_nodes > 10_000 and g.n_edges > 20_000
    assert g.road_class_names == ROAD_CLASSES
    assert g.components(strong=True)[0] == 1  # the demo network is strongly connected
    speeds = g.speed_kmh()
    for i, name in enumerate(ROAD_CLASSES):
        sel = g.road_class == i
        if sel.any():
            assert np.allclose(speeds[sel], DEFAULT_SPEED_KMH[name], rtol=1e-3)
    assert g.speeds_kmh == {}  # times as the demo generator computed them
    slower = g.with_speeds({"residential": 20.0})
    sel = g.road_class == ROAD_CLASSES.index("residential")
    assert np.allclose(slower.speed_kmh()[sel], 20.0, rtol=1e-3)


def test_routes_are_at_least_the_straight_line(demo_graph: RoadGraph) -> None:
    g = demo_graph
    rng = np.random.default_rng(11)
    pairs = rng.integers(0, g.n_nodes, size=(25, 2))
    for s, t in pairs:
        crow = float(haversine_m(g.lat[s], g.lon[s], g.lat[t], g.lon[t]))
        by_dist = route_nodes(g, int(s), int(t), by="distance")
        by_time = route_nodes(g, int(s), int(t), by="time")
        assert by_dist.distance_m >= crow * (1 - 1e-6) - 0.01
        assert by_time.distance_m >= by_dist.distance_m * (1 - 1e-6)
        assert by_time.duration_s <= by_dist.duration_s * (1 + 1e-6)
        # the totals are the sums along the path
        e = g.edge_ids(by_dist.nodes[:-1], by_dist.nodes[1:])
        assert np.all(e >= 0)
        assert by_dist.distance_m == pytest.approx(float(g.length_m[e].sum()), rel=1e-6)
        # and agree with the one-to-many vector (same search, no limit)
        assert one_to_many(g, int(s), [int(t)], by="distance")[0] == pytest.approx(
            by_dist.distance_m, rel=1e-6
        )


def test_points_route_and_reach(demo_graph: RoadGraph) -> None:
    g = demo_graph
    lon0, lat0, lon1, lat1 = g.bounds()
    sn = Snapper(g, max_distance_m=5_000.0)
    r = route(g, (31.78, 119.95), (31.70, 120.02), snapper=sn)
    assert r.distance_m > haversine_m(31.78, 119.95, 31.70, 120.02) - 2 * max(r.snap_m)
    assert r.coordinates[0][0] == pytest.approx(float(g.lon[r.nodes[0]]), abs=1e-6)
    assert lon0 <= min(c[0] for c in r.coordinates) <= max(c[0] for c in r.coordinates) <= lon1
    assert lat0 <= min(c[1] for c in r.coordinates)
    posts, _ = sn.snap_many([31.78, 31.75, 31.82], [119.95, 119.90, 120.00])
    reach = reachable_within(g, posts, (60, 180, 300))
    counts = reach.counts()
    assert np.all(np.diff(counts, axis=1) >= 0) and np.all(counts[:, 0] >= 1)


def test_demo_graph_round_trips(tmp_path: Path, demo_graph: RoadGraph) -> None:
    back = RoadGraph.load(demo_graph.save(tmp_path / "demo.npz"))
    assert np.array_equal(back.time_s, demo_graph.time_s)
    assert back.road_class_names == demo_graph.road_class_names
