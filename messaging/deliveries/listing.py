"""Reading deliveries for operators: one page of rows and the counts per (channel, status)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from messaging.deliveries.states import DELIVERIES as _T
from messaging.deliveries.states import USERS as _USERS
from messaging.models import Conversation, Message


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
