"""Searching stored plate reads at scale: ``search_reads`` over millions of reads, beside
the same query as one bare SQL statement on the same connection.

    python bench/bench_search.py [--reads N] [--days D] [--db sqlite|postgresql|both]
                                 [--queries N] [--sqlite PATH] [--pg URL] [--keep]
                                 [--seed S] [--update-docs]

**Data.** ``--reads`` (20,000,000) reads over the ``--days`` (30) before the hour the data
set was made, at the demo city's 374 checkpoints (``ingest_setup.plan_checkpoints``:
the codes, kinds and lanes of ``anwang.checkpoints.demo``, placed on a ring and inside
it without the road network), registered through the checkpoint service. The traffic is
skewed like a city's:

* commuters (30 % of the reads, one vehicle per 270 reads of a day): on a working day
  90 % of them (30 % at weekends) drive from a home checkpoint to a work checkpoint in the
  morning and back in the evening, each passage read with probability 0.85;
* everyone else: trips of one to three reads at checkpoints drawn by their volume
  (kind × lanes × a log-normal factor), at hours drawn from a daily profile (China
  time); the vehicle of a trip is drawn from a pool of ``reads / 4`` with the index
  ``pool × u^1.6`` — a few (taxis, buses, lorries) are seen hundreds of times a month,
  most once or twice.

Plates are valid mainland plates: 85 % with the prefixes of the read simulator
(``anwang.checkpoints.simulate.PREFIXES``, 70 % 苏D), 15 % from any province; ordinary
serials with up to two letters, new-energy plates, a few trailer, coach and police
plates, each with its kind and colour. Each read has an id, a lane, a direction, the
vehicle's type, colour and make, and an image reference, as ingestion stores them.

Reads are inserted directly, not through ingestion, into a schema made by the migrations
(``anwang.core.migrate.upgrade``), so the indexes, the SQLite trigram index and its
triggers, and the PostgreSQL day partitions are the real ones:

* **SQLite** (a file under ``/tmp/anwang-bench-search/``): ``executemany`` in one
  transaction per day of reads, with ``PRAGMA synchronous=OFF`` and a 4 GiB page cache
  on the loading connection only — the searches run with the application's own
  connection settings (WAL, ``synchronous=FULL``). The trigram index is filled once at
  the end (FTS5 ``rebuild``) instead of by its insert trigger, which is put back
  afterwards. No ``ANALYZE``: the application does not run it on SQLite.
* **PostgreSQL** (a throw-away database ``anwang_bench_search_<reads>_<days>d_<seed>``
  on ``--pg``): the day partitions by
  ``anwang.checkpoints.storage.ensure_partitions``, then ``COPY`` into ``plate_reads``
  (one per day of reads), then ``VACUUM (ANALYZE)`` — what autovacuum does to the
  partitions of a running system.

Storing reads through ingestion also notes where they were taken (``read_locations``,
:func:`anwang.checkpoints.storage.record_read_locations`); after a direct load that table
is filled from the reads by :func:`anwang.checkpoints.storage.rebuild_read_locations`, as
the migration that made it fills it from the reads already stored (and as it does when a
kept data set made before that migration is upgraded).

``--keep`` keeps the SQLite file and the PostgreSQL database afterwards; either is used
again, instead of loaded, when one made with the same ``--reads``, ``--days``, ``--seed``
and generator is there (a sidecar ``.json`` beside the file; the database's comment),
after upgrading it to the newest migration. The data set ends where it ended when it was
made; the queries' windows are taken inside it.

**Queries**, each through the real ``anwang.checkpoints.search.search_reads`` in its own
unit of work with a case reference and a reason (so the audit row and the commit are
timed too), city-wide scope, ``limit`` 1,000:

* an exact plate in a 7-day window: a commuter's plate, and a plate seen once or twice;
* a partial plate in a 7-day window, made from a plate that is there: one unreadable
  character (``苏DA1?34``); province and issuer, an unknown, two known and the rest
  unknown (``苏D?23*``); a three-character run anywhere (``*8K2*``); and runs of at most
  two characters led by a wildcard (``*3?8K*``), which no trigram index can serve;
* an area in a 1-hour window: a circle of 2 km around one of the ten busiest
  checkpoints, and a hexagon of 3 km "radius" around one of them;
* the circle again with every read of the data set in its window — as many reads as one
  hour holds at 5,556 reads/s with 20 million reads — to show an area search at that
  density (a quarter as many queries).

``--queries`` (30) random queries of each kind. Before them, the data set's files are
read once, so that each database starts with its data in the page cache.

**The baseline**, in the same run and on the same connection: the query as one
hand-written SQL statement — the same plate condition in the form the database has an
index for, the time window, for an area its bounding box, ``ORDER BY captured_at, id
LIMIT 1001`` — with nothing else (no scope, no coverage of the checkpoints, no second
query, no audit row, no commit). Service and bare run alternately for each query (which
goes first alternates too), so both see the same cache. Also reported: the rows
returned, the time per statement of the service, and the plan of each kind (``EXPLAIN
QUERY PLAN`` / ``EXPLAIN``) of the statements the service actually ran, captured from
the engine.

``--update-docs`` writes the ``## Searching stored reads`` section of
``docs/performance.md``; a database not run this time keeps its part of the section.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
try:
    import anwang  # noqa: F401
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from ingest_setup import PlannedCheckpoint, plan_checkpoints, register_checkpoints  # noqa: E402
from perfdoc import DOC, machine, update_section  # noqa: E402
from sqlalchemy import event, text, update  # noqa: E402

import anwang.schema  # noqa: E402, F401  (every table)
from anwang.checkpoints import search, storage  # noqa: E402
from anwang.checkpoints.models import Checkpoint  # noqa: E402
from anwang.checkpoints.plates import MAINLAND_CN  # noqa: E402
from anwang.checkpoints.simulate import COLOURS, MAKES, PREFIXES, VEHICLE_TYPES  # noqa: E402
from anwang.core import migrate  # noqa: E402
from anwang.core.db import Database  # noqa: E402
from anwang.core.scope import Scope  # noqa: E402

SECTION = "## Searching stored reads"
SUBSECTIONS = {"sqlite": "### On SQLite", "postgresql": "### On PostgreSQL"}
CACHE = Path("/tmp/anwang-bench-search")
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PG_NAME = "anwang_bench_search"
#: Bump when the generated data changes, so that a kept data set is not reused.
GENERATOR = 2
#: Targets of the issue, in seconds, per group of query kinds. ``area_dense``: an area
#: over the whole data set, which holds as many reads as one hour at 5,000 reads/s.
TARGETS = {"exact": 0.050, "partial": 1.0, "area": 0.5, "area_dense": 0.5}
GROUPS = {"exact": "exact plate, 7 days", "partial": "partial plate, 7 days",
          "area": "area, 1 hour", "area_dense": "area, one hour's reads at 5,000 reads/s"}
REASON = "investigation"
LIMIT = 1000
CST = 8 * 3600  # China Standard Time, seconds east of UTC
COLUMNS = (
    "id", "checkpoint_code", "captured_at", "received_at", "plate", "plate_kind",
    "plate_color", "confidence", "lane", "direction", "vehicle", "image_ref", "lat", "lon",
    "hit", "jurisdiction_code",
)
#: Bytes a read takes on disk with its indexes (measured on both databases, rounded up).
BYTES_PER_READ = {"sqlite": 600, "postgresql": 900}

# --- the city's traffic ----------------------------------------------------------------

COMMUTER_SHARE = 0.30
COMMUTER_DAILY_READS = 2.7  # a commuter on an average day (present 90 %, 4 passages × 0.85)
POOL_PER_READ = 0.25
POOL_SKEW = 1.6
#: Trip lengths (reads) of the occasional traffic and their probabilities.
TRIP_SIZES, TRIP_P = np.array([1, 2, 3]), np.array([0.45, 0.30, 0.25])
#: Relative traffic per hour of the day, China time.
HOURLY = np.array([
    0.30, 0.20, 0.15, 0.15, 0.20, 0.50, 1.20, 2.00, 2.20, 1.60, 1.40, 1.40,
    1.40, 1.30, 1.40, 1.60, 1.90, 2.20, 1.90, 1.40, 1.10, 0.90, 0.70, 0.50,
])
KIND_VOLUME = {"toll_station": 3.0, "province_border": 2.5, "city_border": 1.0,
               "police_checkpoint": 1.5, "mobile_checkpoint": 0.5}

DIGITS = "0123456789"
LETTERS = MAINLAND_CN.classes["letter"]
ISSUERS = MAINLAND_CN.classes["issuer"]
PROVINCES = sorted(MAINLAND_CN.provinces)
ENERGY = MAINLAND_CN.classes["energy"]
ALNUM = MAINLAND_CN.classes["alnum"]


@dataclass(frozen=True)
class Params:
    reads: int
    days: int
    seed: int

    def key(self) -> dict[str, Any]:
        return {"reads": self.reads, "days": self.days, "seed": self.seed,
                "generator": GENERATOR}

    def made(self, meta: dict[str, Any]) -> bool:
        """Whether a kept data set's ``meta`` says it was made with these parameters
        (a newer schema is fine: it is upgraded to the newest migration when used)."""
        key = meta.get("key") or {}
        return all(key.get(k) == v for k, v in self.key().items())


@dataclass
class Fleet:
    """The vehicles: the first ``commuters`` are commuters (with a home and a work
    checkpoint), the rest the pool of occasional traffic."""

    plates: list[str]
    kinds: list[str]
    colours: list[str]
    vehicles: list[str]  # JSON text of type, colour and make
    commuters: int
    home: np.ndarray
    work: np.ndarray


def _plate(rng: random.Random, local: bool) -> tuple[str, str, str]:
    """A valid mainland plate, its kind and its colour."""
    if local or rng.random() < 0.85:
        head = rng.choices(_PREFIX_NAMES, weights=_PREFIX_WEIGHTS)[0]
    else:
        head = rng.choice(PROVINCES) + rng.choice(ISSUERS)
    r = rng.random()
    if r < 0.15:
        return head + "".join(rng.choices(DIGITS, k=5)), "ordinary", "blue"
    if r < 0.80:
        chars = rng.choices(DIGITS, k=5)
        for i in rng.sample(range(5), 1 if r < 0.55 else 2):
            chars[i] = rng.choice(LETTERS)
        # Lorries and coaches carry yellow ordinary plates.
        return head + "".join(chars), "ordinary", "yellow" if r > 0.77 else "blue"
    if r < 0.95:
        serial = rng.choice(ENERGY) + rng.choice(ALNUM) + "".join(rng.choices(DIGITS, k=4))
        return head + serial, "new_energy_small", "green"
    if r < 0.985:
        serial = "".join(rng.choices(DIGITS, k=5)) + rng.choice(ENERGY)
        return head + serial, "new_energy_large", "yellow_green"
    marker, kind, colour = rng.choice((("挂", "trailer", "yellow"), ("学", "coach", "yellow"),
                                       ("警", "police", "white")))
    return head + "".join(rng.choices(ALNUM, k=4)) + marker, kind, colour


_PREFIX_NAMES = [p for p, _ in PREFIXES]
_PREFIX_WEIGHTS = [w for _, w in PREFIXES]


def make_fleet(params: Params, n_checkpoints: int) -> Fleet:
    rng = random.Random(params.seed)
    per_day = params.reads / params.days
    commuters = max(1, round(COMMUTER_SHARE * per_day / COMMUTER_DAILY_READS))
    total = commuters + max(1, round(POOL_PER_READ * params.reads))
    seen: dict[str, tuple[str, str]] = {}
    while len(seen) < total:
        p, kind, colour = _plate(rng, local=len(seen) < commuters)
        seen.setdefault(p, (kind, colour))
    plates = list(seen)
    vehicle_json = [json.dumps({"type": t, "colour": c, "make": m})
                    for t in VEHICLE_TYPES for c in COLOURS for m in MAKES]
    nrng = np.random.default_rng(params.seed)
    which = nrng.integers(0, len(vehicle_json), total)
    home = nrng.integers(0, n_checkpoints, commuters)
    work = (home + nrng.integers(1, n_checkpoints, commuters)) % n_checkpoints
    return Fleet(plates=plates, kinds=[seen[p][0] for p in plates],
                 colours=[seen[p][1] for p in plates],
                 vehicles=[vehicle_json[i] for i in which], commuters=commuters,
                 home=home, work=work)


def checkpoint_volume(plan: Sequence[PlannedCheckpoint], seed: int) -> np.ndarray:
    """Each checkpoint's share of the reads."""
    rng = np.random.default_rng(seed + 1)
    w = np.array([KIND_VOLUME[p.kind] * p.lanes / 4 for p in plan])
    w = w * rng.lognormal(0.0, 0.5, len(plan))
    return w / w.sum()


