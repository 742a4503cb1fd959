"""The ranking and held-coverage engine against brute force on small random graphs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import dijkstra

from anwang.dispatch.recommend import coverage_held, rank_units, route_of
from anwang.roads.graph import RoadGraph


@st.composite
def graphs(draw: st.DrawFn) -> RoadGraph:
    n = draw(st.integers(min_value=2, max_value=25))
    m = draw(st.integers(min_value=1, max_value=80))
    src = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    dst = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    length = draw(st.lists(st.floats(1.0, 500.0), min_size=m, max_size=m))
    lat = 31.0 + np.arange(n) * 1e-3
    lon = 120.0 + (np.arange(n) % 5) * 1e-3
    return RoadGraph.from_edges(lat, lon, src, dst, length)


@settings(max_examples=150, deadline=None)
@given(graphs(), st.data())
def test_ranking_matches_all_pairs_shortest_paths(g: RoadGraph, data: st.DataObject) -> None:
    n = g.n_nodes
    target = data.draw(st.integers(0, n - 1))
    units = data.draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=8))
    full = dijkstra(g.csr("time"), directed=True)
    r = rank_units(g, target, units)
    expected = full[units, target] if units else np.zeros(0)
    assert np.allclose(r.eta_s, expected, equal_nan=False)
    order_eta = r.eta_s[r.order]
    finite = np.isfinite(order_eta)
    # reachable units first, by time, ties by their position
    assert np.all(finite[:finite.sum()])
    keys = list(zip(order_eta[finite].tolist(), r.order[finite].tolist(), strict=True))
    assert keys == sorted(keys)
    for i in range(len(units)):
        if not r.reachable(i):
            continue
        route = route_of(g, r, i)
        assert route.nodes[0] == units[i] and route.nodes[-1] == target
        assert route.duration_s == np.float64(route.duration_s)
        assert abs(route.duration_s - expected[i]) < 1e-6 * max(1.0, expected[i])
        if route.nodes.size > 1:
            assert np.all(g.edge_ids(route.nodes[:-1], route.nodes[1:]) >= 0)


@settings(max_examples=100, deadline=None)
@given(graphs(), st.data())
def test_held_coverage_is_the_weight_only_one_unit_reaches(
    g: RoadGraph, data: st.DataObject
) -> None:
    n = g.n_nodes
    units = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6))
    cutoff = data.draw(st.floats(0.0, 60.0))
    w = np.asarray(data.draw(st.lists(st.floats(0, 10), min_size=n, max_size=n)))
    full = dijkstra(g.csr("time"), directed=True, indices=units)
    reach = full <= cutoff
    held = coverage_held(g, units, w, cutoff_s=cutoff)
    counts = reach.sum(axis=0)
    assert np.isclose(held.covered_weight, w[counts > 0].sum())
    for i in range(len(units)):
        alone = reach[i] & (counts == 1)
        assert np.isclose(held.alone_weight[i], w[alone].sum())
    assert np.array_equal(held.reach.toarray(), reach)


def test_a_unit_on_the_incident_arrives_at_once() -> None:
    g = RoadGraph.from_edges([31.0, 31.001], [120.0, 120.0], [0, 1], [1, 0], [100.0, 100.0])
    r = rank_units(g, 0, [0, 1])
    assert r.eta_s[0] == 0 and list(r.order) == [0, 1]
    route = route_of(g, r, 0)
    assert route.distance_m == 0 and len(route.coordinates) == 2
