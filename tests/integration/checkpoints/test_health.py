"""Checkpoint health: offline once per outage, online again when reads resume, reads per
hour, and the purge that keeps reads with hits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from anwang.auth import service as auth_service
from anwang.checkpoints import reads, service
from anwang.checkpoints.cli import purge
from anwang.checkpoints.models import CheckpointOutage, PlateRead
from anwang.checkpoints.schemas import CheckpointCreate
from anwang.core.audit import AuditEntry
from anwang.core.db import Database, OutboxEntry
from anwang.core.scope import Scope
from tests.integration.checkpoints.conftest import WEST, Kit, a_read, city_tree, iso

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
OFFLINE = "anwang.checkpoints.checkpoint.went_offline"
ONLINE = "anwang.checkpoints.checkpoint.came_online"


@pytest.fixture
def city(db: Database) -> Database:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
        for code in ("W-01", "W-02"):
            service.create_checkpoint(
                s, data=CheckpointCreate(code=code, name=code, kind="police_checkpoint",
                                         lat=WEST[0], lon=WEST[1], silence_threshold_s=600),
                actor="test")
    return db


def store(db: Database, code: str, at: datetime, plate: str = "苏D12345",
          *, now: datetime | None = None) -> int:
    """Ingest and store one read at ``at`` (as the consumer would), returning how many
    were inserted. Events stay in the outbox: this Database has no publisher."""
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        report = reads.ingest_reads(
            s, items=[a_read(code, plate, at=at)], source="test", retention_hours=48,
            now=now or at, publish=False,
        )
        assert report.batch is not None
        return reads.store_reads(s, batch=report.batch, now=now or at).inserted


def events(db: Database, name: str) -> list[dict[str, object]]:
    with db.unit_of_work(readonly=True) as s:
        bodies = s.scalars(select(OutboxEntry.body).where(OutboxEntry.name == name)
                           .order_by(OutboxEntry.created_at)).all()
    return [json.loads(b) for b in bodies]


def scan(db: Database, at: datetime) -> list[str]:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        return service.scan_offline(s, now=at)


def test_offline_is_announced_once_per_outage(city: Database) -> None:
    db = city
    store(db, "W-01", T0)
    assert scan(db, T0 + timedelta(seconds=600)) == []  # exactly the threshold: not yet
    assert scan(db, T0 + timedelta(seconds=601)) == ["W-01"]
    assert scan(db, T0 + timedelta(minutes=30)) == []
    assert scan(db, T0 + timedelta(hours=5)) == []
    (event,) = events(db, OFFLINE)
    assert event["audience"] == {"roles": ["dispatcher"], "jurisdiction": "320101"}
    payload = event["payload"]
    assert isinstance(payload, dict)
    assert payload["checkpoint"] == "W-01" and payload["lat"] == WEST[0]
    assert payload["silent_s"] == 601
    with db.unit_of_work(readonly=True) as s:
        (outage,) = s.scalars(select(CheckpointOutage)).all()
        assert outage.started_at == T0 and outage.ended_at is None
        audited = s.scalars(select(AuditEntry.subject).where(AuditEntry.action == OFFLINE)).all()
        assert list(audited) == ["W-01"]

    # Reads resume: came_online, outage closed; a new silence is a new outage.
    back = T0 + timedelta(hours=6)
    store(db, "W-01", back)
    (online,) = events(db, ONLINE)
    assert online["payload"]["checkpoint"] == "W-01"  # type: ignore[index]
    with db.unit_of_work(readonly=True) as s:
        (outage,) = s.scalars(select(CheckpointOutage)).all()
        assert outage.ended_at == back
    assert scan(db, back + timedelta(minutes=5)) == []
    assert scan(db, back + timedelta(minutes=11)) == ["W-01"]
    assert len(events(db, OFFLINE)) == 2


def test_never_heard_and_inactive_checkpoints_are_not_offline(city: Database) -> None:
    db = city
    store(db, "W-02", T0)
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        service.deactivate_checkpoint(s, code="W-02", actor="test")
    # W-01 never sent anything; W-02 is deactivated.
    assert scan(db, T0 + timedelta(days=2)) == []
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        health = {h.code: h.status for h in service.list_health(s, now=T0 + timedelta(days=2))}
    assert health == {"W-01": "never", "W-02": "inactive"}


def test_two_scanners_at_once_announce_one_outage(city: Database) -> None:
    db = city
    store(db, "W-01", T0)
    at = T0 + timedelta(hours=1)
    with db.unit_of_work(info={"scope": Scope(None)}) as s1:
        first = service.scan_offline(s1, now=at)
    with db.unit_of_work(info={"scope": Scope(None)}) as s2:
        second = service.scan_offline(s2, now=at)
    assert first == ["W-01"] and second == []
    assert len(events(db, OFFLINE)) == 1


def test_health_counts_reads_per_hour(city: Database) -> None:
    db = city
    for minutes in (0, 10, 70, 130, 131):
        store(db, "W-01", T0 + timedelta(minutes=minutes), plate=f"苏D1{minutes:04d}")
    at = T0 + timedelta(minutes=135)
    with db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
        h = service.checkpoint_health(s, code="W-01", now=at)
    assert h.status == "online" and h.last_read_at == T0 + timedelta(minutes=131)
    assert h.reads_24h == 5 and h.reads_last_hour == 2
    assert h.reads_per_hour is not None and len(h.reads_per_hour) == 25
    assert [c.count for c in h.reads_per_hour[-3:]] == [2, 1, 2]
    assert h.reads_per_hour[-1].hour == T0 + timedelta(hours=2)
    with db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
        late = service.checkpoint_health(s, code="W-01", now=at + timedelta(minutes=20))
    assert late.status == "offline"  # silent past the threshold, before any scan


def test_health_api(kit: Kit) -> None:
    kit.add_checkpoint("W-01")
    kit.add_checkpoint("W-02")
    kit.post_reads([a_read("W-01")])
    kit.drain()
    r = kit.client.get("/api/v1/checkpoints/W-01/health", headers=kit.as_user("dispatcher"))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "online" and body["reads_24h"] == 1
    assert len(body["reads_per_hour"]) == 25 and body["outages"] == []
    r = kit.client.get("/api/v1/checkpoint-health", headers=kit.as_user("analyst"))
    assert {h["code"]: h["status"] for h in r.json()} == {"W-01": "online", "W-02": "never"}
    r = kit.client.get("/api/v1/checkpoint-health?status=never",
                       headers=kit.as_user("analyst"))
    assert [h["code"] for h in r.json()] == ["W-02"]
    assert kit.client.get("/api/v1/checkpoint-health",
                          headers=kit.as_user("auditor")).status_code == 403


# --- retention ------------------------------------------------------------------------------


def test_purge_removes_only_old_reads_without_hits(city: Database) -> None:
    db = city
    now = T0 + timedelta(hours=60)
    store(db, "W-01", T0, "苏D11111", now=now - timedelta(hours=12))  # 60 h old: goes
    store(db, "W-01", T0 + timedelta(minutes=1), "苏D22222", now=now - timedelta(hours=12))
    store(db, "W-01", T0 + timedelta(hours=13), "苏D33333", now=now)  # 47 h old: stays
    with db.unit_of_work() as s:
        s.execute(PlateRead.__table__.update()
                  .where(PlateRead.__table__.c.plate == "苏D22222").values(hit=True))
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        report = service.purge_reads(s, retention_hours=48, now=now)
    assert report.deleted == 1 and report.cutoff == now - timedelta(hours=48)
    with db.unit_of_work(readonly=True) as s:
        left = sorted(s.scalars(select(PlateRead.plate)))
        audited = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "anwang.checkpoints.reads.purged")).all()
    assert left == ["苏D22222", "苏D33333"]
    assert [a.result_count for a in audited] == [1]
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        assert service.purge_reads(s, retention_hours=48, now=now).deleted == 0
    with db.unit_of_work(readonly=True) as s:
        assert len(s.scalars(select(AuditEntry).where(
            AuditEntry.action == "anwang.checkpoints.reads.purged")).all()) == 1


def test_purge_command_reports_and_audits(city: Database, tmp_path: Path) -> None:
    import typer

    db = city
    store(db, "W-01", datetime.now(UTC) - timedelta(hours=47), "苏D11111",
          now=datetime.now(UTC) - timedelta(hours=1))
    app = typer.Typer()
    app.command()(purge)
    runner = CliRunner(env={"ANWANG_DATABASE_URL": db.url, "ANWANG_DATA_DIR": str(tmp_path),
                            "ANWANG_READ_RETENTION_HOURS": "24"})
    r = runner.invoke(app, [])
    assert r.exit_code == 0, r.output
    assert "purged 1 plate read(s)" in r.output and "retention 24 h" in r.output
    r = runner.invoke(app, [])
    assert "purged 0 plate read(s)" in r.output
    with db.unit_of_work(readonly=True) as s:
        rows = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "anwang.checkpoints.reads.purged")).all()
    assert [a.result_count for a in rows] == [1, 0]
    assert all(a.actor and a.actor.startswith("cli:") for a in rows)


def test_import_reads_from_csv(city: Database, tmp_path: Path) -> None:
    from anwang.checkpoints.cli import import_app

    db = city
    t = datetime.now(UTC) - timedelta(minutes=5)
    text = (
        "checkpoint,captured_at,plate,plate_color,confidence,lane,direction,vehicle_type\n"
        f"W-01,{iso(t)},苏D12345,blue,0.9,1,in,car\n"
        f"W-01,{iso(t)},苏D1,blue,0.9,1,in,\n"
        f"W-02,{iso(t)},苏E54321,,high,1,out,\n"
        f"W-02,{iso(t)},苏E54321,,0.5,2,out,\n"
    )
    path = tmp_path / "reads.csv"
    path.write_text(text, encoding="utf-8")
    runner = CliRunner(env={"ANWANG_DATABASE_URL": db.url, "ANWANG_DATA_DIR": str(tmp_path)})
    r = runner.invoke(import_app, ["reads", str(path)])
    assert r.exit_code == 1, r.output
    assert "2 accepted, 0 duplicates, 2 rejected" in r.output
    assert "invalid_plate" in r.output and "invalid_confidence" in r.output
    with db.unit_of_work(readonly=True) as s:
        stored = s.scalars(select(PlateRead).order_by(PlateRead.plate)).all()
    assert [(x.plate, x.vehicle) for x in stored] == [("苏D12345", {"type": "car"}),
                                                      ("苏E54321", None)]
    r = runner.invoke(import_app, ["reads", str(path)])
    assert "0 accepted, 2 duplicates, 2 rejected" in r.output
