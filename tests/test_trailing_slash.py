"""DECISIONS #24: `/api/.../` answers like the path without the slash, on every route, never a redirect."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer
from tests.support.demo import ALICE

API = "/api/messageConversations"
pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


def _create(server: LiveServer, path: str) -> str:
    client = server.client(follow_redirects=False)
    response = client.post(path, json={"subject": "Slash", "text": "Trailing", "users": [{"id": ALICE}]})
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


@pytest.mark.parametrize("prefix", ["/api", "/api/33"])
def test_a_create_with_a_trailing_slash_creates_the_conversation(any_server: LiveServer, prefix: str) -> None:
    uid = _create(any_server, f"{prefix}/messageConversations/")
    assert any_server.client().get(f"{API}/{uid}").json()["subject"] == "Slash"


@pytest.mark.parametrize("prefix", ["/api", "/api/33"])
def test_a_list_and_a_read_with_a_trailing_slash_answer_like_the_plain_paths(any_server: LiveServer, prefix: str) -> None:
    uid = _create(any_server, API)
    client = any_server.client(follow_redirects=False)
    params = {"fields": "id,subject", "order": "lastMessage:desc"}
    plain, slashed = client.get(f"{prefix}/messageConversations", params=params), client.get(f"{prefix}/messageConversations/", params=params)
    assert (plain.status_code, slashed.status_code) == (200, 200)
    assert slashed.json() == plain.json()
    assert {"id": uid, "subject": "Slash"} in slashed.json()["messageConversations"]
    one, one_slashed = client.get(f"{prefix}/messageConversations/{uid}"), client.get(f"{prefix}/messageConversations/{uid}/")
    assert one_slashed.status_code == 200
    assert one_slashed.json() == one.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/me/"),
        ("GET", "/api/users/"),
        ("GET", "/api/userGroups/"),
        ("GET", "/api/organisationUnits/"),
        ("GET", "/api/33/userLookup/?query=ali"),
        ("GET", "/api/system/info/"),
        ("GET", "/api/configuration/"),
        ("GET", "/api/userSettings/"),
        ("GET", "/api/apps/"),
        ("POST", f"{API}/read/"),
    ],
)
def test_other_routes_with_a_trailing_slash_answer_without_a_redirect(any_server: LiveServer, method: str, path: str) -> None:
    client = any_server.client(follow_redirects=False)
    content = b"[]" if method == "POST" else None
    slashed = client.request(method, path, content=content, headers={"Content-Type": "application/json"})
    plain = client.request(method, path.replace("/?", "?").rstrip("/"), content=content, headers={"Content-Type": "application/json"})
    assert slashed.status_code == plain.status_code, slashed.text
    assert slashed.status_code not in (301, 302, 307, 308), slashed.text
    assert slashed.content == plain.content or method == "GET"
    assert "location" not in slashed.headers


def test_a_reply_with_a_trailing_slash_is_stored(any_server: LiveServer) -> None:
    uid = _create(any_server, API)
    client = any_server.client(follow_redirects=False)
    response = client.post(f"/api/33/messageConversations/{uid}/", content="A reply", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    texts = [m["text"] for m in client.get(f"{API}/{uid}", params={"fields": "messages[text]"}).json()["messages"]]
    assert "A reply" in texts
