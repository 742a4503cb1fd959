"""The broker restarted mid-stream: a private Mosquitto with persistence is stopped and
started again while devices publish; the intake reconnects by itself, nothing that was
acknowledged to a device is lost, and repeats collapse into one alarm.

With the default plain subscription. (Mosquitto 2.0 does not restore *shared*
subscriptions from its persistence file, so with ``?shared=1`` messages published
between the broker's restart and the workers' new subscription are lost — see
:mod:`anwang.infra.mqtt`.)"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from anwang.communities import handlers
from anwang.communities.models import DeviceSample
from anwang.infra.mqtt import MqttConsumer
from anwang.settings import Settings
from tests.conftest import need_service
from tests.integration.communities.conftest import Kit

pytestmark = [pytest.mark.mqtt]


class Broker:
    """A Mosquitto of this test's own, with persistence in the test's directory."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            need_service("Mosquitto (the mosquitto binary)", "not installed")
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp}/\nmax_queued_messages 100000\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # saves the sessions to disk
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class Device:
    """A device with a persistent session of its own: what it published while the broker
    was away is sent when it is back (paho keeps unacknowledged QoS 1 messages)."""

    def __init__(self, port: int, device_id: str) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{device_id}",
                             protocol=mqtt.MQTTv311, clean_session=False)
        self.c.reconnect_delay_set(1, 2)
        self.c.max_queued_messages_set(0)
        self.c.connect("127.0.0.1", port)
        self.sent: set[int] = set()
        self.acked: set[int] = set()
        self.c.on_publish = lambda c, u, mid, rc, p: self.acked.add(mid)
        self.c.loop_start()

    def send(self, topic: str, body: dict[str, Any]) -> None:
        # While the broker is away paho keeps the message and sends it on reconnect.
        self.sent.add(self.c.publish(topic, json.dumps(body).encode(), qos=1).mid)

    def all_acknowledged(self) -> bool:
        return self.sent <= self.acked

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def _until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_no_alarm_is_lost_when_the_broker_restarts(
    broker: Broker, kit: Kit, settings: Settings,
) -> None:
    cp, sm = f"cp-{uuid.uuid4().hex[:6]}", f"sm-{uuid.uuid4().hex[:6]}"
    kit.device(cp)
    kit.device(sm, "smoke_alarm")
    consumer = MqttConsumer(f"mqtt://127.0.0.1:{broker.port}",
                            handlers.subscription(kit.db, settings, name="restart"),
                            worker_id="w1", session_expiry_s=600, reconnect_max_s=2)
    await consumer.start()
    await consumer.wait_ready()
    device = Device(broker.port, cp)
    smoke = Device(broker.port, sm)
    t0 = time.time() - 120
    try:
        for i in range(20):  # hot for 19 s of device time: not yet an alarm
            device.send(f"anwang/devices/{cp}/telemetry",
                        {"ts": _iso(t0 + i), "metrics": {"temperature_c": 95}})
        smoke.send(f"anwang/devices/{sm}/events", {"ts": _iso(t0), "event": "smoke_alarm"})
        await _until(lambda: device.all_acknowledged() and smoke.all_acknowledged())

        broker.stop()
        # The devices carry on; their messages wait in their own clients.
        for i in range(20, 40):
            device.send(f"anwang/devices/{cp}/telemetry",
                        {"ts": _iso(t0 + i), "metrics": {"temperature_c": 95}})
        smoke.send(f"anwang/devices/{sm}/events", {"ts": _iso(t0 + 5), "event": "smoke_alarm"})
        await asyncio.sleep(1.5)
        broker.start()

        await _until(lambda: device.all_acknowledged() and smoke.all_acknowledged())
        await _until(lambda: consumer.connected, 15)

        def samples() -> int:
            with kit.db.unit_of_work(readonly=True) as s:
                return int(s.scalar(select(func.count()).select_from(DeviceSample)
                                    .where(DeviceSample.device_id == cp)) or 0)

        await _until(lambda: samples() == 40)
        await _until(lambda: len(kit.alarms(device_id=sm)) == 1
                     and kit.alarms(device_id=sm)[0].count == 2)
        [overheat] = kit.alarms(device_id=cp)
        assert overheat.kind == "overheat" and overheat.count == 10  # 30 s held, then 9
        assert consumer.stats.connects >= 2
    finally:
        device.close()
        smoke.close()
        await consumer.stop()
