"""Operator actions: retry now and discard, on one delivery, a selection, or all a query matches.

Set-based: one UPDATE per call over the ids a ``DeliveryQuery`` selects (only FAILED, DEAD and
UNKNOWN rows move). ``limit`` and ``before_id`` cut a large action into keyset batches, newest
first, so a caller can commit and show progress between them. Staged, never committed here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from messaging.deliveries.relay import notify_relays
from messaging.deliveries.search import DeliveryQuery, matching_ids
from messaging.deliveries.states import DEAD, DISCARDED, EMAIL, QUEUED, RETRYABLE, USERS
from messaging.deliveries.states import DELIVERIES as _T
from messaging.models import utcnow

RETRY, DISCARD = "retry", "discard"
ACTIONS = (RETRY, DISCARD)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one call changed: how many rows, and the lowest id it looked at (the next batch's ``before_id``)."""

    changed: int
    lowest_id: int | None


def _values(action: str) -> dict[str, Any]:
    now = utcnow()
    if action == DISCARD:
        return {"status": DISCARDED, "enqueued_at": None, "updated": now}
    # The address is read afresh (UPDATE ... FROM users): fixing a user's email or phone number and
    # retrying is the remedy for an invalid address.
    current = case((_T.c.channel == EMAIL, USERS.c.email), else_=USERS.c.phone_number)
    return {
        "status": QUEUED, "attempts": 0, "next_attempt_at": now, "enqueued_at": None, "claimed_at": None,
        "provider_id": None, "provider_status": None, "sent_at": None,
        "address": func.nullif(func.trim(current), ""), "updated": now,
    }  # fmt: skip


def act(
    db: Session | Connection,
    action: str,
    query: DeliveryQuery,
    *,
    statuses: Collection[str] = RETRYABLE,
    limit: int | None = None,
    before_id: int | None = None,
) -> Batch:
    """Retry now (QUEUED, attempts from zero, due at once) or discard the FAILED/DEAD/UNKNOWN rows ``query`` names."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: expected retry or discard")
    wanted = set(statuses)
    if not wanted or not wanted <= RETRYABLE:
        raise ValueError(f"only {', '.join(sorted(RETRYABLE))} deliveries can be retried or discarded")
    if query.ids is not None and not query.ids:
        return Batch(0, None)
    chosen = matching_ids(query, statuses=sorted(wanted))
    lowest: int | None = None
    if limit is not None:
        if before_id is not None:
            chosen = chosen.where(_T.c.id < before_id)
        ids = [int(i) for i in db.execute(chosen.order_by(_T.c.id.desc()).limit(limit)).scalars()]
        if not ids:
            return Batch(0, None)
        lowest = ids[-1]
        target: Any = _T.c.id.in_(ids)
    else:
        target = _T.c.id.in_(chosen.scalar_subquery())
    # The status guard again: a row a worker moved since the SELECT is left alone.
    statement = update(_T).where(target, _T.c.status.in_(sorted(wanted)))
    if action == RETRY:
        statement = statement.where(USERS.c.id == _T.c.user_id)
    result = db.execute(statement.values(**_values(action)))
    changed = int(getattr(result, "rowcount", 0) or 0)
    if action == RETRY and changed:
        # The listening delivery relays look again when this transaction commits, not at their next pass.
        notify_relays(db.connection() if isinstance(db, Session) else db)
    return Batch(changed, lowest)


def requeue(
    db: Session | Connection,
    *,
    ids: Sequence[int] | None = None,
    every: bool = False,
    statuses: Collection[str] = (DEAD,),
) -> int:
    """Retry now the DEAD (or FAILED, UNKNOWN) deliveries named by ``ids``, or ``every`` one. No commit."""
    if ids is None and not every:
        raise ValueError("name the deliveries to requeue, or ask for all of them")
    query = DeliveryQuery(ids=tuple(ids) if ids is not None else None)
    return act(db, RETRY, query, statuses=statuses).changed
