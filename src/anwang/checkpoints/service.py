"""Checkpoints: the registry, health and outages, and the retention of plate reads.

Every function here and in the sibling use-case modules — :mod:`anwang.checkpoints.reads`
(taking reads in and storing them) and :mod:`anwang.checkpoints.search` (searching and
exporting stored reads) — is keyword-only, takes the caller's ``session`` and never
commits: the request, the bus handler or the CLI command owns the unit of work. Changes
to the registry, outages, searches, exports and purges are audited in the same
transaction. Taking reads in is not audited row by row: it is data arriving from
machines, not a decision of a person, and at thousands of reads a second one audit row
per batch would serialise every ingest on the audit chain's head.

Other packages use this module (and ``ReadFacts``); the read and search modules are the
package's own.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast

from pydantic import ValidationError
from sqlalchemy import (
    Table,
    and_,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy import table as sa_table
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from anwang.auth import service as auth_service
from anwang.checkpoints import events as ev
from anwang.checkpoints import storage
from anwang.checkpoints.models import Checkpoint, CheckpointOutage, PlateRead
from anwang.checkpoints.schemas import (
    CheckpointCreate,
    CheckpointHealth,
    CheckpointKind,
    CheckpointUpdate,
    HealthStatus,
    HourCount,
    OutageOut,
)
from anwang.core import audit
from anwang.core.db import publish_after_commit
from anwang.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from anwang.core.events import Audience, Event, utcnow

ACTOR_SYSTEM = "system"

_READS = cast(Table, PlateRead.__table__)
_CHECKPOINTS = cast(Table, Checkpoint.__table__)
_OUTAGES = cast(Table, CheckpointOutage.__table__)
#: Rows per statement when a list of ids is sent as parameters.
_ID_CHUNK = 5000


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _chunks(items: Sequence[Any], size: int = _ID_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# =====================================================================================
# The registry
# =====================================================================================


def get_checkpoint(session: Session, *, code: str) -> Checkpoint:
    """The checkpoint with ``code`` in the session's scope (404 outside it)."""
    row = session.scalars(select(Checkpoint).where(Checkpoint.code == code)).one_or_none()
    if row is None:
        raise NotFound(f"no checkpoint has the code {code!r}",
                       code="anwang.checkpoints.checkpoint_not_found")
    return row


def list_checkpoints(
    session: Session,
    *,
    kind: CheckpointKind | str | None = None,
    active: bool | None = None,
    jurisdiction: str | None = None,
    q: str | None = None,
) -> list[Checkpoint]:
    """Checkpoints in the session's scope, by code; ``jurisdiction`` narrows to a code
    prefix, ``q`` to codes or names containing it."""
    stmt = select(Checkpoint).order_by(Checkpoint.code)
    if kind is not None:
        stmt = stmt.where(Checkpoint.kind == str(CheckpointKind(kind)))
    if active is not None:
        stmt = stmt.where(Checkpoint.active.is_(active))
    if jurisdiction:
        stmt = stmt.where(Checkpoint.jurisdiction_code.startswith(jurisdiction, autoescape=True))
    if q:
        stmt = stmt.where(
            or_(Checkpoint.code.contains(q, autoescape=True),
                Checkpoint.name.contains(q, autoescape=True))
        )
    return list(session.scalars(stmt))


def _state(cp: Checkpoint) -> dict[str, Any]:
    return {
        "name": cp.name, "kind": cp.kind, "lat": cp.lat, "lon": cp.lon,
        "directions": list(cp.directions), "lanes": cp.lanes, "active": cp.active,
        "silence_threshold_s": cp.silence_threshold_s,
        "jurisdiction_code": cp.jurisdiction_code,
    }


def _locate(session: Session, lat: float, lon: float) -> str | None:
    return auth_service.locate(session, lon=lon, lat=lat)


