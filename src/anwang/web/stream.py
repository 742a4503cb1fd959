"""The live event stream: ``GET /api/v1/stream`` (Server-Sent Events), filtered per user.

One :class:`StreamHub` per app listens to every ``anwang.>`` event this process sees
(``bus.add_listener``; attached while at least one client is connected) and fans each
event out to the connected clients that may see it:

* the event's ``audience.roles`` is empty or holds the client's role, and
* the client's scope overlaps ``audience.jurisdiction`` (:meth:`Scope.overlaps`: a
  district user sees events of their district, of its stations and grids, and
  city-wide ones; not another district's), and
* the event's name matches one of the client's ``?names=`` patterns, if it gave any.

Each client has a bounded queue; when a slow client's queue is full the oldest frame is
dropped (and counted) so that one stuck browser can never hold memory or slow the
others. An event is serialised once, however many clients receive it: the frame bytes
are built on first use and shared (the fan-out benchmark runs 200 clients).

Frames are ``id: <event id>``, ``event: <event name>``, ``data: <event JSON>``. Browsers'
``EventSource`` has no wildcard listener for named events, so ``?typed=false`` leaves
out the ``event:`` line and every event arrives as a plain ``message`` (the dashboard's
``static/js/feed.js`` uses that). A comment line is sent every 15 s to keep proxies from
closing the connection.

While a stream is open the credentials behind it are checked again every
:data:`REVALIDATE_SECONDS`: a session that was signed out, expired or deactivated, or a
role that lost ``stream.read``, ends the stream; a changed role or jurisdiction applies
to the open stream. (Because the check uses the session, an open dashboard counts as
activity for the session's idle limit.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from anwang.auth import service as auth_service
from anwang.auth.deps import (
    SESSION_COOKIE,
    Principal,
    apikey_principal,
    require,
    user_principal,
)
from anwang.auth.permissions import Action
from anwang.core.bus import Bus
from anwang.core.errors import NotAuthenticated, ValidationFailed
from anwang.core.events import Event, subject_matches
from anwang.core.scope import Scope
from anwang.state import AppState

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])

#: Frames a client may have waiting before the oldest is dropped.
CLIENT_QUEUE_SIZE = 256
PING_SECONDS = 15
#: How often an open stream re-checks the credentials it was opened with.
REVALIDATE_SECONDS = 60.0
#: A send that takes longer than this (a client that stopped reading) ends the stream.
SEND_TIMEOUT_SECONDS = 30.0
#: What the browser waits before reconnecting after the connection drops (ms).
RETRY_MS = 3000
MAX_NAME_PATTERNS = 20
#: Frames waiting in a client's queue are sent together, up to this many per write.
MAX_BATCH = 64
_PATTERN = re.compile(r"^(?:[a-z0-9_]+|\*)(?:\.(?:[a-z0-9_]+|\*))*(?:\.>)?$|^>$")


class _Frames:
    """The SSE frames of one event, built once on first use and shared by all clients."""

    __slots__ = ("_data", "_event", "_typed", "_untyped")

    def __init__(self, event: Event) -> None:
        self._event = event
        self._data: str | None = None
        self._typed: bytes | None = None
        self._untyped: bytes | None = None

    def _json(self) -> str:
        if self._data is None:
            # Event JSON never holds a raw newline (JSON escapes them), so one data line.
            self._data = self._event.model_dump_json()
        return self._data

    def get(self, typed: bool) -> bytes:
        if typed:
            if self._typed is None:
                e = self._event
                self._typed = f"id: {e.id}\nevent: {e.name}\ndata: {self._json()}\n\n".encode()
            return self._typed
        if self._untyped is None:
            self._untyped = f"id: {self._event.id}\ndata: {self._json()}\n\n".encode()
        return self._untyped


@dataclass(eq=False)
class StreamClient:
    """One connected stream: who it is for, what it asked for, and its queue."""

    role: str
    scope: Scope
    patterns: tuple[str, ...] = ()
    typed: bool = True
    queue: asyncio.Queue[bytes] = field(
        default_factory=lambda: asyncio.Queue(maxsize=CLIENT_QUEUE_SIZE)
    )
    #: Frames dropped because this client fell behind.
    dropped: int = 0
    delivered: int = 0

    def wants(self, event: Event) -> bool:
        audience = event.audience
        if audience.roles and self.role not in audience.roles:
            return False
        if not self.scope.overlaps(audience.jurisdiction):
            return False
        return not self.patterns or any(subject_matches(p, event.name) for p in self.patterns)

    def offer(self, frame: bytes) -> None:
        """Queue ``frame``; a full queue loses its oldest frame (never blocks)."""
        q = self.queue
        if q.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()
            self.dropped += 1
        q.put_nowait(frame)
        self.delivered += 1


class StreamHub:
    """The fan-out from the bus to the connected streams of this process.

    Usable without HTTP or a bus (tests, the benchmark): call :meth:`register` and
    :meth:`publish` directly. Given a ``bus``, the hub listens to it while it has
    clients. All methods run on the event loop; :meth:`publish` called from another
    thread hands the event over to the loop.
    """

    def __init__(self, bus: Bus | None = None, *, queue_size: int = CLIENT_QUEUE_SIZE) -> None:
        self.bus = bus
        self.queue_size = queue_size
        self._clients: list[StreamClient] = []
        self._detach: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Events seen and frames dropped over the hub's life (for metrics and tests).
        self.published = 0
        self.dropped = 0

    @property
    def clients(self) -> tuple[StreamClient, ...]:
        return tuple(self._clients)

    def register(
        self,
        principal: Principal | None = None,
        *,
        role: str | None = None,
        scope: Scope | None = None,
        patterns: Iterable[str] = (),
        typed: bool = True,
    ) -> StreamClient:
        """Add a client for ``principal`` (or for an explicit ``role`` and ``scope``)."""
        if principal is not None:
            role, scope = str(principal.role), principal.scope
        if role is None or scope is None:
            raise TypeError("register() needs a principal, or a role and a scope")
        client = StreamClient(
            role=str(role), scope=scope, patterns=tuple(patterns), typed=typed,
            queue=asyncio.Queue(maxsize=self.queue_size),
        )
        self._clients.append(client)
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        if self.bus is not None and self._detach is None:
            self._detach = self.bus.add_listener("anwang.>", self._listen)
        return client

    def unregister(self, client: StreamClient) -> None:
        with contextlib.suppress(ValueError):
            self._clients.remove(client)
        self.dropped += client.dropped
        if not self._clients and self._detach is not None:
            self._detach()
            self._detach = None

    def _listen(self, event: Event) -> None:
        self.publish(event)

    def publish(self, event: Event) -> int:
        """Queue ``event`` for every client that may see it; returns how many.

        Called by the bus for every event; must not block (it does not).
        """
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._deliver, event)
                return 0
        return self._deliver(event)

    def _deliver(self, event: Event) -> int:
        self.published += 1
        frames: _Frames | None = None
        n = 0
        for client in self._clients:
            if not client.wants(event):
                continue
            if frames is None:
                frames = _Frames(event)
            client.offer(frames.get(client.typed))
            n += 1
        return n


def get_hub(state: AppState) -> StreamHub:
    """The app's hub (made on first use, listening to the app's bus)."""
    hub = state.extras.get("stream_hub")
    if not isinstance(hub, StreamHub):
        hub = StreamHub(state.bus)
        state.extras["stream_hub"] = hub
    return hub


def parse_patterns(names: str | None) -> tuple[str, ...]:
    """``?names=anwang.alerts.>,anwang.system.*`` as NATS-style patterns (422 if bad)."""
    if not names:
        return ()
    patterns = tuple(p.strip() for p in names.split(",") if p.strip())
    if len(patterns) > MAX_NAME_PATTERNS:
        raise ValidationFailed.on("names", f"at most {MAX_NAME_PATTERNS} patterns")
    for p in patterns:
        if len(p) > 200 or not _PATTERN.fullmatch(p):
            raise ValidationFailed.on(
                "names",
                f"{p!r} is not a subject pattern: dot-separated tokens of a-z, 0-9, '_', "
                "a token '*' for any one token, and a last token '>' for the rest",
            )
    return patterns


def _recheck(state: AppState, request: Request) -> Principal:
    """The principal the stream's credentials stand for now (NotAuthenticated if none).

    Mirrors :mod:`anwang.auth.deps`: a bearer token (``ak_`` = API key) or the session
    cookie.
    """
    header = request.headers.get("authorization")
    token = header.partition(" ")[2].strip() if header else request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotAuthenticated("The stream's credentials are gone.")
    with state.db.unit_of_work(info={"scope": Scope(None)}) as session:
        if header and token.startswith("ak_"):
            return apikey_principal(auth_service.resolve_api_key(session, key=token))
        user, auth = auth_service.resolve_session(
            session, token=token, kind="api" if header else "web", settings=state.settings
        )
        return user_principal(user, auth)


async def _frames(
    request: Request,
    state: AppState,
    hub: StreamHub,
    principal: Principal,
    patterns: tuple[str, ...],
    typed: bool,
) -> AsyncIterator[bytes | ServerSentEvent]:
    # Registered here, not in the route: the generator's ``finally`` is then certain to
    # unregister whatever it registered, however the connection ends.
    client = hub.register(principal, patterns=patterns, typed=typed)
    try:
        yield ServerSentEvent(retry=RETRY_MS, comment="anwang live stream")
        next_check = time.monotonic() + REVALIDATE_SECONDS
        while True:
            try:
                frame: bytes | None = client.queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = max(0.0, next_check - time.monotonic())
                try:
                    frame = await asyncio.wait_for(client.queue.get(), timeout=timeout)
                except TimeoutError:
                    frame = None
            if frame is not None:
                # A burst goes out in one write instead of one per event.
                batch = [frame]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(client.queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                yield frame if len(batch) == 1 else b"".join(batch)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + REVALIDATE_SECONDS
                try:
                    current = await asyncio.to_thread(_recheck, state, request)
                except NotAuthenticated:
                    return
                except Exception:  # the database is away for a moment: try again later
                    log.warning("could not re-check a stream's session", exc_info=True)
                    continue
                if not current.can(Action.STREAM_READ):
                    return
                client.role, client.scope = str(current.role), current.scope
    finally:
        hub.unregister(client)
        if client.dropped:
            log.info("stream of a %s client dropped %d events", client.role, client.dropped)


StreamReader = Annotated[Principal, Depends(require(Action.STREAM_READ))]


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    principal: StreamReader,
    names: Annotated[
        str | None,
        Query(description="Comma-separated NATS-style patterns, e.g. anwang.alerts.>"),
    ] = None,
    typed: Annotated[
        bool,
        Query(description="false: no 'event:' line, so EventSource's onmessage gets all"),
    ] = True,
) -> EventSourceResponse:
    """Live events the caller may see, as Server-Sent Events (see the module docs)."""
    patterns = parse_patterns(names)
    state: AppState = request.app.state.anwang
    return EventSourceResponse(
        _frames(request, state, get_hub(state), principal, patterns, typed),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
