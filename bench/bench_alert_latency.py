"""From a plate read accepted to its alert on a dispatcher's live feed (SSE), under load.

    python bench/bench_alert_latency.py [--exact N] [--partial N] [--rates R,R,...]
                                        [--seconds S] [--low-rate R] [--low-seconds S]
                                        [--hits-per-s H] [--update-docs]

A real ``anwang serve`` on the embedded default (SQLite, in-process bus) with the demo
city's 374 checkpoints and a watch list of ``--exact`` (1,000,000) and ``--partial``
(10,000) entries (``ingest_setup``). A city-wide dispatcher logs in and opens
``GET /api/v1/stream?names=anwang.alerts.>``. A sender in this process posts simulated
traffic every 100 ms, captured "now", at each of ``--rates`` (1,000, 2,000 and 5,000)
reads a second in turn, for ``--seconds`` (45) each; ``--hits-per-s`` (5) of those
reads carry a watch-listed plate, each a different one, so each raises a new alert. The
POSTs are not serialised: a batch is sent when it is due even while earlier ones are
unanswered, as independent cameras do; one refused by admission control (503, 429, or
the connection closed unread) is sent again after its ``Retry-After``.

Latency of an alert = when its ``alert.raised`` event was parsed from the stream − when
the POST carrying the hit was answered (200: accepted); also reported from when that POST
was sent. Both clocks are this process's. Baseline in the same run, on the same server
and stream: the same hits at ``--low-rate`` (50) reads a second for ``--low-seconds``
(30). The per-key rate limit is off (``ANWANG_INGEST_KEY_READS_PER_S=0``): one key
stands for every checkpoint here.

``--update-docs`` replaces the ``## Read to alert on the live feed`` section of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
try:
    import anwang  # noqa: F401
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
import ingest_setup as kit  # noqa: E402
from perfdoc import machine, update_section  # noqa: E402

from anwang.alerts import events as alert_events  # noqa: E402
from anwang.checkpoints.simulate import CST  # noqa: E402

SECTION = "## Read to alert on the live feed"
PERIOD = 0.1
DISPATCHER = "benchdispatcher"


@dataclass
class Phase:
    rate: float
    seconds: float
    #: plate → perf_counter when the POST carrying it was sent / answered.
    sent: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    reads: int = 0
    accepted: int = 0
    refused: int = 0
    elapsed: float = 0.0
    post_latencies: list[float] = field(default_factory=list)

    def count_refusal(self) -> None:
        self.refused += 1


class Feed:
    """The dispatcher's stream: when each alert's plate was first seen on it."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()

    async def run(self, http: httpx.AsyncClient, base: str, token: str) -> None:
        async with http.stream(
            "GET", f"{base}/api/v1/stream?typed=false&names=anwang.alerts.>",
            headers={"Authorization": f"Bearer {token}"}, timeout=None,
        ) as r:
            r.raise_for_status()
            self.ready.set()
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                now = time.perf_counter()
                ev = json.loads(line[5:])
                if ev.get("name") == alert_events.RAISED:
                    self.seen.setdefault(ev["payload"]["plate"], now)


async def send(http: httpx.AsyncClient, base: str, key: str, phase: Phase,
               traffic: Iterator[dict[str, Any]], hits: list[str], hits_per_s: float,
               rng: random.Random) -> None:
    per_batch = max(1, round(phase.rate * PERIOD))
    batches = int(phase.seconds / PERIOD)
    hit_every = max(1, round(1 / (hits_per_s * PERIOD)))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    tasks: list[asyncio.Task[None]] = []

    async def post(body: bytes, plate: str | None) -> None:
        t = time.perf_counter()
        r = await kit.post_admitted(http, f"{base}/api/v1/reads", body, headers,
                                    on_refusal=phase.count_refusal)
        done = time.perf_counter()
        phase.post_latencies.append(done - t)
        phase.accepted += int(r.json()["accepted"])
        if plate is not None:
            phase.sent[plate] = t
            phase.answered[plate] = done

    t0 = time.perf_counter()
    for k in range(batches):
        await asyncio.sleep(max(0.0, t0 + k * PERIOD - time.perf_counter()))
        stamp = datetime.now(UTC).astimezone(CST).isoformat(timespec="milliseconds")
        batch = [{**next(traffic), "captured_at": stamp} for _ in range(per_batch)]
        plate = None
        if k % hit_every == 0 and hits:
            plate = hits.pop()
            batch[rng.randrange(len(batch))]["plate"] = plate
        phase.reads += len(batch)
        tasks.append(asyncio.create_task(
            post(json.dumps(batch, ensure_ascii=False).encode(), plate)))
    await asyncio.gather(*tasks)
    phase.elapsed = time.perf_counter() - t0


