"""Plate reads: keyed by (id, captured_at); day partitions on PostgreSQL, an FTS5 trigram
index on SQLite.

PostgreSQL: ``plate_reads`` becomes ``PARTITION BY RANGE (captured_at)`` with one
partition per UTC day (``plate_reads_pYYYYMMDD``). The existing table is renamed, a
partition is created for every day it holds and for today, the rows are copied, the
indexes are built on the new table and the old one is dropped — in the migration's
transaction, so a failure leaves the table as it was. It takes as long as copying the
table once.

SQLite: the table is rebuilt with the new key, and ``plate_reads_fts`` (FTS5, ``trigram``
tokenizer, external content) is created with the triggers that keep it in step, then
filled from the table.

Downgrade goes back to the unpartitioned table keyed by ``id`` alone. Reads that share an
id (possible only for a device that reused an id for another capture time) keep only
their earliest capture.

The DDL of partitions and of the FTS5 index is a copy of
:mod:`anwang.checkpoints.storage` as it was when this revision was written.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "id", "checkpoint_code", "captured_at", "received_at", "plate", "plate_kind",
    "plate_color", "confidence", "lane", "direction", "vehicle", "image_ref", "lat", "lon",
    "hit", "jurisdiction_code",
)
LISTED = ", ".join(COLUMNS)
INDEXES = (
    "ix_plate_reads_plate_trgm", "ix_plate_reads_plate_captured_at",
    "ix_plate_reads_jurisdiction_code", "ix_plate_reads_checkpoint_code_captured_at",
    "ix_plate_reads_captured_at",
)
FTS = "plate_reads_fts"
FTS_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS} USING fts5("
    "plate, content='plate_reads', content_rowid='rowid', "
    "tokenize='trigram case_sensitive 1', columnsize=0)",
    f"CREATE TRIGGER IF NOT EXISTS {FTS}_ai AFTER INSERT ON plate_reads BEGIN "
    f"INSERT INTO {FTS}(rowid, plate) VALUES (new.rowid, new.plate); END",
    f"CREATE TRIGGER IF NOT EXISTS {FTS}_ad AFTER DELETE ON plate_reads BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, plate) VALUES ('delete', old.rowid, old.plate); END",
    f"CREATE TRIGGER IF NOT EXISTS {FTS}_au AFTER UPDATE OF plate ON plate_reads BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, plate) VALUES ('delete', old.rowid, old.plate); "
    f"INSERT INTO {FTS}(rowid, plate) VALUES (new.rowid, new.plate); END",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
)
FTS_DROP = (
    f"DROP TRIGGER IF EXISTS {FTS}_au",
    f"DROP TRIGGER IF EXISTS {FTS}_ad",
    f"DROP TRIGGER IF EXISTS {FTS}_ai",
    f"DROP TABLE IF EXISTS {FTS}",
)


def _create_table(name: str, key: list[str], **kw: Any) -> None:
    op.create_table(name,
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_code', sa.String(length=40), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('plate', sa.String(length=16), nullable=False),
    sa.Column('plate_kind', sa.String(length=30), nullable=True),
    sa.Column('plate_color', sa.String(length=12), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('lane', sa.Integer(), nullable=True),
    sa.Column('direction', sa.String(length=3), nullable=False),
    sa.Column('vehicle', sa.JSON(), nullable=True),
    sa.Column('image_ref', sa.String(length=500), nullable=True),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('hit', sa.Boolean(), nullable=False),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['checkpoint_code'], ['checkpoints.code'], name=op.f('fk_plate_reads_checkpoint_code_checkpoints')),
    sa.PrimaryKeyConstraint(*key, name=op.f('pk_plate_reads')),
    **kw,
    )


def _create_indexes() -> None:
    op.create_index('ix_plate_reads_captured_at', 'plate_reads', ['captured_at'], unique=False)
    op.create_index('ix_plate_reads_checkpoint_code_captured_at', 'plate_reads', ['checkpoint_code', 'captured_at'], unique=False)
    op.create_index('ix_plate_reads_jurisdiction_code', 'plate_reads', ['jurisdiction_code'], unique=False)
    op.create_index('ix_plate_reads_plate_captured_at', 'plate_reads', ['plate', 'captured_at'], unique=False)
    op.create_index('ix_plate_reads_plate_trgm', 'plate_reads', ['plate'], unique=False, postgresql_using='gin', postgresql_ops={'plate': 'gin_trgm_ops'}, sqlite_where=sa.text('0'))


def _set_aside(old: str) -> None:
    """Rename ``plate_reads`` to ``old`` and free the names of its key and indexes."""
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.rename_table('plate_reads', old)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_plate_reads TO pk_{old}")


def _bound(day: date) -> str:
    return f"'{datetime.combine(day, time(0), tzinfo=UTC).isoformat()}'"


def _partition(day: date) -> None:
    op.execute(
        f'CREATE TABLE IF NOT EXISTS "plate_reads_p{day:%Y%m%d}" PARTITION OF plate_reads '
        f"FOR VALUES FROM ({_bound(day)}) TO ({_bound(day + timedelta(days=1))})"
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _set_aside("plate_reads_0005")
        _create_table('plate_reads', ['id', 'captured_at'],
                      postgresql_partition_by='RANGE (captured_at)')
        days = set(bind.execute(sa.text(
            "SELECT DISTINCT (captured_at AT TIME ZONE 'UTC')::date FROM plate_reads_0005"
        )).scalars())
        days.add(datetime.now(UTC).date())
        for day in sorted(days):
            _partition(day)
        op.execute(f"INSERT INTO plate_reads ({LISTED}) SELECT {LISTED} FROM plate_reads_0005")
        op.drop_table('plate_reads_0005')
        _create_indexes()
    else:
        _set_aside("plate_reads_0005")
        _create_table('plate_reads', ['id', 'captured_at'])
        op.execute(f"INSERT INTO plate_reads ({LISTED}) SELECT {LISTED} FROM plate_reads_0005")
        op.drop_table('plate_reads_0005')
        _create_indexes()
        for ddl in FTS_DDL:
            op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for ddl in FTS_DROP:
            op.execute(ddl)
    _set_aside("plate_reads_0006")
    _create_table('plate_reads', ['id'])
    op.execute(
        f"INSERT INTO plate_reads ({LISTED}) SELECT {LISTED} FROM plate_reads_0006 r "
        "WHERE NOT EXISTS (SELECT 1 FROM plate_reads_0006 o "
        "WHERE o.id = r.id AND o.captured_at < r.captured_at)"
    )
    op.drop_table('plate_reads_0006')  # on PostgreSQL, with its partitions
    _create_indexes()
