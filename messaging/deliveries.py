"""Email and SMS deliveries: created with the fan-out, claimed, recorded, swept and re-driven.

One row per (message, recipient, channel), moved only by guarded UPDATEs (docs/deliveries.md):

    QUEUED --claim--> SENDING --accepted--------------> SENT --Twilio callback--> DELIVERED
      ^  ^               |----transient, attempts left--> FAILED --due, claim--> SENDING
      |  |               |----permanent / last attempt--> DEAD
      |  |               '----unknown outcome / lease---> UNKNOWN
      |  '-- requeue (operator) -- DEAD, UNKNOWN
    SKIPPED at creation: opted out, no address (disabled users get no row at all)

A claim moves QUEUED/FAILED rows that are due to SENDING in one statement (SKIP LOCKED on
PostgreSQL), stamps ``claimed_at`` and sets ``next_attempt_at`` to the end of a lease. Only
rows a claim returned are sent, so two workers never send one row and a SENT row is never sent
again. An outcome is written only where ``claimed_at`` still matches: a stale worker cannot
overwrite a newer attempt. A SENDING row whose lease ran out belonged to a worker that died
mid-send; the provider may have the message, so the sweeper marks it UNKNOWN, never resends it.
"""

from __future__ import annotations

import enum
import json
import math
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Engine,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from messaging import fanout, outbox
from messaging.directory import SYSTEM_SETTING_DEFAULTS
from messaging.models import (
    Conversation,
    Delivery,
    DeliveryStatus,
    Message,
    OutboxEvent,
    SystemSetting,
    User,
    UserMessage,
    UserSetting,
    utcnow,
)
from messaging.validation import notification as validation_notification
from messaging.validation import rendering as validation_rendering

EMAIL, SMS = "email", "sms"
CHANNELS = (EMAIL, SMS)
OPT_IN_KEYS = {EMAIL: "keyMessageEmailNotification", SMS: "keyMessageSmsNotification"}
SMS_MAX_LENGTH_KEY = "keySmsMaxLength"
SMS_HARD_LIMIT = 1600  # the longest body an SMS provider (Twilio) takes; keySmsMaxLength is capped to it
ELLIPSIS = "..."
REQUEUEABLE = frozenset({DeliveryStatus.DEAD.value, DeliveryStatus.UNKNOWN.value})
MAX_RETRY_AFTER_S = 86_400.0  # a provider's Retry-After is honoured up to a day

_T = cast(Table, Delivery.__table__)
_USERS = cast(Table, User.__table__)
_Q, _F, _SENDING = DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value, DeliveryStatus.SENDING.value
_DUE = (_Q, _F)


# --- creation: the fan-out's notification hook --------------------------------------------------


Dispatch = Callable[[list[tuple[int, str]]], object]  # (id, channel) pairs to the broker


def notifier(channels: Collection[str], dispatch: Dispatch | None = None) -> fanout.NotificationHook:
    """A ``fanout.process_event`` hook creating delivery rows for the channels that are on.

    With ``dispatch``, the new QUEUED rows are marked enqueued in the same transaction and, once
    it has committed, handed to ``dispatch`` as (id, channel) pairs: no relay round (an UPDATE of
    every row and a poll) between the fan-out and the first send. Should the dispatch fail or the
    jobs be lost, the relay's sweep re-enqueues rows enqueued long ago and never claimed.
    """
    on = tuple(c for c in CHANNELS if c in channels)

    def notify(conn: Connection, event: OutboxEvent) -> Callable[[], None] | None:
        if not on:
            return None
        created = create_for_event(conn, event.kind, event.payload, on, enqueued=dispatch is not None)
        if dispatch is None or not created:
            return None

        def hand_over() -> None:
            dispatch(created)

        return hand_over

    return notify


