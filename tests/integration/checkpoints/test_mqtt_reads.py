"""Plate reads over MQTT against the machine's Mosquitto: the same validation, dedupe and
report as ``POST /api/v1/reads``, with the report published back to the device.

Each test consumes under a topic prefix and consumer group of its own (and a broker
session that expires a minute after it), so runs in parallel never see each other's
messages. The app of the ``kit`` fixture runs the in-process bus that stores the reads
and raises the alerts; the MQTT consumer runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from anwang.alerts.models import Alert, AlertHit
from anwang.app import create_app
from anwang.checkpoints import mqtt_intake
from anwang.core.db import Database
from anwang.infra.mqtt import Message, MqttConsumer, MqttUrl
from anwang.settings import Settings
from anwang.watchlist import service as wl
from tests.integration.checkpoints.conftest import Kit, a_read, now, seed

WANTED = "苏E54321"


class Device:
    """A camera's side (MQTT 5): publishes with QoS 1 and collects the reports."""

    def __init__(self, url: str, result_filter: str) -> None:
        u = MqttUrl.parse(url)
        self.results: list[tuple[str, dict[str, Any], bytes | None]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(u.host, u.port)
        self.client.loop_start()
        self.client.subscribe(result_filter, qos=1)
        assert subscribed.wait(5), "the broker did not confirm the subscription"

    def _on_message(self, _c: Any, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None)
        with self._lock:
            self.results.append((msg.topic, json.loads(msg.payload), correlation))

    def send(self, topic: str, payload: Any, *, response_topic: str | None = None,
             correlation: bytes | None = None) -> None:
        if isinstance(payload, bytes):
            raw = payload
        else:
            raw = json.dumps(payload, ensure_ascii=False).encode()
        props = None
        if response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.client.publish(topic, raw, qos=1, properties=props)
        info.wait_for_publish(5)
        assert info.is_published()

    def subscribe(self, topic_filter: str) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe(topic_filter, qos=1)
        assert subscribed.wait(5)

    def got(self) -> list[tuple[str, dict[str, Any], bytes | None]]:
        with self._lock:
            return list(self.results)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class Intake:
    """A throw-away consumer group under a topic prefix of its own, and a device."""

    def __init__(self, url: str, kit: Kit, settings: Settings) -> None:
        tag = uuid.uuid4().hex[:10]
        self.kit = kit
        self.url = url
        self.settings = settings.model_copy(update={"mqtt_url": url})
        self.prefix = f"anwang-test/{tag}/checkpoints"
        self.name = f"t{tag}"
        self.consumer: MqttConsumer | None = None
        self.device = Device(url, f"{self.prefix}/+/reads/result")

    def topic(self, code: str) -> str:
        return f"{self.prefix}/{code}/reads"

    async def start(self, wrap: Callable[[Any], Any] | None = None) -> MqttConsumer:
        if wrap is None:
            consumer = mqtt_intake.make_consumer(
                self.kit.db, self.settings, name=self.name, prefix=self.prefix,
                worker_id="w1", session_expiry_s=60)
        else:  # the same consumer, with its handler wrapped
            holder: list[MqttConsumer] = []

            def reply(topic: str, payload: bytes, correlation: bytes | None) -> None:
                holder[0].publish(topic, payload, correlation_data=correlation)

            sub = mqtt_intake.subscription(self.kit.db, self.settings, reply=reply,
                                           name=self.name, prefix=self.prefix)
            consumer = MqttConsumer(self.url, wrap(sub), worker_id="w1", session_expiry_s=60,
                                    retry_base_s=0.05)
            holder.append(consumer)
        self.consumer = consumer
        await consumer.start()
        await consumer.wait_ready()
        return consumer

    async def send(self, code: str, payload: Any, **kw: Any) -> None:
        await asyncio.to_thread(self.device.send, self.topic(code), payload, **kw)

    async def results(self, n: int) -> list[tuple[str, dict[str, Any], bytes | None]]:
        return list(await eventually(lambda: (got := self.device.got()) and len(got) >= n
                                     and got))

    async def settle(self) -> None:
        """Until the bus has stored what was taken in."""
        await asyncio.to_thread(self.kit.drain)

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        self.device.close()


@pytest.fixture
async def intake(mqtt_url: str, kit: Kit, settings: Settings) -> AsyncIterator[Intake]:
    wl.reset_index_cache()
    kit.add_checkpoint("W-01")
    kit.add_checkpoint("W-02")
    i = Intake(mqtt_url, kit, settings)
    yield i
    await i.close()
    wl.reset_index_cache()


def watch(db: Database, plate: str) -> None:
    with db.unit_of_work() as s:
        e = wl.create_entry(s, pattern=plate, reason="stolen_vehicle", legal_basis="court order",
                            case_ref="CASE-1", priority=1,
                            expires_at=now() + timedelta(days=7), actor="analyst",
                            actor_role="analyst")
        wl.approve_entry(s, entry_id=e.id, actor="commander", actor_role="commander")


def counts(db: Database) -> tuple[int, int]:
    """(alerts, alert hits)."""
    with db.unit_of_work(readonly=True) as s:
        return (int(s.scalar(select(func.count()).select_from(Alert)) or 0),
                int(s.scalar(select(func.count()).select_from(AlertHit)) or 0))


def rejected(report: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r["index"], r["code"]) for r in report["rejected"]]


