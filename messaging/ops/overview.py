"""The operations overview from the database: per channel and per queue, throughput, latency, fan-outs.

Each query reads only what a partial index holds (due rows, rows needing attention, rows sent
recently, pending outbox events), so the dashboard's poll stays cheap with millions of SENT rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, cast, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from messaging import fanout, outbox
from messaging.deliveries.states import (
    CHANNELS,
    DEAD,
    DELIVERED,
    FAILED,
    QUEUED,
    SENDING,
    UNKNOWN,
)
from messaging.deliveries.states import DELIVERIES as _T
from messaging.models import Conversation, Message, OutboxEvent, UserMessage, utcnow

# The predicates of ix_deliveries_due and ix_deliveries_attention_id (messaging/models.py), verbatim.
DUE_INDEX_PREDICATE = "status IN ('QUEUED', 'FAILED', 'SENDING')"
ATTENTION_INDEX_PREDICATE = "status IN ('FAILED', 'DEAD', 'UNKNOWN', 'DISCARDED', 'SKIPPED')"
PERCENTILES = (0.5, 0.9, 0.99)


@dataclass
class ChannelFigures:
    """One channel's deliveries now and in the last hour."""

    channel: str
    waiting: int = 0
    in_progress: int = 0
    retrying: int = 0
    next_attempt_at: datetime | None = None
    dead: int = 0
    unknown: int = 0
    sent_last_hour: int = 0
    delivered_last_hour: int = 0
    oldest_waiting_at: datetime | None = None


@dataclass
class OutboxFigures:
    """The outbox queue: events not done yet."""

    waiting: int = 0
    in_progress: int = 0
    retrying: int = 0
    next_attempt_at: datetime | None = None
    oldest_waiting_at: datetime | None = None


@dataclass
class Overview:
    """Everything the dashboard's header shows, read at ``at``."""

    at: datetime
    channels: list[ChannelFigures] = field(default_factory=list)
    outbox: OutboxFigures = field(default_factory=OutboxFigures)


def overview(db: Session | Connection, channels: tuple[str, ...] = CHANNELS) -> Overview:
    """Deliveries per channel (waiting, in progress, retrying, dead, sent and delivered last hour) and the outbox."""
    now = utcnow()
    hour_ago = now - timedelta(hours=1)
    figures = {c: ChannelFigures(c) for c in channels}
    # One count per partial index, each WHERE the index's own predicate text: the planner then reads
    # only the open rows, never the SENT history (a plain IN over all five statuses scans the table).
    counted = [
        select(_T.c.channel, _T.c.status, func.count(), func.min(_T.c.created), func.min(_T.c.next_attempt_at))
        .where(text(predicate), _T.c.status.in_(wanted))
        .group_by(_T.c.channel, _T.c.status)
        for predicate, wanted in ((DUE_INDEX_PREDICATE, (QUEUED, SENDING, FAILED)), (ATTENTION_INDEX_PREDICATE, (DEAD, UNKNOWN)))
    ]
    rows = [row for statement in counted for row in db.execute(statement)]
    for channel, status, n, oldest, next_at in rows:
        f = figures.setdefault(channel, ChannelFigures(channel))
        if status == QUEUED:
            f.waiting, f.oldest_waiting_at = int(n), oldest
        elif status == SENDING:
            f.in_progress = int(n)
        elif status == FAILED:
            f.retrying, f.next_attempt_at = int(n), next_at
        elif status == DEAD:
            f.dead = int(n)
        elif status == UNKNOWN:
            f.unknown = int(n)
    # Delivery reports (Twilio) come within hours of the send: the sent_at index bounds the search.
    recent = db.execute(
        select(
            _T.c.channel,
            func.count().filter(_T.c.sent_at >= hour_ago),
            func.count().filter(and_(_T.c.status == DELIVERED, _T.c.updated >= hour_ago)),
        )
        .where(_T.c.sent_at >= now - timedelta(hours=24))
        .group_by(_T.c.channel)
    )
    for channel, sent, delivered in recent:
        f = figures.setdefault(channel, ChannelFigures(channel))
        f.sent_last_hour, f.delivered_last_hour = int(sent), int(delivered)
    return Overview(at=now, channels=list(figures.values()), outbox=_outbox(db))


def _outbox(db: Session | Connection) -> OutboxFigures:
    o = OutboxEvent
    row = db.execute(
        select(
            func.count().filter(o.enqueued_at.is_(None)),
            func.count().filter(o.enqueued_at.is_not(None)),
            func.count().filter(o.last_error.is_not(None)),
            func.min(o.available_at).filter(o.last_error.is_not(None)),
            func.min(o.created_at),
        ).where(o.done_at.is_(None))
    ).one()
    return OutboxFigures(int(row[0]), int(row[1]), int(row[2]), row[3], row[4])


# Throughput: sends per channel per minute. PostgreSQL truncates with date_trunc; SQLite stores
# 'YYYY-MM-DD HH:MM:SS.ffffff', whose first 16 characters are the minute.
_THROUGHPUT_PG = text(
    """
    SELECT channel, date_trunc('minute', sent_at) AS minute, count(*) AS n
    FROM deliveries WHERE sent_at >= :since GROUP BY channel, minute ORDER BY minute
    """
)
_THROUGHPUT_SQLITE = text(
    """
    SELECT channel, substr(sent_at, 1, 16) AS minute, count(*) AS n
    FROM deliveries WHERE sent_at >= :since GROUP BY channel, minute ORDER BY minute
    """
)


