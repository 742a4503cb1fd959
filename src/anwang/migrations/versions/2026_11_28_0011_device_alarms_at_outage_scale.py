"""Device alarms written at outage scale: no foreign key, no low-cardinality indexes.

When a whole district loses its network, the offline scan raises one maintenance alarm
per silent device — 100,000 rows in one statement. Each row paid for a foreign-key
check against ``devices`` (a lookup and a row lock on the device) and for three indexes
on columns of a handful of values each (``kind``, ``severity``, ``outcome``), where an
index helps little: the alarm list pages through ``raised_at`` (or narrows by
``community_code``, ``device_id``, ``jurisdiction_code``, ``status``) and filters those
columns on the way, and the chart of alarms per day groups by severity over a
``raised_at`` range. Together they were about a third of the scan's time (median of
three scans of 100,000 devices: 7.2 s with them, 4.5 s without).

The foreign key guarded nothing the application can do: devices are never deleted
(they are deactivated), and alarms are raised only for devices in the registry —
the same as ``device_samples`` and ``device_events``, which never had one.

Downgrade creates the indexes and the foreign key again (SQLite: the table is copied,
as SQLite cannot drop or add a constraint in place).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = 'fk_device_alarms_device_id_devices'
LOW_CARDINALITY = ('kind', 'severity', 'outcome')


def upgrade() -> None:
    for column in LOW_CARDINALITY:
        op.drop_index(f'ix_device_alarms_{column}', table_name='device_alarms')
    with op.batch_alter_table('device_alarms') as batch:
        batch.drop_constraint(FK, type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('device_alarms') as batch:
        batch.create_foreign_key(FK, 'devices', ['device_id'], ['id'])
    for column in LOW_CARDINALITY:
        op.create_index(f'ix_device_alarms_{column}', 'device_alarms', [column], unique=False)
