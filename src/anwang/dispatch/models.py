"""Tables of dispatch (incidents, units, positions, assignments, instructions) and of
response-circle planning (posts, demand layers, siting plans). Rules are in the
service modules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from anwang.core.db import Base
from anwang.core.scope import JurisdictionScoped


class Post(JurisdictionScoped, Base):
    """A quick-response point (快反点位, ``quick_response``) or a patrol key location
    (巡防重点部位, ``key_location``).

    ``circle`` names the response circle (快反圈) a quick-response point belongs to.
    Staffed hours are minutes of the local day, ``staffed_from`` inclusive to
    ``staffed_to`` exclusive; ``staffed_to`` below ``staffed_from`` wraps past midnight,
    and 0–1440 is round the clock.
    """

    __tablename__ = "dispatch_posts"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20), index=True)
    circle: Mapped[str | None] = mapped_column(String(60))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    #: H3 cell (resolution 9) of the location, for indexing.
    h3_cell: Mapped[str] = mapped_column(String(16), index=True)
    staffed_from: Mapped[int] = mapped_column(Integer, default=0)
    staffed_to: Mapped[int] = mapped_column(Integer, default=1440)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Unit(JurisdictionScoped, Base):
    """A patrol car, motorcycle, foot patrol, quick-response team or SWAT team.

    ``lat``/``lon``/``position_at`` are the latest reported position (the newest by
    its own time; late reports land in :class:`UnitPosition` only). ``home_lat``/
    ``home_lon`` are the home post's location, or the location given at creation; a
    recommendation falls back to them when the position is missing or stale.
    ``incident_id`` is the incident the unit is assigned to, while it is.
    """

    __tablename__ = "dispatch_units"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    call_sign: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    home_post_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("dispatch_posts.id"), index=True
    )
    home_lat: Mapped[float] = mapped_column(Float)
    home_lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    position_at: Mapped[datetime | None]
    incident_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("dispatch_incidents.id"), index=True
    )
    status_at: Mapped[datetime]
    created_at: Mapped[datetime]


class UnitPosition(Base):
    """One reported position. The key (unit, time) makes a retried report a no-op."""

    __tablename__ = "dispatch_unit_positions"

    unit_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("dispatch_units.id"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(primary_key=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    speed_kmh: Mapped[float | None] = mapped_column(Float)
    heading: Mapped[float | None] = mapped_column(Float)
    #: ``api`` or ``mqtt``.
    source: Mapped[str] = mapped_column(String(10))
    received_at: Mapped[datetime] = mapped_column(index=True)


class Incident(JurisdictionScoped, Base):
    """A call for service. ``status`` runs ``received`` → ``dispatched`` → ``en_route``
    → ``on_scene`` → ``cleared`` (or ``cancelled``); each ``*_at`` is set when the
    incident first reaches that state, and ``response_s`` is on scene − received.

    ``alert_id`` (unique) is the alert it was made from, ``external_ref`` (unique) the
    caller system's id: a retried creation finds the incident instead of making another.
    ``district_code`` is the district of the location, kept for statistics.
    """

    __tablename__ = "dispatch_incidents"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), index=True)
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(300))
    caller: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    alert_id: Mapped[str | None] = mapped_column(String(26), unique=True)
    external_ref: Mapped[str | None] = mapped_column(String(100), unique=True)
    district_code: Mapped[str | None] = mapped_column(String(40), index=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    dispatched_at: Mapped[datetime | None]
    en_route_at: Mapped[datetime | None]
    on_scene_at: Mapped[datetime | None]
    cleared_at: Mapped[datetime | None]
    response_s: Mapped[float | None] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(100))


class Assignment(Base):
    """A unit sent to an incident, with the ETA and route length it was sent on and
    where it started from (``origin``: ``position``, or ``home`` when the position was
    missing or stale). ``released_at`` is set when the unit is freed again."""

    __tablename__ = "dispatch_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("dispatch_incidents.id"), index=True
    )
    unit_id: Mapped[str] = mapped_column(String(26), ForeignKey("dispatch_units.id"), index=True)
    assigned_at: Mapped[datetime]
    assigned_by: Mapped[str] = mapped_column(String(100))
    eta_s: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(10))
    stale: Mapped[bool] = mapped_column(Boolean, default=False)
    released_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("incident_id", "unit_id", name="uq_dispatch_assignments_incident_unit"),
    )


class Instruction(JurisdictionScoped, Base):
    """A written instruction (指令) to a unit or to a post, optionally about an incident.

    Unacknowledged instructions are escalated every N minutes (``escalation_level``
    counts how often).
    """

    __tablename__ = "dispatch_instructions"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    incident_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("dispatch_incidents.id"), index=True
    )
    unit_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("dispatch_units.id"), index=True
    )
    post_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("dispatch_posts.id"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(index=True)
    sent_by: Mapped[str] = mapped_column(String(100))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_dispatch_instructions_open", "acknowledged_at", "sent_at"),)


class DemandPoint(Base):
    """One weighted point of a demand layer (population, past incidents …)."""

    __tablename__ = "dispatch_demand_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    layer: Mapped[str] = mapped_column(String(40), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(120))


class SitingPlan(Base):
    """A computed re-siting of the quick-response posts and its comparison with the
    siting of the day it was computed (kept for the coverage page and exports)."""

    __tablename__ = "dispatch_siting_plans"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    minutes: Mapped[float] = mapped_column(Float)
    p: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