def throughput(db: Session | Connection, *, hours: int = 24) -> dict[str, list[tuple[datetime, int]]]:
    """Deliveries sent per channel per minute over the last ``hours`` (minutes without sends left out)."""
    since = (utcnow() - timedelta(hours=hours)).replace(second=0, microsecond=0)
    pg = _dialect(db) == "postgresql"
    rows = db.execute(_THROUGHPUT_PG if pg else _THROUGHPUT_SQLITE, {"since": since})
    series: dict[str, list[tuple[datetime, int]]] = {}
    for channel, minute, n in rows:
        at = minute if isinstance(minute, datetime) else datetime.fromisoformat(f"{minute}:00")
        series.setdefault(channel, []).append((at, int(n)))
    return series


_LATENCY_PG = text(
    f"""
    SELECT d.channel, count(*) AS n,
           percentile_cont(ARRAY{list(PERCENTILES)}) WITHIN GROUP (ORDER BY extract(epoch FROM d.sent_at - m.created))
    FROM deliveries d JOIN messages m ON m.id = d.message_id
    WHERE d.sent_at >= :since GROUP BY d.channel
    """  # noqa: S608 (constants only)
)


def latency_s(db: Session | Connection, *, hours: int = 1) -> dict[str, dict[str, float | int]]:
    """Trigger-to-sent seconds (message created -> delivery sent) per channel: count, p50, p90, p99."""
    since = utcnow() - timedelta(hours=hours)
    result: dict[str, dict[str, float | int]] = {}
    if _dialect(db) == "postgresql":
        for channel, n, values in db.execute(_LATENCY_PG, {"since": since}):
            result[channel] = {"count": int(n), **{_pname(p): round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)}}
        return result
    # SQLite has no percentile function: the durations of the last hour, sorted here.
    seconds = cast((func.julianday(_T.c.sent_at) - func.julianday(Message.created)) * 86_400.0, Float)
    rows = db.execute(
        select(_T.c.channel, seconds).join(Message, Message.id == _T.c.message_id).where(_T.c.sent_at >= since)
    )
    durations: dict[str, list[float]] = {}
    for channel, s in rows:
        durations.setdefault(channel, []).append(float(s))
    for channel, values in durations.items():
        values.sort()
        result[channel] = {"count": len(values), **{_pname(p): round(_percentile(values, p), 3) for p in PERCENTILES}}
    return result


def _pname(p: float) -> str:
    return f"p{round(p * 100)}"


def _percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    k = (len(values) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


@dataclass(frozen=True, slots=True)
class FanOut:
    """An outbox event handed to a worker and not done: how far its expansion has got."""

    event_id: int
    kind: str
    conversation_uid: str | None
    subject: str | None
    expanded: int
    audience: int | None
    started_at: datetime | None
    attempts: int
    last_error: str | None


def fanouts(db: Session | Connection, *, limit: int = 20) -> list[FanOut]:
    """Fan-outs in progress: "expanded X of Y", as the fan-out's last committed chunk recorded it."""
    events: list[OutboxEvent] = list(db.execute(
        select(OutboxEvent)
        .where(
            OutboxEvent.done_at.is_(None),
            OutboxEvent.enqueued_at.is_not(None),
            OutboxEvent.kind.in_((outbox.CONVERSATION_CREATED, outbox.RECIPIENTS_ADDED)),
        )
        .order_by(OutboxEvent.id)
        .limit(limit)
    ).scalars())
    found = []
    for event in events:
        payload: dict[str, Any] = event.payload or {}
        conversation_id = payload.get("conversation_id")
        audience: int | None
        if event.progress_audience is not None:
            expanded, audience = event.progress_expanded or 0, event.progress_audience
        else:
            # Not started: the rows the request wrote, of an audience counted here (once its
            # first chunk commits, the fan-out records both).
            expanded, audience = _not_started(db, payload, conversation_id)
        conversation = db.execute(select(Conversation.uid, Conversation.subject).where(Conversation.id == conversation_id)).first()
        found.append(FanOut(
            event_id=event.id, kind=event.kind, conversation_uid=conversation.uid if conversation else None,
            subject=conversation.subject if conversation else None, expanded=expanded,
            audience=max(audience, expanded) if audience is not None else None, started_at=event.enqueued_at,
            attempts=event.attempts, last_error=event.last_error,
        ))  # fmt: skip
    return found


def _not_started(db: Session | Connection, payload: dict[str, Any], conversation_id: Any) -> tuple[int, int | None]:
    sender = payload.get("sender_id")
    recipients = fanout.recipients_select(
        [*([sender] if sender is not None else []), *payload.get("users", [])],
        payload.get("groups", []), payload.get("org_units", []),
    )  # fmt: skip
    audience = None
    if recipients is not None:
        audience = int(db.execute(select(func.count()).select_from(recipients.subquery())).scalar_one())
    expanded = int(db.execute(select(func.count()).where(UserMessage.conversation_id == conversation_id)).scalar_one())
    return expanded, audience


def _dialect(db: Session | Connection) -> str:
    bind = db.get_bind() if isinstance(db, Session) else db
    return bind.dialect.name

