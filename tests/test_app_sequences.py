"""The official messaging app's request sequences (messaging-app.md §3-§6), replayed over HTTP with a session cookie.

Each test sends what the app sends, in its order and on the wire as it writes it (versioned
`/api/42/`, percent-encoded `fields` with spaces after commas, repeated `filter`), and checks
that every answer has the shape the app needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update

from messaging.models import FileResource
from tests.conftest import LiveServer, settle
from tests.support.demo import ADMIN, ALICE, MOBILE, MOHAMED
from tests.support.web import browser_like, fresh, logged_in, web_server

API = "/api/42"
MC = f"{API}/messageConversations"
FEEDBACK_GROUP = "QYrzIjSfI8z"
FOLDERS = ("PRIVATE", "VALIDATION_RESULT", "TICKET", "SYSTEM")
# Admin's PRIVATE folder in the demo data, newest first, and the unread ones in each folder.
ADMIN_PRIVATE = ["jMe43trzrdi", "lxCjiigqrJm", "WzMRrCosqc0", "Gc03smoTm6q", "ZrKML5WiyFm", "ZjHHSjyyeJ2"]
ADMIN_UNREAD = {"PRIVATE": 3, "VALIDATION_RESULT": 0, "TICKET": 0, "SYSTEM": 1}
STOCK = "ZrKML5WiyFm"  # "Stock levels", from Alice to admin, unread by admin
LIST_FIELDS = (
    "id,displayName,subject,messageType,lastSender%5Bid%2C%20displayName%5D,assignee%5Bid%2C%20displayName%5D,"
    "status,priority,lastUpdated,read,lastMessage,followUp"
)
ONE_FIELDS = (
    "*,assignee%5Bid%2C%20displayName%5D,messages%5B*%2Csender%5Bid%2CdisplayName%5D%2C"
    "attachments%5Bid%2C%20name%2C%20contentLength%5D%5D,userMessages%5Buser%5Bid%2C%20displayName%5D%5D"
)
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")
TEXT = {"Content-Type": "text/plain"}


@pytest.fixture(scope="module")
def web(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live Herald of this module's own."""
    yield from web_server(pg_url, pg_engine, tmp_path_factory)


@pytest.fixture
def site(web: LiveServer) -> Iterator[LiveServer]:
    """The module's server with fresh demo data."""
    yield from fresh(web)


# ---------------------------------------------------------------- what the app sends and needs


def list_query(folder: str, *extra: str) -> str:
    """The app's list call for a folder, as sent on the wire (§4), plus toolbar parameters."""
    query = (
        f"{MC}?filter=messageType%3Aeq%3A{folder}&pageSize=35&page=1&fields={LIST_FIELDS}&order=lastMessage%3Adesc"
    )
    return query + "".join(f"&{part}" for part in extra)


