"""Alert use cases: raising and deduplicating, the lifecycle, escalation, statistics.

Raising
-------
:func:`raise_for_hits` turns the watch-list hits of one read into alerts
(:func:`raise_for_reads`: of a batch of reads, in a few statements). A hit of an
entry at a checkpoint where the same entry already has an alert that is not closed and
was last seen within the dedupe window (setting ``alert_dedupe_minutes``, 10) updates
that alert — ``count``, ``last_seen_at``, the latest read — instead of raising another.
Every hit is one ``alert_hits`` row keyed by (read, entry): a read delivered twice counts
once and never raises a second alert. Concurrent raisers of one entry at one checkpoint
serialise on a transaction-scoped advisory lock on PostgreSQL (SQLite has one writer),
taken after the audit writer lock so that raisers never deadlock on the two.

Who is told
-----------
An alert is pushed to the entry's recipients: their roles (default ``dispatcher``,
``officer``, ``commander``) in their jurisdictions (default: the checkpoint's police
station, or the checkpoint's own jurisdiction when it has no station above it). The
alert row belongs to the checkpoint's jurisdiction (``JurisdictionScoped``), which is
what decides who may list and handle it.

Lifecycle
---------
``open`` → ``acknowledged`` → ``closed`` with an outcome (``confirmed``, ``misread``,
``not_located``, ``duplicate``); anything else is a 409
``anwang.alerts.invalid_transition``. An alert still ``open`` after M minutes (setting
``alert_escalate_minutes``, 2) is escalated one level up the jurisdiction tree — station
→ district → the whole city — with ``commander`` added to its roles, and again after
another M minutes, until it is city-wide. :func:`scan_escalations` does it; a periodic
task runs it (:mod:`.handlers`).
"""

from __future__ import annotations

import functools
import logging
import statistics as stats
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import exists, func, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from anwang.alerts import events
from anwang.alerts.models import Alert, AlertHit
from anwang.auth import service as auth_service
from anwang.checkpoints.facts import ReadFacts
from anwang.core import audit
from anwang.core.db import publish_after_commit
from anwang.core.errors import Conflict, NotFound, ValidationFailed
from anwang.core.events import new_id, utcnow
from anwang.watchlist import service as watchlist_service
from anwang.watchlist.matcher import Hit
from anwang.watchlist.models import WatchEntry

log = logging.getLogger(__name__)


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    MISREAD = "misread"
    NOT_LOCATED = "not_located"
    DUPLICATE = "duplicate"


DEFAULT_ROLES: tuple[str, ...] = ("dispatcher", "officer", "commander")
ESCALATION_ROLE = "commander"
DEFAULT_DEDUPE_MINUTES = 10
DEFAULT_ESCALATE_MINUTES = 2
SUBJECT = "alert:"
#: The actor of what anwang does by itself (raising, escalating).
SYSTEM_ACTOR = "anwang"


@functools.lru_cache(maxsize=1)
def _env_settings() -> Any:
    from anwang.settings import Settings

    return Settings()


def _setting(session: Session, name: str, explicit: int | None) -> int:
    """An explicit value, else the unit of work's ``settings``, else the environment's."""
    if explicit is not None:
        return explicit
    settings = session.info.get("settings")
    if settings is None:
        try:
            settings = _env_settings()
        except Exception:  # noqa: BLE001 - invalid environment: keep the documented default
            return {"alert_dedupe_minutes": DEFAULT_DEDUPE_MINUTES,
                    "alert_escalate_minutes": DEFAULT_ESCALATE_MINUTES}[name]
    return int(getattr(settings, name))


def _subject(alert_id: str) -> str:
    return SUBJECT + alert_id


# --- jurisdictions --------------------------------------------------------------------


def _jurisdiction(session: Session, code: str) -> Any | None:
    try:
        return auth_service.get_jurisdiction(session, code=code)
    except NotFound:
        return None


def first_level(session: Session, code: str | None) -> str | None:
    """Where an alert at ``code`` is pushed first: the nearest enclosing jurisdiction
    that is not a grid (normally the police station), or ``code`` itself."""
    current = code
    while current is not None:
        j = _jurisdiction(session, current)
        if j is None:
            return code
        if j.level != "grid":
            return str(j.code)
        current = j.parent_code
    return code


