"""Worker heartbeats: each worker process upserts its row every few seconds; readers judge freshness.

A row is fresh while its ``last_seen`` is within ``fresh_s`` (three heartbeats) of now; rows not
seen for ``EXPIRE_S`` are deleted by the next beating worker, so a crashed worker shows as
not fresh for a while, then disappears.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, func, select, update
from sqlalchemy.orm import Session

from messaging.models import WorkerHeartbeat, utcnow

_T = cast(Table, WorkerHeartbeat.__table__)
EXPIRE_S = 600.0  # rows not seen for this long are deleted
FRESH_BEATS = 3  # a row is fresh while it missed fewer heartbeats than this
WORKER, IN_PROCESS = "worker", "in-process"


def fresh_s(heartbeat_s: float) -> float:
    """How long a heartbeat stays fresh."""
    return FRESH_BEATS * heartbeat_s


@dataclass(frozen=True, slots=True)
class Beat:
    """What one worker process reports about itself."""

    id: str
    hostname: str
    pid: int
    kind: str
    queues: Sequence[str]
    started_at: datetime
    current: Sequence[dict[str, Any]]


def beat(engine: Engine, b: Beat) -> None:
    """Write this worker's row (insert or refresh) and delete rows not seen for EXPIRE_S."""
    now = utcnow()
    values = {"last_seen": now, "current": list(b.current), "queues": list(b.queues)}
    with engine.begin() as conn:
        if not conn.execute(update(_T).where(_T.c.id == b.id).values(**values)).rowcount:
            conn.execute(
                _T.insert().values(
                    id=b.id, hostname=b.hostname, pid=b.pid, kind=b.kind, started_at=b.started_at, **values
                )
            )
        conn.execute(delete(_T).where(_T.c.last_seen < now - timedelta(seconds=EXPIRE_S)))


def forget(engine: Engine, worker_id: str) -> None:
    """Delete a worker's row (it is stopping)."""
    with engine.begin() as conn:
        conn.execute(delete(_T).where(_T.c.id == worker_id))


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A worker as operators see it."""

    id: str
    hostname: str
    pid: int
    kind: str
    queues: list[str]
    started_at: datetime
    last_seen: datetime
    fresh: bool
    current: list[dict[str, Any]]


def list_workers(session: Session, *, heartbeat_s: float) -> list[WorkerView]:
    """Every worker seen within EXPIRE_S, the most recently started first."""
    now = utcnow()
    fresh_after = now - timedelta(seconds=fresh_s(heartbeat_s))
    rows = session.execute(
        select(_T).where(_T.c.last_seen >= now - timedelta(seconds=EXPIRE_S)).order_by(_T.c.started_at.desc(), _T.c.id)
    )
    return [
        WorkerView(
            id=r.id, hostname=r.hostname, pid=r.pid, kind=r.kind, queues=list(r.queues or []),
            started_at=r.started_at, last_seen=r.last_seen, fresh=r.last_seen >= fresh_after,
            current=list(r.current or []),
        )
        for r in rows
    ]


def fresh_count(session: Session, *, heartbeat_s: float, kind: str | None = None) -> int:
    """How many workers (of ``kind``) have a fresh heartbeat."""
    query = select(func.count()).select_from(_T).where(_T.c.last_seen >= utcnow() - timedelta(seconds=fresh_s(heartbeat_s)))
    if kind is not None:
        query = query.where(_T.c.kind == kind)
    return int(session.scalar(query) or 0)
