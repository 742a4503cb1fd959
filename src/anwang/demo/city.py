"""Deterministic synthetic city for demos, tests and benchmarks.

The generated city is modelled loosely on a Chinese prefecture-level city (default centre:
Changzhou, 31.78 N 119.95 E) of about 4,000-4,400 km². Nothing in it is real data: the
outline, the boundaries, the police-station locations and the road network are all drawn
from a seeded random generator, so the same ``seed`` always yields byte-identical output
and nothing about a real place can leak through the demo.

Two products are generated:

* a **jurisdiction tree** city > district > station > grid with hierarchical codes (every
  child's code starts with its parent's code, which is what prefix-based scope filtering
  relies on) whose polygons partition their parent exactly, and
* a **road network**: a directed graph with per-edge length, road class and free-flow
  travel time, strongly connected by construction (tiny islands are dropped).

Geometry is built in a local metric frame (kilometres east/north of the centre, an
equirectangular projection with the scale fixed at the centre latitude) and converted to
longitude/latitude at the very end by an *affine* map. Because the map is affine, straight
shared edges stay straight and shared vertices stay shared, so the partition properties
proven in the metric frame carry over to lon/lat exactly. Areas are reported with an
equal-area (sinusoidal) projection of the final lon/lat polygons.

Partition construction: the finest level (grids) is a Voronoi tessellation of
density-weighted seed points clipped to the city outline; stations are connected unions
of grids and districts are connected unions of stations (regions grown on the grid
adjacency graph), so each level partitions its parent *by construction* and boundaries
look irregular rather than convex. All overlay operations use a fixed precision grid of
1 mm so that neighbouring cells share bit-identical vertices. A clipped Voronoi cell that
falls apart into several pieces (possible where the outline is concave) keeps its largest
piece; every other piece is merged into the neighbour with which it shares the longest
border, so coverage stays gap-free and every polygon is a single ``Polygon``.

The only I/O lives in :func:`save_roads_npz` / :func:`load_roads_npz`; everything else is
pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Final

import numpy as np
import shapely
from numpy.typing import NDArray
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import Delaunay, cKDTree
from shapely.geometry import LineString, MultiPoint, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.ops import substring

from anwang.core.geo import EARTH_RADIUS_M, haversine_m

__all__ = [
    "CITY_CODE",
    "DEFAULT_CENTER",
    "DEFAULT_SPEED_KMH",
    "LEVELS",
    "ROAD_CLASSES",
    "DemoCity",
    "Jurisdiction",
    "ProgressCallback",
    "RoadNetwork",
    "equal_area_km2",
    "generate_city",
    "haversine_m",
    "jurisdictions_from_geojson",
    "jurisdictions_to_geojson",
    "load_roads_npz",
    "save_roads_npz",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
ProgressCallback = Callable[[str, float], None]

EARTH_RADIUS_KM: Final = EARTH_RADIUS_M / 1000.0
"""Mean Earth radius (IUGG), used for the local frame, great-circle lengths and areas."""

DEFAULT_CENTER: Final = (31.78, 119.95)
"""(lat, lon) of the default city centre (Changzhou)."""

CITY_CODE: Final = "3204"
CITY_NAME: Final = "常州市"
CITY_NAME_EN: Final = "Changzhou City"

LEVELS: Final = ("city", "district", "station", "grid")
"""Jurisdiction levels, root first."""

ROAD_CLASSES: Final = ("motorway", "trunk", "primary", "secondary", "tertiary", "residential")
"""Road class names; ``RoadNetwork.road_class`` stores the index into this tuple."""

DEFAULT_SPEED_KMH: Final[dict[str, float]] = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "residential": 30.0,
}
"""Free-flow speed per road class in km/h, used for ``RoadNetwork.travel_time_s``."""

_MOTORWAY, _TRUNK, _PRIMARY, _SECONDARY, _TERTIARY, _RESIDENTIAL = range(6)

# Precision grid (km) of every overlay operation: 1 mm. Snapping all results to one grid
# makes the vertices that two neighbouring cells share bit-identical.
_GRID_KM: Final = 1e-6

# Target size of the city outline in km² (the reported equal-area figure differs from it
# by far less than the allowed 4,000-4,400 km² band).
_AREA_RANGE_KM2: Final = (4150.0, 4300.0)
_GRID_COUNT_RANGE: Final = (1150, 1351)  # [lo, hi) number of grid cells
_STATION_COUNT_RANGE: Final = (46, 57)  # [lo, hi) number of police stations
_LLOYD_ITERATIONS: Final = 2

# (code suffix, name, English name, anchor).  The anchor places the district's seat: either
# an absolute offset in km from the centre ("abs") or a direction (degrees counter-clockwise
# from east) and a fraction of the distance to the outline along it ("ray").
_DISTRICTS: Final[tuple[tuple[str, str, str, tuple[str, float, float]], ...]] = (
    ("01", "天宁区", "Tianning District", ("abs", 2.6, 1.2)),
    ("02", "钟楼区", "Zhonglou District", ("abs", -2.8, 0.2)),
    ("03", "新北区", "Xinbei District", ("ray", 92.0, 0.55)),
    ("04", "武进区", "Wujin District", ("ray", -35.0, 0.45)),
    ("05", "金坛区", "Jintan District", ("ray", 192.0, 0.58)),
    ("06", "溧阳市", "Liyang City", ("ray", 238.0, 0.62)),
)
# Districts whose seat is also a dense satellite town (denser grids and streets around it).
_TOWN_DISTRICTS: Final = ("05", "06")


def _stems(spec: str) -> tuple[tuple[str, str], ...]:
    """Parse "汉字 Pinyin, 汉字 Pinyin, ..." into (name, English name) pairs."""
    return tuple((a, b) for a, b in (item.split() for item in spec.split(",")))


# Police-station name stems per district (stations are named "<stem>派出所"), then a shared
# pool used once a district's own list runs out. Names are plausible, not an inventory.
_STATION_STEMS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "01": _stems(
        "红梅 Hongmei, 青龙 Qinglong, 茶山 Chashan, 雕庄 Diaozhuang, 兰陵 Lanling, 郑陆 Zhenglu, "
        "东坡 Dongpo, 青山 Qingshan, 丽华 Lihua, 翠竹 Cuizhu, 局前 Juqian, 延陵 Yanling"
    ),
    "02": _stems(
        "南大街 Nandajie, 西林 Xilin, 五星 Wuxing, 永红 Yonghong, 北港 Beigang, 新闸 Xinzha, "
        "荷花池 Hehuachi, 邹区 Zouqu, 清潭 Qingtan, 广化 Guanghua, 白云 Baiyun, 怀德 Huaide"
    ),
    "03": _stems(
        "河海 Hehai, 三井 Sanjing, 龙虎塘 Longhutang, 薛家 Xuejia, 新桥 Xinqiao, 罗溪 Luoxi, "
        "西夏墅 Xixiashu, 春江 Chunjiang, 孟河 Menghe, 奔牛 Benniu, 魏村 Weicun, 安家 Anjia, "
        "圩塘 Weitang, 汤庄 Tangzhuang"
    ),
    "04": _stems(
        "湖塘 Hutang, 牛塘 Niutang, 南夏墅 Nanxiashu, 西湖 Xihu, 遥观 Yaoguan, 横林 Henglin, "
        "横山桥 Hengshanqiao, 湟里 Huangli, 前黄 Qianhuang, 礼嘉 Lijia, 雪堰 Xueyan, 嘉泽 Jiaze, "
        "戚墅堰 Qishuyan, 潞城 Lucheng, 丁堰 Dingyan, 寨桥 Zhaiqiao"
    ),
    "05": _stems(
        "东城 Dongcheng, 西城 Xicheng, 尧塘 Yaotang, 儒林 Rulin, 直溪 Zhixi, 朱林 Zhulin, "
        "薛埠 Xuebu, 指前 Zhiqian, 金城 Jincheng, 茅山 Maoshan, 华城 Huacheng, 唐王 Tangwang"
    ),
    "06": _stems(
        "溧城 Licheng, 天目湖 Tianmuhu, 南渡 Nandu, 社渚 Shezhu, 上兴 Shangxing, 竹箦 Zhuze, "
        "别桥 Bieqiao, 戴埠 Daibu, 埭头 Daitou, 上黄 Shanghuang, 昆仑 Kunlun, 古县 Guxian"
    ),
}
_SHARED_STEMS: Final = _stems(
    "东风 Dongfeng, 和平 Heping, 新华 Xinhua, 人民 Renmin, 解放 Jiefang, 光明 Guangming, "
    "建设 Jianshe, 长江 Changjiang, 运河 Yunhe, 龙城 Longcheng, 金湖 Jinhu, 滨江 Binjiang, "
    "城南 Chengnan, 城北 Chengbei, 城东 Chengdong, 城西 Chengxi, 花园 Huayuan, 新城 Xincheng, "
    "湖滨 Hubin, 友谊 Youyi"
)


# --------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Jurisdiction:
    """One node of the jurisdiction tree.

    ``code`` is hierarchical: ``"3204"`` (city), + 2 digits (district), + 2 digits
    (station), + 3 digits (grid), so ``child.code.startswith(parent.code)`` always holds and
    a scope can be filtered with a plain string prefix. ``polygon`` is in lon/lat order
    (GeoJSON axis order), valid and a single ``Polygon`` (it may have holes where it
    surrounds another unit). The polygons of the children of one node partition that
    node's polygon. ``point`` is the police-station building (inside ``polygon``) for
    stations and ``None`` for the other levels.
    """

    code: str
    level: str
    parent: str | None
    name: str
    name_en: str
    polygon: Polygon
    point: Point | None = None


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """Directed road graph.

    Nodes are junctions and shape points (``lat``/``lon`` in degrees, float64). Edge ``k``
    runs from node ``src[k]`` to ``dst[k]`` (int32 node indices). A two-way road is two
    directed edges, a one-way street is one; there are no self-loops and no parallel
    edges. ``length_m`` is the great-circle length in metres (float32, always > 0),
    ``road_class`` the index into ``road_class_names`` (uint8) and ``travel_time_s`` the
    free-flow travel time in seconds at the class speed (float32, always > 0). The graph
    is strongly connected.
    """

    lat: FloatArray
    lon: FloatArray
    src: NDArray[np.int32]
    dst: NDArray[np.int32]
    length_m: NDArray[np.float32]
    road_class: NDArray[np.uint8]
    travel_time_s: NDArray[np.float32]
    road_class_names: tuple[str, ...] = ROAD_CLASSES

    @property
    def n_nodes(self) -> int:
        return int(self.lat.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.src.shape[0])

    def is_oneway(self) -> NDArray[np.bool_]:
        """Per directed edge: True if the reverse edge does not exist."""
        n = np.int64(self.n_nodes)
        fwd = self.src.astype(np.int64) * n + self.dst.astype(np.int64)
        rev = self.dst.astype(np.int64) * n + self.src.astype(np.int64)
        return ~np.isin(rev, fwd)

    def to_csr(self) -> csr_matrix:
        """Sparse ``n_nodes × n_nodes`` matrix of travel times in seconds (float64).

        Entry ``[src, dst]`` is the edge's travel time; suitable for
        ``scipy.sparse.csgraph.dijkstra``. All entries are strictly positive, so no edge
        is confused with an absent one.
        """
        n = self.n_nodes
        return csr_matrix(
            (self.travel_time_s.astype(np.float64), (self.src, self.dst)), shape=(n, n)
        )

    def to_geojson_lines(self, max_features: int | None = None) -> dict[str, Any]:
        """GeoJSON FeatureCollection of LineStrings for drawing the network.

        The two directions of a two-way road become one line, and chains of segments
        through shape points (nodes joining exactly two segments of the same class and
        direction) are merged into one line, so a map gets a few thousand features rather
        than one per edge. Properties: ``road_class`` (name) and ``oneway`` (bool; a
        one-way line's coordinates run in the direction of travel). Features are ordered
        from the highest class (motorway) down, so ``max_features`` keeps the most
        important roads. Coordinates are rounded to 1e-6 degree (~0.1 m).
        """
        lines = _merge_lines(self)
        features: list[dict[str, Any]] = []
        for cls, oneway, nodes in lines:
            if max_features is not None and len(features) >= max_features:
                break
            coords = [[round(float(self.lon[v]), 6), round(float(self.lat[v]), 6)] for v in nodes]
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "LineString", "coordinates": coords},
                    "properties": {
                        "road_class": self.road_class_names[cls],
                        "oneway": oneway,
                    },
                }
            )
        return {"type": "FeatureCollection", "features": features}


@dataclass(frozen=True, eq=False)
class DemoCity:
    """A generated city: the jurisdiction tree (parents before children, in code order),
    the road network and the city's equal-area size in km². ``center`` is (lat, lon)."""

    seed: int
    center: tuple[float, float]
    jurisdictions: list[Jurisdiction]
    roads: RoadNetwork
    area_km2: float
    _by_code: dict[str, Jurisdiction] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {j.code: j for j in self.jurisdictions})

    @property
    def city(self) -> Jurisdiction:
        return self._by_code[CITY_CODE]

    def get(self, code: str) -> Jurisdiction:
        """The jurisdiction with this code (KeyError if unknown)."""
        return self._by_code[code]

    def by_level(self, level: str) -> list[Jurisdiction]:
        """All jurisdictions of one level, in code order."""
        return [j for j in self.jurisdictions if j.level == level]

    def children(self, code: str) -> list[Jurisdiction]:
        """Direct children of ``code``, in code order."""
        return [j for j in self.jurisdictions if j.parent == code]


