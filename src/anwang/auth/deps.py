"""FastAPI dependencies: who is asking, may they, and the unit of work of a request.

This module is the contract that every router and page uses:

* :data:`CurrentPrincipal` — the authenticated :class:`Principal`, or 401. Credentials
  are, in order: ``Authorization: Bearer <token>`` (a token starting ``ak_`` is an API
  key, anything else an ``api`` session token), then the ``anwang_session`` cookie (a
  ``web`` session). A bad bearer token is refused; it never falls back to the cookie.
* :data:`OptionalPrincipal` — the same, or None when there are no credentials or the
  cookie's session has expired or ended (pages then redirect to ``/login``; the reason is
  left in ``request.state.auth_error``).
* :func:`require` — ``Depends(require(Action.X))`` gives the principal or 403.
* :data:`DbSession` / :data:`PublicDbSession` — a session inside one unit of work that
  commits after the route returns and before the response is sent, and rolls back if
  the route raises. ``DbSession`` carries the principal's :class:`Scope`.
* CSRF: every principal obtained through these dependencies has already passed
  :func:`csrf_protect` — cookie-authenticated requests with an unsafe method must
  carry the session's CSRF token. :data:`CsrfProtected` names that at a route.
* :func:`login_rate_limit` — 20 login attempts per minute per client address.
* :func:`sign_in` / :func:`sign_out` and the cookie helpers for login forms.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from anwang.auth import service
from anwang.auth.models import ApiKey, AuthSession, User
from anwang.auth.permissions import Action, Role, allowed
from anwang.core.errors import BadRequest, NotAuthenticated, PermissionDenied, TooManyRequests
from anwang.core.scope import Scope
from anwang.settings import Settings
from anwang.state import AppState

SESSION_COOKIE = "anwang_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
LOGIN_ATTEMPTS_PER_MINUTE = 20

PrincipalKind = Literal["user", "apikey"]


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def client_ip(request: Request) -> str | None:
    """The peer address. Behind a reverse proxy, run uvicorn with ``--proxy-headers``
    and ``--forwarded-allow-ips`` so that this is the client's, not the proxy's."""
    return request.client.host if request.client else None


@dataclass(frozen=True)
class Principal:
    """Who is making the request: a person (``user``) or an API key (``apikey``)."""

    kind: PrincipalKind
    id: int
    #: The username, or the API key's name.
    name: str
    role: Role
    #: The jurisdiction code; None is the whole city.
    jurisdiction: str | None
    locale: str | None
    #: The server-side session, for users.
    session_id: int | None
    #: Set only for browser (cookie) sessions: pages put it into their forms.
    csrf_token: str | None

    @property
    def scope(self) -> Scope:
        return Scope(self.jurisdiction)

    def can(self, action: Action | str) -> bool:
        return allowed(self.role, action)


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise NotAuthenticated("The account has an unknown role; ask an administrator.",
                               code="anwang.auth.unknown_role") from None


def user_principal(user: User, auth: AuthSession) -> Principal:
    return Principal(
        kind="user",
        id=user.id,
        name=user.username,
        role=_role(user.role),
        jurisdiction=user.jurisdiction_code,
        locale=user.locale,
        session_id=auth.id,
        csrf_token=auth.csrf_token if auth.kind == "web" else None,
    )


def apikey_principal(key: ApiKey) -> Principal:
    return Principal(
        kind="apikey",
        id=key.id,
        name=key.name,
        role=_role(key.role),
        jurisdiction=key.jurisdiction_code,
        locale=None,
        session_id=None,
        csrf_token=None,
    )


# --- authentication -----------------------------------------------------------------

CredentialKind = Literal["apikey", "api", "web"]


def _credentials(request: Request) -> tuple[CredentialKind, str] | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated(
                "Send 'Authorization: Bearer <token>'.", headers={"WWW-Authenticate": "Bearer"}
            )
        return ("apikey" if token.startswith("ak_") else "api"), token
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return "web", cookie
    return None


def _resolve(state: AppState, kind: CredentialKind, token: str) -> Principal:
    """Resolve credentials in a unit of work of their own. A refusal is raised only
    after that unit has committed, so an expired session stays marked ended. (API keys:
    :func:`_resolve_api_key`.)"""
    if kind == "apikey":
        return _resolve_api_key(state, token)
    error: NotAuthenticated | None = None
    principal: Principal | None = None
    with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
        try:
            user, auth = service.resolve_session(
                session, token=token, kind=kind, settings=state.settings
            )
            principal = user_principal(user, auth)
        except NotAuthenticated as exc:
            error = exc
    if error is not None:
        if kind != "web":
            error.headers.setdefault("WWW-Authenticate", "Bearer")
        raise error
    assert principal is not None
    return principal


def _resolve_api_key(state: AppState, token: str) -> Principal:
    """An API key, resolved in a read-only unit of work: a device posting many batches
    does not take SQLite's writer lock to be recognised (and wait there for other
    writers); ``last_used_at`` is written, in a unit of its own, at most once a minute."""
    with state.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as session:
        try:
            row = service.resolve_api_key(session, key=token, touch=False)
        except NotAuthenticated as exc:
            exc.headers.setdefault("WWW-Authenticate", "Bearer")
            raise
        principal = apikey_principal(row)
        now = datetime.now(UTC)
        due = service.api_key_due_touch(row, now)
    if due:
        with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
            service.touch_api_key(session, key_id=principal.id, now=now)
    return principal


def _authenticated(request: Request, state: StateDep) -> Principal:
    creds = _credentials(request)
    if creds is None:
        raise NotAuthenticated(
            "Sign in, or send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return _resolve(state, *creds)


def _maybe_authenticated(request: Request, state: StateDep) -> Principal | None:
    creds = _credentials(request)
    if creds is None:
        return None
    try:
        return _resolve(state, *creds)
    except NotAuthenticated as exc:
        if creds[0] != "web":
            raise
        request.state.auth_error = exc.code
        return None


async def _check_csrf(request: Request, principal: Principal) -> None:
    if request.method in SAFE_METHODS or principal.csrf_token is None:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
        raise PermissionDenied(
            f"This form has expired or did not come from anwang: send the field "
            f"'{CSRF_FIELD}' or the header '{CSRF_HEADER}'.",
            code="anwang.auth.csrf_failed",
        )


async def csrf_protect(
    request: Request, principal: Annotated[Principal, Depends(_authenticated)]
) -> Principal:
    """The authenticated principal, after the CSRF check.

    Requests authenticated by the session cookie with an unsafe method (anything but
    GET, HEAD, OPTIONS, TRACE) must send the session's CSRF token as the form field
    ``csrf_token`` or the header ``X-CSRF-Token`` (compared in constant time), else
    403 ``anwang.auth.csrf_failed``. Bearer-authenticated requests are exempt: a browser
    never adds an Authorization header on its own.
    """
    await _check_csrf(request, principal)
    return principal


CsrfProtected = Annotated[Principal, Depends(csrf_protect)]


async def current_principal(principal: CsrfProtected) -> Principal:
    """The authenticated principal (401 ``NotAuthenticated`` without valid credentials).

    CSRF-checked like :func:`csrf_protect`: no route can forget it.
    """
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def optional_principal(
    request: Request, principal: Annotated[Principal | None, Depends(_maybe_authenticated)]
) -> Principal | None:
    """The principal, or None without credentials or with an expired or ended cookie
    session. A bad bearer token is still a 401."""
    if principal is not None:
        await _check_csrf(request, principal)
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


def require(action: Action) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency giving the principal if its role may perform ``action``, else 403
    ``anwang.auth.permission_denied``. Use ``Depends(require(Action.USERS_MANAGE))``."""
    action = Action(action)

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.can(action):
            raise PermissionDenied(
                f"The role {principal.role} may not {action}.",
                code="anwang.auth.permission_denied",
            )
        return principal

    dependency.__name__ = f"require_{action.value.replace('.', '_')}"
    return dependency


