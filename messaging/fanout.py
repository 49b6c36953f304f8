"""Carry out outbox events: expand user groups and org units into inbox rows with set-based SQL.

Users named directly got their rows in the request (`participants.py`); the fan-out adds the
members of groups and org units that have no row and were never removed (DECISIONS #20), so it
never undoes a removal, read, unread or follow-up made before it ran. Every statement is
idempotent (ON CONFLICT DO NOTHING on (conversation, user), guarded updates), and the event is
marked done in the same transaction as its effects, so running an event twice, or after a crash
half-way, is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    exists,
    false,
    insert,
    literal,
    select,
    true,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from messaging import outbox
from messaging.models import (
    Conversation,
    Message,
    OutboxEvent,
    RemovedParticipant,
    User,
    UserGroupMember,
    UserMessage,
    UserOrgUnit,
    utcnow,
)
from messaging.participants import INBOX_DONE, not_removed, ticket_managers_clause
from messaging.validation.notification import notify_results

__all__ = [
    "NotificationHook", "add_participants", "never_removed", "process_event", "recipients_select", "ticket_managers_clause",
]

# Called after an event's inbox work, in the same transaction: email/SMS deliveries hook in here.
# Runs inside the event's transaction; what it returns (if anything) runs once that has committed.
NotificationHook = Callable[[Connection, OutboxEvent], Callable[[], None] | None]


def recipients_select(users: list[int], groups: list[int], org_units: list[int]) -> Select[Any] | None:
    """SELECT user_id over direct users, group members and org unit members (de-duplicated)."""
    parts: list[Select[Any]] = []
    if users:
        parts.append(select(User.id.label("user_id")).where(User.id.in_(users)))
    if groups:
        members = select(UserGroupMember.user_id).where(UserGroupMember.group_id.in_(groups))
        # A user in two of the groups must come out once (one group cannot list a user twice).
        parts.append(members.distinct() if len(groups) > 1 else members)
    if org_units:
        assigned = select(UserOrgUnit.user_id).where(UserOrgUnit.org_unit_id.in_(org_units))
        parts.append(assigned.distinct() if len(org_units) > 1 else assigned)
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    merged = union(*parts).subquery()
    # Inserting in user order keeps both inbox indexes' writes local (a union hashes the order away).
    return select(merged.c.user_id).order_by(merged.c.user_id)


def _insert_ignore(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(UserMessage)


# Above this many users, a NOT IN list costs more than it saves: the fast path gives way to
# ON CONFLICT, and removals are excluded by an anti-join instead.
MAX_KNOWN_PRESENT = 1000


def _removed_users(conn: Connection, conversation_id: int) -> list[int] | None:
    """Who was removed from the conversation (a handful at most), or None when too many to list."""
    removed = list(
        conn.scalars(
            select(RemovedParticipant.user_id)
            .where(RemovedParticipant.conversation_id == conversation_id)
            .limit(MAX_KNOWN_PRESENT + 1)
        )
    )
    return removed if len(removed) <= MAX_KNOWN_PRESENT else None


def never_removed(conn: Connection, conversation_id: int, recipients: Select[Any]) -> Select[Any]:
    """The recipients less those removed from the conversation (DECISIONS #20), for email and SMS too."""
    removed = _removed_users(conn, conversation_id)
    if removed == []:
        return recipients
    source = recipients.subquery()
    keep = source.c.user_id.not_in(removed) if removed is not None else not_removed(conversation_id, source.c.user_id)
    return select(source.c.user_id.label("user_id")).where(keep)


def add_participants(
    conn: Connection,
    conversation_id: int,
    recipients: Select[Any],
    last_message: Any,
    message_type: str,
    *,
    only_present: Sequence[int] | None = None,
) -> int:
    """Give every recipient never removed an unread inbox row; existing participants are untouched.

    `only_present`: the caller checked that these users (the sender, the named recipients) hold
    the only inbox rows of the conversation, so a plain INSERT that leaves them out cannot
    conflict; it skips ON CONFLICT's per-row speculative insertion (~20% of a large fan-out).
    """
    source = recipients.subquery()
    # DECISIONS #20: a user removed before the fan-out reached them stays removed. The removals
    # are read first and left out by a NOT IN list: an anti-join probes the table once per row
    # (~100 ms of a 100k-row fan-out, measured), a list of a few ids costs nothing.
    removed = _removed_users(conn, conversation_id)
    excluded = [*(only_present or ()), *(removed or ())]
    conditions: list[Any] = [source.c.user_id.not_in(list(dict.fromkeys(excluded)))] if excluded else []
    if removed is None:
        conditions.append(not_removed(conversation_id, source.c.user_id))
    rows = (
        select(
            literal(conversation_id).label("conversation_id"),
            source.c.user_id,
            false().label("read"),
            false().label("follow_up"),
            literal(last_message).label("last_message"),
            literal(message_type).label("message_type"),
        )
        .select_from(source)
        # SQLite cannot parse INSERT ... SELECT ... ON CONFLICT unless the SELECT has a WHERE.
        .where(*conditions or [true()])
    )
    columns = ["conversation_id", "user_id", "read", "follow_up", "last_message", "message_type"]
    if only_present is not None:
        return conn.execute(insert(UserMessage).from_select(columns, rows)).rowcount or 0
    statement = (
        _insert_ignore(conn)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["conversation_id", "user_id"])
    )
    return conn.execute(statement).rowcount or 0


