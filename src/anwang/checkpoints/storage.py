"""How plate reads are laid out on disk: day partitions on PostgreSQL, the FTS5 trigram
index on SQLite, and on both the read locations that area searches start from.

PostgreSQL
----------
``plate_reads`` is ``PARTITION BY RANGE (captured_at)`` with one partition per UTC day,
named ``plate_reads_pYYYYMMDD`` and holding ``[day 00:00 UTC, next day 00:00 UTC)``. There
is no default partition: a row whose day has no partition is refused, so every writer
first calls :func:`ensure_partitions` (:func:`insert_reads` does), and the housekeeping
round creates today's and the next days' partitions ahead (:func:`create_ahead`) so that
the ingest path almost never has to.

Creating a partition takes an ``ACCESS EXCLUSIVE`` lock on the parent table. It is done
in the caller's transaction, under a savepoint: a separate connection would wait forever
for a lock that the caller's own transaction may already hold (``anwang import reads``
reads ``plate_reads`` before it stores), and the lock is held only until the caller's
short transaction ends. Two writers creating the same partition at once are both fine:
the loser's ``CREATE`` fails inside its savepoint with ``duplicate_table`` (or a unique
violation on the catalogue), which is ignored.

Each process remembers which partitions it has seen (per database, only after a commit)
so that a batch usually costs no catalogue query. A remembered partition may have been
dropped since by another process's purge (only days past the read window are dropped,
and a late read can still fall into one): the insert then fails with "no partition of
relation", is retried once in its savepoint after the partition is created again.

SQLite
------
``plate_reads_fts`` is an FTS5 table with the ``trigram`` tokenizer over
``plate_reads.plate``, with external content (``content='plate_reads'``,
``content_rowid='rowid'``): it stores only the index, not the plates again. Triggers on
insert, delete and update of ``plate`` keep it in step in the same transaction. The
search (:mod:`anwang.checkpoints.search`) uses it only to find candidate rows and still
applies ``LIKE`` to them, so a stale index could miss a read but never return a wrong
one. ``plate_reads`` has no ``INTEGER PRIMARY KEY``, so its rowids are not guaranteed
to survive ``VACUUM`` or a migration that copies the table: after either, run
:func:`rebuild_fts` (``INSERT INTO plate_reads_fts(plate_reads_fts) VALUES('rebuild')``).

The migration ``0006`` creates the same objects with its own copy of this DDL.

Read locations
--------------
``read_locations`` (:class:`~anwang.checkpoints.models.ReadLocation`) has one row per
checkpoint and position it read from, with an hour-aligned span holding the capture
times of its reads there. :func:`record_read_locations` keeps it, in the unit of work
that stores the reads (:func:`anwang.checkpoints.reads.store_reads`); anything that loads
reads around that path runs :func:`rebuild_read_locations` afterwards. An area search
takes the positions inside its area from it (a few hundred rows) rather than from the
window's reads. The purge of reads does not touch it: a row may outlive its reads, which
costs a search one empty probe and is never reported as a hit.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Float, String, column, func, or_, table, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from anwang.core.bulk import upsert
from anwang.core.db import UTCDateTime, after_commit, sqlite_utc_text

TABLE = "plate_reads"
PARTITION_PREFIX = f"{TABLE}_p"
_PARTITION = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})$")
FTS_TABLE = f"{TABLE}_fts"

#: Days after today whose partitions the housekeeping round creates ahead.
DAYS_AHEAD = 2

#: SQLSTATEs of "someone else created it first".
_DUPLICATE = frozenset({"42P07", "23505"})
#: check_violation: PostgreSQL's "no partition of relation ... found for row".
_NO_PARTITION = "23514"
_LOCK_NOT_AVAILABLE = "55P03"


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    """The day of a partition named by :func:`partition_name`, else None."""
    m = _PARTITION.match(name)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y%m%d").date()


def day_of(at: datetime) -> date:
    """The UTC day of an aware instant (the partition it goes to)."""
    if at.tzinfo is None:
        raise ValueError("captured_at must be timezone-aware")
    return at.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _bound(day: date) -> str:
    # A literal: PostgreSQL takes no parameters in DDL. Built from a date, so safe.
    return f"'{day_start(day).isoformat()}'"


def partition_ddl(day: date) -> str:
    return (
        f'CREATE TABLE IF NOT EXISTS "{partition_name(day)}" PARTITION OF {TABLE} '
        f"FOR VALUES FROM ({_bound(day)}) TO ({_bound(day + timedelta(days=1))})"
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


def _is_postgresql(session: Session | Connection) -> bool:
    bind = session.get_bind() if isinstance(session, Session) else session
    return bind.dialect.name == "postgresql"


# --- the per-process memory of existing partitions ------------------------------------

_lock = threading.Lock()
_known: dict[str, set[date]] = {}


def _key(session: Session | Connection) -> str:
    bind = session.get_bind() if isinstance(session, Session) else session
    return bind.engine.url.render_as_string(hide_password=True)


def _remembered(key: str) -> set[date]:
    with _lock:
        return set(_known.get(key, ()))


def _remember(key: str, days: Iterable[date]) -> None:
    with _lock:
        _known.setdefault(key, set()).update(days)


def forget(session: Session | Connection, days: Iterable[date] | None = None) -> None:
    """Drop ``days`` (all, when None) from this process's memory of partitions."""
    key = _key(session)
    with _lock:
        if days is None:
            _known.pop(key, None)
        else:
            _known.get(key, set()).difference_update(days)


