"""Pages of checkpoints and stored reads: the checkpoint map and health table, one
checkpoint's detail, and the case-bound search of stored reads with the vehicle's route.

Like :mod:`anwang.web.pages`, each page takes :data:`OptionalPrincipal` and decides what a
visitor without a session (sign in) or without the permission (403 page) gets. Forms
carry the session's CSRF token, checked by that dependency. Every change and every
search goes through :mod:`anwang.checkpoints.service`, audited there.

The maps are drawn by ``web/static/js/checkpoints.js`` from ``<script
type="application/json">`` blocks (the pages hold no inline script).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from anwang.auth.deps import OptionalPrincipal, Principal
from anwang.auth.permissions import Action
from anwang.checkpoints import search, service
from anwang.checkpoints.schemas import CheckpointCreate, CheckpointUpdate
from anwang.core.errors import AnwangError, ValidationFailed
from anwang.state import AppState
from anwang.web.pages import html_error, safe_next
from anwang.web.templating import N_, choose_locale, render, translations

router = APIRouter(include_in_schema=False)

KIND_LABELS: dict[str, str] = {
    "police_checkpoint": N_("Police checkpoint"),
    "mobile_checkpoint": N_("Mobile checkpoint"),
    "province_border": N_("Province border"),
    "city_border": N_("City border"),
    "toll_station": N_("Toll station"),
    "road": N_("Road camera"),
}
STATUS_LABELS: dict[str, str] = {
    "online": N_("Online"),
    "offline": N_("Offline"),
    "never": N_("No reads yet"),
    "inactive": N_("Deactivated"),
}
COVERAGE_LABELS: dict[str, str] = {
    "hit": N_("Seen"),
    "no_hit": N_("Not seen"),
    "no_data": N_("No data"),
}
REASON_LABELS: dict[str, str] = {
    "investigation": N_("Investigation"),
    "missing_person": N_("Missing person"),
    "stolen_vehicle": N_("Stolen vehicle"),
    "hit_and_run": N_("Hit and run"),
    "court_order": N_("Court order"),
}
#: The windows the search form offers, in hours.
WINDOWS = (1, 6, 24, 48, 168, 720)
#: Offset assumed for times typed into the search form when the browser sent none
#: (China Standard Time).
DEFAULT_TZ_MINUTES = 480


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


def _login(request: Request) -> RedirectResponse:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": path} if safe_next(path) else {}
    return RedirectResponse("/login" + ("?" + urlencode(query) if query else ""),
                            status_code=303)


def _gettext(request: Request, principal: Principal) -> Any:
    return translations(choose_locale(request, _state(request).settings, principal)).gettext


def _labels(request: Request, principal: Principal) -> dict[str, Any]:
    """The label tables, and the translated texts ``checkpoints.js`` shows."""
    t = _gettext(request, principal)
    return {
        "kind_labels": KIND_LABELS, "status_labels": STATUS_LABELS,
        "coverage_labels": COVERAGE_LABELS, "reason_labels": REASON_LABELS,
        "client_i18n": {
            "status": {k: t(v) for k, v in STATUS_LABELS.items()},
            "kind": {k: t(v) for k, v in KIND_LABELS.items()},
            "reads_24h": t("Reads, 24 h"),
            "route": t("Route"),
        },
    }


def _errors(request: Request, principal: Principal, exc: Exception) -> list[str]:
    """Field errors for a form, from pydantic or from the error tree."""
    if isinstance(exc, ValidationError):
        return [f"{'.'.join(str(p) for p in e['loc']) or '-'}: {e['msg']}" for e in exc.errors()]
    if isinstance(exc, AnwangError):
        if exc.errors:
            return [f"{e.field}: {e.reason}" for e in exc.errors]
        return [exc.detail]
    return [_gettext(request, principal)("Something went wrong.")]


# --- the list and map -------------------------------------------------------------------


def _markers(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"code": h.code, "name": h.name, "kind": h.kind, "lat": h.lat, "lon": h.lon,
             "status": str(h.status), "reads_24h": h.reads_24h} for h in rows]


def _list_page(
    request: Request, principal: Principal, *, form: dict[str, Any] | None = None,
    form_errors: list[str] | None = None, status_code: int = 200,
) -> Response:
    q = request.query_params
    kind = q.get("kind") if q.get("kind") in KIND_LABELS else None
    status = q.get("status") if q.get("status") in STATUS_LABELS else None
    with _state(request).db.unit_of_work(
        readonly=True, info={"scope": principal.scope, "principal": principal}
    ) as session:
        everything = service.list_health(session)
    counts = {s: sum(1 for h in everything if h.status == s) for s in STATUS_LABELS}
    rows = [h for h in everything
            if (kind is None or h.kind == kind) and (status is None or h.status == status)]
    return render(request, "checkpoints/list.html", {
        "active_nav": "checkpoints",
        "rows": rows,
        "markers": _markers(rows),
        "counts": counts,
        "total": len(everything),
        "filters": {"kind": kind or "", "status": status or ""},
        "can_manage": principal.can(Action.CHECKPOINTS_MANAGE),
        "form": form or {"kind": "police_checkpoint", "lanes": "2",
                         "silence_threshold_s": "900"},
        "form_errors": form_errors,
        **_labels(request, principal),
    }, principal, status_code=status_code)


@router.get("/checkpoints")
def checkpoints_page(request: Request, principal: OptionalPrincipal) -> Response:
    if principal is None:
        return _login(request)
    if not principal.can(Action.MAP_VIEW):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    return _list_page(request, principal)


def _checkpoint_form(
    code: str, name: str, kind: str, lat: str, lon: str, lanes: str, silence: str,
    direction_in: bool, direction_out: bool,
) -> dict[str, Any]:
    directions = [d for d, on in (("in", direction_in), ("out", direction_out)) if on]
    return {"code": code.strip(), "name": name, "kind": kind, "lat": lat.strip(),
            "lon": lon.strip(), "lanes": lanes.strip(), "silence_threshold_s": silence.strip(),
            "directions": directions}


FormText = Annotated[str, Form(max_length=300)]


@router.post("/checkpoints")
def create_from_form(
    request: Request,
    principal: OptionalPrincipal,
    code: FormText = "",
    name: FormText = "",
    kind: FormText = "",
    lat: FormText = "",
    lon: FormText = "",
    lanes: FormText = "2",
    silence_threshold_s: FormText = "900",
    direction_in: Annotated[bool, Form()] = False,
    direction_out: Annotated[bool, Form()] = False,
) -> Response:
    if principal is None:
        return _login(request)
    if not principal.can(Action.CHECKPOINTS_MANAGE):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    form = _checkpoint_form(code, name, kind, lat, lon, lanes, silence_threshold_s,
                            direction_in, direction_out)
    try:
        data = CheckpointCreate.model_validate({k: v for k, v in form.items() if v != ""})
        with _state(request).db.unit_of_work(
            info={"scope": principal.scope, "principal": principal}
        ) as session:
            service.create_checkpoint(session, data=data, actor=principal.name,
                                      actor_role=str(principal.role), via="web")
    except (ValidationError, AnwangError) as exc:
        return _list_page(request, principal, form=form,
                          form_errors=_errors(request, principal, exc), status_code=422)
    return RedirectResponse(f"/checkpoints/{data.code}", status_code=303)


# --- one checkpoint ------------------------------------------------------------------------


def _detail_page(
    request: Request, principal: Principal, code: str, *,
    form_errors: list[str] | None = None, status_code: int = 200,
) -> Response:
    try:
        with _state(request).db.unit_of_work(
            readonly=True, info={"scope": principal.scope, "principal": principal}
        ) as session:
            health = service.checkpoint_health(session, code=code)
            cp = service.get_checkpoint(session, code=code)
            details = {"directions": list(cp.directions), "lanes": cp.lanes,
                       "created_at": cp.created_at, "updated_at": cp.updated_at}
    except AnwangError as exc:
        if exc.status == 404:
            return html_error(request, 404, principal)
        raise
    peak = max((h.count for h in health.reads_per_hour or []), default=0)
    return render(request, "checkpoints/detail.html", {
        "active_nav": "checkpoints",
        "cp": health,
        "details": details,
        "peak": peak,
        "markers": _markers([health]),
        "can_manage": principal.can(Action.CHECKPOINTS_MANAGE),
        "can_search": principal.can(Action.READS_SEARCH),
        "form_errors": form_errors,
        **_labels(request, principal),
    }, principal, status_code=status_code)


@router.get("/checkpoints/{code}")
def checkpoint_page(code: str, request: Request, principal: OptionalPrincipal) -> Response:
    if principal is None:
        return _login(request)
    if not principal.can(Action.MAP_VIEW):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    return _detail_page(request, principal, code)


@router.post("/checkpoints/{code}")
def update_from_form(
    code: str,
    request: Request,
    principal: OptionalPrincipal,
    name: FormText = "",
    kind: FormText = "",
    lat: FormText = "",
    lon: FormText = "",
    lanes: FormText = "",
    silence_threshold_s: FormText = "",
    direction_in: Annotated[bool, Form()] = False,
    direction_out: Annotated[bool, Form()] = False,
    active: FormText = "",
) -> Response:
    """The detail page's edit form, and its activate/deactivate button (``active``)."""
    if principal is None:
        return _login(request)
    if not principal.can(Action.CHECKPOINTS_MANAGE):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    if active in ("true", "false"):
        patch: dict[str, Any] = {"active": active == "true"}
    else:
        form = _checkpoint_form(code, name, kind, lat, lon, lanes, silence_threshold_s,
                                direction_in, direction_out)
        patch = {k: v for k, v in form.items() if k != "code" and v not in ("", [])}
        if not form["directions"]:
            patch["directions"] = []
    try:
        changes = CheckpointUpdate.model_validate(patch)
        with _state(request).db.unit_of_work(
            info={"scope": principal.scope, "principal": principal}
        ) as session:
            service.update_checkpoint(session, code=code, changes=changes, actor=principal.name,
                                      actor_role=str(principal.role), via="web")
    except (ValidationError, AnwangError) as exc:
        if isinstance(exc, AnwangError) and exc.status == 404:
            return html_error(request, 404, principal)
        return _detail_page(request, principal, code,
                            form_errors=_errors(request, principal, exc), status_code=422)
    return RedirectResponse(f"/checkpoints/{code}", status_code=303)


