"""Searching and exporting stored plate reads — for a case, with a reason, audited.

A search names a plate (exact, or partial with ``?`` and ``*``), a checkpoint or an area
(a circle or a polygon), within a time window; it is refused without a case reference
and a reason from the configured list, and each accepted search (or export) writes
exactly one audit row with its terms and the number of reads returned. Only reads in the
caller's jurisdiction are found (the session's scope). A checkpoint that was offline, or
not yet registered, during the window is reported as *no data* rather than *no hit*.

Partial plates: on PostgreSQL ``LIKE`` served by the ``pg_trgm`` GIN index of each day
partition or, for a pattern with a fixed start, by the range of the ``(plate,
captured_at)`` index that the planner takes from that start (the ``plate`` column has
the ``"C"`` collation, so it compares plates byte-wise, as SQLite does). On SQLite, when
the pattern has a literal run of three or more characters, the FTS5 trigram index
``plate_reads_fts`` (:mod:`anwang.checkpoints.storage`) finds the candidate rows and
``LIKE`` checks them. A pattern without such a run, but with a ``?`` that joins runs
into one of three (``*3?8K*``, ``苏D?23*``), is expanded: the ``?`` is written as each
character a plate can hold (:data:`PLATE_ALPHABET`), and the expansions' runs serve the
index. When the ``?`` is in the pattern's fixed start (``苏D?23*``), on both databases:
OR'ed prefix ranges of the ``(plate, captured_at)`` index, one per expansion
(``plate >= '苏DA23' AND plate < '苏DA24'``), whose entries answer the time window
before any row is read (on PostgreSQL a bitmap index scan per range on each day
partition), and ``LIKE`` checking the rows found. Elsewhere (``*3?8K*``): ``plate LIKE
ANY(...)`` on PostgreSQL (a bitmap scan of the trigram index per expansion, each
candidate rechecked); on SQLite OR'ed FTS5 phrases, ``LIKE`` checking each candidate.
On SQLite any other pattern uses the prefix range of its fixed start on the ``(plate,
captured_at)`` index plus ``LIKE``, or ``LIKE`` over the time window when it starts
with a wildcard. A partial plate's matches are then read in one pass, key and checkpoint
only, for both the checkpoints with hits and the first reads in time order
(:func:`_matches_in_one_pass`).

Areas: the read positions inside the area come from ``read_locations`` (a row per
checkpoint and position, with the span of its reads there), not from the window's reads;
then each position's reads on the ``(checkpoint_code, captured_at)`` index, or, over many
positions, the window in time order stopped at the limit with one probe per position for
the checkpoints with hits (:func:`_find`). Whatever the path, the reads, their order, the
truncation and the coverage are those of the plain query.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shapely.geometry import Point, Polygon  # type: ignore[import-untyped]
from sqlalchemy import (
    String,
    and_,
    any_,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from anwang.checkpoints import plates, storage
from anwang.checkpoints.models import Checkpoint, CheckpointOutage, PlateRead, ReadLocation
from anwang.checkpoints.schemas import Coverage, CoverageStatus, OutageOut
from anwang.checkpoints.service import _chunks, _now
from anwang.core import audit
from anwang.core.errors import FieldError, ValidationFailed
from anwang.core.geo import EARTH_RADIUS_M, distance_m
from anwang.watchlist.matcher import validate_pattern

#: Most reads one search returns; an export may return more.
SEARCH_LIMIT = 10_000
EXPORT_LIMIT = 100_000
#: Largest circle of an area search.
MAX_RADIUS_M = 50_000
MAX_POLYGON_POINTS = 200
#: A search without ``from`` looks this far back from ``to``.
DEFAULT_WINDOW = timedelta(days=7)
#: An area search (without plate or checkpoint) over at most this many read locations
#: reads each location on its own; over more, it walks the window in time order.
LOCATIONS_READ_ONE_BY_ONE = 32


def _alphabet(rules: plates.PlateRules) -> frozenset[str]:
    """Every character a plate of ``rules`` can hold."""
    chars = set(rules.letters) | set(rules.digits) | set(rules.markers)
    for province in rules.provinces:
        chars.update(province)
    return frozenset(chars)


#: The characters a stored plate can hold: reads are stored only after parsing by the
#: plate rules (:func:`anwang.checkpoints.reads.validate_reads`), so every stored plate is
#: written in this alphabet. A ``?`` is expanded into it (:func:`expand_unknown`).
PLATE_ALPHABET = "".join(sorted(_alphabet(plates.MAINLAND_CN)))


@dataclass(frozen=True)
class SearchTerms:
    """What a search asks for. At least one of ``plate``, ``checkpoint`` or an area
    must be given: a search is about a vehicle or a place, never "everything"."""

    case_ref: str
    reason: str
    plate: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    checkpoint: str | None = None
    near: tuple[float, float] | None = None
    radius_m: float | None = None
    #: (lon, lat) vertices.
    polygon: tuple[tuple[float, float], ...] | None = None
    limit: int = 1000

    def as_audit(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "plate": self.plate, "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None, "checkpoint": self.checkpoint,
            "near": list(self.near) if self.near else None, "radius_m": self.radius_m,
            "polygon": [list(p) for p in self.polygon] if self.polygon else None,
            "limit": self.limit,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class SearchResult:
    reads: list[PlateRead]
    count: int
    truncated: bool
    coverage: list[Coverage]
    start: datetime
    end: datetime


def parse_near(value: str) -> tuple[float, float]:
    """``"lat,lon"`` → (lat, lon)."""
    try:
        lat_s, lon_s = value.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise ValidationFailed.on("near", "write it as lat,lon") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90
            and -180 <= lon <= 180):
        raise ValidationFailed.on("near", "latitude -90..90, longitude -180..180")
    return lat, lon


def parse_polygon(value: str) -> tuple[tuple[float, float], ...]:
    """``"lon,lat;lon,lat;..."`` (at least 3 vertices, the ring closes itself)."""
    try:
        points = tuple(
            (float(a), float(b))
            for a, b in (p.split(",") for p in value.strip().strip(";").split(";"))
        )
    except ValueError:
        raise ValidationFailed.on("polygon", "write it as lon,lat;lon,lat;lon,lat") from None
    if not 3 <= len(points) <= MAX_POLYGON_POINTS + 1:
        raise ValidationFailed.on("polygon", f"3 to {MAX_POLYGON_POINTS} vertices")
    if not all(math.isfinite(x) and math.isfinite(y) and -180 <= x <= 180 and -90 <= y <= 90
               for x, y in points):
        raise ValidationFailed.on("polygon", "longitude -180..180, latitude -90..90")
    if not Polygon(points).is_valid:
        raise ValidationFailed.on("polygon", "the ring crosses itself")
    return points


def _check_terms(terms: SearchTerms, reasons: Sequence[str], now: datetime,
                 max_limit: int) -> SearchTerms:
    """The terms with defaults filled in, or ValidationFailed (nothing is searched or
    audited then)."""
    errors = []
    if not terms.case_ref.strip():
        errors.append(FieldError("case_ref", "a case reference is required"))
    elif len(terms.case_ref) > 100:
        errors.append(FieldError("case_ref", "at most 100 characters"))
    if terms.reason not in reasons:
        errors.append(FieldError("reason", "one of " + ", ".join(reasons)))
    if terms.plate is None and terms.checkpoint is None and terms.near is None \
            and terms.polygon is None:
        errors.append(FieldError("plate", "name a plate, a checkpoint or an area"))
    if (terms.near is None) != (terms.radius_m is None):
        errors.append(FieldError("radius_m", "near and radius_m go together"))
    if terms.radius_m is not None and not 0 < terms.radius_m <= MAX_RADIUS_M:
        errors.append(FieldError("radius_m", f"1..{MAX_RADIUS_M} metres"))
    if terms.near is not None and terms.polygon is not None:
        errors.append(FieldError("polygon", "give either near or polygon"))
    if not 1 <= terms.limit <= max_limit:
        errors.append(FieldError("limit", f"1..{max_limit}"))
    for name, value in (("from", terms.start), ("to", terms.end)):
        if value is not None and value.tzinfo is None:
            errors.append(FieldError(name, "needs a UTC offset"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors),
                               code="anwang.checkpoints.search_refused", errors=errors)
    end = (terms.end or now).astimezone(UTC)
    start = (terms.start or end - DEFAULT_WINDOW).astimezone(UTC)
    if start >= end:
        raise ValidationFailed.on("from", "must be before to",
                                  code="anwang.checkpoints.search_refused")
    plate = terms.plate
    if plate is not None:
        plate = _plate_term(plate)
    return replace(terms, case_ref=terms.case_ref.strip(), start=start, end=end, plate=plate)


def _plate_term(text: str) -> str:
    """A plate normalised like reads are, or a partial pattern (``?`` one character,
    ``*`` any run) normalised like watch-list patterns are."""
    norm = plates.normalise(text)
    if "?" in norm or "*" in norm:
        try:
            return validate_pattern(norm)
        except ValueError as exc:
            raise ValidationFailed.on("plate", str(exc),
                                      code="anwang.checkpoints.search_refused") from None
    if not norm:
        raise ValidationFailed.on("plate", "empty", code="anwang.checkpoints.search_refused")
    return norm


def _inside(terms: SearchTerms) -> Callable[[float, float], bool] | None:
    if terms.near is not None and terms.radius_m is not None:
        lat0, lon0 = terms.near
        r = terms.radius_m

        def in_circle(lat: float, lon: float) -> bool:
            return distance_m(lat0, lon0, lat, lon) <= r

        return in_circle
    if terms.polygon is not None:
        poly = Polygon(terms.polygon)

        def in_polygon(lat: float, lon: float) -> bool:
            return bool(poly.covers(Point(lon, lat)))

        return in_polygon
    return None


def _bbox(terms: SearchTerms) -> tuple[float, float, float, float] | None:
    """(min lat, max lat, min lon, max lon) around the area."""
    if terms.near is not None and terms.radius_m is not None:
        lat0, lon0 = terms.near
        dlat = math.degrees(terms.radius_m / EARTH_RADIUS_M)
        dlon = dlat / max(math.cos(math.radians(lat0)), 1e-6)
        return lat0 - dlat, lat0 + dlat, lon0 - dlon, lon0 + dlon
    if terms.polygon is not None:
        xs = [p[0] for p in terms.polygon]
        ys = [p[1] for p in terms.polygon]
        return min(ys), max(ys), min(xs), max(xs)
    return None


def expand_unknown(pattern: str, alphabet: str = PLATE_ALPHABET) -> list[str] | None:
    """For a partial pattern without a literal run of three characters (which no trigram
    index can serve), the patterns made by writing each character of ``alphabet`` in
    place of one ``?`` — the one that joins the longest run, when that run reaches three
    characters (``*3?8K*`` → ``*3A8K*``, ``*308K*``, …). None when the pattern has such a
    run already, or no ``?`` makes one.

    A plate written in ``alphabet`` matches the pattern exactly when it matches one of the
    expansions, so the expansions, each with its run, select the same plates."""
    if storage.fts_query(pattern) is not None:
        return None
    best: tuple[int, int] | None = None
    for i, c in enumerate(pattern):
        if c != "?":
            continue
        left = len(re.split(r"[?*]", pattern[:i])[-1])
        right = len(re.split(r"[?*]", pattern[i + 1:])[0])
        run = left + 1 + right
        if run >= 3 and (best is None or run > best[1]):
            best = (i, run)
    if best is None:
        return None
    i = best[0]
    return [pattern[:i] + ch + pattern[i + 1:] for ch in alphabet]


def _written(pattern: str, expansion: str) -> int:
    """Where an expansion of ``pattern`` has a character written for the ``?``."""
    return next(k for k, (a, b) in enumerate(zip(pattern, expansion, strict=True)) if a != b)


def _anchored_expansion(pattern: str, expansion: str) -> bool:
    """Whether the written character is part of the pattern's fixed start."""
    return not any(c in "?*" for c in pattern[: _written(pattern, expansion)])


