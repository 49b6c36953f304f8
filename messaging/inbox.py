"""Reading conversations: a user's inbox as indexed SQL, and one conversation in full."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from messaging import query as q
from messaging.models import (
    Conversation,
    ConversationPriority,
    ConversationStatus,
    FileResource,
    Message,
    MessageType,
    User,
    UserMessage,
)


@dataclass(frozen=True)
class UserRef:
    """A user as other objects reference it."""

    uid: str
    username: str
    first_name: str
    surname: str

    @property
    def display_name(self) -> str:
        """First name and surname (username when both are empty)."""
        return f"{self.first_name} {self.surname}".strip() or self.username


@dataclass(frozen=True)
class AttachmentRef:
    """A file attached to a message."""

    uid: str
    name: str
    content_type: str
    content_length: int
    created: datetime


@dataclass(frozen=True)
class MessageView:
    """One message of a conversation, with its sender and attachments."""

    id: int
    uid: str
    text: str
    meta_data: str | None
    internal: bool
    created: datetime
    last_updated: datetime
    sender: UserRef | None
    attachments: list[AttachmentRef] = field(default_factory=list)


@dataclass(frozen=True)
class ParticipantView:
    """A participant's inbox row."""

    user: UserRef
    read: bool
    follow_up: bool


@dataclass(frozen=True)
class ConversationRow:
    """A conversation as one user sees it in a list (or as a non-participant, without flags)."""

    conversation: Conversation
    read: bool | None
    follow_up: bool | None
    last_message: datetime
    last_sender: UserRef | None
    assignee: UserRef | None
    created_by: UserRef | None


@dataclass(frozen=True)
class ListParams:
    """What a list request asks for, already parsed."""

    filters: Sequence[q.Filter] = ()
    orders: Sequence[q.Order] = ()
    junction: str = "AND"
    query_string: str | None = None
    query_operator: str = "token"
    page: int = 1
    page_size: int = 50
    paging: bool = True


@dataclass(frozen=True)
class Page:
    """One page of rows and the total they were cut from."""

    rows: list[ConversationRow]
    total: int


LastSender = aliased(User, name="last_sender")
Assignee = aliased(User, name="assignee")
Creator = aliased(User, name="creator")


def _enum(values: type[Any]) -> frozenset[str]:
    return frozenset(v.value for v in values)


def _uid_of(column: Any) -> Any:
    return select(User.uid).where(User.id == column).scalar_subquery()


def conversation_properties() -> dict[str, q.Property]:
    """The filterable and sortable properties of a conversation in a user's list."""
    subject = q.Property(Conversation.subject, q.Kind.STRING)
    return {
        "id": q.Property(Conversation.uid, q.Kind.STRING),
        "subject": subject,
        "name": subject,
        "displayName": subject,
        "messageType": q.Property(UserMessage.message_type, q.Kind.ENUM, _enum(MessageType)),
        "status": q.Property(Conversation.status, q.Kind.ENUM, _enum(ConversationStatus)),
        "priority": q.Property(Conversation.priority, q.Kind.ENUM, _enum(ConversationPriority)),
        "read": q.Property(UserMessage.read, q.Kind.BOOLEAN),
        "followUp": q.Property(UserMessage.follow_up, q.Kind.BOOLEAN),
        "lastMessage": q.Property(UserMessage.last_message, q.Kind.DATETIME),
        "created": q.Property(Conversation.created, q.Kind.DATETIME),
        "lastUpdated": q.Property(Conversation.last_updated, q.Kind.DATETIME),
        "messageCount": q.Property(Conversation.message_count, q.Kind.INTEGER),
        "extMessageId": q.Property(Conversation.ext_message_id, q.Kind.STRING),
        "assignee.id": q.Property(_uid_of(Conversation.assignee_id), q.Kind.STRING, sortable=False),
        "lastSender.id": q.Property(_uid_of(Conversation.last_sender_id), q.Kind.STRING, sortable=False),
        "createdBy.id": q.Property(_uid_of(Conversation.created_by_id), q.Kind.STRING, sortable=False),
    }


PROPERTIES = conversation_properties()
# Filters on these are answered by the inbox row alone (no join to conversations for counting).
INBOX_ROW_PATHS = frozenset({"read", "followUp", "lastMessage", "messageType"})
SEARCH_OPERATORS = frozenset(
    {"token", "!token", "eq", "!eq", "ne", "like", "!like", "$like", "!$like", "like$", "!like$",
     "ilike", "!ilike", "$ilike", "!$ilike", "ilike$", "!ilike$"}
)


def _search_clause(query_string: str, operator: str, include_internal: bool) -> ColumnElement[bool]:
    if operator not in SEARCH_OPERATORS:
        raise q.QueryError(f"Query operator is not supported: {operator}")
    message_visible = [Message.conversation_id == Conversation.id]
    if not include_internal:
        message_visible.append(Message.internal.is_(False))
    sender = aliased(User)
    sender_name = sender.first_name + literal(" ") + sender.surname
    return or_(
        q.text_match(Conversation.subject, operator, query_string),
        exists(select(Message.id).where(*message_visible, q.text_match(Message.text, operator, query_string))),
        exists(
            select(Message.id)
            .join(sender, sender.id == Message.sender_id)
            .where(*message_visible, q.text_match(sender_name, operator, query_string))
        ),
    )


