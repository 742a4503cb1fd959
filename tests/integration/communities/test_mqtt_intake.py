"""The MQTT intake against the machine's Mosquitto, with real clients on both sides.

Each test uses its own consumer group and worker id (and device ids), and sessions that
expire a minute after the test, so that runs never share a broker session.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from anwang.communities import handlers
from anwang.communities.models import DeviceRejection, DeviceSample
from anwang.core.db import Database
from anwang.core.events import utcnow
from anwang.infra.mqtt import Message, MqttConsumer, MqttUrl, Subscription
from anwang.settings import Settings
from tests.integration.communities.conftest import Kit

pytestmark = [pytest.mark.mqtt]


class Publisher:
    """A device side: one paho client publishing with QoS 1 and waiting for PUBACKs."""

    def __init__(self, url: str) -> None:
        u = MqttUrl.parse(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.connect(u.host, u.port)
        self.client.loop_start()

    def send(self, topic: str, payload: Any) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, raw, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mqtt_url: str) -> Any:
    p = Publisher(mqtt_url)
    yield p
    p.close()


class Group:
    """Consumers of one throw-away group on the broker."""

    def __init__(self, url: str, db: Database, settings: Settings) -> None:
        self.url = url
        self.db = db
        self.settings = settings
        self.name = f"t{uuid.uuid4().hex[:10]}"
        self.consumers: list[MqttConsumer] = []

    def consumer(self, worker: str = "w1",
                 wrap: Callable[[Subscription], Subscription] | None = None,
                 shared: bool = False) -> MqttConsumer:
        sub = handlers.subscription(self.db, self.settings, name=self.name)
        if wrap is not None:
            sub = wrap(sub)
        c = MqttConsumer(self.url + ("?shared=1" if shared else ""), sub, worker_id=worker,
                         session_expiry_s=60, retry_base_s=0.05)
        self.consumers.append(c)
        return c

    async def stop_all(self) -> None:
        for c in self.consumers:
            await c.stop()


@pytest.fixture
async def group(mqtt_url: str, kit: Kit, settings: Settings) -> Any:
    g = Group(mqtt_url, kit.db, settings)
    yield g
    await g.stop_all()


def dev(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def now_iso(offset: float = 0.0) -> str:
    return datetime_iso(utcnow().timestamp() + offset)


def datetime_iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


async def test_a_published_smoke_alarm_is_stored_and_acknowledged(
    group: Group, publisher: Publisher, kit: Kit,
) -> None:
    sm = dev("sm")
    kit.device(sm, "smoke_alarm", floor=5)
    c = group.consumer()
    await c.start()
    await c.wait_ready()
    await asyncio.to_thread(publisher.send, f"anwang/devices/{sm}/events",
                            {"ts": now_iso(), "event": "smoke_alarm"})
    [alarm] = await eventually(lambda: kit.alarms(device_id=sm))
    assert (alarm.kind, alarm.status) == ("fire", "active")
    await eventually(lambda: c.stats.acked >= 1)
    assert c.stats.dead == 0


async def test_messages_sent_while_the_worker_is_down_arrive_after_it_restarts(
    group: Group, publisher: Publisher, kit: Kit,
) -> None:
    cp = dev("cp")
    kit.device(cp)
    first = group.consumer("w1")
    await first.start()
    await first.wait_ready()
    await first.stop()
    t0 = utcnow().timestamp() - 60
    for i in range(40):  # 80 °C exceeded for 39 s of device time
        await asyncio.to_thread(publisher.send, f"anwang/devices/{cp}/telemetry",
                                {"ts": datetime_iso(t0 + i), "metrics": {"temperature_c": 91}})
    again = group.consumer("w1")  # the same worker id: the same broker session
    await again.start()
    [alarm] = await eventually(lambda: kit.alarms(device_id=cp))
    assert alarm.kind == "overheat"

    def samples() -> int:
        with kit.db.unit_of_work(readonly=True) as s:
            return int(s.scalar(select(func.count()).select_from(DeviceSample)
                                .where(DeviceSample.device_id == cp)) or 0)

    await eventually(lambda: samples() == 40)
    await eventually(lambda: kit.alarms(device_id=cp)[0].count == 10)


async def test_a_batch_is_acknowledged_only_after_its_commit(
    group: Group, publisher: Publisher, kit: Kit,
) -> None:
    """A worker that dies while its batch is being handled acknowledges nothing: the
    broker hands the messages to the next start, and the alarm is stored once."""
    gate = dev("gate")
    kit.device(gate, "gate_sensor")
    entered = asyncio.Event()

    def stuck(sub: Subscription) -> Subscription:
        async def never(batch: Sequence[Message]) -> None:
            entered.set()
            await asyncio.Event().wait()

        return Subscription(sub.name, sub.topics, never)

    dying = group.consumer("w1", wrap=stuck)
    await dying.start()
    await dying.wait_ready()
    body = {"ts": now_iso(), "event": "forced_open"}
    await asyncio.to_thread(publisher.send, f"anwang/devices/{gate}/events", body)
    await asyncio.wait_for(entered.wait(), 10)
    await dying.stop()
    assert dying.stats.acked == 0 and kit.alarms(device_id=gate) == []
    survivor = group.consumer("w1")
    await survivor.start()
    [alarm] = await eventually(lambda: kit.alarms(device_id=gate))
    # The device repeating itself (same message again) changes nothing.
    await asyncio.to_thread(publisher.send, f"anwang/devices/{gate}/events", body)
    await eventually(lambda: survivor.stats.acked >= 2)
    [same] = kit.alarms(device_id=gate)
    assert same.id == alarm.id and same.count == 1


async def test_repeats_collapse_into_one_alarm(group: Group, publisher: Publisher,
                                               kit: Kit) -> None:
    tc = dev("tc")
    kit.device(tc, "throw_camera", floor=1)
    c = group.consumer()
    await c.start()
    await c.wait_ready()
    base = utcnow().timestamp()
    for i in range(5):
        await asyncio.to_thread(publisher.send, f"anwang/devices/{tc}/events",
                                {"ts": datetime_iso(base + i), "event": "object_thrown",
                                 "detail": {"floor_estimate": 11}})
    await eventually(lambda: kit.alarms(device_id=tc) and kit.alarms(device_id=tc)[0].count == 5)
    assert len(kit.alarms(device_id=tc)) == 1


async def test_bad_messages_are_counted_and_never_stall_the_intake(
    group: Group, publisher: Publisher, kit: Kit,
) -> None:
    sm, ghost = dev("sm"), dev("ghost")
    kit.device(sm, "smoke_alarm")
    c = group.consumer()
    await c.start()
    await c.wait_ready()
    telemetry = f"anwang/devices/{sm}/telemetry"
    for topic, payload in [
        (telemetry, b"\x00not json at all"),
        (telemetry, {"ts": now_iso(), "metrics": {"temperature_c": 900}}),
        (telemetry, {"ts": now_iso(), "metrics": {"battery_pct": -1}}),
        (telemetry, {"ts": now_iso(3600), "metrics": {"temperature_c": 20}}),
        (telemetry, {"ts": now_iso(), "metrics": "warm"}),
        (f"anwang/devices/{ghost}/events", {"ts": now_iso(), "event": "smoke_alarm"}),
        (f"anwang/devices/{sm}/events", {"ts": now_iso(), "event": "smoke_alarm"}),
    ]:
        await asyncio.to_thread(publisher.send, topic, payload)
    await eventually(lambda: kit.alarms(device_id=sm))

    def counts() -> dict[str, int]:
        with kit.db.unit_of_work(readonly=True) as s:
            return {r: int(n) for r, n in s.execute(
                select(DeviceRejection.reason, DeviceRejection.count)
                .where(DeviceRejection.device_id == sm))}

    assert await eventually(lambda: counts() == {
        "not_json": 1, "impossible_value": 2, "future_timestamp": 1, "bad_shape": 1})
    with kit.db.unit_of_work(readonly=True) as s:
        unknown = s.execute(select(DeviceRejection.count, DeviceRejection.last_detail).where(
            DeviceRejection.device_id == "", DeviceRejection.reason == "unknown_device")).one()
    assert unknown == (1, ghost)
    assert c.stats.dead == 0 and c.stats.acked >= 7


async def test_a_message_that_breaks_the_handler_is_set_aside(
    group: Group, publisher: Publisher, kit: Kit,
) -> None:
    """A handler bug on one message: the batch is split until that message is alone, it
    is recorded and acknowledged, and the others go through."""
    sm = dev("sm")
    kit.device(sm, "smoke_alarm")
    poison = b'{"poison": true}'
    dead: list[bytes] = []

    def fragile(sub: Subscription) -> Subscription:
        async def handle(batch: Sequence[Message]) -> None:
            if any(m.payload == poison for m in batch):
                raise RuntimeError("a bug")
            await sub.handler(batch)

        async def on_dead(m: Message, exc: BaseException) -> None:
            dead.append(m.payload)
            assert sub.on_dead is not None
            await sub.on_dead(m, exc)

        return Subscription(sub.name, sub.topics, handle, on_dead=on_dead, max_attempts=2)

    c = group.consumer(wrap=fragile)
    await c.start()
    await c.wait_ready()
    await asyncio.to_thread(publisher.send, f"anwang/devices/{sm}/telemetry", poison)
    await asyncio.to_thread(publisher.send, f"anwang/devices/{sm}/events",
                            {"ts": now_iso(), "event": "smoke_alarm"})
    await eventually(lambda: kit.alarms(device_id=sm))
    await eventually(lambda: c.stats.acked >= 2)
    assert dead == [poison] and c.stats.dead == 1
    with kit.db.unit_of_work(readonly=True) as s:
        n = s.scalar(select(DeviceRejection.count).where(
            DeviceRejection.device_id == "", DeviceRejection.reason == "handler_error"))
    assert n == 1


async def test_two_workers_share_the_messages(group: Group, publisher: Publisher,
                                              kit: Kit) -> None:
    devices = [dev("mc") for _ in range(4)]
    for d in devices:
        kit.device(d, "manhole_cover")
    a, b = group.consumer("wa", shared=True), group.consumer("wb", shared=True)
    await a.start()
    await b.start()
    await a.wait_ready()
    await b.wait_ready()
    assert a.shared and b.shared
    for i in range(40):
        await asyncio.to_thread(publisher.send, f"anwang/devices/{devices[i % 4]}/events",
                                {"ts": now_iso(-60 + i), "event": "cover_open"})
    await eventually(lambda: sum(x.count for x in kit.alarms(kind="cover_open")) == 40)
    assert len(kit.alarms(kind="cover_open")) == 4
    assert a.stats.received > 0 and b.stats.received > 0
    assert a.stats.received + b.stats.received == 40


async def test_mqtt_3_1_1_sessions_keep_messages_too(
    mqtt_url: str, publisher: Publisher, kit: Kit, settings: Settings,
) -> None:
    mc = dev("mc")
    kit.device(mc, "manhole_cover")
    group = f"t{uuid.uuid4().hex[:10]}"
    url = mqtt_url + "?protocol=3.1.1&shared=1"

    def consumer() -> MqttConsumer:
        return MqttConsumer(url, handlers.subscription(kit.db, settings, name=group),
                            worker_id="v311", session_expiry_s=60)

    first = consumer()
    await first.start()
    await first.wait_ready()
    assert first.shared
    await first.stop()
    await asyncio.to_thread(publisher.send, f"anwang/devices/{mc}/events",
                            {"ts": now_iso(), "event": "cover_open"})
    second = consumer()
    await second.start()
    try:
        [alarm] = await eventually(lambda: kit.alarms(device_id=mc))
        assert alarm.kind == "cover_open"
    finally:
        await second.stop()
        # Leave no 3.1.1 session behind on the shared broker (it has no expiry).
        cleanup = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=second.client_id,
                              protocol=mqtt.MQTTv311, clean_session=True)
        u = MqttUrl.parse(mqtt_url)
        cleanup.connect(u.host, u.port)
        cleanup.disconnect()
