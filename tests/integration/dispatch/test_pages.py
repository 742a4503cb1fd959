"""The dispatch pages render for those allowed, and the phone page's forms work."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from anwang.core.events import utcnow
from anwang.dispatch import instructions, service
from anwang.dispatch.config import DispatchConfig

from .conftest import CSRF_FIELD, PASSWORD, WEST, Kit


def _login(client: TestClient, username: str) -> str:
    r = client.post("/login", data={"username": username, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/units" if username.endswith("officer") else "/dispatch")
    m = CSRF_FIELD.search(page.text) or re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert m is not None, page.text[:500]
    return m.group(1)


def test_console_and_coverage_pages(client: TestClient, kit: Kit) -> None:
    _login(client, "west.dispatcher")
    page = client.get("/dispatch")
    assert page.status_code == 200
    assert 'id="dispatch-map"' in page.text and 'id="dispatch-i18n"' in page.text
    assert 'href="/dispatch"' in page.text and 'href="/coverage"' in page.text
    assert client.get("/coverage").status_code == 200
    assert client.get("/dispatch/response-times").status_code == 200
    r = client.get("/api/v1/dispatch/response-times")
    assert r.status_code == 200 and len(r.json()["hours"]) == 24
    assert client.get("/dispatch/incidents/nothing").status_code == 404


def test_pages_refuse_those_without_the_permission(client: TestClient, kit: Kit) -> None:
    assert client.get("/dispatch", follow_redirects=False).status_code == 303
    r = client.post("/login", data={"username": "grid.worker", "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303
    for path in ("/dispatch", "/coverage", "/units", "/dispatch/response-times"):
        assert client.get(path).status_code == 403, path


def test_phone_page_acknowledges_and_reports(client: TestClient, kit: Kit, auth: Any) -> None:
    station = kit.city.first_station
    car = kit.unit("巡601", "patrol_car", station, 4, at=utcnow())
    lat, lon = kit.city.point(station, 5)
    with kit.uow(WEST) as s:
        inc, _ = service.create_incident(
            s, data=service.IncidentInput(type="theft", lat=lat, lon=lon, address="南大街 8 号"),
            config=DispatchConfig(),
            actor="west.dispatcher")
        inc_id = inc.id
    client.post(f"/api/v1/incidents/{inc_id}/assign", json={"unit_id": car},
                headers=auth("west.dispatcher"))
    with kit.uow(WEST) as s:
        note = instructions.send_instruction(s, text="注意嫌疑人衣着：黑色外套", unit_id=car,
                                             incident_id=inc_id, actor="west.dispatcher").id

    csrf = _login(client, "west.officer")
    units = client.get("/units")
    assert f"/units/{car}/phone" in units.text
    page = client.get(f"/units/{car}/phone")
    assert page.status_code == 200
    assert "黑色外套" in page.text and "南大街 8 号" in page.text
    r = client.post(f"/units/{car}/phone/ack", data={"csrf_token": csrf, "instruction_id": note},
                    follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/units/{car}/phone")
    assert 'name="instruction_id"' not in page.text and "instruction-ack" in page.text
    r = client.post(f"/units/{car}/phone/ack", data={"csrf_token": csrf, "instruction_id": note})
    assert r.status_code == 409
    r = client.post(f"/units/{car}/phone/status", data={"csrf_token": csrf, "status": "en_route"},
                    follow_redirects=False)
    assert r.status_code == 303
    r = client.post(f"/units/{car}/phone/status", data={"csrf_token": csrf, "status": "on_scene"},
                    follow_redirects=False)
    assert r.status_code == 303
    inc = client.get(f"/api/v1/incidents/{inc_id}", headers=auth("west.dispatcher")).json()
    assert inc["status"] == "on_scene" and inc["response_s"] > 0
    r = client.post(f"/units/{car}/phone/status", data={"csrf_token": csrf, "status": "en_route"})
    assert r.status_code == 409
    # without the form's token nothing happens
    r = client.post(f"/units/{car}/phone/status", data={"status": "available"})
    assert r.status_code == 403

    client.cookies.clear()
    _login(client, "west.dispatcher")
    timeline = client.get(f"/dispatch/incidents/{inc_id}")
    assert timeline.status_code == 200 and "黑色外套" in timeline.text
