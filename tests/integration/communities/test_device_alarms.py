"""Alarms: one per (device, rule) while up, repeats counted, cleared by the device or by
hand, acknowledged, closed with an outcome, escalated on timers, offline devices found
in one scan — every step audited and announced to the right people."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.communities import alarms, intake
from anwang.communities.models import DeviceStatus
from anwang.core.errors import Conflict
from tests.integration.communities.conftest import T0, WEST_GRID, Kit, later


def test_one_alarm_per_device_and_rule_while_it_lasts(kit: Kit) -> None:
    kit.device("sm-1", "smoke_alarm", floor=9)
    r1 = kit.ingest(kit.event("sm-1", "smoke_alarm", later(1)))
    r2 = kit.ingest(kit.event("sm-1", "smoke_alarm", later(5)),
                    kit.event("sm-1", "smoke_alarm", later(9)))
    [alarm] = kit.alarms()
    assert r1.raised == [alarm.id] and r2.raised == [] and r2.repeats == 2
    assert (alarm.kind, alarm.severity, alarm.status, alarm.count) == (
        "fire", "critical", "active", 3)
    assert alarm.first_seen_at == later(1) and alarm.last_seen_at == later(9)
    assert alarm.detail == {"event": "smoke_alarm", "floor": 9}
    assert alarm.jurisdiction_code == WEST_GRID
    # The device says the smoke is gone: the alarm clears itself, and the next smoke is
    # a new alarm.
    r3 = kit.ingest(kit.event("sm-1", "smoke_cleared", later(60)))
    assert r3.cleared == [alarm.id]
    r4 = kit.ingest(kit.event("sm-1", "smoke_alarm", later(120)))
    first, second = kit.alarms()
    assert (first.status, first.active_key, first.cleared_by) == ("cleared", None, "anwang")
    assert second.status == "active" and r4.raised == [second.id]
    assert [a for a, _ in kit.audit("anwang.communities.alarm.")] == [
        "anwang.communities.alarm.raised", "anwang.communities.alarm.cleared",
        "anwang.communities.alarm.raised"]
    names = [e["name"] for e in kit.outbox()]
    assert names == ["anwang.communities.alarm.raised", "anwang.communities.alarm.cleared",
                     "anwang.communities.alarm.raised"]


def test_events_reach_the_community_first_with_a_place_on_the_map(kit: Kit) -> None:
    kit.device("tc-1", "throw_camera", floor=1)
    kit.ingest(kit.event("tc-1", "object_thrown", later(3), floor_estimate=14))
    [event] = kit.outbox()
    assert event["audience"] == {"roles": ["business", "grid_worker"],
                                 "jurisdiction": WEST_GRID}
    p = event["payload"]
    assert (p["kind"], p["device"], p["community"], p["community_name"]) == (
        "object_thrown", "tc-1", "W1", "幸福里")
    assert isinstance(p["lat"], float) and isinstance(p["lon"], float)
    [alarm] = kit.alarms()
    assert alarm.detail is not None and alarm.detail["floor_estimate"] == 14


def test_rule_state_survives_a_restart(kit: Kit) -> None:
    """Half a hold before a restart, half after: the hold completes; a repeat after the
    restart counts on the same alarm."""
    kit.device("cp-1")
    kit.ingest(*[kit.telemetry("cp-1", later(t), temperature_c=85) for t in range(0, 20, 2)])
    with kit.db.unit_of_work() as s:
        fresh = intake.Directory()  # a new process: nothing in memory
        report = intake.ingest(s, messages=[kit.telemetry("cp-1", later(t), temperature_c=85)
                                            for t in range(20, 34, 2)],
                               now=later(34), directory=fresh)
    assert len(report.raised) == 1
    with kit.db.unit_of_work() as s:
        again = intake.ingest(s, messages=[kit.telemetry("cp-1", later(40), temperature_c=86)],
                              now=later(40), directory=intake.Directory())
    assert again.raised == [] and again.repeats == 1
    [alarm] = kit.alarms()
    assert alarm.first_seen_at == later(30) and alarm.count == 3


def test_acknowledge_clear_and_close_by_hand(client: TestClient, as_user: Any,
                                             kit: Kit) -> None:
    kit.device("cp-1")
    kit.ingest(*[kit.telemetry("cp-1", later(t), temperature_c=85) for t in range(0, 40, 5)])
    [alarm] = kit.alarms()
    url = f"/api/v1/alarms/{alarm.id}"
    assert client.post(url + "/acknowledge", headers=as_user("east.officer")).status_code == 404
    assert client.post(url + "/acknowledge", headers=as_user("the.auditor")).status_code == 403
    r = client.post(url + "/acknowledge", json={"note": "物业已到场"},
                    headers=as_user("west.manager"))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["acknowledged_by"]) == ("acknowledged", "west.manager")
    assert r.json()["escalate_at"] is None
    assert client.post(url + "/acknowledge", headers=as_user("west.manager")).status_code == 409
    # Cleared by hand while still hot: the rule starts over — the heat must be held again.
    r = client.post(url + "/clear", headers=as_user("west.gridworker"))
    assert r.status_code == 200 and r.json()["status"] == "cleared"
    more = kit.ingest(*[kit.telemetry("cp-1", later(t), temperature_c=85)
                        for t in range(40, 75, 5)])
    assert len(more.raised) == 1
    assert kit.alarms()[1].first_seen_at == later(70)
    r = client.post(url + "/close", json={"outcome": "real", "note": "充电桩过热，已断电"},
                    headers=as_user("west.officer"))
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["outcome"], r.json()["closed_by"]) == (
        "closed", "real", "west.officer")
    assert client.post(url + "/close", json={"outcome": "real"},
                       headers=as_user("west.officer")).status_code == 409
    bad = client.post(f"/api/v1/alarms/{kit.alarms()[1].id}/close", json={"outcome": "meh"},
                      headers=as_user("west.officer"))
    assert bad.status_code == 422
    steps = [a for a, subject in kit.audit("anwang.communities.alarm.") if subject == alarm.id]
    assert steps == ["anwang.communities.alarm.raised", "anwang.communities.alarm.acknowledged",
                     "anwang.communities.alarm.cleared", "anwang.communities.alarm.closed"]
    listed = client.get("/api/v1/alarms?open=true", headers=as_user("west.manager")).json()
    assert [a["id"] for a in listed] == [kit.alarms()[1].id]
    assert client.get("/api/v1/alarms?status=closed&kind=overheat",
                      headers=as_user("admin")).json()[0]["id"] == alarm.id
    assert client.get("/api/v1/alarms", headers=as_user("east.officer")).json() == []


def test_closing_an_open_alarm_clears_it_and_a_new_one_can_rise(kit: Kit) -> None:
    kit.device("gate-1", "gate_sensor")
    kit.ingest(kit.event("gate-1", "forced_open", later(1)))
    [alarm] = kit.alarms()
    with kit.db.unit_of_work() as s:
        closed = alarms.close(s, alarm_id=alarm.id, outcome="false_alarm", actor="west.manager",
                              actor_role="business", now=later(30))
        assert closed.cleared_at == later(30) and closed.active_key is None
    report = kit.ingest(kit.event("gate-1", "forced_open", later(40)))
    assert len(report.raised) == 1 and len(kit.alarms()) == 2
    with pytest.raises(Conflict), kit.db.unit_of_work() as s:
        alarms.close(s, alarm_id=alarm.id, outcome="real", actor="x", actor_role="x",
                     now=later(50))


def test_escalation_follows_the_route_until_acknowledged(kit: Kit) -> None:
    kit.device("sm-1", "smoke_alarm")
    kit.device("mc-1", "manhole_cover")
    kit.ingest(kit.event("sm-1", "smoke_alarm", later(0)),
               kit.event("mc-1", "cover_open", later(0)), now=later(0))
    fire, cover = sorted(kit.alarms(), key=lambda a: a.kind)[1], sorted(
        kit.alarms(), key=lambda a: a.kind)[0]
    assert fire.escalate_at == later(60) and cover.escalate_at == later(300)
    with kit.db.unit_of_work() as s:
        assert alarms.scan_escalations(s, now=later(59)) == 0
    with kit.db.unit_of_work() as s:
        assert alarms.scan_escalations(s, now=later(61)) == 1
    fire = kit.alarms(id=fire.id)[0]
    assert (fire.level, fire.escalate_at) == (1, later(121))
    event = kit.outbox("anwang.communities.alarm.escalated")[-1]
    assert event["audience"]["roles"] == ["business", "grid_worker", "dispatcher"]
    assert event["payload"]["level_name"] == "fire_service"
    with kit.db.unit_of_work() as s:
        assert alarms.scan_escalations(s, now=later(130)) == 1  # fire → command
    with kit.db.unit_of_work() as s:
        assert alarms.scan_escalations(s, now=later(400)) == 1  # only the cover now
    fire, cover = kit.alarms(id=fire.id)[0], kit.alarms(id=cover.id)[0]
    assert (fire.level, fire.escalate_at) == (2, None)  # the top: nowhere further
    assert cover.level == 1
    cover_event = kit.outbox("anwang.communities.alarm.escalated")[-1]
    assert cover_event["audience"]["roles"] == ["business", "grid_worker", "officer",
                                                "dispatcher"]
    with kit.db.unit_of_work() as s:
        alarms.acknowledge(s, alarm_id=cover.id, actor="west.officer", actor_role="officer",
                           now=later(500))
    with kit.db.unit_of_work() as s:
        assert alarms.scan_escalations(s, now=later(10_000)) == 0
    assert [a for a, _ in kit.audit("anwang.communities.alarm.escalated")] == [
        "anwang.communities.alarm.escalated"] * 3


def test_a_mass_escalation_is_one_audit_entry_per_alarm_in_a_few_statements(kit: Kit) -> None:
    """60 smoke alarms escalate in one scan: each gets its audit entry (its timeline) and
    its event, and the chain verifies — but the scan's statements, during which the audit
    writer lock is held, do not grow with the number of alarms."""
    from sqlalchemy import event as sa_event

    from anwang.core import audit

    for i in range(60):
        kit.device(f"sm-{i:02}", "smoke_alarm", community="W1" if i % 2 else "E1")
    kit.ingest(*[kit.event(f"sm-{i:02}", "smoke_alarm", later(1)) for i in range(60)])
    raised = kit.alarms()
    assert len(raised) == 60
    statements: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    sa_event.listen(kit.db.engine, "before_cursor_execute", count)
    try:
        with kit.db.unit_of_work() as s:
            assert alarms.scan_escalations(s, now=later(120)) == 60
    finally:
        sa_event.remove(kit.db.engine, "before_cursor_execute", count)
    assert len(statements) <= 12, "\n".join(x[:90] for x in statements)
    assert all(a.level == 1 for a in kit.alarms())
    escalated = kit.audit("anwang.communities.alarm.escalated")
    assert sorted(subject for _, subject in escalated) == sorted(a.id for a in raised)
    assert len(kit.outbox("anwang.communities.alarm.escalated")) == 60
    with kit.db.unit_of_work(readonly=True) as s:
        assert audit.verify(s).ok


def test_offline_devices_are_found_in_one_scan_and_recover(kit: Kit) -> None:
    for i in range(30):
        kit.device(f"m-{i:02}", "manhole_cover", heartbeat_s=60, at=T0)
    kit.device("e-0", "gate_sensor", community="E1", heartbeat_s=600, at=T0)
    kit.ingest(*[kit.telemetry(f"m-{i:02}", later(100), tilt_deg=1) for i in range(10)],
               now=later(100))
    with kit.db.unit_of_work() as s:
        assert alarms.scan_offline(s, now=later(179), directory=intake.directory_for(s)) == 0
    with kit.db.unit_of_work() as s:
        # The 20 that never reported are past registration + 3 × 60 s.
        assert alarms.scan_offline(s, now=later(181), directory=intake.directory_for(s)) == 20
    with kit.db.unit_of_work() as s:
        assert alarms.scan_offline(s, now=later(181), directory=intake.directory_for(s)) == 0
        assert alarms.scan_offline(s, now=later(281), directory=intake.directory_for(s)) == 10
    offline = kit.alarms(rule_id="offline")
    assert len(offline) == 30 and {a.kind for a in offline} == {"maintenance"}
    assert {a.severity for a in offline} == {"low"} and all(a.escalate_at is None
                                                           for a in offline)
    [(action, _), (action2, _)] = kit.audit("anwang.communities.devices.")
    assert action == action2 == "anwang.communities.devices.marked_offline"
    outages = kit.outbox("anwang.communities.outage.detected")
    assert [e["payload"]["count"] for e in outages] == [20, 10]
    assert outages[0]["audience"]["roles"] == ["business", "grid_worker"]
    # A device that speaks again is online, and its offline alarm is cleared.
    report = kit.ingest(kit.telemetry("m-03", later(300), tilt_deg=1), now=later(300))
    assert len(report.cleared) == 1
    with kit.db.unit_of_work() as s:
        st = s.scalars(select(DeviceStatus).where(DeviceStatus.device_id == "m-03")).one()
        assert st.online is True and st.offline_since is None
        assert st.offline_after == later(300 + 180)
    cleared = kit.alarms(device_id="m-03")[0]
    assert cleared.status == "cleared"
    # The gate sensor with a 10-minute heartbeat has 30 minutes.
    with kit.db.unit_of_work() as s:
        assert alarms.scan_offline(s, now=later(1801), directory=intake.directory_for(s)) >= 1
    assert kit.alarms(device_id="e-0")[0].jurisdiction_code == "32020101"


def test_offline_alarm_rows_carry_the_device_and_its_last_sign_of_life(kit: Kit) -> None:
    """Every field of a scan-raised alarm, on either database (PostgreSQL builds the rows
    in the database, SQLite in Python)."""
    kit.device("fl-1", "manhole_cover", floor=3)
    kit.device("fl-2", "manhole_cover", community="E1")
    kit.device("fl-3", "gate_sensor")
    kit.ingest(kit.telemetry("fl-1", later(10.25), tilt_deg=1), now=later(10.25))
    kit.ingest(kit.telemetry("fl-3", later(20), received=later(20)), now=later(20))
    with kit.db.unit_of_work(readonly=True) as s:
        seen = {st.device_id: st.last_seen_at for st in s.scalars(select(DeviceStatus))}
    at = later(5000)
    with kit.db.unit_of_work() as s:
        assert alarms.scan_offline(s, now=at, directory=intake.directory_for(s)) == 3
    got = {a.device_id: a for a in kit.alarms(rule_id="offline")}
    assert sorted(got) == ["fl-1", "fl-2", "fl-3"]
    assert seen["fl-1"] == later(10.25) and seen["fl-3"] == later(20)
    for device_id, floor, community, kind in (("fl-1", 3, "W1", "manhole_cover"),
                                              ("fl-2", None, "E1", "manhole_cover"),
                                              ("fl-3", None, "W1", "gate_sensor")):
        a = got[device_id]
        last = seen[device_id]
        assert (a.community_code, a.device_kind, a.kind, a.severity, a.route, a.status) == (
            community, kind, "maintenance", "low", "maintenance", "active")
        assert (a.active_key, a.level, a.count, a.value, a.escalate_at) == (
            f"{device_id}|offline", 0, 1, None, None)
        assert a.raised_at == at
        assert a.first_seen_at == a.last_seen_at == (last or at)
        assert a.detail == {"last_seen_at": last.isoformat() if last else None,
                            "heartbeat_s": 60, "missed": 3, "floor": floor}
        assert (a.lat, a.lon) == ((31.755, 119.855) if community == "W1"
                                  else (31.755, 120.005))
        assert a.jurisdiction_code == ("32010101" if community == "W1" else "32020101")
        assert len(a.id) == 26 and a.acknowledged_at is None and a.outcome is None
    # 10.25 s has a fraction of a second, 20 s has none: both written as Python would.
    assert got["fl-1"].detail["last_seen_at"] == "2026-11-28T08:00:10.250000+00:00"
    assert got["fl-3"].detail["last_seen_at"] == "2026-11-28T08:00:20+00:00"
    outages = kit.outbox("anwang.communities.outage.detected")
    assert sorted((e["payload"]["count"], e["payload"]["devices"]) for e in outages) == [
        (1, ["fl-2"]), (2, ["fl-1", "fl-3"])]


def test_battery_low_is_a_maintenance_task(kit: Kit) -> None:
    kit.device("mc-1", "manhole_cover")
    kit.ingest(kit.msg("mc-1", "heartbeat", {"ts": later(10).isoformat(),
                                             "metrics": {"battery_pct": 17}},
                       received=later(10)))
    [alarm] = kit.alarms()
    assert (alarm.rule_id, alarm.kind, alarm.route, alarm.value) == (
        "battery_low", "maintenance", "maintenance", 17)
    kit.ingest(kit.msg("mc-1", "heartbeat", {"ts": later(20).isoformat(),
                                             "metrics": {"battery_pct": 96}},
                       received=later(20)))
    assert kit.alarms()[0].status == "cleared"


def test_alarms_per_day(client: TestClient, as_user: Any, kit: Kit) -> None:
    kit.device("sm-1", "smoke_alarm")
    kit.ingest(kit.event("sm-1", "smoke_alarm", later(0)), now=later(0))
    kit.ingest(kit.event("sm-1", "smoke_cleared", later(10)), now=later(10))
    kit.ingest(kit.event("sm-1", "smoke_alarm", later(86_400)), now=later(86_400))
    with kit.db.unit_of_work() as s:
        got = alarms.alarms_per_day(s, days=7, now=later(86_400))
    assert [(d.isoformat(), sev, n) for d, sev, n in got] == [
        ("2026-11-28", "critical", 1), ("2026-11-29", "critical", 1)]
    r = client.get("/api/v1/alarms/per-day?days=30", headers=as_user("west.manager"))
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert (T0 + timedelta(days=1)).date().isoformat() == "2026-11-29"


def test_a_redelivered_sample_is_stored_once_beside_the_new_ones(kit: Kit) -> None:
    """A batch that repeats a stored sample (a message redelivered after a restart) keeps
    the new ones and the rest of the batch's work, and stores nothing twice."""
    from anwang.communities.models import DeviceSample

    kit.device("cp-1")
    kit.device("cp-2")
    kit.ingest(kit.telemetry("cp-1", later(5), temperature_c=40))
    report = kit.ingest(kit.telemetry("cp-1", later(5), temperature_c=40),
                        kit.telemetry("cp-1", later(10), temperature_c=41),
                        kit.telemetry("cp-2", later(10), temperature_c=30))
    assert report.accepted == 3 and report.refused == []
    with kit.db.unit_of_work(readonly=True) as s:
        stored = [(d.device_id, d.ts, d.metrics) for d in s.scalars(
            select(DeviceSample).order_by(DeviceSample.device_id, DeviceSample.ts))]
        status = {d.device_id: d for d in s.scalars(select(DeviceStatus))}
    assert stored == [("cp-1", later(5), {"temperature_c": 40}),
                      ("cp-1", later(10), {"temperature_c": 41}),
                      ("cp-2", later(10), {"temperature_c": 30})]
    assert status["cp-2"].metrics == {"temperature_c": 30}
    assert status["cp-1"].metrics == {"temperature_c": 41}
    assert status["cp-1"].messages == 3
