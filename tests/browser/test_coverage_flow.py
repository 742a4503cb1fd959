"""Re-siting the quick-response posts in a real Chromium against a real server.

The demo city's roads and jurisdictions; eight quick-response posts on road nodes picked
at random, so that a better siting exists. A commander opens the response-circle page
(快反圈), sees the reachable areas and the shares per district, asks for the best siting
of as many posts with a short time limit, watches the seconds go by against that limit,
and gets today's siting beside the proposed one — shares, gap, districts, moves — with
the plan downloadable as GeoJSON and CSV. The page is also checked on a phone.
Screenshots go to ``/tmp/anwang-shots/``.

Skips when Debian's Chromium is missing — unless ``ANWANG_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.core.scope import Scope
from anwang.dispatch import posts as posts_service
from tests.browser.kit import (
    PHONE,
    SHOTS,
    LiveServer,
    PageErrors,
    demo_city,
    login,
    require_chromium,
)

pytestmark = pytest.mark.browser

POSTS = 8
LIMIT_S = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_chromium()
    demo = demo_city(tmp_path_factory.mktemp("anwang-coverage"))
    db, g = demo.db, demo.graph
    main = np.flatnonzero(g.largest_component_mask())
    picks = np.random.default_rng(5).choice(main, size=POSTS, replace=False)
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.create_user(s, username="commander", password="correct horse battery",
                                 role="commander", display_name="指挥长")
        for i, node in enumerate(picks):
            posts_service.create_post(s, data=posts_service.PostInput(
                code=f"KF-{i + 1:03d}", name=f"快反点位{i + 1:03d}", kind="quick_response",
                lat=float(g.lat[node]), lon=float(g.lon[node])), actor="test")
    live = LiveServer.start(create_app(demo.settings, db=db), name="anwang-coverage-server")
    yield live
    live.stop()
    db.dispose()


def percent(text: str) -> float:
    m = re.search(r"(\d+(?:\.\d+)?)\s*%", text)
    assert m, text
    return float(m.group(1))


def test_commander_resites_the_posts_and_sees_today_beside_the_proposal(
    server: LiveServer, browser: Any
) -> None:
    base = server.url
    desk = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page = desk.new_page()
    errors = PageErrors(page)
    login(page, base, "commander", wait=True)
    page.goto(f"{base}/coverage")
    page.wait_for_function("() => window.anwangCoverage && window.anwangCoverage.ready",
                           timeout=30_000)
    stats = page.evaluate("window.anwangCoverage")
    assert stats["posts"] == POSTS and stats["areas"] > 0
    shares = stats["shares"]  # city-wide, at 1, 3 and 5 minutes: wider with time
    assert 0 < shares[0] <= shares[1] <= shares[2] < 1
    rows = page.locator("#share-rows tr")
    assert rows.count() >= 2  # the city, then its districts
    assert "全市" in rows.nth(0).inner_text()

    # ask for the best siting of as many posts, with a short limit
    page.fill("#optimize-form input[name=p]", str(POSTS))
    page.fill("#optimize-form input[name=minutes]", "3")
    page.fill("#optimize-form input[name=time_limit_s]", str(LIMIT_S))
    page.click("#optimize-form button[type=submit]")
    progress = page.locator("#optimize-progress")
    progress.wait_for(state="visible", timeout=5_000)
    assert page.locator("#optimize-form button[type=submit]").is_disabled()
    # the seconds gone are counted against the limit while the solver runs
    page.wait_for_function(
        "() => document.getElementById('optimize-progress').value >= 1", timeout=5_000)
    status = page.inner_text("#optimize-status")
    assert f"最长 {LIMIT_S} 秒" in status and re.search(r"已用 [1-9]\d* 秒", status), status
    assert progress.get_attribute("max") == str(LIMIT_S)
    page.screenshot(path=str(SHOTS / "coverage-computing-zh.png"))

    page.wait_for_function("() => window.anwangCoverage.plan", timeout=60 * 1000)
    assert not progress.is_visible()
    assert page.inner_text("#optimize-status") == ""
    assert page.locator("#optimize-form button[type=submit]").is_enabled()
    facts = page.locator("#plan-facts dd")
    before, after, gap = (percent(facts.nth(i).inner_text()) for i in range(3))
    assert after >= before and before == pytest.approx(100 * shares[1], abs=0.01)
    assert 0 <= gap < 100
    assert page.locator("#plan-districts tr").count() == rows.count() - 1
    moves = page.locator("#plan-moves tr")
    assert moves.count() >= 1  # random posts are not where they reach most
    page.screenshot(path=str(SHOTS / "coverage-plan-zh.png"))

    # the plan, downloadable, with the session's cookie
    geo = page.request.get(base + page.get_attribute("#plan-geojson", "href"))
    assert geo.ok
    sites = [f for f in geo.json()["features"] if f["geometry"]["type"] == "Point"]
    assert len(sites) >= POSTS
    csv = page.request.get(base + page.get_attribute("#plan-csv", "href"))
    assert csv.ok and csv.text().count("\n") >= POSTS

    # on a phone: the page fits the screen's width
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                device_scale_factor=2, locale="zh-CN")
    ppage = phone.new_page()
    perrors = PageErrors(ppage)
    login(ppage, base, "commander", wait=True)
    ppage.goto(f"{base}/coverage")
    ppage.wait_for_function("() => window.anwangCoverage && window.anwangCoverage.ready",
                            timeout=30_000)
    assert ppage.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    # the table stacks its cells, each shown with its column's heading
    first = ppage.locator("#share-rows tr").nth(0).locator("td")
    labels = [first.nth(i).get_attribute("data-label") for i in range(first.count())]
    assert labels == ["区域", "≤ 1 min", "≤ 3 min", "≤ 5 min"]
    ppage.screenshot(path=str(SHOTS / "coverage-phone-zh.png"), full_page=True)

    assert errors.items == [] and perrors.items == []
    phone.close()
    desk.close()
