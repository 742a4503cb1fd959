"""The alert lifecycle through the API, jurisdiction scope, escalation and statistics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.alerts import service as alerts
from anwang.alerts.events import ESCALATED
from anwang.alerts.handlers import run_round
from anwang.alerts.models import Alert
from anwang.core.events import utcnow
from anwang.settings import Settings
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import EAST, NOW, WEST, Kit, read


def raise_at(kit: Kit, plate: str = "苏D12345", where: dict[str, object] = WEST,
             at: object = None) -> str:
    """An alert at ``where``; returns its id."""
    when = at or utcnow()
    r = read(plate, when, where=where)  # type: ignore[arg-type]
    with kit.db.unit_of_work() as s:
        [(_, hits)] = wl.match_reads(s, reads=[r])
        alerts.raise_for_hits(s, read=r, hits=hits, dedupe_minutes=10,
                              now=when)  # type: ignore[arg-type]
        return str(s.scalar(select(Alert.id).where(Alert.read_id == r.read_id)))


def test_open_acknowledge_close_and_wrong_transitions(client: TestClient, kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    aid = raise_at(kit)
    h = kit.token(client, "west.disp")
    assert client.get(f"/api/v1/alerts/{aid}", headers=h).json()["status"] == "open"
    r = client.post(f"/api/v1/alerts/{aid}/close", json={"outcome": "confirmed"}, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "anwang.alerts.invalid_transition"
    r = client.post(f"/api/v1/alerts/{aid}/acknowledge", headers=h)
    assert r.status_code == 200
    got = r.json()
    assert got["status"] == "acknowledged" and got["acknowledged_by"] == "west.disp"
    assert got["banner"].startswith("unconfirmed")
    assert client.post(f"/api/v1/alerts/{aid}/acknowledge", headers=h).status_code == 409
    r = client.post(f"/api/v1/alerts/{aid}/close", json={"outcome": "maybe"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "outcome"
    r = client.post(f"/api/v1/alerts/{aid}/close",
                    json={"outcome": "misread", "note": "8 read as B"}, headers=h)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["outcome"], r.json()["note"]) == (
        "closed", "misread", "8 read as B")
    assert client.post(f"/api/v1/alerts/{aid}/close", json={"outcome": "confirmed"},
                       headers=h).status_code == 409
    assert client.post(f"/api/v1/alerts/{aid}/acknowledge", headers=h).status_code == 409
    detail = client.get(f"/api/v1/alerts/{aid}", headers=h).json()
    assert [x["action"] for x in detail["history"]] == [
        "anwang.alerts.alert.raised", "anwang.alerts.alert.acknowledged",
        "anwang.alerts.alert.closed"]
    assert kit.audit_ok()


@pytest.mark.parametrize("outcome", ["confirmed", "misread", "not_located", "duplicate"])
def test_every_outcome_closes(client: TestClient, kit: Kit, outcome: str) -> None:
    kit.entry("苏D12345", now=utcnow())
    aid = raise_at(kit)
    h = kit.token(client, "cmd")
    client.post(f"/api/v1/alerts/{aid}/acknowledge", headers=h)
    r = client.post(f"/api/v1/alerts/{aid}/close", json={"outcome": outcome}, headers=h)
    assert r.status_code == 200 and r.json()["outcome"] == outcome


HANDLE = {"west.disp": 200, "west.off": 200, "cmd": 200, "adm": 200,
          "ana": 403, "aud": 403, "west.grid": 403}


@pytest.mark.parametrize(("who", "status"), HANDLE.items())
def test_who_may_handle_alerts(client: TestClient, kit: Kit, who: str, status: int) -> None:
    kit.entry("苏D12345", now=utcnow())
    aid = raise_at(kit)
    h = kit.token(client, who)
    assert client.get("/api/v1/alerts", headers=h).status_code == status
    assert client.post(f"/api/v1/alerts/{aid}/acknowledge", headers=h).status_code == status


def test_a_dispatcher_sees_only_the_alerts_of_their_district(
    client: TestClient, kit: Kit
) -> None:
    kit.entry("苏D12345", now=utcnow())
    west, east = raise_at(kit, where=WEST), raise_at(kit, where=EAST)
    w, e, c = (kit.token(client, u) for u in ("west.disp", "east.disp", "cmd"))

    def listed(h: dict[str, str]) -> set[str]:
        return {a["id"] for a in client.get("/api/v1/alerts", headers=h).json()}

    assert listed(w) == {west} and listed(e) == {east} and listed(c) == {west, east}
    r = client.get(f"/api/v1/alerts/{east}", headers=w)
    assert r.status_code == 404 and r.json()["code"] == "anwang.alerts.not_found"
    assert client.post(f"/api/v1/alerts/{east}/acknowledge", headers=w).status_code == 404
    assert client.get(f"/api/v1/alerts/{east}", headers=e).status_code == 200
    stats_w = client.get("/api/v1/alerts/stats", headers=w).json()
    assert stats_w["alerts"] == 1
    assert client.get("/api/v1/alerts/stats", headers=c).json()["alerts"] == 2


def test_list_filters(client: TestClient, kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    kit.entry("苏D?99*", now=utcnow(), priority=2, reason="wanted_case")
    a = raise_at(kit, "苏D12345")
    b = raise_at(kit, "苏DA9912", where=EAST)
    h = kit.token(client, "cmd")
    client.post(f"/api/v1/alerts/{a}/acknowledge", headers=h)

    def ids(**params: str) -> set[str]:
        r = client.get("/api/v1/alerts", params=params, headers=h)
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()}

    assert ids(status="open") == {b}
    assert ids(status="acknowledged") == {a}
    assert ids(checkpoint="CP-E1") == {b}
    assert ids(reason="wanted_case") == {b}
    assert ids(kind="partial") == {b}
    assert ids(since=(utcnow() + timedelta(minutes=1)).isoformat()) == set()
    assert client.get("/api/v1/alerts", params={"kind": "fuzzy"}, headers=h).status_code == 422


def test_unacknowledged_alerts_escalate_every_m_minutes(kit: Kit) -> None:
    kit.entry("苏D12345")
    aid = raise_at(kit, at=NOW)

    def scan(minutes_later: float) -> int:
        with kit.db.unit_of_work() as s:
            return alerts.scan_escalations(s, now=NOW + timedelta(minutes=minutes_later),
                                           escalate_after_minutes=2)

    assert scan(1.9) == 0
    assert scan(2) == 1
    with kit.db.unit_of_work() as s:
        a = s.get(Alert, aid)
        assert a is not None
        assert (a.escalation_level, a.audience_jurisdiction) == (1, "3201")
    assert scan(3) == 0  # the next level is due 2 minutes after this escalation
    assert scan(4) == 1
    with kit.db.unit_of_work() as s:
        a = s.get(Alert, aid)
        assert a is not None
        assert (a.escalation_level, a.audience_jurisdiction) == (2, None)
    assert scan(60) == 0  # city-wide: nowhere further to go
    escalations = [e for e in kit.events() if e.name == ESCALATED]
    assert [e.audience.jurisdiction for e in escalations] == ["3201", None]
    assert "commander" in escalations[0].audience.roles
    assert escalations[1].payload["escalation_level"] == 2
    assert kit.actions(f"alert:{aid}") == [
        "anwang.alerts.alert.raised", "anwang.alerts.alert.escalated",
        "anwang.alerts.alert.escalated"]
    assert kit.audit_ok()


def test_an_acknowledged_alert_does_not_escalate(kit: Kit) -> None:
    kit.entry("苏D12345")
    aid = raise_at(kit, at=NOW)
    with kit.db.unit_of_work() as s:
        alerts.acknowledge_alert(s, alert_id=aid, actor="west.disp",
                                 now=NOW + timedelta(minutes=1))
    with kit.db.unit_of_work() as s:
        assert alerts.scan_escalations(s, now=NOW + timedelta(minutes=30),
                                       escalate_after_minutes=2) == 0


def test_the_periodic_round_expires_and_escalates(kit: Kit, settings: Settings) -> None:
    kit.entry("苏D12345", days=1)
    raise_at(kit, at=NOW)
    done = run_round(kit.db, settings, now=NOW + timedelta(days=2))
    assert done == {"expired": 1, "escalated": 1}
    assert run_round(kit.db, settings, now=NOW + timedelta(days=2)) == {
        "expired": 0, "escalated": 0}


def test_statistics(kit: Kit) -> None:
    kit.entry("苏D12345", now=NOW)
    kit.entry("苏D?99*", now=NOW, priority=2, reason="wanted_case")
    a = raise_at(kit, "苏D12345", at=NOW)
    b = raise_at(kit, "苏DA9912", at=NOW, where=EAST)
    raise_at(kit, "苏D12345", at=NOW + timedelta(minutes=1))  # counted in a
    with kit.db.unit_of_work() as s:
        alerts.acknowledge_alert(s, alert_id=a, actor="x", now=NOW + timedelta(seconds=50))
        alerts.close_alert(s, alert_id=a, actor="x", outcome="misread", now=NOW)
        alerts.acknowledge_alert(s, alert_id=b, actor="x", now=NOW + timedelta(seconds=170))
        alerts.close_alert(s, alert_id=b, actor="x", outcome="confirmed", now=NOW)
    with kit.db.unit_of_work() as s:
        f = alerts.statistics(s, since=NOW - timedelta(days=1))
    assert f["alerts"] == 2 and f["hits"] == 3
    assert f["hits_by_reason"] == {"stolen_vehicle": 2, "wanted_case": 1}
    assert f["alerts_by_kind"] == {"exact": 1, "partial": 1}
    assert f["outcomes"] == {"confirmed": 1, "misread": 1, "not_located": 0, "duplicate": 0}
    rates = {r["checkpoint"]: r["misread_rate"] for r in f["outcomes_by_checkpoint"]}
    assert rates == {"CP-W1": 1.0, "CP-E1": 0.0}
    ack = f["acknowledge_seconds"]
    assert ack["count"] == 2 and ack["median"] == 110.0
    assert ack["histogram"]["<1m"] == 1 and ack["histogram"]["2-5m"] == 1
