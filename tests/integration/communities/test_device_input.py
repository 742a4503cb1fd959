"""Devices posting over HTTP with their own key: accepted, refused and counted, never
stored twice."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anwang.communities.models import DeviceEvent, DeviceSample
from anwang.core.events import utcnow
from tests.integration.communities.conftest import Kit


def post(client: TestClient, device: str, channel: str, body: Any, key: str | None,
         ctype: str = "application/json") -> Any:
    headers = {"content-type": ctype}
    if key is not None:
        headers["X-Device-Key"] = key
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/api/v1/devices/{device}/{channel}", content=content, headers=headers)


def test_telemetry_and_events_with_the_device_key(client: TestClient, as_user: Any,
                                                  kit: Kit) -> None:
    key = kit.device("sm-1", "smoke_alarm", floor=6)
    now = utcnow()
    r = post(client, "sm-1", "telemetry",
             {"ts": now.isoformat(), "metrics": {"temperature_c": 24.5, "battery_pct": 91}}, key)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and r.json()["refused"] == []
    r = post(client, "sm-1", "events", {"ts": now.isoformat(), "event": "smoke_alarm",
                                        "detail": {"zone": "kitchen"}}, key)
    assert r.status_code == 200
    [alarm_id] = r.json()["raised"]
    view = client.get("/api/v1/devices/sm-1", headers=as_user("west.manager")).json()
    assert view["state"] == "online" and view["battery_pct"] == 91
    assert view["metrics"]["temperature_c"] == 24.5
    assert [a["id"] for a in view["open_alarms"]] == [alarm_id]
    assert view["open_alarms"][0]["kind"] == "fire" and view["open_alarms"][0]["detail"][
        "floor"] == 6
    r = post(client, "sm-1", "heartbeat", b"", key)
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_a_retried_request_stores_nothing_twice(client: TestClient, as_user: Any,
                                                kit: Kit) -> None:
    key = kit.device("cp-1")
    now = utcnow()
    batch = [{"ts": (now - timedelta(seconds=40 - i)).isoformat(),
              "metrics": {"temperature_c": 90.0}} for i in range(40)]
    first = post(client, "cp-1", "telemetry", batch, key).json()
    assert first["accepted"] == 40 and len(first["raised"]) == 1
    event = {"ts": now.isoformat(), "event": "ground_fault"}
    post(client, "cp-1", "events", event, key)
    second = post(client, "cp-1", "telemetry", batch, key).json()
    assert second["accepted"] == 40 and second["raised"] == []
    post(client, "cp-1", "events", event, key)
    alarms = client.get("/api/v1/alarms?device=cp-1", headers=as_user("admin")).json()
    by_rule = {a["rule_id"]: a for a in alarms}
    assert set(by_rule) == {"overheat", "electrical_fault"}
    assert by_rule["overheat"]["count"] == 10  # raised once held 30 s, then 9 more readings
    assert by_rule["electrical_fault"]["count"] == 1
    with kit.db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(DeviceSample)) == 40
        assert s.scalar(select(func.count()).select_from(DeviceEvent)) == 1


def test_a_batch_keeps_every_good_item(client: TestClient, as_user: Any, kit: Kit) -> None:
    key = kit.device("cp-2")
    now = utcnow().isoformat()
    lines = [
        json.dumps({"ts": now, "metrics": {"temperature_c": 40.0}}),
        "{not json",
        json.dumps({"ts": now, "metrics": {"temperature_c": 900}}),
        json.dumps({"ts": (utcnow() + timedelta(days=1)).isoformat(),
                    "metrics": {"temperature_c": 40}}),
        json.dumps({"ts": now, "metrics": {"power_w": "lots"}}),
        json.dumps({"ts": now, "event": "cover_open"}),
    ]
    r = post(client, "cp-2", "telemetry", "\n".join(lines).encode(), key,
             ctype="application/x-ndjson")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 1
    assert [(x["index"], x["reason"]) for x in out["refused"]] == [
        (1, "not_json"), (2, "impossible_value"), (3, "future_timestamp"), (4, "wrong_type"),
        (5, "bad_shape"),
    ]
    view = client.get("/api/v1/devices/cp-2", headers=as_user("admin")).json()
    assert view["rejected"] == {"not_json": 1, "impossible_value": 1, "future_timestamp": 1,
                                "wrong_type": 1, "bad_shape": 1}


def test_a_single_bad_message_is_a_problem_with_field_and_reason(
    client: TestClient, as_user: Any, kit: Kit,
) -> None:
    key = kit.device("sm-9", "smoke_alarm")
    r = post(client, "sm-9", "telemetry",
             {"ts": utcnow().isoformat(), "metrics": {"battery_pct": -4}}, key)
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "anwang.communities.impossible_value"
    assert problem["errors"] == [{"field": "metrics.battery_pct", "reason": "impossible_value"}]
    r = post(client, "sm-9", "events", {"ts": utcnow().isoformat(), "event": "ground_fault"},
             key)
    assert r.status_code == 422 and r.json()["code"] == "anwang.communities.unknown_event"


def test_wrong_keys_and_unknown_devices_are_refused_and_counted(
    client: TestClient, as_user: Any, kit: Kit,
) -> None:
    kit.device("gate-1", "gate_sensor")
    body = {"ts": utcnow().isoformat(), "event": "forced_open"}
    for key in (None, "dk_wrong", kit.keys["gate-1"] + "x"):
        r = post(client, "gate-1", "events", body, key)
        assert r.status_code == 401 and r.json()["code"] == "anwang.communities.device_key_invalid"
    r = post(client, "ghost-7", "events", body, "dk_whatever")
    assert r.status_code == 401
    health = client.get("/api/v1/device-health", headers=as_user("city.dispatcher")).json()
    assert health["rejected"]["wrong_credentials"] == 3
    assert health["unknown_device_messages"] == 1
    assert health["last_unknown_device"] == "ghost-7"
    row = next(r for r in health["rows"] if r["device_id"] == "gate-1")
    assert row["rejected"] == {"wrong_credentials": 3}
    assert client.get("/api/v1/alarms", headers=as_user("admin")).json() == []
    # A deactivated device's key no longer brings anything in.
    client.delete("/api/v1/devices/gate-1", headers=as_user("admin"))
    r = post(client, "gate-1", "events", body, kit.keys["gate-1"])
    assert r.status_code == 422 and r.json()["code"] == "anwang.communities.device_inactive"


def test_device_health_counts_states(client: TestClient, as_user: Any, kit: Kit) -> None:
    for i in range(3):
        kit.device(f"m-{i}", "manhole_cover")
    post(client, "m-0", "telemetry", {"ts": utcnow().isoformat(),
                                      "metrics": {"tilt_deg": 1, "battery_pct": 12}},
         kit.keys["m-0"])
    post(client, "m-1", "heartbeat", b"", kit.keys["m-1"])
    health = client.get("/api/v1/device-health?community=W1",
                        headers=as_user("west.gridworker")).json()
    assert (health["devices"], health["online"], health["never"]) == (3, 2, 1)
    assert health["online_share"] == round(2 / 3, 4)
    assert health["low_battery"] == 1
    assert client.get("/api/v1/device-health", headers=as_user("east.officer")).json()[
        "devices"] == 0
