"""The HTTP edge: body limit (413), readiness (503), unexpected errors (500 without a
trace), unknown routes (404) — each as problem+json, with nothing half-written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anwang.app import create_app
from anwang.auth import service
from anwang.auth.models import User
from anwang.core.db import Database
from anwang.settings import Settings

PASSWORD = "correct horse battery"


@pytest.fixture
def small_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_body_bytes": 4096})


@pytest.fixture
def client(small_settings: Settings, db: Database) -> Iterator[TestClient]:
    with db.unit_of_work() as s:
        service.create_user(s, username="root", password=PASSWORD, role="admin")
    with TestClient(create_app(small_settings, db=db)) as c:
        yield c


def _admin(client: TestClient) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": "root", "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _users(db: Database) -> int:
    with db.unit_of_work(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(User)) or 0


def test_oversized_body_is_413_and_writes_nothing(client: TestClient, db: Database) -> None:
    headers = _admin(client)
    body = {"username": "big", "password": PASSWORD, "role": "officer",
            "display_name": "x" * 5000}
    r = client.post("/api/v1/users", json=body, headers=headers)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "anwang.payload_too_large"
    assert "4096" in r.json()["detail"]
    assert _users(db) == 1


def test_oversized_streamed_body_without_length_is_413(client: TestClient, db: Database) -> None:
    headers = {**_admin(client), "content-type": "application/json"}

    def chunks() -> Iterator[bytes]:
        yield b'{"username": "big", "password": "correct horse battery", "role": "officer",'
        for _ in range(10):
            yield b'"pad": "' + b"x" * 1000 + b'",'
        yield b'"x": 1}'

    r = client.post("/api/v1/users", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert r.json()["code"] == "anwang.payload_too_large"
    assert _users(db) == 1


def test_unknown_route_is_404_problem(client: TestClient) -> None:
    r = client.get("/api/v1/no-such-thing", headers=_admin(client))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "anwang.not_found"


def test_unexpected_error_is_a_bare_500(small_settings: Settings, db: Database) -> None:
    app = create_app(small_settings, db=db)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in r.text and "Traceback" not in r.text
    assert r.json()["code"] == "anwang.internal_error"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "bus": "ok"}


def test_readiness_is_503_when_the_database_is_gone(settings: Settings) -> None:
    # A PostgreSQL URL on a port where nothing listens.
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    with TestClient(create_app(settings, db=db)) as c:
        r = c.get("/readyz")
    db.dispose()
    assert r.status_code == 503
    assert r.json()["checks"]["database"].startswith("unavailable")
    assert r.json()["checks"]["bus"] == "ok"


def test_a_browser_gets_pages_for_404_and_the_api_gets_problems(client: TestClient) -> None:
    page = client.get("/no-such-page", headers={"accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text
    api = client.get("/api/v1/no-such-thing", headers={"accept": "text/html"})
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"
