"""Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

import anwang.schema  # noqa: F401
from anwang.core import audit, migrate
from anwang.core.db import Base, Database
from tests.conftest import PG_ADMIN_URL, need_service


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (no tables at all)."""
    name = f"anwang_mig_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        need_service("PostgreSQL", str(exc))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("empty_pg_url"))


def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_matches_the_models(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == migrate.head_revision()
    assert _diff(empty_url) == []


def test_downgrade_and_upgrade_again(empty_url: str) -> None:
    from alembic import command

    migrate.upgrade(empty_url)
    command.downgrade(migrate.alembic_config(empty_url), "base")
    assert migrate.current(empty_url) is None
    migrate.upgrade(empty_url)
    assert _diff(empty_url) == []


def test_audit_log_is_append_only_on_postgresql(empty_pg_url: str) -> None:
    migrate.upgrade(empty_pg_url)
    db = Database(empty_pg_url)
    try:
        with db.unit_of_work() as s:
            audit.record(s, "anwang.test.item.written", actor="a")
        for stmt in ("UPDATE audit_log SET actor = 'b'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as c:
                c.execute(text(stmt))
        with db.unit_of_work(readonly=True) as s:
            assert audit.verify(s).ok
    finally:
        db.dispose()