def create_checkpoint(
    session: Session,
    *,
    data: CheckpointCreate,
    actor: str | None,
    actor_role: str | None = None,
    via: str = "api",
) -> Checkpoint:
    """Register a checkpoint; its jurisdiction is found from its location.

    409 ``anwang.checkpoints.code_taken`` when the code exists (also when that
    checkpoint lies outside the caller's scope: codes are unique city-wide).
    """
    taken = session.scalar(
        select(Checkpoint.id).where(Checkpoint.code == data.code)
        .execution_options(skip_scope=True)
    )
    if taken is not None:
        raise _code_taken(data.code)
    now = utcnow()
    cp = Checkpoint(
        code=data.code, name=data.name, kind=str(data.kind), lat=data.lat, lon=data.lon,
        directions=[str(d) for d in data.directions], lanes=data.lanes, active=data.active,
        silence_threshold_s=data.silence_threshold_s,
        jurisdiction_code=_locate(session, data.lat, data.lon),
        created_at=now, updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(cp)
    except IntegrityError:
        raise _code_taken(data.code) from None
    audit.record(
        session, "anwang.checkpoints.checkpoint.created", actor=actor, actor_role=actor_role,
        subject=cp.code, jurisdiction=cp.jurisdiction_code, data={**_state(cp), "via": via},
    )
    return cp


def _code_taken(code: str) -> Conflict:
    return Conflict(f"a checkpoint with the code {code!r} already exists",
                    code="anwang.checkpoints.code_taken")


def update_checkpoint(
    session: Session,
    *,
    code: str,
    changes: CheckpointUpdate,
    actor: str | None,
    actor_role: str | None = None,
    via: str = "api",
) -> Checkpoint:
    """Apply the fields set in ``changes``; a move finds the jurisdiction again.

    Audited with each changed field's old and new value (``checkpoint.updated``, or
    ``checkpoint.deactivated`` / ``.activated`` when only ``active`` changed); a patch
    that changes nothing writes nothing."""
    cp = get_checkpoint(session, code=code)
    given = changes.model_dump(exclude_unset=True)
    nulls = [k for k, v in given.items() if v is None]
    if nulls:
        raise ValidationFailed.on(nulls[0], "may not be null")
    before = _state(cp)
    for key, value in given.items():
        if key == "kind":
            value = str(value)
        elif key == "directions":
            value = [str(d) for d in value]
        setattr(cp, key, value)
    if "lat" in given or "lon" in given:
        cp.jurisdiction_code = _locate(session, cp.lat, cp.lon)
    after = _state(cp)
    diff = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if diff:
        cp.updated_at = utcnow()
        if diff.keys() == {"active"}:
            action = "anwang.checkpoints.checkpoint." + (
                "activated" if cp.active else "deactivated")
        else:
            action = "anwang.checkpoints.checkpoint.updated"
        audit.record(
            session, action, actor=actor, actor_role=actor_role, subject=cp.code,
            jurisdiction=cp.jurisdiction_code, data={"changes": diff, "via": via},
        )
    session.flush()
    return cp


def deactivate_checkpoint(
    session: Session, *, code: str, actor: str | None, actor_role: str | None = None
) -> Checkpoint:
    """Deactivate (the API's DELETE): reads for it are refused from now on; its stored
    reads, outages and alerts stay. Deactivating an inactive checkpoint changes nothing."""
    return update_checkpoint(
        session, code=code, changes=CheckpointUpdate(active=False), actor=actor,
        actor_role=actor_role,
    )


# --- importing ------------------------------------------------------------------------


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: (row number, field, reason); row numbers count from 1 (CSV: the first data row).
    errors: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.errors)


