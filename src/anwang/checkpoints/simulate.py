"""``anwang simulate reads``: plausible traffic for the demo, through the real API.

Vehicles travel between checkpoints; each checkpoint they pass reads their plate. The
checkpoints are joined into a graph (each to its six nearest neighbours) and a vehicle
follows the shortest path from an origin to a destination, at 40–90 km/h with a detour
factor of 1.3 over the straight line — so a vehicle seen at one checkpoint turns up at a
neighbouring one minutes later, in time order, which is what a route search draws. Half
of the trips enter or leave the city through a border entrance (read ``in`` on the way
in, ``out`` on the way out).

Plates are valid mainland plates, mostly of the city itself (苏D) and its neighbours;
``--wanted-share`` of the vehicles carry a plate of the demo watch list (when the
watch-list package provides demo plates; each such plate is on one vehicle at a time),
so the demo raises alerts.

:class:`Traffic` is the pure generator (seeded, no clock, no I/O); the command posts what
it generates to ``POST /api/v1/reads`` with a device key, every half second, and shows a
live count — or, with ``--via mqtt``, publishes each checkpoint's reads to
``anwang/checkpoints/{code}/reads`` and counts the reports on the result topics.
"""

from __future__ import annotations

import heapq
import importlib
import importlib.util
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.live import Live
from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
from scipy.sparse.csgraph import connected_components, shortest_path  # type: ignore[import-untyped]
from scipy.spatial import cKDTree  # type: ignore[import-untyped]

from anwang.checkpoints import plates

if TYPE_CHECKING:
    from anwang.infra.mqtt import MqttUrl

simulate_app = typer.Typer(help="Simulated traffic for the demo.", no_args_is_help=True)
err = Console(stderr=True)

#: Times in the reads are written in China Standard Time, as the cameras would.
CST = timezone(timedelta(hours=8))
BORDER_KINDS = frozenset({"city_border", "province_border"})
_KM_PER_DEG = 6371.0088 * math.pi / 180.0

#: (prefix, weight): the city's own plates first, then the neighbours'.
PREFIXES: tuple[tuple[str, float], ...] = (
    ("苏D", 0.70), ("苏E", 0.07), ("苏B", 0.05), ("苏A", 0.04), ("苏L", 0.03),
    ("浙E", 0.03), ("皖B", 0.02), ("皖P", 0.02), ("沪A", 0.02), ("浙A", 0.01),
    ("苏M", 0.01),
)
_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
VEHICLE_TYPES = ("car", "car", "car", "suv", "suv", "van", "truck", "bus")
COLOURS = ("white", "white", "black", "silver", "grey", "red", "blue")
MAKES = ("比亚迪", "大众", "丰田", "吉利", "本田", "长安", "特斯拉", "五菱", "奇瑞", "别克")


@dataclass(frozen=True)
class Site:
    code: str
    kind: str
    lat: float
    lon: float
    lanes: int = 2


@dataclass
class _Vehicle:
    plate: str
    colour: str
    path: list[int]
    times: list[float]
    vehicle: dict[str, str]


def random_plate(rng: random.Random) -> str:
    """A valid mainland plate: ordinary (five digits, or one or two letters in the
    serial), or a small new-energy plate."""
    prefix = rng.choices([p for p, _ in PREFIXES], weights=[w for _, w in PREFIXES])[0]
    while True:
        roll = rng.random()
        if roll < 0.12:
            serial = rng.choice("DF") + rng.choice(_LETTERS + _DIGITS) + "".join(
                rng.choices(_DIGITS, k=4))
        elif roll < 0.62:
            serial = "".join(rng.choices(_DIGITS, k=5))
        elif roll < 0.9:
            chars = rng.choices(_DIGITS, k=5)
            chars[rng.randrange(5)] = rng.choice(_LETTERS)
            serial = "".join(chars)
        else:
            chars = rng.choices(_DIGITS, k=5)
            for i in rng.sample(range(5), 2):
                chars[i] = rng.choice(_LETTERS)
            serial = "".join(chars)
        plate = prefix + serial
        if plates.is_valid(plate):
            return plate


def plate_colour(plate: str) -> str:
    kind = plates.parse(plate).kind
    return {"new_energy_small": "green", "new_energy_large": "yellow_green"}.get(kind, "blue")


