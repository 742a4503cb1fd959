"""Plate reads over MQTT: ``anwang/checkpoints/{code}/reads``, QoS 1.

A checkpoint (or its site's collector) publishes its reads to its own topic; they are
taken in exactly as ``POST /api/v1/reads`` takes them — through
:func:`anwang.checkpoints.reads.ingest_reads`, with the same validation, de-duplication
and report — and the report of each message is published back with QoS 1 to
``anwang/checkpoints/{code}/reads/result`` (or to the MQTT 5 response topic the
publisher named, echoing its correlation data), so that a camera learns which reads
were refused.

Payload
    One JSON read object, a JSON array of reads, or NDJSON (one read per line); see
    :func:`decode_payload`. The topic names the checkpoint: a read without
    ``checkpoint`` takes the topic's, a read naming another checkpoint is refused
    (``checkpoint_topic_mismatch``). With a broker ACL that lets each checkpoint's account
    publish only to its own topic (docs/operations.md), the topic is what proves where a
    read came from — the MQTT counterpart of a device key limited to a jurisdiction — so
    the intake itself is city-wide.
Delivery
    Consumer group ``checkpoints`` through :class:`anwang.infra.mqtt.MqttConsumer`
    (client id ``anwang-checkpoints-<worker id>``). The messages of a batch are decoded
    first, then ingested in units of work of up to :data:`reads.MAX_BATCH` reads (one
    unit for a usual batch; a message is never split), in a worker thread. The broker's
    acknowledgement follows the commit, so a crash redelivers; a redelivered message
    stores nothing twice and raises no second alert, because read ids are deterministic
    (:func:`reads.read_id`) and storage inserts with ``ON CONFLICT DO NOTHING``
    (:func:`reads.store_reads`) — its report then counts the reads as duplicates.
    Replies are published after the commit, on the consumer's own connection.

Started by :func:`start` from ``anwang serve`` (when it runs the consumers) and
``anwang worker``, only when ``ANWANG_MQTT_URL`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session

from anwang.checkpoints import reads
from anwang.checkpoints.schemas import IngestOut, Rejection
from anwang.core.db import Database
from anwang.core.scope import Scope
from anwang.infra.mqtt import Message, MqttConsumer, Subscription
from anwang.settings import Settings

log = logging.getLogger(__name__)

GROUP = "checkpoints"
TOPIC_PREFIX = "anwang/checkpoints"
#: Messages handed to one batch at most (each may carry up to ``reads.MAX_BATCH`` reads;
#: units of work are cut by reads, see the module docstring).
MAX_MESSAGES = 1000

#: Rejection codes of the MQTT intake, beside ``schemas.REJECTION_CODES``. The first two
#: refuse the whole payload (reported at index 0; nothing of it is taken).
MQTT_REJECTION_CODES: dict[str, str] = {
    "malformed_json": "the payload (or an NDJSON line) is not JSON, or not UTF-8",
    "batch_too_large": f"more than {reads.MAX_BATCH} reads in one message",
    "checkpoint_topic_mismatch": "the read names another checkpoint than its topic",
    "handler_error": "the message kept failing and was set aside; send it again later",
}

Reply = tuple[str, bytes, bytes | None]
"""(topic, payload, MQTT 5 correlation data) of one report."""
ReplyFn = Callable[[str, bytes, bytes | None], None]


def topic_filter(prefix: str = TOPIC_PREFIX) -> str:
    return f"{prefix}/+/reads"


def checkpoint_of(topic: str, prefix: str = TOPIC_PREFIX) -> str | None:
    """The checkpoint code in ``<prefix>/<code>/reads``, or None for another topic."""
    head, tail = prefix + "/", "/reads"
    if not (topic.startswith(head) and topic.endswith(tail)):
        return None
    code = topic[len(head):-len(tail)]
    return None if "/" in code else code


def result_topic(code: str, prefix: str = TOPIC_PREFIX) -> str:
    return f"{prefix}/{code}/reads/result"


def reply_topic(message: Message, code: str, prefix: str = TOPIC_PREFIX) -> str:
    """The publisher's MQTT 5 response topic when it is one anwang may publish to (no
    wildcard, no ``$`` topic, not a reads topic — a reply there would be taken in as
    reads), else :func:`result_topic`."""
    wanted = message.response_topic
    if (wanted and "+" not in wanted and "#" not in wanted and not wanted.startswith("$")
            and not mqtt.topic_matches_sub(topic_filter(prefix), wanted)):
        return wanted
    return result_topic(code, prefix)


# --- payloads (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """A decoded message: ``items`` are JSON values or :class:`reads.Malformed` lines,
    as :func:`reads.ingest_reads` takes them; ``refused`` is set (and ``items`` empty)
    when the payload as a whole could not be read."""

    items: list[Any]
    refused: Rejection | None = None


def _refused(code: str, detail: str) -> Payload:
    return Payload([], Rejection(index=0, code=code, detail=detail[:500]))


def decode_payload(raw: bytes, *, limit: int = reads.MAX_BATCH) -> Payload:
    """The reads of one message.

    - A payload that begins with ``[`` is one JSON array of reads; malformed, it is
      refused as a whole.
    - Otherwise a payload that is one JSON value is one read (an object; anything else
      is then refused as ``not_an_object`` by the validation).
    - Otherwise it is NDJSON: each non-blank line is one read, and a line that is not
      JSON is rejected on its own (``malformed_json`` at its index among the non-blank
      lines), as ``POST /api/v1/reads`` does with NDJSON.

    Blank or empty: no reads. Not UTF-8 (a leading BOM is allowed): refused. More than
    ``limit`` reads: refused as ``batch_too_large``.
    """
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return _refused("malformed_json", "the payload is not UTF-8")
    body = text.strip()
    if not body:
        return Payload([])
    too_many = f"at most {limit} reads per message; split it"
    if body.startswith("["):
        try:
            doc = json.loads(body)
        except ValueError as exc:
            return _refused("malformed_json", f"malformed JSON array: {exc}")
        if len(doc) > limit:
            return _refused("batch_too_large", too_many)
        return Payload(list(doc))
    try:
        return Payload([json.loads(body)])
    except ValueError:
        pass
    items: list[Any] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if len(items) == limit:
            return _refused("batch_too_large", too_many)
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            items.append(reads.Malformed(f"malformed JSON: {exc}"))
    return Payload(items)


def bind_to_checkpoint(
    items: Sequence[Any], code: str,
) -> tuple[list[Any], list[int], list[Rejection]]:
    """Give the topic's checkpoint to the reads that name none; refuse those naming
    another. Returns the items to ingest, the index of each in ``items``, and the
    refusals (at their index in ``items``). Non-objects pass through to validation."""
    keep: list[Any] = []
    where: list[int] = []
    refused: list[Rejection] = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            named = item.get("checkpoint")
            if named is None:
                item = {**item, "checkpoint": code}
            elif named != code:
                refused.append(Rejection(
                    index=i, code="checkpoint_topic_mismatch",
                    detail=f"the read names checkpoint {str(named)[:60]!r} but was "
                           f"published on the topic of {code[:60]!r}"))
                continue
        keep.append(item)
        where.append(i)
    return keep, where, refused


def report_bytes(report: IngestOut) -> bytes:
    return report.model_dump_json().encode("utf-8")


# --- ingestion -------------------------------------------------------------------------


def ingest_message(
    session: Session, *, code: str, payload: Payload, retention_hours: int,
    now: datetime | None = None, store: bool = False,
) -> IngestOut:
    """Take in one message's reads for checkpoint ``code`` (in the caller's unit of
    work) and say what became of each, as ``POST /api/v1/reads`` answers."""
    if payload.refused is not None:
        return IngestOut(accepted=0, duplicates=0, rejected=[payload.refused], alerts=0)
    items, where, refused = bind_to_checkpoint(payload.items, code)
    report = reads.ingest_reads(
        session, items=items, source=f"mqtt:{code}", retention_hours=retention_hours,
        now=now, store=store,
    )
    rejected = refused + [
        Rejection(index=where[r.index], code=r.code, detail=r.detail) for r in report.rejected
    ]
    rejected.sort(key=lambda r: r.index)
    return IngestOut(accepted=report.accepted, duplicates=report.duplicates,
                     rejected=rejected, alerts=report.alerts)


def handle_batch(
    db: Database, settings: Settings, batch: Sequence[Message], *,
    prefix: str = TOPIC_PREFIX, now: datetime | None = None,
) -> list[Reply]:
    """Ingest one MQTT batch (synchronous; runs in a thread) and return the replies to
    publish, one per message, once everything is committed."""
    decoded: list[tuple[Message, str, Payload]] = []
    for m in batch:
        code = checkpoint_of(m.topic, prefix)
        if code is None:  # not ours: the subscription's filter makes this rare
            log.warning("plate reads on an unexpected MQTT topic %r dropped", m.topic[:200])
            continue
        decoded.append((m, code, decode_payload(m.payload)))
    # Units of work of up to MAX_BATCH reads: a usual batch is one unit, a flood of big
    # messages does not become one huge transaction. Nothing is acknowledged before all
    # of them committed, and a unit repeated after a crash is harmless.
    units: list[list[tuple[Message, str, Payload]]] = []
    size = 0
    for entry in decoded:
        n = len(entry[2].items)
        if not units or (size + n > reads.MAX_BATCH and units[-1]):
            units.append([])
            size = 0
        units[-1].append(entry)
        size += n
    replies: list[Reply] = []
    for unit in units:
        done: list[Reply] = []
        with db.unit_of_work(info={"scope": Scope(None)}) as session:
            for m, code, payload in unit:
                report = ingest_message(
                    session, code=code, payload=payload,
                    retention_hours=settings.read_retention_hours, now=now,
                    store=reads.store_inline(session,
                                             in_process_bus=settings.bus_url == "memory://"))
                done.append((reply_topic(m, code, prefix), report_bytes(report),
                             m.correlation_data))
        replies.extend(done)
    return replies


def dead_reply(message: Message, exc: BaseException, *,
               prefix: str = TOPIC_PREFIX) -> Reply | None:
    """The report of a message that kept failing and was set aside (not taken)."""
    code = checkpoint_of(message.topic, prefix)
    if code is None:
        return None
    report = IngestOut(accepted=0, duplicates=0, alerts=0, rejected=[Rejection(
        index=0, code="handler_error",
        detail=f"the message could not be processed ({exc.__class__.__name__}); "
               "nothing of it was taken")])
    return reply_topic(message, code, prefix), report_bytes(report), message.correlation_data


def subscription(db: Database, settings: Settings, *, reply: ReplyFn, name: str = GROUP,
                 prefix: str = TOPIC_PREFIX) -> Subscription:
    """The consumer group's subscription; ``reply(topic, payload, correlation_data)``
    publishes each message's report (after the commit)."""

    async def handle(batch: Sequence[Message]) -> None:
        replies = await asyncio.to_thread(handle_batch, db, settings, batch, prefix=prefix)
        for topic, payload, correlation in replies:
            reply(topic, payload, correlation)

    async def dead(message: Message, exc: BaseException) -> None:
        found = dead_reply(message, exc, prefix=prefix)
        if found is not None:
            reply(*found)

    return Subscription(name=name, topics=(topic_filter(prefix),), handler=handle,
                        on_dead=dead, max_batch=MAX_MESSAGES)


