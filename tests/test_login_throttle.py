"""Failed logins are throttled per username and per address, across API processes, and the lock lifts by itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from messaging.models import LoginFailure
from tests.conftest import LiveServer, make_settings, serve

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")
LOCKED = "This account is temporarily locked after too many failed logins; try again in 15 minutes."

Attempt = Callable[[LiveServer, str, str], httpx.Response]


def basic(server: LiveServer, username: str, password: str) -> httpx.Response:
    return server.client(username, password).get("/api/me", params={"fields": "id"})


def json_login(server: LiveServer, username: str, password: str) -> httpx.Response:
    return server.client(None).post("/api/auth/login", json={"username": username, "password": password})


def form_login(server: LiveServer, username: str, password: str) -> httpx.Response:
    return server.client(None).post(
        "/dhis-web-commons-security/login.action", data={"j_username": username, "j_password": password}
    )


WAYS_IN: dict[str, Attempt] = {"basic": basic, "json": json_login, "form": form_login}


def assert_locked(response: httpx.Response, message: str = LOCKED) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {
        "httpStatus": "Too Many Requests",
        "httpStatusCode": 429,
        "status": "ERROR",
        "message": message,
    }
    assert 1 <= int(response.headers["retry-after"]) <= 900


def fail(server: LiveServer, username: str, times: int, way: Attempt = basic) -> None:
    for _ in range(times):
        assert way(server, username, "wrong-password").status_code == 401


def test_five_wrong_passwords_lock_the_username_on_every_way_in(any_server: LiveServer) -> None:
    fail(any_server, "alice", 2, basic)
    fail(any_server, "alice", 2, json_login)
    fail(any_server, "alice", 1, form_login)
    for name, way in WAYS_IN.items():
        assert_locked(way(any_server, "alice", "district")), name  # the right password too
        assert_locked(way(any_server, "alice", "wrong-password")), name
    assert basic(any_server, "mobile", "district").status_code == 200  # other users are untouched


def test_four_wrong_passwords_do_not_lock_and_a_right_one_starts_the_count_again(any_server: LiveServer) -> None:
    fail(any_server, "alice", 4)
    assert json_login(any_server, "alice", "district").status_code == 200
    fail(any_server, "alice", 4)
    assert basic(any_server, "alice", "district").status_code == 200


def test_logins_with_the_right_password_never_count(any_server: LiveServer) -> None:
    for _ in range(12):
        assert json_login(any_server, "admin", "district").status_code == 200
        assert basic(any_server, "admin", "district").status_code == 200
    with any_server.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0


def test_failures_in_two_api_processes_add_up_to_one_lock(any_server: LiveServer) -> None:
    with serve(any_server.settings, any_server.engine) as other:
        fail(any_server, "alice", 3)
        fail(other, "alice", 2, json_login)
        assert_locked(basic(any_server, "alice", "district"))
        assert_locked(basic(other, "alice", "district"))
        other.close_clients()


def test_the_lock_lifts_by_itself_when_the_window_has_passed(any_server: LiveServer) -> None:
    fail(any_server, "alice", 5)
    assert_locked(basic(any_server, "alice", "district"))
    with any_server.session() as session:  # fifteen minutes pass
        session.execute(update(LoginFailure).values(failed_at=LoginFailure.failed_at - timedelta(seconds=901)))
        session.commit()
    assert basic(any_server, "alice", "district").status_code == 200


def test_an_unknown_username_is_locked_like_a_known_one(any_server: LiveServer) -> None:
    fail(any_server, "nobody", 5, json_login)
    assert_locked(json_login(any_server, "nobody", "district"))


def test_one_address_cannot_spray_many_usernames(server: LiveServer) -> None:
    settings = make_settings(DATABASE_URL=server.settings.database_url, HERALD_LOGIN_MAX_ADDRESS_FAILURES=3)
    with serve(settings, server.engine) as strict:
        for username in ("alice", "ibrahim", "fatmata"):
            fail(strict, username, 1)
        assert_locked(
            basic(strict, "admin", "district"),
            "Logins from this address are temporarily locked after too many failed logins; try again in 15 minutes.",
        )
        strict.close_clients()
    assert basic(server, "admin", "district").status_code == 200  # the default limit, 100, is far off


def test_an_administrator_unlocks_a_user_at_once(any_server: LiveServer) -> None:
    fail(any_server, "alice", 5)
    refused = any_server.client("mobile").post("/api/auth/unlock", params={"username": "alice"})
    assert refused.status_code == 403
    response = any_server.client("admin").post("/api/auth/unlock", params={"username": "alice"})
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Unlocked; 5 failed logins forgotten."
    assert basic(any_server, "alice", "district").status_code == 200
    assert any_server.client("admin").post("/api/auth/unlock").status_code == 400


def test_the_limits_are_settings() -> None:
    settings = make_settings(
        HERALD_LOGIN_MAX_FAILURES=3, HERALD_LOGIN_WINDOW_S=60, HERALD_LOGIN_MAX_ADDRESS_FAILURES=50
    )
    assert (settings.login_max_failures, settings.login_window_s, settings.login_max_address_failures) == (3, 60.0, 50)
    defaults = make_settings()
    assert (defaults.login_max_failures, defaults.login_window_s, defaults.login_max_address_failures) == (5, 900.0, 100)
