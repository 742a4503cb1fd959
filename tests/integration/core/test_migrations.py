"""Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
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
            # Day partitions and FTS5 shadow tables live beside the models.
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": migrate.include_name})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def _collation_diff(url: str) -> list[tuple[str, str, str | None, str | None]]:
    """(table, column, the models' collation, the database's) where they differ — which
    the comparison above leaves out."""
    engine = create_engine(url)
    try:
        inspector = sa.inspect(engine)
        out = []
        for table in Base.metadata.sorted_tables:
            reflected = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                want = getattr(column.type.dialect_impl(engine.dialect), "collation", None)
                have = getattr(reflected[column.name], "collation", None)
                if want != have:
                    out.append((table.name, column.name, want, have))
        return out
    finally:
        engine.dispose()


def test_upgrade_matches_the_models(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == migrate.head_revision()
    assert _diff(empty_url) == []
    assert _collation_diff(empty_url) == []


def test_downgrade_and_upgrade_again(empty_url: str) -> None:
    from alembic import command

    migrate.upgrade(empty_url)
    command.downgrade(migrate.alembic_config(empty_url), "base")
    assert migrate.current(empty_url) is None
    migrate.upgrade(empty_url)
    assert _diff(empty_url) == []
    assert _collation_diff(empty_url) == []


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


# --- 0006: plate reads keyed by (id, captured_at), partitioned by day on PostgreSQL --------

BEFORE_READ_PARTITIONS = "0005"
READ_PARTITIONS = "0006"


def _reads_table() -> Any:
    from anwang.core.db import UTCDateTime

    return sa.table(
        "plate_reads", sa.column("id"), sa.column("checkpoint_code"),
        sa.column("captured_at", UTCDateTime()), sa.column("received_at", UTCDateTime()),
        sa.column("plate"), sa.column("direction"), sa.column("lat"), sa.column("lon"),
        sa.column("hit", sa.Boolean()),
    )


def _read(read_id: str, plate: str, at: datetime) -> dict[str, Any]:
    return {"id": read_id, "checkpoint_code": "C1", "captured_at": at, "received_at": at,
            "plate": plate, "direction": "in", "lat": 0.0, "lon": 0.0, "hit": False}


def _add_checkpoint(c: sa.Connection, at: datetime) -> None:
    """Checkpoint ``C1``, written as raw SQL: the models may be ahead of the schema."""
    c.execute(text(
        "INSERT INTO checkpoints (code, name, kind, lat, lon, directions, lanes, "
        "active, silence_threshold_s, created_at, updated_at) VALUES ('C1', 'c', "
        "'police_checkpoint', 0, 0, '[]', 1, true, 600, :t, :t)"), {"t": at})


def _stored(engine: sa.Engine) -> list[tuple[str, str, datetime]]:
    t = _reads_table()
    with engine.connect() as c:
        return sorted((i, p, at) for i, p, at in c.execute(
            sa.select(t.c.id, t.c.plate, t.c.captured_at)))


def test_read_partitions_upgrade_and_downgrade_keep_the_reads(empty_url: str) -> None:
    from alembic import command

    t0 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    migrate.upgrade(empty_url, BEFORE_READ_PARTITIONS)
    engine = create_engine(empty_url)
    try:
        with engine.begin() as c:
            _add_checkpoint(c, t0)
            c.execute(sa.insert(_reads_table()), [
                _read("a", "苏D12345", t0), _read("b", "苏D12399", t0 + timedelta(hours=1)),
                _read("c", "京A00001", t0 + timedelta(days=2)),
            ])
        before = _stored(engine)
        migrate.upgrade(empty_url, READ_PARTITIONS)
        assert _stored(engine) == before
        pk = sa.inspect(engine).get_pk_constraint("plate_reads")
        assert pk["constrained_columns"] == ["id", "captured_at"]
        with engine.begin() as c:
            # The same id at another capture time is another read now.
            c.execute(sa.insert(_reads_table()), [_read("a", "苏D12345", t0 + timedelta(days=1))])
            if engine.dialect.name == "postgresql":
                where = dict(c.execute(text(
                    "SELECT id || '@' || to_char(captured_at AT TIME ZONE 'UTC', 'DD'), "
                    "tableoid::regclass::text FROM plate_reads")).all())
                assert where == {"a@20": "plate_reads_p20261120", "a@21": "plate_reads_p20261121",
                                 "b@21": "plate_reads_p20261121", "c@22": "plate_reads_p20261122"}
            else:
                # The trigram index was filled from the existing reads and follows new ones.
                hits = c.execute(text(
                    "SELECT count(*) FROM plate_reads_fts WHERE plate_reads_fts MATCH '\"D123\"'"
                )).scalar()
                assert hits == 3

        command.downgrade(migrate.alembic_config(empty_url), BEFORE_READ_PARTITIONS)
        assert _stored(engine) == before  # the later capture of "a" is dropped
        assert sa.inspect(engine).get_pk_constraint("plate_reads")["constrained_columns"] == ["id"]
        with engine.connect() as c:
            if engine.dialect.name == "postgresql":
                assert c.execute(text(
                    "SELECT relkind FROM pg_class WHERE relname = 'plate_reads'")).scalar() == "r"
                assert c.execute(text(
                    "SELECT count(*) FROM pg_class WHERE relname LIKE 'plate_reads_p%'"
                )).scalar() == 0
            else:
                assert c.execute(text(
                    "SELECT count(*) FROM sqlite_master WHERE name LIKE 'plate_reads_fts%'"
                )).scalar() == 0
        migrate.upgrade(empty_url)
        assert _stored(engine) == before
    finally:
        engine.dispose()
    assert _diff(empty_url) == []


# --- 0009: plates compared byte-wise on PostgreSQL (the "C" collation) ---------------------

BEFORE_PLATE_COLLATION = "0008"
PLATE_COLLATION = "0009"
#: Lowercase, digits, capitals and province characters: a linguistic collation
#: interleaves them, a byte-wise comparison does not.
COLLATED_PLATES = ["苏DA23", "苏Da23", "苏D023", "苏DA24", "苏DB1", "京A00001", "苏d023"]


def _plate_collations(engine: sa.Engine) -> dict[str, str | None]:
    """The collation of ``plate`` in ``plate_reads`` and in each of its day partitions."""
    with engine.connect() as c:
        return dict(c.execute(text(
            "SELECT table_name, collation_name FROM information_schema.columns "
            "WHERE column_name = 'plate' AND table_name LIKE 'plate_reads%' "
            "AND table_name NOT LIKE 'plate_reads_fts%'")).all())


def _plate_indexes(engine: sa.Engine) -> dict[str, tuple[str, str | None]]:
    """Each day partition's index on the plate -> (the partitioned index it belongs to,
    its collation)."""
    with engine.connect() as c:
        return {name: (parent, coll) for name, parent, coll in c.execute(text(
            "SELECT i.relname, p.relname, co.collname FROM pg_inherits h "
            "JOIN pg_class i ON i.oid = h.inhrelid JOIN pg_class p ON p.oid = h.inhparent "
            "JOIN pg_index x ON x.indexrelid = i.oid "
            "LEFT JOIN pg_collation co ON co.oid = x.indcollation[0] "
            "WHERE p.relname IN ('ix_plate_reads_plate_captured_at', 'ix_plate_reads_plate_trgm')"
        ))}


def test_plate_collation_upgrade_and_downgrade_keep_the_reads(empty_url: str) -> None:
    from alembic import command

    from anwang.checkpoints import storage

    t0 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    migrate.upgrade(empty_url, BEFORE_PLATE_COLLATION)
    engine = create_engine(empty_url)
    pg = engine.dialect.name == "postgresql"
    try:
        with engine.begin() as c:
            _add_checkpoint(c, t0)
            if pg:
                for day in (t0.date(), (t0 + timedelta(hours=1)).date()):
                    c.execute(text(storage.partition_ddl(day)))
            c.execute(sa.insert(_reads_table()), [
                _read(f"r{i}", plate, t0 + timedelta(hours=i % 2))
                for i, plate in enumerate(COLLATED_PLATES)
            ])
        before = _stored(engine)
        if pg:
            assert set(_plate_collations(engine).values()) == {None}
            with engine.connect() as c:
                # Too few rows for autovacuum to have analysed them.
                assert c.execute(text(
                    "SELECT count(*) FROM pg_stats WHERE attname = 'plate' "
                    "AND tablename LIKE 'plate_reads%'")).scalar() == 0

        migrate.upgrade(empty_url, PLATE_COLLATION)
        assert _stored(engine) == before
        with engine.connect() as c:
            ordered = list(
                c.execute(text("SELECT plate FROM plate_reads ORDER BY plate")).scalars())
            in_range = set(c.execute(text(
                "SELECT plate FROM plate_reads WHERE plate >= '苏DA2' AND plate < '苏DA3'"
            )).scalars())
        assert ordered == sorted(COLLATED_PLATES)  # code points: UTF-8 bytes
        assert in_range == {"苏DA23", "苏DA24"}
        if pg:
            collations = _plate_collations(engine)
            # The table, the reads' two days and the day the table was partitioned.
            assert {"plate_reads", "plate_reads_p20261120", "plate_reads_p20261121"} \
                <= set(collations)
            assert set(collations.values()) == {"C"}
            # Both plate indexes of each partition built again, under their partitioned
            # index, with the column's collation.
            partitions = len(collations) - 1
            indexes = _plate_indexes(engine)
            assert sorted(indexes.values()) == [
                ("ix_plate_reads_plate_captured_at", "C")] * partitions + [
                ("ix_plate_reads_plate_trgm", "C")] * partitions
            with engine.connect() as c:
                # The statistics PostgreSQL drops with the change are gathered again.
                assert c.execute(text(
                    "SELECT count(*) FROM pg_stats WHERE attname = 'plate' "
                    "AND tablename LIKE 'plate_reads%'")).scalar() >= 3

        command.downgrade(migrate.alembic_config(empty_url), BEFORE_PLATE_COLLATION)
        assert _stored(engine) == before
        if pg:
            assert _plate_collations(engine) == dict.fromkeys(collations)
            assert sorted(indexes) == sorted(_plate_indexes(engine))
            assert {coll for _, coll in _plate_indexes(engine).values()} == {"default"}
        migrate.upgrade(empty_url)
        assert _stored(engine) == before
        if pg:
            assert set(_plate_collations(engine).values()) == {"C"}
    finally:
        engine.dispose()
    assert _diff(empty_url) == []
    assert _collation_diff(empty_url) == []


def test_device_status_rewritten_in_place_up_and_down(empty_url: str) -> None:
    """0010 drops the index on the offline deadline and, on PostgreSQL, leaves half of
    each status page free; downgrading restores both."""
    from alembic import command

    def state() -> tuple[bool, list[str] | None]:
        engine = create_engine(empty_url)
        try:
            names = {ix["name"] for ix in sa.inspect(engine).get_indexes("device_status")}
            options = None
            if engine.dialect.name == "postgresql":
                with engine.connect() as c:
                    options = c.execute(text(
                        "SELECT reloptions FROM pg_class WHERE relname = 'device_status'"
                    )).scalar()
            return "ix_device_status_online_offline_after" in names, options
        finally:
            engine.dispose()

    pg = empty_url.startswith("postgresql")
    migrate.upgrade(empty_url)
    assert state() == (False, ["fillfactor=50"] if pg else None)
    command.downgrade(migrate.alembic_config(empty_url), "0009")
    assert state() == (True, None)
    migrate.upgrade(empty_url)
    assert state() == (False, ["fillfactor=50"] if pg else None)
    assert _diff(empty_url) == []


def test_device_alarms_lose_the_foreign_key_and_three_indexes_up_and_down(
        empty_url: str) -> None:
    """0011 drops the foreign key of ``device_alarms.device_id`` and the indexes on
    ``kind``, ``severity`` and ``outcome``, keeping the alarms; downgrading restores them."""
    from alembic import command

    def state() -> tuple[set[str], list[str]]:
        engine = create_engine(empty_url)
        try:
            insp = sa.inspect(engine)
            names = {str(ix["name"]) for ix in insp.get_indexes("device_alarms")}
            fks = sorted(str(fk["referred_table"]) for fk in insp.get_foreign_keys("device_alarms"))
            return {n for n in names if n.removeprefix("ix_device_alarms_") in
                    ("kind", "severity", "outcome", "raised_at")}, fks
        finally:
            engine.dispose()

    def alarms() -> list[tuple[str, str, str]]:
        engine = create_engine(empty_url)
        try:
            with engine.connect() as c:
                return [tuple(r) for r in c.execute(text(
                    "SELECT id, device_id, severity FROM device_alarms ORDER BY id"))]
        finally:
            engine.dispose()

    migrate.upgrade(empty_url, "0010")
    assert state() == ({"ix_device_alarms_kind", "ix_device_alarms_severity",
                        "ix_device_alarms_outcome", "ix_device_alarms_raised_at"}, ["devices"])
    engine = create_engine(empty_url)
    t0 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    try:
        with engine.begin() as c:
            c.execute(text(
                "INSERT INTO communities (code, name, polygon, center_lat, center_lon, "
                "contacts, active, created_at, updated_at) "
                "VALUES ('W1', 'w', '{}', 0, 0, '[]', true, :t, :t)"), {"t": t0})
            c.execute(text(
                "INSERT INTO devices (id, kind, adapter, community_code, lat, lon, heartbeat_s, "
                "credential_hash, credential_issued_at, active, created_at, updated_at) "
                "VALUES ('d1', 'smoke_alarm', 'native', 'W1', 0, 0, 60, 'h', :t, true, :t, :t)"),
                {"t": t0})
            c.execute(text(
                "INSERT INTO device_alarms (id, device_id, community_code, device_kind, "
                "rule_id, kind, severity, route, status, level, count, first_seen_at, "
                "last_seen_at, raised_at, lat, lon) VALUES ('a1', 'd1', 'W1', 'smoke_alarm', "
                "'smoke', 'fire', 'critical', 'fire', 'active', 0, 1, :t, :t, :t, 0, 0)"),
                {"t": t0})
    finally:
        engine.dispose()
    before = alarms()
    assert before == [("a1", "d1", "critical")]
    migrate.upgrade(empty_url, "0011")
    assert state() == ({"ix_device_alarms_raised_at"}, [])
    assert alarms() == before
    command.downgrade(migrate.alembic_config(empty_url), "0010")
    assert state() == ({"ix_device_alarms_kind", "ix_device_alarms_severity",
                        "ix_device_alarms_outcome", "ix_device_alarms_raised_at"}, ["devices"])
    assert alarms() == before
    migrate.upgrade(empty_url)
    assert _diff(empty_url) == []


def test_device_samples_time_index_is_brin_on_postgresql_up_and_down(empty_url: str) -> None:
    """0012 makes the time index of ``device_samples`` a BRIN index on PostgreSQL (SQLite
    keeps its B-tree); downgrading makes it a B-tree again."""
    from alembic import command

    def method() -> str | None:
        engine = create_engine(empty_url)
        try:
            names = {ix["name"] for ix in sa.inspect(engine).get_indexes("device_samples")}
            assert "ix_device_samples_ts" in names
            if engine.dialect.name != "postgresql":
                return None
            with engine.connect() as c:
                return str(c.execute(text(
                    "SELECT am.amname FROM pg_class i JOIN pg_am am ON am.oid = i.relam "
                    "WHERE i.relname = 'ix_device_samples_ts'")).scalar())
        finally:
            engine.dispose()

    pg = empty_url.startswith("postgresql")
    migrate.upgrade(empty_url)
    assert method() == ("brin" if pg else None)
    command.downgrade(migrate.alembic_config(empty_url), "0011")
    assert method() == ("btree" if pg else None)
    migrate.upgrade(empty_url)
    assert method() == ("brin" if pg else None)
    assert _diff(empty_url) == []
