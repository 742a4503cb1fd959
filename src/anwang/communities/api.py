"""The JSON API of communities, devices, device input and device alarms (``/api/v1``).

Permissions: registering communities and devices, issuing keys, CSV import and rule
changes need ``devices.manage``; seeing them, their health, telemetry and alarms need
``map.view`` (scoped to the caller's jurisdiction); acknowledging, clearing and closing
alarms need ``device_alarms.handle``. Devices themselves post telemetry, events and
heartbeats with their own key in ``X-Device-Key`` (no user, no API key): the same path
as MQTT messages, answered with what was accepted and refused.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from anwang.auth.deps import DbSession, Principal, StateDep, require
from anwang.auth.permissions import Action
from anwang.communities import alarms, intake, service
from anwang.communities.rules import DeviceKind
from anwang.communities.schemas import (
    AlarmOut,
    CloseBody,
    CommunityCreate,
    CommunityOut,
    CommunityUpdate,
    DayCount,
    DeviceCreate,
    DeviceCreated,
    DeviceOut,
    DeviceUpdate,
    DeviceView,
    HealthOut,
    ImportOut,
    IngestOut,
    Note,
    Refused,
    RulesOut,
    Sample,
)
from anwang.core.errors import BadRequest, NotAuthenticated, UnsupportedMediaType
from anwang.core.events import utcnow
from anwang.core.scope import Scope

router = APIRouter(tags=["communities"])

Manager = Annotated[Principal, Depends(require(Action.DEVICES_MANAGE))]
Viewer = Annotated[Principal, Depends(require(Action.MAP_VIEW))]
Handler = Annotated[Principal, Depends(require(Action.DEVICE_ALARMS_HANDLE))]

DEVICE_KEY_HEADER = "X-Device-Key"


# --- communities ----------------------------------------------------------------------


@router.post("/communities", status_code=201, response_model=CommunityOut)
def create_community(body: CommunityCreate, principal: Manager,
                     session: DbSession) -> CommunityOut:
    """Register a community; its grid is found from the outline unless given."""
    c = service.create_community(session, data=body, actor=principal.name,
                                 actor_role=str(principal.role))
    return CommunityOut.model_validate(c)


@router.get("/communities", response_model=list[CommunityOut])
def list_communities(principal: Viewer, session: DbSession,
                     q: Annotated[str | None, Query(max_length=100)] = None,
                     active: bool | None = None) -> list[CommunityOut]:
    return [CommunityOut.model_validate(c)
            for c in service.list_communities(session, q=q, active=active)]


@router.get("/communities/{code}", response_model=CommunityOut)
def get_community(code: str, principal: Viewer, session: DbSession) -> CommunityOut:
    return CommunityOut.model_validate(service.get_community(session, code=code))


@router.patch("/communities/{code}", response_model=CommunityOut)
def update_community(code: str, body: CommunityUpdate, principal: Manager,
                     session: DbSession) -> CommunityOut:
    c = service.update_community(session, code=code, changes=body, actor=principal.name,
                                 actor_role=str(principal.role))
    return CommunityOut.model_validate(c)


# --- rules ----------------------------------------------------------------------------


def _rules_out(session: Any, kind: DeviceKind, community: str | None) -> RulesOut:
    return RulesOut(
        kind=kind, community=community,
        changes=service.rule_changes(session, kind=kind, community=community),
        rules=service.effective_rules(session, kind=kind, community=community),
    )


@router.get("/device-rules/{kind}", response_model=RulesOut)
def get_kind_rules(kind: DeviceKind, principal: Viewer, session: DbSession) -> RulesOut:
    """The rules of a device kind city-wide: the changes stored and the result."""
    return _rules_out(session, kind, None)


@router.put("/device-rules/{kind}", response_model=RulesOut)
def set_kind_rules(kind: DeviceKind, body: list[dict[str, Any]], principal: Manager,
                   session: DbSession) -> RulesOut:
    """Replace the city-wide changes of a kind's rules: a list of partial rules merged by
    ``id`` over the defaults (``{"id": "overheat", "above": 75}``; a new id must be a
    whole rule; ``"enabled": false`` turns one off)."""
    service.set_rules(session, kind=kind, community=None, changes=body,
                      actor=principal.name, actor_role=str(principal.role))
    return _rules_out(session, kind, None)


@router.get("/communities/{code}/rules/{kind}", response_model=RulesOut)
def get_community_rules(code: str, kind: DeviceKind, principal: Viewer,
                        session: DbSession) -> RulesOut:
    return _rules_out(session, kind, code)


@router.put("/communities/{code}/rules/{kind}", response_model=RulesOut)
def set_community_rules(code: str, kind: DeviceKind, body: list[dict[str, Any]],
                        principal: Manager, session: DbSession) -> RulesOut:
    """Replace one community's changes of a kind's rules (merged over the city's)."""
    service.set_rules(session, kind=kind, community=code, changes=body,
                      actor=principal.name, actor_role=str(principal.role))
    return _rules_out(session, kind, code)


# --- devices --------------------------------------------------------------------------


def _created(device: Any, key: str | None) -> DeviceCreated:
    out = DeviceCreated.model_validate(device)
    out.key = key
    return out


@router.post("/devices", status_code=201, response_model=DeviceCreated)
def create_device(body: DeviceCreate, principal: Manager, session: DbSession) -> DeviceCreated:
    """Register a device. The answer carries its key, this once."""
    device, key = service.create_device(session, data=body, actor=principal.name,
                                        actor_role=str(principal.role))
    return _created(device, key)


@router.get("/devices", response_model=list[DeviceOut])
def list_devices(
    principal: Viewer, session: DbSession,
    community: Annotated[str | None, Query(max_length=40)] = None,
    kind: DeviceKind | None = None,
    active: bool | None = None,
    after: Annotated[str | None, Query(max_length=64, description="page after this id")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[DeviceOut]:
    return [DeviceOut.model_validate(d) for d in service.list_devices(
        session, community=community, kind=kind, active=active, after=after, limit=limit)]


@router.post("/devices/import", response_model=ImportOut)
async def import_devices(request: Request, principal: Manager, state: StateDep) -> ImportOut:
    """Register or update devices from a CSV body (``text/csv``; see docs/devices.md).
    Each row stands alone; new devices' keys are in the answer, this once."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/csv":
        raise UnsupportedMediaType("Send the devices as text/csv.")
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The CSV must be UTF-8.", code="anwang.communities.csv_encoding") from None

    def work() -> ImportOut:
        with state.db.unit_of_work(info={"scope": principal.scope,
                                         "principal": principal}) as session:
            result = service.import_devices(session, text=text, actor=principal.name,
                                            actor_role=str(principal.role))
        return ImportOut.model_validate(result, from_attributes=True)

    return await run_in_threadpool(work)


@router.get("/devices/{device_id}", response_model=DeviceView)
def get_device(device_id: str, principal: Viewer, session: DbSession) -> DeviceView:
    """A device with its state (``online``, ``offline``, ``never`` reported,
    ``inactive``), last seen, battery, latest metrics, open alarms and dropped
    messages by reason."""
    d = service.device_detail(session, device_id=device_id)
    st = d.status
    base = DeviceOut.model_validate(d.device).model_dump()
    return DeviceView(
        **base, state=d.state,
        last_seen_at=st.last_seen_at if st else None,
        offline_since=st.offline_since if st else None,
        last_ts=st.last_ts if st else None,
        battery_pct=st.battery_pct if st else None,
        metrics=st.metrics if st else None,
        messages=st.messages if st else 0,
        open_alarms=[AlarmOut.of(a) for a in d.open_alarms],
        rejected=d.rejected,
    )


@router.patch("/devices/{device_id}", response_model=DeviceOut)
def update_device(device_id: str, body: DeviceUpdate, principal: Manager,
                  session: DbSession) -> DeviceOut:
    d = service.update_device(session, device_id=device_id, changes=body,
                              actor=principal.name, actor_role=str(principal.role))
    return DeviceOut.model_validate(d)


@router.delete("/devices/{device_id}", response_model=DeviceOut)
def deactivate_device(device_id: str, principal: Manager, session: DbSession) -> DeviceOut:
    """Deactivate: its messages are refused and it is no longer watched; its alarms and
    history stay."""
    d = service.update_device(session, device_id=device_id,
                              changes=DeviceUpdate(active=False), actor=principal.name,
                              actor_role=str(principal.role))
    return DeviceOut.model_validate(d)


@router.post("/devices/{device_id}/credential", response_model=DeviceCreated)
def reissue_credential(device_id: str, principal: Manager, session: DbSession) -> DeviceCreated:
    """A new key for the device (the old one stops working)."""
    d, key = service.reissue_credential(session, device_id=device_id, actor=principal.name,
                                        actor_role=str(principal.role))
    return _created(d, key)


@router.get("/devices/{device_id}/samples", response_model=list[Sample])
def device_samples(
    device_id: str, principal: Viewer, session: DbSession,
    since: datetime | None = None, until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=20_000)] = 5000,
) -> list[Sample]:
    """Telemetry of the device (device time), oldest first; default the last 24 hours."""
    since = since or utcnow() - timedelta(hours=24)
    return [Sample(ts=s.ts, metrics=s.metrics) for s in service.device_samples(
        session, device_id=device_id, since=since, until=until, limit=limit)]


@router.get("/device-health", response_model=HealthOut)
def device_health(
    principal: Viewer, session: DbSession,
    community: Annotated[str | None, Query(max_length=40)] = None,
    state: Annotated[str | None, Query(pattern="^(online|offline|never|inactive)$")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> HealthOut:
    """Online share, devices by state, low batteries and dropped messages by reason,
    with one row per device (offline first)."""
    h = service.device_health(session, community=community, state=state, limit=limit)
    return HealthOut(**h.summary, rows=h.rows)


# --- device input ---------------------------------------------------------------------


def _split(body: bytes, ctype: str) -> list[bytes] | None:
    """NDJSON lines, or the items of a JSON array; None: the body is one message."""
    if ctype == "application/x-ndjson":
        return [line for line in body.splitlines() if line.strip()]
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            items = json.loads(body)
        except ValueError:
            return None
        if isinstance(items, list):
            return [json.dumps(i).encode() for i in items]
    return None


async def _device_input(request: Request, state: StateDep, device_id: str, channel: str,
                        key: str | None) -> IngestOut:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    settings = state.settings

    def work() -> intake.IngestReport | None:
        with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
            adapter = service.adapter_of(session, device_id=device_id)
            parts = _split(body, ctype) if adapter == "native" else None
            return service.ingest_http(
                session, device_id=device_id, key=key, channel=channel,
                bodies=[body] if parts is None else parts,
                max_future_s=settings.device_clock_skew_s,
            )

    report = await run_in_threadpool(work)
    if report is None:
        raise NotAuthenticated(
            f"Send the device's own key in the {DEVICE_KEY_HEADER} header.",
            code="anwang.communities.device_key_invalid",
            headers={"WWW-Authenticate": DEVICE_KEY_HEADER},
        )
    if report.accepted == 0 and len(report.refused) == 1:
        raise service.rejected_to_error(report.refused[0])
    return IngestOut(
        accepted=report.accepted,
        refused=[Refused(index=r.index, reason=r.reason, field=r.field, detail=r.detail)
                 for r in report.refused],
        raised=report.raised, cleared=report.cleared,
    )


_INPUT_DOC = {
    "requestBody": {"content": {
        "application/json": {"schema": {"type": "object"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    }},
}
DeviceKey = Annotated[str | None, Header(alias=DEVICE_KEY_HEADER)]


@router.post("/devices/{device_id}/telemetry", response_model=IngestOut,
             openapi_extra=_INPUT_DOC)
async def post_telemetry(device_id: str, request: Request, state: StateDep,
                         x_device_key: DeviceKey = None) -> IngestOut:
    """``{"ts": "<RFC 3339>", "metrics": {"temperature_c": 41.5, ...}}`` — or a list of
    them, or NDJSON; each item is judged on its own. A single item that is refused
    answers 422 with the field and the reason."""
    return await _device_input(request, state, device_id, "telemetry", x_device_key)


@router.post("/devices/{device_id}/events", response_model=IngestOut,
             openapi_extra=_INPUT_DOC)
async def post_events(device_id: str, request: Request, state: StateDep,
                      x_device_key: DeviceKey = None) -> IngestOut:
    """``{"ts": "<RFC 3339>", "event": "smoke_alarm", "detail": {...}}`` — or a list,
    or NDJSON."""
    return await _device_input(request, state, device_id, "events", x_device_key)


@router.post("/devices/{device_id}/heartbeat", response_model=IngestOut,
             openapi_extra=_INPUT_DOC)
async def post_heartbeat(device_id: str, request: Request, state: StateDep,
                         x_device_key: DeviceKey = None) -> IngestOut:
    """An empty body or ``{"ts": ..., "metrics": {"battery_pct": 88}}``."""
    return await _device_input(request, state, device_id, "heartbeat", x_device_key)


# --- alarms ---------------------------------------------------------------------------


@router.get("/alarms", response_model=list[AlarmOut])
def list_alarms(
    principal: Viewer, session: DbSession,
    status: Annotated[list[alarms.AlarmStatus] | None, Query()] = None,
    open: bool | None = None,  # noqa: A002 - the filter's name in the API
    kind: Annotated[str | None, Query(max_length=30)] = None,
    severity: Annotated[str | None, Query(max_length=10)] = None,
    community: Annotated[str | None, Query(max_length=40)] = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[str | None, Query(max_length=26, description="older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlarmOut]:
    """Community device alarms in your jurisdiction, newest first. ``open=true`` is
    ``status=active&status=acknowledged``."""
    statuses = [str(s) for s in status or ()]
    if open:
        statuses = [str(s) for s in alarms.OPEN_STATUSES]
    return [AlarmOut.of(a) for a in alarms.list_alarms(
        session, status=statuses, kind=kind, severity=severity, community=community,
        device=device, since=since, until=until, before=before, limit=limit)]


@router.get("/alarms/per-day", response_model=list[DayCount])
def alarms_per_day(principal: Viewer, session: DbSession,
                   days: Annotated[int, Query(ge=1, le=366)] = 30,
                   community: Annotated[str | None, Query(max_length=40)] = None,
                   ) -> list[DayCount]:
    """Alarms raised per day (UTC) and severity."""
    return [DayCount(day=d, severity=s, count=n) for d, s, n in alarms.alarms_per_day(
        session, days=days, now=utcnow(), community=community)]


@router.get("/alarms/{alarm_id}", response_model=AlarmOut)
def get_alarm(alarm_id: str, principal: Viewer, session: DbSession) -> AlarmOut:
    return AlarmOut.of(alarms.get_alarm(session, alarm_id=alarm_id))


@router.post("/alarms/{alarm_id}/acknowledge", response_model=AlarmOut)
def acknowledge_alarm(alarm_id: str, principal: Handler, session: DbSession,
                      body: Note | None = None) -> AlarmOut:
    """Take the alarm: it stops escalating."""
    a = alarms.acknowledge(session, alarm_id=alarm_id, actor=principal.name,
                           actor_role=str(principal.role), note=body.note if body else None,
                           now=utcnow())
    return AlarmOut.of(a)


@router.post("/alarms/{alarm_id}/clear", response_model=AlarmOut)
def clear_alarm(alarm_id: str, principal: Handler, session: DbSession,
                body: Note | None = None) -> AlarmOut:
    """End the alarm's condition by hand; the rule starts over."""
    a = alarms.clear(session, alarm_id=alarm_id, actor=principal.name,
                     actor_role=str(principal.role), note=body.note if body else None,
                     now=utcnow())
    return AlarmOut.of(a)


@router.post("/alarms/{alarm_id}/close", response_model=AlarmOut)
def close_alarm(alarm_id: str, body: CloseBody, principal: Handler,
                session: DbSession) -> AlarmOut:
    """Close with the outcome: ``real``, ``false_alarm``, ``test`` or ``device_fault``."""
    a = alarms.close(session, alarm_id=alarm_id, outcome=body.outcome, actor=principal.name,
                     actor_role=str(principal.role), note=body.note, now=utcnow())
    return AlarmOut.of(a)