def data_end(now: datetime) -> datetime:
    """The data set ends at the start of the current hour."""
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _day_reads(rng: np.random.Generator, params: Params, fleet: Fleet, volume: np.ndarray,
               day0_us: int, weekday: int, budget: int) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """One (China-time) day of reads: (capture times in µs, vehicle, checkpoint index)."""
    hour_us = 3_600_000_000
    # Commuters.
    present = np.flatnonzero(rng.random(fleet.commuters) < (0.9 if weekday < 5 else 0.3))
    ts, vs, cs = [], [], []
    for mean_h, sd_h, first, second in ((7.75, 0.6, fleet.home, fleet.work),
                                        (17.9, 0.8, fleet.work, fleet.home)):
        t0 = day0_us + (rng.normal(mean_h, sd_h, len(present)) * hour_us).astype(np.int64)
        t1 = t0 + rng.integers(15 * 60_000_000, 50 * 60_000_000, len(present))
        for t, cps in ((t0, first), (t1, second)):
            keep = rng.random(len(present)) < 0.85
            ts.append(t[keep])
            vs.append(present[keep])
            cs.append(cps[present[keep]])
    n_comm = sum(len(t) for t in ts)
    # Everyone else, in trips.
    need = max(0, budget - n_comm)
    trips = int(need / float(TRIP_SIZES @ TRIP_P)) + 16
    sizes = rng.choice(TRIP_SIZES, trips, p=TRIP_P)
    while sizes.sum() < need:
        sizes = np.concatenate([sizes, rng.choice(TRIP_SIZES, 64, p=TRIP_P)])
    pool = len(fleet.plates) - fleet.commuters
    vehicle = fleet.commuters + np.minimum(
        (pool * rng.random(len(sizes)) ** POOL_SKEW).astype(np.int64), pool - 1)
    hour = rng.choice(24, len(sizes), p=HOURLY / HOURLY.sum())
    start = day0_us + hour * hour_us + rng.integers(0, hour_us, len(sizes))
    t = np.repeat(start, sizes)
    hop = np.arange(len(t)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    t = t + hop * rng.integers(5 * 60_000_000, 40 * 60_000_000, len(t))
    ts.append(t[:need])
    vs.append(np.repeat(vehicle, sizes)[:need])
    cs.append(rng.choice(len(volume), len(t), p=volume)[:need])
    t_all, v_all, c_all = np.concatenate(ts), np.concatenate(vs), np.concatenate(cs)
    order = np.argsort(t_all, kind="stable")
    # A commuter beyond the budget (a light day) is dropped at random, not by time.
    if len(order) > budget:
        order = np.sort(rng.choice(order, budget, replace=False))
        order = order[np.argsort(t_all[order], kind="stable")]
    return t_all[order], v_all[order], c_all[order]


def generate(params: Params, plan: Sequence[PlannedCheckpoint], fleet: Fleet, end: datetime,
             sites: dict[str, Site]) -> Iterator[list[tuple[Any, ...]]]:
    """The reads, one list of row tuples (in :data:`COLUMNS` order, times as SQLite
    stores them) per day, in time order; exactly ``params.reads`` of them, all captured
    in ``[end - days, end)``."""
    rng = np.random.default_rng(params.seed + 2)
    volume = checkpoint_volume(plan, params.seed)
    end_us = int(end.timestamp() * 1_000_000)
    start_us = end_us - params.days * 86_400_000_000
    budgets = np.full(params.days, params.reads // params.days)
    budgets[: params.reads % params.days] += 1
    codes = [p.code for p in plan]
    # A read carries its checkpoint's position and jurisdiction as registered.
    lats = [sites[c].lat for c in codes]
    lons = [sites[c].lon for c in codes]
    lanes = np.array([p.lanes for p in plan])
    jur = [sites[c].jurisdiction_code for c in codes]
    for d in range(params.days):
        day0_us = start_us + d * 86_400_000_000
        weekday = datetime.fromtimestamp(day0_us / 1e6 + CST, UTC).weekday()
        t, v, c = _day_reads(rng, params, fleet, volume, day0_us, weekday, int(budgets[d]))
        # Keep every read inside the data set's span (a trip may run past its end).
        t = np.clip(t, start_us, end_us - 1)
        n = len(t)
        captured = _sqlite_times(t)
        received = _sqlite_times(t + rng.integers(300_000, 4_000_000, n))
        lane = (rng.random(n) * lanes[c]).astype(np.int64) + 1
        direction = np.where(rng.random(n) < 0.5, "in", "out").tolist()
        confidence = np.round(rng.uniform(0.80, 0.995, n), 3).tolist()
        raw = rng.bytes(16 * n).hex()
        day = captured[0][:10].replace("-", "") if n else ""
        vl, cl, ll = v.tolist(), c.tolist(), lane.tolist()
        rows = []
        for i in range(n):
            h = raw[32 * i: 32 * i + 32]
            rid = f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{h[16:20]}-{h[20:]}"
            veh, cp = vl[i], cl[i]
            code = codes[cp]
            rows.append((
                rid, code, captured[i], received[i], fleet.plates[veh], fleet.kinds[veh],
                fleet.colours[veh], confidence[i], ll[i], direction[i], fleet.vehicles[veh],
                f"anwang-images/{code}/{day}/{rid}.jpg", lats[cp], lons[cp], 0, jur[cp],
            ))
        yield rows


def _sqlite_times(us: np.ndarray) -> list[str]:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC), as SQLAlchemy stores a datetime in SQLite."""
    s = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    return np.char.replace(s, "T", " ").tolist()


# --- loading ---------------------------------------------------------------------------


def check_disk(path: Path, need: float) -> None:
    free = shutil.disk_usage(path).free
    print(f"disk: {free / 2**30:.1f} GiB free at {path}, about {need / 2**30:.1f} GiB needed",
          flush=True)
    if free < 1.3 * need:
        raise SystemExit(f"not enough disk space at {path} for this data set")


def sqlite_path(params: Params) -> Path:
    return CACHE / f"reads-{params.reads}-{params.days}d-seed{params.seed}.db"


def kept_sqlite(path: Path, params: Params) -> bool:
    side = path.with_suffix(".json")
    if not (path.exists() and side.exists()):
        return False
    try:
        meta = json.loads(side.read_text())
    except ValueError:
        return False
    return params.made(meta)


@dataclass
class Loaded:
    url: str
    end: datetime
    seconds: float | None  # None: a kept data set was used
    size_bytes: int
    reused: bool = False


def warm_cache(loaded: Loaded) -> None:
    """Read the data set's files once, so that every database starts its queries with
    the data in the operating system's page cache (as on a database server with memory
    for it), whatever the previous run left there."""
    if loaded.url.startswith("sqlite"):
        with open(loaded.url.removeprefix("sqlite:///"), "rb") as f:
            while f.read(1 << 24):
                pass
        return
    with psycopg.connect(_libpq(loaded.url), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.execute("SELECT pg_prewarm(c.oid::regclass, 'read') FROM pg_class c "
                     "WHERE c.relname LIKE 'plate_reads%' AND c.relkind IN ('r', 'i')")


def registered_before(db: Database, at: datetime) -> None:
    """Date the checkpoints' registration before the reads (they were registered just
    before the load): a search reports a checkpoint registered inside its window as
    *no data*, which would list every checkpoint."""
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        s.execute(update(Checkpoint).where(Checkpoint.created_at > at)
                  .values(created_at=at, updated_at=at))


@dataclass(frozen=True)
class Site:
    lat: float
    lon: float
    jurisdiction_code: str | None


def registry(db: Database) -> dict[str, Site]:
    """The registered checkpoints by code."""
    with db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
        rows = s.execute(text("SELECT code, lat, lon, jurisdiction_code FROM checkpoints"))
        return {code: Site(lat, lon, jur) for code, lat, lon, jur in rows}


def fill_read_locations(url: str) -> None:
    """Fill ``read_locations`` from the loaded reads (which bypassed the storing of
    reads that keeps it), as the migration that made the table fills it."""
    db = Database(url)
    with db.engine.begin() as conn:
        storage.rebuild_read_locations(conn)
    db.dispose()


def load_sqlite(path: Path, params: Params, plan: Sequence[PlannedCheckpoint],
                fleet: Fleet) -> Loaded:
    if kept_sqlite(path, params):
        meta = json.loads(path.with_suffix(".json").read_text())
        print(f"sqlite: using the kept {path}", flush=True)
        migrate.upgrade(f"sqlite:///{path}")
        return Loaded(f"sqlite:///{path}", datetime.fromisoformat(meta["end"]), None,
                      path.stat().st_size, reused=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(".json"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    check_disk(CACHE, params.reads * BYTES_PER_READ["sqlite"])
    url = f"sqlite:///{path}"
    t0 = time.perf_counter()
    migrate.upgrade(url)
    db = Database(url)
    register_checkpoints(db, plan)
    sites = registry(db)
    db.dispose()
    end = data_end(datetime.now(UTC))
    con = sqlite3.connect(path, isolation_level=None)
    # For the load only: the searches use the application's connections (synchronous=FULL).
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-4194304")
    # The trigram index is filled once at the end ('rebuild') rather than row by row by
    # its insert trigger, which would take three times as long; the trigger is put back
    # from storage's own DDL. (Built either way, by 1,000-read transactions as ingestion
    # commits them or by one rebuild, the index answers in the same time.)
    con.execute(f"DROP TRIGGER {storage.FTS_TABLE}_ai")
    insert = (f"INSERT INTO plate_reads ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(COLUMNS))})")
    done = 0
    for rows in generate(params, plan, fleet, end, sites):
        con.execute("BEGIN")
        con.executemany(insert, rows)
        con.execute("COMMIT")
        done += len(rows)
        print(f"sqlite: {done:,} reads, {time.perf_counter() - t0:,.0f} s", flush=True)
    con.execute("BEGIN")
    con.execute(f"INSERT INTO {storage.FTS_TABLE}({storage.FTS_TABLE}) VALUES ('rebuild')")
    for ddl in storage.SQLITE_FTS_DDL:
        con.execute(ddl)  # IF NOT EXISTS: only the insert trigger is missing
    con.execute("UPDATE checkpoints SET last_read_at = (SELECT max(captured_at) "
                "FROM plate_reads r WHERE r.checkpoint_code = checkpoints.code)")
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    fill_read_locations(url)
    seconds = time.perf_counter() - t0
    path.with_suffix(".json").write_text(json.dumps(
        {"key": params.key(), "end": end.isoformat(), "load_seconds": seconds}))
    return Loaded(url, end, seconds, path.stat().st_size)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_name(params: Params) -> str:
    return f"{PG_NAME}_{params.reads}_{params.days}d_{params.seed}"


def _pg_comment(server: str, name: str) -> str | None:
    with psycopg.connect(_libpq(f"{server}/postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,)).fetchone()
    return None if row is None else row[0]


def load_postgresql(server: str, params: Params, plan: Sequence[PlannedCheckpoint],
                    fleet: Fleet) -> Loaded:
    name = pg_name(params)
    url = f"{server}/{name}"
    comment = _pg_comment(server, name)
    if comment:
        meta = json.loads(comment)
        if params.made(meta):
            print(f"postgresql: using the kept database {name}", flush=True)
            migrate.upgrade(url)
            return Loaded(url, datetime.fromisoformat(meta["end"]), None,
                          _pg_size(url), reused=True)
    with psycopg.connect(_libpq(f"{server}/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        data_dir = conn.execute("SHOW data_directory").fetchone()
    where = Path(data_dir[0]) if data_dir and Path(data_dir[0]).exists() else Path("/")
    try:
        check_disk(where, params.reads * BYTES_PER_READ["postgresql"])
    except PermissionError:
        check_disk(Path("/"), params.reads * BYTES_PER_READ["postgresql"])
    t0 = time.perf_counter()
    migrate.upgrade(url)
    db = Database(url)
    register_checkpoints(db, plan)
    sites = registry(db)
    end = data_end(datetime.now(UTC))
    first = storage.day_of(end - timedelta(days=params.days))
    with db.unit_of_work() as s:
        storage.ensure_partitions(
            s, days=[first + timedelta(days=i) for i in range(params.days + 1)])
    db.dispose()
    copy = f"COPY plate_reads ({', '.join(COLUMNS)}) FROM STDIN"
    done = 0
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        for rows in generate(params, plan, fleet, end, sites):
            with conn.cursor() as cur, cur.copy(copy) as cp:
                for r in rows:
                    cp.write_row((*r[:2], r[2] + "+00", r[3] + "+00", *r[4:14], False, r[15]))
            conn.commit()
            done += len(rows)
            print(f"postgresql: {done:,} reads, {time.perf_counter() - t0:,.0f} s", flush=True)
        conn.execute("UPDATE checkpoints SET last_read_at = (SELECT max(captured_at) "
                     "FROM plate_reads r WHERE r.checkpoint_code = checkpoints.code)")
        conn.commit()
    fill_read_locations(url)
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) plate_reads")
        conn.execute("ANALYZE read_locations")
        conn.execute("ANALYZE checkpoints")
    seconds = time.perf_counter() - t0
    with psycopg.connect(_libpq(f"{server}/postgres"), autocommit=True) as conn:
        meta = json.dumps({"key": params.key(), "end": end.isoformat()})
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{meta}'")
    return Loaded(url, end, seconds, _pg_size(url))


def _pg_size(url: str) -> int:
    with psycopg.connect(_libpq(url)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


# --- queries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    group: str  # a key of TARGETS
    label: str
    #: The length of the window; None: the whole data set.
    window: timedelta | None
    #: The share of ``--queries`` run of this kind (at least 5).
    share: float = 1.0


WEEK, HOUR = timedelta(days=7), timedelta(hours=1)
KINDS = (
    Kind("exact_frequent", "exact", "exact plate, a commuter's", WEEK),
    Kind("exact_rare", "exact", "exact plate, seen once or twice", WEEK),
    Kind("partial_one_unknown", "partial", "partial `苏DA1?34` (one unknown)", WEEK),
    Kind("partial_prefix", "partial", "partial `苏D?23*`", WEEK),
    Kind("partial_run", "partial", "partial `*8K2*`", WEEK),
    Kind("partial_no_run", "partial", "partial `*3?8K*` (no 3-character run)", WEEK),
    Kind("area_circle", "area", "area: circle of 2 km", HOUR),
    Kind("area_polygon", "area", "area: hexagon of 3 km", HOUR),
    Kind("area_circle_all", "area_dense", "area: circle of 2 km, every read in the window",
         None, share=0.25),
)


@dataclass
class Query:
    kind: Kind
    terms: search.SearchTerms
    bare: str  # SQL with :name parameters
    params: dict[str, Any]


def _bare_select(where: str) -> str:
    return (f"SELECT {', '.join(COLUMNS)} FROM plate_reads WHERE {where} "
            "AND captured_at >= :start AND captured_at <= :end "
            f"ORDER BY captured_at, id LIMIT {LIMIT + 1}")


def bare_plate(dialect: str, pattern: str) -> tuple[str, dict[str, Any]]:
    """The plate condition, hand-written in the form the database has an index for."""
    if "?" not in pattern and "*" not in pattern:
        return "plate = :plate", {"plate": pattern}
    like = pattern.replace("?", "_").replace("*", "%")
    # Without a run of three known characters, one '?' written as each character plates
    # hold makes one (the patterns the search expands it into).
    expanded = search.expand_unknown(pattern) or [pattern]
    if len(expanded) > 1 and search._anchored_expansion(pattern, expanded[0]):
        # Both databases compare plates byte-wise (PostgreSQL by the column's "C"
        # collation): a prefix range per expansion, LIKE on an expression no index holds.
        ranges, params = [], {"like": like}
        for i, p in enumerate(expanded):
            pre = re.split(r"[?*]", p)[0]
            ranges.append(f"(plate >= :lo{i} AND plate < :hi{i})")
            params.update({f"lo{i}": pre, f"hi{i}": search._after(pre)})
        return (f"({' OR '.join(ranges)}) AND (plate || '') LIKE :like", params)
    if dialect != "sqlite":
        return "plate LIKE :like", {"like": like}
    runs = [r for r in re.split(r"[?*]", pattern) if len(r) >= 3]
    match = (" AND ".join(f'"{r}"' for r in runs) if runs else
             " OR ".join(search._expansion_phrase(pattern, p) for p in expanded)
             if len(expanded) > 1 else "")
    if match:
        return ("rowid IN (SELECT rowid FROM plate_reads_fts WHERE plate_reads_fts MATCH "
                ":match) AND plate LIKE :like", {"match": match, "like": like})
    prefix = pattern[: min(pattern.find(c) for c in "?*" if c in pattern)]
    if prefix:
        return ("plate >= :lo AND plate < :hi AND plate LIKE :like",
                {"lo": prefix, "hi": prefix[:-1] + chr(ord(prefix[-1]) + 1), "like": like})
    return "plate LIKE :like", {"like": like}


def _time_param(dialect: str, at: datetime) -> Any:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else at


class QueryMaker:
    """Random queries of each kind over the data set, each finding something (the plate
    or pattern comes from a read inside its window)."""

    def __init__(self, db: Database, params: Params, plan: Sequence[PlannedCheckpoint],
                 fleet: Fleet, end: datetime, seed: int) -> None:
        self.db = db
        self.dialect = db.dialect
        self.plan = plan
        self.fleet = fleet
        self.end = end
        self.start = end - timedelta(days=params.days)
        self.rng = random.Random(seed)
        volume = checkpoint_volume(plan, params.seed)
        self.busy = [plan[i] for i in np.argsort(-volume)[:10]]

    def window(self, length: timedelta, around: datetime | None = None) -> tuple[datetime,
                                                                                datetime]:
        """A window of ``length`` inside the data (containing ``around`` if given)."""
        span = (self.end - self.start - length).total_seconds()
        if around is None:
            start = self.start + timedelta(seconds=self.rng.uniform(0, span))
        else:
            lo = max(self.start, around - length)
            hi = min(around, self.end - length)
            start = lo + (hi - lo) * self.rng.random()
        return start, start + length

    def _some_read(self, plate: str | None = None) -> tuple[str, datetime] | None:
        """A read of ``plate`` (or any read), as (plate, captured_at)."""
        with self.db.engine.connect().execution_options(readonly=True) as conn:
            if plate is not None:
                row = conn.execute(text("SELECT plate, captured_at FROM plate_reads "
                                        "WHERE plate = :p LIMIT 1"), {"p": plate}).first()
            else:
                at = self.start + (self.end - self.start) * self.rng.random()
                row = conn.execute(text(
                    "SELECT plate, captured_at FROM plate_reads WHERE captured_at >= :a "
                    "ORDER BY captured_at LIMIT 1"), {"a": _time_param(self.dialect, at)}
                ).first()
        if row is None:
            return None
        at = row[1] if isinstance(row[1], datetime) else datetime.fromisoformat(row[1])
        return row[0], at.replace(tzinfo=UTC) if at.tzinfo is None else at

    def _plate_for(self, kind: str) -> tuple[str, datetime]:
        fleet = self.fleet
        while True:
            if kind == "exact_frequent":
                found = self._some_read(fleet.plates[self.rng.randrange(fleet.commuters)])
            elif kind == "exact_rare":
                pool = len(fleet.plates) - fleet.commuters
                v = fleet.commuters + self.rng.randrange(pool // 2, pool)
                found = self._some_read(fleet.plates[v])
            else:
                found = self._some_read()
                if found and not (found[0].startswith("苏D") and len(found[0]) == 7):
                    found = None
            if found is not None:
                return found

    def pattern(self, kind: str, plate: str) -> str:
        p = plate
        if kind == "partial_one_unknown":
            i = self.rng.randrange(3, 6)
            return p[:i] + "?" + p[i + 1:]
        if kind == "partial_prefix":
            return p[:2] + "?" + p[3:5] + "*"
        if kind == "partial_run":
            i = self.rng.randrange(2, len(p) - 2)
            return "*" + p[i:i + 3] + "*"
        return "*" + p[3] + "?" + p[5:7] + "*"

    def make(self, kind: Kind) -> Query:
        length = kind.window or self.end - self.start
        if kind.group in ("exact", "partial"):
            plate, at = self._plate_for(kind.name)
            start, end = self.window(length, around=at)
            term = plate if kind.group == "exact" else self.pattern(kind.name, plate)
            terms = search.SearchTerms(case_ref="BENCH-1", reason=REASON, plate=term,
                                       start=start, end=end, limit=LIMIT)
            where, params = bare_plate(self.dialect, term)
        else:
            start, end = self.window(length)
            cp = self.rng.choice(self.busy)
            if kind.name.startswith("area_circle"):
                terms = search.SearchTerms(case_ref="BENCH-1", reason=REASON,
                                           near=(cp.lat, cp.lon), radius_m=2000, start=start,
                                           end=end, limit=LIMIT)
            else:
                terms = search.SearchTerms(case_ref="BENCH-1", reason=REASON,
                                           polygon=hexagon(cp.lat, cp.lon, 3000,
                                                           self.rng.uniform(0, 60)),
                                           start=start, end=end, limit=LIMIT)
            box = search._bbox(terms)
            assert box is not None
            where = "lat BETWEEN :lat0 AND :lat1 AND lon BETWEEN :lon0 AND :lon1"
            params = dict(zip(("lat0", "lat1", "lon0", "lon1"), box, strict=True))
        params.update(start=_time_param(self.dialect, start), end=_time_param(self.dialect, end))
        return Query(kind, terms, _bare_select(where), params)


def hexagon(lat: float, lon: float, radius_m: float, rotate_deg: float) -> tuple[
        tuple[float, float], ...]:
    dlat = math.degrees(radius_m / 6_371_008.8)
    dlon = dlat / math.cos(math.radians(lat))
    return tuple(
        (round(lon + dlon * math.cos(math.radians(rotate_deg + 60 * k)), 6),
         round(lat + dlat * math.sin(math.radians(rotate_deg + 60 * k)), 6))
        for k in range(6)
    )


# --- measuring -------------------------------------------------------------------------


ROLES = ("locations in the area", "reads", "checkpoints with hits", "coverage", "audit row",
         "commit", "other")


@dataclass
class Timeline:
    """Where a search's time goes: each statement the service sends starts a segment that
    lasts until the next one starts (so it holds the fetching of the rows and the Python
    work on them), and the commit's segment lasts until the unit of work is closed."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    captured: dict[str, tuple[str, Any]] = field(default_factory=dict)
    marks: list[tuple[str, float]] = field(default_factory=list)
    on: bool = False

    @staticmethod
    def role(sql: str) -> str:
        s = " ".join(sql.split())
        if s.startswith("SELECT read_locations."):
            return "locations in the area"
        if s.startswith(("SELECT DISTINCT plate_reads.checkpoint_code",
                         "SELECT plate_reads.checkpoint_code")):
            return "checkpoints with hits"
        if s.startswith("SELECT plate_reads."):
            return "reads"
        if "audit" in s:
            return "audit row"
        if "checkpoint" in s:
            return "coverage"
        return "other"

    def install(self, db: Database) -> None:
        @event.listens_for(db.engine, "before_cursor_execute")
        def _statement(conn: Any, cursor: Any, sql: str, params: Any, context: Any,
                       executemany: bool) -> None:
            if not self.on:
                return
            role = self.role(sql)
            self.marks.append((role, time.perf_counter()))
            if role in ("locations in the area", "checkpoints with hits", "reads"):
                self.captured.setdefault(role, (sql, params))

        @event.listens_for(db.engine, "commit")
        def _commit(conn: Any) -> None:
            if self.on:
                self.marks.append(("commit", time.perf_counter()))

    def run(self, fn: Callable[[], Any]) -> Any:
        self.marks = [("other", time.perf_counter())]
        self.on = True
        try:
            out = fn()
        finally:
            self.on = False
            self.marks.append(("end", time.perf_counter()))
        for (role, t), (_next, t_next) in zip(self.marks, self.marks[1:], strict=False):
            self.seconds[role] += t_next - t
        return out


