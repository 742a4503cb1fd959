"""The ways a search finds its reads — a checkpoint's index, one pass over a partial
plate's matches, each read location of an area on its own or the window in time order,
the trigram index with a ``?`` expanded, prefix ranges of the plate index for a ``?`` in
the fixed start — all give what the plain query gives: the same
reads in the same order (``captured_at, id``, ties included), the same truncation, the
same checkpoints with hits and so the same coverage. And ``read_locations``, which area
searches start from, covers every stored read, survives the purge safely, and is what the
migration's backfill makes."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from anwang.checkpoints import reads, search, service, storage
from anwang.checkpoints.models import Checkpoint, CheckpointOutage, PlateRead, ReadLocation
from anwang.checkpoints.schemas import CheckpointCreate, CoverageStatus
from anwang.core import scope as scope_hook
from anwang.core.db import Database
from anwang.core.scope import Scope

CITY = {"scope": Scope(None)}
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=6)
REASON = "investigation"

#: code -> (registered lat, lon). M-1 is mobile: it also reads from MOVED.
SITES = {
    "A-1": (31.740, 119.850),
    "A-2": (31.745, 119.855),  # 700 m from A-1
    "A-3": (31.740, 119.850),  # on the same spot as A-1
    "B-1": (31.800, 119.950),  # 11 km away
    "M-1": (31.900, 120.050),
    "Q-1": (31.742, 119.851),  # never sends a read
}
MOVED = (31.741, 119.852)  # M-1's second position, beside A-1
PLATES = [
    "苏D12345",
    "苏D1A345",
    "苏DA2345",
    "苏E12345",
    "京A12345",
    "苏D3A8K1",
    "苏D308K2",
    "苏DB1234",
    "苏D12399",
]
_serial = iter(range(1, 10**9))


def _batch(
    code: str, at: tuple[float, float], rows: list[tuple[str, datetime, str]]
) -> reads.ReadBatch:
    info = reads.CheckpointInfo(f"Checkpoint {code}", "police_checkpoint", at[0], at[1], None)
    return reads.ReadBatch(
        received_at=NOW,
        source="test",
        checkpoints={code: info},
        reads=[
            reads.ValidRead(
                id=rid,
                checkpoint=code,
                captured_at=t,
                plate=p,
                plate_kind="ordinary",
                plate_color="blue",
                confidence=0.9,
                lane=1,
                direction="in",
                vehicle=None,
                image_ref=None,
            )
            for p, t, rid in rows
        ],
    )


@pytest.fixture
def city(db: Database) -> Iterator[Database]:
    """Six checkpoints (registered a month ago) and some 400 reads over five hours, many
    of them sharing their capture instant with others (several lanes, several
    checkpoints), M-1's split between its two positions; E-2 offline in the middle."""
    rng = random.Random(7)
    with db.unit_of_work(info=CITY) as s:
        for code, (lat, lon) in SITES.items():
            service.create_checkpoint(
                s,
                data=CheckpointCreate(
                    code=code, name=f"Checkpoint {code}", kind="police_checkpoint", lat=lat, lon=lon
                ),
                actor="test",
            )
        s.flush()
        for cp in s.scalars(select(Checkpoint)):
            cp.created_at = NOW - timedelta(days=30)
    instants = [T0 + timedelta(seconds=rng.randrange(0, 5 * 3600)) for _ in range(150)]
    per_site: dict[tuple[str, tuple[float, float]], list[tuple[str, datetime, str]]] = {}
    for _ in range(400):
        code = rng.choice(["A-1", "A-1", "A-2", "A-3", "B-1", "M-1"])
        at = SITES[code]
        if code == "M-1" and rng.random() < 0.5:
            at = MOVED
        rid = f"r{rng.randrange(16**6):06x}-{next(_serial)}"
        per_site.setdefault((code, at), []).append((rng.choice(PLATES), rng.choice(instants), rid))
    with db.unit_of_work(info=CITY) as s:
        for (code, at), rows in sorted(per_site.items()):
            for i in range(0, len(rows), 50):
                reads.store_reads(s, batch=_batch(code, at, rows[i : i + 50]), now=NOW)
        s.add(
            CheckpointOutage(
                checkpoint_code="B-1",
                started_at=T0 + timedelta(hours=1),
                detected_at=T0 + timedelta(hours=1, minutes=15),
                ended_at=T0 + timedelta(hours=2),
            )
        )
    yield db