def list_page(session: Session, user_id: int, params: ListParams, *, ticket_manager: bool) -> Page:
    """One page of the user's conversations, filtered, searched and ordered in SQL."""
    conditions: list[ColumnElement[bool]] = [UserMessage.user_id == user_id]
    filtered = q.where_clause(PROPERTIES, params.filters, params.junction)
    if filtered is not None:
        conditions.append(filtered)
    if params.query_string:
        conditions.append(_search_clause(params.query_string, params.query_operator, ticket_manager))
    where = and_(*conditions)

    counting = select(func.count()).select_from(UserMessage)
    if params.query_string or any(f.path not in INBOX_ROW_PATHS for f in params.filters):
        counting = counting.join(Conversation, Conversation.id == UserMessage.conversation_id)
    # Without a join, the count is an index-only scan of the user's inbox rows.
    total = session.scalar(counting.where(where)) or 0

    orders = q.order_clauses(PROPERTIES, params.orders) if params.orders else []
    if not orders:
        orders = [UserMessage.last_message.desc()]  # newest first (DECISIONS #8)
    statement = (
        select(
            Conversation,
            UserMessage.read,
            UserMessage.follow_up,
            UserMessage.last_message,
            LastSender,
            Assignee,
            Creator,
        )
        .select_from(UserMessage)
        .join(Conversation, Conversation.id == UserMessage.conversation_id)
        .outerjoin(LastSender, LastSender.id == Conversation.last_sender_id)
        .outerjoin(Assignee, Assignee.id == Conversation.assignee_id)
        .outerjoin(Creator, Creator.id == Conversation.created_by_id)
        .where(where)
        .order_by(*orders, UserMessage.conversation_id.desc())
    )
    if params.paging:
        statement = statement.limit(params.page_size).offset((max(params.page, 1) - 1) * params.page_size)
    rows = [
        ConversationRow(
            conversation=conv,
            read=read,
            follow_up=follow_up,
            last_message=last_message,
            last_sender=_ref(sender),
            assignee=_ref(assignee),
            created_by=_ref(creator),
        )
        for conv, read, follow_up, last_message, sender, assignee, creator in session.execute(statement)
    ]
    return Page(rows=rows, total=int(total))


def _ref(user: User | None) -> UserRef | None:
    if user is None:
        return None
    return UserRef(uid=user.uid, username=user.username, first_name=user.first_name, surname=user.surname)


def users_by_id(session: Session, ids: Sequence[int | None]) -> dict[int, UserRef]:
    """References for a set of user ids."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {
        user.id: ref
        for user in session.scalars(select(User).where(User.id.in_(wanted)))
        if (ref := _ref(user)) is not None
    }


def conversation_row(session: Session, conversation: Conversation, user_id: int) -> ConversationRow:
    """A single conversation with the requesting user's flags (None when not a participant)."""
    mine = session.get(UserMessage, (conversation.id, user_id))
    refs = users_by_id(
        session, [conversation.last_sender_id, conversation.assignee_id, conversation.created_by_id]
    )
    return ConversationRow(
        conversation=conversation,
        read=mine.read if mine else False,
        follow_up=mine.follow_up if mine else False,
        last_message=conversation.last_message,
        last_sender=refs.get(conversation.last_sender_id or -1),
        assignee=refs.get(conversation.assignee_id or -1),
        created_by=refs.get(conversation.created_by_id or -1),
    )


def messages_of(session: Session, conversation_id: int, *, include_internal: bool) -> list[MessageView]:
    """The conversation's messages, oldest first, internal ones only for ticket managers."""
    statement = select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    if not include_internal:
        statement = statement.where(Message.internal.is_(False))
    messages = list(session.scalars(statement))
    senders = users_by_id(session, [m.sender_id for m in messages])
    attachments: dict[int, list[AttachmentRef]] = {}
    if messages:
        for resource in session.scalars(
            select(FileResource)
            .where(FileResource.message_id.in_([m.id for m in messages]))
            .order_by(FileResource.id)
        ):
            attachments.setdefault(resource.message_id or 0, []).append(
                AttachmentRef(
                    uid=resource.uid,
                    name=resource.name,
                    content_type=resource.content_type,
                    content_length=resource.content_length,
                    created=resource.created,
                )
            )
    return [
        MessageView(
            id=m.id,
            uid=m.uid,
            text=m.text,
            meta_data=m.meta_data,
            internal=m.internal,
            created=m.created,
            last_updated=m.last_updated,
            sender=senders.get(m.sender_id or -1),
            attachments=attachments.get(m.id, []),
        )
        for m in messages
    ]


def participants_of(session: Session, conversation_id: int) -> list[ParticipantView]:
    """Every participant of a conversation with their flags."""
    rows = session.execute(
        select(UserMessage, User)
        .join(User, User.id == UserMessage.user_id)
        .where(UserMessage.conversation_id == conversation_id)
        .order_by(User.id)
    )
    return [
        ParticipantView(user=_ref(user) or UserRef(user.uid, user.username, "", ""), read=um.read, follow_up=um.follow_up)
        for um, user in rows
    ]


def unread_count(session: Session, user_id: int) -> int:
    """How many of the user's conversations are unread."""
    return int(
        session.scalar(
            select(func.count()).select_from(UserMessage).where(
                UserMessage.user_id == user_id, UserMessage.read.is_(False)
            )
        )
        or 0
    )


def by_uid_map(rows: Sequence[ConversationRow]) -> Mapping[str, ConversationRow]:
    """Index rows by conversation UID."""
    return {row.conversation.uid: row for row in rows}
