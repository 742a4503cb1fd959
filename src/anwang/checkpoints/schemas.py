"""Shapes of the checkpoints API: checkpoints, plate reads, ingestion reports, searches.

A plate read (:class:`ReadIn`) is validated on its own: a batch keeps every valid read
and reports each invalid one with its index and a stable ``code`` (the codes are listed
in :data:`REJECTION_CODES` and in ``docs/api.md``).
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, cast

import msgspec
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError


class CheckpointKind(StrEnum):
    POLICE_CHECKPOINT = "police_checkpoint"
    MOBILE_CHECKPOINT = "mobile_checkpoint"
    PROVINCE_BORDER = "province_border"
    CITY_BORDER = "city_border"
    TOLL_STATION = "toll_station"
    ROAD = "road"


class Direction(StrEnum):
    """Relative to the city (border entrances) or to the checkpoint's area."""

    IN = "in"
    OUT = "out"


class PlateColor(StrEnum):
    BLUE = "blue"
    YELLOW = "yellow"
    GREEN = "green"
    YELLOW_GREEN = "yellow_green"
    WHITE = "white"
    BLACK = "black"


class HealthStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    #: Registered, but no read has ever been stored.
    NEVER = "never"
    INACTIVE = "inactive"


#: Letters, digits, ``-``, ``_`` and ``.``; starts with a letter or digit.
CHECKPOINT_CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
CheckpointCode = Annotated[str, StringConstraints(pattern=CHECKPOINT_CODE)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Lanes = Annotated[int, Field(ge=1, le=32)]
#: One minute to one week.
SilenceThreshold = Annotated[int, Field(ge=60, le=7 * 24 * 3600)]
DEFAULT_SILENCE_S = 900


def _directions(value: list[Direction]) -> list[Direction]:
    if len(set(value)) != len(value):
        raise ValueError("each direction at most once")
    return sorted(value, key=lambda d: d.value)


class CheckpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: CheckpointCode
    name: Name
    kind: CheckpointKind
    lat: Latitude
    lon: Longitude
    directions: list[Direction] = Field(
        default_factory=lambda: [Direction.IN, Direction.OUT], min_length=1, max_length=2
    )
    lanes: Lanes = 2
    active: bool = True
    silence_threshold_s: SilenceThreshold = DEFAULT_SILENCE_S

    _check_directions = field_validator("directions")(_directions)


class CheckpointUpdate(BaseModel):
    """A JSON merge patch: the fields given are changed, the others kept. The code is the
    checkpoint's identity and cannot change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    kind: CheckpointKind | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    directions: list[Direction] | None = Field(default=None, min_length=1, max_length=2)
    lanes: Lanes | None = None
    active: bool | None = None
    silence_threshold_s: SilenceThreshold | None = None

    @field_validator("directions")
    @classmethod
    def _check_directions(cls, value: list[Direction] | None) -> list[Direction] | None:
        return None if value is None else _directions(value)


class CheckpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    kind: str
    lat: float
    lon: float
    directions: list[str]
    lanes: int
    active: bool
    silence_threshold_s: int
    jurisdiction_code: str | None
    last_read_at: datetime | None
    offline_since: datetime | None
    created_at: datetime
    updated_at: datetime


class HourCount(BaseModel):
    #: Start of the hour (UTC).
    hour: datetime
    count: int


class OutageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    started_at: datetime
    detected_at: datetime
    ended_at: datetime | None


class CheckpointHealth(BaseModel):
    code: str
    name: str
    kind: str
    lat: float
    lon: float
    jurisdiction_code: str | None
    active: bool
    status: HealthStatus
    last_read_at: datetime | None
    offline_since: datetime | None
    silence_threshold_s: int
    reads_last_hour: int
    reads_24h: int
    #: The last 24 whole hours and the current one, oldest first (only in the detail).
    reads_per_hour: list[HourCount] | None = None
    outages: list[OutageOut] | None = None


# --- plate reads ------------------------------------------------------------------------

#: Every ``code`` a rejected read can carry.
REJECTION_CODES: dict[str, str] = {
    "malformed_json": "an NDJSON line that is not JSON",
    "not_an_object": "the item is not a JSON object",
    "missing_field": "a required field is missing",
    "unknown_field": "a field that reads do not have",
    "invalid_id": "the id is not 1-64 letters, digits or . _ : -",
    "invalid_checkpoint": "the checkpoint code is not a code",
    "unknown_checkpoint": "no such checkpoint (in the key's jurisdiction)",
    "inactive_checkpoint": "the checkpoint is deactivated",
    "invalid_captured_at": "not an RFC 3339 date-time",
    "captured_at_no_offset": "a date-time without a UTC offset",
    "captured_at_in_future": "more than 5 minutes in the future",
    "captured_at_too_old": "older than the retention window: it could not be kept",
    "invalid_plate": "empty or impossible plate (the detail names the rule)",
    "invalid_plate_color": "not one of the plate colours",
    "confidence_out_of_range": "confidence outside 0..1",
    "invalid_confidence": "confidence is not a number",
    "invalid_lane": "lane is not an integer 0..99",
    "invalid_direction": "direction is not in or out",
    "invalid_vehicle": "vehicle is not {type, colour, make} of short strings",
    "invalid_image_ref": "image_ref is not a string of at most 500 characters",
}

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)?$"
)
READ_ID = r"^[A-Za-z0-9._:-]{1,64}$"
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)]


def parse_rfc3339(value: Any) -> datetime:
    """An RFC 3339 date-time with its offset, as UTC. Fractions beyond microseconds are
    cut. Without an offset (``2026-11-28T08:00:00``) it is refused: the same text means
    different instants in different places."""
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_captured_at", "must be an RFC 3339 date-time string")
    m = _RFC3339.match(value)
    if m is None:
        raise PydanticCustomError("invalid_captured_at", "not an RFC 3339 date-time")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    if offset is None:
        raise PydanticCustomError(
            "captured_at_no_offset", "the date-time needs a UTC offset (Z or +08:00)"
        )
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        if offset in ("Z", "z"):
            tz: timezone = UTC
        else:
            sign = 1 if offset[0] == "+" else -1
            hh, mm = int(offset[1:3]), int(offset[4:6])
            if hh > 23 or mm > 59:
                raise ValueError("offset out of range")
            tz = timezone(sign * timedelta(hours=hh, minutes=mm))
        if int(second) == 60:  # a leap second is the last instant of its minute
            second, micro = "59", 999_999
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
        # An instant whose UTC date falls outside years 1-9999 overflows here.
        return dt.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PydanticCustomError("invalid_captured_at", "not a valid date-time") from None


class VehicleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ShortText | None = None
    colour: ShortText | None = None
    make: ShortText | None = None


class ReadIn(BaseModel):
    """One plate read as a checkpoint sends it. ``captured_at`` is parsed to UTC; the
    plate is checked against the plate rules by the service, not here."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=READ_ID)] | None = None
    checkpoint: CheckpointCode
    captured_at: datetime
    plate: Annotated[str, StringConstraints(max_length=64)]
    plate_color: PlateColor | None = None
    confidence: float | None = None
    lane: Annotated[int, Field(ge=0, le=99, strict=True)] | None = None
    direction: Direction
    vehicle: VehicleIn | None = None
    image_ref: Annotated[str, StringConstraints(max_length=500)] | None = None

    @field_validator("captured_at", mode="before")
    @classmethod
    def _captured_at(cls, value: Any) -> datetime:
        return parse_rfc3339(value)

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PydanticCustomError("invalid_confidence", "confidence must be a number")
        # Compared before any conversion: an integer too large for a float is out of range.
        if not 0 <= value <= 1:  # NaN fails this too
            raise PydanticCustomError("confidence_out_of_range", "confidence must be in 0..1")
        return float(value)


def utc_instant(at: datetime) -> str:
    """``at`` in UTC to the microsecond as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: the text
    read ids are derived from (a year before 1000 without leading zeros, as strftime
    writes it)."""
    if at.tzinfo is None:
        raise ValueError("captured_at must be timezone-aware")
    utc = at.astimezone(UTC)
    if utc.year >= 1000:
        # ``isoformat`` is strftime's "%Y-%m-%dT%H:%M:%S.%f" then "+00:00", in less time.
        return utc.isoformat(timespec="microseconds")[:26] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReadFields(NamedTuple):
    """The values of a valid :class:`ReadIn`, as ingestion uses them: enums as their
    values, ``vehicle`` as the dict of its given fields (None when it has none)."""

    id: str | None
    checkpoint: str
    captured_at: datetime
    plate: str
    plate_color: str | None
    confidence: float | None
    lane: int | None
    direction: str
    vehicle: dict[str, str] | None
    image_ref: str | None
    #: ``captured_at`` as :func:`utc_instant` writes it, when already known.
    instant: str | None = None

    @classmethod
    def of(cls, read: ReadIn) -> ReadFields:
        vehicle = read.vehicle.model_dump(exclude_none=True) if read.vehicle else None
        return cls(
            read.id, read.checkpoint, read.captured_at, read.plate,
            read.plate_color.value if read.plate_color else None, read.confidence,
            read.lane, read.direction.value, vehicle or None, read.image_ref,
        )


# --- the fast path of read validation ---------------------------------------------------
#
# Validating a read with :class:`ReadIn` costs some 20 µs, most of it outside the
# validator's core (the model instance, the ``before`` validators in Python, the
# vehicle's model and its dump); ingestion validates every read of a batch of up to
# 10,000. :func:`quick_reads` checks the plain shape a device sends — exact types, no
# surrounding spaces, an RFC 3339 time in its usual form — with msgspec, in compiled
# code and for the whole batch in one call, and gives up (None) on any read that is not
# plainly valid, which :class:`ReadIn` then judges with its usual errors. It accepts
# nothing the model refuses and gives the same values as the model (``ReadFields.of``);
# the unit tests check both over generated reads.

_SHORT_TEXT = 40
#: Only the common form: ``T``, seconds 00–59, 1–6 fraction digits, ``Z`` or ±hh:mm.
_RFC3339_QUICK = (
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
)
_CHECKPOINT_FULL = re.compile(CHECKPOINT_CODE[1:-1])
_VEHICLE_ORDER = tuple(VehicleIn.model_fields)
_VehicleKey = Literal["type", "colour", "make"]
#: The values of :class:`PlateColor` (a unit test keeps them equal).
_Colour = Literal["blue", "yellow", "green", "yellow_green", "white", "black"]


class _PlainRead(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    r"""A read as devices send it, but for two checks :func:`quick_reads` makes itself
    (the checkpoint's code, and the vehicle's values without surrounding spaces).
    ``\A...\Z``: a ``$`` would let a final newline through, which the model refuses.
    Not tracked by the garbage collector (it holds no cycle; a batch makes 10,000)."""

    checkpoint: Annotated[str, msgspec.Meta(max_length=40)]
    captured_at: Annotated[str, msgspec.Meta(pattern=_RFC3339_QUICK)]
    plate: Annotated[str, msgspec.Meta(max_length=64)]
    direction: Literal["in", "out"]
    id: Annotated[str, msgspec.Meta(pattern=r"\A" + READ_ID[1:-1] + r"\Z")] | None = None
    plate_color: _Colour | None = None
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    lane: Annotated[int, msgspec.Meta(ge=0, le=99)] | None = None
    vehicle: dict[_VehicleKey, Annotated[str, msgspec.Meta(max_length=_SHORT_TEXT)] | None] \
        | None = None
    image_ref: Annotated[str, msgspec.Meta(max_length=500)] | None = None


_PLAIN_BATCH = list[_PlainRead]
_PlainError = msgspec.ValidationError
#: Vehicle descriptions as sent (their items in order) → what :func:`_plain_vehicle`
#: made of them. Devices send a few descriptions over and over; the memory starts
#: again from empty when it holds :data:`_VEHICLES_MAX`.
_VEHICLES: dict[tuple[tuple[str, str | None], ...], object] = {}
_VEHICLES_MAX = 10_000
_UNSEEN = object()
_AS_GIVEN = object()
#: A plain time's second and offset (``2026-11-28T16:00:05+08:00``) → that second in
#: UTC as :func:`utc_instant` begins it (``2026-11-28T08:00:05``): the reads of a batch
#: share their seconds, and formatting each read's time cost more than the rest of its
#: check (empty: not a time the fast path takes).
_SECONDS: dict[str, str] = {}
_SECONDS_MAX = 100_000


def _plain(item: Any) -> _PlainRead | None:
    try:
        return msgspec.convert(item, _PlainRead)
    except _PlainError:
        return None


def _utc_second(text: str) -> str:
    """The second of a plain time in UTC, as :func:`utc_instant` begins it; empty when
    the text is no time (no such day, or out of range in UTC) or falls before year 1000
    (whose instants :func:`utc_instant` writes without leading zeros)."""
    try:
        at = datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        return ""
    return utc_instant(at)[:-8] if at.year >= 1000 else ""


def _plain_vehicle(vehicle: Mapping[str, str | None]) -> object:
    """The description as the model dumps it (its fields in order, nulls left out; None
    when none is left; :data:`_AS_GIVEN` when that is ``vehicle`` as it is), or False
    when a value has surrounding spaces. (``str.isspace`` covers more characters than
    the model strips, so this accepts nothing it changes.)"""
    for value in vehicle.values():
        if value and (value[0].isspace() or value[-1].isspace()):
            return False
    if not vehicle:
        return None
    if _VEHICLE_ORDER[:len(vehicle)] == tuple(vehicle) and None not in vehicle.values():
        return _AS_GIVEN
    return {k: vehicle[k] for k in _VEHICLE_ORDER if vehicle.get(k) is not None} or None


def quick_reads(
    items: Sequence[Any], *, checkpoints: Container[str] | None = None,
) -> list[ReadFields | None]:
    """For each of ``items``, its values when it is a plainly valid read, else None (let
    :class:`ReadIn` decide). Never accepts what :class:`ReadIn` refuses.

    The batch is converted by msgspec in one call (when any item is not plain, each on
    its own). ``checkpoints``: codes known to be well formed (registered ones); a read
    through another code is left to the model, which then says what is wrong with it.
    Without it, each code is checked against the pattern here."""
    try:
        plain: list[_PlainRead | None] = msgspec.convert(items, _PLAIN_BATCH)
    except _PlainError:
        plain = [_plain(item) for item in items]
    fromiso = datetime.fromisoformat
    vehicles = _VEHICLES
    seconds = _SECONDS
    known = checkpoints
    new_tuple = tuple.__new__
    out: list[ReadFields | None] = []
    for p in plain:
        if p is None:
            out.append(None)
            continue
        code = p.checkpoint
        if code not in known if known is not None else not _CHECKPOINT_FULL.fullmatch(code):
            out.append(None)
            continue
        text = p.captured_at
        # The pattern leaves two forms: ...:SS[.f]Z and ...:SS[.f]+hh:mm.
        offset_at = len(text) - (1 if text[-1] == "Z" else 6)
        key = text[:19] + text[offset_at:]
        second = seconds.get(key)
        if second is None:
            if len(seconds) >= _SECONDS_MAX:
                seconds.clear()
            second = seconds[key] = _utc_second(text)
        if not second:  # no such day, out of range, or before year 1000: the model says
            out.append(None)
            continue
        instant = f"{second}.{text[20:offset_at]:0<6}Z"
        captured_at = fromiso(instant)  # UTC itself, as astimezone gives it
        vehicle = cast("dict[str, str] | None", p.vehicle)
        if vehicle is not None:
            given = tuple(vehicle.items())
            done = vehicles.get(given, _UNSEEN)
            if done is _UNSEEN:
                if len(vehicles) >= _VEHICLES_MAX:
                    vehicles.clear()
                done = vehicles[given] = _plain_vehicle(vehicle)
            if done is False:
                out.append(None)
                continue
            if done is not _AS_GIVEN:  # a copy of the model's form, for this read alone
                vehicle = None if done is None else cast("dict[str, str]", done).copy()
        # Every field, without ReadFields' Python-level __new__ (as its _make does).
        out.append(new_tuple(ReadFields, (p.id, code, captured_at, p.plate, p.plate_color,
                                          p.confidence, p.lane, p.direction, vehicle,
                                          p.image_ref, instant)))
    return out


def quick_read(item: Any) -> ReadFields | None:
    """:func:`quick_reads` of one item."""
    return quick_reads([item])[0]


class Rejection(BaseModel):
    #: Position of the read in the batch (0-based; NDJSON: among the non-blank lines).
    index: int
    code: str
    detail: str


class IngestOut(BaseModel):
    """``accepted``: new reads taken for storage; ``duplicates``: reads already stored
    (or repeated in the batch), stored once; ``alerts``: accepted reads that matched the
    watch list (each raises or refreshes an alert)."""

    accepted: int
    duplicates: int
    rejected: list[Rejection]
    alerts: int


class ReadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    checkpoint_code: str
    captured_at: datetime
    plate: str
    plate_kind: str | None
    plate_color: str | None
    confidence: float | None
    lane: int | None
    direction: str
    vehicle: dict[str, Any] | None
    image_ref: str | None
    lat: float
    lon: float
    jurisdiction_code: str | None


class CoverageStatus(StrEnum):
    HIT = "hit"
    NO_HIT = "no_hit"
    #: Offline (or never heard from) during the window: absence of reads means nothing.
    NO_DATA = "no_data"


class Coverage(BaseModel):
    checkpoint: str
    name: str
    status: CoverageStatus
    outages: list[OutageOut]


class SearchOut(BaseModel):
    count: int
    #: True when more reads matched than ``limit``: narrow the search.
    truncated: bool
    reads: list[ReadOut]
    #: Checkpoints of the search's area (or the named one): hit, no hit or no data. A
    #: search without checkpoint or area lists only those with hits or without data.
    coverage: list[Coverage]


class PurgeOut(BaseModel):
    deleted: int
    cutoff: datetime
