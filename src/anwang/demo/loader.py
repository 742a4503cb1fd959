"""Loads the generated demo city into a database and a data directory.

``anwang demo`` calls :func:`load_demo`: it brings the schema up to date, generates the
city for the seed (skipped when the data directory already holds that very city),
loads the jurisdiction tree, writes the road network (``roads.npz``, the compact
routing arrays, and ``roads.geojson``, the lines the map draws) and creates one demo
login per role. Re-running it is safe: every step is an upsert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from anwang.auth import service as auth_service
from anwang.auth.models import Jurisdiction, User
from anwang.checkpoints.demo import load_demo_checkpoints
from anwang.communities import demo as communities_demo
from anwang.core import migrate
from anwang.core.db import Database
from anwang.demo.city import (
    DemoCity,
    generate_city,
    jurisdictions_to_geojson,
    save_roads_npz,
)
from anwang.dispatch import demo as dispatch_demo
from anwang.settings import Settings
from anwang.watchlist import demo as watchlist_demo

ACTOR = "demo-loader"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    jurisdiction: str | None


def _demo_logins(city: dict[str, Any]) -> list[DemoLogin]:
    """One login per human role; the scoped ones sit in the first district's first
    station and grid, so the difference in what they see is visible at once."""
    district, station, grid = city["district"], city["station"], city["grid"]
    plan = [
        ("admin", "admin", None),
        ("commander", "commander", None),
        ("dispatcher", "dispatcher", district),
        ("analyst", "analyst", None),
        ("officer", "officer", station),
        ("gridworker", "grid_worker", grid),
        ("business", "business", district),
        ("auditor", "auditor", None),
    ]
    return [DemoLogin(u, f"{u}-demo-2026", r, j) for u, r, j in plan]


def _marker(settings: Settings, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "center": [settings.demo_center_lat, settings.demo_center_lon],
        "format": 1,
    }


def load_demo(settings: Settings, *, seed: int, console: Console | None = None) -> list[DemoLogin]:
    console = console or Console(stderr=True)
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    console.print(f"database: {url}")
    migrate.upgrade(url)

    marker_path = data / "demo-city.json"
    want = _marker(settings, seed)
    db = Database(url)
    try:
        with db.unit_of_work(readonly=True) as s:
            have_tree = (s.scalar(select(func.count()).select_from(Jurisdiction)) or 0) > 0
        fresh = not (
            have_tree
            and marker_path.exists()
            and json.loads(marker_path.read_text()).get("city") == want
            and (data / "roads.npz").exists()
            and (data / "roads.geojson").exists()
        )
        if fresh:
            city = _generate(settings, seed, console)
            summary = _write(db, city, settings, console)
            marker_path.write_text(json.dumps({"city": want, "summary": summary}, indent=2))
        else:
            summary = json.loads(marker_path.read_text())["summary"]
            console.print(f"demo city for seed {seed} already loaded in {data}")
        logins = _demo_logins(summary)
        with db.unit_of_work() as s:
            for login in logins:
                exists = s.scalar(select(User.id).where(User.username == login.username))
                if exists is None:
                    auth_service.create_user(
                        s, username=login.username, password=login.password, role=login.role,
                        jurisdiction_code=login.jurisdiction, actor=ACTOR,
                        display_name=f"Demo {login.role}",
                    )
            watchlist_demo.load_demo_entries(s, owner="analyst", approver="commander")
        dispatch_demo.load_demo(db, settings, seed=seed, console=console)
        load_demo_checkpoints(db, settings, seed=seed, console=console)
        communities_demo.load_demo(db, settings, seed=seed, console=console)
    finally:
        db.dispose()
    console.print(
        f"city: {summary['area_km2']:.0f} km², {summary['districts']} districts, "
        f"{summary['stations']} police stations, {summary['grids']} grids, "
        f"{summary['road_nodes']} road nodes, {summary['road_edges']} road segments"
    )
    return logins


def _generate(settings: Settings, seed: int, console: Console) -> DemoCity:
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task("generating the city", total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=f"city: {stage}")

        return generate_city(
            seed, (settings.demo_center_lat, settings.demo_center_lon), progress=report
        )


def _write(db: Database, city: DemoCity, settings: Settings, console: Console) -> dict[str, Any]:
    data = settings.data_dir
    collection = jurisdictions_to_geojson(city.jurisdictions)
    with console.status("loading jurisdictions"), db.unit_of_work() as s:
        n = auth_service.load_jurisdictions(s, feature_collection=collection, actor=ACTOR)
    (data / "jurisdictions.geojson").write_text(json.dumps(collection, ensure_ascii=False))
    with console.status("writing the road network"):
        save_roads_npz(city.roads, data / "roads.npz")
        lines = city.roads.to_geojson_lines()
        (data / "roads.geojson").write_text(json.dumps(lines, separators=(",", ":")))
    by_level: dict[str, list[str]] = {}
    for j in city.jurisdictions:
        by_level.setdefault(j.level, []).append(j.code)
    first_district = sorted(by_level["district"])[0]
    first_station = sorted(c for c in by_level["station"] if c.startswith(first_district))[0]
    first_grid = sorted(c for c in by_level["grid"] if c.startswith(first_station))[0]
    console.print(f"loaded {n} jurisdictions")
    return {
        "area_km2": city.area_km2,
        "districts": len(by_level["district"]),
        "stations": len(by_level["station"]),
        "grids": len(by_level["grid"]),
        "road_nodes": int(len(city.roads.lat)),
        "road_edges": int(len(city.roads.src)),
        "road_lines": len(lines["features"]),
        "district": first_district,
        "station": first_station,
        "grid": first_grid,
    }
