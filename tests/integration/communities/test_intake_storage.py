"""What the intake writes per batch, on SQLite and PostgreSQL: the status row keeps the
latest value of every metric (merged by the database, late readings ignored), every
sample is stored once, and two workers given messages of one device at the same time
judge them one after the other."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from anwang.communities import handlers, intake
from anwang.communities.models import DeviceEvent, DeviceSample, DeviceStatus
from anwang.infra.mqtt import Message
from anwang.settings import Settings
from tests.integration.communities.conftest import T0, Kit, later


def status(kit: Kit, device_id: str) -> DeviceStatus:
    with kit.db.unit_of_work(readonly=True) as s:
        row = s.get(DeviceStatus, device_id)
        assert row is not None
        return row


def samples(kit: Kit, device_id: str) -> list[tuple[datetime, dict[str, float]]]:
    with kit.db.unit_of_work(readonly=True) as s:
        return [(ts, m) for ts, m in s.execute(
            select(DeviceSample.ts, DeviceSample.metrics)
            .where(DeviceSample.device_id == device_id).order_by(DeviceSample.ts))]


def test_the_status_keeps_the_latest_value_of_each_metric(kit: Kit) -> None:
    kit.device("cp-m")
    kit.ingest(kit.telemetry("cp-m", later(0), temperature_c=40, power_w=100, battery_pct=90))
    kit.ingest(kit.telemetry("cp-m", later(10), temperature_c=45))
    st = status(kit, "cp-m")
    assert st.metrics == {"temperature_c": 45, "power_w": 100, "battery_pct": 90}
    assert st.battery_pct == 90  # not said again: kept
    assert st.last_ts == later(10) and st.messages == 2 and st.online is True
    assert st.last_seen_at == later(10)
    assert st.offline_after == later(10 + 3 * 60)

    # A late reading (older than one already judged) is stored, but changes no latest value.
    kit.ingest(kit.telemetry("cp-m", later(5), later(20), power_w=999, battery_pct=10))
    st = status(kit, "cp-m")
    assert st.metrics == {"temperature_c": 45, "power_w": 100, "battery_pct": 90}
    assert st.battery_pct == 90 and st.last_ts == later(10) and st.messages == 3
    assert st.last_seen_at == later(20)

    # Several readings of one device in one batch: the newest value of each wins.
    kit.ingest(kit.telemetry("cp-m", later(40), temperature_c=50, battery_pct=80),
               kit.telemetry("cp-m", later(30), temperature_c=47, power_w=200))
    st = status(kit, "cp-m")
    assert st.metrics == {"temperature_c": 50, "power_w": 200, "battery_pct": 80}
    assert st.battery_pct == 80 and st.last_ts == later(40) and st.messages == 5

    got = samples(kit, "cp-m")
    assert [ts for ts, _ in got] == [later(t) for t in (0, 5, 10, 30, 40)]
    assert got[1][1] == {"power_w": 999, "battery_pct": 10}


def test_a_redelivered_batch_stores_no_sample_twice(kit: Kit) -> None:
    kit.device("mc-r", "manhole_cover")
    batch = [kit.telemetry("mc-r", later(t), tilt_deg=1.5, battery_pct=70) for t in (0, 1, 2)]
    kit.ingest(*batch)
    kit.ingest(*batch)
    assert len(samples(kit, "mc-r")) == 3
    assert status(kit, "mc-r").messages == 6  # received twice, as it was


def test_the_rules_state_is_written_with_the_status(kit: Kit) -> None:
    kit.device("cp-s")
    kit.ingest(*[kit.telemetry("cp-s", later(t), temperature_c=85) for t in (0, 10)])
    state = status(kit, "cp-s").rule_state
    assert state["v"] == 1 and state["hw"] == later(10).timestamp()
    assert state["r"]["overheat"] == {"since": later(0).timestamp()}


def test_two_workers_judge_one_device_in_turn(kit: Kit, settings: Settings) -> None:
    """Each of two threads (two workers of a shared subscription) handles every other
    batch of one device's events, all at once: the status rows are locked per batch, so
    no batch judges a state another has not finished writing."""
    kit.device("gs-w", "gate_sensor")
    per_worker, per_batch = 6, 3

    def message(i: int) -> Message:
        body = json.dumps({"ts": later(i).isoformat(), "event": "forced_open"}).encode()
        return Message("anwang/devices/gs-w/events", body, 1, False, False, i,
                       T0.timestamp() + i, 1)

    batches = [[message(b * per_batch + k) for k in range(per_batch)]
               for b in range(2 * per_worker)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(mine: list[list[Message]]) -> None:
        try:
            start.wait(10)
            for batch in mine:
                handlers.handle_batch(kit.db, settings, batch, now=later(1000))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(batches[w::2],)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    total = 2 * per_worker * per_batch
    [alarm] = kit.alarms(kind="gate_forced")
    assert alarm.count == total
    st = status(kit, "gs-w")
    assert st.messages == total
    assert st.rule_state["r"]["gate_forced"] == {"on": True}
    with kit.db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(DeviceEvent)
                        .where(DeviceEvent.device_id == "gs-w")) == total


def test_a_device_registered_a_moment_ago_is_judged(kit: Kit) -> None:
    """The status row made at registration is there; and a device without one (an old
    registry) gets it from its first batch."""
    kit.device("sm-n", "smoke_alarm")
    with kit.db.unit_of_work() as s:
        s.execute(DeviceStatus.__table__.delete().where(DeviceStatus.device_id == "sm-n"))
    report = kit.ingest(kit.msg("sm-n", "heartbeat", {"ts": T0.isoformat(),
                                                       "metrics": {"battery_pct": 55}}))
    assert report.accepted == 1
    st = status(kit, "sm-n")
    assert st.metrics == {"battery_pct": 55} and st.battery_pct == 55 and st.messages == 1
    assert st.last_seen_at == T0 and st.last_ts == T0
    assert datetime.fromtimestamp(st.rule_state["hw"], UTC) == T0


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # SQLite: one batch at a time
def test_batches_judged_at_once_lock_in_the_order_they_came(
        kit: Kit, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the MQTT handler runs batches of one lane at once (on PostgreSQL, with
    ``CONCURRENT_BATCHES`` above 1, or called so, as here): a later batch — even a
    small one, parsed first — takes its devices' locks only after the one before, and
    a message delivered twice, in two batches in flight together, is stored and judged
    once (its second copy waits for the first's commit instead of deadlocking)."""
    from anwang.communities import intake

    for i in range(4):
        kit.device(f"gs-{i}", "gate_sensor")
    locked: list[int] = []
    original = intake._lock_status

    def lock_status(session: Any, ids: Any) -> Any:
        got = original(session, ids)
        locked.append(len(ids))
        return got

    monkeypatch.setattr(intake, "_lock_status", lock_status)

    def message(device: int, i: int) -> Message:
        """An event at even times, a battery reading at odd ones."""
        at = later(i)
        if i % 2:
            body = {"ts": at.isoformat(), "metrics": {"battery_pct": 50 + i % 40}}
            topic = f"anwang/devices/gs-{device}/telemetry"
        else:
            body = {"ts": at.isoformat(), "event": "forced_open"}
            topic = f"anwang/devices/gs-{device}/events"
        return Message(topic, json.dumps(body).encode(), 1, False, False, i,
                       at.timestamp(), 1)

    big = [message(d, i) for i in range(200) for d in range(4)]  # 4 devices
    small = [message(d, 1001) for d in range(2)]  # 2 devices, parsed in no time
    again = big[:80]  # delivered a second time, while the first copy is in flight
    sub = handlers.subscription(kit.db, settings)
    assert sub.concurrency == handlers.CONCURRENT_BATCHES
    assert sub.lanes == (handlers.LANES if kit.db.dialect == "postgresql" else 1)

    async def run() -> None:
        first = asyncio.create_task(sub.handler(big))
        await asyncio.sleep(0)  # started in this order, as the consumer starts them
        second = asyncio.create_task(sub.handler(small))
        await asyncio.sleep(0)
        third = asyncio.create_task(sub.handler(again))
        await asyncio.wait_for(asyncio.gather(first, second, third), 60)

    asyncio.run(run())
    assert locked == [4, 2, 4]
    with kit.db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(DeviceEvent)) == 4 * 100
        assert s.scalar(select(func.count()).select_from(DeviceSample)) == 4 * 100 + 2
    for d in range(4):
        st = status(kit, f"gs-{d}")
        assert st.messages == 200 + 20 + (d < 2)  # the 80 sent twice: 20 per device
        assert st.metrics == {"battery_pct": 50 + (1001 if d < 2 else 199) % 40}
    gate = kit.alarms(kind="gate_forced")
    assert len(gate) == 4 and [a.count for a in gate] == [100] * 4  # each event once