def ok_json(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of an answer with this status and a JSON Content-Type."""
    assert response.status_code == status, f"{response.request.url} -> {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


def folder(client: httpx.Client, name: str, *extra: str) -> list[dict[str, Any]]:
    """A folder's conversations, checked for everything the list view reads."""
    body = ok_json(client.get(list_query(name, *extra)))
    pager = body["pager"]
    assert isinstance(pager["page"], int) and isinstance(pager["total"], int)
    rows = body["messageConversations"]
    assert pager["total"] >= len(rows)
    for row in rows:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{10}", row["id"])
        assert row["messageType"] == name
        assert isinstance(row["subject"], str) and isinstance(row["displayName"], str)
        assert row["status"] in {"NONE", "OPEN", "PENDING", "INVALID", "SOLVED"}
        assert row["priority"] in {"NONE", "LOW", "MEDIUM", "HIGH"}
        assert DATE.match(row["lastMessage"]) and DATE.match(row["lastUpdated"])
        assert isinstance(row["read"], bool) and isinstance(row["followUp"], bool)
        for reference in ("lastSender", "assignee"):
            if reference in row:
                assert set(row[reference]) == {"id", "displayName"}
    return list(rows)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    """The conversation ids of list rows, in order."""
    return [row["id"] for row in rows]


def unread(client: httpx.Client, name: str) -> int:
    """A folder's unread badge: the app reads pager.total of a pageSize=1 list (§4 step 8)."""
    body = ok_json(client.get(f"{MC}?fields=read&filter=read%3Aeq%3Afalse&filter=messageType%3Aeq%3A{name}&pageSize=1"))
    assert len(body["messageConversations"]) <= 1
    return int(body["pager"]["total"])


def conversation(client: httpx.Client, uid: str) -> dict[str, Any]:
    """One conversation as the conversation view asks for it, checked for what it reads (§5)."""
    body: dict[str, Any] = ok_json(client.get(f"{MC}/{uid}?fields={ONE_FIELDS}"))
    assert body["id"] == uid
    for message in body["messages"]:
        assert isinstance(message["attachments"], list)
        assert DATE.match(message["created"])
        assert isinstance(message["internal"], bool)
        if "sender" in message:
            assert set(message["sender"]) == {"id", "displayName"}
        for attachment in message["attachments"]:
            assert set(attachment) == {"id", "name", "contentLength"}
    assert all(set(um["user"]) == {"id", "displayName"} for um in body["userMessages"])
    return body


def upload(client: httpx.Client, name: str, content: bytes, content_type: str = "text/plain") -> dict[str, Any]:
    """The app's attachment upload; answers the fileResource it reads `id` from."""
    body = ok_json(
        client.post(f"{API}/fileResources?domain=MESSAGE_ATTACHMENT", files={"file": (name, content, content_type)}),
        202,
    )
    assert body["httpStatus"] == "Accepted" and body["response"]["responseType"] == "FileResource"
    resource: dict[str, Any] = body["response"]["fileResource"]
    return resource


def send_feedback(client: httpx.Client, subject_query: str, text: str) -> str:
    """The app's feedback call; returns the new ticket's id from the Location header."""
    response = client.post(f"{MC}/feedback?subject={subject_query}", content=text, headers=TEXT)
    assert ok_json(response, 201)["message"] == "Feedback created"
    return response.headers["location"].rsplit("/", 1)[1]


def assert_message(response: httpx.Response, status: int, message: str) -> None:
    """An error WebMessage with this status and text."""
    body = ok_json(response, status)
    assert body["httpStatusCode"] == status and body["message"] == message, body


# ---------------------------------------------------------------- start-up (§3, §4)


def test_before_login_the_probe_gets_401_json_and_login_config_answers_so_the_json_login_is_used(
    site: LiveServer,
) -> None:
    client = browser_like(site)

    probe = client.get("/api/system/info")
    config = client.get("/api/loginConfig")
    login = client.post("/api/auth/login", json={"username": "admin", "password": "district"})

    assert probe.status_code == 401 and "www-authenticate" not in probe.headers
    assert ok_json(probe, 401)["message"] == "Unauthorized"
    assert isinstance(ok_json(config), dict)
    assert ok_json(login)["loginStatus"] == "SUCCESS"
    assert ok_json(client.get("/api/system/info"))["version"] == "2.42.0"


def test_the_start_up_sequence_answers_every_call_of_the_shell_and_the_app(site: LiveServer) -> None:
    client = logged_in(site)

    # 2. the adapter's unversioned probe: the API version comes from "2.NN"
    info = ok_json(client.get("/api/system/info"))
    assert re.fullmatch(r"2\.(\d\d)\.\d+", info["version"]).group(1) == "42"  # type: ignore[union-attr]
    assert DATE.match(info["serverDate"])
    # 3. locale and latest-user check
    assert isinstance(ok_json(client.get(f"{API}/userSettings")), dict)
    assert ok_json(client.get(f"{API}/me?fields=id")) == {"id": ADMIN}
    # 4. the header bar's combined query
    assert ok_json(client.get(f"{API}/systemSettings/applicationTitle")) == {"applicationTitle": "DHIS 2"}
    assert ok_json(client.get(f"{API}/systemSettings/helpPageLink"))["helpPageLink"].startswith("https://")
    me = ok_json(client.get(f"{API}/me?fields=authorities,avatar,email,name,settings"))
    assert me["name"] == "John Traore" and me["email"] == "admin@dhis2.example" and me["authorities"] == ["ALL"]
    assert isinstance(me["settings"], dict) and me["settings"]["keyUiLocale"] == "en"
    assert ok_json(client.get("/dhis-web-commons/menu/getModules.action")) == {"modules": []}
    dashboard = ok_json(client.get(f"{API}/me/dashboard"))
    assert dashboard == {"unreadInterpretations": 0, "unreadMessageConversations": sum(ADMIN_UNREAD.values())}
    # 5. the header logo: a 404 is fine
    assert client.get(f"{API}/staticContent/logo_banner").status_code == 404
    # 6. the app's own user query: ticket tools for ALL or feedback-group members
    user = ok_json(client.get(f"{API}/me?fields=id,authorities,userGroups%5Bid%5D"))
    assert user == {"id": ADMIN, "authorities": ["ALL"], "userGroups": [{"id": FEEDBACK_GROUP}]}
    # 7. configuration, the four folders and the clock
    assert ok_json(client.get(f"{API}/configuration"))["feedbackRecipients"]["id"] == FEEDBACK_GROUP
    lists = {name: folder(client, name) for name in FOLDERS}
    assert DATE.match(ok_json(client.get(f"{API}/system/info"))["serverDate"])
    # 8. the unread badges
    assert {name: unread(client, name) for name in FOLDERS} == ADMIN_UNREAD

    assert ids(lists["PRIVATE"]) == ADMIN_PRIVATE  # the app does not sort: the server must
    assert lists["PRIVATE"][-2]["lastSender"] == {"id": ALICE, "displayName": "Alice Banda"}
    assert ids(lists["SYSTEM"]) == ["GDBqVfkmnp2"] and "lastSender" not in lists["SYSTEM"][0]
    assert lists["TICKET"] == [] and lists["VALIDATION_RESULT"] == []


def test_a_user_without_an_email_or_settings_still_gets_every_field_the_header_reads(site: LiveServer) -> None:
    client = logged_in(site, "ibrahim")

    me = ok_json(client.get(f"{API}/me?fields=authorities,avatar,email,name,settings"))
    user = ok_json(client.get(f"{API}/me?fields=id,authorities,userGroups%5Bid%5D"))

    assert me["settings"]["keyUiLocale"] == "en" and me["email"] == "" and me["name"] == "Ibrahim Kamara"
    assert user["authorities"] == ["M_dhis-web-messaging"] and user["userGroups"] == [{"id": "ZoHNWQajIoe"}]


# ---------------------------------------------------------------- reading (§6)


def test_opening_an_unread_conversation_shows_it_then_marks_it_read_and_refreshes_the_folder(
    site: LiveServer,
) -> None:
    client = logged_in(site)

    opened = conversation(client, STOCK)
    assert folder(client, "PRIVATE")[-2]["read"] is False  # a GET alone (a deep link) marks nothing
    marked = ok_json(client.post(f"{MC}/read", json=[STOCK]))

    assert opened["subject"] == "Stock levels" and opened["messageType"] == "PRIVATE"
    assert [m["text"] for m in opened["messages"]] == ["Please report stock levels by Friday."]
    assert opened["messages"][0]["sender"] == {"id": ALICE, "displayName": "Alice Banda"}
    assert opened["messages"][0]["attachments"] == []
    assert {um["user"]["id"] for um in opened["userMessages"]} == {ADMIN, ALICE}
    assert marked == {"markedRead": [STOCK]}
    assert next(row for row in folder(client, "PRIVATE") if row["id"] == STOCK)["read"] is True
    assert unread(client, "PRIVATE") == ADMIN_UNREAD["PRIVATE"] - 1


def test_a_reply_is_sent_as_plain_text_and_shows_last_in_the_conversation_and_first_in_the_folder(
    site: LiveServer,
) -> None:
    admin, alice = logged_in(site), logged_in(site, "alice")

    reply = admin.post(f"{MC}/{STOCK}?internal=false", content="Reported, see the form.", headers=TEXT)

    assert reply.status_code < 400 and ok_json(reply, reply.status_code)["status"] == "OK"
    assert ids(folder(admin, "PRIVATE"))[0] == STOCK
    messages = conversation(admin, STOCK)["messages"]
    assert [m["text"] for m in messages][-1] == "Reported, see the form."
    assert messages[-1]["sender"]["id"] == ADMIN and messages[-1]["internal"] is False
    settle(site)
    assert next(row for row in folder(alice, "PRIVATE") if row["id"] == STOCK)["read"] is False
    assert unread(alice, "PRIVATE") == 1


# ---------------------------------------------------------------- writing (§5, §6)


def test_composing_searches_recipients_then_creates_a_message_with_the_app_s_extra_fields(site: LiveServer) -> None:
    admin, alice = logged_in(site), logged_in(site, "alice")

    users = ok_json(admin.get(f"{API}/userLookup?query=Ali"))["users"]
    units = ok_json(
        admin.get(
            f"{API}/organisationUnits?fields=id,displayName&pageSize=10"
            "&filter=displayName%3Atoken%3ANgel&filter=users%3Agte%3A1"
        )
    )["organisationUnits"]
    groups = ok_json(admin.get(f"{API}/userGroups?fields=id%2C%20displayName&pageSize=10&filter=displayName%3Atoken%3AField"))[
        "userGroups"
    ]
    deep_link = ok_json(admin.get(f"{API}/users/{ALICE}?fields=id,displayName"))
    created = admin.post(
        MC,
        json={
            "subject": "Hello from create",
            "users": [
                {"id": ALICE, "username": "alice", "firstName": "Alice", "surname": "Banda",
                 "displayName": "Alice Banda", "type": "user"}
            ],
            "userGroups": [],
            "organisationUnits": [],
            "text": "Body of a brand-new message",
            "attachments": [],
        },
    )

    assert {"id": ALICE, "displayName": "Alice Banda"}.items() <= users[0].items()
    assert units == [{"id": "DiszpKrYNg8", "displayName": "Ngelehun CHC"}]
    assert groups == [{"id": "ZoHNWQajIoe", "displayName": "Field workers"}]
    assert deep_link == {"id": ALICE, "displayName": "Alice Banda"}
    assert ok_json(created, 201)["message"] == "Message conversation created"
    new_uid = created.headers["location"].rsplit("/", 1)[1]
    assert folder(admin, "PRIVATE")[0]["id"] == new_uid
    settle(site)
    first = folder(alice, "PRIVATE")[0]
    assert (first["id"], first["subject"], first["read"]) == (new_uid, "Hello from create", False)


def test_the_search_box_filters_by_query_string_and_an_emptied_box_shows_everything_again(site: LiveServer) -> None:
    client = logged_in(site)

    assert ids(folder(client, "PRIVATE", "queryString=stock")) == [STOCK]
    assert ids(folder(client, "PRIVATE", "queryString=")) == ADMIN_PRIVATE


def test_marking_unread_and_read_from_the_toolbar_updates_the_list_and_the_badge(site: LiveServer) -> None:
    client = logged_in(site)
    read_one = "ZjHHSjyyeJ2"

    assert ok_json(client.post(f"{MC}/unread", json=[read_one])) == {"markedUnread": [read_one]}
    assert ids(folder(client, "PRIVATE", "filter=read%3Aeq%3Afalse")) == ["lxCjiigqrJm", "Gc03smoTm6q", STOCK, read_one]
    assert unread(client, "PRIVATE") == ADMIN_UNREAD["PRIVATE"] + 1
    assert ok_json(client.post(f"{MC}/read", json=[read_one, STOCK])) == {"markedRead": [read_one, STOCK]}
    assert unread(client, "PRIVATE") == ADMIN_UNREAD["PRIVATE"] - 1


def test_follow_up_flags_show_in_the_follow_up_filter_and_clear_again(site: LiveServer) -> None:
    client = logged_in(site)

    assert ok_json(client.post(f"{MC}/followup", json=[STOCK])) == {"markedFollowup": [STOCK]}
    assert ids(folder(client, "PRIVATE", "filter=followUp%3Aeq%3Atrue")) == [STOCK]
    assert ok_json(client.post(f"{MC}/unfollowup", json=[STOCK])) == {"unmarkedFollowup": [STOCK]}
    assert folder(client, "PRIVATE", "filter=followUp%3Aeq%3Atrue") == []


def test_deleting_removes_the_conversation_from_my_inbox_only(site: LiveServer) -> None:
    admin, alice = logged_in(site), logged_in(site, "alice")

    removed = ok_json(admin.delete(f"{MC}/{STOCK}/{ADMIN}"))

    assert removed == {"removed": [ADMIN]}
    assert STOCK not in ids(folder(admin, "PRIVATE"))
    assert STOCK in ids(folder(alice, "PRIVATE"))


# ---------------------------------------------------------------- tickets


def test_feedback_opens_a_ticket_for_the_feedback_recipients(site: LiveServer) -> None:
    mobile, admin, mohamed = logged_in(site, "mobile"), logged_in(site), logged_in(site, "mohamed")

    uid = send_feedback(mobile, "Feedback%20subject%20%26%20more", "The stock form does not open")

    mine = folder(mobile, "TICKET")
    assert (ids(mine), mine[0]["subject"], mine[0]["status"], mine[0]["priority"]) == (
        [uid], "Feedback subject & more", "OPEN", "NONE"
    )
    settle(site)
    for manager in (admin, mohamed):
        assert ids(folder(manager, "TICKET")) == [uid] and unread(manager, "TICKET") == 1
    assert folder(logged_in(site, "alice"), "TICKET") == []
    opened = conversation(admin, uid)
    assert opened["messages"][0]["text"] == "The stock form does not open"
    assert opened["messages"][0]["sender"] == {"id": MOBILE, "displayName": "Mobile User"}


def test_status_priority_assign_and_an_internal_reply_on_a_ticket_as_the_app_sends_them(site: LiveServer) -> None:
    mobile, admin, mohamed = logged_in(site, "mobile"), logged_in(site), logged_in(site, "mohamed")
    uid = send_feedback(mobile, "Printer", "The printer is on fire")
    settle(site)

    status = admin.post(f"{MC}/{uid}/status?messageConversationStatus=PENDING")  # no body, no Content-Type
    priority = admin.post(f"{MC}/{uid}/priority?messageConversationPriority=HIGH")
    candidates = ok_json(admin.get(f"{API}/userLookup/feedbackRecipients?query=Moh"))["users"]
    assigned = admin.post(f"{MC}/{uid}/assign?userId={MOHAMED}")
    internal = admin.post(f"{MC}/{uid}?internal=true", content="Mohamed, please look at this.", headers=TEXT)

    assert ok_json(status) == {"PENDING": [uid]}
    assert ok_json(priority) == {"HIGH": [uid]}
    assert [u["id"] for u in candidates] == [MOHAMED]
    assert ok_json(assigned) == {"message": "User Mohamed Conteh was assigned successfully"}
    assert internal.status_code < 400
    seen_by_admin = conversation(admin, uid)
    assert (seen_by_admin["status"], seen_by_admin["priority"]) == ("PENDING", "HIGH")
    assert seen_by_admin["assignee"] == {"id": MOHAMED, "displayName": "Mohamed Conteh"}
    assert [m["internal"] for m in seen_by_admin["messages"]] == [False, True]
    assert [m["internal"] for m in conversation(mobile, uid)["messages"]] == [False]  # not for the sender
    assert ids(folder(mohamed, "TICKET", f"filter=assignee.id%3Aeq%3A{MOHAMED}")) == [uid]

    assert ok_json(admin.delete(f"{MC}/{uid}/assign")) == {"message": "Message is no longer assigned to user"}
    assert "assignee" not in conversation(admin, uid)


def test_the_ticket_tools_answer_dhis2_s_errors(site: LiveServer) -> None:
    mobile, admin = logged_in(site, "mobile"), logged_in(site)
    ticket = send_feedback(mobile, "Broken", "Broken form")
    unknown = "AbCdEfGhIj1"

    assert_message(
        admin.post(f"{MC}/{ticket}/priority?messageConversationPriority=URGENT"),
        400,
        "Value 'URGENT' is not valid for parameter messageConversationPriority. Valid values are: [NONE, LOW, MEDIUM, HIGH]",
    )
    assert_message(
        admin.post(f"{MC}/{ticket}/status"),
        400,
        "Required request parameter 'messageConversationStatus' for method parameter type "
        "MessageConversationStatus is not present",
    )
    # DHIS2 answers these as a bare {"message": ...} (a RootNode), not a WebMessage.
    no_conversation = {"message": "No MessageConversation found for the given ID."}
    assert ok_json(admin.post(f"{MC}/{unknown}/status?messageConversationStatus=OPEN"), 404) == no_conversation
    assert ok_json(admin.delete(f"{MC}/{unknown}/assign"), 404) == no_conversation
    assert ok_json(admin.post(f"{MC}/{ticket}/assign?userId={unknown}"), 404) == {"message": "Could not find user to assign"}
    assert ok_json(admin.post(f"{MC}/{ticket}/assign"), 404) == {"message": "Could not find user to assign"}
    assert ok_json(admin.post(f"{MC}/{ticket}/assign?userId={ALICE}"), 409) == {
        "message": "User provided is not a member of the system's feedback recipient group"
    }
    # Any other conversation type may be assigned to anyone (DECISIONS #19).
    assert ok_json(admin.post(f"{MC}/{STOCK}/assign?userId={ALICE}"))["message"].startswith("User Alice Banda")
    # Not a participant, not ALL, not a ticket manager on a ticket.
    assert_message(
        mobile.post(f"{MC}/{STOCK}/status?messageConversationStatus=OPEN"),
        403,
        "Not authorized to change status in this conversation.",
    )
    assert_message(
        mobile.post(f"{MC}/{STOCK}/priority?messageConversationPriority=LOW"),
        403,
        "Not authorized to change priority in this conversation.",
    )
    assert_message(
        mobile.post(f"{MC}/{STOCK}/assign?userId={MOBILE}"), 403, "Not authorized to assign a user to this conversation."
    )
    assert_message(
        mobile.delete(f"{MC}/{STOCK}/assign"), 403, "Not authorized to remove the assigned user to this conversation."
    )
    assert_message(mobile.post(f"{MC}/feedback", content="no subject", headers=TEXT), 400,
                   "Required request parameter 'subject' for method parameter type String is not present")


# ---------------------------------------------------------------- attachments


def test_an_attachment_is_uploaded_linked_to_a_reply_and_downloaded_through_the_browser_link(
    site: LiveServer,
) -> None:
    admin, alice, ibrahim = logged_in(site), logged_in(site, "alice"), logged_in(site, "ibrahim")
    content = b"Hello, attachment!"

    resource = upload(admin, "hello.txt", content)
    reply = admin.post(f"{MC}/{STOCK}?internal=false&attachments={resource['id']}", content="See attached", headers=TEXT)

    assert (resource["name"], resource["contentLength"], resource["contentType"]) == ("hello.txt", 18, "text/plain")
    assert reply.status_code < 400
    messages = conversation(admin, STOCK)["messages"]
    assert messages[-1]["attachments"] == [{"id": resource["id"], "name": "hello.txt", "contentLength": 18}]
    link = f"/api/messageConversations/{STOCK}/{messages[-1]['id']}/attachments/{resource['id']}"
    cookie_only = site.client(None)  # a link the browser follows: the cookie, no X-Requested-With
    cookie_only.cookies.set("JSESSIONID", alice.cookies["JSESSIONID"])
    for client, path in ((cookie_only, link), (admin, link.replace("/api/", f"{API}/", 1))):
        download = client.get(path)
        assert download.status_code == 200
        assert download.content == content
        assert download.headers["content-type"].startswith("text/plain")
        assert download.headers["content-length"] == "18"
        assert download.headers["content-disposition"] == "filename=hello.txt"
        assert download.headers["x-content-type-options"] == "nosniff"
    assert_message(ibrahim.get(link), 403, "Not authorized to access this conversation.")
    first_message = messages[0]["id"]
    assert_message(
        admin.get(link.replace(messages[-1]["id"], first_message).replace(resource["id"], "noSuchFile1")),
        404,
        "No messageattachment found with id 'noSuchFile1'",
    )
    other = "ZjHHSjyyeJ2"
    assert_message(
        admin.get(f"/api/messageConversations/{other}/{messages[-1]['id']}/attachments/{resource['id']}"),
        404,
        f"No message with uid '{messages[-1]['id']}' in messageConversation '{other}",
    )
    assert_message(
        admin.get(f"/api/messageConversations/AbCdEfGhIj1/{messages[-1]['id']}/attachments/{resource['id']}"),
        404,
        "No message conversation with uid 'AbCdEfGhIj1'",
    )


def test_a_new_message_links_attachments_sent_as_the_app_s_objects(site: LiveServer) -> None:
    admin = logged_in(site)
    resource = upload(admin, "report.csv", b"a,b\n1,2\n", "text/csv")

    created = admin.post(
        MC,
        json={
            "subject": "With a file",
            "users": [{"id": ALICE}],
            "userGroups": [],
            "organisationUnits": [],
            "text": "Attached",
            "attachments": [{"id": resource["id"], "name": "report.csv", "contentLength": 8, "loading": False}],
        },
    )

    uid = ok_json(created, 201) and created.headers["location"].rsplit("/", 1)[1]
    assert conversation(admin, uid)["messages"][0]["attachments"] == [
        {"id": resource["id"], "name": "report.csv", "contentLength": 8}
    ]


def test_an_internal_message_s_attachment_is_only_for_ticket_managers(site: LiveServer) -> None:
    mobile, admin, mohamed = logged_in(site, "mobile"), logged_in(site), logged_in(site, "mohamed")
    ticket = send_feedback(mobile, "Scanner", "The scanner is broken")
    settle(site)
    resource = upload(admin, "notes.txt", b"internal notes")
    assert admin.post(f"{MC}/{ticket}?internal=true&attachments={resource['id']}", content="Notes", headers=TEXT).status_code < 400
    internal = conversation(admin, ticket)["messages"][-1]["id"]
    link = f"/api/messageConversations/{ticket}/{internal}/attachments/{resource['id']}"

    assert_message(mobile.get(link), 409, "Not authorized to access this message")
    assert mohamed.get(link).content == b"internal notes"


def test_a_file_resource_of_another_domain_is_not_served_as_an_attachment(site: LiveServer) -> None:
    admin = logged_in(site)
    resource = upload(admin, "hello.txt", b"hi")
    admin.post(f"{MC}/{STOCK}?attachments={resource['id']}", content="x", headers=TEXT)
    message = conversation(admin, STOCK)["messages"][-1]["id"]
    with site.session() as session:
        session.execute(update(FileResource).where(FileResource.uid == resource["id"]).values(domain="DOCUMENT"))
        session.commit()

    assert_message(
        admin.get(f"/api/messageConversations/{STOCK}/{message}/attachments/{resource['id']}"),
        409,
        "Invalid messageattachment.",
    )


def test_uploads_over_10_mib_or_for_other_domains_are_refused(site: LiveServer) -> None:
    admin = logged_in(site)
    big = bytes(10 * 1024 * 1024 + 1)

    too_big = admin.post(f"{API}/fileResources?domain=MESSAGE_ATTACHMENT", files={"file": ("big.bin", big)})
    assert_message(too_big, 413, "The file is larger than the limit of 10 MiB.")
    assert admin.post(f"{API}/fileResources?domain=DOCUMENT", files={"file": ("a.txt", b"a")}).status_code == 409
    assert admin.post(f"{API}/fileResources?domain=NOPE", files={"file": ("a.txt", b"a")}).status_code == 400
    assert admin.post(f"{API}/fileResources?domain=MESSAGE_ATTACHMENT").status_code == 400


def test_the_documented_attachments_upload_answers_the_attachment_object_of_the_doc(site: LiveServer) -> None:
    admin = logged_in(site)

    body = ok_json(admin.post(f"{MC}/attachments", files={"file": ("x.png", b"\x89PNG", "image/png")}), 202)

    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{10}", body["id"])
    assert body["user"]["id"] == ADMIN and body["lastUpdatedBy"] == {"id": ADMIN, "name": "John Traore"}
    assert body["publicAccess"] == "--------" and body["externalAccess"] is False
    assert (body["name"], body["contentLength"], body["contentType"]) == ("x.png", 4, "image/png")
    described = ok_json(admin.get(f"/api/fileResources/{body['id']}"))
    assert (described["id"], described["domain"]) == (body["id"], "MESSAGE_ATTACHMENT")
    assert logged_in(site, "alice").get(f"/api/fileResources/{body['id']}").status_code == 404
