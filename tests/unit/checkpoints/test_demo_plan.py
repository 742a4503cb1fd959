"""Placing the demo checkpoints: the counts of the brief, on the right roads, spread out,
deterministic — on a synthetic grid city, so no city has to be generated."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from shapely.geometry import Point, Polygon

from anwang.checkpoints.demo import COUNTS, plan_checkpoints
from anwang.checkpoints.schemas import CheckpointCreate
from anwang.demo.city import RoadNetwork

N = 81  # nodes per side
STEP_DEG = 0.0075  # about 0.7 km
LAT0, LON0 = 31.5, 119.6


def grid_city() -> tuple[RoadNetwork, Polygon]:
    """An N×N street grid: two motorways crossing in the middle, a trunk or primary road
    every 8th line, secondary/tertiary every 4th, residential elsewhere."""
    idx = np.arange(N * N).reshape(N, N)
    lat = (LAT0 + np.arange(N)[:, None] * STEP_DEG * np.ones((1, N))).ravel()
    lon = (LON0 + np.ones((N, 1)) * np.arange(N)[None, :] * STEP_DEG * 1.17).ravel()

    def line_class(i: int) -> int:
        if i == N // 2:
            return 0
        if i % 8 == 0:
            return 1 if i % 16 == 0 else 2
        if i % 4 == 0:
            return 3 if i % 8 == 4 else 4
        return 5

    src, dst, cls = [], [], []
    for r in range(N):
        for c in range(N - 1):
            for a, b, k in ((idx[r, c], idx[r, c + 1], line_class(r)),
                            (idx[c, r], idx[c + 1, r], line_class(r))):
                src += [a, b]
                dst += [b, a]
                cls += [k, k]
    n_edges = len(src)
    roads = RoadNetwork(
        lat=lat.astype(np.float64), lon=lon.astype(np.float64),
        src=np.array(src, dtype=np.int32), dst=np.array(dst, dtype=np.int32),
        length_m=np.full(n_edges, 700, dtype=np.float32),
        road_class=np.array(cls, dtype=np.uint8),
        travel_time_s=np.full(n_edges, 50, dtype=np.float32),
    )
    pad = STEP_DEG * 0.5
    outline = Polygon([
        (LON0 - pad, LAT0 - pad), (LON0 + (N - 1) * STEP_DEG * 1.17 + pad, LAT0 - pad),
        (LON0 + (N - 1) * STEP_DEG * 1.17 + pad, LAT0 + (N - 1) * STEP_DEG + pad),
        (LON0 - pad, LAT0 + (N - 1) * STEP_DEG + pad),
    ])
    return roads, outline


@pytest.fixture(scope="module")
def city() -> tuple[RoadNetwork, Polygon]:
    return grid_city()


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (a[0] - b[0]) * 111.2
    dx = (a[1] - b[1]) * 111.2 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def test_the_counts_of_the_brief(city: tuple[RoadNetwork, Polygon]) -> None:
    plan = plan_checkpoints(*city, seed=7)
    assert Counter(p.kind for p in plan) == COUNTS
    assert sum(COUNTS.values()) == 374
    assert len({p.code for p in plan}) == len(plan)
    assert len({p.node for p in plan}) == len(plan)  # no two sites on one node
    for p in plan:
        CheckpointCreate.model_validate(p.row())  # every row is a valid checkpoint


def test_each_kind_stands_where_it_belongs(city: tuple[RoadNetwork, Polygon]) -> None:
    roads, outline = city
    plan = plan_checkpoints(roads, outline, seed=7)
    best = np.full(roads.n_nodes, 9)
    np.minimum.at(best, roads.src, roads.road_class)
    border = outline.exterior
    for p in plan:
        assert outline.covers(Point(p.lon, p.lat))
        if p.kind in ("city_border", "province_border"):
            assert border.distance(Point(p.lon, p.lat)) * 111.2 <= 2.0
        elif p.kind == "toll_station":
            assert best[p.node] == 0
        elif p.kind == "police_checkpoint":
            assert best[p.node] in (1, 2)
        else:
            assert best[p.node] in (3, 4)


def test_the_province_border_is_one_stretch_in_the_south_west(
    city: tuple[RoadNetwork, Polygon]
) -> None:
    plan = plan_checkpoints(*city, seed=7)
    province = [p for p in plan if p.kind == "province_border"]
    corner = (LAT0, LON0)
    assert max(km((p.lat, p.lon), corner) for p in province) < min(
        km((p.lat, p.lon), corner) for p in plan if p.kind == "city_border"
    ) + 15


def test_sites_are_spread(city: tuple[RoadNetwork, Polygon]) -> None:
    plan = plan_checkpoints(*city, seed=7)
    for kind, min_km in (("toll_station", 1.0), ("police_checkpoint", 0.5)):
        pts = [(p.lat, p.lon) for p in plan if p.kind == kind]
        gaps = [km(a, b) for i, a in enumerate(pts) for b in pts[i + 1 :]]
        assert min(gaps) >= min_km


def test_deterministic_for_a_seed(city: tuple[RoadNetwork, Polygon]) -> None:
    assert plan_checkpoints(*city, seed=7) == plan_checkpoints(*city, seed=7)
    a = {p.code: p.node for p in plan_checkpoints(*city, seed=7)}
    b = {p.code: p.node for p in plan_checkpoints(*city, seed=8)}
    assert a != b
