"""A watch-list alert end to end in a real Chromium against a real server.

A checkpoint posts a read through ``POST /api/v1/reads`` with its device key; the plate
is on the (approved) watch list. On the dispatcher's open dashboard the alert appears in
the live feed — with the reason, the banner and a link — and as a red marker on the
map, and the page beeps. The dispatcher follows the link to the alert page, and on a
phone acknowledges the alert and closes it as confirmed. Screenshots go to
``/tmp/anwang-shots/``.

Skips when Debian's Chromium is missing — unless ``ANWANG_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from anwang.alerts.models import Alert
from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.checkpoints import service as checkpoint_service
from anwang.checkpoints.schemas import CheckpointCreate
from anwang.core import audit
from anwang.core.db import Base, Database
from anwang.core.events import utcnow
from anwang.settings import Settings
from anwang.watchlist import service as watchlist_service
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

PLATE = "苏D8A2K7"
CHECKPOINT = "CP-HM-01"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """The live server, and the checkpoint's device key."""
    require_chromium()
    data_dir = tmp_path_factory.mktemp("anwang-alert-browser")
    settings = Settings(env="test", data_dir=data_dir,
                        secret_key="browser-test-secret-0123456789")
    import anwang.schema  # noqa: F401  (every table on Base.metadata)

    db = Database(settings.resolved_database_url)
    Base.metadata.create_all(db.engine)
    with db.unit_of_work() as s:
        auth_service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
        for username, role, where in (("dispatcher", "dispatcher", "320402"),
                                      ("analyst", "analyst", None),
                                      ("commander", "commander", None)):
            auth_service.create_user(s, username=username, password=PASSWORD, role=role,
                                     jurisdiction_code=where)
        key, _ = auth_service.create_api_key(s, name=CHECKPOINT, role="device",
                                             actor="test")
        checkpoint_service.create_checkpoint(s, data=CheckpointCreate.model_validate({
            "code": CHECKPOINT, "name": "红梅卡口", "kind": "police_checkpoint",
            "lat": 31.75, "lon": 119.87, "directions": ["in", "out"], "lanes": 2,
        }), actor="test")
        entry = watchlist_service.create_entry(
            s, pattern=PLATE, reason="stolen_vehicle",
            legal_basis="立案决定书 常公刑立字〔2026〕88号",
            case_ref="CZ-2026-0088", priority=1, expires_at=utcnow() + timedelta(days=30),
            vehicle={"colour": "白色", "make": "丰田", "model": "凯美瑞"}, actor="analyst",
            actor_role="analyst",
        )
        watchlist_service.approve_entry(s, entry_id=entry.id, actor="commander",
                                        actor_role="commander")
    (data_dir / "roads.geojson").write_text(json.dumps(roads(), ensure_ascii=False),
                                            encoding="utf-8")

    live = LiveServer.start(create_app(settings, db=db), name="anwang-alert-server")
    yield live, key
    live.stop()
    db.dispose()


