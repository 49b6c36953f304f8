"""delivery: NOTIFY the outbox relays when an outbox event commits (PostgreSQL)

The relays LISTEN on "herald_outbox" instead of polling an idle database every
HERALD_OUTBOX_POLL_S (workers/relay.py). A statement-level trigger: one notification per
INSERT statement, delivered at commit (never for a rolled-back event), whatever code wrote it.
SQLite has no NOTIFY: its relays keep polling.

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-01 23:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION herald_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_notify('herald_outbox', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION herald_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS herald_outbox_notify()")
