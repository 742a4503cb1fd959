"""The auth JSON API: tokens, /me, users, API keys, CSRF, rate limit, request errors."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import pytest
from fastapi import FastAPI, Form
from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.auth import service
from anwang.auth.api import PUBLIC_ROUTES
from anwang.auth.deps import (
    SESSION_COOKIE,
    CsrfProtected,
    OptionalPrincipal,
    sign_in,
)
from anwang.auth.models import ApiKey
from anwang.auth.permissions import Action, Role, allowed
from anwang.core.audit import AuditEntry
from anwang.core.db import Database

if TYPE_CHECKING:
    from tests.integration.auth.conftest import AuthKit


def test_token_and_me(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("dispatch.1", "dispatcher")
    r = client.post("/api/v1/auth/token",
                    json={"username": "dispatch.1", "password": kit.PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["role"] == "dispatcher"
    assert body["expires_in"] == 12 * 3600 and body["idle_timeout"] == 30 * 60
    me = client.get("/api/v1/me", headers=kit.bearer(body["access_token"])).json()
    assert me["username"] == "dispatch.1" and me["kind"] == "user"
    assert me["role"] == "dispatcher" and me["jurisdiction"] is None
    # /me reports exactly what the one permission table grants the role (the table
    # itself is pinned in tests/unit/auth/test_permissions.py).
    assert set(me["permissions"]) == {str(a) for a in Action if allowed(Role.DISPATCHER, a)}
    assert {"map.view", "stream.read", "alerts.handle"} <= set(me["permissions"])
    assert "reads.search" not in me["permissions"]


def test_locale_change_by_bearer(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("officer.l")
    headers = kit.bearer(kit.token_for(client, "officer.l"))
    r = client.post("/api/v1/me/locale", json={"locale": "en"}, headers=headers)
    assert r.status_code == 200 and r.json()["locale"] == "en"
    assert kit.user("officer.l").locale == "en"
    bad = client.post("/api/v1/me/locale", json={"locale": "fr"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "locale"


# --- request errors ------------------------------------------------------------------


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post("/api/v1/auth/token", content=b'{"username": ',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"].startswith("anwang.bad_request")


def test_wrong_content_type_is_415(client: TestClient) -> None:
    r = client.post("/api/v1/auth/token", content=b"username=a&password=b",
                    headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["code"] == "anwang.unsupported_media_type"


def test_missing_field_is_422_naming_it(client: TestClient) -> None:
    r = client.post("/api/v1/auth/token", json={"username": "someone"})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["password"]


# --- rate limit ----------------------------------------------------------------------


def test_login_rate_limit(client: TestClient) -> None:
    for _ in range(20):
        r = client.post("/api/v1/auth/token", json={"username": "x", "password": "y" * 10})
        assert r.status_code == 401
    r = client.post("/api/v1/auth/token", json={"username": "x", "password": "y" * 10})
    assert r.status_code == 429
    assert r.json()["code"] == "anwang.auth.login_rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60


# --- users ---------------------------------------------------------------------------


def test_admin_manages_users(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("root.admin", "admin")
    h = kit.bearer(kit.token_for(client, "root.admin"))
    r = client.post("/api/v1/users", headers=h, json={
        "username": "new.officer", "password": "a good long password", "role": "officer",
    })
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "officer"
    names = [u["username"] for u in client.get("/api/v1/users", headers=h).json()]
    assert names == ["new.officer", "root.admin"]

    r = client.patch("/api/v1/users/new.officer", headers=h, json={"role": "analyst"})
    assert r.status_code == 200 and r.json()["role"] == "analyst"
    assert kit.audit_actions("new.officer") == [
        "anwang.auth.user.created", "anwang.auth.user.role_changed",
    ]

    dup = client.post("/api/v1/users", headers=h, json={
        "username": "new.officer", "password": "a good long password", "role": "officer",
    })
    assert dup.status_code == 409
    short = client.post("/api/v1/users", headers=h, json={
        "username": "other", "password": "short", "role": "officer",
    })
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "password"
    bad_name = client.post("/api/v1/users", headers=h, json={
        "username": "Bad Name", "password": "a good long password", "role": "officer",
    })
    assert bad_name.status_code == 422
    assert bad_name.json()["errors"][0]["field"] == "username"
    no_place = client.post("/api/v1/users", headers=h, json={
        "username": "placed", "password": "a good long password", "role": "officer",
        "jurisdiction": "9999",
    })
    assert no_place.status_code == 422
    assert no_place.json()["errors"][0]["field"] == "jurisdiction"
    assert client.patch("/api/v1/users/ghost", headers=h,
                        json={"role": "officer"}).status_code == 404


def test_last_admin_cannot_be_demoted(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("only.admin", "admin")
    h = kit.bearer(kit.token_for(client, "only.admin"))
    r = client.patch("/api/v1/users/only.admin", headers=h, json={"role": "officer"})
    assert r.status_code == 409 and r.json()["code"] == "anwang.auth.last_admin"


def test_district_admin_stays_in_the_district(client: TestClient, kit: AuthKit) -> None:
    kit.load_tree()
    kit.add_user("west.admin", "admin", jurisdiction="3201")
    kit.add_user("east.officer", "officer", jurisdiction="3202")
    h = kit.bearer(kit.token_for(client, "west.admin"))
    body = {"username": "x.city", "password": "a good long password", "role": "officer"}
    r = client.post("/api/v1/users", headers=h, json=body)
    assert r.status_code == 403 and r.json()["code"] == "anwang.auth.outside_jurisdiction"
    ok = client.post("/api/v1/users", headers=h, json={**body, "jurisdiction": "320101"})
    assert ok.status_code == 201
    assert [u["username"] for u in client.get("/api/v1/users", headers=h).json()] == [
        "west.admin", "x.city",
    ]
    r = client.patch("/api/v1/users/east.officer", headers=h, json={"role": "analyst"})
    assert r.status_code == 403


def test_roles_are_enforced(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("an.analyst", "analyst")
    kit.add_user("an.auditor", "auditor")
    h = kit.bearer(kit.token_for(client, "an.analyst"))
    r = client.get("/api/v1/users", headers=h)
    assert r.status_code == 403
    assert r.json()["code"] == "anwang.auth.permission_denied"
    assert "users.manage" in r.json()["detail"] and "analyst" in r.json()["detail"]
    aud = kit.bearer(kit.token_for(client, "an.auditor"))
    assert client.get("/api/v1/jurisdictions", headers=aud).status_code == 403


# --- API keys ------------------------------------------------------------------------


def test_api_key_lifecycle(client: TestClient, db: Database, kit: AuthKit) -> None:
    kit.add_user("root.admin", "admin")
    h = kit.bearer(kit.token_for(client, "root.admin"))
    r = client.post("/api/v1/apikeys", headers=h, json={"name": "gate-7", "role": "device"})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert re.fullmatch(r"ak_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", key)
    assert key.startswith(f"ak_{created['prefix']}_")

    me = client.get("/api/v1/me", headers=kit.bearer(key))
    assert me.status_code == 200
    assert me.json() == {
        "kind": "apikey", "username": "gate-7", "role": "device", "jurisdiction": None,
        "locale": None,
        "permissions": [str(a) for a in Action if allowed(Role.DEVICE, a)],
    }
    assert "users.manage" not in me.json()["permissions"]
    # A device key calling an admin route.
    denied = client.get("/api/v1/users", headers=kit.bearer(key))
    assert denied.status_code == 403 and denied.json()["code"] == "anwang.auth.permission_denied"
    listed = client.get("/api/v1/apikeys", headers=h).json()
    assert [k["name"] for k in listed] == ["gate-7"] and "key" not in listed[0]

    assert client.delete(f"/api/v1/apikeys/{created['id']}", headers=h).status_code == 204
    gone = client.get("/api/v1/me", headers=kit.bearer(key))
    assert gone.status_code == 401 and gone.json()["code"] == "anwang.auth.apikey_revoked"

    # Only the hash is stored, and the key is nowhere in the audit trail.
    with db.unit_of_work() as s:
        entries = s.scalars(select(AuditEntry)).all()
        dumped = json.dumps([[e.subject, e.data] for e in entries])
        assert key not in dumped and key[-20:] not in dumped
        assert {"anwang.auth.apikey.created", "anwang.auth.apikey.revoked"} <= {
            e.action for e in entries
        }


def test_unknown_or_tampered_key(client: TestClient, kit: AuthKit, db: Database) -> None:
    with db.unit_of_work() as s:
        key, _ = service.create_api_key(s, name="cam", role="device")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    for k in (tampered, "ak_00000000_" + "x" * 43, "ak_nonsense"):
        r = client.get("/api/v1/me", headers=kit.bearer(k))
        assert r.status_code == 401 and r.json()["code"] == "anwang.auth.invalid_api_key"


def test_api_keys_cannot_hold_admin_or_mfa_roles(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("root.admin", "admin")
    h = kit.bearer(kit.token_for(client, "root.admin"))
    for role in ("admin", "analyst", "commander"):
        r = client.post("/api/v1/apikeys", headers=h, json={"name": f"k-{role}", "role": role})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "role"


# --- CSRF ----------------------------------------------------------------------------


@pytest.fixture
def csrf_app(app: FastAPI) -> FastAPI:
    """Two tiny test-only page routes, added to the real app."""

    @app.post("/test-only/form")
    def form_route(principal: CsrfProtected, note: Annotated[str, Form()]) -> dict[str, str]:
        return {"who": principal.name, "note": note}

    @app.get("/test-only/optional")
    def optional_route(principal: OptionalPrincipal) -> dict[str, Any]:
        return {"who": principal.name if principal else None}

    return app


def web_session(app: FastAPI, username: str, password: str) -> tuple[str, str]:
    state = app.state.anwang
    signed = sign_in(state, username=username, password=password, kind="web")
    assert signed.principal.csrf_token is not None
    return signed.token, signed.principal.csrf_token


def test_csrf_on_cookie_sessions(csrf_app: FastAPI, kit: AuthKit) -> None:
    kit.add_user("web.user")
    token, csrf = web_session(csrf_app, "web.user", kit.PASSWORD)
    with TestClient(csrf_app) as c:
        c.cookies.set(SESSION_COOKIE, token)
        assert c.get("/api/v1/me").json()["username"] == "web.user"

        r = c.post("/api/v1/me/locale", json={"locale": "en"})
        assert r.status_code == 403 and r.json()["code"] == "anwang.auth.csrf_failed"
        r = c.post("/api/v1/me/locale", json={"locale": "en"},
                   headers={"X-CSRF-Token": csrf[:-1] + "x"})
        assert r.status_code == 403
        assert kit.user("web.user").locale is None
        r = c.post("/api/v1/me/locale", json={"locale": "en"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
        assert kit.user("web.user").locale == "en"

        r = c.post("/test-only/form", data={"note": "hi"})
        assert r.status_code == 403 and r.json()["code"] == "anwang.auth.csrf_failed"
        r = c.post("/test-only/form", data={"note": "hi", "csrf_token": csrf})
        assert r.status_code == 200 and r.json() == {"who": "web.user", "note": "hi"}


def test_bearer_requests_need_no_csrf_token(csrf_app: FastAPI, kit: AuthKit) -> None:
    kit.add_user("api.user")
    with TestClient(csrf_app) as c:
        h = kit.bearer(kit.token_for(c, "api.user"))
        assert c.post("/test-only/form", data={"note": "x"}, headers=h).status_code == 200


def test_optional_principal(csrf_app: FastAPI, db: Database, kit: AuthKit) -> None:
    kit.add_user("web.user")
    token, _ = web_session(csrf_app, "web.user", kit.PASSWORD)
    with TestClient(csrf_app) as c:
        assert c.get("/test-only/optional").json() == {"who": None}
        c.cookies.set(SESSION_COOKIE, token)
        assert c.get("/test-only/optional").json() == {"who": "web.user"}
        with db.unit_of_work() as s:
            service.end_session(s, session_id=_session_id(db))
        # An ended cookie session is "nobody", so that pages redirect to the login,
        assert c.get("/test-only/optional").json() == {"who": None}
        # while a bad bearer token is still refused.
        r = c.get("/test-only/optional", headers=kit.bearer("bogus-token"))
        assert r.status_code == 401


def _session_id(db: Database) -> int:
    from anwang.auth.models import AuthSession

    with db.unit_of_work() as s:
        return s.scalars(select(AuthSession.id)).one()


def test_html_pages_redirect_an_unauthenticated_browser(csrf_app: FastAPI) -> None:
    with TestClient(csrf_app) as c:
        r = c.post("/test-only/form", data={"note": "x"}, headers={"accept": "text/html"},
                   follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


# --- public routes -------------------------------------------------------------------


def _api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) under /api/v1: from the routing table (including routers
    included lazily) and from the OpenAPI document."""
    found: set[tuple[str, str]] = set()

    def walk(routes: Any) -> None:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):
                walk(route.effective_route_contexts())
                continue
            path = getattr(route, "path", None)
            for method in getattr(route, "methods", None) or ():
                if path and path.startswith("/api/v1") and method != "HEAD":
                    found.add((method, path))

    walk(app.routes)
    for path, ops in app.openapi().get("paths", {}).items():
        for method in ops:
            if path.startswith("/api/v1"):
                found.add((method.upper(), path))
    return found


