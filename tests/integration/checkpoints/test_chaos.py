"""Chaos: workers killed with SIGKILL at random moments while reads stream in.

The production layout on one machine — a real ``anwang serve`` taking reads over HTTP,
two ``anwang worker`` processes on a private NATS 2.10+ server that syncs every write
before acknowledging it (``sync_interval: always``, as docs/operations.md configures
production), a throw-away PostgreSQL database built by the migrations. A killer
SIGKILLs a random running worker at random moments and starts it again. Afterwards,
once the backlog has drained: every read the API accepted is stored exactly once, no
other read is stored, every watch-list hit is counted in exactly one alert and the
alerts follow the dedupe rule (:func:`chaos_kit.check_alerts`), the outbox is empty and
the audit chain is intact.

The default test kills 20 times (about a minute on 2 CPUs); ``-m chaos_long`` runs 100
kills. ``ANWANG_CHAOS_SEED`` repeats a run: the seed is printed, and named in every
failure.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from anwang.core.db import Database
from tests.integration.checkpoints import chaos_kit as kit

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


@dataclass
class Layout:
    nats: kit.NatsServer
    db_url: str
    db: Database
    api: kit.Api
    workers: list[kit.Worker]
    key: str
    entries: dict[str, str]


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    nats = kit.NatsServer(tmp_path)
    assert nats.version[:2] >= (2, 10), (
        f"the chaos test needs NATS 2.10+ (sync_interval: always), not {nats.version}")
    with kit.scratch_database() as url:
        db = Database(url)
        keys, entries = kit.seed(db)
        nats.start()
        env = kit.anwang_env(tmp_path, url, nats.url)
        api = kit.Api(tmp_path, env)
        workers = [kit.Worker(n, tmp_path, env) for n in range(2)]
        try:
            api.start()
            for w in workers:
                w.start()
            yield Layout(nats, url, db, api, workers, keys[0], entries)
        finally:
            for w in workers:
                w.stop()
            api.stop()
            nats.stop()
            db.dispose()


async def kill_workers(layout: Layout, rng: random.Random, kills: int,
                       gap: tuple[float, float]) -> tuple[int, int]:
    """SIGKILL a random worker every ``gap`` seconds (uniform) and start it again at
    once, ``kills`` times; returns the kills and how many of them hit a worker that was
    consuming. Four kills in five wait for a consuming worker; the fifth takes any live
    one, which may still be starting (connecting, creating its durable)."""
    done = consuming = 0
    while done < kills:
        await asyncio.sleep(rng.uniform(*gap))
        for w in layout.workers:
            if w.exited():  # died on its own: that is a failure of its own
                raise AssertionError(f"worker {w.n} exited by itself:\n{w.tail()}")
        ready = [w for w in layout.workers if w.ready()]
        live = [w for w in layout.workers if w.alive()]
        candidates = live if rng.random() < 0.2 else ready
        if not candidates:
            continue
        victim = rng.choice(candidates)
        consuming += victim in ready
        victim.kill()
        victim.start()
        done += 1
    return done, consuming


async def chaos(layout: Layout, *, kills: int, seed: int, gap: tuple[float, float],
                min_seconds: float, drain_timeout: float) -> None:
    rng = random.Random(seed)
    print(f"chaos seed {seed} (repeat with ANWANG_CHAOS_SEED={seed})")
    maker = kit.ReadMaker(random.Random(rng.getrandbits(64)), layout.entries)
    out = kit.Production()
    stop = asyncio.Event()
    producers = [
        asyncio.create_task(kit.produce(layout.api.base, layout.key, maker, out, stop))
        for _ in range(2)
    ]
    started = time.monotonic()
    try:
        killed, consuming = await kill_workers(layout, rng, kills, gap)
        while time.monotonic() - started < min_seconds:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        results = await asyncio.gather(*producers, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise AssertionError(f"seed {seed}: the producer failed: {r!r}") from r
    produced = time.monotonic() - started

    # Drain: the killed workers' unacknowledged messages come back after ack_wait.
    t0 = time.monotonic()
    expected = len(out.accepted)
    while not kit.drained(layout.db, expected):
        if time.monotonic() - t0 > drain_timeout:
            break
        for w in layout.workers:
            if w.exited():
                raise AssertionError(f"seed {seed}: worker {w.n} exited by itself:\n"
                                     f"{w.tail()}")
        await asyncio.sleep(0.5)
    drain = time.monotonic() - t0
    consumer = await kit.store_consumer_state(layout.nats.url)
    state = await asyncio.to_thread(kit.stored_state, layout.db)
    summary = (
        f"seed {seed}: {killed} kills ({consuming} while consuming) in {produced:.1f} s, "
        f"{expected} reads accepted in "
        f"{out.batches} batches ({out.resent} sent again, answers {dict(out.answers)}), "
        f"{len(state['reads'])} stored, drained in {drain:.1f} s, store_reads durable "
        f"{consumer}"
    )
    print(summary)
    try:
        kit.check_reads(state, out.accepted)
        alerts = kit.check_alerts(state, out.accepted)
        assert state["outbox"] == 0, f"{state['outbox']} events left in the outbox"
        assert consumer["pending"] == 0 and consumer["ack_pending"] == 0, consumer
        audited = await asyncio.to_thread(kit.check_audit, layout.db)
    except AssertionError as exc:
        logs = "\n".join(f"--- worker {w.n}\n{w.tail(2000)}" for w in layout.workers)
        raise AssertionError(f"{summary}\n{exc}\n{logs}") from None
    print(f"{alerts['hits']} hits in {alerts['alerts']} alerts; {audited} audit entries ok")
    assert killed == kills


def _seed() -> int:
    return int(os.environ.get("ANWANG_CHAOS_SEED") or random.SystemRandom().randrange(2**32))


async def test_workers_killed_20_times_lose_and_double_nothing(layout: Layout) -> None:
    await chaos(layout, kills=20, seed=_seed(), gap=(0.3, 1.2), min_seconds=15,
                drain_timeout=120)


@pytest.mark.chaos_long
async def test_workers_killed_100_times_lose_and_double_nothing(layout: Layout) -> None:
    await chaos(layout, kills=100, seed=_seed(), gap=(0.3, 2.0), min_seconds=60,
                drain_timeout=240)
