"""Communities and devices over the API: registration, scope, audit, keys, CSV import and
rule sets."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.integration.communities.conftest import EAST_GRID, WEST_GRID, Kit, square


def test_register_a_community_and_find_its_grid(client: TestClient, as_user: Any,
                                                kit: Kit) -> None:
    body = {"code": "W2", "name": "阳光花园", "polygon": square(119.87, 31.74, 119.88, 31.75),
            "address": "西区阳光路 8 号",
            "contacts": [{"name": "李网格员", "role": "grid_worker", "phone": "138 0000 0000"}]}
    r = client.post("/api/v1/communities", json=body, headers=as_user("admin"))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["grid"] == WEST_GRID and out["polygon"]["type"] == "Polygon"
    assert 31.74 < out["center_lat"] < 31.75
    again = client.post("/api/v1/communities", json=body, headers=as_user("admin"))
    assert again.status_code == 409
    assert ("anwang.communities.community.created", "W2") in kit.audit()

    r = client.patch("/api/v1/communities/W2", json={"name": "阳光花园二期"},
                     headers=as_user("admin"))
    assert r.status_code == 200 and r.json()["name"] == "阳光花园二期"
    assert ("anwang.communities.community.updated", "W2") in kit.audit()


def test_bad_communities_are_refused_with_the_field(client: TestClient, as_user: Any,
                                                    kit: Kit) -> None:
    cases = [
        ({"code": "X", "name": "x", "polygon": {"type": "Point", "coordinates": [1, 2]}},
         "polygon"),
        ({"code": "X", "name": "x", "polygon": square(119.85, 31.75, 119.86, 31.76),
          "grid": "nope"}, "grid"),
        ({"code": "bad code!", "name": "x", "polygon": square(1, 1, 2, 2)}, "code"),
    ]
    for body, field in cases:
        r = client.post("/api/v1/communities", json=body, headers=as_user("admin"))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text
    assert client.post("/api/v1/communities", json=cases[0][0],
                       headers=as_user("west.officer")).status_code == 403


def test_devices_register_with_a_key_shown_once(client: TestClient, as_user: Any,
                                                kit: Kit) -> None:
    body = {"id": "cp-100", "kind": "charging_pile", "adapter": "voltpile",
            "vendor_model": "VP-7K", "lat": 31.755, "lon": 119.855, "community": "W1",
            "building": "3", "floor": 1, "installed_on": "2026-06-01", "heartbeat_s": 120}
    r = client.post("/api/v1/devices", json=body, headers=as_user("admin"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("dk_") and created["jurisdiction_code"] == WEST_GRID
    got = client.get("/api/v1/devices/cp-100", headers=as_user("west.officer"))
    assert got.status_code == 200
    view = got.json()
    assert "key" not in view and "credential_hash" not in view
    assert view["state"] == "never" and view["last_seen_at"] is None
    assert client.post("/api/v1/devices", json=body,
                       headers=as_user("admin")).status_code == 409
    wrong = dict(body, id="cp-101", adapter="sentry_smoke")
    r = client.post("/api/v1/devices", json=wrong, headers=as_user("admin"))
    assert r.status_code == 422 and "adapter" in r.text

    # A new key replaces the old one.
    r = client.post("/api/v1/devices/cp-100/credential", headers=as_user("admin"))
    assert r.status_code == 200 and r.json()["key"] != created["key"]

    r = client.delete("/api/v1/devices/cp-100", headers=as_user("admin"))
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.get("/api/v1/devices/cp-100",
                      headers=as_user("admin")).json()["state"] == "inactive"
    assert [a for a, s in kit.audit() if s == "cp-100"] == [
        "anwang.communities.device.registered",
        "anwang.communities.device.credential_issued",
        "anwang.communities.device.updated",
    ]


def test_people_see_only_their_jurisdiction(client: TestClient, as_user: Any, kit: Kit) -> None:
    kit.device("w-1", community="W1")
    kit.device("e-1", community="E1")
    west = client.get("/api/v1/devices", headers=as_user("west.officer")).json()
    assert [d["id"] for d in west] == ["w-1"]
    assert client.get("/api/v1/devices/e-1", headers=as_user("west.officer")).status_code == 404
    assert [c["code"] for c in client.get(
        "/api/v1/communities", headers=as_user("east.officer")).json()] == ["E1"]
    assert {d["id"] for d in client.get(
        "/api/v1/devices", headers=as_user("city.dispatcher")).json()} == {"w-1", "e-1"}
    assert client.get("/api/v1/devices", headers=as_user("the.auditor")).status_code == 403
    east = client.get("/api/v1/communities/E1", headers=as_user("admin")).json()
    assert east["grid"] == EAST_GRID


CSV = """id,kind,community,lat,lon,adapter,building,floor,heartbeat_s
sm-1,smoke_alarm,W1,31.755,119.855,sentry_smoke,1,6,300
sm-2,smoke_alarm,W1,31.755,119.856,nbiot_smoke,1,7,
bad-1,smoke_alarm,W1,95,119.855,,,,
bad-2,toaster,W1,31.755,119.855,,,,
bad-3,smoke_alarm,NOWHERE,31.755,119.855,,,,
cp-1,charging_pile,E1,31.755,120.005,ocpp16,,,60
"""


def test_csv_import_keeps_every_good_row(client: TestClient, as_user: Any, kit: Kit) -> None:
    r = client.post("/api/v1/devices/import", content=CSV.encode(),
                    headers={**as_user("admin"), "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["created"], out["updated"], out["rejected"]) == (3, 0, 3)
    by_id = {row["id"]: row for row in out["rows"]}
    assert by_id["sm-1"]["key"].startswith("dk_")
    assert by_id["bad-1"]["errors"][0]["field"] == "lat"
    assert by_id["bad-2"]["errors"][0]["field"] == "kind"
    assert by_id["bad-3"]["status"] == "rejected"
    # The same file again: nothing new, no keys handed out again.
    again = client.post("/api/v1/devices/import", content=CSV.encode(),
                        headers={**as_user("admin"), "content-type": "text/csv"}).json()
    assert (again["created"], again["updated"]) == (0, 0)
    assert all(row.get("key") is None for row in again["rows"])
    ids = {d["id"] for d in client.get("/api/v1/devices", headers=as_user("admin")).json()}
    assert ids == {"sm-1", "sm-2", "cp-1"}
    changed = CSV.replace("1,6,300", "1,8,300")
    third = client.post("/api/v1/devices/import", content=changed.encode(),
                        headers={**as_user("admin"), "content-type": "text/csv"}).json()
    assert third["updated"] == 1
    assert client.get("/api/v1/devices/sm-1", headers=as_user("admin")).json()["floor"] == 8
    bad_header = client.post("/api/v1/devices/import", content=b"id,colour\n1,red\n",
                             headers={**as_user("admin"), "content-type": "text/csv"})
    assert bad_header.status_code == 422 and "header" in bad_header.text


def test_rules_change_per_kind_and_per_community(client: TestClient, as_user: Any,
                                                 kit: Kit) -> None:
    r = client.get("/api/v1/device-rules/charging_pile", headers=as_user("west.officer"))
    assert r.status_code == 200
    rules = {x["id"]: x for x in r.json()["rules"]}
    assert rules["overheat"]["above"] == 80 and rules["overheat"]["hold_s"] == 30

    r = client.put("/api/v1/device-rules/charging_pile", json=[{"id": "overheat", "above": 75}],
                   headers=as_user("admin"))
    assert r.status_code == 200, r.text
    assert {x["id"]: x for x in r.json()["rules"]}["overheat"]["above"] == 75
    r = client.put("/api/v1/communities/W1/rules/charging_pile",
                   json=[{"id": "overheat", "hold_s": 10},
                         {"id": "temperature_rise", "enabled": False}],
                   headers=as_user("admin"))
    assert r.status_code == 200, r.text
    w1 = {x["id"]: x for x in r.json()["rules"]}
    assert (w1["overheat"]["above"], w1["overheat"]["hold_s"]) == (75, 10)
    assert w1["temperature_rise"]["enabled"] is False
    e1 = {x["id"]: x for x in client.get("/api/v1/communities/E1/rules/charging_pile",
                                         headers=as_user("admin")).json()["rules"]}
    assert (e1["overheat"]["above"], e1["overheat"]["hold_s"]) == (75, 30)

    r = client.put("/api/v1/device-rules/charging_pile", json=[{"id": "overheat", "hold_s": -5}],
                   headers=as_user("admin"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "rules[0].hold_s"
    assert client.put("/api/v1/device-rules/charging_pile", json=[],
                      headers=as_user("west.officer")).status_code == 403
    assert ("anwang.communities.rules.changed", "charging_pile/W1") in kit.audit()
