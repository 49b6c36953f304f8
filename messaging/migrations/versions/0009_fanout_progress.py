"""fan-out progress: each chunk commits the cursor, expanded and audience with the outbox event;
deliveries lose their foreign keys (their per-row checks were most of the fan-out's delivery INSERT)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('progress_cursor', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('progress_expanded', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('progress_audience', sa.Integer(), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('fk_deliveries_message_id_messages', type_='foreignkey')
        batch_op.drop_constraint('fk_deliveries_user_id_users', type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_foreign_key(
            'fk_deliveries_user_id_users', 'users', ['user_id'], ['id'], ondelete='CASCADE'
        )
        batch_op.create_foreign_key(
            'fk_deliveries_message_id_messages', 'messages', ['message_id'], ['id'], ondelete='CASCADE'
        )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('progress_audience')
        batch_op.drop_column('progress_expanded')
        batch_op.drop_column('progress_cursor')
