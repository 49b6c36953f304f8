"""The browser harness and the test web app, against a stdlib stand-in server (no Herald).

The stand-in serves tests/webapp at /dhis-web-herald-test/ with its placeholder untouched and
answers the API the way messaging-app.md §3-§5 says the minimal server did.
"""

from __future__ import annotations

import functools
import io
import json
import secrets
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from messaging import apps
from tests.support.browser import browser_page, require_chromium, zip_directory

WEBAPP = Path(__file__).parent / "webapp"
PREFIX = "/dhis-web-herald-test"
LIST_QUERY = (
    "filter=messageType%3Aeq%3APRIVATE&pageSize=35&page=1&fields=id,displayName,subject,messageType,"
    "lastSender%5Bid%2C%20displayName%5D,assignee%5Bid%2C%20displayName%5D,status,priority,"
    "lastUpdated,read,lastMessage,followUp&order=lastMessage%3Adesc"
)
CONVERSATIONS = [
    {
        "id": "Kq3vL8xPb2T",
        "subject": "Stock-out at Ngelehun",
        "read": False,
        "lastSender": {"id": "xE7jOejl9FI", "displayName": "Alice Banda"},
    },
    {"id": "Rw5tN1yQc7U", "subject": "Weekly report", "read": True},
]
ME = {
    "id": "M5zQapPyTZI",
    "name": "John Traore",
    "email": "john@example.org",
    "authorities": ["ALL"],
    "userGroups": [{"id": "QYrzIjSfI8z"}],
    "settings": {"keyUiLocale": "en"},
}
SHELL_ANSWERS: dict[str, Any] = {
    "/api/42/userSettings": {"keyUiLocale": "en"},
    "/api/42/me": ME,
    "/api/42/systemSettings/applicationTitle": {"applicationTitle": "Herald"},
    "/api/42/systemSettings/helpPageLink": {"helpPageLink": "https://docs.dhis2.org"},
    "/dhis-web-commons/menu/getModules.action": {"modules": []},
    "/api/42/me/dashboard": {"unreadInterpretations": 0, "unreadMessageConversations": 3},
    "/api/42/configuration": {"feedbackRecipients": {"id": "QYrzIjSfI8z"}},
    "/api/42/system/info": {"version": "2.42.0", "serverDate": "2026-11-26T20:45:00.000"},
}


@dataclass
class StandIn:
    """What the stand-in server was asked; with `accepts_logins` False no login succeeds."""

    base_url: str
    accepts_logins: bool
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)

    def paths(self) -> list[str]:
        return [target for _, target, _ in self.requests]


class _Handler(SimpleHTTPRequestHandler):
    stand_in: StandIn
    extensions_map = {
        ".js": "text/javascript",
        ".css": "text/css",
        ".html": "text/html",
        ".webapp": "application/json",
        "": "application/octet-stream",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output clean

    def do_GET(self) -> None:
        self._record()
        path = urlsplit(self.path).path
        if path == PREFIX or path.startswith(PREFIX + "/"):
            self.path = self.path[len(PREFIX) :] or "/"
            if path == PREFIX:  # like DHIS2: the app folder needs its trailing slash
                self._send(HTTPStatus.MOVED_PERMANENTLY, None, {"Location": PREFIX + "/"})
                return
            super().do_GET()
        elif path == "/api/loginConfig":
            self._send(200, {"apiVersion": "2.42.0", "uiLocale": "en"})
        elif not self._signed_in():
            self._send(
                401,
                {
                    "httpStatus": "Unauthorized",
                    "httpStatusCode": 401,
                    "status": "ERROR",
                    "message": "Unauthorized",
                },
            )
        elif path == "/api/system/info":
            self._send(200, SHELL_ANSWERS["/api/42/system/info"])
        elif path == "/api/42/messageConversations":
            conversations = CONVERSATIONS if "pageSize=35" in self.path else []
            unread = sum(1 for c in CONVERSATIONS if not c["read"])
            total = len(conversations) if conversations else unread
            self._send(
                200,
                {
                    "pager": {"page": 1, "pageCount": 1, "total": total, "pageSize": 35},
                    "messageConversations": conversations,
                },
            )
        elif path in SHELL_ANSWERS:
            self._send(200, SHELL_ANSWERS[path])
        else:
            self._send(404, {"httpStatusCode": 404, "status": "ERROR", "message": "Not found"})

    def do_POST(self) -> None:
        self._record()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if urlsplit(self.path).path != "/api/auth/login" or not self.stand_in.accepts_logins:
            self._send(404, {"status": "ERROR", "message": "Not found"})
            return
        credentials = json.loads(body)
        if credentials != {"username": "admin", "password": "district"}:
            self._send(401, {"status": "ERROR", "message": "Invalid username or password"})
            return
        session = secrets.token_hex(16)
        self.stand_in.sessions.add(session)
        self._send(
            200,
            {"loginStatus": "SUCCESS", "redirectUrl": "/dhis-web-dashboard/"},
            {"Set-Cookie": f"JSESSIONID={session}; Path=/; HttpOnly; SameSite=Lax"},
        )

    def _record(self) -> None:
        self.stand_in.requests.append((self.command, self.path, dict(self.headers.items())))

    def _signed_in(self) -> bool:
        cookies = dict(
            part.strip().split("=", 1) for part in self.headers.get("Cookie", "").split(";") if "=" in part
        )
        return cookies.get("JSESSIONID") in self.stand_in.sessions

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _serve(accepts_logins: bool) -> Iterator[StandIn]:
    require_chromium()
    handler: type[_Handler] = type("Handler", (_Handler,), {})  # one stand-in per class
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(WEBAPP)))
    stand_in = StandIn(base_url=f"http://127.0.0.1:{server.server_address[1]}", accepts_logins=accepts_logins)
    handler.stand_in = stand_in
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def signed_out_server() -> Iterator[StandIn]:
    """A stand-in whose /api/system/info always answers 401."""
    yield from _serve(accepts_logins=False)


