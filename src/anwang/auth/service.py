"""Identity and access: users, passwords, logins, sessions, API keys, TOTP, jurisdictions.

Every function that touches the database is keyword-only, takes the caller's
``session``, and never commits: the edge (a request dependency, a CLI command) owns the
unit of work. Every state change is audited in that same transaction.

Failed logins are the one case where "the request fails" and "the change must be kept"
meet. :func:`authenticate` therefore does not raise for a refused login: it records the
failure (counter, lock, audit) in the caller's transaction and *returns* a
:class:`LoginOutcome` holding the error. The edge commits, then raises the error —
:func:`anwang.auth.deps.sign_in` does exactly that, and every login form should call it
rather than :func:`authenticate` inside a request's own unit of work (which would roll
the failure record back with the error).

Secrets at rest: passwords are argon2id hashes; session tokens and API keys are stored
only as SHA-256 digests (they are long random strings, so a fast hash suffices); TOTP
secrets are stored as they are, because the server needs them to check codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pyotp
import shapely
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pyotp.exceptions import OTPVerificationError
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anwang.auth.models import ApiKey, AuthSession, Jurisdiction, User
from anwang.auth.permissions import MFA_ROLES, Role
from anwang.core import audit
from anwang.core.audit import AuditEntry
from anwang.core.errors import (
    Conflict,
    FieldError,
    NotAuthenticated,
    NotFound,
    ValidationFailed,
)
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.settings import Settings

SessionKind = Literal["web", "api"]

USERNAME_PATTERN = re.compile(r"^[a-z0-9_.-]{3,64}$")
PASSWORD_MIN_LENGTH = 10
#: Refused above this length: argon2 copes, but nobody types more, and it bounds work.
PASSWORD_MAX_LENGTH = 1024
SUPPORTED_LOCALES = ("zh_CN", "en")
#: People hold every role but ``device``, which is for machines' API keys.
USER_ROLES = frozenset(r for r in Role if r is not Role.DEVICE)
#: API keys are standing credentials without a second factor, so they cannot carry the
#: roles that administer the system or that MFA protects (searching reads, watch lists).
APIKEY_ROLES = frozenset(r for r in Role if r is not Role.ADMIN and r not in MFA_ROLES)
#: A session's ``last_seen_at`` is written at most this often, not on every request.
SESSION_TOUCH_INTERVAL = timedelta(seconds=30)
APIKEY_TOUCH_INTERVAL = timedelta(seconds=60)
TOTP_ISSUER = "anwang"

INVALID_CREDENTIALS = "The username or password is not correct."


def _new_hasher() -> PasswordHasher:
    # argon2-cffi's defaults follow RFC 9106's second recommended option (argon2id,
    # t=3, m=64 MiB, p=4). Stored hashes made with other parameters are upgraded on
    # the next successful login.
    return PasswordHasher()


_hasher = _new_hasher()
_dummy_hash: str | None = None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else utcnow()


# --- passwords ----------------------------------------------------------------------


def check_password_policy(password: str) -> None:
    """At least :data:`PASSWORD_MIN_LENGTH` characters (any script; a Chinese character
    counts as one), at most :data:`PASSWORD_MAX_LENGTH`."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValidationFailed.on(
            "password", f"must be at least {PASSWORD_MIN_LENGTH} characters long",
            code="anwang.auth.password_too_short",
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise ValidationFailed.on(
            "password", f"must be at most {PASSWORD_MAX_LENGTH} characters long",
            code="anwang.auth.password_too_long",
        )


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` after checking the policy."""
    check_password_policy(password)
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``. Never raises for a bad hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def _burn_verify(password: str) -> None:
    """Spend the time of one real verification, so that an unknown username answers as
    slowly as a known one (no user enumeration by timing)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(24))
    verify_password(_dummy_hash, password)


# --- users --------------------------------------------------------------------------


def _check_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationFailed.on(
            "username",
            "3 to 64 characters: lower-case letters, digits, '_', '.' or '-'",
        )


def is_valid_username(username: str) -> bool:
    return USERNAME_PATTERN.fullmatch(username) is not None


def _parse_role(role: Role | str, allowed_roles: frozenset[Role], what: str) -> Role:
    try:
        parsed = Role(role)
    except ValueError:
        raise ValidationFailed.on(
            "role", f"unknown role {role!r}; one of {', '.join(Role)}"
        ) from None
    if parsed not in allowed_roles:
        raise ValidationFailed.on("role", f"{what} cannot hold the role {parsed}")
    return parsed


def _check_locale(locale: str | None) -> None:
    if locale is not None and locale not in SUPPORTED_LOCALES:
        raise ValidationFailed.on("locale", f"one of {', '.join(SUPPORTED_LOCALES)}")


def _check_jurisdiction_exists(session: Session, code: str | None) -> None:
    if code is not None and session.get(Jurisdiction, code) is None:
        raise ValidationFailed.on("jurisdiction", f"no jurisdiction has the code {code!r}")


def get_user(session: Session, *, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {username!r}", code="anwang.auth.user_not_found")
    return user


def list_users(session: Session, *, within: Scope | None = None) -> Sequence[User]:
    """Users whose jurisdiction lies inside ``within`` (city-wide users only city-wide)."""
    stmt = select(User).order_by(User.username)
    if within is not None:
        stmt = stmt.where(within.clause(User.jurisdiction_code))
    return session.scalars(stmt).all()


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role | str,
    jurisdiction_code: str | None = None,
    display_name: str | None = None,
    locale: str | None = None,
    actor: str | None = None,
    actor_role: str | None = None,
) -> User:
    """Create an active user. ``jurisdiction_code=None`` makes the user city-wide."""
    _check_username(username)
    parsed = _parse_role(role, USER_ROLES, "a person")
    check_password_policy(password)
    _check_locale(locale)
    _check_jurisdiction_exists(session, jurisdiction_code)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"a user named {username!r} already exists",
                       code="anwang.auth.username_taken")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=str(parsed),
        jurisdiction_code=jurisdiction_code,
        display_name=display_name,
        locale=locale,
        totp_enabled=False,
        active=True,
        failed_logins=0,
        created_at=utcnow(),
    )
    try:
        # A savepoint, so that a concurrent insert of the same name is a clean Conflict.
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise Conflict(f"a user named {username!r} already exists",
                       code="anwang.auth.username_taken") from None
    audit.record(
        session, "anwang.auth.user.created", actor=actor, actor_role=actor_role,
        subject=username, jurisdiction=jurisdiction_code,
        data={"role": str(parsed), "jurisdiction": jurisdiction_code},
    )
    return user


def _is_last_admin(session: Session, user: User) -> bool:
    """Whether ``user`` is the only active city-wide admin: removing them would leave
    nobody able to manage accounts from the web."""
    if user.role != Role.ADMIN or user.jurisdiction_code is not None or not user.active:
        return False
    others = session.scalar(
        select(func.count()).select_from(User).where(
            User.role == str(Role.ADMIN), User.active.is_(True),
            User.jurisdiction_code.is_(None), User.id != user.id,
        )
    )
    return not others


def set_role(
    session: Session,
    *,
    username: str,
    role: Role | str,
    actor: str | None = None,
    actor_role: str | None = None,
) -> User:
    """Change a user's role. The change applies to their open sessions at once (roles
    are read from the user on every request)."""
    user = get_user(session, username=username)
    parsed = _parse_role(role, USER_ROLES, "a person")
    if user.role == parsed:
        return user
    if _is_last_admin(session, user):
        raise Conflict("this is the last active city-wide admin; appoint another first",
                       code="anwang.auth.last_admin")
    old = user.role
    user.role = str(parsed)
    audit.record(
        session, "anwang.auth.user.role_changed", actor=actor, actor_role=actor_role,
        subject=username, jurisdiction=user.jurisdiction_code,
        data={"from": old, "to": str(parsed)},
    )
    return user


def set_locale(session: Session, *, user: User, locale: str | None) -> User:
    """A personal preference, not a security decision: not audited."""
    _check_locale(locale)
    user.locale = locale
    return user


def deactivate_user(
    session: Session,
    *,
    username: str,
    actor: str | None = None,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> User:
    """Refuse the user's future logins and end their open sessions."""
    user = get_user(session, username=username)
    if not user.active:
        return user
    if _is_last_admin(session, user):
        raise Conflict("this is the last active city-wide admin; appoint another first",
                       code="anwang.auth.last_admin")
    user.active = False
    ended = end_user_sessions(session, user=user, reason="deactivated", now=now)
    audit.record(
        session, "anwang.auth.user.deactivated", actor=actor, actor_role=actor_role,
        subject=username, jurisdiction=user.jurisdiction_code, data={"sessions_ended": ended},
    )
    return user


def reset_lockout(
    session: Session,
    *,
    username: str,
    actor: str | None = None,
    actor_role: str | None = None,
) -> User:
    """Clear the failure counter and any lock."""
    user = get_user(session, username=username)
    user.failed_logins = 0
    user.locked_until = None
    audit.record(
        session, "anwang.auth.user.lockout_reset", actor=actor, actor_role=actor_role,
        subject=username, jurisdiction=user.jurisdiction_code,
    )
    return user


# --- login --------------------------------------------------------------------------


@dataclass
class LoginOutcome:
    """What :func:`authenticate` decided.

    Exactly one of two shapes: ``error is None`` and ``user`` set (logged in), or
    ``error`` set (refused; raise it *after* committing the transaction, so the
    failure record survives). For ``anwang.auth.mfa_enrolment_required`` ``user`` is
    set too: the password was right, and a login form may offer TOTP enrolment.
    """

    user: User | None
    error: NotAuthenticated | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.user is not None


def _refuse(code: str, detail: str, user: User | None = None) -> LoginOutcome:
    return LoginOutcome(user=user, error=NotAuthenticated(detail, code=code))


def _totp_step(user: User, code: str, now: datetime) -> int | None:
    """The time step the code belongs to (±1 step of 30 s), or None if it matches none."""
    if not user.totp_secret:
        return None
    code = code.replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    try:
        return pyotp.TOTP(user.totp_secret).verify_and_get_timecode(
            code, for_time=now, valid_window=1
        )
    except OTPVerificationError:
        return None


def _record_failure(
    session: Session, *, settings: Settings, user: User, reason: str, ip: str | None,
    now: datetime,
) -> bool:
    """Count one failure; lock the account when the limit is reached. True if locked."""
    user.failed_logins = (user.failed_logins or 0) + 1
    audit.record(
        session, "anwang.auth.login.failed", subject=user.username,
        jurisdiction=user.jurisdiction_code,
        data={"reason": reason, "ip": ip, "failures": user.failed_logins},
    )
    if user.failed_logins < settings.login_max_failures:
        return False
    user.locked_until = now + timedelta(minutes=settings.login_lock_minutes)
    # The count starts again after the lock, so that one more mistake after the lock
    # expires does not lock again at once.
    user.failed_logins = 0
    audit.record(
        session, "anwang.auth.account.locked", subject=user.username,
        jurisdiction=user.jurisdiction_code,
        data={"until": user.locked_until.isoformat(), "ip": ip,
              "after_failures": settings.login_max_failures},
    )
    return True


def _locked_error(user: User) -> LoginOutcome:
    assert user.locked_until is not None
    until = user.locked_until.strftime("%Y-%m-%d %H:%M:%S UTC")
    return _refuse(
        "anwang.auth.account_locked",
        f"Too many failed logins: the account is locked until {until}.",
    )


def authenticate(
    session: Session,
    *,
    settings: Settings,
    username: str,
    password: str,
    totp_code: str | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> LoginOutcome:
    """Check a login attempt and record its result; never raises for a refusal.

    Refusals (``outcome.error.code``):

    * ``anwang.auth.invalid_credentials`` — unknown user, wrong password or inactive
      account, all with one message and similar timing (an argon2 verification always
      runs). Counts as a failure for an existing account.
    * ``anwang.auth.account_locked`` — ``settings.login_max_failures`` failures in a row
      lock the account for ``settings.login_lock_minutes``; while locked even the right
      password is refused (and not checked).
    * ``anwang.auth.mfa_required`` — the password was right, the account has TOTP, no
      code was given. Not a failure: it is the first step of a two-step form.
    * ``anwang.auth.mfa_invalid`` — wrong or replayed code (each 30-second step is
      accepted once). Counts as a failure.
    * ``anwang.auth.mfa_enrolment_required`` — MFA is enforced for the user's role and
      the user has not enrolled TOTP.

    Every refusal except ``mfa_required`` is audited as ``anwang.auth.login.failed``
    (subject: the username tried; data: the reason); a lock as
    ``anwang.auth.account.locked``; success as ``anwang.auth.login.succeeded``.
    The caller must commit before raising ``outcome.error``.
    """
    now = _now(now)
    ip = ip[:64] if ip else None
    user = session.scalar(
        select(User).where(User.username == username).with_for_update()
    )
    if user is None:
        _burn_verify(password)
        audit.record(
            session, "anwang.auth.login.failed", subject=username[:200],
            data={"reason": "unknown_user", "ip": ip},
        )
        return _refuse("anwang.auth.invalid_credentials", INVALID_CREDENTIALS)

    if user.locked_until is not None and user.locked_until > now:
        audit.record(
            session, "anwang.auth.login.failed", subject=user.username,
            jurisdiction=user.jurisdiction_code,
            data={"reason": "locked", "ip": ip},
        )
        return _locked_error(user)

    if not verify_password(user.password_hash, password):
        if _record_failure(session, settings=settings, user=user, reason="bad_password",
                           ip=ip, now=now):
            return _locked_error(user)
        return _refuse("anwang.auth.invalid_credentials", INVALID_CREDENTIALS)

    if not user.active:
        audit.record(
            session, "anwang.auth.login.failed", subject=user.username,
            jurisdiction=user.jurisdiction_code,
            data={"reason": "inactive", "ip": ip},
        )
        return _refuse("anwang.auth.invalid_credentials", INVALID_CREDENTIALS)

    if user.totp_enabled:
        if not totp_code:
            return _refuse(
                "anwang.auth.mfa_required",
                "Enter the six-digit code from your authenticator app.",
            )
        step = _totp_step(user, totp_code, now)
        replayed = step is not None and user.totp_last_step is not None and (
            step <= user.totp_last_step
        )
        if step is None or replayed:
            reason = "mfa_replayed" if replayed else "mfa_invalid"
            if _record_failure(session, settings=settings, user=user, reason=reason,
                               ip=ip, now=now):
                return _locked_error(user)
            return _refuse(
                "anwang.auth.mfa_invalid",
                "The one-time code is not valid or has already been used.",
            )
        user.totp_last_step = step
    elif settings.mfa_enforced and user.role in MFA_ROLES:
        audit.record(
            session, "anwang.auth.login.failed", subject=user.username,
            jurisdiction=user.jurisdiction_code,
            data={"reason": "mfa_enrolment_required", "ip": ip},
        )
        return _refuse(
            "anwang.auth.mfa_enrolment_required",
            f"The role {user.role} must sign in with a one-time code: enrol an "
            "authenticator app first.",
            user=user,
        )

    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    audit.record(
        session, "anwang.auth.login.succeeded", actor=user.username, actor_role=user.role,
        subject=user.username, jurisdiction=user.jurisdiction_code,
        data={"ip": ip, "mfa": bool(user.totp_enabled)},
    )
    return LoginOutcome(user=user)


# --- sessions -----------------------------------------------------------------------


def start_session(
    session: Session,
    *,
    user: User,
    kind: SessionKind,
    ip: str | None = None,
    now: datetime | None = None,
) -> tuple[str, AuthSession]:
    """Open a server-side session; returns the token (shown once) and the row.

    Only the token's SHA-256 is stored. The session's CSRF token is random and
    independent of the session token.
    """
    if kind not in ("web", "api"):
        raise ValidationFailed.on("kind", "must be 'web' or 'api'")
    now = _now(now)
    token = secrets.token_urlsafe(32)
    auth = AuthSession(
        token_hash=_sha256(token),
        kind=kind,
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        ip=ip[:64] if ip else None,
    )
    session.add(auth)
    session.flush()
    return token, auth


def _end(auth: AuthSession, reason: str, now: datetime) -> None:
    auth.ended_at = now
    auth.ended_reason = reason[:20]


def resolve_session(
    session: Session,
    *,
    token: str,
    kind: SessionKind,
    settings: Settings,
    now: datetime | None = None,
) -> tuple[User, AuthSession]:
    """The user and session that ``token`` stands for.

    Refuses (``NotAuthenticated``) an unknown token or one of the other kind
    (``anwang.auth.not_authenticated``), an ended session (``anwang.auth.session_ended``),
    and a session idle longer than ``settings.session_idle_minutes`` or older than
    ``settings.session_absolute_hours`` (``anwang.auth.session_expired``). An expired
    session is marked ended in the caller's transaction *before* the error is raised;
    callers that want the mark kept commit before re-raising (``deps`` does). Marking is
    a courtesy: an expired session is refused on every later attempt anyway.

    ``last_seen_at`` is written at most every :data:`SESSION_TOUCH_INTERVAL`.
    """
    now = _now(now)
    auth = session.scalar(
        select(AuthSession).where(AuthSession.token_hash == _sha256(token))
    )
    if auth is None or auth.kind != kind:
        raise NotAuthenticated("The session is not recognised; sign in again.")
    if auth.ended_at is not None:
        raise NotAuthenticated("The session has ended; sign in again.",
                               code="anwang.auth.session_ended")
    idle = now - auth.last_seen_at > timedelta(minutes=settings.session_idle_minutes)
    old = now - auth.created_at > timedelta(hours=settings.session_absolute_hours)
    if idle or old:
        _end(auth, "idle" if idle else "absolute", now)
        session.flush()
        raise NotAuthenticated("The session has expired; sign in again.",
                               code="anwang.auth.session_expired")
    user = session.get(User, auth.user_id)
    if user is None or not user.active:
        _end(auth, "deactivated", now)
        session.flush()
        raise NotAuthenticated("The session has ended; sign in again.",
                               code="anwang.auth.session_ended")
    if now - auth.last_seen_at >= SESSION_TOUCH_INTERVAL:
        auth.last_seen_at = now
        session.flush()
    return user, auth


def end_session(
    session: Session,
    *,
    session_id: int,
    reason: str = "logout",
    now: datetime | None = None,
) -> AuthSession:
    """End a session server-side (its token is refused from now on). Audited as
    ``anwang.auth.logout``. Ending an ended session changes nothing."""
    auth = session.get(AuthSession, session_id)
    if auth is None:
        raise NotFound("no such session", code="anwang.auth.session_not_found")
    if auth.ended_at is not None:
        return auth
    now = _now(now)
    _end(auth, reason, now)
    user = session.get(User, auth.user_id)
    audit.record(
        session, "anwang.auth.logout",
        actor=user.username if user else None, actor_role=user.role if user else None,
        subject=user.username if user else None,
        jurisdiction=user.jurisdiction_code if user else None,
        data={"session": auth.id, "kind": auth.kind, "reason": reason},
    )
    return auth


def end_user_sessions(
    session: Session, *, user: User, reason: str, now: datetime | None = None
) -> int:
    """End every open session of ``user``; returns how many were open."""
    result = session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.ended_at.is_(None))
        .values(ended_at=_now(now), ended_reason=reason[:20])
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- API keys -----------------------------------------------------------------------

_APIKEY = re.compile(r"^ak_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")
_APIKEY_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


def create_api_key(
    session: Session,
    *,
    name: str,
    role: Role | str,
    jurisdiction_code: str | None = None,
    actor: str | None = None,
    actor_role: str | None = None,
) -> tuple[str, ApiKey]:
    """Issue a key ``ak_<8 hex prefix>_<secret>``; returns it (shown once) and the row.

    The prefix identifies the key in lists and logs; only the SHA-256 of the whole key
    is stored. Roles are limited to :data:`APIKEY_ROLES`.
    """
    name = name.strip()
    if not _APIKEY_NAME.fullmatch(name):
        raise ValidationFailed.on("name", "1 to 100 printable characters")
    parsed = _parse_role(role, APIKEY_ROLES, "an API key")
    _check_jurisdiction_exists(session, jurisdiction_code)
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(f"an API key named {name!r} already exists",
                       code="anwang.auth.apikey_name_taken")
    while True:
        prefix = secrets.token_hex(4)
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    key = f"ak_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name,
        role=str(parsed),
        jurisdiction_code=jurisdiction_code,
        prefix=prefix,
        key_hash=_sha256(key),
        created_by=actor[:64] if actor else None,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(f"an API key named {name!r} already exists",
                       code="anwang.auth.apikey_name_taken") from None
    audit.record(
        session, "anwang.auth.apikey.created", actor=actor, actor_role=actor_role,
        subject=name, jurisdiction=jurisdiction_code,
        data={"id": row.id, "prefix": prefix, "role": str(parsed)},
    )
    return key, row


def resolve_api_key(session: Session, *, key: str, now: datetime | None = None,
                    touch: bool = True) -> ApiKey:
    """The active key that ``key`` is. Unknown, malformed or revoked → NotAuthenticated.
    ``last_used_at`` is written at most every :data:`APIKEY_TOUCH_INTERVAL` — not at
    all with ``touch=False`` (a read-only unit of work; see :func:`api_key_due_touch`)."""
    m = _APIKEY.fullmatch(key)
    row = (
        session.scalar(select(ApiKey).where(ApiKey.prefix == m.group(1))) if m else None
    )
    if row is None or not hmac.compare_digest(row.key_hash, _sha256(key)):
        raise NotAuthenticated("The API key is not valid.", code="anwang.auth.invalid_api_key")
    if row.revoked_at is not None:
        raise NotAuthenticated("The API key has been revoked.",
                               code="anwang.auth.apikey_revoked")
    now = _now(now)
    if touch and api_key_due_touch(row, now):
        row.last_used_at = now
        session.flush()
    return row


def api_key_due_touch(row: ApiKey, now: datetime) -> bool:
    """Whether the key's ``last_used_at`` is older than :data:`APIKEY_TOUCH_INTERVAL`."""
    return row.last_used_at is None or now - row.last_used_at >= APIKEY_TOUCH_INTERVAL


def touch_api_key(session: Session, *, key_id: int, now: datetime) -> None:
    """Move the key's ``last_used_at`` to ``now`` (never back)."""
    session.execute(
        update(ApiKey).where(ApiKey.id == key_id,
                             or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now))
        .values(last_used_at=now))


def list_api_keys(session: Session, *, within: Scope | None = None) -> Sequence[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.id)
    if within is not None:
        stmt = stmt.where(within.clause(ApiKey.jurisdiction_code))
    return session.scalars(stmt).all()


def get_api_key(session: Session, *, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id}", code="anwang.auth.apikey_not_found")
    return row


def revoke_api_key(
    session: Session,
    *,
    key_id: int,
    actor: str | None = None,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> ApiKey:
    """Revoke a key for good. Revoking a revoked key changes nothing."""
    row = get_api_key(session, key_id=key_id)
    if row.revoked_at is None:
        row.revoked_at = _now(now)
        audit.record(
            session, "anwang.auth.apikey.revoked", actor=actor, actor_role=actor_role,
            subject=row.name, jurisdiction=row.jurisdiction_code,
            data={"id": row.id, "prefix": row.prefix},
        )
    return row


# --- TOTP enrolment -----------------------------------------------------------------


def begin_totp(session: Session, *, user: User) -> str:
    """Give ``user`` a fresh TOTP secret (not yet in force) and return the
    ``otpauth://`` provisioning URI to show as a QR code. :func:`confirm_totp` with a
    code from the app puts it in force."""
    if user.totp_enabled:
        raise Conflict("TOTP is already enabled; disable it first",
                       code="anwang.auth.totp_already_enabled")
    user.totp_secret = pyotp.random_base32()
    user.totp_last_step = None
    audit.record(
        session, "anwang.auth.totp.enrolment_started", actor=user.username,
        actor_role=user.role, subject=user.username, jurisdiction=user.jurisdiction_code,
    )
    return pyotp.TOTP(user.totp_secret).provisioning_uri(
        name=user.username, issuer_name=TOTP_ISSUER
    )


def confirm_totp(
    session: Session, *, user: User, code: str, now: datetime | None = None
) -> User:
    """Enable TOTP once the user proves their app holds the secret."""
    if user.totp_enabled:
        raise Conflict("TOTP is already enabled", code="anwang.auth.totp_already_enabled")
    if not user.totp_secret:
        raise Conflict("no TOTP enrolment is in progress", code="anwang.auth.totp_not_started")
    step = _totp_step(user, code, _now(now))
    if step is None:
        raise ValidationFailed.on("code", "the code does not match; check the device clock",
                                  code="anwang.auth.mfa_invalid")
    user.totp_enabled = True
    user.totp_last_step = step
    audit.record(
        session, "anwang.auth.totp.enabled", actor=user.username, actor_role=user.role,
        subject=user.username, jurisdiction=user.jurisdiction_code,
    )
    return user


def disable_totp(
    session: Session, *, user: User, actor: str | None = None, actor_role: str | None = None
) -> User:
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_step = None
    audit.record(
        session, "anwang.auth.totp.disabled", actor=actor or user.username,
        actor_role=actor_role or user.role, subject=user.username,
        jurisdiction=user.jurisdiction_code,
    )
    return user


# --- jurisdictions ------------------------------------------------------------------

#: Levels from the top of the tree down. A parent's level is above its child's.
LEVELS = ("city", "district", "station", "grid")
_LEVEL_RANK = {level: i for i, level in enumerate(LEVELS)}
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
LOADED_ACTION = "anwang.auth.jurisdictions.loaded"


@dataclass(frozen=True)
class _Feature:
    index: int
    code: str
    level: str
    parent: str | None
    name: str
    name_en: str | None
    geometry: BaseGeometry
    point: tuple[float, float] | None  # (lon, lat)


def _read_feature(i: int, feature: Any, errors: list[FieldError]) -> _Feature | None:
    where = f"features[{i}]"
    before = len(errors)

    def err(field: str, reason: str) -> None:
        errors.append(FieldError(f"{where}.{field}" if field else where, reason))

    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        err("", "must be a GeoJSON Feature")
        return None
    props = feature.get("properties")
    if not isinstance(props, dict):
        err("properties", "must be an object")
        return None
    code = props.get("code")
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        err("properties.code", "1 to 40 letters, digits, '_', '.' or '-'")
    level = props.get("level")
    if level not in _LEVEL_RANK:
        err("properties.level", f"one of {', '.join(LEVELS)}")
    parent = props.get("parent")
    if parent is not None and not isinstance(parent, str):
        err("properties.parent", "must be a code or null")
    name = props.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 120:
        err("properties.name", "a name of 1 to 120 characters is required")
    name_en = props.get("name_en")
    if name_en is not None and (not isinstance(name_en, str) or len(name_en) > 120):
        err("properties.name_en", "at most 120 characters")
    point: tuple[float, float] | None = None
    sp = props.get("station_point")
    if sp is not None:
        if (
            isinstance(sp, list | tuple) and len(sp) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in sp)
            and -180 <= sp[0] <= 180 and -90 <= sp[1] <= 90
        ):
            point = (float(sp[0]), float(sp[1]))
        else:
            err("properties.station_point", "must be [longitude, latitude]")
    geom: BaseGeometry | None = None
    raw = feature.get("geometry")
    if not isinstance(raw, dict) or raw.get("type") not in ("Polygon", "MultiPolygon"):
        err("geometry", "must be a Polygon or MultiPolygon")
    else:
        try:
            geom = shape(raw)
        except Exception as exc:  # noqa: BLE001 - shapely raises several kinds
            err("geometry", f"cannot be read: {exc}")
        else:
            if geom.is_empty:
                err("geometry", "is empty")
            elif not geom.is_valid:
                err("geometry", f"is not valid: {shapely.is_valid_reason(geom)}")
            else:
                minx, miny, maxx, maxy = geom.bounds
                if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
                    err("geometry", "coordinates must be [longitude, latitude] in degrees")
    if len(errors) > before or geom is None:
        return None
    assert isinstance(code, str) and isinstance(level, str) and isinstance(name, str)
    return _Feature(i, code, level, parent, name.strip(), name_en, geom, point)


def _check_tree(
    session: Session, features: list[_Feature], errors: list[FieldError]
) -> None:
    in_file = {f.code: f for f in features}
    missing = {f.parent for f in features if f.parent and f.parent not in in_file}
    in_db: dict[str, str] = {}
    if missing:
        in_db = dict(
            session.execute(
                select(Jurisdiction.code, Jurisdiction.level).where(
                    Jurisdiction.code.in_(missing)
                )
            ).all()
        )
    for f in features:
        field = f"features[{f.index}].properties.parent"
        if f.level == "city":
            if f.parent is not None:
                errors.append(FieldError(field, "a city has no parent"))
            continue
        if f.parent is None:
            errors.append(FieldError(field, f"a {f.level} needs a parent"))
            continue
        parent_level = in_file[f.parent].level if f.parent in in_file else in_db.get(f.parent)
        if parent_level is None:
            errors.append(FieldError(field, f"no jurisdiction has the code {f.parent!r}"))
            continue
        if not f.code.startswith(f.parent) or f.code == f.parent:
            errors.append(FieldError(
                f"features[{f.index}].properties.code",
                f"{f.code!r} must start with its parent's code {f.parent!r} and be longer",
            ))
        if _LEVEL_RANK[parent_level] >= _LEVEL_RANK[f.level]:
            errors.append(FieldError(
                field, f"a {f.level} cannot lie inside a {parent_level}; "
                f"levels run {' > '.join(LEVELS)}",
            ))
    # Jurisdictions already stored below a reloaded one must still sit below it.
    reloaded = {f.code: f for f in features}
    if reloaded:
        children = session.execute(
            select(Jurisdiction.code, Jurisdiction.level, Jurisdiction.parent_code).where(
                Jurisdiction.parent_code.in_(list(reloaded))
            )
        ).all()
        for code, level, parent in children:
            if code in in_file or parent is None:
                continue
            f = reloaded[parent]
            if level in _LEVEL_RANK and _LEVEL_RANK[level] <= _LEVEL_RANK[f.level]:
                errors.append(FieldError(
                    f"features[{f.index}].properties.level",
                    f"the stored {level} {code!r} lies inside it; it cannot become a {f.level}",
                ))


def load_jurisdictions(
    session: Session,
    *,
    feature_collection: dict[str, Any],
    actor: str | None = None,
    actor_role: str | None = None,
) -> int:
    """Insert or update the jurisdictions of a GeoJSON FeatureCollection; returns how
    many features were loaded.

    Each feature carries ``properties``: ``code``, ``level`` (``city``, ``district``,
    ``station`` or ``grid``), ``parent`` (null only for a city), ``name``, optional
    ``name_en`` and ``station_point`` ``[lon, lat]``; its geometry is a valid Polygon or
    MultiPolygon in lon/lat. The tree must hold: a parent exists (in the file or
    already stored), a child's code starts with its parent's, and a parent's level is
    above its child's. Any problem refuses the whole file (nothing is written) with a
    :class:`ValidationFailed` whose errors name ``features[i].<field>``.

    Loading the same file twice leaves the same rows. Audited once.
    """
    if not isinstance(feature_collection, dict) or (
        feature_collection.get("type") != "FeatureCollection"
    ):
        raise ValidationFailed.on("type", "must be a GeoJSON FeatureCollection")
    raw = feature_collection.get("features")
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed.on("features", "must be a non-empty list of features")
    errors: list[FieldError] = []
    features = [f for i, item in enumerate(raw) if (f := _read_feature(i, item, errors))]
    seen: dict[str, int] = {}
    for f in features:
        if f.code in seen:
            errors.append(FieldError(
                f"features[{f.index}].properties.code",
                f"{f.code!r} already appears at features[{seen[f.code]}]",
            ))
        seen.setdefault(f.code, f.index)
    if not errors:
        _check_tree(session, features, errors)
    if errors:
        shown = errors[:50]
        raise ValidationFailed(
            "the jurisdictions were not loaded: "
            + "; ".join(f"{e.field}: {e.reason}" for e in shown[:3])
            + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""),
            errors=shown,
            code="anwang.auth.jurisdictions_invalid",
        )

    existing = {
        j.code: j
        for j in session.scalars(
            select(Jurisdiction).where(Jurisdiction.code.in_([f.code for f in features]))
        )
    }
    inserted = 0
    # Parents before children: the self-referencing foreign key is checked row by row.
    for rank in range(len(LEVELS)):
        batch = [f for f in features if _LEVEL_RANK[f.level] == rank]
        for f in batch:
            row = existing.get(f.code)
            if row is None:
                row = Jurisdiction(code=f.code)
                session.add(row)
                inserted += 1
            centroid = f.geometry.centroid
            row.level = f.level
            row.parent_code = f.parent
            row.name = f.name
            row.name_en = f.name_en
            row.geometry = json.dumps(
                shapely.geometry.mapping(f.geometry), separators=(",", ":")
            )
            row.centroid_lon = round(centroid.x, 7)
            row.centroid_lat = round(centroid.y, 7)
            row.point_lon = f.point[0] if f.point else None
            row.point_lat = f.point[1] if f.point else None
        if batch:
            session.flush()
    audit.record(
        session, LOADED_ACTION, actor=actor, actor_role=actor_role,
        result_count=len(features),
        data={"count": len(features), "inserted": inserted,
              "updated": len(features) - inserted},
    )
    return len(features)


def list_jurisdictions(
    session: Session, *, level: str | None = None, within: Scope | None = None
) -> Sequence[Jurisdiction]:
    """Jurisdictions inside ``within`` (the scope's own jurisdiction included), by code."""
    if level is not None and level not in _LEVEL_RANK:
        raise ValidationFailed.on("level", f"one of {', '.join(LEVELS)}")
    stmt = select(Jurisdiction).order_by(Jurisdiction.code)
    if level is not None:
        stmt = stmt.where(Jurisdiction.level == level)
    if within is not None:
        stmt = stmt.where(within.clause(Jurisdiction.code))
    return session.scalars(stmt).all()


def get_jurisdiction(session: Session, *, code: str) -> Jurisdiction:
    row = session.get(Jurisdiction, code)
    if row is None:
        raise NotFound(f"no jurisdiction has the code {code!r}",
                       code="anwang.auth.jurisdiction_not_found")
    return row


class JurisdictionIndex:
    """Point → finest jurisdiction, over an STRtree of the jurisdictions' polygons.

    Pure and immutable once built; safe to share between threads.
    """

    def __init__(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """``rows``: (code, level, GeoJSON geometry text)."""
        self._codes = [code for code, _, _ in rows]
        self._ranks = [_LEVEL_RANK.get(level, -1) for _, level, _ in rows]
        geoms = [shape(json.loads(g)) for _, _, g in rows]
        self._tree = shapely.STRtree(geoms)

    def __len__(self) -> int:
        return len(self._codes)

    def locate(self, lon: float, lat: float) -> str | None:
        """The code of the deepest jurisdiction containing the point (a point on a
        shared border goes to the larger code, so the answer is deterministic), or
        None outside every jurisdiction."""
        if not (math.isfinite(lon) and math.isfinite(lat)):
            return None
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        best = max(hits, key=lambda i: (self._ranks[i], len(self._codes[i]), self._codes[i]))
        return self._codes[int(best)]


_index_lock = threading.Lock()
_index_cache: dict[str, tuple[tuple[int, str] | None, JurisdictionIndex]] = {}


def _index_version(session: Session) -> tuple[int, str] | None:
    """The last load of the tree, from the audit trail: every load is audited in the
    transaction that writes it, so this changes exactly when the tree does — across
    processes too."""
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash)
        .where(AuditEntry.action == LOADED_ACTION)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else None


def get_jurisdiction_index(session: Session) -> JurisdictionIndex:
    """The index for the session's database, rebuilt only after a load (one small query
    per call checks the version). Hold on to the result for a batch of points."""
    bind = session.get_bind()
    key = bind.url.render_as_string(hide_password=True) if hasattr(bind, "url") else str(id(bind))
    version = _index_version(session)
    with _index_lock:
        cached = _index_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
    rows = session.execute(
        select(Jurisdiction.code, Jurisdiction.level, Jurisdiction.geometry)
    ).all()
    index = JurisdictionIndex(rows)
    with _index_lock:
        _index_cache[key] = (version, index)
    return index


def locate(session: Session, *, lon: float, lat: float) -> str | None:
    """The finest jurisdiction code containing (lon, lat), or None."""
    return get_jurisdiction_index(session).locate(lon, lat)
