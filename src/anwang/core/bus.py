"""The event bus port, its in-process implementation, and the handler wrapper both share.

A *consumer* is a named, durable subscriber: a plain synchronous function over a
session and one event. The bus owns delivery; :func:`handle_once` owns the transaction:
it runs the handler inside one unit of work, records ``(consumer, event id)`` in
``processed_events`` in that same transaction, and returns only after the commit. A bus
acknowledges a message only after :func:`handle_once` returned, so a crash before the
commit means redelivery, and a redelivery after the commit is recognised and skipped.

A *listener* is the opposite: live, in memory, not durable, called for every matching
event in this process (the SSE fan-out uses it). Listeners must not block.

Implementations: :class:`InProcessBus` here (the embedded default) and
:class:`anwang.infra.nats_bus.NatsBus` (NATS JetStream). The same consumers run on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from anwang.core.db import Database, DeadEvent, ProcessedEvent
from anwang.core.errors import Unavailable
from anwang.core.events import Event, subject_matches, utcnow

log = logging.getLogger(__name__)

Handler = Callable[[Session, Event], None]
Listener = Callable[[Event], Awaitable[None] | None]


@dataclass(frozen=True)
class Consumer:
    """A durable subscriber. ``name`` is its durable identity; workers sharing a name share
    the work; ``subjects`` are NATS-style patterns (``anwang.alerts.>``). An event whose
    handler keeps failing is given up after ``max_deliver`` deliveries — unless the
    failure is the infrastructure's (:func:`is_transient`), which is retried until it
    succeeds."""

    name: str
    subjects: tuple[str, ...]
    handler: Handler
    max_deliver: int = 5

    def wants(self, event_name: str) -> bool:
        return any(subject_matches(p, event_name) for p in self.subjects)


def handle_once(db: Database, consumer: Consumer, event: Event) -> bool:
    """Run ``consumer`` on ``event`` exactly once per (consumer, event id).

    Returns True when the handler ran and committed, False when the event had already
    been processed. Raises whatever the handler raised (nothing is committed then).
    """
    try:
        with db.unit_of_work() as session:
            seen = session.scalar(
                select(ProcessedEvent.event_id).where(
                    ProcessedEvent.consumer == consumer.name,
                    ProcessedEvent.event_id == event.id,
                )
            )
            if seen is not None:
                return False
            consumer.handler(session, event)
            session.add(
                ProcessedEvent(consumer=consumer.name, event_id=event.id, processed_at=utcnow())
            )
    except IntegrityError:
        # Either another worker committed the same event between our check and our
        # insert (then the pair is there now), or the handler itself broke a constraint
        # (then it is not, and the error must reach the bus so the event is retried).
        with db.unit_of_work(readonly=True) as session:
            done = session.scalar(
                select(ProcessedEvent.event_id).where(
                    ProcessedEvent.consumer == consumer.name,
                    ProcessedEvent.event_id == event.id,
                )
            )
        if done is None:
            raise
        return False
    return True


#: SQLSTATE classes of failures that say nothing about the event: connection exceptions
#: (08), transaction rollbacks — deadlocks, serialisation failures (40) —, insufficient
#: resources (53) and operator intervention — a server shutting down (57).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})


def is_transient(exc: BaseException) -> bool:
    """Whether a handler failed because of the infrastructure — the database unreachable
    or restarting, a deadlock, a serialisation failure, the bus down — rather than
    because of the event. Such a failure must not use up the event's attempts: the same
    event will succeed once the infrastructure is back."""
    if isinstance(exc, (Unavailable, TimeoutError, ConnectionError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    orig = exc.orig
    if type(orig).__module__.startswith("sqlite3"):
        # SQLite reports schema and syntax errors as OperationalError too.
        return "locked" in str(orig) or "busy" in str(orig)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    # No SQLSTATE: the driver failed before the server answered (no connection).
    return state is None or str(state)[:2] in _TRANSIENT_SQLSTATE_CLASSES


class Bus(Protocol):
    async def start(
        self, consumers: Sequence[Consumer] = (), *, run_consumers: bool = True
    ) -> None:
        """Connect; when ``run_consumers``, begin delivering to ``consumers``."""

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> None:
        """Publish durably: returns once the bus has accepted the event."""

    def publish_threadsafe(self, event: Event) -> None:
        """Publish from synchronous code in any thread (used after a commit)."""

    def add_listener(self, pattern: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every matching event seen by this process; returns a
        function that removes it."""

    async def ready(self) -> bool:
        """Whether the bus can accept events now (for ``/readyz``)."""

    async def backlog(self, consumer: Consumer) -> int | None:
        """Events published for ``consumer`` and not yet handled (waiting or being
        handled), or None when this process cannot tell (admission control uses it)."""