def next_level(session: Session, code: str) -> str | None:
    """One level up: the parent, or None (the whole city) above a district."""
    j = _jurisdiction(session, code)
    if j is None or j.parent_code is None:
        return None
    parent = _jurisdiction(session, j.parent_code)
    if parent is None or parent.level == "city" or parent.parent_code is None:
        return None
    return str(parent.code)


def _targets(entry: WatchEntry | None, track: str | None) -> list[str | None]:
    if entry is not None and entry.recipient_jurisdictions:
        return list(entry.recipient_jurisdictions)
    return [track]


def _description(alert: Alert) -> str:
    return watchlist_service.vehicle_summary(alert.vehicle)


def _push(
    session: Session, name: str, alert: Alert, *, jurisdictions: Iterable[str | None],
    actor: str | None = None,
) -> None:
    roles = tuple(alert.audience_roles or DEFAULT_ROLES)
    desc = _description(alert)
    for code in jurisdictions:
        publish_after_commit(session, events.alert_event(
            name, alert, vehicle_description=desc, roles=roles, jurisdiction=code, actor=actor,
        ))


def _entry(
    action: str, alert: Alert, *, actor: str | None, actor_role: str | None = None,
    data: dict[str, Any] | None = None, reason: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {"action": action, "actor": actor, "actor_role": actor_role,
            "subject": _subject(alert.id), "case_ref": alert.case_ref, "reason": reason,
            "jurisdiction": alert.jurisdiction_code,
            "data": {"status": alert.status, "entry": alert.entry_id, **(data or {})},
            "at": at}


def _audit(
    session: Session, action: str, alert: Alert, *, actor: str | None,
    actor_role: str | None = None, data: dict[str, Any] | None = None,
    reason: str | None = None, at: datetime | None = None,
) -> None:
    audit.record(session, **_entry(action, alert, actor=actor, actor_role=actor_role,
                                   data=data, reason=reason, at=at))


# --- raising --------------------------------------------------------------------------


def _lock(session: Session, entry_id: str, checkpoint: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                        {"k": f"alert:{entry_id}:{checkpoint}"})


def _unscoped(stmt: Any) -> Any:
    return stmt.execution_options(skip_scope=True)


def _open_alert(
    session: Session, entry_id: str, checkpoint: str, at: datetime, window: timedelta
) -> Alert | None:
    return session.scalars(_unscoped(
        select(Alert)
        .where(
            Alert.entry_id == entry_id,
            Alert.checkpoint_code == checkpoint,
            Alert.status.in_([Status.OPEN.value, Status.ACKNOWLEDGED.value]),
            Alert.last_seen_at >= at - window,
            Alert.first_seen_at <= at + window,
        )
        .order_by(Alert.last_seen_at.desc())
        .limit(1)
    )).first()


def raise_for_hits(
    session: Session,
    *,
    read: ReadFacts,
    hits: Sequence[Hit],
    dedupe_minutes: int | None = None,
    now: datetime | None = None,
) -> int:
    """Raise or refresh the alerts of one read's hits; returns how many are NEW.

    Idempotent on (read id, entry): calling it again for the same read changes nothing.
    Audited (``alert.raised`` / ``alert.updated``) and published after commit to the
    entry's recipients (see the module docstring). ``dedupe_minutes`` defaults to the
    setting ``alert_dedupe_minutes``.
    """
    return raise_for_reads(session, [(read, hits)], dedupe_minutes=dedupe_minutes, now=now)


#: Ids per ``IN (...)`` of the look-ups below.
_CHUNK = 500


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    return (values[i:i + _CHUNK] for i in range(0, len(values), _CHUNK))


def raise_for_reads(
    session: Session,
    found: Sequence[tuple[ReadFacts, Sequence[Hit]]],
    *,
    dedupe_minutes: int | None = None,
    now: datetime | None = None,
) -> int:
    """:func:`raise_for_hits` of several reads, in their order, with the same outcome as
    one call per read: the entries, the hits already counted and the open alerts the
    reads may join are each looked up once, the audit entries go in with one
    :func:`audit.record_many` — a batch of a checkpoint's reads raises its alerts in a
    few statements, not a dozen per hit. Returns how many alerts are new."""
    found = [(read, hits) for read, hits in found if hits]
    if not found:
        return 0
    now = now or utcnow()
    window = timedelta(minutes=_setting(session, "alert_dedupe_minutes", dedupe_minutes))
    entries = watchlist_service.entries_by_id(
        session, ids=sorted({h.entry_id for _, hits in found for h in hits}))
    # Every hit writes an audit entry. Taking the audit lock before the advisory locks
    # gives all raisers one lock order; otherwise a worker that audited a hit waits for
    # another's advisory lock while that one waits for the audit lock. The advisory locks
    # themselves are taken in one (sorted) order too.
    audit.take_writer_lock(session)
    keys = sorted({(h.entry_id, read.checkpoint_code) for read, hits in found for h in hits
                   if h.entry_id in entries})
    for entry_id, checkpoint in keys:
        _lock(session, entry_id, checkpoint)
    counted: set[tuple[str, str]] = set()
    for part in _chunks(sorted({read.read_id for read, _ in found})):
        counted.update((read_id, entry_id) for read_id, entry_id in session.execute(
            select(AlertHit.read_id, AlertHit.entry_id).where(AlertHit.read_id.in_(part))))
    # The alerts not closed that any of the reads could join (an alert is only ever
    # seen over a longer span as it is joined, so these bounds miss none).
    first = min(read.captured_at for read, _ in found) - window
    last = max(read.captured_at for read, _ in found) + window
    joinable: dict[tuple[str, str], list[Alert]] = {key: [] for key in keys}
    checkpoints = sorted({c for _, c in keys})
    for part in _chunks(sorted({e for e, _ in keys})):
        for alert in session.scalars(_unscoped(select(Alert).where(
            Alert.entry_id.in_(part), Alert.checkpoint_code.in_(checkpoints),
            Alert.status.in_([Status.OPEN.value, Status.ACKNOWLEDGED.value]),
            Alert.last_seen_at >= first, Alert.first_seen_at <= last,
        ))):
            if (alert.entry_id, alert.checkpoint_code) in joinable:
                joinable[(alert.entry_id, alert.checkpoint_code)].append(alert)
    tracks: dict[str | None, str | None] = {}
    entries_out: list[dict[str, Any]] = []
    hit_rows: list[AlertHit] = []
    new = 0
    for read, hits in found:
        at = read.captured_at
        for hit in hits:
            entry = entries.get(hit.entry_id)
            if entry is None:
                log.warning("a hit names watch-list entry %s, which does not exist",
                            hit.entry_id)
                continue
            if (read.read_id, entry.id) in counted:
                continue
            counted.add((read.read_id, entry.id))
            candidates = joinable[(entry.id, read.checkpoint_code)]
            # The one last seen latest among those seen within the window of this read.
            alert = max((a for a in candidates
                         if a.last_seen_at >= at - window and a.first_seen_at <= at + window),
                        key=_last_seen, default=None)
            if alert is None:
                code = read.jurisdiction_code
                if code not in tracks:
                    tracks[code] = first_level(session, code)
                track = tracks[code]
                alert = Alert(
                    id=new_id(), entry_id=entry.id, read_id=read.read_id,
                    last_read_id=read.read_id, checkpoint_code=read.checkpoint_code,
                    checkpoint_name=read.checkpoint_name, checkpoint_kind=read.checkpoint_kind,
                    direction=read.direction, lane=read.lane, plate=read.plate,
                    plate_color=read.plate_color, confidence=read.confidence,
                    pattern=entry.pattern, match_kind=hit.kind.value, priority=hit.priority,
                    reason=entry.reason, case_ref=entry.case_ref, vehicle=entry.vehicle,
                    read_vehicle=read.vehicle, image_ref=read.image_ref, lat=read.lat,
                    lon=read.lon, jurisdiction_code=read.jurisdiction_code,
                    status=Status.OPEN.value, count=1, first_seen_at=at,
                    last_seen_at=at, raised_at=now, escalation_level=0,
                    audience_roles=list(entry.recipient_roles or DEFAULT_ROLES),
                    audience_jurisdiction=track,
                )
                session.add(alert)
                candidates.append(alert)
                entries_out.append(_entry(
                    "anwang.alerts.alert.raised", alert, actor=SYSTEM_ACTOR, data={
                        "read": read.read_id, "checkpoint": read.checkpoint_code,
                        "match_kind": alert.match_kind, "priority": alert.priority,
                    }, at=now))
                _push(session, events.RAISED, alert, jurisdictions=_targets(entry, track))
                new += 1
            else:
                alert.count += 1
                if at >= alert.last_seen_at:
                    alert.last_seen_at = at
                    alert.last_read_id = read.read_id
                    alert.plate = read.plate
                    alert.direction = read.direction
                    alert.lane = read.lane
                    alert.match_kind = hit.kind.value
                alert.first_seen_at = min(alert.first_seen_at, at)
                alert.priority = min(alert.priority, hit.priority)
                entries_out.append(_entry(
                    "anwang.alerts.alert.updated", alert, actor=SYSTEM_ACTOR,
                    data={"read": read.read_id, "count": alert.count}, at=now))
                _push(session, events.UPDATED, alert,
                      jurisdictions=_targets(entry, alert.audience_jurisdiction))
            hit_rows.append(AlertHit(
                read_id=read.read_id, entry_id=entry.id, alert_id=alert.id,
                match_kind=hit.kind.value, plate=read.plate,
                checkpoint_code=read.checkpoint_code, captured_at=at, created_at=now,
            ))
    session.flush()  # the alerts before the hits that name them
    session.add_all(hit_rows)
    audit.record_many(session, entries_out)
    session.flush()
    return new


def _last_seen(alert: Alert) -> datetime:
    return alert.last_seen_at


# --- reading --------------------------------------------------------------------------


def get_alert(session: Session, *, alert_id: str, for_update: bool = False) -> Alert:
    """The alert, if it lies in the session's scope (404 ``anwang.alerts.not_found``
    otherwise — an alert outside one's jurisdiction does not exist for one)."""
    stmt = select(Alert).where(Alert.id == alert_id)
    if for_update:
        stmt = stmt.with_for_update()
    alert = session.scalars(stmt).one_or_none()
    if alert is None:
        raise NotFound(f"no alert {alert_id!r}", code="anwang.alerts.not_found")
    return alert


def list_alerts(
    session: Session,
    *,
    status: str | None = None,
    checkpoint: str | None = None,
    since: datetime | None = None,
    reason: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Alert]:
    """Alerts in the session's scope, newest first."""
    stmt = select(Alert).order_by(Alert.raised_at.desc(), Alert.id.desc())
    if status:
        stmt = stmt.where(Alert.status == status)
    if checkpoint:
        stmt = stmt.where(Alert.checkpoint_code == checkpoint)
    if since:
        stmt = stmt.where(Alert.last_seen_at >= since)
    if reason:
        stmt = stmt.where(Alert.reason == reason)
    if kind:
        stmt = stmt.where(Alert.match_kind == kind)
    return session.scalars(stmt.limit(max(1, min(limit, 1000))).offset(max(0, offset))).all()


def alert_history(session: Session, *, alert: Alert) -> list[audit.AuditEntry]:
    rows = session.scalars(
        select(audit.AuditEntry).where(audit.AuditEntry.subject == _subject(alert.id))
        .order_by(audit.AuditEntry.seq)
    )
    return list(rows)


def vehicle_description(alert: Alert) -> str:
    return _description(alert)


# --- the lifecycle --------------------------------------------------------------------


def _bad_transition(alert: Alert, wanted: str) -> Conflict:
    return Conflict(f"An alert that is {alert.status} cannot be {wanted}.",
                    code="anwang.alerts.invalid_transition")


def acknowledge_alert(
    session: Session, *, alert_id: str, actor: str, actor_role: str | None = None,
    now: datetime | None = None,
) -> Alert:
    """``open`` → ``acknowledged``: someone is on it (stops escalation)."""
    now = now or utcnow()
    alert = get_alert(session, alert_id=alert_id, for_update=True)
    if alert.status != Status.OPEN:
        raise _bad_transition(alert, "acknowledged")
    alert.status = Status.ACKNOWLEDGED.value
    alert.acknowledged_at = now
    alert.acknowledged_by = actor
    _audit(session, "anwang.alerts.alert.acknowledged", alert, actor=actor,
           actor_role=actor_role, data={
               "seconds_to_acknowledge": round((now - alert.raised_at).total_seconds(), 3)},
           at=now)
    _push(session, events.ACKNOWLEDGED, alert, jurisdictions=[alert.audience_jurisdiction],
          actor=actor)
    return alert


def close_alert(
    session: Session, *, alert_id: str, outcome: str, actor: str,
    actor_role: str | None = None, note: str | None = None, now: datetime | None = None,
) -> Alert:
    """``acknowledged`` → ``closed`` with an outcome and an optional note."""
    now = now or utcnow()
    try:
        result = Outcome(outcome)
    except ValueError:
        raise ValidationFailed.on(
            "outcome", f"one of {', '.join(o.value for o in Outcome)}") from None
    note = (note or "").strip() or None
    if note is not None and len(note) > 2000:
        raise ValidationFailed.on("note", "at most 2000 characters")
    alert = get_alert(session, alert_id=alert_id, for_update=True)
    if alert.status != Status.ACKNOWLEDGED:
        raise _bad_transition(alert, "closed")
    alert.status = Status.CLOSED.value
    alert.outcome = result.value
    alert.note = note
    alert.closed_at = now
    alert.closed_by = actor
    _audit(session, "anwang.alerts.alert.closed", alert, actor=actor, actor_role=actor_role,
           reason=note, data={"outcome": result.value}, at=now)
    _push(session, events.CLOSED, alert, jurisdictions=[alert.audience_jurisdiction],
          actor=actor)
    return alert


def scan_escalations(
    session: Session, *, now: datetime | None = None,
    escalate_after_minutes: int | None = None, limit: int = 500,
) -> int:
    """Escalate every alert still ``open`` M minutes after it was raised or last
    escalated; returns how many were escalated. Safe to run in several processes at once
    (rows being escalated elsewhere are skipped)."""
    now = now or utcnow()
    minutes = _setting(session, "alert_escalate_minutes", escalate_after_minutes)
    cutoff = now - timedelta(minutes=minutes)
    due_at = func.coalesce(Alert.escalated_at, Alert.raised_at)
    stmt = _unscoped(
        select(Alert)
        .where(Alert.status == Status.OPEN, Alert.audience_jurisdiction.is_not(None),
               due_at <= cutoff)
        .order_by(Alert.raised_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    entries: list[dict[str, Any]] = []
    for alert in session.scalars(stmt):
        previous = alert.audience_jurisdiction
        assert previous is not None
        alert.audience_jurisdiction = next_level(session, previous)
        if ESCALATION_ROLE not in (alert.audience_roles or []):
            alert.audience_roles = [*(alert.audience_roles or []), ESCALATION_ROLE]
        alert.escalation_level += 1
        alert.escalated_at = now
        entries.append(_entry("anwang.alerts.alert.escalated", alert, actor=SYSTEM_ACTOR, data={
            "level": alert.escalation_level, "from": previous,
            "to": alert.audience_jurisdiction, "minutes": minutes,
        }, at=now))
        _push(session, events.ESCALATED, alert, jurisdictions=[alert.audience_jurisdiction])
    # One entry per alert, appended together: the audit writer lock (which raising an
    # alert needs too) is held for a few statements, not for four per alert.
    return audit.record_many(session, entries)


# --- figures --------------------------------------------------------------------------


def count_hits(session: Session, *, since: datetime) -> int:
    """Watch-list hits of reads captured since ``since`` (for the transparency report)."""
    return int(session.scalar(
        select(func.count()).select_from(AlertHit).where(AlertHit.captured_at >= since)
    ) or 0)


def linked_read_ids(
    session: Session, *, read_ids: Iterable[str], closed_before: datetime | None = None
) -> set[str]:
    """Those of ``read_ids`` that belong to an alert which is not closed, or was closed
    at or after ``closed_before`` (for retention: such reads are kept)."""
    wanted = list(set(read_ids))
    if not wanted:
        return set()
    keep = Alert.status != Status.CLOSED
    if closed_before is not None:
        keep = keep | (Alert.closed_at >= closed_before)
    rows = session.scalars(_unscoped(
        select(AlertHit.read_id).join(Alert, Alert.id == AlertHit.alert_id)
        .where(AlertHit.read_id.in_(wanted), keep)
    ))
    return set(rows)


def keeps_read(
    read_id: ColumnElement[str], captured_at: ColumnElement[datetime], *,
    closed_before: datetime,
) -> ColumnElement[bool]:
    """SQL for "the read (``read_id``, ``captured_at``) belongs to an alert that keeps
    it": one that is open or acknowledged, or was closed at or after ``closed_before``
    (the alert retention). For the retention purge of plate reads, which correlates the
    two columns with its own table."""
    return exists(
        select(AlertHit.read_id).join(Alert, Alert.id == AlertHit.alert_id).where(
            AlertHit.read_id == read_id, AlertHit.captured_at == captured_at,
            or_(Alert.status != Status.CLOSED.value, Alert.closed_at.is_(None),
                Alert.closed_at >= closed_before),
        )
    )


def raised_for_read(
    read_id: ColumnElement[str], captured_at: ColumnElement[datetime]
) -> ColumnElement[bool]:
    """SQL for "some alert counts a hit of the read" (whatever its status)."""
    return exists(
        select(AlertHit.read_id).where(
            AlertHit.read_id == read_id, AlertHit.captured_at == captured_at)
    )


#: Buckets of the time-to-acknowledge histogram, in seconds (upper bounds).
ACK_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1m", 60), ("1-2m", 120), ("2-5m", 300), ("5-15m", 900), ("15-60m", 3600),
    (">60m", float("inf")),
)


def statistics(session: Session, *, since: datetime) -> dict[str, Any]:
    """Figures for the statistics page, over the alerts raised since ``since`` in the
    session's scope: hits by reason, alerts by match kind and status, outcomes (and the
    misread rate) per checkpoint, and the time to acknowledge."""
    recent = Alert.raised_at >= since
    by_reason = {
        r: int(n) for r, n in session.execute(
            select(Alert.reason, func.sum(Alert.count)).where(recent).group_by(Alert.reason))
    }
    by_kind = {
        k: int(n) for k, n in session.execute(
            select(Alert.match_kind, func.count()).where(recent).group_by(Alert.match_kind))
    }
    by_status = {
        s: int(n) for s, n in session.execute(
            select(Alert.status, func.count()).where(recent).group_by(Alert.status))
    }
    checkpoints: dict[str, dict[str, Any]] = {}
    for code, name, outcome, n in session.execute(
        select(Alert.checkpoint_code, Alert.checkpoint_name, Alert.outcome, func.count())
        .where(recent, Alert.status == Status.CLOSED)
        .group_by(Alert.checkpoint_code, Alert.checkpoint_name, Alert.outcome)
    ):
        row = checkpoints.setdefault(code, {"checkpoint": code, "name": name, "closed": 0,
                                            **{o.value: 0 for o in Outcome}})
        if outcome is not None:
            row[outcome] = row.get(outcome, 0) + int(n)
        row["closed"] += int(n)
    outcome_rows = []
    for row in sorted(checkpoints.values(), key=lambda r: (-r["closed"], r["checkpoint"])):
        row["misread_rate"] = round(row[Outcome.MISREAD] / row["closed"], 4)
        outcome_rows.append(row)
    outcomes = {o.value: sum(r[o.value] for r in outcome_rows) for o in Outcome}
    waits = [
        (ack - raised).total_seconds()
        for raised, ack in session.execute(
            select(Alert.raised_at, Alert.acknowledged_at)
            .where(recent, Alert.acknowledged_at.is_not(None)))
        if ack is not None
    ]
    histogram = {label: 0 for label, _ in ACK_BUCKETS}
    for w in waits:
        for label, upper in ACK_BUCKETS:
            if w < upper:
                histogram[label] += 1
                break
    waits.sort()
    return {
        "since": since.isoformat(),
        "alerts": sum(by_status.values()),
        "hits": sum(by_reason.values()),
        "hits_by_reason": by_reason,
        "alerts_by_kind": by_kind,
        "alerts_by_status": by_status,
        "outcomes": outcomes,
        "outcomes_by_checkpoint": outcome_rows,
        "acknowledge_seconds": {
            "count": len(waits),
            "median": round(stats.median(waits), 1) if waits else None,
            "p90": round(waits[min(len(waits) - 1, int(0.9 * len(waits)))], 1)
            if waits else None,
            "histogram": histogram,
        },
    }
