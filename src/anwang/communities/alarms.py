"""The life of community device alarms: raised, repeated, escalated, acknowledged,
cleared and closed — each step audited in the step's transaction and announced after
its commit.

One alarm per (device, rule) at a time: :attr:`DeviceAlarm.active_key` is unique and
set only while the alarm is ``active`` or ``acknowledged``. Machine steps come from the
intake (:func:`apply`), the offline scan (:func:`scan_offline`) and the escalation scan
(:func:`scan_escalations`); person steps (:func:`acknowledge`, :func:`clear`,
:func:`close`) come from the API and pages. A person who clears or closes an alarm whose
condition still holds also resets the rule's memory on the device, so that the rule
starts over (a threshold must then be held again) instead of counting repeats on an
alarm that is gone.

Escalation: an ``active`` alarm whose ``escalate_at`` has passed climbs to the next
level of its route (:data:`anwang.communities.rules.ROUTES`), which adds roles to its
audience; acknowledging stops the climb. Several processes may scan at once: on
PostgreSQL the rows are taken ``FOR UPDATE SKIP LOCKED`` and the condition re-checked, so
nothing is escalated twice; on SQLite the writer lock serialises the scans.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Date, bindparam, cast, func, select, update
from sqlalchemy.orm import Session

from anwang.communities import events
from anwang.communities.models import Community, DeviceAlarm, DeviceStatus
from anwang.communities.rules import ROUTES, DeviceState, Transition
from anwang.core import audit
from anwang.core.bulk import dumps, upsert
from anwang.core.db import publish_after_commit
from anwang.core.errors import Conflict, NotFound, ValidationFailed
from anwang.core.events import new_id

if TYPE_CHECKING:
    from anwang.communities.intake import DeviceInfo, Directory

log = logging.getLogger(__name__)


class AlarmStatus(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    CLOSED = "closed"


OPEN_STATUSES = (AlarmStatus.ACTIVE, AlarmStatus.ACKNOWLEDGED)


class Outcome(StrEnum):
    REAL = "real"
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    DEVICE_FAULT = "device_fault"


#: The rule id of the offline rule (its alarms are raised by the scan, not a reading).
OFFLINE_RULE = "offline"
SYSTEM_ACTOR = "anwang"


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


def ulids(n: int, at: datetime) -> list[str]:
    """``n`` ULIDs of the instant ``at`` (the same 48-bit time, 80 random bits each), made
    at once: the offline scan may raise 100,000 alarms, and making ULIDs one by one
    costs more than writing them. The random parts are the base32 text of ``10 n``
    random bytes (80 bits, 16 characters each, most significant first), spelt in
    Crockford's alphabet."""
    ms = int(at.timestamp() * 1000)
    head = "".join(_CROCKFORD[(ms >> s) & 31] for s in range(45, -1, -5))
    text = crockford32(os.urandom(10 * n))
    return [head + text[16 * i:16 * i + 16] for i in range(n)]


def crockford32(raw: bytes) -> str:
    """``raw`` (a multiple of 5 bytes) in base32 with Crockford's alphabet, 5 bits a
    character, most significant first."""
    return base64.b32encode(raw).decode("ascii").translate(_FROM_RFC4648)


def active_key(device_id: str, rule_id: str) -> str:
    return f"{device_id}|{rule_id}"


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _escalate_at(route: str, level: int, every_s: int | None, now: datetime) -> datetime | None:
    if every_s is None or level + 1 >= len(ROUTES[route]):  # type: ignore[index]
        return None
    return now + timedelta(seconds=every_s)


@dataclass
class Applied:
    raised: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    repeats: int = 0


def _community_name(directory: Directory | None, code: str) -> str | None:
    c = directory.community(code) if directory is not None else None
    return c[0] if c else None


