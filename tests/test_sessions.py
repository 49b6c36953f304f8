"""Browser sessions: JSON and form login, the cookie's flags, fixation, CSRF, logout everywhere."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine, select, update

from messaging.models import Conversation, User, UserMessage, WebSession, utcnow
from tests.conftest import LiveServer, serve
from tests.support.web import APP_HEADERS, browser_like, fresh, logged_in, web_server

ADMIN = "xE7jOejl9FI"
UNREAD_STOCK = "ZrKML5WiyFm"  # "Stock levels": unread in admin's inbox in the demo data


@pytest.fixture(scope="module")
def web(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live Herald of this module's own."""
    yield from web_server(pg_url, pg_engine, tmp_path_factory)


@pytest.fixture
def site(web: LiveServer) -> Iterator[LiveServer]:
    """The module's server with fresh demo data."""
    yield from fresh(web)


def set_cookie_header(response: httpx.Response) -> str:
    """The one Set-Cookie header of a response that sets JSESSIONID."""
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith("JSESSIONID=")]
    assert len(headers) == 1, response.headers
    return headers[0]


def cookie_value(response: httpx.Response) -> str:
    """The JSESSIONID value a response sets."""
    return set_cookie_header(response).split(";", 1)[0].split("=", 1)[1]


def with_cookie(server: LiveServer, token: str, **headers: str) -> httpx.Client:
    """A fresh client presenting only this JSESSIONID (another browser, or a stolen cookie)."""
    client = server.client(None, headers=headers)
    client.cookies.set("JSESSIONID", token)
    return client


def is_unread(server: LiveServer, conversation_uid: str, user_uid: str = ADMIN) -> bool:
    """The user's read flag on a conversation, from the database."""
    with server.session() as session:
        read = session.scalar(
            select(UserMessage.read)
            .join(Conversation, Conversation.id == UserMessage.conversation_id)
            .join(User, User.id == UserMessage.user_id)
            .where(Conversation.uid == conversation_uid, User.uid == user_uid)
        )
    return read is False


# ---------------------------------------------------------------- login


