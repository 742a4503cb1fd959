"""Device samples: on PostgreSQL a BRIN index on the time instead of a B-tree.

Every telemetry message stores a sample, so each index on ``device_samples`` is kept up
at the rate of the messages. The index on ``ts`` serves only the retention purge
(``DELETE … WHERE ts < cutoff``), and samples arrive nearly in time order: a BRIN index
(the lowest and highest time of each range of 128 pages) answers that as well, for next
to nothing per row — measured on 200,000 rows, a sixth less time for the whole insert.

PostgreSQL: the B-tree is dropped and the BRIN index created under the same name.
SQLite, which has no BRIN, keeps its B-tree.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 21:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index('ix_device_samples_ts', table_name='device_samples')
    op.create_index('ix_device_samples_ts', 'device_samples', ['ts'], unique=False,
                    postgresql_using='brin')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index('ix_device_samples_ts', table_name='device_samples')
    op.create_index('ix_device_samples_ts', 'device_samples', ['ts'], unique=False)