def _split_directions(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(";", " ").replace("|", " ").replace(",", " ").split() or None
    return value


def checkpoint_rows_from_csv(text: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a CSV with a header: ``code,name,kind,lat,lon`` and optionally
    ``directions`` (``in out``, ``in;out``), ``lanes``, ``active``,
    ``silence_threshold_s``. Empty cells are left out (the defaults apply)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    rows = []
    for n, raw in enumerate(reader, start=1):
        row: dict[str, Any] = {}
        for key, value in raw.items():
            if key is None:
                row["_extra"] = value
                continue
            key = key.strip()
            if value is None or value.strip() == "":
                continue
            row[key] = value.strip()
        if "directions" in row:
            row["directions"] = _split_directions(row["directions"])
        rows.append((n, row))
    return rows


def checkpoint_rows_from_geojson(doc: Any) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a GeoJSON FeatureCollection of Points; the properties are the CSV's
    columns, the point gives ``lon``/``lat``. A feature without a Point geometry is a row
    with an error on ``geometry``."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ValidationFailed.on("file", "not a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise ValidationFailed.on("features", "must be a list")
    rows = []
    for n, feat in enumerate(features, start=1):
        props = feat.get("properties") if isinstance(feat, dict) else None
        row: dict[str, Any] = dict(props) if isinstance(props, dict) else {}
        geom = feat.get("geometry") if isinstance(feat, dict) else None
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        if (
            isinstance(geom, dict) and geom.get("type") == "Point"
            and isinstance(coords, list) and len(coords) >= 2
        ):
            row["lon"], row["lat"] = coords[0], coords[1]
        else:
            row["_geometry"] = "a Point is needed"
        if "directions" in row:
            row["directions"] = _split_directions(row["directions"])
        rows.append((n, row))
    return rows


def parse_checkpoint_file(name: str, data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a ``.csv`` or ``.geojson``/``.json`` file (UTF-8)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed.on("file", "not UTF-8 text") from None
    lower = name.lower()
    if lower.endswith(".csv"):
        return checkpoint_rows_from_csv(text)
    if lower.endswith((".geojson", ".json")):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValidationFailed.on("file", f"malformed JSON: {exc}") from None
        return checkpoint_rows_from_geojson(doc)
    raise ValidationFailed.on("file", "a .csv, .geojson or .json file is needed")


def _row_errors(exc: ValidationError) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e["loc"]) or "row", e["msg"]) for e in exc.errors()]


def upsert_checkpoint(
    session: Session,
    *,
    row: Mapping[str, Any],
    actor: str | None,
    actor_role: str | None = None,
    via: str = "import",
) -> tuple[Literal["created", "updated", "unchanged"], Checkpoint]:
    """Create the checkpoint of ``row`` or bring the existing one with its code up to
    date (re-importing a file is safe). Raises :class:`ValidationFailed` for a bad row."""
    if "_geometry" in row:
        raise ValidationFailed.on("geometry", str(row["_geometry"]))
    if "_extra" in row:
        raise ValidationFailed.on("row", "more cells than header columns")
    try:
        data = CheckpointCreate.model_validate(dict(row))
    except ValidationError as exc:
        raise ValidationFailed(
            "; ".join(f"{f}: {r}" for f, r in _row_errors(exc)),
            errors=[FieldError(f, r) for f, r in _row_errors(exc)],
        ) from None
    existing = session.scalars(
        select(Checkpoint).where(Checkpoint.code == data.code)
    ).one_or_none()
    if existing is None:
        return "created", create_checkpoint(
            session, data=data, actor=actor, actor_role=actor_role, via=via
        )
    patch = CheckpointUpdate.model_validate(
        data.model_dump(exclude={"code"}, exclude_unset=False)
    )
    before = existing.updated_at
    cp = update_checkpoint(
        session, code=data.code, changes=patch, actor=actor, actor_role=actor_role, via=via
    )
    return ("updated" if cp.updated_at != before else "unchanged"), cp


