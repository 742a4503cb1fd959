"""Unit positions over MQTT (Mosquitto on the machine), through the dispatch consumer."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from anwang.core.events import utcnow
from anwang.dispatch.handlers import parse_position, position_subscription, start, stop
from anwang.dispatch.models import Unit, UnitPosition
from anwang.infra.mqtt import MqttConsumer, publish_once

from .conftest import WEST, Kit


def test_parse_position() -> None:
    p = parse_position("anwang/units/巡001/position",
                       b'{"lat": 31.7, "lon": 119.9, "at": "2026-11-28T08:00:00Z"}')
    assert p.unit == "巡001" and p.at is not None and p.at.utcoffset() == timedelta(0)
    for topic, body in [("anwang/units//position", b'{"lat":1,"lon":1}'),
                        ("anwang/devices/x/position", b'{"lat":1,"lon":1}'),
                        ("anwang/units/x/position", b"not json"),
                        ("anwang/units/x/position", b'{"lat":"1","lon":1}'),
                        ("anwang/units/x/position", b'{"lat":1,"lon":1,"at":"2026-11-28T08:00"}')]:
        with pytest.raises(ValueError):
            parse_position(topic, body)


def test_positions_arrive_over_mqtt(kit: Kit, mqtt_url: str) -> None:
    car = kit.unit("巡701", "patrol_car", WEST, 70)
    lat, lon = kit.city.point(WEST, 71)
    at = utcnow().replace(microsecond=0)

    async def run() -> None:
        group = f"dispatch-test-{uuid.uuid4().hex[:8]}"
        consumer = MqttConsumer(mqtt_url, position_subscription(kit.db, name=group),
                                worker_id="t1")
        await consumer.start()
        await consumer.wait_ready()
        try:
            good = json.dumps({"lat": lat, "lon": lon, "at": at.isoformat(),
                               "speed_kmh": 40}).encode()
            future = json.dumps({"lat": lat, "lon": lon,
                                 "at": (at + timedelta(hours=1)).isoformat()}).encode()
            await publish_once(mqtt_url, "anwang/units/nobody/position", good)
            await publish_once(mqtt_url, f"anwang/units/{car}/position", future)
            await publish_once(mqtt_url, "anwang/units/巡701/position", good)
            await publish_once(mqtt_url, "anwang/units/巡701/position", good)  # a resend
            deadline = time.monotonic() + 10
            while consumer.stats.handled < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert consumer.stats.handled == 4 and consumer.stats.dead == 0
        finally:
            await consumer.stop()

    asyncio.run(run())
    with kit.db.unit_of_work(readonly=True) as s:
        unit = s.get(Unit, car)
        assert unit.position_at == at and unit.lat == pytest.approx(lat)
        rows = s.execute(select(UnitPosition.source, func.count())
                         .group_by(UnitPosition.source)).all()
        assert rows == [("mqtt", 1)]


def test_the_worker_task_consumes_positions(kit: Kit, mqtt_url: str) -> None:
    """What ``anwang worker`` starts (:func:`anwang.dispatch.handlers.start`) takes
    positions from the broker; resends while it connects store nothing twice."""
    car = kit.unit("巡702", "patrol_car", WEST, 72)
    lat, lon = kit.city.point(WEST, 73)
    at = utcnow().replace(microsecond=0)
    settings = kit.settings.model_copy(update={
        "mqtt_url": mqtt_url + "?shared=0",
        "mqtt_worker_id": f"worker-test-{uuid.uuid4().hex[:8]}",
        "mqtt_session_expiry_s": 60,
    })
    body = json.dumps({"lat": lat, "lon": lon, "at": at.isoformat()}).encode()

    def stored() -> bool:
        with kit.db.unit_of_work(readonly=True) as s:
            return s.get(Unit, car).position_at == at

    async def run() -> None:
        task = start(kit.db, settings)
        try:
            deadline = time.monotonic() + 15
            while not stored():
                assert time.monotonic() < deadline, "no position arrived through the worker"
                assert not task.done(), task
                await publish_once(mqtt_url, f"anwang/units/{car}/position", body)
                await asyncio.sleep(0.3)
        finally:
            await stop(task)
        assert task.cancelled()

    asyncio.run(run())
    with kit.db.unit_of_work(readonly=True) as s:
        n = s.scalar(select(func.count()).select_from(UnitPosition)
                     .where(UnitPosition.unit_id == car, UnitPosition.source == "mqtt"))
    assert n == 1
