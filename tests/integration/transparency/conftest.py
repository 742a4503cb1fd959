"""Fixtures of the transparency tests: a seeded database, the city of
:mod:`tests.integration.transparency.kit`, an app and clients."""

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
from tests.integration.transparency.kit import City, build_city
from tests.integration.watchlist.kit import Kit


@pytest.fixture(autouse=True)
def _cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its minimum cost: these tests are about the report, not passwords."""
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
def city(kit: Kit, settings: Settings) -> City:
    return build_city(kit, settings)


@pytest.fixture
def app(settings: Settings, city: City) -> FastAPI:
    return create_app(settings, db=city.db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def bare_client(settings: Settings, kit: Kit) -> Iterator[TestClient]:
    """A client of an installation with people and jurisdictions only."""
    with TestClient(create_app(settings, db=kit.db)) as c:
        yield c
