"""Domain rows as DHIS2 object graphs for the fields filter (expensive parts stay lazy)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from messaging import inbox
from messaging.inbox import ConversationRow, MessageView, ParticipantView, UserRef

# Shared by every conversation: the renderer copies what it selects and never mutates these.
_ACCESS = {"read": True, "update": True, "externalize": False, "delete": True, "write": True, "manage": True}
_EMPTY: list[Any] = []


def user_ref(ref: UserRef | None) -> dict[str, Any] | None:
    """A user as DHIS2 references it."""
    if ref is None:
        return None
    name = ref.display_name
    return {"id": ref.uid, "code": None, "name": name, "displayName": name, "username": ref.username}


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


class Related:
    """Messages and participants of a set of conversations, each kind loaded for all of them at once.

    A list page renders `messages` or `userMessages` only when the fields ask for them; then
    one query per kind serves every row of the page instead of one per row.
    """

    def __init__(self, session: Session, conversation_ids: Sequence[int], *, include_internal: bool) -> None:
        self._session = session
        self._ids = list(conversation_ids)
        self._include_internal = include_internal
        self._messages: dict[int, list[MessageView]] | None = None
        self._participants: dict[int, list[ParticipantView]] | None = None

    def messages(self, conversation_id: int) -> list[MessageView]:
        """The visible messages of one of the conversations, oldest first."""
        if self._messages is None:
            self._messages = inbox.messages_of(self._session, self._ids, include_internal=self._include_internal)
        return self._messages.get(conversation_id, [])

    def participants(self, conversation_id: int) -> list[ParticipantView]:
        """The participants of one of the conversations."""
        if self._participants is None:
            self._participants = inbox.participants_of(self._session, self._ids)
        return self._participants.get(conversation_id, [])


def conversation_dict(row: ConversationRow, *, base: str, related: Related) -> dict[str, Any]:
    """A conversation as DHIS2 renders it; messages and userMessages load only when asked for."""
    uid, cid = row.uid, row.id

    def messages() -> list[dict[str, Any]]:
        return [message_dict(m, base) for m in related.messages(cid)]

    def user_messages() -> list[dict[str, Any]]:
        return [
            {
                "key": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{uid}/{p.user.uid}")),
                "user": user_ref(p.user),
                "read": p.read,
                "followUp": p.follow_up,
            }
            for p in related.participants(cid)
        ]

    sender, creator = row.last_sender, row.created_by
    creator_ref = user_ref(creator)
    return {
        "id": uid,
        "href": f"{base}/api/messageConversations/{uid}",
        "name": row.subject,
        "displayName": row.subject,
        "created": row.created,
        "lastUpdated": row.last_updated,
        "createdBy": creator_ref,
        "lastUpdatedBy": creator_ref,
        "subject": row.subject,
        "lastSender": user_ref(sender),
        "lastMessage": row.last_message,
        "messageCount": row.message_count,
        "messageType": row.message_type,
        "status": row.status,
        "priority": row.priority,
        "assignee": user_ref(row.assignee),
        "extMessageId": row.ext_message_id,
        "read": row.read,
        "followUp": row.follow_up,
        "lastSenderFirstname": sender.first_name if sender else None,
        "lastSenderSurname": sender.surname if sender else None,
        "userFirstname": creator.first_name if creator else None,
        "userSurname": creator.surname if creator else None,
        "sharing": {"owner": creator.uid if creator else None, "external": False, "users": {}, "userGroups": {}, "public": "--------"},
        "access": _ACCESS,
        "attributeValues": _EMPTY,
        "translations": _EMPTY,
        "favorite": False,
        "userMessages": user_messages,
        "messages": messages,
    }
