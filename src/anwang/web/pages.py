"""The server-rendered pages: sign-in, the live dashboard, the audit trail, language.

Pages ask for :data:`~anwang.auth.deps.OptionalPrincipal` and decide themselves what a
visitor without a session (redirect to ``/login``) or without the permission (the
``error.html`` page, 403) gets, so that a browser never lands on a JSON problem. The
CSRF check of unsafe methods is already done by that dependency (form field
``csrf_token`` or header ``X-CSRF-Token``; htmx sends the header, see ``base.html``).

Sign-in uses :func:`anwang.auth.deps.sign_in`, which records a refused login in a unit
of work of its own before raising, so failure counters and locks survive the refusal.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import pyotp
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from anwang.audit import service as audit_service
from anwang.auth import enrolment
from anwang.auth import service as auth_service
from anwang.auth.deps import (
    OptionalPrincipal,
    Principal,
    StateDep,
    clear_session_cookie,
    client_ip,
    login_rate_limit,
    set_session_cookie,
    sign_in,
    sign_out,
)
from anwang.auth.permissions import Action
from anwang.auth.service import TOTP_ISSUER
from anwang.core import audit
from anwang.core.errors import NotAuthenticated, TooManyRequests, ValidationFailed
from anwang.state import AppState
from anwang.web.map_api import GRID_MIN_ZOOM
from anwang.web.templating import (
    LANG_COOKIE,
    N_,
    SUPPORTED_LOCALES,
    choose_locale,
    render,
    translations,
)

router = APIRouter(include_in_schema=False)

#: Audit entries per page of the audit view.
AUDIT_PAGE_SIZE = 50
#: How long the ``lang`` cookie keeps a visitor's language choice.
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

#: Title and message of each refused sign-in, by problem code.
LOGIN_PROBLEMS: dict[str, tuple[str, str]] = {
    "anwang.auth.invalid_credentials": (
        N_("Sign-in failed"),
        N_("The username or password is not correct."),
    ),
    "anwang.auth.account_locked": (
        N_("Account locked"),
        N_("Too many failed sign-in attempts: this account is locked for a while. "
           "Try again later, or ask an administrator to unlock it."),
    ),
    "anwang.auth.mfa_required": (
        N_("Verification code needed"),
        N_("This account uses two-factor sign-in. Enter your password again together "
           "with the six-digit code from your authenticator app."),
    ),
    "anwang.auth.mfa_invalid": (
        N_("Wrong verification code"),
        N_("The six-digit code is not valid or has already been used. Wait for the next "
           "code and try again."),
    ),
    "anwang.auth.mfa_enrolment_required": (
        N_("Two-factor sign-in required"),
        N_("Your role must sign in with a one-time code. Ask an administrator to set up "
           "an authenticator app for your account."),
    ),
    "anwang.auth.login_rate_limited": (
        N_("Too many attempts"),
        N_("Too many sign-in attempts from this address. Wait a minute and try again."),
    ),
    "anwang.auth.missing_credentials": (
        N_("Sign-in failed"),
        N_("Enter your username and password."),
    ),
    "anwang.auth.cross_origin": (
        N_("Sign-in refused"),
        N_("This form was not sent from anwang's own page. Open the sign-in page again."),
    ),
    "anwang.auth.session_expired": (
        N_("Session ended"),
        N_("Your session has expired. Sign in again."),
    ),
    "anwang.auth.session_ended": (
        N_("Session ended"),
        N_("Your session has ended. Sign in again."),
    ),
    "anwang.auth.enrolment_expired": (
        N_("Set-up expired"),
        N_("Setting up two-factor sign-in took too long. Sign in again to restart it."),
    ),
}
_LOCKED_UNTIL = re.compile(r"until (\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)? UTC)")

ERROR_TEXTS: dict[int, tuple[str, str]] = {
    403: (N_("Not allowed"), N_("Your role does not give access to this page.")),
    404: (N_("Page not found"), N_("There is no page at this address.")),
}


# --- helpers ------------------------------------------------------------------------


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


def safe_next(value: str | None, *, allow_login: bool = False) -> str | None:
    """``value`` if it is a path on this site to return to after sign-in, else None.

    Refuses absolute and scheme-relative URLs (``//evil``, ``/\\evil``), control
    characters, and the sign-in machinery itself (an open redirect or a loop); the
    language switch may return to the sign-in page (``allow_login``).
    """
    if not value or len(value) > 2000:
        return None
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    if parts.path == "/login" and allow_login:
        return value
    if parts.path in ("/login", "/logout", "/locale") or parts.path.startswith("/api/"):
        return None
    return value


def home_for(principal: Principal) -> str:
    """Where a principal starts: the map, or the audit trail for an auditor."""
    if principal.can(Action.MAP_VIEW):
        return "/dashboard"
    if principal.can(Action.AUDIT_READ):
        return "/audit"
    return "/dashboard"


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another site (login CSRF).

    Modern browsers say where a request comes from in ``Sec-Fetch-Site``, which holds
    behind a proxy that rewrites ``Host``; otherwise ``Origin`` is compared with the
    host. A request with neither (old clients, tools) is allowed.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.url.netloc


def _login_redirect(request: Request) -> RedirectResponse:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    query = {"next": path} if safe_next(path) and path != "/" else {}
    target = "/login" + ("?" + urlencode(query) if query else "")
    response = RedirectResponse(target, status_code=303)
    if getattr(request.state, "auth_error", None):
        # The cookie names a session that has expired or ended: drop it.
        clear_session_cookie(response, settings=_state(request).settings)
    return response


def html_error(
    request: Request, status_code: int, principal: Principal | None = None,
    *, code: str | None = None,
) -> Response:
    """The ``error.html`` page for ``status_code`` (403 and 404 have their own texts).

    Also meant for the app's HTML error handling (see :mod:`anwang.web.problems`).
    """
    title, message = ERROR_TEXTS.get(status_code, (N_("Error"), N_("Something went wrong.")))
    locale = choose_locale(request, _state(request).settings, principal)
    t = translations(locale)
    return render(
        request,
        "error.html",
        {
            "status": status_code,
            "title": t.gettext(title),
            "message": t.gettext(message),
            "code": code,
            "home_url": home_for(principal) if principal else "/login",
        },
        principal,
        status_code=status_code,
    )


def _forbidden(request: Request, principal: Principal) -> Response:
    return html_error(request, 403, principal, code="anwang.auth.permission_denied")


def _login_page(
    request: Request,
    *,
    next_url: str = "",
    username: str = "",
    code: str | None = None,
    detail: str = "",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    problem: dict[str, Any] | None = None
    if code is not None:
        locale = choose_locale(request, _state(request).settings, None)
        t = translations(locale)
        title, message = LOGIN_PROBLEMS.get(
            code, (N_("Sign-in failed"), N_("The sign-in did not succeed."))
        )
        text = t.gettext(message)
        locked = _LOCKED_UNTIL.search(detail) if code == "anwang.auth.account_locked" else None
        if locked:
            text += " " + t.gettext("Locked until %(time)s.") % {"time": locked.group(1)}
        problem = {"code": code, "title": t.gettext(title), "message": text}
    return render(
        request,
        "login.html",
        {
            "problem": problem,
            "next_url": safe_next(next_url) or "",
            "username": username,
            "focus_totp": code in ("anwang.auth.mfa_required", "anwang.auth.mfa_invalid"),
        },
        None,
        status_code=status_code,
        headers=headers,
    )


def _parse_date(value: str | None) -> date | None:
    if not value:
        return None
    return date.fromisoformat(value)


def _audit_filters(request: Request) -> tuple[dict[str, str], dict[str, Any], str | None]:
    """The filters as given (for the form) and as ``list_entries`` arguments."""
    q = request.query_params
    given = {
        k: q.get(k, "").strip()[:200]
        for k in ("actor", "action", "subject", "case_ref", "since", "until")
    }
    args: dict[str, Any] = {k: given[k] or None for k in ("actor", "action", "subject", "case_ref")}
    error = None
    try:
        since = _parse_date(given["since"])
        until = _parse_date(given["until"])
    except ValueError:
        since = until = None
        error = N_("Dates must be written as YYYY-MM-DD.")
    # Dates are whole days in UTC; "until" includes its day.
    args["since"] = datetime.combine(since, time.min, tzinfo=UTC) if since else None
    args["until"] = (
        datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC) if until else None
    )
    return given, args, error


def _audit_rows(
    state: AppState, principal: Principal, args: dict[str, Any], before_seq: int | None
) -> list[audit.AuditEntry]:
    """One page of entries; reading the trail is itself recorded (as the JSON API does)."""
    with state.db.unit_of_work(
        info={"scope": principal.scope, "principal": principal}
    ) as session:
        rows = list(
            audit_service.list_entries(
                session, before_seq=before_seq, limit=AUDIT_PAGE_SIZE, **args
            )
        )
        data: dict[str, Any] = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in args.items() if v is not None
        }
        if before_seq:
            data["before_seq"] = before_seq
        audit.record(
            session, "anwang.audit.trail.read", actor=principal.name,
            actor_role=str(principal.role), result_count=len(rows),
            data={**data, "via": "web"},
        )
    return rows


def _more_url(given: dict[str, str], rows: list[audit.AuditEntry]) -> str | None:
    if len(rows) < AUDIT_PAGE_SIZE or rows[-1].seq <= 1:
        return None
    query = {k: v for k, v in given.items() if v}
    query["before_seq"] = str(rows[-1].seq)
    return "/audit/rows?" + urlencode(query)


# --- routes -------------------------------------------------------------------------


@router.get("/")
def index(principal: OptionalPrincipal) -> RedirectResponse:
    return RedirectResponse(home_for(principal) if principal else "/login", status_code=303)


@router.get("/login")
def login_form(request: Request, principal: OptionalPrincipal, next: str = "") -> Response:  # noqa: A002
    if principal is not None:
        return RedirectResponse(safe_next(next) or home_for(principal), status_code=303)
    expired = getattr(request.state, "auth_error", None)
    response = _login_page(
        request, next_url=next,
        code=expired if expired in ("anwang.auth.session_expired",
                                    "anwang.auth.session_ended") else None,
    )
    if expired:
        clear_session_cookie(response, settings=_state(request).settings)
    return response


@router.post("/login")
async def login_submit(
    request: Request,
    state: StateDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    totp: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",  # noqa: A002
) -> Response:
    username = username.strip().lower()

    def again(code: str, status_code: int, *, detail: str = "",
              headers: dict[str, str] | None = None) -> Response:
        return _login_page(request, next_url=next, username=username, code=code,
                           detail=detail, status_code=status_code, headers=headers)

    if not _same_origin(request):
        return again("anwang.auth.cross_origin", 403)
    try:
        await login_rate_limit(request, state)
    except TooManyRequests as exc:
        return again(exc.code, 429, detail=exc.detail, headers=exc.headers)
    if not username or not password:
        return again("anwang.auth.missing_credentials", 400)
    try:
        # sign_in blocks on argon2 and the database: keep it off the event loop.
        signed = await run_in_threadpool(
            sign_in, state, username=username, password=password,
            totp_code=totp.replace(" ", "") or None, kind="web", ip=client_ip(request),
        )
    except NotAuthenticated as exc:
        if exc.code == "anwang.auth.mfa_enrolment_required":
            # The password was right: offer the second factor's enrolment at once.
            enrolling = await run_in_threadpool(enrolment.begin, state, username=username)
            return _enrol_page(request, enrolling, next_url=next)
        return again(exc.code, exc.status, detail=exc.detail)
    response = RedirectResponse(
        safe_next(next) or home_for(signed.principal), status_code=303
    )
    set_session_cookie(response, token=signed.token, settings=state.settings)
    return response


def _enrol_page(
    request: Request,
    enrolling: enrolment.Enrolment,
    *,
    next_url: str = "",
    invalid: bool = False,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "login_enrol.html",
        {
            "enrolment": enrolling,
            "qr_svg": Markup(enrolling.qr_svg),
            "next_url": safe_next(next_url) or "",
            "invalid": invalid,
        },
        status_code=status_code,
    )


@router.post("/login/enrol")
async def login_enrol(
    request: Request,
    state: StateDep,
    username: Annotated[str, Form(max_length=64)] = "",
    ticket: Annotated[str, Form(max_length=200)] = "",
    secret: Annotated[str, Form(max_length=64)] = "",
    totp: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",  # noqa: A002
) -> Response:
    """Second step of a first sign-in with a required second factor (see
    :mod:`anwang.auth.enrolment`): a matching code enables TOTP and signs in."""
    if not _same_origin(request):
        return _login_page(request, next_url=next, code="anwang.auth.cross_origin",
                           status_code=403)
    try:
        await login_rate_limit(request, state)
    except TooManyRequests as exc:
        return _login_page(request, next_url=next, code=exc.code, detail=exc.detail,
                           status_code=429, headers=exc.headers)
    try:
        signed = await run_in_threadpool(
            enrolment.complete, state, username=username.strip().lower(), ticket=ticket,
            code=totp, kind="web", ip=client_ip(request),
        )
    except NotAuthenticated as exc:
        return _login_page(request, next_url=next, code=exc.code, status_code=exc.status)
    except ValidationFailed:
        uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)
        again = enrolment.Enrolment(username=username, ticket=ticket, secret=secret, uri=uri,
                                    qr_svg=enrolment.qr_svg(uri))
        return _enrol_page(request, again, next_url=next, invalid=True, status_code=422)
    response = RedirectResponse(safe_next(next) or home_for(signed.principal), status_code=303)
    set_session_cookie(response, token=signed.token, settings=state.settings)
    return response


@router.post("/logout")
def logout(request: Request, principal: OptionalPrincipal) -> Response:
    """End the session server-side and drop the cookie (the CSRF token was checked by
    the dependency; without a live session there is nothing to end)."""
    state = _state(request)
    if principal is not None and principal.session_id is not None:
        sign_out(state, principal)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, settings=state.settings)
    return response


@router.post("/locale")
def switch_locale(
    request: Request,
    principal: OptionalPrincipal,
    locale: Annotated[str, Form(max_length=10)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",  # noqa: A002
) -> Response:
    """Remember the language: on the user when signed in, and in the ``lang`` cookie
    (which also serves the sign-in page)."""
    state = _state(request)
    target = safe_next(next, allow_login=True) or ("/" if principal else "/login")
    if locale not in SUPPORTED_LOCALES or not _same_origin(request):
        return RedirectResponse(target, status_code=303)
    if principal is not None and principal.kind == "user":
        with state.db.unit_of_work(info={"scope": principal.scope}) as session:
            user = auth_service.get_user(session, username=principal.name)
            auth_service.set_locale(session, user=user, locale=locale)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        LANG_COOKIE, locale, max_age=LANG_COOKIE_MAX_AGE, path="/", httponly=True,
        secure=state.settings.secure_cookies, samesite="lax",
    )
    return response


@router.get("/dashboard")
def dashboard(request: Request, principal: OptionalPrincipal) -> Response:
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Action.MAP_VIEW):
        if principal.can(Action.AUDIT_READ):
            return RedirectResponse("/audit", status_code=303)
        return _forbidden(request, principal)
    return render(
        request, "dashboard.html",
        {"active_nav": "dashboard", "grid_min_zoom": GRID_MIN_ZOOM},
        principal,
    )


@router.get("/audit")
def audit_page(request: Request, principal: OptionalPrincipal) -> Response:
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Action.AUDIT_READ):
        return _forbidden(request, principal)
    given, args, error = _audit_filters(request)
    rows = [] if error else _audit_rows(_state(request), principal, args, None)
    filter_error = None
    if error:
        locale = choose_locale(request, _state(request).settings, principal)
        filter_error = translations(locale).gettext(error)
    return render(
        request, "audit.html",
        {
            "active_nav": "audit",
            "filters": given,
            "filter_error": filter_error,
            "entries": rows,
            "before_seq": None,
            "more_url": _more_url(given, rows),
        },
        principal,
    )


@router.get("/audit/rows")
def audit_rows(
    request: Request, principal: OptionalPrincipal, before_seq: int | None = None
) -> Response:
    """The next (older) page of rows, for htmx's "load more" (keyset on ``seq``)."""
    if principal is None:
        return Response(status_code=401, headers={"HX-Redirect": "/login?next=/audit"})
    if not principal.can(Action.AUDIT_READ):
        return _forbidden(request, principal)
    given, args, error = _audit_filters(request)
    rows = [] if error else _audit_rows(_state(request), principal, args, before_seq)
    return render(
        request, "_audit_rows.html",
        {"entries": rows, "before_seq": before_seq, "more_url": _more_url(given, rows)},
        principal,
    )


@router.post("/audit/verify")
def audit_verify(request: Request, principal: OptionalPrincipal) -> Response:
    """Recompute the whole hash chain (reads every entry, so only on request)."""
    if principal is None:
        return Response(status_code=401, headers={"HX-Redirect": "/login?next=/audit"})
    if not principal.can(Action.AUDIT_READ):
        return _forbidden(request, principal)
    with _state(request).db.unit_of_work(
        readonly=True, info={"scope": principal.scope, "principal": principal}
    ) as session:
        result = audit.verify(session)
    return render(request, "_audit_verify.html", {"result": result}, principal)
