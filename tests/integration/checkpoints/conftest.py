"""An app with a two-district city, people of the roles that matter here, a device key,
and helpers to register checkpoints and post reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.checkpoints import service
from anwang.checkpoints.models import PlateRead
from anwang.checkpoints.schemas import CheckpointCreate
from anwang.core.audit import AuditEntry
from anwang.core.db import Database
from anwang.core.scope import Scope
from anwang.settings import Settings

PASSWORD = "correct horse battery"

#: username -> (role, jurisdiction)
PEOPLE: dict[str, tuple[str, str | None]] = {
    "admin": ("admin", None),
    "analyst": ("analyst", None),
    "west.analyst": ("analyst", "3201"),
    "commander": ("commander", None),
    "dispatcher": ("dispatcher", "3201"),
    "auditor": ("auditor", None),
}

#: Inside district 3201 (station 320101) and 3202 (station 320201).
WEST = (31.74, 119.85)
EAST = (31.74, 120.05)


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(code: str, level: str, parent: str | None, geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry,
            "properties": {"code": code, "level": level, "parent": parent, "name": f"J{code}"}}


def city_tree() -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [
        feature("32", "city", None, square(119.8, 31.7, 120.1, 31.86)),
        feature("3201", "district", "32", square(119.8, 31.7, 119.95, 31.86)),
        feature("3202", "district", "32", square(119.95, 31.7, 120.1, 31.86)),
        feature("320101", "station", "3201", square(119.8, 31.7, 119.95, 31.78)),
        feature("320201", "station", "3202", square(119.95, 31.7, 120.1, 31.78)),
    ]}


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat()


def a_read(checkpoint: str = "W-01", plate: str = "苏D12345", *, at: datetime | None = None,
           **extra: Any) -> dict[str, Any]:
    read: dict[str, Any] = {
        "checkpoint": checkpoint,
        "captured_at": iso(at or now() - timedelta(minutes=1)),
        "plate": plate, "plate_color": "blue", "confidence": 0.97, "lane": 1,
        "direction": "in",
    }
    read.update(extra)
    return read


class Kit:
    """Helpers bound to the test's database and client."""

    def __init__(self, db: Database, client: TestClient, device_key: str) -> None:
        self.db = db
        self.client = client
        self.device_key = device_key
        self._tokens: dict[str, str] = {}

    # --- credentials ------------------------------------------------------------------

    def token(self, username: str) -> str:
        if username not in self._tokens:
            r = self.client.post("/api/v1/auth/token",
                                 json={"username": username, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self._tokens[username] = r.json()["access_token"]
        return self._tokens[username]

    def as_user(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}

    @property
    def device(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.device_key}"}

    # --- data -------------------------------------------------------------------------

    def add_checkpoint(self, code: str, at: tuple[float, float] = WEST, **fields: Any) -> None:
        data = {"code": code, "name": f"Checkpoint {code}", "kind": "police_checkpoint",
                "lat": at[0], "lon": at[1], **fields}
        with self.db.unit_of_work(info={"scope": Scope(None)}) as s:
            service.create_checkpoint(s, data=CheckpointCreate(**data), actor="test")

    def post_reads(self, reads: list[Any], *, ndjson: bool = False,
                   headers: dict[str, str] | None = None) -> Any:
        if ndjson:
            body = "\n".join(json.dumps(r, ensure_ascii=False) for r in reads) + "\n"
            ctype = "application/x-ndjson"
        else:
            body = json.dumps(reads, ensure_ascii=False)
            ctype = "application/json"
        return self.client.post(
            "/api/v1/reads", content=body.encode(),
            headers={"Content-Type": ctype, **(headers or self.device)},
        )

    def drain(self) -> None:
        """Wait until the in-process bus has handled everything published so far."""
        bus = self.client.app.state.anwang.bus  # type: ignore[attr-defined]
        self.client.portal.call(bus.drain)  # type: ignore[union-attr]

    def stored(self) -> list[PlateRead]:
        with self.db.unit_of_work(readonly=True) as s:
            return list(s.scalars(select(PlateRead).order_by(PlateRead.captured_at)))

    def count_reads(self) -> int:
        with self.db.unit_of_work(readonly=True) as s:
            return int(s.scalar(select(func.count()).select_from(PlateRead)) or 0)

    def audit(self, action: str) -> list[AuditEntry]:
        with self.db.unit_of_work(readonly=True) as s:
            return list(s.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            ))


def seed(db: Database) -> str:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
        for username, (role, jurisdiction) in PEOPLE.items():
            auth_service.create_user(s, username=username, password=PASSWORD, role=role,
                                     jurisdiction_code=jurisdiction, actor="test")
        key, _ = auth_service.create_api_key(s, name="camera-1", role="device", actor="test")
    return key


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, db=db)


@pytest.fixture
def kit(app: FastAPI, db: Database) -> Iterator[Kit]:
    key = seed(db)
    with TestClient(app) as client:
        yield Kit(db, client, key)
