"""list indexes: the inbox index leads with the message type and ends with the order's tie-break

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:50:00.000000

`(user_id, last_message) INCLUDE (message_type, read, follow_up)` served one order only: a folder
(`messageType:eq:X`, every list the messaging app sends) scanned the user's whole inbox to find
its rows, and the tie-break on conversation_id needed a sort step. The new index answers a folder
as one range and a whole inbox as one range per type, merged (messaging/inbox.py), still one
index beside the primary key, so the fan-out writes no more than before.
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_user_messages_user_id_last_message')
        batch_op.create_index(
            'ix_user_messages_inbox',
            ['user_id', 'message_type', 'last_message', 'conversation_id'],
            unique=False,
            postgresql_include=['read', 'follow_up'],
        )


def downgrade() -> None:
    with op.batch_alter_table('user_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_user_messages_inbox')
        batch_op.create_index(
            'ix_user_messages_user_id_last_message',
            ['user_id', 'last_message'],
            unique=False,
            postgresql_include=['message_type', 'read', 'follow_up'],
        )
