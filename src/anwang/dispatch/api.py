"""The dispatch JSON API (mounted under ``/api/v1``): incidents, units, positions,
recommendations, assignment, instructions and response times.

Who may do what: taking calls, dispatching and instructing need ``incidents.manage``;
reporting a unit's position or status and acknowledging an instruction need
``units.report`` (officers' phones, vehicle terminals holding a device key);
registering units needs ``units.manage``. Incidents, units and instructions are
jurisdiction-scoped: outside the caller's jurisdiction they do not exist (404).

Routes are plain ``def``: FastAPI runs them in its thread pool, so routing on the road
graph never blocks the event loop.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session

from anwang.auth.deps import CurrentPrincipal, DbSession, Principal, StateDep, require
from anwang.auth.permissions import Action
from anwang.core.errors import PermissionDenied, Unavailable, ValidationFailed
from anwang.core.events import utcnow
from anwang.dispatch import handlers, service, stats
from anwang.dispatch import instructions as instructions_service
from anwang.dispatch.config import DispatchConfig, load_config
from anwang.dispatch.models import Incident, Instruction, Unit
from anwang.dispatch.schemas import (
    AssignmentOut,
    AssignRequest,
    IncidentCreate,
    IncidentOut,
    IncidentStatusRequest,
    InstructionCreate,
    InstructionOut,
    PositionReport,
    TimelineItem,
    UnitCreate,
    UnitOut,
    UnitStatusRequest,
)
from anwang.roads import service as roads_service
from anwang.roads.service import LoadedGraph
from anwang.state import AppState

router = APIRouter(tags=["dispatch"], lifespan=handlers.lifespan)

Dispatcher = Annotated[Principal, Depends(require(Action.INCIDENTS_MANAGE))]
Reporter = Annotated[Principal, Depends(require(Action.UNITS_REPORT))]
UnitManager = Annotated[Principal, Depends(require(Action.UNITS_MANAGE))]


async def _unit_viewer(principal: CurrentPrincipal) -> Principal:
    if not (principal.can(Action.INCIDENTS_MANAGE) or principal.can(Action.UNITS_REPORT)):
        raise PermissionDenied(f"The role {principal.role} may not see units.",
                               code="anwang.auth.permission_denied")
    return principal


async def _stats_reader(principal: CurrentPrincipal) -> Principal:
    if not (principal.can(Action.INCIDENTS_MANAGE) or principal.can(Action.COVERAGE_PLAN)):
        raise PermissionDenied(f"The role {principal.role} may not see response times.",
                               code="anwang.auth.permission_denied")
    return principal


UnitViewer = Annotated[Principal, Depends(_unit_viewer)]
StatsReader = Annotated[Principal, Depends(_stats_reader)]


def config_of(state: AppState) -> DispatchConfig:
    return load_config(state.settings.data_dir)


def graph_of(state: AppState) -> LoadedGraph:
    return roads_service.load(state.settings.data_dir)


def maybe_graph(state: AppState) -> LoadedGraph | None:
    try:
        return graph_of(state)
    except Unavailable:
        return None


def incident_out(session: Session, i: Incident) -> IncidentOut:
    units = []
    for a in service.assignments_of(session, incident_id=i.id):
        u = session.get(Unit, a.unit_id)
        units.append(AssignmentOut(
            unit_id=a.unit_id, call_sign=u.call_sign if u else None, assigned_at=a.assigned_at,
            assigned_by=a.assigned_by, eta_s=a.eta_s, distance_m=a.distance_m, origin=a.origin,
            stale=a.stale, released_at=a.released_at))
    return IncidentOut(
        id=i.id, type=i.type, priority=i.priority, status=i.status, lat=i.lat, lon=i.lon,
        address=i.address, caller=i.caller, description=i.description, alert_id=i.alert_id,
        external_ref=i.external_ref, jurisdiction=i.jurisdiction_code, district=i.district_code,
        received_at=i.received_at, dispatched_at=i.dispatched_at, en_route_at=i.en_route_at,
        on_scene_at=i.on_scene_at, cleared_at=i.cleared_at, response_s=i.response_s,
        created_by=i.created_by, units=units,
    )


def unit_out(u: Unit, config: DispatchConfig) -> UnitOut:
    now = utcnow()
    age = service.position_age_s(u, now)
    return UnitOut(
        id=u.id, call_sign=u.call_sign, kind=u.kind, status=u.status,
        home_post_id=u.home_post_id, home_lat=u.home_lat, home_lon=u.home_lon, lat=u.lat,
        lon=u.lon, position_at=u.position_at,
        position_age_s=None if age is None else round(age, 1),
        position_stale=age is None or age > config.stale_position_minutes * 60,
        incident_id=u.incident_id, status_at=u.status_at, jurisdiction=u.jurisdiction_code,
    )


def instruction_out(i: Instruction) -> InstructionOut:
    return InstructionOut(
        id=i.id, incident_id=i.incident_id, unit_id=i.unit_id, post_id=i.post_id, text=i.text,
        sent_at=i.sent_at, sent_by=i.sent_by, acknowledged_at=i.acknowledged_at,
        acknowledged_by=i.acknowledged_by, escalation_level=i.escalation_level,
        escalated_at=i.escalated_at,
    )


# --- taxonomy -------------------------------------------------------------------------


@router.get("/incident-types")
def incident_types(principal: UnitViewer, state: StateDep) -> list[dict[str, Any]]:
    """The incident taxonomy: code, default priority and the unit kinds it needs."""
    return [{"code": t.code, "priority": t.priority, "unit_kinds": [k.value for k in t.unit_kinds]}
            for t in config_of(state).types]


# --- incidents ------------------------------------------------------------------------


@router.get("/incidents", response_model=list[IncidentOut])
def list_incidents(
    principal: Dispatcher,
    session: DbSession,
    status: Annotated[str | None, Query(max_length=20)] = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[IncidentOut]:
    """Incidents in your jurisdiction, most urgent and newest first."""
    rows = service.list_incidents(session, status=status, active=active, limit=limit,
                                  offset=offset)
    return [incident_out(session, i) for i in rows]


@router.post("/incidents", response_model=IncidentOut, status_code=201)
def create_incident(
    body: IncidentCreate, principal: Dispatcher, session: DbSession, state: StateDep,
    response: Response,
) -> IncidentOut:
    """Record a call for service (201), or make one from an alert (``alert_id``: the
    place and the vehicle come from the alert; ``type`` defaults to
    ``suspicious_vehicle``). A repeated ``external_ref`` or ``alert_id`` answers the
    existing incident with 200."""
    config = config_of(state)
    if body.alert_id is not None:
        incident, created = service.create_incident_from_alert(
            session, alert_id=body.alert_id, config=config, loaded=maybe_graph(state),
            type=body.type or "suspicious_vehicle", priority=body.priority,
            description=body.description, actor=principal.name, actor_role=principal.role)
    else:
        missing = [f for f in ("type", "lat", "lon") if getattr(body, f) is None]
        if missing:
            raise ValidationFailed.on(missing[0], "required")
        assert body.type is not None and body.lat is not None and body.lon is not None
        incident, created = service.create_incident(
            session,
            data=service.IncidentInput(
                type=body.type, lat=body.lat, lon=body.lon, priority=body.priority,
                address=body.address, caller=body.caller, description=body.description,
                external_ref=body.external_ref, received_at=body.received_at),
            config=config, loaded=maybe_graph(state), actor=principal.name,
            actor_role=principal.role)
    if not created:
        response.status_code = 200
    return incident_out(session, incident)


@router.get("/incidents/{incident_id}", response_model=IncidentOut)
def get_incident(incident_id: str, principal: Dispatcher, session: DbSession) -> IncidentOut:
    return incident_out(session, service.get_incident(session, incident_id=incident_id))


@router.get("/incidents/{incident_id}/recommendations")
def recommendations(
    incident_id: str,
    principal: Dispatcher,
    session: DbSession,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Available units of a suitable kind ranked by ETA over the road network, each with
    its route, where it starts (``origin``: ``position``, or ``home`` when the position
    is ``stale`` or ``missing``), and the share of the city's 3-minute coverage lost
    while it is away."""
    return service.recommend(session, incident_id=incident_id, loaded=graph_of(state),
                             config=config_of(state), limit=limit)


