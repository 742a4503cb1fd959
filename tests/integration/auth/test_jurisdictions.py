"""Loading the jurisdiction tree, locating points, and jurisdiction scope over HTTP."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anwang.auth import service
from anwang.auth.models import Jurisdiction
from anwang.core.db import Database
from anwang.core.errors import ValidationFailed
from anwang.core.scope import Scope

if TYPE_CHECKING:
    from tests.integration.auth.conftest import AuthKit


def snapshot(db: Database) -> list[tuple[Any, ...]]:
    with db.unit_of_work() as s:
        rows = s.scalars(select(Jurisdiction).order_by(Jurisdiction.code)).all()
        return [
            (j.code, j.level, j.parent_code, j.name, j.name_en, j.geometry,
             j.centroid_lat, j.centroid_lon, j.point_lat, j.point_lon)
            for j in rows
        ]


def count(db: Database) -> int:
    with db.unit_of_work() as s:
        return int(s.scalar(select(func.count()).select_from(Jurisdiction)) or 0)


def test_load_is_idempotent_and_audited_once_per_load(db: Database, kit: AuthKit) -> None:
    assert kit.load_tree() == 5
    first = snapshot(db)
    assert kit.load_tree() == 5
    assert snapshot(db) == first
    assert kit.audit_actions().count("anwang.auth.jurisdictions.loaded") == 2
    by_code = {row[0]: row for row in first}
    assert by_code["3201"][6:8] == pytest.approx((32.0, 119.5))  # centroid (lat, lon)
    assert by_code["320101"][8:] == (31.5, 119.25)  # the station building
    assert by_code["32"][4] == "City"


def test_reload_updates_in_place(db: Database, kit: AuthKit) -> None:
    kit.load_tree()
    fc = kit.city_tree()
    fc["features"][1]["properties"]["name"] = "West district"
    kit.load_tree(fc)
    with db.unit_of_work() as s:
        assert service.get_jurisdiction(s, code="3201").name == "West district"
    assert count(db) == 5


def _refused(db: Database, fc: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as exc, db.unit_of_work() as s:
        service.load_jurisdictions(s, feature_collection=fc)
    return exc.value


def test_code_not_prefixed_by_parent_is_refused_and_nothing_written(
    db: Database, kit: AuthKit
) -> None:
    fc = kit.city_tree()
    fc["features"][4]["properties"]["code"] = "33010101"  # grid of 320101
    err = _refused(db, fc)
    assert [e.field for e in err.errors] == ["features[4].properties.code"]
    assert "features[4]" in err.detail
    assert count(db) == 0
    assert kit.audit_actions() == []


@pytest.mark.parametrize(
    ("index", "change", "field"),
    [
        (4, {"parent": "999"}, "features[4].properties.parent"),
        (1, {"level": "grid"}, "features[3].properties.parent"),  # a station inside a grid
        (1, {"level": "county"}, "features[1].properties.level"),
        (0, {"parent": "3201"}, "features[0].properties.parent"),
        (2, {"parent": None}, "features[2].properties.parent"),
        (2, {"name": ""}, "features[2].properties.name"),
        (3, {"station_point": [200, 31]}, "features[3].properties.station_point"),
        (2, {"code": "3201"}, "features[2].properties.code"),  # a duplicate
    ],
)
def test_broken_trees_are_refused(
    db: Database, kit: AuthKit, index: int, change: dict[str, Any], field: str
) -> None:
    fc = kit.city_tree()
    fc["features"][index]["properties"].update(change)
    err = _refused(db, fc)
    assert field in [e.field for e in err.errors], err.errors
    assert count(db) == 0


def test_invalid_geometry_is_refused(db: Database, kit: AuthKit) -> None:
    fc = kit.city_tree()
    bow_tie = {"type": "Polygon", "coordinates": [[[119, 31], [119.5, 31.5], [119.5, 31],
                                                   [119, 31.5], [119, 31]]]}
    fc["features"][2]["geometry"] = bow_tie
    fc["features"][3]["geometry"] = {"type": "Point", "coordinates": [119, 31]}
    err = _refused(db, fc)
    fields = [e.field for e in err.errors]
    assert fields == ["features[2].geometry", "features[3].geometry"]
    assert "Self-intersection" in err.errors[0].reason


def test_parent_may_already_be_stored(db: Database, kit: AuthKit) -> None:
    kit.load_tree()
    fc = {"type": "FeatureCollection", "features": [
        kit.feature("32010102", "grid", "320101", kit.square(119.25, 31.0, 119.5, 31.5)),
    ]}
    assert kit.load_tree(fc) == 1
    assert count(db) == 6


def test_reload_cannot_put_stored_children_above_their_parent(db: Database, kit: AuthKit) -> None:
    kit.load_tree()
    fc = {"type": "FeatureCollection", "features": [
        kit.feature("320101", "grid", "3201", kit.square(119.0, 31.0, 119.5, 32.0)),
    ]}
    err = _refused(db, fc)
    assert err.errors[0].field == "features[0].properties.level"


def test_list_within_scope(db: Database, kit: AuthKit) -> None:
    kit.load_tree()
    with db.unit_of_work() as s:
        codes = [j.code for j in service.list_jurisdictions(s, within=Scope("3201"))]
        assert codes == ["3201", "320101", "32010101"]
        grids = service.list_jurisdictions(s, level="grid")
        assert [j.code for j in grids] == ["32010101"]
        assert service.list_jurisdictions(s, within=Scope("3202"), level="grid") == []


def test_locate_finds_the_finest_jurisdiction(db: Database, kit: AuthKit) -> None:
    kit.load_tree()
    with db.unit_of_work() as s:
        index = service.get_jurisdiction_index(s)
        assert len(index) == 5
        assert index.locate(119.1, 31.1) == "32010101"  # grid
        assert index.locate(119.4, 31.9) == "320101"  # station, outside the grid
        assert index.locate(119.8, 32.5) == "3201"
        assert index.locate(120.5, 32.5) == "3202"
        assert index.locate(10.0, 10.0) is None
        assert service.get_jurisdiction_index(s) is index  # cached

    # A reload (here: the grid moves) rebuilds the index.
    fc = kit.city_tree()
    fc["features"][4]["geometry"] = kit.square(119.25, 31.5, 119.5, 32.0)
    kit.load_tree(fc)
    with db.unit_of_work() as s:
        assert service.locate(s, lon=119.1, lat=31.1) == "320101"
        assert service.locate(s, lon=119.3, lat=31.7) == "32010101"


def test_jurisdictions_api_is_scoped(client: TestClient, kit: AuthKit) -> None:
    kit.load_tree()
    kit.add_user("west.officer", "officer", jurisdiction="3201")
    kit.add_user("city.commander", "commander")
    west = kit.bearer(kit.token_for(client, "west.officer"))
    r = client.get("/api/v1/jurisdictions", headers=west)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["type"] == "FeatureCollection"
    assert [f["properties"]["code"] for f in body["features"]] == ["3201", "320101", "32010101"]
    assert body["features"][0]["geometry"]["type"] == "Polygon"

    city = kit.bearer(kit.token_for(client, "city.commander"))
    all_codes = [f["id"] for f in client.get("/api/v1/jurisdictions", headers=city).json()
                 ["features"]]
    assert all_codes == ["32", "3201", "320101", "32010101", "3202"]
    districts = client.get("/api/v1/jurisdictions?level=district", headers=city).json()
    assert [f["id"] for f in districts["features"]] == ["3201", "3202"]
    assert client.get("/api/v1/jurisdictions?level=county", headers=city).status_code == 422


def test_jurisdictions_upload(client: TestClient, kit: AuthKit) -> None:
    kit.add_user("root.admin", "admin")
    kit.add_user("analyst.u", "analyst")
    h = kit.bearer(kit.token_for(client, "root.admin"))
    r = client.post("/api/v1/jurisdictions", headers=h, json=kit.city_tree())
    assert r.status_code == 200 and r.json() == {"loaded": 5}
    bad = copy.deepcopy(kit.city_tree())
    bad["features"][3]["properties"]["code"] = "329901"
    r = client.post("/api/v1/jurisdictions", headers=h, json=bad)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "features[3].properties.code"
    other = kit.bearer(kit.token_for(client, "analyst.u"))
    assert client.post("/api/v1/jurisdictions", headers=other,
                       json=kit.city_tree()).status_code == 403
