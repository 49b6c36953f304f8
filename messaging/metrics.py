"""The fleet's figures, read from the database at scrape time: they cover every process and survive restarts.

``/metrics`` turns these into Prometheus families (``api/metrics.py``). Each scrape runs a few
aggregate queries: one over the deliveries (counts, retries), one over the sent ones joined to
their messages (trigger-to-sent latency), and small ones over the outbox and the inbox rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Float, Table, case, func, literal_column, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from messaging.models import Delivery, DeliveryStatus, Message, OutboxEvent, UserMessage, utcnow

_D = cast(Table, Delivery.__table__)
_M = cast(Table, Message.__table__)
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
WAITING = (DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value)


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    """Deliveries of one channel in one status, and the attempts beyond each row's first."""

    channel: str
    status: str
    count: int
    retries: int


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Work waiting in one queue and the age of its oldest item (0 when empty)."""

    queue: str
    depth: int
    oldest_age_s: float


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """Trigger (message created) to sent, per channel: cumulative counts per upper bound, the count and sum."""

    channel: str
    buckets: Sequence[tuple[float, int]]
    count: int
    sum_s: float


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything ``/metrics`` shows from the database."""

    deliveries: list[DeliveryCount]
    queues: list[QueueDepth]
    latency: list[LatencyHistogram]
    fanout_recipients: int


def delivery_counts(session: Session) -> list[DeliveryCount]:
    """Deliveries per (channel, status), and their retries (attempts beyond the first)."""
    retries = func.sum(case((_D.c.attempts > 1, _D.c.attempts - 1), else_=0))
    rows = session.execute(
        select(_D.c.channel, _D.c.status, func.count(), retries).group_by(_D.c.channel, _D.c.status)
        .order_by(_D.c.channel, _D.c.status)
    )
    return [DeliveryCount(channel, status, int(n), int(r or 0)) for channel, status, n, r in rows]


def queue_depths(session: Session) -> list[QueueDepth]:
    """The outbox's pending events and each channel's due deliveries (QUEUED or FAILED and due), with ages."""
    now = utcnow()
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.done_at.is_(None))
    ).one()
    queues = [QueueDepth("outbox", int(count), _age_s(now, oldest))]
    rows = session.execute(
        select(_D.c.channel, func.count(), func.min(_D.c.next_attempt_at))
        .where(_D.c.status.in_(WAITING), _D.c.next_attempt_at <= now)
        .group_by(_D.c.channel)
        .order_by(_D.c.channel)
    )
    queues += [QueueDepth(f"deliveries.{channel}", int(n), _age_s(now, first)) for channel, n, first in rows]
    return queues


def _seconds_between(start: Any, end: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * literal_column("86400.0")


def latency(session: Session) -> list[LatencyHistogram]:
    """Trigger-to-sent latency of every sent delivery, per channel, as a cumulative histogram."""
    seconds = sql_cast(_seconds_between(_M.c.created, _D.c.sent_at, session.get_bind().dialect.name), Float)
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS_S]
    rows = session.execute(
        select(_D.c.channel, func.count(), func.sum(seconds), *columns)
        .select_from(_D.join(_M, _M.c.id == _D.c.message_id))
        .where(_D.c.sent_at.is_not(None))
        .group_by(_D.c.channel)
        .order_by(_D.c.channel)
    )
    histograms = []
    for channel, n, total, *cumulative in rows:
        buckets = [(bound, int(c or 0)) for bound, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)]
        histograms.append(LatencyHistogram(channel, buckets, int(n), max(0.0, float(total or 0.0))))
    return histograms


def fanout_recipients(session: Session) -> int:
    """Inbox rows written (each a recipient a message reached, by the request or the fan-out)."""
    return int(session.scalar(select(func.count()).select_from(UserMessage)) or 0)


def figures(session: Session) -> Figures:
    """Every figure, read now."""
    return Figures(delivery_counts(session), queue_depths(session), latency(session), fanout_recipients(session))


def _age_s(now: Any, oldest: Any) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
