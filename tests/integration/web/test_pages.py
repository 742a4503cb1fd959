"""The pages through HTTP: sign-in and out, CSRF, who sees which page, the audit view,
the language switch, and the map's JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.auth import service
from anwang.auth.models import AuthSession, User
from anwang.core import audit
from anwang.core.audit import AuditEntry
from anwang.core.db import Database
from anwang.settings import Settings
from anwang.web.pages import AUDIT_PAGE_SIZE

Login = Callable[..., str]
PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}


def test_login_page_renders_in_chinese_by_default(client: TestClient) -> None:
    r = client.get("/login")
    assert r.status_code == 200
    assert r.headers["content-language"] == "zh-CN"
    assert "登录安网" in r.text and 'name="username"' in r.text and 'name="totp"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


def test_login_page_renders_in_english_with_the_lang_cookie(client: TestClient) -> None:
    client.cookies.set("lang", "en")
    r = client.get("/login")
    assert r.headers["content-language"] == "en"
    assert "Sign in to anwang" in r.text and "登录安网" not in r.text


def test_signing_in_sets_the_session_cookie_and_redirects(client: TestClient) -> None:
    r = client.post("/login", data={"username": "west.dispatcher", "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("anwang_session=")
    assert "HttpOnly" in cookie and "Path=/" in cookie and "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # settings.env is test: cookie_secure defaults off
    page = client.get("/dashboard")
    assert page.status_code == 200 and 'id="map"' in page.text and "west.dispatcher" in page.text


def test_secure_cookies_when_configured(settings: Settings, db: Database) -> None:
    from anwang.app import create_app

    from_settings = settings.model_copy(update={"cookie_secure": True})
    with TestClient(create_app(from_settings, db=db)) as c:
        with db.unit_of_work() as s:
            service.create_user(s, username="secure.user", password=PASSWORD, role="officer")
        r = c.post("/login", data={"username": "secure.user", "password": PASSWORD},
                   follow_redirects=False)
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_signing_in_returns_to_a_safe_next_page_only(client: TestClient) -> None:
    r = client.post("/login", data={"username": "the.auditor", "password": PASSWORD,
                                    "next": "/audit?actor=x"}, follow_redirects=False)
    assert r.headers["location"] == "/audit?actor=x"
    client.cookies.clear()
    r = client.post("/login", data={"username": "the.auditor", "password": PASSWORD,
                                    "next": "//evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/audit"


def test_a_wrong_password_shows_the_problem(client: TestClient) -> None:
    r = client.post("/login", data={"username": "west.dispatcher", "password": "not it at all",
                                    "next": "/dashboard"})
    assert r.status_code == 401
    assert 'role="alert"' in r.text and "用户名或密码不正确" in r.text
    assert "anwang.auth.invalid_credentials" in r.text
    assert 'value="west.dispatcher"' in r.text  # the username is kept, the password not
    assert "anwang_session" not in r.headers.get("set-cookie", "")


def test_empty_form_is_refused_without_a_lookup(client: TestClient) -> None:
    r = client.post("/login", data={"username": "", "password": ""})
    assert r.status_code == 400 and "请输入用户名和密码" in r.text


def test_a_locked_account_says_so(client: TestClient, settings: Settings) -> None:
    client.cookies.set("lang", "en")
    for _ in range(settings.login_max_failures):
        client.post("/login", data={"username": "east.dispatcher", "password": "wrong password!"})
    r = client.post("/login", data={"username": "east.dispatcher", "password": PASSWORD})
    assert r.status_code == 401
    assert "Account locked" in r.text and "problem-locked" in r.text
    assert re.search(r"Locked until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r.text)


def test_too_many_attempts_is_429(client: TestClient) -> None:
    statuses = [
        client.post("/login", data={"username": f"nobody{i}", "password": "x" * 12}).status_code
        for i in range(21)
    ]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429
    r = client.post("/login", data={"username": "nobody", "password": "x" * 12})
    assert r.status_code == 429 and "Retry-After" in r.headers and "尝试次数过多" in r.text


def test_a_cross_site_login_form_is_refused(client: TestClient) -> None:
    r = client.post("/login", data={"username": "west.dispatcher", "password": PASSWORD},
                    headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                    follow_redirects=False)
    assert r.status_code == 403 and "anwang_session" not in r.headers.get("set-cookie", "")


def test_logout_ends_the_session(client: TestClient, db: Database, login: Login) -> None:
    csrf = login(client, "west.dispatcher")
    token = client.cookies.get("anwang_session")
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert 'anwang_session=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    with db.unit_of_work() as s:
        ended = s.scalars(select(AuthSession).where(AuthSession.ended_at.is_not(None))).all()
        assert len(ended) == 1 and ended[0].ended_reason == "logout"
    # The old cookie no longer opens anything.
    client.cookies.set("anwang_session", token or "")
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_unsafe_requests_without_the_csrf_token_are_refused(
    client: TestClient, login: Login
) -> None:
    login(client, "west.dispatcher")
    r = client.post("/logout", follow_redirects=False)
    assert r.status_code == 403 and r.json()["code"] == "anwang.auth.csrf_failed"
    r = client.post("/locale", data={"locale": "en", "csrf_token": "forged"},
                    follow_redirects=False)
    assert r.status_code == 403
    # Still signed in.
    assert client.get("/dashboard").status_code == 200


def test_signed_out_pages_redirect_to_login(client: TestClient) -> None:
    for path in ("/dashboard", "/audit"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next=%2F{path[1:]}"
    r = client.get("/", follow_redirects=False)
    assert r.headers["location"] == "/login"


def test_an_auditor_is_sent_from_the_dashboard_to_the_audit_trail(
    client: TestClient, login: Login
) -> None:
    login(client, "the.auditor")
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/audit"
    assert client.get("/", follow_redirects=False).headers["location"] == "/audit"
    page = client.get("/audit")
    assert page.status_code == 200 and "审计日志" in page.text
    assert 'href="/dashboard"' not in page.text
    assert client.get("/api/v1/map/config").status_code == 403


def test_a_dispatcher_may_not_read_the_audit_trail(client: TestClient, login: Login) -> None:
    login(client, "west.dispatcher")
    for r in (client.get("/audit", headers=HTML), client.get("/audit/rows?before_seq=5"),
              client.post("/audit/verify", headers={"X-CSRF-Token": "x"})):
        assert r.status_code == 403
    r = client.get("/audit", headers=HTML)
    assert "无权访问" in r.text and r.headers["content-type"].startswith("text/html")
    assert 'href="/audit"' not in r.text


def _add_entries(db: Database, n: int) -> None:
    with db.unit_of_work() as s:
        for i in range(n):
            audit.record(s, "anwang.test.thing.done", actor="robot", subject=f"thing-{i}",
                         case_ref="CASE-1" if i % 2 else None)


def test_the_audit_view_filters_and_pages_newest_first(
    client: TestClient, db: Database, login: Login
) -> None:
    _add_entries(db, 2 * AUDIT_PAGE_SIZE + 7)
    login(client, "the.auditor")
    first = client.get("/audit", params={"action": "anwang.test", "actor": "robot"})
    seqs = [int(s) for s in re.findall(r'<td class="num" data-label="#">(\d+)</td>', first.text)]
    assert len(seqs) == AUDIT_PAGE_SIZE and seqs == sorted(seqs, reverse=True)
    more = re.search(r'hx-get="([^"]+)"', first.text)
    assert more is not None
    url = more.group(1).replace("&amp;", "&")
    assert f"before_seq={seqs[-1]}" in url and "action=anwang.test" in url

    collected = list(seqs)
    while url:
        part = client.get(url, headers={"HX-Request": "true"})
        assert part.status_code == 200 and "<html" not in part.text
        page = [int(s) for s in re.findall(r'data-label="#">(\d+)</td>', part.text)]
        collected += page
        nxt = re.search(r'hx-get="([^"]+)"', part.text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert len(collected) == 2 * AUDIT_PAGE_SIZE + 7
    assert collected == sorted(set(collected), reverse=True)

    cases = client.get("/audit", params={"case_ref": "CASE-1"})
    rows = re.findall(r'data-label="[^"]*">CASE-1</td>', cases.text)
    assert len(rows) == AUDIT_PAGE_SIZE  # 53 matching entries: one full page first

    # Reading the trail is itself on the trail.
    with db.unit_of_work() as s:
        reads = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "anwang.audit.trail.read").order_by(AuditEntry.seq)).all()
    assert reads and all(e.actor == "the.auditor" for e in reads)
    filtered = [e for e in reads if e.data and e.data.get("action") == "anwang.test"]
    assert filtered and filtered[0].result_count == AUDIT_PAGE_SIZE


def test_the_audit_view_filters_by_date(client: TestClient, db: Database, login: Login) -> None:
    _add_entries(db, 3)
    login(client, "the.auditor")
    today = datetime.now(UTC).date()
    r = client.get("/audit", params={"since": str(today), "until": str(today),
                                     "action": "anwang.test"})
    assert len(re.findall(r'data-label="#">', r.text)) == 3
    tomorrow = today + timedelta(days=1)
    r = client.get("/audit", params={"since": str(tomorrow), "action": "anwang.test"})
    assert "没有符合筛选条件的记录" in r.text
    r = client.get("/audit", params={"since": "31/12/2024"})
    assert r.status_code == 200 and "YYYY-MM-DD" in r.text


def test_verify_chain_on_request(client: TestClient, db: Database, login: Login) -> None:
    csrf = login(client, "the.auditor")
    page = client.get("/audit")
    assert 'hx-post="/audit/verify"' in page.text and "链完整" not in page.text
    r = client.post("/audit/verify", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and "链完整" in r.text and "<html" not in r.text
    with db.unit_of_work() as s:
        s.execute(AuditEntry.__table__.update().where(AuditEntry.seq == 2)
                  .values(subject="tampered"))
    r = client.post("/audit/verify", headers={"X-CSRF-Token": csrf})
    assert "链已损坏" in r.text and "#2" in r.text
    assert client.post("/audit/verify").status_code == 403  # no CSRF token


def test_switching_language_is_kept_on_the_user(
    client: TestClient, db: Database, login: Login
) -> None:
    csrf = login(client, "west.dispatcher")
    r = client.post("/locale", data={"locale": "en", "next": "/dashboard", "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    assert "lang=en" in r.headers["set-cookie"]
    with db.unit_of_work() as s:
        locale = s.scalars(select(User.locale).where(User.username == "west.dispatcher")).one()
    assert locale == "en"
    client.cookies.delete("lang")
    page = client.get("/dashboard")
    assert "Live events" in page.text and page.headers["content-language"] == "en"


def test_switching_language_before_signing_in(client: TestClient) -> None:
    r = client.post("/locale", data={"locale": "en", "next": "/login"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "Sign in to anwang" in client.get("/login").text
    r = client.post("/locale", data={"locale": "fr"}, follow_redirects=False)
    assert r.status_code == 303 and "set-cookie" not in r.headers


def test_map_config_centres_on_the_users_jurisdiction(client: TestClient, login: Login) -> None:
    login(client, "west.dispatcher")
    cfg = client.get("/api/v1/map/config").json()
    assert cfg["tile_url"] == "" and cfg["zoom"] == 12 and cfg["grid_min_zoom"] >= 12
    assert abs(cfg["center"][0] - 31.78) < 1e-6 and abs(cfg["center"][1] - 119.875) < 1e-6
    client.cookies.clear()
    login(client, "city.commander")
    cfg = client.get("/api/v1/map/config").json()
    assert abs(cfg["center"][1] - 119.95) < 1e-6 and cfg["zoom"] == 11


def test_map_config_without_jurisdictions_uses_the_settings(
    settings: Settings, sqlite_db: Database
) -> None:
    from anwang.app import create_app

    with sqlite_db.unit_of_work() as s:
        service.create_user(s, username="lone.officer", password=PASSWORD, role="officer")
    tiles = settings.model_copy(update={
        "tile_url": "https://tiles.example.cn/{z}/{x}/{y}.png", "tile_attribution": "© Example",
        "demo_center_lat": 30.5, "demo_center_lon": 114.3,
    })
    app = create_app(tiles, db=sqlite_db)
    from anwang.web.map_api import router

    if "/api/v1/map/config" not in app.openapi()["paths"]:
        app.include_router(router, prefix="/api/v1")
    with TestClient(app) as c:
        assert c.get("/api/v1/map/config").status_code == 401
        c.post("/login", data={"username": "lone.officer", "password": PASSWORD})
        cfg = c.get("/api/v1/map/config").json()
        assert cfg == {"tile_url": "https://tiles.example.cn/{z}/{x}/{y}.png",
                       "tile_attribution": "© Example", "center": [30.5, 114.3], "zoom": 12,
                       "grid_min_zoom": cfg["grid_min_zoom"]}
        csp = c.get("/dashboard").headers["content-security-policy"]
        assert "https://tiles.example.cn" in csp


def test_map_roads(client: TestClient, settings: Settings, login: Login) -> None:
    assert client.get("/api/v1/map/roads").status_code == 401
    login(client, "west.dispatcher")
    r = client.get("/api/v1/map/roads")
    assert r.status_code == 200 and r.json() == {"type": "FeatureCollection", "features": []}
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"highway": "primary", "name": "人民路"},
         "geometry": {"type": "LineString", "coordinates": [[119.9, 31.75], [120.0, 31.8]]}}]}
    (settings.data_dir / "roads.geojson").write_text(json.dumps(doc, ensure_ascii=False),
                                                     encoding="utf-8")
    r = client.get("/api/v1/map/roads")
    assert r.headers["content-type"].startswith("application/geo+json")
    assert r.json() == doc
