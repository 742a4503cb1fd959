"""Names and payloads of the events the checkpoints package publishes.

``READ_BATCH_RECEIVED`` carries validated, normalised reads from ingestion to the
``checkpoints.store_reads`` consumer. Its id is derived from the ids of the reads it
carries (:func:`batch_event_id`), so that a retried POST publishes the same event: NATS
drops the second publish within its duplicate window, and ``handle_once`` skips an event
it has already handled. Plate reads are personal data: the event's audience is
:data:`NOBODY`, so the live feed never shows it to anyone.

The offline events are for the dispatchers of the checkpoint's jurisdiction and carry
``lat``/``lon``, so the live map drops a marker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from anwang.core.events import Audience

READ_BATCH_RECEIVED = "anwang.checkpoints.read_batch.received"
CHECKPOINT_WENT_OFFLINE = "anwang.checkpoints.checkpoint.went_offline"
CHECKPOINT_CAME_ONLINE = "anwang.checkpoints.checkpoint.came_online"

#: No person holds this role, so no live-feed client receives the event.
NOBODY = Audience(roles=("internal",))

#: Who is told that a checkpoint went offline or came back.
OUTAGE_ROLES: tuple[str, ...] = ("dispatcher",)

#: Reads per ``READ_BATCH_RECEIVED`` event. A read is about 250 bytes of JSON, so an
#: event stays well under NATS's default ``max_payload`` of 1 MB; a larger batch is
#: published as several events.
READS_PER_EVENT = 2000


def batch_event_id(read_ids: Iterable[str]) -> str:
    """``rb-`` and 36 hex digits of the SHA-256 of the sorted read ids (39 characters;
    event ids are at most 40). The same reads give the same id in any order."""
    digest = hashlib.sha256("\n".join(sorted(read_ids)).encode()).hexdigest()
    return f"rb-{digest[:36]}"
