"""Tables of the checkpoints package: the registry, plate reads and outages.

The rules that fill them live in :mod:`anwang.checkpoints.service`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from anwang.checkpoints import storage
from anwang.core.db import Base
from anwang.core.scope import JurisdictionScoped


class Checkpoint(JurisdictionScoped, Base):
    """A fixed or mobile camera site that reads plates.

    ``jurisdiction_code`` is the finest jurisdiction containing (``lon``, ``lat``), found
    when the checkpoint is registered or moved; it is what scopes the checkpoint and its
    reads. A checkpoint is never deleted (its reads and alerts refer to it): it is
    deactivated, and an inactive checkpoint's reads are refused.

    ``last_read_at`` is the capture time of the newest read stored for it. When it is
    older than ``silence_threshold_s`` the checkpoint is *offline*; ``offline_since``
    holds the moment that was detected (the start of the current outage is in
    :class:`CheckpointOutage`), and is cleared when reads resume. A checkpoint that never
    sent a read is not counted as offline (its health says ``never``).
    """

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: One of :data:`anwang.checkpoints.schemas.CheckpointKind`.
    kind: Mapped[str] = mapped_column(String(30), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    #: The directions the cameras cover, a list drawn from ``["in", "out"]``.
    directions: Mapped[list[str]] = mapped_column(JSON)
    lanes: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Seconds without a read after which the checkpoint counts as offline.
    silence_threshold_s: Mapped[int] = mapped_column(Integer)
    last_read_at: Mapped[datetime | None]
    offline_since: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CheckpointOutage(Base):
    """One period in which a checkpoint sent nothing: from its last read before the
    silence (``started_at``) until the first read after it (``ended_at``, None while it
    lasts). Searches use it to say "no data" rather than "no hit" for that time."""

    __tablename__ = "checkpoint_outages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_code: Mapped[str] = mapped_column(
        String(40), ForeignKey("checkpoints.code"), index=True
    )
    started_at: Mapped[datetime]
    detected_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class PlateRead(JurisdictionScoped, Base):
    """One plate read, as accepted and normalised by ingestion.

    ``id`` is the device's id for the read or, when it sent none, one derived from
    checkpoint, capture time, plate and lane (:func:`anwang.checkpoints.reads.read_id`).
    The primary key is ``(id, captured_at)`` because on PostgreSQL the table is
    partitioned by ``captured_at`` and a partitioned table's keys must contain the
    partition key. De-duplicating on the pair is the same as on the id: a derived id
    already encodes the capture instant, and a device re-sends its own id with the same
    ``captured_at``. ``lat``/``lon`` and ``jurisdiction_code`` are the checkpoint's at the
    time of the read (a mobile checkpoint moves). ``hit`` is set when the read matched the
    watch list.

    Retention (:func:`anwang.checkpoints.service.purge_reads`): a read that matched
    nothing is deleted once captured longer than ``read_retention_hours`` ago. A read with
    a hit stays while any alert it belongs to is open or acknowledged, and for
    ``alert_retention_days`` after the last of them was closed; a hit that raised no
    alert keeps its read for ``alert_retention_days`` from capture.

    Storage (:mod:`anwang.checkpoints.storage`): on PostgreSQL, ``PARTITION BY RANGE
    (captured_at)`` with one partition per UTC day (``plate_reads_pYYYYMMDD``), created
    before the first insert of a day and dropped (or rebuilt with only its kept reads)
    when the day has left the window. On SQLite, the FTS5 trigram table
    ``plate_reads_fts`` indexes ``plate``, kept in step by triggers.

    Indexes: ``(plate, captured_at)`` serves exact-plate searches in a time window and
    the prefix ranges of partial patterns with an unknown in their fixed start
    (``苏D?23*``), and may serve the fixed start of other patterns (on PostgreSQL the
    planner takes it from the ``LIKE``; on SQLite the search writes it out for a pattern
    without a run of three);
    ``captured_at`` serves the purge and area searches; ``(checkpoint_code,
    captured_at)`` serves health and checkpoint searches. ``ix_plate_reads_plate_trgm``
    is a ``pg_trgm`` GIN index on PostgreSQL, for partial patterns (``LIKE '%D1_3%'``);
    SQLite has no such index type, and there the same declaration is a partial index
    over no rows (``WHERE 0``), so that one table definition serves both databases and
    costs SQLite nothing (SQLite's trigram index is ``plate_reads_fts``).
    """

    __tablename__ = "plate_reads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    checkpoint_code: Mapped[str] = mapped_column(String(40), ForeignKey("checkpoints.code"))
    captured_at: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    received_at: Mapped[datetime]
    #: The normalised plate text (:func:`anwang.checkpoints.plates.normalise`). Compared
    #: byte-wise on both databases — SQLite compares all text so, PostgreSQL by the
    #: column's ``"C"`` collation (migration ``0009``) — so that a range of the
    #: ``(plate, captured_at)`` index from a prefix holds exactly the plates with it.
    plate: Mapped[str] = mapped_column(
        String(16).with_variant(String(16, collation="C"), "postgresql")
    )
    #: The plate's kind by the plate rules (``ordinary``, ``new_energy_small``, ...).
    plate_kind: Mapped[str | None] = mapped_column(String(30))
    plate_color: Mapped[str | None] = mapped_column(String(12))
    confidence: Mapped[float | None] = mapped_column(Float)
    lane: Mapped[int | None] = mapped_column(Integer)
    direction: Mapped[str] = mapped_column(String(3))
    vehicle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    image_ref: Mapped[str | None] = mapped_column(String(500))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    hit: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_plate_reads_plate_captured_at", "plate", "captured_at"),
        Index("ix_plate_reads_checkpoint_code_captured_at", "checkpoint_code", "captured_at"),
        Index(
            "ix_plate_reads_plate_trgm",
            "plate",
            postgresql_using="gin",
            postgresql_ops={"plate": "gin_trgm_ops"},
            sqlite_where=text("0"),
        ),
        {"postgresql_partition_by": "RANGE (captured_at)"},
    )


class ReadLocation(Base):
    """Where a checkpoint's reads were taken, and when: one row per checkpoint and read
    position (a fixed checkpoint has one; a mobile one gains a row at each position it
    reads from), with ``first_seen``/``last_seen`` bounding the capture times of its
    reads there (widened to whole hours, so that storing a batch rarely changes a row).

    Kept by :func:`anwang.checkpoints.storage.record_read_locations` in the unit of work
    that stores the reads (and filled from ``plate_reads`` by the migration ``0008``). An
    area search takes the positions inside its area from here instead of from the
    window's reads (:mod:`anwang.checkpoints.search`). The purge of reads leaves it as it
    is, so a row may outlive the reads it stands for: it may say "maybe", never "no" —
    every stored read has its row, and the search finds hits only in ``plate_reads``.
    It holds no plate and no vehicle: only checkpoint positions and hours.
    """

    __tablename__ = "read_locations"

    checkpoint_code: Mapped[str] = mapped_column(
        String(40), ForeignKey("checkpoints.code"), primary_key=True
    )
    lat: Mapped[float] = mapped_column(Float, primary_key=True)
    lon: Mapped[float] = mapped_column(Float, primary_key=True)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]

    __table_args__ = (Index("ix_read_locations_lat_lon", "lat", "lon"),)


Base.metadata.info.setdefault("unmanaged_tables", []).append(storage.STORAGE_TABLES)

# ``Base.metadata.create_all`` (tests) needs the extension before the GIN index; the
# migration creates it too.
event.listen(
    PlateRead.__table__,
    "before_create",
    DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(  # type: ignore[no-untyped-call]
        dialect="postgresql"
    ),
)
# On SQLite, the trigram index and its triggers come with the table (the migration
# creates them too). PostgreSQL's day partitions are created by the first insert of
# each day (``storage.insert_reads``).
for _ddl in storage.SQLITE_FTS_DDL:
    event.listen(
        PlateRead.__table__,
        "after_create",
        DDL(_ddl).execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]
    )
event.listen(
    PlateRead.__table__,
    "after_drop",
    DDL(f"DROP TABLE IF EXISTS {storage.FTS_TABLE}").execute_if(  # type: ignore[no-untyped-call]
        dialect="sqlite"
    ),
)
