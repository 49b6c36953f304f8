"""Reading conversations: a user's inbox as indexed SQL, and one conversation in full."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)
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


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A conversation as one user sees it in a list (or as a non-participant, without flags)."""

    id: int
    uid: str
    subject: str
    message_type: str
    status: str
    priority: str
    message_count: int
    ext_message_id: str | None
    created: datetime
    last_updated: datetime
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


# Every value `user_messages.message_type` can hold (it is copied from the conversation, which
# only ever takes a MessageType). A list across types merges one index range per type.
MESSAGE_TYPES = tuple(t.value for t in MessageType)
_ROW = (UserMessage.conversation_id, UserMessage.last_message, UserMessage.read, UserMessage.follow_up)
_SHOWN = (
    Conversation.id,
    Conversation.uid,
    Conversation.subject,
    Conversation.message_type,
    Conversation.status,
    Conversation.priority,
    Conversation.message_count,
    Conversation.ext_message_id,
    Conversation.created,
    Conversation.last_updated,
    *(c for u in (LastSender, Assignee, Creator) for c in (u.uid, u.username, u.first_name, u.surname)),
)


# Bound per request, so one built statement (and SQLAlchemy's compiled form) serves every user.
_USER = bindparam("inbox_user_id", type_=BigInteger())
_LIMIT = bindparam("inbox_limit", type_=Integer())
_OFFSET = bindparam("inbox_offset", type_=Integer())
_WINDOW = bindparam("inbox_window", type_=Integer())  # offset + limit: what each type's range reads


def list_page(session: Session, user_id: int, params: ListParams, *, ticket_manager: bool) -> Page:
    """One page of the user's conversations, filtered, searched and ordered in SQL.

    Ordered by `lastMessage` (the default), the page is read from the inbox index
    `(user_id, message_type, last_message, conversation_id)`: one range per message type the
    filters allow, merged, so a page costs its own rows however large the inbox. The total is
    counted only when the page itself cannot tell it.
    """
    shape = (tuple(params.filters), tuple(params.orders), params.junction, params.paging)
    if params.query_string:  # searches are one-offs: not worth a cache entry
        statements = _statements.__wrapped__(*shape, params.query_string, params.query_operator, ticket_manager)
    else:
        statements = _statements(*shape, None, "token", False)
    if statements is None:  # contradictory messageType filters: nothing can match
        return Page(rows=[], total=0)
    page_statement, count_statement = statements
    limit = params.page_size
    offset = (max(params.page, 1) - 1) * limit
    binds = {"inbox_user_id": user_id, "inbox_limit": limit, "inbox_offset": offset, "inbox_window": offset + limit}
    connection = session.connection()
    rows = [_list_row(r) for r in connection.execute(page_statement, binds)]
    if not params.paging or 0 < len(rows) < limit or (not rows and offset == 0):
        total = offset + len(rows) if params.paging else len(rows)  # the last page tells the total
    else:
        total = connection.execute(count_statement, binds).scalar() or 0
    return Page(rows=rows, total=int(total))


@lru_cache(maxsize=128)
def _statements(
    filters: tuple[q.Filter, ...],
    orders: tuple[q.Order, ...],
    junction: str,
    paging: bool,
    query_string: str | None,
    query_operator: str,
    ticket_manager: bool,
) -> tuple[Select[*tuple[Any, ...]], Select[*tuple[Any, ...]]] | None:
    """The page and count statements of one request shape (user, limit and offset bound later)."""
    conditions: list[ColumnElement[bool]] = []
    filtered = q.where_clause(PROPERTIES, filters, junction)
    if filtered is not None:
        conditions.append(filtered)
    if query_string:
        conditions.append(_search_clause(query_string, query_operator, ticket_manager))
    order_by = q.order_clauses(PROPERTIES, orders) if orders else []
    join_conversation = bool(query_string) or any(f.path not in INBOX_ROW_PATHS for f in filters)
    types = _message_types(filters, junction)
    if not types:
        return None
    if paging and all(o.path == "lastMessage" for o in orders):
        descending = orders[0].descending if orders else True  # newest first (DECISIONS #8)
        page = _by_last_message(types, conditions, join_conversation, descending)
    else:
        page = _by_any_order(conditions, order_by, paging)
    counting = select(func.count()).select_from(UserMessage)
    if join_conversation:
        counting = counting.join(Conversation, Conversation.id == UserMessage.conversation_id)
    # Without a join, the count is an index-only scan of one range of the inbox index.
    return page, counting.where(UserMessage.user_id == _USER, *conditions)


def _message_types(filters: Sequence[q.Filter], junction: str) -> tuple[str, ...]:
    if junction != "AND":
        return MESSAGE_TYPES
    allowed = q.narrowed_values(PROPERTIES, filters, "messageType")
    return MESSAGE_TYPES if allowed is None else tuple(t for t in MESSAGE_TYPES if t in allowed)


