"""Tables of the alerts raised by watch-list hits. Rules are in :mod:`.service`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from anwang.core.db import Base
from anwang.core.scope import JurisdictionScoped


class Alert(JurisdictionScoped, Base):
    """One alert: a watch-list entry seen at one checkpoint, possibly several times.

    ``jurisdiction_code`` is the checkpoint's (so a user sees the alerts of the places in
    their jurisdiction). Repeated hits of the same entry at the same checkpoint within
    the dedupe window are counted here (``count``, ``last_seen_at``, ``last_read_id``)
    instead of raising another alert; every hit is one :class:`AlertHit` row.

    ``status`` runs ``open`` → ``acknowledged`` → ``closed`` (with an ``outcome``).
    ``escalation_level`` counts how often an unacknowledged alert was escalated;
    ``audience_jurisdiction`` is the jurisdiction it is pushed to now.
    """

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(26), ForeignKey("watchlist_entries.id"))
    #: The read that raised the alert.
    read_id: Mapped[str] = mapped_column(String(64))
    last_read_id: Mapped[str] = mapped_column(String(64))
    checkpoint_code: Mapped[str] = mapped_column(String(40), index=True)
    checkpoint_name: Mapped[str] = mapped_column(String(200))
    checkpoint_kind: Mapped[str | None] = mapped_column(String(30))
    direction: Mapped[str | None] = mapped_column(String(10))
    lane: Mapped[int | None] = mapped_column(Integer)
    #: The plate as read (normalised); ``pattern`` is the entry's.
    plate: Mapped[str] = mapped_column(String(32), index=True)
    plate_color: Mapped[str | None] = mapped_column(String(20))
    confidence: Mapped[float | None] = mapped_column(Float)
    pattern: Mapped[str] = mapped_column(String(32))
    match_kind: Mapped[str] = mapped_column(String(12), index=True)
    priority: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(30), index=True)
    case_ref: Mapped[str | None] = mapped_column(String(100))
    #: The entry's description of the vehicle to look for.
    vehicle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: What the camera saw of the vehicle, if it said.
    read_vehicle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    image_ref: Mapped[str | None] = mapped_column(String(500))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12), index=True)
    outcome: Mapped[str | None] = mapped_column(String(20), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1)
    #: Capture times of the first and the latest hit.
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
    raised_at: Mapped[datetime] = mapped_column(index=True)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(100))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None]
    audience_roles: Mapped[list[str]] = mapped_column(JSON)
    #: Where the alert is pushed now (None: the whole city).
    audience_jurisdiction: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        # Idempotency: one read never raises two alerts for one entry.
        UniqueConstraint("read_id", "entry_id", name="uq_alerts_read_id_entry_id"),
        # The dedupe lookup: the open alert of an entry at a checkpoint.
        Index("ix_alerts_entry_checkpoint_status", "entry_id", "checkpoint_code", "status"),
    )


class AlertHit(Base):
    """One watch-list hit: a read matching an entry, counted in exactly one alert.

    The primary key (read, entry) is what makes a redelivered read count nothing twice.
    """

    __tablename__ = "alert_hits"

    read_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(26), ForeignKey("alerts.id"), index=True)
    match_kind: Mapped[str] = mapped_column(String(12))
    plate: Mapped[str] = mapped_column(String(32))
    checkpoint_code: Mapped[str] = mapped_column(String(40))
    captured_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]
