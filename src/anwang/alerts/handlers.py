"""Background work of the alerts and the watch list: a periodic round, not a bus consumer.

At start the process's watch-list index is built (:func:`warm_index`). Then every
``alert_scan_seconds`` (15 s) one round, each step in a unit of work of its own:

1. watch-list entries whose expiry has passed are marked ``expired`` (they stopped
   matching at their expiry already; this records it and audits it);
2. alerts still ``open`` after ``alert_escalate_minutes`` are escalated.

``anwang serve`` runs the round when it runs the consumers (the embedded bus) and
``anwang worker`` always does. Several processes may run it at once: both steps skip the
rows another process is changing and re-check the condition, so nothing is done twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from anwang.alerts import service as alerts_service
from anwang.core.db import Database
from anwang.core.events import utcnow
from anwang.settings import Settings
from anwang.watchlist import service as watchlist_service

log = logging.getLogger(__name__)


def run_round(db: Database, settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """One round (synchronous; the loop runs it in a thread). Returns what it did."""
    now = now or utcnow()
    with db.unit_of_work(info={"settings": settings}) as session:
        expired = watchlist_service.expire_entries(session, now=now)
    with db.unit_of_work(info={"settings": settings}) as session:
        escalated = alerts_service.scan_escalations(
            session, now=now, escalate_after_minutes=settings.alert_escalate_minutes
        )
    return {"expired": expired, "escalated": escalated}


def warm_index(db: Database) -> int:
    """Build this process's watch-list index now, so that the first batch of reads does
    not wait for it (a million entries take some seconds); returns its size."""
    with db.unit_of_work(readonly=True) as session:
        return watchlist_service.index_stats(session)["entries"]


async def run_periodic(db: Database, settings: Settings) -> None:
    """Build the watch-list index, then run :func:`run_round` every
    ``settings.alert_scan_seconds`` until cancelled. A failed round is logged and the
    next one tried as usual."""
    try:
        await asyncio.to_thread(warm_index, db)
    except Exception:  # matching builds it on first use anyway
        log.warning("could not build the watch-list index at start", exc_info=True)
    while True:
        await asyncio.sleep(settings.alert_scan_seconds)
        try:
            done = await asyncio.to_thread(run_round, db, settings)
        except Exception:  # the database may be away for a moment: try next round
            log.warning("the alert and watch-list round failed", exc_info=True)
            continue
        if any(done.values()):
            log.info("alert round: %s", done)


def start_periodic(db: Database, settings: Settings) -> asyncio.Task[None]:
    """Start :func:`run_periodic` on the running loop; cancel the task to stop it."""
    return asyncio.get_running_loop().create_task(
        run_periodic(db, settings), name="alerts-periodic"
    )
