"""The conversation list at scale: pages merged across message types, exact totals, one query per kind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from messaging.models import Conversation, MessageType, User, UserMessage
from tests.conftest import LiveServer

API = "/api/messageConversations"
TYPES = [MessageType.PRIVATE, MessageType.TICKET, MessageType.SYSTEM, MessageType.VALIDATION_RESULT]

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


def seed_inbox(server: LiveServer, count: int) -> None:
    """`count` more conversations in the admin's inbox, of every type in turn, some at the same instant."""
    start = datetime(2030, 1, 1)
    with server.session() as session:
        admin = session.scalar(select(User.id).where(User.username == "admin"))
        assert admin is not None
        for i in range(count):
            kind = TYPES[i % len(TYPES)].value
            at = start + timedelta(minutes=(i // 3) * 7 + (i * 5) % 11)  # interleaved types, ties included
            conversation = Conversation(uid=f"L{i:010d}", subject=f"Seeded {i}", message_type=kind, last_message=at,
                                        message_count=1)
            session.add(conversation)
            session.flush()
            session.add(UserMessage(conversation_id=conversation.id, user_id=admin, read=i % 2 == 0, follow_up=False,
                                    last_message=at, message_type=kind))
        session.commit()


def expected_order(server: LiveServer, *, descending: bool = True, message_type: str | None = None) -> list[str]:
    """The admin's conversation UIDs in the order DHIS2 clients ask for, sorted here in Python."""
    with server.session() as session:
        query = (
            select(Conversation.uid, UserMessage.last_message, Conversation.id)
            .join(UserMessage, UserMessage.conversation_id == Conversation.id)
            .join(User, User.id == UserMessage.user_id)
            .where(User.username == "admin")
        )
        if message_type:
            query = query.where(UserMessage.message_type == message_type)
        rows = list(session.execute(query))
    rows.sort(key=lambda r: (r[1], r[2]), reverse=descending)
    return [r[0] for r in rows]


def pages(server: LiveServer, page_size: int, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of the admin's list, in turn."""
    admin = server.client()
    page = 1
    while True:
        body = admin.get(API, params={"fields": "id", "pageSize": page_size, "page": page, **params}).json()
        yield body
        if "nextPage" not in body["pager"]:
            return
        page += 1


@pytest.mark.parametrize("order", [None, "lastMessage:desc", "lastMessage:asc"])
def test_pages_across_message_types_come_in_last_message_order_with_exact_totals(
    any_server: LiveServer, order: str | None
) -> None:
    seed_inbox(any_server, 23)
    expected = expected_order(any_server, descending=order != "lastMessage:asc")
    seen: list[str] = []
    for body in pages(any_server, 4, **({"order": order} if order else {})):
        assert body["pager"]["total"] == len(expected)
        seen += [c["id"] for c in body["messageConversations"]]
    assert seen == expected


def test_a_folder_pages_through_its_own_type_only(any_server: LiveServer) -> None:
    seed_inbox(any_server, 23)
    expected = expected_order(any_server, message_type="TICKET")
    seen: list[str] = []
    for body in pages(any_server, 2, filter="messageType:eq:TICKET", order="lastMessage:desc"):
        assert body["pager"]["total"] == len(expected)
        seen += [c["id"] for c in body["messageConversations"]]
    assert seen == expected


def test_type_filters_that_exclude_each_other_give_an_empty_page_and_a_zero_total(any_server: LiveServer) -> None:
    body = any_server.client().get(API, params={"filter": ["messageType:eq:TICKET", "messageType:in:[PRIVATE,SYSTEM]"]})
    assert body.status_code == 200
    assert body.json()["messageConversations"] == []
    assert body.json()["pager"]["total"] == 0


def test_the_total_of_a_page_past_the_end_and_of_a_filtered_folder_is_still_counted(any_server: LiveServer) -> None:
    seed_inbox(any_server, 10)
    admin = any_server.client()
    unread = sum(1 for c in admin.get(API, params={"fields": "read", "paging": "false"}).json()["messageConversations"]
                 if not c.get("read"))
    body = admin.get(API, params={"fields": "read", "filter": "read:eq:false", "pageSize": 1}).json()
    assert body["pager"]["total"] == unread
    beyond = admin.get(API, params={"pageSize": 4, "page": 99}).json()
    assert beyond["messageConversations"] == []
    assert beyond["pager"]["total"] == len(expected_order(any_server))


def test_messages_and_participants_of_a_whole_page_load_in_one_query_each(server: LiveServer) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    admin = server.client()
    event.listen(server.engine, "before_cursor_execute", record)
    try:
        body = admin.get(API, params={"fields": "id,messages[id,text],userMessages[user[id]]", "paging": "false"}).json()
    finally:
        event.remove(server.engine, "before_cursor_execute", record)
    listed = body["messageConversations"]
    assert len(listed) == 7
    assert sum(1 for s in statements if "FROM messages" in s) == 1
    assert sum(1 for s in statements if "FROM user_messages JOIN users" in s) == 1
    for conversation in listed:  # the same as each conversation read on its own
        one = admin.get(f"{API}/{conversation['id']}", params={"fields": "messages[id,text],userMessages[user[id]]"})
        assert one.json()["messages"] == conversation["messages"]
        key = lambda u: u["user"]["id"]  # noqa: E731
        assert sorted(one.json()["userMessages"], key=key) == sorted(conversation["userMessages"], key=key)
