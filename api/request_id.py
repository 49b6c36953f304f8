"""The request id: taken from a sane incoming X-Request-Id or made up, echoed back, and set for the request's work.

Everything the request causes carries it: its log lines, the outbox events it stages (see
``messaging.context``), and through them the workers' jobs and their log lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from messaging import context

HEADER = b"x-request-id"
Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Any], Callable[[dict[str, Any]], Any]], Any]


class RequestIdMiddleware:
    """Binds one request id per HTTP request and answers it in the X-Request-Id header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value for name, value in scope.get("headers", ()) if name == HEADER), None)
        request_id = context.sane_request_id(incoming.decode("latin-1") if incoming else None) or context.new_request_id()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", ()) if n.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        with context.bound(request_id):
            await self.app(scope, receive, send_with_id)
