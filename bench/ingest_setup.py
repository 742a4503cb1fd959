"""What the plate-read ingestion benchmarks share (``bench_ingest.py``,
``bench_ingest_pg.py``, ``bench_alert_latency.py``).

* the demo city's checkpoints: the kinds, counts, codes and names of
  ``anwang.checkpoints.demo`` (259 city-border and 42 province-border entrances on a ring
  around the centre, 30 toll stations, 40 police and 3 mobile checkpoints inside it),
  placed without the road network so that no city needs generating;
* a watch list of N exact and N partial entries, drawn like a national list (random
  valid plates of every province; ``bench_matcher.PlateMaker``) and loaded straight into
  the table by ``bench_watchlist_store.load`` (see :func:`make_watch_list` for how reads
  come to hit it at about the rate a checkpoint sees, 0.1 %; local partial patterns
  would catch one read in seven);
* traffic: ``anwang.checkpoints.simulate.Traffic`` between those checkpoints, a share of
  its vehicles carrying watch-listed plates;
* the ``anwang`` command line as subprocesses (``serve``, ``worker``) with their own
  environment.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bench_matcher import PlateMaker
from bench_sse import free_port
from bench_watchlist_store import load as load_entries

from anwang.auth import service as auth_service
from anwang.checkpoints import service as checkpoints
from anwang.checkpoints.demo import COUNTS, STYLE, PlannedCheckpoint
from anwang.checkpoints.simulate import BORDER_KINDS, PREFIXES, Site, Traffic
from anwang.core import migrate
from anwang.core.db import Base, Database
from anwang.core.scope import Scope

#: The demo city's centre (Changzhou) and the half-axes of its outline, in km.
CENTRE = (31.78, 119.95)
HALF_AXES_KM = (30.0, 35.0)
_KM_PER_DEG = 6371.0088 * math.pi / 180.0
PASSWORD = "benchmark-password-1"


def create_database(url: str) -> Database:
    """Every table as the models define them (``Base.metadata``, with the DDL attached to
    them: indexes, triggers, extensions), stamped at the newest migration so that
    ``anwang serve`` and ``anwang worker`` accept the database."""
    from alembic import command

    import anwang.schema  # noqa: F401  (every table)

    db = Database(url)
    Base.metadata.create_all(db.engine)
    command.stamp(migrate.alembic_config(url), "head")
    return db


def plan_checkpoints(seed: int = 7) -> list[PlannedCheckpoint]:
    """The demo's checkpoints, border kinds on the outline and the others inside it."""
    rng = random.Random(seed)
    lat0, lon0 = CENTRE
    kx = _KM_PER_DEG * math.cos(math.radians(lat0))
    out: list[PlannedCheckpoint] = []
    border_total = sum(n for k, n in COUNTS.items() if k in BORDER_KINDS)
    on_ring = 0
    for kind, count in COUNTS.items():
        prefix, template, lanes, threshold = STYLE[kind]
        width = 3 if count >= 100 else 2
        for i in range(1, count + 1):
            if kind in BORDER_KINDS:
                angle = 2 * math.pi * (on_ring + rng.random() * 0.5) / border_total
                on_ring += 1
                r = 1.0
            else:
                angle = rng.uniform(0, 2 * math.pi)
                r = 0.85 * math.sqrt(rng.random())
            x = r * HALF_AXES_KM[0] * math.cos(angle)
            y = r * HALF_AXES_KM[1] * math.sin(angle)
            out.append(PlannedCheckpoint(
                code=f"{prefix}-{i:0{width}d}", name=template.format(n=i), kind=kind,
                lat=lat0 + y / _KM_PER_DEG, lon=lon0 + x / kx, node=len(out), lanes=lanes,
                silence_threshold_s=threshold,
            ))
    return out


def register_checkpoints(db: Database, plan: Sequence[PlannedCheckpoint]) -> None:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        report = checkpoints.import_checkpoints(
            s, rows=[(i, p.row()) for i, p in enumerate(plan, start=1)], actor="bench")
    if report.errors:
        raise SystemExit(f"checkpoints refused: {report.errors[:3]}")


def sites(plan: Sequence[PlannedCheckpoint]) -> list[Site]:
    return [Site(p.code, p.kind, p.lat, p.lon, p.lanes) for p in plan]


@dataclass(frozen=True)
class WatchList:
    exact: list[str]
    partial: list[str]


def make_watch_list(*, exact: int, partial: int, seed: int) -> WatchList:
    """Exact plates of every province but the four of the city's traffic
    (``simulate.PREFIXES``: 苏, 浙, 皖, 沪); partial patterns of every province.

    The simulated traffic draws an issuer's plates from a small space (half of them five
    digits), in which the 1,400 plates a national list of a million holds per issuer —
    and the look-alike folding of approximate matching, which takes 苏O and 苏Q for 苏D —
    would catch one read in a hundred by chance; real plates are sparser. So the exact
    list leaves out the provinces the traffic comes from, and the reads that hit it are
    the vehicles that carry a listed plate on purpose (``traffic``).
    """
    rng = random.Random(seed)
    national = PlateMaker(rng, local=False)
    local = {prefix[0] for prefix, _ in PREFIXES}
    unique: dict[str, None] = {}
    while len(unique) < exact:
        plate = national.plate()
        if plate[0] not in local:
            unique[plate] = None
    patterns = sorted({national.partial() for _ in range(partial * 2)})[:partial]
    rng.shuffle(patterns)
    return WatchList(list(unique), patterns)


