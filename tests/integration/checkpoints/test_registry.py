"""The checkpoint registry through the API and ``anwang import checkpoints``: CRUD,
jurisdiction from the location, scope, audit, and imports that keep the valid rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from anwang.checkpoints import service
from anwang.checkpoints.cli import import_app
from anwang.checkpoints.models import Checkpoint
from anwang.core.db import Database
from anwang.core.scope import Scope
from tests.integration.checkpoints.conftest import EAST, WEST, Kit

NEW = {"code": "G312-01", "name": "G312 西门卡口", "kind": "police_checkpoint",
       "lat": WEST[0], "lon": WEST[1], "lanes": 4}


def test_admin_registers_a_checkpoint_located_in_its_jurisdiction(kit: Kit) -> None:
    r = kit.client.post("/api/v1/checkpoints", json=NEW, headers=kit.as_user("admin"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["jurisdiction_code"] == "320101"
    assert body["directions"] == ["in", "out"] and body["active"] is True
    assert body["silence_threshold_s"] == 900 and body["last_read_at"] is None
    (entry,) = kit.audit("anwang.checkpoints.checkpoint.created")
    assert entry.subject == "G312-01" and entry.actor == "admin"
    assert entry.actor_role == "admin" and entry.jurisdiction == "320101"
    assert entry.data is not None and entry.data["lanes"] == 4


def test_a_code_is_taken_once(kit: Kit) -> None:
    assert kit.client.post("/api/v1/checkpoints", json=NEW,
                           headers=kit.as_user("admin")).status_code == 201
    r = kit.client.post("/api/v1/checkpoints", json={**NEW, "name": "again"},
                        headers=kit.as_user("admin"))
    assert r.status_code == 409 and r.json()["code"] == "anwang.checkpoints.code_taken"
    assert len(kit.audit("anwang.checkpoints.checkpoint.created")) == 1


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "helicopter"}, "kind"),
    ({"lat": 91}, "lat"),
    ({"code": "has space"}, "code"),
    ({"directions": ["in", "in"]}, "directions"),
    ({"lanes": 0}, "lanes"),
    ({"silence_threshold_s": 5}, "silence_threshold_s"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_checkpoints_are_refused_naming_the_field(
    kit: Kit, change: dict[str, object], field: str
) -> None:
    r = kit.client.post("/api/v1/checkpoints", json={**NEW, **change},
                        headers=kit.as_user("admin"))
    assert r.status_code == 422
    assert field in {e["field"] for e in r.json()["errors"]}
    assert kit.audit("anwang.checkpoints.checkpoint.created") == []


@pytest.mark.parametrize("user", ["analyst", "commander", "dispatcher", "auditor"])
def test_only_checkpoint_managers_register(kit: Kit, user: str) -> None:
    r = kit.client.post("/api/v1/checkpoints", json=NEW, headers=kit.as_user(user))
    assert r.status_code == 403


def test_device_keys_cannot_manage_or_list(kit: Kit) -> None:
    assert kit.client.post("/api/v1/checkpoints", json=NEW,
                           headers=kit.device).status_code == 403
    assert kit.client.get("/api/v1/checkpoints", headers=kit.device).status_code == 403


def test_listing_is_scoped_and_filtered(kit: Kit) -> None:
    kit.add_checkpoint("W-01")
    kit.add_checkpoint("W-TOLL", kind="toll_station")
    kit.add_checkpoint("E-01", at=EAST)
    everyone = kit.client.get("/api/v1/checkpoints", headers=kit.as_user("analyst")).json()
    assert [c["code"] for c in everyone] == ["E-01", "W-01", "W-TOLL"]
    west = kit.client.get("/api/v1/checkpoints", headers=kit.as_user("dispatcher")).json()
    assert [c["code"] for c in west] == ["W-01", "W-TOLL"]
    tolls = kit.client.get("/api/v1/checkpoints?kind=toll_station",
                           headers=kit.as_user("analyst")).json()
    assert [c["code"] for c in tolls] == ["W-TOLL"]
    found = kit.client.get("/api/v1/checkpoints?q=TOLL", headers=kit.as_user("analyst")).json()
    assert [c["code"] for c in found] == ["W-TOLL"]
    # Outside the caller's jurisdiction a checkpoint does not exist.
    r = kit.client.get("/api/v1/checkpoints/E-01", headers=kit.as_user("dispatcher"))
    assert r.status_code == 404


def test_patching_moves_and_audits_the_changes(kit: Kit) -> None:
    kit.add_checkpoint("W-01")
    r = kit.client.patch("/api/v1/checkpoints/W-01",
                         json={"lat": EAST[0], "lon": EAST[1], "lanes": 6},
                         headers=kit.as_user("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["jurisdiction_code"] == "320201" and r.json()["lanes"] == 6
    (entry,) = kit.audit("anwang.checkpoints.checkpoint.updated")
    assert entry.data is not None
    changes = entry.data["changes"]
    assert changes["jurisdiction_code"] == ["320101", "320201"]
    assert changes["lanes"] == [2, 6] and "name" not in changes
    # The same patch again changes nothing and writes nothing.
    kit.client.patch("/api/v1/checkpoints/W-01", json={"lanes": 6},
                     headers=kit.as_user("admin"))
    assert len(kit.audit("anwang.checkpoints.checkpoint.updated")) == 1
    r = kit.client.patch("/api/v1/checkpoints/W-01", json={"name": None},
                         headers=kit.as_user("admin"))
    assert r.status_code == 422


def test_merge_patch_content_type_is_accepted(kit: Kit) -> None:
    kit.add_checkpoint("W-01")
    r = kit.client.patch("/api/v1/checkpoints/W-01", content=b'{"name": "renamed"}',
                         headers={**kit.as_user("admin"),
                                  "Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"


def test_delete_deactivates(kit: Kit) -> None:
    kit.add_checkpoint("W-01")
    r = kit.client.delete("/api/v1/checkpoints/W-01", headers=kit.as_user("admin"))
    assert r.status_code == 200 and r.json()["active"] is False
    assert kit.client.get("/api/v1/checkpoints/W-01",
                          headers=kit.as_user("analyst")).json()["active"] is False
    (entry,) = kit.audit("anwang.checkpoints.checkpoint.deactivated")
    assert entry.subject == "W-01" and entry.actor == "admin"
    kit.client.delete("/api/v1/checkpoints/W-01", headers=kit.as_user("admin"))
    assert len(kit.audit("anwang.checkpoints.checkpoint.deactivated")) == 1
    assert kit.client.delete("/api/v1/checkpoints/NOPE",
                             headers=kit.as_user("admin")).status_code == 404


# --- imports ----------------------------------------------------------------------------

CSV = (
    "code,name,kind,lat,lon,directions,lanes\n"
    f"CSV-1,One,police_checkpoint,{WEST[0]},{WEST[1]},in;out,4\n"
    f"CSV-2,Two,helicopter,{WEST[0]},{WEST[1]},,\n"
    f"CSV-3,Three,toll_station,{EAST[0]},{EAST[1]},in,8\n"
    "CSV-4,Four,road,95,119.9,,\n"
)


@pytest.fixture
def runner(db: Database, tmp_path: Path) -> CliRunner:
    return CliRunner(env={"ANWANG_DATABASE_URL": db.url, "ANWANG_ENV": "dev",
                          "ANWANG_DATA_DIR": str(tmp_path)})


def codes(db: Database) -> list[str]:
    with db.unit_of_work(readonly=True) as s:
        return list(s.scalars(select(Checkpoint.code).order_by(Checkpoint.code)))


def test_csv_import_keeps_the_valid_rows_and_reports_the_others(
    kit: Kit, db: Database, runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.csv"
    path.write_text(CSV, encoding="utf-8")
    r = runner.invoke(import_app, ["checkpoints", str(path)])
    assert r.exit_code == 1, r.output
    assert "2 created, 0 updated, 0 unchanged, 2 rejected (of 4 rows)" in r.output
    assert "kind" in r.output and "lat" in r.output
    assert codes(db) == ["CSV-1", "CSV-3"]
    created = kit.audit("anwang.checkpoints.checkpoint.created")
    assert [e.subject for e in created] == ["CSV-1", "CSV-3"]
    assert all(e.actor and e.actor.startswith("cli:") for e in created)
    assert created[0].data is not None and created[0].data["via"] == "import"
    # Importing again changes nothing; fixing a row updates it.
    path.write_text(CSV.replace("CSV-3,Three,toll_station", "CSV-3,Three,road"), "utf-8")
    r = runner.invoke(import_app, ["checkpoints", str(path)])
    assert "0 created, 1 updated, 1 unchanged, 2 rejected" in r.output
    assert len(kit.audit("anwang.checkpoints.checkpoint.updated")) == 1


def test_geojson_import(kit: Kit, db: Database, runner: CliRunner, tmp_path: Path) -> None:
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [WEST[1], WEST[0]]},
         "properties": {"code": "GJ-1", "name": "省界", "kind": "province_border",
                        "directions": ["in", "out"], "lanes": 6}},
        {"type": "Feature", "geometry": None, "properties": {"code": "GJ-2", "name": "x",
                                                             "kind": "road"}},
    ]}
    path = tmp_path / "checkpoints.geojson"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    r = runner.invoke(import_app, ["checkpoints", str(path)])
    assert r.exit_code == 1 and "geometry" in r.output
    assert codes(db) == ["GJ-1"]
    with db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
        cp = service.get_checkpoint(s, code="GJ-1")
        assert cp.kind == "province_border" and cp.jurisdiction_code == "320101"


def test_an_unreadable_file_is_exit_2(runner: CliRunner, tmp_path: Path, kit: Kit) -> None:
    path = tmp_path / "checkpoints.txt"
    path.write_text("hello", encoding="utf-8")
    r = runner.invoke(import_app, ["checkpoints", str(path)])
    assert r.exit_code == 2 and ".csv" in r.output
    r = runner.invoke(import_app, ["checkpoints", str(tmp_path / "missing.csv")])
    assert r.exit_code == 2
