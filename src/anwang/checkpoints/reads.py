"""Taking plate reads in and storing them, once.

How a read travels (``docs/architecture.md``, "How a plate read becomes an alert"):

1. :func:`ingest_reads` (``POST /api/v1/reads``, ``anwang import reads``) validates each
   read on its own, normalises the plate, gives the read its id (:func:`read_id`), finds
   which reads are already stored, counts the new reads' watch-list hits, and publishes
   the new reads as ``read_batch.received`` events after the commit. On the embedded
   default it stores them itself instead (``store``, :func:`store_inline`), and then the
   insert says which are new.
2. :func:`store_reads` (the ``checkpoints.store_reads`` consumer) bulk-inserts them with
   ``ON CONFLICT DO NOTHING`` on the key ``(id, captured_at)`` (on PostgreSQL into the
   day partitions, created when missing: :mod:`anwang.checkpoints.storage`), moves the
   checkpoints' ``last_read_at`` forward (ending their outages), matches the reads that
   were really inserted against the watch list and hands their hits to the alerts
   package. A redelivered or retried batch inserts nothing and so raises nothing.

The watch-list and alerts packages are reached lazily through their service modules
(:func:`match_batch`): they depend on :class:`~anwang.checkpoints.facts.ReadFacts`, not
the other way round.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from anwang.checkpoints import events as ev
from anwang.checkpoints import plates, storage
from anwang.checkpoints.facts import ReadFacts
from anwang.checkpoints.models import Checkpoint
from anwang.checkpoints.schemas import (
    ReadFields,
    ReadIn,
    Rejection,
    quick_reads,
    utc_instant,
)
from anwang.checkpoints.service import (
    _CHECKPOINTS,
    _READS,
    _chunks,
    _now,
    end_outages,
)
from anwang.core import collector
from anwang.core.db import OutboxEntry, UTCDateTime, publish_after_commit, sqlite_utc_text
from anwang.core.errors import ValidationFailed
from anwang.core.events import Event, EventContext

#: Largest batch of reads one request (or one chunk of an import) may carry.
MAX_BATCH = 10_000
#: A read captured further ahead than this (device clocks drift) is refused.
FUTURE_TOLERANCE = timedelta(minutes=5)
#: Namespace of the UUIDv5 ids derived for reads sent without an id.
READ_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://anwang.invalid/checkpoints/plate-read")


def _upsert_insert(session: Session) -> Any:
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing``)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


# =====================================================================================
# Ingestion
# =====================================================================================


def read_id(*, checkpoint: str, captured_at: datetime, plate: str, lane: int | None) -> str:
    """The id of a read sent without one: a UUIDv5 over the checkpoint code, the capture
    instant in UTC to the microsecond, the normalised plate and the lane.

    The same read sent again — in any UTC offset, with the plate spelt with full-width
    characters or spaces — gets the same id, which is what lets storage drop it.
    """
    return _derived_id(checkpoint, utc_instant(captured_at), plates.normalise(plate), lane)


_NAMESPACE_BYTES = READ_NAMESPACE.bytes
#: A hex digit with its top two bits set to the RFC 9562 variant ``10``.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def _derived_id(checkpoint: str, instant: str, plate: str, lane: int | None) -> str:
    """:func:`read_id` of an already normalised ``plate`` and the capture time as
    :func:`~anwang.checkpoints.schemas.utc_instant` writes it (what validation has in
    hand).

    ``str(uuid.uuid5(READ_NAMESPACE, name))`` written out (RFC 9562 §5.5: the first 16
    bytes of the SHA-1 of namespace and name, version 5, variant ``10``) — a third of the
    time of building the ``UUID`` object, and ingestion derives one per read; the unit
    tests check that both agree.
    """
    name = f"{checkpoint}\x1f{instant}\x1f{plate}\x1f{'' if lane is None else lane}"
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).hexdigest()
    # Hex digit 12 becomes the version (5), digit 16 takes the variant bits (10xx).
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a read takes from its checkpoint at the time it is received."""

    name: str
    kind: str
    lat: float
    lon: float
    jurisdiction_code: str | None

    @classmethod
    def of(cls, cp: Checkpoint) -> CheckpointInfo:
        return cls(cp.name, cp.kind, cp.lat, cp.lon, cp.jurisdiction_code)


