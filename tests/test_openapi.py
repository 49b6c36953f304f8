"""/api/openapi.json: a valid OpenAPI 3 document describing bodies and answers; /api/docs renders offline."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest
from openapi_spec_validator import validate

from tests.conftest import LiveServer
from tests.support.browser import browser_page, require_chromium


@pytest.fixture
def document(any_server: LiveServer) -> dict[str, Any]:
    """The document as an anonymous client gets it."""
    response = any_server.client(None).get("/api/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def test_the_openapi_document_is_served_and_validates_as_openapi_3(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    validate(document)


def test_the_document_is_also_served_under_an_api_version(any_server: LiveServer) -> None:
    assert any_server.client(None).get("/api/33/openapi.json").json()["openapi"].startswith("3.")


def test_the_document_describes_json_and_xml_bodies_and_web_message_errors(document: dict[str, Any]) -> None:
    create = document["paths"]["/api/messageConversations"]["post"]
    assert {"application/json", "application/xml"} <= create["requestBody"]["content"].keys()
    draft = document["components"]["schemas"]["MessageDraft"]
    assert {"subject", "text", "users", "userGroups", "organisationUnits", "attachments"} <= draft["properties"].keys()
    reply = document["paths"]["/api/messageConversations/{uid}"]["post"]
    assert "text/plain" in reply["requestBody"]["content"]
    login = document["paths"]["/api/auth/login"]["post"]
    assert "application/json" in login["requestBody"]["content"]
    listing = document["paths"]["/api/users"]["get"]
    assert {"fields", "filter", "order", "page", "pageSize"} <= {p["name"] for p in listing["parameters"]}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert {"400", "500"} <= operation["responses"].keys(), (method, path)
            assert "422" not in operation["responses"], (method, path)


def test_every_post_that_reads_a_body_describes_it(document: dict[str, Any]) -> None:
    bodiless = {"/api/auth/logout", "/api/deliveries/{raw_id}/requeue", "/api/sms/twilio/status",
                "/api/auth/unlock", "/api/validation/sendNotifications",
                "/api/messageConversations/{uid}/status", "/api/messageConversations/{uid}/priority",
                "/api/messageConversations/{uid}/assign", "/api/messageConversations/{uid}/read",
                "/api/messageConversations/{uid}/unread", "/api/deliveries/requeue"}
    missing = [p for p, ops in document["paths"].items() if "post" in ops and "requestBody" not in ops["post"] and p not in bodiless]
    assert missing == []


def test_swagger_ui_assets_come_from_herald_not_a_cdn(any_server: LiveServer) -> None:
    client = any_server.client(None)
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        response = client.get(f"/api/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.content) > 10_000
    assert client.get("/api/docs/assets/..%2Fpyproject.toml").status_code == 404


@pytest.mark.browser
def test_swagger_ui_renders_in_headless_chromium_with_the_network_blocked(any_server: LiveServer) -> None:
    require_chromium()
    refused: list[str] = []
    with browser_page() as page:
        def only_loopback(route: Any) -> None:
            if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", only_loopback)
        page.goto(f"{any_server.url}/api/docs")
        page.wait_for_selector(".opblock-tag", timeout=20_000)
        tags = page.locator(".opblock-tag").all_inner_texts()
        assert any("directory" in tag for tag in tags), tags
        assert page.locator(".opblock").count() > 40
    assert refused == []
