"""Pages of the smart communities: the communities and their map, one community with its
devices, a device with its telemetry chart, the alarm list with alarms per day, one alarm
with its actions, and device health.

Like the other domain pages, each route takes :data:`OptionalPrincipal`: no session →
sign in; no permission → the 403 page. Seeing needs ``map.view``; changing the registry
``devices.manage``; acting on an alarm ``device_alarms.handle``. Forms post to these
routes with the session's CSRF token; every change goes through the services, audited
there. Maps and charts are drawn by ``static/js/communities.js`` from ``<script
type="application/json">`` blocks (no inline script).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from anwang.auth.deps import OptionalPrincipal, Principal
from anwang.auth.permissions import Action
from anwang.communities import alarms, service
from anwang.communities.adapters import Reason
from anwang.communities.models import DeviceAlarm
from anwang.communities.rules import DeviceKind, level_name
from anwang.communities.schemas import CommunityCreate, DeviceCreate, DeviceUpdate
from anwang.core.errors import AnwangError, ValidationFailed
from anwang.core.events import utcnow
from anwang.state import AppState
from anwang.web.pages import html_error, safe_next
from anwang.web.templating import N_, choose_locale, render, translations

router = APIRouter(include_in_schema=False)

KIND_LABELS: dict[str, str] = {
    "smoke_alarm": N_("Smoke alarm"),
    "charging_pile": N_("Charging pile"),
    "manhole_cover": N_("Manhole cover"),
    "throw_camera": N_("Falling-object camera"),
    "gate_sensor": N_("Gate sensor"),
}
STATE_LABELS: dict[str, str] = {
    "online": N_("Online"),
    "offline": N_("Offline"),
    "never": N_("Never reported"),
    "inactive": N_("Deactivated"),
}
ALARM_LABELS: dict[str, str] = {
    "fire": N_("Fire"),
    "overheat": N_("Overheating"),
    "temperature_rise": N_("Temperature rising fast"),
    "electrical_fault": N_("Electrical fault"),
    "cover_open": N_("Manhole cover open"),
    "cover_displaced": N_("Manhole cover displaced"),
    "object_thrown": N_("Object thrown from height"),
    "gate_forced": N_("Gate forced open"),
    "gate_held_open": N_("Gate held open"),
    "maintenance": N_("Maintenance"),
}
SEVERITY_LABELS: dict[str, str] = {
    "critical": N_("Critical"), "high": N_("High"), "medium": N_("Medium"), "low": N_("Low"),
}
STATUS_LABELS: dict[str, str] = {
    "active": N_("Active"), "acknowledged": N_("Acknowledged"), "cleared": N_("Cleared"),
    "closed": N_("Closed"),
}
OUTCOME_LABELS: dict[str, str] = {
    "real": N_("Real"), "false_alarm": N_("False alarm"), "test": N_("Test"),
    "device_fault": N_("Device fault"),
}
LEVEL_LABELS: dict[str, str] = {
    "community": N_("Community (property manager, grid worker)"),
    "police_station": N_("Police station"),
    "fire_service": N_("Fire service"),
    "command": N_("Command centre"),
}
REASON_LABELS: dict[str, str] = {
    Reason.NOT_JSON: N_("Not JSON"),
    Reason.BAD_SHAPE: N_("Malformed"),
    Reason.WRONG_TYPE: N_("Wrong type"),
    Reason.BAD_TIMESTAMP: N_("Bad timestamp"),
    Reason.FUTURE_TIMESTAMP: N_("Timestamp in the future"),
    Reason.IMPOSSIBLE_VALUE: N_("Impossible value"),
    Reason.UNKNOWN_EVENT: N_("Unknown event"),
    Reason.UNKNOWN_DEVICE: N_("Unknown device"),
    Reason.WRONG_CREDENTIALS: N_("Wrong credentials"),
    Reason.DEVICE_INACTIVE: N_("Device deactivated"),
    Reason.BAD_TOPIC: N_("Wrong topic"),
    Reason.TOO_LARGE: N_("Too large"),
    Reason.HANDLER_ERROR: N_("Processing error"),
}
#: Alarms shown on the list page.
ALARM_PAGE_SIZE = 200


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


def _login(request: Request) -> RedirectResponse:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": path} if safe_next(path) else {}
    return RedirectResponse("/login" + ("?" + urlencode(query) if query else ""),
                            status_code=303)


def _gate(request: Request, principal: Principal | None, action: Action) -> Response | None:
    if principal is None:
        return _login(request)
    if not principal.can(action):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    return None


def _t(request: Request, principal: Principal) -> Any:
    return translations(choose_locale(request, _state(request).settings, principal)).gettext


def _labels(request: Request, principal: Principal) -> dict[str, Any]:
    t = _t(request, principal)
    return {
        "kind_labels": KIND_LABELS, "state_labels": STATE_LABELS, "alarm_labels": ALARM_LABELS,
        "severity_labels": SEVERITY_LABELS, "status_labels": STATUS_LABELS,
        "outcome_labels": OUTCOME_LABELS, "level_labels": LEVEL_LABELS,
        "reason_labels": REASON_LABELS, "level_name": level_name,
        "client_i18n": {
            "state": {k: t(v) for k, v in STATE_LABELS.items()},
            "kind": {k: t(v) for k, v in KIND_LABELS.items()},
            "severity": {k: t(v) for k, v in SEVERITY_LABELS.items()},
            "alarms": t("Alarms"),
            "no_data": t("No data in this period."),
        },
        "can_manage": principal.can(Action.DEVICES_MANAGE),
        "can_handle": principal.can(Action.DEVICE_ALARMS_HANDLE),
    }


def _uow(request: Request, principal: Principal, *, readonly: bool = False) -> Any:
    return _state(request).db.unit_of_work(
        readonly=readonly, info={"scope": principal.scope, "principal": principal})


def _errors(request: Request, principal: Principal, exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [f"{'.'.join(str(p) for p in e['loc']) or '-'}: {e['msg']}" for e in exc.errors()]
    if isinstance(exc, AnwangError):
        return [f"{e.field}: {e.reason}" for e in exc.errors] or [exc.detail]
    return [_t(request, principal)("Something went wrong.")]


# --- communities ----------------------------------------------------------------------


def _communities_page(request: Request, principal: Principal, *,
                      form: dict[str, str] | None = None, form_errors: list[str] | None = None,
                      imported: Any = None, status_code: int = 200) -> Response:
    with _uow(request, principal, readonly=True) as session:
        communities = service.list_communities(session)
        health = service.device_health(session, limit=1)
        stats = service.community_stats(session)
        open_alarms = alarms.list_alarms(session, status=list(alarms.OPEN_STATUSES), limit=50)
    markers = [{"code": c.code, "name": c.name, "lat": c.center_lat, "lon": c.center_lon,
                "devices": stats.get(c.code, {}).get("devices", 0),
                "open_alarms": stats.get(c.code, {}).get("open_alarms", 0)}
               for c in communities]
    return render(request, "communities/list.html", {
        "active_nav": "communities",
        "communities": communities, "stats": stats, "summary": health.summary,
        "open_alarms": open_alarms, "markers": markers,
        "form": form or {}, "form_errors": form_errors, "imported": imported,
        **_labels(request, principal),
    }, principal, status_code=status_code)


@router.get("/communities")
def communities_page(request: Request, principal: OptionalPrincipal) -> Response:
    if (refused := _gate(request, principal, Action.MAP_VIEW)) is not None:
        return refused
    assert principal is not None
    return _communities_page(request, principal)


FormText = Annotated[str, Form(max_length=300)]


@router.post("/communities")
def create_community(
    request: Request, principal: OptionalPrincipal,
    code: FormText = "", name: FormText = "", address: FormText = "", grid: FormText = "",
    polygon: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    if (refused := _gate(request, principal, Action.DEVICES_MANAGE)) is not None:
        return refused
    assert principal is not None
    form = {"code": code.strip(), "name": name, "address": address, "grid": grid.strip(),
            "polygon": polygon}
    try:
        try:
            outline = json.loads(polygon)
        except ValueError:
            raise ValidationFailed.on("polygon", "not JSON (a GeoJSON Polygon)") from None
        data = CommunityCreate.model_validate({
            "code": form["code"], "name": name, "polygon": outline,
            "address": address or None, "grid": form["grid"] or None,
        })
        with _uow(request, principal) as session:
            service.create_community(session, data=data, actor=principal.name,
                                     actor_role=str(principal.role))
    except (ValidationError, AnwangError) as exc:
        return _communities_page(request, principal, form=form,
                                 form_errors=_errors(request, principal, exc), status_code=422)
    return RedirectResponse(f"/communities/{data.code}", status_code=303)


@router.post("/communities/import")
async def import_devices(request: Request, principal: OptionalPrincipal,
                         file: UploadFile) -> Response:
    if (refused := _gate(request, principal, Action.DEVICES_MANAGE)) is not None:
        return refused
    assert principal is not None
    raw = await file.read(8 * 1024 * 1024)

    def work() -> Response:
        try:
            with _uow(request, principal) as session:
                result = service.import_devices(session, text=raw.decode("utf-8-sig"),
                                                actor=principal.name,
                                                actor_role=str(principal.role))
        except (UnicodeDecodeError, AnwangError) as exc:
            errors = (["file: UTF-8 CSV expected"] if isinstance(exc, UnicodeDecodeError)
                      else _errors(request, principal, exc))
            return _communities_page(request, principal, form_errors=errors, status_code=422)
        return _communities_page(request, principal, imported=result)

    return await run_in_threadpool(work)


@router.get("/communities/{code}")
def community_page(code: str, request: Request, principal: OptionalPrincipal) -> Response:
    if (refused := _gate(request, principal, Action.MAP_VIEW)) is not None:
        return refused
    assert principal is not None
    return _community_page(request, principal, code)


def _community_page(request: Request, principal: Principal, code: str, *,
                    form: dict[str, str] | None = None, form_errors: list[str] | None = None,
                    new_key: tuple[str, str] | None = None, status_code: int = 200) -> Response:
    try:
        with _uow(request, principal, readonly=True) as session:
            community = service.get_community(session, code=code)
            health = service.device_health(session, community=code, limit=5000)
            open_alarms = alarms.list_alarms(session, community=code,
                                             status=list(alarms.OPEN_STATUSES), limit=100)
            positions = service.device_positions(session, community=code)
    except AnwangError as exc:
        return html_error(request, exc.status, principal, code=exc.code)
    alarmed = {a.device_id for a in open_alarms}
    markers = [
        {**positions.get(r["device_id"], {}), "id": r["device_id"], "kind": r["kind"],
         "state": r["state"], "alarm": r["device_id"] in alarmed}
        for r in health.rows if r["device_id"] in positions
    ]
    return render(request, "communities/community.html", {
        "active_nav": "communities",
        "community": community, "rows": health.rows, "summary": health.summary,
        "open_alarms": open_alarms,
        "map_data": {"outline": json.loads(community.polygon), "devices": markers},
        "form": form or {"kind": "smoke_alarm", "adapter": "native", "heartbeat_s": "300",
                         "lat": f"{community.center_lat:.6f}",
                         "lon": f"{community.center_lon:.6f}"},
        "form_errors": form_errors, "new_key": new_key,
        "kinds": [k.value for k in DeviceKind], "adapters": service.adapter_names(),
        **_labels(request, principal),
    }, principal, status_code=status_code)


@router.post("/communities/{code}/devices")
def register_device(
    code: str, request: Request, principal: OptionalPrincipal,
    id: FormText = "", kind: FormText = "", adapter: FormText = "native",  # noqa: A002
    vendor_model: FormText = "", lat: FormText = "", lon: FormText = "",
    building: FormText = "", floor: FormText = "", heartbeat_s: FormText = "300",
    installed_on: FormText = "",
) -> Response:
    if (refused := _gate(request, principal, Action.DEVICES_MANAGE)) is not None:
        return refused
    assert principal is not None
    form = {"id": id.strip(), "kind": kind, "adapter": adapter, "vendor_model": vendor_model,
            "lat": lat.strip(), "lon": lon.strip(), "building": building, "floor": floor.strip(),
            "heartbeat_s": heartbeat_s.strip(), "installed_on": installed_on.strip()}
    try:
        data = DeviceCreate.model_validate(
            {**{k: v for k, v in form.items() if v != ""}, "community": code})
        with _uow(request, principal) as session:
            device, key = service.create_device(session, data=data, actor=principal.name,
                                                actor_role=str(principal.role))
    except (ValidationError, AnwangError) as exc:
        return _community_page(request, principal, code, form=form,
                               form_errors=_errors(request, principal, exc), status_code=422)
    return _community_page(request, principal, code, new_key=(device.id, key),
                           status_code=201)


# --- devices --------------------------------------------------------------------------


def _device_page(request: Request, principal: Principal, device_id: str, *,
                 new_key: str | None = None) -> Response:
    try:
        with _uow(request, principal, readonly=True) as session:
            d = service.device_detail(session, device_id=device_id)
            samples = service.device_samples(session, device_id=device_id,
                                             since=utcnow() - timedelta(hours=24), limit=3000)
            events = service.device_events(session, device_id=device_id, limit=30)
            recent = alarms.list_alarms(session, device=device_id, limit=30)
            community = service.get_community(session, code=d.device.community_code)
    except AnwangError as exc:
        return html_error(request, exc.status, principal, code=exc.code)
    chart = {"samples": [[s.ts.isoformat(), s.metrics] for s in samples]}
    return render(request, "communities/device.html", {
        "active_nav": "communities", "d": d, "device": d.device, "status": d.status,
        "community": community, "events": events, "recent_alarms": recent,
        "chart_data": chart, "new_key": new_key, **_labels(request, principal),
    }, principal)


@router.get("/devices/{device_id}")
def device_page(device_id: str, request: Request, principal: OptionalPrincipal) -> Response:
    if (refused := _gate(request, principal, Action.MAP_VIEW)) is not None:
        return refused
    assert principal is not None
    return _device_page(request, principal, device_id)


@router.post("/devices/{device_id}/active")
def set_active(device_id: str, request: Request, principal: OptionalPrincipal,
               active: Annotated[str, Form(max_length=5)] = "") -> Response:
    if (refused := _gate(request, principal, Action.DEVICES_MANAGE)) is not None:
        return refused
    assert principal is not None
    try:
        with _uow(request, principal) as session:
            service.update_device(session, device_id=device_id,
                                  changes=DeviceUpdate(active=active == "true"),
                                  actor=principal.name, actor_role=str(principal.role))
    except AnwangError as exc:
        return html_error(request, exc.status, principal, code=exc.code)
    return RedirectResponse(f"/devices/{device_id}", status_code=303)


@router.post("/devices/{device_id}/credential")
def new_credential(device_id: str, request: Request, principal: OptionalPrincipal) -> Response:
    if (refused := _gate(request, principal, Action.DEVICES_MANAGE)) is not None:
        return refused
    assert principal is not None
    try:
        with _uow(request, principal) as session:
            _, key = service.reissue_credential(session, device_id=device_id,
                                                actor=principal.name,
                                                actor_role=str(principal.role))
    except AnwangError as exc:
        return html_error(request, exc.status, principal, code=exc.code)
    return _device_page(request, principal, device_id, new_key=key)


# --- alarms ---------------------------------------------------------------------------


def _alarm_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    status = q.get("status", "open")
    return {
        "status": status if status in ("open", "all", *STATUS_LABELS) else "open",
        "kind": q.get("kind") if q.get("kind") in ALARM_LABELS else "",
        "community": (q.get("community") or "").strip()[:40],
    }


def _alarm_rows(request: Request, principal: Principal,
                filters: dict[str, Any]) -> list[DeviceAlarm]:
    status = filters["status"]
    statuses = (list(alarms.OPEN_STATUSES) if status == "open"
                else [] if status == "all" else [status])
    with _uow(request, principal, readonly=True) as session:
        return alarms.list_alarms(session, status=statuses, kind=filters["kind"] or None,
                                  community=filters["community"] or None,
                                  limit=ALARM_PAGE_SIZE)


@router.get("/community-alarms")
def alarms_page(request: Request, principal: OptionalPrincipal) -> Response:
    if (refused := _gate(request, principal, Action.MAP_VIEW)) is not None:
        return refused
    assert principal is not None
    filters = _alarm_filters(request)
    rows = _alarm_rows(request, principal, filters)
    with _uow(request, principal, readonly=True) as session:
        per_day = alarms.alarms_per_day(session, days=30, now=utcnow())
    t = _t(request, principal)
    chart = {
        "days": sorted({d.isoformat() for d, _, _ in per_day}),
        "series": {s: {d.isoformat(): n for d, sev, n in per_day if sev == s}
                   for s in SEVERITY_LABELS},
        "labels": {s: t(v) for s, v in SEVERITY_LABELS.items()},
    }
    return render(request, "communities/alarms.html", {
        "active_nav": "communities", "rows": rows, "filters": filters,
        "rows_url": "/community-alarms/rows?" + urlencode(filters), "chart_data": chart,
        **_labels(request, principal),
    }, principal)


@router.get("/community-alarms/rows")
def alarm_rows(request: Request, principal: OptionalPrincipal) -> Response:
    """The table body alone, which the list page reloads every few seconds."""
    if (refused := _gate(request, principal, Action.MAP_VIEW)) is not None:
        return refused
    assert principal is not None
    rows = _alarm_rows(request, principal, _alarm_filters(request))
    return render(request, "communities/_alarm_rows.html",
                  {"rows": rows, **_labels(request, principal)}, principal)


def _alarm_page(request: Request, principal: Principal, alarm_id: str, *,
                problem: str | None = None, status_code: int = 200) -> Response:
    try:
        with _uow(request, principal, readonly=True) as session:
            alarm = alarms.get_alarm(session, alarm_id=alarm_id)
            device = service.get_device(session, device_id=alarm.device_id)
            community = service.get_community(session, code=alarm.community_code)
            history = service.alarm_history(session, alarm_id=alarm_id)
    except AnwangError as exc:
        return html_error(request, exc.status, principal, code=exc.code)
    return render(request, "communities/alarm.html", {
        "active_nav": "communities", "alarm": alarm, "device": device, "community": community,
        "history": history, "problem": problem,
        "map_data": {"devices": [{"id": device.id, "kind": device.kind, "lat": alarm.lat,
                                  "lon": alarm.lon, "state": "online", "alarm": True}]},
        **_labels(request, principal),
    }, principal, status_code=status_code)


@router.get("/community-alarms/{alarm_id}")
def alarm_page(alarm_id: str, request: Request, principal: OptionalPrincipal) -> Response:
    if (refused := _gate(request, principal, Action.MAP_VIEW)) is not None:
        return refused
    assert principal is not None
    return _alarm_page(request, principal, alarm_id)


@router.post("/community-alarms/{alarm_id}/{step}")
def alarm_step(
    alarm_id: str, step: str, request: Request, principal: OptionalPrincipal,
    note: Annotated[str, Form(max_length=2000)] = "",
    outcome: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    if (refused := _gate(request, principal, Action.DEVICE_ALARMS_HANDLE)) is not None:
        return refused
    assert principal is not None
    if step not in ("acknowledge", "clear", "close"):
        return html_error(request, 404, principal)
    kw: dict[str, Any] = {"alarm_id": alarm_id, "actor": principal.name,
                          "actor_role": str(principal.role), "note": note.strip() or None,
                          "now": utcnow()}
    try:
        with _uow(request, principal) as session:
            if step == "acknowledge":
                alarms.acknowledge(session, **kw)
            elif step == "clear":
                alarms.clear(session, **kw)
            else:
                alarms.close(session, outcome=outcome, **kw)
    except AnwangError as exc:
        if exc.status == 404:
            return html_error(request, 404, principal, code=exc.code)
        return _alarm_page(request, principal, alarm_id, status_code=exc.status,
                           problem="; ".join(_errors(request, principal, exc)))
    return RedirectResponse(f"/community-alarms/{alarm_id}", status_code=303)


# --- device health --------------------------------------------------------------------


@router.get("/device-health")
def health_page(request: Request, principal: OptionalPrincipal) -> Response:
    if (refused := _gate(request, principal, Action.MAP_VIEW)) is not None:
        return refused
    assert principal is not None
    q = request.query_params
    state = q.get("state") if q.get("state") in STATE_LABELS else None
    community = (q.get("community") or "").strip()[:40] or None
    with _uow(request, principal, readonly=True) as session:
        health = service.device_health(session, community=community, state=state, limit=1000)
    return render(request, "communities/health.html", {
        "active_nav": "communities", "rows": health.rows, "summary": health.summary,
        "filters": {"state": state or "", "community": community or ""},
        **_labels(request, principal),
    }, principal)

