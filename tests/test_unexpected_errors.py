"""An exception nobody foresaw: a 500 WebMessage, logged once with the request id, the connection kept."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from sqlalchemy import Engine

from api.app import create_app
from tests.conftest import free_tcp_port, make_settings, reset_with_demo, wait_until

BOOM = "/api/testOnly/boom"


@pytest.fixture(scope="module")
def boom_url(pg_url: str, pg_engine: Engine) -> Iterator[tuple[str, int]]:
    """Herald with one extra route, built only here, that raises an error no handler knows."""
    reset_with_demo(pg_engine)
    app = create_app(make_settings(DATABASE_URL=pg_url), engine=pg_engine)

    def boom() -> None:
        raise RuntimeError("a bug nobody foresaw")

    app.add_api_route(BOOM, boom, methods=["GET", "POST"])
    port = free_tcp_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(10)


def _exchange(conn: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP/1.1 request on an open connection; read exactly one response."""
    conn.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def _get(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Authorization: Basic YWRtaW46ZGlzdHJpY3Q=", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_an_unforeseen_error_is_a_500_web_message_and_the_same_connection_serves_the_next_request(
    boom_url: tuple[str, int],
) -> None:
    with socket.create_connection(boom_url, timeout=30) as conn:
        status, headers, body = _exchange(conn, _get(BOOM))
        assert status == 500
        assert headers.get("connection", "").lower() != "close"
        assert json.loads(body) == {
            "httpStatus": "Internal Server Error",
            "httpStatusCode": 500,
            "status": "ERROR",
            "message": "An unexpected error occurred.",
        }
        status, _, body = _exchange(conn, _get("/api/system/ping"))
        assert status == 200, body
        status, _, body = _exchange(conn, _get(BOOM.replace("/api/", "/api/33/", 1)))
        assert status == 500, body
        status, _, body = _exchange(conn, _get("/api/me?fields=username"))
        assert (status, json.loads(body)) == (200, {"username": "admin"})


def test_an_unforeseen_error_is_logged_once_with_the_request_id(
    boom_url: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(boom_url, timeout=30) as conn:
        status, _, _ = _exchange(conn, _get(BOOM, "X-Request-Id: req-7f3a"))
        assert status == 500
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].name == "herald.api"
    assert "req-7f3a" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "a bug nobody foresaw" in str(errors[0].exc_info[1])
