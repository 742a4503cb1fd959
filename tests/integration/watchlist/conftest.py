"""Fixtures of the watch-list tests: a seeded database, an app and a client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from anwang.app import create_app
from anwang.core.db import Database
from anwang.settings import Settings
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import Kit


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
