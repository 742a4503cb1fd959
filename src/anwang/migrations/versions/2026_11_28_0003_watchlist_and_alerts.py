"""Watch lists (entries, import batches, the version counter) and alerts (with their hits).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 08:12:39.539789
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('watchlist_batches',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.String(length=30), nullable=False),
    sa.Column('legal_basis', sa.Text(), nullable=False),
    sa.Column('case_ref', sa.String(length=100), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('refresh', sa.Boolean(), nullable=False),
    sa.Column('rows', sa.JSON(), nullable=False),
    sa.Column('rejected', sa.JSON(), nullable=False),
    sa.Column('imported_by', sa.String(length=100), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_by', sa.String(length=100), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_watchlist_batches'))
    )
    with op.batch_alter_table('watchlist_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_watchlist_batches_source'), ['source'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_batches_status'), ['status'], unique=False)

    op.create_table('watchlist_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_watchlist_version'))
    )
    op.create_table('watchlist_entries',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('pattern', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.String(length=30), nullable=False),
    sa.Column('legal_basis', sa.Text(), nullable=False),
    sa.Column('case_ref', sa.String(length=100), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('vehicle', sa.JSON(), nullable=True),
    sa.Column('recipient_roles', sa.JSON(), nullable=False),
    sa.Column('recipient_jurisdictions', sa.JSON(), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('owner_role', sa.String(length=30), nullable=True),
    sa.Column('approved_by', sa.String(length=100), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=100), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoke_reason', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('batch_id', sa.String(length=26), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['watchlist_batches.id'], name=op.f('fk_watchlist_entries_batch_id_watchlist_batches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_watchlist_entries'))
    )
    with op.batch_alter_table('watchlist_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_watchlist_entries_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_entries_case_ref'), ['case_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_entries_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_entries_owner'), ['owner'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_entries_pattern'), ['pattern'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_entries_reason'), ['reason'], unique=False)
        batch_op.create_index('ix_watchlist_entries_source_pattern', ['source', 'pattern'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_entries_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_watchlist_entries_version'), ['version'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('entry_id', sa.String(length=26), nullable=False),
    sa.Column('read_id', sa.String(length=64), nullable=False),
    sa.Column('last_read_id', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_code', sa.String(length=40), nullable=False),
    sa.Column('checkpoint_name', sa.String(length=200), nullable=False),
    sa.Column('checkpoint_kind', sa.String(length=30), nullable=True),
    sa.Column('direction', sa.String(length=10), nullable=True),
    sa.Column('lane', sa.Integer(), nullable=True),
    sa.Column('plate', sa.String(length=32), nullable=False),
    sa.Column('plate_color', sa.String(length=20), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('pattern', sa.String(length=32), nullable=False),
    sa.Column('match_kind', sa.String(length=12), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=30), nullable=False),
    sa.Column('case_ref', sa.String(length=100), nullable=True),
    sa.Column('vehicle', sa.JSON(), nullable=True),
    sa.Column('read_vehicle', sa.JSON(), nullable=True),
    sa.Column('image_ref', sa.String(length=500), nullable=True),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=100), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=100), nullable=True),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('audience_roles', sa.JSON(), nullable=False),
    sa.Column('audience_jurisdiction', sa.String(length=40), nullable=True),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['entry_id'], ['watchlist_entries.id'], name=op.f('fk_alerts_entry_id_watchlist_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('read_id', 'entry_id', name='uq_alerts_read_id_entry_id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_checkpoint_code'), ['checkpoint_code'], unique=False)
        batch_op.create_index('ix_alerts_entry_checkpoint_status', ['entry_id', 'checkpoint_code', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_last_seen_at'), ['last_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_match_kind'), ['match_kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_plate'), ['plate'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_raised_at'), ['raised_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_reason'), ['reason'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_status'), ['status'], unique=False)

    op.create_table('alert_hits',
    sa.Column('read_id', sa.String(length=64), nullable=False),
    sa.Column('entry_id', sa.String(length=26), nullable=False),
    sa.Column('alert_id', sa.String(length=26), nullable=False),
    sa.Column('match_kind', sa.String(length=12), nullable=False),
    sa.Column('plate', sa.String(length=32), nullable=False),
    sa.Column('checkpoint_code', sa.String(length=40), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_hits_alert_id_alerts')),
    sa.PrimaryKeyConstraint('read_id', 'entry_id', name=op.f('pk_alert_hits'))
    )
    with op.batch_alter_table('alert_hits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_hits_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_hits_captured_at'), ['captured_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('alert_hits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_hits_captured_at'))
        batch_op.drop_index(batch_op.f('ix_alert_hits_alert_id'))

    op.drop_table('alert_hits')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_status'))
        batch_op.drop_index(batch_op.f('ix_alerts_reason'))
        batch_op.drop_index(batch_op.f('ix_alerts_raised_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_plate'))
        batch_op.drop_index(batch_op.f('ix_alerts_outcome'))
        batch_op.drop_index(batch_op.f('ix_alerts_match_kind'))
        batch_op.drop_index(batch_op.f('ix_alerts_last_seen_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_jurisdiction_code'))
        batch_op.drop_index('ix_alerts_entry_checkpoint_status')
        batch_op.drop_index(batch_op.f('ix_alerts_checkpoint_code'))

    op.drop_table('alerts')
    with op.batch_alter_table('watchlist_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_version'))
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_status'))
        batch_op.drop_index('ix_watchlist_entries_source_pattern')
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_reason'))
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_pattern'))
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_owner'))
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_expires_at'))
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_case_ref'))
        batch_op.drop_index(batch_op.f('ix_watchlist_entries_batch_id'))

    op.drop_table('watchlist_entries')
    op.drop_table('watchlist_version')
    with op.batch_alter_table('watchlist_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_watchlist_batches_status'))
        batch_op.drop_index(batch_op.f('ix_watchlist_batches_source'))

    op.drop_table('watchlist_batches')
