"""Tests of the deterministic demo city generator (anwang.demo.city)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components
from shapely.geometry import Point, Polygon, box

from anwang.demo.city import (
    CITY_CODE,
    DEFAULT_SPEED_KMH,
    LEVELS,
    ROAD_CLASSES,
    DemoCity,
    Jurisdiction,
    RoadNetwork,
    _merge_fragments,
    equal_area_km2,
    generate_city,
    jurisdictions_from_geojson,
    jurisdictions_to_geojson,
    load_roads_npz,
    save_roads_npz,
)

SEED = 7
CODE_LENGTH = {"city": 4, "district": 6, "station": 8, "grid": 11}
ROAD_ARRAYS = ("lat", "lon", "src", "dst", "length_m", "road_class", "travel_time_s")
KM_PER_DEG = 6371.0088 * math.pi / 180.0


@pytest.fixture(scope="module")
def progress_log() -> list[tuple[str, float]]:
    return []


@pytest.fixture(scope="module")
def city(progress_log: list[tuple[str, float]]) -> DemoCity:
    return generate_city(SEED, progress=lambda stage, frac: progress_log.append((stage, frac)))


def _haversine_m(
    lat1: NDArray[np.float64],
    lon1: NDArray[np.float64],
    lat2: NDArray[np.float64],
    lon2: NDArray[np.float64],
) -> NDArray[np.float64]:
    r = 6371008.8
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    return np.asarray(2 * r * np.arcsin(np.sqrt(h)), dtype=np.float64)


def _to_km(geom: Any, lat0: float, lon0: float) -> Any:
    """Local metric frame (km) around (lat0, lon0), for distance checks."""
    kx = KM_PER_DEG * math.cos(math.radians(lat0))

    def f(c: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack([(c[:, 0] - lon0) * kx, (c[:, 1] - lat0) * KM_PER_DEG])

    return shapely.transform(geom, f)


def _rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# -- determinism ------------------------------------------------------------------------


def _fingerprint(c: DemoCity) -> str:
    return json.dumps(jurisdictions_to_geojson(c.jurisdictions), sort_keys=True)


def test_same_seed_is_identical(city: DemoCity) -> None:
    again = generate_city(SEED)
    assert _fingerprint(again) == _fingerprint(city)
    for name in ROAD_ARRAYS:
        a, b = getattr(again.roads, name), getattr(city.roads, name)
        assert a.dtype == b.dtype
        assert np.array_equal(a, b), name
    assert again.roads.road_class_names == city.roads.road_class_names
    assert again.area_km2 == city.area_km2


def test_different_seed_differs(city: DemoCity) -> None:
    other = generate_city(SEED + 1)
    assert _fingerprint(other) != _fingerprint(city)
    assert other.roads.n_nodes != city.roads.n_nodes or not np.array_equal(
        other.roads.lat, city.roads.lat
    )


def test_progress_is_reported(city: DemoCity, progress_log: list[tuple[str, float]]) -> None:
    assert progress_log, "progress callback never called"
    fractions = [f for _, f in progress_log]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert progress_log[-1] == ("done", 1.0)
    assert len({s for s, _ in progress_log}) >= 4


# -- jurisdiction tree -----------------------------------------------------------------------


def test_area_in_range_and_irregular(city: DemoCity) -> None:
    assert 4000.0 <= city.area_km2 <= 4400.0
    poly = city.city.polygon
    assert city.area_km2 == pytest.approx(equal_area_km2(poly))
    # Cross-check with a plain local-metric approximation (within 0.5 %).
    lat0, lon0 = city.center
    assert _to_km(poly, lat0, lon0).area == pytest.approx(city.area_km2, rel=5e-3)
    # Not a square or a circle: many vertices and clearly below the circle's
    # isoperimetric quotient of 1 (a square has 0.785 but only 4 corners).
    poly_km = _to_km(poly, lat0, lon0)
    quotient = 4 * math.pi * poly_km.area / poly_km.length**2
    assert quotient < 0.97
    assert len(poly.exterior.coords) > 50
    assert poly.contains(Point(lon0, lat0))


def test_counts(city: DemoCity) -> None:
    levels = Counter(j.level for j in city.jurisdictions)
    assert levels["city"] == 1
    assert levels["district"] == 6
    assert 30 <= levels["station"] <= 80
    assert 1000 <= levels["grid"] <= 1500
    assert set(levels) == set(LEVELS)
    assert [d.name for d in city.by_level("district")] == [
        "天宁区",
        "钟楼区",
        "新北区",
        "武进区",
        "金坛区",
        "溧阳市",
    ]
    for d in city.by_level("district"):
        assert len(city.children(d.code)) >= 3
    for s in city.by_level("station"):
        assert len(city.children(s.code)) >= 1


def test_hierarchical_codes(city: DemoCity) -> None:
    codes = [j.code for j in city.jurisdictions]
    assert len(set(codes)) == len(codes)
    assert codes == sorted(codes), "parents before children, in code order"
    assert city.city.code == CITY_CODE and city.city.parent is None
    by_code = {j.code: j for j in city.jurisdictions}
    for j in city.jurisdictions:
        assert j.code.isdigit()
        assert len(j.code) == CODE_LENGTH[j.level]
        if j.level == "city":
            continue
        assert j.parent is not None
        parent = by_code[j.parent]
        assert j.code.startswith(parent.code)
        assert LEVELS.index(parent.level) == LEVELS.index(j.level) - 1
        # the prefix property holds for every ancestor, not just the parent
        ancestor: Jurisdiction | None = parent
        while ancestor is not None:
            assert j.code.startswith(ancestor.code)
            ancestor = by_code[ancestor.parent] if ancestor.parent else None


def test_names(city: DemoCity) -> None:
    stations = city.by_level("station")
    assert len({s.name for s in stations}) == len(stations)
    for s in stations:
        assert s.name.endswith("派出所")
        assert s.name_en.endswith("Police Station")
    for g in city.by_level("grid")[:50]:
        parent = city.get(g.parent or "")
        assert g.name.startswith(parent.name) and g.name.endswith("网格")
        assert g.name_en.split(" Grid ")[0] == parent.name_en.removesuffix(" Police Station")
    assert all(j.name and j.name_en for j in city.jurisdictions)


def test_polygons_valid(city: DemoCity) -> None:
    for j in city.jurisdictions:
        assert isinstance(j.polygon, Polygon), j.code
        assert j.polygon.is_valid and not j.polygon.is_empty, j.code
        assert j.polygon.area > 0
        assert (j.point is not None) == (j.level == "station")


def _assert_partition(parent: Polygon, children: list[Polygon], tol: float = 1e-7) -> None:
    union = shapely.union_all(children)
    area = parent.area
    assert _rel_diff(union.area, area) < tol
    assert union.symmetric_difference(parent).area / area < tol
    # no overlaps: the areas add up to the union's
    assert _rel_diff(sum(c.area for c in children), union.area) < tol


def test_districts_partition_city(city: DemoCity) -> None:
    districts = [d.polygon for d in city.by_level("district")]
    _assert_partition(city.city.polygon, districts)
    for i in range(len(districts)):
        for k in range(i + 1, len(districts)):
            assert districts[i].intersection(districts[k]).area < 1e-9 * districts[i].area


def test_stations_partition_districts(city: DemoCity) -> None:
    for d in city.by_level("district"):
        _assert_partition(d.polygon, [s.polygon for s in city.children(d.code)])


def test_grids_partition_stations(city: DemoCity) -> None:
    for s in city.by_level("station"):
        _assert_partition(s.polygon, [g.polygon for g in city.children(s.code)])


def test_no_grid_overlaps(city: DemoCity) -> None:
    grids = np.array([g.polygon for g in city.by_level("grid")], dtype=object)
    tree = shapely.STRtree(grids)
    a, b = tree.query(grids, predicate="intersects")
    keep = a < b
    overlap = shapely.area(shapely.intersection(grids[a[keep]], grids[b[keep]]))
    assert float(overlap.max()) < 1e-9 * float(shapely.area(grids).min())


def test_grid_centroids_covered_exactly_once(city: DemoCity) -> None:
    grids = np.array([g.polygon for g in city.by_level("grid")], dtype=object)
    centroids = shapely.centroid(grids)
    inside_city = shapely.contains(city.city.polygon, centroids)
    assert inside_city.mean() > 0.99
    tree = shapely.STRtree(grids)
    hit_pt, _ = tree.query(centroids[inside_city], predicate="intersects")
    counts = np.bincount(hit_pt, minlength=int(inside_city.sum()))
    assert (counts == 1).all()


def test_station_points_inside(city: DemoCity) -> None:
    for s in city.by_level("station"):
        assert s.point is not None
        assert s.polygon.contains(s.point)


def test_finer_grids_near_centre(city: DemoCity) -> None:
    lat0, lon0 = city.center
    near: list[float] = []
    far: list[float] = []
    for g in city.by_level("grid"):
        c = g.polygon.centroid
        d = float(_haversine_m(np.array(lat0), np.array(lon0), np.array(c.y), np.array(c.x)))
        if d < 5_000.0:
            near.append(equal_area_km2(g.polygon))
        elif d > 20_000.0:
            far.append(equal_area_km2(g.polygon))
    assert np.median(near) * 3 < np.median(far)


def test_jurisdiction_geojson_roundtrip(city: DemoCity) -> None:
    fc = jurisdictions_to_geojson(city.jurisdictions)
    text = json.dumps(fc, ensure_ascii=False)
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == len(city.jurisdictions)
    for f, j in zip(fc["features"], city.jurisdictions, strict=True):
        props = f["properties"]
        assert f["geometry"]["type"] == "Polygon"
        assert {k: props[k] for k in ("code", "level", "parent", "name", "name_en")} == {
            "code": j.code,
            "level": j.level,
            "parent": j.parent,
            "name": j.name,
            "name_en": j.name_en,
        }
        if j.level == "station":
            assert j.point is not None
            assert props["station_point"] == [j.point.x, j.point.y]
        else:
            assert props["station_point"] is None
    back = jurisdictions_from_geojson(json.loads(text))
    for a, b in zip(back, city.jurisdictions, strict=True):
        assert a.code == b.code and a.name == b.name and a.parent == b.parent
        assert a.polygon.normalize().equals_exact(b.polygon.normalize(), 0.0)
        assert (a.point is None) == (b.point is None)


# -- road network ---------------------------------------------------------------------------


def test_road_sizes_and_dtypes(city: DemoCity) -> None:
    r = city.roads
    assert 15_000 <= r.n_nodes <= 40_000
    assert 2.0 <= r.n_edges / r.n_nodes <= 3.0
    assert r.lat.dtype == np.float64 and r.lon.dtype == np.float64
    assert r.src.dtype == np.int32 and r.dst.dtype == np.int32
    assert r.length_m.dtype == np.float32 and r.travel_time_s.dtype == np.float32
    for name in ROAD_ARRAYS[2:]:
        assert getattr(r, name).shape == (r.n_edges,)
    assert r.road_class_names == ROAD_CLASSES


def test_road_graph_strongly_connected(city: DemoCity) -> None:
    r = city.roads
    n, labels = connected_components(r.to_csr(), directed=True, connection="strong")
    assert np.bincount(labels).max() >= 0.99 * r.n_nodes
    assert n == 1  # islands are dropped at generation


def test_road_edges_well_formed(city: DemoCity) -> None:
    r = city.roads
    assert (r.src != r.dst).all()
    assert r.src.min() >= 0 and r.dst.max() < r.n_nodes
    keys = r.src.astype(np.int64) * r.n_nodes + r.dst
    assert np.unique(keys).size == keys.size, "parallel edges"
    assert (r.length_m > 0).all()
    expected = _haversine_m(r.lat[r.src], r.lon[r.src], r.lat[r.dst], r.lon[r.dst])
    np.testing.assert_allclose(r.length_m, expected, rtol=1e-5, atol=1e-3)
    assert float(r.length_m.max()) < 3000.0
    speeds = np.array([DEFAULT_SPEED_KMH[c] for c in ROAD_CLASSES])[r.road_class]
    np.testing.assert_allclose(r.travel_time_s, r.length_m / (speeds / 3.6), rtol=1e-5)
    assert set(np.unique(r.road_class).tolist()) == set(range(len(ROAD_CLASSES)))


def test_road_structure(city: DemoCity) -> None:
    r = city.roads
    oneway = r.is_oneway()
    assert 0 < oneway.sum() < 0.1 * r.n_edges
    # one-way streets are residential and in the core
    assert set(r.road_class[oneway].tolist()) == {ROAD_CLASSES.index("residential")}
    # motorways and trunks are two-way and reach beyond the core
    fast = r.road_class <= ROAD_CLASSES.index("trunk")
    assert not oneway[fast].any()
    lat0, lon0 = city.center
    d_km = _haversine_m(np.full(r.n_nodes, lat0), np.full(r.n_nodes, lon0), r.lat, r.lon) / 1e3
    assert d_km[r.src[fast]].max() > 20.0
    # denser street network near the centre (road km per km²)
    d_edge = d_km[r.src]
    near = r.length_m[d_edge < 5.0].sum() / (math.pi * 25.0)
    ring = r.length_m[(d_edge > 20.0) & (d_edge < 25.0)].sum() / (math.pi * (25.0**2 - 20.0**2))
    assert near > 3 * ring


def test_road_nodes_inside_city(city: DemoCity) -> None:
    r = city.roads
    lat0, lon0 = city.center
    inside = shapely.contains_xy(city.city.polygon, r.lon, r.lat)
    assert inside.mean() > 0.99
    if inside.all():
        return
    outside = shapely.points(np.column_stack([r.lon[~inside], r.lat[~inside]]))
    dist = shapely.distance(_to_km(city.city.polygon, lat0, lon0), _to_km(outside, lat0, lon0))
    assert float(np.max(dist)) <= 1.0


def test_csr(city: DemoCity) -> None:
    r = city.roads
    m = r.to_csr()
    assert m.shape == (r.n_nodes, r.n_nodes)
    assert m.nnz == r.n_edges
    assert (m.data > 0).all()
    k = int(np.argmax(r.length_m))
    assert m[int(r.src[k]), int(r.dst[k])] == pytest.approx(float(r.travel_time_s[k]))


def test_geojson_lines(city: DemoCity) -> None:
    r = city.roads
    fc = r.to_geojson_lines()
    json.dumps(fc)
    feats = fc["features"]
    assert fc["type"] == "FeatureCollection"
    assert 0 < len(feats) < r.n_edges // 2
    n_links = np.unique(
        np.minimum(r.src, r.dst).astype(np.int64) * r.n_nodes + np.maximum(r.src, r.dst)
    ).size
    assert sum(len(f["geometry"]["coordinates"]) - 1 for f in feats) == n_links
    ranks = [ROAD_CLASSES.index(f["properties"]["road_class"]) for f in feats]
    assert ranks == sorted(ranks)
    assert {f["properties"]["oneway"] for f in feats} == {True, False}
    for f in feats[:200]:
        assert f["geometry"]["type"] == "LineString"
        assert len(f["geometry"]["coordinates"]) >= 2
    limited = r.to_geojson_lines(max_features=10)["features"]
    assert len(limited) == 10
    assert all(f["properties"]["road_class"] == "motorway" for f in limited)


def test_npz_roundtrip(city: DemoCity, tmp_path: Path) -> None:
    path = tmp_path / "roads.npz"
    save_roads_npz(city.roads, path)
    loaded = load_roads_npz(path)
    assert isinstance(loaded, RoadNetwork)
    for name in ROAD_ARRAYS:
        a, b = getattr(loaded, name), getattr(city.roads, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert loaded.road_class_names == city.roads.road_class_names
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


# -- other centres and internals ------------------------------------------------------------


def test_other_center() -> None:
    c = generate_city(3, center=(39.9, 116.4))
    assert 4000.0 <= c.area_km2 <= 4400.0
    assert c.city.polygon.contains(Point(116.4, 39.9))
    assert shapely.contains_xy(c.city.polygon, c.roads.lon, c.roads.lat).mean() > 0.99


def test_merge_fragments_keeps_coverage_gap_free() -> None:
    # A U-shaped parent: the middle cell, clipped, falls apart into the two prongs.
    parent = shapely.union_all([box(0, 0, 3, 1), box(0, 0, 1, 3), box(2, 0, 3, 3)])
    cells = [
        box(-1, 1.5, 4, 4),  # crosses both prongs -> two pieces
        box(-1, -1, 1.5, 1.5),
        box(1.5, -1, 4, 1.5),
    ]
    clipped = [c.intersection(parent) for c in cells]
    assert clipped[0].geom_type == "MultiPolygon"
    merged = _merge_fragments(clipped)
    assert all(isinstance(p, Polygon) and p.is_valid for p in merged)
    assert sum(p.area for p in merged) == pytest.approx(parent.area)
    assert shapely.union_all(merged).symmetric_difference(parent).area == pytest.approx(0.0)
