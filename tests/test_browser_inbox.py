"""Headless Chromium against a live Herald: install the test web app, log in, see the inbox, log out.

The test app (tests/webapp) makes the DHIS2 app platform's calls in its order and shape
(messaging-app.md §2-§4). Installed through `POST /api/apps`, it is served at
/dhis-web-herald-test/ with its base URL filled in, exactly as the official app would be.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route
from sqlalchemy import Engine

from tests.conftest import LiveServer
from tests.support.browser import browser_page, require_chromium, zip_directory
from tests.support.web import WEBAPP, fresh, web_server

APP = "/dhis-web-herald-test/"
# Admin's PRIVATE folder in the demo data, newest first; 3 of them and 1 SYSTEM message unread.
ADMIN_PRIVATE = [
    "Monthly summary",
    "Data quality review",
    "Vaccination campaign",
    "Training schedule",
    "Stock levels",
    "Mortality data reporting",
]


@pytest.fixture(scope="module")
def web(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live Herald with its own apps folder."""
    require_chromium()  # skips locally without chromium, fails in CI
    yield from web_server(pg_url, pg_engine, tmp_path_factory)


@pytest.fixture
def site(web: LiveServer) -> Iterator[LiveServer]:
    """The module's server with fresh demo data and the test app installed through POST /api/apps."""
    for live in fresh(web):
        response = live.client("admin").post(
            "/api/apps", files={"file": ("herald-test-1.0.0.zip", zip_directory(WEBAPP), "application/zip")}
        )
        assert response.status_code == 204, response.text
        yield live


def sign_in(page: Page, username: str, password: str) -> None:
    """Fill and submit the app's login form."""
    page.wait_for_selector("body[data-state=login]")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login")


@pytest.mark.browser
def test_a_user_logs_in_sees_the_inbox_and_logs_out_in_chromium(site: LiveServer) -> None:
    with browser_page() as page:
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.goto(site.url + APP.rstrip("/"))  # the redirect adds the slash

        sign_in(page, "admin", "district")
        page.wait_for_selector("body[data-state=ready]")

        assert page.inner_text("#errors") == ""
        assert page.inner_text("#app-title") == "DHIS 2"
        assert page.inner_text("#user-name") == "John Traore"
        assert page.inner_text("#unread") == "4"  # me/dashboard: every unread conversation
        assert page.inner_text("#folder") == "PRIVATE"
        assert page.inner_text("#folder-unread") == "3"
        rows = page.query_selector_all("#inbox li.conversation")
        assert [row.inner_text() for row in rows] == ADMIN_PRIVATE
        assert [row.get_attribute("data-read") for row in rows] == ["true", "false", "true", "false", "false", "true"]
        assert "JSESSIONID" not in page.evaluate("document.cookie")  # HttpOnly: scripts cannot read it
        assert page.get_attribute("#logout", "href") == f"{site.url}/dhis-web-commons-security/logout.action"

        page.click("#logout")
        page.wait_for_selector("body[data-state=login]")

        assert page.url == site.url + APP
        assert page.is_visible("#login-form") and not page.is_visible("#inbox-section")
        assert [c["name"] for c in page.context.cookies() if c["name"] == "JSESSIONID"] == []
        page.reload()
        page.wait_for_selector("body[data-state=login]")  # the old session is gone, not just the cookie
        assert page_errors == []


@pytest.mark.browser
def test_the_older_form_login_works_when_login_config_is_unavailable(site: LiveServer) -> None:
    with browser_page() as page:

        def no_login_config(route: Route) -> None:
            route.fulfill(status=404, content_type="application/json", body='{"message":"Not found"}')

        page.route("**/api/loginConfig", no_login_config)  # an older server: the app posts the form
        form_posts: list[str] = []
        page.on("request", lambda r: form_posts.append(r.url) if r.url.endswith("login.action") else None)
        page.goto(site.url + APP)

        sign_in(page, "mobile", "district")
        page.wait_for_selector("body[data-state=ready]")

        assert form_posts == [f"{site.url}/dhis-web-commons-security/login.action"]
        assert page.inner_text("#errors") == ""
        assert page.inner_text("#user-name") == "Mobile User"
        subjects = [row.inner_text() for row in page.query_selector_all("#inbox li.conversation")]
        assert subjects == ["Monthly summary", "Mortality data reporting"]


@pytest.mark.browser
def test_a_wrong_password_keeps_the_login_form_with_herald_s_message(site: LiveServer) -> None:
    with browser_page() as page:
        page.goto(site.url + APP)

        sign_in(page, "admin", "wrong")
        page.wait_for_selector("#login-error:has-text('Bad credentials')")

        assert page.get_attribute("body", "data-state") == "login"
