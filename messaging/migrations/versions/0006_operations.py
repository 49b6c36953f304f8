"""operations: delivery attempt history, DISCARDED, and indexes for the operators' search

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:00:00.000000

Every attempt of a delivery keeps a row (the recorder writes them with the outcome batch). The
operators' search pages newest first with a keyset on id, so the status and user indexes gain id;
error codes and sent_at (throughput, latency) get partial indexes that most rows skip.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

ATTENTION_OLD = "status IN ('FAILED', 'DEAD', 'UNKNOWN')"
ATTENTION = "status IN ('FAILED', 'DEAD', 'UNKNOWN', 'DISCARDED', 'SKIPPED')"
ERROR_CODE = "last_error_code IS NOT NULL"
SENT_AT = "sent_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        'delivery_attempts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('claimed_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('error_code', sa.String(length=64), nullable=True),
        sa.Column('provider_answer', sa.Text(), nullable=True),
        sa.Column('provider_id', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ['delivery_id'], ['deliveries.id'], name=op.f('fk_delivery_attempts_delivery_id_deliveries'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts')),
        sa.UniqueConstraint('delivery_id', 'claimed_at', name=op.f('uq_delivery_attempts_delivery_id_claimed_at')),
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_attention')
        batch_op.drop_index(batch_op.f('ix_deliveries_user_id'))
        batch_op.create_index(
            'ix_deliveries_attention_id', ['status', 'id'], unique=False,
            postgresql_where=sa.text(ATTENTION), sqlite_where=sa.text(ATTENTION),
        )
        batch_op.create_index(
            'ix_deliveries_error_code_id', ['last_error_code', 'id'], unique=False,
            postgresql_where=sa.text(ERROR_CODE), sqlite_where=sa.text(ERROR_CODE),
        )
        batch_op.create_index('ix_deliveries_user_id_id', ['user_id', 'id'], unique=False)
        batch_op.create_index(
            'ix_deliveries_sent_at', ['sent_at'], unique=False,
            postgresql_where=sa.text(SENT_AT), sqlite_where=sa.text(SENT_AT),
        )


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_sent_at')
        batch_op.drop_index('ix_deliveries_user_id_id')
        batch_op.drop_index('ix_deliveries_error_code_id')
        batch_op.drop_index('ix_deliveries_attention_id')
        batch_op.create_index(batch_op.f('ix_deliveries_user_id'), ['user_id'], unique=False)
        batch_op.create_index(
            'ix_deliveries_attention', ['status'], unique=False,
            postgresql_where=sa.text(ATTENTION_OLD), sqlite_where=sa.text(ATTENTION_OLD),
        )
    op.drop_table('delivery_attempts')
