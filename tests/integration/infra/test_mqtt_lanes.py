"""A consumer with lanes, against the machine's Mosquitto: each message goes to the lane
of its topic, a batch holds one lane's messages, the lanes' batches run side by side
(one lane's slow batch does not hold the other back), each key's messages are handled in
the order they were sent, and every message is handled and acknowledged once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anwang.communities import intake
from anwang.infra.mqtt import Message, MqttConsumer, MqttUrl, Subscription

pytestmark = [pytest.mark.mqtt]


def publish(url: str, messages: Sequence[tuple[str, bytes]]) -> None:
    u = MqttUrl.parse(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(u.host, u.port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_lanes_run_side_by_side_and_keep_each_keys_order(mqtt_url: str) -> None:
    prefix = f"lanes/{uuid.uuid4().hex[:8]}"
    keys = [f"k{i}" for i in range(6)]

    def lane_of(topic: str) -> int:
        return int(topic.rsplit("/", 1)[1][1:]) % 2  # k0, k2, k4 → 0; k1, k3, k5 → 1

    handled: list[tuple[int, list[tuple[str, int]]]] = []
    lane1_done = asyncio.Event()
    lane0_waited = {"n": 0}

    async def handler(batch: Sequence[Message]) -> None:
        lanes = {lane_of(m.topic) for m in batch}
        assert len(lanes) == 1, "a batch holds one lane's messages"
        lane = lanes.pop()
        if lane == 0 and lane0_waited["n"] == 0:
            # The first batch of lane 0 waits until lane 1 has handled messages: with
            # one buffer for both, lane 1's messages would wait behind it for ever.
            lane0_waited["n"] += 1
            await asyncio.wait_for(lane1_done.wait(), 10)
        handled.append((lane, [(m.topic.rsplit("/", 1)[1], json.loads(m.payload)["n"])
                               for m in batch]))
        if lane == 1:
            lane1_done.set()

    sub = Subscription(f"t{uuid.uuid4().hex[:10]}", (f"{prefix}/+",), handler,
                       max_batch=7, lanes=2, lane_of=lane_of)
    consumer = MqttConsumer(mqtt_url, sub, worker_id="w1", session_expiry_s=60)
    await consumer.start()
    try:
        await consumer.wait_ready()
        sent = [(f"{prefix}/{k}", json.dumps({"n": n}).encode())
                for n in range(20) for k in keys]
        await asyncio.to_thread(publish, mqtt_url, sent)
        await until(lambda: consumer.stats.handled >= len(sent))
        await until(lambda: consumer.stats.acked >= len(sent))
    finally:
        await consumer.stop()

    assert lane0_waited["n"] == 1
    # Lane 1 finished a batch while lane 0's first batch was still in its handler.
    first_lane0 = next(i for i, (lane, _) in enumerate(handled) if lane == 0)
    assert any(lane == 1 for lane, _ in handled[:first_lane0])
    seen: dict[str, list[int]] = {k: [] for k in keys}
    for lane, batch in handled:
        assert len(batch) <= 7
        for key, n in batch:
            assert lane_of(f"x/{key}") == lane
            seen[key].append(n)
    assert seen == {k: list(range(20)) for k in keys}  # each once, in order
    assert consumer.stats.acked == len(sent) and consumer.stats.dead == 0


def test_a_devices_messages_share_a_lane() -> None:
    lane = intake.lane_of(3)
    for device in ("d000001", "sm-1", "设备-7", "x"):
        lanes = {lane(f"anwang/devices/{device}/{channel}")
                 for channel in ("telemetry", "events", "anything")}
        assert len(lanes) == 1 and lanes <= {0, 1, 2}
    spread = {lane(f"anwang/devices/d{i:06d}/telemetry") for i in range(200)}
    assert spread == {0, 1, 2}
    assert {intake.lane_of(1)(f"anwang/devices/d{i}/events") for i in range(50)} == {0}
