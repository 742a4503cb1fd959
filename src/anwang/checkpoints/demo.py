"""The demo city's checkpoints, placed on its roads and borders, and a demo device key.

:func:`plan_checkpoints` is pure and deterministic for a road network, a city outline and
a seed. It places, at the scale of a prefecture-level city:

* **259 city-border and 42 province-border entrances** — road nodes within 2 km of the
  city outline, the better road classes first (motorway, trunk, primary, ...), spaced
  along the outline so that no two entrances crowd one stretch of border. The 42
  consecutive entrances around the south-west of the outline (where the demo city,
  modelled on Changzhou, borders Anhui and Zhejiang) are the province border;
* **30 toll stations** on motorway nodes, motorway junctions first, spread by
  farthest-point sampling;
* **40 police checkpoints** on trunk and primary junctions, spread the same way;
* **3 mobile checkpoints** on secondary and tertiary roads near the centre.

Every site is a road node (so the traffic simulator can route between them), and no two
sites share a node.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely  # type: ignore[import-untyped]
from numpy.typing import NDArray
from rich.console import Console
from shapely.geometry import Polygon, shape  # type: ignore[import-untyped]
from sqlalchemy import select

from anwang.auth import service as auth_service
from anwang.auth.models import ApiKey, Jurisdiction
from anwang.checkpoints import service
from anwang.core.db import Database
from anwang.core.errors import NotAuthenticated
from anwang.core.scope import Scope
from anwang.demo.city import RoadNetwork, load_roads_npz
from anwang.settings import Settings

ACTOR = "demo-loader"
#: Where the demo device key is kept, in the data directory (mode 0600).
KEY_FILE = "demo-device-key"
KEY_NAME = "demo-checkpoints"

COUNTS = {
    "police_checkpoint": 40,
    "mobile_checkpoint": 3,
    "province_border": 42,
    "city_border": 259,
    "toll_station": 30,
}
#: (code prefix, name template, lanes, silence threshold in seconds) per kind.
STYLE: dict[str, tuple[str, str, int, int]] = {
    "police_checkpoint": ("PC", "{n}号治安卡口", 4, 900),
    "mobile_checkpoint": ("MC", "移动卡口 {n}", 2, 3600),
    "province_border": ("PB", "省界检查站 {n:02d}", 6, 900),
    "city_border": ("CB", "市界卡口 {n:03d}", 4, 1800),
    "toll_station": ("TS", "收费站 {n:02d}", 8, 900),
}
_KM_PER_DEG = 6371.0088 * math.pi / 180.0


@dataclass(frozen=True)
class PlannedCheckpoint:
    code: str
    name: str
    kind: str
    lat: float
    lon: float
    node: int
    lanes: int
    silence_threshold_s: int

    def row(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "kind": self.kind,
                "lat": round(self.lat, 6), "lon": round(self.lon, 6),
                "directions": ["in", "out"], "lanes": self.lanes,
                "silence_threshold_s": self.silence_threshold_s}


def _xy(roads: RoadNetwork, lat0: float, lon0: float) -> NDArray[np.float64]:
    """Node positions in km east/north of (lat0, lon0)."""
    kx = _KM_PER_DEG * math.cos(math.radians(lat0))
    return np.column_stack(((roads.lon - lon0) * kx, (roads.lat - lat0) * _KM_PER_DEG))


def _best_class(roads: RoadNetwork) -> NDArray[np.int64]:
    """Per node, the best (lowest-numbered) road class touching it."""
    best = np.full(roads.n_nodes, 255, dtype=np.int64)
    np.minimum.at(best, roads.src, roads.road_class.astype(np.int64))
    np.minimum.at(best, roads.dst, roads.road_class.astype(np.int64))
    return best


def _degree(roads: RoadNetwork) -> NDArray[np.int64]:
    """Distinct neighbours per node (a two-way road counts once)."""
    pairs = np.unique(np.column_stack((
        np.minimum(roads.src, roads.dst), np.maximum(roads.src, roads.dst)
    )), axis=0)
    return np.bincount(pairs.ravel(), minlength=roads.n_nodes).astype(np.int64)


def _spread(xy: NDArray[np.float64], candidates: NDArray[np.int64], k: int, first: int,
            avoid: list[int], min_km: float = 0.0) -> list[int]:
    """Farthest-point sampling of ``k`` nodes from ``candidates``, starting with the
    candidate nearest to node ``first`` and keeping away from ``avoid``."""
    if len(candidates) == 0:
        return []
    pts = xy[candidates]
    dist = np.full(len(candidates), np.inf)
    for node in avoid:
        dist = np.minimum(dist, np.hypot(*(pts - xy[node]).T))
    start = int(np.argmin(np.hypot(*(pts - xy[first]).T)))
    chosen: list[int] = []
    pick = start if dist[start] > min_km else int(np.argmax(dist))
    while len(chosen) < k and dist[pick] > min_km:
        chosen.append(int(candidates[pick]))
        dist = np.minimum(dist, np.hypot(*(pts - pts[pick]).T))
        pick = int(np.argmax(dist))
    return chosen


def _border_entrances(
    roads: RoadNetwork, outline: Polygon, xy: NDArray[np.float64], best: NDArray[np.int64],
    degree: NDArray[np.int64], lat0: float, lon0: float, count: int,
) -> list[tuple[int, float]]:
    """``count`` nodes near the outline as (node, position along the outline in km)."""
    kx = _KM_PER_DEG * math.cos(math.radians(lat0))
    ring = np.asarray(outline.exterior.coords)
    ring_xy = np.column_stack(((ring[:, 0] - lon0) * kx, (ring[:, 1] - lat0) * _KM_PER_DEG))
    border = Polygon(ring_xy).exterior
    points = shapely.points(xy[:, 0], xy[:, 1])
    dist = shapely.distance(points, border)
    near = np.flatnonzero(dist <= 2.0)
    # Better roads first, then junctions, then nearer the border; node id breaks ties.
    order = near[np.lexsort((near, dist[near], -degree[near], best[near]))]
    along = shapely.line_locate_point(border, points[order])
    perimeter = border.length
    spacing = perimeter / count * 0.9
    while spacing > 0.05:
        taken: list[tuple[int, float]] = []
        positions: list[float] = []
        for node, pos in zip(order, along, strict=True):
            if all(min(abs(pos - p), perimeter - abs(pos - p)) >= spacing for p in positions):
                taken.append((int(node), float(pos)))
                positions.append(float(pos))
                if len(taken) == count:
                    return taken
        spacing *= 0.85
    raise ValueError(f"only {len(taken)} road nodes lie near the city border")


def plan_checkpoints(
    roads: RoadNetwork, outline: Polygon, *, seed: int, counts: dict[str, int] | None = None
) -> list[PlannedCheckpoint]:
    """Where the demo checkpoints stand (see the module documentation). Deterministic."""
    counts = {**COUNTS, **(counts or {})}
    rng = np.random.default_rng(seed)
    centre = outline.centroid
    lat0, lon0 = float(centre.y), float(centre.x)
    xy = _xy(roads, lat0, lon0)
    best = _best_class(roads)
    degree = _degree(roads)
    used: list[int] = []

    entrances = _border_entrances(
        roads, outline, xy, best, degree, lat0, lon0,
        counts["province_border"] + counts["city_border"],
    )
    entrances.sort(key=lambda e: e[1])
    south_west = min(range(len(entrances)),
                     key=lambda i: roads.lat[entrances[i][0]] + roads.lon[entrances[i][0]])
    n_prov = counts["province_border"]
    first = south_west - n_prov // 2
    province = {entrances[(first + i) % len(entrances)][0] for i in range(n_prov)}
    sites: dict[str, list[int]] = {
        "province_border": [n for n, _ in entrances if n in province],
        "city_border": [n for n, _ in entrances if n not in province],
    }
    used.extend(n for n, _ in entrances)

    motorway = np.flatnonzero(best == 0)
    junctions = motorway[degree[motorway] >= 3]
    pool = junctions if len(junctions) >= counts["toll_station"] else motorway
    pool = np.setdiff1d(pool, used)
    sites["toll_station"] = _spread(xy, pool, counts["toll_station"],
                                    int(rng.choice(pool)), used, min_km=1.0)
    used.extend(sites["toll_station"])

    major = np.flatnonzero((best == 1) | (best == 2))
    major = np.setdiff1d(major[degree[major] >= 3], used)
    sites["police_checkpoint"] = _spread(xy, major, counts["police_checkpoint"],
                                         int(rng.choice(major)), used, min_km=0.5)
    used.extend(sites["police_checkpoint"])

    local = np.flatnonzero((best == 3) | (best == 4))
    local = local[np.hypot(xy[local, 0], xy[local, 1]) < 8.0]
    local = np.setdiff1d(local, used)
    sites["mobile_checkpoint"] = [int(n) for n in rng.choice(
        local, size=min(counts["mobile_checkpoint"], len(local)), replace=False)]

    out: list[PlannedCheckpoint] = []
    for kind in ("police_checkpoint", "mobile_checkpoint", "province_border", "city_border",
                 "toll_station"):
        prefix, template, lanes, threshold = STYLE[kind]
        width = 3 if counts[kind] >= 100 else 2
        for i, node in enumerate(sites[kind][: counts[kind]], start=1):
            out.append(PlannedCheckpoint(
                code=f"{prefix}-{i:0{width}d}", name=template.format(n=i), kind=kind,
                lat=float(roads.lat[node]), lon=float(roads.lon[node]), node=node,
                lanes=lanes, silence_threshold_s=threshold,
            ))
    return out


def city_outline(session: Any) -> Polygon:
    """The polygon of the city-level jurisdiction."""
    geometry = session.scalars(
        select(Jurisdiction.geometry).where(Jurisdiction.level == "city")
    ).first()
    if geometry is None:
        raise ValueError("no city-level jurisdiction is loaded")
    geom = shape(json.loads(geometry))
    return geom if isinstance(geom, Polygon) else max(geom.geoms, key=lambda g: g.area)


def _demo_key(session: Any, path: Path) -> str:
    """The demo device key kept in ``path``, or a new one (written there) when the file
    is missing or its key no longer works."""
    if path.exists():
        key = path.read_text().strip()
        try:
            auth_service.resolve_api_key(session, key=key)
            return key
        except NotAuthenticated:
            pass
    names = set(session.scalars(select(ApiKey.name).where(ApiKey.name.startswith(KEY_NAME))))
    name = KEY_NAME
    n = 1
    while name in names:
        n += 1
        name = f"{KEY_NAME}-{n}"
    key, _ = auth_service.create_api_key(session, name=name, role="device", actor=ACTOR)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def load_demo_checkpoints(
    db: Database, settings: Settings, *, seed: int, console: Console | None = None
) -> tuple[int, str]:
    """Register the demo checkpoints (an upsert: safe to run again) and make sure a demo
    device key exists; returns how many checkpoints the plan has and the key."""
    console = console or Console(stderr=True)
    roads = load_roads_npz(settings.data_dir / "roads.npz")
    with db.unit_of_work(info={"scope": Scope(None)}) as session:
        plan = plan_checkpoints(roads, city_outline(session), seed=seed)
        with console.status(f"registering {len(plan)} demo checkpoints"):
            report = service.import_checkpoints(
                session, rows=[(i, p.row()) for i, p in enumerate(plan, start=1)], actor=ACTOR
            )
        if report.errors:
            raise ValueError(f"demo checkpoints refused: {report.errors[:3]}")
        key = _demo_key(session, settings.data_dir / KEY_FILE)
    by_kind = {k: sum(1 for p in plan if p.kind == k) for k in COUNTS}
    console.print(
        "checkpoints: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in by_kind.items())
        + f" ({report.created} new)"
    )
    console.print(f"demo device key (also in {settings.data_dir / KEY_FILE}): {key}",
                  soft_wrap=True)
    console.print("feed it with: anwang simulate reads --rate 20")
    return len(plan), key