def import_checkpoints(
    session: Session,
    *,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    actor: str | None,
    actor_role: str | None = None,
    on_row: Callable[[int], None] | None = None,
) -> ImportReport:
    """Upsert every valid row; each bad row is reported (row number, field, reason) and
    skipped, the others are kept. Each change is audited on its own."""
    report = ImportReport()
    for n, row in rows:
        try:
            with session.begin_nested():
                outcome, _ = upsert_checkpoint(
                    session, row=row, actor=actor, actor_role=actor_role
                )
        except (ValidationFailed, Conflict) as exc:
            errs = exc.errors or [FieldError("code" if isinstance(exc, Conflict) else "row",
                                             exc.detail)]
            report.errors.extend((n, e.field, e.reason) for e in errs[:1])
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
        if on_row is not None:
            on_row(n)
    return report


# =====================================================================================
# Health and outages
# =====================================================================================


def _outage_event(name: str, cp: Checkpoint, payload: dict[str, Any],
                  cause: Event | None) -> Event:
    body = {
        "summary": f"{cp.name} · {cp.code}", "checkpoint": cp.code, "name": cp.name,
        "kind": cp.kind, "lat": cp.lat, "lon": cp.lon,
        "jurisdiction_code": cp.jurisdiction_code, **payload,
    }
    audience = Audience(roles=ev.OUTAGE_ROLES, jurisdiction=cp.jurisdiction_code)
    if cause is not None:
        return cause.caused(name, body, audience=audience, source="anwang.checkpoints")
    return Event(name=name, payload=body, audience=audience, source="anwang.checkpoints")


def end_outages(
    session: Session, *, codes: Sequence[str], now: datetime, cause: Event | None = None
) -> list[str]:
    """Clear ``offline_since`` of the checkpoints among ``codes`` that were offline,
    close their outage and announce ``came_online``; returns their codes."""
    if not codes:
        return []
    back = list(session.scalars(
        select(Checkpoint).where(Checkpoint.code.in_(codes), Checkpoint.offline_since.is_not(None))
        .execution_options(skip_scope=True)
    ))
    ended = []
    for cp in back:
        claimed = _rowcount(session.execute(
            update(_CHECKPOINTS)
            .where(_CHECKPOINTS.c.id == cp.id, _CHECKPOINTS.c.offline_since.is_not(None))
            .values(offline_since=None)
        ))
        if not claimed:
            continue
        session.execute(
            update(_OUTAGES)
            .where(_OUTAGES.c.checkpoint_code == cp.code,
                   _OUTAGES.c.ended_at.is_(None))
            .values(ended_at=now)
        )
        session.refresh(cp)
        audit.record(session, "anwang.checkpoints.checkpoint.came_online", actor=ACTOR_SYSTEM,
                     subject=cp.code, jurisdiction=cp.jurisdiction_code,
                     data={"last_read_at": cp.last_read_at.isoformat() if cp.last_read_at
                           else None})
        publish_after_commit(session, _outage_event(
            ev.CHECKPOINT_CAME_ONLINE, cp,
            {"last_read_at": cp.last_read_at.isoformat() if cp.last_read_at else None}, cause,
        ))
        ended.append(cp.code)
    return ended


def scan_offline(session: Session, *, now: datetime | None = None) -> list[str]:
    """Mark the active checkpoints that have been silent longer than their threshold as
    offline, once per outage: the first scan that sees the silence records an outage
    (from the last read), audits it and publishes ``went_offline`` to the dispatchers of
    the checkpoint's jurisdiction; later scans of the same outage do nothing. Safe to
    run from several processes at once (the claim is a conditional UPDATE). Returns the
    codes that went offline in this scan."""
    now = _now(now)
    candidates = session.scalars(
        select(Checkpoint).where(
            Checkpoint.active.is_(True), Checkpoint.offline_since.is_(None),
            Checkpoint.last_read_at.is_not(None),
        ).order_by(Checkpoint.code).execution_options(skip_scope=True)
    ).all()
    table = _CHECKPOINTS
    went = []
    for cp in candidates:
        assert cp.last_read_at is not None
        if now - cp.last_read_at <= timedelta(seconds=cp.silence_threshold_s):
            continue
        claimed = _rowcount(session.execute(
            update(table).where(table.c.id == cp.id, table.c.offline_since.is_(None))
            .values(offline_since=now)
        ))
        if not claimed:
            continue
        session.add(CheckpointOutage(checkpoint_code=cp.code, started_at=cp.last_read_at,
                                     detected_at=now))
        silent_s = int((now - cp.last_read_at).total_seconds())
        audit.record(session, "anwang.checkpoints.checkpoint.went_offline", actor=ACTOR_SYSTEM,
                     subject=cp.code, jurisdiction=cp.jurisdiction_code,
                     data={"last_read_at": cp.last_read_at.isoformat(), "silent_s": silent_s,
                           "threshold_s": cp.silence_threshold_s})
        publish_after_commit(session, _outage_event(
            ev.CHECKPOINT_WENT_OFFLINE, cp,
            {"last_read_at": cp.last_read_at.isoformat(), "silent_s": silent_s}, None,
        ))
        went.append(cp.code)
    session.flush()
    return went