def _matches(pattern: str, plate: str) -> bool:
    rx = "".join("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, plate) is not None


def expected(session: Session, terms: search.SearchTerms) -> tuple[list[str], bool, set[str]]:
    """The plain answer: every read, filtered in Python, sorted by (captured_at, id)."""
    inside = search._inside(terms)
    assert terms.start is not None and terms.end is not None
    found = [
        r
        for r in session.scalars(select(PlateRead))
        if terms.start <= r.captured_at <= terms.end
        and (terms.plate is None or _matches(terms.plate, r.plate))
        and (terms.checkpoint is None or r.checkpoint_code == terms.checkpoint)
        and (inside is None or inside(r.lat, r.lon))
    ]
    found.sort(key=lambda r: (r.captured_at, r.id))
    return (
        [r.id for r in found[: terms.limit]],
        len(found) > terms.limit,
        {r.checkpoint_code for r in found},
    )


def expected_coverage(
    session: Session, terms: search.SearchTerms, hits: set[str]
) -> list[tuple[str, CoverageStatus]]:
    assert terms.start is not None and terms.end is not None
    inside = search._inside(terms)
    explicit = terms.checkpoint is not None or inside is not None
    out = []
    for cp in session.scalars(select(Checkpoint).order_by(Checkpoint.code)):
        if terms.checkpoint is not None and cp.code != terms.checkpoint:
            continue
        if terms.checkpoint is None and inside is not None and not inside(cp.lat, cp.lon):
            continue
        gap = cp.created_at > terms.start or any(
            o.started_at < terms.end and (o.ended_at is None or o.ended_at > terms.start)
            for o in session.scalars(
                select(CheckpointOutage).where(CheckpointOutage.checkpoint_code == cp.code)
            )
        )
        status = (
            CoverageStatus.HIT
            if cp.code in hits
            else CoverageStatus.NO_DATA
            if gap or cp.last_read_at is None
            else CoverageStatus.NO_HIT
        )
        if explicit or status is not CoverageStatus.NO_HIT:
            out.append((cp.code, status))
    return out


def run(db: Database, **kw: Any) -> tuple[search.SearchResult, search.SearchTerms]:
    terms = search.SearchTerms(case_ref="C-1", reason=REASON, **kw)
    with db.unit_of_work(info=CITY) as s:
        result = search.search_reads(
            s,
            terms=terms,
            reasons=[REASON],
            actor="t",
            actor_role="analyst",
            jurisdiction=None,
            now=NOW,
        )
        checked = search._check_terms(terms, [REASON], NOW, search.SEARCH_LIMIT)
        s.expunge_all()
    return result, checked


AREA = {"near": (31.741, 119.851), "radius_m": 1200.0}  # MOVED
HEXAGON = {"polygon": ((119.84, 31.73), (119.87, 31.73), (119.87, 31.75), (119.84, 31.75))}
WHOLE = {"near": (31.8, 119.95), "radius_m": 30_000.0}
TERMS: list[dict[str, Any]] = [
    AREA,
    HEXAGON,
    WHOLE,
    {"checkpoint": "A-1"},
    {"checkpoint": "M-1", **AREA},
    {"plate": "苏D12345"},
    {"plate": "苏D12345", **AREA},
    {"plate": "*2345"},
    {"plate": "苏D?2345"},
    {"plate": "*3?8K*"},
    {"plate": "苏D?23*"},
    {"plate": "苏D*2?"},
    {"plate": "苏D?23*", **WHOLE},
    {"plate": "苏DA*"},
    {"plate": "*3?8K*", "checkpoint": "A-1"},
]


@pytest.mark.parametrize("probe_all", [False, True], ids=["one-by-one", "in-time-order"])
@pytest.mark.parametrize("terms", TERMS, ids=lambda t: ",".join(sorted(t)) + str(t.get("plate")))
def test_every_path_gives_the_plain_answer(
    city: Database, terms: dict[str, Any], probe_all: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "LOCATIONS_READ_ONE_BY_ONE", 0 if probe_all else 32)
    windows = [(T0, NOW), (T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=40))]
    for start, end in windows:
        for limit in (1, 2, 3, 5, 8, 13, 40, 1000):
            result, checked = run(city, start=start, end=end, limit=limit, **terms)
            with city.unit_of_work(readonly=True, info=CITY) as s:
                ids, truncated, hits = expected(s, checked)
                coverage = expected_coverage(s, checked, hits)
            assert [r.id for r in result.reads] == ids, (limit, start)
            assert result.truncated == truncated and result.count == len(ids)
            assert [(c.checkpoint, c.status) for c in result.coverage] == coverage