@router.post("/incidents/{incident_id}/assign", response_model=IncidentOut)
def assign(
    incident_id: str, body: AssignRequest, principal: Dispatcher, session: DbSession,
    state: StateDep,
) -> IncidentOut:
    """Send a unit (409 ``anwang.dispatch.unit_not_available`` if it is not available)."""
    service.assign_unit(session, incident_id=incident_id, unit_id=body.unit_id,
                        loaded=graph_of(state), config=config_of(state), actor=principal.name,
                        actor_role=principal.role)
    return incident_out(session, service.get_incident(session, incident_id=incident_id))


@router.post("/incidents/{incident_id}/status", response_model=IncidentOut)
def incident_status(
    incident_id: str, body: IncidentStatusRequest, principal: Dispatcher, session: DbSession,
) -> IncidentOut:
    """Clear or cancel an incident; its units become available."""
    incident = service.set_incident_status(
        session, incident_id=incident_id, status=body.status, reason=body.reason,
        actor=principal.name, actor_role=principal.role)
    return incident_out(session, incident)


@router.get("/incidents/{incident_id}/timeline", response_model=list[TimelineItem])
def timeline(incident_id: str, principal: Dispatcher, session: DbSession) -> list[TimelineItem]:
    """Every change of the incident, its instructions and its units, from the audit trail."""
    incident = service.get_incident(session, incident_id=incident_id)
    return [TimelineItem(seq=e.seq, at=e.at, action=e.action, actor=e.actor,
                         actor_role=e.actor_role, subject=e.subject, reason=e.reason, data=e.data)
            for e in service.incident_timeline(session, incident=incident)]