class Traffic:
    """Reads of vehicles travelling between ``sites``, ``rate`` reads a second on average.

    Times are seconds since the epoch. Vehicles start as a Poisson process whose rate is
    ``rate`` divided by the mean number of checkpoints per trip; at ``start`` the roads
    are already full (trips that began up to one long trip earlier are under way), so the
    rate is right from the first second.
    """

    NEIGHBOURS = 6
    DETOUR = 1.3

    def __init__(self, sites: Sequence[Site], *, rate: float, start: float, seed: int = 7,
                 wanted: Sequence[str] = (), wanted_share: float = 0.0) -> None:
        if len(sites) < 2:
            raise ValueError("at least two checkpoints are needed")
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.sites = list(sites)
        self.rate = rate
        self.rng = random.Random(seed)
        self.wanted = [p for p in wanted if plates.is_valid(p)]
        self.wanted_share = wanted_share if self.wanted else 0.0
        #: (due time, sequence number, vehicle, index of the checkpoint on its path)
        self._heap: list[tuple[float, int, _Vehicle, int]] = []
        #: Until when each watch-list plate is on the road.
        self._busy: dict[str, float] = {}
        self._seq = 0
        self._graph()
        self.border = [i for i in self.usable if self.sites[i].kind in BORDER_KINDS]
        self.inner = [i for i in self.usable if self.sites[i].kind not in BORDER_KINDS]
        # Mean checkpoints and duration of a trip, from a sample of trips.
        sample = [self._trip(0.0) for _ in range(300)]
        self.mean_reads = sum(len(v.path) for v in sample) / len(sample)
        durations = sorted(v.times[-1] for v in sample)
        long_trip = durations[int(0.95 * (len(durations) - 1))]
        self.spawn_rate = rate / self.mean_reads
        self._next_spawn = start - long_trip
        self.vehicles_started = 0
        # Fill the roads: trips already under way at ``start`` keep only their later reads.
        self._spawn_until(start, after=start)

    def _graph(self) -> None:
        lat0 = sum(s.lat for s in self.sites) / len(self.sites)
        kx = _KM_PER_DEG * math.cos(math.radians(lat0))
        xy = np.array([((s.lon) * kx, s.lat * _KM_PER_DEG) for s in self.sites])
        k = min(self.NEIGHBOURS + 1, len(self.sites))
        dist, idx = cKDTree(xy).query(xy, k=k)
        rows = np.repeat(np.arange(len(self.sites)), k - 1)
        cols = idx[:, 1:].ravel()
        weights = np.maximum(dist[:, 1:].ravel(), 0.01)
        graph = csr_matrix((weights, (rows, cols)), shape=(len(self.sites),) * 2)
        graph = graph.maximum(graph.T)
        _, labels = connected_components(graph, directed=False)
        biggest = np.bincount(labels).argmax()
        self.usable = [int(i) for i in np.flatnonzero(labels == biggest)]
        self.km, self.pred = shortest_path(graph, directed=False, return_predecessors=True)

    def _path(self, a: int, b: int) -> list[int]:
        path = [b]
        while path[-1] != a:
            path.append(int(self.pred[a, path[-1]]))
        return path[::-1]

    def _trip(self, t0: float) -> _Vehicle:
        rng = self.rng
        roll = rng.random()
        ends = self.border if self.border else self.usable
        inner = self.inner if self.inner else self.usable
        if roll < 0.25:  # entering the city
            a, b = rng.choice(ends), rng.choice(inner)
        elif roll < 0.5:  # leaving it
            a, b = rng.choice(inner), rng.choice(ends)
        else:
            a, b = rng.sample(inner, 2) if len(inner) > 1 else rng.sample(self.usable, 2)
        path = self._path(a, b)
        speed = rng.uniform(40, 90) / 3600  # km per second
        times = [t0]
        for u, v in zip(path, path[1:], strict=False):
            times.append(times[-1] + self.km[u, v] * self.DETOUR / speed)
        plate = None
        if self.wanted and rng.random() < self.wanted_share:
            # One vehicle per watch-list plate at a time, so its route stays one route.
            free = [p for p in self.wanted if self._busy.get(p, -math.inf) < t0]
            if free:
                plate = rng.choice(free)
                self._busy[plate] = times[-1]
        if plate is None:
            plate = random_plate(rng)
        vehicle = {"type": rng.choice(VEHICLE_TYPES), "colour": rng.choice(COLOURS),
                   "make": rng.choice(MAKES)}
        return _Vehicle(plate, plate_colour(plate), path, times, vehicle)

    def _spawn_until(self, until: float, *, after: float | None = None) -> None:
        while self._next_spawn <= until:
            v = self._trip(self._next_spawn)
            self.vehicles_started += 1
            for hop, t in enumerate(v.times):
                if after is None or t > after:
                    self._seq += 1
                    heapq.heappush(self._heap, (t, self._seq, v, hop))
            self._next_spawn += self.rng.expovariate(self.spawn_rate)

    def _read(self, due: float, v: _Vehicle, hop: int) -> dict[str, Any]:
        site = self.sites[v.path[hop]]
        if site.kind in BORDER_KINDS and hop in (0, len(v.path) - 1):
            direction = "in" if hop == 0 else "out"
        else:
            direction = self.rng.choice(("in", "out"))
        at = datetime.fromtimestamp(due, UTC).astimezone(CST)
        return {
            "checkpoint": site.code,
            "captured_at": at.isoformat(timespec="milliseconds"),
            "plate": v.plate,
            "plate_color": v.colour,
            "confidence": round(self.rng.uniform(0.80, 0.995), 3),
            "lane": self.rng.randint(1, max(1, site.lanes)),
            "direction": direction,
            "vehicle": v.vehicle,
        }

    def advance(self, until: float) -> list[dict[str, Any]]:
        """The reads captured after the previous call up to ``until``, in time order."""
        self._spawn_until(until)
        out = []
        heap = self._heap
        while heap and heap[0][0] <= until:
            due, _, vehicle, hop = heapq.heappop(heap)
            out.append(self._read(due, vehicle, hop))
        return out

    @property
    def on_the_road(self) -> int:
        return len({id(item[2]) for item in self._heap})