class ValidRead(NamedTuple):
    """A read that passed validation, normalised; immutable. (A named tuple: ingestion
    makes one per read, and a frozen dataclass took several times as long to build.)"""

    id: str
    checkpoint: str
    captured_at: datetime
    plate: str
    plate_kind: str
    plate_color: str | None
    confidence: float | None
    lane: int | None
    direction: str
    vehicle: dict[str, Any] | None
    image_ref: str | None
    #: ``captured_at`` as :func:`~anwang.checkpoints.schemas.utc_instant` writes it, when
    #: validation made it (storage on SQLite writes the time from it).
    instant: str | None = None


@dataclass(frozen=True)
class ReadBatch:
    """Valid reads with the checkpoints they came through: the payload of a
    ``read_batch.received`` event and the input of :func:`store_reads`."""

    received_at: datetime
    source: str
    checkpoints: dict[str, CheckpointInfo]
    reads: list[ValidRead]

    def to_payload(self) -> dict[str, Any]:
        return {
            "received_at": self.received_at.isoformat(),
            "source": self.source,
            "checkpoints": {
                code: {"name": c.name, "kind": c.kind, "lat": c.lat, "lon": c.lon,
                       "jurisdiction_code": c.jurisdiction_code}
                for code, c in self.checkpoints.items()
            },
            "reads": [
                {
                    "id": r.id, "checkpoint": r.checkpoint,
                    "captured_at": r.captured_at.isoformat(), "plate": r.plate,
                    "plate_kind": r.plate_kind, "plate_color": r.plate_color,
                    "confidence": r.confidence, "lane": r.lane, "direction": r.direction,
                    "vehicle": r.vehicle, "image_ref": r.image_ref, "instant": r.instant,
                }
                for r in self.reads
            ],
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ReadBatch:
        return cls(
            received_at=datetime.fromisoformat(payload["received_at"]).astimezone(UTC),
            source=str(payload.get("source", "")),
            checkpoints={
                code: CheckpointInfo(
                    str(c["name"]), str(c["kind"]), float(c["lat"]), float(c["lon"]),
                    c.get("jurisdiction_code"),
                )
                for code, c in payload["checkpoints"].items()
            },
            reads=[
                ValidRead(
                    id=r["id"], checkpoint=r["checkpoint"],
                    captured_at=datetime.fromisoformat(r["captured_at"]).astimezone(UTC),
                    plate=r["plate"], plate_kind=r["plate_kind"], plate_color=r["plate_color"],
                    confidence=r["confidence"], lane=r["lane"], direction=r["direction"],
                    vehicle=r["vehicle"], image_ref=r["image_ref"], instant=r.get("instant"),
                )
                for r in payload["reads"]
            ],
        )

    def split(self, size: int) -> list[ReadBatch]:
        """Batches of at most ``size`` reads, each with only its own checkpoints."""
        out = []
        for part in _chunks(self.reads, size):
            codes = {r.checkpoint for r in part}
            out.append(replace(
                self, reads=list(part),
                checkpoints={c: i for c, i in self.checkpoints.items() if c in codes},
            ))
        return out

    def facts(self, reads: Sequence[ValidRead] | None = None) -> list[ReadFacts]:
        """The facts of ``reads`` (of this batch; default: all of them)."""
        cps = self.checkpoints
        # Positional (ReadFacts's field order): a third less time than keywords.
        return [
            ReadFacts(
                r.id, r.checkpoint, (c := cps[r.checkpoint]).name, c.kind, r.direction,
                r.lane, r.captured_at, r.plate, r.plate_color, r.confidence, c.lat, c.lon,
                c.jurisdiction_code, r.vehicle, r.image_ref,
            )
            for r in (self.reads if reads is None else reads)
        ]


class Malformed:
    """An NDJSON line that is not JSON; rejected as ``malformed_json``."""

    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    alerts: int = 0
    #: The accepted reads (new ones only), as stored by :func:`store_reads`.
    batch: ReadBatch | None = None


_CUSTOM_CODES = frozenset({
    "invalid_captured_at", "captured_at_no_offset", "confidence_out_of_range",
    "invalid_confidence",
})
_FIELD_CODES = {
    "id": "invalid_id", "checkpoint": "invalid_checkpoint", "plate": "invalid_plate",
    "plate_color": "invalid_plate_color", "lane": "invalid_lane",
    "direction": "invalid_direction", "vehicle": "invalid_vehicle",
    "image_ref": "invalid_image_ref", "captured_at": "invalid_captured_at",
    "confidence": "invalid_confidence",
}


def _rejection(index: int, exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    top = loc[0] if loc else ""
    if first["type"] in _CUSTOM_CODES:
        code = first["type"]
    elif first["type"] == "missing":
        code = "missing_field"
    elif first["type"] == "extra_forbidden":
        code = "invalid_vehicle" if top == "vehicle" else "unknown_field"
    else:
        code = _FIELD_CODES.get(top, "invalid_read")
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'read'}: {e['msg']}"
                       for e in errors)
    return Rejection(index=index, code=code, detail=detail[:500])


