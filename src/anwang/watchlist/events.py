"""Names and payloads of the events the watch list publishes.

They tell the people who approve entries that one is waiting, and the pages that an
entry changed. Matching does not depend on them: each process's in-memory index follows
the ``watchlist_version`` counter in the database (see :mod:`.service`), which also works
when an event is missed.
"""

from __future__ import annotations

from typing import Any

from anwang.core.events import Audience, Event, EventContext

ENTRY_CREATED = "anwang.watchlist.entry.created"
ENTRY_APPROVED = "anwang.watchlist.entry.approved"
ENTRY_REVOKED = "anwang.watchlist.entry.revoked"
ENTRY_RENEWED = "anwang.watchlist.entry.renewed"
ENTRY_EXPIRED = "anwang.watchlist.entry.expired"
BATCH_IMPORTED = "anwang.watchlist.batch.imported"
BATCH_APPROVED = "anwang.watchlist.batch.approved"

#: Who hears of watch-list changes on the live feed: those who edit and approve entries.
AUDIENCE = Audience(roles=("analyst", "commander"))


def entry_event(name: str, payload: dict[str, Any], *, actor: str | None) -> Event:
    """An entry event for :data:`AUDIENCE`; ``payload`` holds ids and small facts."""
    return Event(name=name, payload=payload, audience=AUDIENCE,
                 context=EventContext(actor=actor))
