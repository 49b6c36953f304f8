"""metrics: running totals folded from delivery_attempts, so a scrape never reads the whole history

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 23:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'metric_watermarks',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('folded_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('pending_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('pending_at', sa.DateTime(), nullable=True),
        sa.Column('folded_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_metric_watermarks')),
    )
    op.create_table(
        'metric_totals',
        sa.Column('name', sa.String(length=48), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('label', sa.String(length=32), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('name', 'channel', 'label', name=op.f('pk_metric_totals')),
    )
    attention = sa.text("status IN ('FAILED', 'DEAD', 'UNKNOWN', 'DISCARDED', 'SKIPPED')")
    op.create_index(
        'ix_deliveries_attention_channel', 'deliveries', ['status', 'channel'], unique=False,
        postgresql_where=attention, sqlite_where=attention,
    )


def downgrade() -> None:
    op.drop_index('ix_deliveries_attention_channel', table_name='deliveries')
    op.drop_table('metric_totals')
    op.drop_table('metric_watermarks')