def validate_reads(
    items: Sequence[Any],
    *,
    checkpoints: Mapping[str, Checkpoint | CheckpointInfo | None],
    active: Mapping[str, bool],
    now: datetime,
    retention: timedelta,
    rules: plates.PlateRules = plates.MAINLAND_CN,
) -> tuple[list[tuple[int, ValidRead]], list[Rejection]]:
    """Each item on its own: the valid reads (with their index) and the rejections.

    ``checkpoints`` maps every code the caller could see to its row (a code missing or
    mapped to None is unknown); ``active`` says which of them take reads.
    """
    valid: list[tuple[int, ValidRead]] = []
    rejected: list[Rejection] = []
    latest = now + FUTURE_TOLERANCE
    oldest = now - retention
    parsed = rules._parsed
    derive = _derived_id
    new_tuple = tuple.__new__
    # The plain shape a device sends is checked without the model, for the whole batch;
    # anything else (and every invalid read) goes through it, for its errors.
    usable = [code for code, on in active.items() if on and checkpoints.get(code) is not None]
    quick = quick_reads(items, checkpoints=frozenset(usable))
    for i, (item, read) in enumerate(zip(items, quick, strict=True)):
        if read is None:
            if isinstance(item, Malformed):
                rejected.append(Rejection(index=i, code="malformed_json", detail=item.detail))
                continue
            if not isinstance(item, dict):
                rejected.append(Rejection(index=i, code="not_an_object",
                                          detail="each read is a JSON object"))
                continue
            try:
                read = ReadFields.of(ReadIn.model_validate(item))
            except ValidationError as exc:
                rejected.append(_rejection(i, exc))
                continue
        # Unpacked once (each attribute of a named tuple is a lookup of its own).
        (read_id, code, captured_at, raw_plate, colour, confidence, lane, direction,
         vehicle, image_ref, instant) = read
        if instant is None:  # the fast path passed only usable checkpoints
            if checkpoints.get(code) is None:
                rejected.append(Rejection(
                    index=i, code="unknown_checkpoint",
                    detail=f"no checkpoint {code!r} (in this key's jurisdiction)"))
                continue
            if not active.get(code, False):
                rejected.append(Rejection(
                    index=i, code="inactive_checkpoint",
                    detail=f"checkpoint {code!r} is deactivated"))
                continue
        if captured_at > latest:
            rejected.append(Rejection(
                index=i, code="captured_at_in_future",
                detail=f"captured_at is more than {int(FUTURE_TOLERANCE.total_seconds() // 60)} "
                       "minutes ahead of the server's clock"))
            continue
        if captured_at < oldest:
            rejected.append(Rejection(
                index=i, code="captured_at_too_old",
                detail="captured_at is older than the retention window "
                       f"({int(retention.total_seconds() // 3600)} h)"))
            continue
        plate = parsed.get(raw_plate)  # plates.parse's own memory, without the call
        if plate is None:
            try:
                plate = plates.parse(raw_plate, rules)
            except plates.InvalidPlate as exc:
                rejected.append(Rejection(index=i, code="invalid_plate", detail=exc.reason))
                continue
        instant = instant or utc_instant(captured_at)
        text = plate.text
        # Every field, in ValidRead's order, without the class's Python-level __new__
        # (what its _make does): less than half the time, once per read.
        valid.append((i, new_tuple(ValidRead, (
            read_id or derive(code, instant, text, lane), code, captured_at, text,
            plate.kind, colour or None, confidence, lane, direction, vehicle, image_ref,
            instant,
        ))))
    return valid, rejected