def latencies(phase: Phase, feed: Feed, *, since: str) -> list[float]:
    start = phase.answered if since == "answered" else phase.sent
    return [(feed.seen[p] - start[p]) * 1000 for p in phase.answered if p in feed.seen]


async def run(base: str, key: str, token: str, phases: list[Phase],
              items: list[dict[str, Any]], hits: list[str], hits_per_s: float,
              seed: int) -> Feed:
    feed = Feed()
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as http:
        listener = asyncio.create_task(feed.run(http, base, token))
        await asyncio.wait_for(feed.ready.wait(), 30)
        await asyncio.sleep(0.5)  # the stream registers with the hub

        def endless() -> Iterator[dict[str, Any]]:
            while True:
                yield from items

        traffic = endless()
        for phase in phases:
            await send(http, base, key, phase, traffic, hits, hits_per_s, rng)
            # Alerts not seen within a minute of the last answer count as missing.
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline and any(
                p not in feed.seen for p in phase.answered
            ):
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # let the backlog drain before the next phase
        listener.cancel()
    return feed


def row(name: str, phase: Phase, lat: list[float], lat_sent: list[float]) -> str:
    if not lat:
        return f"| {name} | {phase.reads / phase.elapsed:,.0f} | 0 of {len(phase.answered)} " \
               "| | | | |"
    return (f"| {name} | {phase.accepted / phase.elapsed:,.0f} | {len(lat)} of "
            f"{len(phase.answered)} | {statistics.median(lat):.0f} | {kit.pct(lat, 95):.0f} | "
            f"**{kit.pct(lat, 99):.0f}** | {kit.pct(lat_sent, 99):.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exact", type=int, default=1_000_000)
    ap.add_argument("--partial", type=int, default=10_000)
    ap.add_argument("--rates", default="1000,2000,5000",
                    help="reads a second of each loaded phase, in this order")
    ap.add_argument("--seconds", type=float, default=45, help="length of each loaded phase")
    ap.add_argument("--low-rate", type=float, default=50)
    ap.add_argument("--low-seconds", type=float, default=30)
    ap.add_argument("--hits-per-s", type=float, default=5)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()

    tmp_dir = tempfile.TemporaryDirectory()
    tmp = Path(tmp_dir.name)
    url = f"sqlite:///{tmp}/bench.db"
    plan = kit.plan_checkpoints()
    wl = kit.make_watch_list(exact=args.exact, partial=args.partial, seed=args.seed)
    db = kit.create_database(url)
    kit.register_checkpoints(db, plan)
    loaded = kit.load_watch_list(db, wl)
    key = kit.device_key(db)
    kit.add_user(db, DISPATCHER, "dispatcher")
    db.dispose()
    # Background traffic hits the list only by chance; the hits are put in on purpose.
    items = kit.generate_reads(plan, wl, n=50_000, seed=args.seed, hit_share=0.0)
    rates = [float(r) for r in args.rates.split(",")]
    phases = [Phase(args.low_rate, args.low_seconds),
              *(Phase(rate, args.seconds) for rate in rates)]
    hits = random.Random(args.seed).sample(wl.exact, int(
        args.hits_per_s * sum(p.seconds for p in phases) + 10))

    proc, base = kit.start_serve(kit.cli_env(tmp / "data", database_url=url),
                                 tmp / "serve.log")
    try:
        warm = time.perf_counter()  # the first read waits for the index to be built
        httpx.post(f"{base}/api/v1/reads", json=items[:1], timeout=600,
                   headers={"Authorization": f"Bearer {key}"}).raise_for_status()
        warm = time.perf_counter() - warm
        token = httpx.post(f"{base}/api/v1/auth/token", json={
            "username": DISPATCHER, "password": kit.PASSWORD}).json()["access_token"]
        feed = asyncio.run(run(base, key, token, phases, items[1:], hits, args.hits_per_s,
                               args.seed))
    finally:
        kit.stop(proc)

    lat = [latencies(p, feed, since="answered") for p in phases]
    lat_sent = [latencies(p, feed, since="sent") for p in phases]
    base_p99 = kit.pct(lat[0], 99) if lat[0] else float("nan")
    table = [row(f"{phases[0].rate:,.0f} reads/s (baseline)", phases[0], lat[0], lat_sent[0])]
    notes = []
    for phase, got, sent in zip(phases[1:], lat[1:], lat_sent[1:], strict=True):
        table.append(row(f"{phase.rate:,.0f} reads/s", phase, got, sent))
        p99 = kit.pct(got, 99) if got else float("inf")
        # Met only if the server also kept up with the offered rate (within 5 %).
        kept_up = phase.accepted / phase.elapsed >= 0.95 * phase.rate
        met = p99 <= 200 and len(got) == len(phase.answered) and kept_up
        notes.append(
            f"- {phase.rate:,.0f} reads/s offered for {phase.seconds:g} s: "
            f"{phase.accepted / phase.elapsed:,.0f} reads/s accepted, "
            f"{phase.accepted:,} of {phase.reads:,} reads; a POST of "
            f"{round(phase.rate * PERIOD):,} reads answered in "
            f"{kit.pct(phase.post_latencies, 50) * 1e3:,.0f} ms (median), "
            f"{kit.pct(phase.post_latencies, 99) * 1e3:,.0f} ms (p99); refusals by "
            f"admission control, retried: {phase.refused:,}; p99 ≤ 200 ms: "
            f"{'met' if met else 'not met'} ({p99 / base_p99:,.1f}× the baseline's p99"
            f"{'' if kept_up else '; the server did not keep up with the offered rate'})")
    report = "\n".join([
        SECTION,
        "",
        "A real `anwang serve` on the embedded default (SQLite, in-process bus) with the "
        f"watch list of {args.exact:,} exact and {args.partial:,} partial entries; a "
        "city-wide dispatcher's `GET /api/v1/stream` open; a sender (in the benchmark's "
        "process, with the stream's client) posting simulated traffic every 100 ms without "
        f"waiting for earlier answers, {args.hits_per_s:g} reads a second carrying a "
        "watch-listed plate (each a new alert). Latency: from the POST carrying the hit "
        "answered (accepted) to its `alert.raised` event parsed from the stream, in ms "
        "(negative when the alert arrived first); the last column from the POST first "
        "sent. Baseline in the same run: the same server, stream and hits with little "
        "other traffic. The loaded phases follow one another on the same server.",
        "",
        "| traffic | reads/s accepted | alerts seen | p50 | p95 | p99 | p99 from sent |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *table,
        "",
        *notes,
        f"- watch list loaded in {loaded:.1f} s; the server answered its first read "
        f"{warm:.1f} s after it was ready (building its index)",
        "",
        "Reading these figures: on the embedded default a POST stores its reads and "
        "raises their alerts in its own unit of work (`reads.store_inline`), so the "
        "alert is on the feed by the time the answer arrives — the latency from the "
        "answer is at or below zero at every rate. What grows with the rate is the wait "
        "before a POST is taken up: once more reads are offered than the server stores, "
        "requests queue in front of it, admission control refuses some (they are "
        "retried), and the latency from the first send grows with the queue. Every "
        "write takes SQLite's one write lock; in the server, writers queue at a "
        "process-wide lock (`core.db`) and each is woken as the one before it commits. "
        "A POST holds it only to find its new reads and store them: the device key is "
        "recognised and the reads checked (checkpoints, plates, times) in read-only units "
        "of work before, while the POST ahead of it writes and commits. "
        "The server is one Python process: validating, matching and storing the reads "
        "take turns on one CPU, while the sender and the stream's client share the "
        "machine's other. The target, p99 ≤ 200 ms at 5,000 reads a second, is met at "
        "the rates the server sustains; whether it is at 5,000 reads a second is in the "
        "table; more API processes on PostgreSQL (docs/operations.md) is how a "
        "deployment takes a higher rate.",
        "",
        f"Command: `python bench/bench_alert_latency.py --exact {args.exact} --partial "
        f"{args.partial} --rates {args.rates} --seconds {args.seconds:g} --low-rate "
        f"{args.low_rate:g} --low-seconds {args.low_seconds:g} --hits-per-s "
        f"{args.hits_per_s:g}`. Machine: {machine()}; load average "
        f"{os.getloadavg()[0]:.1f} at the end (shared machine); run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ])
    print(report)
    if args.update_docs:
        update_section(report)
    tmp_dir.cleanup()


if __name__ == "__main__":
    main()