@dataclass
class KindResult:
    kind: Kind
    service: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    bare_rows: list[int] = field(default_factory=list)
    truncated: int = 0
    statements: dict[str, float] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)


def run_service(db: Database, q: Query, now: datetime) -> tuple[float, int, bool]:
    t0 = time.perf_counter()
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        result = search.search_reads(
            s, terms=q.terms, reasons=[REASON], actor="bench-analyst", actor_role="analyst",
            jurisdiction=None, now=now, via="bench")
    return time.perf_counter() - t0, result.count, result.truncated


def run_bare(db: Database, q: Query) -> tuple[float, int]:
    t0 = time.perf_counter()
    with db.engine.connect().execution_options(readonly=True) as conn:
        rows = conn.execute(text(q.bare), q.params).all()
        conn.rollback()
    return time.perf_counter() - t0, len(rows)


def explain(db: Database, sql: str, params: Any) -> list[str]:
    with db.engine.connect().execution_options(readonly=True) as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        if db.dialect == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            rows = cur.fetchall()
            depth: dict[int, int] = {0: -1}
            out = []
            for node, parent, _unused, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                out.append("  " * depth[node] + detail)
        else:
            cur.execute("EXPLAIN (COSTS OFF) " + sql, params)
            out = [r[0] for r in cur.fetchall()]
        cur.close()
        conn.rollback()
    return _collapse_partitions(out)