class ListenerSet:
    """Live listeners of one process; shared by both bus implementations."""

    def __init__(self) -> None:
        self._items: list[tuple[str, Listener]] = []

    def add(self, pattern: str, listener: Listener) -> Callable[[], None]:
        item = (pattern, listener)
        self._items.append(item)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._items.remove(item)

        return remove

    async def dispatch(self, event: Event) -> None:
        for pattern, listener in list(self._items):
            if not subject_matches(pattern, event.name):
                continue
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a broken listener must not stop the others
                log.exception("listener for %s failed on %s", pattern, event.name)


class _LoopBound:
    """Publishing from threads into the loop the bus was started on."""

    _loop: asyncio.AbstractEventLoop | None = None

    async def publish(self, event: Event) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def publish_threadsafe(self, event: Event) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the bus is not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(self.publish(event))
            _background.add(task)
            task.add_done_callback(_publish_done)
            return
        asyncio.run_coroutine_threadsafe(self.publish(event), loop).result(timeout=30)


def record_dead(db: Database, consumer: Consumer, event: Event, exc: BaseException,
                *, attempts: int) -> None:
    """Keep ``event`` in ``dead_events`` for ``consumer`` (once: a second give-up of the
    same pair updates the error and count). A bus gives a message up only after this
    committed; if it raises, the bus keeps the message and tries again later."""
    error = f"{exc.__class__.__name__}: {exc}"[:4000]
    with db.unit_of_work() as session:
        row = session.get(DeadEvent, (consumer.name, event.id))
        if row is None:
            session.add(DeadEvent(
                consumer=consumer.name, event_id=event.id, name=event.name,
                event=event.to_json().decode(), error=error, attempts=attempts,
                failed_at=utcnow(), replayed_at=None))
        else:
            row.error, row.attempts, row.failed_at = error, row.attempts + attempts, utcnow()
            row.replayed_at = None


@dataclass(frozen=True)
class Replay:
    consumer: str
    event_id: str
    name: str
    ok: bool
    error: str | None = None


def replay_dead(db: Database, consumers: Sequence[Consumer], *,
                consumer: str | None = None, event_id: str | None = None) -> list[Replay]:
    """Run each dead event not yet replayed through its consumer again, in the order
    they failed, with :func:`handle_once` (so an event that was meanwhile handled is not
    handled twice). A success marks the row replayed; a failure keeps it, with the new
    error. ``consumer``/``event_id`` narrow the choice. Synchronous."""
    by_name = {c.name: c for c in consumers}
    with db.unit_of_work(readonly=True) as session:
        stmt = select(DeadEvent).where(DeadEvent.replayed_at.is_(None))
        if consumer is not None:
            stmt = stmt.where(DeadEvent.consumer == consumer)
        if event_id is not None:
            stmt = stmt.where(DeadEvent.event_id == event_id)
        rows = [(r.consumer, r.event_id, r.name, r.event)
                for r in session.scalars(stmt.order_by(DeadEvent.failed_at))]
    done: list[Replay] = []
    for name, eid, event_name, raw in rows:
        target = by_name.get(name)
        if target is None:
            done.append(Replay(name, eid, event_name, False, "no such consumer any more"))
            continue
        try:
            handle_once(db, target, Event.from_json(raw))
        except Exception as exc:  # noqa: BLE001 - reported to the operator, row kept
            error = f"{exc.__class__.__name__}: {exc}"[:4000]
            with db.unit_of_work() as session:
                row = session.get(DeadEvent, (name, eid))
                if row is not None:
                    row.error = error
            done.append(Replay(name, eid, event_name, False, error))
            continue
        with db.unit_of_work() as session:
            row = session.get(DeadEvent, (name, eid))
            if row is not None:
                row.replayed_at = utcnow()
        done.append(Replay(name, eid, event_name, True))
    return done


