"""Dispatching the nearest unit in a real Chromium against a real server.

The demo city's roads and jurisdictions; four units of district 320401 with fresh
positions. A dispatcher records an incident in the console, sees the units ranked by
ETA with their routes drawn on the map, assigns the first and sends it an instruction;
on the unit's phone page an officer acknowledges the instruction and reports en route,
which the console shows live. Screenshots go to ``/tmp/anwang-shots/``.

Skips when Debian's Chromium is missing — unless ``ANWANG_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import shapely
from sqlalchemy import select

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.dispatch import posts as posts_service
from anwang.dispatch import service as dispatch_service
from anwang.dispatch.models import Instruction
from tests.browser.kit import (
    PASSWORD,
    PHONE,
    SHOTS,
    LiveServer,
    PageErrors,
    demo_city,
    login,
    require_chromium,
)

pytestmark = pytest.mark.browser

DISTRICT = "320401"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    require_chromium()
    demo = demo_city(tmp_path_factory.mktemp("anwang-dispatch"))
    db, city, g = demo.db, demo.city, demo.graph
    station = min((j for j in city.by_level("station") if j.code.startswith(DISTRICT)),
                  key=lambda j: j.code)
    inside = np.flatnonzero(shapely.contains(station.polygon, shapely.points(g.lon, g.lat)))
    rng = np.random.default_rng(3)
    picks = [int(n) for n in rng.choice(inside, size=6, replace=False)]

    facts: dict[str, Any] = {}
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.create_user(s, username="dispatcher", password=PASSWORD, role="dispatcher",
                                 jurisdiction_code=DISTRICT, display_name="值班调度员")
        auth_service.create_user(s, username="officer", password=PASSWORD, role="officer",
                                 jurisdiction_code=station.code)
        post = posts_service.create_post(s, data=posts_service.PostInput(
            code="KF-TN-001", name="快反点位001", kind="quick_response",
            lat=float(g.lat[picks[0]]), lon=float(g.lon[picks[0]])), actor="test")
        now = utcnow()
        units = []
        for i, (sign, kind) in enumerate([("巡001", "patrol_car"), ("巡002", "patrol_car"),
                                          ("摩001", "motorcycle"), ("步001", "foot_patrol")]):
            node = picks[i + 1]
            u = dispatch_service.create_unit(s, call_sign=sign, kind=kind,
                                             home_post_id=post.id, actor="test")
            dispatch_service.record_position(
                s, unit_id=u.id, lat=float(g.lat[node]), lon=float(g.lon[node]),
                at=now - timedelta(seconds=20), now=now)
            units.append(u.id)
        facts["units"] = units
        facts["incident_at"] = (float(g.lat[picks[5]]), float(g.lon[picks[5]]))

    facts["db"] = db
    live = LiveServer.start(create_app(demo.settings, db=db), name="anwang-dispatch-server")
    yield live, facts
    live.stop()
    db.dispose()


def test_dispatcher_assigns_the_nearest_unit_and_the_phone_acknowledges(
    server: tuple[LiveServer, dict[str, Any]], browser: Any
) -> None:
    live, facts = server
    base = live.url
    desk = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page = desk.new_page()
    errors = PageErrors(page)
    login(page, base, "dispatcher", wait=True)
    page.goto(f"{base}/dispatch")
    page.wait_for_function("() => window.anwangDispatch && window.anwangDispatch.ready",
                           timeout=15_000)
    stats = page.evaluate("window.anwangDispatch")
    assert stats["units"] == 4 and stats["posts"] == 1 and stats["incidents"] == 0

    # record an incident: a burglary (patrol cars and motorcycles may go)
    lat, lon = facts["incident_at"]
    page.select_option("#incident-form select[name=type]", "burglary")
    page.fill("#incident-form input[name=lat]", f"{lat:.6f}")
    page.fill("#incident-form input[name=lon]", f"{lon:.6f}")
    page.fill("#incident-form input[name=address]", "青果巷 12 号")
    page.fill("#incident-form input[name=caller]", "王女士")
    page.click("#incident-form button[type=submit]")
    page.wait_for_function(
        "() => window.anwangDispatch.recommended === 3 && window.anwangDispatch.routes === 3",
        timeout=15_000)
    rows = page.locator("#rec-rows tr.rec-row")
    assert rows.count() == 3
    signs = [rows.nth(i).locator("strong").inner_text() for i in range(3)]
    assert "步001" not in signs  # a foot patrol is not sent to a burglary
    etas = [rows.nth(i).locator("td.rec-eta").inner_text() for i in range(3)]
    seconds = [int(e.split(":")[0]) * 60 + int(e.split(":")[1]) for e in etas]
    assert seconds == sorted(seconds)
    assert page.locator("#incident-list .incident-item").count() == 1
    page.screenshot(path=str(SHOTS / "dispatch-console-desktop-zh.png"))

    # assign the first, then instruct it
    first = rows.nth(0).get_attribute("data-unit-id")
    rows.nth(0).locator("button.assign").click()
    page.wait_for_function("() => window.anwangDispatch.assigned === 1", timeout=10_000)
    assert page.locator("#incident-list .chip-dispatched").count() == 1
    page.fill("#instruction-form textarea[name=text]", "嫌疑人身穿黑色外套，注意安全")
    page.click("#instruction-form button[type=submit]")
    page.wait_for_function("() => window.anwangDispatch.instructions === 1", timeout=10_000)
    with facts["db"].unit_of_work(readonly=True) as s:
        assert s.scalar(select(Instruction.unit_id)) == first

    # the officer's phone: acknowledge, then report en route
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                device_scale_factor=2, locale="zh-CN")
    ppage = phone.new_page()
    perrors = PageErrors(ppage)
    login(ppage, base, "officer", wait=True)
    ppage.goto(f"{base}/units/{first}/phone")
    assert "黑色外套" in ppage.inner_text(".phone-instructions")
    assert "青果巷 12 号" in ppage.inner_text(".phone")
    ppage.screenshot(path=str(SHOTS / "unit-phone-zh.png"), full_page=True)
    ppage.click(".instruction-open button[type=submit]")
    ppage.wait_for_selector(".instruction-ack", timeout=10_000)
    assert ppage.locator(".instruction-open").count() == 0
    ppage.click(".phone-status-buttons button[value=en_route]")
    ppage.wait_for_selector("#unit-status[data-status=en_route]", timeout=10_000)
    ppage.screenshot(path=str(SHOTS / "unit-phone-acknowledged-zh.png"), full_page=True)

    # the console hears it live: the incident is en route
    page.wait_for_selector("#incident-list .chip-en_route", timeout=10_000)
    page.screenshot(path=str(SHOTS / "dispatch-console-en-route-zh.png"))
    page.goto(f"{base}/dispatch/incidents/" + page.evaluate("window.anwangDispatch.selected"))
    actions = page.eval_on_selector_all(".timeline-item", "els => els.map(e => e.dataset.action)")
    assert actions[0] == "anwang.dispatch.incident.created"
    assert "anwang.dispatch.instruction.acknowledged" in actions

    assert errors.items == [] and perrors.items == []
    phone.close()
    desk.close()
