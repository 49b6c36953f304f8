"""Who takes part in a conversation: inbox rows written in the request, removals that hold.

DECISIONS #20: the request that names users writes their inbox rows itself; group and org-unit
members join later through the fan-out (`fanout.py`), which adds only users that have no row and
were never removed. A removal therefore deletes the inbox row *and* records the user in
`removed_participants`; only adding the user again by name deletes that record.

Every function here is set-based (one statement, or one executemany for a few rows) and stages
in the caller's transaction. Concurrency with the fan-out: the fan-out holds a share lock on the
conversation row while it inserts, and every request that changes participants reads the row
for update first (`conversations.get_by_uid(..., lock=True)`), so on PostgreSQL the two never
interleave; SQLite serialises writers already (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, Text, and_, case, delete, exists, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from messaging.directory import FEEDBACK_RECIPIENTS_KEY, MANAGE_TICKETS, SUPER_AUTHORITY
from messaging.models import (
    RemovedParticipant,
    SystemSetting,
    UserGroup,
    UserGroupMember,
    UserMessage,
    UserRole,
    UserRoleMember,
    utcnow,
)

# Outbox payload key: the request already did the event's inbox work for the users it names
# (their rows; a reply's unread flags). Events staged without it predate that and the fan-out does it.
INBOX_DONE = "inbox_done"

_INBOX = cast(Table, UserMessage.__table__)
_REMOVED = cast(Table, RemovedParticipant.__table__)
_INSERT_INBOX = _INBOX.insert()  # built once: it runs on every POST
CHUNK = 1000


def _chunks(items: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _dialect(session: Session) -> Any:
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def not_removed(conversation_id: Any, user_id: Any) -> Any:
    """SQL condition: the user was never removed from the conversation (the fan-out's anti-join)."""
    return ~exists().where(RemovedParticipant.conversation_id == conversation_id, RemovedParticipant.user_id == user_id)


def join_new(
    session: Session,
    conversation_id: int,
    *,
    sender_id: int | None,
    named: Sequence[int],
    last_message: datetime,
    message_type: str,
) -> None:
    """Write the inbox rows of a conversation just created: the sender's (read) and the named users' (unread).

    The conversation is new, so nothing can conflict: one plain multi-row INSERT.
    """
    rows = [
        {"conversation_id": conversation_id, "user_id": user_id, "read": user_id == sender_id,
         "follow_up": False, "last_message": last_message, "message_type": message_type}
        for user_id in dict.fromkeys([*([sender_id] if sender_id is not None else []), *named])
    ]
    if rows:
        session.execute(_INSERT_INBOX, rows)


def join_named(
    session: Session, conversation_id: int, named: Sequence[int], *, last_message: datetime, message_type: str
) -> None:
    """Add users named explicitly to an existing conversation: unread, their removal record cleared.

    Adding a user by name is an explicit act, so it brings back a removed participant; a user
    already taking part keeps their row and flags (ON CONFLICT DO NOTHING).
    """
    users = list(dict.fromkeys(named))
    if not users:
        return
    for part in _chunks(users):
        session.execute(
            delete(RemovedParticipant).where(
                RemovedParticipant.conversation_id == conversation_id, RemovedParticipant.user_id.in_(part)
            )
        )
    rows = [
        {"conversation_id": conversation_id, "user_id": user_id, "read": False, "follow_up": False,
         "last_message": last_message, "message_type": message_type}
        for user_id in users
    ]
    statement = _dialect(session).insert(_INBOX).on_conflict_do_nothing(index_elements=["conversation_id", "user_id"])
    session.execute(statement, rows)


def remove(session: Session, user_id: int, conversation_ids: Sequence[int]) -> set[int]:
    """Take the user out of these conversations for good; return those where they had a row.

    The removal is recorded even where the user has no row yet (a group member whose fan-out has
    not run), so the fan-out cannot add them later.
    """
    ids = list(dict.fromkeys(conversation_ids))
    removed: set[int] = set()
    for part in _chunks(ids):
        result = session.execute(
            delete(UserMessage)
            .where(UserMessage.user_id == user_id, UserMessage.conversation_id.in_(part))
            .returning(UserMessage.conversation_id)
        )
        removed.update(result.scalars())
    if ids:
        now = utcnow()
        statement = _dialect(session).insert(_REMOVED).on_conflict_do_nothing(index_elements=["conversation_id", "user_id"])
        session.execute(
            statement, [{"conversation_id": cid, "user_id": user_id, "removed_at": now} for cid in ids]
        )
    return removed


def mark_others_unread(
    session: Session, conversation_id: int, replier_id: int, at: datetime, *, managers_only: bool
) -> None:
    """A reply: every other participant (only ticket managers, for an internal one) unread, newest first.

    One UPDATE; `last_message` never moves back when two replies race.
    """
    conditions = [UserMessage.conversation_id == conversation_id, UserMessage.user_id != replier_id]
    if managers_only:
        conditions.append(ticket_managers_clause(session))
    session.execute(
        update(UserMessage)
        .where(and_(*conditions))
        .values(
            read=False,
            last_message=case((UserMessage.last_message < at, at), else_=UserMessage.last_message),
        )
        .execution_options(synchronize_session=False)
    )


def ticket_managers_clause(db: Session | Connection) -> Any:
    """SQL condition on UserMessage.user_id: ALL, F_MANAGE_TICKETS, or feedback group member."""
    role_users = (
        select(UserRoleMember.user_id)
        .join(UserRole, UserRole.id == UserRoleMember.role_id)
        .where(UserRoleMember.user_id == UserMessage.user_id)
    )
    authorities = [SUPER_AUTHORITY, MANAGE_TICKETS]
    # Authorities are a JSON list; match their quoted form, which works on both dialects.
    has_authority = or_(*(sql_cast(UserRole.authorities, Text).like(f'%"{a}"%') for a in authorities))
    clause: Any = exists(role_users.where(has_authority))
    group_uid = db.scalar(select(SystemSetting.value).where(SystemSetting.key == FEEDBACK_RECIPIENTS_KEY))
    if group_uid:
        clause = or_(
            clause,
            exists(
                select(UserGroupMember.user_id)
                .join(UserGroup, UserGroup.id == UserGroupMember.group_id)
                .where(UserGroup.uid == group_uid, UserGroupMember.user_id == UserMessage.user_id)
            ),
        )
    return clause