# --- searching stored reads -------------------------------------------------------------------


def _search_form(raw: dict[str, str], reasons: list[str]) -> dict[str, str]:
    form = {k: raw.get(k, "").strip()[:200] for k in (
        "case_ref", "reason", "plate", "checkpoint", "window", "from", "to", "near",
        "radius_m", "tz")}
    if form["reason"] not in reasons:
        form["reason"] = ""
    if form["window"] not in {str(w) for w in WINDOWS}:
        form["window"] = "24"
    return form


def _typed_time(value: str, tz_minutes: int, name: str) -> datetime | None:
    """A ``datetime-local`` value (no offset) read in the browser's offset."""
    if not value:
        return None
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed.on(name, "not a date and time") from None
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    return naive.replace(tzinfo=timezone(timedelta(minutes=tz_minutes))).astimezone(UTC)


def _terms(form: dict[str, str], now: datetime) -> search.SearchTerms:
    try:
        tz = int(form["tz"]) if form["tz"] else DEFAULT_TZ_MINUTES
    except ValueError:
        tz = DEFAULT_TZ_MINUTES
    start = _typed_time(form["from"], tz, "from")
    end = _typed_time(form["to"], tz, "to")
    if start is None:
        start = (end or now) - timedelta(hours=int(form["window"]))
    radius = None
    if form["radius_m"]:
        try:
            radius = float(form["radius_m"])
        except ValueError:
            radius = -1.0  # refused by the service with the field named
    return search.SearchTerms(
        case_ref=form["case_ref"], reason=form["reason"], plate=form["plate"] or None,
        start=start, end=end, checkpoint=form["checkpoint"] or None,
        near=search.parse_near(form["near"]) if form["near"] else None,
        radius_m=radius if form["near"] or radius is not None else None,
    )