def create_for_event(
    conn: Connection, kind: str, payload: dict[str, Any], channels: Sequence[str], *, enqueued: bool = False
) -> list[tuple[int, str]]:
    """Insert the deliveries an outbox event calls for (DECISIONS #15); idempotent.

    Returns the QUEUED rows it added as (id, channel); ``enqueued`` marks them handed to the broker.
    """
    notified = _notified(conn, kind, payload)
    if notified is None:
        return []
    recipients, message_id, exclude = notified
    return [
        (delivery_id, channel)
        for channel in channels
        for delivery_id in _insert(conn, message_id, recipients, channel, exclude, enqueued=enqueued)
    ]


def _notified(conn: Connection, kind: str, payload: dict[str, Any]) -> tuple[Select[Any], int | None, int | None] | None:
    """(recipients as SELECT user_id, message id, user to leave out), or None: nobody is notified.

    A message id of None: the SELECT names each row's message too (message_id, user_id).
    """
    if kind == outbox.VALIDATION_RESULTS:
        return validation_notification.delivery_recipients(payload), None, None
    if kind == outbox.CONVERSATION_CREATED:
        recipients = fanout.recipients_select(payload["users"], payload["groups"], payload["org_units"])
        message_id = payload.get("message_id") or conn.scalar(
            select(func.min(Message.id)).where(Message.conversation_id == payload["conversation_id"])
        )
        if recipients is None or message_id is None:
            return None
        return recipients, message_id, payload.get("sender_id")
    if kind == outbox.MESSAGE_REPLIED:
        participants = select(UserMessage.user_id.label("user_id")).where(
            UserMessage.conversation_id == payload["conversation_id"]
        )
        if payload.get("internal"):
            participants = participants.where(fanout.ticket_managers_clause(conn))
        return participants, payload["message_id"], payload["replier_id"]
    return None  # recipients added, status, priority, assign: nobody


def _insert(
    conn: Connection, message_id: int | None, recipients: Select[Any], channel: str, exclude: int | None, *, enqueued: bool
) -> list[int]:
    """One set-based INSERT ... SELECT for a channel: QUEUED, or SKIPPED with the reason; the QUEUED ids."""
    key = OPT_IN_KEYS[channel]
    system = conn.scalar(select(sql_cast(SystemSetting.value, Text)).where(SystemSetting.key == key))
    default = system if system is not None else json.dumps(SYSTEM_SETTING_DEFAULTS[key])
    opted_out = func.coalesce(sql_cast(UserSetting.value, Text), default).in_(["false", '"false"'])
    address_column = User.email if channel == EMAIL else User.phone_number
    address = func.nullif(func.trim(address_column), "")
    noun = "email address" if channel == EMAIL else "phone number"
    now = utcnow()
    source = recipients.subquery()
    rows = (
        select(
            literal(message_id, Integer) if message_id is not None else source.c.message_id,
            User.id,
            literal(channel, String),
            case((opted_out, DeliveryStatus.SKIPPED.value), (address.is_(None), DeliveryStatus.SKIPPED.value), else_=_Q),
            address,
            literal(0, Integer),
            literal(now, DateTime),
            case((opted_out, "opted-out"), (address.is_(None), "no-address"), else_=null()),
            case((opted_out, f"{key} is false"), (address.is_(None), f"the user has no {noun}"), else_=null()),
            literal(now, DateTime),
            literal(now, DateTime),
        )
        .select_from(source)
        .join(User, User.id == source.c.user_id)
        .outerjoin(UserSetting, and_(UserSetting.user_id == User.id, UserSetting.key == key))
        .where(User.disabled.is_(false()))  # DECISIONS #12: disabled users get no email or SMS
    )
    if exclude is not None:
        rows = rows.where(User.id != exclude)
    columns = [
        "message_id", "user_id", "channel", "status", "address", "attempts", "next_attempt_at",
        "last_error_code", "last_error", "created", "updated",
    ]
    if enqueued:
        columns.append("enqueued_at")
        rows = rows.add_columns(case((opted_out, null()), (address.is_(None), null()), else_=literal(now, DateTime)))
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Delivery)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["message_id", "user_id", "channel"])
        .returning(Delivery.id, Delivery.status)
    )
    return sorted(row.id for row in conn.execute(statement) if row.status == _Q)


