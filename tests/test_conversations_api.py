"""Every /api/messageConversations endpoint over HTTP, in JSON and XML, with DHIS2's texts and codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from messaging.models import Conversation, FileResource, Message, OutboxEvent, User, UserMessage
from tests.conftest import LiveServer, settle, wait_until
from tests.support.demo import ADMIN, ALICE, FATMATA, IBRAHIM, MOBILE, MOHAMED

NS = {"d": "http://dhis2.org/schema/dxf/2.0"}
API = "/api/messageConversations"
API33, API42 = "/api/33/messageConversations", "/api/42/messageConversations"
FIELD_WORKERS, NGELEHUN_STAFF = "ZoHNWQajIoe", "EzMMCXOSPpJ"
NGELEHUN_CHC, NJANDAMA, BADJIA = "DiszpKrYNg8", "g8upMTyEZGZ", "YuQRtpLP10I"
# The admin's demo inbox: (uid, subject), oldest first; unread ones are those others sent.
ADMIN_INBOX = [
    ("GDBqVfkmnp2", "DHIS2 version 2.7 is deployed"),
    ("ZjHHSjyyeJ2", "Mortality data reporting"),
    ("ZrKML5WiyFm", "Stock levels"),
    ("Gc03smoTm6q", "Training schedule"),
    ("WzMRrCosqc0", "Vaccination campaign"),
    ("lxCjiigqrJm", "Data quality review"),
    ("jMe43trzrdi", "Monthly summary"),
]
ADMIN_UNREAD = {"GDBqVfkmnp2", "ZrKML5WiyFm", "Gc03smoTm6q", "lxCjiigqrJm"}
# The official messaging app's exact field strings (spaces after commas included).
APP_LIST_FIELDS = (
    "id,displayName,subject,messageType,lastSender[id, displayName],assignee[id, displayName],"
    "status,priority,lastUpdated,read,lastMessage,followUp"
)
APP_ONE_FIELDS = (
    "*,assignee[id, displayName],messages[*,sender[id,displayName],attachments[id, name, contentLength]],"
    "userMessages[user[id, displayName]]"
)
MESSAGE_KEYS = {"httpStatus", "httpStatusCode", "status", "message"}
pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


# ---------------------------------------------------------------- helpers


def uid_of(response: httpx.Response) -> str:
    """The conversation UID from a 201/200 answer's Location header."""
    return response.headers["Location"].rsplit("/", 1)[1]


def send(
    client: httpx.Client,
    subject: str,
    *,
    users: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    org_units: tuple[str, ...] = (),
    text: str = "Hello",
) -> str:
    """Create a private conversation over HTTP and return its UID."""
    body = {
        "subject": subject,
        "text": text,
        "users": [{"id": u} for u in users],
        "userGroups": [{"id": g} for g in groups],
        "organisationUnits": [{"id": o} for o in org_units],
    }
    response = client.post(API, json=body)
    assert response.status_code == 201, response.text
    return uid_of(response)


def participants(server: LiveServer, conversation_uid: str) -> dict[str, bool]:
    """{user uid: read} of a conversation, read from the database."""
    with server.session() as session:
        rows = session.execute(
            select(User.uid, UserMessage.read)
            .join(UserMessage, UserMessage.user_id == User.id)
            .join(Conversation, Conversation.id == UserMessage.conversation_id)
            .where(Conversation.uid == conversation_uid)
        )
        return {uid: read for uid, read in rows}


def set_columns(server: LiveServer, conversation_uid: str, **values: Any) -> None:
    """Change a conversation's columns directly (status, priority, assignee)."""
    with server.session() as session:
        session.execute(update(Conversation).where(Conversation.uid == conversation_uid).values(**values))
        session.commit()


def user_id(server: LiveServer, uid: str) -> int:
    with server.session() as session:
        found = session.scalar(select(User.id).where(User.uid == uid))
        assert found is not None
        return found


def ids(body: dict[str, Any]) -> list[str]:
    return [c["id"] for c in body["messageConversations"]]