def existing_read_ids(
    session: Session, *, ids: Sequence[str],
    captured: tuple[datetime, datetime] | None = None,
) -> set[str]:
    """Which of ``ids`` are stored (city-wide: ids are global). ``captured`` (first,
    last), when given, limits the look-up to reads captured in that closed range, which
    on PostgreSQL visits only those days' partitions."""
    table = _READS
    found: set[str] = set()
    if _is_sqlite(session):
        conn = session.connection()
        window = [] if captured is None else [sqlite_utc_text(t) for t in captured]
        for part in _chunks(list(ids)):
            found.update(conn.exec_driver_sql(_sqlite_lookup(conn.dialect, len(part),
                                                             captured is not None),
                                              (*part, *window)).scalars())
        return found
    for part in _chunks(list(ids)):
        stmt = select(table.c.id).where(table.c.id.in_(part))
        if captured is not None:
            stmt = stmt.where(table.c.captured_at.between(*captured))
        found.update(session.scalars(stmt))
    return found


# --- SQLite: plate_reads statements sent to the driver as they are -------------------
#
# On the embedded default the bulk of ingestion's database time is spent around the
# driver, not in it: SQLAlchemy builds and type-converts each row's parameters one by
# one (``insertmanyvalues``). The statements below are the same SQL written once, with
# the parameters converted by the columns' own bind processors (so they are stored
# exactly as SQLAlchemy stores them: the tests compare the rows) in one pass per column.


def _is_sqlite(session: Session) -> bool:
    return bool(session.get_bind().dialect.name == "sqlite")


@functools.lru_cache(maxsize=8)
def _processors(dialect: Dialect) -> dict[str, Callable[[Any], Any] | None]:
    """Each ``plate_reads`` column's bind processor under ``dialect`` (None: as is)."""
    procs: dict[str, Callable[[Any], Any] | None] = {
        c.name: c.type.dialect_impl(dialect).bind_processor(dialect) for c in _READS.columns}
    if dialect.name == "sqlite":
        for c in _READS.columns:
            if isinstance(c.type, UTCDateTime):
                procs[c.name] = sqlite_utc_text
    return procs


@functools.lru_cache(maxsize=64)
def _sqlite_insert_sql(dialect: Dialect, names: tuple[str, ...], rows: int,
                       returning: bool) -> str:
    q = dialect.identifier_preparer
    one = "(" + ", ".join("?" * len(names)) + ")"
    return (f"INSERT INTO {q.format_table(_READS)} ({', '.join(map(q.quote, names))}) "
            f"VALUES {', '.join([one] * rows)} "
            f"ON CONFLICT ({q.quote('id')}, {q.quote('captured_at')}) DO NOTHING"
            + (f" RETURNING {q.quote('id')}" if returning else ""))


@functools.lru_cache(maxsize=16)
def _sqlite_lookup(dialect: Dialect, ids: int, window: bool) -> str:
    q = dialect.identifier_preparer
    sql = (f"SELECT {q.quote('id')} FROM {q.format_table(_READS)} "
           f"WHERE {q.quote('id')} IN ({', '.join('?' * ids)})")
    if window:
        sql += f" AND {q.quote('captured_at')} BETWEEN ? AND ?"
    return sql


#: Converted dicts of strings per bind processor (the vehicle descriptions devices send
#: over and over, as JSON), kept across batches; each memory starts again from empty
#: when it holds :data:`_CONVERTED_MAX`.
_CONVERTED: dict[Callable[[Any], Any], dict[tuple[tuple[str, str], ...], Any]] = {}
_CONVERTED_MAX = 10_000


