"""The checkpoints package's bus consumer and its periodic housekeeping.

``checkpoints.store_reads`` stores the reads of each ``read_batch.received`` event
(:func:`anwang.checkpoints.service.store_reads`), once per event id
(:func:`anwang.core.bus.handle_once`) and once per read id (``ON CONFLICT DO NOTHING``).

Housekeeping — the offline scan, the day partitions ahead (PostgreSQL) and the
retention purge — runs every ``settings.housekeeping_interval_s`` seconds in the
processes that run consumers: the single ``anwang serve`` of the embedded mode and every
``anwang worker``. Running it in several processes at once is safe: the scan claims each
outage with a conditional UPDATE, creating a partition that exists is a no-op, and only
one process purges at a time (the others skip that round).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from anwang.checkpoints import events as ev
from anwang.checkpoints import reads, service, storage
from anwang.core.bus import Consumer
from anwang.core.db import Database
from anwang.core.events import Event, utcnow
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
    #: Reads removed (all kinds); the details are in ``report``.
    purged: int
    report: service.PurgeReport | None = None
    #: Day partitions created ahead (PostgreSQL).
    partitions_created: list[str] = field(default_factory=list)


def housekeeping_once(
    db: Database, settings: Settings, *, now: datetime | None = None
) -> HousekeepingRound:
    """One round: scan for checkpoints gone silent, create the coming days' partitions,
    then purge expired reads (each in a unit of work of its own, so that a failing step
    does not undo the others)."""
    with db.unit_of_work(info={"scope": Scope(None)}) as session:
        went = service.scan_offline(session, now=now)
    created: list[str] = []
    if db.engine.dialect.name == "postgresql":  # only PostgreSQL has day partitions
        with db.unit_of_work(info={"scope": Scope(None)}) as session:
            created = storage.create_ahead(session, now=now or utcnow())
    with db.unit_of_work(info={"scope": Scope(None)}) as session:
        purged = service.purge_reads(
            session, retention_hours=settings.read_retention_hours,
            alert_retention_days=settings.alert_retention_days, now=now,
        )
    return HousekeepingRound(went_offline=went, purged=purged.deleted, report=purged,
                             partitions_created=created)


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
            if done.report is not None and (done.report.partitions_dropped
                                            or done.report.partitions_rebuilt):
                log.info("housekeeping: partitions dropped %s, rebuilt %s",
                         ", ".join(done.report.partitions_dropped) or "none",
                         ", ".join(done.report.partitions_rebuilt) or "none")
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