def _prefix_ranges(plate: str) -> bool:
    """Whether the plate condition is a union of prefix ranges of the ``(plate,
    captured_at)`` index: for a pattern expanded at a character of its fixed start. Both
    databases compare plates byte-wise — SQLite all text, PostgreSQL the ``plate``
    column by its ``"C"`` collation — so the plates in the range from a prefix to the
    prefix with its last character raised by one are exactly those that start with it."""
    if "?" not in plate and "*" not in plate:
        return False
    expanded = expand_unknown(plate)
    return expanded is not None and _anchored_expansion(plate, expanded[0])


def _expansion_phrase(pattern: str, expansion: str) -> str:
    """The FTS5 phrase of one expansion of ``pattern``: four characters of its run
    around the written character — fewer trigrams to intersect than the whole run,
    whose leading characters (province, issuer) are the commonest and cost the most.
    Still a superset of the matches (LIKE checks them)."""
    i = _written(pattern, expansion)
    lo = i
    while lo > 0 and expansion[lo - 1] not in "?*":
        lo -= 1
    hi = i + 1
    while hi < len(expansion) and expansion[hi] not in "?*":
        hi += 1
    start = max(lo, min(i, hi - 4))
    run = expansion[start:min(hi, start + 4)]
    return '"' + run.replace('"', '""') + '"'


