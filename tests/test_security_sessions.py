"""A password change or a disable ends every session of the user for good, and old passwords stop at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, serve
from tests.support.demo import ALICE
from tests.support.web import APP_HEADERS, logged_in

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")
NEW_PASSWORD = "Brand-new-pass-1"


def import_ok(server: LiveServer, payload: dict[str, Any]) -> None:
    response = server.client().post("/api/metadata", json=payload)
    assert response.status_code == 200, response.text


def session_works(client: httpx.Client) -> bool:
    response = client.get("/api/me", params={"fields": "id"}, headers=APP_HEADERS)
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def test_a_password_change_ends_every_session_of_the_user(any_server: LiveServer) -> None:
    first, second = logged_in(any_server, "alice"), logged_in(any_server, "alice")
    bystander = logged_in(any_server, "mobile")
    assert session_works(first) and session_works(second)
    import_ok(any_server, {"users": [{"id": ALICE, "password": NEW_PASSWORD}]})
    assert not session_works(first) and not session_works(second)
    assert session_works(bystander)
    assert session_works(logged_in(any_server, "alice", NEW_PASSWORD))


def test_re_enabling_a_disabled_user_does_not_bring_back_old_sessions(any_server: LiveServer) -> None:
    old = logged_in(any_server, "alice")
    import_ok(any_server, {"users": [{"id": ALICE, "disabled": True}]})
    assert not session_works(old)
    import_ok(any_server, {"users": [{"id": ALICE, "disabled": "false"}]})
    assert not session_works(old)
    assert session_works(logged_in(any_server, "alice"))


def test_the_old_password_stops_at_once_in_every_process(server: LiveServer) -> None:
    with serve(server.settings, server.engine) as other:
        here, there = server.client("alice"), other.client("alice")
        assert here.get("/api/me").status_code == 200 and there.get("/api/me").status_code == 200  # both cached
        import_ok(server, {"users": [{"id": ALICE, "password": NEW_PASSWORD}]})
        assert here.get("/api/me").status_code == 401
        assert there.get("/api/me").status_code == 401
        assert other.client("alice", NEW_PASSWORD).get("/api/me").status_code == 200
        other.close_clients()