# --- units ----------------------------------------------------------------------------


@router.get("/units", response_model=list[UnitOut])
def list_units(
    principal: UnitViewer,
    session: DbSession,
    state: StateDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    kind: Annotated[str | None, Query(max_length=30)] = None,
) -> list[UnitOut]:
    config = config_of(state)
    return [unit_out(u, config) for u in service.list_units(session, status=status, kind=kind)]


@router.post("/units", response_model=UnitOut, status_code=201)
def create_unit(
    body: UnitCreate, principal: UnitManager, session: DbSession, state: StateDep
) -> UnitOut:
    """Register a unit with a home post, or with ``lat``/``lon`` as its home."""
    if body.home_post_id is None and (body.lat is None) != (body.lon is None):
        raise ValidationFailed.on("lat" if body.lat is None else "lon", "give both lat and lon")
    unit = service.create_unit(session, call_sign=body.call_sign, kind=body.kind.value,
                               home_post_id=body.home_post_id, lat=body.lat, lon=body.lon,
                               actor=principal.name, actor_role=principal.role)
    return unit_out(unit, config_of(state))


@router.get("/units/{unit_id}", response_model=UnitOut)
def get_unit(unit_id: str, principal: UnitViewer, session: DbSession, state: StateDep) -> UnitOut:
    return unit_out(service.get_unit(session, unit_id=unit_id), config_of(state))


@router.post("/units/{unit_id}/position", response_model=UnitOut)
def report_position(
    unit_id: str, body: PositionReport, principal: Reporter, session: DbSession, state: StateDep
) -> UnitOut:
    """A position report. ``at`` (with a UTC offset; default: now) more than a minute in
    the future is refused (422 ``anwang.dispatch.position_in_future``). Reporting the
    same (unit, ``at``) again stores nothing new."""
    if body.at is not None and body.at.tzinfo is None:
        raise ValidationFailed.on("at", "must carry a UTC offset")
    unit, _ = service.record_position(
        session, unit_id=unit_id, lat=body.lat, lon=body.lon, at=body.at,
        speed_kmh=body.speed_kmh, heading=body.heading, source="api")
    return unit_out(unit, config_of(state))


@router.post("/units/{unit_id}/status", response_model=UnitOut)
def unit_status(
    unit_id: str, body: UnitStatusRequest, principal: Reporter, session: DbSession,
    state: StateDep,
) -> UnitOut:
    """``en_route``, ``on_scene``, ``available`` (released), ``out_of_service``; the
    incident follows (its en-route and on-scene times, its response time)."""
    unit = service.set_unit_status(session, unit_id=unit_id, status=body.status.value,
                                   reason=body.reason, actor=principal.name,
                                   actor_role=principal.role)
    return unit_out(unit, config_of(state))


@router.get("/units/{unit_id}/instructions", response_model=list[InstructionOut])
def unit_instructions(
    unit_id: str, principal: UnitViewer, session: DbSession, open: bool = False,  # noqa: A002
) -> list[InstructionOut]:
    unit = service.get_unit(session, unit_id=unit_id)
    return [instruction_out(i) for i in instructions_service.list_instructions(
        session, unit_id=unit.id, open_only=open)]


# --- instructions ---------------------------------------------------------------------


@router.post("/instructions", response_model=InstructionOut, status_code=201)
def send_instruction(
    body: InstructionCreate, principal: Dispatcher, session: DbSession
) -> InstructionOut:
    """An instruction to a unit or a post (exactly one), optionally about an incident."""
    return instruction_out(instructions_service.send_instruction(
        session, text=body.text, unit_id=body.unit_id, post_id=body.post_id,
        incident_id=body.incident_id, actor=principal.name, actor_role=principal.role))


@router.get("/instructions", response_model=list[InstructionOut])
def list_instructions(
    principal: Dispatcher,
    session: DbSession,
    incident_id: Annotated[str | None, Query(max_length=26)] = None,
    open: bool = False,  # noqa: A002
) -> list[InstructionOut]:
    return [instruction_out(i) for i in instructions_service.list_instructions(
        session, incident_id=incident_id, open_only=open)]


@router.post("/instructions/{instruction_id}/acknowledge", response_model=InstructionOut)
def acknowledge(instruction_id: str, principal: Reporter, session: DbSession) -> InstructionOut:
    """Acknowledge once (409 ``anwang.dispatch.already_acknowledged`` the second time)."""
    return instruction_out(instructions_service.acknowledge(
        session, instruction_id=instruction_id, actor=principal.name, actor_role=principal.role))


# --- response times -------------------------------------------------------------------


@router.get("/dispatch/response-times")
def response_times(
    principal: StatsReader,
    session: DbSession,
    state: StateDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> dict[str, Any]:
    """Received → on scene against the 1/3/5-minute targets, per district and hour."""
    now = utcnow()
    return stats.response_times(session, since=now - timedelta(days=days),
                                until=now + timedelta(seconds=1), tz=config_of(state).tz)
