"""Dispatch use cases: units and their positions, incidents, recommendations, assignment,
status changes and the incident timeline.

Lifecycles
----------
Unit: ``available`` ⇄ ``out_of_service``; ``available`` → ``dispatched`` only by
:func:`assign_unit`; then ``en_route`` → ``on_scene`` → ``available`` (released), and
a dispatched or travelling unit may be released early. Incident: ``received`` →
``dispatched`` (first assignment) → ``en_route`` / ``on_scene`` (the first unit to
report it) → ``cleared``; ``cancelled`` before anyone is on scene. An incident whose
units were all released before arriving goes back to ``received``. Any other change is
a 409 ``anwang.dispatch.invalid_transition``. Clearing or cancelling an incident frees
its units.

Assignment is atomic: the unit is taken by one conditional ``UPDATE … WHERE status =
'available'``, so of two dispatchers sending the same unit one gets 409
``anwang.dispatch.unit_not_available`` and nothing of the refused assignment is written.
The route is computed before anything is written, so an unreachable incident leaves no
trace either.

Positions: ``at`` more than :data:`FUTURE_SKEW` ahead of the server's clock is refused
(422 on ``at``). A position is stored once per (unit, time); only a newer one moves the
unit. A position older than ``stale_position_minutes`` is *stale*: recommendations then
start the unit from its home post and say so.

Every change is audited (``anwang.dispatch.<noun>.<verb>``) in its transaction and
announced after commit (:mod:`anwang.dispatch.events`). The incident timeline is read
back from the audit trail (:func:`incident_timeline`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

import numpy as np
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from anwang.auth import service as auth_service
from anwang.core import audit
from anwang.core.db import publish_after_commit
from anwang.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from anwang.core.events import new_id, utcnow
from anwang.core.scope import current_scope
from anwang.dispatch import events
from anwang.dispatch import posts as posts_service
from anwang.dispatch.config import (
    DispatchConfig,
    IncidentStatus,
    UnitKind,
    UnitStatus,
)
from anwang.dispatch.models import Assignment, Incident, Instruction, Unit, UnitPosition
from anwang.dispatch.recommend import (
    CoverageHeld,
    coverage_held,
    rank_nearest,
    rank_units,
    route_of,
)
from anwang.roads.routing import Unreachable
from anwang.roads.service import LoadedGraph, snap_point, snap_points

#: How far ahead of the server's clock a reported position may be (clock skew).
FUTURE_SKEW: Final = timedelta(seconds=60)
#: Recommendations search up to 15 minutes away, and up to an hour when fewer units than
#: asked for arrive within 15 minutes (seconds); units farther away are listed after the
#: others without an ETA or a route.
RECOMMEND_CUTOFFS_S: Final = (900.0, 3600.0)
COVERAGE_MINUTES: Final = 3.0

ACTIVE_INCIDENT = (
    IncidentStatus.RECEIVED, IncidentStatus.DISPATCHED, IncidentStatus.EN_ROUTE,
    IncidentStatus.ON_SCENE,
)
BUSY = (UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE)

UNIT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    UnitStatus.AVAILABLE: frozenset({UnitStatus.OUT_OF_SERVICE}),
    UnitStatus.OUT_OF_SERVICE: frozenset({UnitStatus.AVAILABLE}),
    UnitStatus.DISPATCHED: frozenset(
        {UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE, UnitStatus.AVAILABLE}),
    UnitStatus.EN_ROUTE: frozenset({UnitStatus.ON_SCENE, UnitStatus.AVAILABLE}),
    UnitStatus.ON_SCENE: frozenset({UnitStatus.AVAILABLE}),
}
#: Incident changes a dispatcher makes directly (the others follow the units).
INCIDENT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    IncidentStatus.RECEIVED: frozenset({IncidentStatus.CLEARED, IncidentStatus.CANCELLED}),
    IncidentStatus.DISPATCHED: frozenset({IncidentStatus.CLEARED, IncidentStatus.CANCELLED}),
    IncidentStatus.EN_ROUTE: frozenset({IncidentStatus.CLEARED, IncidentStatus.CANCELLED}),
    IncidentStatus.ON_SCENE: frozenset({IncidentStatus.CLEARED}),
}


def _rowcount(result: Any) -> int:
    """Rows an UPDATE changed (``CursorResult.rowcount``)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


