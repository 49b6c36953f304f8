"""The operators' delivery search: one filter for the list, the dashboard, the CLI and bulk actions.

Pages are keyset-paginated newest first (``id < before``) so a deep page costs what the first
does; the indexes of migration 0006 (status, error code, user, each with id) serve the filters.
A DHIS2 ``filter``/``order`` (messaging/query.py) can be added on top, over ``PROPERTIES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from messaging.deliveries.states import ATTEMPTS, CHANNELS, STATUSES, USERS
from messaging.deliveries.states import DELIVERIES as _T
from messaging.models import Conversation, Message
from messaging.query import Kind, Property

_RECIPIENT = USERS.alias("recipient")

# DHIS2 property paths of a delivery, for `filter=` and `order=` (messaging/query.py).
PROPERTIES: dict[str, Property] = {
    "id": Property(_T.c.id, Kind.INTEGER),
    "channel": Property(_T.c.channel, Kind.ENUM, frozenset(CHANNELS)),
    "status": Property(_T.c.status, Kind.ENUM, frozenset(STATUSES)),
    "address": Property(_T.c.address, Kind.STRING),
    "attempts": Property(_T.c.attempts, Kind.INTEGER),
    "nextAttemptAt": Property(_T.c.next_attempt_at, Kind.DATETIME),
    "lastErrorCode": Property(_T.c.last_error_code, Kind.STRING),
    "lastError": Property(_T.c.last_error, Kind.STRING),
    "providerId": Property(_T.c.provider_id, Kind.STRING),
    "providerStatus": Property(_T.c.provider_status, Kind.STRING),
    "created": Property(_T.c.created, Kind.DATETIME),
    "lastUpdated": Property(_T.c.updated, Kind.DATETIME),
    "sentAt": Property(_T.c.sent_at, Kind.DATETIME),
    "user.id": Property(_RECIPIENT.c.uid, Kind.STRING),
    "user.username": Property(_RECIPIENT.c.username, Kind.STRING),
    "message.id": Property(Message.uid, Kind.STRING),
    "messageConversation.id": Property(Conversation.uid, Kind.STRING),
}


@dataclass(frozen=True)
class DeliveryQuery:
    """Which deliveries: every field narrows the set; empty fields match everything."""

    channels: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    error_codes: tuple[str, ...] = ()
    recipient: str | None = None  # a user id, a username or an address, exactly
    user_uids: tuple[str, ...] = ()
    conversation_uids: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    ids: tuple[int, ...] | None = None  # a selection; None: no selection
    extra: tuple[ColumnElement[bool], ...] = field(default=(), compare=False)  # DHIS2 filters

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE terms over deliveries joined to recipient, message and conversation."""
        terms: list[ColumnElement[bool]] = list(self.extra)
        if self.channels:
            terms.append(_T.c.channel.in_(self.channels))
        if self.statuses:
            terms.append(_T.c.status.in_(self.statuses))
        if self.error_codes:
            terms.append(_T.c.last_error_code.in_(self.error_codes))
        if self.recipient:
            # Resolved to user ids first, so the (user_id, id) index serves it; an address matches the
            # user's current email or phone number (a delivery copies it when created or retried).
            who = self.recipient.strip()
            users = select(USERS.c.id).where(
                or_(USERS.c.uid == who, USERS.c.username == who, USERS.c.email == who, USERS.c.phone_number == who)
            )
            terms.append(_T.c.user_id.in_(users))
        if self.user_uids:
            terms.append(_RECIPIENT.c.uid.in_(self.user_uids))
        if self.conversation_uids:
            terms.append(Conversation.uid.in_(self.conversation_uids))
        if self.created_after is not None:
            terms.append(_T.c.created >= self.created_after)
        if self.created_before is not None:
            terms.append(_T.c.created < self.created_before)
        if self.ids is not None:
            terms.append(_T.c.id.in_(self.ids))
        return terms


def _joined(columns: Sequence[Any]) -> Select[Any]:
    return (
        select(*columns)
        .select_from(_T)
        .join(Message, Message.id == _T.c.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(_RECIPIENT, _RECIPIENT.c.id == _T.c.user_id)
    )


def matching_ids(query: DeliveryQuery, *, statuses: Sequence[str] = ()) -> Select[Any]:
    """SELECT id of the deliveries ``query`` names, narrowed to ``statuses`` when given."""
    statement = _joined([_T.c.id]).where(*query.conditions())
    if statuses:
        statement = statement.where(_T.c.status.in_(sorted(statuses)))
    return statement


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


_VIEW_COLUMNS = (
    _T.c.id, _T.c.channel, _T.c.status, _T.c.address, _T.c.attempts, _T.c.next_attempt_at,
    _T.c.last_error_code, _T.c.last_error, _T.c.provider_id, _T.c.provider_status,
    _T.c.created, _T.c.updated, _T.c.sent_at,
    Message.uid.label("message_uid"), Conversation.uid.label("conversation_uid"),
    _RECIPIENT.c.uid.label("user_uid"), _RECIPIENT.c.username,
)  # fmt: skip


def count(db: Session | Connection, query: DeliveryQuery) -> int:
    """How many deliveries ``query`` names."""
    conditions = query.conditions()
    if not conditions:
        return int(db.execute(select(func.count()).select_from(_T)).scalar_one())
    return int(db.execute(select(func.count()).select_from(matching_ids(query).subquery())).scalar_one())


def page(
    db: Session | Connection,
    query: DeliveryQuery,
    *,
    limit: int,
    before_id: int | None = None,
    order: Sequence[ColumnElement[Any]] = (),
    offset: int = 0,
) -> list[DeliveryView]:
    """One page, newest first after ``before_id`` (keyset); with a DHIS2 ``order``, by it (offset)."""
    statement = _joined(_VIEW_COLUMNS).where(*query.conditions())
    if order:
        statement = statement.order_by(*order, _T.c.id.desc()).offset(offset)
    else:
        if before_id is not None:
            statement = statement.where(_T.c.id < before_id)
        statement = statement.order_by(_T.c.id.desc()).offset(offset)
    rows = db.execute(statement.limit(limit))
    return [DeliveryView(**row._asdict()) for row in rows]


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One attempt of a delivery."""

    delivery_id: int
    attempt: int
    claimed_at: datetime
    finished_at: datetime
    outcome: str
    error_code: str | None
    provider_answer: str | None
    provider_id: str | None


def attempts_of(db: Session | Connection, delivery_ids: Sequence[int]) -> dict[int, list[AttemptView]]:
    """The attempt history of each delivery, oldest first (one query for a page)."""
    if not delivery_ids:
        return {}
    rows = db.execute(
        select(
            ATTEMPTS.c.delivery_id, ATTEMPTS.c.attempt, ATTEMPTS.c.claimed_at, ATTEMPTS.c.finished_at,
            ATTEMPTS.c.outcome, ATTEMPTS.c.error_code, ATTEMPTS.c.provider_answer, ATTEMPTS.c.provider_id,
        )
        .where(ATTEMPTS.c.delivery_id.in_(list(delivery_ids)))
        .order_by(ATTEMPTS.c.delivery_id, ATTEMPTS.c.claimed_at)
    )  # fmt: skip
    history: dict[int, list[AttemptView]] = {i: [] for i in delivery_ids}
    for row in rows:
        history[row.delivery_id].append(AttemptView(**row._asdict()))
    return history