def _like(pattern: str) -> str:
    return pattern.replace("?", "_").replace("*", "%")


def _after(prefix: str) -> str:
    """The least string above every string that starts with ``prefix``, compared
    byte-wise (code point order, in UTF-8): the prefix with its last character raised
    by one (past the surrogates, which UTF-8 does not encode)."""
    code = ord(prefix[-1]) + 1
    return prefix[:-1] + chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)


def plate_clause(session: Session, plate: str) -> ColumnElement[bool]:
    """The condition on ``plate_reads`` for a normalised plate or partial pattern
    (``?`` one character, ``*`` any run), in the form the session's database has an
    index for (see the module docstring)."""
    if "?" not in plate and "*" not in plate:
        return PlateRead.plate == plate
    clause: ColumnElement[bool] = PlateRead.plate.like(_like(plate))
    expanded = expand_unknown(plate)
    if _prefix_ranges(plate):
        assert expanded is not None
        # The written character is in the pattern's fixed start (苏D?23*): each
        # expansion is a narrow prefix range of the (plate, captured_at) index, whose
        # entries also answer the time window, so only matches are looked up (on
        # PostgreSQL a bitmap index scan per range on each day partition, OR'ed).
        ranges = []
        for p in expanded:
            prefix = re.split(r"[?*]", p)[0]
            ranges.append(and_(PlateRead.plate >= prefix, PlateRead.plate < _after(prefix)))
        # The pattern's LIKE checks the rows the ranges find. It is written on an
        # expression that no index holds: on the plate itself, PostgreSQL's planner
        # would take the LIKE to the trigram index (and, the column being "C"-collated,
        # its fixed start to the plate index: 苏D, most of the reads) instead of the
        # ranges, misjudging how many rows its trigrams select.
        unindexed = PlateRead.plate + literal_column("''")
        return and_(or_(*ranges), unindexed.like(_like(plate)))
    if session.get_bind().dialect.name != "sqlite":
        if expanded is None:
            # PostgreSQL's pg_trgm GIN index serves the LIKE; so may the (plate,
            # captured_at) index, for the prefix the planner takes from an anchored
            # LIKE on the "C"-collated column.
            return clause
        # One LIKE per expansion, each with a run of three for the GIN index (a bitmap
        # scan per array element). Together they select what the pattern selects; the
        # pattern's own LIKE is left out, or the planner may take its short trigrams to
        # the index instead.
        likes = literal([_like(p) for p in expanded], ARRAY(String))
        return PlateRead.plate.like(any_(likes))
    if expanded is None:
        query = storage.fts_query(plate)
    else:
        query = " OR ".join(_expansion_phrase(plate, p) for p in expanded)
    if query is not None:
        # The trigram index gives a superset of the matches (every literal run of three
        # or more characters occurs in the plate); LIKE keeps the exact ones.
        candidates = text(
            f"plate_reads.rowid IN (SELECT rowid FROM {storage.FTS_TABLE} "
            f"WHERE {storage.FTS_TABLE} MATCH :fts_query)"
        ).bindparams(fts_query=query)
        return and_(candidates, clause)
    prefix = plate[: min(plate.find(c) for c in "?*" if c in plate)]
    if prefix:
        # SQLite compares text byte-wise: the prefix range is exact and uses the
        # (plate, captured_at) index.
        clause = and_(PlateRead.plate >= prefix, PlateRead.plate < _after(prefix), clause)
    return clause


