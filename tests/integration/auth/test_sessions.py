"""Server-side sessions: idle and absolute expiry, touching, logout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from anwang.auth import service
from anwang.auth.models import AuthSession
from anwang.core.db import Database
from anwang.core.errors import NotAuthenticated
from anwang.settings import Settings

if TYPE_CHECKING:
    from tests.integration.auth.conftest import AuthKit

T0 = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)


def start(db: Database, username: str, kind: service.SessionKind = "api") -> tuple[str, int]:
    with db.unit_of_work() as s:
        token, auth = service.start_session(
            s, user=service.get_user(s, username=username), kind=kind, now=T0
        )
        return token, auth.id


def resolve(db: Database, settings: Settings, token: str, now: datetime,
            kind: service.SessionKind = "api") -> str | None:
    """Resolve in a unit of work that commits even on refusal; returns the error code."""
    with db.unit_of_work() as s:
        try:
            service.resolve_session(s, token=token, kind=kind, settings=settings, now=now)
        except NotAuthenticated as exc:
            return exc.code
    return None


def session_row(db: Database, session_id: int) -> AuthSession:
    with db.unit_of_work() as s:
        row = s.get(AuthSession, session_id)
        assert row is not None
        return row


def test_token_is_stored_only_as_its_hash(db: Database, kit: AuthKit) -> None:
    kit.add_user("he.min")
    token, sid = start(db, "he.min")
    row = session_row(db, sid)
    assert token not in (row.token_hash, row.csrf_token)
    assert len(row.token_hash) == 64


def test_idle_expiry(db: Database, settings: Settings, kit: AuthKit) -> None:
    kit.add_user("he.min")
    token, sid = start(db, "he.min")
    assert resolve(db, settings, token, T0 + timedelta(minutes=29)) is None
    # Used at +29 min, so idle only from then on.
    assert resolve(db, settings, token, T0 + timedelta(minutes=58)) is None
    code = resolve(db, settings, token, T0 + timedelta(minutes=58 + 31))
    assert code == "anwang.auth.session_expired"
    row = session_row(db, sid)
    assert row.ended_at is not None and row.ended_reason == "idle"
    assert resolve(db, settings, token, T0 + timedelta(minutes=90)) == (
        "anwang.auth.session_ended"
    )


def test_absolute_expiry_despite_activity(db: Database, settings: Settings, kit: AuthKit) -> None:
    kit.add_user("he.min")
    token, sid = start(db, "he.min")
    t = T0
    while t < T0 + timedelta(hours=12) - timedelta(minutes=20):
        t += timedelta(minutes=20)
        assert resolve(db, settings, token, t) is None, t
    code = resolve(db, settings, token, T0 + timedelta(hours=12, minutes=1))
    assert code == "anwang.auth.session_expired"
    assert session_row(db, sid).ended_reason == "absolute"


def test_last_seen_is_written_at_most_every_30_seconds(
    db: Database, settings: Settings, kit: AuthKit
) -> None:
    kit.add_user("he.min")
    token, sid = start(db, "he.min")
    resolve(db, settings, token, T0 + timedelta(seconds=20))
    assert session_row(db, sid).last_seen_at == T0
    resolve(db, settings, token, T0 + timedelta(seconds=31))
    assert session_row(db, sid).last_seen_at == T0 + timedelta(seconds=31)


def test_a_token_is_bound_to_its_kind(db: Database, settings: Settings, kit: AuthKit) -> None:
    kit.add_user("he.min")
    web_token, _ = start(db, "he.min", kind="web")
    assert resolve(db, settings, web_token, T0, kind="api") == "anwang.auth.not_authenticated"
    assert resolve(db, settings, web_token, T0, kind="web") is None
    assert resolve(db, settings, "made-up", T0) == "anwang.auth.not_authenticated"


def test_deactivation_ends_open_sessions(db: Database, settings: Settings, kit: AuthKit) -> None:
    kit.add_user("he.min")
    kit.add_user("boss", "admin")
    token, sid = start(db, "he.min")
    with db.unit_of_work() as s:
        service.deactivate_user(s, username="he.min", actor="boss", now=T0)
    assert resolve(db, settings, token, T0 + timedelta(minutes=1)) == "anwang.auth.session_ended"
    assert session_row(db, sid).ended_reason == "deactivated"


def test_logout_ends_the_session_server_side(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("he.min")
    token = kit.token_for(client, "he.min")
    assert client.get("/api/v1/me", headers=kit.bearer(token)).status_code == 200
    r = client.post("/api/v1/auth/logout", headers=kit.bearer(token))
    assert r.status_code == 204
    again = client.get("/api/v1/me", headers=kit.bearer(token))
    assert again.status_code == 401
    assert again.json()["code"] == "anwang.auth.session_ended"
    assert again.headers["www-authenticate"] == "Bearer"
    assert kit.audit_actions("he.min")[-1] == "anwang.auth.logout"
    assert kit.audit_ok()


def test_expired_session_over_http_is_marked_ended(
    client: TestClient, db: Database, kit: AuthKit
) -> None:
    kit.add_user("he.min")
    token = kit.token_for(client, "he.min")
    with db.unit_of_work() as s:
        s.execute(update(AuthSession).values(
            last_seen_at=datetime.now(UTC) - timedelta(minutes=31)))
    r = client.get("/api/v1/me", headers=kit.bearer(token))
    assert r.status_code == 401 and r.json()["code"] == "anwang.auth.session_expired"
    # The refusal did not roll the mark back.
    with db.unit_of_work() as s:
        row = s.scalars(select(AuthSession)).one()
        assert row.ended_at is not None and row.ended_reason == "idle"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Token xyz"])
def test_malformed_authorization_header(client: TestClient, header: str) -> None:
    r = client.get("/api/v1/me", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