def apply(
    session: Session,
    *,
    transitions: Sequence[tuple[DeviceInfo, Transition]],
    came_back: Sequence[tuple[DeviceInfo, float]] = (),
    now: datetime,
    directory: Directory | None = None,
) -> Applied:
    """Turn the rules' transitions into alarm rows, in order.

    ``came_back``: devices that were offline and sent something (at the given receipt
    time): their offline alarm is cleared. Repeats are counted with one UPDATE per alarm
    at the end; raising and clearing (rare) go through the ORM with their audit entry and
    event. The caller holds the devices' status rows locked, so no other worker changes
    these alarms meanwhile.
    """
    out = Applied()
    entries: list[dict[str, Any]] = []  # audit entries, appended at the end in one go
    keys = {active_key(info.id, t.rule.id) for info, t in transitions}
    keys |= {active_key(info.id, OFFLINE_RULE) for info, _ in came_back}
    open_by_key: dict[str, DeviceAlarm] = {}
    key_list = sorted(keys)
    for i in range(0, len(key_list), 1000):
        for a in session.scalars(
            select(DeviceAlarm).where(DeviceAlarm.active_key.in_(key_list[i:i + 1000]))
        ):
            assert a.active_key is not None
            open_by_key[a.active_key] = a
    repeats: dict[str, list[Any]] = {}  # alarm id -> [count, last ts, value]

    for info, ts in came_back:
        alarm = open_by_key.pop(active_key(info.id, OFFLINE_RULE), None)
        if alarm is not None:
            _clear(session, alarm, at=now, by=SYSTEM_ACTOR, directory=directory,
                   detail={"back_at": _utc(ts).isoformat()}, entries=entries)
            out.cleared.append(alarm.id)

    for info, t in transitions:
        key = active_key(info.id, t.rule.id)
        alarm = open_by_key.get(key)
        if t.action == "clear":
            if alarm is not None:
                del open_by_key[key]
                repeats.pop(alarm.id, None)
                _clear(session, alarm, at=now, by=SYSTEM_ACTOR, directory=directory,
                       entries=entries)
                out.cleared.append(alarm.id)
            continue
        if alarm is not None:  # "repeat", or a "raise" whose alarm is still up
            r = repeats.setdefault(alarm.id, [0, t.ts, t.value])
            r[0] += 1
            r[1] = max(r[1], t.ts)
            r[2] = t.value if t.value is not None else r[2]
            out.repeats += 1
            continue
        alarm = _raise(session, info, t, now=now, directory=directory, entries=entries)
        open_by_key[key] = alarm
        out.raised.append(alarm.id)

    if repeats:
        session.flush()
        table = DeviceAlarm.__table__
        session.execute(
            update(table)  # type: ignore[arg-type]
            .where(table.c.id == bindparam("b_id"))
            .values(count=table.c.count + bindparam("b_n"), last_seen_at=bindparam("b_ts"),
                    value=func.coalesce(bindparam("b_value"), table.c.value)),
            [{"b_id": aid, "b_n": n, "b_ts": _utc(ts), "b_value": v}
             for aid, (n, ts, v) in sorted(repeats.items())],
        )
    audit.record_many(session, entries)
    return out


def _audit(session: Session, entries: list[dict[str, Any]] | None, **entry: Any) -> None:
    """Record the entry now, or add it to ``entries`` for one :func:`audit.record_many`."""
    if entries is None:
        audit.record(session, **entry)
    else:
        entries.append(entry)