# --- PostgreSQL partitions --------------------------------------------------------------


def list_partitions(session: Session | Connection) -> dict[date, str]:
    """The day partitions of ``plate_reads`` (PostgreSQL; empty elsewhere), by day."""
    if not _is_postgresql(session):
        return {}
    names = session.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:t)"
    ), {"t": TABLE}).scalars()
    out = {}
    for name in names:
        day = partition_day(name)
        if day is not None:
            out[day] = name
    return out


def ensure_partitions(session: Session, *, days: Iterable[date]) -> list[str]:
    """Create the partitions of ``days`` that do not exist yet (PostgreSQL only), in the
    session's transaction; returns the names created. Safe against a concurrent creator
    of the same partition (see the module docstring)."""
    if not _is_postgresql(session):
        return []
    key = _key(session)
    wanted = set(days) - _remembered(key)
    if not wanted:
        return []
    existing = set(list_partitions(session))
    created = []
    for day in sorted(wanted - existing):
        try:
            with session.begin_nested():
                session.execute(text(partition_ddl(day)))
        except DBAPIError as exc:
            if _sqlstate(exc) not in _DUPLICATE:
                raise
        else:
            created.append(partition_name(day))
    after_commit(session, lambda: _remember(key, wanted))
    return created


def create_ahead(
    session: Session, *, now: datetime, days: int = DAYS_AHEAD, lock_timeout_s: float = 2
) -> list[str]:
    """Create the partitions of today and the next ``days`` days (housekeeping).

    Creating one waits for every running transaction on ``plate_reads`` and meanwhile
    blocks new ones, so this gives up after ``lock_timeout_s`` (returning what it made):
    the next round tries again, and the insert path creates a missing partition anyway.
    """
    if not _is_postgresql(session):
        return []
    today = day_of(now)
    session.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'"))
    created: list[str] = []
    for i in range(days + 1):
        try:
            created += ensure_partitions(session, days=[today + timedelta(days=i)])
        except DBAPIError as exc:
            if _sqlstate(exc) != _LOCK_NOT_AVAILABLE:
                raise
            break
    session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    return created