@dataclass(frozen=True)
class _Location:
    """A read position inside the area, with the span in which its checkpoint's reads
    there may fall (from ``read_locations``, cut to the window)."""

    checkpoint: str
    lat: float
    lon: float
    start: datetime
    end: datetime
    #: The checkpoint read from no other position in the window: all its reads there
    #: are at this one, and the position need not be tested (which also keeps
    #: PostgreSQL's planner from misjudging how many reads pass that test).
    alone: bool

    def conds(self) -> list[ColumnElement[bool]]:
        conds = [PlateRead.checkpoint_code == self.checkpoint,
                 PlateRead.captured_at >= self.start, PlateRead.captured_at <= self.end]
        if not self.alone:
            conds += [PlateRead.lat == self.lat, PlateRead.lon == self.lon]
        return conds


def _locations(session: Session, terms: SearchTerms) -> list[_Location] | None:
    """The read locations inside the search's area whose reads may fall in the window
    (None: the search has no area)."""
    assert terms.start is not None and terms.end is not None
    inside = _inside(terms)
    box = _bbox(terms)
    if inside is None or box is None:
        return None
    lat0, lat1, lon0, lon1 = box
    stmt = select(ReadLocation).where(
        ReadLocation.lat.between(lat0, lat1), ReadLocation.lon.between(lon0, lon1),
        ReadLocation.first_seen <= terms.end, ReadLocation.last_seen >= terms.start,
    ).order_by(ReadLocation.checkpoint_code, ReadLocation.lat, ReadLocation.lon)
    if terms.checkpoint is not None:
        stmt = stmt.where(ReadLocation.checkpoint_code == terms.checkpoint)
    found = [loc for loc in session.scalars(stmt) if inside(loc.lat, loc.lon)]
    # How many positions (inside the area or not) each of their checkpoints read from
    # in the window.
    positions: dict[str, int] = {}
    for part in _chunks(sorted({loc.checkpoint_code for loc in found})):
        positions.update((code, n) for code, n in session.execute(
            select(ReadLocation.checkpoint_code, func.count()).where(
                ReadLocation.checkpoint_code.in_(part),
                ReadLocation.first_seen <= terms.end, ReadLocation.last_seen >= terms.start,
            ).group_by(ReadLocation.checkpoint_code)
        ))
    return [
        _Location(loc.checkpoint_code, loc.lat, loc.lon, max(terms.start, loc.first_seen),
                  min(terms.end, loc.last_seen), positions.get(loc.checkpoint_code) == 1)
        for loc in found
    ]