def load_watch_list(db: Database, wl: WatchList) -> float:
    """Insert the entries (all active, 30 days to run); seconds taken."""
    return load_entries(db, wl.exact, wl.partial)


def traffic(plan: Sequence[PlannedCheckpoint], wl: WatchList, *, rate: float, start: float,
            seed: int, hit_share: float) -> Traffic:
    """Traffic between the checkpoints; ``hit_share`` of the vehicles carry a plate of
    the exact list (one vehicle per plate at a time)."""
    wanted = random.Random(seed).sample(wl.exact, min(len(wl.exact), 5000))
    return Traffic(sites(plan), rate=rate, start=start, seed=seed, wanted=wanted,
                   wanted_share=hit_share)


def generate_reads(plan: Sequence[PlannedCheckpoint], wl: WatchList, *, n: int, seed: int,
                   hit_share: float, rate: float = 50.0) -> list[dict[str, Any]]:
    """``n`` reads of the recent past, in time order, as devices post them.

    The traffic is simulated at ``rate`` reads a second (the simulator fills the roads
    with the trips under way at its start, whose number grows with the rate), so ``n``
    reads span ``n / rate`` seconds, well inside the retention window.
    """
    start = time.time() - 1.25 * n / rate - 600
    t = traffic(plan, wl, rate=rate, start=start, seed=seed, hit_share=hit_share)
    out: list[dict[str, Any]] = []
    at = start
    while len(out) < n:
        at += 60.0
        if at > time.time():
            raise RuntimeError("the simulated traffic ran into the future")
        out.extend(t.advance(at))
    return out[:n]


def device_key(db: Database, name: str = "bench-device") -> str:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        key, _ = auth_service.create_api_key(s, name=name, role="device", actor="bench")
    return key


def add_user(db: Database, username: str, role: str) -> None:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.create_user(s, username=username, password=PASSWORD, role=role,
                                 actor="bench")


# --- posting -------------------------------------------------------------------------


def bodies_of(items: Sequence[dict[str, Any]], size: int = 1000) -> list[bytes]:
    """JSON bodies of ``size`` reads each, encoded before any timing starts."""
    return [json.dumps(list(items[i:i + size]), ensure_ascii=False).encode()
            for i in range(0, len(items), size)]


async def post_admitted(http: httpx.AsyncClient, url: str, body: bytes,
                        headers: dict[str, str], *,
                        on_refusal: Callable[[], None]) -> httpx.Response:
    """POST until admitted: a 429 or 503 is retried after its ``Retry-After`` (at most
    5 s), and so is a connection the server closed before reading the body (how it
    refuses a request when too many are in flight)."""
    while True:
        try:
            r = await http.post(url, content=body, headers=headers)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            on_refusal()
            await asyncio.sleep(0.2)
            continue
        if r.status_code not in (429, 503):
            r.raise_for_status()
            return r
        on_refusal()
        await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 5.0))


async def post_all(bases: Sequence[str], key: str, bodies: Sequence[bytes],
                   clients: int) -> dict[str, Any]:
    """POST every body to ``/api/v1/reads`` with ``clients`` concurrent clients spread
    over the servers ``bases``, each until admitted (:func:`post_admitted`). Totals of
    the answers, the number of refusals and each POST's latency in seconds (from the
    first try)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    totals = {"accepted": 0, "alerts": 0, "rejected": 0, "refused": 0}
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def refused() -> None:
        totals["refused"] += 1

    async def client(n: int, http: httpx.AsyncClient) -> None:
        url = f"{bases[n % len(bases)]}/api/v1/reads"
        while not queue.empty():
            body = queue.get_nowait()
            t = time.perf_counter()
            r = await post_admitted(http, url, body, headers, on_refusal=refused)
            latencies.append(time.perf_counter() - t)
            out = r.json()
            totals["accepted"] += out["accepted"]
            totals["alerts"] += out["alerts"]
            totals["rejected"] += len(out["rejected"])

    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    return {**totals, "latencies": latencies}


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


# --- the command line as subprocesses -------------------------------------------------


def cli_env(data_dir: Path, *, database_url: str, bus_url: str = "memory://",
            **extra: str) -> dict[str, str]:
    """The environment of ``anwang`` subprocesses. The per-key rate limit of ingestion
    is off: one key stands for every checkpoint of the city here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANWANG_")}
    env.update({
        "ANWANG_ENV": "dev", "ANWANG_DATA_DIR": str(data_dir),
        "ANWANG_DATABASE_URL": database_url, "ANWANG_BUS_URL": bus_url,
        "ANWANG_INGEST_KEY_READS_PER_S": "0", **extra,
    })
    return env


CLI = [sys.executable, "-m", "anwang.cli"]


def start_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``anwang serve`` on a free port, once ``/readyz`` answers; its base URL."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--log-level", "warning"],
                                env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"anwang serve exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"anwang serve did not become ready; see {log}")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*CLI, "worker"], env=env, stdout=out, stderr=out)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