# --------------------------------------------------------------------------------------
# Small geodesy helpers
# --------------------------------------------------------------------------------------

_KM_PER_DEG_LAT: Final = EARTH_RADIUS_KM * math.pi / 180.0


@dataclass(frozen=True)
class _Frame:
    """Local metric frame: x km east, y km north of (lat0, lon0); affine in lon/lat."""

    lat0: float
    lon0: float

    @property
    def km_per_deg_lon(self) -> float:
        return _KM_PER_DEG_LAT * math.cos(math.radians(self.lat0))

    def xy_to_lonlat(self, xy: FloatArray) -> FloatArray:
        out = np.empty_like(xy, dtype=np.float64)
        out[:, 0] = self.lon0 + xy[:, 0] / self.km_per_deg_lon
        out[:, 1] = self.lat0 + xy[:, 1] / _KM_PER_DEG_LAT
        return out

    def geom_to_lonlat(self, geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, self.xy_to_lonlat)


def equal_area_km2(geom: BaseGeometry) -> float:
    """Area in km² of a lon/lat (multi)polygon, via the sinusoidal equal-area projection.

    The sinusoidal projection (x = R·Δlon·cos(lat), y = R·lat) preserves area exactly, so
    for a city-sized polygon the only error is the straight-edge approximation, well
    below 0.01 %.
    """
    if geom.is_empty:
        return 0.0
    coords = shapely.get_coordinates(geom)
    lon0 = float(np.mean(coords[:, 0]))

    def to_sinusoidal(c: FloatArray) -> FloatArray:
        lat = np.radians(c[:, 1])
        out = np.empty_like(c)
        out[:, 0] = EARTH_RADIUS_KM * np.radians(c[:, 0] - lon0) * np.cos(lat)
        out[:, 1] = EARTH_RADIUS_KM * lat
        return out

    return float(shapely.transform(geom, to_sinusoidal).area)


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def generate_city(
    seed: int = 7,
    center: tuple[float, float] = DEFAULT_CENTER,
    *,
    progress: ProgressCallback | None = None,
) -> DemoCity:
    """Generate the demo city for ``seed`` around ``center`` = (lat, lon) in degrees.

    Pure and deterministic: the same (seed, center) gives identical jurisdictions and
    road arrays. Each generation stage draws from its own child of
    ``numpy.random.SeedSequence(seed)``, so stages do not perturb one another.
    ``progress(stage, fraction)`` is called with a stage name and the overall fraction
    done (0..1, non-decreasing, ending with ``("done", 1.0)``). Takes a few seconds.
    """

    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    lat0, lon0 = float(center[0]), float(center[1])
    frame = _Frame(lat0=lat0, lon0=lon0)
    streams = np.random.SeedSequence(seed).spawn(4)
    rng_outline, rng_grids, rng_admin, rng_roads = (np.random.default_rng(s) for s in streams)

    report("boundary", 0.0)
    outline = _city_outline(rng_outline)
    anchors = _district_anchors(outline)
    towns = np.array([anchors[i] for i, d in enumerate(_DISTRICTS) if d[0] in _TOWN_DISTRICTS])

    report("grids", 0.05)
    seeds, grid_polys = _grid_cells(rng_grids, outline, towns)

    report("districts", 0.35)
    tree = _jurisdiction_tree(rng_admin, outline, anchors, seeds, grid_polys, frame)

    report("roads", 0.55)
    roads = _road_network(rng_roads, outline, towns, frame)

    report("finishing", 0.95)
    city = tree[0]
    area = equal_area_km2(city.polygon)
    result = DemoCity(
        seed=int(seed), center=(lat0, lon0), jurisdictions=tree, roads=roads, area_km2=area
    )
    report("done", 1.0)
    return result


