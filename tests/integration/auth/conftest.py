"""Factories and clients for the identity-and-access tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.app import create_app
from anwang.auth import service
from anwang.auth.models import User
from anwang.core import audit
from anwang.core.audit import AuditEntry
from anwang.core.db import Database
from anwang.settings import Settings

PASSWORD = "correct horse battery"


class AuthKit:
    """Helpers bound to the test's database (the ``kit`` fixture)."""

    PASSWORD = PASSWORD

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_user(
        self,
        username: str,
        role: str = "officer",
        *,
        password: str = PASSWORD,
        jurisdiction: str | None = None,
    ) -> None:
        with self.db.unit_of_work() as s:
            service.create_user(
                s, username=username, password=password, role=role,
                jurisdiction_code=jurisdiction, actor="test",
            )

    def enrol_totp(self, username: str, *, at: datetime) -> str:
        """Enable TOTP for ``username`` with a code valid at ``at``; returns the secret."""
        with self.db.unit_of_work() as s:
            user = service.get_user(s, username=username)
            uri = service.begin_totp(s, user=user)
            secret: str = pyotp.parse_uri(uri).secret
            service.confirm_totp(s, user=user, code=pyotp.TOTP(secret).at(at), now=at)
        return secret

    def user(self, username: str) -> User:
        with self.db.unit_of_work() as s:
            return s.scalars(select(User).where(User.username == username)).one()

    def audit_actions(self, subject: str | None = None) -> list[str]:
        with self.db.unit_of_work() as s:
            stmt = select(AuditEntry.action).order_by(AuditEntry.seq)
            if subject is not None:
                stmt = stmt.where(AuditEntry.subject == subject)
            return list(s.scalars(stmt))

    def audit_ok(self) -> bool:
        with self.db.unit_of_work() as s:
            return audit.verify(s).ok

    @staticmethod
    def token_for(
        client: TestClient, username: str, password: str = PASSWORD, **extra: Any
    ) -> str:
        r = client.post("/api/v1/auth/token",
                        json={"username": username, "password": password, **extra})
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
        return {"type": "Polygon",
                "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}

    @staticmethod
    def feature(code: str, level: str, parent: str | None, geometry: dict[str, Any],
                **props: Any) -> dict[str, Any]:
        return {"type": "Feature", "geometry": geometry,
                "properties": {"code": code, "level": level, "parent": parent,
                               "name": f"J{code}", **props}}

    def city_tree(self) -> dict[str, Any]:
        """City 32; districts 3201 (west) and 3202 (east); in 3201 a station and a grid."""
        sq, f = self.square, self.feature
        return {
            "type": "FeatureCollection",
            "features": [
                f("32", "city", None, sq(119.0, 31.0, 121.0, 33.0), name_en="City"),
                f("3201", "district", "32", sq(119.0, 31.0, 120.0, 33.0)),
                f("3202", "district", "32", sq(120.0, 31.0, 121.0, 33.0)),
                f("320101", "station", "3201", sq(119.0, 31.0, 119.5, 32.0),
                  station_point=[119.25, 31.5]),
                f("32010101", "grid", "320101", sq(119.0, 31.0, 119.25, 31.5)),
            ],
        }

    def load_tree(self, fc: dict[str, Any] | None = None) -> int:
        with self.db.unit_of_work() as s:
            return service.load_jurisdictions(
                s, feature_collection=fc or self.city_tree(), actor="test"
            )


@pytest.fixture
def kit(db: Database) -> AuthKit:
    return AuthKit(db)


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, db=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
