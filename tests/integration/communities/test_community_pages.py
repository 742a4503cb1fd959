"""The smart-community pages: what each role sees, and the forms that change things."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from tests.integration.communities.conftest import PASSWORD, Kit, later, square

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: TestClient, username: str) -> str:
    r = client.post("/login", data={"username": username, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/communities")
    m = CSRF.search(page.text)
    assert m is not None, page.text[:500]
    return m.group(1)


def test_pages_need_a_session_and_the_permission(client: TestClient, kit: Kit) -> None:
    r = client.get("/communities", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    client.post("/login", data={"username": "the.auditor", "password": PASSWORD})
    for path in ("/communities", "/community-alarms", "/device-health", "/communities/W1"):
        assert client.get(path).status_code == 403, path


def test_a_manager_registers_a_community_and_a_device(client: TestClient, kit: Kit) -> None:
    csrf = login(client, "admin")
    page = client.get("/communities")
    assert page.status_code == 200 and "幸福里" in page.text and "东湖苑" in page.text
    r = client.post("/communities", data={
        "csrf_token": csrf, "code": "W9", "name": "翠竹园", "address": "西区翠竹路 9 号",
        "polygon": json.dumps(square(119.87, 31.72, 119.88, 31.73))}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/communities/W9"
    bad = client.post("/communities", data={"csrf_token": csrf, "code": "W8", "name": "x",
                                             "polygon": "{not json"})
    assert bad.status_code == 422 and "polygon" in bad.text
    r = client.post("/communities/W9/devices", data={
        "csrf_token": csrf, "id": "w9-smoke-1", "kind": "smoke_alarm", "adapter": "native",
        "lat": "31.725", "lon": "119.875", "floor": "12", "heartbeat_s": "300"})
    assert r.status_code == 201
    key = re.search(r'id="new-device-key">([^<]+)<', r.text)
    assert key is not None and key.group(1).startswith("dk_")
    assert "w9-smoke-1" in client.get("/communities/W9").text
    device = client.get("/devices/w9-smoke-1")
    assert device.status_code == 200 and "telemetry-chart" in device.text
    r = client.post("/devices/w9-smoke-1/active", data={"csrf_token": csrf, "active": "false"},
                    follow_redirects=False)
    assert r.status_code == 303
    assert "cm-state-inactive" in client.get("/devices/w9-smoke-1").text
    csv = "id,kind,community,lat,lon\nw9-gate-1,gate_sensor,W9,31.725,119.876\n"
    r = client.post("/communities/import", data={"csrf_token": csrf},
                    files={"file": ("devices.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200 and "w9-gate-1" in r.text and "dk_" in r.text


def test_a_grid_worker_acknowledges_and_closes_an_alarm(client: TestClient, kit: Kit) -> None:
    kit.device("tc-1", "throw_camera", floor=2)
    kit.ingest(kit.event("tc-1", "object_thrown", later(1), floor_estimate=15))
    [alarm] = kit.alarms()
    csrf = login(client, "west.gridworker")
    listing = client.get("/community-alarms")
    assert listing.status_code == 200 and alarm.id in listing.text
    assert alarm.id in client.get("/community-alarms/rows?status=open").text
    page = client.get(f"/community-alarms/{alarm.id}")
    assert page.status_code == 200 and 'id="acknowledge"' in page.text
    assert ">15<" in page.text  # the estimated floor
    r = client.post(f"/community-alarms/{alarm.id}/acknowledge", data={"csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
    r = client.post(f"/community-alarms/{alarm.id}/acknowledge", data={"csrf_token": csrf})
    assert r.status_code == 409 and 'role="alert"' in r.text
    r = client.post(f"/community-alarms/{alarm.id}/close",
                    data={"csrf_token": csrf, "outcome": "real", "note": "已找到抛物住户"},
                    follow_redirects=True)
    assert r.status_code == 200 and 'id="alarm-outcome"' in r.text
    assert kit.alarms()[0].status == "closed"
    history = r.text[r.text.index('id="alarm-history"'):]
    assert history.count("<li>") == 3  # raised, acknowledged, closed
    assert client.post(f"/community-alarms/{alarm.id}/close",
                       data={"outcome": "real"}).status_code == 403  # no CSRF token


def test_other_jurisdictions_stay_hidden(client: TestClient, kit: Kit) -> None:
    kit.device("e-1", "gate_sensor", community="E1")
    kit.ingest(kit.event("e-1", "forced_open", later(1)))
    [alarm] = kit.alarms()
    login(client, "west.officer")
    assert client.get(f"/community-alarms/{alarm.id}").status_code == 404
    assert client.get("/communities/E1").status_code == 404
    assert client.get("/devices/e-1").status_code == 404
    assert "东湖苑" not in client.get("/communities").text
    health = client.get("/device-health")
    assert health.status_code == 200 and "e-1" not in health.text