async def test_a_read_is_stored_and_a_watch_list_hit_raises_one_alert(intake: Intake) -> None:
    watch(intake.kit.db, WANTED)
    await intake.start()
    read = a_read(plate=WANTED)
    del read["checkpoint"]  # the topic names it
    await intake.send("W-01", read)
    [(topic, report, _)] = await intake.results(1)
    assert topic == f"{intake.prefix}/W-01/reads/result"
    assert report == {"accepted": 1, "duplicates": 0, "rejected": [], "alerts": 1}
    await intake.settle()
    [stored] = intake.kit.stored()
    assert (stored.checkpoint_code, stored.plate, stored.hit) == ("W-01", WANTED, True)
    assert counts(intake.kit.db) == (1, 1)


async def test_the_same_message_twice_stores_once_and_raises_one_alert(intake: Intake) -> None:
    watch(intake.kit.db, WANTED)
    await intake.start()
    batch = [a_read(plate=WANTED), a_read(plate="苏D12345", lane=2)]
    await intake.send("W-01", batch)
    await intake.results(1)
    await intake.settle()
    await intake.send("W-01", batch)  # a device that did not hear the PUBACK, say
    [first, second] = [r for _, r, _ in await intake.results(2)]
    assert (first["accepted"], first["alerts"]) == (2, 1)
    assert (second["accepted"], second["duplicates"], second["alerts"]) == (0, 2, 0)
    await intake.settle()
    assert intake.kit.count_reads() == 2
    assert counts(intake.kit.db) == (1, 1)


async def test_a_batch_handled_again_after_its_commit_changes_nothing(intake: Intake) -> None:
    """The broker's redelivery after a crash between commit and PUBACK, played by a
    handler that commits and then fails once: the infrastructure handles the same batch
    again, and the second pass stores nothing and raises nothing."""
    watch(intake.kit.db, WANTED)
    calls: list[int] = []

    def wrap(sub: Any) -> Any:
        async def flaky(batch: Sequence[Message]) -> None:
            await sub.handler(batch)
            calls.append(len(batch))
            if len(calls) == 1:
                raise RuntimeError("crash after the commit")
        return replace(sub, handler=flaky)

    consumer = await intake.start(wrap)
    await intake.send("W-01", a_read(plate=WANTED))
    first, again = [r for _, r, _ in await intake.results(2)]
    assert (first["accepted"], first["duplicates"]) == (1, 0)
    # "duplicates" once stored; "accepted" again if the bus had not stored it yet.
    assert again["accepted"] + again["duplicates"] == 1
    await eventually(lambda: consumer.stats.acked >= 1)
    await intake.settle()
    assert intake.kit.count_reads() == 1
    assert counts(intake.kit.db) == (1, 1)
    assert consumer.stats.retries == 1 and consumer.stats.dead == 0


async def test_one_bad_read_is_reported_and_the_good_ones_are_kept(intake: Intake) -> None:
    await intake.start()
    lines = [a_read(), a_read(plate="苏D1"), a_read(plate="苏A00001", checkpoint=None),
             a_read(plate="苏B22222", checkpoint="W-02"), a_read(plate="苏C33333", lane="x")]
    ndjson = "\n".join(json.dumps(r, ensure_ascii=False) for r in lines).encode()
    await intake.send("W-01", ndjson)
    [(_, report, _)] = await intake.results(1)
    assert (report["accepted"], report["duplicates"], report["alerts"]) == (2, 0, 0)
    assert rejected(report) == [(1, "invalid_plate"), (3, "checkpoint_topic_mismatch"),
                                (4, "invalid_lane")]
    await intake.settle()
    assert sorted(r.plate for r in intake.kit.stored()) == ["苏A00001", "苏D12345"]


async def test_a_read_for_another_checkpoint_is_refused(intake: Intake) -> None:
    await intake.start()
    await intake.send("W-01", [a_read(checkpoint="W-02")])
    [(_, report, _)] = await intake.results(1)
    assert report["accepted"] == 0 and rejected(report) == [(0, "checkpoint_topic_mismatch")]
    await intake.settle()
    assert intake.kit.count_reads() == 0


async def test_an_unknown_checkpoint_is_refused(intake: Intake) -> None:
    await intake.start()
    read = a_read()
    del read["checkpoint"]
    await intake.send("NOPE-9", read)
    [(topic, report, _)] = await intake.results(1)
    assert topic == f"{intake.prefix}/NOPE-9/reads/result"
    assert report["accepted"] == 0 and rejected(report) == [(0, "unknown_checkpoint")]