def test_every_api_route_needs_credentials_unless_public(app: FastAPI) -> None:
    routes = _api_routes(app)
    assert ("GET", "/api/v1/me") in routes and ("POST", "/api/v1/auth/token") in routes
    assert routes >= PUBLIC_ROUTES, "PUBLIC_ROUTES lists a route that does not exist"
    with TestClient(app) as c:
        for method, path in sorted(routes - PUBLIC_ROUTES):
            url = re.sub(r"\{[^}]+\}", "1", path)
            r = c.request(method, url)
            assert r.status_code == 401, f"{method} {path} answered {r.status_code}"


def test_a_key_records_its_last_use_at_most_once_a_minute(
        client: TestClient, kit: AuthKit, db: Database) -> None:
    with db.unit_of_work() as s:
        key, row = service.create_api_key(s, name="cam-lu", role="device")
        key_id = row.id

    def last_used() -> datetime | None:
        with db.unit_of_work(readonly=True) as s:
            found = s.get(ApiKey, key_id)
            assert found is not None
            return found.last_used_at

    assert last_used() is None
    assert client.get("/api/v1/me", headers=kit.bearer(key)).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/api/v1/me", headers=kit.bearer(key)).status_code == 200
    assert last_used() == first  # within the minute: not written again
    # Once the minute has passed it moves on — and a touch never moves it back.
    with db.unit_of_work() as s:
        s.get(ApiKey, key_id).last_used_at = first - timedelta(minutes=2)  # type: ignore[union-attr]
    assert client.get("/api/v1/me", headers=kit.bearer(key)).status_code == 200
    moved = last_used()
    assert moved is not None and moved >= first
    with db.unit_of_work() as s:
        service.touch_api_key(s, key_id=key_id, now=first - timedelta(hours=1))
    assert last_used() == moved
