"""Tables of the smart-community package: the registry, device status, what devices sent,
what was refused, the rule sets and the alarms.

The registry (:class:`Community`, :class:`Device`) changes rarely and is what people
edit; :class:`DeviceStatus` is the hot row that every accepted message rewrites (last
seen, battery, the rules' state). Keeping them apart keeps the hot write narrow and lets
the registry carry an ``updated_at`` that only people move, which is what the intake's
in-memory directory refreshes on. The rules that fill these tables live in
:mod:`anwang.communities.service`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
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


class Community(JurisdictionScoped, Base):
    """A residential community (小区): its outline, address and the people to call.

    ``jurisdiction_code`` is the grid it belongs to: given when it is registered, or
    found from the outline's representative point. Its devices and alarms carry the same
    code, which is what scopes them and routes their alarms. ``contacts`` is a list of
    ``{"name", "role", "phone"}`` (property manager, grid worker, ...).
    """

    __tablename__ = "communities"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The outline as a GeoJSON geometry (Polygon or MultiPolygon, lon/lat), as text.
    polygon: Mapped[str] = mapped_column(Text)
    #: A point inside the outline (where the map puts the community's label).
    center_lat: Mapped[float] = mapped_column(Float)
    center_lon: Mapped[float] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(300))
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Device(JurisdictionScoped, Base):
    """A registered device: what it is, where it hangs, how it speaks and how often.

    ``adapter`` names the parser of its payloads (:mod:`anwang.communities.adapters`).
    ``credential_hash`` is the device key hashed as Mosquitto's password files want it
    (PBKDF2-SHA512, ``$7$...``), so the same value authenticates the device's HTTP
    requests and goes into the broker's password file; the key itself is shown once.
    A device is never deleted (its alarms refer to it); it is deactivated.
    ``updated_at`` moves on every change made by people: the intake reloads changed
    devices by it.
    """

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: One of :class:`anwang.communities.schemas.DeviceKind`.
    kind: Mapped[str] = mapped_column(String(20), index=True)
    vendor_model: Mapped[str | None] = mapped_column(String(100))
    adapter: Mapped[str] = mapped_column(String(30))
    community_code: Mapped[str] = mapped_column(
        String(40), ForeignKey("communities.code"), index=True
    )
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    building: Mapped[str | None] = mapped_column(String(40))
    floor: Mapped[int | None] = mapped_column(Integer)
    installed_on: Mapped[date | None] = mapped_column(Date)
    #: Seconds between two heartbeats the device promises.
    heartbeat_s: Mapped[int] = mapped_column(Integer)
    credential_hash: Mapped[str] = mapped_column(String(200))
    credential_issued_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)


class DeviceStatus(Base):
    """The live state of one device, rewritten by every batch that carries its messages.

    ``last_seen_at`` is when anwang last *received* anything from it (the server's clock:
    silence is measured against wall time, because a silent device sends no timestamps).
    ``offline_after`` is ``last_seen_at + missed × heartbeat_s`` (registration time
    before the first message), precomputed so that finding every device past its
    deadline is one query over the table on both databases. It is deliberately not
    indexed: it moves with every message, and an index on it would take an entry per
    message and keep PostgreSQL from rewriting the row in place (a heap-only tuple;
    the table keeps half of each page free for that, ``fillfactor`` 50). ``last_ts`` is the newest
    *device* timestamp the rules have judged; durations and rates run on that clock.
    ``rule_state`` is :class:`anwang.communities.rules.DeviceState` as JSON.
    """

    __tablename__ = "device_status"

    device_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("devices.id"), primary_key=True
    )
    #: True online, False offline, NULL not watched (the device is deactivated).
    online: Mapped[bool | None] = mapped_column(Boolean)
    last_seen_at: Mapped[datetime | None]
    offline_after: Mapped[datetime]
    offline_since: Mapped[datetime | None]
    last_ts: Mapped[datetime | None]
    battery_pct: Mapped[float | None] = mapped_column(Float)
    #: The latest value of each metric, as the device sent it.
    metrics: Mapped[dict[str, float] | None] = mapped_column(JSON)
    rule_state: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Messages accepted from it since it was registered.
    messages: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    updated_at: Mapped[datetime]

    __table_args__ = ({"postgresql_with": {"fillfactor": 50}},)


class DeviceSample(Base):
    """One telemetry message's metrics, kept for ``device_sample_retention_hours``.

    The key (device, device timestamp) makes a redelivered message store nothing twice.
    The time index serves only the retention purge (``ts`` below a cutoff); samples
    arrive nearly in time order, so on PostgreSQL it is a BRIN index (a summary per range
    of pages, next to nothing to keep up per row) rather than a B-tree (migration 0012).
    """

    __tablename__ = "device_samples"
    __table_args__ = (Index("ix_device_samples_ts", "ts", postgresql_using="brin"),)

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON)


class DeviceEvent(Base):
    """One event a device reported (smoke, cover open, object thrown, ...).

    The key (device, device timestamp, event) is how a redelivered or re-posted event is
    recognised: only an event whose row is new reaches the rules.
    """

    __tablename__ = "device_events"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    event: Mapped[str] = mapped_column(String(40), primary_key=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime]


class DeviceRejection(Base):
    """How many messages were dropped, per device and reason, and the latest example.

    Messages for devices that are not registered are counted under ``device_id = ""``
    (with the claimed id in ``last_detail``), so that a flood of made-up ids cannot grow
    the table.
    """

    __tablename__ = "device_rejections"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(30), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    last_detail: Mapped[str | None] = mapped_column(String(300))


class DeviceRuleSet(Base):
    """Rule changes for one device kind: city-wide (``community_code = ""``) or for one
    community. ``rules`` is a list of partial rules merged by ``id`` over the built-in
    defaults (:func:`anwang.communities.rules.merge_rules`)."""

    __tablename__ = "device_rule_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_kind: Mapped[str] = mapped_column(String(20))
    community_code: Mapped[str] = mapped_column(String(40))
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        UniqueConstraint("device_kind", "community_code",
                         name="uq_device_rule_sets_device_kind_community_code"),
    )


class DeviceAlarm(JurisdictionScoped, Base):
    """One alarm: a rule of one device that fired, for as long as its condition lasts.

    ``active_key`` is ``"<device id>|<rule id>"`` while the alarm is ``active`` or
    ``acknowledged`` and NULL once it is ``cleared`` or ``closed``; its unique index is
    what guarantees one alarm per (device, rule) at a time, even with several workers.
    A repeat of the condition increments ``count`` and moves ``last_seen_at``.

    ``status`` runs ``active`` → ``acknowledged`` → ``cleared`` (the condition ended, by
    itself or by hand) → ``closed`` (with an ``outcome``); acknowledging and clearing may
    be skipped. ``level`` indexes the rule's route (:data:`anwang.communities.rules.ROUTES`);
    ``escalate_at`` is when an unacknowledged alarm moves to the next level (NULL when
    there is none or someone has acknowledged it). Times ending ``_seen_at`` are the
    device's clock; the others are anwang's.
    """

    __tablename__ = "device_alarms"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    #: No foreign key: an outage raises 100,000 of these in one statement, and devices
    #: are never deleted (migration 0011).
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    community_code: Mapped[str] = mapped_column(String(40), index=True)
    device_kind: Mapped[str] = mapped_column(String(20))
    rule_id: Mapped[str] = mapped_column(String(40))
    #: What happened (``fire``, ``overheat``, ``cover_open``, ``maintenance``...).
    kind: Mapped[str] = mapped_column(String(30))
    severity: Mapped[str] = mapped_column(String(10))
    route: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(14), index=True)
    active_key: Mapped[str | None] = mapped_column(String(110), unique=True)
    level: Mapped[int] = mapped_column(Integer, default=0)
    escalate_at: Mapped[datetime | None] = mapped_column(index=True)
    escalated_at: Mapped[datetime | None]
    #: Seconds between escalations (the rule's ``escalate_after_s`` when raised).
    escalate_every_s: Mapped[int | None] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    raised_at: Mapped[datetime] = mapped_column(index=True)
    #: The measured value that fired the rule, if any (°C, %, °/min ...).
    value: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    cleared_at: Mapped[datetime | None]
    cleared_by: Mapped[str | None] = mapped_column(String(100))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
