"""Storing reads across days (day partitions on PostgreSQL) and the retention purge: reads
that matched nothing leave after the read window, reads with hits stay while their alerts
are open and for the alert retention after they were closed; on PostgreSQL expired days
are dropped whole, or rebuilt with just their kept reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from anwang.alerts import service as alerts
from anwang.alerts.models import Alert
from anwang.checkpoints import handlers, reads, service, storage
from anwang.checkpoints.cli import purge
from anwang.checkpoints.models import PlateRead
from anwang.checkpoints.schemas import CheckpointCreate
from anwang.core.audit import AuditEntry
from anwang.core.db import Database
from anwang.core.scope import Scope
from anwang.settings import Settings
from anwang.watchlist import service as wl
from tests.conftest import _empty_all
from tests.integration.watchlist.kit import Kit

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CITY = {"scope": Scope(None)}
#: Checkpoint CP-W1 of the watch-list kit's city: lat, lon, jurisdiction.
WEST_CP = (31.75, 119.85, "32010101")
_serial = iter(range(1, 1_000_000))


def at(day: int, hour: int = 10) -> datetime:
    """``hour`` o'clock (UTC) on 2026-11-``day``."""
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def batch(*reads_: tuple[str, datetime]) -> reads.ReadBatch:
    """A batch as ingestion would publish it, from (plate, captured_at) pairs."""
    info = reads.CheckpointInfo("西门卡口", "police_checkpoint", *WEST_CP)
    return reads.ReadBatch(
        received_at=NOW, source="test", checkpoints={"CP-W1": info},
        reads=[
            reads.ValidRead(
                id=f"read-{next(_serial):06d}", checkpoint="CP-W1", captured_at=t, plate=p,
                plate_kind="ordinary", plate_color="blue", confidence=0.9, lane=1,
                direction="in", vehicle=None, image_ref=None,
            )
            for p, t in reads_
        ],
    )


def store(db: Database, b: reads.ReadBatch) -> reads.StoreReport:
    with db.unit_of_work(info=CITY) as s:
        return reads.store_reads(s, batch=b, now=NOW)


def plates(db: Database) -> list[str]:
    with db.unit_of_work(readonly=True) as s:
        return sorted(s.scalars(select(PlateRead.plate)))


