"""RoadGraph: construction, invariants, speeds, time-of-day factors, save/load."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from anwang.roads.graph import (
    DEFAULT_SPEEDS_KMH,
    FALLBACK_SPEED_KMH,
    FORMAT,
    OSM_ROAD_CLASSES,
    RoadGraph,
    haversine_m,
)


def square() -> RoadGraph:
    """0 -- 1 two-way, 1 -> 2 one-way, 2 -- 3 two-way, 3 -> 0 one-way; 100 m sides."""
    lat = np.array([0.0, 0.0, 0.0009, 0.0009]) + 31.0
    lon = np.array([0.0, 0.00105, 0.00105, 0.0]) + 120.0
    src = [0, 1, 1, 2, 3, 3]
    dst = [1, 0, 2, 3, 2, 0]
    return RoadGraph.from_edges(
        lat,
        lon,
        src,
        dst,
        [100.0] * 6,
        road_class=[OSM_ROAD_CLASSES.index(c) for c in ("primary",) * 2 + ("residential",) * 4],
        road_class_names=OSM_ROAD_CLASSES,
        osm_way_id=[1, 1, 2, 3, 3, 4],
        osm_node_id=[10, 11, 12, 13],
    )


def test_csr_layout_and_oneway() -> None:
    g = square()
    assert (g.n_nodes, g.n_edges) == (4, 6)
    assert g.indptr.tolist() == [0, 1, 3, 4, 6]
    assert g.indices.tolist() == [1, 0, 2, 3, 0, 2]
    assert g.edge_tails().tolist() == [0, 1, 1, 2, 3, 3]
    assert g.is_oneway().tolist() == [False, False, True, False, True, False]
    assert g.edge_ids([1, 2, 0], [2, 1, 3]).tolist() == [2, -1, -1]
    assert g.indptr.dtype == np.int32 and g.indices.dtype == np.int32


def test_times_follow_class_speeds_and_maxspeed() -> None:
    g = square()
    speed = g.speed_kmh()
    assert speed[0] == pytest.approx(DEFAULT_SPEEDS_KMH["primary"], rel=1e-5)
    assert speed[2] == pytest.approx(DEFAULT_SPEEDS_KMH["residential"], rel=1e-5)
    faster = g.with_speeds({"residential": 45.0})
    assert faster.speed_kmh()[2] == pytest.approx(45.0, rel=1e-5)
    assert faster.speeds_kmh["residential"] == 45.0
    capped = RoadGraph.from_edges(
        [0.0, 0.0],
        [0.0, 0.001],
        [0, 1],
        [1, 0],
        [100.0, 100.0],
        road_class=[0, 0],
        road_class_names=("motorway",),
        maxspeed_kmh=[60.0, 0.0],
    )
    assert capped.speed_kmh().tolist() == pytest.approx([60.0, 100.0], rel=1e-5)
    assert capped.with_speeds(use_maxspeed=False).speed_kmh().tolist() == pytest.approx(
        [100.0, 100.0], rel=1e-5
    )
    plain = RoadGraph.from_edges([0.0, 0.0], [0.0, 0.001], [0], [1], [100.0])
    assert plain.speed_kmh()[0] == pytest.approx(FALLBACK_SPEED_KMH, rel=1e-5)
    with pytest.raises(ValueError, match="positive"):
        g.with_speeds({"primary": 0.0})


def test_parallel_edges_merge_per_metric_and_self_loops_drop() -> None:
    g = RoadGraph.from_edges(
        [0.0, 0.0, 0.0],
        [0.0, 0.001, 0.002],
        src=[0, 0, 1, 1],
        dst=[1, 1, 1, 2],
        length_m=[120.0, 100.0, 5.0, 50.0],
        time_s=[10.0, 20.0, 1.0, 5.0],
        osm_way_id=[7, 8, 9, 10],
    )
    assert g.n_edges == 2
    assert g.length_m.tolist() == [100.0, 50.0]
    assert g.time_s.tolist() == [10.0, 5.0]  # the other parallel edge was quicker
    assert g.osm_way_id.tolist() == [8, 10]  # attributes of the shorter one


def test_invalid_graphs_are_rejected() -> None:
    with pytest.raises(ValueError, match="sorted"):
        RoadGraph(
            indptr=[0, 2, 2, 2],
            indices=[2, 1],
            length_m=[1, 1],
            time_s=[1, 1],
            lat=[0, 0, 0],
            lon=[0, 1, 2],
        )
    with pytest.raises(ValueError, match="self-loops"):
        RoadGraph(indptr=[0, 1], indices=[0], length_m=[1], time_s=[1], lat=[0], lon=[0])
    with pytest.raises(ValueError, match="length_m"):
        RoadGraph(indptr=[0, 1, 1], indices=[1], length_m=[0], time_s=[1], lat=[0, 0], lon=[0, 1])
    with pytest.raises(ValueError, match="out of range"):
        RoadGraph.from_edges([0.0], [0.0], [0], [3], [1.0])
    with pytest.raises(ValueError, match="time factors"):
        square().with_time_factors(np.ones(23))
    with pytest.raises(ValueError, match="time factors"):
        square().with_time_factors(np.zeros(24))


def test_time_factors_apply_per_hour_and_class() -> None:
    g = square()
    base = g.edge_weights("time")
    assert np.array_equal(g.edge_weights("time", hour=8), base)  # no factors: free flow
    flat = np.ones(24)
    flat[8] = 1.5
    g1 = g.with_time_factors(flat)
    assert np.allclose(g1.edge_weights("time", hour=8), base * 1.5)
    assert np.allclose(g1.edge_weights("time", hour=3), base)
    assert np.allclose(g1.edge_weights("time"), base)  # no hour: free flow
    per_class = np.ones((24, len(OSM_ROAD_CLASSES)))
    per_class[17, OSM_ROAD_CLASSES.index("primary")] = 3.0
    g2 = g.with_time_factors(per_class)
    w = g2.edge_weights("time", hour=17)
    assert np.allclose(w[:2], base[:2] * 3.0) and np.allclose(w[2:], base[2:])
    # an ad-hoc table overrides the graph's own
    assert np.allclose(g2.edge_weights("time", hour=17, time_factors=flat), base)
    assert np.array_equal(g.edge_weights("distance"), g.length_m.astype(np.float64))
    with pytest.raises(ValueError, match="hour"):
        g1.edge_weights("time", hour=24)


def test_reverse_csr_is_the_transpose() -> None:
    g = square()
    fwd = g.csr("distance").toarray()
    rev = g.csr("distance", reverse=True).toarray()
    assert np.array_equal(rev, fwd.T)
    assert g.csr("distance") is g.csr("distance")  # cached


def test_components_and_subgraph() -> None:
    # square plus an island 4 <-> 5 and a dead end 0 -> 6
    lat = np.r_[np.array([0.0, 0.0, 0.0009, 0.0009]), 0.01, 0.01, 0.0]
    lon = np.r_[np.array([0.0, 0.00105, 0.00105, 0.0]), 0.01, 0.011, -0.001]
    g = RoadGraph.from_edges(
        lat,
        lon,
        [0, 1, 1, 2, 3, 3, 4, 5, 0],
        [1, 0, 2, 3, 2, 0, 5, 4, 6],
        [100.0] * 9,
        osm_node_id=np.arange(7) + 100,
    )
    assert g.components(strong=False)[0] == 2
    assert g.components(strong=True)[0] == 3
    mask = g.largest_component_mask()
    assert mask.tolist() == [True] * 4 + [False] * 3
    core = g.largest_component()
    assert core.n_nodes == 4 and core.n_edges == 6
    assert core.osm_node_id.tolist() == [100, 101, 102, 103]
    assert core.components(strong=True)[0] == 1


def test_save_load_round_trip(tmp_path: Path) -> None:
    factors = np.linspace(0.8, 1.6, 24)
    g = square().with_time_factors(factors)
    g = RoadGraph.from_edges(
        g.lat,
        g.lon,
        g.edge_tails(),
        g.indices,
        g.length_m,
        road_class=g.road_class,
        road_class_names=g.road_class_names,
        maxspeed_kmh=np.array([50, 50, 0, 0, 0, 30], dtype=np.float32),
        osm_way_id=g.osm_way_id,
        osm_node_id=g.osm_node_id,
        time_factors=factors,
        speeds={"residential": 25.0},
        meta={"name": "广场 test"},
    )
    path = g.save(tmp_path / "roads.graph")  # exact name, no suffix appended
    assert path == tmp_path / "roads.graph" and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["roads.graph"]  # no temp file left
    with zipfile.ZipFile(path) as zf:
        assert "header.npy" in zf.namelist()
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        header = json.loads(str(data["header"][()]))
    assert header["format"] == FORMAT
    h = RoadGraph.load(path)
    for name in (
        "indptr",
        "indices",
        "length_m",
        "time_s",
        "lat",
        "lon",
        "road_class",
        "maxspeed_kmh",
        "osm_way_id",
        "osm_node_id",
        "time_factors",
    ):
        a, b = getattr(g, name), getattr(h, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert h.road_class_names == g.road_class_names
    assert h.speeds_kmh == g.speeds_kmh and h.speeds_kmh["residential"] == 25.0
    assert h.meta == {"name": "广场 test"}
    # optional arrays stay optional
    bare = RoadGraph.from_edges([0.0, 0.0], [0.0, 0.001], [0], [1], [10.0])
    back = RoadGraph.load(bare.save(tmp_path / "bare.npz", compress=True))
    assert back.road_class is None and back.osm_way_id is None and back.time_factors is None


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="not a saved RoadGraph"):
        RoadGraph.load(tmp_path / "other.npz")


def test_large_graph_loads_in_well_under_a_second(tmp_path: Path) -> None:
    # 512 x 512 perturbed grid, two-way: 262,144 nodes, ~1.05 M edges
    side = 512
    rng = np.random.default_rng(1)
    iy, ix = np.divmod(np.arange(side * side), side)
    lat = 31.7 + iy * 0.0009 + rng.normal(0, 0.0001, iy.size)
    lon = 119.9 + ix * 0.00105 + rng.normal(0, 0.0001, ix.size)
    ids = np.arange(side * side).reshape(side, side)
    a = np.r_[ids[:, :-1].ravel(), ids[:-1, :].ravel()]
    b = np.r_[ids[:, 1:].ravel(), ids[1:, :].ravel()]
    src, dst = np.r_[a, b], np.r_[b, a]
    g = RoadGraph.from_edges(
        lat,
        lon,
        src,
        dst,
        haversine_m(lat[src], lon[src], lat[dst], lon[dst]),
        road_class=np.full(src.size, 6),
        road_class_names=OSM_ROAD_CLASSES,
        osm_way_id=np.arange(src.size),
        osm_node_id=np.arange(side * side),
    )
    path = g.save(tmp_path / "big.npz")
    started = time.perf_counter()
    h = RoadGraph.load(path)
    elapsed = time.perf_counter() - started
    assert h.n_nodes == side * side and h.n_edges == src.size
    assert elapsed < 0.5, f"loading took {elapsed:.3f} s"
