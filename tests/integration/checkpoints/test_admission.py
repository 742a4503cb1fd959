"""Admission control of ``POST /api/v1/reads`` through the whole app: a burst beyond the
in-flight limit is 503 with ``Retry-After`` and writes nothing, a key over its rate is
429, a long backlog is 503 until it has drained, and afterwards everything refused is
taken when sent again, stored once, and the outbox is empty."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.checkpoints import reads
from anwang.checkpoints.handlers import STORE_READS
from anwang.core import bus as bus_module
from anwang.core.bus import Consumer
from anwang.core.db import Database, OutboxEntry
from anwang.core.scope import Scope
from anwang.settings import Settings
from tests.integration.checkpoints.conftest import Kit, a_read, now


@pytest.fixture
def limits() -> dict[str, Any]:
    return {"ingest_max_in_flight": 2, "ingest_key_reads_per_s": 10.0,
            "ingest_key_burst_reads": 100, "ingest_max_backlog": 3}


@pytest.fixture
def app(settings: Settings, db: Database, limits: dict[str, Any]) -> FastAPI:
    return create_app(settings.model_copy(update=limits), db=db)


@pytest.fixture
def cams(kit: Kit) -> Kit:
    kit.add_checkpoint("W-01")
    return kit


def batch(n: int, plate_base: int = 10000) -> list[dict[str, Any]]:
    t = now() - timedelta(minutes=2)
    return [a_read(plate=f"苏D{plate_base + i:05d}", at=t) for i in range(n)]


def outbox_rows(db: Database) -> int:
    with db.unit_of_work(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(OutboxEntry)) or 0)


def assert_problem(r: Any, status: int, code: str, retry_after: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code
    assert "retry-after" in r.headers
    if retry_after is not None:
        assert r.headers["retry-after"] == retry_after


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[int]]]:
    """Ingestion waits on the event (in its checks, before it writes) until released."""
    release = threading.Event()
    entered: list[int] = []
    real = reads.check_reads

    def held(session: Any, **kw: Any) -> Any:
        entered.append(1)
        assert release.wait(30)
        return real(session, **kw)

    monkeypatch.setattr(reads, "check_reads", held)
    yield release, entered
    release.set()


def test_a_burst_beyond_the_in_flight_limit_is_503_and_writes_nothing(
    cams: Kit, gate: tuple[threading.Event, list[int]],
) -> None:
    release, entered = gate
    first, second, third = batch(5, 10000), batch(5, 20000), batch(5, 30000)
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(cams.post_reads, b) for b in (first, second)]
        deadline = time.monotonic() + 10
        while len(entered) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = cams.post_reads(third)
        assert_problem(refused, 503, "anwang.ingest.busy", retry_after="1")
        assert len(entered) == 2  # the refused request never reached ingestion
        release.set()
        assert [f.result().status_code for f in held] == [200, 200]
    cams.drain()
    assert cams.count_reads() == 10 and outbox_rows(cams.db) == 0

    again = cams.post_reads(third)  # the refused batch, sent again, is taken
    assert again.status_code == 200 and again.json()["accepted"] == 5
    cams.drain()
    assert cams.count_reads() == 15 and outbox_rows(cams.db) == 0


def test_a_key_over_its_rate_is_429_and_other_keys_are_not(cams: Kit) -> None:
    buckets_clock = [1000.0]
    assert cams.post_reads(batch(100)).status_code == 200  # the whole burst
    buckets = cams.client.app.state.anwang.extras["ingest_key_buckets"]  # type: ignore[attr-defined]
    buckets.clock = lambda: buckets_clock[0]
    buckets._buckets = {k: (tokens, buckets_clock[0]) for k, (tokens, _) in
                        buckets._buckets.items()}

    over = cams.post_reads(batch(20, 50000))
    assert_problem(over, 429, "anwang.ingest.rate_limited", retry_after="2")

    with cams.db.unit_of_work(info={"scope": Scope(None)}) as s:
        other_key, _ = auth_service.create_api_key(s, name="camera-2", role="device")
    other = cams.post_reads(batch(20, 60000), headers={"Authorization": f"Bearer {other_key}"})
    assert other.status_code == 200

    buckets_clock[0] += 2.0
    later = cams.post_reads(batch(20, 50000))
    assert later.status_code == 200 and later.json()["accepted"] == 20
    cams.drain()
    assert cams.count_reads() == 140 and outbox_rows(cams.db) == 0


def test_a_long_backlog_is_503_until_it_has_drained(
    cams: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = bus_module.handle_once

    def held(db: Database, consumer: Consumer, event: Any) -> bool:
        # Before the handler's transaction: SQLite has one writer.
        if consumer.name == STORE_READS.name:
            assert release.wait(30)
        return real(db, consumer, event)

    monkeypatch.setattr(bus_module, "handle_once", held)
    if cams.db.engine.dialect.name == "sqlite":
        # The embedded default stores in the request (reads.store_inline): no event, no
        # backlog, nothing for the gate to refuse — and nothing for the consumer to hold.
        for k in range(6):
            assert cams.post_reads(batch(2, 10000 + 100 * k)).status_code == 200
        assert cams.count_reads() == 12 and outbox_rows(cams.db) == 0
        return
    try:
        # One event in the consumer's hands, four waiting: more than the limit of 3.
        for k in range(5):
            assert cams.post_reads(batch(2, 10000 + 100 * k)).status_code == 200
        time.sleep(1.1)  # the gate probes the backlog at most once a second
        refused = cams.post_reads(batch(2, 70000))
        assert_problem(refused, 503, "anwang.ingest.backlog", retry_after="5")
        assert "events are waiting" in refused.json()["detail"]
    finally:
        release.set()
    cams.drain()
    time.sleep(1.1)
    assert cams.post_reads(batch(2, 70000)).status_code == 200
    cams.drain()
    assert cams.count_reads() == 12 and outbox_rows(cams.db) == 0