def _now(now: datetime | None) -> datetime:
    return now or utcnow()


def _isoz(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


# --------------------------------------------------------------------------------------
# units


def get_unit(session: Session, *, unit_id: str, for_update: bool = False) -> Unit:
    """A unit by id or call sign, within the caller's scope (else 404)."""
    stmt = select(Unit).where(or_(Unit.id == unit_id, Unit.call_sign == unit_id))
    if for_update:
        stmt = stmt.with_for_update()
    unit = session.scalars(stmt).first()
    if unit is None:
        raise NotFound(f"no unit {unit_id!r} in your jurisdiction",
                       code="anwang.dispatch.unit_not_found")
    return unit


def list_units(
    session: Session, *, status: str | None = None, kind: str | None = None,
) -> Sequence[Unit]:
    stmt = select(Unit).order_by(Unit.call_sign)
    if status is not None:
        stmt = stmt.where(Unit.status == status)
    if kind is not None:
        stmt = stmt.where(Unit.kind == kind)
    return session.scalars(stmt).all()


def unit_payload(u: Unit) -> dict[str, Any]:
    pos = [u.lat, u.lon] if u.lat is not None and u.lon is not None else [u.home_lat, u.home_lon]
    return {"unit_id": u.id, "call_sign": u.call_sign, "kind": u.kind, "status": u.status,
            "incident_id": u.incident_id, "position": pos, "summary": f"{u.call_sign} {u.status}"}


def create_unit(
    session: Session,
    *,
    call_sign: str,
    kind: str,
    home_post_id: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    actor: str,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> Unit:
    """A new unit, ``available``, at its home post or at (lat, lon)."""
    now = _now(now)
    call_sign = (call_sign or "").strip()
    if not call_sign or len(call_sign) > 40:
        raise ValidationFailed.on("call_sign", "must be 1-40 characters")
    try:
        UnitKind(kind)
    except ValueError:
        raise ValidationFailed.on("kind", "one of " + ", ".join(UnitKind)) from None
    if session.scalar(select(Unit.id).where(Unit.call_sign == call_sign)
                      .execution_options(skip_scope=True)) is not None:
        raise Conflict(f"the call sign {call_sign!r} is taken", code="anwang.dispatch.unit_exists")
    if home_post_id is not None:
        post = posts_service.get_post(session, post_id=home_post_id)
        home_lat, home_lon, code = post.lat, post.lon, post.jurisdiction_code
        home_post_id = post.id
    elif lat is not None and lon is not None:
        posts_service.check_point(lat, lon)
        home_lat, home_lon = float(lat), float(lon)
        code = posts_service.locate_in_scope(session, lat=home_lat, lon=home_lon,
                                             field_name="lat/lon")
    else:
        raise ValidationFailed.on("home_post_id", "give a home post, or lat and lon")
    unit = Unit(
        id=new_id(), call_sign=call_sign, kind=kind, status=UnitStatus.AVAILABLE.value,
        home_post_id=home_post_id, home_lat=home_lat, home_lon=home_lon, lat=None, lon=None,
        position_at=None, incident_id=None, status_at=now, created_at=now,
        jurisdiction_code=code,
    )
    session.add(unit)
    session.flush()
    audit.record(session, "anwang.dispatch.unit.created", actor=actor, actor_role=actor_role,
                 subject=f"unit:{unit.id}", jurisdiction=code,
                 data={"call_sign": call_sign, "kind": kind, "home_post_id": home_post_id})
    publish_after_commit(session, events.make(
        events.UNIT_CREATED, unit_payload(unit), jurisdiction=code, actor=actor))
    return unit


def record_position(
    session: Session,
    *,
    unit_id: str,
    lat: float,
    lon: float,
    at: datetime | None = None,
    speed_kmh: float | None = None,
    heading: float | None = None,
    source: str = "api",
    now: datetime | None = None,
) -> tuple[Unit, bool]:
    """Store a reported position; returns (unit, whether it moved the unit).

    Positions are not audited one by one (a unit reports every few seconds); they are
    kept in ``dispatch_unit_positions``.
    """
    now = _now(now)
    at = at or now
    if at.tzinfo is None:
        raise ValidationFailed.on("at", "must carry a UTC offset")
    if at > now + FUTURE_SKEW:
        raise ValidationFailed.on("at", "is in the future",
                                  code="anwang.dispatch.position_in_future")
    posts_service.check_point(lat, lon)
    for name, value, lo, hi in (("speed_kmh", speed_kmh, 0, 400), ("heading", heading, 0, 360)):
        if value is not None and not (math.isfinite(value) and lo <= value <= hi):
            raise ValidationFailed.on(name, f"must be {lo} to {hi}")
    unit = get_unit(session, unit_id=unit_id)
    dialect = session.get_bind().dialect.name
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(UnitPosition).values(
        unit_id=unit.id, at=at, lat=float(lat), lon=float(lon), speed_kmh=speed_kmh,
        heading=heading, source=source, received_at=now,
    ).on_conflict_do_nothing()
    session.execute(ins)
    moved = unit.position_at is None or at > unit.position_at
    if moved:
        unit.lat, unit.lon, unit.position_at = float(lat), float(lon), at
        session.flush()
        publish_after_commit(session, events.make(
            events.UNIT_MOVED, {**unit_payload(unit), "at": at.isoformat()},
            jurisdiction=unit.jurisdiction_code))
    return unit, moved


def position_age_s(unit: Unit, now: datetime) -> float | None:
    if unit.position_at is None:
        return None
    return max(0.0, (now - unit.position_at).total_seconds())


def _release(session: Session, unit: Unit, now: datetime) -> None:
    session.execute(
        update(Assignment)
        .where(Assignment.unit_id == unit.id, Assignment.released_at.is_(None))
        .values(released_at=now)
        .execution_options(synchronize_session=False)
    )
    unit.incident_id = None


def set_unit_status(
    session: Session,
    *,
    unit_id: str,
    status: str,
    actor: str,
    actor_role: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Unit:
    """Move a unit along its lifecycle (module docstring); the incident follows."""
    now = _now(now)
    try:
        wanted = UnitStatus(status)
    except ValueError:
        raise ValidationFailed.on("status", "one of " + ", ".join(UnitStatus)) from None
    unit = get_unit(session, unit_id=unit_id, for_update=True)
    old = unit.status
    if wanted.value not in UNIT_TRANSITIONS.get(old, frozenset()):
        raise Conflict(f"a unit that is {old} cannot become {wanted.value}",
                       code="anwang.dispatch.invalid_transition")
    incident = session.get(Incident, unit.incident_id) if unit.incident_id else None
    unit.status = wanted.value
    unit.status_at = now
    if wanted is UnitStatus.AVAILABLE and old in BUSY:
        _release(session, unit, now)
    session.flush()
    audit.record(
        session, "anwang.dispatch.unit.status_changed", actor=actor, actor_role=actor_role,
        subject=f"unit:{unit.id}", reason=reason, jurisdiction=unit.jurisdiction_code,
        data={"call_sign": unit.call_sign, "from": old, "to": wanted.value,
              "incident_id": incident.id if incident else None}, at=now,
    )
    publish_after_commit(session, events.make(
        events.UNIT_STATUS_CHANGED, unit_payload(unit), jurisdiction=unit.jurisdiction_code,
        actor=actor))
    if incident is not None:
        _follow_unit(session, incident, unit, wanted, actor=actor, actor_role=actor_role, now=now)
    return unit


def _follow_unit(
    session: Session, incident: Incident, unit: Unit, wanted: UnitStatus, *, actor: str,
    actor_role: str | None, now: datetime,
) -> None:
    """The incident's times and status after one of its units changed."""
    changes: dict[str, Any] = {}
    if wanted is UnitStatus.EN_ROUTE:
        if incident.en_route_at is None:
            incident.en_route_at = changes["en_route_at"] = now
        if incident.status == IncidentStatus.DISPATCHED:
            incident.status = changes["status"] = IncidentStatus.EN_ROUTE.value
    elif wanted is UnitStatus.ON_SCENE:
        if incident.on_scene_at is None:
            incident.on_scene_at = changes["on_scene_at"] = now
            incident.response_s = changes["response_s"] = round(
                (now - incident.received_at).total_seconds(), 3)
        if incident.status in (IncidentStatus.DISPATCHED, IncidentStatus.EN_ROUTE):
            incident.status = changes["status"] = IncidentStatus.ON_SCENE.value
    elif wanted is UnitStatus.AVAILABLE and incident.status in (
        IncidentStatus.DISPATCHED, IncidentStatus.EN_ROUTE
    ):
        active = session.scalar(select(Assignment.id).where(
            Assignment.incident_id == incident.id, Assignment.released_at.is_(None)).limit(1))
        if active is None:
            incident.status = changes["status"] = IncidentStatus.RECEIVED.value
    if changes:
        _incident_changed(session, incident, "anwang.dispatch.incident.updated", actor=actor,
                          actor_role=actor_role, now=now,
                          data={"by_unit": unit.call_sign, **_plain(changes)})


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in d.items()}


# --------------------------------------------------------------------------------------
# incidents


def incident_payload(i: Incident) -> dict[str, Any]:
    summary = i.type + (f" · {i.address}" if i.address else "")
    return {"incident_id": i.id, "type": i.type, "priority": i.priority, "status": i.status,
            "lat": i.lat, "lon": i.lon, "address": i.address, "summary": summary,
            "received_at": _isoz(i.received_at), "on_scene_at": _isoz(i.on_scene_at)}


def _incident_changed(
    session: Session, incident: Incident, action: str, *, actor: str, actor_role: str | None,
    now: datetime, data: dict[str, Any] | None = None, reason: str | None = None,
) -> None:
    session.flush()
    audit.record(session, action, actor=actor, actor_role=actor_role,
                 subject=f"incident:{incident.id}", reason=reason,
                 jurisdiction=incident.jurisdiction_code,
                 data={"status": incident.status, **(data or {})}, at=now)
    name = events.INCIDENT_CREATED if action.endswith(".created") else events.INCIDENT_UPDATED
    publish_after_commit(session, events.make(
        name, incident_payload(incident), jurisdiction=incident.jurisdiction_code, actor=actor))


def get_incident(session: Session, *, incident_id: str, for_update: bool = False) -> Incident:
    stmt = select(Incident).where(Incident.id == incident_id)
    if for_update:
        stmt = stmt.with_for_update()
    incident = session.scalars(stmt).first()
    if incident is None:
        raise NotFound(f"no incident {incident_id!r} in your jurisdiction",
                       code="anwang.dispatch.incident_not_found")
    return incident


def list_incidents(
    session: Session, *, status: str | None = None, active: bool | None = None,
    limit: int = 100, offset: int = 0,
) -> Sequence[Incident]:
    stmt = select(Incident).order_by(Incident.priority, Incident.received_at.desc())
    if status is not None:
        stmt = stmt.where(Incident.status == status)
    if active is True:
        stmt = stmt.where(Incident.status.in_([s.value for s in ACTIVE_INCIDENT]))
    elif active is False:
        stmt = stmt.where(Incident.status.notin_([s.value for s in ACTIVE_INCIDENT]))
    return session.scalars(stmt.limit(limit).offset(offset)).all()


def _district_of(session: Session, code: str | None) -> str | None:
    current = code
    while current is not None:
        try:
            j = auth_service.get_jurisdiction(session, code=current)
        except NotFound:
            return None
        if j.level == "district":
            return str(j.code)
        current = j.parent_code
    return None


@dataclass(frozen=True)
class IncidentInput:
    type: str
    lat: float
    lon: float
    priority: int | None = None
    address: str | None = None
    caller: str | None = None
    description: str | None = None
    external_ref: str | None = None
    alert_id: str | None = None
    received_at: datetime | None = None


def create_incident(
    session: Session,
    *,
    data: IncidentInput,
    config: DispatchConfig,
    loaded: LoadedGraph | None = None,
    actor: str,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> tuple[Incident, bool]:
    """Record a call for service; returns (incident, created).

    A second request with the same ``external_ref`` or ``alert_id`` returns the first
    incident (created = False) instead of recording another. With a road graph the
    location must lie on the network (422 on ``lat/lon``); it must lie in the caller's
    jurisdiction (403).
    """
    now = _now(now)
    for key in ("external_ref", "alert_id"):
        value = getattr(data, key)
        if value is not None:
            column = Incident.external_ref if key == "external_ref" else Incident.alert_id
            existing = session.scalars(select(Incident).where(column == value)
                                       .execution_options(skip_scope=True)).first()
            if existing is not None:
                scope = current_scope(session)
                if scope is not None and not scope.contains(existing.jurisdiction_code):
                    raise Conflict(f"{key} {value!r} belongs to an incident elsewhere",
                                   code="anwang.dispatch.duplicate_reference")
                return existing, False
    kind = config.type(data.type)
    priority = kind.priority if data.priority is None else data.priority
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 4:
        raise ValidationFailed.on("priority", "must be 1, 2, 3 or 4")
    posts_service.check_point(data.lat, data.lon)
    if loaded is not None:
        snap_point(loaded, data.lat, data.lon, field_name="lat/lon")
    received = data.received_at or now
    if received.tzinfo is None:
        raise ValidationFailed.on("received_at", "must carry a UTC offset")
    if received > now + FUTURE_SKEW:
        raise ValidationFailed.on("received_at", "is in the future")
    for name, limit in (("address", 300), ("caller", 200), ("external_ref", 100),
                        ("description", 4000)):
        value = getattr(data, name)
        if value is not None and len(value) > limit:
            raise ValidationFailed.on(name, f"at most {limit} characters")
    code = posts_service.locate_in_scope(session, lat=data.lat, lon=data.lon,
                                         field_name="lat/lon")
    incident = Incident(
        id=new_id(), type=kind.code, priority=priority, status=IncidentStatus.RECEIVED.value,
        lat=float(data.lat), lon=float(data.lon), address=_blank(data.address),
        caller=_blank(data.caller), description=_blank(data.description),
        alert_id=data.alert_id, external_ref=data.external_ref,
        district_code=_district_of(session, code), received_at=received,
        created_by=actor, jurisdiction_code=code,
    )
    session.add(incident)
    _incident_changed(session, incident, "anwang.dispatch.incident.created", actor=actor,
                      actor_role=actor_role, now=now,
                      data={"type": incident.type, "priority": priority,
                            "alert_id": data.alert_id, "external_ref": data.external_ref})
    return incident, True


def _blank(s: str | None) -> str | None:
    return s.strip() if s and s.strip() else None


def create_incident_from_alert(
    session: Session,
    *,
    alert_id: str,
    config: DispatchConfig,
    loaded: LoadedGraph | None = None,
    type: str = "suspicious_vehicle",
    priority: int | None = None,
    description: str | None = None,
    actor: str,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> tuple[Incident, bool]:
    """An incident at the alert's checkpoint, describing the vehicle (one per alert)."""
    try:
        from anwang.alerts import service as alerts_service
    except ImportError:  # pragma: no cover - the alerts package is part of the platform
        raise ValidationFailed.on("alert_id", "alerts are not available") from None
    existing = session.scalars(select(Incident).where(Incident.alert_id == alert_id)).first()
    if existing is not None:
        return existing, False
    alert = alerts_service.get_alert(session, alert_id=alert_id)
    text = description or (
        f"{alert.plate} · {alerts_service.vehicle_description(alert)} · "
        f"{alert.checkpoint_name}"
    )
    return create_incident(
        session,
        data=IncidentInput(
            type=type, lat=alert.lat, lon=alert.lon, priority=priority,
            address=alert.checkpoint_name, description=text, alert_id=alert.id,
        ),
        config=config, loaded=loaded, actor=actor, actor_role=actor_role, now=now,
    )


def set_incident_status(
    session: Session,
    *,
    incident_id: str,
    status: str,
    actor: str,
    actor_role: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Incident:
    """Clear or cancel an incident (its units are freed)."""
    now = _now(now)
    try:
        wanted = IncidentStatus(status)
    except ValueError:
        raise ValidationFailed.on("status", "one of cleared, cancelled") from None
    incident = get_incident(session, incident_id=incident_id, for_update=True)
    if wanted.value not in INCIDENT_TRANSITIONS.get(incident.status, frozenset()):
        raise Conflict(f"an incident that is {incident.status} cannot become {wanted.value}",
                       code="anwang.dispatch.invalid_transition")
    incident.status = wanted.value
    if wanted is IncidentStatus.CLEARED:
        incident.cleared_at = now
    freed = []
    for unit in session.scalars(select(Unit).where(Unit.incident_id == incident.id)
                                .execution_options(skip_scope=True)).all():
        old = unit.status
        unit.status, unit.status_at = UnitStatus.AVAILABLE.value, now
        _release(session, unit, now)
        freed.append(unit.call_sign)
        audit.record(session, "anwang.dispatch.unit.status_changed", actor=actor,
                     actor_role=actor_role, subject=f"unit:{unit.id}",
                     jurisdiction=unit.jurisdiction_code, at=now,
                     data={"call_sign": unit.call_sign, "from": old, "to": unit.status,
                           "incident_id": incident.id})
        publish_after_commit(session, events.make(
            events.UNIT_STATUS_CHANGED, unit_payload(unit), jurisdiction=unit.jurisdiction_code,
            actor=actor))
    _incident_changed(session, incident, f"anwang.dispatch.incident.{wanted.value}",
                      actor=actor, actor_role=actor_role, now=now, reason=reason,
                      data={"freed_units": freed})
    return incident


# --------------------------------------------------------------------------------------
# recommendations and assignment


@dataclass(frozen=True)
class Origin:
    lat: float
    lon: float
    origin: str
    """``position`` or ``home``."""
    position: str
    """``fresh``, ``stale`` or ``missing``."""
    age_s: float | None


def origin_of(unit: Unit, *, now: datetime, config: DispatchConfig) -> Origin:
    age = position_age_s(unit, now)
    if unit.lat is not None and unit.lon is not None and age is not None:
        if age <= config.stale_position_minutes * 60.0:
            return Origin(unit.lat, unit.lon, "position", "fresh", age)
        return Origin(unit.home_lat, unit.home_lon, "home", "stale", age)
    return Origin(unit.home_lat, unit.home_lon, "home", "missing", None)


_coverage_cache: OrderedDict[Any, CoverageHeld] = OrderedDict()
_coverage_lock = threading.Lock()


def _held(loaded: LoadedGraph, nodes: np.ndarray, weights: np.ndarray, key: Any,
          cutoff_s: float) -> CoverageHeld:
    full = (loaded.version, key, cutoff_s, nodes.tobytes())
    with _coverage_lock:
        got = _coverage_cache.get(full)
        if got is not None:
            _coverage_cache.move_to_end(full)
            return got
    held = coverage_held(loaded.graph, nodes, weights, cutoff_s=cutoff_s)
    with _coverage_lock:
        _coverage_cache[full] = held
        while len(_coverage_cache) > 16:
            _coverage_cache.popitem(last=False)
    return held


def recommend(
    session: Session,
    *,
    incident_id: str,
    loaded: LoadedGraph,
    config: DispatchConfig,
    limit: int = 10,
    coverage_minutes: float = COVERAGE_MINUTES,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Available units of a suitable kind, fastest first, with ETA, distance, route,
    where they start from, and the share of the city's ``coverage_minutes`` coverage
    lost while each is away (see :mod:`anwang.dispatch.recommend`)."""
    from anwang.dispatch import siting

    now = _now(now)
    incident = get_incident(session, incident_id=incident_id)
    if incident.status not in (IncidentStatus.RECEIVED, IncidentStatus.DISPATCHED,
                               IncidentStatus.EN_ROUTE, IncidentStatus.ON_SCENE):
        raise Conflict(f"the incident is {incident.status}", code="anwang.dispatch.incident_closed")
    target = snap_point(loaded, incident.lat, incident.lon, field_name="incident")
    kinds = ([k.value for k in config.type(incident.type).unit_kinds]
             if config.has_type(incident.type) else [k.value for k in UnitKind])
    available = list_units(session, status=UnitStatus.AVAILABLE.value)
    suitable = [u for u in available if u.kind in kinds]
    origins = [origin_of(u, now=now, config=config) for u in suitable]
    nodes, _ = snap_points(loaded, np.array([o.lat for o in origins], dtype=np.float64),
                           np.array([o.lon for o in origins], dtype=np.float64))
    on_net = np.flatnonzero(nodes >= 0)
    ranking = rank_nearest(loaded.graph, target.node, nodes[on_net], want=limit,
                           cutoffs_s=RECOMMEND_CUTOFFS_S)

    # Coverage is the city's: every available unit counts, whoever may see it.
    everyone = session.scalars(
        select(Unit).where(Unit.status == UnitStatus.AVAILABLE.value)
        .order_by(Unit.id).execution_options(skip_scope=True)).all()
    all_origins = [origin_of(u, now=now, config=config) for u in everyone]
    all_nodes, _ = snap_points(
        loaded, np.array([o.lat for o in all_origins], dtype=np.float64),
        np.array([o.lon for o in all_origins], dtype=np.float64))
    dem = siting.demand(session, loaded)
    held_idx = {u.id: i for i, u in enumerate(everyone)}
    ok_all = all_nodes >= 0
    held = _held(loaded, all_nodes[ok_all], dem.weights, (dem.layer, dem.total),
                 coverage_minutes * 60.0)
    held_pos = np.full(len(everyone), -1)
    held_pos[np.flatnonzero(ok_all)] = np.arange(int(ok_all.sum()))

    entries: list[dict[str, Any]] = []
    for rank_pos in ranking.order.tolist():
        i = int(on_net[rank_pos])
        unit, org = suitable[i], origins[i]
        hp = held_pos[held_idx[unit.id]] if unit.id in held_idx else -1
        entry: dict[str, Any] = {
            "unit_id": unit.id, "call_sign": unit.call_sign, "kind": unit.kind,
            "status": unit.status, "origin": org.origin, "position": org.position,
            "stale": org.position != "fresh", "position_age_s": _r(org.age_s),
            "start": [round(org.lat, 6), round(org.lon, 6)],
            "eta_s": None, "distance_m": None, "route": None,
            "coverage_loss": {
                "minutes": coverage_minutes,
                "share": round(held.alone_share(int(hp)), 6) if hp >= 0 else 0.0,
                "weight": float(held.alone_weight[hp]) if hp >= 0 else 0.0,
            },
        }
        if ranking.reachable(rank_pos):
            entry["eta_s"] = round(float(ranking.eta_s[rank_pos]), 1)
            if len(entries) < limit:
                r = route_of(loaded.graph, ranking, rank_pos)
                entry["distance_m"] = round(r.distance_m, 1)
                entry["route"] = {"type": "LineString", "coordinates": r.coordinates}
        entries.append(entry)
        if len(entries) >= limit:
            break
    off_net = [suitable[i].call_sign for i in np.flatnonzero(nodes < 0).tolist()]
    return {
        "incident_id": incident.id,
        "incident": incident_payload(incident),
        "unit_kinds": kinds,
        "coverage": {"minutes": coverage_minutes, "share_now": round(held.covered_share, 6),
                     "layer": dem.layer},
        "units": entries,
        "considered": len(suitable),
        "unsuitable_kind": len(available) - len(suitable),
        "off_network": off_net,
        "stale_after_minutes": config.stale_position_minutes,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def assign_unit(
    session: Session,
    *,
    incident_id: str,
    unit_id: str,
    loaded: LoadedGraph,
    config: DispatchConfig,
    actor: str,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> Assignment:
    """Send a unit to an incident (see the module docstring for what makes it atomic)."""
    now = _now(now)
    incident = get_incident(session, incident_id=incident_id, for_update=True)
    if incident.status not in (IncidentStatus.RECEIVED, IncidentStatus.DISPATCHED,
                               IncidentStatus.EN_ROUTE, IncidentStatus.ON_SCENE):
        raise Conflict(f"the incident is {incident.status}", code="anwang.dispatch.incident_closed")
    unit = get_unit(session, unit_id=unit_id)
    if unit.status != UnitStatus.AVAILABLE:
        raise Conflict(f"{unit.call_sign} is {unit.status}, not available",
                       code="anwang.dispatch.unit_not_available")
    org = origin_of(unit, now=now, config=config)
    target = snap_point(loaded, incident.lat, incident.lon, field_name="incident")
    start = snap_point(loaded, org.lat, org.lon, field_name="unit")
    ranking = rank_units(loaded.graph, target.node, [start.node])
    if not ranking.reachable(0):
        raise Unreachable("the unit cannot reach the incident by road",
                          errors=[FieldError("unit_id", "cannot reach the incident by road")])
    r = route_of(loaded.graph, ranking, 0)
    taken = session.execute(
        update(Unit)
        .where(Unit.id == unit.id, Unit.status == UnitStatus.AVAILABLE.value)
        .values(status=UnitStatus.DISPATCHED.value, incident_id=incident.id, status_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(taken) != 1:
        raise Conflict(f"{unit.call_sign} was just given another task",
                       code="anwang.dispatch.unit_not_available")
    session.refresh(unit)
    assignment = Assignment(
        incident_id=incident.id, unit_id=unit.id, assigned_at=now, assigned_by=actor,
        eta_s=round(float(ranking.eta_s[0]), 1), distance_m=round(r.distance_m, 1),
        origin=org.origin, stale=org.position != "fresh", released_at=None,
    )
    session.add(assignment)
    first = incident.status == IncidentStatus.RECEIVED
    if first:
        incident.status = IncidentStatus.DISPATCHED.value
        if incident.dispatched_at is None:
            incident.dispatched_at = now
    suitable = (not config.has_type(incident.type)
                or unit.kind in config.type(incident.type).unit_kinds)
    session.flush()
    audit.record(
        session, "anwang.dispatch.unit.status_changed", actor=actor, actor_role=actor_role,
        subject=f"unit:{unit.id}", jurisdiction=unit.jurisdiction_code, at=now,
        data={"call_sign": unit.call_sign, "from": UnitStatus.AVAILABLE.value,
              "to": UnitStatus.DISPATCHED.value, "incident_id": incident.id},
    )
    _incident_changed(
        session, incident, "anwang.dispatch.incident.assigned", actor=actor,
        actor_role=actor_role, now=now,
        data={"unit_id": unit.id, "call_sign": unit.call_sign, "kind": unit.kind,
              "eta_s": assignment.eta_s, "distance_m": assignment.distance_m,
              "origin": org.origin, "stale": assignment.stale, "suitable_kind": suitable},
    )
    publish_after_commit(session, events.make(
        events.UNIT_ASSIGNED,
        {**unit_payload(unit), "eta_s": assignment.eta_s, "distance_m": assignment.distance_m,
         "route": {"type": "LineString", "coordinates": r.coordinates},
         "summary": f"{unit.call_sign} → {incident.type}"},
        jurisdiction=incident.jurisdiction_code, actor=actor))
    return assignment


def assignments_of(session: Session, *, incident_id: str) -> Sequence[Assignment]:
    return session.scalars(select(Assignment).where(Assignment.incident_id == incident_id)
                           .order_by(Assignment.assigned_at, Assignment.id)).all()


def current_assignment(session: Session, *, unit: Unit) -> Assignment | None:
    return session.scalars(select(Assignment).where(
        Assignment.unit_id == unit.id, Assignment.released_at.is_(None))
        .order_by(Assignment.id.desc()).limit(1)).first()


# --------------------------------------------------------------------------------------
# timeline


def incident_timeline(session: Session, *, incident: Incident) -> list[audit.AuditEntry]:
    """Every change of the incident, of its instructions, and of its units' status while
    they were assigned to it — from the audit trail, oldest first."""
    subjects = [f"incident:{incident.id}"]
    subjects += [f"instruction:{i}" for i in session.scalars(
        select(Instruction.id).where(Instruction.incident_id == incident.id)
        .execution_options(skip_scope=True))]
    unit_ids = {a.unit_id for a in assignments_of(session, incident_id=incident.id)}
    rows = list(session.scalars(
        select(audit.AuditEntry).where(audit.AuditEntry.subject.in_(subjects))))
    if unit_ids:
        unit_rows = session.scalars(select(audit.AuditEntry).where(
            audit.AuditEntry.subject.in_([f"unit:{u}" for u in unit_ids]),
            audit.AuditEntry.action == "anwang.dispatch.unit.status_changed",
            audit.AuditEntry.at >= incident.received_at,
        ))
        rows += [e for e in unit_rows if (e.data or {}).get("incident_id") == incident.id]
    return sorted(rows, key=lambda e: e.seq)