# --------------------------------------------------------------------------------------
# Outline and grid cells (metric frame, km)
# --------------------------------------------------------------------------------------


def _city_outline(rng: np.random.Generator) -> Polygon:
    """An irregular, star-shaped outline of the target area, centre off to the north-east.

    Built from a radius function r(θ) = 1 + low-order harmonics + small roughness around
    a point south-west of the centre, stretched along a NE-SW axis, then scaled to the
    target area. Star-shaped with r > 0, hence a simple polygon containing the centre
    with a margin of several km.
    """
    n = 360
    theta = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 8):
        r += rng.uniform(0.03, 0.09) / k**0.7 * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    for k in range(8, 30):
        r += rng.uniform(0.0, 0.012) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r = np.maximum(r, 0.7)
    x = r * np.cos(theta)
    y = r * np.sin(theta)
    # Elongate along a NE-SW axis.
    axis = math.radians(rng.uniform(45.0, 70.0))
    stretch = rng.uniform(1.15, 1.3)
    ca, sa = math.cos(axis), math.sin(axis)
    u = (x * ca + y * sa) * stretch
    v = (-x * sa + y * ca) / stretch
    x, y = u * ca - v * sa, u * sa + v * ca
    # The urban core sits north-east of the outline's own centre.
    x = x - rng.uniform(0.08, 0.14)
    y = y - rng.uniform(0.14, 0.2)
    unit = Polygon(np.column_stack([x, y]))
    target = rng.uniform(*_AREA_RANGE_KM2)
    scale = math.sqrt(target / unit.area)
    poly = Polygon(np.column_stack([x * scale, y * scale]))
    return _as_polygon(shapely.set_precision(poly, _GRID_KM))


def _equivalent_radius(outline: Polygon) -> float:
    return math.sqrt(outline.area / math.pi)


def _district_anchors(outline: Polygon) -> FloatArray:
    """Seat of each district (km), guaranteed inside the outline."""
    pts = []
    for _code, _name, _name_en, (kind, a, b) in _DISTRICTS:
        if kind == "abs":
            p = np.array([a, b])
        else:
            ang = math.radians(a)
            direction = np.array([math.cos(ang), math.sin(ang)])
            far = LineString([(0.0, 0.0), tuple(direction * 500.0)])
            hit = far.intersection(outline.exterior)
            dist = (
                min(float(np.hypot(*c)) for c in shapely.get_coordinates(hit))
                if not hit.is_empty
                else 10.0
            )
            p = direction * dist * b
        # Pull towards the centre until strictly inside (only matters for odd outlines).
        for _ in range(20):
            if outline.contains(Point(p)):
                break
            p = p * 0.85
        pts.append(p)
    return np.array(pts, dtype=np.float64)


def _density(x: FloatArray, y: FloatArray, towns: FloatArray) -> FloatArray:
    """Relative density of grid cells: a strong urban peak plus satellite towns."""
    d = 1.0 + 30.0 * np.exp(-np.hypot(x, y) / 4.5)
    for tx, ty in towns:
        d += 4.0 * np.exp(-np.hypot(x - tx, y - ty) / 2.5)
    return np.asarray(d, dtype=np.float64)


def _voronoi_clipped(points: FloatArray, outline: Polygon) -> NDArray[np.object_]:
    """Voronoi cells of ``points`` (same order as the points) clipped to the outline."""
    box = shapely.box(*outline.buffer(20.0).bounds)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(MultiPoint(points), extend_to=box, ordered=True)
    )
    return np.asarray(shapely.intersection(cells, outline, grid_size=_GRID_KM))


def _grid_cells(
    rng: np.random.Generator, outline: Polygon, towns: FloatArray
) -> tuple[FloatArray, list[Polygon]]:
    """Seed points and cell polygons of the grid level (km), partitioning the outline.

    Seeds are rejection-sampled from :func:`_density` (smaller cells near the centre and
    the towns) and then relaxed with a couple of Lloyd iterations, which evens out cell
    shapes while keeping most of the density gradient.
    """
    n = int(rng.integers(*_GRID_COUNT_RANGE))
    minx, miny, maxx, maxy = outline.bounds
    dmax = float(_density(np.zeros(1), np.zeros(1), towns)[0]) + 4.0 * len(towns)
    chunks: list[FloatArray] = []
    have = 0
    while have < n:
        m = 8 * n
        x = rng.uniform(minx, maxx, m)
        y = rng.uniform(miny, maxy, m)
        ok = rng.uniform(0.0, dmax, m) < _density(x, y, towns)
        ok &= shapely.contains_xy(outline, x, y)
        chunk = np.column_stack([x[ok], y[ok]])
        chunks.append(chunk)
        have += len(chunk)
    pts = np.concatenate(chunks)[:n]

    for _ in range(_LLOYD_ITERATIONS):
        cells = _voronoi_clipped(pts, outline)
        cent = shapely.get_coordinates(shapely.centroid(cells))
        inside = shapely.contains_xy(outline, cent[:, 0], cent[:, 1])
        pts = np.where(inside[:, None], cent, pts)

    cells = _voronoi_clipped(pts, outline)
    polys = _merge_fragments(list(cells))
    # A seed is used later as the cell's representative point (station buildings, graph
    # distances); make sure it lies in its own final polygon.
    for i, poly in enumerate(polys):
        if not poly.contains(Point(pts[i])):
            rp = poly.representative_point()
            pts[i] = (rp.x, rp.y)
    return pts, polys


def _polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    return [g for g in shapely.get_parts(geom) if isinstance(g, Polygon) and not g.is_empty]