def _where(
    session: Session, terms: SearchTerms, locations: list[_Location] | None
) -> list[ColumnElement[bool]] | None:
    """The conditions of a search (None: the area holds no read location)."""
    assert terms.start is not None and terms.end is not None
    at: Any = PlateRead.captured_at
    if terms.plate is not None and _prefix_ranges(terms.plate) \
            and session.get_bind().dialect.name == "sqlite":
        # "+captured_at": SQLite then takes the prefix ranges of the plate index (and
        # tests the window on its entries) rather than walking the window. (PostgreSQL
        # needs no hint, and prunes its day partitions on the plain column.)
        at = type_coerce(literal_column(f"+{PlateRead.__tablename__}.captured_at"),
                         PlateRead.captured_at.type)
    conds: list[ColumnElement[bool]] = [at >= terms.start, at <= terms.end]
    if terms.plate is not None:
        conds.append(plate_clause(session, terms.plate))
    if terms.checkpoint is not None:
        conds.append(PlateRead.checkpoint_code == terms.checkpoint)
    if locations is not None:
        # Reads carry their checkpoint's position at the time, and there are few
        # distinct positions: select the reads at those inside the area.
        points = sorted({(loc.lat, loc.lon) for loc in locations})
        if not points:
            return None
        conds.append(tuple_(PlateRead.lat, PlateRead.lon).in_(points))
    return conds


_Key = tuple[datetime, str]


def _cut(keys: list[_Key], limit: int) -> datetime | None:
    """The capture time of the ``limit + 1``-th earliest key (None: there are fewer)."""
    if len(keys) <= limit:
        return None
    return sorted(k[0] for k in keys)[limit]


