"""The admission gates on their own: token buckets, the backlog gate's hysteresis and
caching, and the in-flight middleware's 503 before the body is read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from anwang.core.bus import is_transient
from anwang.core.errors import Unavailable
from anwang.web.admission import BacklogGate, IngestAdmission, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_bucket_grants_its_capacity_then_refills_at_its_rate() -> None:
    clock = Clock()
    b = TokenBuckets(rate=10, capacity=100, clock=clock)
    assert b.take("k", 60) is None
    assert b.take("k", 40) is None
    wait = b.take("k", 20)
    assert wait == pytest.approx(2.0)
    assert b.take("other", 100) is None  # keys are independent
    clock.t += 1.0
    assert b.take("k", 20) == pytest.approx(1.0)  # a refusal takes nothing
    clock.t += 1.0
    assert b.take("k", 20) is None
    assert b.take("k", 1) == pytest.approx(0.1)


def test_a_batch_larger_than_the_bucket_passes_when_the_bucket_is_full() -> None:
    clock = Clock()
    b = TokenBuckets(rate=10, capacity=100, clock=clock)
    assert b.take("k", 500) is None  # never refused for ever
    assert b.take("k", 1) == pytest.approx(40.1)  # but the debt is paid off first
    clock.t += 50
    assert b.take("k", 500) is None  # full again after 50 s


def test_buckets_are_bounded_in_number() -> None:
    clock = Clock()
    b = TokenBuckets(rate=1, capacity=10, clock=clock, max_keys=4)
    for k in range(10):
        assert b.take(f"k{k}", 5) is None
        assert len(b._buckets) <= 4


async def test_the_backlog_gate_sheds_above_the_limit_until_half_is_left() -> None:
    clock = Clock()
    values: list[int | None] = [0, 11, 8, 6, 5, None]
    probes = 0

    async def probe() -> int | None:
        nonlocal probes
        probes += 1
        return values.pop(0)

    gate = BacklogGate(limit=10, probe=probe, ttl=1.0, clock=clock)
    seen = []
    for _ in range(6):
        seen.append(await gate.shedding())
        assert await gate.shedding() == seen[-1]  # cached within the ttl
        clock.t += 1.0
    assert seen == [False, True, True, True, False, False]
    assert probes == 6


async def test_the_backlog_gate_probes_once_for_concurrent_requests() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    probes = 0

    async def probe() -> int:
        nonlocal probes
        probes += 1
        started.set()
        await release.wait()
        return 50

    gate = BacklogGate(limit=10, probe=probe)
    first = asyncio.create_task(gate.shedding())
    await started.wait()
    assert [await gate.shedding() for _ in range(5)] == [False] * 5  # the last answer
    release.set()
    assert await first is True
    assert probes == 1


async def test_a_failing_probe_does_not_shed() -> None:
    async def probe() -> int:
        raise RuntimeError("no answer")

    assert await BacklogGate(limit=1, probe=probe).shedding() is False


async def call(app: Any, method: str = "POST", path: str = "/api/v1/reads") -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    read_body = False

    async def receive() -> dict[str, Any]:
        nonlocal read_body
        read_body = True
        return {"type": "http.request", "body": b"[]", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    start = sent[0]
    return {"status": start["status"], "headers": dict(start["headers"]),
            "body": b"".join(m.get("body", b"") for m in sent[1:]), "read_body": read_body}


async def test_requests_beyond_the_in_flight_limit_get_503_before_their_body_is_read() -> None:
    release = asyncio.Event()
    entered = 0

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        nonlocal entered
        entered += 1
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = IngestAdmission(slow, path="/api/v1/reads", max_in_flight=2)
    held = [asyncio.create_task(call(guard)) for _ in range(2)]
    while entered < 2:
        await asyncio.sleep(0)
    refused = await call(guard)
    assert refused["status"] == 503 and not refused["read_body"]
    assert refused["headers"][b"retry-after"] == b"1"
    assert refused["headers"][b"content-type"] == b"application/problem+json"
    assert json.loads(refused["body"])["code"] == "anwang.ingest.busy"
    other = asyncio.create_task(call(guard, path="/api/v1/checkpoints"))  # not limited
    await asyncio.sleep(0)
    assert entered == 3
    release.set()
    assert [r["status"] for r in await asyncio.gather(*held, other)] == [200, 200, 200]
    assert guard.in_flight == 0 and guard.refused == {"anwang.ingest.busy": 1}
    assert (await call(guard))["status"] == 200


async def test_a_long_backlog_gets_503_with_retry_after() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("must not be reached")

    async def probe() -> int:
        return 3

    guard = IngestAdmission(app, path="/api/v1/reads", max_in_flight=5,
                            backlog=BacklogGate(limit=2, probe=probe))
    refused = await call(guard)
    assert refused["status"] == 503 and not refused["read_body"]
    assert refused["headers"][b"retry-after"] == b"5"
    problem = json.loads(refused["body"])
    assert problem["code"] == "anwang.ingest.backlog" and "3 events" in problem["detail"]


def test_infrastructure_failures_are_transient_and_handler_bugs_are_not() -> None:
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    class PgError(Exception):
        def __init__(self, sqlstate: str | None) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    assert is_transient(Unavailable("bus down"))
    assert is_transient(TimeoutError())
    assert is_transient(OperationalError("x", {}, PgError("40P01")))  # deadlock
    assert is_transient(OperationalError("x", {}, PgError("40001")))  # serialisation
    assert is_transient(OperationalError("x", {}, PgError("57P01")))  # admin shutdown
    assert is_transient(OperationalError("x", {}, PgError(None)))  # no connection
    assert is_transient(OperationalError("x", {}, sqlite3.OperationalError(
        "database is locked")))
    assert not is_transient(OperationalError("x", {}, sqlite3.OperationalError(
        "no such table: plate_reads")))
    assert not is_transient(ProgrammingError("x", {}, PgError("42P01")))
    assert not is_transient(IntegrityError("x", {}, PgError("23505")))
    assert not is_transient(ValueError("bad payload"))
