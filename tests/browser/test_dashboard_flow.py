"""The dashboard flow in a real Chromium against a real server.

Sign in through the form, see the jurisdictions drawn on the map, receive a live event
published on the server's bus, switch to English, sign out (an open dashboard of the same
session then returns to the sign-in page), sign in as the auditor and verify the chain.
Screenshots (desktop 1366x800 and phone 390x844) go to ``/tmp/anwang-shots/``.

Skips when Debian's Chromium is missing — unless ``ANWANG_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from anwang.app import create_app
from anwang.auth import service
from anwang.core.db import Base, Database
from anwang.core.events import SYSTEM_NOTICE, Audience, Event
from anwang.settings import Settings
from tests.browser.kit import (
    DESKTOP,
    PASSWORD,
    PHONE,
    SHOTS,
    LiveServer,
    PageErrors,
    city_tree,
    login,
    require_chromium,
    roads,
    wait_map,
)

pytestmark = pytest.mark.browser

LAT, LON = 31.78, 119.95


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_chromium()
    data_dir = tmp_path_factory.mktemp("anwang-browser")
    settings = Settings(env="test", data_dir=data_dir, secret_key="browser-test-secret-0123456789")
    import anwang.schema  # noqa: F401  (every table on Base.metadata)

    db = Database(settings.resolved_database_url)
    Base.metadata.create_all(db.engine)
    with db.unit_of_work() as s:
        service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
        service.create_user(s, username="dispatcher", password=PASSWORD, role="dispatcher",
                            display_name="值班调度员")
        service.create_user(s, username="auditor", password=PASSWORD, role="auditor")
    (data_dir / "roads.geojson").write_text(json.dumps(roads(), ensure_ascii=False),
                                            encoding="utf-8")
    live = LiveServer.start(create_app(settings, db=db))
    yield live
    live.stop()
    db.dispose()


@pytest.fixture
def quick_stream_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open streams re-check their session every second instead of every minute."""
    monkeypatch.setattr("anwang.web.stream.REVALIDATE_SECONDS", 1.0)