def _fetch(session: Session, keys: list[_Key], limit: int) -> list[PlateRead]:
    """The first ``limit + 1`` reads, in the search's order, of the reads keyed
    ``(captured_at, id)`` in ``keys``, which must hold every matching read captured
    before the ``limit + 1``-th earliest key and every one captured with it. The
    database orders them (``captured_at, id``), as the one-statement search does."""
    cut = _cut(keys, limit)
    wanted = {k for k in keys if cut is None or k[0] <= cut}
    if not wanted:
        return []
    # In pieces of whole capture instants, in time order: each piece is one statement on
    # the key, ordered by the database, and the pieces follow each other in time. On
    # PostgreSQL a piece also ends with its UTC day, so that its ids are looked up in that
    # day's partition alone rather than in every partition its span reaches.
    by_day = session.get_bind().dialect.name == "postgresql"
    ordered = sorted(wanted, key=lambda k: k[0])
    out: list[PlateRead] = []
    i = 0
    while i < len(ordered) and len(out) <= limit:
        j = min(i + 2000, len(ordered))
        if by_day:
            day = storage.day_of(ordered[i][0])
            j = next((m for m in range(i + 1, j) if storage.day_of(ordered[m][0]) != day), j)
        while j < len(ordered) and ordered[j][0] == ordered[j - 1][0]:
            j += 1
        part = ordered[i:j]
        rows = session.scalars(
            select(PlateRead).where(
                PlateRead.id.in_(sorted({k[1] for k in part})),
                PlateRead.captured_at >= part[0][0], PlateRead.captured_at <= part[-1][0],
            ).order_by(PlateRead.captured_at, PlateRead.id)
        )
        out.extend(r for r in rows if (r.captured_at, r.id) in wanted)
        i = j
    return out[: limit + 1]


def _matches_in_one_pass(
    session: Session, conds: list[ColumnElement[bool]], limit: int
) -> tuple[list[PlateRead], bool, set[str]]:
    """One pass over every match, taking only its key and checkpoint: the checkpoints
    with hits, and the keys of the earliest reads; then those reads by their key.
    For partial plates, whose matches the index finds all at once (not in time order):
    one pass instead of one for the reads and another for the checkpoints."""
    kept: list[_Key] = []
    codes: set[str] = set()
    n = 0
    cut: datetime | None = None
    stmt = select(PlateRead.captured_at, PlateRead.id, PlateRead.checkpoint_code).where(*conds)
    if session.get_bind().dialect.name == "sqlite":
        # Rows as SQLite finds them. (Not on PostgreSQL: a server-side cursor would be
        # planned for its first rows, not for all of them.)
        stmt = stmt.execution_options(yield_per=5000)
    rows = session.execute(stmt)
    for at, rid, code in rows:
        n += 1
        codes.add(code)
        if cut is None or at <= cut:
            kept.append((at, rid))
            if len(kept) > 4 * (limit + 1) + 1000:
                cut = _cut(kept, limit)
                kept = [k for k in kept if cut is None or k[0] <= cut]
    return _fetch(session, kept, limit), n > limit, codes


def _by_location(
    session: Session, locations: list[_Location], limit: int
) -> tuple[list[PlateRead], bool, set[str]]:
    """An area search over few read locations: the first ``limit + 1`` keys at each
    location on the ``(checkpoint_code, captured_at)`` index (a location that has one
    is a hit), then the earliest of all of them.

    Each location's keys are taken in capture order alone, which the index gives
    (PostgreSQL merges its day partitions' index scans and stops at the limit): what a
    location's limit cut off within its last instant is added when that instant is the
    overall cut, so every read up to the cut is among the keys."""
    keys: list[_Key] = []
    codes: set[str] = set()
    full: list[tuple[_Location, datetime]] = []
    for loc in locations:
        if loc.start > loc.end:
            continue
        found = [(at, rid) for at, rid in session.execute(
            select(PlateRead.captured_at, PlateRead.id).where(*loc.conds())
            .order_by(PlateRead.captured_at).limit(limit + 1)
        )]
        if found:
            codes.add(loc.checkpoint)
        if len(found) > limit:
            full.append((loc, found[-1][0]))
        keys.extend(found)
    cut = _cut(keys, limit)
    for loc, last in full:
        if cut is not None and last == cut:
            # Reads at this location captured in the same instant as the cut may have
            # been left out by its limit: add them all.
            keys.extend((at, rid) for at, rid in session.execute(
                select(PlateRead.captured_at, PlateRead.id)
                .where(*loc.conds(), PlateRead.captured_at == cut)
            ))
    keys = list(set(keys))
    return _fetch(session, keys, limit), len(keys) > limit, codes


