"""First-login TOTP enrolment for roles that must use a second factor.

When MFA is enforced (``ANWANG_ENV=prod``) an analyst or commander without TOTP cannot
sign in — and so could never reach a page to enrol. This closes that loop without a
back door: a correct password earns an *enrolment ticket* (HMAC-SHA256 over the
username, the pending secret's digest and an expiry, keyed with ``ANWANG_SECRET_KEY``,
valid for :data:`TICKET_SECONDS`). The ticket lets the login form show the new secret
once and accept a code from the authenticator app; a matching code enables TOTP and
opens the session in the same transaction. Without the password there is no ticket,
and a ticket is bound to the secret it was issued with, so it cannot be replayed after
a new enrolment started.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from anwang.auth import service
from anwang.auth.deps import SignedIn, user_principal
from anwang.core import audit
from anwang.core.errors import NotAuthenticated
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.state import AppState

TICKET_SECONDS = 600


@dataclass(frozen=True)
class Enrolment:
    username: str
    ticket: str
    secret: str
    uri: str
    #: The provisioning URI as an SVG QR code (inline-safe markup).
    qr_svg: str


def _sign(key: str, message: str) -> str:
    mac = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def make_ticket(key: str, *, username: str, secret: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + TICKET_SECONDS)
    body = f"{username}|{_secret_digest(secret)}|{expires}"
    return f"{expires}.{_sign(key, body)}"


def check_ticket(
    key: str, ticket: str, *, username: str, secret: str, now: float | None = None
) -> bool:
    try:
        expires_s, mac = ticket.split(".", 1)
        expires = int(expires_s)
    except ValueError:
        return False
    if expires < (now or time.time()):
        return False
    body = f"{username}|{_secret_digest(secret)}|{expires}"
    return hmac.compare_digest(mac, _sign(key, body))


def qr_svg(uri: str) -> str:
    import segno

    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="svg", scale=5, border=2, xmldecl=False,
                                    svgns=True, title="TOTP")
    return buf.getvalue().decode()


def begin(state: AppState, *, username: str) -> Enrolment:
    """Start (or restart) enrolment for a user whose password was just verified."""
    with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
        user = service.get_user(session, username=username)
        uri = service.begin_totp(session, user=user)
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    return Enrolment(
        username=username,
        ticket=make_ticket(state.settings.secret_key, username=username, secret=secret),
        secret=secret,
        uri=uri,
        qr_svg=qr_svg(uri),
    )


def complete(
    state: AppState, *, username: str, ticket: str, code: str, kind: service.SessionKind,
    ip: str | None = None,
) -> SignedIn:
    """Enable TOTP with ``code`` and open a session, or raise.

    ``NotAuthenticated(anwang.auth.enrolment_expired)`` when the ticket is not valid for
    this user and pending secret; ``ValidationFailed`` with code ``anwang.auth.mfa_invalid``
    (from :func:`service.confirm_totp`) when the code does not match — the ticket stays
    usable until it expires.
    """
    settings = state.settings
    with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
        try:
            user = service.get_user(session, username=username)
        except Exception:  # noqa: BLE001 - no such user: same answer as a bad ticket
            user = None
        if (
            user is None
            or not user.active
            or user.totp_enabled
            or not user.totp_secret
            or not check_ticket(settings.secret_key, ticket, username=username,
                                secret=user.totp_secret)
        ):
            raise NotAuthenticated(
                "The enrolment has expired; sign in again.", code="anwang.auth.enrolment_expired"
            )
        service.confirm_totp(session, user=user, code=code.replace(" ", ""))
        user.failed_logins = 0
        user.last_login_at = utcnow()
        token, auth = service.start_session(session, user=user, kind=kind, ip=ip)
        audit.record(
            session, "anwang.auth.login.succeeded", actor=user.username, actor_role=user.role,
            subject=user.username, jurisdiction=user.jurisdiction_code,
            data={"kind": kind, "ip": ip, "mfa": "enrolled"},
        )
        return SignedIn(
            token=token,
            principal=user_principal(user, auth),
            expires_in=settings.session_absolute_hours * 3600,
            idle_timeout=settings.session_idle_minutes * 60,
        )


__all__ = ["Enrolment", "begin", "check_ticket", "complete", "make_ticket"]