def test_the_city_has_what_the_paths_need(city: Database) -> None:
    """Ties at the cut, a mobile checkpoint's reads at two positions, an offline span."""
    with city.unit_of_work(readonly=True, info=CITY) as s:
        rows = list(s.scalars(select(PlateRead)))
    instants = [r.captured_at for r in rows]
    assert len(set(instants)) < len(instants) - 100
    assert {(r.lat, r.lon) for r in rows if r.checkpoint_code == "M-1"} == {SITES["M-1"], MOVED}
    result, _ = run(city, start=T0, end=NOW, limit=1000, **AREA)
    assert {r.checkpoint_code for r in result.reads} == {"A-1", "A-2", "A-3", "M-1"}
    # M-1 is listed by where it is registered (outside), Q-1 never sent a read.
    assert {c.checkpoint: c.status for c in result.coverage} == {
        "A-1": CoverageStatus.HIT,
        "A-2": CoverageStatus.HIT,
        "A-3": CoverageStatus.HIT,
        "Q-1": CoverageStatus.NO_DATA,
    }


def test_a_plate_search_lists_the_checkpoints_with_hits_or_without_data(city: Database) -> None:
    result, _ = run(city, plate="京A12345", checkpoint=None, start=T0, end=NOW)
    listed = {c.checkpoint: c.status for c in result.coverage}
    hits = {r.checkpoint_code for r in result.reads}
    assert hits and all(listed[c] is CoverageStatus.HIT for c in hits)
    # B-1 was offline during the window, Q-1 never sent a read; the others had no hit.
    assert {c for c, st_ in listed.items() if st_ is CoverageStatus.NO_DATA} == (
        {"B-1", "Q-1"} - hits
    )
    assert set(listed) == hits | {"B-1", "Q-1"}


def test_read_locations_cover_every_stored_read(city: Database) -> None:
    with city.unit_of_work(readonly=True, info=CITY) as s:
        locations = {
            (loc.checkpoint_code, loc.lat, loc.lon): loc for loc in s.scalars(select(ReadLocation))
        }
        rows = list(s.scalars(select(PlateRead)))
    assert {(r.checkpoint_code, r.lat, r.lon) for r in rows} == set(locations)
    for r in rows:
        loc = locations[(r.checkpoint_code, r.lat, r.lon)]
        assert loc.first_seen <= r.captured_at <= loc.last_seen
    for loc in locations.values():  # whole hours
        assert loc.first_seen.minute == loc.last_seen.minute == 0
        assert loc.first_seen.second == loc.last_seen.second == 0


def test_storing_widens_a_location_only_when_needed(city: Database) -> None:
    def span() -> tuple[datetime, datetime]:
        with city.unit_of_work(readonly=True, info=CITY) as s:
            loc = s.get(ReadLocation, ("B-1", *SITES["B-1"]))
            assert loc is not None
            return loc.first_seen, loc.last_seen

    before = span()
    later = NOW + timedelta(hours=3, minutes=20)
    early = T0 - timedelta(hours=2, minutes=5)
    with city.unit_of_work(info=CITY) as s:
        reads.store_reads(
            s,
            batch=_batch(
                "B-1", SITES["B-1"], [("苏D12345", before[0] + timedelta(minutes=1), "w-1")]
            ),
            now=NOW,
        )
    assert span() == before
    with city.unit_of_work(info=CITY) as s:
        reads.store_reads(
            s,
            batch=_batch(
                "B-1", SITES["B-1"], [("苏D12345", later, "w-2"), ("苏D12345", early, "w-3")]
            ),
            now=NOW,
        )
    assert span() == (early.replace(minute=0), later.replace(minute=0) + timedelta(hours=1))
    # A batch stored again inserts nothing and changes nothing.
    with city.unit_of_work(info=CITY) as s:
        reads.store_reads(s, batch=_batch("B-1", (1.0, 2.0), [("苏D12345", later, "w-2")]), now=NOW)
        assert s.get(ReadLocation, ("B-1", 1.0, 2.0)) is None