def health_status(cp: Checkpoint, now: datetime) -> HealthStatus:
    """Live status: a silence past the threshold is ``offline`` even before the scan
    has recorded it."""
    if not cp.active:
        return HealthStatus.INACTIVE
    if cp.last_read_at is None:
        return HealthStatus.NEVER
    if cp.offline_since is not None or (
        now - cp.last_read_at > timedelta(seconds=cp.silence_threshold_s)
    ):
        return HealthStatus.OFFLINE
    return HealthStatus.ONLINE


def _health(cp: Checkpoint, now: datetime, last_hour: int, day: int) -> CheckpointHealth:
    return CheckpointHealth(
        code=cp.code, name=cp.name, kind=cp.kind, lat=cp.lat, lon=cp.lon,
        jurisdiction_code=cp.jurisdiction_code, active=cp.active,
        status=health_status(cp, now), last_read_at=cp.last_read_at,
        offline_since=cp.offline_since, silence_threshold_s=cp.silence_threshold_s,
        reads_last_hour=last_hour, reads_24h=day,
    )


def list_health(
    session: Session, *, now: datetime | None = None, kind: str | None = None,
    status: HealthStatus | str | None = None,
) -> list[CheckpointHealth]:
    """Health of every checkpoint in scope: status, last read, reads in the last hour
    and in the last 24 hours (one grouped query)."""
    now = _now(now)
    cps = list_checkpoints(session, kind=kind)
    table = _READS
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(hours=24)
    counts = {
        code: (int(h or 0), int(d or 0))
        for code, h, d in session.execute(
            select(
                table.c.checkpoint_code,
                func.sum(case((table.c.captured_at >= hour_ago, 1), else_=0)),
                func.count(),
            ).where(table.c.captured_at >= day_ago, table.c.captured_at <= now)
            .group_by(table.c.checkpoint_code)
        )
    }
    out = [_health(cp, now, *counts.get(cp.code, (0, 0))) for cp in cps]
    if status is not None:
        out = [h for h in out if h.status == HealthStatus(status)]
    return out


def checkpoint_health(
    session: Session, *, code: str, now: datetime | None = None, outages: int = 20
) -> CheckpointHealth:
    """One checkpoint's health with reads per hour over the last 24 hours (the current
    hour last) and its most recent outages."""
    now = _now(now)
    cp = get_checkpoint(session, code=code)
    table = _READS
    current = now.replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=24 - i) for i in range(25)]
    columns = [
        func.sum(case((and_(table.c.captured_at >= s, table.c.captured_at < s + timedelta(hours=1)),
                       1), else_=0))
        for s in starts
    ]
    row = session.execute(
        select(*columns, func.sum(case((table.c.captured_at >= now - timedelta(hours=1), 1),
                                       else_=0)))
        .where(table.c.checkpoint_code == cp.code, table.c.captured_at >= starts[0],
               table.c.captured_at <= now)
    ).one()
    per_hour = [HourCount(hour=s, count=int(n or 0)) for s, n in zip(starts, row[:-1], strict=True)]
    recent = session.scalars(
        select(CheckpointOutage).where(CheckpointOutage.checkpoint_code == cp.code)
        .order_by(CheckpointOutage.started_at.desc()).limit(outages)
    ).all()
    day = int(session.scalar(
        select(func.count()).select_from(table).where(
            table.c.checkpoint_code == cp.code,
            table.c.captured_at >= now - timedelta(hours=24), table.c.captured_at <= now)
    ) or 0)
    health = _health(cp, now, int(row[-1] or 0), day)
    health.reads_per_hour = per_hour
    health.outages = [OutageOut.model_validate(o) for o in recent]
    return health