def insert_reads(session: Session, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Insert ``rows`` (dicts of ``plate_reads`` columns), a read already stored under
    the key ``(id, captured_at)`` left alone, and return the ids really inserted.

    On PostgreSQL the rows go as one JSON document (:func:`anwang.core.bulk.upsert`: a
    multi-row ``INSERT`` with a parameter per value costs the driver more, in Python,
    than the server's whole insert); their day partitions are made sure of first, and an
    insert that finds a partition gone (dropped by a purge since this process saw it) is
    retried once after creating it again. Elsewhere ``stmt``, SQLAlchemy's bulk
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``, is executed for them."""
    if not rows:
        return []
    if not _is_postgresql(session):
        return list(session.execute(stmt, list(rows)).scalars())

    from anwang.checkpoints.models import PlateRead  # (the models import this module)

    def insert() -> list[Any]:
        return [row[0] for row in upsert(session, PlateRead.__table__, rows,
                                         key=("id", "captured_at"), returning=("id",))]

    days = {day_of(r["captured_at"]) for r in rows}
    ensure_partitions(session, days=days)
    try:
        with session.begin_nested():
            return insert()
    except DBAPIError as exc:
        if _sqlstate(exc) != _NO_PARTITION or "no partition" not in str(exc.orig):
            raise
    forget(session, days)
    ensure_partitions(session, days=days)
    return insert()


# --- SQLite: the FTS5 trigram index ---------------------------------------------------

#: The index and the triggers that keep it in step with ``plate_reads.plate``.
SQLITE_FTS_DDL: tuple[str, ...] = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
    f"plate, content='{TABLE}', content_rowid='rowid', "
    "tokenize='trigram case_sensitive 1', columnsize=0)",
    f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ai AFTER INSERT ON {TABLE} BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, plate) VALUES (new.rowid, new.plate); END",
    f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ad AFTER DELETE ON {TABLE} BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, plate) "
    "VALUES ('delete', old.rowid, old.plate); END",
    f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_au AFTER UPDATE OF plate ON {TABLE} BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, plate) "
    "VALUES ('delete', old.rowid, old.plate); "
    f"INSERT INTO {FTS_TABLE}(rowid, plate) VALUES (new.rowid, new.plate); END",
)
SQLITE_FTS_DROP: tuple[str, ...] = (
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_au",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ai",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
)


def rebuild_fts(conn: Session | Connection) -> None:
    """Rebuild the SQLite trigram index from ``plate_reads`` (after ``VACUUM``, or a
    migration that copied the table)."""
    conn.execute(text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"))


def fts_query(pattern: str) -> str | None:
    """The FTS5 query that selects the candidates of a partial pattern (``?`` one
    character, ``*`` any run): every literal run of at least three characters as a
    phrase, all required. None when no run is that long (a trigram index cannot help).

    A plate matching the pattern contains each of its literal runs, so the query selects
    a superset of the matches; the caller still applies ``LIKE``."""
    runs = [r for r in re.split(r"[?*]", pattern) if len(r) >= 3]
    if not runs:
        return None
    return " AND ".join('"' + r.replace('"', '""') + '"' for r in runs)


# --- where reads were taken: ``read_locations`` ------------------------------------------

LOCATIONS_TABLE = "read_locations"
#: ``first_seen``/``last_seen`` are widened to whole units of this, so that a batch of
#: reads changes a location's row only when it reaches a new hour.
LOCATION_GRAIN = timedelta(hours=1)

_locations = table(
    LOCATIONS_TABLE,
    column("checkpoint_code", String(40)),
    column("lat", Float()),
    column("lon", Float()),
    column("first_seen", UTCDateTime()),
    column("last_seen", UTCDateTime()),
)


def _grain_floor(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


@functools.lru_cache(maxsize=32)
def _sqlite_locations_sql(rows: int) -> str:
    """:func:`record_read_locations`'s upsert on SQLite, for ``rows`` locations (the
    SQL that SQLAlchemy writes for the same statement; SQLite's two-argument min() and
    max() are scalar, and its times are ISO text that sorts as the times do)."""
    t = LOCATIONS_TABLE
    return (f"INSERT INTO {t} (checkpoint_code, lat, lon, first_seen, last_seen) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * rows)
            + " ON CONFLICT (checkpoint_code, lat, lon) DO UPDATE SET "
            f"first_seen = min({t}.first_seen, excluded.first_seen), "
            f"last_seen = max({t}.last_seen, excluded.last_seen) "
            f"WHERE excluded.first_seen < {t}.first_seen OR excluded.last_seen > {t}.last_seen")


def record_read_locations(
    session: Session, sightings: Iterable[tuple[str, float, float, datetime]]
) -> int:
    """Note in ``read_locations`` where stored reads were taken — ``sightings`` are
    (checkpoint code, lat, lon, captured_at) — a new row per new (checkpoint, position),
    or ``first_seen``/``last_seen`` widened to cover the reads' capture times (to whole
    hours). In the caller's transaction, in key order so that two writers take the
    rows' locks in the same order; a row that already covers the times is left
    untouched. Returns the number of locations among ``sightings``."""
    spans: dict[tuple[str, float, float], list[datetime]] = {}
    for code, lat, lon, at in sightings:
        key = (code, lat, lon)
        span = spans.get(key)
        if span is None:
            spans[key] = [at, at]
        elif at < span[0]:
            span[0] = at
        elif at > span[1]:
            span[1] = at
    if not spans:
        return 0
    values = [
        {"checkpoint_code": code, "lat": lat, "lon": lon, "first_seen": _grain_floor(lo),
         "last_seen": _grain_floor(hi) + LOCATION_GRAIN}
        for (code, lat, lon), (lo, hi) in sorted(spans.items())
    ]
    if not _is_postgresql(session):
        # Sent to the driver as it is (SQLAlchemy's executemany of the same upsert cost
        # more than the rest of storing a batch's locations); PostgreSQL's is below.
        conn = session.connection()
        for start in range(0, len(values), 1000):  # 5,000 parameters a statement at most
            part = values[start:start + 1000]
            params: list[Any] = []
            for v in part:
                params.extend((v["checkpoint_code"], v["lat"], v["lon"],
                               sqlite_utc_text(cast(datetime, v["first_seen"])),
                               sqlite_utc_text(cast(datetime, v["last_seen"]))))
            conn.exec_driver_sql(_sqlite_locations_sql(len(part)), tuple(params))
        return len(values)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    t = _locations.c
    stmt: Any = pg_insert(_locations)
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["checkpoint_code", "lat", "lon"],
        set_={"first_seen": func.least(t.first_seen, new.first_seen),
              "last_seen": func.greatest(t.last_seen, new.last_seen)},
        where=or_(new.first_seen < t.first_seen, new.last_seen > t.last_seen),
    )
    session.execute(stmt, values)
    return len(values)


def rebuild_read_locations(conn: Session | Connection) -> None:
    """Fill ``read_locations`` afresh from ``plate_reads`` (exact first and last capture
    per checkpoint and position) — for data loaded around :func:`record_read_locations`.
    The migration ``0008`` does the same with its own copy of this SQL."""
    conn.execute(text(f"DELETE FROM {LOCATIONS_TABLE}"))
    conn.execute(text(
        f"INSERT INTO {LOCATIONS_TABLE} (checkpoint_code, lat, lon, first_seen, last_seen) "
        f"SELECT checkpoint_code, lat, lon, min(captured_at), max(captured_at) FROM {TABLE} "
        "GROUP BY checkpoint_code, lat, lon"
    ))


#: The tables this module creates beside the models — day partitions (and one being
#: rebuilt), the FTS5 table and its shadow tables — which schema comparison leaves out
#: (:func:`anwang.core.migrate.include_name`).
STORAGE_TABLES = rf"{PARTITION_PREFIX}\d{{8}}(_old)?|{FTS_TABLE}(_[a-z]+)?"