# --- claiming ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Draft:
    """What a channel needs to send one delivery (the fields of ``channels.base.Envelope``)."""

    delivery_id: int
    channel: str
    message_uid: str
    conversation_uid: str
    message_type: str
    recipient_uid: str
    recipient_name: str
    address: str
    subject: str
    text: str
    sender_name: str | None = None
    conversation_url: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A row this worker now owns (SENDING): send ``draft``, or record ``skip`` when it is set."""

    delivery_id: int
    claimed_at: datetime
    attempt: int
    draft: Draft | None
    skip: tuple[str, str] | None = None  # (code, reason): nothing to send after all


def _claim_update() -> Any:
    """UPDATE that moves the due rows among :c_ids of :c_channel to SENDING (SQLite; built once)."""
    inner = _T.alias("claimable")
    claimable = select(inner.c.id).where(
        inner.c.id.in_(bindparam("c_ids", expanding=True)),
        inner.c.channel == bindparam("c_channel", type_=String),
        inner.c.status.in_(_DUE),
        inner.c.next_attempt_at <= bindparam("c_now", type_=DateTime),
    )
    return (
        update(_T)
        .where(_T.c.id.in_(claimable))
        .values(
            status=_SENDING,
            attempts=_T.c.attempts + 1,
            claimed_at=bindparam("c_now", type_=DateTime),
            next_attempt_at=bindparam("c_lease_until", type_=DateTime),
            updated=bindparam("c_now", type_=DateTime),
        )
    )


def _drafts_select(rows: Any) -> Select[Any]:
    """What a draft needs, for the claimed ``rows`` (a table or CTE with id, attempts, message_id, user_id, address)."""
    recipient = _USERS.alias("recipient")
    sender = _USERS.alias("sender")
    sms_limit = select(SystemSetting.value).where(SystemSetting.key == SMS_MAX_LENGTH_KEY).scalar_subquery()
    return (
        select(
            rows.c.id,
            rows.c.attempts,
            rows.c.address,
            Message.uid.label("message_uid"),
            Message.text,
            Conversation.uid.label("conversation_uid"),
            Conversation.subject,
            Conversation.message_type,
            recipient.c.uid.label("recipient_uid"),
            recipient.c.username.label("recipient_username"),
            recipient.c.first_name.label("recipient_first"),
            recipient.c.surname.label("recipient_surname"),
            recipient.c.disabled.label("recipient_disabled"),
            sender.c.username.label("sender_username"),
            sender.c.first_name.label("sender_first"),
            sender.c.surname.label("sender_surname"),
            sms_limit.label("sms_limit"),
        )
        .select_from(rows)
        .join(Message, Message.id == rows.c.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(recipient, recipient.c.id == rows.c.user_id)
        .outerjoin(sender, sender.c.id == Message.sender_id)
        .order_by(rows.c.id)
    )


# Built once: constructing these per claim cost more CPU than running them.
# PostgreSQL: one statement, run in autocommit (one round trip per claim). The rows are locked
# with SKIP LOCKED inside ARRAY(...), an init plan evaluated once, and the UPDATE finds them by
# primary key. The guard's status test is written `(status || '') IN` so that it matches no
# partial index predicate: right after a big fan-out the statistics still say few rows are due,
# and the planner would otherwise walk every due row through ix_deliveries_due for each claim
# (measured: 5 ms per claim at 20,000 due rows, growing with them; 0.7 ms this way).
_CLAIM_PG = text(
    """
    WITH claimed AS (
        UPDATE deliveries
        SET status = 'SENDING', attempts = attempts + 1, claimed_at = :c_now, next_attempt_at = :c_lease_until,
            updated = :c_now
        WHERE id = ANY (ARRAY(SELECT id FROM deliveries WHERE id = ANY (CAST(:c_ids AS BIGINT[])) FOR UPDATE SKIP LOCKED))
          AND channel = :c_channel AND (status || '') IN ('QUEUED', 'FAILED') AND next_attempt_at <= :c_now
        RETURNING id, attempts, message_id, user_id, address
    )
    SELECT claimed.id, claimed.attempts, claimed.address,
           m.uid AS message_uid, m.text, c.uid AS conversation_uid, c.subject, c.message_type,
           r.uid AS recipient_uid, r.username AS recipient_username, r.first_name AS recipient_first,
           r.surname AS recipient_surname, r.disabled AS recipient_disabled,
           s.username AS sender_username, s.first_name AS sender_first, s.surname AS sender_surname,
           (SELECT value FROM system_settings WHERE key = 'keySmsMaxLength') AS sms_limit
    FROM claimed
    JOIN messages m ON m.id = claimed.message_id
    JOIN conversations c ON c.id = m.conversation_id
    JOIN users r ON r.id = claimed.user_id
    LEFT JOIN users s ON s.id = m.sender_id
    ORDER BY claimed.id
    """
)
# Elsewhere (SQLite, one writer at a time): the UPDATE ... RETURNING, then the drafts of what it returned.
_CLAIM_UPDATE = _claim_update().returning(_T.c.id)
_CLAIM_DRAFTS = _drafts_select(_T).where(_T.c.id.in_(bindparam("c_claimed", expanding=True)))


def claim(
    engine: Engine, channel: str, ids: Sequence[int], *, lease_s: float, base_url: str | None = None
) -> list[Claim]:
    """Move the due QUEUED/FAILED rows among ``ids`` to SENDING and return them, with their drafts."""
    if not ids:
        return []
    now = utcnow()
    # c_ names: an execute() parameter named like a column would become a SET value of the UPDATE.
    params = {"c_ids": list(ids), "c_channel": channel, "c_now": now, "c_lease_until": now + timedelta(seconds=lease_s)}
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            rows = conn.execute(_CLAIM_PG, params).all()
    else:
        with engine.begin() as conn:
            claimed = list(conn.scalars(_CLAIM_UPDATE, params))
            rows = conn.execute(_CLAIM_DRAFTS, {"c_claimed": claimed}).all() if claimed else []
    return [_claim_of(row, now, channel, base_url) for row in rows]


def _sms_limit(value: Any) -> int:
    try:
        limit = int(value) if value is not None else int(SYSTEM_SETTING_DEFAULTS[SMS_MAX_LENGTH_KEY])
    except (TypeError, ValueError):
        limit = int(SYSTEM_SETTING_DEFAULTS[SMS_MAX_LENGTH_KEY])
    return max(len(ELLIPSIS) + 1, min(limit, SMS_HARD_LIMIT))


def _claim_of(row: Any, now: datetime, channel: str, base_url: str | None) -> Claim:
    attempt = row.attempts
    limit = _sms_limit(row.sms_limit) if channel == SMS else None
    if row.recipient_disabled:
        return Claim(row.id, now, attempt, None, ("disabled", "the user is disabled"))
    if not row.address:
        return Claim(row.id, now, attempt, None, ("no-address", "the delivery has no address"))
    sender = None
    if row.sender_username is not None:
        sender = _name(row.sender_first, row.sender_surname, row.sender_username)
    draft = Draft(
        delivery_id=row.id,
        channel=channel,
        message_uid=row.message_uid,
        conversation_uid=row.conversation_uid,
        message_type=row.message_type,
        recipient_uid=row.recipient_uid,
        recipient_name=_name(row.recipient_first, row.recipient_surname, row.recipient_username),
        address=row.address,
        subject=row.subject,
        text=fit_text(_sms_body(row.text or "", row.message_type) if channel == SMS else row.text or "", limit),
        sender_name=sender,
        conversation_url=conversation_url(base_url, row.message_type, row.conversation_uid),
    )
    return Claim(row.id, now, attempt, draft)


def _sms_body(text: str, message_type: str) -> str:
    # DHIS2's SMS sender sends a validation summary's first line only.
    return validation_rendering.sms_text(text) if message_type == "VALIDATION_RESULT" else text


def _name(first: str | None, surname: str | None, username: str) -> str:
    return f"{first or ''} {surname or ''}".strip() or username


def fit_text(text: str, limit: int | None) -> str:
    """The text, cut to ``limit`` characters ending in "..." when longer (DECISIONS #17)."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS)] + ELLIPSIS


def conversation_url(base_url: str | None, message_type: str, conversation_uid: str) -> str | None:
    """The conversation in the DHIS2 messaging app, when HERALD_BASE_URL is set (DECISIONS #16)."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/dhis-web-messaging/#/{message_type}/{conversation_uid}"


# --- outcomes ----------------------------------------------------------------------------------


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
        or_(_T.c.status == _SENDING, _T.c.status == DeliveryStatus.UNKNOWN.value),
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
# one per row, and no per-row parameter processing in SQLAlchemy. The same guard as _RECORD.
_RECORD_PG = text(
    """
    UPDATE deliveries AS d SET
        status = v.status, attempts = d.attempts + v.delta, next_attempt_at = v.next_at,
        last_error_code = coalesce(v.code, d.last_error_code), last_error = coalesce(v.reason, d.last_error),
        provider_id = coalesce(v.provider_id, d.provider_id), sent_at = coalesce(v.sent_at, d.sent_at),
        enqueued_at = NULL, updated = :now
    FROM unnest(
        CAST(:ids AS BIGINT[]), CAST(:claimed AS TIMESTAMP[]), CAST(:statuses AS VARCHAR[]), CAST(:deltas AS INTEGER[]),
        CAST(:next AS TIMESTAMP[]), CAST(:codes AS VARCHAR[]), CAST(:reasons AS TEXT[]),
        CAST(:provider_ids AS VARCHAR[]), CAST(:sent AS TIMESTAMP[])
    ) AS v(id, claimed_at, status, delta, next_at, code, reason, provider_id, sent_at)
    WHERE d.id = v.id AND d.claimed_at = v.claimed_at AND d.status IN ('SENDING', 'UNKNOWN')
    """
)
_RECORD_COLUMNS = {
    "ids": "b_id", "claimed": "b_claimed_at", "statuses": "b_status", "deltas": "b_attempts_delta",
    "next": "b_next", "codes": "b_code", "reasons": "b_reason", "provider_ids": "b_provider_id", "sent": "b_sent_at",
}


def record(engine: Engine, outcomes: Sequence[Outcome], policy: RetryPolicy, *, rng: random.Random | None = None) -> None:
    """Write a batch of outcomes in one transaction (one statement on PostgreSQL, else one executemany)."""
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


def _params(o: Outcome, policy: RetryPolicy, now: datetime, rng: random.Random | None) -> dict[str, Any]:
    status, delta, next_at, sent_at = o.result.value, 0, now, None
    code, reason = o.code, o.reason
    if o.result is Result.SENT:
        sent_at = now
    elif o.result is Result.TRANSIENT:
        if o.attempt >= policy.max_attempts:
            status = DeliveryStatus.DEAD.value
            reason = f"gave up after {o.attempt} attempts: {reason}"
        else:
            status = _F
            next_at = now + timedelta(seconds=policy.delay_s(o.attempt, o.retry_after_s, rng))
    elif o.result is Result.PERMANENT:
        status = DeliveryStatus.DEAD.value
    elif o.result is Result.RELEASED:
        status, delta = _Q, -1
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


# --- the relay and the sweeper -------------------------------------------------------------------


# PostgreSQL: one statement, one round trip. The due rows are picked and locked (SKIP LOCKED, so
# several relays share the work) in an ARRAY(...) init plan and updated by primary key; the
# status test is written out so the partial indexes' predicates match it.
_CLAIM_DUE_PG = """
    UPDATE deliveries SET enqueued_at = :now
    WHERE id = ANY (ARRAY(
        SELECT id FROM deliveries
        WHERE status IN ('QUEUED', 'FAILED') AND next_attempt_at <= :now
          AND channel = ANY (CAST(:channels AS VARCHAR[])) AND {enqueued}
        ORDER BY next_attempt_at, id LIMIT :limit FOR UPDATE SKIP LOCKED))
    RETURNING id, channel
"""
_CLAIM_UNQUEUED_PG = text(_CLAIM_DUE_PG.format(enqueued="enqueued_at IS NULL"))
_CLAIM_STALE_PG = text(_CLAIM_DUE_PG.format(enqueued="enqueued_at < :stale_before"))


def claim_due(engine: Engine, channels: Collection[str], *, limit: int, stale_s: float | None = None) -> list[tuple[int, str]]:
    """Mark up to ``limit`` due rows as handed to the broker now; return (id, channel) pairs, by id.

    Due: QUEUED or FAILED with ``next_attempt_at`` passed, never enqueued, or (``stale_s`` given)
    enqueued longer ago than that and still not claimed: the broker lost the job.
    """
    if not channels:
        return []
    now = utcnow()
    stale_before = None if stale_s is None else now - timedelta(seconds=stale_s)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            pg = _CLAIM_UNQUEUED_PG if stale_before is None else _CLAIM_STALE_PG
            params = {"now": now, "channels": list(channels), "limit": limit, "stale_before": stale_before}
            return sorted((row.id, row.channel) for row in conn.execute(pg, params))
        conditions = [_T.c.status.in_(_DUE), _T.c.next_attempt_at <= now, _T.c.channel.in_(list(channels))]
        if stale_before is None:
            conditions.append(_T.c.enqueued_at.is_(None))
        else:
            conditions.append(_T.c.enqueued_at < stale_before)
        query = select(_T.c.id).where(*conditions).order_by(_T.c.next_attempt_at, _T.c.id).limit(limit)
        statement = update(_T).where(_T.c.id.in_(query)).values(enqueued_at=now).returning(_T.c.id, _T.c.channel)
        return sorted((row.id, row.channel) for row in conn.execute(statement))


def release(engine: Engine, ids: Sequence[int]) -> None:
    """Forget that these rows were enqueued (the broker refused them, or no worker had room): the relay sends them again."""
    if ids:
        with engine.begin() as conn:
            conn.execute(update(_T).where(_T.c.id.in_(list(ids)), _T.c.status.in_(_DUE)).values(enqueued_at=None))


LEASE_EXPIRED = "lease-expired"


def expire_leases(engine: Engine) -> int:
    """Mark SENDING rows whose lease ran out UNKNOWN (their worker died mid-send); return how many."""
    now = utcnow()
    with engine.begin() as conn:
        result = conn.execute(
            update(_T)
            .where(_T.c.status == _SENDING, _T.c.next_attempt_at < now)
            .values(
                status=DeliveryStatus.UNKNOWN.value,
                last_error_code=LEASE_EXPIRED,
                last_error="the worker stopped while sending (its lease expired): the provider may have the "
                "message; re-drive it if it did not arrive",
                updated=now,
            )
        )
        return result.rowcount or 0


# --- re-driving, listing -----------------------------------------------------------------------


def requeue(
    db: Session | Connection,
    *,
    ids: Sequence[int] | None = None,
    every: bool = False,
    statuses: Collection[str] = (DeliveryStatus.DEAD.value,),
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
        select(case((_T.c.channel == EMAIL, _USERS.c.email), else_=_USERS.c.phone_number))
        .where(_USERS.c.id == _T.c.user_id)
        .scalar_subquery()
    )
    result = db.execute(
        update(_T)
        .where(*conditions)
        .values(
            status=_Q,
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


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as operators see it."""

    id: int
    channel: str
    status: str
    address: str | None
    attempts: int
    next_attempt_at: datetime
    last_error_code: str | None
    last_error: str | None
    provider_id: str | None
    provider_status: str | None
    created: datetime
    updated: datetime
    sent_at: datetime | None
    message_uid: str
    conversation_uid: str
    user_uid: str
    username: str


def list_deliveries(
    session: Session,
    *,
    statuses: Collection[str] = (),
    channel: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[int, list[DeliveryView]]:
    """(total, one page) of deliveries, newest first, filtered by status and channel."""
    conditions: list[Any] = []
    if statuses:
        conditions.append(_T.c.status.in_(sorted(statuses)))
    if channel:
        conditions.append(_T.c.channel == channel)
    total = session.scalar(select(func.count()).select_from(_T).where(*conditions)) or 0
    rows = session.execute(
        select(
            _T.c.id, _T.c.channel, _T.c.status, _T.c.address, _T.c.attempts, _T.c.next_attempt_at,
            _T.c.last_error_code, _T.c.last_error, _T.c.provider_id, _T.c.provider_status,
            _T.c.created, _T.c.updated, _T.c.sent_at,
            Message.uid.label("message_uid"), Conversation.uid.label("conversation_uid"),
            _USERS.c.uid.label("user_uid"), _USERS.c.username,
        )
        .join(Message, Message.id == _T.c.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(_USERS, _USERS.c.id == _T.c.user_id)
        .where(*conditions)
        .order_by(_T.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total), [DeliveryView(**row._asdict()) for row in rows]


def counts(session: Session) -> dict[tuple[str, str], int]:
    """How many deliveries each (channel, status) holds."""
    rows = session.execute(select(_T.c.channel, _T.c.status, func.count()).group_by(_T.c.channel, _T.c.status))
    return {(channel, status): int(n) for channel, status, n in rows}


# --- provider status callbacks (Twilio) ---------------------------------------------------------

# Twilio's message statuses in the order they happen; the final ones share the top rank, so
# nothing moves a delivery once it is delivered, undelivered or failed ("read" follows "delivered").
SMS_STATUS_RANK = {
    "accepted": 1, "scheduled": 1, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 5,
}
_DELIVERED_STATUSES = frozenset({"delivered", "read"})
_FAILED_STATUSES = frozenset({"undelivered", "failed", "canceled"})


def apply_sms_status(db: Session | Connection, provider_id: str, status: str, error_code: str | None = None) -> bool:
    """Move an SMS delivery forward to a Twilio status; False when it is older news or unknown. No commit."""
    status = status.strip().lower()
    rank = SMS_STATUS_RANK.get(status)
    if rank is None or not provider_id:
        return False
    current = case(*((_T.c.provider_status == name, r) for name, r in SMS_STATUS_RANK.items()), else_=0)
    values: dict[str, Any] = {"provider_status": status, "updated": utcnow()}
    if status in _DELIVERED_STATUSES:
        values["status"] = DeliveryStatus.DELIVERED.value
    elif status in _FAILED_STATUSES:
        code = error_code.strip() if error_code and error_code.strip() else None
        values["status"] = DeliveryStatus.DEAD.value
        values["last_error_code"] = f"twilio-{code}" if code else f"twilio-{status}"
        values["last_error"] = f"Twilio reported the SMS {status}" + (f" (error {code})" if code else "")
    result = db.execute(
        update(_T)
        .where(
            _T.c.channel == SMS,
            _T.c.provider_id == provider_id,
            _T.c.status.in_((DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value)),
            current < rank,
        )
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))