def _probe(session: Session, locations: list[_Location], known: set[str]) -> set[str]:
    """The checkpoints of ``locations``, other than ``known``, with a read in the
    window at one of them: a probe per location that stops at its first read."""
    found: set[str] = set()
    for loc in locations:
        if loc.checkpoint in known or loc.checkpoint in found or loc.start > loc.end:
            continue
        stmt = select(PlateRead.checkpoint_code).where(*loc.conds()).limit(1)
        if session.scalar(stmt) is not None:
            found.add(loc.checkpoint)
    return found


def _coverage(
    session: Session, terms: SearchTerms, hit_codes: set[str], now: datetime
) -> list[Coverage]:
    """Per checkpoint of the search: hit, no hit, or no data (offline or not yet
    registered during part of the window, or never heard from)."""
    assert terms.start is not None and terms.end is not None
    stmt = select(Checkpoint).order_by(Checkpoint.code)
    explicit = True
    if terms.checkpoint is not None:
        stmt = stmt.where(Checkpoint.code == terms.checkpoint)
    elif (inside := _inside(terms)) is not None:
        box = _bbox(terms)
        assert box is not None
        stmt = stmt.where(Checkpoint.lat.between(box[0], box[1]),
                          Checkpoint.lon.between(box[2], box[3]))
    else:
        explicit = False
        # A plate search lists only the checkpoints with a hit or without data: load
        # only those that can be either.
        stmt = stmt.where(or_(
            Checkpoint.code.in_(sorted(hit_codes)),
            Checkpoint.created_at > terms.start,
            Checkpoint.last_read_at.is_(None),
            Checkpoint.code.in_(select(CheckpointOutage.checkpoint_code).where(
                CheckpointOutage.started_at < terms.end,
                or_(CheckpointOutage.ended_at.is_(None),
                    CheckpointOutage.ended_at > terms.start),
            )),
        ))
    cps = [cp for cp in session.scalars(stmt)
           if terms.checkpoint is not None or inside is None or inside(cp.lat, cp.lon)]
    codes = [cp.code for cp in cps]
    outages: dict[str, list[OutageOut]] = {}
    for part in _chunks(codes):
        for o in session.scalars(
            select(CheckpointOutage).where(
                CheckpointOutage.checkpoint_code.in_(part),
                CheckpointOutage.started_at < terms.end,
                or_(CheckpointOutage.ended_at.is_(None), CheckpointOutage.ended_at > terms.start),
            ).order_by(CheckpointOutage.started_at)
        ):
            outages.setdefault(o.checkpoint_code, []).append(OutageOut.model_validate(o))
    out = []
    for cp in cps:
        gaps = list(outages.get(cp.code, []))
        if cp.created_at > terms.start:
            gaps.insert(0, OutageOut(started_at=terms.start, detected_at=cp.created_at,
                                     ended_at=min(cp.created_at, terms.end)))
        never = cp.last_read_at is None
        if cp.code in hit_codes:
            status = CoverageStatus.HIT
        elif gaps or never:
            status = CoverageStatus.NO_DATA
        else:
            status = CoverageStatus.NO_HIT
        if not explicit and status is CoverageStatus.NO_HIT:
            continue
        out.append(Coverage(checkpoint=cp.code, name=cp.name, status=status, outages=gaps))
    return out


