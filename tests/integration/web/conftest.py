"""An app with a small jurisdiction tree and one user per role the pages care about."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from anwang.app import create_app
from anwang.auth import service
from anwang.core.db import Database
from anwang.settings import Settings

PASSWORD = "correct horse battery"

#: username -> (role, jurisdiction)
USERS: dict[str, tuple[str, str | None]] = {
    "west.dispatcher": ("dispatcher", "3201"),
    "east.dispatcher": ("dispatcher", "3202"),
    "city.commander": ("commander", None),
    "the.auditor": ("auditor", None),
}


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(code: str, level: str, parent: str | None, geometry: dict[str, Any],
            name: str, name_en: str) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry,
            "properties": {"code": code, "level": level, "parent": parent,
                           "name": name, "name_en": name_en}}


def city_tree() -> dict[str, Any]:
    """City 32 split into a west (3201) and an east (3202) district, a station each."""
    return {"type": "FeatureCollection", "features": [
        feature("32", "city", None, square(119.8, 31.7, 120.1, 31.86), "示范市", "Demo City"),
        feature("3201", "district", "32", square(119.8, 31.7, 119.95, 31.86), "西区", "West"),
        feature("3202", "district", "32", square(119.95, 31.7, 120.1, 31.86), "东区", "East"),
        feature("320101", "station", "3201", square(119.8, 31.7, 119.95, 31.78),
                "西门派出所", "Ximen Station"),
        feature("320201", "station", "3202", square(119.95, 31.7, 120.1, 31.78),
                "东门派出所", "Dongmen Station"),
    ]}


def seed(db: Database) -> None:
    with db.unit_of_work() as s:
        service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
        for username, (role, jurisdiction) in USERS.items():
            service.create_user(s, username=username, password=PASSWORD, role=role,
                                jurisdiction_code=jurisdiction, actor="test")


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    seed(db)
    return create_app(settings, db=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def _login(client: TestClient, username: str, password: str = PASSWORD, **form: str) -> str:
    """Sign in through the form; returns the page's CSRF token."""
    r = client.post("/login", data={"username": username, "password": password, **form},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert page.status_code == 200, page.text
    m = CSRF_FIELD.search(page.text)
    assert m is not None
    return m.group(1)


@pytest.fixture
def login() -> Any:
    """``login(client, username)`` signs in through the form and returns the CSRF token."""
    return _login
