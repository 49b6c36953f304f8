"""security: failed logins shared by every API process; indexes for per-uploader limits and clean-up

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_failures',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('key', sa.String(length=320), nullable=False),
        sa.Column('failed_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures')),
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index('ix_login_failures_key', ['key', 'failed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_failures_failed_at'), ['failed_at'], unique=False)
    with op.batch_alter_table('file_resources', schema=None) as batch_op:
        batch_op.create_index('ix_file_resources_owner', ['created_by_id', 'assigned'], unique=False)
        batch_op.create_index('ix_file_resources_unassigned', ['assigned', 'created'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('file_resources', schema=None) as batch_op:
        batch_op.drop_index('ix_file_resources_unassigned')
        batch_op.drop_index('ix_file_resources_owner')
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_failures_failed_at'))
        batch_op.drop_index('ix_login_failures_key')
    op.drop_table('login_failures')