_PART = re.compile(r"plate_reads_p\d{8}")
_TIMESTAMP = re.compile(r"'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00'::timestamp with time zone")


def _collapse_partitions(lines: list[str]) -> list[str]:
    """A plan with its timestamps shortened and, of a run of sibling nodes on day
    partitions, the first shown and the others counted."""
    lines = [_TIMESTAMP.sub("'…'::timestamptz", line) for line in lines]

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    def block_end(i: int) -> int:
        j = i + 1
        while j < len(lines) and indent(lines[j]) > indent(lines[i]):
            j += 1
        return j

    def on_partition(line: str) -> bool:
        return "->" in line and _PART.search(line) is not None

    out: list[str] = []
    i = 0
    while i < len(lines):
        if not on_partition(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = block_end(i)
        out.extend(lines[i:j])
        nodes: dict[str, int] = defaultdict(int)
        while j < len(lines) and on_partition(lines[j]) and indent(lines[j]) == indent(lines[i]):
            nodes[lines[j].split("->", 1)[1].split(" on ")[0].split(" using ")[0].strip()] += 1
            j = block_end(j)
        if nodes:
            what = ", ".join(f"{n} {k}" for k, n in nodes.items())
            out.append(" " * indent(lines[i]) + f"->  … {sum(nodes.values())} more partitions "
                       f"({what})")
        i = j
    return out


def measure(db: Database, maker: QueryMaker, kinds: Sequence[Kind], n: int,
            now: datetime) -> list[KindResult]:
    timeline = Timeline()
    timeline.install(db)
    results = []
    for kind in kinds:
        res = KindResult(kind)
        queries = [maker.make(kind) for _ in range(max(5, round(n * kind.share)))]
        timeline.seconds.clear()
        timeline.captured.clear()
        for i, q in enumerate(queries):
            order: list[str] = ["bare", "service"] if i % 2 == 0 else ["service", "bare"]
            for what in order:
                if what == "service":
                    dt, count, truncated = timeline.run(partial(run_service, db, q, now))
                    res.service.append(dt)
                    res.rows.append(count)
                    res.truncated += truncated
                else:
                    dt, count = run_bare(db, q)
                    res.bare.append(dt)
                    res.bare_rows.append(count)
        res.statements = {k: v / len(queries) for k, v in timeline.seconds.items()}
        for role, (sql, params) in timeline.captured.items():
            res.plans[role] = explain(db, sql, params)
        results.append(res)
        print(f"{db.dialect} {kind.name}: service p50 {pct(res.service, 50) * 1e3:.1f} ms, "
              f"bare p50 {pct(res.bare, 50) * 1e3:.1f} ms, rows p50 "
              f"{statistics.median(res.rows):.0f}", flush=True)
    return results


def pct(xs: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank)."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


# --- the report ------------------------------------------------------------------------


def ms(x: float) -> str:
    return f"{x * 1e3:,.1f}" if x < 10 else f"{x * 1e3:,.0f}"


def report_db(dialect: str, loaded: Loaded, params: Params, results: list[KindResult],
              n_queries: int) -> str:
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[dialect]
    head = [
        "| query | window | queries | rows (p50 / max) | service p50 / p95 / max ms | bare "
        "SQL p50 / p95 / max ms | service ÷ bare (p50) | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    met: dict[str, bool] = {}
    for r in results:
        target = TARGETS[r.kind.group]
        ok = pct(r.service, 95) <= target
        met[r.kind.group] = met.get(r.kind.group, True) and ok
        window = ("7 days" if r.kind.window == WEEK else "1 hour" if r.kind.window == HOUR
                  else f"{params.days} days, {params.reads:,} reads: one hour at "
                       f"{params.reads / 3600:,.0f} reads/s")
        head.append(
            f"| {r.kind.label} | {window} | {len(r.service)} | "
            f"{statistics.median(r.rows):,.0f} / "
            f"{max(r.rows):,} | {ms(pct(r.service, 50))} / {ms(pct(r.service, 95))} / "
            f"{ms(max(r.service))} | {ms(pct(r.bare, 50))} / {ms(pct(r.bare, 95))} / "
            f"{ms(max(r.bare))} | {pct(r.service, 50) / pct(r.bare, 50):.2f} | "
            f"≤ {ms(target)} ms | {'yes' if ok else 'no'} (p95) |"
        )
    split = ["| query | " + " | ".join(ROLES) + " | total |", "|---|" + "---:|" * (len(ROLES) + 1)]
    for r in results:
        split.append(f"| {r.kind.label} | "
                     + " | ".join(ms(r.statements.get(k, 0.0)) for k in ROLES)
                     + f" | {ms(sum(r.statements.values()))} |")
    plans: list[str] = []
    shown: dict[tuple[str, ...], str] = {}
    for r in results:
        for role in ("locations in the area", "reads"):
            if role not in r.plans:
                continue
            # The plate or the window differs, the access path may not.
            shape = tuple(_PART.sub("p", re.sub(r"'[^']*'", "'…'", line))
                          for line in r.plans[role])
            if shape in shown:
                plans.extend([f"{r.kind.label} — {role}: as for {shown[shape]}.", ""])
                continue
            shown[shape] = f"{r.kind.label} — {role}"
            plans.extend([f"{r.kind.label} — {role}:", "", "```", *r.plans[role], "```", ""])
    loaded_how = ("kept from an earlier run" if loaded.reused else
                  f"loaded in {loaded.seconds / 60:,.1f} min" if loaded.seconds else "")
    verdict = "; ".join(
        f"{GROUPS[g]} ≤ {ms(TARGETS[g])} ms: {'met' if ok else 'not met'}"
        for g, ok in met.items())
    return "\n".join([
        SUBSECTIONS[dialect],
        "",
        f"{params.reads:,} reads over {params.days} days ({loaded_how}; "
        f"{loaded.size_bytes / 2**30:,.1f} GiB on disk); random queries; run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        *head,
        "",
        f"Targets (p95 of the service, the audit row and the commit included): {verdict}.",
        "",
        "Where the service's time goes (mean ms per search; a statement's share lasts until "
        "the next statement starts, so it holds fetching its rows and the Python work on "
        "them; *reads* holds every statement on the reads themselves, fetching the "
        "earliest by key included; *checkpoints with hits* a pass or probes of its own, "
        "where one was needed; *other* is the start of the unit of work):",
        "",
        *split,
        "",
        f"<details><summary>Plans on {name} (of statements the service ran: for the "
        "reads, the first of them — the one pass over a partial plate's matches, the "
        "first area position's reads)</summary>",
        "",
        *plans,
        "</details>",
        "",
    ])


def intro(params: Params) -> str:
    per_hour = params.reads / (params.days * 24)
    return "\n".join([
        SECTION,
        "",
        "`anwang.checkpoints.search.search_reads` — with a case reference and a reason, so "
        "each search writes its audit row and commits — over a month of stored reads at "
        "the demo city's 374 checkpoints, beside the same query as one hand-written SQL "
        "statement on the same connection: the plate condition in the form the database "
        "has an index for, the time window, an area's bounding box, `ORDER BY captured_at, "
        "id LIMIT 1001`, and nothing else. The reads are skewed like a city's traffic: "
        "commuters seen twice a working day, a few vehicles seen hundreds of times, most "
        "once or twice; 60 % of the plates 苏D. The data set is made by the migrations and "
        "loaded directly (SQLite: `executemany` with `synchronous=OFF` on the loading "
        "connection only, the trigram index rebuilt once at the end, no `ANALYZE`, as the "
        "application runs; PostgreSQL: day partitions, `COPY`, `VACUUM (ANALYZE)`), and "
        "its files are read once before the queries so that each database starts with its "
        "data in the page cache. Partial patterns are made from a plate that is in the "
        "window, so every search finds something; a search returns at most 1,000 reads. "
        f"The last row searches every read of the data set ({params.reads:,}) in one "
        f"window, as many as one hour holds at {params.reads / 3600:,.0f} reads/s.",
        "",
        "Reading these figures:",
        "",
        "- An exact plate is one range of the `(plate, captured_at)` index (on PostgreSQL, "
        "on each of the window's eight day partitions) and about a millisecond of SQL. The "
        "checkpoints with hits are those of the reads found (a second pass only when there "
        "are more than the limit), and the coverage loads only the checkpoints that can be "
        "listed: those with a hit, and those registered during the window, never heard "
        "from or with an outage in it.",
        "- A partial plate with a run of three or more known characters is found through "
        "the trigram index (FTS5 on SQLite, `pg_trgm` on PostgreSQL), over the whole "
        "month, then narrowed to the window; on PostgreSQL, when the run is the plate's "
        "fixed start (`苏DA1?34`), the planner may take that start from the `LIKE` to the "
        "`(plate, captured_at)` index instead, window included (the `plate` column has the "
        "`\"C\"` collation, so it compares plates byte-wise, as SQLite does). One without "
        "(`苏D?23*`, `*3?8K*`) has its `?` written as each of the 76 characters plates "
        "hold, which gives every expansion a run of three (`苏DA23`, `3A8K`, …): for a `?` "
        "in the fixed start (`苏D?23*`), on both databases, OR'ed prefix ranges of the "
        "`(plate, captured_at)` index, one per expansion, whose entries answer the window "
        "before a row is read (on PostgreSQL a bitmap index scan per range on each day "
        "partition); otherwise OR'ed FTS5 phrases on SQLite and `plate LIKE ANY(…)` on "
        "PostgreSQL (a bitmap scan of the trigram index per expansion); each candidate "
        "checked again. The matches are read once, "
        "key and checkpoint only — the checkpoints with hits and the earliest 1,001 keys "
        "— and then those reads by their key: one pass where there were two.",
        "- An area search takes the read positions inside the area from `read_locations` "
        "(a row per checkpoint and position, with the hours of its reads there; kept when "
        "reads are stored), not from the window's reads. At up to 32 positions, each "
        "position's first 1,001 reads come from the `(checkpoint_code, captured_at)` "
        "index in time order (a position that has one is a hit), and the earliest 1,001 "
        "of them are fetched by key; at more, the window is walked in time order and "
        "stopped after 1,001 reads at those positions, with one probe per position for "
        "the checkpoints with hits. Either way the cost no longer grows with the reads "
        f"in the window: an hour of this data set holds about {per_hour:,.0f}, the last "
        "row's window all of them.",
        "",
        f"Reproduce: `python bench/bench_search.py --reads {params.reads} --days "
        f"{params.days} --keep --update-docs` (`--db sqlite` or `--db postgresql` for one "
        "database; `--keep` keeps the data set — about 10.5 GiB each at 20 million reads, "
        "loaded here in 7 to 34 minutes, depending on the machine's other work — and uses "
        "it again next time). Machine: "
        + machine() + ", shared with other work while these ran; PostgreSQL 15 with its "
        "default settings (`shared_buffers` 128 MB).",
        "",
    ])


def merge_docs(new_intro: str, parts: dict[str, str], path: Path = DOC) -> None:
    """Write the section: this run's parts, and the other database's part as it was."""
    current = path.read_text() if path.exists() else ""
    m = re.search(rf"^{re.escape(SECTION)}[ \t]*\n(.*?)(?=^## |\Z)", current, re.M | re.S)
    old = m.group(1) if m else ""
    body = [new_intro]
    for dialect, heading in SUBSECTIONS.items():
        if dialect in parts:
            body.append(parts[dialect])
            continue
        sub = re.search(rf"^{re.escape(heading)}[ \t]*\n.*?(?=^### |\Z)", old, re.M | re.S)
        if sub:
            body.append(sub.group(0).rstrip("\n") + "\n")
    update_section("\n".join(body), path)


# --- main ------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--queries", type=int, default=30, help="random queries of each kind")
    ap.add_argument("--sqlite", type=Path, default=None, help="the SQLite file to use")
    ap.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server URL (no database)")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--keep", action="store_true",
                    help="keep the data sets afterwards (and use them next time)")
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    params = Params(args.reads, args.days, args.seed)
    plan = plan_checkpoints()
    t0 = time.perf_counter()
    fleet = make_fleet(params, len(plan))
    print(f"fleet: {len(fleet.plates):,} vehicles ({fleet.commuters:,} commuters) in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    # Millions of long-lived plates: keep the collector from walking them during a search
    # (a full collection would add a pause of the benchmark's own to the search's time).
    gc.collect()
    gc.freeze()

    parts: dict[str, str] = {}
    dialects = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for dialect in dialects:
        if dialect == "sqlite":
            path = args.sqlite or sqlite_path(params)
            loaded = load_sqlite(path, params, plan, fleet)
        else:
            loaded = load_postgresql(args.pg, params, plan, fleet)
        print(f"{dialect}: {loaded.size_bytes / 2**30:.2f} GiB, data ends {loaded.end}",
              flush=True)
        db = Database(loaded.url)
        registered_before(db, loaded.end - timedelta(days=params.days + 1))
        t_warm = time.perf_counter()
        warm_cache(loaded)
        print(f"{dialect}: files read in {time.perf_counter() - t_warm:.0f} s", flush=True)
        maker = QueryMaker(db, params, plan, fleet, loaded.end, args.seed + 3)
        # One search of each kind first: connections, caches of the planner.
        for kind in KINDS:
            run_service(db, maker.make(kind), loaded.end)
        results = measure(db, maker, KINDS, args.queries, loaded.end)
        db.dispose()
        parts[dialect] = report_db(dialect, loaded, params, results, args.queries)
        print(parts[dialect], flush=True)
        if not args.keep:
            cleanup(dialect, loaded, args.pg)
    if args.update_docs:
        merge_docs(intro(params), parts)


def cleanup(dialect: str, loaded: Loaded, server: str) -> None:
    if dialect == "sqlite":
        path = Path(loaded.url.removeprefix("sqlite:///"))
        for p in (path, path.with_suffix(".json"), Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
    else:
        name = loaded.url.rsplit("/", 1)[1]
        with psycopg.connect(_libpq(f"{server}/postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')



if __name__ == "__main__":
    main()
