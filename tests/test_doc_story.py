"""The DHIS2 doc's story, end to end over HTTP, on PostgreSQL and on SQLite."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.conftest import LiveServer, wait_until

NS = {"d": "http://dhis2.org/schema/dxf/2.0"}
MESSAGE_XML = b"""<message xmlns="http://dhis2.org/schema/dxf/2.0">
  <subject>Mortality data reporting</subject>
  <text>Have you reported data for the Mortality data set for January 2014?</text>
  <users>
    <user id="PhzytPW3g2J" />
  </users>
</message>"""


def test_admin_writes_mobile_reads_and_replies_admin_manages_the_inbox(any_server: LiveServer) -> None:
    admin, mobile = any_server.client("admin"), any_server.client("mobile")

    created = admin.post("/api/33/messageConversations", content=MESSAGE_XML, headers={"Content-Type": "application/xml"})
    assert created.status_code == 201
    assert created.json() == {
        "httpStatus": "Created",
        "httpStatusCode": 201,
        "status": "OK",
        "message": "Message conversation created",
    }
    uid = created.headers["Location"].rsplit("/", 1)[1]
    assert created.headers["Location"] == f"{any_server.url}/api/messageConversations/{uid}"

    def mobile_sees_it() -> dict[str, str] | None:
        listing = mobile.get("/api/33/messageConversations", headers={"Accept": "application/xml"})
        assert listing.status_code == 200
        root = ET.fromstring(listing.content)
        return next((dict(c.attrib) for c in root.findall("d:messageConversation", NS) if c.get("id") == uid), None)

    entry = wait_until(mobile_sees_it, what="the worker to deliver to mobile's inbox")
    assert entry["name"] == "Mortality data reporting"
    assert entry["link"] == f"{any_server.url}/api/messageConversations/{uid}"

    one = mobile.get(f"/api/33/messageConversations/{uid}", params={"fields": "read,messages[text]"})
    assert one.json() == {
        "read": False,
        "messages": [{"text": "Have you reported data for the Mortality data set for January 2014?"}],
    }
    assert mobile.post("/api/messageConversations/read", json=[uid]).json() == {"markedRead": [uid]}

    reply = mobile.post(
        f"/api/33/messageConversations/{uid}",
        content="Yes the Mortality data set has been reported",
        headers={"Content-Type": "text/plain"},
    )
    assert reply.status_code == 200
    assert reply.json()["message"] == "Message conversation created"

    def admin_has_unread_reply() -> bool:
        body = admin.get(f"/api/messageConversations/{uid}", params={"fields": "read,messageCount"}).json()
        return body == {"read": False, "messageCount": 2}

    wait_until(admin_has_unread_reply, what="the reply to mark admin's copy unread")
    assert mobile.get(f"/api/messageConversations/{uid}", params={"fields": "read"}).json() == {"read": True}

    assert admin.post("/api/messageConversations/read", json=[uid]).json() == {"markedRead": [uid]}
    assert admin.post("/api/messageConversations/read", json=[uid]).json() == {"markedRead": []}
    assert admin.post("/api/messageConversations/unread", json=[uid]).json() == {"markedUnread": [uid]}

    found = admin.get("/api/messageConversations", params={"queryString": "mortality reported", "fields": "id"}).json()
    # Both tokens in one field: our new conversation and the demo's (whose text says "reported").
    assert {c["id"] for c in found["messageConversations"]} == {uid, "ZjHHSjyyeJ2"}
    by_sender = admin.get("/api/messageConversations", params={"queryString": "Mobile Us", "fields": "id"}).json()
    assert {c["id"] for c in by_sender["messageConversations"]} == {uid}

    removed = admin.delete(f"/api/messageConversations?mc={uid}&mc=ZjHHSjyyeJ2&mc=nonexistent")
    assert removed.json() == {"removed": [uid, "ZjHHSjyyeJ2"]}
    after = admin.get("/api/messageConversations", params={"fields": "id", "paging": "false"}).json()
    assert uid not in {c["id"] for c in after["messageConversations"]}
    assert "pager" not in after
    # Removal only removes the relation: mobile keeps the conversation and both messages.
    kept = mobile.get(f"/api/messageConversations/{uid}", params={"fields": "messageCount"}).json()
    assert kept == {"messageCount": 2}
