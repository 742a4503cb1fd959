"""A transactional outbox: no committed change loses its event.

:func:`anwang.core.db.publish_after_commit` writes the event into ``outbox`` in the same
transaction as the change. After the commit the unit of work hands its events to
:meth:`Outbox.publish`, which publishes them and deletes their rows. If publishing fails (the
bus is down), the row stays, the caller is not failed for a change that did commit, and
:meth:`Outbox.relay` — a loop run by ``anwang serve`` and ``anwang worker`` — publishes
it later. An event may so be published twice (published, then the delete failed): the
bus de-duplicates on the event id (NATS ``Nats-Msg-Id``) and consumers are idempotent
on it (``processed_events``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, select

from anwang.core.bus import Bus
from anwang.core.db import Database, OutboxEntry
from anwang.core.events import Event, utcnow

log = logging.getLogger(__name__)


def pending_count(db: Database, *, at_most: int) -> int:
    """Events in the outbox (committed, not yet published), counted up to ``at_most``:
    the count costs at most that many index entries however long the outbox grows."""
    with db.unit_of_work(readonly=True) as s:
        first = select(OutboxEntry.event_id).limit(max(0, at_most)).subquery()
        return int(s.scalar(select(func.count()).select_from(first)) or 0)


class Outbox:
    def __init__(self, db: Database, bus: Bus) -> None:
        self.db = db
        self.bus = bus

    def publish(self, events: Sequence[Event]) -> None:
        """Publish the events of a committed unit of work now, in order (sync; any
        thread), then delete the rows of those published in one transaction — a batch of
        reads that raised a dozen alerts costs one delete, not a dozen commits. An event
        that cannot be published is kept for the relay."""
        done: list[str] = []
        for event in events:
            try:
                self.bus.publish_threadsafe(event)
            except Exception:  # noqa: BLE001 - the relay retries; the change is committed
                log.warning("event %s %s kept in the outbox for later", event.name, event.id,
                            exc_info=True)
                continue
            done.append(event.id)
        if done:
            self._forget(done)

    def _forget(self, ids: list[str]) -> None:
        try:
            with self.db.unit_of_work() as s:
                s.execute(delete(OutboxEntry).where(OutboxEntry.event_id.in_(ids)))
        except Exception:  # noqa: BLE001 - republishing later is harmless
            log.warning("could not clear %d outbox row(s)", len(ids), exc_info=True)

    def _due(self, min_age: float, limit: int) -> list[Event]:
        cutoff = utcnow() - timedelta(seconds=min_age)
        with self.db.unit_of_work(readonly=True) as s:
            rows = s.scalars(
                select(OutboxEntry.body)
                .where(OutboxEntry.created_at <= cutoff)
                .order_by(OutboxEntry.created_at)
                .limit(limit)
            ).all()
        return [Event.from_json(b) for b in rows]

    async def relay_once(self, *, min_age: float = 5.0, limit: int = 500) -> int:
        """Publish events left behind for at least ``min_age`` seconds; returns how many."""
        events = await asyncio.to_thread(self._due, min_age, limit)
        done: list[str] = []
        for ev in events:
            try:
                await self.bus.publish(ev)
            except Exception:  # noqa: BLE001 - try again next round
                log.warning("relay could not publish %s; will retry", ev.id, exc_info=True)
                break
            done.append(ev.id)
        if done:
            await asyncio.to_thread(self._forget, done)
            log.info("relayed %d event(s) from the outbox", len(done))
        return len(done)

    async def relay(self, *, interval: float = 5.0, min_age: float = 5.0) -> None:
        """Run :meth:`relay_once` every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.relay_once(min_age=min_age)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end the loop
                log.exception("outbox relay round failed")
            await asyncio.sleep(interval)
