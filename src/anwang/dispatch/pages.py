"""Dispatch pages: the dispatcher's console, an incident with its timeline, the units
list and a unit's phone page, the response-circle (coverage) page and the response-time
charts.

The console, coverage and chart pages are drawn by their scripts
(``static/js/dispatch.js``, ``coverage.js``, ``response-times.js``) from the JSON API;
the server renders the frame, the labels (``dispatch-i18n`` JSON block) and what a
first paint needs. The phone page is plain HTML forms (post, then redirect back), so it
works on any phone browser; ``static/js/phone.js`` only reloads it when something for
this unit arrives on the live stream.

Visitors without a session are sent to sign in; without the permission they get the
403 page. Units and incidents outside the user's jurisdiction do not exist (404).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from anwang.auth.deps import OptionalPrincipal, Principal
from anwang.auth.permissions import Action
from anwang.core.errors import AnwangError, NotFound, Unavailable
from anwang.core.events import utcnow
from anwang.dispatch import instructions as instructions_service
from anwang.dispatch import posts as posts_service
from anwang.dispatch import service
from anwang.dispatch.config import load_config
from anwang.dispatch.models import Incident, Unit
from anwang.roads import service as roads_service
from anwang.state import AppState
from anwang.web.pages import html_error
from anwang.web.templating import N_, choose_locale, render, translations

router = APIRouter(include_in_schema=False)

TYPE_LABELS: dict[str, str] = {
    "theft": N_("Theft"),
    "burglary": N_("Burglary"),
    "assault": N_("Assault"),
    "traffic_accident": N_("Traffic accident"),
    "fire": N_("Fire"),
    "medical": N_("Medical emergency"),
    "disturbance": N_("Disturbance"),
    "suspicious_vehicle": N_("Suspicious vehicle"),
    "armed_threat": N_("Armed threat"),
}
KIND_LABELS: dict[str, str] = {
    "patrol_car": N_("Patrol car"),
    "motorcycle": N_("Motorcycle"),
    "foot_patrol": N_("Foot patrol"),
    "quick_response_team": N_("Quick-response team"),
    "swat": N_("SWAT"),
}
UNIT_STATUS_LABELS: dict[str, str] = {
    "available": N_("Available"),
    "dispatched": N_("Dispatched"),
    "en_route": N_("En route"),
    "on_scene": N_("On scene"),
    "out_of_service": N_("Out of service"),
}
INCIDENT_STATUS_LABELS: dict[str, str] = {
    "received": N_("Received"),
    "dispatched": N_("Dispatched"),
    "en_route": N_("En route"),
    "on_scene": N_("On scene"),
    "cleared": N_("Cleared"),
    "cancelled": N_("Cancelled"),
}
POST_KIND_LABELS: dict[str, str] = {
    "quick_response": N_("Quick-response point"),
    "key_location": N_("Patrol key location"),
}
ACTION_LABELS: dict[str, str] = {
    "anwang.dispatch.incident.created": N_("Call received"),
    "anwang.dispatch.incident.assigned": N_("Unit assigned"),
    "anwang.dispatch.incident.updated": N_("Incident updated"),
    "anwang.dispatch.incident.cleared": N_("Incident cleared"),
    "anwang.dispatch.incident.cancelled": N_("Incident cancelled"),
    "anwang.dispatch.unit.status_changed": N_("Unit status changed"),
    "anwang.dispatch.instruction.sent": N_("Instruction sent"),
    "anwang.dispatch.instruction.acknowledged": N_("Instruction acknowledged"),
    "anwang.dispatch.instruction.escalated": N_("Instruction escalated: not acknowledged"),
}
#: Refusals shown on the phone page, by problem code.
PHONE_PROBLEMS: dict[str, str] = {
    "anwang.dispatch.invalid_transition": N_(
        "That status change is not possible now; the page shows the unit as it is."),
    "anwang.dispatch.already_acknowledged": N_("This instruction was already acknowledged."),
}
#: Texts the scripts show (with the label tables above) — the ``dispatch-i18n`` block.
CLIENT_TEXTS: dict[str, str] = {
    "assign": N_("Assign"),
    "assigned": N_("Assigned"),
    "eta": N_("ETA"),
    "distance": N_("Distance"),
    "from_position": N_("Starts from its position"),
    "from_home": N_("Starts from its home post"),
    "stale": N_("position stale"),
    "missing": N_("no position"),
    "coverage_loss": N_("3-min coverage lost"),
    "coverage_now": N_("City 3-minute coverage now: %(share)s"),
    "no_units": N_("No available unit of a suitable kind."),
    "choose_incident": N_("Choose an incident to see the nearest units."),
    "pick_on_map": N_("Click the map to set the location."),
    "created": N_("Incident recorded."),
    "failed": N_("The request failed: %(detail)s"),
    "instruct": N_("Send instruction"),
    "instruction_sent": N_("Instruction sent."),
    "timeline": N_("Timeline"),
    "units": N_("Units"),
    "incidents": N_("Incidents"),
    "posts": N_("Posts"),
    "routes": N_("Routes"),
    "minutes": N_("%(m)s min"),
    "before": N_("Today"),
    "after": N_("Proposed"),
    "newly_covered": N_("Newly covered"),
    "no_longer_covered": N_("No longer covered"),
    "moves": N_("Moves"),
    "closed_post": N_("closed"),
    "opened_post": N_("new post"),
    "computing_for": N_("Computing… %(s)s s of at most %(limit)s s."),
    "gap": N_("Gap to the proven bound"),
    "median": N_("Median (s)"),
    "within": N_("Within %(m)s min"),
    "count": N_("Incidents"),
    "hour": N_("Hour of day"),
    "district": N_("District"),
    "share": N_("Share"),
    "kept": N_("kept"),
    "city": N_("Whole city"),
}


def _labels() -> dict[str, Any]:
    return {
        "type_labels": TYPE_LABELS, "kind_labels": KIND_LABELS,
        "unit_status_labels": UNIT_STATUS_LABELS,
        "incident_status_labels": INCIDENT_STATUS_LABELS,
        "post_kind_labels": POST_KIND_LABELS, "action_labels": ACTION_LABELS,
    }


def client_texts(locale: str) -> dict[str, Any]:
    """Everything the dispatch scripts show, translated."""
    t = translations(locale)

    def tr(d: dict[str, str]) -> dict[str, str]:
        return {k: t.gettext(v) for k, v in d.items()}

    return {"locale": locale, "texts": tr(CLIENT_TEXTS), "types": tr(TYPE_LABELS),
            "kinds": tr(KIND_LABELS), "unit_status": tr(UNIT_STATUS_LABELS),
            "incident_status": tr(INCIDENT_STATUS_LABELS), "post_kinds": tr(POST_KIND_LABELS)}


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


def _guard(request: Request, principal: Principal | None, allowed: bool) -> Response | None:
    from anwang.watchlist.pages import login_redirect

    if principal is None:
        return login_redirect(request)
    if not allowed:
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    return None


def _uow(request: Request, principal: Principal, *, readonly: bool = True) -> Any:
    return _state(request).db.unit_of_work(
        readonly=readonly, info={"scope": principal.scope, "principal": principal})


def _common(request: Request, principal: Principal) -> dict[str, Any]:
    locale = choose_locale(request, _state(request).settings, principal)
    return {**_labels(), "dispatch_i18n": client_texts(locale)}


# --- the console ----------------------------------------------------------------------


@router.get("/dispatch")
def console(request: Request, principal: OptionalPrincipal) -> Response:
    refused = _guard(request, principal,
                     principal is not None and principal.can(Action.INCIDENTS_MANAGE))
    if refused is not None:
        return refused
    assert principal is not None
    config = load_config(_state(request).settings.data_dir)
    with _uow(request, principal) as session:
        incidents = list(service.list_incidents(session, active=True, limit=200))
    return render(request, "dispatch/console.html", {
        **_common(request, principal), "active_nav": "dispatch", "incidents": incidents,
        "types": config.types,
    }, principal)


@router.post("/dispatch/from-alert")
def from_alert(
    request: Request, principal: OptionalPrincipal, alert_id: str = Form(max_length=26),
) -> Response:
    """Make (or find) the incident of an alert and open it in the console."""
    refused = _guard(request, principal,
                     principal is not None and principal.can(Action.INCIDENTS_MANAGE))
    if refused is not None:
        return refused
    assert principal is not None
    state = _state(request)
    try:
        loaded = roads_service.load(state.settings.data_dir)
    except Unavailable:
        loaded = None
    try:
        with _uow(request, principal, readonly=False) as session:
            incident, _ = service.create_incident_from_alert(
                session, alert_id=alert_id, config=load_config(state.settings.data_dir),
                loaded=loaded, actor=principal.name, actor_role=principal.role)
            incident_id = incident.id
    except NotFound:
        return html_error(request, 404, principal)
    except AnwangError as exc:
        return html_error(request, exc.status, principal, code=exc.code)
    return RedirectResponse(f"/dispatch?incident={incident_id}", status_code=303)


@router.get("/dispatch/incidents/{incident_id}")
def incident_page(incident_id: str, request: Request, principal: OptionalPrincipal) -> Response:
    refused = _guard(request, principal,
                     principal is not None and principal.can(Action.INCIDENTS_MANAGE))
    if refused is not None:
        return refused
    assert principal is not None
    with _uow(request, principal) as session:
        try:
            incident = service.get_incident(session, incident_id=incident_id)
        except NotFound:
            return html_error(request, 404, principal)
        timeline = service.incident_timeline(session, incident=incident)
        assignments = service.assignments_of(session, incident_id=incident.id)
        units = {a.unit_id: session.get(Unit, a.unit_id) for a in assignments}
        notes = list(instructions_service.list_instructions(session, incident_id=incident.id))
    return render(request, "dispatch/incident.html", {
        **_common(request, principal), "active_nav": "dispatch", "incident": incident,
        "timeline": timeline, "assignments": assignments, "units": units,
        "instructions": notes,
    }, principal)


@router.get("/dispatch/response-times")
def response_times_page(request: Request, principal: OptionalPrincipal) -> Response:
    ok = principal is not None and (principal.can(Action.INCIDENTS_MANAGE)
                                    or principal.can(Action.COVERAGE_PLAN))
    refused = _guard(request, principal, ok)
    if refused is not None:
        return refused
    assert principal is not None
    return render(request, "dispatch/response_times.html", {
        **_common(request, principal), "active_nav": "dispatch"}, principal)


# --- coverage -------------------------------------------------------------------------


@router.get("/coverage")
def coverage_page(request: Request, principal: OptionalPrincipal) -> Response:
    ok = principal is not None and (principal.can(Action.COVERAGE_PLAN)
                                    or principal.can(Action.INCIDENTS_MANAGE))
    refused = _guard(request, principal, ok)
    if refused is not None:
        return refused
    assert principal is not None
    with _uow(request, principal) as session:
        posts = list(posts_service.list_posts(session, kind="quick_response"))
    return render(request, "dispatch/coverage.html", {
        **_common(request, principal), "active_nav": "coverage",
        "can_plan": principal.can(Action.COVERAGE_PLAN), "quick_posts": len(posts),
    }, principal)


# --- units and the phone page ---------------------------------------------------------


def _can_report(principal: Principal | None) -> bool:
    return principal is not None and principal.can(Action.UNITS_REPORT)


@router.get("/units")
def units_page(request: Request, principal: OptionalPrincipal) -> Response:
    refused = _guard(request, principal, _can_report(principal))
    if refused is not None:
        return refused
    assert principal is not None
    config = load_config(_state(request).settings.data_dir)
    now = utcnow()
    with _uow(request, principal) as session:
        units = list(service.list_units(session))
    rows = [(u, service.origin_of(u, now=now, config=config)) for u in units]
    return render(request, "dispatch/units.html", {
        **_common(request, principal), "active_nav": "units", "rows": rows,
    }, principal)


@router.get("/units/{unit_id}/phone")
def phone_page(unit_id: str, request: Request, principal: OptionalPrincipal) -> Response:
    refused = _guard(request, principal, _can_report(principal))
    if refused is not None:
        return refused
    assert principal is not None
    return _phone(request, principal, unit_id)


def _phone(request: Request, principal: Principal, unit_id: str,
           problem: str | None = None, status_code: int = 200) -> Response:
    config = load_config(_state(request).settings.data_dir)
    now = utcnow()
    with _uow(request, principal) as session:
        try:
            unit = service.get_unit(session, unit_id=unit_id)
        except NotFound:
            return html_error(request, 404, principal)
        incident = session.get(Incident, unit.incident_id) if unit.incident_id else None
        assignment = service.current_assignment(session, unit=unit)
        notes = list(instructions_service.list_instructions(session, unit_id=unit.id, limit=20))
        origin = service.origin_of(unit, now=now, config=config)
    next_statuses = sorted(service.UNIT_TRANSITIONS.get(unit.status, frozenset()),
                           key=list(UNIT_STATUS_LABELS).index)
    return render(request, "dispatch/phone.html", {
        **_common(request, principal), "active_nav": "units", "unit": unit,
        "incident": incident, "assignment": assignment, "instructions": notes,
        "origin": origin, "next_statuses": next_statuses, "problem": problem,
    }, principal, status_code=status_code)


def _problem(request: Request, principal: Principal, exc: AnwangError) -> str:
    t = translations(choose_locale(request, _state(request).settings, principal))
    return t.gettext(PHONE_PROBLEMS[exc.code]) if exc.code in PHONE_PROBLEMS else exc.detail


@router.post("/units/{unit_id}/phone/status")
def phone_status(
    unit_id: str, request: Request, principal: OptionalPrincipal,
    status: str = Form(max_length=20),
) -> Response:
    refused = _guard(request, principal, _can_report(principal))
    if refused is not None:
        return refused
    assert principal is not None
    try:
        with _uow(request, principal, readonly=False) as session:
            unit = service.set_unit_status(session, unit_id=unit_id, status=status,
                                           actor=principal.name, actor_role=principal.role)
            unit_id = unit.id
    except NotFound:
        return html_error(request, 404, principal)
    except AnwangError as exc:
        return _phone(request, principal, unit_id, _problem(request, principal, exc),
                      status_code=exc.status)
    return RedirectResponse(f"/units/{unit_id}/phone", status_code=303)


@router.post("/units/{unit_id}/phone/ack")
def phone_acknowledge(
    unit_id: str, request: Request, principal: OptionalPrincipal,
    instruction_id: str = Form(max_length=26),
) -> Response:
    refused = _guard(request, principal, _can_report(principal))
    if refused is not None:
        return refused
    assert principal is not None
    try:
        with _uow(request, principal, readonly=False) as session:
            unit = service.get_unit(session, unit_id=unit_id)
            note = instructions_service.get_instruction(session, instruction_id=instruction_id)
            if note.unit_id != unit.id:
                raise NotFound("not an instruction to this unit")
            instructions_service.acknowledge(session, instruction_id=note.id,
                                             actor=principal.name, actor_role=principal.role)
            unit_id = unit.id
    except NotFound:
        return html_error(request, 404, principal)
    except AnwangError as exc:
        return _phone(request, principal, unit_id, _problem(request, principal, exc),
                      status_code=exc.status)
    return RedirectResponse(f"/units/{unit_id}/phone", status_code=303)
