"""Smart communities: communities, devices and their status, samples, events, refused
messages, rule sets and alarms.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 08:29:38.029032
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('communities',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('polygon', sa.Text(), nullable=False),
    sa.Column('center_lat', sa.Float(), nullable=False),
    sa.Column('center_lon', sa.Float(), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=True),
    sa.Column('contacts', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_communities'))
    )
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_communities_jurisdiction_code'), ['jurisdiction_code'], unique=False)

    op.create_table('device_events',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('device_id', 'ts', 'event', name=op.f('pk_device_events'))
    )
    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_events_ts'), ['ts'], unique=False)

    op.create_table('device_rejections',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=30), nullable=False),
    sa.Column('count', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_detail', sa.String(length=300), nullable=True),
    sa.PrimaryKeyConstraint('device_id', 'reason', name=op.f('pk_device_rejections'))
    )
    op.create_table('device_rule_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_kind', sa.String(length=20), nullable=False),
    sa.Column('community_code', sa.String(length=40), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_rule_sets')),
    sa.UniqueConstraint('device_kind', 'community_code', name='uq_device_rule_sets_device_kind_community_code')
    )
    op.create_table('device_samples',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('device_id', 'ts', name=op.f('pk_device_samples'))
    )
    with op.batch_alter_table('device_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_samples_ts'), ['ts'], unique=False)

    op.create_table('devices',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('vendor_model', sa.String(length=100), nullable=True),
    sa.Column('adapter', sa.String(length=30), nullable=False),
    sa.Column('community_code', sa.String(length=40), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('building', sa.String(length=40), nullable=True),
    sa.Column('floor', sa.Integer(), nullable=True),
    sa.Column('installed_on', sa.Date(), nullable=True),
    sa.Column('heartbeat_s', sa.Integer(), nullable=False),
    sa.Column('credential_hash', sa.String(length=200), nullable=False),
    sa.Column('credential_issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['community_code'], ['communities.code'], name=op.f('fk_devices_community_code_communities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_devices'))
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_community_code'), ['community_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_updated_at'), ['updated_at'], unique=False)

    op.create_table('device_alarms',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('community_code', sa.String(length=40), nullable=False),
    sa.Column('device_kind', sa.String(length=20), nullable=False),
    sa.Column('rule_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('route', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=14), nullable=False),
    sa.Column('active_key', sa.String(length=110), nullable=True),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('escalate_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalate_every_s', sa.Integer(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=100), nullable=True),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cleared_by', sa.String(length=100), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=100), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_device_alarms_device_id_devices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_alarms')),
    sa.UniqueConstraint('active_key', name=op.f('uq_device_alarms_active_key'))
    )
    with op.batch_alter_table('device_alarms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_alarms_community_code'), ['community_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_escalate_at'), ['escalate_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_raised_at'), ['raised_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_severity'), ['severity'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_alarms_status'), ['status'], unique=False)

    op.create_table('device_status',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('offline_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('offline_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('battery_pct', sa.Float(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('rule_state', sa.JSON(), nullable=False),
    sa.Column('messages', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_device_status_device_id_devices')),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_device_status'))
    )
    with op.batch_alter_table('device_status', schema=None) as batch_op:
        batch_op.create_index('ix_device_status_online_offline_after', ['online', 'offline_after'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('device_status', schema=None) as batch_op:
        batch_op.drop_index('ix_device_status_online_offline_after')

    op.drop_table('device_status')
    with op.batch_alter_table('device_alarms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_alarms_status'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_severity'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_raised_at'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_outcome'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_kind'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_jurisdiction_code'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_escalate_at'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_device_id'))
        batch_op.drop_index(batch_op.f('ix_device_alarms_community_code'))

    op.drop_table('device_alarms')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_updated_at'))
        batch_op.drop_index(batch_op.f('ix_devices_kind'))
        batch_op.drop_index(batch_op.f('ix_devices_jurisdiction_code'))
        batch_op.drop_index(batch_op.f('ix_devices_community_code'))

    op.drop_table('devices')
    with op.batch_alter_table('device_samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_samples_ts'))

    op.drop_table('device_samples')
    op.drop_table('device_rule_sets')
    op.drop_table('device_rejections')
    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_events_ts'))

    op.drop_table('device_events')
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_communities_jurisdiction_code'))

    op.drop_table('communities')
