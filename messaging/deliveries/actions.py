"""Operator actions on deliveries: re-drive DEAD and UNKNOWN rows. Staged, never committed here."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import case, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from messaging.deliveries.states import DEAD, EMAIL, QUEUED, REQUEUEABLE, USERS
from messaging.deliveries.states import DELIVERIES as _T
from messaging.models import utcnow


def requeue(
    db: Session | Connection,
    *,
    ids: Sequence[int] | None = None,
    every: bool = False,
    statuses: Collection[str] = (DEAD,),
) -> int:
    """Send DEAD (or UNKNOWN) deliveries again: one, a selection (``ids``) or ``every`` one. No commit.

    Attempts start again from zero and the address is read afresh from the user, so fixing a
    user's email or phone number and re-driving is the remedy for an invalid address.
    """
    wanted = set(statuses)
    if not wanted or not wanted <= REQUEUEABLE:
        raise ValueError(f"only {' and '.join(sorted(REQUEUEABLE))} deliveries can be requeued")
    if ids is None and not every:
        raise ValueError("name the deliveries to requeue, or ask for all of them")
    conditions = [_T.c.status.in_(sorted(wanted))]
    if ids is not None:
        if not ids:
            return 0
        conditions.append(_T.c.id.in_(list(ids)))
    now = utcnow()
    current = (
        select(case((_T.c.channel == EMAIL, USERS.c.email), else_=USERS.c.phone_number))
        .where(USERS.c.id == _T.c.user_id)
        .scalar_subquery()
    )
    result = db.execute(
        update(_T)
        .where(*conditions)
        .values(
            status=QUEUED,
            attempts=0,
            next_attempt_at=now,
            enqueued_at=None,
            claimed_at=None,
            provider_id=None,
            provider_status=None,
            sent_at=None,
            address=func.nullif(func.trim(current), ""),
            updated=now,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
