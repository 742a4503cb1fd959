"""A committed change never loses its event; a rolled-back one never announces itself."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from anwang.core.bus import InProcessBus
from anwang.core.db import Database, OutboxEntry, publish_after_commit
from anwang.core.errors import Unavailable
from anwang.core.events import Event
from anwang.core.outbox import Outbox


class FlakyBus(InProcessBus):
    """The real in-process bus, with an outage switch on publishing."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.down = False
        self.seen: list[str] = []
        self.add_listener("anwang.>", lambda e: self.seen.append(e.id))

    async def publish(self, event: Event) -> None:
        if self.down:
            raise Unavailable("bus down")
        await super().publish(event)


def _outbox_count(db: Database) -> int:
    with db.unit_of_work(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(OutboxEntry)) or 0


async def test_published_after_commit_and_cleared(db: Database) -> None:
    bus = FlakyBus(db)
    await bus.start()
    db.publisher = Outbox(db, bus).publish
    ev = Event(name="anwang.test.thing.created", payload={"n": 1})

    def work() -> None:
        with db.unit_of_work() as s:
            publish_after_commit(s, ev)

    import asyncio

    await asyncio.to_thread(work)
    assert bus.seen == [ev.id]
    assert _outbox_count(db) == 0
    await bus.close()


async def test_outage_keeps_the_event_and_the_relay_delivers_it(db: Database) -> None:
    import asyncio

    bus = FlakyBus(db)
    await bus.start()
    outbox = Outbox(db, bus)
    db.publisher = outbox.publish
    bus.down = True
    ev = Event(name="anwang.test.thing.created", payload={"n": 2})

    def work() -> None:
        with db.unit_of_work() as s:
            publish_after_commit(s, ev)

    await asyncio.to_thread(work)  # the request does not fail: the change committed
    assert bus.seen == []
    assert _outbox_count(db) == 1
    assert await outbox.relay_once(min_age=0) == 0  # still down
    bus.down = False
    assert await outbox.relay_once(min_age=0) == 1
    assert bus.seen == [ev.id]
    assert _outbox_count(db) == 0
    await bus.close()


def test_rollback_writes_and_publishes_nothing(db: Database) -> None:
    published: list[Event] = []
    db.publisher = published.extend
    with pytest.raises(RuntimeError), db.unit_of_work() as s:
        publish_after_commit(s, Event(name="anwang.test.thing.created"))
        raise RuntimeError("the change failed")
    assert published == []
    assert _outbox_count(db) == 0


async def test_the_events_of_a_unit_of_work_are_cleared_in_one_transaction(
    db: Database,
) -> None:
    """Published in order; the rows of those published go in one delete; an event that
    cannot be published stays for the relay while the others are cleared."""
    import asyncio

    from sqlalchemy import event as sa_event

    class Picky(FlakyBus):
        async def publish(self, event: Event) -> None:
            if event.payload.get("n") == 2:
                raise Unavailable("this one does not go")
            await super().publish(event)

    bus = Picky(db)
    await bus.start()
    outbox = Outbox(db, bus)
    db.publisher = outbox.publish
    evs = [Event(name="anwang.test.thing.created", payload={"n": n}) for n in range(5)]
    deletes: list[str] = []

    def count(conn: object, cursor: object, sql: str, *args: object) -> None:
        if sql.startswith("DELETE FROM outbox"):
            deletes.append(sql)

    def work() -> None:
        with db.unit_of_work() as s:
            for ev in evs:
                publish_after_commit(s, ev)

    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        await asyncio.to_thread(work)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    assert bus.seen == [evs[n].id for n in (0, 1, 3, 4)]
    assert len(deletes) == 1
    assert _outbox_count(db) == 1
    assert await outbox.relay_once(min_age=0) == 0  # still refused
    await bus.close()
