"""Admission control: shed load at the edge instead of queueing it without bound.

When more arrives than the process and the storage behind it can take, the cheapest
place to say "not now" is before anything is read or written. An ingestion endpoint
(``POST /api/v1/reads``) has three gates, in the order a request meets them:

1. **Backlog** (:class:`BacklogGate`, in :class:`IngestAdmission` before the body is
   read): while the events the API has published and the workers have not yet handled
   — plus those it could not publish (the outbox) — exceed ``limit``, every request is
   503 ``anwang.ingest.backlog`` with ``Retry-After``, until the backlog is down to half
   the limit (so that the answer does not flap at the line). The backlog is probed at
   most once per ``ttl`` seconds per process, by one request while the others use the
   last answer; a probe that cannot tell (NATS not answering) does not shed.
2. **In flight** (:class:`IngestAdmission`, before the body is read): at most
   ``max_in_flight`` such requests are handled at once per process; one more is 503
   ``anwang.ingest.busy`` with ``Retry-After: 1``. This is what bounds the memory of a
   process under any load: bodies are read only by admitted requests.
3. **Per device key** (:class:`TokenBuckets`, called by the route once the key is
   authenticated and the body parsed): each key has a bucket of ``capacity`` reads
   refilled at ``rate`` reads per second; a batch it cannot pay for is 429
   ``anwang.ingest.rate_limited`` with ``Retry-After`` = the seconds until it can. A
   batch larger than the bucket is admitted when the bucket is full (and empties it
   below zero), so that no batch size is refused for ever.

Everything refused is refused before a transaction starts: nothing is half-written,
and retrying the same batch later is safe (reads are idempotent on their ids). Limits
are per process, like the login limit; behind a proxy with N API processes a key may
post N times its rate.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from anwang.web.limits import send_problem

#: ``Retry-After`` of a request refused because too many are in flight.
BUSY_RETRY_AFTER_S = 1
#: ``Retry-After`` of a request refused because the backlog is over its limit.
BACKLOG_RETRY_AFTER_S = 5

Probe = Callable[[], Awaitable[int | None]]


class TokenBuckets:
    """A token bucket per key: ``capacity`` tokens, refilled at ``rate`` per second.

    Thread-safe (routes run in worker threads). At most ``max_keys`` buckets are kept;
    beyond that the full ones are forgotten first (a full bucket is the same as none).
    """

    def __init__(
        self,
        *,
        rate: float,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be positive and capacity at least 1")
        self.rate = rate
        self.capacity = float(capacity)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def take(self, key: str, n: int) -> float | None:
        """Take ``n`` tokens from ``key``'s bucket: None when granted, else the seconds
        until a batch of ``n`` would be (nothing is taken then)."""
        now = self.clock()
        with self._lock:
            tokens = self._level(key, now)
            need = min(float(n), self.capacity)
            if tokens < need:
                return (need - tokens) / self.rate
            if key not in self._buckets and len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            self._buckets[key] = (tokens - n, now)
            return None

    def _forget_full(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) >= self.capacity]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # all busy: forget the oldest half
            for key in list(self._buckets)[: self.max_keys // 2]:
                del self._buckets[key]


class BacklogGate:
    """Whether to shed because of the backlog (see the module docstring).

    ``probe`` returns the backlog in events, or None when it cannot tell. ``limit`` 0
    turns the gate off.
    """

    def __init__(
        self,
        *,
        limit: int,
        probe: Probe,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.probe = probe
        self.ttl = ttl
        self.clock = clock
        #: The last backlog measured (None: unknown or never measured).
        self.last: int | None = None
        self._shedding = False
        self._checked = -math.inf
        self._lock: asyncio.Lock | None = None

    async def shedding(self) -> bool:
        if self.limit <= 0:
            return False
        if self.clock() - self._checked >= self.ttl:
            if self._lock is None:
                self._lock = asyncio.Lock()
            if not self._lock.locked():
                async with self._lock:
                    await self._measure()
        return self._shedding

    async def _measure(self) -> None:
        try:
            value = await self.probe()
        except Exception:  # noqa: BLE001 - a failed probe must not fail the request
            value = None
        self._checked = self.clock()
        self.last = value
        if value is None:
            self._shedding = False
        elif value > self.limit:
            self._shedding = True
        elif value <= self.limit // 2:
            self._shedding = False


class IngestAdmission:
    """ASGI middleware: the backlog and in-flight gates of ``POST <path>``.

    Add it outside :class:`~anwang.web.limits.RequestGuard`, so that a refused request's
    body is never read.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        max_in_flight: int,
        backlog: BacklogGate | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.app = app
        self.path = path
        self.max_in_flight = max_in_flight
        self.backlog = backlog
        #: Requests of ``path`` being handled now (read by tests and benchmarks).
        self.in_flight = 0
        #: Requests refused so far, by problem code.
        self.refused: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") != self.path
        ):
            await self.app(scope, receive, send)
            return
        if self.backlog is not None and await self.backlog.shedding():
            await self._refuse(
                send, "anwang.ingest.backlog", "Backlog too long, retry later",
                f"{self.backlog.last} events are waiting to be stored (limit "
                f"{self.backlog.limit}); retry after {BACKLOG_RETRY_AFTER_S} s",
                BACKLOG_RETRY_AFTER_S,
            )
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(
                send, "anwang.ingest.busy", "Too many requests in progress, retry later",
                f"this process is handling {self.in_flight} ingestion requests (limit "
                f"{self.max_in_flight}); retry after {BUSY_RETRY_AFTER_S} s",
                BUSY_RETRY_AFTER_S,
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(
        self, send: Send, code: str, title: str, detail: str, retry_after: int
    ) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1
        await send_problem(
            send, 503, code, title, detail, headers={"Retry-After": str(retry_after)}
        )
