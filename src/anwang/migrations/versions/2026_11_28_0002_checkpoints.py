"""Checkpoints: the registry, plate reads and checkpoint outages.

On PostgreSQL the ``pg_trgm`` extension is created for the trigram index on
``plate_reads.plate`` (a trusted extension since PostgreSQL 13: the database owner may
create it). On SQLite that index is declared over no rows (see
:class:`anwang.checkpoints.models.PlateRead`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 08:09:29.950662
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table('checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('directions', sa.JSON(), nullable=False),
    sa.Column('lanes', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('silence_threshold_s', sa.Integer(), nullable=False),
    sa.Column('last_read_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('offline_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoints')),
    sa.UniqueConstraint('code', name=op.f('uq_checkpoints_code'))
    )
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoints_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkpoints_kind'), ['kind'], unique=False)

    op.create_table('checkpoint_outages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkpoint_code', sa.String(length=40), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['checkpoint_code'], ['checkpoints.code'], name=op.f('fk_checkpoint_outages_checkpoint_code_checkpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoint_outages'))
    )
    with op.batch_alter_table('checkpoint_outages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoint_outages_checkpoint_code'), ['checkpoint_code'], unique=False)

    op.create_table('plate_reads',
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
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plate_reads'))
    )
    with op.batch_alter_table('plate_reads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plate_reads_captured_at'), ['captured_at'], unique=False)
        batch_op.create_index('ix_plate_reads_checkpoint_code_captured_at', ['checkpoint_code', 'captured_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_plate_reads_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index('ix_plate_reads_plate_captured_at', ['plate', 'captured_at'], unique=False)
        batch_op.create_index('ix_plate_reads_plate_trgm', ['plate'], unique=False, postgresql_using='gin', postgresql_ops={'plate': 'gin_trgm_ops'}, sqlite_where=sa.text('0'))



def downgrade() -> None:
    with op.batch_alter_table('plate_reads', schema=None) as batch_op:
        batch_op.drop_index('ix_plate_reads_plate_trgm', postgresql_using='gin', postgresql_ops={'plate': 'gin_trgm_ops'}, sqlite_where=sa.text('0'))
        batch_op.drop_index('ix_plate_reads_plate_captured_at')
        batch_op.drop_index(batch_op.f('ix_plate_reads_jurisdiction_code'))
        batch_op.drop_index('ix_plate_reads_checkpoint_code_captured_at')
        batch_op.drop_index(batch_op.f('ix_plate_reads_captured_at'))

    op.drop_table('plate_reads')
    with op.batch_alter_table('checkpoint_outages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoint_outages_checkpoint_code'))

    op.drop_table('checkpoint_outages')
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoints_kind'))
        batch_op.drop_index(batch_op.f('ix_checkpoints_jurisdiction_code'))

    op.drop_table('checkpoints')
