"""A manager's internal note leaves no trace for the ticket's other participants (issue 8, hole 7).

For non-managers every derived field of a ticket (lastUpdated, lastMessage, lastSender,
messageCount, read, the message list and its size) comes from the messages they may see
(DECISIONS #9), in the single view, the list and its filters, on PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.conftest import LiveServer, settle

API = "/api/messageConversations"
TEXT = {"Content-Type": "text/plain"}
DERIVED = "id,lastUpdated,lastMessage,lastSender[id],messageCount,read,messages~size"

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


def open_ticket(server: LiveServer) -> str:
    """alice (no authorities) writes to the feedback managers (admin and mohamed); the fan-out has run."""
    response = server.client("alice").post(
        f"{API}/feedback", params={"subject": "Printer"}, content="The printer is jammed.", headers=TEXT
    )
    assert response.status_code == 201, response.text
    settle(server)
    return str(response.headers["Location"].rsplit("/", 1)[1])


def seen(server: LiveServer, user: str, ticket: str) -> tuple[dict[str, object], dict[str, object]]:
    """The ticket's derived fields as `user` gets them from the single view and from the list."""
    client = server.client(user)
    one = client.get(f"{API}/{ticket}", params={"fields": DERIVED})
    assert one.status_code == 200, one.text
    listed = client.get(API, params={"fields": DERIVED, "filter": f"id:eq:{ticket}"}).json()["messageConversations"]
    assert len(listed) == 1
    return one.json(), listed[0]


def test_an_internal_note_moves_no_derived_field_of_the_ticket_for_a_non_manager(any_server: LiveServer) -> None:
    ticket = open_ticket(any_server)
    before = seen(any_server, "alice", ticket)
    note = any_server.client().post(f"{API}/{ticket}", params={"internal": "true"}, content="Replace the drum.", headers=TEXT)
    assert note.status_code == 200, note.text
    settle(any_server)
    assert seen(any_server, "alice", ticket) == before
    assert before[0]["messages"] == 1 and before[0]["messageCount"] == 1
    # Filtering on the timestamps answers the same: nothing newer than what alice could see.
    alice = any_server.client("alice")
    for field in ("lastUpdated", "lastMessage"):
        shown = datetime.fromisoformat(str(before[0][field]))
        later = (shown + timedelta(milliseconds=1)).isoformat(timespec="milliseconds")  # shown is cut to ms
        newer = alice.get(API, params={"filter": [f"id:eq:{ticket}", f"{field}:gt:{later}"]}).json()
        assert newer["pager"]["total"] == 0, field
    # The managers see the note.
    manager = any_server.client("mohamed").get(f"{API}/{ticket}", params={"fields": "messages[text,internal]"}).json()
    assert manager["messages"][-1] == {"text": "Replace the drum.", "internal": True}


def test_a_public_reply_after_an_internal_note_moves_the_ticket_for_everyone(any_server: LiveServer) -> None:
    ticket = open_ticket(any_server)
    admin = any_server.client()
    assert admin.post(f"{API}/{ticket}", params={"internal": "true"}, content="Replace the drum.", headers=TEXT).status_code == 200
    before, _ = seen(any_server, "alice", ticket)
    assert admin.post(f"{API}/{ticket}", content="Fixed, try again.", headers=TEXT).status_code == 200
    after, listed = seen(any_server, "alice", ticket)
    assert after["lastUpdated"] > before["lastUpdated"]
    assert after["lastMessage"] > before["lastMessage"]
    assert (after["messageCount"], after["messages"], after["read"]) == (2, 2, False)
    assert listed == after
