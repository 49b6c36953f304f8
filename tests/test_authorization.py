"""Who may do what to which conversation, and that nothing a caller may not see leaks anywhere."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select

from messaging.conversations import Resolved, start_conversation
from messaging.directory import principal_for
from messaging.models import Conversation, ConversationStatus, MessageType, User, UserMessage
from tests.conftest import LiveServer, settle, wait_until
from tests.support.demo import ADMIN, ALICE, MOBILE

API = "/api/messageConversations"
FIELD_WORKERS = "ZoHNWQajIoe"
DESK = "deskUser001"  # a user whose role holds F_MANAGE_TICKETS, imported per test
TEXT = {"Content-Type": "text/plain"}
READ_403 = "Not authorized to change read property of this conversation."
REMOVE_403 = "Not authorized to remove assigned users to this conversation."
pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


# ---------------------------------------------------------------- helpers


def participants(server: LiveServer, conversation_uid: str) -> dict[str, tuple[bool, bool]]:
    """{user uid: (read, followUp)} of a conversation, from the database."""
    with server.session() as session:
        rows = session.execute(
            select(User.uid, UserMessage.read, UserMessage.follow_up)
            .join(UserMessage, UserMessage.user_id == User.id)
            .join(Conversation, Conversation.id == UserMessage.conversation_id)
            .where(Conversation.uid == conversation_uid)
        )
        return {uid: (read, follow_up) for uid, read, follow_up in rows}


def open_ticket(server: LiveServer, sender_uid: str = ALICE, subject: str = "Printer on fire") -> str:
    """A TICKET whose only participant is its sender, staged directly through the domain service."""
    with server.session() as session:
        user = session.scalar(select(User).where(User.uid == sender_uid))
        assert user is not None
        conversation = start_conversation(
            session,
            sender=principal_for(session, user),
            subject=subject,
            text="It started this morning.",
            resolved=Resolved([], [], []),
            message_type=MessageType.TICKET,
            status=ConversationStatus.OPEN,
        )
        session.commit()
        return conversation.uid


def import_desk_user(server: LiveServer) -> None:
    """A user whose only power is F_MANAGE_TICKETS (a ticket manager by authority, DECISIONS #9)."""
    response = server.client().post(
        "/api/metadata",
        json={
            "userRoles": [{"id": "deskRole001", "name": "Ticket desk", "authorities": ["F_MANAGE_TICKETS"]}],
            "users": [
                {
                    "id": DESK,
                    "username": "desk",
                    "password": "Desk-pass-1",
                    "firstName": "Help",
                    "surname": "Desk",
                    "userRoles": [{"id": "deskRole001"}],
                }
            ],
        },
    )
    assert response.status_code == 200, response.text


def client_for(server: LiveServer, who: str) -> httpx.Client:
    if who == "desk":
        return server.client("desk", "Desk-pass-1")
    return server.client(who)


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {c["id"] for c in response.json()["messageConversations"]}


def assert_forbidden(response: httpx.Response, message: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["httpStatus"] == "Forbidden"
    assert body["status"] == "ERROR"
    assert body["message"] == message


# ---------------------------------------------------------------- the matrix on a TICKET

# (action name, request, expected status for an allowed caller, 403 text)
Action = Callable[[httpx.Client, str], httpx.Response]
ACTIONS: dict[str, tuple[Action, int, str]] = {
    "get": (lambda c, t: c.get(f"{API}/{t}"), 200, "Not authorized to access this conversation."),
    "reply": (
        lambda c, t: c.post(f"{API}/{t}", content="On it.", headers=TEXT),
        200,
        "Not authorized to send messages to this conversation.",
    ),
    "read": (lambda c, t: c.post(f"{API}/read", json=[t]), 200, READ_403),
    "unread one": (lambda c, t: c.post(f"{API}/{t}/unread"), 200, READ_403),
    "followup": (
        lambda c, t: c.post(f"{API}/followup", json=[t]),
        200,
        "Not authorized to change followups in this conversation.",
    ),
    "unfollowup": (
        lambda c, t: c.post(f"{API}/unfollowup", json=[t]),
        200,
        "Not authorized to change unfollowups in this conversation.",
    ),
    "recipients": (
        lambda c, t: c.post(f"{API}/{t}/recipients", json={"users": []}),
        204,
        "Not authorized to change recipients in this conversation.",
    ),
    "batch remove": (lambda c, t: c.delete(API, params={"mc": t}), 200, REMOVE_403),
}
# Who may do what on a ticket they do not take part in (the sender, alice, is the only participant).
ALLOWED: dict[str, set[str]] = {
    "alice": set(ACTIONS),  # the participant
    "admin": set(ACTIONS),  # ALL
    "mohamed": set(ACTIONS) - {"get"},  # feedback-recipients member: a ticket manager, not a reader
    "desk": set(ACTIONS) - {"get"},  # F_MANAGE_TICKETS: a ticket manager too
    "mobile": set(),  # nobody special
}


@pytest.mark.parametrize("who", list(ALLOWED))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_the_ticket_authorization_matrix(server: LiveServer, who: str, action: str) -> None:
    import_desk_user(server)
    ticket = open_ticket(server)
    request, ok_status, refusal = ACTIONS[action]
    response = request(client_for(server, who), ticket)
    if action in ALLOWED[who]:
        assert response.status_code == ok_status, response.text
    else:
        assert_forbidden(response, refusal)


def test_a_refused_caller_changes_nothing(server: LiveServer) -> None:
    ticket = open_ticket(server)
    before = participants(server, ticket)
    mobile = server.client("mobile")
    for request, _, _ in ACTIONS.values():
        assert request(mobile, ticket).status_code == 403
    settle(server)
    assert participants(server, ticket) == before
    one = server.client().get(f"{API}/{ticket}", params={"fields": "messageCount,messages[text]"}).json()
    assert one == {"messageCount": 1, "messages": [{"text": "It started this morning."}]}


def test_a_ticket_manager_s_reply_does_not_make_them_a_participant(server: LiveServer) -> None:
    ticket = open_ticket(server)
    mohamed = server.client("mohamed")
    assert mohamed.post(f"{API}/{ticket}", content="Looking into it.", headers=TEXT).status_code == 200
    settle(server)
    assert participants(server, ticket) == {ALICE: (False, False)}
    assert ticket not in ids(mohamed.get(API))
    # Marking for oneself as a non-participant changes nothing, but follow-up still lists the id (DHIS2).
    assert mohamed.post(f"{API}/read", json=[ticket]).json() == {"markedRead": []}
    assert mohamed.post(f"{API}/followup", json=[ticket]).json() == {"markedFollowup": [ticket]}


def test_ticket_managership_follows_the_configured_feedback_group(server: LiveServer) -> None:
    ticket = open_ticket(server)
    mohamed, ibrahim = server.client("mohamed"), server.client("ibrahim")
    assert ibrahim.post(f"{API}/{ticket}", content="x", headers=TEXT).status_code == 403
    switched = server.client().post(
        "/api/configuration/feedbackRecipients", content=FIELD_WORKERS, headers={"Content-Type": "text/plain"}
    )
    assert switched.status_code in (200, 204)
    assert ibrahim.post(f"{API}/{ticket}", content="x", headers=TEXT).status_code == 200
    assert_forbidden(
        mohamed.post(f"{API}/{ticket}", content="x", headers=TEXT), "Not authorized to send messages to this conversation."
    )


# ---------------------------------------------------------------- acting for another user (DECISIONS #6)


def test_a_ticket_manager_may_act_for_a_participant_of_a_ticket(server: LiveServer) -> None:
    ticket = open_ticket(server)
    mohamed = server.client("mohamed")
    assert mohamed.post(f"{API}/unread", params={"user": ALICE}, json=[ticket]).json() == {"markedUnread": [ticket]}
    assert mohamed.post(f"{API}/{ticket}/read", params={"userUid": ALICE}).json() == {"markedRead": [ticket]}
    assert mohamed.post(f"{API}/followup", params={"user": ALICE}, json=[ticket]).json() == {"markedFollowup": [ticket]}
    assert participants(server, ticket) == {ALICE: (True, True)}
    assert mohamed.delete(f"{API}/{ticket}/{ALICE}").json() == {"removed": [ALICE]}
    assert participants(server, ticket) == {}


def test_all_may_act_for_anyone_anywhere(server: LiveServer) -> None:
    admin = server.client()
    assert admin.post(f"{API}/read", params={"user": ALICE}, json=["ZrKML5WiyFm"]).json() == {"markedRead": []}
    assert admin.post(f"{API}/unread", params={"user": ALICE}, json=["ZrKML5WiyFm"]).json() == {
        "markedUnread": ["ZrKML5WiyFm"]
    }
    assert admin.delete(API, params={"mc": "ZrKML5WiyFm", "user": ALICE}).json() == {"removed": ["ZrKML5WiyFm"]}


@pytest.mark.parametrize(
    ("who", "conversation", "other"),
    [
        ("mobile", "ZjHHSjyyeJ2", ADMIN),  # a participant acting for another participant
        ("mohamed", "lxCjiigqrJm", ADMIN),  # a ticket manager, but the conversation is PRIVATE
        ("mobile", "ZjHHSjyyeJ2", ALICE),  # for a user who is not even a participant
    ],
)
def test_acting_for_another_user_without_all_or_a_ticket_is_forbidden(
    server: LiveServer, who: str, conversation: str, other: str
) -> None:
    client = server.client(who)
    before = participants(server, conversation)
    refusals: list[tuple[httpx.Response, str]] = [
        (client.post(f"{API}/read", params={"user": other}, json=[conversation]), READ_403),
        (client.post(f"{API}/unread", params={"user": other}, json=[conversation]), READ_403),
        (client.post(f"{API}/{conversation}/read", params={"userUid": other}), READ_403),
        (client.post(f"{API}/{conversation}/unread", params={"userUid": other}), READ_403),
        (
            client.post(f"{API}/followup", params={"user": other}, json=[conversation]),
            "Not authorized to change followups in this conversation.",
        ),
        (
            client.post(f"{API}/unfollowup", params={"user": other}, json=[conversation]),
            "Not authorized to change unfollowups in this conversation.",
        ),
        (client.delete(f"{API}/{conversation}/{other}"), REMOVE_403),
        (client.delete(API, params={"mc": conversation, "user": other}), REMOVE_403),
    ]
    for response, message in refusals:
        assert_forbidden(response, message)
    assert participants(server, conversation) == before


def test_naming_yourself_is_not_acting_for_another(server: LiveServer) -> None:
    mobile = server.client("mobile")
    assert mobile.post(f"{API}/read", params={"user": MOBILE}, json=["ZjHHSjyyeJ2"]).json() == {"markedRead": ["ZjHHSjyyeJ2"]}
    assert mobile.post(f"{API}/ZjHHSjyyeJ2/unread", params={"userUid": MOBILE}).json() == {"markedUnread": ["ZjHHSjyyeJ2"]}
    assert mobile.delete(API, params={"mc": "ZjHHSjyyeJ2", "user": MOBILE}).json() == {"removed": ["ZjHHSjyyeJ2"]}


def test_one_forbidden_conversation_rejects_the_whole_batch(server: LiveServer) -> None:
    mobile = server.client("mobile")
    before = participants(server, "ZjHHSjyyeJ2")
    assert_forbidden(mobile.post(f"{API}/read", json=["ZjHHSjyyeJ2", "ZrKML5WiyFm"]), READ_403)
    assert_forbidden(mobile.delete(API, params={"mc": ["ZjHHSjyyeJ2", "ZrKML5WiyFm"]}), REMOVE_403)
    assert participants(server, "ZjHHSjyyeJ2") == before


def test_a_participant_removing_another_participant_is_forbidden_but_leaving_is_not(server: LiveServer) -> None:
    mobile = server.client("mobile")
    assert_forbidden(mobile.delete(f"{API}/ZjHHSjyyeJ2/{ADMIN}"), REMOVE_403)
    assert mobile.delete(f"{API}/ZjHHSjyyeJ2/{MOBILE}").json() == {"removed": [MOBILE]}
    assert participants(server, "ZjHHSjyyeJ2") == {ADMIN: (True, False)}


# ---------------------------------------------------------------- nothing leaks


def test_a_conversation_you_may_not_see_never_shows_in_your_list_or_counts(server: LiveServer) -> None:
    mobile = server.client("mobile")
    mine = {"GDBqVfkmnp2", "ZjHHSjyyeJ2", "jMe43trzrdi"}
    assert ids(mobile.get(API, params={"paging": "false"})) == mine
    assert mobile.get(API).json()["pager"]["total"] == 3
    assert mobile.get(API, params={"filter": "id:eq:ZrKML5WiyFm"}).json()["pager"]["total"] == 0
    assert ids(mobile.get(API, params={"filter": "id:in:[ZrKML5WiyFm,Gc03smoTm6q]"})) == set()
    assert ids(mobile.get(API, params={"filter": "subject:ilike:stock", "rootJunction": "OR"})) == set()
    # DHIS2's `query=` drops the participant restriction; Herald must not.
    assert ids(mobile.get(API, params={"query": "ZrKML5WiyFm", "paging": "false"})) == mine
    assert ids(mobile.get(API, params={"query": "Stock levels", "paging": "false"})) == mine
    assert mobile.get("/api/me/dashboard").json()["unreadMessageConversations"] == 3


def test_a_reply_elsewhere_does_not_change_your_counts(server: LiveServer) -> None:
    mobile, alice = server.client("mobile"), server.client("alice")
    assert alice.post(f"{API}/ZrKML5WiyFm", content="Friday it is", headers=TEXT).status_code == 200
    settle(server)
    assert mobile.get("/api/me/dashboard").json()["unreadMessageConversations"] == 3
    assert mobile.post(f"{API}/read", json=["GDBqVfkmnp2", "ZjHHSjyyeJ2", "jMe43trzrdi"]).status_code == 200
    assert mobile.get("/api/me/dashboard").json()["unreadMessageConversations"] == 0
    assert server.client().post(f"{API}/ZjHHSjyyeJ2", content="Any news?", headers=TEXT).status_code == 200
    wait_until(
        lambda: mobile.get("/api/me/dashboard").json()["unreadMessageConversations"] == 1,
        what="the reply to reach mobile",
    )


@pytest.mark.parametrize("query", ["stock", "friday", "Alice", "Alice Banda", "training", "Ibrahim"])
def test_search_finds_nothing_in_conversations_you_may_not_see(any_server: LiveServer, query: str) -> None:
    mobile = any_server.client("mobile")
    response = mobile.get(API, params={"queryString": query, "fields": "id,subject"})
    assert response.json()["pager"]["total"] == 0
    assert response.json()["messageConversations"] == []
    # The admin, a participant, does find it.
    assert any_server.client().get(API, params={"queryString": query}).json()["pager"]["total"] >= 1


def test_fields_never_reach_into_conversations_you_may_not_see(server: LiveServer) -> None:
    mobile = server.client("mobile")
    body = mobile.get(
        API, params={"fields": "id,subject,messages[text,sender[id]],userMessages[user[id]]", "paging": "false"}
    ).json()
    texts = {m["text"] for c in body["messageConversations"] for m in c["messages"]}
    assert texts == {
        "The new version is live.",
        "Have you reported data for the Mortality data set for January 2014?",
        "The monthly summary is attached.",
    }
    seen_users = {um["user"]["id"] for c in body["messageConversations"] for um in c["userMessages"]}
    assert seen_users == {ADMIN, MOBILE}
    forbidden = mobile.get(f"{API}/ZrKML5WiyFm", params={"fields": "subject,messages[text]"})
    assert_forbidden(forbidden, "Not authorized to access this conversation.")
    assert "Stock" not in forbidden.text


def test_leaving_a_conversation_hides_it_from_every_view(server: LiveServer) -> None:
    mobile = server.client("mobile")
    assert mobile.delete(f"{API}/ZjHHSjyyeJ2").status_code == 200
    assert "ZjHHSjyyeJ2" not in ids(mobile.get(API))
    assert mobile.get(API, params={"queryString": "mortality"}).json()["pager"]["total"] == 0
    assert mobile.get("/api/me/dashboard").json()["unreadMessageConversations"] == 2
    assert mobile.get(f"{API}/ZjHHSjyyeJ2").status_code == 403


# ---------------------------------------------------------------- internal messages (DECISIONS #9)


def _internal_note_on_mortality(server: LiveServer) -> None:
    """Mobile replies (last sender: mobile), then the admin, a ticket manager, adds an internal note."""
    mobile, admin = server.client("mobile"), server.client()
    assert mobile.post(f"{API}/ZjHHSjyyeJ2", content="Reported yesterday.", headers=TEXT).status_code == 200
    settle(server)
    assert admin.post(f"{API}/ZjHHSjyyeJ2/read").json() == {"markedRead": ["ZjHHSjyyeJ2"]}
    assert mobile.post(f"{API}/ZjHHSjyyeJ2/read").json() == {"markedRead": ["ZjHHSjyyeJ2"]}
    note = admin.post(f"{API}/ZjHHSjyyeJ2", params={"internal": "true"}, content="Secret note about quokkas", headers=TEXT)
    assert note.status_code == 200, note.text
    settle(server)


def test_internal_messages_are_hidden_from_non_managers_in_get_one(server: LiveServer) -> None:
    _internal_note_on_mortality(server)
    fields = {"fields": "messageCount,lastSender,read,messages[text,internal]"}
    seen_by_mobile = server.client("mobile").get(f"{API}/ZjHHSjyyeJ2", params=fields).json()
    assert seen_by_mobile == {
        "lastSender": {"id": MOBILE},
        "messageCount": 2,
        "read": True,  # an internal note does not mark non-managers unread
        "messages": [
            {"text": "Have you reported data for the Mortality data set for January 2014?", "internal": False},
            {"text": "Reported yesterday.", "internal": False},
        ],
    }
    seen_by_admin = server.client().get(f"{API}/ZjHHSjyyeJ2", params=fields).json()
    assert [m["internal"] for m in seen_by_admin["messages"]] == [False, False, True]
    assert seen_by_admin["messages"][-1]["text"] == "Secret note about quokkas"
    assert "quokkas" not in server.client("mobile").get(f"{API}/ZjHHSjyyeJ2").text
    assert "quokkas" not in server.client("mobile").get(f"{API}/ZjHHSjyyeJ2.xml", params={"fields": "*,messages[*]"}).text


def test_internal_messages_are_hidden_from_non_managers_in_the_list(server: LiveServer) -> None:
    _internal_note_on_mortality(server)
    mobile = server.client("mobile")
    for fields in ("id,messages[text]", "id,messages[*]", "*,messages[*,sender[*]]", "id,messages~size"):
        body = mobile.get(API, params={"fields": fields, "filter": "id:eq:ZjHHSjyyeJ2"})
        assert "quokkas" not in body.text, fields
    sized = mobile.get(API, params={"fields": "id,messages~size", "filter": "id:eq:ZjHHSjyyeJ2"}).json()
    assert sized["messageConversations"] == [{"id": "ZjHHSjyyeJ2", "messages": 2}]
    summary = mobile.get(API, params={"fields": "lastSender,messageCount", "filter": "id:eq:ZjHHSjyyeJ2"}).json()
    assert summary["messageConversations"] == [{"lastSender": {"id": MOBILE}, "messageCount": 2}]
    admin_view = server.client().get(API, params={"fields": "id,messages[text]", "filter": "id:eq:ZjHHSjyyeJ2"}).json()
    assert admin_view["messageConversations"][0]["messages"][-1] == {"text": "Secret note about quokkas"}


def test_internal_messages_are_hidden_from_non_managers_in_search(any_server: LiveServer) -> None:
    _internal_note_on_mortality(any_server)
    mobile = any_server.client("mobile")
    assert mobile.get(API, params={"queryString": "quokkas"}).json()["pager"]["total"] == 0
    assert mobile.get(API, params={"queryString": "quokkas", "queryOperator": "ilike"}).json()["pager"]["total"] == 0
    assert ids(any_server.client().get(API, params={"queryString": "quokkas"})) == {"ZjHHSjyyeJ2"}


def test_an_internal_reply_on_a_ticket_reaches_only_manager_participants(server: LiveServer) -> None:
    import_desk_user(server)
    ticket = open_ticket(server)
    mohamed = server.client("mohamed")
    assert mohamed.post(f"{API}/{ticket}/recipients", json={"users": [{"id": DESK}]}).status_code == 204
    settle(server)
    assert server.client("desk", "Desk-pass-1").post(f"{API}/{ticket}/read").json() == {"markedRead": [ticket]}
    assert participants(server, ticket) == {ALICE: (True, False), DESK: (True, False)}
    note = mohamed.post(f"{API}/{ticket}", params={"internal": "true"}, content="Escalate to IT", headers=TEXT)
    assert note.status_code == 200
    settle(server)
    assert participants(server, ticket) == {ALICE: (True, False), DESK: (False, False)}
    desk_view = server.client("desk", "Desk-pass-1").get(f"{API}/{ticket}", params={"fields": "messages[text]"}).json()
    assert desk_view["messages"][-1] == {"text": "Escalate to IT"}
    alice_view = server.client("alice").get(f"{API}/{ticket}", params={"fields": "messages[text]"}).json()
    assert alice_view == {"messages": [{"text": "It started this morning."}]}


def test_only_managers_may_post_internal_messages(server: LiveServer) -> None:
    import_desk_user(server)
    ticket = open_ticket(server)
    alice = server.client("alice")
    assert_forbidden(
        alice.post(f"{API}/{ticket}", params={"internal": "true"}, content="x", headers=TEXT),
        "Not authorized to send internal messages",
    )
    for who in ("admin", "mohamed", "desk"):
        response = client_for(server, who).post(f"{API}/{ticket}", params={"internal": "true"}, content=who, headers=TEXT)
        assert response.status_code == 200, (who, response.text)


# ---------------------------------------------------------------- user management (canIssueUserRole / canModifyUser)

ALL_ROLE, CLERK_ROLE = "yrB6vc5Ip3r", "Euq3XfEIEbx"
IMPORTER, USER_ADMIN = "importer001", "userAdmin01"  # F_METADATA_IMPORT only; F_USER_ADD and the clerk's authority too
STAFF_PASSWORD = "Staff-pass-1"


def import_user_managers(server: LiveServer) -> None:
    """A user holding only F_METADATA_IMPORT, and one holding F_USER_ADD beside it and the clerk's authority."""
    response = server.client().post(
        "/api/metadata",
        json={
            "userRoles": [
                {"id": "importRole1", "name": "Importer", "authorities": ["F_METADATA_IMPORT"]},
                {
                    "id": "userAdminR1",
                    "name": "User admin",
                    "authorities": ["F_METADATA_IMPORT", "F_USER_ADD", "M_dhis-web-messaging"],
                },
            ],
            "users": [
                {"id": IMPORTER, "username": "importer", "password": STAFF_PASSWORD, "userRoles": [{"id": "importRole1"}]},
                {"id": USER_ADMIN, "username": "useradmin", "password": STAFF_PASSWORD, "userRoles": [{"id": "userAdminR1"}]},
            ],
        },
    )
    assert response.status_code == 200, response.text


def manager_client(server: LiveServer, who: str) -> httpx.Client:
    if who in ("importer", "useradmin"):
        return server.client(who, STAFF_PASSWORD)
    return server.client(who)


OWN_ID = {"admin": ADMIN, "importer": IMPORTER, "useradmin": USER_ADMIN, "mobile": MOBILE}
# (payload for caller `who`, callers who may, error code of the refusal)
Payload = Callable[[str], dict[str, object]]
USER_ACTIONS: dict[str, tuple[Payload, set[str], str]] = {
    "grant oneself the ALL role": (
        lambda who: {"users": [{"id": OWN_ID[who], "userRoles": [{"id": ALL_ROLE}]}]},
        {"admin"},
        "E3032",
    ),
    "reset the admin's password": (
        lambda who: {"users": [{"id": ADMIN, "password": "Taken-0ver!"}]},
        {"admin"},
        "E3001",
    ),
    "set one's own password": (
        lambda who: {"users": [{"id": OWN_ID[who], "password": "My-new-pass-1"}]},
        {"admin", "importer", "useradmin"},
        "",
    ),
    "set a clerk's password": (
        lambda who: {"users": [{"id": ALICE, "password": "Reset-pass-1"}]},
        {"admin", "useradmin"},
        "E3001",
    ),
    "rename a clerk": (lambda who: {"users": [{"id": ALICE, "firstName": "Alicia"}]}, {"admin", "useradmin"}, "E3001"),
    "create a clerk": (
        lambda who: {"users": [{"id": "newClerk001", "username": "newclerk", "userRoles": [{"id": CLERK_ROLE}]}]},
        {"admin", "useradmin"},
        "E3032",
    ),
    "create a user with a password": (
        lambda who: {"users": [{"id": "newUser0001", "username": "newbie", "password": "Newbie-pass-1"}]},
        {"admin", "useradmin"},
        "E3001",
    ),
    "create a role holding ALL": (
        lambda who: {"userRoles": [{"id": "newRole0001", "name": "Mine", "authorities": ["ALL"]}]},
        {"admin"},
        "E3032",
    ),
    "add ALL to the clerk role": (
        lambda who: {"userRoles": [{"id": CLERK_ROLE, "name": "Data entry clerk", "authorities": ["ALL"]}]},
        {"admin"},
        "E3032",
    ),
    "join the feedback recipients (ticket managers)": (
        lambda who: {
            "userGroups": [{"id": "QYrzIjSfI8z", "name": "Feedback managers", "users": [{"id": OWN_ID[who]}]}]
        },
        {"admin"},
        "E3001",
    ),
    "reset a ticket manager's password (a feedback-group member)": (
        lambda who: {"users": [{"id": "Kh68cDMwZsg", "password": "Taken-0ver!"}]},
        {"admin"},
        "E3001",
    ),
    "create a role and grant it to oneself at once": (
        lambda who: {
            "userRoles": [{"id": "newRole0001", "name": "Sneaky", "authorities": ["ALL"]}],
            "users": [{"id": OWN_ID[who], "userRoles": [{"id": "newRole0001"}]}],
        },
        {"admin"},
        "E3032",
    ),
}


def user_admin_state(server: LiveServer) -> tuple[object, ...]:
    """Everything a user-management import could change: users, roles, memberships."""
    from messaging.models import UserGroupMember, UserRole, UserRoleMember

    with server.session() as session:
        users = sorted(session.execute(select(User.uid, User.password_hash, User.first_name, User.disabled)).all())
        roles = sorted((uid, sorted(auths)) for uid, auths in session.execute(select(UserRole.uid, UserRole.authorities)))
        members = sorted(session.execute(select(UserRoleMember.user_id, UserRoleMember.role_id)).all())
        groups = sorted(session.execute(select(UserGroupMember.group_id, UserGroupMember.user_id)).all())
        return (users, roles, members, groups)


@pytest.mark.parametrize("who", ["admin", "importer", "useradmin", "mobile"])
@pytest.mark.parametrize("action", list(USER_ACTIONS))
def test_the_user_management_authorization_matrix(server: LiveServer, who: str, action: str) -> None:
    import_user_managers(server)
    payload, allowed, code = USER_ACTIONS[action]
    before = user_admin_state(server)
    response = manager_client(server, who).post("/api/metadata", json=payload(who))
    if who in allowed:
        assert response.status_code == 200, response.text
        return
    if who == "mobile":
        assert response.status_code == 403, response.text
    else:
        assert response.status_code == 409, response.text
        errors = [
            error
            for type_report in response.json()["response"]["typeReports"]
            for object_report in type_report["objectReports"]
            for error in object_report["errorReports"]
        ]
        assert code in {error["errorCode"] for error in errors}, errors
        assert all(f"User `{who}`" in error["message"] for error in errors), errors
    assert user_admin_state(server) == before


def test_an_importer_cannot_make_itself_superuser(server: LiveServer) -> None:
    import_user_managers(server)
    importer = manager_client(server, "importer")
    response = importer.post("/api/metadata", json={"users": [{"id": IMPORTER, "userRoles": [{"id": ALL_ROLE}]}]})
    assert response.status_code == 409
    (report,) = response.json()["response"]["typeReports"][0]["objectReports"]
    assert report["uid"] == IMPORTER
    assert report["errorReports"][0]["message"] == (
        f"User `importer` does not have access to user role `{ALL_ROLE}`: a user role can only be assigned "
        "by a user holding all of its authorities (lacking ALL)"
    )
    assert importer.get("/api/me").json()["authorities"] == ["F_METADATA_IMPORT"]


def test_an_importer_cannot_take_over_the_admin_account(server: LiveServer) -> None:
    import_user_managers(server)
    for who in ("importer", "useradmin"):
        response = manager_client(server, who).post(
            "/api/metadata", json={"users": [{"id": ADMIN, "username": "admin", "password": "Taken-0ver!"}]}
        )
        assert response.status_code == 409, response.text
    assert server.client("admin", "Taken-0ver!").get("/api/me").status_code == 401
    assert server.client("admin").get("/api/me").status_code == 200


def test_one_refused_object_keeps_the_whole_import_out(server: LiveServer) -> None:
    import_user_managers(server)
    before = user_admin_state(server)
    response = manager_client(server, "useradmin").post(
        "/api/metadata",
        json={
            "userGroups": [{"id": "newGroup001", "name": "Harmless"}],
            "users": [{"id": ALICE, "firstName": "Alicia"}, {"id": ADMIN, "firstName": "Mallory"}],
        },
    )
    assert response.status_code == 409
    assert user_admin_state(server) == before
    assert server.client().get("/api/userGroups/newGroup001").status_code == 404


def test_a_rename_earlier_in_the_payload_cannot_turn_ones_own_password_change_into_a_new_account(
    server: LiveServer,
) -> None:
    import_user_managers(server)
    with server.session() as session:
        users_before = session.scalar(select(func.count()).select_from(User))
    # The second item names the importer by its old username: authorized as its own password change,
    # it must write to the importer, not to a new account created once the first item renamed it.
    payload = {"users": [{"id": IMPORTER, "username": "tmpname"}, {"username": "importer", "password": "Own-new-pass-1"}]}
    response = manager_client(server, "importer").post("/api/metadata", json=payload)
    assert response.status_code in (200, 409), response.text
    with server.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == users_before
