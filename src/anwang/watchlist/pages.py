"""The watch-list pages: the list with its create form, and an entry with its history.

Forms post to these routes (htmx adds the CSRF header; without JavaScript the hidden
``csrf_token`` field serves). Approve and revoke answer with the entry's table row, which
htmx swaps in place; a refusal comes back in that row, in words. Who may do what is the
permission table's: seeing and creating need ``watchlist.edit`` or
``watchlist.approve``, approving needs ``watchlist.approve`` and not being the owner.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from anwang.auth.deps import OptionalPrincipal, Principal
from anwang.auth.permissions import Action
from anwang.core.errors import AnwangError, PermissionDenied, ValidationFailed
from anwang.core.events import utcnow
from anwang.state import AppState
from anwang.watchlist import service
from anwang.watchlist.api import can_read
from anwang.watchlist.models import WatchEntry
from anwang.web.pages import html_error
from anwang.web.templating import N_, choose_locale, render, translations

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 200

REASON_LABELS: dict[str, str] = {
    "stolen_vehicle": N_("Stolen vehicle"),
    "stolen_plate": N_("Stolen plate"),
    "wanted_case": N_("Wanted in a case"),
    "missing_person": N_("Missing person"),
    "hit_and_run": N_("Hit and run"),
    "other": N_("Other"),
}
STATUS_LABELS: dict[str, str] = {
    "pending": N_("Pending approval"),
    "active": N_("Active"),
    "revoked": N_("Revoked"),
    "expired": N_("Expired"),
}
KIND_LABELS: dict[str, str] = {
    "exact": N_("Exact"),
    "approximate": N_("Approximate"),
    "partial": N_("Partial"),
}
PRIORITY_LABELS: dict[int, str] = {1: N_("1 — highest"), 2: N_("2 — high"), 3: N_("3 — normal")}
VEHICLE_LABELS: dict[str, str] = {
    "colour": N_("Colour"), "make": N_("Make"), "model": N_("Model"),
    "type": N_("Vehicle type"), "notes": N_("Notes"),
}
ACTION_LABELS: dict[str, str] = {
    "anwang.watchlist.entry.created": N_("Created"),
    "anwang.watchlist.entry.approved": N_("Approved"),
    "anwang.watchlist.entry.revoked": N_("Revoked"),
    "anwang.watchlist.entry.renewed": N_("Renewed"),
    "anwang.watchlist.entry.expired": N_("Expired"),
    "anwang.watchlist.batch.imported": N_("List imported"),
    "anwang.watchlist.batch.approved": N_("List approved"),
}
#: Texts of the refusals a page shows, by problem code.
PROBLEM_TEXTS: dict[str, str] = {
    "anwang.watchlist.own_entry": N_("You own this entry: a second person must approve it."),
    "anwang.watchlist.not_pending": N_("This entry is no longer waiting for approval."),
    "anwang.watchlist.expired": N_("This entry has expired; renew it first."),
    "anwang.watchlist.not_live": N_("This entry has already ended."),
    "anwang.watchlist.not_owner": N_("Only the owner or an approver may change this entry."),
    "anwang.auth.permission_denied": N_("Your role does not allow this."),
}
RECIPIENT_ROLE_CHOICES = ("dispatcher", "officer", "commander", "analyst", "grid_worker")
DAY_CHOICES = (7, 14, 30, 60, 90)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


def login_redirect(request: Request) -> Response:
    path = request.url.path + (("?" + request.url.query) if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": path}), status_code=303)


def problem_text(request: Request, principal: Principal, exc: AnwangError,
                 texts: dict[str, str]) -> str:
    """A refusal in the reader's language: a known code's text, else the detail."""
    t = translations(choose_locale(request, _state(request).settings, principal))
    if exc.code in texts:
        return t.gettext(texts[exc.code])
    if exc.errors:
        return "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
    return exc.detail


def _actions(principal: Principal, entry: WatchEntry) -> dict[str, bool]:
    approver = principal.can(Action.WATCHLIST_APPROVE)
    live = entry.status in (service.Status.PENDING, service.Status.ACTIVE)
    mine = entry.owner == principal.name
    return {
        "approve": approver and entry.status == service.Status.PENDING and not mine,
        "revoke": live and (mine or approver),
        "renew": entry.status != service.Status.REVOKED and (mine or approver),
    }


def _context(principal: Principal) -> dict[str, Any]:
    return {
        "reason_labels": REASON_LABELS, "status_labels": STATUS_LABELS,
        "kind_labels": KIND_LABELS, "priority_labels": PRIORITY_LABELS,
        "vehicle_labels": VEHICLE_LABELS, "action_labels": ACTION_LABELS,
        "actions_for": lambda e: _actions(principal, e),
        "vehicle_summary": service.vehicle_summary,
    }


def _empty_form() -> dict[str, Any]:
    return {"pattern": "", "reason": "stolen_vehicle", "priority": "2", "days": "30",
            "legal_basis": "", "case_ref": "", "colour": "", "make": "", "model": "",
            "type": "", "notes": "", "roles": [], "jurisdictions": ""}


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q.get(k, "").strip()[:100] for k in ("status", "reason", "pattern", "case_ref")}


def _list_page(
    request: Request, principal: Principal, *, form: dict[str, Any] | None = None,
    form_errors: list[str] | None = None, status_code: int = 200,
) -> Response:
    filters = _filters(request)
    with _state(request).db.unit_of_work(
        readonly=True, info={"scope": principal.scope, "principal": principal}
    ) as session:
        entries = list(service.list_entries(
            session, status=filters["status"] or None, reason=filters["reason"] or None,
            pattern=filters["pattern"] or None, case_ref=filters["case_ref"] or None,
            limit=PAGE_SIZE,
        ))
        counts = service.stats_by_status(session)
    return render(request, "watchlist/list.html", {
        **_context(principal),
        "active_nav": "watchlist", "entries": entries, "counts": counts,
        "filters": filters, "form": form or _empty_form(), "form_errors": form_errors or [],
        "can_create": principal.can(Action.WATCHLIST_EDIT),
        "role_choices": RECIPIENT_ROLE_CHOICES, "day_choices": DAY_CHOICES,
        "max_days": _state(request).settings.watchlist_max_days,
    }, principal, status_code=status_code)


@router.get("/watchlist")
def watchlist_page(request: Request, principal: OptionalPrincipal) -> Response:
    if principal is None:
        return login_redirect(request)
    if not can_read(principal):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    return _list_page(request, principal)


def _form_values(raw: Any) -> dict[str, Any]:
    values = _empty_form()
    for key in values:
        if key == "roles":
            values[key] = [r for r in raw.getlist("roles") if isinstance(r, str)]
        else:
            v = raw.get(key)
            values[key] = v.strip() if isinstance(v, str) else values[key]
    return values


@router.post("/watchlist")
async def create_from_form(request: Request, principal: OptionalPrincipal) -> Response:
    """Create an entry from the form: on success go to the entry (``HX-Redirect`` for
    htmx); otherwise the form again with the problems named."""
    if principal is None:
        return login_redirect(request)
    if not principal.can(Action.WATCHLIST_EDIT):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    form = _form_values(await request.form())
    return await run_in_threadpool(_create, request, principal, form)


def _create(request: Request, principal: Principal, form: dict[str, Any]) -> Response:
    state = _state(request)
    t = translations(choose_locale(request, state.settings, principal))
    errors: list[str] = []
    try:
        days = int(form["days"])
        priority = int(form["priority"])
    except ValueError:
        errors.append(t.gettext("Priority and validity must be numbers."))
    if errors:
        return _list_page(request, principal, form=form, form_errors=errors, status_code=422)
    vehicle = {k: form[k] for k in ("colour", "make", "model", "type", "notes") if form[k]}
    codes = [c.strip() for c in form["jurisdictions"].replace("，", ",").split(",") if c.strip()]
    roles = list(form["roles"])
    try:
        with state.db.unit_of_work(
            info={"scope": principal.scope, "principal": principal}
        ) as session:
            entry = service.create_entry(
                session, pattern=form["pattern"], reason=form["reason"],
                legal_basis=form["legal_basis"], case_ref=form["case_ref"],
                priority=priority, expires_at=utcnow() + timedelta(days=days),
                vehicle=vehicle, recipient_roles=roles, recipient_jurisdictions=codes,
                actor=principal.name, actor_role=principal.role,
                max_days=state.settings.watchlist_max_days,
            )
            entry_id = entry.id
    except ValidationFailed as exc:
        errors = [f"{e.field}: {e.reason}" for e in exc.errors] or [exc.detail]
        return _list_page(request, principal, form=form, form_errors=errors, status_code=422)
    target = f"/watchlist/{entry_id}"
    return RedirectResponse(target, status_code=303)


@router.get("/watchlist/{entry_id}")
def entry_page(entry_id: str, request: Request, principal: OptionalPrincipal) -> Response:
    if principal is None:
        return login_redirect(request)
    if not can_read(principal):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    with _state(request).db.unit_of_work(
        readonly=True, info={"scope": principal.scope, "principal": principal}
    ) as session:
        try:
            entry = service.get_entry(session, entry_id=entry_id)
        except AnwangError:
            return html_error(request, 404, principal)
        history = service.entry_history(session, entry=entry)
    return render(request, "watchlist/entry.html", {
        **_context(principal), "active_nav": "watchlist", "entry": entry,
        "history": history, "day_choices": DAY_CHOICES,
    }, principal)


def _change(request: Request, principal: Principal, entry_id: str, what: str,
            form: Any) -> Response:
    state = _state(request)
    error: str | None = None
    with state.db.unit_of_work(
        info={"scope": principal.scope, "principal": principal}
    ) as session:
        try:
            if what == "approve":
                if not principal.can(Action.WATCHLIST_APPROVE):
                    raise PermissionDenied("", code="anwang.auth.permission_denied")
                service.approve_entry(session, entry_id=entry_id, actor=principal.name,
                                      actor_role=principal.role)
            elif what == "revoke":
                reason = form.get("reason")
                service.revoke_entry(session, entry_id=entry_id, actor=principal.name,
                                     actor_role=principal.role,
                                     reason=reason if isinstance(reason, str) else None)
            else:
                days = int(str(form.get("days") or "30"))
                service.renew_entry(session, entry_id=entry_id,
                                    expires_at=utcnow() + timedelta(days=days),
                                    actor=principal.name, actor_role=principal.role,
                                    max_days=state.settings.watchlist_max_days)
        except AnwangError as exc:
            session.rollback()
            error = problem_text(request, principal, exc, PROBLEM_TEXTS)
        except ValueError:
            session.rollback()
            error = "days: 1-90"
    with state.db.unit_of_work(readonly=True, info={"scope": principal.scope}) as session:
        try:
            entry = service.get_entry(session, entry_id=entry_id)
        except AnwangError:
            return html_error(request, 404, principal)
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"/watchlist/{entry_id}", status_code=303)
    from_detail = form.get("from") == "detail"
    if from_detail and error is None:
        # The whole page shows the new state (status, history): load it again.
        return Response(status_code=200, headers={"HX-Redirect": f"/watchlist/{entry_id}"})
    template = "watchlist/_entry_actions.html" if from_detail else "watchlist/_row.html"
    return render(request, template, {
        **_context(principal), "e": entry, "entry": entry, "row_error": error,
        "day_choices": DAY_CHOICES,
    }, principal)


@router.post("/watchlist/{entry_id}/{what}")
async def change_entry(
    entry_id: str, what: str, request: Request, principal: OptionalPrincipal
) -> Response:
    """``approve``, ``revoke`` or ``renew`` from a button; answers with the entry's row
    (or, from the entry page, its action panel) for htmx."""
    if principal is None:
        return login_redirect(request)
    if what not in ("approve", "revoke", "renew"):
        return html_error(request, 404, principal)
    if not can_read(principal):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    form = await request.form()
    return await run_in_threadpool(_change, request, principal, entry_id, what, form)
