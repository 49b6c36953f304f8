"""Conversation use cases. Services stage changes in the caller's session; the edge commits once."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, exists, insert, select, text, update
from sqlalchemy.orm import Session

from messaging import context, outbox, participants
from messaging.directory import Principal, is_ticket_manager, user_by_uid
from messaging.errors import BadRequest, Conflict, Forbidden, NotFound
from messaging.ids import new_uid
from messaging.models import (
    Conversation,
    ConversationStatus,
    FileResource,
    Message,
    MessageType,
    OrganisationUnit,
    User,
    UserGroup,
    UserGroupMember,
    UserMessage,
    UserOrgUnit,
    utcnow,
)
from messaging.participants import INBOX_DONE

T = TypeVar("T")
CHUNK = 1000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    """Split a sequence so IN lists stay under every database's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class RecipientRefs:
    """Recipient UIDs as a client sent them."""

    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    org_units: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Resolved:
    """Recipient references resolved to internal ids (expansion happens in a worker)."""

    user_ids: list[int]
    group_ids: list[int]
    org_unit_ids: list[int]

    def payload(self) -> dict[str, list[int]]:
        """The outbox payload part naming the recipients."""
        return {"users": self.user_ids, "groups": self.group_ids, "org_units": self.org_unit_ids}


_IDS_BY_UID: dict[Any, Any] = {}


