"""Device status rows rewritten in place: no index on the offline deadline.

Every batch of device messages rewrites the ``device_status`` row of each device it
carries, and ``offline_after`` (the deadline of the next silence) moves with every
message. An index on it therefore took a new entry for every message — and, on
PostgreSQL, kept each rewrite from staying on its page as a heap-only tuple (HOT), so
that the primary key's index took a new entry too. The offline scan now reads the whole
table instead (100,000 status rows in some tens of milliseconds, once every scan
interval), and PostgreSQL keeps half of each page of the table free (``fillfactor``
50), so that a row's new version fits beside the old one.

PostgreSQL: ``DROP INDEX`` and ``ALTER TABLE … SET (fillfactor = 50)``. The setting
applies to pages written from now on; ``VACUUM FULL device_status`` (outside a
transaction, locking the table meanwhile) applies it to the existing ones at once.
SQLite: ``DROP INDEX``.

Downgrade creates the index again and restores the default fill factor.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_device_status_online_offline_after', table_name='device_status')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE device_status SET (fillfactor = 50)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE device_status RESET (fillfactor)')
    op.create_index('ix_device_status_online_offline_after', 'device_status',
                    ['online', 'offline_after'], unique=False)
