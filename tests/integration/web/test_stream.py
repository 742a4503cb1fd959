"""``GET /api/v1/stream`` end to end on the app's real in-process bus.

The stream never ends, and test clients that buffer a whole response cannot read it, so
these tests speak ASGI to the app directly: the app's lifespan and the streams run on
the test's own event loop, the test reads body chunks as they are sent and ends a
stream with ``http.disconnect``, as a server does when a browser goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from anwang.auth import service
from anwang.core.db import Database
from anwang.core.events import SYSTEM_NOTICE, Audience, Event
from anwang.web.stream import get_hub

TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """Run the app's lifespan (bus start and stop) on this loop."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), TIMEOUT)
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), TIMEOUT)
        await asyncio.wait_for(task, TIMEOUT)


class Stream:
    """One open ``GET`` on the app, read chunk by chunk."""

    def __init__(self, app: FastAPI, path: str, *, cookie: str | None = None,
                 query: str = "") -> None:
        headers = [(b"host", b"testserver"), (b"accept", b"text/event-stream")]
        if cookie:
            headers.append((b"cookie", f"anwang_session={cookie}".encode()))
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {},
        }
        self.app = app
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._asked = False
        self.buffer = ""
        self.status: int | None = None
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def __aenter__(self) -> Stream:
        self.task = asyncio.create_task(self.app(self.scope, self._receive, self.sent.put))
        start = await asyncio.wait_for(self.sent.get(), TIMEOUT)
        assert start["type"] == "http.response.start"
        self.status = start["status"]
        return self

    async def read_until(self, text: str, timeout: float = TIMEOUT) -> str:
        """Read until ``text`` has arrived; returns everything read so far."""
        async def pump() -> None:
            while text not in self.buffer:
                msg = await self.sent.get()
                self.buffer += msg.get("body", b"").decode()
                if not msg.get("more_body", False):
                    raise AssertionError(f"the stream ended before {text!r}: {self.buffer}")
        await asyncio.wait_for(pump(), timeout)
        return self.buffer

    async def __aexit__(self, *exc: object) -> None:
        self._gone.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, TIMEOUT)


def session_cookie(db: Database, username: str) -> str:
    with db.unit_of_work() as s:
        user = service.get_user(s, username=username)
        token, _ = service.start_session(s, user=user, kind="web")
    return token


def frames(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
        if "data" in fields:
            out.append(fields)
    return out


def notice(jurisdiction: str | None, text: str, **kw: Any) -> Event:
    return Event(name=SYSTEM_NOTICE, audience=Audience(jurisdiction=jurisdiction, **kw),
                 payload={"message": text, "lat": 31.76, "lon": 119.9})


async def test_an_event_reaches_the_dispatcher_of_its_district_only(
    app: FastAPI, db: Database
) -> None:
    west, east = session_cookie(db, "west.dispatcher"), session_cookie(db, "east.dispatcher")
    bus = app.state.anwang.bus
    async with running(app):
        async with Stream(app, "/api/v1/stream", cookie=west) as w, \
                Stream(app, "/api/v1/stream", cookie=east, query="typed=false") as e:
            assert w.status == e.status == 200
            # Both are registered once their first frame (the retry hint) has arrived.
            await w.read_until("anwang live stream")
            await e.read_until("anwang live stream")
            assert len(get_hub(app.state.anwang).clients) == 2

            west_only = notice("320101", "西门派出所辖区内有情况")
            await bus.publish(west_only)
            everyone = notice(None, "全市通知")
            await bus.publish(everyone)

            got_w = frames(await w.read_until(everyone.id))
            got_e = frames(await e.read_until(everyone.id))
            assert [f["id"] for f in got_w] == [west_only.id, everyone.id]
            assert got_w[0]["event"] == SYSTEM_NOTICE
            assert Event.from_json(got_w[0]["data"]) == west_only
            # The east dispatcher got the city-wide notice, which was published after the
            # west one: so the west one was filtered out, not merely late.
            assert [f["id"] for f in got_e] == [everyone.id]
            assert "event" not in got_e[0]  # typed=false: plain "message" events
            assert json.loads(got_e[0]["data"])["payload"]["message"] == "全市通知"

        # Disconnected clients are gone, and so is the hub's bus listener.
        assert get_hub(app.state.anwang).clients == ()
        assert app.state.anwang.bus.listeners._items == []


async def test_role_audience_and_name_filter(app: FastAPI, db: Database) -> None:
    commander = session_cookie(db, "city.commander")
    bus = app.state.anwang.bus
    async with running(app), Stream(app, "/api/v1/stream", cookie=commander,
                                    query="names=anwang.system.>") as s:
        await s.read_until("anwang live stream")
        await bus.publish(notice(None, "for dispatchers", roles=("dispatcher",)))
        await bus.publish(Event(name="anwang.alerts.alert.raised", payload={}))
        last = notice("3202", "for commanders", roles=("commander", "dispatcher"))
        await bus.publish(last)
        got = frames(await s.read_until(last.id))
        assert [f["id"] for f in got] == [last.id]


async def test_publishing_from_a_worker_thread_after_a_commit(app: FastAPI, db: Database) -> None:
    west = session_cookie(db, "west.dispatcher")
    bus = app.state.anwang.bus
    async with running(app), Stream(app, "/api/v1/stream", cookie=west) as s:
        await s.read_until("anwang live stream")
        ev = notice("3201", "from a thread")
        await asyncio.to_thread(bus.publish_threadsafe, ev)
        assert ev.id in await s.read_until(ev.id)


async def test_the_stream_ends_when_its_session_does(
    app: FastAPI, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("anwang.web.stream.REVALIDATE_SECONDS", 0.2)
    west = session_cookie(db, "west.dispatcher")
    async with running(app), Stream(app, "/api/v1/stream", cookie=west) as s:
        await s.read_until("anwang live stream")
        await asyncio.sleep(0.5)  # re-checked at least once, and still open
        assert s.task is not None and not s.task.done()
        with db.unit_of_work() as ses:
            user = service.get_user(ses, username="west.dispatcher")
            service.set_role(ses, username=user.username, role="auditor", actor="test")
        # Auditors may not read the stream: it ends on the next check.
        with pytest.raises(AssertionError, match="the stream ended"):
            await s.read_until("never arrives", timeout=3)
        assert get_hub(app.state.anwang).clients == ()


@pytest.mark.parametrize(("user", "status"), [(None, 401), ("the.auditor", 403)])
def test_the_stream_needs_stream_read(
    client: TestClient, db: Database, user: str | None, status: int
) -> None:
    if user:
        client.cookies.set("anwang_session", session_cookie(db, user))
    r = client.get("/api/v1/stream")
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"


def test_bad_name_patterns_are_422(client: TestClient, db: Database) -> None:
    client.cookies.set("anwang_session", session_cookie(db, "west.dispatcher"))
    r = client.get("/api/v1/stream", params={"names": "anwang..x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "names"