def _find(session: Session, terms: SearchTerms) -> tuple[list[PlateRead], bool, set[str]]:
    """The first ``limit`` reads of a search in time order (of ``limit + 1`` fetched),
    whether there were more, and the checkpoints with hits — each the same as from the
    one statement ``SELECT … WHERE <terms> ORDER BY captured_at, id LIMIT limit + 1``
    and a ``SELECT DISTINCT checkpoint_code`` over every match, found the cheapest way
    the terms allow:

    * a checkpoint: its reads on the ``(checkpoint_code, captured_at)`` index, stopped
      after ``limit + 1``; it is the only checkpoint that can have hits.
    * a partial plate: :func:`_matches_in_one_pass`.
    * an exact plate: its reads on the ``(plate, captured_at)`` index; the checkpoints
      with hits come from the reads unless there were more than the limit.
    * only an area: the read locations inside it from ``read_locations``; over a few,
      :func:`_by_location`; over many, the window in time order stopped after ``limit
      + 1`` reads at them and, when there were more, :func:`_probe` for the checkpoints.
    """
    locations = _locations(session, terms)
    conds = _where(session, terms, locations)
    if conds is None:
        return [], False, set()
    limit = terms.limit
    partial = terms.plate is not None and ("?" in terms.plate or "*" in terms.plate)
    if terms.checkpoint is None and partial:
        return _matches_in_one_pass(session, conds, limit)
    if terms.checkpoint is None and terms.plate is None and locations is not None \
            and len(locations) <= LOCATIONS_READ_ONE_BY_ONE:
        return _by_location(session, locations, limit)
    reads = list(session.scalars(
        select(PlateRead).where(*conds)
        .order_by(PlateRead.captured_at, PlateRead.id).limit(limit + 1)
    ))
    truncated = len(reads) > limit
    hit_codes = {r.checkpoint_code for r in reads}
    if truncated and terms.checkpoint is None:
        if terms.plate is None and locations is not None:
            hit_codes |= _probe(session, locations, hit_codes)
        else:
            hit_codes = set(session.scalars(
                select(PlateRead.checkpoint_code).distinct().where(*conds)))
    return reads, truncated, hit_codes


def search_reads(
    session: Session,
    *,
    terms: SearchTerms,
    reasons: Sequence[str],
    actor: str,
    actor_role: str | None,
    jurisdiction: str | None,
    now: datetime | None = None,
    export: str | None = None,
    via: str = "api",
) -> SearchResult:
    """Search stored reads for a case, in time order, and write exactly one audit row
    (``anwang.checkpoints.reads.searched``, or ``.exported`` with ``export`` set to the
    format) with the terms and the number of reads returned.

    Refused with ``ValidationFailed`` (nothing searched, nothing audited) without a case
    reference, with a reason not in ``reasons``, or without a plate, checkpoint or area.
    Only reads in the session's scope are found.
    """
    now = _now(now)
    terms = _check_terms(terms, reasons, now, EXPORT_LIMIT if export else SEARCH_LIMIT)
    assert terms.start is not None and terms.end is not None
    reads, truncated, hit_codes = _find(session, terms)
    reads = reads[: terms.limit]
    coverage = _coverage(session, terms, hit_codes, now)
    action = "anwang.checkpoints.reads.exported" if export else "anwang.checkpoints.reads.searched"
    data = {**terms.as_audit(), "via": via, "truncated": truncated}
    if export:
        data["format"] = export
    audit.record(
        session, action, actor=actor, actor_role=actor_role, subject=terms.plate,
        reason=terms.reason, case_ref=terms.case_ref, result_count=len(reads),
        jurisdiction=jurisdiction, data=data,
    )
    return SearchResult(reads=reads, count=len(reads), truncated=truncated, coverage=coverage,
                        start=terms.start, end=terms.end)


EXPORT_COLUMNS = (
    "id", "captured_at", "checkpoint_code", "plate", "plate_kind", "plate_color",
    "confidence", "lane", "direction", "lat", "lon", "jurisdiction_code", "image_ref",
)


def export_csv(reads: Sequence[PlateRead]) -> str:
    """The reads as CSV (UTF-8, a header row, times in RFC 3339 UTC)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in reads:
        w.writerow([
            r.captured_at.isoformat() if c == "captured_at" else
            ("" if getattr(r, c) is None else getattr(r, c))
            for c in EXPORT_COLUMNS
        ])
    return buf.getvalue()


def export_geojson(reads: Sequence[PlateRead]) -> dict[str, Any]:
    """The reads as a FeatureCollection of Points, in time order, plus one LineString
    feature per plate joining its reads (the vehicle's route)."""
    features: list[dict[str, Any]] = []
    routes: dict[str, list[list[float]]] = {}
    for r in reads:
        props = {c: getattr(r, c) for c in EXPORT_COLUMNS if c not in ("lat", "lon")}
        props["captured_at"] = r.captured_at.isoformat()
        features.append({"type": "Feature",
                         "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]},
                         "properties": props})
        routes.setdefault(r.plate, []).append([r.lon, r.lat])
    for plate, coords in routes.items():
        if len(coords) >= 2:
            features.append({"type": "Feature",
                             "geometry": {"type": "LineString", "coordinates": coords},
                             "properties": {"plate": plate, "route": True}})
    return {"type": "FeatureCollection", "features": features}
