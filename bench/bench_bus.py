"""Event bus throughput: events per second through each bus, beside the bare transport.

    python bench/bench_bus.py [--events N] [--nats URL] [--update-docs]

Four runs over the same N events:

* in-process, bare — ``asyncio.Queue`` put/get, nothing else;
* in-process bus — ``InProcessBus``: publish → handler (one insert) → commit;
* NATS, bare — plain JetStream publish (awaiting each ack) + pull fetch + ack;
* NATS bus — ``NatsBus``: publish → stream → durable → handler (one insert) → commit → ack.

Publishing and consuming overlap, as in production; a run ends when the last event has
been handled and, for NATS, acknowledged (the durable has nothing pending). Handlers
write to a SQLite file in a temporary directory (WAL, ``synchronous=FULL``: one fsync
per event). Throw-away streams with their own subjects are deleted afterwards.
``--update-docs`` replaces the ``## Event bus throughput`` section of
``docs/performance.md`` with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
try:
    import anwang  # noqa: F401
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))

import nats  # noqa: E402
import nats.js.errors  # noqa: E402
from nats.js import api  # noqa: E402
from perfdoc import cpu_model, update_section  # noqa: E402
from sqlalchemy import Integer, MetaData, String, Table  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from anwang.core.bus import Consumer, InProcessBus  # noqa: E402
from anwang.core.db import Database, ProcessedEvent  # noqa: E402
from anwang.core.events import Event  # noqa: E402
from anwang.infra.nats_bus import NatsBus  # noqa: E402

SECTION = "## Event bus throughput"
EVENT_NAME = "anwang.bench.thing.happened"


class BenchBase(DeclarativeBase):
    metadata = MetaData()


class BenchRow(BenchBase):
    __tablename__ = "bench_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40))


@dataclass(frozen=True)
class Result:
    path: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


class Countdown:
    """Counts handled events from worker threads; wakes the loop when all arrived."""

    def __init__(self, total: int, loop: asyncio.AbstractEventLoop) -> None:
        self.total = total
        self.loop = loop
        self.count = 0
        self.done = asyncio.Event()
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            finished = self.count == self.total
        if finished:
            self.loop.call_soon_threadsafe(self.done.set)


def inserting_handler(countdown: Countdown) -> Callable[[Session, Event], None]:
    def handle(session: Session, event: Event) -> None:
        session.add(BenchRow(event_id=event.id))
        countdown.hit()

    return handle


def fresh_db(directory: Path, name: str) -> Database:
    db = Database(f"sqlite:///{directory / name}")
    cast(Table, ProcessedEvent.__table__).create(db.engine)
    BenchBase.metadata.create_all(db.engine)
    return db


def events(n: int) -> list[Event]:
    return [Event(name=EVENT_NAME, payload={"n": i}) for i in range(n)]


async def bare_queue(n: int) -> Result:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    payloads = [e.to_json() for e in events(n)]

    async def consume() -> None:
        for _ in range(n):
            Event.from_json(await queue.get())  # decode, as a bus would

    started = time.perf_counter()
    task = asyncio.create_task(consume())
    for p in payloads:
        queue.put_nowait(p)
        await asyncio.sleep(0)
    await task
    return Result("in-process, bare (asyncio.Queue)", n, time.perf_counter() - started)


async def in_process_bus(n: int, directory: Path) -> Result:
    db = fresh_db(directory, "inprocess.db")
    countdown = Countdown(n, asyncio.get_running_loop())
    bus = InProcessBus(db)
    await bus.start([Consumer("bench", (EVENT_NAME,), inserting_handler(countdown))])
    batch = events(n)
    started = time.perf_counter()
    for e in batch:
        await bus.publish(e)
    await bus.drain()
    elapsed = time.perf_counter() - started
    await bus.close()
    db.dispose()
    assert countdown.count == n
    return Result("in-process bus + SQLite commit", n, elapsed)


async def wait_acked(js: nats.js.JetStreamContext, stream: str, durable: str) -> None:
    while True:
        info = await js.consumer_info(stream, durable)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return
        await asyncio.sleep(0.002)


async def bare_jetstream(n: int, url: str) -> Result:
    tag = uuid.uuid4().hex[:10]
    stream, subject, durable = f"BENCH_BARE_{tag}", f"bench{tag}.bare.thing", "bare"
    nc = await nats.connect(url, name="anwang-bench-bare")
    js = nc.jetstream()
    try:
        await js.add_stream(
            name=stream,
            subjects=[subject],
            storage=api.StorageType.FILE,
            duplicate_window=600.0,
        )
        await js.add_consumer(
            stream,
            config=api.ConsumerConfig(
                name=durable,
                durable_name=durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                filter_subject=subject,
                ack_wait=30.0,
            ),
        )
        pull = await js.pull_subscribe_bind(durable=durable, stream=stream)
        payloads = [e.to_json() for e in events(n)]

        async def consume() -> None:
            seen = 0
            while seen < n:
                try:
                    msgs = await pull.fetch(64, timeout=1.0)
                except TimeoutError:
                    continue
                for msg in msgs:
                    Event.from_json(msg.data)
                    await msg.ack()
                    seen += 1

        started = time.perf_counter()
        task = asyncio.create_task(consume())
        for p in payloads:
            await js.publish(subject, p)
        await task
        await wait_acked(js, stream, durable)
        elapsed = time.perf_counter() - started
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
        await nc.close()
    return Result("NATS, bare (JetStream pub + fetch + ack)", n, elapsed)


async def nats_bus(n: int, url: str, directory: Path) -> Result:
    db = fresh_db(directory, "nats.db")
    tag = uuid.uuid4().hex[:10]
    stream = f"ANWANG_BENCH_{tag}"
    countdown = Countdown(n, asyncio.get_running_loop())
    bus = NatsBus(url, db, stream=stream, subject_prefix=f"bench{tag}", connect_timeout=5.0)
    nc = await nats.connect(url, name="anwang-bench-observer")
    js = nc.jetstream()
    try:
        await bus.start([Consumer("bench", (EVENT_NAME,), inserting_handler(countdown))])
        batch = events(n)
        started = time.perf_counter()
        for e in batch:
            await bus.publish(e)
        await countdown.done.wait()
        await wait_acked(js, stream, "bench")
        elapsed = time.perf_counter() - started
    finally:
        await bus.close()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
        await nc.close()
        db.dispose()
    return Result("NATS bus + SQLite commit + ack", n, elapsed)


async def nats_version(url: str) -> str:
    nc = await nats.connect(url, name="anwang-bench-version")
    try:
        return str(nc._server_info.get("version", "?"))
    finally:
        await nc.close()


def table(results: list[Result]) -> list[str]:
    lines = [
        "| path | events | seconds | events/s |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.path} | {r.events} | {r.seconds:.3f} | {r.rate:,.0f} |")
    return lines


def ratios(pairs: list[tuple[str, Result, Result]]) -> list[str]:
    lines = [
        f"- {label}: the bus runs at {bus.rate / bare.rate:.1%} of the bare transport "
        f"({bare.rate / bus.rate:,.1f}× slower)"
        for label, bus, bare in pairs
    ]
    (_, local, _), (_, remote, _) = pairs
    lines.append(
        f"- NATS bus vs in-process bus: {remote.rate / local.rate:.1%} of its rate "
        "(both commit every event to SQLite)"
    )
    return lines


def section(results: list[Result], pairs: list[tuple[str, Result, Result]], meta: str) -> str:
    body = [
        SECTION,
        "",
        "Events per second through each bus (publish → handler inserting one row → commit"
        " → ack), each beside the bare transport moving the same events in the same run.",
        "Publishing and consuming overlap; a run ends when the last event is handled and,"
        " for NATS, acknowledged. The handlers commit to SQLite (WAL, `synchronous=FULL`,"
        " one transaction and one fsync per event, including the `processed_events` row),"
        " so both bus figures are bounded by that transaction rather than by the transport."
        " The NATS bus pays a little more per event in Python: here the publisher, the"
        " fetch loop and the live-feed subscription share one process and event loop, and"
        " the NATS server runs on the same CPUs; in production they are separate"
        " processes.",
        "",
        *table(results),
        "",
        *ratios(pairs),
        "",
        meta,
        "",
    ]
    return "\n".join(body)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=5000, help="events per run (5000)")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help=f"replace the '{SECTION}' section of docs/performance.md",
    )
    args = parser.parse_args()
    n: int = args.events

    with tempfile.TemporaryDirectory(prefix="anwang-bench-") as tmp:
        directory = Path(tmp)
        q = await bare_queue(n)
        ip = await in_process_bus(n, directory)
        js = await bare_jetstream(n, args.nats)
        nb = await nats_bus(n, args.nats, directory)
        version = await nats_version(args.nats)

    results = [q, ip, js, nb]
    pairs = [("in-process", ip, q), ("NATS JetStream", nb, js)]
    print("\n".join(table(results)))
    print("\n".join(ratios(pairs)))

    command = f"python bench/bench_bus.py --events {n} --nats {args.nats}"
    meta = (
        f"Command: `{command}`. Machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}, NATS server {version} (file storage), "
        f"SQLite {sqlite_version()} on a temporary directory; "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )
    print(meta)
    if args.update_docs:
        target = ROOT / "docs" / "performance.md"
        update_section(section(results, pairs, meta))
        print(f"updated {target.relative_to(ROOT)}")


def sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


if __name__ == "__main__":
    asyncio.run(main())
