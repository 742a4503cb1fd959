"""Storing reads on SQLite through the driver (``reads._sqlite_insert``): the rows are
the ones SQLAlchemy's own bulk insert writes, a batch split over several statements
stores each new read once and says which were new, and the stored-id look-up answers as
SQLAlchemy's does."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

import anwang.schema  # noqa: F401  (every table)
from anwang.checkpoints import reads, service
from anwang.checkpoints.schemas import CheckpointCreate, utc_instant
from anwang.core.db import Base, Database
from anwang.core.scope import Scope
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import Kit

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CITY = {"scope": Scope(None)}
WEST = reads.CheckpointInfo("西门卡口", "police_checkpoint", 31.75, 119.85, "32010101")
EAST = reads.CheckpointInfo("东门", "road", 31.74, 120.05, None)


def database(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    Base.metadata.create_all(db.engine)
    Kit(db).seed()
    with db.unit_of_work(info=CITY) as s:
        for code, lat, lon in (("CP-W1", 31.75, 119.85), ("CP-E1", 31.74, 120.05)):
            service.create_checkpoint(s, data=CheckpointCreate(
                code=code, name=code, kind="police_checkpoint", lat=lat, lon=lon),
                actor="test")
    return db


@pytest.fixture
def dbs(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    wl.reset_index_cache()
    fast, generic = database(tmp_path / "fast.db"), database(tmp_path / "generic.db")
    yield fast, generic
    fast.dispose()
    generic.dispose()
    wl.reset_index_cache()


def varied(n: int, start: int = 0) -> list[reads.ValidRead]:
    """Reads with every optional value present and absent, recurring vehicle
    descriptions (the same object and equal ones), times with and without fractions,
    and with and without the text validation writes for them (``instant``)."""
    shared = {"type": "car", "colour": "白", "make": "丰田"}
    vehicles: list[dict[str, str] | None] = [
        None, shared, {"type": "car", "colour": "白", "make": "丰田"}, {"type": "van"},
        {"make": "Škoda \"X\""},
    ]
    out = []
    for i in range(start, start + n):
        micro = 0 if i % 3 == 0 else (i * 7919) % 1_000_000
        captured = NOW - timedelta(minutes=i, microseconds=micro)
        out.append(reads.ValidRead(
            id=f"read-{(i * 2654435761) % 10**9:09d}-{i}",
            checkpoint="CP-W1" if i % 2 else "CP-E1",
            captured_at=captured,
            plate=f"苏D{10000 + i}", plate_kind="ordinary",
            plate_color=[None, "blue", "yellow"][i % 3],
            confidence=[None, 0.0, 1.0, 0.25, 1][i % 5], lane=[None, 0, 99, 7][i % 4],
            direction="in" if i % 2 else "out", vehicle=vehicles[i % len(vehicles)],
            image_ref=None if i % 4 else f"s3://bucket/{i}.jpg",
            instant=None if i % 5 == 1 else utc_instant(captured),
        ))
    return out


def batch(items: list[reads.ValidRead]) -> reads.ReadBatch:
    return reads.ReadBatch(received_at=NOW, source="test",
                           checkpoints={"CP-W1": WEST, "CP-E1": EAST}, reads=items)


def store(db: Database, b: reads.ReadBatch) -> reads.StoreReport:
    with db.unit_of_work(info=CITY) as s:
        return reads.store_reads(s, batch=b, now=NOW)


def raw_rows(db: Database) -> list[tuple[Any, ...]]:
    """Every stored row as SQLite holds it: each value and its storage class."""
    path = db.url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(plate_reads)")]
        sql = ", ".join([*cols, *(f"typeof({c})" for c in cols)])
        rows = conn.execute(f"SELECT {sql} FROM plate_reads ORDER BY id").fetchall()
        fts = conn.execute("SELECT count(*) FROM plate_reads_fts "
                           "WHERE plate_reads_fts MATCH '\"D10\"'").fetchone()
    return [*rows, fts]


def test_the_driver_writes_the_rows_sqlalchemy_writes(
    dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, generic = dbs
    items = varied(40)
    assert store(fast, batch(items)).inserted == 40
    with monkeypatch.context() as mp:  # SQLAlchemy's insert, as on other databases
        mp.setattr(reads, "_is_sqlite", lambda session: False)
        assert store(generic, batch(items)).inserted == 40
    got, want = raw_rows(fast), raw_rows(generic)
    assert len(got) == 41
    assert got == want


def test_a_batch_over_several_statements_stores_only_its_new_reads(
    dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, _ = dbs
    monkeypatch.setattr(reads, "SQLITE_INSERT_ROWS", 7)
    first = varied(20)
    assert store(fast, batch(first)).inserted == 20
    later = varied(30)  # the first 20 again, among 10 new ones
    report = store(fast, batch(later[::-1]))
    assert report.inserted == 10
    assert store(fast, batch(later)).inserted == 0
    with fast.unit_of_work(readonly=True) as s:
        stored = reads.existing_read_ids(s, ids=[r.id for r in later])
    assert stored == {r.id for r in later}


def test_the_stored_id_look_up_answers_as_sqlalchemys(
    dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, _ = dbs
    items = varied(30)
    store(fast, batch(items[:20]))
    ids = [r.id for r in items] + ["no-such-read"]
    # A window that holds some of the stored reads' capture times but not all.
    window = (items[15].captured_at, items[5].captured_at)
    answers = []
    for sqlite_path in (True, False):
        with monkeypatch.context() as mp:
            mp.setattr(reads, "_is_sqlite", lambda session, on=sqlite_path: on)
            with fast.unit_of_work(readonly=True) as s:
                answers.append((reads.existing_read_ids(s, ids=ids),
                                reads.existing_read_ids(s, ids=ids, captured=window)))
    assert answers[0] == answers[1]
    assert answers[0][0] == {r.id for r in items[:20]}
    assert answers[0][1] == {r.id for r in items[5:16]}


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(
    dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row the table refuses (no plate) fails the whole batch as an IntegrityError of
    SQLAlchemy's, and nothing of the batch is stored — not even the rows of the
    statements before it, which ran in the same transaction."""
    fast, _ = dbs
    monkeypatch.setattr(reads, "SQLITE_INSERT_ROWS", 2)
    items = varied(5)
    # Sorted last (rows go in id order): the two statements before it succeed.
    items[3] = items[3]._replace(id="~last", plate=None)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        store(fast, batch(items))
    assert raw_rows(fast) == [(0,)]


