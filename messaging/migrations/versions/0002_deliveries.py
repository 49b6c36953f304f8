"""deliveries: broker hand-off time, claim token, and the relay's index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

UNQUEUED = "status IN ('QUEUED', 'FAILED') AND enqueued_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enqueued_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', sa.DateTime(), nullable=True))
        batch_op.create_index(
            'ix_deliveries_unqueued',
            ['next_attempt_at'],
            unique=False,
            postgresql_where=sa.text(UNQUEUED),
            sqlite_where=sa.text(UNQUEUED),
        )


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_unqueued', postgresql_where=sa.text(UNQUEUED), sqlite_where=sa.text(UNQUEUED))
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('enqueued_at')
