"""Hostile and broken input: always a 4xx WebMessage, never a 500, and nothing half-written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from messaging.models import (
    Conversation,
    FileResource,
    Message,
    OrganisationUnit,
    OutboxEvent,
    User,
    UserGroup,
    UserMessage,
    UserRole,
)
from tests.conftest import LiveServer, settle
from tests.support.demo import ALICE, MOBILE

API = "/api/messageConversations"
JSON = {"Content-Type": "application/json"}
XML = {"Content-Type": "application/xml"}
TEXT = {"Content-Type": "text/plain"}
VALID = {"subject": "Hello", "text": "World", "users": [{"id": ALICE}]}
COUNTED = (Conversation, Message, UserMessage, OutboxEvent, User, UserGroup, UserRole, OrganisationUnit)
pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


# ---------------------------------------------------------------- helpers


def counts(server: LiveServer) -> dict[str, int]:
    """Row counts of every table a request could write to, plus attachments in use."""
    with server.session() as session:
        found = {model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0) for model in COUNTED}
        found["assigned attachments"] = int(
            session.scalar(select(func.count()).select_from(FileResource).where(FileResource.assigned.is_(True))) or 0
        )
        return found


def assert_error(response: httpx.Response, status: int | None = None, message: str | None = None) -> dict[str, Any]:
    """A 4xx DHIS2 WebMessage with every field a client reads."""
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    else:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert {"httpStatus", "httpStatusCode", "status", "message"} <= body.keys(), body
    assert body["httpStatusCode"] == response.status_code
    assert body["status"] == "ERROR"
    assert isinstance(body["message"], str)
    assert body["message"]
    if message is not None:
        assert body["message"] == message
    return body


def upload(server: LiveServer, owner_uid: str, name: str) -> str:
    """An unassigned message attachment owned by `owner_uid`."""
    with server.session() as session:
        owner = session.scalar(select(User.id).where(User.uid == owner_uid))
        resource = FileResource(name=name, content=b"x", content_length=1, domain="MESSAGE_ATTACHMENT", created_by_id=owner)
        session.add(resource)
        session.commit()
        return resource.uid


# ---------------------------------------------------------------- malformed JSON and XML


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"subject": "x",}', b"not json", b'{"subject": "x"} trailing', b"\xff\xfe\x00garbage", b""],
)
def test_malformed_json_on_create_is_a_409_web_message_and_writes_nothing(server: LiveServer, raw: bytes) -> None:
    before = counts(server)
    assert_error(server.client().post(API, content=raw, headers=JSON), 409)
    assert counts(server) == before


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        (f"{API}/read", b"[\"ZjHHSjyyeJ2\""),
        (f"{API}/unread", b"{]"),
        (f"{API}/followup", b"ZjHHSjyyeJ2"),
        (f"{API}/unfollowup", b""),
        (f"{API}/ZjHHSjyyeJ2/recipients", b'{"users": [}'),
    ],
)
def test_malformed_json_elsewhere_is_a_400(server: LiveServer, path: str, raw: bytes) -> None:
    before = counts(server)
    assert_error(server.client().post(path, content=raw, headers=JSON), 400)
    assert counts(server) == before


def test_json_nested_beyond_reason_is_refused_not_a_crash(server: LiveServer) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    admin = server.client()
    assert_error(admin.post(API, content=deep, headers=JSON))
    assert_error(admin.post(f"{API}/read", content=deep, headers=JSON))
    assert_error(admin.post("/api/metadata", content=b'{"users":' + deep + b"}", headers=JSON))


@pytest.mark.parametrize(
    "raw",
    [
        b"<message><subject>x</subject>",
        b"<message><subject>x</subject></mesage>",
        b"just text",
        b'<?xml version="1.0" encoding="UTF-8"?>',
        b"<message>\xff</message>",
    ],
)
def test_malformed_xml_on_create_is_a_4xx_web_message(server: LiveServer, raw: bytes) -> None:
    before = counts(server)
    assert_error(server.client().post(API, content=raw, headers=XML), 409)
    assert counts(server) == before


def test_xml_with_the_wrong_root_element_is_refused(server: LiveServer) -> None:
    raw = f'<conversation xmlns="http://dhis2.org/schema/dxf/2.0"><subject>x</subject><users><user id="{ALICE}"/></users></conversation>'
    assert_error(server.client().post(API, content=raw, headers=XML), 409)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<message xmlns="http://dhis2.org/schema/dxf/2.0"><subject>&lol9;</subject><text>t</text>
<users><user id="OYLGMiazHtW"/></users></message>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE message [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<message xmlns="http://dhis2.org/schema/dxf/2.0"><subject>&secret;</subject><text>t</text>
<users><user id="OYLGMiazHtW"/></users></message>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE message SYSTEM "http://127.0.0.1:9/evil.dtd">
<message xmlns="http://dhis2.org/schema/dxf/2.0"><subject>s</subject><text>t</text>
<users><user id="OYLGMiazHtW"/></users></message>"""
PLAIN_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE message [<!ELEMENT message ANY>]>
<message xmlns="http://dhis2.org/schema/dxf/2.0"><subject>s</subject><text>t</text>
<users><user id="OYLGMiazHtW"/></users></message>"""


@pytest.mark.parametrize(
    "raw", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PLAIN_DTD], ids=["laughs", "entity", "external-dtd", "dtd"]
)
@pytest.mark.parametrize("content_type", ["application/xml", "text/xml"])
def test_xml_with_a_dtd_or_entities_is_refused_and_nothing_is_read_or_written(
    server: LiveServer, raw: bytes, content_type: str
) -> None:
    before = counts(server)
    response = server.client().post(API, content=raw, headers={"Content-Type": content_type})
    assert_error(response)
    assert "root:" not in response.text
    assert "lollol" not in response.text
    assert counts(server) == before


# ---------------------------------------------------------------- wrong JSON types


@pytest.mark.parametrize(
    "body",
    [
        {**VALID, "subject": 42},
        {**VALID, "subject": ["a"]},
        {**VALID, "subject": None},
        {**VALID, "text": {"nested": True}},
        {**VALID, "text": 7},
        {**VALID, "users": ALICE},
        {**VALID, "users": {"id": ALICE}},
        {**VALID, "users": [ALICE]},
        {**VALID, "users": [{"id": 12345}]},
        {**VALID, "users": [{"uid": ALICE}]},
        {**VALID, "users": [None]},
        {**VALID, "userGroups": "ZoHNWQajIoe"},
        {**VALID, "organisationUnits": [["DiszpKrYNg8"]]},
        {**VALID, "attachments": 5},
        {**VALID, "attachments": [{"name": "no id"}]},
        [VALID],
        "a string",
        None,
        42,
    ],
)
def test_wrongly_typed_create_bodies_are_a_409_and_write_nothing(server: LiveServer, body: Any) -> None:
    before = counts(server)
    assert_error(server.client().post(API, json=body), 409)
    assert counts(server) == before


@pytest.mark.parametrize(
    "body",
    [[1, 2], [None], [["ZjHHSjyyeJ2"]], {"ids": ["ZjHHSjyyeJ2"]}, "ZjHHSjyyeJ2", None, [{"id": "ZjHHSjyyeJ2"}]],
)
def test_read_and_follow_up_need_a_json_array_of_ids(server: LiveServer, body: Any) -> None:
    admin = server.client()
    for endpoint in ("read", "unread", "followup", "unfollowup"):
        assert_error(admin.post(f"{API}/{endpoint}", json=body), 400)


@pytest.mark.parametrize("body", [[], "users", {"users": "x"}, {"users": [1]}, {"organisationUnits": {"id": "x"}}])
def test_wrongly_typed_recipients_are_refused(server: LiveServer, body: Any) -> None:
    before = counts(server)
    assert_error(server.client().post(f"{API}/ZjHHSjyyeJ2/recipients", json=body))
    assert counts(server) == before


def test_nul_characters_are_refused_not_a_database_error(server: LiveServer) -> None:
    admin = server.client()
    before = counts(server)
    assert_error(admin.post(API, json={**VALID, "subject": "a\u0000b"}))
    assert_error(admin.post(API, json={**VALID, "text": "a\u0000b"}))
    assert_error(admin.post(API, json={**VALID, "users": [{"id": "OYLGM\u0000iazHtW"}]}))
    assert_error(admin.post(f"{API}/ZjHHSjyyeJ2", content=b"a\x00b", headers=TEXT))
    assert_error(admin.post(f"{API}/read", json=["ZjHH\u0000SjyyeJ2"]))
    assert_error(admin.get(API, params={"filter": "subject:eq:a\x00b"}))
    assert_error(admin.get(API, params={"queryString": "a\x00b"}))
    assert_error(admin.post(f"{API}/read", params={"user": "a\x00b"}, json=["ZjHHSjyyeJ2"]))
    assert_error(admin.delete(API, params={"mc": "ZjHH\x00SjyyeJ2"}))
    assert_error(admin.post(f"{API}/ZjHH%00SjyyeJ2", content="hi", headers=TEXT))
    assert_error(admin.post("/api/metadata", json={"userGroups": [{"name": "a\u0000b"}]}))
    assert counts(server) == before


def test_unpaired_surrogates_are_refused_not_a_crash(server: LiveServer) -> None:
    admin = server.client()
    before = counts(server)
    raw = b'{"subject": "a\\ud800b", "users": [{"id": "OYLGMiazHtW"}]}'
    assert_error(admin.post(API, content=raw, headers=JSON), 409)
    assert_error(admin.post(f"{API}/read", content=b'["\\udfff"]', headers=JSON), 400)
    assert counts(server) == before


def test_control_characters_in_stored_text_still_render_as_xml(server: LiveServer) -> None:
    admin = server.client()
    created = admin.post(API, json={**VALID, "subject": "bell\u0007 and tab\t"})
    assert created.status_code == 201
    uid = created.headers["Location"].rsplit("/", 1)[1]
    assert admin.post(f"{API}/{uid}", content="escape\x1b[31m", headers=TEXT).status_code == 200
    one = admin.get(f"{API}/{uid}.xml", params={"fields": "subject,messages[text]"})
    assert one.status_code == 200, one.text
    assert "bell\ufffd and tab\t" in one.text
    assert "escape\ufffd[31m" in one.text
    listed = admin.get(f"{API}.xml", params={"fields": "id,name", "filter": f"id:eq:{uid}"})
    assert listed.status_code == 200
    assert 'name="bell\ufffd and tab' in listed.text
    # JSON keeps the text as it was sent.
    assert admin.get(f"{API}/{uid}", params={"fields": "subject"}).json() == {"subject": "bell\u0007 and tab\t"}


def test_invalid_utf8_is_refused(server: LiveServer) -> None:
    admin = server.client()
    assert_error(admin.post(f"{API}/ZjHHSjyyeJ2", content=b"caf\xe9", headers=TEXT), 400)
    assert_error(admin.post(API, content=b'{"subject": "caf\xe9", "users": [{"id": "OYLGMiazHtW"}]}', headers=JSON), 409)


# ---------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": "abc"},
        {"page": "two"},
        {"filter": "subject"},
        {"filter": "subject:eq"},
        {"filter": "created:gt:yesterday"},
        {"filter": "messageCount:gt:many"},
        {"order": "subject:sideways"},
        {"order": "assignee.id:asc"},
        {"rootJunction": "XOR", "filter": "read:eq:true"},
        {"fields": "id,messages[text"},
        {"fields": "id,messages]"},
        {"fields": "id" + "[id" * 40 + "]" * 40},
        {"fields": "id~frobnicate"},
    ],
)
def test_bad_list_parameters_are_a_400(server: LiveServer, params: dict[str, str]) -> None:
    assert_error(server.client().get(API, params=params), 400)


def test_a_non_boolean_internal_flag_is_a_400(server: LiveServer) -> None:
    before = counts(server)
    assert_error(server.client().post(f"{API}/ZjHHSjyyeJ2", params={"internal": "maybe"}, content="x", headers=TEXT), 400)
    assert counts(server) == before


def test_out_of_range_paging_is_clamped_not_an_error(server: LiveServer) -> None:
    admin = server.client()
    assert admin.get(API, params={"page": "0"}).json()["pager"]["page"] == 1
    assert admin.get(API, params={"page": "-3"}).json()["pager"]["page"] == 1
    assert admin.get(API, params={"pageSize": "0"}).json()["pager"]["pageSize"] == 1
    assert admin.get(API, params={"pageSize": "99999999"}).status_code == 200


# ---------------------------------------------------------------- oversize bodies


def test_an_oversize_body_with_a_content_length_is_a_413_and_writes_nothing(server: LiveServer) -> None:
    limit = server.settings.max_body_bytes
    before = counts(server)
    admin = server.client()
    huge_text = "x" * (limit + 1)
    response = admin.post(API, json={**VALID, "text": huge_text})
    assert_error(response, 413)
    assert_error(admin.post(f"{API}/ZjHHSjyyeJ2", content=huge_text, headers=TEXT), 413)
    assert_error(admin.post("/api/metadata", content=b" " * (limit + 1), headers=JSON), 413)
    assert counts(server) == before
    # Just under the limit is fine.
    assert admin.post(f"{API}/ZjHHSjyyeJ2", content="y" * (limit - 1024), headers=TEXT).status_code == 200


def test_an_oversize_chunked_body_without_a_content_length_is_a_413_and_writes_nothing(server: LiveServer) -> None:
    limit = server.settings.max_body_bytes
    before = counts(server)

    def chunks() -> Iterator[bytes]:
        sent = 0
        while sent <= limit:
            piece = b"z" * 16_384
            sent += len(piece)
            yield piece

    response = server.client().post(f"{API}/ZjHHSjyyeJ2", content=chunks(), headers=TEXT)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413)
    assert counts(server) == before


def test_a_small_chunked_body_is_accepted(server: LiveServer) -> None:
    response = server.client().post(f"{API}/ZjHHSjyyeJ2", content=iter([b"in ", b"two parts"]), headers=TEXT)
    assert response.status_code == 200
    texts = server.client().get(f"{API}/ZjHHSjyyeJ2", params={"fields": "messages[text]"}).json()["messages"]
    assert texts[-1] == {"text": "in two parts"}


# ---------------------------------------------------------------- content types


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "image/png"]
)
def test_create_with_an_unsupported_content_type_is_a_415(server: LiveServer, content_type: str) -> None:
    before = counts(server)
    response = server.client().post(API, content=b'{"subject":"s","users":[{"id":"OYLGMiazHtW"}]}', headers={"Content-Type": content_type})
    assert_error(response, 415)
    assert counts(server) == before


def test_recipients_and_metadata_with_an_unsupported_content_type_are_a_415(server: LiveServer) -> None:
    admin = server.client()
    assert_error(admin.post(f"{API}/ZjHHSjyyeJ2/recipients", content=b"users=x", headers={"Content-Type": "text/plain"}), 415)
    assert_error(admin.post("/api/metadata", content=b"<metadata/>", headers=XML), 415)


# ---------------------------------------------------------------- unknown ids and nothing half-written


def test_a_create_failing_on_its_last_reference_writes_nothing(server: LiveServer) -> None:
    admin = server.client()
    before = counts(server)
    assert_error(admin.post(API, json={**VALID, "userGroups": [{"id": "noSuchGroup"}]}), 404)
    assert_error(admin.post(API, json={**VALID, "users": [{"id": ALICE}, {"id": "noSuchUser1"}]}), 409)
    assert counts(server) == before


def test_a_create_failing_on_its_second_attachment_leaves_the_first_unused(server: LiveServer) -> None:
    admin = server.client()
    first = upload(server, "xE7jOejl9FI", "first.txt")
    before = counts(server)
    response = admin.post(API, json={**VALID, "attachments": [first, "noSuchFile1"]})
    assert_error(response, 409, "Attachment 'noSuchFile1' not found.")
    assert counts(server) == before
    # The first one is still free to use.
    assert admin.post(API, json={**VALID, "attachments": [first]}).status_code == 201


def test_a_reply_failing_on_an_attachment_writes_no_message(server: LiveServer) -> None:
    admin = server.client()
    first = upload(server, "xE7jOejl9FI", "first.txt")
    before = counts(server)
    response = admin.post(f"{API}/ZjHHSjyyeJ2", params={"attachments": f"{first},noSuchFile1"}, content="x", headers=TEXT)
    assert_error(response, 409)
    assert counts(server) == before


def test_recipients_with_an_unknown_reference_stage_nothing(server: LiveServer) -> None:
    admin = server.client()
    before = counts(server)
    body = {"users": [{"id": MOBILE}], "userGroups": [{"id": "noSuchGroup"}]}
    assert_error(admin.post(f"{API}/ZrKML5WiyFm/recipients", json=body), 404)
    settle(server)
    assert counts(server) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{API}/AbCdEfGhIj1"),
        ("GET", f"{API}/%27%20OR%201%3D1"),
        ("POST", f"{API}/AbCdEfGhIj1"),
        ("POST", f"{API}/AbCdEfGhIj1/read"),
        ("POST", f"{API}/AbCdEfGhIj1/recipients"),
        ("DELETE", f"{API}/AbCdEfGhIj1"),
        ("DELETE", f"{API}/AbCdEfGhIj1/{ALICE}"),
        ("DELETE", f"{API}?mc=AbCdEfGhIj1"),
        ("GET", "/api/users/AbCdEfGhIj1"),
        ("GET", "/api/userGroups/AbCdEfGhIj1"),
        ("GET", "/api/organisationUnits/AbCdEfGhIj1"),
        ("GET", "/api/nothingHere"),
    ],
)
def test_unknown_ids_are_a_404_web_message(server: LiveServer, method: str, path: str) -> None:
    body = {"recipients": b"{}", "read": None}.get(path.rsplit("/", 1)[-1], b"x") if method == "POST" else None
    response = server.client().request(method, path, content=body, headers=JSON if body == b"{}" else TEXT)
    assert_error(response, 404)


def test_errors_for_anonymous_callers_are_web_messages_too(server: LiveServer) -> None:
    anonymous = server.client(None)
    assert_error(anonymous.get(API), 401)
    assert_error(anonymous.post(API, json=VALID), 401)
    assert_error(server.client("admin", "wrong").post(API, content=b"{", headers=JSON), 401)
