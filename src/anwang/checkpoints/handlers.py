"""The checkpoints package's bus consumer and its periodic housekeeping.

``checkpoints.store_reads`` stores the reads of each ``read_batch.received`` event
(:func:`anwang.checkpoints.service.store_reads`), once per event id
(:func:`anwang.core.bus.handle_once`) and once per read id (``ON CONFLICT DO NOTHING``).

Housekeeping — the offline scan and the retention purge — runs every
``settings.housekeeping_interval_s`` seconds in the processes that run consumers: the
single ``anwang serve`` of the embedded mode and every ``anwang worker``. Running it in
several processes at once is safe: the scan claims each outage with a conditional
UPDATE, and the purge deletes what is due whoever runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from anwang.checkpoints import events as ev
from anwang.checkpoints import reads, service
from anwang.core.bus import Consumer
from anwang.core.db import Database
from anwang.core.events import Event
from anwang.core.scope import Scope
from anwang.settings import Settings

log = logging.getLogger(__name__)


def store_reads(session: Session, event: Event) -> None:
    reads.store_reads(session, batch=reads.ReadBatch.from_payload(event.payload), cause=event)


STORE_READS = Consumer(
    name="checkpoints.store_reads",
    subjects=(ev.READ_BATCH_RECEIVED,),
    handler=store_reads,
)

#: The consumers of this package (``anwang.consumers`` lists them).
CONSUMERS: tuple[Consumer, ...] = (STORE_READS,)


# --- housekeeping ---------------------------------------------------------------------


@dataclass(frozen=True)
class HousekeepingRound:
    went_offline: list[str]
    purged: int


def housekeeping_once(
    db: Database, settings: Settings, *, now: datetime | None = None
) -> HousekeepingRound:
    """One round: scan for checkpoints gone silent, then purge expired reads (each in a
    unit of work of its own, so a failing purge does not undo the scan)."""
    with db.unit_of_work(info={"scope": Scope(None)}) as session:
        went = service.scan_offline(session, now=now)
    with db.unit_of_work(info={"scope": Scope(None)}) as session:
        purged = service.purge_reads(
            session, retention_hours=settings.read_retention_hours, now=now
        )
    return HousekeepingRound(went_offline=went, purged=purged.deleted)


async def run_housekeeping(db: Database, settings: Settings) -> None:
    """Run :func:`housekeeping_once` every ``housekeeping_interval_s`` (the first round
    one interval after the start) until cancelled; a failed round is logged and the next
    one tried."""
    while True:
        await asyncio.sleep(settings.housekeeping_interval_s)
        try:
            done = await asyncio.to_thread(housekeeping_once, db, settings)
            if done.went_offline or done.purged:
                log.info("housekeeping: %d checkpoint(s) went offline, %d read(s) purged",
                         len(done.went_offline), done.purged)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a database hiccup must not end the loop
            log.exception("checkpoint housekeeping round failed")


def start_housekeeping(db: Database, settings: Settings) -> asyncio.Task[None]:
    """Start :func:`run_housekeeping` on the running event loop; stop it with
    :func:`stop_housekeeping`."""
    return asyncio.create_task(run_housekeeping(db, settings), name="checkpoints-housekeeping")


async def stop_housekeeping(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