@pytest.fixture
def minimal_server() -> Iterator[StandIn]:
    """A stand-in that signs in admin/district and answers the start-up calls."""
    yield from _serve(accepts_logins=True)


@pytest.mark.browser
def test_the_test_app_shows_the_login_form_when_system_info_answers_401(signed_out_server: StandIn) -> None:
    with browser_page() as page:
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.goto(signed_out_server.base_url + PREFIX)
        page.wait_for_selector("body[data-state=login]")

        assert page.is_visible("#login-form")
        assert page.is_visible("#username") and page.is_visible("#password") and page.is_visible("#login")
        assert page.inner_text("#errors") == ""
        assert page_errors == []
    probe = next(
        headers for method, target, headers in signed_out_server.requests if target == "/api/system/info"
    )
    assert probe["X-Requested-With"] == "XMLHttpRequest"
    assert probe["Accept"] == "application/json"
    assert f"{PREFIX}/assets/app-1a2b3c4d5e.js" in signed_out_server.paths()


@pytest.mark.browser
def test_the_test_app_signs_in_and_lists_the_inbox_of_a_minimal_server(minimal_server: StandIn) -> None:
    with browser_page() as page:
        page.goto(minimal_server.base_url + PREFIX + "/")
        page.wait_for_selector("body[data-state=login]")
        page.fill("#username", "admin")
        page.fill("#password", "district")
        page.click("#login")
        page.wait_for_selector("body[data-state=ready]")

        assert page.inner_text("#errors") == ""
        assert page.inner_text("#user-name") == "John Traore"
        assert page.inner_text("#unread") == "3"
        assert page.inner_text("#folder-unread") == "1"
        rows = page.query_selector_all("#inbox li.conversation")
        assert [row.get_attribute("data-id") for row in rows] == ["Kq3vL8xPb2T", "Rw5tN1yQc7U"]
        assert [row.inner_text() for row in rows] == ["Stock-out at Ngelehun", "Weekly report"]
        assert page.get_attribute("#logout", "href") == "../dhis-web-commons-security/logout.action"
    assert f"/api/42/messageConversations?{LIST_QUERY}" in minimal_server.paths()
    assert "/api/42/me?fields=id,authorities,userGroups%5Bid%5D" in minimal_server.paths()


@pytest.mark.browser
def test_a_wrong_password_keeps_the_login_form_and_shows_the_server_message(minimal_server: StandIn) -> None:
    with browser_page() as page:
        page.goto(minimal_server.base_url + PREFIX + "/")
        page.wait_for_selector("body[data-state=login]")
        page.fill("#username", "admin")
        page.fill("#password", "wrong")
        page.click("#login")
        page.wait_for_selector("#login-error:has-text('Invalid username or password')")

        assert page.get_attribute("body", "data-state") == "login"


def test_zip_directory_packs_the_test_app_with_its_manifest_at_the_root() -> None:
    with zipfile.ZipFile(io.BytesIO(zip_directory(WEBAPP))) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.webapp"))
    assert {"manifest.webapp", "index.html", "assets/app-1a2b3c4d5e.js"} <= set(names)
    assert manifest["short_name"] == "herald-test" and manifest["core_app"] is True


def test_zip_directory_can_nest_the_app_in_one_top_level_folder() -> None:
    with zipfile.ZipFile(io.BytesIO(zip_directory(WEBAPP, folder="herald-test-1.0.0"))) as archive:
        assert all(name.startswith("herald-test-1.0.0/") for name in archive.namelist())


def test_zip_directory_gives_the_same_bytes_for_the_same_folder() -> None:
    assert zip_directory(WEBAPP) == zip_directory(WEBAPP)


def test_the_test_app_installs_as_a_core_app_at_dhis_web_herald_test(tmp_path: Path) -> None:
    app = apps.install_zip(zip_directory(WEBAPP, folder="herald-test"), tmp_path, max_bytes=1024 * 1024)

    assert (app.key, app.core_app, app.launch_path) == ("herald-test", True, "/dhis-web-herald-test/")
    index = apps.resolve_asset(app, "")
    assert index is not None
    rendered = apps.render_index(app, index.read_bytes(), "..")
    assert b'<meta name="dhis2-base-url" content="..">' in rendered
    assert apps.cache_control_for("assets/app-1a2b3c4d5e.js") == apps.IMMUTABLE