# --- the unit of work of a request ---------------------------------------------------


def db_session(state: StateDep, principal: CurrentPrincipal) -> Iterator[Session]:
    with state.db.unit_of_work(
        info={"scope": principal.scope, "principal": principal}
    ) as session:
        yield session


def public_db_session(state: StateDep) -> Iterator[Session]:
    """City-wide and without a principal: only for login and public routes."""
    with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
        yield session


# ``scope="function"``: the commit happens before the response is sent, so a client is
# never told "done" about a transaction that then failed to commit.
DbSession = Annotated[Session, Depends(db_session, scope="function")]
PublicDbSession = Annotated[Session, Depends(public_db_session, scope="function")]


# --- login rate limit ---------------------------------------------------------------


class SlidingWindowLimiter:
    """At most ``limit`` hits per ``window`` seconds per key (a sliding log of hit
    times). Refused hits are not logged, so a client that keeps trying is let in again
    as soon as its oldest logged hit leaves the window. In memory, per process."""

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Log a hit for ``key``; returns None if allowed, else seconds until allowed."""
        now = self.clock()
        cutoff = now - self.window
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    self._prune(cutoff)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None

    def _prune(self, cutoff: float) -> None:
        for key in [k for k, q in self._hits.items() if not q or q[-1] <= cutoff]:
            del self._hits[key]
        # Still full of live keys (a flood from many addresses): forget the oldest half.
        if len(self._hits) >= self.max_keys:
            for key in list(self._hits)[: self.max_keys // 2]:
                del self._hits[key]


_limiter_lock = threading.Lock()


def _login_limiter(state: AppState) -> SlidingWindowLimiter:
    with _limiter_lock:
        limiter = state.extras.get("login_limiter")
        if not isinstance(limiter, SlidingWindowLimiter):
            limiter = SlidingWindowLimiter(limit=LOGIN_ATTEMPTS_PER_MINUTE, window=60.0)
            state.extras["login_limiter"] = limiter
        return limiter


async def login_rate_limit(request: Request, state: StateDep) -> None:
    """429 with ``Retry-After`` beyond 20 login attempts per minute per client address
    (per process; the account lock in :func:`service.authenticate` is the global bound)."""
    wait = _login_limiter(state).hit(client_ip(request) or "unknown")
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"Too many login attempts; try again in {seconds} seconds.",
            code="anwang.auth.login_rate_limited",
            headers={"Retry-After": str(seconds)},
        )


LoginRateLimit = Annotated[None, Depends(login_rate_limit)]


# --- signing in and out -------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    #: The session token: the bearer token (``api``) or the cookie value (``web``).
    token: str
    principal: Principal
    #: Seconds until the session ends at the latest (the absolute limit).
    expires_in: int
    #: Seconds of inactivity after which the session ends.
    idle_timeout: int


def sign_in(
    state: AppState,
    *,
    username: str,
    password: str,
    totp_code: str | None = None,
    kind: service.SessionKind,
    ip: str | None = None,
) -> SignedIn:
    """Check a login and open a session, in one unit of work of its own.

    A refusal (``NotAuthenticated`` with the codes listed at
    :func:`service.authenticate`) is raised only after the unit has committed, so
    failure counters, locks and their audit rows are kept. Call it from a plain ``def``
    route (it blocks on argon2 and the database), not inside another unit of work.
    """
    settings = state.settings
    signed: SignedIn | None = None
    with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
        outcome = service.authenticate(
            session, settings=settings, username=username, password=password,
            totp_code=totp_code, ip=ip,
        )
        if outcome.ok and outcome.user is not None:
            token, auth = service.start_session(session, user=outcome.user, kind=kind, ip=ip)
            signed = SignedIn(
                token=token,
                principal=user_principal(outcome.user, auth),
                expires_in=settings.session_absolute_hours * 3600,
                idle_timeout=settings.session_idle_minutes * 60,
            )
    if outcome.error is not None:
        raise outcome.error
    assert signed is not None
    return signed


def sign_out(state: AppState, principal: Principal) -> None:
    """End the principal's session server-side (audited ``anwang.auth.logout``)."""
    if principal.session_id is None:
        raise BadRequest("API keys are revoked, not signed out.",
                         code="anwang.auth.not_a_session")
    with state.db.unit_of_work(info={"scope": principal.scope}) as session:
        service.end_session(session, session_id=principal.session_id)


def set_session_cookie(response: Response, *, token: str, settings: Settings) -> None:
    """The ``web`` session cookie: HttpOnly, SameSite=Lax, Secure when configured; it
    lives no longer than the session's absolute limit."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_absolute_hours * 3600,
        path="/",
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
    )


def clear_session_cookie(response: Response, *, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, secure=settings.secure_cookies, samesite="lax"
    )


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "CsrfProtected",
    "CurrentPrincipal",
    "DbSession",
    "LoginRateLimit",
    "OptionalPrincipal",
    "Principal",
    "PublicDbSession",
    "SignedIn",
    "SlidingWindowLimiter",
    "StateDep",
    "apikey_principal",
    "clear_session_cookie",
    "client_ip",
    "csrf_protect",
    "current_principal",
    "db_session",
    "get_state",
    "login_rate_limit",
    "optional_principal",
    "public_db_session",
    "require",
    "set_session_cookie",
    "sign_in",
    "sign_out",
    "user_principal",
]