def assert_web_message(response: httpx.Response, status: int, message: str, **extra: Any) -> None:
    """The response is a DHIS2 WebMessage with this status and exact text."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["httpStatusCode"] == status
    assert body["status"] == ("OK" if status < 400 else "ERROR")
    assert body["message"] == message
    assert body.keys() >= MESSAGE_KEYS
    for key, value in extra.items():
        assert body[key] == value


def xml(response: httpx.Response) -> ET.Element:
    assert response.headers["content-type"].startswith("application/xml"), response.headers["content-type"]
    return ET.fromstring(response.content)


# ---------------------------------------------------------------- versions and formats


@pytest.mark.parametrize("prefix", ["/api", "/api/33", "/api/28", "/api/43"])
def test_the_list_answers_under_the_plain_and_every_supported_versioned_path(server: LiveServer, prefix: str) -> None:
    admin = server.client()
    response = admin.get(f"{prefix}/messageConversations", params={"fields": "id"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert len(response.json()["messageConversations"]) == 7


@pytest.mark.parametrize("version", ["27", "44", "99"])
def test_an_unsupported_api_version_is_a_404_web_message(server: LiveServer, version: str) -> None:
    response = server.client().get(f"/api/{version}/messageConversations")
    assert response.status_code == 404
    assert response.json()["httpStatusCode"] == 404


def test_the_list_is_xml_when_accept_asks_for_it_or_the_path_ends_in_xml(server: LiveServer) -> None:
    admin = server.client()
    by_header = admin.get(API33, headers={"Accept": "application/xml"})
    by_suffix = admin.get(f"{API}.xml")
    for response in (by_header, by_suffix):
        root = xml(response)
        assert root.tag == "{http://dhis2.org/schema/dxf/2.0}messageConversations"
        entries = root.findall("d:messageConversation", NS)
        assert [e.get("id") for e in entries] == [uid for uid, _ in reversed(ADMIN_INBOX)]
        assert entries[0].get("name") == "Monthly summary"
        assert entries[0].get("link") == f"{server.url}/api/messageConversations/jMe43trzrdi"
        assert root.find("d:pager/d:total", NS) is not None
        assert root.find("d:pager/d:total", NS).text == "7"  # type: ignore[union-attr]


def test_a_json_suffix_or_a_json_accept_header_gives_json(server: LiveServer) -> None:
    admin = server.client()
    assert admin.get(f"{API}.json").json()["pager"]["total"] == 7
    both = admin.get(API, headers={"Accept": "application/json, application/xml;q=0.9"})
    assert both.headers["content-type"].startswith("application/json")


def test_one_conversation_renders_as_xml_with_its_messages_and_participants(server: LiveServer) -> None:
    admin = server.client()
    default = xml(admin.get(f"{API33}/ZjHHSjyyeJ2.xml"))
    [reference] = default.findall("d:messages/d:message", NS)
    assert reference.get("id") and reference.find("d:text", NS) is None  # references are ids by default
    root = xml(admin.get(f"{API33}/ZjHHSjyyeJ2.xml", params={"fields": "*,messages[text]"}))
    assert root.tag == "{http://dhis2.org/schema/dxf/2.0}messageConversation"
    assert root.get("id") == "ZjHHSjyyeJ2"
    assert root.get("read") == "true"
    assert root.get("messageCount") == "1"
    assert root.find("d:subject", NS).text == "Mortality data reporting"  # type: ignore[union-attr]
    texts = [m.find("d:text", NS).text for m in root.findall("d:messages/d:message", NS)]  # type: ignore[union-attr]
    assert texts == ["Have you reported data for the Mortality data set for January 2014?"]
    users = {um.find("d:user", NS).get("id") for um in root.findall("d:userMessages/d:userMessage", NS)}  # type: ignore[union-attr]
    assert users == {ADMIN, MOBILE}


def test_errors_are_xml_web_messages_when_xml_is_asked_for(server: LiveServer) -> None:
    response = server.client("mobile").get(f"{API}/ZrKML5WiyFm", headers={"Accept": "application/xml"})
    assert response.status_code == 403
    root = xml(response)
    assert root.tag == "{http://dhis2.org/schema/dxf/2.0}webMessage"
    assert root.find("d:message", NS).text == "Not authorized to access this conversation."  # type: ignore[union-attr]
    assert root.find("d:httpStatusCode", NS).text == "403"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("method", "path", "body", "root", "answer"),
    [
        ("POST", f"{API}/ZrKML5WiyFm", b"text", "webMessage", "Message conversation created"),
        ("POST", f"{API}/unread", b'["jMe43trzrdi"]', "response", "jMe43trzrdi"),
        ("POST", f"{API}/followup", b'["jMe43trzrdi"]', "response", "jMe43trzrdi"),
        ("POST", f"{API}/unfollowup", b'["jMe43trzrdi"]', "response", "jMe43trzrdi"),
        ("POST", f"{API}/jMe43trzrdi/unread", None, "response", "jMe43trzrdi"),
        ("DELETE", f"{API}/jMe43trzrdi", None, "reply", ADMIN),
    ],
)
def test_every_small_answer_is_xml_when_asked(
    server: LiveServer, method: str, path: str, body: bytes | None, root: str, answer: str
) -> None:
    headers = {"Accept": "application/xml", "Content-Type": "application/json" if body and body[:1] == b"[" else "text/plain"}
    response = server.client().request(method, path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    element = xml(response)
    assert element.tag == f"{{http://dhis2.org/schema/dxf/2.0}}{root}"
    assert answer in [e.text for e in element.iter()]


# ---------------------------------------------------------------- create


def test_creating_to_users_answers_201_with_a_location_and_the_recipients_appear_unread(server: LiveServer) -> None:
    admin = server.client()
    response = admin.post(
        API33,
        json={"subject": "Hey", "text": "How are you?", "users": [{"id": ALICE}, {"id": IBRAHIM}]},
    )
    assert response.status_code == 201
    assert response.json() == {
        "httpStatus": "Created",
        "httpStatusCode": 201,
        "status": "OK",
        "message": "Message conversation created",
    }
    uid = uid_of(response)
    assert response.headers["Location"] == f"{server.url}/api/messageConversations/{uid}"
    wait_until(lambda: len(participants(server, uid)) == 3, what="the fan-out to alice and ibrahim")
    assert participants(server, uid) == {ADMIN: True, ALICE: False, IBRAHIM: False}
    one = admin.get(f"{API}/{uid}", params={"fields": "subject,messageType,status,priority,messageCount,lastSender"})
    assert one.json() == {
        "subject": "Hey",
        "lastSender": {"id": ADMIN},
        "messageCount": 1,
        "messageType": "PRIVATE",
        "status": "NONE",
        "priority": "NONE",
    }


def test_creating_to_a_user_group_reaches_its_direct_members(server: LiveServer) -> None:
    uid = send(server.client(), "To the field", groups=(FIELD_WORKERS,))
    settle(server)
    assert participants(server, uid) == {ADMIN: True, IBRAHIM: False, FATMATA: False}


def test_creating_to_an_org_unit_reaches_only_users_assigned_directly_to_it(server: LiveServer) -> None:
    uid = send(server.client(), "Ngelehun", org_units=(NGELEHUN_CHC,))
    settle(server)
    assert participants(server, uid) == {ADMIN: True, MOBILE: False, ALICE: False, FATMATA: False}


def test_recipients_from_users_groups_and_org_units_merge_without_duplicates(server: LiveServer) -> None:
    uid = send(server.client(), "All of them", users=(MOBILE, ADMIN), groups=(NGELEHUN_STAFF,), org_units=(NJANDAMA,))
    settle(server)
    # The sender listed themselves: still one row, read.
    assert participants(server, uid) == {ADMIN: True, MOBILE: False, FATMATA: False, IBRAHIM: False}


def test_creating_from_the_doc_xml_with_groups_and_org_units(server: LiveServer) -> None:
    body = f"""<message xmlns="http://dhis2.org/schema/dxf/2.0">
      <subject>This is the subject</subject>
      <text>This is the text</text>
      <userGroups><userGroup id="{FIELD_WORKERS}" /></userGroups>
      <organisationUnits><organisationUnit id="{NJANDAMA}" /></organisationUnits>
    </message>"""
    response = server.client().post(API33, content=body, headers={"Content-Type": "application/xml"})
    assert response.status_code == 201
    uid = uid_of(response)
    settle(server)
    assert participants(server, uid) == {ADMIN: True, IBRAHIM: False, FATMATA: False}
    text = server.client().get(f"{API}/{uid}", params={"fields": "messages[text]"}).json()
    assert text == {"messages": [{"text": "This is the text"}]}


def test_an_xml_create_with_an_unknown_user_is_refused_like_json(server: LiveServer) -> None:
    body = b'<message xmlns="http://dhis2.org/schema/dxf/2.0"><subject>s</subject><text>t</text>' \
        b'<users><user id="nobodyAtAll"/></users></message>'
    response = server.client().post(API, content=body, headers={"Content-Type": "text/xml"})
    assert_web_message(response, 409, "User does not exist: nobodyAtAll")


def test_an_xml_create_answers_in_xml_when_asked(server: LiveServer) -> None:
    body = f'<message xmlns="http://dhis2.org/schema/dxf/2.0"><subject>s</subject><users><user id="{ALICE}"/></users></message>'
    response = server.client().post(
        API, content=body, headers={"Content-Type": "application/xml", "Accept": "application/xml"}
    )
    assert response.status_code == 201
    root = xml(response)
    assert root.find("d:message", NS).text == "Message conversation created"  # type: ignore[union-attr]
    assert root.find("d:httpStatusCode", NS).text == "201"  # type: ignore[union-attr]


def test_an_unknown_org_unit_is_a_409(server: LiveServer) -> None:
    response = server.client().post(API, json={"subject": "s", "text": "t", "organisationUnits": [{"id": "noSuchUnit1"}]})
    assert_web_message(response, 409, "Organisation Unit does not exist: noSuchUnit1", httpStatus="Conflict")


def _row_counts(server: LiveServer) -> tuple[int, ...]:
    with server.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0
                     for model in (Conversation, Message, UserMessage, OutboxEvent))


def test_an_unknown_user_is_a_409(server: LiveServer) -> None:
    before = _row_counts(server)
    response = server.client().post(API, json={"subject": "s", "text": "t", "users": [{"id": ALICE}, {"id": "noSuchUser1"}]})
    assert_web_message(response, 409, "User does not exist: noSuchUser1")
    assert _row_counts(server) == before  # nothing written: no conversation, message, inbox row or event


def test_a_user_named_twice_and_the_sender_named_take_part_once(server: LiveServer) -> None:
    response = server.client().post(
        API, json={"subject": "s", "text": "t", "users": [{"id": ALICE}, {"id": ALICE}, {"id": ADMIN}]}
    )
    assert response.status_code == 201
    assert participants(server, uid_of(response)) == {ADMIN: True, ALICE: False}


def test_an_unknown_user_group_is_a_404_with_error_code_e1005(server: LiveServer) -> None:
    response = server.client().post(API, json={"subject": "s", "text": "t", "userGroups": [{"id": "noSuchGroup"}]})
    assert_web_message(response, 404, "UserGroup with id noSuchGroup could not be found.", errorCode="E1005")


def test_org_units_are_checked_before_users_and_users_before_groups(server: LiveServer) -> None:
    admin = server.client()
    everything_wrong = {
        "subject": "s",
        "users": [{"id": "badUser0001"}],
        "userGroups": [{"id": "badGroup001"}],
        "organisationUnits": [{"id": "badUnit0001"}],
    }
    assert admin.post(API, json=everything_wrong).json()["message"] == "Organisation Unit does not exist: badUnit0001"
    del everything_wrong["organisationUnits"]
    assert admin.post(API, json=everything_wrong).json()["message"] == "User does not exist: badUser0001"


def test_no_recipients_is_a_409(server: LiveServer) -> None:
    admin = server.client()
    assert_web_message(admin.post(API, json={"subject": "s", "text": "t", "users": []}), 409, "No recipients selected.")
    assert_web_message(admin.post(API, json={"subject": "s", "text": "t"}), 409, "No recipients selected.")
    # An org unit without users expands to nobody.
    empty_unit = admin.post(API, json={"subject": "s", "organisationUnits": [{"id": BADJIA}]})
    assert_web_message(empty_unit, 409, "No recipients selected.")


@pytest.mark.parametrize("body", [{"text": "t"}, {"subject": "", "text": "t"}, {"subject": "   ", "text": "t"}])
def test_a_missing_or_blank_subject_is_a_409(server: LiveServer, body: dict[str, Any]) -> None:
    response = server.client().post(API, json={**body, "users": [{"id": ALICE}]})
    assert response.status_code == 409
    assert response.json()["status"] == "ERROR"
    assert "subject" in response.json()["message"]


def test_create_accepts_a_json_content_type_with_parameters(server: LiveServer) -> None:
    response = server.client().post(
        API,
        content=b'{"subject": "Charset", "users": [{"id": "OYLGMiazHtW"}]}',
        headers={"Content-Type": "application/json;charset=UTF-8"},
    )
    assert response.status_code == 201


def test_create_ignores_unknown_properties_and_the_app_s_extra_recipient_fields(server: LiveServer) -> None:
    body = {
        "subject": "From the app",
        "text": "Body of a brand-new message",
        "users": [{"id": ALICE, "username": "alice", "displayName": "Alice Banda", "type": "user"}],
        "userGroups": [],
        "organisationUnits": [],
        "attachments": [],
        "somethingElse": {"x": 1},
    }
    response = server.client().post(API, json=body)
    assert response.status_code == 201


def _upload(server: LiveServer, owner_uid: str, name: str = "report.txt") -> str:
    """Store an unassigned message attachment owned by `owner_uid` and return its UID."""
    with server.session() as session:
        resource = FileResource(
            name=name,
            content_type="text/plain",
            content_length=5,
            content=b"hello",
            domain="MESSAGE_ATTACHMENT",
            created_by_id=user_id(server, owner_uid),
        )
        session.add(resource)
        session.commit()
        return resource.uid


def test_attachment_ids_may_be_strings_as_the_doc_shows_or_objects_as_the_app_sends(server: LiveServer) -> None:
    admin = server.client()
    as_string, as_object = _upload(server, ADMIN, "a.txt"), _upload(server, ADMIN, "b.txt")
    response = admin.post(
        API,
        json={
            "subject": "With files",
            "text": "See attached",
            "users": [{"id": ALICE}],
            "attachments": [as_string, {"id": as_object, "name": "b.txt", "contentLength": 5, "loading": False}],
        },
    )
    assert response.status_code == 201, response.text
    one = admin.get(f"{API}/{uid_of(response)}", params={"fields": APP_ONE_FIELDS}).json()
    attached = one["messages"][0]["attachments"]
    assert sorted(a["id"] for a in attached) == sorted([as_string, as_object])
    assert {a["name"] for a in attached} == {"a.txt", "b.txt"}
    assert all(a["contentLength"] == 5 for a in attached)


def test_an_unknown_attachment_is_a_409(server: LiveServer) -> None:
    response = server.client().post(
        API, json={"subject": "s", "users": [{"id": ALICE}], "attachments": ["noSuchFile1"]}
    )
    assert_web_message(response, 409, "Attachment 'noSuchFile1' not found.")


def test_an_attachment_can_be_linked_once_and_only_by_its_uploader(server: LiveServer) -> None:
    admin, alice = server.client(), server.client("alice")
    mine = _upload(server, ADMIN)
    taken = alice.post(API, json={"subject": "s", "users": [{"id": ADMIN}], "attachments": [mine]})
    assert_web_message(taken, 409, f"Attachment '{mine}' is already used or not a valid attachment.")
    assert admin.post(API, json={"subject": "s", "users": [{"id": ALICE}], "attachments": [mine]}).status_code == 201
    again = admin.post(API, json={"subject": "s", "users": [{"id": ALICE}], "attachments": [mine]})
    assert_web_message(again, 409, f"Attachment '{mine}' is already used or not a valid attachment.")


# ---------------------------------------------------------------- list


def test_the_list_defaults_to_newest_first_with_id_name_display_name_and_href(server: LiveServer) -> None:
    body = server.client().get(API).json()
    assert ids(body) == [uid for uid, _ in reversed(ADMIN_INBOX)]
    first = body["messageConversations"][0]
    assert first == {
        "id": "jMe43trzrdi",
        "name": "Monthly summary",
        "displayName": "Monthly summary",
        "href": f"{server.url}/api/messageConversations/jMe43trzrdi",
    }


def test_a_new_conversation_comes_first_and_a_reply_moves_a_conversation_to_the_top(server: LiveServer) -> None:
    admin, mobile = server.client(), server.client("mobile")
    new = send(admin, "Brand new", users=(ALICE,))
    assert ids(admin.get(API, params={"fields": "id"}).json())[0] == new
    assert mobile.post(f"{API}/GDBqVfkmnp2", content="bump", headers={"Content-Type": "text/plain"}).status_code == 200
    settle(server)
    assert ids(admin.get(API, params={"fields": "id"}).json())[:2] == ["GDBqVfkmnp2", new]


def test_the_pager_counts_pages_and_links_next_and_previous_pages_absolutely(server: LiveServer) -> None:
    admin = server.client()
    first = admin.get(API33, params={"pageSize": 3, "fields": "id"}).json()
    assert first["pager"] == {
        "page": 1,
        "pageCount": 3,
        "total": 7,
        "pageSize": 3,
        "nextPage": f"{server.url}/api/messageConversations?pageSize=3&fields=id&page=2",
    }
    assert ids(first) == ["jMe43trzrdi", "lxCjiigqrJm", "WzMRrCosqc0"]
    second = admin.get(API, params={"pageSize": 3, "page": 2, "fields": "id"}).json()
    assert ids(second) == ["Gc03smoTm6q", "ZrKML5WiyFm", "ZjHHSjyyeJ2"]
    assert second["pager"]["prevPage"] == f"{server.url}/api/messageConversations?pageSize=3&fields=id&page=1"
    assert second["pager"]["nextPage"] == f"{server.url}/api/messageConversations?pageSize=3&fields=id&page=3"
    last = admin.get(API, params={"pageSize": 3, "page": 3, "fields": "id"}).json()
    assert ids(last) == ["GDBqVfkmnp2"]
    assert "nextPage" not in last["pager"]
    # The links work as given.
    followed = admin.get(second["pager"]["nextPage"]).json()
    assert ids(followed) == ["GDBqVfkmnp2"]


def test_a_page_beyond_the_end_is_empty_with_the_page_clamped(server: LiveServer) -> None:
    body = server.client().get(API, params={"pageSize": 5, "page": 9}).json()
    assert body["messageConversations"] == []
    assert body["pager"]["page"] == 2
    assert body["pager"]["pageCount"] == 2
    assert body["pager"]["total"] == 7
    assert "nextPage" not in body["pager"]


def test_paging_false_returns_everything_without_a_pager(server: LiveServer) -> None:
    body = server.client().get(API, params={"paging": "false", "pageSize": 2}).json()
    assert "pager" not in body
    assert len(body["messageConversations"]) == 7


def test_the_list_sends_cache_control_no_cache_private(server: LiveServer) -> None:
    assert server.client().get(API).headers["cache-control"] == "no-cache, private"


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("subject:asc", sorted(s for _, s in ADMIN_INBOX)),
        ("subject:desc", sorted((s for _, s in ADMIN_INBOX), reverse=True)),
        ("lastMessage:asc", [s for _, s in ADMIN_INBOX]),
        ("lastMessage:desc", [s for _, s in reversed(ADMIN_INBOX)]),
    ],
)
def test_order_overrides_the_default(server: LiveServer, order: str, expected: list[str]) -> None:
    body = server.client().get(API, params={"order": order, "fields": "subject", "paging": "false"}).json()
    assert [c["subject"] for c in body["messageConversations"]] == expected


def test_an_unknown_order_property_is_a_400(server: LiveServer) -> None:
    response = server.client().get(API, params={"order": "nonsense:asc"})
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR"


def test_the_app_s_list_fields_with_spaces_render_nested_references(server: LiveServer) -> None:
    alice_id = user_id(server, ALICE)
    set_columns(server, "ZrKML5WiyFm", assignee_id=alice_id)
    body = server.client().get(
        API42,
        params={"fields": APP_LIST_FIELDS, "filter": "messageType:eq:PRIVATE", "pageSize": 35, "order": "lastMessage:desc"},
    ).json()
    stock = next(c for c in body["messageConversations"] if c["id"] == "ZrKML5WiyFm")
    assert set(stock) == {
        "id", "displayName", "subject", "messageType", "lastSender", "assignee", "status", "priority",
        "lastUpdated", "read", "lastMessage", "followUp",
    }  # fmt: skip
    assert stock["lastSender"] == {"id": ALICE, "displayName": "Alice Banda"}
    assert stock["assignee"] == {"id": ALICE, "displayName": "Alice Banda"}
    assert stock["read"] is False
    assert stock["followUp"] is False
    # No assignee: the key is absent, never null.
    assert "assignee" not in next(c for c in body["messageConversations"] if c["id"] == "jMe43trzrdi")
    assert body["pager"]["pageSize"] == 35


def test_the_app_s_open_one_fields_render_messages_senders_attachments_and_participants(server: LiveServer) -> None:
    body = server.client().get(f"{API42}/ZjHHSjyyeJ2", params={"fields": APP_ONE_FIELDS}).json()
    assert body["id"] == "ZjHHSjyyeJ2"
    assert body["subject"] == "Mortality data reporting"
    assert body["messageType"] == "PRIVATE"
    [message] = body["messages"]
    assert message["sender"] == {"id": ADMIN, "displayName": "John Traore"}
    assert message["attachments"] == []
    assert message["internal"] is False
    assert message["text"] == "Have you reported data for the Mortality data set for January 2014?"
    assert sorted(body["userMessages"], key=lambda u: u["user"]["id"]) == [
        {"user": {"id": MOBILE, "displayName": "Mobile User"}},
        {"user": {"id": ADMIN, "displayName": "John Traore"}},
    ]


def test_fields_can_exclude_and_nest(server: LiveServer) -> None:
    body = server.client().get(API, params={"fields": "id,lastSender[displayName],!id", "filter": "id:eq:ZrKML5WiyFm"}).json()
    assert body["messageConversations"] == [{"lastSender": {"displayName": "Alice Banda"}}]


def test_a_malformed_fields_parameter_is_a_400(server: LiveServer) -> None:
    response = server.client().get(API, params={"fields": "id,messages[text"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["read:eq:false"], ADMIN_UNREAD),
        (["read:eq:true"], {u for u, _ in ADMIN_INBOX} - ADMIN_UNREAD),
        (["read:ne:true"], ADMIN_UNREAD),
        (["messageType:eq:SYSTEM"], {"GDBqVfkmnp2"}),
        (["messageType:ne:PRIVATE"], {"GDBqVfkmnp2"}),
        (["messageType:in:[SYSTEM,TICKET]"], {"GDBqVfkmnp2"}),
        (["subject:eq:Stock levels"], {"ZrKML5WiyFm"}),
        (["subject:like:Mortality"], {"ZjHHSjyyeJ2"}),
        (["subject:like:mortality"], set()),
        (["subject:ilike:MORTALITY"], {"ZjHHSjyyeJ2"}),
        (["subject:$ilike:stock"], {"ZrKML5WiyFm"}),
        (["subject:ilike$:REVIEW"], {"lxCjiigqrJm"}),
        (["subject:!ilike:a"], {"GDBqVfkmnp2", "ZrKML5WiyFm"}),
        (["subject:token:quality dat"], {"lxCjiigqrJm"}),
        (["read:eq:false", "messageType:eq:PRIVATE"], ADMIN_UNREAD - {"GDBqVfkmnp2"}),
        (["read:eq:false", "subject:ilike:stock"], {"ZrKML5WiyFm"}),
        (["id:in:[ZrKML5WiyFm,jMe43trzrdi,nonexistent]"], {"ZrKML5WiyFm", "jMe43trzrdi"}),
    ],
)
def test_filters_select_conversations_and_repeated_filters_are_anded(
    any_server: LiveServer, filters: list[str], expected: set[str]
) -> None:
    body = any_server.client().get(API, params={"filter": filters, "paging": "false"}).json()
    assert set(ids(body)) == expected


def test_root_junction_or_combines_filters_with_or(server: LiveServer) -> None:
    params = {"filter": ["subject:ilike:stock", "messageType:eq:SYSTEM"], "rootJunction": "OR"}
    assert set(ids(server.client().get(API, params=params).json())) == {"ZrKML5WiyFm", "GDBqVfkmnp2"}


def test_follow_up_status_priority_and_assignee_filters(server: LiveServer) -> None:
    admin = server.client()
    assert admin.post(f"{API}/followup", json=["ZrKML5WiyFm", "Gc03smoTm6q"]).status_code == 200
    set_columns(server, "ZrKML5WiyFm", status="OPEN", priority="HIGH", assignee_id=user_id(server, MOHAMED))
    set_columns(server, "Gc03smoTm6q", status="SOLVED", priority="LOW")

    def matching(*filters: str) -> set[str]:
        return set(ids(admin.get(API, params={"filter": list(filters), "paging": "false"}).json()))

    assert matching("followUp:eq:true") == {"ZrKML5WiyFm", "Gc03smoTm6q"}
    assert matching("status:eq:OPEN") == {"ZrKML5WiyFm"}
    assert matching("status:in:[OPEN,SOLVED]") == {"ZrKML5WiyFm", "Gc03smoTm6q"}
    assert matching("priority:eq:HIGH") == {"ZrKML5WiyFm"}
    assert matching("priority:ne:NONE", "followUp:eq:true") == {"ZrKML5WiyFm", "Gc03smoTm6q"}
    assert matching(f"assignee.id:eq:{MOHAMED}") == {"ZrKML5WiyFm"}
    assert matching("assignee.id:null") == {u for u, _ in ADMIN_INBOX} - {"ZrKML5WiyFm"}
    assert matching("followUp:eq:true", "status:eq:SOLVED", "priority:eq:LOW") == {"Gc03smoTm6q"}


def test_the_app_s_unread_badge_query_reads_pager_total(server: LiveServer) -> None:
    body = server.client().get(
        API, params={"fields": "read", "filter": ["read:eq:false", "messageType:eq:PRIVATE"], "pageSize": 1}
    ).json()
    assert body["pager"]["total"] == 3
    assert body["messageConversations"] == [{"read": False}]


@pytest.mark.parametrize(
    "filter_",
    ["nonsense:eq:1", "messages.text:eq:x", "read:eq", "read:eq:maybe", "status:eq:DONE", "subject:bogus:x", "subject"],
)
def test_an_invalid_filter_is_a_400(server: LiveServer, filter_: str) -> None:
    response = server.client().get(API, params={"filter": filter_})
    assert response.status_code == 400, response.text
    assert response.json().keys() >= MESSAGE_KEYS


def test_an_invalid_filter_stays_a_400_when_a_query_string_is_also_given(server: LiveServer) -> None:
    response = server.client().get(API, params={"filter": "subject:bogus:x", "queryString": "stock"})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("mortality", {"ZjHHSjyyeJ2"}),
        ("MORT rep", {"ZjHHSjyyeJ2"}),  # every token a prefix of some word, any case
        ("ortality", set()),  # tokens match word starts only
        ("campaign materials", {"WzMRrCosqc0"}),  # subject and message text
        ("Alice", {"ZrKML5WiyFm"}),  # the sender's name
        ("alice banda", {"ZrKML5WiyFm"}),
        ("friday", {"ZrKML5WiyFm"}),
        ("nothing-like-this", set()),
    ],
)
def test_query_string_searches_subject_text_and_sender_by_token(
    any_server: LiveServer, query: str, expected: set[str]
) -> None:
    body = any_server.client().get(API, params={"queryString": query, "paging": "false"}).json()
    assert set(ids(body)) == expected


def test_an_empty_query_string_means_no_search(any_server: LiveServer) -> None:
    body = any_server.client().get(f"{API}?queryString=&fields=id").json()
    assert body["pager"]["total"] == 7


def test_query_operator_chooses_the_match(any_server: LiveServer) -> None:
    admin = any_server.client()

    def search(q: str, op: str) -> set[str]:
        return set(ids(admin.get(API, params={"queryString": q, "queryOperator": op}).json()))

    assert search("ortality", "ilike") == {"ZjHHSjyyeJ2"}
    assert search("ortality", "like") == {"ZjHHSjyyeJ2"}
    assert search("MORTALITY", "like") == set()
    assert search("Stock levels", "eq") == {"ZrKML5WiyFm"}


def test_an_invalid_query_operator_is_a_409(server: LiveServer) -> None:
    response = server.client().get(API, params={"queryString": "stock", "queryOperator": "sounds-like"})
    assert response.status_code == 409
    assert response.json()["status"] == "ERROR"


def test_search_combines_with_filters_and_paging(server: LiveServer) -> None:
    params = {"queryString": "data", "filter": "read:eq:false", "pageSize": 1}
    body = server.client().get(API, params=params).json()
    # "data" matches Mortality data reporting (read) and Data quality review (unread).
    assert body["pager"]["total"] == 1
    assert ids(body) == ["lxCjiigqrJm"]


# ---------------------------------------------------------------- get one


def test_get_one_with_default_fields_shows_everything_with_references_as_ids(server: LiveServer) -> None:
    body = server.client().get(f"{API}/ZrKML5WiyFm").json()
    for key in ("id", "name", "displayName", "created", "lastUpdated", "subject", "lastMessage", "messageCount",
                "messageType", "status", "priority", "read", "followUp", "userMessages", "messages", "lastSender"):  # fmt: skip
        assert key in body, key
    assert body["lastSender"] == {"id": ALICE}
    assert body["messages"] == [{"id": body["messages"][0]["id"]}]
    assert body["read"] is False
    assert body["followUp"] is False
    assert "assignee" not in body  # nulls are omitted
    assert len(body["lastMessage"]) == len("2024-05-01T10:11:12.345")


def test_get_one_of_an_unknown_or_malformed_id_is_a_404(server: LiveServer) -> None:
    admin = server.client()
    for uid in ("AbCdEfGhIj1", "xyz", "has-hyphens", "waytoolongidentifier"):
        response = admin.get(f"{API}/{uid}")
        assert response.status_code == 404, uid
        assert response.json()["httpStatusCode"] == 404


def test_get_one_refuses_a_non_participant(server: LiveServer) -> None:
    response = server.client("mobile").get(f"{API}/ZrKML5WiyFm")
    assert_web_message(response, 403, "Not authorized to access this conversation.", httpStatus="Forbidden")


def test_all_may_read_every_conversation(server: LiveServer) -> None:
    mobile = server.client("mobile")
    private = send(mobile, "Only us", users=(ALICE,))
    body = server.client().get(f"{API}/{private}", params={"fields": "subject,read,followUp"}).json()
    assert body == {"subject": "Only us", "read": False, "followUp": False}


def test_mark_read_true_marks_the_caller_s_copy_read(server: LiveServer) -> None:
    admin = server.client()
    assert participants(server, "ZrKML5WiyFm")[ADMIN] is False
    assert admin.get(f"{API}/ZrKML5WiyFm", params={"markRead": "false"}).status_code == 200
    assert participants(server, "ZrKML5WiyFm")[ADMIN] is False
    assert admin.get(f"{API}/ZrKML5WiyFm", params={"markRead": "true"}).status_code == 200
    assert participants(server, "ZrKML5WiyFm") == {ADMIN: True, ALICE: True}


# ---------------------------------------------------------------- reply


def test_a_text_reply_answers_200_with_a_location_and_marks_others_unread(server: LiveServer) -> None:
    mobile = server.client("mobile")
    response = mobile.post(
        f"{API33}/ZjHHSjyyeJ2",
        content="Yes the Mortality data set has been reported",
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "httpStatus": "OK",
        "httpStatusCode": 200,
        "status": "OK",
        "message": "Message conversation created",
    }
    assert response.headers["Location"] == f"{server.url}/api/messageConversations/ZjHHSjyyeJ2"
    wait_until(lambda: participants(server, "ZjHHSjyyeJ2")[ADMIN] is False, what="admin's copy to turn unread")
    one = mobile.get(f"{API}/ZjHHSjyyeJ2", params={"fields": "messageCount,lastSender,messages[text,sender]"}).json()
    assert one["messageCount"] == 2
    assert one["lastSender"] == {"id": MOBILE}
    assert [m["text"] for m in one["messages"]] == [
        "Have you reported data for the Mortality data set for January 2014?",
        "Yes the Mortality data set has been reported",
    ]
    assert one["messages"][1]["sender"] == {"id": MOBILE}


def test_a_json_reply_body_is_kept_raw_as_the_text(server: LiveServer) -> None:
    raw = '{"text": "not unwrapped", "n": [1, 2]}'
    admin = server.client()
    response = admin.post(f"{API}/ZrKML5WiyFm", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    texts = [m["text"] for m in admin.get(f"{API}/ZrKML5WiyFm", params={"fields": "messages[text]"}).json()["messages"]]
    assert texts[-1] == raw


def test_a_reply_keeps_unicode_and_newlines(server: LiveServer) -> None:
    text = "Bonjour Traoré,\nles données sont prêtes ✅"
    admin = server.client()
    assert admin.post(f"{API}/ZrKML5WiyFm", content=text.encode(), headers={"Content-Type": "text/plain; charset=utf-8"}).status_code == 200
    texts = [m["text"] for m in admin.get(f"{API}/ZrKML5WiyFm", params={"fields": "messages[text]"}).json()["messages"]]
    assert texts[-1] == text


def test_an_empty_reply_is_a_400(server: LiveServer) -> None:
    response = server.client().post(f"{API}/ZrKML5WiyFm", content=b"", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR"


def test_a_reply_to_an_unknown_conversation_is_a_404(server: LiveServer) -> None:
    response = server.client().post(f"{API}/xyz", content="hi", headers={"Content-Type": "text/plain"})
    assert_web_message(response, 404, "Message conversation does not exist: xyz", httpStatus="Not Found")
    assert "errorCode" not in response.json()


def test_a_non_participant_may_not_reply(server: LiveServer) -> None:
    response = server.client("mobile").post(f"{API}/ZrKML5WiyFm", content="hi", headers={"Content-Type": "text/plain"})
    assert_web_message(response, 403, "Not authorized to send messages to this conversation.")


def test_an_internal_reply_by_a_non_manager_is_refused(server: LiveServer) -> None:
    response = server.client("mobile").post(
        f"{API}/ZjHHSjyyeJ2", params={"internal": "true"}, content="psst", headers={"Content-Type": "text/plain"}
    )
    assert_web_message(response, 403, "Not authorized to send internal messages")


def test_a_reply_may_carry_attachments_given_comma_joined_or_repeated(server: LiveServer) -> None:
    admin = server.client()
    a, b, c = (_upload(server, ADMIN, f"{n}.txt") for n in "abc")
    assert admin.post(f"{API}/ZrKML5WiyFm?attachments={a},{b}&attachments={c}", content="files").status_code == 200
    messages = admin.get(f"{API}/ZrKML5WiyFm", params={"fields": "messages[attachments[name]]"}).json()["messages"]
    assert sorted(x["name"] for x in messages[-1]["attachments"]) == ["a.txt", "b.txt", "c.txt"]
    missing = admin.post(f"{API}/ZrKML5WiyFm?attachments=noSuchFile1", content="x")
    assert_web_message(missing, 409, "Attachment 'noSuchFile1' not found.")


# ---------------------------------------------------------------- read and unread


def test_batch_read_lists_only_the_conversations_whose_flag_changed(server: LiveServer) -> None:
    admin = server.client()
    response = admin.post(f"{API}/read", json=["ZrKML5WiyFm", "jMe43trzrdi"])
    assert response.status_code == 200
    assert response.json() == {"markedRead": ["ZrKML5WiyFm"]}  # jMe43trzrdi was already read
    assert admin.post(f"{API}/read", json=["ZrKML5WiyFm"]).json() == {"markedRead": []}
    assert admin.post(f"{API}/unread", json=["ZrKML5WiyFm", "GDBqVfkmnp2"]).json() == {"markedUnread": ["ZrKML5WiyFm"]}
    assert participants(server, "ZrKML5WiyFm")[ADMIN] is False


def test_batch_read_skips_unknown_ids_but_none_found_is_a_404(server: LiveServer) -> None:
    admin = server.client()
    assert admin.post(f"{API}/read", json=["ZrKML5WiyFm", "nonexistent"]).json() == {"markedRead": ["ZrKML5WiyFm"]}
    assert_web_message(
        admin.post(f"{API}/read", json=["nonexistent"]), 404, "No MessageConversations found for the given IDs."
    )
    assert_web_message(admin.post(f"{API}/unread", json=[]), 404, "No MessageConversations found for the given IDs.")


def test_single_read_and_unread_answer_like_the_batch(server: LiveServer) -> None:
    admin = server.client()
    assert admin.post(f"{API}/Gc03smoTm6q/read").json() == {"markedRead": ["Gc03smoTm6q"]}
    assert admin.post(f"{API}/Gc03smoTm6q/read").json() == {"markedRead": []}
    assert admin.post(f"{API}/Gc03smoTm6q/unread").json() == {"markedUnread": ["Gc03smoTm6q"]}
    assert_web_message(admin.post(f"{API}/noSuchConv1/read"), 404, "No MessageConversations found for the given IDs.")


def test_read_for_another_user_uses_user_in_the_batch_and_user_uid_on_one(server: LiveServer) -> None:
    admin = server.client()
    assert admin.post(f"{API}/read", params={"user": MOBILE}, json=["ZjHHSjyyeJ2", "jMe43trzrdi"]).json() == {
        "markedRead": ["ZjHHSjyyeJ2", "jMe43trzrdi"]
    }
    assert participants(server, "ZjHHSjyyeJ2") == {ADMIN: True, MOBILE: True}
    assert admin.post(f"{API}/ZjHHSjyyeJ2/unread", params={"userUid": MOBILE}).json() == {"markedUnread": ["ZjHHSjyyeJ2"]}
    assert participants(server, "ZjHHSjyyeJ2") == {ADMIN: True, MOBILE: False}
    # The target takes no part in ZrKML5WiyFm: nothing changes.
    assert admin.post(f"{API}/read", params={"user": MOBILE}, json=["ZrKML5WiyFm"]).json() == {"markedRead": []}


def test_read_for_an_unknown_user_is_a_404(server: LiveServer) -> None:
    admin = server.client()
    assert_web_message(
        admin.post(f"{API}/read", params={"user": "noSuchUser1"}, json=["ZrKML5WiyFm"]), 404, "No user with uid: noSuchUser1"
    )
    assert_web_message(
        admin.post(f"{API}/ZrKML5WiyFm/read", params={"userUid": "noSuchUser1"}), 404, "No user with uid: noSuchUser1"
    )


def test_read_answers_in_xml_with_uid_children(server: LiveServer) -> None:
    response = server.client().post(
        f"{API}/read", json=["ZrKML5WiyFm", "Gc03smoTm6q"], headers={"Accept": "application/xml"}
    )
    root = xml(response)
    assert root.tag == "{http://dhis2.org/schema/dxf/2.0}response"
    assert [e.text for e in root.findall("d:markedRead/d:uid", NS)] == ["ZrKML5WiyFm", "Gc03smoTm6q"]


# ---------------------------------------------------------------- follow-up


def test_follow_up_lists_every_found_id_whether_or_not_it_changed(server: LiveServer) -> None:
    admin = server.client()
    assert admin.post(f"{API}/followup", json=["ZrKML5WiyFm", "nonexistent"]).json() == {"markedFollowup": ["ZrKML5WiyFm"]}
    assert admin.post(f"{API}/followup", json=["ZrKML5WiyFm", "Gc03smoTm6q"]).json() == {
        "markedFollowup": ["ZrKML5WiyFm", "Gc03smoTm6q"]
    }
    flags = admin.get(API, params={"filter": "followUp:eq:true", "fields": "id"}).json()
    assert set(ids(flags)) == {"ZrKML5WiyFm", "Gc03smoTm6q"}
    assert admin.post(f"{API}/unfollowup", json=["ZrKML5WiyFm", "jMe43trzrdi"]).json() == {
        "unmarkedFollowup": ["ZrKML5WiyFm", "jMe43trzrdi"]
    }
    flags = admin.get(API, params={"filter": "followUp:eq:true", "fields": "id"}).json()
    assert ids(flags) == ["Gc03smoTm6q"]


def test_follow_up_errors_have_no_trailing_period(server: LiveServer) -> None:
    admin = server.client()
    assert_web_message(admin.post(f"{API}/followup", json=["nonexistent"]), 404, "No MessageConversations found for the given UIDs")
    assert_web_message(admin.post(f"{API}/unfollowup", json=["nonexistent"]), 404, "No MessageConversations found for the given UIDs")
    assert_web_message(
        admin.post(f"{API}/followup", params={"user": "noSuchUser1"}, json=["ZrKML5WiyFm"]), 404, "No user with uid: noSuchUser1"
    )


def test_follow_up_for_another_user_changes_their_flag(server: LiveServer) -> None:
    admin, mobile = server.client(), server.client("mobile")
    assert admin.post(f"{API}/followup", params={"user": MOBILE}, json=["ZjHHSjyyeJ2"]).json() == {
        "markedFollowup": ["ZjHHSjyyeJ2"]
    }
    assert mobile.get(f"{API}/ZjHHSjyyeJ2", params={"fields": "followUp"}).json() == {"followUp": True}
    assert admin.get(f"{API}/ZjHHSjyyeJ2", params={"fields": "followUp"}).json() == {"followUp": False}


# ---------------------------------------------------------------- recipients


def test_adding_recipients_answers_204_and_they_appear_unread_after_the_worker_runs(server: LiveServer) -> None:
    admin = server.client()
    response = admin.post(
        f"{API33}/ZrKML5WiyFm/recipients",
        json={"users": [{"id": MOBILE}, {"id": ALICE}], "userGroups": [{"id": FIELD_WORKERS}], "organisationUnits": []},
    )
    assert response.status_code == 204
    assert response.content == b""
    wait_until(lambda: len(participants(server, "ZrKML5WiyFm")) == 5, what="the new participants")
    # Existing participants are untouched (admin unread, alice read); the new ones are unread.
    assert participants(server, "ZrKML5WiyFm") == {
        ADMIN: False, ALICE: True, MOBILE: False, IBRAHIM: False, FATMATA: False,
    }  # fmt: skip
    mobile_sees = server.client("mobile").get(API, params={"filter": "id:eq:ZrKML5WiyFm", "fields": "id,read"}).json()
    assert mobile_sees["messageConversations"] == [{"id": "ZrKML5WiyFm", "read": False}]


def test_adding_recipients_checks_references_like_create(server: LiveServer) -> None:
    admin = server.client()
    assert_web_message(
        admin.post(f"{API}/ZrKML5WiyFm/recipients", json={"users": [{"id": "noSuchUser1"}]}), 409, "User does not exist: noSuchUser1"
    )
    assert_web_message(
        admin.post(f"{API}/ZrKML5WiyFm/recipients", json={"userGroups": [{"id": "noSuchGroup"}]}),
        404,
        "UserGroup with id noSuchGroup could not be found.",
        errorCode="E1005",
    )
    assert admin.post(f"{API}/ZrKML5WiyFm/recipients", json={"users": []}).status_code == 204


def test_adding_recipients_to_an_unknown_conversation_is_a_404(server: LiveServer) -> None:
    response = server.client().post(f"{API}/noSuchConv1/recipients", json={"users": [{"id": ALICE}]})
    assert_web_message(response, 404, "Message conversation does not exist: noSuchConv1")


def test_a_non_participant_may_not_add_recipients(server: LiveServer) -> None:
    response = server.client("mobile").post(f"{API}/ZrKML5WiyFm/recipients", json={"users": [{"id": MOBILE}]})
    assert_web_message(response, 403, "Not authorized to change recipients in this conversation.")
    settle(server)
    assert MOBILE not in participants(server, "ZrKML5WiyFm")


def test_malformed_recipients_json_is_a_400(server: LiveServer) -> None:
    response = server.client().post(
        f"{API}/ZrKML5WiyFm/recipients", content=b'{"users": [', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR"


# ---------------------------------------------------------------- removal


def test_removing_a_participant_answers_the_removed_user_s_id(server: LiveServer) -> None:
    admin = server.client()
    response = admin.delete(f"{API33}/ZjHHSjyyeJ2/{MOBILE}")
    assert response.status_code == 200
    assert response.json() == {"removed": [MOBILE]}
    assert participants(server, "ZjHHSjyyeJ2") == {ADMIN: True}
    assert admin.delete(f"{API}/ZjHHSjyyeJ2/{MOBILE}").json() == {"removed": []}
    # The conversation itself stays, with its messages.
    assert admin.get(f"{API}/ZjHHSjyyeJ2", params={"fields": "messageCount"}).json() == {"messageCount": 1}


def test_removing_yourself_takes_the_conversation_out_of_your_list(server: LiveServer) -> None:
    mobile = server.client("mobile")
    assert mobile.delete(f"{API}/jMe43trzrdi/{MOBILE}").json() == {"removed": [MOBILE]}
    assert "jMe43trzrdi" not in ids(mobile.get(API).json())
    assert_web_message(mobile.get(f"{API}/jMe43trzrdi"), 403, "Not authorized to access this conversation.")


def test_removal_errors_name_the_missing_user_or_conversation(server: LiveServer) -> None:
    admin = server.client()
    assert_web_message(admin.delete(f"{API}/ZjHHSjyyeJ2/noSuchUser1"), 404, "No user with uid: noSuchUser1")
    assert_web_message(admin.delete(f"{API}/noSuchConv1/{MOBILE}"), 404, "No messageConversation with uid: noSuchConv1")


def test_removal_answers_in_xml_under_a_reply_root(server: LiveServer) -> None:
    root = xml(server.client().delete(f"{API}/ZjHHSjyyeJ2/{MOBILE}.xml"))
    assert root.tag == "{http://dhis2.org/schema/dxf/2.0}reply"
    assert [e.text for e in root.findall("d:removed/d:uid", NS)] == [MOBILE]


def test_delete_of_a_conversation_removes_only_the_caller(server: LiveServer) -> None:
    mobile = server.client("mobile")
    response = mobile.delete(f"{API}/ZjHHSjyyeJ2")
    assert response.status_code == 200
    assert response.json() == {"removed": [MOBILE]}
    assert participants(server, "ZjHHSjyyeJ2") == {ADMIN: True}
    assert server.client().get(f"{API}/ZjHHSjyyeJ2", params={"fields": "messageCount"}).json() == {"messageCount": 1}
    assert_web_message(mobile.delete(f"{API}/ZjHHSjyyeJ2"), 403, "Not authorized to remove assigned users to this conversation.")
    assert_web_message(mobile.delete(f"{API}/noSuchConv1"), 404, "No messageConversation with uid: noSuchConv1")


def test_batch_removal_takes_repeated_and_comma_joined_ids_and_skips_unknown_ones(server: LiveServer) -> None:
    admin = server.client()
    response = admin.delete(f"{API33}?mc=WzMRrCosqc0,lxCjiigqrJm&mc=nonexistent&mc=Gc03smoTm6q")
    assert response.status_code == 200
    assert response.json() == {"removed": ["WzMRrCosqc0", "lxCjiigqrJm", "Gc03smoTm6q"]}
    assert set(ids(admin.get(API, params={"paging": "false"}).json())) == {
        "GDBqVfkmnp2", "ZjHHSjyyeJ2", "ZrKML5WiyFm", "jMe43trzrdi",
    }  # fmt: skip
    # Already removed: found, but nothing to remove.
    assert admin.delete(f"{API}?mc=WzMRrCosqc0").json() == {"removed": []}


def test_batch_removal_for_another_user(server: LiveServer) -> None:
    admin = server.client()
    response = admin.delete(API, params={"mc": ["ZjHHSjyyeJ2", "ZrKML5WiyFm"], "user": MOBILE})
    assert response.json() == {"removed": ["ZjHHSjyyeJ2"]}
    assert participants(server, "ZjHHSjyyeJ2") == {ADMIN: True}
    assert_web_message(admin.delete(API, params={"mc": "ZjHHSjyyeJ2", "user": "noSuchUser1"}), 404, "User does not exist: noSuchUser1")


def test_batch_removal_of_nothing_found_is_a_404_and_without_mc_a_400(server: LiveServer) -> None:
    admin = server.client()
    assert_web_message(admin.delete(f"{API}?mc=nope1&mc=nope2"), 404, "No MessageConversations found for the given UIDs.")
    missing = admin.delete(API)
    assert missing.status_code == 400
    assert missing.json()["status"] == "ERROR"
    assert admin.delete(f"{API}?mc=").status_code == 400


def test_batch_removal_answers_in_xml(server: LiveServer) -> None:
    root = xml(server.client().delete(f"{API}.xml?mc=WzMRrCosqc0"))
    assert [e.text for e in root.findall("d:removed/d:uid", NS)] == ["WzMRrCosqc0"]
