"""The transactional outbox: work staged with the request's data, relayed to the broker later."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, func, insert, or_, select, update
from sqlalchemy.orm import Session

from messaging import context
from messaging.models import OutboxEvent, utcnow

CONVERSATION_CREATED = "conversation.created"
MESSAGE_REPLIED = "message.replied"
RECIPIENTS_ADDED = "conversation.recipients_added"
VALIDATION_RESULTS = "validation.results"  # notify validation results (messaging.validation.notification)
FANOUT_RANGE = "fanout.range"  # one range of user ids of a fan-out split across workers (messaging.fanout)
RANGE = "range"  # a range event's payload key: {"parent": the fan-out's id, "kind", "after", "upto"}
KINDS = frozenset({CONVERSATION_CREATED, MESSAGE_REPLIED, RECIPIENTS_ADDED, VALIDATION_RESULTS, FANOUT_RANGE})


_OUTBOX = cast(Table, OutboxEvent.__table__)
_INSERT = insert(_OUTBOX)  # compiled once; a plain INSERT costs a fraction of an ORM flush (issue 12)


def stage(session: Session, kind: str, payload: dict[str, Any]) -> None:
    """Insert an outbox event in the caller's transaction, with the current request id. No commit."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    now = utcnow()
    session.execute(
        _INSERT,
        {"kind": kind, "payload": payload, "request_id": context.request_id(), "created_at": now,
         "available_at": now, "attempts": 0},
    )


@dataclass(frozen=True)
class Claimed:
    """An outbox event handed to the relay for enqueueing."""

    id: int
    kind: str
    request_id: str | None = None


def claim_due(engine: Engine, *, limit: int, stale_s: float) -> list[Claimed]:
    """Mark up to `limit` due events as enqueued now and return them.

    Due means never enqueued, or enqueued more than `stale_s` ago and still not done (the
    broker lost it, or the worker died). On PostgreSQL, SKIP LOCKED lets several relays run.
    """
    now = utcnow()
    stale_before = now - timedelta(seconds=stale_s)
    query = (
        select(OutboxEvent.id, OutboxEvent.kind, OutboxEvent.request_id)
        .where(
            OutboxEvent.done_at.is_(None),
            OutboxEvent.available_at <= now,
            or_(OutboxEvent.enqueued_at.is_(None), OutboxEvent.enqueued_at < stale_before),
        )
        .order_by(OutboxEvent.available_at, OutboxEvent.id)
        .limit(limit)
    )
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    with engine.begin() as conn:
        rows = conn.execute(query).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        conn.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(ids))
            .values(enqueued_at=now, attempts=OutboxEvent.attempts + 1)
        )
    return [Claimed(id=r.id, kind=r.kind, request_id=r.request_id) for r in rows]


def release(engine: Engine, ids: list[int]) -> None:
    """Forget that these events were enqueued (the broker refused them), so they go again."""
    if ids:
        with engine.begin() as conn:
            conn.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(enqueued_at=None))


def record_failure(engine: Engine, event_id: int, error: str) -> None:
    """Keep the last processing error of an event for operators (a range's on its fan-out too, which they see)."""
    with engine.begin() as conn:
        payload = conn.scalar(
            update(OutboxEvent).where(OutboxEvent.id == event_id).values(last_error=error[:2000]).returning(OutboxEvent.payload)
        )
        parent = (payload or {}).get(RANGE, {}).get("parent")
        if parent is not None:
            conn.execute(update(OutboxEvent).where(OutboxEvent.id == parent).values(last_error=error[:2000]))


@dataclass(frozen=True)
class OutboxStats:
    """What the outbox holds, for metrics and the operations docs."""

    pending: int
    oldest_pending_age_s: float | None


def stats(session: Session) -> OutboxStats:
    """Count pending events and the age of the oldest."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.done_at.is_(None))
    ).one()
    age = (utcnow() - oldest).total_seconds() if oldest is not None else None
    return OutboxStats(pending=int(count), oldest_pending_age_s=age)
