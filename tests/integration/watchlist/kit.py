"""Factories shared by the watch-list and alert integration tests (not a test module).

A small city: ``32`` with a west district ``3201`` (station ``320101``, grid
``32010101``) and an east district ``3202`` (station ``320201``, grid ``32020101``), and
one user per role the tests need.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.auth import service as auth_service
from anwang.checkpoints.facts import ReadFacts
from anwang.core import audit
from anwang.core.audit import AuditEntry
from anwang.core.db import Database
from anwang.core.events import Event
from anwang.watchlist import service as wl

PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC)

#: username -> (role, jurisdiction)
USERS: dict[str, tuple[str, str | None]] = {
    "ana": ("analyst", None),
    "ana2": ("analyst", None),
    "cmd": ("commander", None),
    "cmd2": ("commander", None),
    "adm": ("admin", None),
    "aud": ("auditor", None),
    "west.disp": ("dispatcher", "3201"),
    "east.disp": ("dispatcher", "3202"),
    "west.off": ("officer", "320101"),
    "west.grid": ("grid_worker", "32010101"),
}

WEST = {"checkpoint_code": "CP-W1", "checkpoint_name": "西门卡口", "jurisdiction_code": "32010101",
        "lat": 31.75, "lon": 119.85}
EAST = {"checkpoint_code": "CP-E1", "checkpoint_name": "东门卡口", "jurisdiction_code": "32020101",
        "lat": 31.75, "lon": 120.05}


def _square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _feature(code: str, level: str, parent: str | None, geom: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geom,
            "properties": {"code": code, "level": level, "parent": parent, "name": f"J{code}"}}


def city_tree() -> dict[str, Any]:
    f, sq = _feature, _square
    return {"type": "FeatureCollection", "features": [
        f("32", "city", None, sq(119.8, 31.7, 120.1, 31.86)),
        f("3201", "district", "32", sq(119.8, 31.7, 119.95, 31.86)),
        f("3202", "district", "32", sq(119.95, 31.7, 120.1, 31.86)),
        f("320101", "station", "3201", sq(119.8, 31.7, 119.95, 31.78)),
        f("320201", "station", "3202", sq(119.95, 31.7, 120.1, 31.78)),
        f("32010101", "grid", "320101", sq(119.8, 31.7, 119.9, 31.78)),
        f("32020101", "grid", "320201", sq(119.95, 31.7, 120.05, 31.78)),
    ]}


_ids = itertools.count(1)


def read(plate: str, at: datetime = NOW, *, where: dict[str, Any] | None = None,
         read_id: str | None = None, **kw: Any) -> ReadFacts:
    place = where or WEST
    facts = ReadFacts(
        read_id=read_id or f"r{next(_ids):08d}", checkpoint_name=place["checkpoint_name"],
        checkpoint_code=place["checkpoint_code"], checkpoint_kind="police_checkpoint",
        direction="in", lane=1, captured_at=at, plate=plate, plate_color="blue",
        confidence=0.93, lat=place["lat"], lon=place["lon"],
        jurisdiction_code=place["jurisdiction_code"],
    )
    return replace(facts, **kw) if kw else facts


class Kit:
    """Helpers bound to the test's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.published: list[Event] = []
        db.publisher = self.published.extend

    def seed(self) -> None:
        with self.db.unit_of_work() as s:
            auth_service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
            for username, (role, jurisdiction) in USERS.items():
                auth_service.create_user(s, username=username, password=PASSWORD, role=role,
                                         jurisdiction_code=jurisdiction, actor="test")

    def entry(self, pattern: str, *, approve: bool = True, owner: str = "ana",
              approver: str = "cmd", now: datetime = NOW, days: float = 30,
              priority: int = 1, reason: str = "stolen_vehicle", **kw: Any) -> str:
        """Create (and by default approve) an entry; returns its id."""
        with self.db.unit_of_work() as s:
            e = wl.create_entry(
                s, pattern=pattern, reason=reason, legal_basis="court order 1",
                case_ref="CASE-1", priority=priority, expires_at=now + timedelta(days=days),
                actor=owner, actor_role="analyst", now=now, **kw,
            )
            if approve:
                wl.approve_entry(s, entry_id=e.id, actor=approver, actor_role="commander",
                                 now=now)
            return e.id

    def match(self, *reads: ReadFacts) -> dict[str, list[tuple[str, str, int]]]:
        """read id -> [(entry id, kind, priority)] of the reads that hit."""
        with self.db.unit_of_work() as s:
            got = wl.match_reads(s, reads=list(reads))
        return {r.read_id: [(h.entry_id, h.kind.value, h.priority) for h in hits]
                for r, hits in got}

    def actions(self, subject: str | None = None, prefix: str = "anwang.") -> list[str]:
        with self.db.unit_of_work() as s:
            stmt = select(AuditEntry.action).order_by(AuditEntry.seq)
            if subject is not None:
                stmt = stmt.where(AuditEntry.subject == subject)
            return [a for a in s.scalars(stmt) if a.startswith(prefix)]

    def audit_ok(self) -> bool:
        with self.db.unit_of_work() as s:
            return audit.verify(s).ok

    def events(self, prefix: str = "anwang.") -> list[Event]:
        return [e for e in self.published if e.name.startswith(prefix)]

    @staticmethod
    def token(client: TestClient, username: str) -> dict[str, str]:
        r = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}