def test_the_backfill_makes_exact_spans(city: Database) -> None:
    with city.unit_of_work(info=CITY) as s:
        storage.rebuild_read_locations(s)
    with city.unit_of_work(readonly=True, info=CITY) as s:
        spans: dict[tuple[str, float, float], list[datetime]] = {}
        for r in s.scalars(select(PlateRead)):
            spans.setdefault((r.checkpoint_code, r.lat, r.lon), []).append(r.captured_at)
        locations = {
            (loc.checkpoint_code, loc.lat, loc.lon): (loc.first_seen, loc.last_seen)
            for loc in s.scalars(select(ReadLocation))
        }
    assert locations == {k: (min(v), max(v)) for k, v in spans.items()}
    result, _ = run(city, start=T0, end=NOW, limit=1000, **AREA)
    assert result.count > 0


def test_a_location_whose_reads_were_purged_is_no_hit(city: Database) -> None:
    with city.unit_of_work(info=CITY) as s:
        report = service.purge_reads(s, retention_hours=1, now=NOW + timedelta(days=2))
        assert report.deleted > 0
    with city.unit_of_work(readonly=True, info=CITY) as s:
        assert s.scalar(select(PlateRead.id).limit(1)) is None
        assert s.scalar(select(ReadLocation.checkpoint_code).limit(1)) is not None
    for probe_all in (False, True):
        limit = 1 if probe_all else 1000
        result, _ = run(city, start=T0, end=NOW, limit=limit, **AREA)
        assert result.reads == [] and result.truncated is False
        assert CoverageStatus.HIT not in {c.status for c in result.coverage}


# --- the plate condition against plain LIKE, on both databases --------------------------

CHARS = "苏京DEK0123"


@st.composite
def pattern_from(draw: st.DrawFn, plates: list[str]) -> str:
    """A pattern made from one of ``plates`` with one '?' and short runs around it (so
    that it is expanded), or drawn freely."""
    if draw(st.booleans()):
        return re.sub(
            r"\*+", "*", draw(st.text(st.sampled_from(CHARS + "??*"), min_size=3, max_size=8))
        )
    base = draw(st.sampled_from(plates))
    i = draw(st.integers(0, len(base) - 1))
    out = base[:i] + "?" + base[i + 1 :]
    lo = max(0, i - draw(st.integers(0, 2)))
    hi = min(len(out), i + 1 + draw(st.integers(0, 2)))
    return ("*" if lo > 0 else "") + out[lo:hi] + ("*" if hi < len(out) else "")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plates=st.lists(
        st.text(st.sampled_from(CHARS), min_size=3, max_size=8), min_size=1, max_size=30
    ),
    data=st.data(),
)
def test_the_plate_condition_finds_what_like_finds(
    db: Database, plates: list[str], data: st.DataObject
) -> None:
    pattern = data.draw(pattern_from(plates))
    with db.unit_of_work(info=CITY) as s:
        if not s.get(Checkpoint, 1):
            service.create_checkpoint(
                s,
                data=CheckpointCreate(
                    code="C1", name="C1", kind="police_checkpoint", lat=31.7, lon=119.8
                ),
                actor="test",
            )
        storage.ensure_partitions(s, days=[T0.date()])
        s.execute(delete(PlateRead))
        s.execute(
            insert(PlateRead),
            [
                {
                    "id": f"p{i}",
                    "checkpoint_code": "C1",
                    "captured_at": T0,
                    "received_at": T0,
                    "plate": p,
                    "direction": "in",
                    "lat": 0.0,
                    "lon": 0.0,
                    "hit": False,
                }
                for i, p in enumerate(plates)
            ],
        )
    like = pattern.replace("?", "_").replace("*", "%")
    with db.unit_of_work(readonly=True, info=CITY) as s:
        found = set(s.scalars(select(PlateRead.id).where(search.plate_clause(s, pattern))))
        plain = set(s.scalars(select(PlateRead.id).where(PlateRead.plate.like(like))))
    assert found == plain == {f"p{i}" for i, p in enumerate(plates) if _matches(pattern, p)}


