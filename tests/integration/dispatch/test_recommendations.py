"""Recommendations on the demo city's roads, checked against one route search per unit;
stale positions; positions by API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anwang.core.events import utcnow
from anwang.dispatch.models import UnitPosition
from anwang.roads.routing import route_nodes, snapper_for

from .conftest import WEST, Kit


def test_ranking_agrees_with_a_route_search_per_unit(
    client: TestClient, kit: Kit, auth: Any
) -> None:
    now = utcnow()
    kinds = ["patrol_car", "motorcycle", "foot_patrol", "quick_response_team", "swat"]
    units = {}
    for i in range(15):
        units[f"巡{i:02d}"] = kit.unit(f"巡{i:02d}", kinds[i % 5], WEST, 100 + i,
                                      at=now - timedelta(seconds=20))
    west = auth("west.dispatcher")
    lat, lon = kit.city.point(WEST, 777)
    inc = client.post("/api/v1/incidents", headers=west,
                      json={"type": "traffic_accident", "lat": lat, "lon": lon}).json()
    r = client.get(f"/api/v1/incidents/{inc['id']}/recommendations?limit=50", headers=west)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit_kinds"] == ["patrol_car", "motorcycle"]
    got = body["units"]
    assert {u["kind"] for u in got} <= {"patrol_car", "motorcycle"}
    assert len(got) == 6 and body["unsuitable_kind"] == 9

    # brute force: one point-to-point search per unit on the same graph
    g = kit.city.graph
    snap = snapper_for(g)
    target = snap.snap(lat, lon).node
    expected = []
    for u in got:
        start = snap.snap(*u["start"]).node
        r_ = route_nodes(g, start, target, by="time")
        expected.append((r_.duration_s, u["call_sign"], r_.distance_m))
    expected.sort()
    assert [c for _, c, _ in expected] == [u["call_sign"] for u in got]
    for (t, _, d), u in zip(expected, got, strict=True):
        assert u["eta_s"] == pytest.approx(t, abs=0.1)
        assert u["distance_m"] == pytest.approx(d, rel=1e-4)
        coords = u["route"]["coordinates"]
        assert coords[-1] == pytest.approx([round(g.lon[target], 6), round(g.lat[target], 6)])
        assert u["origin"] == "position" and u["stale"] is False
    etas = [u["eta_s"] for u in got]
    assert etas == sorted(etas)
    share = body["coverage"]["share_now"]
    assert 0 < share <= 1
    assert all(0 <= u["coverage_loss"]["share"] <= share for u in got)
    assert body["coverage"]["minutes"] == 3


def test_coverage_loss_is_what_only_that_unit_reaches(
    client: TestClient, kit: Kit, auth: Any
) -> None:
    now = utcnow()
    # two cars on the same spot cover for each other; a third stands alone elsewhere
    a = kit.unit("甲", "patrol_car", WEST, 200, at=now)
    b = kit.unit("乙", "patrol_car", WEST, 200, at=now)
    c = kit.unit("丙", "patrol_car", WEST, 901, at=now)
    west = auth("west.dispatcher")
    lat, lon = kit.city.point(WEST, 202)
    inc = client.post("/api/v1/incidents", headers=west,
                      json={"type": "theft", "lat": lat, "lon": lon}).json()
    body = client.get(f"/api/v1/incidents/{inc['id']}/recommendations", headers=west).json()
    loss = {u["unit_id"]: u["coverage_loss"]["share"] for u in body["units"]}
    assert loss[a] == 0 and loss[b] == 0 and loss[c] > 0
    # after sending c away the city keeps exactly the rest
    share_before = body["coverage"]["share_now"]
    client.post(f"/api/v1/incidents/{inc['id']}/assign", json={"unit_id": c}, headers=west)
    lat2, lon2 = kit.city.point(WEST, 203)
    inc2 = client.post("/api/v1/incidents", headers=west,
                       json={"type": "theft", "lat": lat2, "lon": lon2}).json()
    after = client.get(f"/api/v1/incidents/{inc2['id']}/recommendations", headers=west).json()
    assert after["coverage"]["share_now"] == pytest.approx(share_before - loss[c], abs=1e-5)


def test_a_stale_position_falls_back_to_the_home_post_and_is_flagged(
    client: TestClient, kit: Kit, auth: Any
) -> None:
    now = utcnow()
    post = kit.post("KF-T-1", WEST, 300)
    fresh = kit.unit("鲜", "patrol_car", WEST, 301, at=now - timedelta(minutes=2))
    stale = kit.unit("旧", "patrol_car", WEST, 0, home_post=post, at=now - timedelta(hours=2),
                     position_k=555)
    never = kit.unit("无", "motorcycle", WEST, 0, home_post=post)
    west = auth("west.dispatcher")
    lat, lon = kit.city.point(WEST, 302)
    inc = client.post("/api/v1/incidents", headers=west,
                      json={"type": "theft", "lat": lat, "lon": lon}).json()
    body = client.get(f"/api/v1/incidents/{inc['id']}/recommendations", headers=west).json()
    by_id = {u["unit_id"]: u for u in body["units"]}
    plat, plon = kit.city.point(WEST, 300)
    assert by_id[stale]["origin"] == "home" and by_id[stale]["position"] == "stale"
    assert by_id[stale]["stale"] is True and by_id[stale]["position_age_s"] > 3600
    assert by_id[stale]["start"] == pytest.approx([round(plat, 6), round(plon, 6)])
    assert by_id[never]["position"] == "missing" and by_id[never]["stale"] is True
    assert by_id[never]["position_age_s"] is None
    assert by_id[fresh]["origin"] == "position" and by_id[fresh]["stale"] is False
    # units starting at the same home post have the same ETA
    assert by_id[stale]["eta_s"] == by_id[never]["eta_s"]

    r = client.post(f"/api/v1/incidents/{inc['id']}/assign", json={"unit_id": stale},
                    headers=west)
    assert r.json()["units"][0]["stale"] is True and r.json()["units"][0]["origin"] == "home"


def test_positions_by_api(client: TestClient, kit: Kit, auth: Any) -> None:
    car = kit.unit("定位1", "patrol_car", WEST, 400)
    officer = auth("west.dispatcher")
    lat, lon = kit.city.point(WEST, 401)
    at = utcnow().replace(microsecond=0)
    body = {"lat": lat, "lon": lon, "at": at.isoformat(), "speed_kmh": 32.5}
    for _ in range(2):  # a retried report is stored once
        r = client.post(f"/api/v1/units/{car}/position", json=body, headers=officer)
        assert r.status_code == 200, r.text
    unit = r.json()
    assert unit["lat"] == pytest.approx(lat) and unit["position_stale"] is False
    assert unit["position_age_s"] is not None and unit["position_age_s"] < 120
    with kit.uow() as s:
        assert s.scalar(select(func.count()).select_from(UnitPosition)) == 1

    # an older report is kept but does not move the unit
    olat, olon = kit.city.point(WEST, 402)
    r = client.post(f"/api/v1/units/{car}/position", headers=officer, json={
        "lat": olat, "lon": olon, "at": (at - timedelta(minutes=5)).isoformat()})
    assert r.status_code == 200 and r.json()["lat"] == pytest.approx(lat)

    future = (utcnow() + timedelta(minutes=10)).isoformat()
    r = client.post(f"/api/v1/units/{car}/position", headers=officer,
                    json={"lat": lat, "lon": lon, "at": future})
    assert r.status_code == 422
    assert r.json()["code"] == "anwang.dispatch.position_in_future"
    assert r.json()["errors"] == [{"field": "at", "reason": "is in the future"}]
    r = client.post(f"/api/v1/units/{car}/position", headers=officer,
                    json={"lat": lat, "lon": lon, "at": "2026-11-28T08:00:00"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "at"
    r = client.post(f"/api/v1/units/{car}/position", headers=officer, json={"lat": 95, "lon": 1})
    assert r.status_code == 422
    r = client.post("/api/v1/units/nobody/position", headers=officer,
                    json={"lat": lat, "lon": lon})
    assert r.status_code == 404
    with kit.uow() as s:
        assert s.scalar(select(func.count()).select_from(UnitPosition)) == 2
    # the other district's dispatcher cannot move this unit
    r = client.post(f"/api/v1/units/{car}/position", headers=auth("east.dispatcher"),
                    json={"lat": lat, "lon": lon})
    assert r.status_code == 404


def test_recommendations_need_a_road_network(client: TestClient, kit: Kit, auth: Any) -> None:
    west = auth("west.dispatcher")
    lat, lon = kit.city.point(WEST, 500)
    inc = client.post("/api/v1/incidents", headers=west,
                      json={"type": "theft", "lat": lat, "lon": lon}).json()
    (kit.settings.data_dir / "roads.graph.npz").unlink()
    r = client.get(f"/api/v1/incidents/{inc['id']}/recommendations", headers=west)
    assert r.status_code == 503 and r.json()["code"] == "anwang.roads.no_graph"