# =====================================================================================
# Retention
# =====================================================================================

#: Days a read with a hit is kept after its last alert was closed, when not configured
#: (the setting ``alert_retention_days``).
DEFAULT_ALERT_RETENTION_DAYS = 365
#: Seconds the PostgreSQL purge waits for a lock on a partition (or on the table to drop
#: one) before leaving that partition to the next round.
PURGE_LOCK_TIMEOUT_S = 5
_PURGE_LOCK = "anwang.checkpoints.purge"
#: SQLSTATEs after which a partition is left to the next round: lock_not_available,
#: deadlock_detected (a late read being stored into the same day).
_DEFERRABLE = frozenset({"55P03", "40P01"})


@dataclass(frozen=True)
class PurgeReport:
    """What one purge removed.

    ``deleted`` counts every read removed: ``unmatched`` reads that matched nothing and
    left the read window, plus ``released`` reads with a hit whose alerts had all been
    closed for longer than the alert retention (or that raised no alert and were captured
    before it). On PostgreSQL ``partitions_dropped`` are day partitions removed whole and
    ``partitions_rebuilt`` those that still held kept reads and were replaced by a copy of
    just those; ``partitions_deferred`` could not be locked in time and are left to the
    next round. ``skipped`` is set when another process was purging at the same moment
    (nothing was done: that one does it).
    """

    deleted: int
    cutoff: datetime
    unmatched: int = 0
    released: int = 0
    alert_cutoff: datetime | None = None
    partitions_dropped: tuple[str, ...] = ()
    partitions_rebuilt: tuple[str, ...] = ()
    partitions_deferred: tuple[str, ...] = ()
    skipped: bool = False

    def as_audit(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "alert_cutoff": self.alert_cutoff.isoformat() if self.alert_cutoff else None,
            "unmatched": self.unmatched, "released": self.released,
            "partitions_dropped": list(self.partitions_dropped),
            "partitions_rebuilt": list(self.partitions_rebuilt),
            "partitions_deferred": list(self.partitions_deferred),
        }


def _alerts_service() -> Any | None:
    """The alerts service, imported lazily (it depends on this package's facts)."""
    if importlib.util.find_spec("anwang.alerts.service") is None:
        return None
    return importlib.import_module("anwang.alerts.service")


def _kept(table: Any, alert_cutoff: datetime) -> ColumnElement[bool]:
    """SQL, over ``table``'s columns (``plate_reads`` or a copy of a partition): the read
    is kept beyond the read window — it has a hit, and an alert that keeps it (open,
    acknowledged, or closed at or after ``alert_cutoff``), or it raised no alert and was
    captured at or after ``alert_cutoff``."""
    c = table.c
    alerts = _alerts_service()
    if alerts is None:
        return and_(c.hit.is_(True), c.captured_at >= alert_cutoff)
    kept: ColumnElement[bool] = and_(c.hit.is_(True), or_(
        alerts.keeps_read(c.id, c.captured_at, closed_before=alert_cutoff),
        and_(~alerts.raised_for_read(c.id, c.captured_at), c.captured_at >= alert_cutoff),
    ))
    return kept