# --- a '?' in the fixed start: prefix ranges of the plate index, on both databases ------

#: Patterns whose '?' is in the fixed start and joins a run of three: one prefix range of
#: the (plate, captured_at) index per character a plate can hold.
FIXED_START = ["苏D?23*", "苏D?2*", "苏?A2*", "苏D?23?", "苏D?2*K"]
#: Plates around those ranges (苏D023 up to 苏D024, …, 苏D黑23 up to 苏D黑24): at a bound,
#: just inside and just outside it, the first and last characters of the digits, the
#: letters and the province characters (whose UTF-8 bytes follow every ASCII byte), and
#: lowercase letters, which no stored plate holds but which a linguistic collation sorts
#: beside their capitals — orders in which it and a byte-wise comparison disagree.
EDGE_PLATES = [
    "苏D023", "苏D0231", "苏D024", "苏D0229", "苏D02", "苏D0", "苏D923", "苏D9239",
    "苏DA23", "苏DA23ab", "苏DA23挂", "苏DA24", "苏DA2a", "苏DA2Z", "苏DA2黑", "苏DA3",
    "苏DZ23", "苏DZ22", "苏D云23", "苏D黑23", "苏D黑24", "苏D黑2", "苏d023", "苏dA23",
    "苏Da23", "苏Da2", "苏Db23",
    "苏DA23K", "苏DA23KK", "苏DA2K", "苏京A2", "苏苏A21", "苏黑A3", "苏0A2", "京DA23",
    "苏E023", "苏C923",
]


def _written_in(pattern: str, plate: str) -> bool:
    """Whether ``plate`` matches ``pattern`` with each '?' standing for a character a
    stored plate can hold (:data:`search.PLATE_ALPHABET`), as the expansions do."""
    one = "[" + re.escape(search.PLATE_ALPHABET) + "]"
    rx = "".join(one if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, plate) is not None


def _store_plates(db: Database, plates: list[str], at: datetime) -> None:
    with db.unit_of_work(info=CITY) as s:
        if s.scalar(select(Checkpoint.id).where(Checkpoint.code == "C1")) is None:
            service.create_checkpoint(
                s,
                data=CheckpointCreate(
                    code="C1", name="C1", kind="police_checkpoint", lat=31.7, lon=119.8
                ),
                actor="test",
            )
        storage.ensure_partitions(s, days=[at.date(), (at - timedelta(days=2)).date()])
        s.execute(delete(PlateRead))
        rows = [(f"p{i}", p, at) for i, p in enumerate(plates)]
        # The same plates two days earlier, outside the window searched.
        rows += [(f"o{i}", p, at - timedelta(days=2)) for i, p in enumerate(plates)]
        if not rows:
            return
        s.execute(
            insert(PlateRead),
            [
                {
                    "id": rid,
                    "checkpoint_code": "C1",
                    "captured_at": t,
                    "received_at": t,
                    "plate": p,
                    "direction": "in",
                    "lat": 0.0,
                    "lon": 0.0,
                    "hit": False,
                }
                for rid, p, t in rows
            ],
        )


def test_a_fixed_start_unknown_is_served_by_prefix_ranges(db: Database) -> None:
    _store_plates(db, EDGE_PLATES, T0)
    with db.unit_of_work(readonly=True, info=CITY) as s:
        dialect = s.get_bind().dialect
        for pattern in FIXED_START:
            assert search._prefix_ranges(pattern)
            sql = str(search.plate_clause(s, pattern).compile(dialect=dialect))
            # One range per character a plate can hold, and neither trigram index.
            assert sql.count("plate_reads.plate >= ") == len(search.PLATE_ALPHABET), pattern
            assert sql.count("plate_reads.plate < ") == len(search.PLATE_ALPHABET), pattern
            assert "ANY" not in sql.upper() and storage.FTS_TABLE not in sql, pattern
            terms = search.SearchTerms(
                case_ref="C-1", reason=REASON, plate=pattern,
                start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1),
            )
            conds = search._where(s, terms, None)
            assert conds is not None
            found = set(s.scalars(select(PlateRead.id).where(*conds)))
            wanted = {f"p{i}" for i, p in enumerate(EDGE_PLATES) if _written_in(pattern, p)}
            assert wanted, pattern
            assert found == wanted, pattern
        if dialect.name == "postgresql":
            # The ranges are exact because the column, in the table and in each day
            # partition, compares byte-wise.
            collations = dict(s.execute(text(
                "SELECT table_name, collation_name FROM information_schema.columns "
                "WHERE column_name = 'plate' AND table_name LIKE 'plate_reads%'"
            )).all())
            assert len(collations) >= 3 and set(collations.values()) == {"C"}, collations


