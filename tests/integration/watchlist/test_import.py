"""Importing an external stolen-vehicle list as one approved batch, and refreshing it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from anwang.core.errors import PermissionDenied
from anwang.core.events import utcnow
from anwang.settings import Settings
from anwang.watchlist import service as wl
from anwang.watchlist.models import WatchEntry
from tests.integration.watchlist.kit import NOW, Kit, read

LIST_V1 = """plate,colour,make,model,priority
苏D12345,white,Toyota,Camry,1
苏D-67890,black,VW,Passat,
苏DA1234,,,,
not a plate,,,,
苏D12345,,,,
苏D?999,,,,
"""
LIST_V2 = """号牌,颜色
苏D12345,white
苏DB5678,red
"""


def entries(kit: Kit, source: str = "province-stolen") -> dict[str, str]:
    with kit.db.unit_of_work() as s:
        rows = s.execute(select(WatchEntry.pattern, WatchEntry.status)
                         .where(WatchEntry.source == source)).all()
    return {p: st for p, st in rows}


def import_(kit: Kit, content: str, *, refresh: bool = False, by: str = "ana",
            approver: str | None = "cmd", now: object = NOW) -> dict[str, object]:
    with kit.db.unit_of_work() as s:
        parsed = wl.parse_list(content)
        batch = wl.import_list(
            s, source="province-stolen", parsed=parsed, reason="stolen_vehicle",
            legal_basis="省厅被盗抢车辆库", case_ref="PROV-2026-11", refresh=refresh,
            expires_at=NOW + timedelta(days=30), actor=by, now=NOW,
        )
        batch_id = batch.id
        rejected = list(batch.rejected)
    if approver is not None:
        with kit.db.unit_of_work() as s:
            batch = wl.approve_batch(s, batch_id=batch_id, actor=approver,
                                     actor_role="commander", now=NOW)
            return {"id": batch_id, "result": dict(batch.result or {}), "rejected": rejected}
    return {"id": batch_id, "rejected": rejected}


def test_a_list_is_pending_until_approved_then_active_at_once(kit: Kit) -> None:
    got = import_(kit, LIST_V1, approver=None)
    assert [(r["line"], r["code"]) for r in got["rejected"]] == [  # type: ignore[index]
        (5, "invalid_plate"), (6, "duplicate"), (7, "partial_pattern")]
    assert entries(kit) == {}
    assert kit.match(read("苏D12345")) == {}
    with kit.db.unit_of_work() as s, pytest.raises(PermissionDenied) as exc:
        wl.approve_batch(s, batch_id=str(got["id"]), actor="ana", now=NOW)
    assert exc.value.code == "anwang.watchlist.own_batch"
    with kit.db.unit_of_work() as s:
        batch = wl.approve_batch(s, batch_id=str(got["id"]), actor="cmd", now=NOW)
        assert batch.result == {"created": 3, "renewed": 0, "unchanged": 0, "revoked": 0}
    assert entries(kit) == {"苏D12345": "active", "苏D67890": "active", "苏DA1234": "active"}
    r = read("苏D67890")
    assert [e for e, _, _ in kit.match(r)[r.read_id]]
    with kit.db.unit_of_work() as s:
        e = s.scalars(select(WatchEntry).where(WatchEntry.pattern == "苏D12345")).one()
        assert (e.priority, e.owner, e.approved_by) == (1, "ana", "cmd")
        assert e.vehicle == {"colour": "white", "make": "Toyota", "model": "Camry"}
        assert [h.action for h in wl.entry_history(s, entry=e)] == [
            "anwang.watchlist.batch.imported", "anwang.watchlist.entry.created",
            "anwang.watchlist.batch.approved"]
    assert kit.audit_ok()


def test_a_refresh_revokes_what_left_the_list(kit: Kit) -> None:
    import_(kit, LIST_V1)
    got = import_(kit, LIST_V2, refresh=True)
    assert got["result"] == {"created": 1, "renewed": 0, "unchanged": 1, "revoked": 2}
    assert entries(kit) == {"苏D12345": "active", "苏D67890": "revoked",
                            "苏DA1234": "revoked", "苏DB5678": "active"}
    assert kit.match(read("苏D67890")) == {}
    assert kit.match(read("苏DB5678"))
    # An entry entered by hand for the same plate is not the list's to revoke.
    manual = kit.entry("苏DA1234")
    import_(kit, "plate\n苏D12345\n", refresh=True)
    with kit.db.unit_of_work() as s:
        assert s.get(WatchEntry, manual).status == "active"  # type: ignore[union-attr]
    assert entries(kit)["苏DB5678"] == "revoked"
    assert kit.audit_ok()


def test_a_list_without_a_plate_column_is_refused() -> None:
    with pytest.raises(Exception, match="plate"):
        wl.parse_list("name,colour\nx,y\n")


def test_import_through_the_api(client: TestClient, kit: Kit) -> None:
    ana, cmd = kit.token(client, "ana"), kit.token(client, "cmd")
    params = {"source": "province-stolen", "legal_basis": "省厅被盗抢车辆库",
              "case_ref": "PROV-1", "expires_at": (utcnow() + timedelta(days=30)).isoformat()}
    r = client.post("/api/v1/watchlist/imports", params=params, content=LIST_V1.encode(),
                    headers={**ana, "Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["status"] == "pending" and batch["rows"] == 3
    assert [x["code"] for x in batch["rejected"]] == ["invalid_plate", "duplicate",
                                                      "partial_pattern"]
    r = client.post(f"/api/v1/watchlist/imports/{batch['id']}/approve", headers=ana)
    assert r.status_code == 403  # an analyst may not approve
    r = client.post(f"/api/v1/watchlist/imports/{batch['id']}/approve", headers=cmd)
    assert r.status_code == 200 and r.json()["result"]["created"] == 3
    r = client.post(f"/api/v1/watchlist/imports/{batch['id']}/approve", headers=cmd)
    assert r.status_code == 409
    r = client.post("/api/v1/watchlist/imports", params=params, content=b"{}",
                    headers={**ana, "Content-Type": "application/json"})
    assert r.status_code == 415
    bad = {**params, "expires_at": (utcnow() + timedelta(days=200)).isoformat()}
    r = client.post("/api/v1/watchlist/imports", params=bad, content=LIST_V1.encode(),
                    headers={**ana, "Content-Type": "text/csv"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "expires_at"


def test_import_from_the_command_line(
    kit: Kit, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anwang.cli import app

    monkeypatch.setenv("ANWANG_DATABASE_URL", kit.db.url)
    monkeypatch.setenv("ANWANG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ANWANG_ENV", "test")
    monkeypatch.setenv("ANWANG_SECRET_KEY", "cli-test-secret-0123456789")
    v1, v2 = tmp_path / "stolen.csv", tmp_path / "stolen-dec.csv"
    v1.write_text(LIST_V1, encoding="utf-8")
    v2.write_text(LIST_V2, encoding="utf-8")
    runner = CliRunner()
    args = ["watchlist", "import", str(v1), "--source", "province-stolen",
            "--legal-basis", "省厅被盗抢车辆库", "--case-ref", "PROV-1"]
    r = runner.invoke(app, [*args, "--approved-by", "ana"])
    assert r.exit_code == 2 and "may not approve" in r.output
    r = runner.invoke(app, [*args, "--approved-by", "cmd", "--imported-by", "cmd"])
    assert r.exit_code == 2 and "other than the importer" in r.output
    r = runner.invoke(app, [*args, "--approved-by", "nobody"])
    assert r.exit_code == 2 and "no user" in r.output
    assert entries(kit) == {}
    r = runner.invoke(app, [*args, "--approved-by", "cmd"])
    assert r.exit_code == 0, r.output
    assert "3 created" in r.output and "line 5: invalid_plate" in r.output
    args[2] = str(v2)
    r = runner.invoke(app, [*args, "--approved-by", "cmd2", "--refresh"])
    assert r.exit_code == 0, r.output
    assert "2 revoked" in r.output
    assert entries(kit) == {"苏D12345": "active", "苏D67890": "revoked",
                            "苏DA1234": "revoked", "苏DB5678": "active"}
    assert kit.audit_ok()
