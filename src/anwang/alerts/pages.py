"""The alert pages: the list, one alert (sized for a phone), statistics, and the texts
``static/js/alerts.js`` shows on the live map.

The alert page's buttons post here; htmx swaps the answer — the alert's panel — in place,
and a refused transition (someone else was quicker) is shown in that panel in words.
Handling needs ``alerts.handle``, and an alert outside the user's jurisdiction does not
exist for them (404). Statistics are also open to those who edit the watch list.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from anwang.alerts import service
from anwang.alerts.api import can_see_statistics
from anwang.alerts.models import Alert
from anwang.auth.deps import OptionalPrincipal, Principal
from anwang.auth.permissions import Action
from anwang.core.errors import AnwangError
from anwang.core.events import utcnow
from anwang.state import AppState
from anwang.watchlist.pages import KIND_LABELS, REASON_LABELS, login_redirect, problem_text
from anwang.web.pages import html_error
from anwang.web.templating import N_, choose_locale, render, translations

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 200
#: The banner of every alert, translated on the page (the same text as the API's).
BANNER_TEXT = N_("unconfirmed — verify the plate and vehicle visually before acting")

STATUS_LABELS: dict[str, str] = {
    "open": N_("Open"),
    "acknowledged": N_("Acknowledged"),
    "closed": N_("Closed"),
}
OUTCOME_LABELS: dict[str, str] = {
    "confirmed": N_("Confirmed: the vehicle was found"),
    "misread": N_("Misread: the plate was read wrongly"),
    "not_located": N_("Not located"),
    "duplicate": N_("Duplicate of another alert"),
}
#: Outcomes in a few words, for chart legends.
OUTCOME_SHORT: dict[str, str] = {
    "confirmed": N_("Confirmed"),
    "misread": N_("Misread"),
    "not_located": N_("Not located"),
    "duplicate": N_("Duplicate"),
}
DIRECTION_LABELS: dict[str, str] = {"in": N_("Inbound"), "out": N_("Outbound")}
ACTION_LABELS: dict[str, str] = {
    "anwang.alerts.alert.raised": N_("Raised"),
    "anwang.alerts.alert.updated": N_("Seen again"),
    "anwang.alerts.alert.escalated": N_("Escalated"),
    "anwang.alerts.alert.acknowledged": N_("Acknowledged"),
    "anwang.alerts.alert.closed": N_("Closed"),
}
PROBLEM_TEXTS: dict[str, str] = {
    "anwang.alerts.invalid_transition": N_(
        "Someone else has already changed this alert; it is shown as it is now."),
    "anwang.validation_failed": N_("Choose an outcome."),
}
#: Texts of ``static/js/alerts.js``.
CLIENT_TEXTS: dict[str, str] = {
    "banner": BANNER_TEXT,
    "open_alert": N_("Open the alert"),
    "new_alert": N_("Watch-list alert"),
    "escalated": N_("Escalated: not acknowledged yet"),
    "sound_on": N_("Alert sound on"),
    "sound_off": N_("Alert sound off"),
    "seen_times": N_("seen %(count)s times"),
}


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


def _labels() -> dict[str, Any]:
    return {
        "status_labels": STATUS_LABELS, "outcome_labels": OUTCOME_LABELS,
        "direction_labels": DIRECTION_LABELS, "reason_labels": REASON_LABELS,
        "kind_labels": KIND_LABELS, "action_labels": ACTION_LABELS,
        "banner": BANNER_TEXT, "describe": service.vehicle_description,
    }


def _guard(request: Request, principal: Principal | None,
           allowed: bool | None = None) -> Response | None:
    if principal is None:
        return login_redirect(request)
    ok = principal.can(Action.ALERTS_HANDLE) if allowed is None else allowed
    if not ok:
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    return None


@router.get("/alerts")
def alerts_page(request: Request, principal: OptionalPrincipal) -> Response:
    refused = _guard(request, principal)
    if refused is not None:
        return refused
    assert principal is not None
    status = request.query_params.get("status", "active")
    with _state(request).db.unit_of_work(
        readonly=True, info={"scope": principal.scope, "principal": principal}
    ) as session:
        if status == "active":
            rows = [a for s in ("open", "acknowledged")
                    for a in service.list_alerts(session, status=s, limit=PAGE_SIZE)]
            rows.sort(key=lambda a: a.raised_at, reverse=True)
        else:
            rows = list(service.list_alerts(
                session, status=status if status in STATUS_LABELS else None, limit=PAGE_SIZE))
    return render(request, "alerts/list.html", {
        **_labels(), "active_nav": "alerts", "alerts": rows, "status": status,
    }, principal)


@router.get("/alerts/client.json")
def client_texts(request: Request, principal: OptionalPrincipal) -> Response:
    """The texts and labels ``static/js/alerts.js`` shows, in the reader's language."""
    if principal is None:
        return JSONResponse({}, status_code=401)
    t = translations(choose_locale(request, _state(request).settings, principal))
    return JSONResponse({
        "messages": {k: t.gettext(v) for k, v in CLIENT_TEXTS.items()},
        "reasons": {k: t.gettext(v) for k, v in REASON_LABELS.items()},
        "kinds": {k: t.gettext(v) for k, v in KIND_LABELS.items()},
        "directions": {k: t.gettext(v) for k, v in DIRECTION_LABELS.items()},
        "can_handle": principal.can(Action.ALERTS_HANDLE),
    }, headers={"Cache-Control": "no-store"})


