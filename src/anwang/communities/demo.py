"""The demo city's residential communities and their devices.

:func:`plan` is pure and deterministic for a set of grids and a seed. It places
:data:`COMMUNITIES` communities in the city's grids (three more in each grid that has a
grid worker among the users, so that the demo's grid worker has communities of their
own), each an outline of about 250 × 200 m with a generated name, and equips each with
devices as a new estate of its size would be:

* a smoke alarm in every stairwell landing (one per building and a few floors),
* e-bike and car charging piles in the sheds and garages,
* manhole covers along the estate's roads,
* one falling-object camera per high-rise facade,
* a gate sensor at every gate,

in all about 27,000 devices, with the payload formats mixed (anwang's own and the vendor
formats) so that ``anwang simulate devices`` exercises every adapter. Loading writes them
with bulk statements (a few seconds) and one audit entry.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import shapely  # type: ignore[import-untyped]
from rich.console import Console
from shapely.geometry import Polygon, shape  # type: ignore[import-untyped]
from sqlalchemy import func, insert, select

from anwang.auth.models import Jurisdiction, User
from anwang.communities import credentials
from anwang.communities.models import Community, Device, DeviceStatus
from anwang.core import audit
from anwang.core.db import Database
from anwang.core.events import utcnow
from anwang.settings import Settings

ACTOR = "demo-loader"
COMMUNITIES = 300
#: Heartbeat intervals of the demo devices (seconds), by kind.
HEARTBEATS = {"smoke_alarm": 3600, "charging_pile": 300, "manhole_cover": 3600,
              "throw_camera": 600, "gate_sensor": 1800}
ADAPTERS = {
    "smoke_alarm": (("native", 0.5), ("sentry_smoke", 0.25), ("nbiot_smoke", 0.25)),
    "charging_pile": (("native", 0.4), ("voltpile", 0.3), ("ocpp16", 0.3)),
}
_FIRST = ("翠竹", "阳光", "锦绣", "金色", "东湖", "梧桐", "紫荆", "香樟", "龙城", "天宁",
          "清潭", "丽华", "青枫", "白云", "红梅", "北港", "新城", "湖塘", "兰陵", "荆川",
          "花园", "嘉禾", "星河", "玉兰", "运河", "青果", "丁香", "桂花", "银河", "朝阳")
_SECOND = ("花园", "小区", "苑", "新村", "家园", "公寓", "雅苑", "名都", "府", "里",
           "华庭", "佳苑")
_DEG_PER_M_LAT = 1 / 111_320.0


@dataclass(frozen=True)
class PlannedCommunity:
    code: str
    name: str
    grid: str
    outline: dict[str, Any]
    lat: float
    lon: float
    address: str


@dataclass(frozen=True)
class PlannedDevice:
    id: str
    kind: str
    adapter: str
    community: str
    grid: str
    lat: float
    lon: float
    building: str | None
    floor: int | None


def _pick(rnd: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    x = rnd.random()
    for name, share in options:
        x -= share
        if x < 0:
            return name
    return options[-1][0]


def _point_in(rnd: random.Random, poly: Any) -> tuple[float, float]:
    minx, miny, maxx, maxy = poly.bounds
    for _ in range(200):
        x, y = rnd.uniform(minx, maxx), rnd.uniform(miny, maxy)
        if poly.contains(shapely.Point(x, y)):
            return x, y
    p = poly.representative_point()
    return p.x, p.y


def plan(grids: list[tuple[str, str]], *, seed: int, focus: Sequence[str] = (),
         count: int = COMMUNITIES) -> tuple[list[PlannedCommunity], list[PlannedDevice]]:
    """``grids``: (code, GeoJSON geometry text); ``focus``: grids that get three
    communities more. Returns the communities and their devices."""
    rnd = random.Random(seed)
    ordered = sorted(grids)
    if not ordered:
        return [], []
    shapes = {code: shape(json.loads(g)) for code, g in ordered}
    chosen = [rnd.choice(ordered)[0] for _ in range(count)]
    chosen += [g for g in focus if g in shapes for _ in range(3)]
    names: set[str] = set()
    communities: list[PlannedCommunity] = []
    devices: list[PlannedDevice] = []
    for i, grid in enumerate(chosen):
        lon, lat = _point_in(rnd, shapes[grid])
        name = rnd.choice(_FIRST) + rnd.choice(_SECOND)
        while name in names:
            name = name + "二期" if not name.endswith("期") else rnd.choice(_FIRST) + name
        names.add(name)
        w = 250 * _DEG_PER_M_LAT / math.cos(math.radians(lat))
        h = 200 * _DEG_PER_M_LAT
        box = Polygon([(lon - w / 2, lat - h / 2), (lon + w / 2, lat - h / 2),
                       (lon + w / 2, lat + h / 2), (lon - w / 2, lat + h / 2)])
        code = f"C{i + 1:04d}"
        communities.append(PlannedCommunity(
            code=code, name=name, grid=grid,
            outline={"type": "Polygon", "coordinates": [list(box.exterior.coords)]},
            lat=lat, lon=lon, address=f"{name}{rnd.randint(1, 399)}号"))
        devices.extend(_equip(rnd, code, grid, lat, lon, w, h))
    return communities, devices


def _equip(rnd: random.Random, code: str, grid: str, lat: float, lon: float, w: float,
           h: float) -> list[PlannedDevice]:
    out: list[PlannedDevice] = []

    def spot() -> tuple[float, float]:
        return (lat + rnd.uniform(-0.45, 0.45) * h, lon + rnd.uniform(-0.45, 0.45) * w)

    def add(kind: str, n: int, building: str | None = None, floor: int | None = None,
            at: tuple[float, float] | None = None) -> None:
        y, x = at or spot()
        adapter = _pick(rnd, ADAPTERS[kind]) if kind in ADAPTERS else "native"
        out.append(PlannedDevice(f"{code}-{kind[:2]}{n:03d}", kind, adapter, code, grid,
                                 round(y, 6), round(x, 6), building, floor))

    buildings = rnd.randint(8, 18)
    high_rise = rnd.random() < 0.6
    smoke = cam = 0
    for b in range(1, buildings + 1):
        where = spot()
        floors = rnd.randint(18, 33) if high_rise else rnd.randint(5, 7)
        for f in sorted(rnd.sample(range(1, floors + 1), k=min(floors, 3))):
            smoke += 1
            add("smoke_alarm", smoke, str(b), f, where)
        if high_rise:
            cam += 1
            add("throw_camera", cam, str(b), 1, where)
    for n in range(1, rnd.randint(15, 35) + 1):
        add("charging_pile", n)
    for n in range(1, rnd.randint(10, 20) + 1):
        add("manhole_cover", n)
    for n in range(1, rnd.randint(3, 6) + 1):
        add("gate_sensor", n)
    return out


def load_demo(db: Database, settings: Settings, *, seed: int,
              console: Console | None = None) -> int:
    """Load the communities and devices unless the demo already has communities;
    returns how many devices were written."""
    console = console or Console(stderr=True)
    with db.unit_of_work(readonly=True) as s:
        if (s.scalar(select(func.count()).select_from(Community)) or 0) > 0:
            return 0
        grids = [(c, g) for c, g in s.execute(
            select(Jurisdiction.code, Jurisdiction.geometry).where(Jurisdiction.level == "grid"))]
        focus = [str(j) for (j,) in s.execute(
            select(User.jurisdiction_code).where(User.role == "grid_worker",
                                                 User.jurisdiction_code.is_not(None)))]
    communities, devices = plan(grids, seed=seed, focus=sorted(set(focus)))
    if not communities:
        return 0
    now = utcnow()
    rnd = random.Random(seed + 1)
    with console.status("loading communities and devices"), db.unit_of_work() as s:
        s.execute(insert(Community), [
            {"code": c.code, "name": c.name, "polygon": json.dumps(c.outline),
             "center_lat": c.lat, "center_lon": c.lon, "address": c.address,
             "jurisdiction_code": c.grid, "contacts": [
                 {"name": f"{c.name}物业", "role": "property_manager",
                  "phone": f"0519-8{rnd.randint(1000000, 9999999)}"}],
             "active": True, "created_at": now, "updated_at": now}
            for c in communities])
        rows, status = [], []
        for d in devices:
            hb = HEARTBEATS[d.kind]
            rows.append({
                "id": d.id, "kind": d.kind, "vendor_model": None, "adapter": d.adapter,
                "community_code": d.community, "lat": d.lat, "lon": d.lon,
                "building": d.building, "floor": d.floor, "installed_on": None,
                # A random key nobody is given: the demo's devices are simulated
                # through the broker, and `devices/{id}/credential` issues a real one.
                "heartbeat_s": hb, "credential_hash": credentials.hash_key(
                    credentials.new_key(), iterations=1),
                "credential_issued_at": now, "active": True, "jurisdiction_code": d.grid,
                "created_at": now, "updated_at": now})
            # As if each had last been heard within its heartbeat: the demo starts online
            # and devices go offline as the usual rule says if nothing keeps them alive.
            seen = now - timedelta(seconds=rnd.uniform(0, hb))
            status.append({
                "device_id": d.id, "online": True, "last_seen_at": seen,
                "offline_after": seen + timedelta(seconds=3 * hb), "offline_since": None,
                "last_ts": None, "battery_pct": round(rnd.uniform(30, 100), 1),
                "metrics": None, "rule_state": {}, "messages": 0, "updated_at": now})
        for i in range(0, len(rows), 5000):
            s.execute(insert(Device), rows[i:i + 5000])
        for i in range(0, len(status), 5000):
            s.execute(insert(DeviceStatus), status[i:i + 5000])
        audit.record(s, "anwang.communities.devices.imported", actor=ACTOR,
                     result_count=len(devices),
                     data={"communities": len(communities), "devices": len(devices),
                           "demo": True})
    console.print(f"loaded {len(communities)} communities with {len(devices)} devices "
                  "(demo keys are not kept: `anwang simulate devices` publishes for them)")
    return len(devices)