def _raise(session: Session, info: DeviceInfo, t: Transition, *, now: datetime,
           directory: Directory | None,
           entries: list[dict[str, Any]] | None = None) -> DeviceAlarm:
    rule = t.rule
    detail = dict(t.detail or {})
    if info.floor is not None and "floor" not in detail:
        detail["floor"] = info.floor
    if info.building:
        detail.setdefault("building", info.building)
    alarm = DeviceAlarm(
        id=new_id(), device_id=info.id, community_code=info.community,
        device_kind=info.kind, rule_id=rule.id, kind=rule.alarm, severity=str(rule.severity),
        route=str(rule.route), status=AlarmStatus.ACTIVE, active_key=active_key(info.id, rule.id),
        level=0, escalate_every_s=rule.escalate_after_s,
        escalate_at=_escalate_at(rule.route, 0, rule.escalate_after_s, now),
        escalated_at=None, count=1, first_seen_at=_utc(t.ts), last_seen_at=_utc(t.ts),
        raised_at=now, value=t.value, detail=detail or None, lat=info.lat, lon=info.lon,
        jurisdiction_code=info.jurisdiction,
    )
    session.add(alarm)
    _audit(
        session, entries, action="anwang.communities.alarm.raised", actor=f"device:{info.id}",
        actor_role="device", subject=alarm.id, jurisdiction=info.jurisdiction,
        data={"device": info.id, "rule": rule.id, "kind": rule.alarm,
              "severity": str(rule.severity), "value": t.value,
              "seen_at": alarm.first_seen_at.isoformat()},
        at=now,
    )
    publish_after_commit(session, events.alarm_event(
        events.RAISED, alarm, community_name=_community_name(directory, info.community)))
    return alarm


def _clear(session: Session, alarm: DeviceAlarm, *, at: datetime, by: str,
           directory: Directory | None = None, role: str | None = None,
           note: str | None = None, detail: dict[str, Any] | None = None,
           entries: list[dict[str, Any]] | None = None) -> None:
    alarm.status = AlarmStatus.CLEARED
    alarm.active_key = None
    alarm.escalate_at = None
    alarm.cleared_at = at
    alarm.cleared_by = by
    if note:
        alarm.note = note
    _audit(
        session, entries, action="anwang.communities.alarm.cleared", actor=by,
        actor_role=role or ("system" if by == SYSTEM_ACTOR else None), subject=alarm.id,
        jurisdiction=alarm.jurisdiction_code,
        data={"device": alarm.device_id, "rule": alarm.rule_id, "by_hand": by != SYSTEM_ACTOR,
              **(detail or {})},
        reason=note, at=at,
    )
    publish_after_commit(session, events.alarm_event(
        events.CLEARED, alarm, community_name=_community_name(directory, alarm.community_code),
        actor=by))


# --- people ---------------------------------------------------------------------------


