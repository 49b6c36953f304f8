"""Creating delivery rows: the fan-out's notification hook and one set-based INSERT per channel."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import DateTime, Integer, Select, String, Text, and_, case, exists, false, func, literal, null, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from messaging import fanout, outbox
from messaging.deliveries.states import CHANNELS, EMAIL, QUEUED, SKIPPED, SMS
from messaging.directory import SYSTEM_SETTING_DEFAULTS
from messaging.models import Delivery, Message, OutboxEvent, SystemSetting, User, UserMessage, UserSetting, utcnow
from messaging.validation import notification as validation_notification

OPT_IN_KEYS = {EMAIL: "keyMessageEmailNotification", SMS: "keyMessageSmsNotification"}

Dispatch = Callable[[list[tuple[int, str]]], object]  # (id, channel) pairs to the broker


def notifier(channels: Collection[str], dispatch: Dispatch | None = None) -> fanout.NotificationHook:
    """A ``fanout.process_event`` hook creating delivery rows for the channels that are on.

    With ``dispatch``, the new QUEUED rows are marked enqueued in the same transaction and, once
    it has committed, handed to ``dispatch`` as (id, channel) pairs: no relay round (an UPDATE of
    every row and a poll) between the fan-out and the first send. Should the dispatch fail or the
    jobs be lost, the relay's sweep re-enqueues rows enqueued long ago and never claimed.
    """
    on = tuple(c for c in CHANNELS if c in channels)

    def notify(conn: Connection, event: OutboxEvent, span: fanout.Span | None) -> Callable[[], None] | None:
        if not on:
            return None
        created = create_for_event(conn, event.kind, event.payload, on, enqueued=dispatch is not None, span=span)
        if dispatch is None or not created:
            return None

        def hand_over() -> None:
            dispatch(created)

        return hand_over

    return notify


def create_for_event(
    conn: Connection,
    kind: str,
    payload: dict[str, Any],
    channels: Sequence[str],
    *,
    enqueued: bool = False,
    span: fanout.Span | None = None,
) -> list[tuple[int, str]]:
    """Insert the deliveries an outbox event calls for (DECISIONS #15); idempotent.

    Returns the QUEUED rows it added as (id, channel); ``enqueued`` marks them handed to the broker.
    ``span``: only the recipients in this range of user ids (one chunk of a fan-out).
    """
    notified = _notified(conn, kind, payload, span)
    if notified is None:
        return []
    recipients, message_id, exclude = notified
    return [
        (delivery_id, channel)
        for channel in channels
        for delivery_id in _insert(conn, message_id, recipients, channel, exclude, enqueued=enqueued, span=span)
    ]


def _notified(
    conn: Connection, kind: str, payload: dict[str, Any], span: fanout.Span | None = None
) -> tuple[Select[Any], int | None, int | None] | None:
    """(recipients as SELECT user_id, message id, user to leave out), or None: nobody is notified.

    A message id of None: the SELECT names each row's message too (message_id, user_id).
    """
    if kind == outbox.VALIDATION_RESULTS:
        return validation_notification.delivery_recipients(payload), None, None
    if kind == outbox.CONVERSATION_CREATED:
        recipients = fanout.recipients_select(payload["users"], payload["groups"], payload["org_units"], span)
        message_id = payload.get("message_id") or conn.scalar(
            select(func.min(Message.id)).where(Message.conversation_id == payload["conversation_id"])
        )
        if recipients is None or message_id is None:
            return None
        # Whoever left the conversation before this ran gets no email or SMS of it either.
        return fanout.never_removed(conn, payload["conversation_id"], recipients), message_id, payload.get("sender_id")
    if kind == outbox.MESSAGE_REPLIED:
        participants = select(UserMessage.user_id.label("user_id")).where(
            UserMessage.conversation_id == payload["conversation_id"]
        )
        if payload.get("internal"):
            participants = participants.where(fanout.ticket_managers_clause(conn))
        return participants, payload["message_id"], payload["replier_id"]
    return None  # recipients added, status, priority, assign: nobody


def _insert(
    conn: Connection,
    message_id: int | None,
    recipients: Select[Any],
    channel: str,
    exclude: int | None,
    *,
    enqueued: bool,
    span: fanout.Span | None = None,
) -> list[int]:
    """One set-based INSERT ... SELECT for a channel: QUEUED, or SKIPPED with the reason; the QUEUED ids.

    With a ``span`` (a fan-out's chunk) that holds no delivery of the message yet, a plain INSERT:
    nothing can conflict (the chunk runs under the event's row lock), and ON CONFLICT's
    speculative insertion per row is skipped.
    """
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
            case((opted_out, SKIPPED), (address.is_(None), SKIPPED), else_=QUEUED),
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
    if span is not None:
        # The chunk's span on ``users`` too: the join then reads the chunk's users by primary key
        # instead of every user once per chunk and channel (40 x 2 scans of a million at 1M users).
        rows = rows.where(*span.clause(User.id))
    columns = [
        "message_id", "user_id", "channel", "status", "address", "attempts", "next_attempt_at",
        "last_error_code", "last_error", "created", "updated",
    ]
    if enqueued:
        columns.append("enqueued_at")
        rows = rows.add_columns(case((opted_out, null()), (address.is_(None), null()), else_=literal(now, DateTime)))
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Delivery).from_select(columns, rows)
    fresh = False
    if message_id is not None and span is not None:
        existing = exists().where(Delivery.message_id == message_id, Delivery.channel == channel, *span.clause(Delivery.user_id))
        fresh = not conn.scalar(select(existing))
    if not fresh:
        statement = statement.on_conflict_do_nothing(index_elements=["message_id", "user_id", "channel"])
    return sorted(row.id for row in conn.execute(statement.returning(Delivery.id, Delivery.status)) if row.status == QUEUED)
