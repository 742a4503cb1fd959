"""Searching and exporting stored plate reads — for a case, with a reason, audited.

A search names a plate (exact, or partial with ``?`` and ``*``), a checkpoint or an area
(a circle or a polygon), within a time window; it is refused without a case reference
and a reason from the configured list, and each accepted search (or export) writes
exactly one audit row with its terms and the number of reads returned. Only reads in the
caller's jurisdiction are found (the session's scope). A checkpoint that was offline, or
not yet registered, during the window is reported as *no data* rather than *no hit*.

Partial plates: on PostgreSQL ``LIKE`` served by the ``pg_trgm`` GIN index of each day
partition. On SQLite, when the pattern has a literal run of three or more characters,
the FTS5 trigram index ``plate_reads_fts`` (:mod:`anwang.checkpoints.storage`) finds the
candidate rows and ``LIKE`` checks them; a pattern without such a run uses the prefix
range of its fixed start on the ``(plate, captured_at)`` index plus ``LIKE``, or ``LIKE``
over the time window when it starts with a wildcard.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shapely.geometry import Point, Polygon  # type: ignore[import-untyped]
from sqlalchemy import and_, or_, select, text, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from anwang.checkpoints import plates, storage
from anwang.checkpoints.models import Checkpoint, CheckpointOutage, PlateRead
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


def plate_clause(session: Session, plate: str) -> ColumnElement[bool]:
    """The condition on ``plate_reads`` for a normalised plate or partial pattern
    (``?`` one character, ``*`` any run), in the form the session's database has an
    index for (see the module docstring)."""
    if "?" not in plate and "*" not in plate:
        return PlateRead.plate == plate
    like = plate.replace("?", "_").replace("*", "%")
    clause: ColumnElement[bool] = PlateRead.plate.like(like)
    if session.get_bind().dialect.name != "sqlite":
        return clause  # PostgreSQL's pg_trgm GIN index serves the LIKE.
    query = storage.fts_query(plate)
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
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        clause = and_(PlateRead.plate >= prefix, PlateRead.plate < upper, clause)
    return clause


def _where(session: Session, terms: SearchTerms) -> list[ColumnElement[bool]] | None:
    """The conditions of a search (None: the area holds no read location)."""
    assert terms.start is not None and terms.end is not None
    conds: list[ColumnElement[bool]] = [
        PlateRead.captured_at >= terms.start, PlateRead.captured_at <= terms.end,
    ]
    if terms.plate is not None:
        conds.append(plate_clause(session, terms.plate))
    if terms.checkpoint is not None:
        conds.append(PlateRead.checkpoint_code == terms.checkpoint)
    inside = _inside(terms)
    box = _bbox(terms)
    if inside is not None and box is not None:
        # Reads carry their checkpoint's location, and there are few distinct
        # locations: find those in the area exactly, then select reads at them.
        lat0, lat1, lon0, lon1 = box
        locations = session.execute(
            select(PlateRead.lat, PlateRead.lon).distinct().where(
                *conds, PlateRead.lat.between(lat0, lat1), PlateRead.lon.between(lon0, lon1)
            )
        ).all()
        points = [(la, lo) for la, lo in locations if inside(la, lo)]
        if not points:
            return None
        conds.append(tuple_(PlateRead.lat, PlateRead.lon).in_(points))
    return conds


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
    conds = _where(session, terms)
    reads: list[PlateRead] = []
    hit_codes: set[str] = set()
    if conds is not None:
        reads = list(session.scalars(
            select(PlateRead).where(*conds)
            .order_by(PlateRead.captured_at, PlateRead.id).limit(terms.limit + 1)
        ))
        hit_codes = set(session.scalars(select(PlateRead.checkpoint_code).distinct()
                                        .where(*conds)))
    truncated = len(reads) > terms.limit
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
