"""Links come from HERALD_BASE_URL or an allowed Host, never from a spoofed Host or X-Forwarded-Host; security headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, func, select

from messaging.models import Conversation
from tests.conftest import LiveServer, make_settings, reset_with_demo, serve
from tests.support.web import APP_HEADERS, logged_in, web_server
from tests.test_apps_api import notes_app, upload

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")
API = "/api/messageConversations"
TEXT = {"Content-Type": "text/plain"}
EVIL = "evil.example"
HOST_REFUSED = {
    "httpStatus": "Bad Request",
    "httpStatusCode": 400,
    "status": "ERROR",
    "message": "Host not allowed: set HERALD_BASE_URL, or add the host to HERALD_ALLOWED_HOSTS.",
}


def conversations(server: LiveServer) -> int:
    with server.session() as session:
        return int(session.scalar(select(func.count()).select_from(Conversation)) or 0)


def port_of(server: LiveServer) -> str:
    return server.url.rsplit(":", 1)[1]


@pytest.fixture
def based(server: LiveServer) -> Iterator[LiveServer]:
    """A second API process on the same database with HERALD_BASE_URL set."""
    settings = make_settings(DATABASE_URL=server.settings.database_url, HERALD_BASE_URL="https://herald.example.org/dhis")
    with serve(settings, server.engine) as live:
        yield live
        live.close_clients()


@pytest.mark.parametrize("host", [EVIL, f"{EVIL}:80", "127.0.0.1.evil.example", "", "[::2]:8080"])
def test_a_host_that_is_not_allowed_is_a_400_web_message(server: LiveServer, host: str) -> None:
    response = server.client().get("/api/system/info", headers={"Host": host})
    assert response.status_code == 400
    assert response.json() == HOST_REFUSED
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_spoofed_host_on_feedback_writes_nothing_and_leaks_no_location(server: LiveServer) -> None:
    before = conversations(server)
    response = server.client().post(f"{API}/feedback", params={"subject": "Hi"}, content="x", headers={**TEXT, "Host": EVIL})
    assert response.status_code == 400
    assert "location" not in response.headers
    assert conversations(server) == before


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_the_default_hosts_are_allowed_on_any_port(server: LiveServer, host: str) -> None:
    response = server.client().get("/api/system/info", headers={"Host": f"{host}:4321"})
    assert response.status_code == 200, response.text
    assert response.json()["contextPath"] == f"http://{host}:4321"


def test_x_forwarded_host_never_reaches_a_link(server: LiveServer) -> None:
    admin = server.client(headers={"X-Forwarded-Host": EVIL})
    own = f"http://127.0.0.1:{port_of(server)}"
    assert admin.get("/api/system/info").json()["contextPath"] == own
    feedback = admin.post(f"{API}/feedback", params={"subject": "Hi"}, content="x", headers=TEXT)
    assert feedback.status_code == 201
    assert feedback.headers["location"].startswith(f"{own}/api/messageConversations/")
    pager = admin.get(API, params={"pageSize": 1}).json()["pager"]
    assert pager["nextPage"].startswith(f"{own}/api/messageConversations")


def test_with_a_base_url_every_link_comes_from_it_whatever_the_host(based: LiveServer) -> None:
    reset_with_demo(based)
    base = "https://herald.example.org/dhis"
    admin = based.client(headers={"Host": EVIL, "X-Forwarded-Host": "other.example"})
    assert admin.get("/api/system/info").json()["contextPath"] == base
    feedback = admin.post(f"{API}/feedback", params={"subject": "Hi"}, content="x", headers=TEXT)
    assert feedback.headers["location"].startswith(f"{base}/api/messageConversations/")
    assert admin.get(API, params={"pageSize": 1}).json()["pager"]["nextPage"].startswith(base)


def test_an_operator_chosen_host_list_replaces_the_defaults(server: LiveServer) -> None:
    settings = make_settings(DATABASE_URL=server.settings.database_url, HERALD_ALLOWED_HOSTS="herald.example.org, Clinic.local")
    with serve(settings, server.engine) as live:
        admin = live.client()
        assert admin.get("/api/system/info", headers={"Host": "herald.example.org"}).status_code == 200
        assert admin.get("/api/system/info", headers={"Host": "clinic.local:8080"}).status_code == 200
        assert admin.get("/api/system/info").status_code == 400  # 127.0.0.1 is no longer listed
        live.close_clients()


def test_the_csrf_check_ignores_x_forwarded_host(server: LiveServer) -> None:
    client = logged_in(server)
    forged = client.post(
        f"{API}/read",
        json=["ZrKML5WiyFm"],
        headers={**APP_HEADERS, "Origin": f"http://{EVIL}", "X-Forwarded-Host": EVIL},
    )
    assert forged.status_code == 403, forged.text
    own = client.post(f"{API}/read", json=["ZrKML5WiyFm"], headers={**APP_HEADERS, "Origin": server.url})
    assert own.status_code == 200, own.text


def test_a_login_from_a_spoofed_forwarded_host_origin_is_refused(server: LiveServer) -> None:
    response = server.client(None).post(
        "/api/auth/login",
        json={"username": "admin", "password": "district"},
        headers={"Origin": f"http://{EVIL}", "X-Forwarded-Host": EVIL},
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


# ---------------------------------------------------------------- headers


def frame_protected(response: httpx.Response) -> bool:
    return response.headers.get("x-frame-options") == "SAMEORIGIN" and "frame-ancestors 'self'" in response.headers.get(
        "content-security-policy", ""
    )


def test_html_pages_cannot_be_framed_by_other_sites(server: LiveServer) -> None:
    page = server.client(None).get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert frame_protected(page)
    assert page.headers["x-content-type-options"] == "nosniff"


def test_every_answer_says_nosniff(server: LiveServer) -> None:
    anonymous, admin = server.client(None), server.client()
    for response in (
        admin.get("/api/me"),
        admin.get("/api/me.xml"),
        anonymous.get("/api/me"),
        anonymous.get("/api/loginConfig"),
        admin.get("/api/no/such/thing"),
        admin.post("/api/metadata", content=b"{", headers={"Content-Type": "application/json"}),
    ):
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
        assert "x-frame-options" not in response.headers  # not a page


def test_installed_app_pages_cannot_be_framed_and_name_the_trusted_base_url(
    pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for live in web_server(pg_url, pg_engine, tmp_path_factory):
        reset_with_demo(live)
        assert upload(live.client(), notes_app()).status_code == 204
        page = live.client(None, headers={"X-Forwarded-Host": EVIL}).get("/api/apps/notes/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert frame_protected(page)
        assert f'content="http://127.0.0.1:{port_of(live)}"' in page.text
        assert EVIL not in page.text
        live.close_clients()