_background: set[asyncio.Task[None]] = set()


def _publish_done(task: asyncio.Task[None]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("publishing an event failed", exc_info=task.exception())


class InProcessBus(_LoopBound):
    """The embedded default: one asyncio queue per consumer, handlers in worker threads.

    Delivery is at-least-once within the process: a handler that raises is retried with
    a short back-off up to the consumer's ``max_deliver``; after that the event is kept
    in ``dead_events`` (:func:`record_dead`, for ``anwang events replay``) — unless the
    failure is the infrastructure's (:func:`is_transient`: the database locked or
    unreachable), which is retried until it succeeds. Events published while nothing
    consumes are not kept.
    """

    def __init__(self, db: Database, *, retry_delay: float = 0.05) -> None:
        self.db = db
        self.retry_delay = retry_delay
        self.listeners = ListenerSet()
        self._queues: dict[str, asyncio.Queue[Event]] = {}
        self._consumers: list[Consumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.dead: list[tuple[str, Event]] = []

    async def start(
        self, consumers: Sequence[Consumer] = (), *, run_consumers: bool = True
    ) -> None:
        self._loop = asyncio.get_running_loop()
        if not run_consumers:
            return
        for c in consumers:
            q: asyncio.Queue[Event] = asyncio.Queue()
            self._queues[c.name] = q
            self._consumers.append(c)
            self._tasks.append(asyncio.create_task(self._run(c, q), name=f"consumer:{c.name}"))

    async def _run(self, consumer: Consumer, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            try:
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        await asyncio.to_thread(handle_once, self.db, consumer, event)
                        break
                    except Exception as exc:
                        transient = is_transient(exc)
                        log.exception(
                            "consumer %s failed on %s (attempt %d/%d%s)",
                            consumer.name, event.id, attempt, consumer.max_deliver,
                            "; transient: retried until it succeeds" if transient else "",
                        )
                        if attempt >= consumer.max_deliver and not transient:
                            try:
                                await asyncio.to_thread(record_dead, self.db, consumer,
                                                        event, exc, attempts=attempt)
                            except Exception:  # noqa: BLE001 - keep it, try again
                                log.exception("could not keep dead event %s", event.id)
                                await asyncio.sleep(min(5.0, self.retry_delay * attempt))
                                continue
                            self.dead.append((consumer.name, event))
                            break
                        await asyncio.sleep(min(5.0, self.retry_delay * attempt))
            finally:
                queue.task_done()

    async def publish(self, event: Event) -> None:
        for c in self._consumers:
            if c.wants(event.name):
                self._queues[c.name].put_nowait(event)
        await self.listeners.dispatch(event)

    def add_listener(self, pattern: str, listener: Listener) -> Callable[[], None]:
        return self.listeners.add(pattern, listener)

    async def drain(self) -> None:
        """Wait until every queued event has been handled (tests and CLI use this)."""
        for q in self._queues.values():
            await q.join()

    async def ready(self) -> bool:
        return self._loop is not None

    async def backlog(self, consumer: Consumer) -> int | None:
        """Events queued for ``consumer`` in this process (None: it does not run here)."""
        queue = self._queues.get(consumer.name)
        return None if queue is None else queue.qsize()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        self._queues.clear()
        self._consumers.clear()
        self._loop = None


def make_bus(
    bus_url: str, db: Database, *, stream: str = "ANWANG", ack_wait: float = 30.0
) -> Bus:
    """The bus for ``bus_url``. ``ack_wait`` (NATS only): seconds before a message a
    worker took and did not acknowledge — it crashed — goes to another worker."""
    if bus_url == "memory://":
        return InProcessBus(db)
    from anwang.infra.nats_bus import NatsBus

    return NatsBus(bus_url, db, stream=stream, ack_wait=ack_wait)
