"""Fixtures of the alert tests: a seeded database, an app and a client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.core.db import Database
from anwang.settings import Settings
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import Kit


@pytest.fixture(autouse=True)
def _cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its minimum cost: these tests are about watch lists, not passwords."""
    monkeypatch.setattr(auth_service, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def kit(db: Database) -> Iterator[Kit]:
    wl.reset_index_cache()
    k = Kit(db)
    k.seed()
    yield k
    wl.reset_index_cache()


@pytest.fixture
def app(settings: Settings, kit: Kit) -> FastAPI:
    return create_app(settings, db=kit.db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
