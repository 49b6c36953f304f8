"""Domain rows as DHIS2 object graphs for the fields filter (expensive parts stay lazy)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from messaging import inbox
from messaging.inbox import ConversationRow, MessageView, UserRef


def user_ref(ref: UserRef | None) -> dict[str, Any] | None:
    """A user as DHIS2 references it."""
    if ref is None:
        return None
    return {"id": ref.uid, "code": None, "name": ref.display_name, "displayName": ref.display_name, "username": ref.username}


def message_dict(message: MessageView, base: str) -> dict[str, Any]:
    """One message with its sender and attachments (always a list)."""
    return {
        "id": message.uid,
        "href": f"{base}/api/messages/{message.uid}",
        "created": message.created,
        "lastUpdated": message.last_updated,
        "text": message.text,
        "metaData": message.meta_data,
        "internal": message.internal,
        "sender": user_ref(message.sender),
        "attachments": [
            {
                "id": a.uid,
                "name": a.name,
                "displayName": a.name,
                "contentType": a.content_type,
                "contentLength": a.content_length,
                "created": a.created,
            }
            for a in message.attachments
        ],
    }


def conversation_dict(
    session: Session,
    row: ConversationRow,
    *,
    base: str,
    include_internal: bool,
) -> dict[str, Any]:
    """A conversation as DHIS2 renders it; messages and userMessages load only when asked for."""
    conv = row.conversation
    href = f"{base}/api/messageConversations/{conv.uid}"

    def messages() -> list[dict[str, Any]]:
        return [message_dict(m, base) for m in inbox.messages_of(session, conv.id, include_internal=include_internal)]

    def user_messages() -> list[dict[str, Any]]:
        return [
            {
                "key": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{conv.uid}/{p.user.uid}")),
                "user": user_ref(p.user),
                "read": p.read,
                "followUp": p.follow_up,
            }
            for p in inbox.participants_of(session, conv.id)
        ]

    lazy_messages: Callable[[], list[dict[str, Any]]] = messages
    sender, creator = row.last_sender, row.created_by
    return {
        "id": conv.uid,
        "href": href,
        "name": conv.subject,
        "displayName": conv.subject,
        "created": conv.created,
        "lastUpdated": conv.last_updated,
        "createdBy": user_ref(creator),
        "lastUpdatedBy": user_ref(creator),
        "subject": conv.subject,
        "lastSender": user_ref(sender),
        "lastMessage": row.last_message,
        "messageCount": conv.message_count,
        "messageType": conv.message_type,
        "status": conv.status,
        "priority": conv.priority,
        "assignee": user_ref(row.assignee),
        "extMessageId": conv.ext_message_id,
        "read": row.read,
        "followUp": row.follow_up,
        "lastSenderFirstname": sender.first_name if sender else None,
        "lastSenderSurname": sender.surname if sender else None,
        "userFirstname": creator.first_name if creator else None,
        "userSurname": creator.surname if creator else None,
        "sharing": {"owner": creator.uid if creator else None, "external": False, "users": {}, "userGroups": {}, "public": "--------"},
        "access": {"read": True, "update": True, "externalize": False, "delete": True, "write": True, "manage": True},
        "attributeValues": [],
        "translations": [],
        "favorite": False,
        "userMessages": user_messages,
        "messages": lazy_messages,
    }
