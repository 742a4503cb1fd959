"""A small city with two communities, users per role, and helpers for device messages.

City ``32``: west district ``3201`` (station ``320101``, grid ``32010101``) and east
district ``3202`` (station ``320201``, grid ``32020101``). Community ``W1`` lies in the
west grid, ``E1`` in the east grid. ``kit`` registers devices and feeds messages through
the intake with an injected clock.

``mqtt_url`` gives the machine's Mosquitto (``ANWANG_TEST_MQTT_URL``, default
``mqtt://127.0.0.1:1883``) and skips — or, with ``ANWANG_REQUIRE_SERVICES=1``, fails —
when it cannot be reached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.communities import intake
from anwang.communities import service as cs
from anwang.communities.models import DeviceAlarm
from anwang.communities.schemas import CommunityCreate, DeviceCreate
from anwang.core.audit import AuditEntry
from anwang.core.db import Database, OutboxEntry
from anwang.core.scope import Scope
from anwang.settings import Settings

PASSWORD = "correct horse battery"
WEST_GRID, EAST_GRID = "32010101", "32020101"
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)

#: username -> (role, jurisdiction)
USERS: dict[str, tuple[str, str | None]] = {
    "admin": ("admin", None),
    "west.manager": ("business", WEST_GRID),
    "west.gridworker": ("grid_worker", WEST_GRID),
    "west.officer": ("officer", "320101"),
    "east.officer": ("officer", "320201"),
    "city.dispatcher": ("dispatcher", None),
    "city.commander": ("commander", None),
    "the.auditor": ("auditor", None),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mqtt: needs the MQTT broker (Mosquitto)")


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _f(code: str, level: str, parent: str | None, geom: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geom,
            "properties": {"code": code, "level": level, "parent": parent,
                           "name": f"J{code}", "name_en": f"J{code}"}}


def city_tree() -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [
        _f("32", "city", None, square(119.8, 31.7, 120.1, 31.86)),
        _f("3201", "district", "32", square(119.8, 31.7, 119.95, 31.86)),
        _f("3202", "district", "32", square(119.95, 31.7, 120.1, 31.86)),
        _f("320101", "station", "3201", square(119.8, 31.7, 119.95, 31.86)),
        _f("320201", "station", "3202", square(119.95, 31.7, 120.1, 31.86)),
        _f(WEST_GRID, "grid", "320101", square(119.8, 31.7, 119.95, 31.86)),
        _f(EAST_GRID, "grid", "320201", square(119.95, 31.7, 120.1, 31.86)),
    ]}


WEST_POLY = square(119.85, 31.75, 119.86, 31.76)
EAST_POLY = square(120.0, 31.75, 120.01, 31.76)


class Kit:
    """Helpers bound to the test's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.keys: dict[str, str] = {}

    def device(self, device_id: str, kind: str = "charging_pile", *, community: str = "W1",
               adapter: str = "native", heartbeat_s: int = 60, floor: int | None = None,
               at: datetime = T0) -> str:
        lat, lon = (31.755, 119.855) if community == "W1" else (31.755, 120.005)
        with self.db.unit_of_work() as s:
            _, key = cs.create_device(
                s, data=DeviceCreate(id=device_id, kind=kind, lat=lat, lon=lon,
                                     community=community, adapter=adapter,
                                     heartbeat_s=heartbeat_s, floor=floor),
                actor="test", now=at)
        self.keys[device_id] = key
        return key

    @staticmethod
    def msg(device_id: str, channel: str, body: Any, *, received: datetime = T0) -> intake.Inbound:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return intake.Inbound(device_id, channel, raw, received.timestamp())

    @staticmethod
    def telemetry(device_id: str, at: datetime, received: datetime | None = None,
                  **metrics: float) -> intake.Inbound:
        return Kit.msg(device_id, "telemetry", {"ts": at.isoformat(), "metrics": metrics},
                       received=received or at)

    @staticmethod
    def event(device_id: str, event: str, at: datetime, received: datetime | None = None,
              **detail: Any) -> intake.Inbound:
        body: dict[str, Any] = {"ts": at.isoformat(), "event": event}
        if detail:
            body["detail"] = detail
        return Kit.msg(device_id, "events", body, received=received or at)

    def ingest(self, *messages: intake.Inbound, now: datetime | None = None) -> intake.IngestReport:
        when = now or max((datetime.fromtimestamp(m.received_at, UTC) for m in messages),
                          default=T0)
        with self.db.unit_of_work() as s:
            return intake.ingest(s, messages=list(messages), now=when)

    def alarms(self, **where: Any) -> list[DeviceAlarm]:
        with self.db.unit_of_work(readonly=True) as s:
            stmt = select(DeviceAlarm).order_by(DeviceAlarm.raised_at, DeviceAlarm.id)
            for k, v in where.items():
                stmt = stmt.where(getattr(DeviceAlarm, k) == v)
            return list(s.scalars(stmt))

    def audit(self, prefix: str = "anwang.communities.") -> list[tuple[str, str | None]]:
        with self.db.unit_of_work(readonly=True) as s:
            return [(a, subj) for a, subj in s.execute(
                select(AuditEntry.action, AuditEntry.subject)
                .where(AuditEntry.action.like(prefix + "%")).order_by(AuditEntry.seq))]

    def outbox(self, prefix: str = "anwang.communities.") -> list[dict[str, Any]]:
        with self.db.unit_of_work(readonly=True) as s:
            return [json.loads(b) for b in s.scalars(
                select(OutboxEntry.body).where(OutboxEntry.name.like(prefix + "%"))
                .order_by(OutboxEntry.created_at, OutboxEntry.event_id))]


def seed(db: Database) -> None:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
        for username, (role, j) in USERS.items():
            auth_service.create_user(s, username=username, password=PASSWORD, role=role,
                                     jurisdiction_code=j, actor="test")
        cs.create_community(s, data=CommunityCreate(
            code="W1", name="幸福里", polygon=WEST_POLY, address="西区幸福路 1 号",
            contacts=[{"name": "王经理", "role": "property_manager", "phone": "0519-8888"}]),
            actor="test")
        cs.create_community(s, data=CommunityCreate(code="E1", name="东湖苑", polygon=EAST_POLY),
                            actor="test")


@pytest.fixture(autouse=True)
def _cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its minimum cost: these tests are about devices, not passwords."""
    monkeypatch.setattr(auth_service, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def kit(db: Database) -> Kit:
    seed(db)
    return Kit(db)


@pytest.fixture
def app(settings: Settings, db: Database, kit: Kit) -> FastAPI:
    # These tests run the device rounds by hand with the injected clock (``T0``). The app's
    # own round runs on the wall clock, which is hours past ``T0``: it would escalate or
    # take offline what the test is looking at. An hour between rounds keeps it out.
    return create_app(settings.model_copy(update={"device_scan_seconds": 3600.0}), db=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def token(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def as_user(client: TestClient) -> Any:
    """``as_user("admin")`` → headers with that user's bearer token (cached per test)."""
    cache: dict[str, dict[str, str]] = {}

    def get(username: str) -> dict[str, str]:
        if username not in cache:
            cache[username] = token(client, username)
        return cache[username]

    return get


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