def _convert_column(proc: Callable[[Any], Any], values: list[Any]) -> Any:
    """``proc`` applied to one column's ``values``: once when they are one object (the
    batch's ``received_at``, ``hit``), once per distinct description for dicts of
    strings (the few vehicle descriptions that recur, for JSON; remembered across
    batches), else to each."""
    first = values[0]
    if len(set(map(id, values))) == 1:
        return [proc(first)] * len(values)
    if type(first) is not dict:
        return map(proc, values)
    seen = _CONVERTED.setdefault(proc, {})
    if len(seen) >= _CONVERTED_MAX:
        seen.clear()
    out = []
    for value in values:
        if type(value) is not dict:
            out.append(proc(value))
            continue
        try:
            key = tuple(value.items())
            done = seen.get(key)
        except TypeError:  # a value that cannot be hashed
            out.append(proc(value))
            continue
        if done is None:
            done = proc(value)
            # Only descriptions of strings are remembered: equal to one of them is the
            # same JSON (1 == True would not be).
            if all(type(v) is str for v in value.values()):
                seen[key] = done
        out.append(done)
    return out


#: Rows per multi-row INSERT on SQLite (at most 32,766 parameters per statement).
SQLITE_INSERT_ROWS = 1000


def _sqlite_insert(session: Session, names: Sequence[str],
                   rows: Sequence[Sequence[Any]], *, ready: Sequence[str] = ()) -> list[str]:
    """``INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING`` of ``rows`` (value
    sequences in the order of ``names``, ``id`` among them), in statements of up to
    :data:`SQLITE_INSERT_ROWS` rows; the ids really inserted. The values of the columns
    named in ``ready`` are already as the driver takes them (their bind processors are
    not applied).

    Each statement runs inside a savepoint. When it inserted every row (the driver's
    ``rowcount``: rows inserted, not those skipped) — nearly always: a retried batch is
    rare — its ids are the rows' own; otherwise it is rolled back to the savepoint and
    run again with ``RETURNING id``, which names the rows it inserted. (Fetching the
    returned ids of every statement cost a tenth of the insert.)

    Sent on the driver's own cursor in the session's transaction. A driver error is
    raised as SQLAlchemy raises it (``DBAPIError``)."""
    if not rows:
        return []
    conn = session.connection()
    dialect = conn.dialect
    names = tuple(names)
    width = len(names)
    procs = _processors(dialect)
    converts = [(j, proc) for j, name in enumerate(names)
                if name not in ready and (proc := procs[name]) is not None]
    per = max(1, min(SQLITE_INSERT_ROWS, 32_766 // width))
    at_id = names.index("id")
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    inserted: list[str] = []
    try:
        for start in range(0, len(rows), per):
            part = rows[start:start + per]
            params = list(chain.from_iterable(part))
            for j, proc in converts:
                params[j::width] = _convert_column(proc, params[j::width])
            sql = _sqlite_insert_sql(dialect, names, len(part), False)
            try:
                cursor.execute("SAVEPOINT anwang_reads")
                cursor.execute(sql, params)
                if cursor.rowcount == len(part):
                    inserted.extend(params[at_id::width])
                else:  # some were stored before: which ones did this insert?
                    cursor.execute("ROLLBACK TO anwang_reads")
                    sql = _sqlite_insert_sql(dialect, names, len(part), True)
                    cursor.execute(sql, params)
                    inserted.extend(row[0] for row in cursor.fetchall())
                cursor.execute("RELEASE anwang_reads")
            except dialect.loaded_dbapi.Error as exc:
                raise DBAPIError.instance(sql, params, exc,
                                          dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()
    return inserted


def _watchlist_service() -> Any | None:
    """The watch-list service, or None while that package has none (then nothing
    matches). Imported lazily: the watch list depends on this package's facts, not the
    other way round."""
    if importlib.util.find_spec("anwang.watchlist.service") is None:
        return None
    return importlib.import_module("anwang.watchlist.service")


def _alerts_service() -> Any | None:
    if importlib.util.find_spec("anwang.alerts.service") is None:
        return None
    return importlib.import_module("anwang.alerts.service")


def match_batch(session: Session, batch: ReadBatch) -> list[tuple[ReadFacts, list[Any]]]:
    """The reads of ``batch`` that hit the watch list, as facts, with their hits. The
    reads are matched on their plate and capture time alone; only the few that hit are
    made into :class:`ReadFacts` (most reads hit nothing)."""
    if not batch.reads:
        return []
    watchlist = _watchlist_service()
    if watchlist is None:
        return []
    found: list[tuple[ValidRead, list[Any]]] = watchlist.match_reads(session, reads=batch.reads)
    if not found:
        return []
    facts = batch.facts([r for r, _ in found])
    return [(f, hits) for f, (_, hits) in zip(facts, found, strict=True)]


def _publish_once(session: Session, event: Event) -> bool:
    """Queue ``event`` unless an event with its id is already waiting in the outbox (a
    retry of a batch whose first event has not been published yet)."""
    if session.get(OutboxEntry, event.id) is not None:
        return False
    try:
        with session.begin_nested():
            publish_after_commit(session, event)
            session.flush()
    except IntegrityError:
        # A concurrent retry queued the same event first; ours is not needed.
        queued: list[Event] = session.info.get("outbox", [])
        session.info["outbox"] = [e for e in queued if e is not event]
        return False
    return True


def store_inline(session: Session, *, in_process_bus: bool) -> bool:
    """Whether a request (or MQTT message) should store its reads in its own unit of
    work (``ingest_reads(store=True)``) rather than hand them to the storage consumer:
    on the embedded default — the in-process bus on SQLite, where one process does
    everything and SQLite serialises writers anyway. Not on PostgreSQL, where concurrent
    requests creating the same day partition inside transactions that already read the
    table could deadlock; there the consumer stores (one at a time per process)."""
    return in_process_bus and session.get_bind().dialect.name == "sqlite"


@dataclass(frozen=True)
class CheckedReads:
    """A batch validated against its checkpoints (:func:`check_reads`): what
    :func:`ingest_reads` does before it looks at stored reads."""

    now: datetime
    valid: list[tuple[int, ValidRead]]
    rejected: list[Rejection]
    checkpoints: dict[str, CheckpointInfo]


def check_reads(
    session: Session, *, items: Sequence[Any], retention_hours: int,
    now: datetime | None = None,
) -> CheckedReads:
    """Validate a batch: its checkpoints looked up in the session's scope, each item
    checked on its own. Only reads: on SQLite a request runs it in a read-only unit of
    work, outside the writer lock, so that it overlaps the writes of the request before
    (``POST /api/v1/reads``)."""
    if len(items) > MAX_BATCH:
        raise ValidationFailed.on("reads", f"at most {MAX_BATCH} reads per batch",
                                  code="anwang.checkpoints.batch_too_large")
    with collector.paused():
        return _check_reads(session, items=items, retention_hours=retention_hours,
                            now=_now(now))


def _check_reads(
    session: Session, *, items: Sequence[Any], retention_hours: int, now: datetime,
) -> CheckedReads:
    codes = {
        item["checkpoint"] for item in items
        if isinstance(item, dict) and isinstance(item.get("checkpoint"), str)
    }
    # Columns, not Checkpoint objects: a batch touches hundreds of checkpoints, and loading
    # each into the session cost more than the rest of its look-up. (An ORM select of
    # the entity's columns: the jurisdiction scope applies as to the entity.)
    found: dict[str, CheckpointInfo] = {}
    active: dict[str, bool] = {}
    cp = Checkpoint
    for part in _chunks(sorted(codes)):
        for code, name, kind, lat, lon, jurisdiction, on in session.execute(
            select(cp.code, cp.name, cp.kind, cp.lat, cp.lon, cp.jurisdiction_code, cp.active)
            .where(cp.code.in_(part))
        ):
            found[code] = CheckpointInfo(name, kind, lat, lon, jurisdiction)
            active[code] = on
    valid, rejected = validate_reads(
        items, checkpoints=found, active=active,
        now=now, retention=timedelta(hours=retention_hours),
    )
    return CheckedReads(now, valid, rejected, found)


def ingest_reads(
    session: Session,
    *,
    items: Sequence[Any],
    source: str,
    retention_hours: int,
    now: datetime | None = None,
    publish: bool = True,
    store: bool = False,
    correlation_id: str | None = None,
    checked: CheckedReads | None = None,
) -> IngestReport:
    """Validate a batch, find the new reads, count their watch-list hits and (when
    ``publish``) queue them for storage as ``read_batch.received`` events — or, when
    ``store``, store them in this unit of work with :func:`store_reads` (the embedded
    mode: with the in-process bus there is no other process to hand them to, and storing
    inline saves the event's outbox row, its JSON round trip and a second match).

    ``items`` are decoded JSON values (or :class:`Malformed` lines). Checkpoints are
    looked up in the session's scope, so a device key of one district cannot post for
    another district's checkpoints. ``alerts`` counts the new reads with at least one
    hit; the alerts themselves are raised by :func:`store_reads`. Nothing is written
    here but the outbox rows of the events. ``checked``: the batch already validated
    by :func:`check_reads` (in another unit of work, with the same scope).

    Both run with the cyclic garbage collector paused (:mod:`anwang.core.collector`).
    """
    with collector.paused():
        return _ingest_reads(session, items=items, source=source,
                             retention_hours=retention_hours, now=now, publish=publish,
                             store=store, correlation_id=correlation_id, checked=checked)


def _ingest_reads(
    session: Session, *, items: Sequence[Any], source: str, retention_hours: int,
    now: datetime | None, publish: bool, store: bool, correlation_id: str | None,
    checked: CheckedReads | None,
) -> IngestReport:
    if checked is None:
        checked = check_reads(session, items=items, retention_hours=retention_hours, now=now)
    now, valid, rejected, found = (checked.now, checked.valid, checked.rejected,
                                   checked.checkpoints)
    report = IngestReport(rejected=rejected)
    # Stored here: the insert itself says which reads are new (ON CONFLICT DO NOTHING
    # RETURNING id), so the stored ones need not be looked up first.
    stored = set() if store or not valid else existing_read_ids(
        session, ids=[r.id for _, r in valid],
        captured=(min(r.captured_at for _, r in valid),
                  max(r.captured_at for _, r in valid)),
    )
    new: list[ValidRead] = []
    seen: set[str] = set()
    for _, r in valid:
        if r.id in stored or r.id in seen:
            report.duplicates += 1
            continue
        seen.add(r.id)
        new.append(r)
    batch = ReadBatch(
        received_at=now, source=source,
        checkpoints={c: found[c] for c in {r.checkpoint for r in new}},
        reads=new,
    )
    if store and new:
        done = store_reads(session, batch=batch, now=now)
        report.duplicates += len(new) - done.inserted
        if done.inserted < len(new):
            batch = replace(batch, reads=done.reads, checkpoints={
                c: found[c] for c in {r.checkpoint for r in done.reads}})
        report.accepted = done.inserted
        report.batch = batch
        report.alerts = done.hits
        return report
    report.accepted = len(new)
    report.batch = batch
    if not new or store:
        return report
    report.alerts = len(match_batch(session, batch))
    if publish:
        for piece in batch.split(ev.READS_PER_EVENT):
            _publish_once(session, Event(
                id=ev.batch_event_id(r.id for r in piece.reads),
                name=ev.READ_BATCH_RECEIVED,
                source=source,
                audience=ev.NOBODY,
                context=EventContext(correlation_id=correlation_id, actor=source),
                payload=piece.to_payload(),
            ))
    return report


# =====================================================================================
# Storage (the consumer)
# =====================================================================================


@dataclass
class StoreReport:
    inserted: int = 0
    hits: int = 0
    alerts: int = 0
    came_online: list[str] = field(default_factory=list)
    #: The reads really inserted (those not stored before), in the batch's order.
    reads: list[ValidRead] = field(default_factory=list)


#: The columns :func:`store_reads` writes, in the order of its rows' values.
_STORED = ("id", "checkpoint_code", "captured_at", "received_at", "plate", "plate_kind",
           "plate_color", "confidence", "lane", "direction", "vehicle", "image_ref",
           "lat", "lon", "jurisdiction_code", "hit")


#: A read's id (its first field), for sorting.
_read_id = operator.itemgetter(0)


def store_reads(
    session: Session, *, batch: ReadBatch, now: datetime | None = None,
    cause: Event | None = None,
) -> StoreReport:
    """Store a batch, once: insert (duplicates ignored), move the checkpoints'
    ``last_read_at`` forward (ending their outages), and for each read that was really
    inserted ask the watch list for hits and the alerts package to raise them."""
    now = _now(now)
    report = StoreReport()
    if not batch.reads:
        return report
    table = _READS
    places = batch.checkpoints
    received = batch.received_at
    # In id order, so that two workers storing overlapping batches take the unique
    # index's locks in the same order and cannot deadlock (PostgreSQL).
    ordered = sorted(batch.reads, key=_read_id)
    inserted: set[str] = set()
    rows: list[tuple[Any, ...]]
    if _is_sqlite(session):
        # The capture time as SQLite stores it (``sqlite_utc_text``), from the text
        # validation already wrote (the same instant, ``T`` and ``Z`` aside).
        rows = [
            (r.id, r.checkpoint,
             f"{i[:10]} {i[11:26]}" if (i := r.instant) and len(i) == 27
             else sqlite_utc_text(r.captured_at),
             received, r.plate, r.plate_kind, r.plate_color, r.confidence, r.lane,
             r.direction, r.vehicle, r.image_ref, (c := places[r.checkpoint]).lat, c.lon,
             c.jurisdiction_code, False)
            for r in ordered
        ]
        # The checkpoints' coordinates are floats already (CheckpointInfo).
        inserted.update(_sqlite_insert(session, _STORED, rows,
                                       ready=("captured_at", "lat", "lon")))
    else:
        rows = [
            (r.id, r.checkpoint, r.captured_at, received, r.plate, r.plate_kind,
             r.plate_color, r.confidence, r.lane, r.direction, r.vehicle, r.image_ref,
             (c := places[r.checkpoint]).lat, c.lon, c.jurisdiction_code, False)
            for r in ordered
        ]
        insert = _upsert_insert(session)
        # The key is (id, captured_at): PostgreSQL partitions by captured_at (PlateRead).
        stmt = (insert(table).on_conflict_do_nothing(index_elements=["id", "captured_at"])
                .returning(table.c.id))
        for part in _chunks(rows, 1000):
            inserted.update(storage.insert_reads(
                session, stmt, [dict(zip(_STORED, row, strict=True)) for row in part]))
    report.inserted = len(inserted)
    if not inserted:
        return report
    new = [r for r in batch.reads if r.id in inserted] if len(inserted) < len(batch.reads) \
        else list(batch.reads)
    report.reads = new
    # Each checkpoint's first and newest capture among the new reads: its read location
    # (a batch's reads of one checkpoint share its position) and its last_read_at.
    earliest: dict[str, datetime] = {}
    newest: dict[str, datetime] = {}
    for r in new:
        code, when = r.checkpoint, r.captured_at
        seen = newest.get(code)
        if seen is None:
            newest[code] = earliest[code] = when
        elif when > seen:
            newest[code] = when
        elif when < earliest[code]:
            earliest[code] = when
    # Where the new reads were taken, for area searches (anwang.checkpoints.search).
    storage.record_read_locations(session, [
        (code, (c := places[code]).lat, c.lon, when)
        for code in newest for when in (earliest[code], newest[code])])
    # One statement run for every checkpoint (executemany), in code order so that two
    # workers take the rows' locks in the same order; one statement per checkpoint cost
    # more than the insert (a batch of 1,000 reads touches some 250 checkpoints).
    cps = _CHECKPOINTS
    at = bindparam("newest_read_at", type_=cps.c.last_read_at.type)
    session.execute(
        update(cps).where(
            cps.c.code == bindparam("checkpoint_code", type_=cps.c.code.type),
            or_(cps.c.last_read_at.is_(None), cps.c.last_read_at < at),
        ).values(last_read_at=at),
        [{"checkpoint_code": code, "newest_read_at": when}
         for code, when in sorted(newest.items())],
    )
    report.came_online = end_outages(session, codes=sorted(newest), now=now, cause=cause)

    hits = match_batch(session, replace(batch, reads=new))
    if hits:
        hit_ids = sorted(facts.read_id for facts, _ in hits)
        # The capture range lets PostgreSQL visit only those days' partitions.
        first = min(facts.captured_at for facts, _ in hits)
        last = max(facts.captured_at for facts, _ in hits)
        for part in _chunks(hit_ids):
            session.execute(update(table).where(
                table.c.id.in_(part), table.c.captured_at.between(first, last)
            ).values(hit=True))
        report.hits = len(hits)
        alerts = _alerts_service()
        if alerts is not None:
            report.alerts = int(alerts.raise_for_reads(session, hits))
    return report
