"""Logins: credentials, lockout, TOTP, MFA enforcement, and their audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from anwang.auth import service
from anwang.auth.models import User
from anwang.core.audit import AuditEntry
from anwang.core.db import Database
from anwang.core.errors import ValidationFailed
from anwang.settings import Settings

if TYPE_CHECKING:
    from tests.integration.auth.conftest import AuthKit

T0 = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)


def attempt(
    db: Database, settings: Settings, username: str, password: str, *,
    totp_code: str | None = None, now: datetime = T0,
) -> service.LoginOutcome:
    """One attempt in its own committed unit of work, as the edge does it."""
    with db.unit_of_work() as s:
        outcome = service.authenticate(
            s, settings=settings, username=username, password=password,
            totp_code=totp_code, ip="10.0.0.9", now=now,
        )
    return outcome


def invalid_code(totp: pyotp.TOTP, at: datetime) -> str:
    """A six-digit code that no step of the ±1 window around ``at`` accepts."""
    valid = {totp.at(at + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def code_of(outcome: service.LoginOutcome) -> str | None:
    return outcome.error.code if outcome.error else None


def test_login_succeeds_and_is_audited(db: Database, settings: Settings, kit: AuthKit) -> None:
    kit.add_user("wang.wei", "dispatcher")
    outcome = attempt(db, settings, "wang.wei", kit.PASSWORD)
    assert outcome.ok and outcome.user is not None and outcome.user.username == "wang.wei"
    assert kit.user("wang.wei").last_login_at == T0
    assert kit.audit_actions("wang.wei")[-1] == "anwang.auth.login.succeeded"
    assert kit.audit_ok()


def test_unknown_user_and_wrong_password_are_refused_alike(
    db: Database, settings: Settings, kit: AuthKit
) -> None:
    kit.add_user("li.na")
    wrong = attempt(db, settings, "li.na", "not the password")
    unknown = attempt(db, settings, "nobody", "not the password")
    assert wrong.error is not None and unknown.error is not None
    assert wrong.error.code == unknown.error.code == "anwang.auth.invalid_credentials"
    assert wrong.error.detail == unknown.error.detail
    with db.unit_of_work() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "anwang.auth.login.failed")
            .order_by(AuditEntry.seq)
        ).all()
        assert [(r.subject, r.data["reason"]) for r in rows if r.data] == [
            ("li.na", "bad_password"), ("nobody", "unknown_user"),
        ]


def test_identical_401_bodies_over_http(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("li.na")
    a = client.post("/api/v1/auth/token", json={"username": "li.na", "password": "x" * 12})
    b = client.post("/api/v1/auth/token", json={"username": "zhou.x", "password": "x" * 12})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()
    assert a.json()["code"] == "anwang.auth.invalid_credentials"
    assert a.headers["content-type"].startswith("application/problem+json")


def test_five_failures_lock_then_unlock_after_the_lock_time(
    db: Database, settings: Settings, kit: AuthKit
) -> None:
    kit.add_user("zhao.lei")
    codes = [
        code_of(attempt(db, settings, "zhao.lei", f"wrong-guess-{i}",
                        now=T0 + timedelta(seconds=i)))
        for i in range(5)
    ]
    assert codes == ["anwang.auth.invalid_credentials"] * 4 + ["anwang.auth.account_locked"]
    locked_until = kit.user("zhao.lei").locked_until
    assert locked_until == T0 + timedelta(seconds=4, minutes=settings.login_lock_minutes)

    # The right password does not help while locked, and the message says until when.
    sixth = attempt(db, settings, "zhao.lei", kit.PASSWORD, now=T0 + timedelta(minutes=9))
    assert code_of(sixth) == "anwang.auth.account_locked"
    assert sixth.error is not None and "08:10:04" in sixth.error.detail

    assert kit.audit_actions("zhao.lei")[1:] == (
        ["anwang.auth.login.failed"] * 5
        + ["anwang.auth.account.locked", "anwang.auth.login.failed"]
    )
    assert kit.audit_ok()

    later = attempt(db, settings, "zhao.lei", kit.PASSWORD,
                    now=T0 + timedelta(minutes=10, seconds=5))
    assert later.ok
    user = kit.user("zhao.lei")
    assert user.failed_logins == 0 and user.locked_until is None


def test_success_resets_the_failure_counter(db: Database, settings: Settings, kit: AuthKit) -> None:
    kit.add_user("sun.li")
    for _ in range(4):
        attempt(db, settings, "sun.li", "wrong password!")
    assert kit.user("sun.li").failed_logins == 4
    assert attempt(db, settings, "sun.li", kit.PASSWORD).ok
    for _ in range(4):
        assert code_of(attempt(db, settings, "sun.li", "wrong password!")) == (
            "anwang.auth.invalid_credentials"
        )
    assert attempt(db, settings, "sun.li", kit.PASSWORD).ok


def test_lockout_survives_failed_http_requests(
    client: TestClient, db: Database, kit: AuthKit
) -> None:
    """Each refused request rolls nothing back: the fifth failure locks the account."""
    kit.add_user("qian.bo")
    for _ in range(5):
        r = client.post("/api/v1/auth/token",
                        json={"username": "qian.bo", "password": "wrong password!"})
        assert r.status_code == 401
    r = client.post("/api/v1/auth/token", json={"username": "qian.bo", "password": kit.PASSWORD})
    assert r.status_code == 401
    assert r.json()["code"] == "anwang.auth.account_locked"
    assert "locked until" in r.json()["detail"]
    assert kit.audit_actions("qian.bo").count("anwang.auth.account.locked") == 1

    # Ten minutes later (simulated by moving the lock into the past) it opens again.
    with db.unit_of_work() as s:
        s.execute(update(User).where(User.username == "qian.bo")
                  .values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    kit.token_for(client, "qian.bo")
    assert kit.audit_ok()


def test_inactive_user_is_refused_like_a_wrong_password(
    db: Database, settings: Settings, kit: AuthKit
) -> None:
    kit.add_user("old.hand")
    kit.add_user("boss", "admin")
    with db.unit_of_work() as s:
        service.deactivate_user(s, username="old.hand", actor="boss")
    outcome = attempt(db, settings, "old.hand", kit.PASSWORD)
    assert code_of(outcome) == "anwang.auth.invalid_credentials"


# --- TOTP ----------------------------------------------------------------------------


def test_totp_required_invalid_and_replayed(db: Database, settings: Settings, kit: AuthKit) -> None:
    kit.add_user("analyst.a", "analyst")
    secret = kit.enrol_totp("analyst.a", at=T0)
    totp = pyotp.TOTP(secret)
    now = T0 + timedelta(minutes=5)

    missing = attempt(db, settings, "analyst.a", kit.PASSWORD, now=now)
    assert code_of(missing) == "anwang.auth.mfa_required"
    assert kit.user("analyst.a").failed_logins == 0

    good = totp.at(now)
    bad = invalid_code(totp, now)
    wrong = attempt(db, settings, "analyst.a", kit.PASSWORD, totp_code=bad, now=now)
    assert code_of(wrong) == "anwang.auth.mfa_invalid"
    assert kit.user("analyst.a").failed_logins == 1

    assert attempt(db, settings, "analyst.a", kit.PASSWORD, totp_code=good, now=now).ok
    # The same code again, still inside its 30-second step: a replay.
    replay = attempt(db, settings, "analyst.a", kit.PASSWORD, totp_code=good,
                     now=now + timedelta(seconds=10))
    assert code_of(replay) == "anwang.auth.mfa_invalid"
    # The previous step's code (accepted by the ±1 window) is older than the last used.
    previous = totp.at(now - timedelta(seconds=30))
    assert code_of(attempt(db, settings, "analyst.a", kit.PASSWORD, totp_code=previous,
                           now=now + timedelta(seconds=10))) == "anwang.auth.mfa_invalid"
    # The next step's code works.
    later = now + timedelta(seconds=30)
    assert attempt(db, settings, "analyst.a", kit.PASSWORD, totp_code=totp.at(later),
                   now=later).ok


def test_totp_codes_outside_the_window_are_refused(
    db: Database, settings: Settings, kit: AuthKit
) -> None:
    kit.add_user("commander.c", "commander")
    secret = kit.enrol_totp("commander.c", at=T0)
    now = T0 + timedelta(hours=1)
    stale = pyotp.TOTP(secret).at(now - timedelta(seconds=90))
    assert code_of(attempt(db, settings, "commander.c", kit.PASSWORD, totp_code=stale,
                           now=now)) == "anwang.auth.mfa_invalid"
    early = pyotp.TOTP(secret).at(now + timedelta(seconds=30))
    assert attempt(db, settings, "commander.c", kit.PASSWORD, totp_code=early, now=now).ok


def test_wrong_password_with_totp_is_a_plain_failure(
    db: Database, settings: Settings, kit: AuthKit
) -> None:
    kit.add_user("analyst.b", "analyst")
    secret = kit.enrol_totp("analyst.b", at=T0)
    outcome = attempt(db, settings, "analyst.b", "wrong password!",
                      totp_code=pyotp.TOTP(secret).at(T0 + timedelta(minutes=2)),
                      now=T0 + timedelta(minutes=2))
    assert code_of(outcome) == "anwang.auth.invalid_credentials"


def test_mfa_enforced_refuses_an_analyst_without_totp(
    db: Database, settings: Settings, kit: AuthKit
) -> None:
    enforced = settings.model_copy(update={"mfa_required": True})
    assert enforced.mfa_enforced
    kit.add_user("analyst.c", "analyst")
    kit.add_user("officer.c", "officer")
    outcome = attempt(db, enforced, "analyst.c", kit.PASSWORD)
    assert code_of(outcome) == "anwang.auth.mfa_enrolment_required"
    assert outcome.user is not None  # the password was right: a form may offer enrolment
    assert kit.audit_actions("analyst.c")[-1] == "anwang.auth.login.failed"
    # Roles that cannot search reads or edit the watch list are not affected,
    assert attempt(db, enforced, "officer.c", kit.PASSWORD).ok
    # and without enforcement the analyst gets in.
    assert attempt(db, settings, "analyst.c", kit.PASSWORD).ok
    # Once enrolled, the analyst signs in with a code under enforcement too.
    secret = kit.enrol_totp("analyst.c", at=T0)
    later = T0 + timedelta(minutes=1)
    assert attempt(db, enforced, "analyst.c", kit.PASSWORD,
                   totp_code=pyotp.TOTP(secret).at(later), now=later).ok


def test_totp_enrolment_needs_a_matching_code(db: Database, kit: AuthKit) -> None:
    kit.add_user("officer.t")
    with db.unit_of_work() as s:
        user = service.get_user(s, username="officer.t")
        uri = service.begin_totp(s, user=user)
        assert uri.startswith("otpauth://totp/") and "issuer=anwang" in uri
        wrong = invalid_code(pyotp.TOTP(pyotp.parse_uri(uri).secret), T0)
        with pytest.raises(ValidationFailed) as exc:
            service.confirm_totp(s, user=user, code=wrong, now=T0)
        assert exc.value.errors[0].field == "code"
        assert not user.totp_enabled
        service.disable_totp(s, user=user)
        assert user.totp_secret is None
    assert "anwang.auth.totp.enrolment_started" in kit.audit_actions("officer.t")
