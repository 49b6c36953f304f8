"""deliveries: broker hand-off time, claim token, and indexes for the relay, operators and callbacks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00.000000

Every claim and outcome rewrites a delivery row, and each rewrite adds an entry to every index
whose predicate the row matches. The full indexes on status and provider_id become partial ones
(what operators look for; SMS SIDs), so the bulk of the rows (QUEUED, SENDING, SENT email) skip them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

UNQUEUED = "status IN ('QUEUED', 'FAILED') AND enqueued_at IS NULL"
ATTENTION = "status IN ('FAILED', 'DEAD', 'UNKNOWN')"
SMS_SID = "channel = 'sms' AND provider_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enqueued_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', sa.DateTime(), nullable=True))
        batch_op.drop_index('ix_deliveries_status')
        batch_op.drop_index(batch_op.f('ix_deliveries_provider_id'))
        batch_op.create_index(
            'ix_deliveries_unqueued', ['next_attempt_at'], unique=False,
            postgresql_where=sa.text(UNQUEUED), sqlite_where=sa.text(UNQUEUED),
        )
        batch_op.create_index(
            'ix_deliveries_attention', ['status'], unique=False,
            postgresql_where=sa.text(ATTENTION), sqlite_where=sa.text(ATTENTION),
        )
        batch_op.create_index(
            'ix_deliveries_sms_provider_id', ['provider_id'], unique=False,
            postgresql_where=sa.text(SMS_SID), sqlite_where=sa.text(SMS_SID),
        )


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_sms_provider_id')
        batch_op.drop_index('ix_deliveries_attention')
        batch_op.drop_index('ix_deliveries_unqueued')
        batch_op.create_index(batch_op.f('ix_deliveries_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index('ix_deliveries_status', ['status'], unique=False)
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('enqueued_at')