def test_a_posted_read_raises_an_alert_that_the_dispatcher_handles(
    server: tuple[LiveServer, str], browser: Any
) -> None:
    live, device_key = server
    base = live.url
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors = PageErrors(page)
    login(page, base, "dispatcher")
    page.wait_for_url(f"{base}/dashboard")
    wait_map(page)
    page.wait_for_selector("#feed-state[data-state=connected]", timeout=10_000)
    page.wait_for_selector("#alert-sound[aria-pressed=true]", timeout=5_000)
    page.click("#feed-title")  # a gesture: browsers play sound only after one

    # The checkpoint posts a read of the listed plate (written as a camera might).
    r = httpx.post(f"{base}/api/v1/reads", headers={"Authorization": f"Bearer {device_key}"},
                   json=[{"checkpoint": CHECKPOINT, "captured_at": utcnow().isoformat(),
                          "plate": "苏D·8A2K7", "plate_color": "blue", "confidence": 0.91,
                          "lane": 2, "direction": "in"}], timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and r.json()["alerts"] == 1

    item = page.locator(".feed-item.feed-alert")
    item.wait_for(timeout=5_000)
    text = item.inner_text()
    assert PLATE in text and "红梅卡口" in text
    assert "布控预警" in text and "被盗抢车辆" in text and "精确" in text and "进城" in text
    assert "未经确认 — 处置前请目视核对号牌和车辆" in text
    page.wait_for_function("() => window.anwangAlerts.markers === 1", timeout=5_000)
    assert page.locator(".leaflet-marker-icon.alert-marker").count() == 1
    assert page.evaluate("window.anwangAlerts.raised") == 1
    assert page.evaluate("window.anwangAlerts.beeps") == 1
    popup = page.locator(".alert-popup")
    popup.wait_for(timeout=5_000)
    assert PLATE in popup.inner_text()
    page.screenshot(path=str(SHOTS / "alert-dashboard-desktop-zh.png"))

    # The feed's link leads to the alert page.
    item.locator(".feed-alert-link").click()
    page.wait_for_url(f"{base}/alerts/*")
    alert_url = page.url
    assert "未经确认" in page.inner_text(".banner")
    assert "白色 丰田 凯美瑞" in page.inner_text(".alert-card")

    # On the phone: acknowledge, then close as confirmed.
    phone = browser.new_context(viewport=PHONE, storage_state=context.storage_state(),
                                is_mobile=True, has_touch=True, device_scale_factor=2,
                                locale="zh-CN")
    ppage = phone.new_page()
    perrors = PageErrors(ppage)
    ppage.goto(alert_url)
    ppage.wait_for_selector("#acknowledge")
    card = ppage.locator(".alert-card").bounding_box()
    assert card is not None and card["width"] <= PHONE["width"]
    ppage.screenshot(path=str(SHOTS / "alert-phone-open-zh.png"), full_page=True)
    ppage.click("#acknowledge")
    ppage.wait_for_selector("#alert-panel[data-status=acknowledged]", timeout=5_000)
    ppage.check("input[name=outcome][value=confirmed]")
    ppage.fill("textarea[name=note]", "已在红梅路口拦截，核对车架号一致")
    ppage.screenshot(path=str(SHOTS / "alert-phone-acknowledged-zh.png"), full_page=True)
    ppage.click("#close")
    ppage.wait_for_selector("#alert-panel[data-status=closed]", timeout=5_000)
    assert "红梅路口拦截" in ppage.inner_text("#alert-panel")
    ppage.screenshot(path=str(SHOTS / "alert-phone-closed-zh.png"), full_page=True)

    db = live.app.state.anwang.db
    with db.unit_of_work() as s:
        alert = s.scalars(select(Alert)).one()
        assert (alert.status, alert.outcome, alert.acknowledged_by, alert.closed_by) == (
            "closed", "confirmed", "dispatcher", "dispatcher")
        assert alert.plate == PLATE and alert.checkpoint_code == CHECKPOINT
        assert audit.verify(s).ok

    # The alert list and the statistics page render with their charts.
    page.goto(f"{base}/alerts?status=closed")
    assert page.locator(f'a[href="{alert_url.removeprefix(base)}"]').count() == 1
    page.goto(f"{base}/alerts/stats")
    page.wait_for_function("() => window.anwangAlertCharts && "
                           "window.anwangAlertCharts['chart-reasons'] === 1", timeout=5_000)
    page.screenshot(path=str(SHOTS / "alert-stats-desktop-zh.png"), full_page=True)

    assert errors.items == [] and perrors.items == []
    phone.close()
    context.close()


def test_an_analyst_proposes_an_entry_and_a_commander_approves_it(
    server: tuple[LiveServer, str], browser: Any
) -> None:
    base = server[0].url
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors = PageErrors(page)
    login(page, base, "analyst")
    page.wait_for_url(f"{base}/dashboard")
    page.goto(f"{base}/watchlist")
    page.click(".wl-create > summary")
    page.fill("input[name=pattern]", "苏D?58*")
    page.select_option("select[name=reason]", "wanted_case")
    page.fill("textarea[name=legal_basis]", "协查通报 常公协〔2026〕12号")
    page.fill("input[name=case_ref]", "CZ-2026-0105")
    page.fill("input[name=colour]", "红色")
    page.screenshot(path=str(SHOTS / "watchlist-form-desktop-zh.png"), full_page=True)
    page.click("#entry-form button[type=submit]")
    page.wait_for_url(f"{base}/watchlist/*")
    assert "等待另一人审批" in page.inner_text("#entry-actions")
    entry_url = page.url
    context.close()

    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors2 = PageErrors(page)
    login(page, base, "commander")
    page.wait_for_url(f"{base}/dashboard")
    page.goto(f"{base}/watchlist?status=pending")
    entry_id = entry_url.rsplit("/", 1)[1]
    page.click(f"#entry-{entry_id} button[hx-post$='/approve']")
    page.wait_for_selector(f"#entry-{entry_id}[data-status=active]", timeout=5_000)
    page.screenshot(path=str(SHOTS / "watchlist-list-desktop-zh.png"), full_page=True)
    page.goto(entry_url)
    assert page.locator(".history li").count() == 2
    assert errors.items == [] and errors2.items == []
    context.close()
