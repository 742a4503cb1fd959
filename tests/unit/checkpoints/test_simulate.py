"""The traffic simulator's generator: the asked-for rate, valid reads, vehicles that
move forward in time from checkpoint to neighbouring checkpoint."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from anwang.checkpoints import plates
from anwang.checkpoints.reads import CheckpointInfo, validate_reads
from anwang.checkpoints.simulate import Site, Traffic, random_plate

START = datetime(2026, 11, 28, 8, 0, tzinfo=UTC).timestamp()


def sites() -> list[Site]:
    """A 10 × 10 lattice of checkpoints 2 km apart, the outer ring being border entrances."""
    out = []
    for i in range(10):
        for j in range(10):
            kind = "city_border" if i in (0, 9) or j in (0, 9) else "police_checkpoint"
            out.append(Site(f"C{i}{j}", kind, 31.7 + i * 0.018, 119.9 + j * 0.021, lanes=3))
    return out


def test_the_rate_is_about_what_was_asked() -> None:
    traffic = Traffic(sites(), rate=50, start=START, seed=3)
    reads = [r for s in range(1, 121) for r in traffic.advance(START + s)]
    assert 0.8 * 50 * 120 <= len(reads) <= 1.2 * 50 * 120


def test_every_read_passes_ingestion_and_reads_come_in_time_order() -> None:
    t = Traffic(sites(), rate=30, start=START, seed=5)
    reads = t.advance(START + 60)
    assert reads
    infos = {s.code: CheckpointInfo(s.code, s.kind, s.lat, s.lon, None) for s in sites()}
    valid, rejected = validate_reads(
        reads, checkpoints=infos, active=dict.fromkeys(infos, True),
        now=datetime.fromtimestamp(START + 60, UTC), retention=timedelta(hours=48))
    assert rejected == [] and len(valid) == len(reads)
    times = [datetime.fromisoformat(r["captured_at"]) for r in reads]
    assert times == sorted(times)
    assert all(r["captured_at"].endswith("+08:00") for r in reads)


def test_a_vehicle_moves_between_neighbouring_checkpoints() -> None:
    t = Traffic(sites(), rate=40, start=START, seed=9)
    reads = [r for s in range(1, 1801, 30) for r in t.advance(START + s)]
    by_plate: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in reads:
        by_plate[str(r["plate"])].append(r)
    journeys = [rs for rs in by_plate.values() if len(rs) >= 3]
    assert journeys
    coords = {s.code: (int(s.code[1]), int(s.code[2])) for s in sites()}
    # Lattice steps between consecutive reads of a plate. (Two vehicles may share a
    # plate, so not every step is a hop; nearly all are.)
    hops = [abs(coords[str(a["checkpoint"])][0] - coords[str(b["checkpoint"])][0])
            + abs(coords[str(a["checkpoint"])][1] - coords[str(b["checkpoint"])][1])
            for rs in journeys for a, b in zip(rs, rs[1:], strict=False)]
    assert sum(1 for h in hops if h <= 2) / len(hops) > 0.9


def test_watch_list_plates_travel_one_vehicle_at_a_time() -> None:
    wanted = ["苏D8A2K7", "苏DD12345", "皖B7Q351"]
    t = Traffic(sites(), rate=50, start=START, seed=3, wanted=wanted, wanted_share=0.5)
    seen: set[str] = set()
    for s in range(60, 3601, 60):
        seen.update(str(r["plate"]) for r in t.advance(START + s))
        on_road = defaultdict(set)
        for _, _, vehicle, _ in t._heap:
            on_road[vehicle.plate].add(id(vehicle))
        assert all(len(on_road[p]) <= 1 for p in wanted)
    assert seen >= set(wanted)


def test_border_trips_enter_in_and_leave_out() -> None:
    t = Traffic(sites(), rate=40, start=START, seed=11)
    reads = t.advance(START + 900)
    border = [r for r in reads if str(r["checkpoint"])[1] in "09"
              or str(r["checkpoint"])[2] in "09"]
    assert {r["direction"] for r in border} == {"in", "out"}


def test_deterministic_for_a_seed() -> None:
    a = Traffic(sites(), rate=20, start=START, seed=1).advance(START + 30)
    b = Traffic(sites(), rate=20, start=START, seed=1).advance(START + 30)
    assert a == b


def test_random_plates_are_valid_and_mostly_local() -> None:
    rng = random.Random(1)
    generated = [random_plate(rng) for _ in range(2000)]
    assert all(plates.is_valid(p) for p in generated)
    assert sum(p.startswith("苏D") for p in generated) / len(generated) > 0.6
    assert any(plates.parse(p).kind == "new_energy_small" for p in generated)