# --- the command ---------------------------------------------------------------------------


def _load_sites() -> list[Site]:
    from anwang.checkpoints import service
    from anwang.core.db import Database
    from anwang.core.scope import Scope
    from anwang.settings import Settings

    settings = Settings()
    db = Database(settings.resolved_database_url)
    try:
        with db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
            return [Site(c.code, c.kind, c.lat, c.lon, c.lanes)
                    for c in service.list_checkpoints(s, active=True)]
    finally:
        db.dispose()


def _demo_wanted() -> list[str]:
    """Plates of the demo watch list, when the watch-list package provides them."""
    if importlib.util.find_spec("anwang.watchlist.demo") is None:
        return []
    module = importlib.import_module("anwang.watchlist.demo")
    found: list[str] = list(getattr(module, "demo_plates", lambda: [])())
    return found


def _default_key() -> str | None:
    from anwang.checkpoints.demo import KEY_FILE
    from anwang.settings import Settings

    path = Path(Settings().data_dir) / KEY_FILE
    return path.read_text().strip() if path.exists() else None


class _MqttSender:
    """Publishes each checkpoint's reads as one JSON array to its topic (QoS 1), and
    adds up the reports the intake publishes on the result topics."""

    def __init__(self, u: MqttUrl, totals: dict[str, int], *, prefix: str | None = None) -> None:
        import ssl
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from anwang.checkpoints.mqtt_intake import TOPIC_PREFIX

        self.prefix = prefix or TOPIC_PREFIX
        self.totals = totals
        self.lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=u.protocol)
        if u.username is not None:
            client.username_pw_set(u.username, u.password)
        if u.tls:
            client.tls_set_context(ssl.create_default_context(cafile=u.ca_file))
        client.max_inflight_messages_set(1000)
        client.on_connect = lambda c, *_: c.subscribe(f"{self.prefix}/+/reads/result", qos=1)
        client.on_message = self._report
        client.connect(u.host, u.port, u.keepalive)
        client.loop_start()
        self.client = client

    def _report(self, _client: Any, _ud: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
            counts = {name: int(body[name]) for name in ("accepted", "duplicates", "alerts")}
            counts["rejected"] = len(body["rejected"])
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            for name, n in counts.items():
                self.totals[name] += n

    def send(self, batch: list[dict[str, Any]]) -> None:
        by_checkpoint: dict[str, list[dict[str, Any]]] = {}
        for read in batch:
            by_checkpoint.setdefault(read["checkpoint"], []).append(read)
        for code, items in by_checkpoint.items():
            self.client.publish(f"{self.prefix}/{code}/reads",
                                json.dumps(items, ensure_ascii=False).encode(), qos=1)
        with self.lock:
            self.totals["sent"] += len(batch)

    def close(self) -> None:
        deadline = time.monotonic() + 10
        while self.client.want_write() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the last reports
        self.client.disconnect()
        self.client.loop_stop()


def _broker(via: str, mqtt_url: str | None) -> MqttUrl | None:
    """The broker to publish to with ``--via mqtt``; None for ``http``."""
    if via == "http":
        return None
    if via != "mqtt":
        raise typer.BadParameter("http or mqtt", param_hint="--via")
    from anwang.infra.mqtt import MqttUrl
    from anwang.settings import Settings

    try:
        return MqttUrl.parse(mqtt_url or Settings().mqtt_url or "mqtt://127.0.0.1:1883")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mqtt-url") from None


def _rate(value: str) -> float:
    text = value.strip().lower().removesuffix("/s")
    try:
        rate = float(text)
    except ValueError:
        raise typer.BadParameter("write the rate as N or N/s, e.g. 50/s") from None
    if not 0 < rate <= 100_000:
        raise typer.BadParameter("between 0 and 100000 reads a second")
    return rate


@simulate_app.command("reads")
def simulate_reads(
    rate: Annotated[str, typer.Option(help="Reads per second, e.g. 50/s.")] = "20/s",
    url: Annotated[str, typer.Option(help="Base URL of the anwang server.")] =
    "http://127.0.0.1:8000",
    key: Annotated[str | None, typer.Option(
        help="Device API key (default: the demo key in the data directory).")] = None,
    duration: Annotated[float, typer.Option(help="Seconds to run; 0 runs until Ctrl-C.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the traffic.")] = 7,
    wanted_share: Annotated[float, typer.Option(
        help="Share of vehicles carrying a demo watch-list plate.")] = 0.01,
    via: Annotated[str, typer.Option(
        help="http (POST /api/v1/reads) or mqtt (anwang/checkpoints/{code}/reads).")] = "http",
    mqtt_url: Annotated[str | None, typer.Option(
        help="MQTT broker for --via mqtt (default: ANWANG_MQTT_URL, else "
             "mqtt://127.0.0.1:1883).")] = None,
) -> None:
    """Send simulated traffic's plate reads to the API.

    Vehicles travel between the checkpoints and are read as they pass; the reads are
    posted to /api/v1/reads with a device key (or, with --via mqtt, published to each
    checkpoint's MQTT topic), with a live count.
    """
    import httpx

    per_second = _rate(rate)
    broker = _broker(via, mqtt_url)
    key = key or _default_key()
    if broker is None and not key:
        err.print("[red]no device key:[/red] pass --key, or run `anwang demo` first")
        raise typer.Exit(2)
    sites = _load_sites()
    if len(sites) < 2:
        err.print("[red]fewer than two active checkpoints:[/red] run `anwang demo` or "
                  "`anwang import checkpoints` first")
        raise typer.Exit(2)
    wanted = _demo_wanted()
    start = time.time()
    traffic = Traffic(sites, rate=per_second, start=start, seed=seed, wanted=wanted,
                      wanted_share=wanted_share)
    totals = {"sent": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "alerts": 0,
              "errors": 0}
    pending: list[dict[str, Any]] = []
    err.print(f"{len(sites)} checkpoints, {per_second:g} reads/s, "
              f"{len(wanted)} watch-list plates, "
              + (f"publishing to {broker.redacted()}" if broker else f"posting to {url}"))

    def line() -> str:
        elapsed = max(time.time() - start, 1e-9)
        return (f"sent {totals['sent']} ({totals['sent'] / elapsed:.0f}/s) · "
                f"accepted {totals['accepted']} · duplicates {totals['duplicates']} · "
                f"rejected {totals['rejected']} · alerts {totals['alerts']} · "
                f"errors {totals['errors']} · on the road {traffic.on_the_road}")

    if broker is not None:
        _publish_reads(broker, traffic, totals, duration, start, line)
        err.print(line())
        return
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client, \
            Live(line(), console=err, refresh_per_second=4) as live:
        try:
            while duration <= 0 or time.time() - start < duration:
                pending.extend(traffic.advance(time.time()))
                while pending:
                    batch = pending[:5000]
                    try:
                        r = client.post("/api/v1/reads", json=batch)
                    except httpx.HTTPError as exc:
                        totals["errors"] += 1
                        live.console.print(f"[yellow]post failed ({exc}); retrying[/yellow]")
                        break
                    if r.status_code != 200:
                        totals["errors"] += 1
                        live.console.print(f"[red]{r.status_code}:[/red] {r.text[:200]}")
                        if r.status_code in (401, 403):
                            raise typer.Exit(1)
                        break
                    body = r.json()
                    totals["sent"] += len(batch)
                    for name in ("accepted", "duplicates", "alerts"):
                        totals[name] += int(body[name])
                    totals["rejected"] += len(body["rejected"])
                    del pending[: len(batch)]
                if len(pending) > 50_000:
                    totals["errors"] += 1
                    del pending[: len(pending) - 50_000]
                live.update(line())
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    err.print(line())


def _publish_reads(broker: MqttUrl, traffic: Traffic, totals: dict[str, int], duration: float,
                   start: float, line: Any) -> None:
    """The --via mqtt loop: every half second, what the traffic read since the last."""
    sender = _MqttSender(broker, totals)
    try:
        with Live(line(), console=err, refresh_per_second=4) as live:
            try:
                while duration <= 0 or time.time() - start < duration:
                    batch = traffic.advance(time.time())
                    if batch:
                        sender.send(batch)
                    live.update(line())
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    finally:
        sender.close()
