"""participants: a record of removals, so the fan-out never adds a removed user back

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:00:00.000000

Named recipients now join in the request; group and org-unit members join later, through the
fan-out. A removal made in between must hold (DECISIONS #20): the fan-out anti-joins on this table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'removed_participants',
        sa.Column('conversation_id', big_id, nullable=False),
        sa.Column('user_id', big_id, nullable=False),
        sa.Column('removed_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('conversation_id', 'user_id', name=op.f('pk_removed_participants')),
    )


def downgrade() -> None:
    op.drop_table('removed_participants')
