"""Pydantic shapes of the community API (``docs/api.md``, ``docs/devices.md``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from anwang.communities.alarms import AlarmStatus, Outcome
from anwang.communities.rules import DeviceKind, Rule, Severity, level_name

#: Device ids appear in MQTT topics: no ``/``, ``+``, ``#`` or spaces.
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
CommunityCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
VendorModel = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    #: Who they are: ``property_manager``, ``grid_worker``, ``security``, ...
    role: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    phone: Annotated[str, StringConstraints(pattern=r"^[0-9+() -]{3,30}$")] | None = None


class CommunityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: CommunityCode
    name: Text
    #: A GeoJSON Polygon or MultiPolygon (lon/lat).
    polygon: dict[str, Any]
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] | None = None
    #: The grid's jurisdiction code; found from the outline when left out.
    grid: Annotated[str, StringConstraints(max_length=40)] | None = None
    contacts: list[Contact] = Field(default_factory=list, max_length=20)


class CommunityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    polygon: dict[str, Any] | None = None
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] | None = None
    grid: Annotated[str, StringConstraints(max_length=40)] | None = None
    contacts: list[Contact] | None = Field(default=None, max_length=20)
    active: bool | None = None


class CommunityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    polygon: dict[str, Any]
    center_lat: float
    center_lon: float
    address: str | None
    grid: str | None = Field(validation_alias=AliasChoices("jurisdiction_code", "grid"))
    contacts: list[dict[str, Any]]
    active: bool
    created_at: datetime
    updated_at: datetime

    @field_validator("polygon", mode="before")
    @classmethod
    def _geojson(cls, v: Any) -> Any:
        import json

        return json.loads(v) if isinstance(v, str) else v


Adapter = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,29}$")]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DeviceId
    kind: DeviceKind
    vendor_model: VendorModel | None = None
    #: The payload format (``native`` = anwang's own; see docs/devices.md).
    adapter: Adapter = "native"
    lat: Latitude
    lon: Longitude
    community: CommunityCode
    building: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    floor: Annotated[int, Field(ge=-10, le=200)] | None = None
    installed_on: date | None = None
    heartbeat_s: Annotated[int, Field(ge=10, le=7 * 24 * 3600)] = 300
    #: A device key chosen by the installer (at least 16 characters); one is made when
    #: left out. Either way it is returned once and stored only hashed.
    credential: Annotated[str, StringConstraints(min_length=16, max_length=200)] | None = None


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor_model: VendorModel | None = None
    adapter: Adapter | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    community: CommunityCode | None = None
    building: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    floor: Annotated[int, Field(ge=-10, le=200)] | None = None
    installed_on: date | None = None
    heartbeat_s: Annotated[int, Field(ge=10, le=7 * 24 * 3600)] | None = None
    active: bool | None = None


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    vendor_model: str | None
    adapter: str
    lat: float
    lon: float
    community: str = Field(validation_alias=AliasChoices("community_code", "community"))
    building: str | None
    floor: int | None
    installed_on: date | None
    heartbeat_s: int
    active: bool
    jurisdiction_code: str | None
    created_at: datetime
    updated_at: datetime


class DeviceCreated(DeviceOut):
    #: The device key, shown this once: MQTT password and ``X-Device-Key`` header.
    key: str | None = None


DeviceState = Literal["online", "offline", "never", "inactive"]


class AlarmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    device_id: str
    community: str = Field(validation_alias=AliasChoices("community_code", "community"))
    device_kind: str
    rule_id: str
    kind: str
    severity: Severity
    route: str
    status: AlarmStatus
    level: int
    level_name: str = ""
    escalate_at: datetime | None
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    raised_at: datetime
    value: float | None
    detail: dict[str, Any] | None
    lat: float
    lon: float
    jurisdiction_code: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    outcome: Outcome | None
    note: str | None

    @classmethod
    def of(cls, alarm: Any) -> AlarmOut:
        out = cls.model_validate(alarm)
        out.level_name = level_name(alarm.route, alarm.level)
        return out


class DeviceView(DeviceOut):
    """A device with its live state."""

    state: DeviceState
    last_seen_at: datetime | None
    offline_since: datetime | None
    last_ts: datetime | None
    battery_pct: float | None
    metrics: dict[str, float] | None
    messages: int
    open_alarms: list[AlarmOut]
    #: Messages dropped, by reason.
    rejected: dict[str, int]


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class CloseBody(Note):
    outcome: Outcome


class Refused(BaseModel):
    index: int
    reason: str
    field: str | None = None
    detail: str = ""


class IngestOut(BaseModel):
    accepted: int
    refused: list[Refused]
    #: Alarms raised and cleared by these messages.
    raised: list[str]
    cleared: list[str]


class RulesOut(BaseModel):
    kind: DeviceKind
    community: str | None
    #: The rule changes stored at this level (merged by id over the level above).
    changes: list[dict[str, Any]]
    #: The rules in force.
    rules: list[Rule]


class HealthRow(BaseModel):
    device_id: str
    kind: str
    community: str
    state: DeviceState
    last_seen_at: datetime | None
    battery_pct: float | None
    messages: int
    rejected: dict[str, int]


class HealthOut(BaseModel):
    devices: int
    online: int
    offline: int
    never: int
    inactive: int
    #: online / (online + offline + never) — watched devices that are heard from.
    online_share: float | None
    low_battery: int
    #: Dropped messages by reason, over the devices shown and unknown ids.
    rejected: dict[str, int]
    #: Messages for ids that are not registered, and the latest such id.
    unknown_device_messages: int
    last_unknown_device: str | None
    rows: list[HealthRow]


class ImportRow(BaseModel):
    row: int
    id: str | None
    status: Literal["created", "updated", "unchanged", "rejected"]
    key: str | None = None
    errors: list[dict[str, str]] = Field(default_factory=list)


class ImportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    created: int
    updated: int
    rejected: int
    rows: list[ImportRow]


class Sample(BaseModel):
    ts: datetime
    metrics: dict[str, float]


class DayCount(BaseModel):
    day: date
    severity: str
    count: int
