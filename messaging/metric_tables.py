"""Tables behind /metrics: running totals folded from the append-only delivery attempts, and how far they go."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import DateTime, Float, Index, String, Table, text
from sqlalchemy.orm import Mapped, mapped_column

from messaging.models import Base, BigId, Delivery


class MetricWatermark(Base):
    """How far a table has been folded into ``metric_totals``, and the next step once it is safe to take.

    ``folded_id``: every row with an id up to it is counted in the totals. ``pending_id`` and
    ``pending_at``: the highest id visible at the last scrape and when it was read (database
    clock); a later scrape folds up to ``pending_id`` only once no transaction of this database
    that began before ``pending_at`` is still open (PostgreSQL), so a row whose id was drawn but
    not yet committed then is never skipped. SQLite has one writer: what is visible is final.
    """

    __tablename__ = "metric_watermarks"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    folded_id: Mapped[int] = mapped_column(BigId, default=0)
    pending_id: Mapped[int | None] = mapped_column(BigId)
    pending_at: Mapped[datetime | None] = mapped_column(DateTime)
    folded_at: Mapped[datetime | None] = mapped_column(DateTime)


class MetricTotal(Base):
    """One running total: a counter, or a histogram's bucket, count or sum, per channel and label."""

    __tablename__ = "metric_totals"
    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    label: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)


_DELIVERIES = cast(Table, Delivery.__table__)
# The scrape's count of open deliveries per (status, channel) as an index-only scan: dead letters
# pile up, and ix_deliveries_attention_id (status, id) would send each one to the heap for its
# channel. Only rows in these statuses are in it, so sending (QUEUED -> SENT) never writes to it.
ATTENTION_CHANNEL_INDEX = Index(
    "ix_deliveries_attention_channel",
    _DELIVERIES.c.status,
    _DELIVERIES.c.channel,
    postgresql_where=text("status IN ('FAILED', 'DEAD', 'UNKNOWN', 'DISCARDED', 'SKIPPED')"),
    sqlite_where=text("status IN ('FAILED', 'DEAD', 'UNKNOWN', 'DISCARDED', 'SKIPPED')"),
)
