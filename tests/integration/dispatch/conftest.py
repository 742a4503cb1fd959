"""The demo city (seed 7) as a test bed: its jurisdictions in the database, its road
graph in the data directory, users per role and helpers to place posts and units.

West is district 320401, east 320402; each test gets road nodes inside each district
(``city.nodes_in``), so places are real places of the graph."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.core.db import Database
from anwang.core.scope import Scope
from anwang.demo.city import generate_city, jurisdictions_to_geojson
from anwang.dispatch import posts as posts_service
from anwang.dispatch import service
from anwang.roads.graph import RoadGraph
from anwang.roads.service import GRAPH_FILE
from anwang.settings import Settings

PASSWORD = "correct horse battery"
WEST, EAST = "320401", "320402"


@dataclass(frozen=True)
class City:
    graph: RoadGraph
    graph_file: Path
    tree: dict[str, Any]
    districts: dict[str, np.ndarray]
    """District code (and the first west station's) → graph nodes inside it, in the main
    component."""
    first_station: str

    def point(self, district: str, k: int) -> tuple[float, float]:
        nodes = self.districts[district]
        node = int(nodes[(k * 7919) % nodes.size])
        return float(self.graph.lat[node]), float(self.graph.lon[node])


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    c = generate_city(7)
    g = RoadGraph.from_road_network(c.roads)
    path = tmp_path_factory.mktemp("city") / GRAPH_FILE
    g.save(path)
    tree = jurisdictions_to_geojson(c.jurisdictions)
    pts = shapely.points(g.lon, g.lat)
    main = g.largest_component_mask()
    station = sorted(j.code for j in c.by_level("station") if j.code.startswith(WEST))[0]
    districts = {}
    for j in [*c.by_level("district"), c.get(station)]:
        inside = shapely.contains(j.polygon, pts) & main
        districts[j.code] = np.flatnonzero(inside)
    return City(g, path, tree, districts, station)


#: username -> (role, jurisdiction); the officer's station is filled in per test
USERS: dict[str, tuple[str, str | None]] = {
    "west.dispatcher": ("dispatcher", WEST),
    "east.dispatcher": ("dispatcher", EAST),
    "city.commander": ("commander", None),
    "city.analyst": ("analyst", None),
    "grid.worker": ("grid_worker", None),
}


@dataclass
class Kit:
    db: Database
    city: City
    settings: Settings

    def uow(self, scope: str | None = None) -> Any:
        return self.db.unit_of_work(info={"scope": Scope(scope)})

    def post(self, code: str, district: str, k: int, kind: str = "quick_response") -> str:
        lat, lon = self.city.point(district, k)
        with self.uow() as s:
            return posts_service.create_post(s, data=posts_service.PostInput(
                code=code, name=f"岗 {code}", kind=kind, lat=lat, lon=lon), actor="test").id

    def unit(self, call_sign: str, kind: str, district: str, k: int, *,
             at: datetime | None = None, position_k: int | None = None,
             home_post: str | None = None) -> str:
        lat, lon = self.city.point(district, k)
        with self.uow() as s:
            u = service.create_unit(s, call_sign=call_sign, kind=kind, home_post_id=home_post,
                                    lat=None if home_post else lat,
                                    lon=None if home_post else lon, actor="test")
            if at is not None:
                plat, plon = self.city.point(district, position_k if position_k is not None
                                             else k)
                service.record_position(s, unit_id=u.id, lat=plat, lon=plon, at=at, now=at)
            return u.id


@pytest.fixture
def kit(db: Database, city: City, settings: Settings) -> Kit:
    shutil.copy(city.graph_file, settings.data_dir / GRAPH_FILE)
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.load_jurisdictions(s, feature_collection=city.tree, actor="test")
        for username, (role, jurisdiction) in USERS.items():
            auth_service.create_user(s, username=username, password=PASSWORD, role=role,
                                     jurisdiction_code=jurisdiction, actor="test")
        auth_service.create_user(s, username="west.officer", password=PASSWORD, role="officer",
                                 jurisdiction_code=city.first_station, actor="test")
    return Kit(db, city, settings)


@pytest.fixture
def app(kit: Kit) -> FastAPI:
    return create_app(kit.settings, db=kit.db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def token(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def auth(client: TestClient) -> Any:
    """``auth("west.dispatcher")`` → headers with a bearer token (cached per user)."""
    cache: dict[str, dict[str, str]] = {}

    def get(username: str) -> dict[str, str]:
        if username not in cache:
            cache[username] = token(client, username)
        return cache[username]

    return get


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
