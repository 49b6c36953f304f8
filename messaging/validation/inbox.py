"""The inbox rows of single notifications: in the notification run, or in chunks of their own.

A run whose single notifications come to more than CHUNK_ROWS inbox rows (10,000 results to a
group of 1,000 users are 10 million) does not write them in its own transaction. Measured: one
10-million-row transaction ran at half the rate of the same rows committed 500,000 at a time by
two connections at once (52,000 vs 104,000 rows/s, load average 23 to 31), and a job that long
outlives Dramatiq's time limit on a loaded machine. So the run writes the conversations, messages
and ``validation_notifications`` rows, and stages in the same transaction one more outbox event
(kind ``validation.results``, payload ``{"batch", "parts": [first, end]}``) per chunk of parts.
The worker threads carry the chunks out in parallel; each chunk writes its inbox rows (and its
deliveries, through the same hook) and is marked done in one transaction, so a chunk killed
half-way leaves nothing and runs again whole, and a done chunk never runs twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, exists, false, func, insert, literal, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite

from messaging import context, outbox
from messaging.models import Conversation, MessageType, OutboxEvent, RemovedParticipant, UserGroupMember, UserMessage
from messaging.participants import not_removed
from messaging.validation import recipients
from messaging.validation.models import TemplateGroup, ValidationNotification

# Inbox rows per chunk: a few seconds of work each, several per worker thread for 10 million rows.
CHUNK_ROWS = 250_000
VN = cast(Table, ValidationNotification.__table__)
_INBOX_COLUMNS = ["conversation_id", "user_id", "read", "follow_up", "last_message", "message_type"]


def _insert_ignore(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(UserMessage)


def add_inbox_rows(conn: Connection, source: Select[Any], now: datetime | None, *, distinct: bool = False) -> None:
    """INSERT ... SELECT unread VALIDATION_RESULT inbox rows for (conversation_id, user_id) rows.

    ``distinct``: the rows are known to be distinct and their conversations to have no inbox rows
    and no removals yet, so a plain INSERT cannot conflict and skips ON CONFLICT's speculative
    insertion. Otherwise ON CONFLICT DO NOTHING, and users removed from a conversation stay out.
    ``now`` None: each row takes its conversation's last_message.
    """
    sub = source.subquery()
    kind = literal(MessageType.VALIDATION_RESULT.value)
    if now is None:
        rows = select(
            sub.c.conversation_id, sub.c.user_id, false(), false(), Conversation.last_message, kind
        ).join(Conversation, Conversation.id == sub.c.conversation_id)
    else:
        rows = select(sub.c.conversation_id, sub.c.user_id, false(), false(), literal(now), kind)
    if distinct:
        conn.execute(insert(UserMessage).from_select(_INBOX_COLUMNS, rows))
        return
    statement = (
        _insert_ignore(conn)
        .from_select(_INBOX_COLUMNS, rows.where(not_removed(sub.c.conversation_id, sub.c.user_id)))
        .on_conflict_do_nothing(index_elements=["conversation_id", "user_id"])
    )
    conn.execute(statement)


def _parts(batch: str, first: int | None = None, end: int | None = None) -> Any:
    """The single-notification rows of a run (parts [first, end) when given), as a subquery."""
    query = select(VN.c.conversation_id, VN.c.template_id, VN.c.result_id).where(
        VN.c.batch == batch, VN.c.result_id.is_not(None)
    )
    if first is not None and end is not None:
        query = query.where(VN.c.part >= first, VN.c.part < end)
    return query.subquery()


def write_single(conn: Connection, batch: str, first: int | None, end: int | None, now: datetime | None, *, fresh: bool) -> None:
    """The inbox rows of a run's single notifications (or of its parts [first, end)).

    ``fresh``: the conversations were created in this transaction, so nobody else can have touched them.
    """
    mine = _parts(batch, first, end)
    if not fresh:
        # Committed conversations: a user may have been added or removed since (POST .../recipients,
        # DELETE ...); then ON CONFLICT and the removals. A change racing this check makes the
        # plain INSERT fail; the event is retried and finds it.
        ids = select(mine.c.conversation_id)
        fresh = not conn.scalar(
            select(
                or_(
                    exists().where(UserMessage.conversation_id.in_(ids)),
                    exists().where(RemovedParticipant.conversation_id.in_(ids)),
                )
            )
        )
    add_inbox_rows(conn, recipients.plain_recipients(mine), now, distinct=fresh)
    for source in recipients.pair_recipients(mine):
        add_inbox_rows(conn, source, now)


def chunk_ends(estimates: Sequence[int], limit: int | None = None) -> list[int]:
    """Cut parts 0..n-1 (estimated inbox rows each) into runs of at most ``limit`` (CHUNK_ROWS) rows; each run's end."""
    limit = CHUNK_ROWS if limit is None else limit
    ends: list[int] = []
    rows = 0
    for part, estimate in enumerate(estimates):
        if rows and rows + estimate > limit:
            ends.append(part)
            rows = 0
        rows += estimate
    ends.append(len(estimates))
    return ends


def member_counts(conn: Connection, templates: set[int]) -> dict[int, int]:
    """Each template's distinct group members: the inbox rows one of its single notifications makes, about."""
    query = (
        select(TemplateGroup.template_id, func.count(UserGroupMember.user_id.distinct()))
        .join(UserGroupMember, UserGroupMember.group_id == TemplateGroup.group_id)
        .where(TemplateGroup.template_id.in_(templates))
        .group_by(TemplateGroup.template_id)
    )
    return {template_id: int(count) for template_id, count in conn.execute(query)}


def stage_chunks(conn: Connection, batch: str, ends: Sequence[int]) -> None:
    """One outbox event per chunk of parts, in the run's transaction: the workers write them in parallel."""
    first = 0
    rows = []
    for end in ends:
        rows.append({"kind": outbox.VALIDATION_RESULTS, "payload": {"batch": batch, "parts": [first, end]},
                     "request_id": context.request_id()})
        first = end
    conn.execute(insert(OutboxEvent), rows)


def write_chunk(conn: Connection, payload: dict[str, Any]) -> None:
    """Carry out one chunk event: the inbox rows of its parts (its event is marked done with them)."""
    first, end = payload["parts"]
    write_single(conn, payload["batch"], first, end, None, fresh=False)


def chunk_filter(payload: dict[str, Any]) -> Any:
    """SQL condition on validation_notifications: the rows this event wrote inbox rows for (None: all)."""
    parts = payload.get("parts")
    if parts is None:
        return true()
    return VN.c.part.between(parts[0], parts[1] - 1)