@router.get("/alerts/stats")
def stats_page(request: Request, principal: OptionalPrincipal) -> Response:
    refused = _guard(request, principal,
                     can_see_statistics(principal) if principal is not None else None)
    if refused is not None:
        return refused
    assert principal is not None
    try:
        days = max(1, min(366, int(request.query_params.get("days", "30"))))
    except ValueError:
        days = 30
    with _state(request).db.unit_of_work(
        readonly=True, info={"scope": principal.scope, "principal": principal}
    ) as session:
        figures = service.statistics(session, since=utcnow() - timedelta(days=days))
    t = translations(choose_locale(request, _state(request).settings, principal))
    chart_texts = {
        "reasons": {k: t.gettext(v) for k, v in REASON_LABELS.items()},
        "outcomes": {k: t.gettext(v) for k, v in OUTCOME_SHORT.items()},
        "hits": t.gettext("Hits"),
        "alerts": t.gettext("Alerts"),
        "misread_rate": t.gettext("Misread rate"),
        "no_data": t.gettext("No data in this period."),
    }
    return render(request, "alerts/stats.html", {
        **_labels(), "active_nav": "alerts", "figures": figures, "days": days,
        "chart_data": {"figures": figures, "texts": chart_texts},
    }, principal)


def _load(request: Request, principal: Principal, alert_id: str) -> tuple[Alert, list[Any]]:
    with _state(request).db.unit_of_work(
        readonly=True, info={"scope": principal.scope, "principal": principal}
    ) as session:
        alert = service.get_alert(session, alert_id=alert_id)
        history = service.alert_history(session, alert=alert)
    return alert, history


@router.get("/alerts/{alert_id}")
def alert_page(alert_id: str, request: Request, principal: OptionalPrincipal) -> Response:
    refused = _guard(request, principal)
    if refused is not None:
        return refused
    assert principal is not None
    try:
        alert, history = _load(request, principal, alert_id)
    except AnwangError:
        return html_error(request, 404, principal)
    return render(request, "alerts/alert.html", {
        **_labels(), "active_nav": "alerts", "alert": alert, "history": history,
        "problem": None,
    }, principal)


def _act(request: Request, principal: Principal, alert_id: str, what: str,
         form: dict[str, str]) -> Response:
    problem: str | None = None
    with _state(request).db.unit_of_work(
        info={"scope": principal.scope, "principal": principal}
    ) as session:
        try:
            if what == "acknowledge":
                service.acknowledge_alert(session, alert_id=alert_id, actor=principal.name,
                                          actor_role=principal.role)
            else:
                service.close_alert(session, alert_id=alert_id,
                                    outcome=form.get("outcome", ""), note=form.get("note"),
                                    actor=principal.name, actor_role=principal.role)
        except AnwangError as exc:
            session.rollback()
            if exc.status == 404:
                return html_error(request, 404, principal)
            problem = problem_text(request, principal, exc, PROBLEM_TEXTS)
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)
    alert, history = _load(request, principal, alert_id)
    return render(request, "alerts/_panel.html", {
        **_labels(), "alert": alert, "history": history, "problem": problem,
    }, principal)


@router.post("/alerts/{alert_id}/{what}")
async def alert_action(
    alert_id: str, what: str, request: Request, principal: OptionalPrincipal
) -> Response:
    """``acknowledge`` or ``close`` (with ``outcome`` and ``note``) from the alert page."""
    refused = _guard(request, principal)
    if refused is not None:
        return refused
    assert principal is not None
    if what not in ("acknowledge", "close"):
        return html_error(request, 404, principal)
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    return await run_in_threadpool(_act, request, principal, alert_id, what, form)
