"""The fleet's figures for ``/metrics``, from the database: they cover every process and survive restarts.

A scrape never reads the whole delivery history. Gauges (deliveries per status, queue depths)
count only the open rows, through the partial indexes the ops overview uses. Counters (attempts
by outcome, retries, the trigger-to-sent histogram) come from the append-only
``delivery_attempts``: each scrape folds the attempts recorded since the previous one into
``metric_totals`` (a watermark on the attempt id, ``metric_tables.py``) and adds the few not
folded yet, read live, so a figure is exact at the moment of the scrape.

Folding is safe with several API processes scraping at once (a compare-and-set on the watermark
row decides who folds) and never skips a row whose id was drawn by a transaction still open: a
step is prepared at one scrape and taken at a later one, on PostgreSQL only once every
transaction that was running when it was prepared has ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import Float, Table, and_, case, func, literal_column, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from messaging.deliveries.states import DEAD, DISCARDED, FAILED, QUEUED, SENDING, SENT, SKIPPED, UNKNOWN
from messaging.metric_tables import MetricTotal, MetricWatermark
from messaging.models import Delivery, DeliveryAttempt, Message, OutboxEvent, UserMessage, utcnow
from messaging.ops.overview import ATTENTION_INDEX_PREDICATE, DUE_INDEX_PREDICATE

_D = cast(Table, Delivery.__table__)
_M = cast(Table, Message.__table__)
_A = cast(Table, DeliveryAttempt.__table__)
_W = cast(Table, MetricWatermark.__table__)
_T = cast(Table, MetricTotal.__table__)
K = TypeVar("K")
N = TypeVar("N", int, float)
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
WAITING = (QUEUED, FAILED)
ATTEMPTS = "delivery_attempts"  # the watermark's name
# Each partial index and the statuses counted through it: the attention ones from
# ix_deliveries_attention_channel (index-only), the rest of the due ones from ix_deliveries_due.
GAUGED = ((ATTENTION_INDEX_PREDICATE, (FAILED, DEAD, UNKNOWN, DISCARDED, SKIPPED)), (DUE_INDEX_PREDICATE, (QUEUED, SENDING)))


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    """Open deliveries of one channel in one status (the SENT history is counted by attempts instead)."""

    channel: str
    status: str
    count: int


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


@dataclass
class AttemptTotals:
    """Running totals over every recorded attempt: per (channel, outcome), retries per channel, latency sums."""

    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    latency_buckets: dict[tuple[str, float], int] = field(default_factory=dict)
    latency_count: dict[str, int] = field(default_factory=dict)
    latency_sum_s: dict[str, float] = field(default_factory=dict)

    def add(self, other: AttemptTotals) -> None:
        """Add another set of totals to these."""
        _merge(self.outcomes, other.outcomes)
        _merge(self.retries, other.retries)
        _merge(self.latency_buckets, other.latency_buckets)
        _merge(self.latency_count, other.latency_count)
        _merge(self.latency_sum_s, other.latency_sum_s)

    def histograms(self) -> list[LatencyHistogram]:
        """The trigger-to-sent histogram of each channel that sent anything."""
        return [
            LatencyHistogram(
                channel, [(b, self.latency_buckets.get((channel, b), 0)) for b in LATENCY_BUCKETS_S],
                n, max(0.0, self.latency_sum_s.get(channel, 0.0)),
            )
            for channel, n in sorted(self.latency_count.items())
        ]


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything ``/metrics`` shows from the database."""

    deliveries: list[DeliveryCount]
    attempts: AttemptTotals
    queues: list[QueueDepth]
    fanout_recipients: int

    @property
    def latency(self) -> list[LatencyHistogram]:
        """Trigger-to-sent latency per channel, over every sent attempt."""
        return self.attempts.histograms()


def delivery_counts(session: Session) -> list[DeliveryCount]:
    """Open deliveries per (channel, status): queued, sending, failed, dead, unknown, discarded, skipped."""
    counts: list[DeliveryCount] = []
    for predicate, statuses in GAUGED:
        # The index's own predicate, verbatim: the planner then reads only the index's rows.
        rows = session.execute(
            select(_D.c.channel, _D.c.status, func.count())
            .where(text(predicate), *([_D.c.status.in_(statuses)] if predicate == DUE_INDEX_PREDICATE else []))
            .group_by(_D.c.status, _D.c.channel)
        )
        counts += [DeliveryCount(channel, status, int(n)) for channel, status, n in rows]
    return sorted(counts, key=lambda c: (c.channel, c.status))


