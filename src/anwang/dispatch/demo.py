"""Dispatch data of the demo city, at the scale of the bureau in the brief.

85 quick-response posts (快反点位) grouped into 40 response circles, 58 patrol key
locations (巡防重点部位), 163 vehicles (patrol cars, motorcycles, quick-response teams,
SWAT) plus a foot patrol at each key location, a population demand layer, a month of
past incidents (with response times, for the charts) and a few open calls. Everything
is drawn from a seeded generator over the city's road graph, so the same seed gives the
same data; locations avoid nothing real because the city is not real.

Also writes ``<data_dir>/roads.graph.npz`` (the routing graph of the generated road
network) when it is missing. Loading is skipped when posts exist already; rows go in
with bulk statements and one audit entry says what was loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import h3
import numpy as np
from rich.console import Console
from sqlalchemy import func, insert, select

from anwang.auth import service as auth_service
from anwang.core import audit
from anwang.core.db import Database
from anwang.core.events import new_id, utcnow
from anwang.core.scope import Scope
from anwang.dispatch.config import DEFAULT_TYPES, IncidentStatus, PostKind, UnitKind, UnitStatus
from anwang.dispatch.models import DemandPoint, Incident, Post, Unit, UnitPosition
from anwang.roads import service as roads_service
from anwang.roads.graph import RoadGraph
from anwang.settings import Settings

QUICK_POSTS: Final = 85
CIRCLES: Final = 40
KEY_LOCATIONS: Final = 58
#: Vehicles by kind; 163 in all, as in the brief. Foot patrols come on top, one per key location.
VEHICLES: Final = {
    UnitKind.PATROL_CAR: 110,
    UnitKind.MOTORCYCLE: 35,
    UnitKind.QUICK_RESPONSE_TEAM: 14,
    UnitKind.SWAT: 4,
}
POPULATION_POINTS: Final = 20_000
PAST_INCIDENTS: Final = 400
OPEN_INCIDENTS: Final = 4
ACTOR: Final = "demo-loader"

_KEY_PLACES: Final = ("学校", "医院", "商圈", "车站", "广场", "农贸市场", "银行网点", "景区",
                      "政务中心", "体育馆")
_KEY_PLACES_EN: Final = ("school", "hospital", "shopping area", "station", "square", "market",
                         "bank", "scenic area", "service centre", "stadium")
_DISTRICT_PREFIX: Final = {"01": "TN", "02": "ZL", "03": "XB", "04": "WJ", "05": "JT", "06": "LY"}


def ensure_graph(settings: Settings, console: Console | None = None) -> RoadGraph:
    """The routing graph of the demo city, written from ``roads.npz`` when missing."""
    from anwang.demo.city import load_roads_npz

    path = roads_service.graph_path(settings.data_dir)
    if not path.exists():
        network = load_roads_npz(settings.data_dir / "roads.npz")
        RoadGraph.from_road_network(network).save(path)
        if console is not None:
            console.print(f"wrote the routing graph {path.name}")
    return roads_service.load(settings.data_dir).graph


def _kmeans(rng: np.random.Generator, xy: np.ndarray, w: np.ndarray, k: int,
            iters: int = 25) -> np.ndarray:
    """Weighted k-means (Lloyd), seeded by weighted sampling; returns the centres."""
    p = w / w.sum()
    centres = xy[rng.choice(xy.shape[0], size=k, replace=False, p=p)]
    for _ in range(iters):
        d = ((xy[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        lab = d.argmin(axis=1)
        for j in range(k):
            sel = lab == j
            if sel.any():
                centres[j] = np.average(xy[sel], axis=0, weights=w[sel])
    return centres


def _local_xy(g: RoadGraph) -> np.ndarray:
    lat0 = float(g.lat.mean())
    return np.column_stack([g.lon * math.cos(math.radians(lat0)), g.lat]) * 111.2


@dataclass(frozen=True)
class _Plan:
    quick: list[dict[str, Any]]
    key: list[dict[str, Any]]
    units: list[dict[str, Any]]
    positions: list[dict[str, Any]]
    population: list[dict[str, Any]]
    incidents: list[dict[str, Any]]


def plan(g: RoadGraph, seed: int, locate: Any) -> _Plan:
    """Everything to insert, as rows (pure apart from ``locate``: point → code)."""
    rng = np.random.default_rng(seed * 7919 + 4)
    now = utcnow().replace(microsecond=0)
    main = g.largest_component_mask(strong=True)
    nodes = np.flatnonzero(main)
    xy = _local_xy(g)
    # activity is denser where the road network is: a node's weight is its neighbours
    # within ~600 m, a cheap stand-in for population
    from scipy.spatial import cKDTree

    tree = cKDTree(xy[nodes])
    density = np.array([len(x) for x in tree.query_ball_point(xy[nodes], r=0.6)], dtype=float)
    major = np.zeros(g.n_nodes, dtype=bool)
    if g.road_class is not None:
        names = list(g.road_class_names)
        wanted = [names.index(c) for c in ("primary", "secondary", "tertiary") if c in names]
        tails = g.edge_tails()
        ok = np.isin(g.road_class, wanted)
        major[tails[ok]] = True
    major_nodes = np.flatnonzero(major & main)
    major_tree = cKDTree(xy[major_nodes] if major_nodes.size else xy[nodes])
    pool = major_nodes if major_nodes.size else nodes

    def on_major(c: np.ndarray) -> int:
        _, i = major_tree.query(c)
        return int(pool[int(i)])

    def row_place(lat: float, lon: float) -> str | None:
        code = locate(lon, lat)
        return None if code is None else str(code)

    # quick-response posts and their circles
    centres = _kmeans(rng, xy[nodes], density ** 1.5, QUICK_POSTS)
    quick_nodes: list[int] = []
    for c in centres[np.lexsort((centres[:, 0], -centres[:, 1]))]:
        node = on_major(c)
        if node in quick_nodes:  # two centres on one junction: take the next nearest
            _, ii = major_tree.query(c, k=8)
            node = next(int(pool[int(i)]) for i in np.atleast_1d(ii) if int(pool[int(i)])
                        not in quick_nodes)
        quick_nodes.append(node)
    q_xy = xy[quick_nodes]
    circle_centres = _kmeans(rng, q_xy, np.ones(len(quick_nodes)), CIRCLES)
    circle_of = ((q_xy[:, None, :] - circle_centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    circle_of = _exactly(circle_of, q_xy, CIRCLES)
    def north_to_south(c: int) -> tuple[float, float]:
        x, y = q_xy[circle_of == c].mean(axis=0)
        return (-float(y), float(x))

    circle_order = {c: i + 1 for i, c in
                    enumerate(sorted(set(circle_of.tolist()), key=north_to_south))}
    stamp = now
    quick = []
    for i, node in enumerate(quick_nodes):
        lat, lon = float(g.lat[node]), float(g.lon[node])
        code = row_place(lat, lon)
        district = _DISTRICT_PREFIX.get((code or "")[4:6], "CZ")
        circle = circle_order[int(circle_of[i])]
        quick.append(dict(
            id=new_id(), code=f"KF-{district}-{i + 1:03d}", name=f"快反点位{i + 1:03d}",
            kind=PostKind.QUICK_RESPONSE.value, circle=f"快反圈{circle:02d}", lat=lat, lon=lon,
            h3_cell=h3.latlng_to_cell(lat, lon, 9), staffed_from=0, staffed_to=1440,
            active=True, created_at=stamp, updated_at=stamp, jurisdiction_code=code))

    # key locations: the busiest places away from the posts
    order = np.argsort(-density, kind="stable")
    key_nodes: list[int] = []
    for k in order.tolist():
        node = int(nodes[k])
        if all(np.hypot(*(xy[node] - xy[m])) > 1.2 for m in key_nodes + quick_nodes):
            key_nodes.append(node)
        if len(key_nodes) >= KEY_LOCATIONS:
            break
    key = []
    for i, node in enumerate(key_nodes):
        lat, lon = float(g.lat[node]), float(g.lon[node])
        place = _KEY_PLACES[i % len(_KEY_PLACES)]
        hours = (7 * 60, 22 * 60) if i % 3 else (0, 1440)
        key.append(dict(
            id=new_id(), code=f"ZD-{i + 1:03d}", name=f"{place}重点部位{i + 1:02d}",
            kind=PostKind.KEY_LOCATION.value, circle=None, lat=lat, lon=lon,
            h3_cell=h3.latlng_to_cell(lat, lon, 9), staffed_from=hours[0], staffed_to=hours[1],
            active=True, created_at=stamp, updated_at=stamp,
            jurisdiction_code=row_place(lat, lon)))

    # units: vehicles at the quick-response posts, foot patrols at the key locations
    units: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    homes: list[tuple[str, dict[str, Any]]] = []
    for kind, count in VEHICLES.items():
        if kind is UnitKind.SWAT:
            # SWAT stands at the four posts nearest the city centre
            centre = xy[nodes].mean(axis=0)
            near = np.argsort(((q_xy - centre) ** 2).sum(axis=1))[:count]
            homes += [(kind.value, quick[int(i)]) for i in near]
        elif kind is UnitKind.QUICK_RESPONSE_TEAM:
            step = len(quick) / count
            homes += [(kind.value, quick[int(i * step)]) for i in range(count)]
        else:
            homes += [(kind.value, quick[i % len(quick)]) for i in range(count)]
    homes += [(UnitKind.FOOT_PATROL.value, k) for k in key]
    prefixes = {"patrol_car": "巡", "motorcycle": "摩", "quick_response_team": "快",
                "swat": "特", "foot_patrol": "步"}
    counters: dict[str, int] = {}
    for unit_kind, post in homes:
        counters[unit_kind] = counters.get(unit_kind, 0) + 1
        uid = new_id()
        roll = rng.random()
        status = UnitStatus.OUT_OF_SERVICE.value if roll < 0.05 else UnitStatus.AVAILABLE.value
        here: tuple[float, float] | None = None
        at: datetime | None = None
        if roll > 0.12:
            # somewhere on the roads within about 1.5 km of home
            _, near = tree.query(_xy_of(post, g), k=60)
            node = int(nodes[int(rng.choice(np.atleast_1d(near)))])
            here = (float(g.lat[node]), float(g.lon[node]))
            age = rng.uniform(5, 90) if roll > 0.22 else rng.uniform(1800, 7200)
            at = now - timedelta(seconds=float(age))
            positions.append(dict(unit_id=uid, at=at, lat=here[0], lon=here[1], speed_kmh=None,
                                  heading=None, source="api", received_at=at))
        units.append(dict(
            id=uid, call_sign=f"{prefixes[unit_kind]}{counters[unit_kind]:03d}", kind=unit_kind,
            status=status, home_post_id=post["id"], home_lat=post["lat"], home_lon=post["lon"],
            lat=here[0] if here else None, lon=here[1] if here else None, position_at=at,
            incident_id=None, status_at=now, created_at=now,
            jurisdiction_code=post["jurisdiction_code"]))

    # population: points near road nodes, more where it is dense
    pick = rng.choice(nodes, size=POPULATION_POINTS, p=density / density.sum())
    jitter = rng.normal(scale=0.0004, size=(POPULATION_POINTS, 2))
    weights = np.round(rng.lognormal(mean=3.0, sigma=0.8, size=POPULATION_POINTS), 1)
    population = [
        dict(layer="population", lat=float(g.lat[n] + dy), lon=float(g.lon[n] + dx),
             weight=float(w), label=None)
        for n, (dy, dx), w in zip(pick.tolist(), jitter.tolist(), weights.tolist(), strict=True)
    ]

    # a month of past incidents, and a few open calls
    incidents: list[dict[str, Any]] = []
    types = [t for t in DEFAULT_TYPES if t.code != "armed_threat"]
    spot_idx = rng.choice(nodes.size, size=PAST_INCIDENTS + OPEN_INCIDENTS,
                          p=density / density.sum())
    local_now = now.astimezone(ZoneInfo("Asia/Shanghai"))
    # calls by local hour: quiet at night, busiest in the evening
    hour_p = np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 6, 7, 8, 9, 9, 8, 6, 4],
                      dtype=float)
    for i, k in enumerate(spot_idx.tolist()):
        node = int(nodes[k])
        t = types[int(rng.integers(len(types)))]
        lat, lon = float(g.lat[node]), float(g.lon[node])
        code = row_place(lat, lon)
        past = i < PAST_INCIDENTS
        if past:
            day = local_now - timedelta(days=int(rng.integers(1, 31)))
            hour = int(rng.choice(24, p=hour_p / hour_p.sum()))
            received = day.replace(hour=hour, minute=int(rng.integers(60)),
                                   second=int(rng.integers(60))).astimezone(now.tzinfo)
        else:
            received = now - timedelta(minutes=float(rng.uniform(1, 20)))
        # sparse roads (low density) mean longer drives
        travel_scale = 30.0 + 200.0 / (1.0 + density[k] / 10.0)
        row = dict(
            id=new_id(), type=t.code, priority=t.priority, lat=lat, lon=lon,
            address=f"演示地址 {i + 1:03d}", caller=None, description=None, alert_id=None,
            external_ref=f"demo-{seed}-{i + 1:04d}", district_code=(code or "")[:6] or None,
            received_at=received, created_by=ACTOR, jurisdiction_code=code,
            dispatched_at=None, en_route_at=None, on_scene_at=None, cleared_at=None,
            response_s=None, status=IncidentStatus.RECEIVED.value)
        if past:
            dispatch_s = float(rng.uniform(10, 45))
            travel_s = float(rng.gamma(shape=2.2, scale=travel_scale))
            row.update(
                status=IncidentStatus.CLEARED.value,
                dispatched_at=received + timedelta(seconds=dispatch_s),
                en_route_at=received + timedelta(seconds=dispatch_s + 15),
                on_scene_at=received + timedelta(seconds=dispatch_s + travel_s),
                cleared_at=received + timedelta(seconds=dispatch_s + travel_s + 1800),
                response_s=round(dispatch_s + travel_s, 1))
        incidents.append(row)
    return _Plan(quick, key, units, positions, population, incidents)


def _exactly(labels: np.ndarray, xy: np.ndarray, k: int) -> np.ndarray:
    """Relabel to exactly ``k`` non-empty groups: while fewer, the member of the largest
    group farthest from its group's centre starts a new group."""
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.astype(np.int64)
    while labels.max() + 1 < min(k, labels.size):
        big = int(np.bincount(labels).argmax())
        members = np.flatnonzero(labels == big)
        centre = xy[members].mean(axis=0)
        far = members[int(((xy[members] - centre) ** 2).sum(axis=1).argmax())]
        labels[far] = labels.max() + 1
    return labels