def get_alarm(session: Session, *, alarm_id: str, lock: bool = False) -> DeviceAlarm:
    """The alarm, if in the session's scope (NotFound otherwise)."""
    stmt = select(DeviceAlarm).where(DeviceAlarm.id == alarm_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    alarm = session.scalars(stmt).first()
    if alarm is None:
        raise NotFound(f"no alarm {alarm_id!r} in your jurisdiction",
                       code="anwang.communities.alarm_not_found")
    return alarm


def _reset_rule(session: Session, alarm: DeviceAlarm) -> None:
    """Forget the rule's memory on the device (under the status row's lock)."""
    stmt = select(DeviceStatus).where(DeviceStatus.device_id == alarm.device_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    status = session.scalars(stmt).first()
    if status is None:
        return
    if alarm.rule_id == OFFLINE_RULE:
        return  # the device stays marked offline until it sends again
    state = DeviceState.from_json(status.rule_state)
    if alarm.rule_id in state.rules:
        state.forget(alarm.rule_id)
        status.rule_state = state.to_json()


def _community_of(session: Session, alarm: DeviceAlarm) -> str | None:
    return session.scalar(select(Community.name).where(Community.code == alarm.community_code))


def acknowledge(session: Session, *, alarm_id: str, actor: str, actor_role: str,
                note: str | None = None, now: datetime) -> DeviceAlarm:
    """Someone has taken the alarm: it stops escalating. Only an ``active`` alarm."""
    alarm = get_alarm(session, alarm_id=alarm_id, lock=True)
    if alarm.status != AlarmStatus.ACTIVE:
        raise Conflict(f"the alarm is {alarm.status}, not active",
                       code="anwang.communities.alarm_not_active")
    alarm.status = AlarmStatus.ACKNOWLEDGED
    alarm.acknowledged_at = now
    alarm.acknowledged_by = actor
    alarm.escalate_at = None
    if note:
        alarm.note = note
    audit.record(
        session, "anwang.communities.alarm.acknowledged", actor=actor, actor_role=actor_role,
        subject=alarm.id, jurisdiction=alarm.jurisdiction_code, reason=note,
        data={"device": alarm.device_id, "level": alarm.level}, at=now,
    )
    publish_after_commit(session, events.alarm_event(
        events.ACKNOWLEDGED, alarm, community_name=_community_of(session, alarm), actor=actor))
    return alarm


def clear(session: Session, *, alarm_id: str, actor: str, actor_role: str,
          note: str | None = None, now: datetime) -> DeviceAlarm:
    """End the alarm's condition by hand (the device did not say it ended)."""
    alarm = get_alarm(session, alarm_id=alarm_id, lock=True)
    if alarm.status not in OPEN_STATUSES:
        raise Conflict(f"the alarm is already {alarm.status}",
                       code="anwang.communities.alarm_not_open")
    _reset_rule(session, alarm)
    _clear(session, alarm, at=now, by=actor, role=actor_role, note=note)
    return alarm


def close(session: Session, *, alarm_id: str, outcome: Outcome | str, actor: str,
          actor_role: str, note: str | None = None, now: datetime) -> DeviceAlarm:
    """Close the alarm with what it turned out to be; a still-open condition is cleared
    with it."""
    try:
        outcome = Outcome(outcome)
    except ValueError:
        raise ValidationFailed.on(
            "outcome", f"one of {', '.join(o.value for o in Outcome)}") from None
    alarm = get_alarm(session, alarm_id=alarm_id, lock=True)
    if alarm.status == AlarmStatus.CLOSED:
        raise Conflict("the alarm is already closed", code="anwang.communities.alarm_closed")
    was_open = alarm.status in OPEN_STATUSES
    if was_open:
        _reset_rule(session, alarm)
        alarm.cleared_at = now
        alarm.cleared_by = actor
    alarm.status = AlarmStatus.CLOSED
    alarm.active_key = None
    alarm.escalate_at = None
    alarm.closed_at = now
    alarm.closed_by = actor
    alarm.outcome = outcome
    if note:
        alarm.note = note
    audit.record(
        session, "anwang.communities.alarm.closed", actor=actor, actor_role=actor_role,
        subject=alarm.id, jurisdiction=alarm.jurisdiction_code, reason=note,
        data={"device": alarm.device_id, "outcome": str(outcome), "was_open": was_open},
        at=now,
    )
    publish_after_commit(session, events.alarm_event(
        events.CLOSED, alarm, community_name=_community_of(session, alarm), actor=actor))
    return alarm


# --- scans ----------------------------------------------------------------------------


def scan_escalations(session: Session, *, now: datetime, limit: int = 1000) -> int:
    """Move every unacknowledged alarm whose timer ran out one level up; returns how
    many."""
    stmt = (
        select(DeviceAlarm)
        .where(DeviceAlarm.status == AlarmStatus.ACTIVE, DeviceAlarm.escalate_at <= now)
        .order_by(DeviceAlarm.escalate_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    due = list(session.scalars(stmt.execution_options(skip_scope=True)))
    codes = sorted({a.community_code for a in due})
    names: dict[str, str | None] = {
        code: name for code, name in session.execute(
            select(Community.code, Community.name).where(Community.code.in_(codes)))
    } if codes else {}
    entries: list[dict[str, Any]] = []
    n = 0
    for alarm in due:
        if alarm.escalate_at is None or alarm.escalate_at > now:
            continue
        levels = ROUTES[alarm.route]  # type: ignore[index]
        if alarm.level + 1 >= len(levels):
            alarm.escalate_at = None
            continue
        alarm.level += 1
        alarm.escalated_at = now
        alarm.escalate_at = _escalate_at(alarm.route, alarm.level, alarm.escalate_every_s, now)
        entries.append({
            "action": "anwang.communities.alarm.escalated", "actor": SYSTEM_ACTOR,
            "actor_role": "system", "subject": alarm.id,
            "jurisdiction": alarm.jurisdiction_code,
            "data": {"device": alarm.device_id, "level": alarm.level,
                     "to": levels[alarm.level]},
            "at": now,
        })
        publish_after_commit(session, events.alarm_event(
            events.ESCALATED, alarm, community_name=names.get(alarm.community_code)))
        n += 1
    # One audit entry per alarm, appended together: the audit writer lock, which every
    # alarm raised by the intake also needs, is held for a few statements, not for four
    # per escalated alarm.
    audit.record_many(session, entries)
    return n


def scan_offline(session: Session, *, now: datetime, directory: Directory) -> int:
    """Mark every watched device past its deadline offline and raise its maintenance
    alarm; returns how many went offline.

    One UPDATE finds and marks them all (``online AND offline_after < now``, over the
    whole status table: the deadline is not indexed, see
    :class:`anwang.communities.models.DeviceStatus`); the alarms go in with one bulk
    INSERT that skips a device whose offline alarm is somehow still up. One audit entry
    records the scan with the count per community, and one event per community tells
    its people (an outage silences many devices at once; one notice per device would
    bury the feed).

    On PostgreSQL the UPDATE returns each device's community and kind (joined from the
    registry), and the INSERT builds the alarm rows in the database — ``INSERT …
    SELECT`` from the registry and the status rows, given only the new alarms' ids and
    devices and the offline rule of each (kind, community) — so that 100,000 alarms
    are neither made into Python objects nor sent over the connection as values.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _scan_offline_pg(session, now=now, directory=directory)
    t = DeviceStatus.__table__
    gone = [
        (r[0], r[1])
        for r in session.execute(
            update(t)  # type: ignore[arg-type]
            .where(t.c.online.is_(True), t.c.offline_after < now)
            .values(online=False, offline_since=now, updated_at=now)
            .returning(t.c.device_id, t.c.last_seen_at)
        )
    ]
    if not gone:
        return 0
    infos = directory.lookup(session, [d for d, _ in gone])
    rows: list[dict[str, Any]] = []
    per_community: dict[str, list[str]] = {}
    ids = iter(ulids(len(gone), now))
    for device_id, last_seen in sorted(gone):
        info = infos.get(device_id)
        if info is None:
            continue
        book = directory.book(info.kind, info.community)
        rule = book.offline
        per_community.setdefault(info.community, []).append(device_id)
        if rule is None:
            continue  # marked offline, but this community wants no alarm for it
        seen = last_seen.astimezone(UTC) if last_seen is not None else None
        rows.append({
            "id": next(ids), "device_id": device_id, "community_code": info.community,
            "device_kind": info.kind, "rule_id": rule.id, "kind": rule.alarm,
            "severity": str(rule.severity), "route": str(rule.route),
            "status": AlarmStatus.ACTIVE.value, "active_key": active_key(device_id, rule.id),
            "level": 0, "escalate_every_s": rule.escalate_after_s,
            "escalate_at": _escalate_at(rule.route, 0, rule.escalate_after_s, now),
            "escalated_at": None, "count": 1,
            "first_seen_at": seen or now, "last_seen_at": seen or now, "raised_at": now,
            "value": None,
            "detail": {"last_seen_at": seen.isoformat() if seen else None,
                       "heartbeat_s": info.heartbeat_s, "missed": rule.missed,
                       "floor": info.floor},
            "lat": info.lat, "lon": info.lon, "jurisdiction_code": info.jurisdiction,
            "acknowledged_at": None, "acknowledged_by": None, "cleared_at": None,
            "cleared_by": None, "closed_at": None, "closed_by": None, "outcome": None,
            "note": None,
        })
    upsert(session, DeviceAlarm.__table__, rows, key=("active_key",))
    _record_offline(session, per_community, sorted(d for d, _ in gone), now, directory)
    return len(gone)


def _record_offline(session: Session, per_community: dict[str, list[str]],
                    gone: list[str], now: datetime, directory: Directory) -> None:
    """The scan's audit entry (``gone``: the devices marked offline, sorted) and one
    outage notice per community."""
    audit.record(
        session, "anwang.communities.devices.marked_offline", actor=SYSTEM_ACTOR,
        actor_role="system", result_count=len(gone),
        data={"communities": {c: len(d) for c, d in sorted(per_community.items())},
              "devices": gone[:200]},
        at=now,
    )
    for code, devices in sorted(per_community.items()):
        c = directory.community(code)
        if c is None:
            continue
        name, lat, lon, jurisdiction = c
        publish_after_commit(session, events.outage_event(
            community=code, community_name=name, jurisdiction=jurisdiction, devices=devices,
            count=len(devices), lat=lat, lon=lon))


#: Marks the devices past their deadline offline; returns each one's community and kind.
_MARK_OFFLINE_PG = (
    "UPDATE device_status AS s SET online = false, offline_since = %(now)s, "
    "updated_at = %(now)s FROM devices AS d "
    "WHERE d.id = s.device_id AND s.online IS TRUE AND s.offline_after < %(now)s "
    "RETURNING s.device_id, d.community_code, d.kind"
)
#: ``last_seen_at`` as Python's ``datetime.isoformat()`` writes a UTC time.
_ISO_PG = (
    "to_char(s.last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
    "CASE WHEN date_trunc('second', s.last_seen_at) = s.last_seen_at THEN '' "
    "ELSE to_char(s.last_seen_at AT TIME ZONE 'UTC', '.US') END || '+00:00'"
)
#: The offline alarms, built in the database: ``a`` gives each new alarm's id and
#: device, ``r`` the offline rule of each (kind, community); the rest comes from the
#: registry and the device's status. The same values as the rows of the SQLite path.
_RAISE_OFFLINE_PG = (
    "INSERT INTO device_alarms (id, device_id, community_code, device_kind, rule_id, kind, "
    "severity, route, status, active_key, level, escalate_every_s, escalate_at, "
    "escalated_at, count, first_seen_at, last_seen_at, raised_at, value, detail, lat, lon, "
    "jurisdiction_code, acknowledged_at, acknowledged_by, cleared_at, cleared_by, closed_at, "
    "closed_by, outcome, note) "
    "SELECT a.i, d.id, d.community_code, d.kind, r.rule_id, r.alarm, r.severity, r.route, "
    "%(status)s, d.id || '|' || r.rule_id, 0, r.every, r.escalate_at, NULL, 1, "
    "coalesce(s.last_seen_at, %(now)s), coalesce(s.last_seen_at, %(now)s), %(now)s, NULL, "
    f"json_build_object('last_seen_at', CASE WHEN s.last_seen_at IS NULL THEN NULL "
    f"ELSE {_ISO_PG} END, 'heartbeat_s', d.heartbeat_s, 'missed', r.missed, "
    "'floor', d.floor), d.lat, d.lon, d.jurisdiction_code, "
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL "
    "FROM json_to_recordset(%(alarms)s::json) AS a(i text, d text) "
    "JOIN devices AS d ON d.id = a.d "
    "JOIN device_status AS s ON s.device_id = a.d "
    "JOIN json_to_recordset(%(rules)s::json) AS r(kind text, community text, rule_id text, "
    "alarm text, severity text, route text, every integer, escalate_at timestamptz, "
    "missed integer) ON r.kind = d.kind AND r.community = d.community_code "
    "ON CONFLICT (active_key) DO NOTHING"
)


def _scan_offline_pg(session: Session, *, now: datetime, directory: Directory) -> int:
    conn = session.connection()
    gone = [tuple(r) for r in conn.exec_driver_sql(_MARK_OFFLINE_PG, {"now": now})]
    if not gone:
        return 0
    gone.sort()
    per_community: dict[str, list[str]] = {}
    rules: dict[tuple[str, str], Any] = {}
    alarmed: list[str] = []
    for device_id, community, kind in gone:
        per_community.setdefault(community, []).append(device_id)
        key = (kind, community)
        rule = rules.get(key, False)
        if rule is False:
            rule = rules[key] = directory.book(kind, community).offline
        if rule is not None:  # None: marked offline, but no alarm wanted for it
            alarmed.append(device_id)
    if alarmed:
        rule_rows = [
            {"kind": kind, "community": community, "rule_id": rule.id, "alarm": rule.alarm,
             "severity": str(rule.severity), "route": str(rule.route),
             "every": rule.escalate_after_s,
             "escalate_at": _escalate_at(rule.route, 0, rule.escalate_after_s, now),
             "missed": rule.missed}
            for (kind, community), rule in rules.items() if rule is not None]
        ids = ulids(len(alarmed), now)
        conn.exec_driver_sql(_RAISE_OFFLINE_PG, {
            "status": AlarmStatus.ACTIVE.value, "now": now,
            "alarms": dumps([{"i": i, "d": d} for i, d in zip(ids, alarmed, strict=True)]
                            ).decode(),
            "rules": dumps(rule_rows).decode(),
        })
    _record_offline(session, per_community, [g[0] for g in gone], now, directory)
    return len(gone)


# --- reading --------------------------------------------------------------------------


def list_alarms(
    session: Session,
    *,
    status: Sequence[str] = (),
    kind: str | None = None,
    severity: str | None = None,
    community: str | None = None,
    device: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
    before: str | None = None,
) -> list[DeviceAlarm]:
    """Alarms in the session's scope, newest first; ``before`` is an alarm id to page
    from (ids sort by time)."""
    stmt = select(DeviceAlarm).order_by(DeviceAlarm.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(DeviceAlarm.status.in_(list(status)))
    if kind:
        stmt = stmt.where(DeviceAlarm.kind == kind)
    if severity:
        stmt = stmt.where(DeviceAlarm.severity == severity)
    if community:
        stmt = stmt.where(DeviceAlarm.community_code == community)
    if device:
        stmt = stmt.where(DeviceAlarm.device_id == device)
    if since:
        stmt = stmt.where(DeviceAlarm.raised_at >= since)
    if until:
        stmt = stmt.where(DeviceAlarm.raised_at < until)
    if before:
        stmt = stmt.where(DeviceAlarm.id < before)
    return list(session.scalars(stmt))


def alarms_per_day(session: Session, *, days: int, now: datetime,
                   community: str | None = None) -> list[tuple[date, str, int]]:
    """(day in UTC, severity, count) of alarms raised over the last ``days`` days."""
    since = datetime.combine((now - timedelta(days=days - 1)).date(), datetime.min.time(),
                             tzinfo=UTC)
    day: Any
    if session.get_bind().dialect.name == "postgresql":
        day = cast(func.timezone("UTC", DeviceAlarm.raised_at), Date)
    else:
        day = func.date(DeviceAlarm.raised_at)
    stmt = (
        select(day.label("day"), DeviceAlarm.severity, func.count())
        .where(DeviceAlarm.raised_at >= since)
        .group_by(day, DeviceAlarm.severity)
        .order_by(day)
    )
    if community:
        stmt = stmt.where(DeviceAlarm.community_code == community)
    rows = session.execute(stmt).all()
    out = []
    for d, sev, n in rows:
        out.append((d if isinstance(d, date) else date.fromisoformat(str(d)), sev, int(n)))
    return out
