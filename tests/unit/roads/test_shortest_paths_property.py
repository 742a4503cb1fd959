"""Shortest paths agree with NetworkX on random directed graphs (hypothesis)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anwang.core.errors import ValidationFailed
from anwang.roads.graph import RoadGraph
from anwang.roads.routing import (
    many_to_one,
    one_to_many,
    reachable_within,
    route_nodes,
)


@st.composite
def random_graphs(draw: st.DrawFn) -> tuple[int, list[tuple[int, int, int, int]]]:
    """(n, edges as (u, v, length, time)) with parallel edges and self-loops allowed.

    Integer weights are exact in float32, so totals compare exactly."""
    n = draw(st.integers(min_value=2, max_value=25))
    node = st.integers(min_value=0, max_value=n - 1)
    edge = st.tuples(node, node, st.integers(1, 1000), st.integers(1, 1000))
    return n, draw(st.lists(edge, min_size=0, max_size=4 * n))


def build(n: int, edges: list[tuple[int, int, int, int]]) -> RoadGraph:
    rng = np.random.default_rng(n)
    e = np.asarray(edges, dtype=np.float64).reshape(-1, 4)
    return RoadGraph.from_edges(
        31.0 + rng.random(n) * 0.01,
        120.0 + rng.random(n) * 0.01,
        e[:, 0].astype(int),
        e[:, 1].astype(int),
        e[:, 2],
        time_s=e[:, 3],
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(), st.data())
def test_matches_networkx(
    need: Callable[[str], ModuleType],
    case: tuple[int, list[tuple[int, int, int, int]]],
    data: st.DataObject,
) -> None:
    nx = need("networkx")
    n, edges = case
    g = build(n, edges)
    ref = nx.MultiDiGraph()
    ref.add_nodes_from(range(n))
    for u, v, length, secs in edges:
        ref.add_edge(u, v, length=length, time=secs)
    s = data.draw(st.integers(0, n - 1), label="source")
    t = data.draw(st.integers(0, n - 1), label="target")
    for by, weight in (("distance", "length"), ("time", "time")):
        expect = nx.single_source_dijkstra_path_length(ref, s, weight=weight)
        got = one_to_many(g, s, by=by)
        want = np.array([expect.get(v, np.inf) for v in range(n)])
        assert np.array_equal(got, want)
        to_t = nx.single_source_dijkstra_path_length(ref.reverse(copy=False), t, weight=weight)
        back = many_to_one(g, None, t, by=by)
        assert np.array_equal(back, np.array([to_t.get(v, np.inf) for v in range(n)]))
        if t in expect:
            r = route_nodes(g, s, t, by=by)
            assert r.nodes[0] == s and r.nodes[-1] == t
            edge_ids = g.edge_ids(r.nodes[:-1], r.nodes[1:])
            assert np.all(edge_ids >= 0)  # every step is a real directed edge
            total = r.distance_m if by == "distance" else r.duration_s
            assert total == expect[t]
        else:
            with pytest.raises(ValidationFailed):
                route_nodes(g, s, t, by=by)
    # reachability of two sources equals the per-source NetworkX cut at a cutoff
    sources = [s, t]
    cut = 1500.0
    reach = reachable_within(g, sources, (cut,))
    for row, src in zip(reach.within(cut), sources, strict=True):
        lengths = nx.single_source_dijkstra_path_length(ref, src, cutoff=cut, weight="time")
        assert set(np.flatnonzero(row).tolist()) == set(lengths)
