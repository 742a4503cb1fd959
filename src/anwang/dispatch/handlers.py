"""Background work of dispatch: escalating unacknowledged instructions, and unit
positions over MQTT.

**Escalation.** Every :data:`ROUND_SECONDS` one round runs
:func:`anwang.dispatch.instructions.scan_escalations` in a unit of work of its own, in a
worker thread. Every API process runs it (started by the dispatch router's
:func:`lifespan`), and so does every ``anwang worker``; rounds in several processes do
no harm because each escalation is a conditional update that only one of them wins.

**Positions over MQTT.** With ``ANWANG_MQTT_URL`` set, a process that runs the
consumers (``anwang serve`` on the embedded bus, every ``anwang worker``) also consumes
``anwang/units/<unit id or call sign>/position`` (consumer group
``dispatch-positions``, through :class:`anwang.infra.mqtt.MqttConsumer`: QoS 1,
acknowledged after the commit). The payload is JSON ``{"lat", "lon", "at"?,
"speed_kmh"?, "heading"?}``, ``at`` ISO 8601 with an offset (default: when it arrived).
Each batch is one unit of work, each message a savepoint: a message that is refused
(unknown unit, a time in the future, a bad coordinate) is counted and logged and
dropped, never retried, while the rest of the batch is stored. Re-delivery stores
nothing twice (positions are keyed by unit and time — so a message without ``at`` is
best avoided by devices that may resend).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from anwang.core.db import Database
from anwang.core.errors import AnwangError
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.dispatch import instructions, service
from anwang.dispatch.config import load_config
from anwang.infra.mqtt import Message, MqttConsumer, Subscription
from anwang.settings import Settings

log = logging.getLogger(__name__)

ROUND_SECONDS = 15.0
POSITION_TOPIC = "anwang/units/+/position"
POSITION_GROUP = "dispatch-positions"


@dataclass(frozen=True)
class PositionMessage:
    unit: str
    lat: float
    lon: float
    at: datetime | None
    speed_kmh: float | None
    heading: float | None


def parse_position(topic: str, payload: bytes) -> PositionMessage:
    """A position message, or ``ValueError`` saying what is wrong with it."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[:2] != ["anwang", "units"] or parts[3] != "position" \
            or not parts[2]:
        raise ValueError(f"not a unit position topic: {topic!r}")
    try:
        doc = json.loads(payload)
    except ValueError:
        raise ValueError("the payload is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("the payload is not a JSON object")

    def number(key: str, required: bool) -> float | None:
        v = doc.get(key)
        if v is None and not required:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{key} must be a number")
        return float(v)

    at = doc.get("at")
    when: datetime | None = None
    if at is not None:
        try:
            when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("at must be an ISO 8601 time") from None
        if when.tzinfo is None:
            raise ValueError("at must carry a UTC offset")
    lat, lon = number("lat", True), number("lon", True)
    assert lat is not None and lon is not None
    return PositionMessage(parts[2], lat, lon, when, number("speed_kmh", False),
                           number("heading", False))


def handle_positions(
    db: Database, batch: Sequence[Message], *, now: datetime | None = None
) -> dict[str, int]:
    """Store one MQTT batch of positions in one unit of work (synchronous)."""
    done = {"stored": 0, "refused": 0}
    with db.unit_of_work(info={"scope": Scope(None)}) as session:
        for m in batch:
            try:
                pos = parse_position(m.topic, m.payload)
                with session.begin_nested():
                    service.record_position(
                        session, unit_id=pos.unit, lat=pos.lat, lon=pos.lon, at=pos.at,
                        speed_kmh=pos.speed_kmh, heading=pos.heading, source="mqtt",
                        now=now or utcnow())
                done["stored"] += 1
            except (ValueError, AnwangError) as exc:
                done["refused"] += 1
                log.warning("unit position on %s refused: %s", m.topic, exc)
    return done


def position_subscription(db: Database, *, name: str = POSITION_GROUP) -> Subscription:
    async def handle(batch: Sequence[Message]) -> None:
        await asyncio.to_thread(handle_positions, db, batch)

    return Subscription(name=name, topics=(POSITION_TOPIC,), handler=handle)


def position_consumer(db: Database, settings: Settings) -> MqttConsumer:
    return MqttConsumer(
        settings.mqtt_url, position_subscription(db),
        worker_id=settings.mqtt_worker_id or socket.gethostname(),
        session_expiry_s=settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
    )


def run_round(db: Database, settings: Settings, *, now: datetime | None = None) -> int:
    """One escalation round (synchronous); returns how many instructions were escalated."""
    config = load_config(settings.data_dir)
    with db.unit_of_work(info={"scope": Scope(None)}) as session:
        return instructions.scan_escalations(
            session, now=now or utcnow(), after_minutes=config.instruction_escalate_minutes)


async def run_periodic(db: Database, settings: Settings) -> None:
    while True:
        await asyncio.sleep(ROUND_SECONDS)
        try:
            done = await asyncio.to_thread(run_round, db, settings)
        except Exception:  # the database may be away for a moment: try next round
            log.warning("the instruction escalation round failed", exc_info=True)
            continue
        if done:
            log.info("escalated %d unacknowledged instruction(s)", done)


async def run(db: Database, settings: Settings, *, consume_positions: bool = True) -> None:
    """The escalation rounds and — when ``consume_positions`` and an MQTT broker is
    configured — the position intake, until cancelled."""
    consumer: MqttConsumer | None = None
    if consume_positions and settings.mqtt_url:
        consumer = position_consumer(db, settings)
        await consumer.start()
    try:
        await run_periodic(db, settings)
    finally:
        if consumer is not None:
            await consumer.stop()


def start(db: Database, settings: Settings, *,
          consume_positions: bool = True) -> asyncio.Task[None]:
    """Start :func:`run` on the running loop (``anwang worker``, and every API process
    through :func:`lifespan`); stop it with :func:`stop`."""
    return asyncio.get_running_loop().create_task(
        run(db, settings, consume_positions=consume_positions), name="dispatch")


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel the task of :func:`start` and wait until the MQTT session is closed."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Runs :func:`start` while the app runs (merged into the app's lifespan); positions
    are consumed only by a process that runs the consumers."""
    state = getattr(app.state, "anwang", None)
    task = None
    if state is not None:
        task = start(state.db, state.settings, consume_positions=state.run_consumers)
    try:
        yield
    finally:
        await stop(task)