def test_the_plate_column_compares_byte_wise(db: Database) -> None:
    """Plates sort as their UTF-8 bytes (code points) on both databases, so a range from a
    prefix holds exactly the plates that start with it."""
    _store_plates(db, EDGE_PLATES, T0)
    with db.unit_of_work(readonly=True, info=CITY) as s:
        ordered = list(s.scalars(
            select(PlateRead.plate).where(PlateRead.captured_at == T0).order_by(PlateRead.plate)
        ))
        assert ordered == sorted(EDGE_PLATES)
        assert [p.encode() for p in ordered] == sorted(p.encode() for p in EDGE_PLATES)
        for prefix in ("苏D0", "苏DA2", "苏DA23", "苏D黑", "苏d"):
            inside = set(s.scalars(select(PlateRead.plate).where(
                PlateRead.captured_at == T0, PlateRead.plate >= prefix,
                PlateRead.plate < search._after(prefix),
            )))
            assert inside == {p for p in EDGE_PLATES if p.startswith(prefix)}, prefix


def test_a_partial_plate_over_several_days_gives_the_plain_answer(db: Database) -> None:
    """Matches spread over four days (four partitions on PostgreSQL, fetched a day at a
    time), many of them sharing their capture instant, cut at every kind of limit."""
    rng = random.Random(11)
    plates = ["苏DA23", "苏D0231", "苏DZ23K", "苏D黑23", "苏DA24", "苏DA2", "京A23X", "苏DA23挂"]
    instants = [T0 - timedelta(days=3) + timedelta(minutes=rng.randrange(0, 4 * 24 * 60))
                for _ in range(60)]
    instants += [datetime.combine(T0.date() - timedelta(days=d), datetime.min.time(), UTC)
                 for d in range(3)]  # at midnight, the first instant of a partition
    _store_plates(db, [], T0)
    with db.unit_of_work(info=CITY) as s:
        storage.ensure_partitions(s, days=sorted({t.date() for t in instants}))
        s.execute(insert(PlateRead), [
            {"id": f"m{i:03d}", "checkpoint_code": "C1", "captured_at": t, "received_at": t,
             "plate": rng.choice(plates), "direction": "in", "lat": 0.0, "lon": 0.0,
             "hit": False}
            for i, t in enumerate(rng.choice(instants) for _ in range(300))
        ])
    for pattern in ("苏D?23*", "苏DA*", "*A23*"):
        for limit in (1, 2, 7, 40, 150, 1000):
            result, checked = run(db, plate=pattern, start=T0 - timedelta(days=3), end=NOW,
                                  limit=limit)
            with db.unit_of_work(readonly=True, info=CITY) as s:
                ids, truncated, hits = expected(s, checked)
            assert [r.id for r in result.reads] == ids, (pattern, limit)
            assert result.truncated == truncated, (pattern, limit)
            assert {c.checkpoint for c in result.coverage} >= hits


@pytest.mark.parametrize("probe_all", [False, True], ids=["one-by-one", "in-time-order"])
def test_every_path_keeps_to_the_scope(
    city: Database, probe_all: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The city's reads and checkpoints lie in no jurisdiction: a district's analyst
    finds none of them, whichever way the search goes."""
    monkeypatch.setattr(search, "LOCATIONS_READ_ONE_BY_ONE", 0 if probe_all else 32)
    scope_hook.install()  # as the application does
    for terms in TERMS:
        for limit in (1, 1000):
            with city.unit_of_work(info={"scope": Scope("3201")}) as s:
                result = search.search_reads(
                    s,
                    terms=search.SearchTerms(
                        case_ref="C-1", reason=REASON, start=T0, end=NOW, limit=limit, **terms
                    ),
                    reasons=[REASON],
                    actor="t",
                    actor_role="analyst",
                    jurisdiction="3201",
                    now=NOW,
                )
            assert result.reads == [] and not result.truncated, terms
            assert result.coverage == [], terms
