"""Dispatch and response circles: posts, units and their positions, incidents,
assignments, instructions, demand layers and siting plans.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 08:22:25.297325
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dispatch_demand_points',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('layer', sa.String(length=40), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('label', sa.String(length=120), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_demand_points'))
    )
    with op.batch_alter_table('dispatch_demand_points', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_demand_points_layer'), ['layer'], unique=False)

    op.create_table('dispatch_incidents',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=True),
    sa.Column('caller', sa.String(length=200), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('alert_id', sa.String(length=26), nullable=True),
    sa.Column('external_ref', sa.String(length=100), nullable=True),
    sa.Column('district_code', sa.String(length=40), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('en_route_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('on_scene_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('response_s', sa.Float(), nullable=True),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_incidents')),
    sa.UniqueConstraint('alert_id', name=op.f('uq_dispatch_incidents_alert_id')),
    sa.UniqueConstraint('external_ref', name=op.f('uq_dispatch_incidents_external_ref'))
    )
    with op.batch_alter_table('dispatch_incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_incidents_district_code'), ['district_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_incidents_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_incidents_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_incidents_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_incidents_type'), ['type'], unique=False)

    op.create_table('dispatch_posts',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('circle', sa.String(length=60), nullable=True),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('h3_cell', sa.String(length=16), nullable=False),
    sa.Column('staffed_from', sa.Integer(), nullable=False),
    sa.Column('staffed_to', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_posts')),
    sa.UniqueConstraint('code', name=op.f('uq_dispatch_posts_code'))
    )
    with op.batch_alter_table('dispatch_posts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_posts_h3_cell'), ['h3_cell'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_posts_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_posts_kind'), ['kind'], unique=False)

    op.create_table('dispatch_siting_plans',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('minutes', sa.Float(), nullable=False),
    sa.Column('p', sa.Integer(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_siting_plans'))
    )
    with op.batch_alter_table('dispatch_siting_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_siting_plans_created_at'), ['created_at'], unique=False)

    op.create_table('dispatch_units',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('call_sign', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('home_post_id', sa.String(length=26), nullable=True),
    sa.Column('home_lat', sa.Float(), nullable=False),
    sa.Column('home_lon', sa.Float(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('position_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('incident_id', sa.String(length=26), nullable=True),
    sa.Column('status_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['home_post_id'], ['dispatch_posts.id'], name=op.f('fk_dispatch_units_home_post_id_dispatch_posts')),
    sa.ForeignKeyConstraint(['incident_id'], ['dispatch_incidents.id'], name=op.f('fk_dispatch_units_incident_id_dispatch_incidents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_units')),
    sa.UniqueConstraint('call_sign', name=op.f('uq_dispatch_units_call_sign'))
    )
    with op.batch_alter_table('dispatch_units', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_units_home_post_id'), ['home_post_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_units_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_units_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_units_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_units_status'), ['status'], unique=False)

    op.create_table('dispatch_assignments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('incident_id', sa.String(length=26), nullable=False),
    sa.Column('unit_id', sa.String(length=26), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('assigned_by', sa.String(length=100), nullable=False),
    sa.Column('eta_s', sa.Float(), nullable=True),
    sa.Column('distance_m', sa.Float(), nullable=True),
    sa.Column('origin', sa.String(length=10), nullable=False),
    sa.Column('stale', sa.Boolean(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['dispatch_incidents.id'], name=op.f('fk_dispatch_assignments_incident_id_dispatch_incidents')),
    sa.ForeignKeyConstraint(['unit_id'], ['dispatch_units.id'], name=op.f('fk_dispatch_assignments_unit_id_dispatch_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_assignments')),
    sa.UniqueConstraint('incident_id', 'unit_id', name='uq_dispatch_assignments_incident_unit')
    )
    with op.batch_alter_table('dispatch_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_assignments_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_assignments_unit_id'), ['unit_id'], unique=False)

    op.create_table('dispatch_instructions',
    sa.Column('id', sa.String(length=26), nullable=False),
    sa.Column('incident_id', sa.String(length=26), nullable=True),
    sa.Column('unit_id', sa.String(length=26), nullable=True),
    sa.Column('post_id', sa.String(length=26), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_by', sa.String(length=100), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=100), nullable=True),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('jurisdiction_code', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['dispatch_incidents.id'], name=op.f('fk_dispatch_instructions_incident_id_dispatch_incidents')),
    sa.ForeignKeyConstraint(['post_id'], ['dispatch_posts.id'], name=op.f('fk_dispatch_instructions_post_id_dispatch_posts')),
    sa.ForeignKeyConstraint(['unit_id'], ['dispatch_units.id'], name=op.f('fk_dispatch_instructions_unit_id_dispatch_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_instructions'))
    )
    with op.batch_alter_table('dispatch_instructions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_instructions_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_instructions_jurisdiction_code'), ['jurisdiction_code'], unique=False)
        batch_op.create_index('ix_dispatch_instructions_open', ['acknowledged_at', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_instructions_post_id'), ['post_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_instructions_sent_at'), ['sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dispatch_instructions_unit_id'), ['unit_id'], unique=False)

    op.create_table('dispatch_unit_positions',
    sa.Column('unit_id', sa.String(length=26), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('speed_kmh', sa.Float(), nullable=True),
    sa.Column('heading', sa.Float(), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['dispatch_units.id'], name=op.f('fk_dispatch_unit_positions_unit_id_dispatch_units')),
    sa.PrimaryKeyConstraint('unit_id', 'at', name=op.f('pk_dispatch_unit_positions'))
    )
    with op.batch_alter_table('dispatch_unit_positions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_unit_positions_received_at'), ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dispatch_unit_positions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_unit_positions_received_at'))

    op.drop_table('dispatch_unit_positions')
    with op.batch_alter_table('dispatch_instructions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_instructions_unit_id'))
        batch_op.drop_index(batch_op.f('ix_dispatch_instructions_sent_at'))
        batch_op.drop_index(batch_op.f('ix_dispatch_instructions_post_id'))
        batch_op.drop_index('ix_dispatch_instructions_open')
        batch_op.drop_index(batch_op.f('ix_dispatch_instructions_jurisdiction_code'))
        batch_op.drop_index(batch_op.f('ix_dispatch_instructions_incident_id'))

    op.drop_table('dispatch_instructions')
    with op.batch_alter_table('dispatch_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_assignments_unit_id'))
        batch_op.drop_index(batch_op.f('ix_dispatch_assignments_incident_id'))

    op.drop_table('dispatch_assignments')
    with op.batch_alter_table('dispatch_units', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_units_status'))
        batch_op.drop_index(batch_op.f('ix_dispatch_units_kind'))
        batch_op.drop_index(batch_op.f('ix_dispatch_units_jurisdiction_code'))
        batch_op.drop_index(batch_op.f('ix_dispatch_units_incident_id'))
        batch_op.drop_index(batch_op.f('ix_dispatch_units_home_post_id'))

    op.drop_table('dispatch_units')
    with op.batch_alter_table('dispatch_siting_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_siting_plans_created_at'))

    op.drop_table('dispatch_siting_plans')
    with op.batch_alter_table('dispatch_posts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_posts_kind'))
        batch_op.drop_index(batch_op.f('ix_dispatch_posts_jurisdiction_code'))
        batch_op.drop_index(batch_op.f('ix_dispatch_posts_h3_cell'))

    op.drop_table('dispatch_posts')
    with op.batch_alter_table('dispatch_incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_incidents_type'))
        batch_op.drop_index(batch_op.f('ix_dispatch_incidents_status'))
        batch_op.drop_index(batch_op.f('ix_dispatch_incidents_received_at'))
        batch_op.drop_index(batch_op.f('ix_dispatch_incidents_jurisdiction_code'))
        batch_op.drop_index(batch_op.f('ix_dispatch_incidents_district_code'))

    op.drop_table('dispatch_incidents')
    with op.batch_alter_table('dispatch_demand_points', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_demand_points_layer'))

    op.drop_table('dispatch_demand_points')