def test_matching_makes_facts_only_of_the_reads_that_hit(
    dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``match_batch`` matches on plate and time; the facts it hands on are the batch's
    own facts of the reads that hit, and no other read is made into facts."""
    items = varied(12)
    b = batch(items)
    listed = {items[2].plate, items[7].plate}

    class Listed:
        def match_reads(self, session: Any, *, reads: list[Any]) -> list[Any]:
            return [(r, ["hit"]) for r in reads if r.plate in listed]

    made: list[int] = []
    real_facts = reads.ReadBatch.facts

    def counting(self: reads.ReadBatch, chosen: Any = None) -> list[reads.ReadFacts]:
        out = real_facts(self, chosen)
        made.append(len(out))
        return out

    monkeypatch.setattr(reads, "_watchlist_service", lambda: Listed())
    monkeypatch.setattr(reads.ReadBatch, "facts", counting)
    with dbs[0].unit_of_work(readonly=True, info=CITY) as s:
        found = reads.match_batch(s, b)
    assert [f for f, _ in found] == real_facts(b, [items[2], items[7]])
    assert made == [2]


def test_a_batch_is_checked_and_stored_with_the_collector_paused(
    dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checking and storing a batch run with Python's cyclic garbage collector off
    (``anwang.core.collector``); it is on again once the batch is done."""
    import gc

    fast, _ = dbs
    seen: dict[str, bool] = {}
    real_validate, real_store = reads.validate_reads, reads.store_reads

    def validating(*args: Any, **kwargs: Any) -> Any:
        seen["validate"] = gc.isenabled()
        return real_validate(*args, **kwargs)

    def storing(*args: Any, **kwargs: Any) -> Any:
        seen["store"] = gc.isenabled()
        return real_store(*args, **kwargs)

    monkeypatch.setattr(reads, "validate_reads", validating)
    monkeypatch.setattr(reads, "store_reads", storing)
    was = gc.isenabled()
    gc.enable()
    try:
        items = [{"checkpoint": "CP-W1", "captured_at": (NOW - timedelta(minutes=1)).isoformat(),
                  "plate": "苏D12345", "direction": "in"}]
        with fast.unit_of_work(info=CITY) as s:
            report = reads.ingest_reads(s, items=items, source="test", retention_hours=48,
                                        now=NOW, store=True)
        assert (report.accepted, report.rejected) == (1, [])
        assert seen == {"validate": False, "store": False}
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
