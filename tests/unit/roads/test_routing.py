"""Routing on hand-made graphs: one-way streets, snapping, unreachable, cost vectors,
reachability, time-of-day factors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

from anwang.core.errors import ValidationFailed
from anwang.roads.graph import OSM_ROAD_CLASSES, RoadGraph, haversine_m
from anwang.roads.routing import (
    OUTSIDE_AREA,
    Snapper,
    Unreachable,
    many_to_one,
    nearest_sources,
    one_to_many,
    reachable_within,
    route,
    route_nodes,
    snapper_for,
)

LAT0, LON0 = 31.78, 119.95
DLAT = 100.0 / 111_195.0  # ~100 m north
DLON = DLAT / np.cos(np.radians(LAT0))  # ~100 m east


def ladder() -> RoadGraph:
    """A one-way street with a two-way detour and a separate island::

    0 ──▶ 1 ──▶ 2        (one-way eastwards, primary)
    ║           ║
    3 ═══ 4 ═══ 5        (two-way, residential)
                      6 ══ 7   (island, far east)
    """
    lat = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=float) * DLAT + LAT0
    lon = np.array([0, 1, 2, 0, 1, 2, 30, 31], dtype=float) * DLON + LON0
    pairs_one = [(0, 1), (1, 2)]
    pairs_two = [(0, 3), (3, 4), (4, 5), (5, 2), (6, 7)]
    src = [a for a, _ in pairs_one] + [a for a, _ in pairs_two] + [b for _, b in pairs_two]
    dst = [b for _, b in pairs_one] + [b for _, b in pairs_two] + [a for a, _ in pairs_two]
    cls = [OSM_ROAD_CLASSES.index("primary")] * 2 + [OSM_ROAD_CLASSES.index("residential")] * 10
    length = haversine_m(lat[src], lon[src], lat[dst], lon[dst])
    return RoadGraph.from_edges(
        lat, lon, src, dst, length, road_class=cls, road_class_names=OSM_ROAD_CLASSES
    )


def test_one_way_street_is_not_driven_backwards() -> None:
    g = ladder()
    forward = route_nodes(g, 0, 2, by="distance")
    assert forward.nodes.tolist() == [0, 1, 2]
    assert forward.distance_m == pytest.approx(200.0, rel=1e-3)
    back = route_nodes(g, 2, 0, by="distance")
    assert back.nodes.tolist() == [2, 5, 4, 3, 0]
    assert back.distance_m == pytest.approx(400.0, rel=1e-3)
    by_time = route_nodes(g, 2, 0, by="time")
    assert by_time.nodes.tolist() == [2, 5, 4, 3, 0]
    assert by_time.duration_s == pytest.approx(400.0 / (30 / 3.6), rel=1e-3)


def test_route_between_points_returns_geojson() -> None:
    g = ladder()
    r = route(g, (LAT0 + DLAT * 1.1, LON0 - DLON * 0.1), (LAT0 + DLAT, LON0 + 2.05 * DLON))
    assert r.nodes.tolist() == [0, 1, 2]
    assert r.coordinates[0] == [round(LON0, 6), round(LAT0 + DLAT, 6)]  # [lon, lat]
    assert len(r.coordinates) == 3
    assert r.snap_m[0] == pytest.approx(np.hypot(10, 10), rel=0.01)
    assert r.snap_m[1] == pytest.approx(5.0, rel=0.01)
    feature = r.to_geojson()
    assert feature["geometry"]["type"] == "LineString"
    assert feature["properties"]["distance_m"] == pytest.approx(200.0, abs=0.5)
    assert r.duration_s == pytest.approx(200.0 / (60 / 3.6), rel=1e-3)
    same = route(g, (LAT0, LON0), (LAT0, LON0))
    assert same.distance_m == 0.0 and len(same.coordinates) == 2


def test_unreachable_is_a_clear_validation_error() -> None:
    g = ladder()
    with pytest.raises(Unreachable) as info:
        route_nodes(g, 0, 6)
    err = info.value
    assert isinstance(err, ValidationFailed)
    assert err.code == "anwang.roads.unreachable" and err.status == 422
    assert err.errors[0].field == "to"
    with pytest.raises(Unreachable):
        route(g, (LAT0, LON0), (LAT0, LON0 + 30.5 * DLON))


def test_snapping() -> None:
    g = ladder()
    sn = Snapper(g)
    for v in range(g.n_nodes):
        node, dist = sn.snap(g.lat[v], g.lon[v])
        assert node == v and dist == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(3)
    lat = LAT0 + rng.uniform(-2, 3, 500) * DLAT
    lon = LON0 + rng.uniform(-2, 33, 500) * DLON
    nodes, dist = sn.snap_many(lat, lon)
    brute = haversine_m(lat[:, None], lon[:, None], g.lat[None, :], g.lon[None, :])
    assert np.allclose(dist, brute.min(axis=1), rtol=1e-9, atol=1e-6)
    assert np.allclose(brute[np.arange(500), nodes], dist)
    assert snapper_for(g) is snapper_for(g)
    # restricted to some nodes
    only_island = Snapper(g, nodes=np.arange(g.n_nodes) >= 6)
    assert only_island.snap(LAT0, LON0).node == 6


def test_snap_distance_limit() -> None:
    g = ladder()
    sn = Snapper(g, max_distance_m=50.0)
    assert sn.snap(LAT0 + DLAT * 0.3, LON0).node == 3
    with pytest.raises(ValidationFailed) as info:
        sn.snap(LAT0 - DLAT * 2, LON0)
    assert info.value.errors[0].field == "lat/lon"
    assert info.value.errors[0].reason == OUTSIDE_AREA
    nodes, dist = sn.snap_many([LAT0, LAT0 - DLAT * 2], [LON0, LON0], strict=False)
    assert nodes.tolist() == [3, -1] and dist[1] == pytest.approx(200.0, rel=0.01)
    with pytest.raises(ValidationFailed):
        route(g, (LAT0 - DLAT * 2, LON0), (LAT0, LON0), max_snap_m=50.0)
    with pytest.raises(ValidationFailed, match="valid coordinate"):
        sn.snap(91.0, 0.0)
    with pytest.raises(ValidationFailed):
        sn.snap(float("nan"), 0.0)


def test_cost_vectors_match_dense_dijkstra() -> None:
    g = ladder()
    full = dijkstra(g.csr("time").toarray(), directed=True)
    assert np.allclose(one_to_many(g, 2), full[2])
    assert np.allclose(one_to_many(g, 2, [0, 4]), full[2, [0, 4]])
    assert np.allclose(many_to_one(g, None, 0), full[:, 0])
    assert np.allclose(many_to_one(g, [2, 6], 0), full[[2, 6], 0])
    cut = one_to_many(g, 2, cutoff_s=30.0)
    assert np.array_equal(np.isfinite(cut), full[2] <= 30.0)
    dist = one_to_many(g, 0, by="distance", cutoff_m=150.0)
    assert np.isfinite(dist[[0, 1, 3]]).all() and np.isinf(dist[[2, 4, 5]]).all()
    with pytest.raises(ValidationFailed):
        one_to_many(g, 0, by="distance", cutoff_s=10.0)
    with pytest.raises(ValidationFailed):
        one_to_many(g, 99)
    with pytest.raises(ValidationFailed):
        one_to_many(g, 0, by="speed")  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        many_to_one(g, None, 0, hour=25)


def test_nearest_sources_picks_the_quickest_units() -> None:
    g = ladder()
    units = np.array([6, 1, 4, 5, 2])
    pos, cost = nearest_sources(g, 0, units, k=2)
    # 1 -> 0 must go round by 2,5,4,3; 4 -> 0 is two blocks
    assert units[pos].tolist() == [4, 5]
    assert np.all(np.diff(cost) >= 0)
    # 12 s per 100 m block: 4 -> 0 in 24 s, 5 in 36 s, 2 in 48 s, 1 in 60 s, island never
    pos_all, cost_all = nearest_sources(g, 0, units, k=None, cutoff_s=40.0)
    assert units[pos_all].tolist() == [4, 5]
    assert cost_all.tolist() == pytest.approx([24.0, 36.0], rel=1e-3)
    assert nearest_sources(g, 7, units[:4], k=3)[0].tolist() == [0]


def test_reachable_within_per_source_and_combined() -> None:
    g = ladder()
    full = dijkstra(g.csr("time").toarray(), directed=True)
    sources = np.array([0, 5, 6])
    cutoffs = (10.0, 30.0, 60.0)
    r = reachable_within(g, sources, cutoffs)
    assert r.time_s.shape == (3, g.n_nodes) and not r.combined
    expect = np.where(full[sources] <= 60.0, full[sources], np.inf)
    assert np.allclose(r.time_s, expect)
    for c in cutoffs:
        assert np.array_equal(r.within(c), full[sources] <= np.float32(c))
    assert r.counts().tolist() == [
        [int((full[s] <= np.float32(c)).sum()) for c in cutoffs] for s in sources
    ]
    band = r.band()
    assert band[0, 0] == 0 and band[2, 0] == -1
    both = reachable_within(g, sources, cutoffs, combined=True)
    best = full[sources].min(axis=0)
    assert np.allclose(both.time_s, np.where(best <= 60.0, best, np.inf))
    arg = full[sources].argmin(axis=0)
    reached = np.isfinite(both.time_s)
    assert np.array_equal(both.nearest[reached], arg[reached])
    assert np.all(both.nearest[~reached] == -1)
    towards = reachable_within(g, [0], (60.0,), reverse=True)
    assert np.allclose(towards.time_s[0], np.where(full[:, 0] <= 60, full[:, 0], np.inf))
    with pytest.raises(ValidationFailed):
        r.within(120.0)
    with pytest.raises(ValidationFailed):
        reachable_within(g, [0], ())


def test_time_of_day_factor_changes_duration_and_choice() -> None:
    g = ladder()
    factors = np.ones((24, len(OSM_ROAD_CLASSES)))
    factors[8, OSM_ROAD_CLASSES.index("primary")] = 10.0  # rush hour on the main road
    g = g.with_time_factors(factors)
    free = route_nodes(g, 0, 2)
    assert free.nodes.tolist() == [0, 1, 2]
    rush = route_nodes(g, 0, 2, hour=8)
    assert rush.nodes.tolist() == [0, 3, 4, 5, 2]  # the detour wins at 08:00
    assert rush.hour == 8 and rush.duration_s > free.duration_s
    assert one_to_many(g, 0, [2], hour=8)[0] == pytest.approx(rush.duration_s)
    flat = np.full(24, 2.0)
    doubled = route_nodes(g, 0, 2, hour=3, time_factors=flat)
    assert doubled.duration_s == pytest.approx(2 * free.duration_s)
    r = reachable_within(g, [0], (20.0,), hour=8)
    assert not r.within(20.0)[0, 1]  # node 1 is 100 m down the jammed road
