"""A live Herald with an apps folder of its own, and HTTP clients that behave like the DHIS2 apps.

The DHIS2 app platform sends every call with `X-Requested-With: XMLHttpRequest` and
`Accept: application/json`, and authenticates with the JSESSIONID cookie it got from
`POST /api/auth/login` (messaging-app.md §3); `browser_like` clients do the same.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import LiveServer, make_settings, reset_with_demo, serve, settle

WEBAPP = Path(__file__).resolve().parent.parent / "webapp"
APP_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"}


def web_server(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory, **overrides: Any) -> Iterator[LiveServer]:
    """Herald on the run's PostgreSQL with HERALD_APPS_DIR in a temporary folder of its own."""
    apps_dir = tmp_path_factory.mktemp("apps")
    settings = make_settings(DATABASE_URL=pg_url, HERALD_APPS_DIR=apps_dir, **overrides)
    with serve(settings, pg_engine) as live:
        yield live


def fresh(server: LiveServer) -> Iterator[LiveServer]:
    """The server with the demo data and no installed apps; its clients closed and its outbox drained after."""
    reset_with_demo(server)
    shutil.rmtree(server.settings.apps_dir, ignore_errors=True)
    server.settings.apps_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield server
    finally:
        settle(server)
        server.close_clients()


def browser_like(server: LiveServer, **kwargs: Any) -> httpx.Client:
    """An anonymous client sending the app platform's headers; it keeps cookies like a browser."""
    client = server.client(None, headers=APP_HEADERS, **kwargs)
    return client


def logged_in(server: LiveServer, username: str = "admin", password: str = "district") -> httpx.Client:
    """A browser_like client after a successful `POST /api/auth/login`."""
    client = browser_like(server)
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    assert "JSESSIONID" in client.cookies
    return client