def test_a_status_rewrite_touches_no_index(kit: Kit) -> None:
    """The columns every message changes (last seen, offline deadline, rules' state...)
    are in no index, so on PostgreSQL the status row's new version is a heap-only tuple
    (no index entry written) — and on both databases no index is kept per message."""
    kit.device("cp-hot")
    kit.ingest(kit.telemetry("cp-hot", later(0), temperature_c=40))
    with kit.db.unit_of_work() as s:
        conn = s.connection()
        report = intake.ingest(
            s, messages=[kit.telemetry("cp-hot", later(10), temperature_c=41,
                                       received=later(10))], now=later(10))
        assert report.accepted == 1
        if conn.dialect.name == "postgresql":
            upd, hot = conn.exec_driver_sql(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'device_status'").one()
            assert upd >= 1 and hot == upd
            options = conn.exec_driver_sql(
                "SELECT reloptions FROM pg_class WHERE relname = 'device_status'").scalar()
            assert "fillfactor=50" in (options or [])
        else:
            indexed = {row[2] for ix in conn.exec_driver_sql(
                "SELECT name FROM pragma_index_list('device_status')").all()
                for row in conn.exec_driver_sql(f"PRAGMA index_info('{ix[0]}')").all()}
            assert indexed <= {"device_id"}
    assert status(kit, "cp-hot").offline_after == later(10 + 3 * 60)
