"""What every real-browser test shares: Debian's Chromium, a live server in a thread, the
sign-in form, page-error capture and a tiny city to draw.

The ``browser`` fixture itself (one Chromium for the whole run) is in ``conftest.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anwang.core.events import Event
from tests.conftest import services_required

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SHOTS = Path("/tmp/anwang-shots")
PASSWORD = "correct horse battery"
DESKTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> None:
    """Skip without Debian's Chromium (fail under ``ANWANG_REQUIRE_SERVICES=1``)."""
    if CHROMIUM.exists():
        return
    msg = f"{CHROMIUM} is missing: install Debian's chromium package to run browser tests"
    if services_required():
        pytest.fail(msg + " (ANWANG_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """An app served by uvicorn in a daemon thread of the test process."""

    url: str
    app: Any
    thread: threading.Thread
    server: Any

    @classmethod
    def start(cls, app: Any, *, name: str = "anwang-live-server") -> LiveServer:
        import uvicorn

        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws="none",
            lifespan="on", timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, name=name, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the test server did not start")
            time.sleep(0.05)
        return cls(f"http://127.0.0.1:{port}", app, thread, server)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def publish(self, event: Event) -> None:
        self.app.state.anwang.bus.publish_threadsafe(event)


class PageErrors:
    """Console errors (CSP violations land there too) and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.items: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.items.append(m.text))
        page.on("pageerror", lambda e: self.items.append(str(e)))


@dataclass
class DemoCity:
    """The demo city's roads and jurisdictions, ready for a live server."""

    settings: Any
    db: Any
    city: Any
    graph: Any


def demo_city(data_dir: Path, seed: int = 7) -> DemoCity:
    """The demo city of ``seed`` in ``data_dir`` as the server loads it: its road graph
    (the CSR file and the roads drawn on maps) and a SQLite database with every table and
    the city's jurisdictions. The caller disposes of ``db``."""
    import json

    import anwang.schema  # noqa: F401  (every table on Base.metadata)
    from anwang.auth import service as auth_service
    from anwang.core.db import Base, Database
    from anwang.core.scope import Scope
    from anwang.demo.city import generate_city, jurisdictions_to_geojson
    from anwang.roads.graph import RoadGraph
    from anwang.roads.service import GRAPH_FILE
    from anwang.settings import Settings

    settings = Settings(env="test", data_dir=data_dir,
                        secret_key="browser-test-secret-0123456789")
    city = generate_city(seed)
    graph = RoadGraph.from_road_network(city.roads)
    graph.save(data_dir / GRAPH_FILE)
    (data_dir / "roads.geojson").write_text(
        json.dumps(city.roads.to_geojson_lines(max_features=3000)), encoding="utf-8")
    db = Database(settings.resolved_database_url)
    Base.metadata.create_all(db.engine)
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.load_jurisdictions(s, feature_collection=jurisdictions_to_geojson(
            city.jurisdictions), actor="test")
    return DemoCity(settings, db, city, graph)


def login(page: Any, base: str, username: str, *, password: str = PASSWORD,
          wait: bool = False) -> None:
    """Sign in through the form (``wait``: until the next page has loaded)."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form.login-form button[type=submit]")
    if wait:
        page.wait_for_load_state()


def wait_map(page: Any) -> dict[str, Any]:
    """Wait for the dashboard map to have drawn its layers; its counters."""
    page.wait_for_function(
        "() => window.anwangMapStats && window.anwangMapStats.ready", timeout=10_000
    )
    stats: dict[str, Any] = page.evaluate("window.anwangMapStats")
    return stats


def _square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _feature(code: str, level: str, parent: str | None, geom: dict[str, Any], name: str,
             name_en: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geom,
            "properties": {"code": code, "level": level, "parent": parent, "name": name,
                           "name_en": name_en, **extra}}


def city_tree() -> dict[str, Any]:
    """A city around 31.78N 119.95E: 2 districts, a station in each, 2 grids per station."""
    w, e, s, n, mid = 119.85, 120.05, 31.72, 31.84, 119.95
    f, sq = _feature, _square
    return {"type": "FeatureCollection", "features": [
        f("3204", "city", None, sq(w, s, e, n), "示范市", "Demo City"),
        f("320402", "district", "3204", sq(w, s, mid, n), "天宁区", "Tianning District"),
        f("320404", "district", "3204", sq(mid, s, e, n), "钟楼区", "Zhonglou District"),
        f("32040201", "station", "320402", sq(w, s, mid, 31.78), "红梅派出所",
          "Hongmei Station", station_point=[119.9, 31.75]),
        f("32040401", "station", "320404", sq(mid, s, e, 31.78), "南大街派出所",
          "Nandajie Station", station_point=[120.0, 31.75]),
        f("3204020101", "grid", "32040201", sq(w, s, 119.9, 31.78), "红梅一网格", "Hongmei 1"),
        f("3204020102", "grid", "32040201", sq(119.9, s, mid, 31.78), "红梅二网格", "Hongmei 2"),
        f("3204040101", "grid", "32040401", sq(mid, s, 120.0, 31.78), "南大街一网格",
          "Nandajie 1"),
        f("3204040102", "grid", "32040401", sq(120.0, s, e, 31.78), "南大街二网格",
          "Nandajie 2"),
    ]}


def roads() -> dict[str, Any]:
    """Three named roads across :func:`city_tree`, as the dashboard's road layer."""
    def line(cls: str, name: str, coords: list[list[float]]) -> dict[str, Any]:
        return {"type": "Feature", "properties": {"highway": cls, "name": name},
                "geometry": {"type": "LineString", "coordinates": coords}}
    return {"type": "FeatureCollection", "features": [
        line("trunk", "延陵路", [[119.85, 31.79], [120.05, 31.79]]),
        line("primary", "和平路", [[119.95, 31.72], [119.95, 31.84]]),
        line("residential", "局前街", [[119.9, 31.74], [119.93, 31.77], [119.97, 31.8]]),
    ]}
