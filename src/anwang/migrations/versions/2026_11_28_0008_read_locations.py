"""Read locations: where each checkpoint's reads were taken, and when.

``read_locations`` has one row per checkpoint and read position, with the first and last
capture time of its reads there; area searches take the positions inside their area from
it instead of from the window's reads. It is filled here from ``plate_reads`` (one
``GROUP BY`` over the table, in the migration's transaction); from then on the storing
of reads keeps it (``anwang.checkpoints.storage.record_read_locations``).

The backfill SQL is a copy of ``anwang.checkpoints.storage.rebuild_read_locations`` as it
was when this revision was written.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'read_locations',
        sa.Column('checkpoint_code', sa.String(length=40), nullable=False),
        sa.Column('lat', sa.Float(), nullable=False),
        sa.Column('lon', sa.Float(), nullable=False),
        sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['checkpoint_code'], ['checkpoints.code'],
                                name=op.f('fk_read_locations_checkpoint_code_checkpoints')),
        sa.PrimaryKeyConstraint('checkpoint_code', 'lat', 'lon', name=op.f('pk_read_locations')),
    )
    op.create_index('ix_read_locations_lat_lon', 'read_locations', ['lat', 'lon'], unique=False)
    op.execute(
        "INSERT INTO read_locations (checkpoint_code, lat, lon, first_seen, last_seen) "
        "SELECT checkpoint_code, lat, lon, min(captured_at), max(captured_at) "
        "FROM plate_reads GROUP BY checkpoint_code, lat, lon"
    )


def downgrade() -> None:
    op.drop_index('ix_read_locations_lat_lon', table_name='read_locations')
    op.drop_table('read_locations')
