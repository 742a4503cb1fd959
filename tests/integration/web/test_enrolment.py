"""First sign-in of a role that must use TOTP: enrol on the login page, then sign in."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.app import create_app
from anwang.auth import enrolment, service
from anwang.auth.models import User
from anwang.core import audit
from anwang.core.audit import AuditEntry
from anwang.core.db import Database
from anwang.settings import Settings

PASSWORD = "correct horse battery"


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    enforced = settings.model_copy(update={"mfa_required": True})
    with db.unit_of_work() as s:
        service.create_user(s, username="ana", password=PASSWORD, role="analyst")
    with TestClient(create_app(enforced, db=db), base_url="http://testserver") as c:
        yield c


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, name
    return m.group(1)


def _login(client: TestClient, password: str = PASSWORD) -> str:
    r = client.post("/login", data={"username": "ana", "password": password},
                    headers={"origin": "http://testserver"})
    return r.text


def test_enrolment_then_sign_in(client: TestClient, db: Database) -> None:
    html = _login(client)
    assert "enrol" in html and "<svg" in html
    secret = _field(html, "secret")
    ticket = _field(html, "ticket")
    # A wrong code keeps the user on the enrolment page, nothing enabled.
    r = client.post("/login/enrol", data={"username": "ana", "ticket": ticket,
                                          "secret": secret, "totp": "000000"},
                    headers={"origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 422 and "anwang.auth.mfa_invalid" in r.text
    r = client.post("/login/enrol", data={"username": "ana", "ticket": ticket,
                                          "secret": secret, "totp": pyotp.TOTP(secret).now()},
                    headers={"origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 303 and "anwang_session" in r.headers["set-cookie"]
    with db.unit_of_work() as s:
        user = s.scalars(select(User).where(User.username == "ana")).one()
        assert user.totp_enabled
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.subject == "ana")))
        assert "anwang.auth.totp.enabled" in actions
        assert actions[-1] == "anwang.auth.login.succeeded"
        assert audit.verify(s).ok


def test_wrong_password_gets_no_enrolment(client: TestClient) -> None:
    html = _login(client, "not the password")
    assert "<svg" not in html and 'name="ticket"' not in html


def test_forged_or_stale_ticket_is_refused(client: TestClient, settings: Settings) -> None:
    html = _login(client)
    secret = _field(html, "secret")
    forged = enrolment.make_ticket("another-secret-key-123456", username="ana", secret=secret)
    r = client.post("/login/enrol", data={"username": "ana", "ticket": forged, "secret": secret,
                                          "totp": pyotp.TOTP(secret).now()},
                    headers={"origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 401 and "anwang.auth.enrolment_expired" in r.text
    # A second sign-in starts a new secret: the first ticket no longer fits it.
    old_ticket = _field(html, "ticket")
    html2 = _login(client)
    new_secret = _field(html2, "secret")
    r = client.post("/login/enrol", data={"username": "ana", "ticket": old_ticket,
                                          "secret": new_secret,
                                          "totp": pyotp.TOTP(new_secret).now()},
                    headers={"origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 401


def test_ticket_expiry() -> None:
    t = enrolment.make_ticket("k" * 20, username="u", secret="S", now=1000.0)
    assert enrolment.check_ticket("k" * 20, t, username="u", secret="S", now=1000.0 + 599)
    assert not enrolment.check_ticket("k" * 20, t, username="u", secret="S", now=1000.0 + 601)
    assert not enrolment.check_ticket("k" * 20, t, username="v", secret="S", now=1000.0)
    assert not enrolment.check_ticket("k" * 20, t, username="u", secret="T", now=1000.0)
    assert not enrolment.check_ticket("k" * 20, "garbage", username="u", secret="S")