def _ids_by_uid(session: Session, model: Any, uids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    statement = _IDS_BY_UID.get(model)
    if statement is None:
        # Built once per table (Core columns, an expanding IN): statement building was a tenth of a POST.
        table = model.__table__
        statement = _IDS_BY_UID[model] = select(table.c.uid, table.c.id).where(
            table.c.uid.in_(bindparam("uids", expanding=True))
        )
    for part in chunks(list(dict.fromkeys(uids))):
        found.update({uid: pk for uid, pk in session.execute(statement, {"uids": list(part)})})
    return found


def resolve(session: Session, refs: RecipientRefs) -> Resolved:
    """Check every referenced object exists, in DHIS2's order and with its texts."""
    org_units = _ids_by_uid(session, OrganisationUnit, refs.org_units)
    for uid in refs.org_units:
        if uid not in org_units:
            raise Conflict(f"Organisation Unit does not exist: {uid}")
    users = _ids_by_uid(session, User, refs.users)
    for uid in refs.users:
        if uid not in users:
            raise Conflict(f"User does not exist: {uid}")
    groups = _ids_by_uid(session, UserGroup, refs.groups)
    for uid in refs.groups:
        if uid not in groups:
            raise NotFound(f"UserGroup with id {uid} could not be found.", error_code="E1005")
    return Resolved(list(users.values()), list(groups.values()), list(org_units.values()))


def has_any_recipient(session: Session, resolved: Resolved) -> bool:
    """True when the references expand to at least one user."""
    if resolved.user_ids:
        return True
    checks = []
    if resolved.group_ids:
        checks.append(exists().where(UserGroupMember.group_id.in_(resolved.group_ids)))
    if resolved.org_unit_ids:
        checks.append(exists().where(UserOrgUnit.org_unit_id.in_(resolved.org_unit_ids)))
    return any(session.scalar(select(check)) for check in checks)


def get_by_uid(session: Session, uid: str, *, lock: bool = False) -> Conversation | None:
    """The conversation with that UID, if any; `lock`: held until commit against its fan-out.

    A request that changes participants or the summary locks the row as it reads it (FOR NO KEY
    UPDATE on PostgreSQL, what an UPDATE takes anyway), so the values it writes back are fresh
    and no fan-out of the conversation interleaves with it (see `participants.py`).
    """
    query = select(Conversation).where(Conversation.uid == uid)
    if lock:
        query = query.with_for_update(key_share=True).execution_options(populate_existing=True)
    return session.scalar(query)


def participant_ids(session: Session, user_id: int, conversation_ids: Sequence[int]) -> set[int]:
    """Which of these conversations the user takes part in."""
    found: set[int] = set()
    for part in chunks(conversation_ids):
        found.update(
            session.scalars(
                select(UserMessage.conversation_id).where(
                    UserMessage.user_id == user_id, UserMessage.conversation_id.in_(part)
                )
            )
        )
    return found


def is_participant(session: Session, conversation_id: int, user_id: int) -> bool:
    """Does the user have an inbox row for the conversation?"""
    return bool(participant_ids(session, user_id, [conversation_id]))


def can_read(session: Session, actor: Principal, conversation: Conversation) -> bool:
    """May the actor GET this conversation? Participants and ALL (DECISIONS #11)."""
    return actor.is_super or is_participant(session, conversation.id, actor.id)


def check_access(
    session: Session,
    actor: Principal,
    conversations: Sequence[Conversation],
    message: str,
    *,
    acting_for_other: bool = False,
) -> None:
    """Refuse the whole batch unless the actor may change every conversation in it.

    Access is participant, ALL, or ticket manager on a TICKET. Acting for another user needs
    ALL, or ticket manager on a TICKET (DECISIONS #6).
    """
    if actor.is_super:
        return
    tickets = [c for c in conversations if c.message_type == MessageType.TICKET]
    manager = bool(tickets) and is_ticket_manager(session, actor)
    joined = participant_ids(session, actor.id, [c.id for c in conversations])
    for conversation in conversations:
        on_ticket = manager and conversation.message_type == MessageType.TICKET
        allowed = on_ticket if acting_for_other else (conversation.id in joined or on_ticket)
        if not allowed:
            raise Forbidden(message)


def link_attachments(session: Session, actor: Principal, message_id: int, uids: Sequence[str]) -> None:
    """Attach uploaded files to a message: each exists, is a message attachment, unused, the actor's."""
    for uid in dict.fromkeys(uids):
        resource = session.scalar(select(FileResource).where(FileResource.uid == uid))
        if resource is None:
            raise Conflict(f"Attachment '{uid}' not found.")
        if (
            resource.domain != "MESSAGE_ATTACHMENT"
            or resource.assigned
            or resource.created_by_id not in (None, actor.id)
        ):
            raise Conflict(f"Attachment '{uid}' is already used or not a valid attachment.")
        resource.assigned = True
        resource.message_id = message_id


@dataclass(frozen=True)
class Started:
    """A conversation just staged: its id and its UID (for the Location header)."""

    id: int
    uid: str


_CONVERSATIONS = cast(Table, Conversation.__table__)
_MESSAGES = cast(Table, Message.__table__)
# Core statements, compiled once and cached: the unit of work cost ~35% of a POST's CPU (issue 12).
_INSERT_CONVERSATION = insert(_CONVERSATIONS).returning(_CONVERSATIONS.c.id)
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
# PostgreSQL: the same four writes as one statement (one round trip and one execute's Python
# instead of four; each execute cost ~0.25 ms of the API's CPU). Every row gets exactly the
# values the separate INSERTs give it; the outbox payload gets the new ids and the named users'
# ids in SQL. The named users come by id (already resolved) or by UID: then the statement
# writes nothing unless every UID names a user, and the caller looks for the one missing.
_START_CONVERSATION_PG = text(
    """
    WITH named AS (
        SELECT id FROM users
        WHERE id = ANY(CAST(:named_ids AS bigint[])) OR uid = ANY(CAST(:named_uids AS varchar[]))
    ), c AS (
        INSERT INTO conversations (uid, subject, message_type, status, priority, last_sender_id, created_by_id,
                                   last_message, message_count, created, last_updated)
        SELECT :uid, :subject, :message_type, :status, :priority, :sender_id, :sender_id, :now, 1, :now, :now
        WHERE (SELECT count(*) FROM named) = :named_count
        RETURNING id
    ), m AS (
        INSERT INTO messages (uid, conversation_id, sender_id, text, meta_data, internal, created, last_updated)
        SELECT :message_uid, c.id, :sender_id, :text, :meta_data, false, :now, :now FROM c
        RETURNING id
    ), inbox AS (
        INSERT INTO user_messages (conversation_id, user_id, read, follow_up, last_message, message_type)
        SELECT c.id, p.user_id, p.read, false, :now, :message_type
        FROM c, (
            SELECT CAST(:sender_id AS bigint) AS user_id, true AS read WHERE CAST(:sender_id AS bigint) IS NOT NULL
            UNION ALL
            SELECT id, false FROM named WHERE id IS DISTINCT FROM CAST(:sender_id AS bigint)
        ) AS p
    ), event AS (
        INSERT INTO outbox (kind, payload, request_id, created_at, available_at, attempts)
        SELECT :kind,
               CAST(CAST(:payload AS jsonb) || jsonb_build_object(
                   'conversation_id', c.id, 'message_id', m.id,
                   'users', (SELECT coalesce(jsonb_agg(id ORDER BY id), '[]'::jsonb) FROM named)
               ) AS json),
               :request_id, :now, :now, 0
        FROM c, m
    )
    SELECT c.id AS conversation_id, m.id AS message_id FROM c, m
    """
)


def send_private_message(
    session: Session,
    *,
    sender: Principal,
    subject: str,
    text: str,
    refs: RecipientRefs,
    attachments: Sequence[str] = (),
    meta_data: str | None = None,
) -> Started:
    """Stage a PRIVATE conversation, its first message, the sender's inbox row and the fan-out."""
    if refs.users and not refs.groups and not refs.org_units and _on_postgresql(session):
        # Named users only (most messages): their lookup is part of the one statement that writes.
        started = _start_on_postgresql(
            session, sender=sender, subject=subject, text=text, named_uids=refs.users, payload={"groups": [], "org_units": []},
            message_type=MessageType.PRIVATE, status=ConversationStatus.NONE, priority="NONE", attachments=attachments,
            meta_data=meta_data,
        )
        if started is not None:
            return started
    resolved = resolve(session, refs)  # raises the 409 naming the first unknown user
    if not has_any_recipient(session, resolved):
        raise Conflict("No recipients selected.")
    return start_conversation(
        session,
        sender=sender,
        subject=subject,
        text=text,
        resolved=resolved,
        attachments=attachments,
        meta_data=meta_data,
    )


def start_conversation(
    session: Session,
    *,
    sender: Principal | None,
    subject: str,
    text: str,
    resolved: Resolved,
    message_type: MessageType = MessageType.PRIVATE,
    status: ConversationStatus = ConversationStatus.NONE,
    priority: str = "NONE",
    attachments: Sequence[str] = (),
    meta_data: str | None = None,
) -> Started:
    """Stage a conversation of any type with its first message and outbox event. No commit.

    Plain INSERTs on the session's connection (no ORM objects): nothing else in the request
    touches these rows, and every statement runs in the caller's transaction.
    """
    if _on_postgresql(session):
        started = _start_on_postgresql(
            session, sender=sender, subject=subject, text=text, named_ids=resolved.user_ids,
            payload={"groups": resolved.group_ids, "org_units": resolved.org_unit_ids}, message_type=message_type,
            status=status, priority=priority, attachments=attachments, meta_data=meta_data,
        )
        if started is None:  # users are never deleted, so ids just resolved cannot go missing
            raise RuntimeError("a resolved recipient disappeared")
        return started
    now = utcnow()
    sender_id = sender.id if sender else None
    uid = new_uid()
    conversation_id = session.execute(
        _INSERT_CONVERSATION,
        {
            "uid": uid, "subject": subject, "message_type": message_type.value, "status": status.value,
            "priority": priority, "last_sender_id": sender_id, "created_by_id": sender_id, "last_message": now,
            "message_count": 1, "created": now, "last_updated": now,
        },
    ).scalar_one()
    message_id = session.execute(
        _INSERT_MESSAGE,
        {
            "uid": new_uid(), "conversation_id": conversation_id, "sender_id": sender_id, "text": text,
            "meta_data": meta_data, "internal": False, "created": now, "last_updated": now,
        },
    ).scalar_one()
    if sender is not None and attachments:
        link_attachments(session, sender, message_id, attachments)
    # The sender always takes part, read (DHIS2 MessageServiceTest.testSendMessage); the users
    # named directly take part at once, unread (DECISIONS #20). Groups and org units: the fan-out.
    participants.join_new(
        session,
        conversation_id,
        sender_id=sender_id,
        named=resolved.user_ids,
        last_message=now,
        message_type=message_type.value,
    )
    outbox.stage(
        session,
        outbox.CONVERSATION_CREATED,
        {
            "conversation_id": conversation_id,
            "message_id": message_id,
            "sender_id": sender_id,
            **resolved.payload(),  # the users stay: email and SMS go to them through the workers
            INBOX_DONE: True,
        },
    )
    return Started(id=conversation_id, uid=uid)


def _on_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _start_on_postgresql(
    session: Session,
    *,
    sender: Principal | None,
    subject: str,
    text: str,
    payload: dict[str, Any],
    message_type: MessageType,
    status: ConversationStatus,
    priority: str,
    attachments: Sequence[str],
    meta_data: str | None,
    named_ids: Sequence[int] = (),
    named_uids: Sequence[str] = (),
) -> Started | None:
    """`start_conversation`'s writes as one statement; None (nothing written) when a named UID is unknown."""
    now = utcnow()
    sender_id = sender.id if sender else None
    uid = new_uid()
    ids, uids = list(dict.fromkeys(named_ids)), list(dict.fromkeys(named_uids))
    event = {"sender_id": sender_id, **payload, INBOX_DONE: True}  # + the ids and "users", in SQL
    row = session.execute(
        _START_CONVERSATION_PG,
        {
            "uid": uid, "subject": subject, "message_type": message_type.value, "status": status.value,
            "priority": priority, "sender_id": sender_id, "now": now, "message_uid": new_uid(), "text": text,
            "meta_data": meta_data, "named_ids": ids, "named_uids": uids, "named_count": len(ids) + len(uids),
            "kind": outbox.CONVERSATION_CREATED, "payload": json.dumps(event), "request_id": context.request_id(),
        },
    ).one_or_none()
    if row is None:
        return None
    if sender is not None and attachments:
        link_attachments(session, sender, row.message_id, attachments)
    return Started(id=row.conversation_id, uid=uid)


def reply(
    session: Session,
    *,
    actor: Principal,
    conversation_uid: str,
    text: str,
    internal: bool = False,
    attachments: Sequence[str] = (),
    meta_data: str | None = None,
) -> Conversation:
    """Stage a reply: the message, every inbox row it moves, and the event for email and SMS."""
    conversation = get_by_uid(session, conversation_uid, lock=True)
    if conversation is None:
        raise NotFound(f"Message conversation does not exist: {conversation_uid}")
    if internal and not is_ticket_manager(session, actor):
        raise Forbidden("Not authorized to send internal messages")
    check_access(session, actor, [conversation], "Not authorized to send messages to this conversation.")
    if not text:
        raise BadRequest("Required request body is missing")
    now = utcnow()
    message = Message(
        conversation_id=conversation.id,
        sender_id=actor.id,
        text=text,
        internal=internal,
        meta_data=meta_data,
        created=now,
        last_updated=now,
    )
    session.add(message)
    session.flush()
    link_attachments(session, actor, message.id, attachments)
    if not internal:
        # Internal messages leave the conversation row alone, `lastUpdated` included, so their
        # timing never shows to non-managers (DECISIONS #9; issue 8's internal-notes hole).
        conversation.last_message = now
        conversation.last_sender_id = actor.id
        conversation.message_count += 1
        conversation.last_updated = now
    session.execute(
        update(UserMessage)
        .where(UserMessage.conversation_id == conversation.id, UserMessage.user_id == actor.id)
        .values(last_message=now)
    )
    # In this transaction, not the worker's: a read right after the answer is never undone.
    participants.mark_others_unread(session, conversation.id, actor.id, now, managers_only=internal)
    outbox.stage(
        session,
        outbox.MESSAGE_REPLIED,
        {
            "conversation_id": conversation.id,
            "message_id": message.id,
            "replier_id": actor.id,
            "internal": internal,
            INBOX_DONE: True,
        },
    )
    return conversation


def add_recipients(session: Session, *, actor: Principal, conversation_uid: str, refs: RecipientRefs) -> None:
    """Stage new participants (unread): named users at once, groups and org units by the fan-out.

    Nobody is notified (DECISIONS #15). Naming a removed user brings them back; a group or org
    unit does not bring back its removed members (DECISIONS #20).
    """
    conversation = get_by_uid(session, conversation_uid, lock=True)
    if conversation is None:
        raise NotFound(f"Message conversation does not exist: {conversation_uid}")
    check_access(session, actor, [conversation], "Not authorized to change recipients in this conversation.")
    resolved = resolve(session, refs)
    participants.join_named(
        session,
        conversation.id,
        resolved.user_ids,
        last_message=conversation.last_message,
        message_type=conversation.message_type,
    )
    if resolved.group_ids or resolved.org_unit_ids:
        outbox.stage(
            session,
            outbox.RECIPIENTS_ADDED,
            {"conversation_id": conversation.id, **resolved.payload(), INBOX_DONE: True},
        )


def _target_user(session: Session, actor: Principal, target_uid: str | None, message: str) -> int:
    if not target_uid or target_uid == actor.uid:
        return actor.id
    user = user_by_uid(session, target_uid)
    if user is None:
        raise NotFound(message.format(uid=target_uid))
    return user.id


def _conversations(session: Session, uids: Sequence[str], *, lock: bool = False) -> list[Conversation]:
    found: list[Conversation] = []
    for part in chunks(list(dict.fromkeys(uids))):
        query = select(Conversation).where(Conversation.uid.in_(part))
        if lock:  # in id order, so two batches locking overlapping sets cannot deadlock
            query = query.order_by(Conversation.id).with_for_update(key_share=True)
        found.extend(session.scalars(query))
    order = {uid: i for i, uid in enumerate(uids)}
    return sorted(found, key=lambda c: order[c.uid])


def mark_read(
    session: Session, *, actor: Principal, uids: Sequence[str], target_uid: str | None, read: bool
) -> list[str]:
    """Set the target user's read flag; return the UIDs whose flag changed (DECISIONS #7)."""
    target = _target_user(session, actor, target_uid, "No user with uid: {uid}")
    conversations = _conversations(session, uids)
    if not conversations:
        raise NotFound("No MessageConversations found for the given IDs.")
    check_access(
        session,
        actor,
        conversations,
        "Not authorized to change read property of this conversation.",
        acting_for_other=target != actor.id,
    )
    changed = _set_flag(session, target, conversations, "read", read)
    return [c.uid for c in conversations if c.id in changed]


def set_follow_up(
    session: Session, *, actor: Principal, uids: Sequence[str], target_uid: str | None, follow_up: bool
) -> list[str]:
    """Set the target user's follow-up flag; return every UID found (DHIS2)."""
    target = _target_user(session, actor, target_uid, "No user with uid: {uid}")
    conversations = _conversations(session, uids)
    if not conversations:
        raise NotFound("No MessageConversations found for the given UIDs")
    word = "followups" if follow_up else "unfollowups"
    check_access(
        session,
        actor,
        conversations,
        f"Not authorized to change {word} in this conversation.",
        acting_for_other=target != actor.id,
    )
    _set_flag(session, target, conversations, "follow_up", follow_up)
    return [c.uid for c in conversations]


def _set_flag(session: Session, user_id: int, conversations: Sequence[Conversation], flag: str, value: bool) -> set[int]:
    column = getattr(UserMessage, flag)
    changed: set[int] = set()
    for part in chunks([c.id for c in conversations]):
        result = session.execute(
            update(UserMessage)
            .where(UserMessage.user_id == user_id, UserMessage.conversation_id.in_(part), column != value)
            .values({flag: value})
            .returning(UserMessage.conversation_id)
        )
        changed.update(result.scalars())
    return changed


def remove_participant(session: Session, *, actor: Principal, conversation_uid: str, user_uid: str) -> list[str]:
    """Remove a user from a conversation; answer the removed user's UID (DECISIONS #4)."""
    target = _target_user(session, actor, user_uid, "No user with uid: {uid}")
    conversation = get_by_uid(session, conversation_uid, lock=True)
    if conversation is None:
        raise NotFound(f"No messageConversation with uid: {conversation_uid}")
    check_access(
        session,
        actor,
        [conversation],
        "Not authorized to remove assigned users to this conversation.",
        acting_for_other=target != actor.id,
    )
    removed = participants.remove(session, target, [conversation.id])
    return [user_uid if user_uid else actor.uid] if removed else []


def remove_batch(session: Session, *, actor: Principal, uids: Sequence[str], target_uid: str | None) -> list[str]:
    """Remove the target user from several conversations; answer those actually left (DECISIONS #5)."""
    target = _target_user(session, actor, target_uid, "User does not exist: {uid}")
    conversations = _conversations(session, uids, lock=True)
    if not conversations:
        raise NotFound("No MessageConversations found for the given UIDs.")
    check_access(
        session,
        actor,
        conversations,
        "Not authorized to remove assigned users to this conversation.",
        acting_for_other=target != actor.id,
    )
    removed = participants.remove(session, target, [c.id for c in conversations])
    return [c.uid for c in conversations if c.id in removed]
