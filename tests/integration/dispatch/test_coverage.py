"""Posts, demand layers, coverage shares, isochrones and re-siting through the API."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point, shape

from anwang.roads.routing import reachable_within, snapper_for

from .conftest import EAST, WEST, Kit


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


@pytest.fixture
def posts(client: TestClient, kit: Kit, auth: Any) -> list[str]:
    """Six quick-response posts (four west, two east) and a key location, by CSV."""
    rows: list[list[Any]] = [["code", "name", "kind", "lat", "lon", "circle", "staffed_hours"]]
    for i, (district, k) in enumerate([(WEST, 10), (WEST, 20), (WEST, 30), (WEST, 40),
                                       (EAST, 10), (EAST, 20)]):
        lat, lon = kit.city.point(district, k)
        rows.append([f"KF-{i:02d}", f"快反{i}", "quick_response", lat, lon, f"圈{i // 2}", ""])
    lat, lon = kit.city.point(WEST, 50)
    rows.append(["ZD-01", "火车站", "key_location", lat, lon, "", "07:00-22:00"])
    r = client.post("/api/v1/posts/import", content=_csv(rows).encode(),
                    headers={**auth("city.commander"), "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 7, "updated": 0, "unchanged": 0, "errors": []}
    return [row[0] for row in rows[1:]]


def test_posts_crud_and_import(client: TestClient, kit: Kit, auth: Any, posts: list[str]) -> None:
    boss = auth("city.commander")
    # the same file again changes nothing; a bad line is reported, the good ones kept
    lat, lon = kit.city.point(WEST, 60)
    lat0, lon0 = kit.city.point(WEST, 10)
    rows = [["code", "name", "kind", "lat", "lon"],
            ["KF-00", "快反零号", "quick_response", lat0, lon0],
            ["KF-99", "新点", "quick_response", lat, lon], ["KF-98", "坏", "tower", lat, lon],
            ["KF-97", "坏", "quick_response", "north", lon],
            ["KF-96", "海上", "quick_response", 10.0, 10.0]]
    r = client.post("/api/v1/posts/import", content=_csv(rows).encode(),
                    headers={**boss, "content-type": "text/csv"})
    body = r.json()
    assert body["created"] == 1 and body["updated"] == 1
    assert [(e["line"], e["field"]) for e in body["errors"]] == [
        (4, "kind"), (5, "lat"), (6, "lat/lon")]

    listed = client.get("/api/v1/posts", headers=boss).json()
    assert {p["code"] for p in listed} == set(posts) | {"KF-99"}
    key = next(p for p in listed if p["code"] == "ZD-01")
    assert key["kind"] == "key_location" and key["staffed_hours"] == "07:00-22:00"
    assert len(key["h3_cell"]) == 15

    r = client.patch("/api/v1/posts/KF-99", headers=boss, json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    assert "KF-99" not in {p["code"] for p in client.get("/api/v1/posts", headers=boss).json()}
    r = client.post("/api/v1/posts", headers=boss, json={
        "code": "KF-01", "name": "重复", "kind": "quick_response", "lat": lat, "lon": lon})
    assert r.status_code == 409
    r = client.post("/api/v1/posts", headers=boss, json={
        "code": "KF-50", "name": "x", "kind": "quick_response", "lat": lat, "lon": lon,
        "staffed_hours": "25:00-03:00"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "staffed_hours"
    # dispatchers read posts but do not plan them; the west one sees the west's only
    west = auth("west.dispatcher")
    assert client.post("/api/v1/posts", headers=west, json={
        "code": "KF-51", "name": "x", "kind": "quick_response", "lat": lat, "lon": lon,
    }).status_code == 403
    assert {p["code"] for p in client.get("/api/v1/posts", headers=west).json()} == {
        "KF-00", "KF-01", "KF-02", "KF-03", "ZD-01"}
    export = client.get("/api/v1/posts.csv", headers=boss)
    assert export.status_code == 200 and export.text.startswith("code,name,kind,lat,lon")


def test_analysis_agrees_with_the_road_engine(
    client: TestClient, kit: Kit, auth: Any, posts: list[str]
) -> None:
    boss = auth("city.commander")
    r = client.get("/api/v1/coverage/analysis?minutes=1,3,5", headers=boss)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["layer"] is None and body["posts"] == 6
    shares = [t["share"] for t in body["thresholds"]]
    assert [t["minutes"] for t in body["thresholds"]] == [1, 3, 5]
    assert 0 < shares[0] < shares[1] < shares[2] < 1

    # the same share straight from the engine: nodes of the main component reached
    g = kit.city.graph
    main = g.largest_component_mask()
    listed = client.get("/api/v1/posts?kind=quick_response", headers=boss).json()
    nodes = [snapper_for(g).snap(p["lat"], p["lon"]).node for p in listed]
    reach = reachable_within(g, nodes, [180.0], combined=True)
    assert shares[1] == pytest.approx(float((reach.within(180.0) & main).sum() / main.sum()),
                                      abs=1e-6)
    districts = {d["code"]: d for d in body["thresholds"][1]["districts"]}
    assert districts[WEST]["share"] > 0 and districts[EAST]["share"] > 0
    assert districts["320406"]["share"] == 0  # no post there

    # a demand layer: all the weight at one post's door is fully covered
    lat, lon = kit.city.point(WEST, 10)
    r = client.put("/api/v1/coverage/demand/population", headers=boss, json={"points": [
        {"lat": lat, "lon": lon, "weight": 100}, {"lat": "x", "lon": 1},
        {"lat": 10.0, "lon": 10.0, "weight": 5}]})
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 2 and r.json()["errors"][0]["index"] == 1
    body = client.get("/api/v1/coverage/analysis", headers=boss).json()
    assert body["layer"] == "population" and body["layer_points_outside"] == 1
    assert [t["share"] for t in body["thresholds"]] == [1.0, 1.0, 1.0]

    iso = client.get("/api/v1/coverage/isochrones?minutes=1,3", headers=boss).json()
    assert len(iso["features"]) == 12 and iso["features"][0]["properties"]["minutes"] == 3
    one = client.get("/api/v1/coverage/isochrones?minutes=5&post=KF-00", headers=boss).json()
    assert len(one["features"]) == 1
    assert shape(one["features"][0]["geometry"]).contains(Point(lon, lat))
    both = client.get("/api/v1/coverage/isochrones?combined=true", headers=boss).json()
    assert [f["properties"]["minutes"] for f in both["features"]] == [5, 3, 1]
    areas = [shape(f["geometry"]).area for f in both["features"]]
    assert areas[0] > areas[1] > areas[2]
    for bad in ("minutes=0", "minutes=abc", "minutes=45"):
        r = client.get(f"/api/v1/coverage/analysis?{bad}", headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "minutes"
    assert client.get("/api/v1/coverage/analysis?layer=nothing",
                      headers=boss).status_code == 404
    assert client.get("/api/v1/coverage/analysis", headers=auth("grid.worker")).status_code == 403


def test_optimize_beats_todays_siting_and_explains_itself(
    client: TestClient, kit: Kit, auth: Any, posts: list[str]
) -> None:
    boss = auth("city.commander")
    r = client.post("/api/v1/coverage/optimize", headers=boss, json={
        "p": 6, "minutes": 3, "keep": ["KF-04"], "max_candidates": 300, "time_limit_s": 20})
    assert r.status_code == 200, r.text
    plan = r.json()
    for key in ("objective", "bound", "gap", "covered_share_before", "covered_share_after",
                "seconds", "sites", "moves", "plan_id"):
        assert key in plan
    assert len(plan["sites"]) == 6 and plan["candidates"]["existing"] == 6
    assert plan["covered_share_after"] >= plan["covered_share_before"]
    assert plan["objective"] <= plan["bound"] + 1e-6
    assert 0 <= plan["gap"] <= 0.01
    kept = [s for s in plan["sites"] if s["kept"]]
    assert [s["code"] for s in kept] == ["KF-04"]
    moved = [m for m in plan["moves"] if m["from"] and m["to"]]
    assert all(m["distance_m"] > 0 for m in moved)
    assert plan["newly_covered"]["weight"] >= 0
    assert {d["code"] for d in plan["districts"]} >= {WEST, EAST}

    # the objective is the covered demand: check it with the road engine
    g = kit.city.graph
    main = g.largest_component_mask()
    nodes = [snapper_for(g).snap(s["lat"], s["lon"]).node for s in plan["sites"]]
    reach = reachable_within(g, nodes, [180.0], combined=True)
    assert plan["objective"] == pytest.approx(float((reach.within(180.0) & main).sum()))

    geo = client.get(f"/api/v1/coverage/plans/{plan['plan_id']}?format=geojson", headers=boss)
    assert geo.status_code == 200
    kinds = [f["properties"].get("siting") for f in geo.json()["features"]]
    assert kinds.count("after") == 6 and kinds.count("before") == 6
    table = client.get(f"/api/v1/coverage/plans/{plan['plan_id']}?format=csv", headers=boss)
    assert table.text.splitlines()[0].startswith("siting,lat,lon")
    assert sum(1 for line in table.text.splitlines() if line.startswith("after,")) == 6
    listed = client.get("/api/v1/coverage/plans", headers=boss).json()
    assert [p["id"] for p in listed] == [plan["plan_id"]]
    assert np.isfinite(listed[0]["covered_share_after"])


def test_optimize_bad_input(client: TestClient, kit: Kit, auth: Any, posts: list[str]) -> None:
    boss = auth("city.commander")

    def refused(body: dict[str, Any]) -> tuple[str, str]:
        r = client.post("/api/v1/coverage/optimize", headers=boss,
                        json={"time_limit_s": 5, **body})
        assert r.status_code == 422, r.text
        return r.json()["errors"][0]["field"], r.json()["errors"][0]["reason"]

    assert refused({"p": 7, "generate": False})[0] == "p"  # only 6 candidates
    assert refused({"p": 2, "keep": ["KF-00", "KF-01", "KF-02"], "generate": False})[0] == "keep"
    assert refused({"p": 2, "keep": ["nope"]})[0] == "keep"
    assert refused({"p": 0})[0].endswith("p")
    assert refused({"p": 2, "candidates": [[10.0, 10.0]]})[0] == "candidates"
    # dispatchers may read coverage but not re-site posts
    assert client.post("/api/v1/coverage/optimize", headers=auth("west.dispatcher"),
                       json={"p": 2}).status_code == 403


def test_optimize_without_candidates(client: TestClient, kit: Kit, auth: Any) -> None:
    r = client.post("/api/v1/coverage/optimize", headers=auth("city.commander"),
                    json={"p": 1, "generate": False})
    assert r.status_code == 422
    assert r.json()["code"] == "anwang.dispatch.no_candidates"