def process_event(engine: Engine, event_id: int, notify: NotificationHook | None = None) -> bool:
    """Carry out one outbox event; False when it was already done or does not exist."""
    with engine.begin() as conn:
        query = select(OutboxEvent).where(OutboxEvent.id == event_id)
        if conn.dialect.name == "postgresql":
            # Serialise concurrent runs of the same event (a re-enqueue racing the original).
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None or row["done_at"] is not None:
            return False
        event = OutboxEvent(**dict(row))
        handler = _HANDLERS[event.kind]
        handler(conn, event.payload)
        after_commit = notify(conn, event) if notify is not None else None
        conn.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(done_at=utcnow()))
    if after_commit is not None:
        after_commit()
    return True


def _conversation_created(conn: Connection, payload: dict[str, Any]) -> None:
    _expand(conn, payload, first_run_fast_path=True)


def _expand(conn: Connection, payload: dict[str, Any], *, first_run_fast_path: bool) -> None:
    # The request wrote the named users' rows itself (DECISIONS #20); events staged before that
    # change (no `inbox_done`) still name users for the fan-out to add.
    done = bool(payload.get(INBOX_DONE))
    users: list[int] = [] if done else payload["users"]
    recipients = recipients_select(users, payload["groups"], payload["org_units"])
    if recipients is None:
        return
    conversation_id = payload["conversation_id"]
    query = select(Conversation.last_message, Conversation.message_type).where(Conversation.id == conversation_id)
    if conn.dialect.name == "postgresql":
        # Held to commit: a request changing participants (remove, add, reply) waits for this
        # fan-out or makes it wait, so a removal it commits meanwhile is never missed.
        query = query.with_for_update(read=True)
    row = conn.execute(query).first()
    if row is None:  # the conversation was deleted meanwhile
        return
    sender = payload.get("sender_id")
    present = [*([sender] if sender is not None else []), *(payload["users"] if done else [])]
    only_present = None
    if first_run_fast_path and present and len(present) <= MAX_KNOWN_PRESENT:
        # A first run finds only the rows the request wrote (a failed run rolled back whole); a
        # re-run, or a participant added meanwhile, finds more and takes the ON CONFLICT path.
        others = conn.scalar(
            select(
                exists().where(UserMessage.conversation_id == conversation_id, UserMessage.user_id.not_in(present))
            )
        )
        only_present = None if others else present
    add_participants(conn, conversation_id, recipients, row.last_message, row.message_type, only_present=only_present)


def _message_replied(conn: Connection, payload: dict[str, Any]) -> None:
    if payload.get(INBOX_DONE):
        return  # the reply's request marked the others unread itself; only deliveries remain
    created = conn.scalar(select(Message.created).where(Message.id == payload["message_id"]))
    if created is None:
        return
    conditions = [
        UserMessage.conversation_id == payload["conversation_id"],
        UserMessage.user_id != payload["replier_id"],
        # Guard: a re-run never drags last_message back or re-marks rows a newer reply touched.
        UserMessage.last_message < created,
    ]
    if payload.get("internal"):
        conditions.append(ticket_managers_clause(conn))
    conn.execute(
        update(UserMessage).where(and_(*conditions)).values(read=False, last_message=created)
    )


def _recipients_added(conn: Connection, payload: dict[str, Any]) -> None:
    _expand(conn, payload, first_run_fast_path=False)


_HANDLERS: dict[str, Callable[[Connection, dict[str, Any]], None]] = {
    outbox.CONVERSATION_CREATED: _conversation_created,
    outbox.MESSAGE_REPLIED: _message_replied,
    outbox.RECIPIENTS_ADDED: _recipients_added,
    outbox.VALIDATION_RESULTS: notify_results,
}

