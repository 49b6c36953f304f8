"""What a Basic-auth caller may do follows the database at the next request, in every API process.

The argon2 check is cached per process (HERALD_AUTH_CACHE_S); the user, their roles and
authorities are read fresh with every request (issue 12), so nothing cached can outlive a change.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from messaging.db import make_engine
from tests.conftest import LiveServer, serve, serve_app
from tests.support.demo import ALICE

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")
CLERK, ROLE, PASSWORD = "freshClerk1", "freshRole01", "Fresh-pass-1"


def import_ok(server: LiveServer, payload: dict[str, Any]) -> None:
    response = server.client().post("/api/metadata", json=payload)
    assert response.status_code == 200, response.text


def authorities(client: httpx.Client) -> list[str]:
    response = client.get("/api/me", params={"fields": "authorities"})
    assert response.status_code == 200, response.text
    return list(response.json()["authorities"])


def can_import(client: httpx.Client) -> bool:
    response = client.post("/api/metadata", json={})
    assert response.status_code in (200, 403), response.text
    return response.status_code == 200


@pytest.fixture
def clerk(server: LiveServer) -> LiveServer:
    """A user whose only role grants F_METADATA_IMPORT."""
    import_ok(server, {
        "userRoles": [{"id": ROLE, "name": "Fresh importer", "authorities": ["F_METADATA_IMPORT"]}],
        "users": [{"id": CLERK, "username": "freshclerk", "password": PASSWORD, "userRoles": [{"id": ROLE}]}],
    })
    return server


def test_an_authority_taken_from_a_role_is_gone_at_the_next_request_in_another_process(clerk: LiveServer) -> None:
    with serve(clerk.settings, clerk.engine) as other:
        there = other.client("freshclerk", PASSWORD)
        assert authorities(there) == ["F_METADATA_IMPORT"] and can_import(there)  # the password check is cached now
        import_ok(clerk, {"userRoles": [{"id": ROLE, "name": "Fresh importer", "authorities": []}]})
        assert authorities(there) == []
        assert not can_import(there)
        import_ok(clerk, {"userRoles": [{"id": ROLE, "name": "Fresh importer", "authorities": ["F_METADATA_IMPORT"]}]})
        assert can_import(there)
        other.close_clients()


def test_a_role_taken_from_a_user_is_gone_at_the_next_request_in_another_process(clerk: LiveServer) -> None:
    with serve(clerk.settings, clerk.engine) as other:
        there = other.client("freshclerk", PASSWORD)
        assert can_import(there)
        import_ok(clerk, {"users": [{"id": CLERK, "userRoles": []}]})
        assert authorities(there) == []
        assert not can_import(there)
        other.close_clients()


def test_a_disabled_user_is_refused_at_the_next_request_in_another_process(clerk: LiveServer) -> None:
    with serve(clerk.settings, clerk.engine) as other:
        there = other.client("freshclerk", PASSWORD)
        assert can_import(there)
        import_ok(clerk, {"users": [{"id": CLERK, "disabled": True}]})
        assert there.get("/api/me").status_code == 401
        assert there.post("/api/messageConversations", json={"subject": "Hi", "users": [{"id": CLERK}]}).status_code == 401
        other.close_clients()


def test_a_renamed_user_is_no_longer_known_by_the_old_name(clerk: LiveServer) -> None:
    there = clerk.client("freshclerk", PASSWORD)
    assert can_import(there)
    import_ok(clerk, {"users": [{"id": CLERK, "username": "renamedclerk"}]})
    assert there.get("/api/me").status_code == 401
    assert authorities(clerk.client("renamedclerk", PASSWORD)) == ["F_METADATA_IMPORT"]


def test_a_request_after_the_database_dropped_every_connection_still_succeeds(server: LiveServer) -> None:
    # An API of its own (no in-process workers), so nothing else meets the dead connections first.
    engine = make_engine(server.settings.database_url, pool_size=2)
    try:
        with serve_app(create_app(server.settings, engine=engine)) as url, httpx.Client(
            base_url=url, auth=("admin", "district"), timeout=30
        ) as client:
            assert client.get("/api/me", params={"fields": "id"}).status_code == 200  # the pool holds a connection
            with server.engine.connect() as conn:  # what a database restart does to idle connections
                conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ))
            # No ping on checkout: the first statement meets a dead connection and runs again on a new one.
            assert client.get("/api/me", params={"fields": "id"}).status_code == 200
            created = client.post("/api/messageConversations", json={"subject": "Hi", "users": [{"id": ALICE}]})
            assert created.status_code == 201, created.text
    finally:
        engine.dispose()
