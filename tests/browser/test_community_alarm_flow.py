"""A smoke alarm from the MQTT broker, in a real Chromium against a real server.

A smoke detector publishes to the machine's Mosquitto; the server's intake (started by
the app, as ``anwang serve`` does on the embedded bus) raises the alarm; the community's
grid worker, signed in on the dashboard, sees it arrive on the live feed and on the map,
opens it, acknowledges it and closes it as real. Screenshots go to
``/tmp/anwang-shots/``.

Skips when Chromium or the broker is missing — unless ``ANWANG_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from anwang.app import create_app
from anwang.core.db import Base, Database
from anwang.core.events import utcnow
from anwang.infra.mqtt import MqttUrl
from anwang.settings import Settings
from tests.browser.kit import DESKTOP, SHOTS, LiveServer, require_chromium
from tests.conftest import MQTT_URL, need_service, tcp_reachable
from tests.integration.communities.conftest import PASSWORD, Kit, seed

pytestmark = [pytest.mark.browser]



def _require_services() -> None:
    require_chromium()
    parts = urlsplit(MQTT_URL)
    if not tcp_reachable(parts.hostname or "127.0.0.1", parts.port or 1883):
        need_service("MQTT (Mosquitto)", MQTT_URL)


@dataclass
class Served:
    live: LiveServer
    kit: Kit
    device: str

    @property
    def url(self) -> str:
        return self.live.url


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require_services()
    import anwang.schema  # noqa: F401  (every table on Base.metadata)

    data_dir = tmp_path_factory.mktemp("anwang-communities-browser")
    # A plain (not shared) subscription and a session that soon expires: this run's
    # intake can neither lose messages to nor leave them for another run's sessions.
    settings = Settings(
        env="test", data_dir=data_dir, secret_key="browser-test-secret-0123456789",
        mqtt_url=MQTT_URL + "?shared=0", mqtt_worker_id=f"browser-{uuid.uuid4().hex[:8]}",
        mqtt_session_expiry_s=60, device_scan_seconds=1.0,
    )
    db = Database(settings.resolved_database_url)
    Base.metadata.create_all(db.engine)
    seed(db)
    kit = Kit(db)
    device = f"sm-{uuid.uuid4().hex[:8]}"
    kit.device(device, "smoke_alarm", floor=11, heartbeat_s=3600, at=utcnow())

    live = LiveServer.start(create_app(settings, db=db))
    yield Served(live, kit, device)
    live.stop()
    db.dispose()


def _publish(topic: str, payload: bytes) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    u = MqttUrl.parse(MQTT_URL)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect(u.host, u.port)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_smoke_alarm_from_the_broker_is_seen_acknowledged_and_closed(
    live_server: Served, browser: Any,
) -> None:
    base = live_server.url
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{base}/login")
    page.fill("#username", "west.gridworker")
    page.fill("#password", PASSWORD)
    page.click("form.login-form button[type=submit]")
    page.wait_for_url(f"{base}/dashboard")
    page.wait_for_function("() => window.anwangMapStats && window.anwangMapStats.ready",
                           timeout=10_000)
    page.wait_for_selector("#feed-state[data-state=connected]", timeout=10_000)
    body = json.dumps({"ts": utcnow().isoformat(), "event": "smoke_alarm",
                       "detail": {"zone": "kitchen"}}).encode()
    # The intake subscribes a moment after the server starts; until it has, a message
    # has no session to wait in. The device repeats itself (same message, so the alarm
    # is raised once) until it is heard.
    deadline = time.monotonic() + 20
    while not live_server.kit.alarms(device_id=live_server.device):
        assert time.monotonic() < deadline, "the alarm never arrived from the broker"
        _publish(f"anwang/devices/{live_server.device}/events", body)
        time.sleep(1.0)

    item = page.locator('.feed-item[data-event-name="anwang.communities.alarm.raised"]')
    item.wait_for(timeout=10_000)
    assert "小区设备报警" in item.inner_text() and live_server.device in item.inner_text()
    page.wait_for_function("() => window.anwangMapStats.events >= 1", timeout=5_000)
    page.screenshot(path=str(SHOTS / "community-alarm-dashboard-zh.png"))

    [alarm] = live_server.kit.alarms(device_id=live_server.device)
    page.goto(f"{base}/community-alarms")
    row = page.locator(f'tr[data-alarm-id="{alarm.id}"]')
    row.wait_for(timeout=5_000)
    assert "火" in row.inner_text() or "紧急" in row.inner_text()
    page.wait_for_function("() => window.anwangCommunities && window.anwangCommunities.ready")
    page.screenshot(path=str(SHOTS / "community-alarms-zh.png"))
    row.locator("a").first.click()
    page.wait_for_url(f"{base}/community-alarms/{alarm.id}")
    assert page.inner_text("#alarm-status") == "生效中"
    page.click("#acknowledge")
    page.wait_for_url(f"{base}/community-alarms/{alarm.id}")
    assert page.inner_text("#alarm-status") == "已签收"
    page.select_option("#outcome", "real")
    page.fill("#close-note", "厨房油烟，已处置")
    page.click("#close")
    page.wait_for_url(f"{base}/community-alarms/{alarm.id}")
    assert page.inner_text("#alarm-status") == "已办结"
    assert page.inner_text("#alarm-outcome") == "真实警情"
    history = page.inner_text("#alarm-history")
    assert "raised" in history and "acknowledged" in history and "closed" in history
    page.screenshot(path=str(SHOTS / "community-alarm-closed-zh.png"))

    [closed] = live_server.kit.alarms(device_id=live_server.device)
    assert (closed.status, closed.outcome, closed.closed_by) == ("closed", "real",
                                                                 "west.gridworker")
    assert errors == []
    context.close()