def _search_page(
    request: Request, principal: Principal, form: dict[str, str], *,
    result: search.SearchResult | None = None, errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    reasons = list(_state(request).settings.read_search_reasons)
    route: list[dict[str, Any]] = []
    export_query = ""
    if result is not None:
        route = [{"lat": r.lat, "lon": r.lon, "checkpoint": r.checkpoint_code,
                  "plate": r.plate, "at": r.captured_at.isoformat()} for r in result.reads]
        query = {k: v for k, v in (
            ("case_ref", form["case_ref"]), ("reason", form["reason"]),
            ("plate", form["plate"]), ("checkpoint", form["checkpoint"]),
            ("near", form["near"]), ("radius_m", form["radius_m"]),
            ("from", result.start.isoformat()), ("to", result.end.isoformat()),
        ) if v}
        export_query = urlencode(query)
    return render(request, "checkpoints/search.html", {
        "active_nav": "reads",
        "form": form,
        "reasons": reasons,
        "windows": WINDOWS,
        "result": result,
        "route": route,
        "errors": errors,
        "export_query": export_query,
        **_labels(request, principal),
    }, principal, status_code=status_code)


def _may_search(request: Request, principal: Principal | None) -> Response | None:
    if principal is None:
        return _login(request)
    if not principal.can(Action.READS_SEARCH):
        return html_error(request, 403, principal, code="anwang.auth.permission_denied")
    return None


@router.get("/reads/search")
def search_page(request: Request, principal: OptionalPrincipal) -> Response:
    """The empty form (a search is a POST: it is recorded, so a link cannot run one)."""
    refused = _may_search(request, principal)
    if refused is not None:
        return refused
    assert principal is not None
    form = _search_form(dict(request.query_params), _state(request).settings.read_search_reasons)
    return _search_page(request, principal, form)


@router.post("/reads/search")
async def run_search(request: Request, principal: OptionalPrincipal) -> Response:
    refused = _may_search(request, principal)
    if refused is not None:
        return refused
    assert principal is not None
    raw = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    state = _state(request)
    form = _search_form(raw, state.settings.read_search_reasons)
    return await run_in_threadpool(_search, request, principal, form)


def _search(request: Request, principal: Principal, form: dict[str, str]) -> Response:
    state = _state(request)
    try:
        terms = _terms(form, datetime.now(UTC))
        with state.db.unit_of_work(
            info={"scope": principal.scope, "principal": principal}
        ) as session:
            result = search.search_reads(
                session, terms=terms, reasons=state.settings.read_search_reasons,
                actor=principal.name, actor_role=str(principal.role),
                jurisdiction=principal.jurisdiction, via="web",
            )
    except AnwangError as exc:
        return _search_page(request, principal, form,
                            errors=_errors(request, principal, exc), status_code=422)
    return _search_page(request, principal, form, result=result)