async def test_a_malformed_payload_is_refused_without_holding_up_the_others(
    intake: Intake,
) -> None:
    consumer = await intake.start()
    await consumer.stop()  # both wait at the broker, and usually come as one batch
    await intake.send("W-01", b'[{"plate": "\xe8\x8b\x8fD1", ]')
    await intake.send("W-02", a_read(checkpoint="W-02"))
    await intake.start()
    got = {topic.split("/")[-3]: report for topic, report, _ in await intake.results(2)}
    assert got["W-01"]["accepted"] == 0 and rejected(got["W-01"]) == [(0, "malformed_json")]
    assert got["W-02"]["accepted"] == 1
    await intake.settle()
    assert [r.checkpoint_code for r in intake.kit.stored()] == ["W-02"]


async def test_the_report_goes_to_the_mqtt5_response_topic(intake: Intake) -> None:
    await intake.start()
    answers = f"{intake.prefix}-answers/cam-7"
    await asyncio.to_thread(intake.device.subscribe, answers)
    await intake.send("W-01", [a_read()], response_topic=answers, correlation=b"req-42")
    [(topic, report, correlation)] = await intake.results(1)
    assert (topic, correlation) == (answers, b"req-42")
    assert report["accepted"] == 1


async def test_a_worker_on_mqtt_3_1_1_reports_to_the_result_topic(
    intake: Intake, mqtt_url: str,
) -> None:
    old = Intake(mqtt_url + "?protocol=3.1.1", intake.kit, intake.settings)
    try:
        await old.start()
        await old.send("W-01", [a_read()], response_topic="ignored/by/3.1.1",
                       correlation=b"x")
        [(topic, report, correlation)] = await old.results(1)
        assert (topic, correlation) == (f"{old.prefix}/W-01/reads/result", None)
        assert report["accepted"] == 1
    finally:
        await old.close()


async def test_the_simulator_publishes_each_checkpoints_reads_and_counts_the_reports(
    intake: Intake,
) -> None:
    from anwang.checkpoints.simulate import _MqttSender

    await intake.start()
    totals = dict.fromkeys(("sent", "accepted", "duplicates", "rejected", "alerts"), 0)
    sender = _MqttSender(MqttUrl.parse(intake.url), totals, prefix=intake.prefix)
    try:
        await eventually(lambda: sender.client.is_connected())
        await asyncio.sleep(0.2)  # its subscription to the reports
        sender.send([a_read(), a_read(plate="苏B22222", checkpoint="W-02"),
                     a_read(plate="苏D1")])
        await eventually(lambda: totals["accepted"] + totals["rejected"] == 3)
    finally:
        await asyncio.to_thread(sender.close)
    assert (totals["sent"], totals["accepted"], totals["rejected"]) == (3, 2, 1)
    await intake.settle()
    assert sorted(r.checkpoint_code for r in intake.kit.stored()) == ["W-01", "W-02"]


# --- the wiring in the app ----------------------------------------------------------------


@pytest.fixture
def served(db: Database, settings: Settings, mqtt_url: str) -> Iterator[tuple[Kit, Device]]:
    """An app with ``ANWANG_MQTT_URL`` set, consuming the real topics, as ``anwang serve``
    on the embedded bus does (its worker id is unique, its sessions expire in a minute)."""
    key = seed(db)
    configured = settings.model_copy(update={
        "mqtt_url": mqtt_url, "mqtt_worker_id": f"t{uuid.uuid4().hex[:10]}",
        "mqtt_session_expiry_s": 60})
    device = Device(mqtt_url, f"{mqtt_intake.TOPIC_PREFIX}/+/reads/result")
    with TestClient(create_app(configured, db=db)) as client:
        yield Kit(db, client, key), device
    device.close()


async def test_serve_takes_reads_over_mqtt_when_a_broker_is_configured(
    served: tuple[Kit, Device],
) -> None:
    kit, device = served
    code = f"T-{uuid.uuid4().hex[:8]}"  # other runs may consume this topic too: unique
    kit.add_checkpoint(code)
    topic = f"{mqtt_intake.TOPIC_PREFIX}/{code}/reads"
    read = a_read(checkpoint=code)

    def mine() -> list[dict[str, Any]]:
        return [r for t, r, _ in device.got()
                if t == mqtt_intake.result_topic(code) and r["accepted"] + r["duplicates"]]

    # The app subscribes in the background: send until a report says it was taken in
    # (each resend is a duplicate, which is the point).
    deadline = time.monotonic() + 15
    while not mine():
        assert time.monotonic() < deadline, "no report from the app's MQTT intake"
        await asyncio.to_thread(device.send, topic, read)
        await asyncio.sleep(0.3)
    await asyncio.to_thread(kit.drain)
    await eventually(lambda: kit.count_reads() == 1)