def partitions(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return sorted(storage.list_partitions(conn).values())


def purge_at(db: Database, now: datetime, *, alert_days: int = 3) -> service.PurgeReport:
    with db.unit_of_work(info=CITY) as s:
        return service.purge_reads(s, retention_hours=48, alert_retention_days=alert_days,
                                   now=now)


def _city(db: Database) -> Iterator[Kit]:
    if db.engine.dialect.name == "postgresql":
        # The PostgreSQL database is shared by the run: start without other tests' days.
        with db.engine.begin() as conn:
            for name in storage.list_partitions(conn).values():
                conn.execute(text(f'DROP TABLE "{name}"'))
            storage.forget(conn)
    wl.reset_index_cache()
    kit = Kit(db)
    kit.seed()
    with db.unit_of_work(info=CITY) as s:
        service.create_checkpoint(s, data=CheckpointCreate(
            code="CP-W1", name="西门卡口", kind="police_checkpoint", lat=WEST_CP[0],
            lon=WEST_CP[1]), actor="test")
    yield kit
    wl.reset_index_cache()


@pytest.fixture
def city(db: Database) -> Iterator[Kit]:
    """The watch-list kit's city with its checkpoint CP-W1 registered."""
    yield from _city(db)


@pytest.fixture
def pg_city(request: pytest.FixtureRequest) -> Iterator[Kit]:
    """The same city, on PostgreSQL only (partitions)."""
    database = Database(request.getfixturevalue("pg_url"))
    _empty_all(database)
    yield from _city(database)
    database.dispose()


def close(kit: Kit, plate: str, when: datetime) -> None:
    with kit.db.unit_of_work(info=CITY) as s:
        alert = s.scalars(select(Alert).where(Alert.plate == plate)).one()
        alerts.acknowledge_alert(s, alert_id=alert.id, actor="cmd", now=when)
        alerts.close_alert(s, alert_id=alert.id, actor="cmd", outcome="misread", now=when)


# --- storing across days --------------------------------------------------------------------


def test_a_batch_over_several_days_is_stored_once(city: Kit) -> None:
    db = city.db
    b = batch(("苏A00001", at(25, 23)), ("苏A00002", at(26, 0)), ("苏A00003", at(27, 12)))
    assert store(db, b).inserted == 3
    assert store(db, b).inserted == 0  # a redelivered batch
    for part in b.split(1):  # the same reads again, one by one
        assert store(db, part).inserted == 0
    assert plates(db) == ["苏A00001", "苏A00002", "苏A00003"]
    if db.engine.dialect.name == "postgresql":
        assert {"plate_reads_p20261125", "plate_reads_p20261126",
                "plate_reads_p20261127"} <= set(partitions(db))
        with db.engine.connect() as conn:  # each read went to its own day
            where: dict[str, str] = dict(conn.execute(text(
                "SELECT plate, tableoid::regclass::text FROM plate_reads")).all())
        assert where == {"苏A00001": "plate_reads_p20261125",
                         "苏A00002": "plate_reads_p20261126",
                         "苏A00003": "plate_reads_p20261127"}


def test_a_day_dropped_by_another_process_is_created_again(pg_city: Kit) -> None:
    db = pg_city.db
    store(db, batch(("苏A00001", at(20))))
    with db.engine.begin() as conn:  # what another process's purge would do
        conn.execute(text('DROP TABLE "plate_reads_p20261120"'))
    # This process still remembers the partition; the insert finds it gone and retries.
    assert store(db, batch(("苏A00002", at(20, 11)))).inserted == 1
    assert plates(db) == ["苏A00002"]


def test_housekeeping_creates_the_coming_days_ahead(pg_city: Kit, settings: Settings) -> None:
    db = pg_city.db
    done = handlers.housekeeping_once(db, settings, now=NOW)
    names = {"plate_reads_p20261128", "plate_reads_p20261129", "plate_reads_p20261130"}
    assert names <= set(partitions(db))
    assert set(done.partitions_created) <= names
    assert handlers.housekeeping_once(db, settings, now=NOW).partitions_created == []


# --- the purge ------------------------------------------------------------------------------


def stock(kit: Kit) -> None:
    """Reads over ten days (NOW is the 28th at noon; the 48-hour window starts on the
    26th at noon), some with alerts in each state."""
    for plate in ("苏D12345", "苏D22222", "苏D33333"):
        kit.entry(plate, now=at(19))
    db = kit.db
    store(db, batch(("苏A00001", at(20))))                      # nothing else that day
    store(db, batch(("苏D12345", at(21)), ("苏A00002", at(21))))  # alert stays open
    store(db, batch(("苏D22222", at(22)), ("苏A00003", at(22))))  # closed on the 23rd
    store(db, batch(("苏D33333", at(23))))                      # closed on the 27th
    store(db, batch(("苏D44444", at(24))))                      # a hit without an alert
    store(db, batch(("苏A00005", at(26, 8)), ("苏A00006", at(26, 14)), ("苏A00007", at(28))))
    with db.unit_of_work() as s:
        s.execute(update(PlateRead).where(PlateRead.plate == "苏D44444").values(hit=True))
    close(kit, "苏D22222", at(23))
    close(kit, "苏D33333", at(27))


def test_the_purge_keeps_reads_of_open_and_recently_closed_alerts(city: Kit) -> None:
    db = city.db
    stock(city)
    report = purge_at(db, NOW)  # alert retention: 3 days, i.e. closed since the 25th noon
    assert plates(db) == ["苏A00006", "苏A00007", "苏D12345", "苏D33333"]
    assert (report.deleted, report.unmatched, report.released) == (6, 4, 2)
    assert report.cutoff == NOW - timedelta(hours=48)
    assert report.alert_cutoff == NOW - timedelta(days=3)
    if db.engine.dialect.name == "postgresql":
        assert report.partitions_dropped == (
            "plate_reads_p20261120", "plate_reads_p20261122", "plate_reads_p20261124")
        # The 23rd holds only a kept read: left as it is.
        assert report.partitions_rebuilt == ("plate_reads_p20261121",)
        assert partitions(db) == [
            "plate_reads_p20261121", "plate_reads_p20261123", "plate_reads_p20261126",
            "plate_reads_p20261128"]
        with db.engine.connect() as conn:
            kept = conn.execute(text('SELECT plate FROM "plate_reads_p20261121"')).scalars()
            assert list(kept) == ["苏D12345"]
            assert conn.execute(text(  # nothing left over from the rebuild
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'plate_reads_p%_old'"
            )).scalar() == 0
    else:
        assert report.partitions_dropped == report.partitions_rebuilt == ()
    with db.unit_of_work(readonly=True) as s:
        [entry] = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "anwang.checkpoints.reads.purged")).all()
    assert entry.result_count == 6
    assert entry.data is not None
    assert (entry.data["unmatched"], entry.data["released"]) == (4, 2)
    assert entry.data["alert_retention_days"] == 3
    assert entry.data["partitions_dropped"] == list(report.partitions_dropped)

    # Nothing more is due: the rebuilt days are not copied again.
    again = purge_at(db, NOW + timedelta(minutes=1))
    assert (again.deleted, again.partitions_dropped, again.partitions_rebuilt) == (0, (), ())