def make_consumer(db: Database, settings: Settings, *, name: str = GROUP,
                  prefix: str = TOPIC_PREFIX, worker_id: str | None = None,
                  session_expiry_s: int | None = None) -> MqttConsumer:
    """The consumer of this worker, replying on its own connection. ``name``,
    ``prefix``, ``worker_id`` and ``session_expiry_s`` are there for tests; by default
    they come from the settings."""
    consumer: MqttConsumer | None = None

    def reply(topic: str, payload: bytes, correlation: bytes | None) -> None:
        if consumer is None:
            return
        try:
            consumer.publish(topic, payload, qos=1, correlation_data=correlation)
        except ValueError:  # a topic paho refuses (too long, bad characters)
            log.warning("could not publish a read report to %r", topic[:200])

    consumer = MqttConsumer(
        settings.mqtt_url, subscription(db, settings, reply=reply, name=name, prefix=prefix),
        worker_id=worker_id or settings.mqtt_worker_id or socket.gethostname(),
        session_expiry_s=session_expiry_s or settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
    )
    return consumer


# --- lifecycle -------------------------------------------------------------------------


async def run(db: Database, settings: Settings) -> None:
    """Consume until cancelled; the broker keeps the session for the next start."""
    consumer = make_consumer(db, settings)
    await consumer.start()
    try:
        await asyncio.Event().wait()
    finally:
        await consumer.stop()


def start(db: Database, settings: Settings) -> asyncio.Task[None] | None:
    """Start :func:`run` on the running loop when ``ANWANG_MQTT_URL`` is set (else
    None); cancel the task, or call :func:`stop`, to stop it."""
    if not settings.mqtt_url:
        return None
    return asyncio.get_running_loop().create_task(run(db, settings),
                                                  name="checkpoints-mqtt")


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel the task of :func:`start` and wait until the MQTT session is closed."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