def _delete_expired(
    session: Session, *, conds: list[ColumnElement[bool]], kept: ColumnElement[bool]
) -> tuple[int, int]:
    """Delete the rows matching ``conds`` that are not kept: (unmatched, released)."""
    table = _READS
    unmatched = _rowcount(session.execute(
        delete(table).where(*conds, table.c.hit.is_(False))
        .execution_options(skip_scope=True)
    ))
    released = _rowcount(session.execute(
        delete(table).where(*conds, table.c.hit.is_(True), ~kept)
        .execution_options(skip_scope=True)
    ))
    return unmatched, released


@dataclass
class _PartitionOutcome:
    unmatched: int = 0
    released: int = 0
    dropped: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)


def _day_range(day: date) -> list[ColumnElement[bool]]:
    start = storage.day_start(day)
    return [_READS.c.captured_at >= start, _READS.c.captured_at < start + timedelta(days=1)]


def _purge_candidates(
    session: Session, days: Sequence[date], kept: ColumnElement[bool]
) -> list[date]:
    """Those of the expired ``days`` whose partition is empty or holds a read that is
    not kept. Each test stops at the first such row, so a fresh day costs next to
    nothing here, and a day already reduced to its kept reads costs a scan of those."""
    table = _READS
    out: list[date] = []
    for part in _chunks(list(days), 100):
        branches = [
            select(literal(i).label("i")).where(or_(
                ~exists(select(table.c.id).where(*_day_range(day))),
                exists(select(table.c.id).where(*_day_range(day), ~kept)),
            ))
            for i, day in enumerate(part)
        ]
        found = session.scalars(union_all(*branches).execution_options(skip_scope=True))
        out.extend(part[i] for i in found)
    return sorted(out)


def _purge_partition(
    session: Session, day: date, name: str, alert_cutoff: datetime, out: _PartitionOutcome
) -> None:
    """Drop the expired partition ``name`` or, when it holds kept reads, replace it with
    a fresh partition holding only those (detach, rename, create, copy back, drop): the
    writes are proportional to the kept reads, the one scan (counting) to the day's.
    In the caller's savepoint; a lock wait past the timeout raises."""
    table = _READS
    session.execute(text(f'LOCK TABLE ONLY "{name}" IN SHARE MODE'))
    total, hits, kept = session.execute(
        select(func.count(), func.count().filter(table.c.hit.is_(True)),
               func.count().filter(_kept(table, alert_cutoff)))
        .where(*_day_range(day)).execution_options(skip_scope=True)
    ).one()
    if kept == total and total:
        return
    if kept == 0:
        session.execute(text(f'DROP TABLE "{name}"'))
        out.dropped.append(name)
    else:
        old = f"{name}_old"
        fresh = sa_table(name, *(column(c.name, c.type) for c in table.columns))
        copy = sa_table(old, *(column(c.name, c.type) for c in table.columns))
        session.execute(text(f'ALTER TABLE {storage.TABLE} DETACH PARTITION "{name}"'))
        session.execute(text(f'ALTER TABLE "{name}" RENAME TO "{old}"'))
        session.execute(text(storage.partition_ddl(day)))
        session.execute(insert(fresh).from_select(
            [c.name for c in table.columns],
            select(*copy.c).where(_kept(copy, alert_cutoff)),
        ).execution_options(skip_scope=True))
        session.execute(text(f'DROP TABLE "{old}"'))
        out.rebuilt.append(name)
    out.unmatched += int(total) - int(hits)
    out.released += int(hits) - int(kept)


def _purge_partitions(
    session: Session, *, cutoff: datetime, alert_cutoff: datetime
) -> _PartitionOutcome:
    """PostgreSQL: deal with the day partitions wholly before ``cutoff``, each in a
    savepoint of its own (see :func:`_purge_partition`)."""
    out = _PartitionOutcome()
    first_live = storage.day_of(cutoff)
    expired = {d: n for d, n in storage.list_partitions(session).items() if d < first_live}
    if not expired:
        return out
    kept = _kept(_READS, alert_cutoff)
    for day in _purge_candidates(session, sorted(expired), kept):
        name = expired[day]
        try:
            with session.begin_nested():
                _purge_partition(session, day, name, alert_cutoff, out)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _DEFERRABLE:
                raise
            out.deferred.append(name)
    storage.forget(session, [d for d, n in expired.items() if n in out.dropped])
    return out