def test_reads_of_alerts_closed_longer_than_the_retention_go(city: Kit) -> None:
    db = city.db
    stock(city)
    purge_at(db, NOW)
    close(city, "苏D12345", NOW)
    # With a 3-day alert retention: the alert closed on the 27th is past it on the 30th
    # (and the reads of the 26th and 28th left the read window); the one closed at NOW
    # is not yet.
    report = purge_at(db, NOW + timedelta(days=2, hours=12))
    assert plates(db) == ["苏D12345"]
    assert (report.unmatched, report.released) == (2, 1)
    report = purge_at(db, NOW + timedelta(days=3))  # closed exactly 3 days ago: kept
    assert report.deleted == 0 and plates(db) == ["苏D12345"]
    report = purge_at(db, NOW + timedelta(days=3, seconds=1))
    assert plates(db) == [] and report.released == 1
    if db.engine.dialect.name == "postgresql":
        assert report.partitions_dropped == ("plate_reads_p20261121",)
        assert partitions(db) == []


def test_a_hit_that_raised_no_alert_is_kept_for_the_alert_retention(city: Kit) -> None:
    db = city.db
    store(db, batch(("苏D44444", at(24))))
    with db.unit_of_work() as s:
        s.execute(update(PlateRead).values(hit=True))
    assert purge_at(db, NOW, alert_days=365).deleted == 0
    assert purge_at(db, NOW, alert_days=5).deleted == 0  # captured after the 23rd noon
    assert purge_at(db, NOW, alert_days=4).released == 1
    assert plates(db) == []


def test_a_busy_partition_is_left_to_the_next_round(
    pg_city: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = pg_city.db
    store(db, batch(("苏A00001", at(20))))
    store(db, batch(("苏A00002", at(21))))
    monkeypatch.setattr(service, "PURGE_LOCK_TIMEOUT_S", 0.2)
    with db.engine.connect() as other:
        other.execute(text('LOCK TABLE "plate_reads_p20261120" IN ROW EXCLUSIVE MODE'))
        report = purge_at(db, NOW)
        other.rollback()
    assert report.partitions_deferred == ("plate_reads_p20261120",)
    assert report.partitions_dropped == ("plate_reads_p20261121",)
    assert report.deleted == 1
    assert purge_at(db, NOW).partitions_dropped == ("plate_reads_p20261120",)
    assert plates(db) == []


def test_only_one_process_purges_at_a_time(pg_city: Kit) -> None:
    db = pg_city.db
    store(db, batch(("苏A00001", at(20))))
    with db.engine.connect() as other:
        other.execute(text("SELECT pg_advisory_lock(hashtext('anwang.checkpoints.purge'))"))
        report = purge_at(db, NOW)
        other.execute(text("SELECT pg_advisory_unlock(hashtext('anwang.checkpoints.purge'))"))
        other.commit()
    assert report.skipped and report.deleted == 0
    assert plates(db) == ["苏A00001"]
    assert purge_at(db, NOW).deleted == 1


def test_the_purge_command_says_what_went(city: Kit, tmp_path: Path) -> None:
    import typer

    db = city.db
    old = datetime.now(UTC) - timedelta(days=5)
    store(db, batch(("苏A00001", old)))
    app = typer.Typer()
    app.command()(purge)
    runner = CliRunner(env={"ANWANG_DATABASE_URL": db.url, "ANWANG_DATA_DIR": str(tmp_path),
                            "ANWANG_ALERT_RETENTION_DAYS": "30"})
    r = runner.invoke(app, [])
    assert r.exit_code == 0, r.output
    assert "purged 1 plate read(s)" in r.output
    assert "1 matched nothing; 0 had watch-list hits whose alerts were closed more than " \
           "30 day(s) ago" in r.output
    if db.engine.dialect.name == "postgresql":
        assert "partitions dropped:" in r.output
        assert storage.partition_name(old.date()) in r.output
