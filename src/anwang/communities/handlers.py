"""Background work of the community package: the MQTT intake and the periodic round.

:func:`start` (called by ``anwang worker``, and by ``anwang serve`` when it runs the
consumers itself, i.e. on the in-process bus) starts one task that

* consumes ``anwang/devices/+/+`` from the MQTT broker when ``ANWANG_MQTT_URL`` is set
  (:class:`anwang.infra.mqtt.MqttConsumer`, consumer group ``communities``): each batch
  goes through :func:`anwang.communities.intake.ingest` in one unit of work in a worker
  thread, and is acknowledged to the broker after the commit. On PostgreSQL the
  messages are dealt to two lanes by device (:data:`LANES`), whose batches run side
  by side without sharing a device; a lane's batches go one after the other
  (:data:`CONCURRENT_BATCHES`; with more at once, they take their devices' locks in the
  order they came, :class:`Turn`);
* every ``device_scan_seconds`` (2 s) runs one round, each step in its own unit of
  work: the offline scan (every device past its deadline, in one query), alarm
  escalation, and — hourly — the retention purge of samples and events.

Cancelling the task stops both; the broker keeps the session for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime

from anwang.communities import alarms, intake
from anwang.communities import service as communities_service
from anwang.communities.adapters import Reason
from anwang.core import collector
from anwang.core.db import Database
from anwang.core.events import utcnow
from anwang.infra.mqtt import Message, MqttConsumer, Subscription
from anwang.settings import Settings

log = logging.getLogger(__name__)

GROUP = "communities"
#: Seconds between two retention purges.
PURGE_EVERY_S = 3600.0


def handle_batch(db: Database, settings: Settings, batch: Sequence[Message],
                 *, now: datetime | None = None, turn: Turn | None = None
                 ) -> intake.IngestReport:
    """Ingest one MQTT batch in one unit of work (synchronous; runs in a thread). With
    ``turn``, the batch locks its devices only after the batch before it has locked its
    own (see :class:`Turn`)."""
    with collector.paused():  # see anwang.core.collector
        messages: list[intake.Inbound] = []
        bad_topics: list[str] = []
        from_topic = intake.from_topic
        for m in batch:
            inbound = from_topic(m.topic, m.payload, m.received_at)
            if inbound is None:
                bad_topics.append(m.topic)
            else:
                messages.append(inbound)
        with db.unit_of_work() as session:
            report = intake.ingest(
                session, messages=messages, now=now or utcnow(),
                max_future_s=settings.device_clock_skew_s,
                before_lock=turn.wait if turn is not None else None,
                after_lock=turn.pass_on if turn is not None else None)
            if bad_topics:
                if turn is not None:
                    turn.wait()
                intake.count_refusal(session, device_id="", reason=Reason.BAD_TOPIC,
                                     detail=bad_topics[-1][:300], now=now or utcnow())
        return report


def record_dead(db: Database, message: Message, exc: BaseException) -> None:
    """Count a message that kept failing the intake (``handler_error``) under its
    device, so that it shows in device health."""
    inbound = intake.from_topic(message.topic, message.payload, message.received_at)
    with db.unit_of_work() as session:
        intake.count_refusal(
            session, device_id="", reason=Reason.HANDLER_ERROR,
            detail=f"{inbound.device_id if inbound else message.topic}: "
                   f"{exc.__class__.__name__}"[:300],
            now=utcnow(),
        )


#: Lanes of one worker on PostgreSQL: each device's messages go to one lane (by its id),
#: and the lanes' batches run side by side. Two batches of different lanes never share a
#: device, so neither waits for the other's row locks — where batches of one lane,
#: thousands of messages from the same devices, nearly always share one.
LANES = 2
#: Batches of one lane judged at once (:class:`Turn`). One: measured with two lanes, a
#: second batch per lane (parsed while the first one's statements run) made the intake
#: slower — its locks wait for the batch before it, and four transactions share the
#: interpreter's lock (docs/performance.md).
CONCURRENT_BATCHES = 1


class Turn:
    """One batch's place in the order batches came in, when several are judged at once.

    On PostgreSQL the MQTT consumer runs up to :data:`CONCURRENT_BATCHES` batches at a
    time, each in its own thread and transaction, so that one batch is parsed, and its
    events and samples written, while the database writes and commits the one before.
    A batch reads the rules' state of its devices under their row locks, so a later
    batch's messages of a device wait for an earlier batch's commit — provided the
    earlier batch took its locks first. ``wait`` returns once the batch before has
    locked its devices (``pass_on``) or finished; a batch calls it before it writes
    anything, so that a batch waiting here holds no row another could wait for. So a
    device's messages are judged in the order they arrived, as with one batch at a
    time. (A batch that fails and is retried takes a new turn, behind batches that
    came after it — as messages of one device dealt to several workers may be judged
    out of order too; the rules keep the newest time they judged.)"""

    __slots__ = ("_before", "_mine")

    def __init__(self, before: threading.Event | None) -> None:
        self._before = before
        self._mine = threading.Event()

    def wait(self) -> None:
        if self._before is not None:
            self._before.wait()

    def pass_on(self) -> None:
        self._mine.set()


class _Turns:
    """Hands out turns in the order they are asked for (on the event loop)."""

    def __init__(self) -> None:
        self._last: threading.Event | None = None

    def next(self) -> Turn:
        turn = Turn(self._last)
        self._last = turn._mine
        return turn


def subscription(db: Database, settings: Settings, *, name: str = GROUP) -> Subscription:
    postgres = db.dialect == "postgresql"
    lanes = LANES if postgres else 1
    lane_of = intake.lane_of(lanes)
    turns = [_Turns() for _ in range(lanes)]

    async def handle(batch: Sequence[Message]) -> None:
        # On the event loop, in the order the batches of the lane were taken. (A batch
        # holds messages of one lane; a handler called with any other batch keeps its
        # order among the batches of its first message's lane.)
        turn = turns[lane_of(batch[0].topic)].next()
        try:
            await asyncio.to_thread(handle_batch, db, settings, batch, turn=turn)
        finally:
            turn.pass_on()  # also when nothing was locked, or the batch failed

    async def dead(message: Message, exc: BaseException) -> None:
        await asyncio.to_thread(record_dead, db, message, exc)

    # Batches of up to 5,000: the commit (an fsync) and the statements per batch are
    # then shared by many messages under load; quiet, a batch is what has arrived.
    # SQLite has one writer at a time: its batches go one after the other.
    return Subscription(name=name, topics=(intake.TOPIC_FILTER,), handler=handle,
                        on_dead=dead, max_batch=5000,
                        concurrency=CONCURRENT_BATCHES if postgres else 1,
                        lanes=lanes, lane_of=lane_of)


def make_consumer(db: Database, settings: Settings) -> MqttConsumer:
    return MqttConsumer(
        settings.mqtt_url, subscription(db, settings),
        worker_id=settings.mqtt_worker_id or socket.gethostname(),
        session_expiry_s=settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
    )


def _warm(db: Database) -> None:
    with db.unit_of_work(readonly=True) as session:
        intake.directory_for(session).refresh(session, force=True)


def run_round(db: Database, settings: Settings, *, now: datetime | None = None,
              purge: bool = False) -> dict[str, int]:
    """One periodic round (synchronous). Returns what it did."""
    now = now or utcnow()
    done: dict[str, int] = {}
    with db.unit_of_work() as session:
        done["offline"] = alarms.scan_offline(session, now=now,
                                              directory=intake.directory_for(session))
    with db.unit_of_work() as session:
        done["escalated"] = alarms.scan_escalations(session, now=now)
    if purge:
        with db.unit_of_work() as session:
            done.update(communities_service.purge(
                session, now=now, retention_hours=settings.device_retention_hours))
    return done


async def run(db: Database, settings: Settings) -> None:
    """The MQTT intake (if configured) and the periodic round, until cancelled."""
    consumer: MqttConsumer | None = None
    try:  # load the device directory now, not in the first batch after a restart
        await asyncio.to_thread(_warm, db)
    except Exception:  # the first batch will load it instead
        log.warning("could not load the device directory yet", exc_info=True)
    if settings.mqtt_url:
        consumer = make_consumer(db, settings)
        await consumer.start()
    next_purge = time.monotonic() + 60.0
    try:
        while True:
            await asyncio.sleep(settings.device_scan_seconds)
            purge = time.monotonic() >= next_purge
            try:
                done = await asyncio.to_thread(run_round, db, settings, purge=purge)
            except Exception:  # the database may be away for a moment: next round
                log.warning("the community device round failed", exc_info=True)
                continue
            if purge:
                next_purge = time.monotonic() + PURGE_EVERY_S
            if any(done.values()):
                log.info("community device round: %s", done)
    finally:
        if consumer is not None:
            await consumer.stop()


def start(db: Database, settings: Settings) -> asyncio.Task[None]:
    """Start :func:`run` on the running loop; cancel the task to stop it."""
    return asyncio.get_running_loop().create_task(run(db, settings), name="communities")


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel the task of :func:`start` and wait until the MQTT session is closed."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