def purge_reads(
    session: Session,
    *,
    retention_hours: int,
    alert_retention_days: int = DEFAULT_ALERT_RETENTION_DAYS,
    now: datetime | None = None,
    actor: str = ACTOR_SYSTEM,
    audit_empty: bool = False,
) -> PurgeReport:
    """Remove the reads that are past their retention (the rules are on
    :class:`~anwang.checkpoints.models.PlateRead`): reads captured before ``now -
    retention_hours`` that matched nothing, and those with a hit that no alert keeps any
    more (all closed before ``now - alert_retention_days``).

    On PostgreSQL a day partition wholly before the cutoff is dropped, or rebuilt with
    only its kept reads; the day the cutoff falls in is purged with ``DELETE``. Only one
    process purges at a time (a transaction-scoped advisory lock; another one returns a
    ``skipped`` report). On SQLite it is a ``DELETE`` on the ``captured_at`` index.

    Audited as ``anwang.checkpoints.reads.purged`` with the count and the report — a run
    that removes nothing is audited only when ``audit_empty`` (the ``anwang purge``
    command), so the periodic purge does not fill the trail with empty rounds."""
    now = _now(now)
    cutoff = now - timedelta(hours=retention_hours)
    alert_cutoff = now - timedelta(days=alert_retention_days)
    table = _READS
    kept = _kept(table, alert_cutoff)
    conds: list[ColumnElement[bool]] = [table.c.captured_at < cutoff]
    parts = _PartitionOutcome()
    if session.get_bind().dialect.name == "postgresql":
        if not session.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                              {"k": _PURGE_LOCK}):
            return PurgeReport(deleted=0, cutoff=cutoff, alert_cutoff=alert_cutoff,
                               skipped=True)
        session.execute(text(f"SET LOCAL lock_timeout = '{PURGE_LOCK_TIMEOUT_S}s'"))
        # The rows of the cutoff's own day go by DELETE, first: the partition work below
        # takes the table's strongest lock until the commit, so it comes last.
        conds.append(table.c.captured_at >= storage.day_start(storage.day_of(cutoff)))
        unmatched, released = _delete_expired(session, conds=conds, kept=kept)
        parts = _purge_partitions(session, cutoff=cutoff, alert_cutoff=alert_cutoff)
        session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    else:
        unmatched, released = _delete_expired(session, conds=conds, kept=kept)
    report = PurgeReport(
        deleted=unmatched + released + parts.unmatched + parts.released, cutoff=cutoff,
        unmatched=unmatched + parts.unmatched, released=released + parts.released,
        alert_cutoff=alert_cutoff, partitions_dropped=tuple(parts.dropped),
        partitions_rebuilt=tuple(parts.rebuilt), partitions_deferred=tuple(parts.deferred),
    )
    if report.deleted or parts.dropped or parts.rebuilt or audit_empty:
        audit.record(session, "anwang.checkpoints.reads.purged", actor=actor,
                     result_count=report.deleted,
                     data={**report.as_audit(), "retention_hours": retention_hours,
                           "alert_retention_days": alert_retention_days})
    return report


def read_counts(session: Session, *, since: datetime) -> dict[str, int]:
    """Stored reads since ``since``, with and without a hit (for reports)."""
    table = _READS
    rows = session.execute(
        select(table.c.hit, func.count()).where(table.c.captured_at >= since)
        .group_by(table.c.hit)
    ).all()
    counts = {"hit": 0, "no_hit": 0}
    for hit, n in rows:
        counts["hit" if hit else "no_hit"] += int(n)
    return counts
