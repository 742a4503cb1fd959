"""Shapes of the dispatch and coverage JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from anwang.dispatch.config import PostKind, UnitKind, UnitStatus

Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentCreate(_In):
    """A call for service: ``type``, ``lat``, ``lon`` and the rest; or ``alert_id`` to
    make the incident from an alert (its place and vehicle; ``lat``/``lon`` are then
    taken from the alert)."""

    type: str | None = Field(default=None, max_length=40)
    priority: int | None = Field(default=None, ge=1, le=4)
    lat: Latitude | None = None
    lon: Longitude | None = None
    address: str | None = Field(default=None, max_length=300)
    caller: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    external_ref: str | None = Field(default=None, min_length=1, max_length=100)
    alert_id: str | None = Field(default=None, min_length=1, max_length=26)
    received_at: datetime | None = None


class IncidentOut(BaseModel):
    id: str
    type: str
    priority: int
    status: str
    lat: float
    lon: float
    address: str | None
    caller: str | None
    description: str | None
    alert_id: str | None
    external_ref: str | None
    jurisdiction: str | None
    district: str | None
    received_at: datetime
    dispatched_at: datetime | None
    en_route_at: datetime | None
    on_scene_at: datetime | None
    cleared_at: datetime | None
    response_s: float | None
    created_by: str
    units: list[AssignmentOut] = []


class AssignmentOut(BaseModel):
    unit_id: str
    call_sign: str | None = None
    assigned_at: datetime
    assigned_by: str
    eta_s: float | None
    distance_m: float | None
    origin: str
    stale: bool
    released_at: datetime | None


class AssignRequest(_In):
    unit_id: str = Field(min_length=1, max_length=40)


class IncidentStatusRequest(_In):
    status: Literal["cleared", "cancelled"]
    reason: str | None = Field(default=None, max_length=500)


class UnitCreate(_In):
    call_sign: str = Field(min_length=1, max_length=40)
    kind: UnitKind
    home_post_id: str | None = Field(default=None, max_length=40)
    lat: Latitude | None = None
    lon: Longitude | None = None


class UnitOut(BaseModel):
    id: str
    call_sign: str
    kind: str
    status: str
    home_post_id: str | None
    home_lat: float
    home_lon: float
    lat: float | None
    lon: float | None
    position_at: datetime | None
    position_age_s: float | None
    position_stale: bool
    incident_id: str | None
    status_at: datetime
    jurisdiction: str | None


class PositionReport(_In):
    lat: Latitude
    lon: Longitude
    at: datetime | None = None
    speed_kmh: float | None = Field(default=None, ge=0, le=400)
    heading: float | None = Field(default=None, ge=0, le=360)


class UnitStatusRequest(_In):
    status: UnitStatus
    reason: str | None = Field(default=None, max_length=500)


class InstructionCreate(_In):
    text: str = Field(min_length=1, max_length=2000)
    unit_id: str | None = Field(default=None, max_length=40)
    post_id: str | None = Field(default=None, max_length=40)
    incident_id: str | None = Field(default=None, max_length=26)


class InstructionOut(BaseModel):
    id: str
    incident_id: str | None
    unit_id: str | None
    post_id: str | None
    text: str
    sent_at: datetime
    sent_by: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    escalation_level: int
    escalated_at: datetime | None


class TimelineItem(BaseModel):
    seq: int
    at: datetime
    action: str
    actor: str | None
    actor_role: str | None
    subject: str | None
    reason: str | None
    data: dict[str, Any] | None


class PostCreate(_In):
    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=120)
    kind: PostKind
    lat: Latitude
    lon: Longitude
    circle: str | None = Field(default=None, max_length=60)
    staffed_hours: str | None = Field(default=None, max_length=11)


class PostUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    kind: PostKind | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    circle: str | None = Field(default=None, max_length=60)
    staffed_hours: str | None = Field(default=None, max_length=11)
    active: bool | None = None


class PostOut(BaseModel):
    id: str
    code: str
    name: str
    kind: str
    circle: str | None
    lat: float
    lon: float
    h3_cell: str
    staffed_hours: str
    active: bool
    jurisdiction: str | None


class DemandPointIn(_In):
    lat: float
    lon: float
    weight: float = 1.0
    label: str | None = Field(default=None, max_length=120)


class DemandImport(_In):
    points: list[dict[str, Any]] = Field(max_length=500_000)


class OptimizeRequest(_In):
    p: int = Field(ge=1, le=10_000)
    minutes: float = Field(default=3.0, gt=0, le=30)
    keep: list[str] = Field(default_factory=list, max_length=10_000)
    layer: str | None = Field(default=None, max_length=40)
    generate: bool = True
    max_candidates: int = Field(default=2000, ge=1, le=20_000)
    candidates: list[tuple[Latitude, Longitude]] = Field(default_factory=list,
                                                          max_length=20_000)
    backup_weight: float = Field(default=0.0, ge=0, le=1)
    time_limit_s: float = Field(default=60.0, gt=0, le=600)


IncidentOut.model_rebuild()
