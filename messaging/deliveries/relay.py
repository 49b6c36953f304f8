"""The relay's and the sweeper's statements: hand due rows to the broker, forget lost ones, expire leases.

A SENDING row whose lease ran out belonged to a worker that died mid-send; the provider may have
the message, so the sweeper marks it UNKNOWN, never resends it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from messaging.deliveries.states import ATTEMPTS, DUE, SENDING, UNKNOWN, sql_in
from messaging.deliveries.states import DELIVERIES as _T
from messaging.models import utcnow

LEASE_EXPIRED = "lease-expired"
_LEASE_EXPIRED_TEXT = (
    "the worker stopped while sending (its lease expired): the provider may have the message; "
    "re-drive it if it did not arrive"
)

# PostgreSQL: one statement, one round trip. The due rows are picked and locked (SKIP LOCKED, so
# several relays share the work) in an ARRAY(...) init plan and updated by primary key; the
# status test is written out so the partial indexes' predicates match it.
_CLAIM_DUE_PG = f"""
    UPDATE deliveries SET enqueued_at = :now
    WHERE id = ANY (ARRAY(
        SELECT id FROM deliveries
        WHERE status IN {sql_in(DUE)} AND next_attempt_at <= :now
          AND channel = ANY (CAST(:channels AS VARCHAR[])) AND {{enqueued}}
        ORDER BY next_attempt_at, id LIMIT :limit FOR UPDATE SKIP LOCKED))
    RETURNING id, channel
"""  # noqa: S608 (constants from states.py, checked by sql_in)
# The delivery relays LISTEN on this channel (workers/delivery.py): a release or a retry scheduled
# NOTIFYs it in its own transaction, so the relays look again then instead of polling.
NOTIFY_CHANNEL = "herald_deliveries"
_NOTIFY_PG = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")
_CLAIM_UNQUEUED_PG = text(_CLAIM_DUE_PG.format(enqueued="enqueued_at IS NULL"))
_CLAIM_STALE_PG = text(_CLAIM_DUE_PG.format(enqueued="enqueued_at < :stale_before"))


def claim_due(engine: Engine, channels: Collection[str], *, limit: int, stale_s: float | None = None) -> list[tuple[int, str]]:
    """Mark up to ``limit`` due rows as handed to the broker now; return (id, channel) pairs, by id.

    Due: QUEUED or FAILED with ``next_attempt_at`` passed, never enqueued, or (``stale_s`` given)
    enqueued longer ago than that and still not claimed: the broker lost the job.
    """
    if not channels:
        return []
    now = utcnow()
    stale_before = None if stale_s is None else now - timedelta(seconds=stale_s)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            pg = _CLAIM_UNQUEUED_PG if stale_before is None else _CLAIM_STALE_PG
            params = {"now": now, "channels": list(channels), "limit": limit, "stale_before": stale_before}
            return sorted((row.id, row.channel) for row in conn.execute(pg, params))
        conditions = [_T.c.status.in_(DUE), _T.c.next_attempt_at <= now, _T.c.channel.in_(list(channels))]
        if stale_before is None:
            conditions.append(_T.c.enqueued_at.is_(None))
        else:
            conditions.append(_T.c.enqueued_at < stale_before)
        query = select(_T.c.id).where(*conditions).order_by(_T.c.next_attempt_at, _T.c.id).limit(limit)
        statement = update(_T).where(_T.c.id.in_(query)).values(enqueued_at=now).returning(_T.c.id, _T.c.channel)
        return sorted((row.id, row.channel) for row in conn.execute(statement))


def release(engine: Engine, ids: Sequence[int]) -> None:
    """Forget that these rows were enqueued (the broker refused them, or no worker had room): the relay sends them again."""
    if ids:
        with engine.begin() as conn:
            conn.execute(update(_T).where(_T.c.id.in_(list(ids)), _T.c.status.in_(DUE)).values(enqueued_at=None))
            notify_relays(conn)


def notify_relays(conn: Connection) -> None:
    """Wake the listening delivery relays when this transaction commits (PostgreSQL; elsewhere they poll)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY_PG)


def next_due_in_s(engine: Engine) -> float | None:
    """Seconds until the earliest QUEUED/FAILED row not handed to the broker is due (negative: overdue); None: none.

    One index-only read of ix_deliveries_unqueued: how long a listening relay may sleep.
    """
    query = select(func.min(_T.c.next_attempt_at)).where(_T.c.status.in_(DUE), _T.c.enqueued_at.is_(None))
    with engine.connect() as conn:
        earliest = conn.execute(query).scalar()
    return None if earliest is None else (earliest - utcnow()).total_seconds()


def expire_leases(engine: Engine) -> int:
    """Mark SENDING rows whose lease ran out UNKNOWN (their worker died mid-send), with an attempt each; return how many."""
    now = utcnow()
    with engine.begin() as conn:
        expired = conn.execute(
            update(_T)
            .where(_T.c.status == SENDING, _T.c.next_attempt_at < now)
            .values(
                status=UNKNOWN,
                last_error_code=LEASE_EXPIRED,
                last_error=_LEASE_EXPIRED_TEXT,
                updated=now,
            )
            .returning(_T.c.id, _T.c.attempts, _T.c.claimed_at)
        ).all()
        history = [
            {"delivery_id": row.id, "attempt": row.attempts, "claimed_at": row.claimed_at, "finished_at": now,
             "outcome": UNKNOWN, "error_code": LEASE_EXPIRED, "provider_answer": _LEASE_EXPIRED_TEXT}
            for row in expired
            if row.claimed_at is not None
        ]  # fmt: skip
        if history:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(ATTEMPTS).on_conflict_do_nothing(), history)
        return len(expired)
