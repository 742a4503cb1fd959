"""The event bus on NATS JetStream.

Subjects
    An event is published on its name (``anwang.<package>.<noun>.<past-verb>``), or on
    ``<subject_prefix>.<name>`` when a prefix is configured (tests use one so that their
    throw-away streams never overlap the production stream's subjects: JetStream refuses
    two streams whose subjects overlap). One stream (``stream``, default ``ANWANG``)
    captures ``[<prefix>.]anwang.>`` on file storage with a bounded age.

Durable delivery
    Every consumer becomes one or more *durable pull consumers* on that stream. The
    durable is named after the consumer (characters NATS refuses in names become ``_``).
    NATS 2.9 lets a consumer filter on one subject only (``filter_subjects`` arrived in
    2.10), so a consumer with several patterns gets one durable per pattern, named
    ``<name>_<8 hex digits of the pattern's SHA-256>`` — stable when patterns are added,
    removed or reordered. An event that matches two patterns of one consumer is delivered
    to both durables and handled once: :func:`~anwang.core.bus.handle_once` keys on the
    consumer's name, not the durable's. Durables of patterns that were removed stay on the
    server (an older worker may still use them during a rolling deploy); remove them with
    ``nats consumer rm`` when no worker needs them.

    Each durable has one fetch loop per process; processes that use the same durable
    share its messages, which is how several workers split the work. A message is acked
    only after ``handle_once`` returned (the handler's transaction is committed); a
    handler error naks it with an exponential back-off. A failure of the event itself
    ends on the delivery numbered ``Consumer.max_deliver`` or later: the event is kept in
    ``dead_events`` (:func:`~anwang.core.bus.record_dead`; ``anwang events replay`` runs
    it again once the cause is fixed), and only then is the message terminated. A
    failure of the infrastructure
    (:func:`~anwang.core.bus.is_transient`: the database down, a deadlock) is retried
    until it succeeds, and the server itself never gives up on a message (the durable's
    ``max_deliver`` is unlimited): a worker killed with messages in hand — however
    often — delays them by ``ack_wait`` but never drops them. (A message that kills
    every worker that takes it is so redelivered for as long as the stream keeps it;
    workers restarting in a loop show it.)
    While a handler runs longer than a third of ``ack_wait``, the message (and the rest
    of its batch) is marked in progress so that the server does not hand it to another
    worker. A message that is not an event, or whose event name does not match its
    subject, is terminated and logged; it never blocks the consumer.

De-duplication
    ``publish`` sets ``Nats-Msg-Id`` to the event id, so the stream stores a retried
    publish of the same event only once within ``duplicate_window``. Redeliveries (a
    crash between commit and ack, an expired ack wait) reach ``handle_once``, which
    recognises the event id and skips it.

Listeners
    Listeners are fed by one plain NATS subscription on ``[<prefix>.]anwang.>`` per
    process, opened by ``start`` whether or not the process runs consumers: every
    process sees the events published by every other process (the API's live feed shows
    what workers publish). ``publish`` does not call listeners itself — the
    subscription echoes this process's own events back exactly once — and a bounded
    memory of recent event ids drops the second copy of an event published twice. The
    live feed is best-effort: an event is not replayed to a process that was
    disconnected when it was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import logging
import math
import os
import random
import re
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from anwang.core.bus import (
    Consumer,
    Listener,
    ListenerSet,
    _LoopBound,
    handle_once,
    is_transient,
    record_dead,
)
from anwang.core.db import Database
from anwang.core.errors import Unavailable
from anwang.core.events import Event

log = logging.getLogger(__name__)

#: Every event name falls under this pattern; the stream captures it.
ROOT_PATTERN = "anwang.>"

_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_PATTERN_TOKEN = re.compile(r"^([a-z0-9_]+|\*|>)$")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_-]")

#: Failures that mean "the server cannot be used right now", reported as Unavailable.
_TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)

# ``reconnect_to_server_handler`` (exponential back-off with jitter) exists in recent
# nats-py only; older clients fall back to their fixed ``reconnect_time_wait``.
_HAS_RECONNECT_HANDLER = (
    "reconnect_to_server_handler" in inspect.signature(Client.connect).parameters
)


def durable_base(consumer_name: str) -> str:
    """The durable name for a consumer: characters NATS refuses in names become ``_``."""
    return _NOT_NAME_CHAR.sub("_", consumer_name)


def pattern_tag(pattern: str) -> str:
    """A short, stable tag for one subject pattern (used in per-pattern durable names)."""
    return hashlib.sha256(pattern.encode()).hexdigest()[:8]


def check_pattern(pattern: str) -> None:
    """Refuse a consumer pattern the stream would never deliver (outside ``anwang.>``)."""
    tokens = pattern.split(".")
    ok = (
        len(tokens) >= 2
        and tokens[0] == "anwang"
        and all(_PATTERN_TOKEN.match(t) for t in tokens[1:])
        and ">" not in tokens[:-1]
    )
    if not ok:
        raise ValueError(f"subject pattern {pattern!r} is not a pattern under {ROOT_PATTERN}")


@dataclass(frozen=True)
class Durable:
    """One durable pull consumer on the server: a consumer and one of its patterns."""

    name: str
    pattern: str
    consumer: Consumer


def plan_durables(consumers: Sequence[Consumer]) -> list[Durable]:
    """The durables for ``consumers``: one per consumer, or one per pattern when a
    consumer has several (NATS 2.9 filters a consumer on a single subject).

    Raises ValueError for a consumer without patterns, an invalid pattern, or two
    consumers whose names map to the same durable (they would silently share messages).
    """
    plan: list[Durable] = []
    owner: dict[str, str] = {}
    for consumer in consumers:
        patterns = list(dict.fromkeys(consumer.subjects))
        if not patterns:
            raise ValueError(f"consumer {consumer.name!r} has no subject patterns")
        for pattern in patterns:
            check_pattern(pattern)
        base = durable_base(consumer.name)
        if len(patterns) == 1:
            names = [(base, patterns[0])]
        else:
            names = [(f"{base}_{pattern_tag(p)}", p) for p in patterns]
        for name, pattern in names:
            if name in owner:
                raise ValueError(
                    f"consumers {owner[name]!r} and {consumer.name!r} both map to the "
                    f"durable {name!r}; rename one"
                )
            owner[name] = consumer.name
            plan.append(Durable(name=name, pattern=pattern, consumer=consumer))
    return plan


def redact_url(url: str) -> str:
    """``url`` without user name, password or token, for log lines and error messages."""
    parts = []
    for one in url.split(","):
        s = urlsplit(one.strip())
        netloc = s.netloc.rsplit("@", 1)[-1]
        parts.append(urlunsplit((s.scheme, netloc, s.path, s.query, s.fragment)))
    return ",".join(parts)


#: ``max_deliver`` of every durable: the server never stops redelivering a message.
UNLIMITED_DELIVERIES = -1

#: Oldest NATS server release anwang runs on without a warning: 2.10 brought
#: ``sync_interval: always`` and the JetStream durability fixes that followed.
MIN_SERVER_VERSION = (2, 10)


def server_is_old(major: int, minor: int) -> bool:
    return (major, minor) < MIN_SERVER_VERSION


def warn_if_old_server(nc: Any) -> None:
    """Log a warning when the connected server predates :data:`MIN_SERVER_VERSION`."""
    try:
        v = nc.connected_server_version
        major, minor, patch = int(v.major), int(v.minor), int(v.patch)
    except Exception:  # noqa: BLE001 - an unknown version is not worth failing for
        return
    if server_is_old(major, minor):
        log.warning(
            "NATS server %d.%d.%d is older than %d.%d: it cannot sync every write to disk "
            "before acknowledging (sync_interval: always) and lacks later JetStream "
            "durability fixes; acknowledged events may be lost on a crash. Use a current "
            "2.x release in production (docs/operations.md).",
            major, minor, patch, *MIN_SERVER_VERSION,
        )


class NatsBus(_LoopBound):
    """The :class:`~anwang.core.bus.Bus` on NATS JetStream (see the module docstring).

    Keyword arguments (durations in seconds):

    ``stream`` / ``subject_prefix``
        Stream name and an optional subject prefix (empty in production).
    ``connect_timeout``
        How long ``start`` waits for the first connection before raising
        :class:`~anwang.core.errors.Unavailable`. Once connected, the client reconnects
        forever, waiting ``reconnect_wait`` doubling up to ``max_reconnect_wait``.
    ``max_age`` / ``duplicate_window`` / ``max_bytes`` / ``replicas``
        Stream retention, the publish de-duplication window, a size cap (-1: none) and
        the replica count. ``start`` creates the stream, or updates an existing one whose
        age, window, size or subjects differ; storage, retention policy and replicas
        cannot change in place and only log a warning.
    ``ack_wait`` / ``fetch_batch`` / ``fetch_timeout``
        Per-message ack deadline; messages per fetch; how long one fetch waits for
        messages (and so the longest an idle fetch loop takes to notice ``close``).
    ``retry_delay`` / ``max_retry_delay``
        The nak back-off: ``retry_delay * 2**(attempt-1)``, capped.
    ``new_consumers_from``
        Where a durable created for the first time starts: ``"all"`` (everything the
        stream still holds, so nothing published before the first worker came up is
        missed) or ``"new"``.
    """

    def __init__(
        self,
        url: str,
        db: Database,
        *,
        stream: str = "ANWANG",
        subject_prefix: str = "",
        connection_name: str | None = None,
        connect_timeout: float = 10.0,
        reconnect_wait: float = 0.5,
        max_reconnect_wait: float = 30.0,
        max_age: float = 7 * 24 * 3600.0,
        duplicate_window: float = 600.0,
        max_bytes: int = -1,
        replicas: int = 1,
        ack_wait: float = 30.0,
        fetch_batch: int = 64,
        fetch_timeout: float = 1.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        publish_timeout: float = 5.0,
        close_timeout: float = 10.0,
        new_consumers_from: Literal["all", "new"] = "all",
        live_dedupe_size: int = 4096,
    ) -> None:
        if subject_prefix and not _PREFIX.match(subject_prefix):
            raise ValueError(f"invalid subject prefix {subject_prefix!r}")
        if _NOT_NAME_CHAR.search(stream):
            raise ValueError(f"invalid stream name {stream!r}")
        if not 0 < duplicate_window <= max_age:
            raise ValueError("duplicate_window must be positive and at most max_age")
        if fetch_batch < 1 or fetch_timeout <= 0 or ack_wait <= 0:
            raise ValueError("fetch_batch, fetch_timeout and ack_wait must be positive")
        self.url = url
        self.db = db
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.connection_name = connection_name or f"anwang@{socket.gethostname()}:{os.getpid()}"
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.max_reconnect_wait = max_reconnect_wait
        self.max_age = max_age
        self.duplicate_window = duplicate_window
        self.max_bytes = max_bytes
        self.replicas = replicas
        self.ack_wait = ack_wait
        self.fetch_batch = fetch_batch
        self.fetch_timeout = fetch_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.publish_timeout = publish_timeout
        self.close_timeout = close_timeout
        self.new_consumers_from = new_consumers_from
        self.live_dedupe_size = live_dedupe_size

        self.listeners = ListenerSet()
        #: ``(consumer name, event)`` of events given up after ``max_deliver`` attempts.
        self.dead: deque[tuple[str, Event]] = deque(maxlen=1000)
        #: The durables this process consumes from (after ``start``).
        self.durables: list[Durable] = []
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._live: Subscription | None = None
        self._pulls: list[JetStreamContext.PullSubscription] = []
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._recent: OrderedDict[str, None] = OrderedDict()

    # -- subjects ---------------------------------------------------------------------

    def subject(self, name_or_pattern: str) -> str:
        """The NATS subject for an event name or pattern (with the prefix, if any)."""
        if self.subject_prefix:
            return f"{self.subject_prefix}.{name_or_pattern}"
        return name_or_pattern

    # -- lifecycle ----------------------------------------------------------------------

    async def start(
        self, consumers: Sequence[Consumer] = (), *, run_consumers: bool = True
    ) -> None:
        """Connect, ensure the stream, open the live subscription and, when
        ``run_consumers``, ensure a durable per consumer pattern and start fetching.

        Raises :class:`~anwang.core.errors.Unavailable` when the server cannot be
        reached within ``connect_timeout`` or does not answer JetStream requests.
        """
        if self._nc is not None:
            raise RuntimeError("the bus is already started")
        plan = plan_durables(consumers) if run_consumers else []
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        try:
            self._nc = await self._connect()
            warn_if_old_server(self._nc)
            self._js = self._nc.jetstream(timeout=self.publish_timeout)
            await self._ensure_stream()
            self._live = await self._nc.subscribe(
                self.subject(ROOT_PATTERN), cb=self._on_live, pending_msgs_limit=65536
            )
            for durable in plan:
                await self._ensure_durable(durable)
                self._pulls.append(
                    await self._js.pull_subscribe_bind(durable=durable.name, stream=self.stream)
                )
            # The live subscription is registered on the server once start returns.
            await self._nc.flush(timeout=max(1, math.ceil(self.publish_timeout)))
        except _TRANSIENT as exc:
            await self._abort()
            raise Unavailable(
                f"NATS JetStream at {redact_url(self.url)} is not available: "
                f"{exc.__class__.__name__}: {exc}"
            ) from exc
        except BaseException:
            await self._abort()
            raise
        self.durables = plan
        for durable, pull in zip(plan, self._pulls, strict=True):
            self._workers.append(
                asyncio.create_task(self._consume(durable, pull), name=f"nats:{durable.name}")
            )

    async def close(self) -> None:
        """Stop the fetch loops (a handler in progress may finish, unprocessed messages
        of its batch are released for redelivery), then drain and close the connection."""
        self._stopping = True
        if self._workers:
            _, pending = await asyncio.wait(
                self._workers, timeout=self.fetch_timeout + self.close_timeout
            )
            for task in pending:
                task.cancel()
            for task in self._workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._workers.clear()
        nc = self._nc
        if nc is not None and nc.is_connected:
            for pull in self._pulls:
                with contextlib.suppress(Exception):
                    await pull.unsubscribe()
            try:
                await asyncio.wait_for(nc.drain(), timeout=5.0)
            except Exception:  # noqa: BLE001 - closing anyway
                log.debug("NATS drain did not finish; closing", exc_info=True)
        await self._abort()

    async def _abort(self) -> None:
        nc = self._nc
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
        self._nc = None
        self._js = None
        self._live = None
        self._pulls = []
        self.durables = []
        self._loop = None

    async def backlog(self, consumer: Consumer) -> int | None:
        """Messages of ``consumer``'s durables not yet acknowledged: waiting to be
        delivered or delivered and in hand. None when the server does not answer within
        two seconds or no worker has created the durables yet."""
        js = self._js
        if js is None:
            return None
        total, known = 0, False
        for durable in plan_durables([consumer]):
            try:
                info = await asyncio.wait_for(
                    js.consumer_info(self.stream, durable.name), timeout=2.0
                )
            except nats.js.errors.NotFoundError:
                continue
            except Exception:  # noqa: BLE001 - unknown is the answer to any failure
                return None
            total += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            known = True
        return total if known else None

    async def ready(self) -> bool:
        """Connected, and the stream answers within two seconds."""
        nc, js = self._nc, self._js
        if nc is None or js is None or not nc.is_connected:
            return False
        try:
            await asyncio.wait_for(js.stream_info(self.stream), timeout=2.0)
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False
        return True

    # -- connection ---------------------------------------------------------------------

    async def _connect(self) -> Client:
        nc = Client()
        options: dict[str, Any] = {
            "servers": [s.strip() for s in self.url.split(",") if s.strip()],
            "name": self.connection_name,
            "connect_timeout": min(2.0, self.connect_timeout),
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": self.reconnect_wait,
            "drain_timeout": 5,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if _HAS_RECONNECT_HANDLER:
            options["reconnect_to_server_handler"] = self._next_server
        try:
            await asyncio.wait_for(nc.connect(**options), timeout=self.connect_timeout)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            if isinstance(exc, (TimeoutError, OSError, nats.errors.Error)):
                raise Unavailable(
                    f"NATS at {redact_url(self.url)} is not reachable "
                    f"within {self.connect_timeout:g} s"
                ) from exc
            raise
        return nc

    def _next_server(self, servers: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
        """Reconnect policy: the least-failed server, after an exponential, jittered wait
        (immediately on the first attempt), so that workers do not reconnect in step."""
        server = min(servers, key=lambda s: s.reconnects)
        failures = int(server.reconnects)
        if failures == 0:
            return server, 0.0
        delay = min(self.max_reconnect_wait, self.reconnect_wait * 2 ** (failures - 1))
        return server, delay * random.uniform(0.5, 1.0)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS (%s): %s: %s", redact_url(self.url), exc.__class__.__name__, exc)

    async def _on_disconnected(self) -> None:
        # Failed first attempts also land here; only a lost connection is news.
        if self._nc is not None and not self._stopping:
            log.warning("NATS (%s): disconnected; reconnecting", redact_url(self.url))

    async def _on_reconnected(self) -> None:
        log.info("NATS (%s): reconnected", redact_url(self.url))

    # -- stream and durables ------------------------------------------------------------

    def _stream_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.stream,
            description="anwang events",
            subjects=[self.subject(ROOT_PATTERN)],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            duplicate_window=self.duplicate_window,
            num_replicas=self.replicas,
        )

    async def _ensure_stream(self) -> None:
        assert self._js is not None
        js = self._js
        want = self._stream_config()
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(config=want)
                log.info("created JetStream stream %s on %s", self.stream, want.subjects)
                return
            except nats.js.errors.BadRequestError:
                # Another process created it in the meantime; check its configuration.
                info = await js.stream_info(self.stream)
        have = info.config
        changes: dict[str, Any] = {}
        subjects = list(have.subjects or [])
        missing = [s for s in want.subjects or [] if s not in subjects]
        if missing:
            changes["subjects"] = subjects + missing
        if not _close_enough(have.max_age, self.max_age):
            changes["max_age"] = self.max_age
        if not _close_enough(have.duplicate_window, self.duplicate_window):
            changes["duplicate_window"] = self.duplicate_window
        if (have.max_bytes if have.max_bytes is not None else -1) != self.max_bytes:
            changes["max_bytes"] = self.max_bytes
        for field, wanted in (
            ("storage", want.storage),
            ("retention", want.retention),
            ("num_replicas", want.num_replicas),
        ):
            if getattr(have, field) != wanted:
                log.warning(
                    "stream %s has %s=%s, not %s; that cannot change in place",
                    self.stream,
                    field,
                    getattr(have, field),
                    wanted,
                )
        if changes:
            await js.update_stream(config=dataclasses.replace(have, **changes))
            log.info("updated JetStream stream %s: %s", self.stream, sorted(changes))

    def _consumer_config(self, durable: Durable) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=durable.name,
            durable_name=durable.name,
            description=f"anwang consumer {durable.consumer.name} on {durable.pattern}",
            deliver_policy=(
                api.DeliverPolicy.ALL if self.new_consumers_from == "all" else api.DeliverPolicy.NEW
            ),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # Unlimited: deliveries to workers that were killed count too, so a limit
            # here would drop messages that never failed. _failed bounds the attempts
            # of an event whose handler keeps failing.
            max_deliver=UNLIMITED_DELIVERIES,
            filter_subject=self.subject(durable.pattern),
        )

    async def _ensure_durable(self, durable: Durable) -> None:
        assert self._js is not None
        js = self._js
        want = self._consumer_config(durable)
        try:
            info = await js.consumer_info(self.stream, durable.name)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(self.stream, config=want)
            log.info("created durable %s on %s", durable.name, want.filter_subject)
            return
        have = info.config
        if have.deliver_subject:
            raise RuntimeError(
                f"durable {durable.name!r} on stream {self.stream} is a push consumer; "
                "delete it so that it can be recreated as a pull consumer"
            )
        if (
            have.filter_subject == want.filter_subject
            and have.max_deliver == want.max_deliver
            and have.ack_policy == want.ack_policy
            and _close_enough(have.ack_wait, self.ack_wait)
        ):
            return
        update = dataclasses.replace(
            have,
            name=durable.name,
            durable_name=durable.name,
            description=want.description,
            ack_policy=want.ack_policy,
            ack_wait=want.ack_wait,
            max_deliver=want.max_deliver,
            filter_subject=want.filter_subject,
        )
        try:
            await js.add_consumer(self.stream, config=update)
        except nats.js.errors.APIError as exc:
            raise RuntimeError(
                f"durable {durable.name!r} on stream {self.stream} cannot be changed to "
                f"{want.filter_subject} / max_deliver={want.max_deliver} "
                f"/ ack_wait={want.ack_wait:g}s: {exc}; delete it to recreate it"
            ) from exc
        log.info("updated durable %s", durable.name)

    # -- publishing and listeners -------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Store ``event`` in the stream; returns after the server acknowledged it.

        Raises :class:`~anwang.core.errors.Unavailable` when the bus is not started or the
        server does not acknowledge within ``publish_timeout``. Retrying is safe: the
        event id is the message id, so the stream keeps one copy.
        """
        js = self._js
        if js is None:
            raise Unavailable("the event bus is not started")
        try:
            ack = await js.publish(
                self.subject(event.name),
                event.to_json(),
                timeout=self.publish_timeout,
                stream=self.stream,
                headers={"Nats-Msg-Id": event.id},
            )
        except _TRANSIENT as exc:
            raise Unavailable(
                f"the event bus did not accept {event.name}: {exc.__class__.__name__}"
            ) from exc
        if ack.duplicate:
            log.debug("event %s was already in stream %s", event.id, self.stream)

    def add_listener(self, pattern: str, listener: Listener) -> Callable[[], None]:
        return self.listeners.add(pattern, listener)

    async def _on_live(self, msg: Msg) -> None:
        try:
            event = Event.from_json(msg.data)
        except ValueError:
            log.debug("ignoring a live message on %s that is not an event", msg.subject)
            return
        if msg.subject != self.subject(event.name) or event.id in self._recent:
            return
        self._recent[event.id] = None
        if len(self._recent) > self.live_dedupe_size:
            self._recent.popitem(last=False)
        await self.listeners.dispatch(event)

    # -- consuming ----------------------------------------------------------------------

    async def _consume(self, durable: Durable, pull: JetStreamContext.PullSubscription) -> None:
        """The fetch loop of one durable in this process; ends when ``close`` is called."""
        failures = 0
        while not self._stopping:
            try:
                msgs = await pull.fetch(self.fetch_batch, timeout=self.fetch_timeout)
            except TimeoutError:
                failures = 0
                continue
            except Exception as exc:  # noqa: BLE001 - keep consuming through outages
                failures += 1
                log.warning(
                    "fetch for durable %s failed (%s: %s); retrying",
                    durable.name,
                    exc.__class__.__name__,
                    exc,
                )
                await self._pause(min(5.0, 0.1 * 2**failures))
                if isinstance(exc, nats.js.errors.APIError) and not self._stopping:
                    # The durable may have been deleted behind our back: recreate it.
                    with contextlib.suppress(Exception):
                        await self._ensure_durable(durable)
                continue
            failures = 0
            for i, msg in enumerate(msgs):
                if self._stopping:
                    for rest in msgs[i:]:
                        await _settle(rest.nak(), "nak")
                    return
                await self._process(durable, msg, msgs[i + 1 :])

    async def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, seconds))

    async def _process(self, durable: Durable, msg: Msg, waiting: Sequence[Msg]) -> None:
        try:
            event = Event.from_json(msg.data)
        except ValueError as exc:
            log.warning(
                "durable %s: terminating a message on %s that is not an event: %s",
                durable.name,
                msg.subject,
                str(exc).splitlines()[0],
            )
            await _settle(msg.term(), "term")
            return
        if msg.subject != self.subject(event.name):
            log.warning(
                "durable %s: terminating event %s named %s that arrived on %s",
                durable.name,
                event.id,
                event.name,
                msg.subject,
            )
            await _settle(msg.term(), "term")
            return

        work = asyncio.ensure_future(
            asyncio.to_thread(handle_once, self.db, durable.consumer, event)
        )
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=self.ack_wait / 3)
                if done:
                    break
                # Still working: keep this message and the rest of its batch ours.
                for m in (msg, *waiting):
                    await _settle(m.in_progress(), "in_progress")
            work.result()
        except asyncio.CancelledError:
            work.add_done_callback(_discard_result)
            raise
        except Exception as exc:  # noqa: BLE001 - the handler's failure is reported here
            await self._failed(durable, msg, event, exc)
            return
        await _settle(msg.ack(), "ack")

    async def _failed(self, durable: Durable, msg: Msg, event: Event, exc: Exception) -> None:
        consumer = durable.consumer
        try:
            attempt = int(msg.metadata.num_delivered)
        except Exception:  # noqa: BLE001 - metadata is best-effort here
            attempt = 1
        transient = is_transient(exc)
        if attempt >= consumer.max_deliver and not transient:
            log.error(
                "consumer %s gave up on event %s (%s) after %d attempts",
                consumer.name,
                event.id,
                event.name,
                attempt,
                exc_info=exc,
            )
            try:
                await asyncio.to_thread(record_dead, self.db, consumer, event, exc,
                                        attempts=attempt)
            except Exception:  # noqa: BLE001 - not kept yet: keep the message instead
                log.exception("could not keep dead event %s; redelivering it", event.id)
                await _settle(msg.nak(delay=self.max_retry_delay), "nak")
                return
            self.dead.append((consumer.name, event))
            await _settle(msg.term(), "term")
            return
        delay = min(self.max_retry_delay, self.retry_delay * 2 ** min(attempt - 1, 30))
        log.warning(
            "consumer %s failed on event %s (%s), attempt %d/%d%s; retrying in %.2f s",
            consumer.name,
            event.id,
            event.name,
            attempt,
            consumer.max_deliver,
            " (transient: retried until it succeeds)" if transient else "",
            delay,
            exc_info=exc,
        )
        await _settle(msg.nak(delay=delay), "nak")


def _close_enough(have: float | None, want: float) -> bool:
    return have is not None and abs(have - want) < 1e-3


async def _settle(ack: Awaitable[None], what: str) -> None:
    """Send an ack/nak/term/progress; a failure only delays redelivery, so log it."""
    try:
        await ack
    except Exception as exc:  # noqa: BLE001 - the server redelivers after ack_wait
        log.warning("could not %s a message: %s: %s", what, exc.__class__.__name__, exc)


def _discard_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


__all__ = ["Durable", "NatsBus", "plan_durables"]
