"""Searching stored reads: refused without a case and a reason, one audit row per
search, scope, time order, partial plates, areas, "no data" for offline checkpoints,
and exports."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import pytest

from anwang.checkpoints import service
from anwang.core.db import Database
from anwang.core.scope import Scope
from tests.integration.checkpoints.conftest import EAST, WEST, Kit, a_read, iso, now

SEARCHED = "anwang.checkpoints.reads.searched"
CASE = {"case_ref": "2026-刑-0042", "reason": "stolen_vehicle"}


@pytest.fixture
def data(kit: Kit) -> tuple[Kit, datetime]:
    """Three checkpoints; 苏D12345 seen at W-01, then W-02, then E-01; others around."""
    kit.add_checkpoint("W-01")
    kit.add_checkpoint("W-02", at=(31.76, 119.87))
    kit.add_checkpoint("E-01", at=EAST)
    t = now() - timedelta(hours=3)
    reads = [
        a_read("E-01", "苏D12345", at=t + timedelta(minutes=40)),
        a_read("W-01", "苏D12345", at=t),
        a_read("W-02", "苏D12345", at=t + timedelta(minutes=10)),
        a_read("W-01", "苏D12399", at=t + timedelta(minutes=5)),
        a_read("W-01", "苏E12345", at=t + timedelta(minutes=6)),
        a_read("E-01", "京A88888", at=t + timedelta(minutes=7)),
    ]
    assert kit.post_reads(reads).json()["accepted"] == 6
    kit.drain()
    return kit, t


def search(kit: Kit, user: str = "analyst", **params: Any) -> Any:
    return kit.client.get("/api/v1/reads/search", params=params, headers=kit.as_user(user))


@pytest.mark.parametrize("missing", [
    {}, {"case_ref": "C-1"}, {"reason": "investigation"},
    {"case_ref": "  ", "reason": "investigation"}, {"case_ref": "C-1", "reason": "curiosity"},
])
def test_refused_without_a_case_and_a_listed_reason(
    data: tuple[Kit, datetime], missing: dict[str, str]
) -> None:
    kit, _ = data
    r = search(kit, plate="苏D12345", **missing)
    assert r.status_code == 422
    assert r.json()["code"] == "anwang.checkpoints.search_refused"
    assert "reads" not in r.json()
    assert kit.audit(SEARCHED) == []


def test_refused_without_a_plate_checkpoint_or_area(data: tuple[Kit, datetime]) -> None:
    kit, _ = data
    r = search(kit, **CASE)
    assert r.status_code == 422 and kit.audit(SEARCHED) == []


@pytest.mark.parametrize("user", ["admin", "dispatcher", "auditor"])
def test_only_searching_roles(data: tuple[Kit, datetime], user: str) -> None:
    kit, _ = data
    r = search(kit, user, plate="苏D12345", **CASE)
    assert r.status_code == 403 and kit.audit(SEARCHED) == []
    assert kit.client.get("/api/v1/reads/search", params={"plate": "苏D12345", **CASE},
                          headers=kit.device).status_code == 403


def test_a_search_is_one_audit_row_with_its_terms_and_count(data: tuple[Kit, datetime]) -> None:
    kit, t = data
    start, end = t - timedelta(minutes=1), t + timedelta(hours=1)
    r = search(kit, "commander", plate="苏d 12345", **{"from": iso(start), "to": iso(end)},
               **CASE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and body["truncated"] is False
    assert [x["checkpoint_code"] for x in body["reads"]] == ["W-01", "W-02", "E-01"]
    times = [x["captured_at"] for x in body["reads"]]
    assert times == sorted(times)
    (entry,) = kit.audit(SEARCHED)
    assert entry.actor == "commander" and entry.actor_role == "commander"
    assert entry.case_ref == CASE["case_ref"] and entry.reason == CASE["reason"]
    assert entry.result_count == 3 and entry.subject == "苏D12345"
    assert entry.data is not None
    assert entry.data["plate"] == "苏D12345" and entry.data["via"] == "api"
    assert datetime.fromisoformat(entry.data["from"]) == start
    assert datetime.fromisoformat(entry.data["to"]) == end
    # A second search is a second row.
    search(kit, plate="苏D12345", **CASE)
    assert len(kit.audit(SEARCHED)) == 2


def test_a_search_that_finds_nothing_is_still_audited(data: tuple[Kit, datetime]) -> None:
    kit, _ = data
    r = search(kit, plate="苏A99999", **CASE)
    assert r.json()["count"] == 0
    (entry,) = kit.audit(SEARCHED)
    assert entry.result_count == 0


def test_partial_plates(data: tuple[Kit, datetime]) -> None:
    kit, _ = data
    plates = lambda r: sorted({x["plate"] for x in r.json()["reads"]})  # noqa: E731
    assert plates(search(kit, plate="苏D123??", **CASE)) == ["苏D12345", "苏D12399"]
    assert plates(search(kit, plate="苏D1*9", **CASE)) == ["苏D12399"]
    assert plates(search(kit, plate="*12345", **CASE)) == ["苏D12345", "苏E12345"]
    assert plates(search(kit, plate="苏?12345", **CASE)) == ["苏D12345", "苏E12345"]
    r = search(kit, plate="*1*", **CASE)
    assert r.status_code == 422  # too broad: fewer than 3 fixed characters
    assert kit.audit(SEARCHED)[-1].data["plate"] == "苏?12345"  # type: ignore[index]


def test_time_window_and_checkpoint(data: tuple[Kit, datetime]) -> None:
    kit, t = data
    r = search(kit, plate="苏D12345", **{"from": iso(t + timedelta(minutes=1))}, **CASE)
    assert [x["checkpoint_code"] for x in r.json()["reads"]] == ["W-02", "E-01"]
    r = search(kit, checkpoint="W-01", **CASE)
    assert [x["plate"] for x in r.json()["reads"]] == ["苏D12345", "苏D12399", "苏E12345"]
    r = search(kit, plate="苏D12345", **{"from": iso(t), "to": iso(t - timedelta(hours=1))},
               **CASE)
    assert r.status_code == 422


def test_area_by_circle_and_polygon(data: tuple[Kit, datetime]) -> None:
    kit, _ = data
    r = search(kit, near=f"{WEST[0]},{WEST[1]}", radius_m=1000, **CASE)
    assert {x["checkpoint_code"] for x in r.json()["reads"]} == {"W-01"}
    r = search(kit, near=f"{WEST[0]},{WEST[1]}", radius_m=5000, plate="苏D12345", **CASE)
    assert [x["checkpoint_code"] for x in r.json()["reads"]] == ["W-01", "W-02"]
    east_box = "120.0,31.7;120.1,31.7;120.1,31.8;120.0,31.8"
    r = search(kit, polygon=east_box, **CASE)
    assert {x["plate"] for x in r.json()["reads"]} == {"苏D12345", "京A88888"}
    r = search(kit, polygon="119.0,30.0;119.1,30.0;119.1,30.1", **CASE)
    assert r.json()["count"] == 0
    assert [e.result_count for e in kit.audit(SEARCHED)] == [3, 2, 2, 0]


def test_scope_limits_what_a_district_analyst_finds(data: tuple[Kit, datetime]) -> None:
    kit, _ = data
    r = search(kit, "west.analyst", plate="苏D12345", **CASE)
    assert [x["checkpoint_code"] for x in r.json()["reads"]] == ["W-01", "W-02"]
    (entry,) = kit.audit(SEARCHED)
    assert entry.jurisdiction == "3201" and entry.result_count == 2


def test_the_limit_truncates(data: tuple[Kit, datetime]) -> None:
    kit, _ = data
    r = search(kit, plate="苏D12345", limit=2, **CASE)
    assert r.json()["count"] == 2 and r.json()["truncated"] is True
    assert search(kit, plate="苏D12345", limit=0, **CASE).status_code == 422


def registered_long_ago(db: Database, t: datetime) -> None:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        for cp in service.list_checkpoints(s):
            cp.created_at = t - timedelta(days=30)


def test_an_offline_checkpoint_is_no_data_not_no_hit(data: tuple[Kit, datetime],
                                                     db: Database) -> None:
    kit, t = data
    registered_long_ago(db, t)
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        # Last reads: W-01 at t+6 min, W-02 at t+10 min, E-01 at t+40 min; the threshold
        # is 900 s, so at t+30 min the two western checkpoints are silent.
        assert service.scan_offline(s, now=t + timedelta(minutes=30)) == ["W-01", "W-02"]
    r = search(kit, plate="京A88888", **{"from": iso(t - timedelta(hours=1))}, **CASE)
    coverage = {c["checkpoint"]: c for c in r.json()["coverage"]}
    assert coverage["E-01"]["status"] == "hit"
    assert coverage["W-02"]["status"] == "no_data"
    (outage,) = coverage["W-02"]["outages"]
    assert datetime.fromisoformat(outage["started_at"]) == t + timedelta(minutes=10)
    assert outage["ended_at"] is None
    # A search for one checkpoint reports it whatever its status.
    r = search(kit, plate="京A88888", checkpoint="W-02", **CASE)
    assert [c["status"] for c in r.json()["coverage"]] == ["no_data"]
    r = search(kit, plate="苏D12345", checkpoint="W-01", **CASE)
    assert [c["status"] for c in r.json()["coverage"]] == ["hit"]


def test_no_hit_only_when_the_checkpoint_was_heard_from_all_along(
    data: tuple[Kit, datetime], db: Database
) -> None:
    kit, t = data
    start = t + timedelta(minutes=1)
    r = search(kit, plate="京A88888", checkpoint="W-01",
               **{"from": iso(start), "to": iso(t + timedelta(minutes=8))}, **CASE)
    (cov,) = r.json()["coverage"]
    # Registered (seconds ago) after the window began: no data for the window.
    assert cov["status"] == "no_data"
    registered_long_ago(db, t)
    r = search(kit, plate="京A88888", checkpoint="W-01",
               **{"from": iso(start), "to": iso(t + timedelta(minutes=8))}, **CASE)
    assert r.json()["coverage"][0]["status"] == "no_hit"


def test_export_csv_and_geojson_are_audited(data: tuple[Kit, datetime]) -> None:
    kit, _ = data
    r = kit.client.get("/api/v1/reads/export", params={"plate": "苏D12345", "format": "csv",
                                                        **CASE},
                       headers=kit.as_user("analyst"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["checkpoint_code"] for x in rows] == ["W-01", "W-02", "E-01"]
    r = kit.client.get("/api/v1/reads/export", params={"plate": "苏D12345",
                                                        "format": "geojson", **CASE},
                       headers=kit.as_user("analyst"))
    doc = r.json()
    points = [f for f in doc["features"] if f["geometry"]["type"] == "Point"]
    (route,) = [f for f in doc["features"] if f["geometry"]["type"] == "LineString"]
    assert len(points) == 3 and len(route["geometry"]["coordinates"]) == 3
    exported = kit.audit("anwang.checkpoints.reads.exported")
    assert [(e.result_count, e.data["format"]) for e in exported] == [  # type: ignore[index]
        (3, "csv"), (3, "geojson")]
    assert kit.audit(SEARCHED) == []
    r = kit.client.get("/api/v1/reads/export", params={"plate": "苏D12345", "format": "csv"},
                       headers=kit.as_user("analyst"))
    assert r.status_code == 422 and len(kit.audit("anwang.checkpoints.reads.exported")) == 2


def test_the_reasons_are_configuration(kit: Kit, db: Database) -> None:
    kit.client.app.state.anwang.settings.read_search_reasons = ["audit_sample"]  # type: ignore[attr-defined]
    kit.add_checkpoint("W-01")
    assert search(kit, plate="苏D12345", **CASE).status_code == 422
    assert search(kit, plate="苏D12345", case_ref="C-9",
                  reason="audit_sample").status_code == 200