@pytest.mark.usefixtures("quick_stream_checks")
def test_dispatcher_signs_in_sees_the_map_and_live_events(
    live_server: LiveServer, browser: Any
) -> None:
    base = live_server.url
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors = PageErrors(page)

    # Sign-in page, in Chinese by default; a wrong password shows the problem.
    page.goto(f"{base}/login")
    assert page.inner_text("h1") == "登录安网"
    page.fill("#username", "dispatcher")
    page.fill("#password", "not the password")
    page.click("form.login-form button[type=submit]")
    assert "用户名或密码不正确" in page.inner_text(".problem")
    page.screenshot(path=str(SHOTS / "login-error-desktop-zh.png"))

    errors.items.clear()  # the refused sign-in answered 401, which the console reports
    login(page, base, "dispatcher")
    page.wait_for_url(f"{base}/dashboard")
    stats = wait_map(page)
    assert stats["districts"] == 2 and stats["stations"] == 2 and stats["roads"] == 3
    assert stats["errors"] == 0

    # Grids are fetched once the map is zoomed in far enough.
    page.evaluate(f"window.anwangMap.setView([{LAT}, {LON}], 14, {{animate: false}})")
    page.wait_for_function("() => window.anwangMapStats.grids === 4", timeout=10_000)

    # Clicking a polygon names it in the page's language.
    page.evaluate(f"window.anwangMap.setView([{LAT}, {LON}], 12, {{animate: false}})")
    point = page.evaluate(
        "(() => { const p = window.anwangMap.latLngToContainerPoint([31.82, 119.88]);"
        " return [p.x, p.y]; })()"
    )
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + point[0], box["y"] + point[1])
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=5_000)
    assert "天宁区" in popup.inner_text() and "320402" in popup.inner_text()
    page.keyboard.press("Escape")
    page.evaluate("window.anwangMap.closePopup()")

    # The live feed: connected, then an event published on the server's bus appears.
    page.wait_for_selector("#feed-state[data-state=connected]", timeout=10_000)
    event = Event(name=SYSTEM_NOTICE, audience=Audience(jurisdiction="320402"),
                  payload={"message": "红梅派出所辖区：请注意路口交通疏导", "lat": 31.76,
                           "lon": 119.91})
    live_server.publish(event)
    item = page.locator(f'.feed-item[data-event-id="{event.id}"]')
    item.wait_for(timeout=5_000)
    assert "系统通知" in item.inner_text() and "交通疏导" in item.inner_text()
    page.wait_for_function("() => window.anwangMapStats.events === 1", timeout=5_000)
    for i in range(3):
        live_server.publish(Event(name="anwang.alerts.alert.raised",
                                  payload={"plate": f"苏D·A12{i}5", "kind": "watchlist"}))
    page.wait_for_function("() => document.querySelectorAll('.feed-item').length === 4",
                           timeout=5_000)
    page.screenshot(path=str(SHOTS / "dashboard-desktop-zh.png"))

    # Switch to English: the labels follow, and the choice is kept on the user.
    page.click(".lang-switch button[value=en]")
    page.wait_for_url(f"{base}/dashboard")
    assert page.inner_text("#feed-title") == "Live events"
    assert page.inner_text("nav.nav a[href='/dashboard']") == "Live map"
    stats = wait_map(page)
    assert stats["districts"] == 2
    legend = page.inner_text(".map-legend")
    assert "Districts" in legend and "Police stations" in legend
    page.wait_for_selector("#feed-state[data-state=connected]", timeout=10_000)
    assert page.inner_text("#feed-state") == "Live"
    live_server.publish(Event(name=SYSTEM_NOTICE, payload={"message": "Shift change at 20:00",
                                                          "lat": 31.8, "lon": 119.99}))
    page.wait_for_selector(".feed-item", timeout=5_000)
    page.screenshot(path=str(SHOTS / "dashboard-desktop-en.png"))

    # The user menu, and a phone-sized view of the same session.
    page.click(".user-menu summary")
    page.screenshot(path=str(SHOTS / "user-menu-desktop-en.png"))
    state = context.storage_state()
    phone = browser.new_context(viewport=PHONE, storage_state=state, is_mobile=True,
                                has_touch=True, device_scale_factor=2)
    ppage = phone.new_page()
    perrors = PageErrors(ppage)
    ppage.goto(f"{base}/dashboard")
    wait_map(ppage)
    ppage.click(".lang-switch button[value=zh_CN]")
    ppage.wait_for_url(f"{base}/dashboard")
    wait_map(ppage)
    ppage.wait_for_selector("#feed-state[data-state=connected]", timeout=10_000)
    live_server.publish(Event(name=SYSTEM_NOTICE, payload={"message": "手机端测试通知",
                                                          "lat": 31.77, "lon": 119.96}))
    ppage.wait_for_selector(".feed-item", timeout=5_000)
    assert ppage.inner_text("#feed-title") == "实时事件"
    # The map fills the top of the phone screen; the feed sits below it.
    map_box, feed_box = ppage.locator("#map").bounding_box(), ppage.locator(".feed").bounding_box()
    assert feed_box["y"] >= map_box["y"] + map_box["height"] - 1
    assert map_box["width"] == pytest.approx(PHONE["width"], abs=1)
    ppage.screenshot(path=str(SHOTS / "dashboard-phone-zh.png"))
    ppage.screenshot(path=str(SHOTS / "dashboard-phone-zh-full.png"), full_page=True)

    assert errors.items == [] and perrors.items == []

    # Signing out on the phone ends the session, which the desktop shares: the phone
    # lands on the sign-in page, and the desktop's open live stream notices at its next
    # check, reconnects, is refused, and sends the desktop to sign in again too.
    ppage.click(".user-menu summary")
    ppage.screenshot(path=str(SHOTS / "user-menu-phone-zh.png"))
    ppage.click(".user-panel button[type=submit]")
    ppage.wait_for_url(f"{base}/login")
    ppage.screenshot(path=str(SHOTS / "login-phone-zh.png"))
    ppage.goto(f"{base}/dashboard")
    assert ppage.url.startswith(f"{base}/login")
    page.wait_for_url(re.compile(r"/login\?next=%2Fdashboard$"), timeout=20_000)

    phone.close()
    context.close()


def test_auditor_reads_and_verifies_the_trail(live_server: LiveServer, browser: Any) -> None:
    base = live_server.url
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors = PageErrors(page)
    login(page, base, "auditor")
    page.wait_for_url(f"{base}/audit")
    assert page.locator(".audit-table tbody tr").count() > 3
    page.click("button[hx-post='/audit/verify']")
    page.wait_for_selector(".verify-ok", timeout=10_000)
    assert "链完整" in page.inner_text("#verify-result")
    page.screenshot(path=str(SHOTS / "audit-desktop-zh.png"))

    phone = browser.new_context(viewport=PHONE, storage_state=context.storage_state(),
                                is_mobile=True, has_touch=True, device_scale_factor=2)
    ppage = phone.new_page()
    perrors = PageErrors(ppage)
    ppage.goto(f"{base}/audit?action=anwang.auth")
    ppage.wait_for_selector(".audit-table")
    ppage.screenshot(path=str(SHOTS / "audit-phone-zh.png"))
    ppage.goto(f"{base}/dashboard")
    assert ppage.url == f"{base}/audit"

    assert errors.items == [] and perrors.items == []
    phone.close()
    context.close()