def test_the_json_login_answers_200_success_and_sets_an_httponly_samesite_lax_session_cookie(site: LiveServer) -> None:
    response = browser_like(site).post("/api/auth/login", json={"username": "admin", "password": "district"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"loginStatus": "SUCCESS", "redirectUrl": "/"}
    attributes = [part.strip().lower() for part in set_cookie_header(response).split(";")[1:]]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain HTTP here
    assert not any(a.startswith(("max-age", "expires")) for a in attributes)  # dies with the browser


def test_the_cookie_is_secure_when_a_proxy_says_the_browser_used_https(site: LiveServer) -> None:
    response = browser_like(site).post(
        "/api/auth/login", json={"username": "admin", "password": "district"}, headers={"X-Forwarded-Proto": "https"}
    )

    assert response.status_code == 200
    assert "secure" in [part.strip().lower() for part in set_cookie_header(response).split(";")]


def test_the_session_cookie_alone_authenticates_the_api_calls_of_the_app(site: LiveServer) -> None:
    client = logged_in(site)

    me = client.get("/api/42/me", params={"fields": "id,name"})
    assert me.status_code == 200
    assert me.json() == {"id": ADMIN, "name": "John Traore"}
    assert client.get("/api/system/info").json()["version"].startswith("2.")


def test_the_form_login_redirects_to_the_root_with_the_session_cookie(site: LiveServer) -> None:
    client = browser_like(site)
    response = client.post(
        "/dhis-web-commons-security/login.action", data={"j_username": "mobile", "j_password": "district"}
    )

    assert response.status_code == 302
    assert response.headers["location"] == "/"
    assert "httponly" in set_cookie_header(response).lower()
    assert client.get("/api/me", params={"fields": "username"}).json() == {"username": "mobile"}


@pytest.mark.parametrize(
    ("username", "password"), [("admin", "wrong"), ("nobody", "district"), ("admin", ""), ("", "district")]
)
def test_bad_credentials_get_a_401_json_message_without_a_cookie_or_a_basic_challenge(
    site: LiveServer, username: str, password: str
) -> None:
    for response in (
        browser_like(site).post("/api/auth/login", json={"username": username, "password": password}),
        browser_like(site).post(
            "/dhis-web-commons-security/login.action", data={"j_username": username, "j_password": password}
        ),
    ):
        assert response.status_code == 401
        assert response.json()["message"] == "Bad credentials"
        assert "www-authenticate" not in response.headers
        assert "set-cookie" not in response.headers


def test_a_disabled_user_cannot_log_in_and_loses_the_session_they_had(site: LiveServer) -> None:
    client = logged_in(site, "mobile")
    with site.session() as session:
        session.execute(update(User).where(User.username == "mobile").values(disabled=True))
        session.commit()

    assert client.get("/api/me").status_code == 401
    refused = browser_like(site).post("/api/auth/login", json={"username": "mobile", "password": "district"})
    assert refused.status_code == 401 and refused.json()["message"] == "Bad credentials"


def test_a_login_body_that_is_not_a_json_object_is_a_400(site: LiveServer) -> None:
    client = browser_like(site)
    assert client.post("/api/auth/login", content=b"username=admin").status_code == 400
    assert client.post("/api/auth/login", json=["admin", "district"]).status_code == 400


def test_the_database_keeps_only_the_sha256_of_the_session_token(site: LiveServer) -> None:
    token = logged_in(site).cookies["JSESSIONID"]

    with site.session() as session:
        rows = session.scalars(select(WebSession)).all()
    assert [row.token_hash for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert all(token not in (row.token_hash, row.csrf_token) for row in rows)
    assert len(token) >= 40  # 32 random bytes


def test_a_session_ends_after_its_lifetime(site: LiveServer) -> None:
    client = logged_in(site)
    with site.session() as session:
        session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()

    assert client.get("/api/me").status_code == 401


def test_login_config_is_public_and_names_the_api_version(site: LiveServer) -> None:
    response = site.client(None).get("/api/loginConfig")

    assert response.status_code == 200
    assert response.json()["apiVersion"].startswith("2.")
    assert response.json()["uiLocale"] == "en"


# ---------------------------------------------------------------- session fixation


def test_login_never_adopts_the_cookie_the_browser_brought(site: LiveServer) -> None:
    planted = "attacker-chosen-session-id-0123456789abcdef"
    client = browser_like(site)
    client.cookies.set("JSESSIONID", planted)

    response = client.post("/api/auth/login", json={"username": "admin", "password": "district"})

    assert response.status_code == 200
    assert cookie_value(response) != planted
    assert with_cookie(site, planted, **APP_HEADERS).get("/api/me").status_code == 401
    assert with_cookie(site, cookie_value(response), **APP_HEADERS).get("/api/me").status_code == 200


def test_logging_in_again_ends_the_session_the_browser_had(site: LiveServer) -> None:
    client = logged_in(site)
    first = client.cookies["JSESSIONID"]

    second = client.post("/api/auth/login", json={"username": "mobile", "password": "district"})

    assert cookie_value(second) != first
    assert with_cookie(site, first, **APP_HEADERS).get("/api/me").status_code == 401
    assert client.get("/api/me", params={"fields": "username"}).json() == {"username": "mobile"}


# ---------------------------------------------------------------- CSRF


def test_a_cookie_request_that_changes_data_without_x_requested_with_is_refused(site: LiveServer) -> None:
    token = logged_in(site).cookies["JSESSIONID"]
    forged = with_cookie(site, token, Accept="application/json")  # what a cross-site form can send

    response = forged.post("/api/messageConversations/read", json=[UNREAD_STOCK])

    assert response.status_code == 403
    assert "X-Requested-With" in response.json()["message"]
    assert is_unread(site, UNREAD_STOCK)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page.html"},
    ],
)
def test_a_cookie_request_from_another_site_is_refused_even_with_x_requested_with(
    site: LiveServer, headers: dict[str, str]
) -> None:
    client = logged_in(site)

    response = client.post("/api/messageConversations/read", json=[UNREAD_STOCK], headers=headers)

    assert response.status_code == 403
    assert response.json()["message"] == "Cross-site request refused: its Origin is not this server."
    assert is_unread(site, UNREAD_STOCK)