def _as_polygon(geom: BaseGeometry) -> Polygon:
    parts = _polygon_parts(geom)
    if len(parts) != 1:
        raise RuntimeError(f"expected one polygon, got {len(parts)} parts")
    return parts[0]


def _merge_fragments(geoms: Sequence[BaseGeometry]) -> list[Polygon]:
    """Turn a coverage whose members may be multi-part into one of single Polygons.

    Each member keeps its largest part; every other part is merged into the member it
    shares the longest border with, so the union (the coverage) is unchanged.
    """
    polys: list[Polygon] = []
    orphans: list[Polygon] = []
    for g in geoms:
        parts = sorted(_polygon_parts(g), key=lambda p: -p.area)
        if not parts:
            raise RuntimeError("empty cell in coverage")
        polys.append(parts[0])
        orphans.extend(parts[1:])
    while orphans:
        pending: list[Polygon] = []
        tree = shapely.STRtree(polys)
        for piece in orphans:
            cand = [int(i) for i in tree.query(piece, predicate="intersects")]
            shared = [
                shapely.intersection(polys[i].boundary, piece.boundary, grid_size=_GRID_KM).length
                for i in cand
            ]
            merged = False
            ranked = sorted(zip(shared, cand, strict=True), key=lambda t: (-t[0], t[1]))
            for border, i in ranked:
                if border <= 0.0:
                    break
                u = shapely.union(polys[i], piece, grid_size=_GRID_KM)
                if isinstance(u, Polygon):
                    polys[i] = u
                    merged = True
                    break
            if not merged:
                pending.append(piece)
        if len(pending) == len(orphans):
            raise RuntimeError("could not attach a coverage fragment to any neighbour")
        orphans = pending
    return polys


# --------------------------------------------------------------------------------------
# Jurisdiction tree
# --------------------------------------------------------------------------------------


