"""Recording outcomes: the retry policy and one set-based UPDATE per batch of results.

An outcome is written only where ``claimed_at`` still matches: a stale worker cannot overwrite a
newer attempt.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Engine, Integer, String, Text, bindparam, func, null, or_, text, update

from messaging.deliveries.relay import notify_relays
from messaging.deliveries.states import DEAD, DUE, FAILED, QUEUED, RECORDABLE, sql_in
from messaging.deliveries.states import DELIVERIES as _T
from messaging.models import utcnow

MAX_RETRY_AFTER_S = 86_400.0  # a provider's Retry-After is honoured up to a day


class Result(enum.StrEnum):
    """How one claimed delivery ended, as the worker saw it."""

    SENT = "SENT"
    TRANSIENT = "TRANSIENT"  # try again later (or DEAD when the attempts are used up)
    PERMANENT = "PERMANENT"  # DEAD at once
    UNKNOWN = "UNKNOWN"  # the provider may have it: never resent blindly
    RELEASED = "RELEASED"  # claimed but never handed to the provider: QUEUED again, attempt not counted
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One claimed delivery's result, to be recorded against its claim."""

    delivery_id: int
    claimed_at: datetime
    attempt: int
    result: Result
    provider_id: str | None = None
    code: str | None = None
    reason: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring the provider's Retry-After, up to ``max_attempts``."""

    max_attempts: int = 8
    base_s: float = 30.0
    max_s: float = 3600.0

    def delay_s(self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds before attempt ``attempt + 1``: half the step fixed, half random; never before Retry-After."""
        step = min(self.max_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 60))
        delay = step / 2 + (rng or random).uniform(0, step / 2)
        if retry_after_s is not None and math.isfinite(retry_after_s):
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay


_RECORD = (
    update(_T)
    .where(
        _T.c.id == bindparam("b_id"),
        _T.c.claimed_at == bindparam("b_claimed_at", type_=DateTime),
        # UNKNOWN too: the sweeper's verdict on a slow but living worker yields to the real outcome.
        # (or_, not IN: an expanding IN cannot run as executemany.)
        or_(*(_T.c.status == status for status in RECORDABLE)),
    )
    .values(
        status=bindparam("b_status", type_=String),
        attempts=_T.c.attempts + bindparam("b_attempts_delta", type_=Integer),
        next_attempt_at=bindparam("b_next", type_=DateTime),
        last_error_code=func.coalesce(bindparam("b_code", type_=String), _T.c.last_error_code),
        last_error=func.coalesce(bindparam("b_reason", type_=Text), _T.c.last_error),
        provider_id=func.coalesce(bindparam("b_provider_id", type_=String), _T.c.provider_id),
        sent_at=func.coalesce(bindparam("b_sent_at", type_=DateTime), _T.c.sent_at),
        enqueued_at=null(),
        updated=bindparam("b_now", type_=DateTime),
    )
)


# PostgreSQL: the whole batch in one statement, its columns as arrays: one execution instead of
# one per row, and no per-row parameter processing in SQLAlchemy. The same guard as _RECORD; the
# rows it moved (RETURNING) become their attempts' history in the same statement. A released claim
# never reached the provider: no attempt. The upsert lets a real outcome replace the sweeper's
# UNKNOWN verdict on the same claim.
_ATTEMPT_UPSERT = """
    ON CONFLICT (delivery_id, claimed_at) DO UPDATE SET
        finished_at = EXCLUDED.finished_at, outcome = EXCLUDED.outcome, error_code = EXCLUDED.error_code,
        provider_answer = EXCLUDED.provider_answer, provider_id = EXCLUDED.provider_id
"""
_RECORD_PG = text(
    f"""
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:ids AS BIGINT[]), CAST(:claimed AS TIMESTAMP[]), CAST(:statuses AS VARCHAR[]),
            CAST(:deltas AS INTEGER[]), CAST(:next AS TIMESTAMP[]), CAST(:codes AS VARCHAR[]),
            CAST(:reasons AS TEXT[]), CAST(:provider_ids AS VARCHAR[]), CAST(:sent AS TIMESTAMP[])
        ) AS v(id, claimed_at, status, delta, next_at, code, reason, provider_id, sent_at)
    ), moved AS (
        UPDATE deliveries AS d SET
            status = v.status, attempts = d.attempts + v.delta, next_attempt_at = v.next_at,
            last_error_code = coalesce(v.code, d.last_error_code), last_error = coalesce(v.reason, d.last_error),
            provider_id = coalesce(v.provider_id, d.provider_id), sent_at = coalesce(v.sent_at, d.sent_at),
            enqueued_at = NULL, updated = :now
        FROM v
        WHERE d.id = v.id AND d.claimed_at = v.claimed_at AND d.status IN {sql_in(RECORDABLE)}
        RETURNING d.id, d.attempts, d.claimed_at, v.delta, v.status, v.code, v.reason, v.provider_id
    )
    INSERT INTO delivery_attempts
        (delivery_id, attempt, claimed_at, finished_at, outcome, error_code, provider_answer, provider_id)
    SELECT id, attempts, claimed_at, :now, status, code, reason, provider_id FROM moved WHERE delta = 0
    {_ATTEMPT_UPSERT}
    """,  # noqa: S608 (constants from states.py, checked by sql_in)
)
# Elsewhere (SQLite), after _RECORD's executemany: the history of the rows it moved, one executemany.
_ATTEMPTS = text(
    f"""
    INSERT INTO delivery_attempts
        (delivery_id, attempt, claimed_at, finished_at, outcome, error_code, provider_answer, provider_id)
    SELECT id, attempts, claimed_at, :b_now, status, :b_code, :b_reason, :b_provider_id FROM deliveries
    WHERE id = :b_id AND claimed_at = :b_claimed_at AND status = :b_status AND :b_attempts_delta = 0
    {_ATTEMPT_UPSERT}
    """  # noqa: S608 (no input in the text)
).bindparams(bindparam("b_now", type_=DateTime), bindparam("b_claimed_at", type_=DateTime))
_RECORD_COLUMNS = {
    "ids": "b_id", "claimed": "b_claimed_at", "statuses": "b_status", "deltas": "b_attempts_delta",
    "next": "b_next", "codes": "b_code", "reasons": "b_reason", "provider_ids": "b_provider_id", "sent": "b_sent_at",
}


def record(engine: Engine, outcomes: Sequence[Outcome], policy: RetryPolicy, *, rng: random.Random | None = None) -> None:
    """Write a batch of outcomes and their attempts in one transaction (one statement on PostgreSQL, else two executemany)."""
    if not outcomes:
        return
    now = utcnow()
    # One outcome per claim (a claim has one send); should one come twice, the first wins, as row by row.
    first: dict[tuple[int, datetime], Outcome] = {}
    for o in outcomes:
        first.setdefault((o.delivery_id, o.claimed_at), o)
    params = [_params(o, policy, now, rng) for o in first.values()]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            arrays: dict[str, Any] = {name: [p[key] for p in params] for name, key in _RECORD_COLUMNS.items()}
            conn.execute(_RECORD_PG, {**arrays, "now": now})
        else:
            conn.execute(_RECORD, params)
            conn.execute(_ATTEMPTS, params)
        if any(p["b_status"] in DUE for p in params):
            notify_relays(conn)  # a retry was scheduled or a row handed back: the relays' next wake-up moved


def _params(o: Outcome, policy: RetryPolicy, now: datetime, rng: random.Random | None) -> dict[str, Any]:
    status, delta, next_at, sent_at = o.result.value, 0, now, None
    code, reason = o.code, o.reason
    if o.result is Result.SENT:
        sent_at = now
    elif o.result is Result.TRANSIENT:
        if o.attempt >= policy.max_attempts:
            status = DEAD
            reason = f"gave up after {o.attempt} attempts: {reason}"
        else:
            status = FAILED
            next_at = now + timedelta(seconds=policy.delay_s(o.attempt, o.retry_after_s, rng))
    elif o.result is Result.PERMANENT:
        status = DEAD
    elif o.result is Result.RELEASED:
        status, delta = QUEUED, -1
    return {
        "b_id": o.delivery_id,
        "b_claimed_at": o.claimed_at,
        "b_status": status,
        "b_attempts_delta": delta,
        "b_next": next_at,
        "b_code": code,
        "b_reason": reason[:2000] if reason else None,
        "b_provider_id": o.provider_id,
        "b_sent_at": sent_at,
        "b_now": now,
    }
