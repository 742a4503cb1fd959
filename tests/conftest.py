"""Shared fixtures.

``db`` runs a test on the embedded SQLite file and on the machine's PostgreSQL. Tests
that need a server (PostgreSQL, NATS, MQTT) skip with a clear message when it cannot be
reached — unless ``ANWANG_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which turns every
such skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from anwang.core.db import Base, Database
from anwang.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "ANWANG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NATS_URL = os.environ.get("ANWANG_TEST_NATS_URL", "nats://127.0.0.1:4222")
MQTT_URL = os.environ.get("ANWANG_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


def services_required() -> bool:
    return os.environ.get("ANWANG_REQUIRE_SERVICES", "") not in ("", "0", "false")


def need_service(name: str, reason: str) -> None:
    """Skip (or, when services are required, fail) because ``name`` is unreachable."""
    msg = f"{name} is not reachable: {reason}"
    if services_required():
        pytest.fail(msg + " (ANWANG_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(msg + " — start it, or see docs/operations.md")


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture
def mqtt_url() -> str:
    """The machine's MQTT broker (``ANWANG_TEST_MQTT_URL``), or skip — fail when
    services are required."""
    parts = urlsplit(MQTT_URL)
    if not tcp_reachable(parts.hostname or "127.0.0.1", parts.port or 1883):
        need_service("MQTT (Mosquitto)", MQTT_URL)
    return MQTT_URL


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """Argon2 at its minimum cost for the whole run: hundreds of users are created and
    signed in, and at the production cost (about 0.1 s a hash) that alone takes minutes.
    ``tests/unit/auth/test_passwords.py`` checks the production parameters themselves;
    servers started as subprocesses keep them."""
    from argon2 import PasswordHasher

    from anwang.auth import service as auth_service

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(auth_service, "_hasher",
                   PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        yield


def _all_tables() -> None:
    import anwang.schema  # noqa: F401  (registers every table on Base.metadata)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test run."""
    _all_tables()
    name = f"anwang_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        need_service("PostgreSQL", f"{PG_ADMIN_URL}: {exc.__class__.__name__}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    eng = create_engine(url)
    Base.metadata.create_all(eng)
    eng.dispose()
    yield url
    with admin.connect() as c:
        c.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _empty_all(db: Database) -> None:
    """Empty every table and restart every sequence, as ``TRUNCATE … RESTART IDENTITY``
    of all tables would — but deleting the rows of only the tables that hold some (a
    test writes a few), children before parents: a TRUNCATE costs PostgreSQL new files
    for each table and index it names (60 ms for a test's handful of tables, where the
    DELETEs take 10), most of a short test's time."""
    tables = [t.name for t in Base.metadata.sorted_tables]
    probe = " UNION ALL ".join(
        f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables)
    with db.engine.begin() as c:
        used = {str(r[0]) for r in c.execute(text(probe))}
        for name in reversed(tables):  # sorted_tables puts parents first
            if name in used:
                c.execute(text(f'DELETE FROM "{name}"'))
        # Sequences of tables whose rows a test inserted and deleted again.
        for (seq,) in c.execute(text(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) "
                "FROM pg_sequences WHERE schemaname = current_schema() "
                "AND last_value IS NOT NULL")).all():
            c.execute(text("SELECT setval(CAST(:s AS regclass), 1, false)"), {"s": seq})


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database with every table, made once for the run: each test's
    database is a copy of the file (5 ms, where creating the tables takes 70)."""
    _all_tables()
    path = tmp_path_factory.mktemp("sqlite-template") / "empty.db"
    database = Database(f"sqlite:///{path}")
    Base.metadata.create_all(database.engine)
    database.dispose()  # the last connection closed: SQLite folds its WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path


def _fresh_sqlite(template: Path, tmp_path: Path) -> Database:
    target = tmp_path / "test.db"
    shutil.copyfile(template, target)
    return Database(f"sqlite:///{target}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty database with every table, on SQLite and on PostgreSQL."""
    _all_tables()
    if request.param == "sqlite":
        database = _fresh_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path)
        yield database
        database.dispose()
        return
    url = request.getfixturevalue("pg_url")
    database = Database(url)
    _empty_all(database)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(_sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """Only the embedded default (for tests about SQLite specifics or speed)."""
    database = _fresh_sqlite(_sqlite_template, tmp_path)
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", data_dir=tmp_path, secret_key="test-secret-key-0123456789")


@pytest.fixture
def nats_url() -> str:
    host, port = NATS_URL.removeprefix("nats://").split(":")
    if not tcp_reachable(host, int(port)):
        need_service("NATS", NATS_URL)
    return NATS_URL