def _adjacency(polys: Sequence[Polygon], seeds: FloatArray) -> csr_matrix:
    """Symmetric graph of cells sharing a border of positive length.

    Edge weights are the distances (km) between the cells' seed points; regions grown on
    this graph are connected sets of cells, hence their unions are single polygons.
    """
    arr = np.asarray(polys, dtype=object)
    tree = shapely.STRtree(arr)
    i, j = tree.query(arr, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    bnd = shapely.boundary(arr)
    shared = shapely.length(shapely.intersection(bnd[i], bnd[j], grid_size=_GRID_KM))
    ok = shared > 1e-5
    i, j = i[ok], j[ok]
    w = np.hypot(*(seeds[i] - seeds[j]).T)
    n = len(polys)
    m = coo_matrix(
        (np.concatenate([w, w]), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n)
    )
    return m.tocsr()


def _grow_regions(graph: csr_matrix, sources: Sequence[int]) -> IntArray:
    """Label every node with the index of its nearest source (graph distance).

    Ties go to the lowest source index, which (with shortest-path subpaths) makes every
    region connected; :func:`_make_connected` is a safety net for unreachable nodes.
    """
    dist = dijkstra(graph, directed=False, indices=list(sources))
    labels = np.argmin(dist, axis=0).astype(np.int64)
    labels[~np.isfinite(dist.min(axis=0))] = -1
    return _make_connected(graph, labels, len(sources))


def _make_connected(graph: csr_matrix, labels: IntArray, n_labels: int) -> IntArray:
    """Reassign detached pieces of a region (and unlabelled nodes) to a bordering region."""
    labels = labels.copy()
    coo = graph.tocoo()
    for _ in range(50):
        same = labels[coo.row] == labels[coo.col]
        g = coo_matrix(
            (np.ones(int(same.sum())), (coo.row[same], coo.col[same])), shape=graph.shape
        )
        _, comp = connected_components(g, directed=False)
        changed = False
        for lab in range(-1, n_labels):
            members = np.flatnonzero(labels == lab)
            if members.size == 0:
                continue
            comps, counts = np.unique(comp[members], return_counts=True)
            if lab >= 0 and comps.size <= 1:
                continue
            # Keep the biggest component (ties: lowest component id); move the rest.
            keep_comp = comps[np.argmax(counts)] if lab >= 0 else -1
            for c in comps:
                if c == keep_comp:
                    continue
                nodes = members[comp[members] == c]
                mask = np.isin(coo.row, nodes) & ~np.isin(coo.col, nodes)
                neigh = labels[coo.col[mask]]
                neigh = neigh[(neigh >= 0) & (neigh != lab)]
                if neigh.size == 0:
                    continue
                labels[nodes] = np.bincount(neigh).argmax()
                changed = True
        if not changed:
            break
    if (labels < 0).any():
        raise RuntimeError("grid cells unreachable from every region source")
    return labels


def _kmeans(rng: np.random.Generator, pts: FloatArray, k: int, iters: int = 20) -> FloatArray:
    """Plain k-means with k-means++ seeding (deterministic for a given generator)."""
    centres = [pts[int(rng.integers(len(pts)))]]
    for _ in range(1, k):
        d2 = np.min(((pts[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        total = float(d2.sum())
        if total <= 0.0:
            centres.append(pts[int(rng.integers(len(pts)))])
            continue
        centres.append(pts[int(rng.choice(len(pts), p=d2 / total))])
    c = np.array(centres)
    for _ in range(iters):
        lab = np.argmin(((pts[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        for q in range(k):
            sel = pts[lab == q]
            if len(sel):
                c[q] = sel.mean(axis=0)
    return c


def _nearest_distinct(pts: FloatArray, targets: FloatArray) -> list[int]:
    """For each target in turn, the index of the nearest not-yet-taken point."""
    taken: list[int] = []
    for t in targets:
        d = np.hypot(pts[:, 0] - t[0], pts[:, 1] - t[1])
        if taken:
            d[taken] = np.inf
        taken.append(int(np.argmin(d)))
    return taken


def _allocate(total: int, weights: FloatArray, minimum: int) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    raw = weights / weights.sum() * total
    base = np.maximum(np.floor(raw).astype(np.int64), minimum)
    rest = total - int(base.sum())
    if rest > 0:
        order = np.argsort(-(raw - np.floor(raw)), kind="stable")
        for q in order[:rest]:
            base[q] += 1
    return [int(b) for b in base]


def _reading_order(points: FloatArray, row_km: float) -> IntArray:
    """Indices sorted north-to-south in rows of ``row_km``, west-to-east within a row."""
    row = np.floor((points[:, 1].max() - points[:, 1]) / row_km)
    return np.lexsort((points[:, 0], row)).astype(np.int64)


def _jurisdiction_tree(
    rng: np.random.Generator,
    outline: Polygon,
    anchors: FloatArray,
    seeds: FloatArray,
    grid_polys: list[Polygon],
    frame: _Frame,
) -> list[Jurisdiction]:
    """Group grid cells into stations and districts and name and code everything.

    Districts are grown on the grid adjacency graph from the cells nearest the district
    seats; inside each district, station seeds come from k-means over its grid seeds
    (so dense areas get smaller stations) and stations are grown the same way. Regions
    grown on the graph are connected, so every union is one polygon, and because every
    level is a union of the level below, each level partitions its parent exactly.
    Station 01 of a district is the one nearest the seat; grids are numbered in reading
    order (north to south in 1 km rows, then west to east).
    """
    graph = _adjacency(grid_polys, seeds)

    # Districts: regions grown from the grid cell nearest to each district seat.
    d_src = _nearest_distinct(seeds, anchors)
    d_lab = _grow_regions(graph, d_src)

    # Stations per district proportional to its number of grid cells (a proxy for
    # population), at least 3.
    n_stations = int(rng.integers(*_STATION_COUNT_RANGE))
    counts = np.bincount(d_lab, minlength=len(_DISTRICTS)).astype(np.float64)
    per_district = _allocate(n_stations, counts, 3)

    result: list[Jurisdiction] = []
    shared_stems = list(_SHARED_STEMS)
    district_entries: list[Jurisdiction] = []
    station_entries: list[Jurisdiction] = []
    grid_entries: list[Jurisdiction] = []

    for di, (suffix, dname, dname_en, _anchor) in enumerate(_DISTRICTS):
        dcode = CITY_CODE + suffix
        members = np.flatnonzero(d_lab == di)
        sub = graph[members][:, members]
        k = min(per_district[di], max(1, len(members) // 6))
        centres = _kmeans(rng, seeds[members], k)
        s_src_local = _nearest_distinct(seeds[members], centres)
        s_lab = _grow_regions(sub, s_src_local)
        # Station 01 is the one nearest the district seat, then by distance from it.
        src_pts = seeds[members][s_src_local]
        rank = np.argsort(np.hypot(*(src_pts - anchors[di]).T), kind="stable")
        stems = list(_STATION_STEMS[suffix])
        station_polys_km: list[Polygon] = []
        for si, q in enumerate(rank):
            scode = f"{dcode}{si + 1:02d}"
            if stems:
                stem, stem_en = stems.pop(0)
            elif shared_stems:
                stem, stem_en = shared_stems.pop(0)
            else:  # not reachable with the configured counts; keeps names unique anyway
                stem, stem_en = f"{dname[:-1]}{si + 1}", f"{dname_en.split()[0]} {si + 1}"
            sname = f"{stem}派出所"
            s_members = members[s_lab == q]
            s_polys = [grid_polys[g] for g in s_members]
            s_poly_km = _as_polygon(shapely.union_all(s_polys, grid_size=_GRID_KM))
            station_polys_km.append(s_poly_km)
            building = Point(seeds[members[s_src_local[q]]])
            if not s_poly_km.contains(building):
                building = s_poly_km.representative_point()
            station_entries.append(
                Jurisdiction(
                    code=scode,
                    level="station",
                    parent=dcode,
                    name=sname,
                    name_en=f"{stem_en} Police Station",
                    polygon=_to_ll(frame, s_poly_km),
                    point=_point_to_ll(frame, building),
                )
            )
            order = _reading_order(seeds[s_members], 1.0)
            for gi, local in enumerate(order):
                g = int(s_members[local])
                grid_entries.append(
                    Jurisdiction(
                        code=f"{scode}{gi + 1:03d}",
                        level="grid",
                        parent=scode,
                        name=f"{sname}第{gi + 1}网格",
                        name_en=f"{stem_en} Grid {gi + 1}",
                        polygon=_to_ll(frame, grid_polys[g]),
                    )
                )
        d_poly_km = _as_polygon(shapely.union_all(station_polys_km, grid_size=_GRID_KM))
        district_entries.append(
            Jurisdiction(
                code=dcode,
                level="district",
                parent=CITY_CODE,
                name=dname,
                name_en=dname_en,
                polygon=_to_ll(frame, d_poly_km),
            )
        )

    result.append(
        Jurisdiction(
            code=CITY_CODE,
            level="city",
            parent=None,
            name=CITY_NAME,
            name_en=CITY_NAME_EN,
            polygon=_to_ll(frame, outline),
        )
    )
    result.extend(district_entries)
    result.extend(station_entries)
    result.extend(grid_entries)
    result.sort(key=lambda j: j.code)
    return result


def _to_ll(frame: _Frame, poly: Polygon) -> Polygon:
    out = frame.geom_to_lonlat(poly)
    if not isinstance(out, Polygon):
        raise RuntimeError("transform changed the geometry type")
    return out


def _point_to_ll(frame: _Frame, p: Point) -> Point:
    ll = frame.xy_to_lonlat(np.array([[p.x, p.y]]))
    return Point(float(ll[0, 0]), float(ll[0, 1]))


# --------------------------------------------------------------------------------------
# Road network (metric frame, km)
# --------------------------------------------------------------------------------------

_LATTICE_KM: Final = 0.2  # finest street spacing (old town)
_BLOCK: Final = 8  # zone blocks are 8 × 8 finest lattice cells (1.6 km)
_RING: Final = 32  # the inner ring road runs on lattice lines ±32 (±6.4 km)
_MAX_SEGMENT_KM: Final = 0.3  # longer edges get shape points


def _v2(a: IntArray) -> IntArray:
    """2-adic valuation (number of trailing zero bits); 99 for zero."""
    a = np.abs(a)
    out = np.zeros(a.shape, dtype=np.int64)
    for k in range(1, 16):
        out += (a % (1 << k) == 0).astype(np.int64)
    return np.where(a == 0, 99, out)


def _line_level(line: IntArray, step: IntArray) -> IntArray:
    """Importance of lattice line ``line`` in a zone with lattice step ``step``.

    Lines every 2^v cells: the coarser the zone, the sparser its arterials (in the
    countryside one more level is skipped). >= 3 primary, 2 secondary, 1 tertiary.
    """
    t = np.where(step == 1, 0, np.where(step == 2, 1, 3))
    return _v2(line) - t


def _road_network(
    rng: np.random.Generator, outline: Polygon, towns: FloatArray, frame: _Frame
) -> RoadNetwork:
    """Streets on a jittered multi-resolution lattice + motorways, strongly connected.

    * Street junctions lie on a lattice rotated by a random angle, with spacing 0.2 km in
      the old town, 0.4 km in the inner suburbs and the satellite towns and 0.8 km in the
      countryside (zones are 1.6 km blocks whose radii vary with direction, so they look
      grown); countryside junctions are thinned at random so rural roads look organic.
    * Streets are the relative neighbourhood graph of the junctions (a sparse, planar
      subgraph of the Delaunay triangulation that recovers the lattice's streets and
      drops its diagonals), plus the Delaunay edges along arterial lattice lines so
      arterials are never interrupted.
    * Classes come from lattice lines (every 2^v-th line is more important); the two
      lines through the centre are trunk roads, the ±6.4 km box is the trunk ring road;
      alternate residential streets in the old town are one-way.
    * Two motorways cross the city and a third ends at one of them; they have no level
      crossings and connect to arterials at interchanges about every 7 km.
    * Edges longer than 0.3 km are split by (slightly bowed) shape points.
    Finally everything outside the largest strongly connected component is dropped.
    """
    u = _LATTICE_KM
    ang = rng.uniform(-0.35, 0.35)
    ca, sa = math.cos(ang), math.sin(ang)

    def lat_to_km(i: FloatArray, j: FloatArray) -> tuple[FloatArray, FloatArray]:
        return u * (i * ca - j * sa), u * (i * sa + j * ca)

    ext = shapely.get_coordinates(outline.exterior)
    li = (ext[:, 0] * ca + ext[:, 1] * sa) / u
    lj = (-ext[:, 0] * sa + ext[:, 1] * ca) / u
    i0 = int(math.floor(li.min() / _BLOCK) - 1) * _BLOCK
    i1 = int(math.ceil(li.max() / _BLOCK) + 1) * _BLOCK
    j0 = int(math.floor(lj.min() / _BLOCK) - 1) * _BLOCK
    j1 = int(math.ceil(lj.max() / _BLOCK) + 1) * _BLOCK
    nbi, nbj = (i1 - i0) // _BLOCK, (j1 - j0) // _BLOCK

    # Zone step (in lattice cells) of every block.
    bi, bj = np.meshgrid(np.arange(nbi), np.arange(nbj), indexing="ij")
    bx, by = lat_to_km(
        (i0 + bi * _BLOCK + _BLOCK / 2.0).astype(np.float64),
        (j0 + bj * _BLOCK + _BLOCK / 2.0).astype(np.float64),
    )
    dcen = np.hypot(bx, by)
    # Built-up radii vary smoothly with direction (plus a little per-block noise) so the
    # zones look like grown settlements rather than discs.
    bearing = np.arctan2(by, bx)
    wobble = np.ones_like(dcen)
    for k in range(2, 6):
        wobble += rng.uniform(0.05, 0.15) * np.cos(k * bearing + rng.uniform(0, 2 * math.pi))
    core = dcen < 6.0 * wobble + rng.normal(0.0, 0.4, dcen.shape)
    mid = dcen < 14.0 * wobble + rng.normal(0.0, 1.0, dcen.shape)
    for tx, ty in towns:
        mid |= np.hypot(bx - tx, by - ty) < 3.5 + rng.normal(0.0, 0.6, dcen.shape)
    block_step = np.where(core, 1, np.where(mid, 2, 4)).astype(np.int64)

    # Candidate junctions: every finest lattice point; a point belongs to up to 4 blocks
    # (when on a block border) and takes the finest step among them.
    mi, mj = np.meshgrid(np.arange(i0, i1 + 1), np.arange(j0, j1 + 1), indexing="ij")
    gi, gj = mi.ravel().astype(np.int64), mj.ravel().astype(np.int64)
    b_i = np.clip((gi - i0) // _BLOCK, 0, nbi - 1)
    b_j = np.clip((gj - j0) // _BLOCK, 0, nbj - 1)
    b_i2 = np.where(((gi - i0) % _BLOCK == 0) & (b_i > 0), b_i - 1, b_i)
    b_j2 = np.where(((gj - j0) % _BLOCK == 0) & (b_j > 0), b_j - 1, b_j)
    step = np.minimum.reduce(
        [block_step[b_i, b_j], block_step[b_i2, b_j], block_step[b_i, b_j2], block_step[b_i2, b_j2]]
    )
    on = (gi % step == 0) & (gj % step == 0)
    gi, gj, step = gi[on], gj[on], step[on]
    x, y = lat_to_km(gi.astype(np.float64), gj.astype(np.float64))
    inside = shapely.contains_xy(outline, x, y)
    gi, gj, step = gi[inside], gj[inside], step[inside]

    lev_i = _line_level(gi, step)
    lev_j = _line_level(gj, step)
    ring_i = (np.abs(gi) == _RING) & (np.abs(gj) <= _RING)
    ring_j = (np.abs(gj) == _RING) & (np.abs(gi) <= _RING)
    art_i = (lev_i >= 1) | ring_i
    art_j = (lev_j >= 1) | ring_j

    # Thin non-arterial junctions (mostly in the countryside).
    drop_p = np.where(step == 1, 0.02, np.where(step == 2, 0.08, 0.35))
    drop = (rng.random(gi.size) < drop_p) & ~art_i & ~art_j
    keep = ~drop
    gi, gj, step, art_i, art_j = gi[keep], gj[keep], step[keep], art_i[keep], art_j[keep]

    # Jitter, much weaker across arterial lines so arterials stay straight.
    frac = np.where(step == 1, 0.12, np.where(step == 2, 0.18, 0.3))
    amp = frac * step
    di = rng.uniform(-1.0, 1.0, gi.size) * amp * np.where(art_i, 0.1, 1.0)
    dj = rng.uniform(-1.0, 1.0, gi.size) * amp * np.where(art_j, 0.1, 1.0)
    x, y = lat_to_km(gi + di, gj + dj)
    pts = np.column_stack([x, y])
    n_local = len(pts)

    # Delaunay edges (p < q).
    tri = Delaunay(pts)
    indptr, indices = tri.vertex_neighbor_vertices
    deg = np.diff(indptr)
    p_all = np.repeat(np.arange(n_local), deg)
    q_all = indices.astype(np.int64)
    sel = p_all < q_all
    ep, eq = p_all[sel], q_all[sel]
    elen = np.hypot(*(pts[ep] - pts[eq]).T)

    # Relative neighbourhood graph: drop pq if some r is closer than |pq| to both ends.
    dmax = int(deg.max())
    nb = np.full((n_local, dmax), -1, dtype=np.int64)
    col = np.arange(indices.size) - np.repeat(indptr[:-1], deg)
    nb[p_all, col] = q_all
    witness = np.zeros(ep.size, dtype=bool)
    for ends in (ep, eq):
        r = nb[ends]
        valid = r >= 0
        rr = np.where(valid, r, 0)
        dpr = np.hypot(*(pts[ep][:, None, :] - pts[rr]).transpose(2, 0, 1))
        dqr = np.hypot(*(pts[eq][:, None, :] - pts[rr]).transpose(2, 0, 1))
        hit = valid & (rr != ep[:, None]) & (rr != eq[:, None])
        hit &= np.maximum(dpr, dqr) < elen[:, None]
        witness |= hit.any(axis=1)

    # Edge classification along lattice lines.
    same_i = gi[ep] == gi[eq]
    same_j = gj[ep] == gj[eq]
    estep = np.minimum(step[ep], step[eq])
    span = np.where(same_i, np.abs(gj[ep] - gj[eq]), np.abs(gi[ep] - gi[eq]))
    consecutive = span <= np.maximum(step[ep], step[eq])
    line = np.where(same_i, gi[ep], gj[ep])
    other_a = np.where(same_i, gj[ep], gi[ep])
    other_b = np.where(same_i, gj[eq], gi[eq])
    level = _line_level(line, estep)
    on_line = same_i | same_j
    trunk = on_line & (
        (line == 0)
        | ((np.abs(line) == _RING) & (np.abs(other_a) <= _RING) & (np.abs(other_b) <= _RING))
    )
    arterial_edge = on_line & consecutive & ((level >= 1) | trunk)
    kept = ~witness | arterial_edge
    ep, eq, elen = ep[kept], eq[kept], elen[kept]
    on_line, trunk, level, line = on_line[kept], trunk[kept], level[kept], line[kept]
    same_i, estep = same_i[kept], estep[kept]
    other_a, other_b = other_a[kept], other_b[kept]
    cls = np.full(ep.size, _RESIDENTIAL, dtype=np.int64)
    cls = np.where(on_line & (level == 1), _TERTIARY, cls)
    cls = np.where(on_line & (level == 2), _SECONDARY, cls)
    cls = np.where(on_line & (level >= 3), _PRIMARY, cls)
    cls = np.where(trunk, _TRUNK, cls)

    # One-way residential streets in the old town: odd lines, alternating direction.
    udeg = np.bincount(np.concatenate([ep, eq]), minlength=n_local)
    mid_xy = (pts[ep] + pts[eq]) / 2.0
    oneway = (
        on_line
        & (cls == _RESIDENTIAL)
        & (estep == 1)
        & (line % 2 == 1)
        & (np.hypot(*mid_xy.T) < 3.5)
        & (udeg[ep] >= 3)
        & (udeg[eq] >= 3)
    )
    ascending = (line // 2) % 2 == 0
    flip = oneway & ((other_b > other_a) != ascending)
    ep, eq = np.where(flip, eq, ep), np.where(flip, ep, eq)
    bow_sd = np.where((cls == _RESIDENTIAL) & (estep == 4), 0.07, 0.015)
    bow = np.clip(rng.normal(0.0, 1.0, ep.size) * bow_sd, -0.15, 0.15)

    # Motorways and their interchanges.
    m_pts, m_a, m_b = _motorways(rng, outline, n_local)
    arterial_nodes = np.unique(np.concatenate([ep[cls <= _SECONDARY], eq[cls <= _SECONDARY]]))
    ramp_a: list[int] = []
    ramp_b: list[int] = []
    if len(m_pts) and arterial_nodes.size:
        tree = cKDTree(pts[arterial_nodes])
        for node in _interchange_nodes(m_pts, m_a, m_b, n_local):
            dd, ii = tree.query(m_pts[node - n_local], k=3)
            for dist_km, idx in zip(np.atleast_1d(dd), np.atleast_1d(ii), strict=True):
                if 0.005 < dist_km < 2.5:
                    ramp_a.append(node)
                    ramp_b.append(int(arterial_nodes[idx]))
                    break
    all_pts = np.concatenate([pts, m_pts]) if len(m_pts) else pts
    ua = np.concatenate([ep, m_a, np.array(ramp_a, dtype=np.int64)])
    ub = np.concatenate([eq, m_b, np.array(ramp_b, dtype=np.int64)])
    ucls = np.concatenate([cls, np.full(m_a.size, _MOTORWAY), np.full(len(ramp_a), _TRUNK)]).astype(
        np.int64
    )
    uone = np.concatenate([oneway, np.zeros(m_a.size + len(ramp_a), dtype=bool)])
    ubow = np.concatenate([bow, np.zeros(m_a.size + len(ramp_a))])

    # Shape points on long edges.
    all_pts, sa_, sb_, scls, sone = _subdivide(all_pts, ua, ub, ucls, uone, ubow)

    # Directed edges; a two-way road is two edges.
    two = ~sone
    src = np.concatenate([sa_, sb_[two]])
    dst = np.concatenate([sb_, sa_[two]])
    dcls = np.concatenate([scls, scls[two]])
    key = src * len(all_pts) + dst
    _, first = np.unique(key, return_index=True)
    src, dst, dcls = src[first], dst[first], dcls[first]

    # Keep the largest strongly connected component.
    n = len(all_pts)
    g = coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n)).tocsr()
    _, comp = connected_components(g, directed=True, connection="strong")
    big = int(np.argmax(np.bincount(comp)))
    keep_node = comp == big
    remap = np.full(n, -1, dtype=np.int64)
    remap[keep_node] = np.arange(int(keep_node.sum()))
    ek = keep_node[src] & keep_node[dst]
    src, dst, dcls = remap[src[ek]], remap[dst[ek]], dcls[ek]
    all_pts = all_pts[keep_node]

    order = np.lexsort((dst, src))
    src, dst, dcls = src[order], dst[order], dcls[order]
    lonlat = frame.xy_to_lonlat(all_pts)
    lat = np.ascontiguousarray(lonlat[:, 1])
    lon = np.ascontiguousarray(lonlat[:, 0])
    length = haversine_m(lat[src], lon[src], lat[dst], lon[dst])
    speed = np.array([DEFAULT_SPEED_KMH[c] for c in ROAD_CLASSES])[dcls]
    ttime = length / (speed / 3.6)
    return RoadNetwork(
        lat=lat,
        lon=lon,
        src=src.astype(np.int32),
        dst=dst.astype(np.int32),
        length_m=length.astype(np.float32),
        road_class=dcls.astype(np.uint8),
        travel_time_s=ttime.astype(np.float32),
    )


def _motorways(
    rng: np.random.Generator, outline: Polygon, offset: int
) -> tuple[FloatArray, IntArray, IntArray]:
    """Two gently curving motorways across the city and a spur, as node chains.

    Nodes are at most ``_MAX_SEGMENT_KM`` apart.

    Returns node coordinates (km) and undirected edges whose node ids start at
    ``offset``. Where two motorways cross they share one node (a motorway interchange).
    """
    req = _equivalent_radius(outline)
    reach = float(np.hypot(*shapely.get_coordinates(outline.exterior).T).max()) + 5.0
    specs = (
        (rng.uniform(-0.15, 0.15), (0.0, req * rng.uniform(0.2, 0.3))),
        (math.pi / 2 + rng.uniform(-0.15, 0.15), (req * rng.uniform(0.25, 0.35), 0.0)),
        (math.pi / 6 + rng.uniform(-0.1, 0.1), (-req * 0.1, -req * rng.uniform(0.35, 0.45))),
    )
    lines: list[LineString] = []
    for heading, (px, py) in specs:
        t = np.linspace(-reach, reach, 400)
        lateral = 1.5 * np.sin(t / rng.uniform(9.0, 14.0) + rng.uniform(0, 2 * math.pi))
        dx, dy = math.cos(heading), math.sin(heading)
        xs = px + t * dx - lateral * dy
        ys = py + t * dy + lateral * dx
        clipped = shapely.intersection(LineString(np.column_stack([xs, ys])), outline)
        parts = [p for p in shapely.get_parts(clipped) if isinstance(p, LineString)]
        if parts:
            lines.append(max(parts, key=lambda p: p.length))
    # The third one is a spur from the south-west that ends where it first meets another
    # motorway (a T-shaped interchange) instead of running on to the border.
    if len(lines) == 3:
        spur = lines[2]
        meets = [
            float(spur.project(pt))
            for other in lines[:2]
            for pt in shapely.get_parts(spur.intersection(other))
            if isinstance(pt, Point)
        ]
        if meets and min(meets) > 10.0:
            lines[2] = _as_linestring(substring(spur, 0.0, min(meets)))

    # Crossing points are shared nodes.
    shared_xy: list[tuple[float, float]] = []
    stops: list[list[tuple[float, int]]] = [[] for _ in lines]
    for a in range(len(lines)):
        for b in range(a + 1, len(lines)):
            cross = lines[a].intersection(lines[b])
            for pt in shapely.get_parts(cross):
                if not isinstance(pt, Point):
                    continue
                nid = len(shared_xy)
                shared_xy.append((pt.x, pt.y))
                stops[a].append((float(lines[a].project(pt)), nid))
                stops[b].append((float(lines[b].project(pt)), nid))
    coords: list[tuple[float, float]] = list(shared_xy)
    ea: list[int] = []
    eb: list[int] = []
    for li_, line in enumerate(lines):
        length = line.length
        n_seg = max(1, math.ceil(length / _MAX_SEGMENT_KM))
        regular = np.linspace(0.0, length, n_seg + 1)
        cross_d = np.array([d for d, _ in stops[li_]])
        chain: list[tuple[float, int]] = list(stops[li_])
        for d in regular:
            if cross_d.size and np.min(np.abs(cross_d - d)) < 0.05:
                continue
            p = line.interpolate(float(d))
            chain.append((float(d), len(coords)))
            coords.append((p.x, p.y))
        chain.sort()
        for (_, na), (_, nb_) in zip(chain[:-1], chain[1:], strict=True):
            ea.append(na + offset)
            eb.append(nb_ + offset)
    xy = np.array(coords, dtype=np.float64).reshape(-1, 2)
    return xy, np.array(ea, dtype=np.int64), np.array(eb, dtype=np.int64)


def _as_linestring(geom: BaseGeometry) -> LineString:
    if not isinstance(geom, LineString):
        raise RuntimeError("expected a LineString")
    return geom


def _interchange_nodes(m_pts: FloatArray, m_a: IntArray, m_b: IntArray, offset: int) -> list[int]:
    """Motorway nodes that get a ramp to the street network: about every 7 km per chain."""
    # Walk each chain in edge order (edges of one chain are consecutive in m_a/m_b).
    nodes: list[int] = []
    run = 0.0
    next_at = 2.5
    prev_b = -1
    for a, b in zip(m_a.tolist(), m_b.tolist(), strict=True):
        if a != prev_b:  # a new chain starts
            run, next_at = 0.0, 2.5
        run += float(np.hypot(*(m_pts[b - offset] - m_pts[a - offset])))
        if run >= next_at:
            nodes.append(b)
            next_at += 7.0
        prev_b = b
    return nodes


def _subdivide(
    pts: FloatArray,
    a: IntArray,
    b: IntArray,
    cls: IntArray,
    oneway: NDArray[np.bool_],
    bow: FloatArray,
) -> tuple[FloatArray, IntArray, IntArray, IntArray, NDArray[np.bool_]]:
    """Split every edge longer than ``_MAX_SEGMENT_KM`` into equal segments.

    The shape points are displaced sideways by ``bow × length × sin(πt)`` so rural roads
    curve a little; segments inherit the class and direction of their edge.
    """
    vec = pts[b] - pts[a]
    length = np.hypot(vec[:, 0], vec[:, 1])
    nseg = np.maximum(1, np.ceil(length / _MAX_SEGMENT_KM - 1e-9).astype(np.int64))
    extra = nseg - 1
    n_new = int(extra.sum())
    if n_new == 0:
        return pts, a, b, cls, oneway
    owner = np.repeat(np.arange(a.size), extra)
    first_new = np.cumsum(extra) - extra  # index of each edge's first new point
    k = np.arange(n_new) - np.repeat(first_new, extra) + 1  # 1..extra
    t = k / nseg[owner]
    perp = np.column_stack([-vec[:, 1], vec[:, 0]])  # length-scaled normal
    new_xy = (
        pts[a][owner]
        + vec[owner] * t[:, None]
        + perp[owner] * (bow[owner] * np.sin(np.pi * t))[:, None]
    )
    # Chain for each edge: a, new..., b.  Segment s of edge e goes node(s) -> node(s+1).
    total = int(nseg.sum())
    seg_owner = np.repeat(np.arange(a.size), nseg)
    seg_first = np.cumsum(nseg) - nseg
    s = np.arange(total) - np.repeat(seg_first, nseg)
    base_new = len(pts) + np.repeat(first_new, nseg)
    start = np.where(s == 0, a[seg_owner], base_new + s - 1)
    end = np.where(s == nseg[seg_owner] - 1, b[seg_owner], base_new + s)
    return (
        np.concatenate([pts, new_xy]),
        start.astype(np.int64),
        end.astype(np.int64),
        cls[seg_owner],
        oneway[seg_owner],
    )


def _merge_lines(roads: RoadNetwork) -> list[tuple[int, bool, list[int]]]:
    """Undirected drawing lines: (class, oneway, node sequence), highest class first."""
    n = np.int64(roads.n_nodes)
    src = roads.src.astype(np.int64)
    dst = roads.dst.astype(np.int64)
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key = lo * n + hi
    uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
    two_way = counts > 1
    la = np.where(two_way, lo[first], src[first]).tolist()
    lb = np.where(two_way, hi[first], dst[first]).tolist()
    lcls = roads.road_class[first].astype(np.int64).tolist()
    lone = (~two_way).tolist()
    n_links = len(uniq)
    incident: dict[int, list[int]] = {}
    for li_ in range(n_links):
        incident.setdefault(la[li_], []).append(li_)
        incident.setdefault(lb[li_], []).append(li_)

    def through(node: int, link: int) -> int | None:
        """The link continuing ``link`` through ``node``, if node is a plain shape point."""
        links = incident[node]
        if len(links) != 2:
            return None
        other = links[0] if links[1] == link else links[1]
        if lcls[other] != lcls[link] or lone[other] != lone[link]:
            return None
        if lone[link]:
            # one in, one out: the continuation must leave where the current one arrives
            arriving = lb[link] == node
            if arriving == (lb[other] == node):
                return None
        return other

    visited = [False] * n_links
    lines: list[tuple[int, bool, list[int]]] = []
    for start in sorted(range(n_links), key=lambda q: (lcls[q], q)):
        if visited[start]:
            continue
        visited[start] = True
        seq = [la[start], lb[start]]
        cur, node = start, lb[start]
        while (nxt := through(node, cur)) is not None and not visited[nxt]:
            visited[nxt] = True
            node = lb[nxt] if la[nxt] == node else la[nxt]
            seq.append(node)
            cur = nxt
        cur, node = start, la[start]
        head: list[int] = []
        while (nxt := through(node, cur)) is not None and not visited[nxt]:
            visited[nxt] = True
            node = lb[nxt] if la[nxt] == node else la[nxt]
            head.append(node)
            cur = nxt
        lines.append((lcls[start], lone[start], head[::-1] + seq))
    return lines


# --------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------


def _polygon_coords(poly: Polygon) -> list[list[list[float]]]:
    p = orient(poly, sign=1.0)  # RFC 7946: exterior counter-clockwise, holes clockwise
    rings = [p.exterior, *p.interiors]
    return [[[float(x), float(y)] for x, y in ring.coords] for ring in rings]


def jurisdictions_to_geojson(jurisdictions: Sequence[Jurisdiction]) -> dict[str, Any]:
    """GeoJSON FeatureCollection (plain dicts/lists, JSON-serialisable) of the tree.

    Properties: ``code``, ``level``, ``parent``, ``name``, ``name_en``, ``area_km2``
    (equal-area, rounded to 1e-4) and ``station_point`` ([lon, lat] for stations, null
    otherwise). Coordinates are not rounded, so shared borders stay bit-identical.
    """
    features = []
    for j in jurisdictions:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": _polygon_coords(j.polygon)},
                "properties": {
                    "code": j.code,
                    "level": j.level,
                    "parent": j.parent,
                    "name": j.name,
                    "name_en": j.name_en,
                    "area_km2": round(equal_area_km2(j.polygon), 4),
                    "station_point": (
                        [float(j.point.x), float(j.point.y)] if j.point is not None else None
                    ),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def jurisdictions_from_geojson(collection: dict[str, Any]) -> list[Jurisdiction]:
    """Inverse of :func:`jurisdictions_to_geojson`."""
    out = []
    for f in collection["features"]:
        props = f["properties"]
        rings = f["geometry"]["coordinates"]
        sp = props.get("station_point")
        out.append(
            Jurisdiction(
                code=props["code"],
                level=props["level"],
                parent=props["parent"],
                name=props["name"],
                name_en=props["name_en"],
                polygon=Polygon(rings[0], rings[1:]),
                point=Point(sp[0], sp[1]) if sp is not None else None,
            )
        )
    return out


def save_roads_npz(roads: RoadNetwork, path: str | PathLike[str]) -> None:
    """Write the network with ``numpy.savez`` (plain arrays only, no pickled objects).

    As with ``numpy.savez``, a string path without the ``.npz`` suffix gets one appended.
    """
    np.savez(
        path,
        lat=roads.lat,
        lon=roads.lon,
        src=roads.src,
        dst=roads.dst,
        length_m=roads.length_m,
        road_class=roads.road_class,
        travel_time_s=roads.travel_time_s,
        road_class_names=np.array(roads.road_class_names, dtype=np.str_),
    )


def load_roads_npz(path: str | PathLike[str]) -> RoadNetwork:
    """Read a network written by :func:`save_roads_npz` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        return RoadNetwork(
            lat=np.asarray(data["lat"], dtype=np.float64),
            lon=np.asarray(data["lon"], dtype=np.float64),
            src=np.asarray(data["src"], dtype=np.int32),
            dst=np.asarray(data["dst"], dtype=np.int32),
            length_m=np.asarray(data["length_m"], dtype=np.float32),
            road_class=np.asarray(data["road_class"], dtype=np.uint8),
            travel_time_s=np.asarray(data["travel_time_s"], dtype=np.float32),
            road_class_names=tuple(str(s) for s in data["road_class_names"]),
        )