def _xy_of(post: dict[str, Any], g: RoadGraph) -> np.ndarray:
    lat0 = float(g.lat.mean())
    return np.array([post["lon"] * math.cos(math.radians(lat0)), post["lat"]]) * 111.2


def load_demo(db: Database, settings: Settings, *, seed: int,
              console: Console | None = None) -> dict[str, int]:
    """Load the dispatch data once (skipped when posts exist); returns counts."""
    console = console or Console(stderr=True)
    g = ensure_graph(settings, console)
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        if (s.scalar(select(func.count()).select_from(Post)) or 0) > 0:
            console.print("dispatch demo data already loaded")
            return {}
        index = auth_service.get_jurisdiction_index(s)
        p = plan(g, seed, index.locate)
        s.execute(insert(Post), p.quick + p.key)
        s.execute(insert(Unit), p.units)
        if p.positions:
            s.execute(insert(UnitPosition), p.positions)
        s.execute(insert(DemandPoint), p.population)
        s.execute(insert(Incident), p.incidents)
        counts = {"quick_response_posts": len(p.quick),
                  "circles": len({q["circle"] for q in p.quick}),
                  "key_locations": len(p.key),
                  "vehicles": sum(1 for u in p.units if u["kind"] != UnitKind.FOOT_PATROL),
                  "foot_patrols": sum(1 for u in p.units if u["kind"] == UnitKind.FOOT_PATROL),
                  "population_points": len(p.population), "incidents": len(p.incidents)}
        audit.record(s, "anwang.dispatch.demo.loaded", actor=ACTOR, data=counts)
    console.print(
        f"dispatch: {counts['quick_response_posts']} quick-response posts in "
        f"{counts['circles']} circles, {counts['key_locations']} key locations, "
        f"{counts['vehicles']} vehicles and {counts['foot_patrols']} foot patrols")
    return counts
