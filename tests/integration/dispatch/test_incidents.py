"""Incidents through the API: lifecycle with its audit timeline, double assignment,
retries, bad input and jurisdiction scope — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anwang.core import audit
from anwang.core.events import utcnow
from anwang.dispatch.models import Assignment, Incident, Unit

from .conftest import EAST, WEST, Kit


def _incident(client: TestClient, headers: dict[str, str], kit: Kit, district: str, k: int,
              **extra: Any) -> dict[str, Any]:
    lat, lon = kit.city.point(district, k)
    body = {"type": "burglary", "lat": lat, "lon": lon, "address": "青果巷 12 号",
            "caller": "王女士 138****0000", "description": "门锁被撬", **extra}
    r = client.post("/api/v1/incidents", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_lifecycle_is_recorded_and_timed(client: TestClient, kit: Kit, auth: Any) -> None:
    now = utcnow()
    station = kit.city.first_station
    car = kit.unit("巡101", "patrol_car", station, 3, at=now - timedelta(seconds=30))
    west = auth("west.dispatcher")
    inc = _incident(client, west, kit, station, 5)
    assert inc["status"] == "received" and inc["priority"] == 2  # burglary's default
    assert inc["jurisdiction"].startswith(WEST) and inc["district"] == WEST

    recs = client.get(f"/api/v1/incidents/{inc['id']}/recommendations", headers=west).json()
    assert [u["unit_id"] for u in recs["units"]] == [car]
    assert recs["units"][0]["route"]["type"] == "LineString"

    r = client.post(f"/api/v1/incidents/{inc['id']}/assign", json={"unit_id": "巡101"},
                    headers=west)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "dispatched" and body["dispatched_at"] is not None
    assert body["units"][0]["call_sign"] == "巡101" and body["units"][0]["eta_s"] > 0
    assert body["units"][0]["eta_s"] == recs["units"][0]["eta_s"]

    officer = auth("west.officer")
    for status in ("en_route", "on_scene"):
        r = client.post(f"/api/v1/units/{car}/status", json={"status": status}, headers=officer)
        assert r.status_code == 200, r.text
    inc2 = client.get(f"/api/v1/incidents/{inc['id']}", headers=west).json()
    assert inc2["status"] == "on_scene"
    assert inc2["en_route_at"] and inc2["on_scene_at"] and inc2["response_s"] > 0

    r = client.post(f"/api/v1/incidents/{inc['id']}/status", json={"status": "cleared"},
                    headers=west)
    assert r.status_code == 200 and r.json()["cleared_at"]
    unit = client.get(f"/api/v1/units/{car}", headers=west).json()
    assert unit["status"] == "available" and unit["incident_id"] is None
    assert r.json()["units"][0]["released_at"] is not None

    timeline = client.get(f"/api/v1/incidents/{inc['id']}/timeline", headers=west).json()
    actions = [(e["action"], (e["data"] or {}).get("to")) for e in timeline]
    assert actions == [
        ("anwang.dispatch.incident.created", None),
        ("anwang.dispatch.unit.status_changed", "dispatched"),
        ("anwang.dispatch.incident.assigned", None),
        ("anwang.dispatch.unit.status_changed", "en_route"),
        ("anwang.dispatch.incident.updated", None),
        ("anwang.dispatch.unit.status_changed", "on_scene"),
        ("anwang.dispatch.incident.updated", None),
        ("anwang.dispatch.unit.status_changed", "available"),
        ("anwang.dispatch.incident.cleared", None),
    ]
    assert timeline[0]["actor"] == "west.dispatcher"
    assert timeline[3]["actor"] == "west.officer"
    with kit.uow() as s:
        assert audit.verify(s).ok

    # a cleared incident takes no more units and cannot be cleared again
    r = client.post(f"/api/v1/incidents/{inc['id']}/assign", json={"unit_id": car}, headers=west)
    assert r.status_code == 409 and r.json()["code"] == "anwang.dispatch.incident_closed"
    r = client.post(f"/api/v1/incidents/{inc['id']}/status", json={"status": "cleared"},
                    headers=west)
    assert r.status_code == 409 and r.json()["code"] == "anwang.dispatch.invalid_transition"


def test_a_unit_assigned_twice_is_refused_and_nothing_half_made(
    client: TestClient, kit: Kit, auth: Any
) -> None:
    car = kit.unit("巡201", "patrol_car", WEST, 11, at=utcnow())
    west = auth("west.dispatcher")
    a = _incident(client, west, kit, WEST, 12)
    b = _incident(client, west, kit, WEST, 13)
    assert client.post(f"/api/v1/incidents/{a['id']}/assign", json={"unit_id": car},
                       headers=west).status_code == 200
    with kit.uow() as s:
        audit_rows = s.scalar(select(func.count()).select_from(audit.AuditEntry))
    for target in (b, a):
        r = client.post(f"/api/v1/incidents/{target['id']}/assign", json={"unit_id": car},
                        headers=west)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "anwang.dispatch.unit_not_available"
    with kit.uow() as s:
        assert s.get(Incident, b["id"]).status == "received"
        assert s.get(Incident, b["id"]).dispatched_at is None
        assert s.scalar(select(func.count()).select_from(Assignment)) == 1
        assert s.get(Unit, car).incident_id == a["id"]
        assert s.scalar(select(func.count()).select_from(audit.AuditEntry)) == audit_rows

    r = client.post(f"/api/v1/incidents/{b['id']}/assign", json={"unit_id": "nobody"},
                    headers=west)
    assert r.status_code == 404 and r.json()["code"] == "anwang.dispatch.unit_not_found"


def test_units_released_before_arrival_return_the_incident_to_the_queue(
    client: TestClient, kit: Kit, auth: Any
) -> None:
    car = kit.unit("巡301", "patrol_car", WEST, 21, at=utcnow())
    west = auth("west.dispatcher")
    inc = _incident(client, west, kit, WEST, 22)
    client.post(f"/api/v1/incidents/{inc['id']}/assign", json={"unit_id": car}, headers=west)
    r = client.post(f"/api/v1/units/{car}/status", json={"status": "available",
                                                         "reason": "diverted"}, headers=west)
    assert r.status_code == 200
    assert client.get(f"/api/v1/incidents/{inc['id']}", headers=west).json()["status"] == \
        "received"
    r = client.post(f"/api/v1/units/{car}/status", json={"status": "on_scene"}, headers=west)
    assert r.status_code == 409 and r.json()["code"] == "anwang.dispatch.invalid_transition"


def test_retries_and_bad_input(client: TestClient, kit: Kit, auth: Any) -> None:
    west = auth("west.dispatcher")
    first = _incident(client, west, kit, WEST, 30, external_ref="110-20261128-0001")
    lat, lon = kit.city.point(WEST, 30)
    again = client.post("/api/v1/incidents", headers=west, json={
        "type": "burglary", "lat": lat, "lon": lon, "external_ref": "110-20261128-0001"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    with kit.uow() as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 1

    def refused(body: dict[str, Any], status: int = 422) -> dict[str, Any]:
        r = client.post("/api/v1/incidents", json=body, headers=west)
        assert r.status_code == status, r.text
        return dict(r.json())

    p = refused({"type": "burglary", "lat": 10.0, "lon": 10.0})  # far from every road
    assert p["errors"][0]["field"] == "lat/lon"
    assert refused({"type": "alien_landing", "lat": lat, "lon": lon})["errors"][0]["field"] == \
        "type"
    assert refused({"type": "theft", "lat": lat})["errors"][0]["field"] == "lon"
    r = refused({"type": "theft", "lat": lat, "lon": lon, "priority": 7})
    assert any(e["field"].endswith("priority") for e in r["errors"])
    future = (utcnow() + timedelta(hours=1)).isoformat()
    assert refused({"type": "theft", "lat": lat, "lon": lon, "received_at": future}
                   )["errors"][0]["field"] == "received_at"
    elat, elon = kit.city.point(EAST, 3)
    r = refused({"type": "theft", "lat": elat, "lon": elon}, status=403)
    assert r["code"] == "anwang.dispatch.outside_jurisdiction"
    with kit.uow() as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 1


def test_a_dispatcher_sees_only_their_district(client: TestClient, kit: Kit, auth: Any) -> None:
    west, east, boss = auth("west.dispatcher"), auth("east.dispatcher"), auth("city.commander")
    mine = _incident(client, west, kit, WEST, 40)
    theirs = _incident(client, east, kit, EAST, 41)
    kit.unit("东巡1", "patrol_car", EAST, 42, at=utcnow())

    ids = {i["id"] for i in client.get("/api/v1/incidents", headers=west).json()}
    assert ids == {mine["id"]}
    assert {i["id"] for i in client.get("/api/v1/incidents", headers=boss).json()} == {
        mine["id"], theirs["id"]}
    for path in ("", "/recommendations", "/timeline"):
        r = client.get(f"/api/v1/incidents/{theirs['id']}{path}", headers=west)
        assert r.status_code == 404, path
    r = client.post(f"/api/v1/incidents/{theirs['id']}/assign", json={"unit_id": "东巡1"},
                    headers=west)
    assert r.status_code == 404
    # east's unit is not west's to send, nor listed
    assert client.get("/api/v1/units", headers=west).json() == []
    r = client.post(f"/api/v1/incidents/{mine['id']}/assign", json={"unit_id": "东巡1"},
                    headers=west)
    assert r.status_code == 404 and r.json()["code"] == "anwang.dispatch.unit_not_found"
    # and roles without dispatch rights see nothing at all
    grid = auth("grid.worker")
    assert client.get("/api/v1/incidents", headers=grid).status_code == 403
    assert client.get("/api/v1/units", headers=grid).status_code == 403