def test_a_cookie_request_from_our_own_pages_changes_data(site: LiveServer) -> None:
    client = logged_in(site)

    response = client.post(
        "/api/messageConversations/read",
        json=[UNREAD_STOCK],
        headers={"Origin": site.url, "Referer": f"{site.url}/dhis-web-messaging/"},
    )

    assert response.status_code == 200
    assert response.json() == {"markedRead": [UNREAD_STOCK]}


def test_safe_methods_need_no_x_requested_with(site: LiveServer) -> None:
    token = logged_in(site).cookies["JSESSIONID"]

    assert with_cookie(site, token).get("/api/me", params={"fields": "id"}).json() == {"id": ADMIN}


def test_basic_auth_requests_are_exempt_from_the_csrf_check(site: LiveServer) -> None:
    response = site.client("admin").post(
        "/api/messageConversations/read", json=[UNREAD_STOCK], headers={"Origin": "https://evil.example"}
    )

    assert response.status_code == 200


def test_a_login_posted_from_another_site_is_refused(site: LiveServer) -> None:
    response = browser_like(site).post(
        "/dhis-web-commons-security/login.action",
        data={"j_username": "admin", "j_password": "district"},
        headers={"Origin": "https://evil.example"},
    )

    assert response.status_code == 403
    assert "set-cookie" not in response.headers


# ---------------------------------------------------------------- logout and unauthenticated browsers


def test_logout_ends_the_session_in_every_process_and_the_old_cookie_gets_401_json(
    site: LiveServer, pg_engine: Engine
) -> None:
    client = logged_in(site)
    token = client.cookies["JSESSIONID"]
    with serve(site.settings, pg_engine) as other_process:
        elsewhere = with_cookie(other_process, token, **APP_HEADERS)
        assert elsewhere.get("/api/me", params={"fields": "id"}).json() == {"id": ADMIN}

        response = client.get("/dhis-web-commons-security/logout.action")

        assert response.status_code == 302 and response.headers["location"] == "/"
        assert cookie_value(response) in ("", '""')
        for stale in (with_cookie(site, token), with_cookie(site, token, **APP_HEADERS), elsewhere):
            answer = stale.get("/api/system/info")
            assert answer.status_code == 401
            assert answer.headers["content-type"].startswith("application/json")
            assert answer.json()["httpStatusCode"] == 401
            assert "www-authenticate" not in answer.headers
        other_process.close_clients()


def test_the_api_logout_ends_the_session_too(site: LiveServer) -> None:
    client = logged_in(site)
    token = client.cookies["JSESSIONID"]

    response = client.post("/api/auth/logout")

    assert response.status_code == 302
    assert with_cookie(site, token, **APP_HEADERS).get("/api/me").status_code == 401


def test_the_api_logout_with_a_cookie_is_csrf_checked(site: LiveServer) -> None:
    token = logged_in(site).cookies["JSESSIONID"]

    assert with_cookie(site, token).post("/api/auth/logout").status_code == 403
    assert with_cookie(site, token, **APP_HEADERS).get("/api/me").status_code == 200


def test_an_anonymous_app_call_gets_401_json_without_a_basic_challenge_but_curl_gets_one(site: LiveServer) -> None:
    from_the_app = browser_like(site).get("/api/system/info")
    from_curl = site.client(None).get("/api/system/info")

    assert from_the_app.status_code == 401 and "www-authenticate" not in from_the_app.headers
    assert from_the_app.json()["message"] == "Unauthorized"
    assert from_curl.status_code == 401 and from_curl.headers["www-authenticate"].startswith("Basic")