def queue_depths(session: Session) -> list[QueueDepth]:
    """The outbox's pending events and each channel's due deliveries (QUEUED or FAILED and due), with ages."""
    now = utcnow()
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.done_at.is_(None))
    ).one()
    queues = [QueueDepth("outbox", int(count), _age_s(now, oldest))]
    rows = session.execute(
        select(_D.c.channel, func.count(), func.min(_D.c.next_attempt_at))
        .where(text(DUE_INDEX_PREDICATE), _D.c.status.in_(WAITING), _D.c.next_attempt_at <= now)
        .group_by(_D.c.channel)
        .order_by(_D.c.channel)
    )
    queues += [QueueDepth(f"deliveries.{channel}", int(n), _age_s(now, first)) for channel, n, first in rows]
    return queues


def fanout_recipients(session: Session) -> int:
    """Inbox rows written (each a recipient a message reached, by the request or the fan-out)."""
    return int(session.scalar(select(func.count()).select_from(UserMessage)) or 0)


def fold(session: Session) -> int:
    """Fold the attempts recorded before the last scrape into ``metric_totals``; commits. Returns the new watermark."""
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    watermark = select(_W.c.folded_id, _W.c.pending_id, _W.c.pending_at).where(_W.c.name == ATTEMPTS)
    row = session.execute(watermark).one_or_none()
    if row is None:  # the first scrape after the upgrade
        session.execute(insert(_W).values(name=ATTEMPTS, folded_id=0).on_conflict_do_nothing())
        session.commit()
        row = session.execute(watermark).one()
    folded, pending, pending_at = row
    if pending is not None and pending > folded and (not postgres or _settled(session, pending_at)):
        # Compare-and-set: of several scrapes at once, one moves the watermark; the others fold nothing.
        moved = session.execute(
            update(_W).where(_W.c.name == ATTEMPTS, _W.c.folded_id == folded, _W.c.pending_id == pending)
            .values(folded_id=pending, pending_id=None, pending_at=None, folded_at=utcnow())
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return int(folded)
        _add_totals(session, _attempt_totals(session, above=folded, up_to=pending), insert)
        folded, pending = pending, None
    if pending is None:
        # The next step: what is visible now, taken once every transaction open now has ended.
        at: Any = literal_column("timezone('UTC', clock_timestamp())") if postgres else utcnow()
        newest = select(func.max(_A.c.id)).scalar_subquery()
        session.execute(
            update(_W).where(_W.c.name == ATTEMPTS, _W.c.folded_id == folded, _W.c.pending_id.is_(None))
            .values(pending_id=newest, pending_at=at)
        )
    session.commit()
    return int(folded)


def attempt_totals(session: Session) -> AttemptTotals:
    """The running totals: what is folded, plus every attempt above the watermark, read live."""
    # The totals and their watermark come from one statement (one snapshot); attempts are only ever
    # appended, so those above that watermark, read a moment later, complete them exactly.
    folded, totals = _folded(session)
    totals.add(_attempt_totals(session, above=folded, up_to=None))
    return totals


def figures(session: Session) -> Figures:
    """Every figure, read now (folding first: the session commits)."""
    fold(session)
    return Figures(delivery_counts(session), attempt_totals(session), queue_depths(session), fanout_recipients(session))


def _merge(mine: dict[K, N], theirs: dict[K, N]) -> None:
    for key, value in theirs.items():
        mine[key] = mine.get(key, 0) + value


_OPEN_BEFORE = text(
    """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND timezone('UTC', xact_start) < :at
      AND (backend_xid IS NOT NULL OR state = 'active')
    """
)


def _settled(session: Session, pending_at: Any) -> bool:
    """No other transaction of this database that began before ``pending_at`` and wrote (or is running) is still open.

    Such a transaction may hold an attempt id below the pending one that it has not committed yet.
    Transactions of other databases cannot write here, and one idle without having written holds
    no id (an id is drawn by the statement that writes the row): neither delays folding.
    """
    return pending_at is not None and int(session.scalar(_OPEN_BEFORE, {"at": pending_at}) or 0) == 0


def _seconds_between(start: Any, end: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * literal_column("86400.0")


def _attempt_totals(session: Session, *, above: int, up_to: int | None) -> AttemptTotals:
    """Attempts with ``above < id <= up_to`` (no upper bound: None), joined to their delivery and message."""
    dialect = session.get_bind().dialect.name
    sent = _A.c.outcome == SENT
    seconds = sql_cast(_seconds_between(_M.c.created, func.coalesce(_D.c.sent_at, _A.c.finished_at), dialect), Float)
    buckets = [func.sum(case((and_(sent, seconds <= bound), 1), else_=0)) for bound in LATENCY_BUCKETS_S]
    where = [_A.c.id > above] + ([_A.c.id <= up_to] if up_to is not None else [])
    rows = session.execute(
        select(
            _D.c.channel, _A.c.outcome, func.count(), func.sum(case((_A.c.attempt > 1, 1), else_=0)),
            func.sum(case((sent, seconds), else_=0.0)), *buckets,
        )
        .select_from(_A.join(_D, _D.c.id == _A.c.delivery_id).join(_M, _M.c.id == _D.c.message_id))
        .where(*where)
        .group_by(_D.c.channel, _A.c.outcome)
    )
    totals = AttemptTotals()
    for channel, outcome, n, retries, seconds_sum, *cumulative in rows:
        part = AttemptTotals(outcomes={(channel, outcome): int(n)}, retries={channel: int(retries or 0)})
        if outcome == SENT:
            part.latency_count = {channel: int(n)}
            part.latency_sum_s = {channel: float(seconds_sum or 0.0)}
            part.latency_buckets = {(channel, b): int(c or 0) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)}
        totals.add(part)
    return totals


def _rows_of(totals: AttemptTotals) -> Iterable[dict[str, Any]]:
    for (channel, outcome), n in totals.outcomes.items():
        yield {"name": "attempts", "channel": channel, "label": outcome, "value": float(n)}
    for channel, n in totals.retries.items():
        yield {"name": "retries", "channel": channel, "label": "", "value": float(n)}
    for (channel, bound), n in totals.latency_buckets.items():
        yield {"name": "latency_bucket", "channel": channel, "label": repr(bound), "value": float(n)}
    for channel, n in totals.latency_count.items():
        yield {"name": "latency_count", "channel": channel, "label": "", "value": float(n)}
    for channel, s in totals.latency_sum_s.items():
        yield {"name": "latency_sum", "channel": channel, "label": "", "value": s}


def _add_totals(session: Session, totals: AttemptTotals, insert: Any) -> None:
    rows = list(_rows_of(totals))
    if rows:
        statement = insert(_T)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[_T.c.name, _T.c.channel, _T.c.label], set_={"value": _T.c.value + statement.excluded.value}
            ),
            rows,
        )


def _folded(session: Session) -> tuple[int, AttemptTotals]:
    # The watermark and the totals in one statement: one snapshot on every database.
    rows = session.execute(
        select(_W.c.folded_id, _T.c.name, _T.c.channel, _T.c.label, _T.c.value)
        .select_from(_W.outerjoin(_T, literal_column("1") == literal_column("1")))
        .where(_W.c.name == ATTEMPTS)
    ).all()
    totals = AttemptTotals()
    folded = int(rows[0][0]) if rows else 0
    for _folded_id, name, channel, label, value in rows:
        if name == "attempts":
            totals.outcomes[(channel, label)] = int(value)
        elif name == "retries":
            totals.retries[channel] = int(value)
        elif name == "latency_bucket":
            totals.latency_buckets[(channel, float(label))] = int(value)
        elif name == "latency_count":
            totals.latency_count[channel] = int(value)
        elif name == "latency_sum":
            totals.latency_sum_s[channel] = float(value)
    return folded, totals


def _age_s(now: Any, oldest: Any) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