def _by_last_message(
    types: Sequence[str],
    conditions: Sequence[ColumnElement[bool]],
    join_conversation: bool,
    descending: bool,
) -> Select[*tuple[Any, ...]]:
    def ordered(c: Any) -> list[ColumnElement[Any]]:
        # Ties on last_message go by conversation id in the same direction, so each type is one
        # index range read forwards or backwards, never sorted.
        if descending:
            return [c.last_message.desc(), c.conversation_id.desc()]
        return [c.last_message.asc(), c.conversation_id.asc()]

    legs = []
    for message_type in types:
        leg = select(*_ROW).where(UserMessage.user_id == _USER, UserMessage.message_type == message_type)
        if join_conversation:
            leg = leg.join(Conversation, Conversation.id == UserMessage.conversation_id)
        legs.append(leg.where(*conditions).order_by(*ordered(UserMessage)))
    if len(legs) == 1:
        page = legs[0].limit(_LIMIT).offset(_OFFSET).subquery("page")
    else:
        # Each type's first offset+limit rows, in order (a subquery of its own: PostgreSQL cannot
        # pull a leg with a WHERE into the union), merged by PostgreSQL's Merge Append.
        merged = union_all(*(select(leg.limit(_WINDOW).subquery()) for leg in legs)).subquery("keys")
        page = select(merged).order_by(*ordered(merged.c)).limit(_LIMIT).offset(_OFFSET).subquery("page")
    statement = select(*_SHOWN, page.c.read, page.c.follow_up, page.c.last_message).select_from(page)
    return _shown(statement, page.c.conversation_id).order_by(*ordered(page.c))


def _by_any_order(conditions: Sequence[ColumnElement[bool]], orders: Sequence[ColumnElement[Any]], paging: bool) -> Select[*tuple[Any, ...]]:
    statement = select(*_SHOWN, UserMessage.read, UserMessage.follow_up, UserMessage.last_message).select_from(UserMessage)
    statement = (
        _shown(statement, UserMessage.conversation_id)
        .where(UserMessage.user_id == _USER, *conditions)
        .order_by(*orders, UserMessage.conversation_id.desc())
    )
    return statement.limit(_LIMIT).offset(_OFFSET) if paging else statement


def _shown(statement: Select[*tuple[Any, ...]], conversation_id: Any) -> Select[*tuple[Any, ...]]:
    return (
        statement.join(Conversation, Conversation.id == conversation_id)
        .outerjoin(LastSender, LastSender.id == Conversation.last_sender_id)
        .outerjoin(Assignee, Assignee.id == Conversation.assignee_id)
        .outerjoin(Creator, Creator.id == Conversation.created_by_id)
    )


def _user(uid: str | None, username: str, first_name: str, surname: str) -> UserRef | None:
    return None if uid is None else UserRef(uid, username, first_name, surname)


def _list_row(r: Any) -> ConversationRow:
    return ConversationRow(
        id=r[0],
        uid=r[1],
        subject=r[2],
        message_type=r[3],
        status=r[4],
        priority=r[5],
        message_count=r[6],
        ext_message_id=r[7],
        created=r[8],
        last_updated=r[9],
        last_sender=_user(r[10], r[11], r[12], r[13]),
        assignee=_user(r[14], r[15], r[16], r[17]),
        created_by=_user(r[18], r[19], r[20], r[21]),
        read=r[22],
        follow_up=r[23],
        last_message=r[24],
    )


def users_by_id(session: Session, ids: Iterable[int | None]) -> dict[int, UserRef]:
    """References for a set of user ids."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(User.id, User.uid, User.username, User.first_name, User.surname).where(User.id.in_(wanted))
    )
    return {r.id: UserRef(r.uid, r.username, r.first_name, r.surname) for r in rows}


def conversation_row(session: Session, conversation: Conversation, user_id: int) -> ConversationRow:
    """A single conversation with the requesting user's flags (False when not a participant)."""
    mine = session.get(UserMessage, (conversation.id, user_id))
    refs = users_by_id(
        session, [conversation.last_sender_id, conversation.assignee_id, conversation.created_by_id]
    )
    return ConversationRow(
        id=conversation.id,
        uid=conversation.uid,
        subject=conversation.subject,
        message_type=conversation.message_type,
        status=conversation.status,
        priority=conversation.priority,
        message_count=conversation.message_count,
        ext_message_id=conversation.ext_message_id,
        created=conversation.created,
        last_updated=conversation.last_updated,
        read=mine.read if mine else False,
        follow_up=mine.follow_up if mine else False,
        last_message=conversation.last_message,
        last_sender=refs.get(conversation.last_sender_id or -1),
        assignee=refs.get(conversation.assignee_id or -1),
        created_by=refs.get(conversation.created_by_id or -1),
    )


def messages_of(
    session: Session, conversation_ids: Sequence[int], *, include_internal: bool
) -> dict[int, list[MessageView]]:
    """The messages of several conversations at once, oldest first, internal ones only for ticket managers."""
    if not conversation_ids:
        return {}
    statement = select(Message).where(Message.conversation_id.in_(conversation_ids)).order_by(Message.id)
    if not include_internal:
        statement = statement.where(Message.internal.is_(False))
    messages = list(session.scalars(statement))
    senders = users_by_id(session, (m.sender_id for m in messages))
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
    by_conversation: dict[int, list[MessageView]] = {cid: [] for cid in conversation_ids}
    for m in messages:
        by_conversation[m.conversation_id].append(
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
        )
    return by_conversation


def participants_of(session: Session, conversation_ids: Sequence[int]) -> dict[int, list[ParticipantView]]:
    """Every participant of several conversations at once, with their flags."""
    if not conversation_ids:
        return {}
    rows = session.execute(
        select(
            UserMessage.conversation_id,
            UserMessage.read,
            UserMessage.follow_up,
            User.uid,
            User.username,
            User.first_name,
            User.surname,
        )
        .join(User, User.id == UserMessage.user_id)
        .where(UserMessage.conversation_id.in_(conversation_ids))
        .order_by(UserMessage.conversation_id, User.id)
    )
    by_conversation: dict[int, list[ParticipantView]] = {cid: [] for cid in conversation_ids}
    for r in rows:
        by_conversation[r.conversation_id].append(
            ParticipantView(user=UserRef(r.uid, r.username, r.first_name, r.surname), read=r.read, follow_up=r.follow_up)
        )
    return by_conversation


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
    return {row.uid: row for row in rows}
