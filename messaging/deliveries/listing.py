"""Reading deliveries for operators, in the older shape: one page with its total, and counts."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from messaging.deliveries.search import DeliveryQuery, DeliveryView, count, page
from messaging.deliveries.states import DELIVERIES as _T


def list_deliveries(
    session: Session,
    *,
    statuses: Collection[str] = (),
    channel: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[int, list[DeliveryView]]:
    """(total, one page) of deliveries, newest first, filtered by status and channel."""
    query = DeliveryQuery(statuses=tuple(sorted(statuses)), channels=(channel,) if channel else ())
    return count(session, query), page(session, query, limit=limit, offset=offset)


def counts(session: Session) -> dict[tuple[str, str], int]:
    """How many deliveries each (channel, status) holds."""
    rows = session.execute(select(_T.c.channel, _T.c.status, func.count()).group_by(_T.c.channel, _T.c.status))
    return {(channel, status): int(n) for channel, status, n in rows}
