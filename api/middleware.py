"""ASGI middleware: API version prefixes, .json/.xml suffixes, NUL-free URLs, the request body limit, the last-resort 500."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from api.render import dumps, web_message
from messaging import context

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

log = logging.getLogger("herald.api")
VERSIONED = re.compile(r"^/api/(\d{2})(/.*)?$")
SUPPORTED_VERSIONS = range(28, 44)  # DECISIONS #2
UNSUFFIXED = frozenset({"/api/openapi.json"})  # a document's own name, not a format hint
APP_FOLDER = "/api/apps/"


def _keeps_its_slash(path: str) -> bool:
    """An installed app's folder (/api/apps/<key>/...) is a directory: its slash means index.html."""
    return path.startswith(APP_FOLDER) and path != APP_FOLDER


async def _send_message(send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = dumps(web_message(status, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json;charset=UTF-8"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class ApiPathMiddleware:
    """Serve /api/{28..43}/x as /api/x, /api/x/ as /api/x, and /api/x.xml or .json as /api/x with a format hint.

    A URL with a NUL character is refused here: no database stores or compares one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if "\x00" in path or b"%00" in scope.get("query_string", b""):
                await _send_message(send, 400, "The URL must not contain NUL characters.")
                return
            match = VERSIONED.match(path)
            if match and int(match.group(1)) in SUPPORTED_VERSIONS:
                path = "/api" + (match.group(2) or "")
                scope = {**scope, "herald.api_version": int(match.group(1))}
            if path.startswith("/api/") and path.endswith("/") and not _keeps_its_slash(path):
                path = path.rstrip("/") or "/"  # DECISIONS #24: answered like the path without it, no redirect
            if path.startswith("/api/") and path not in UNSUFFIXED:
                for suffix in ("json", "xml"):
                    if path.endswith("." + suffix):
                        path = path[: -len(suffix) - 1]
                        scope = {**scope, "herald.format": suffix}
                        break
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over the limit with a 413 WebMessage before the application sees them.

    `limits` maps path prefixes to larger limits (app uploads); the default applies elsewhere.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, limits: dict[str, int] | None = None) -> None:
        self.app, self.max_bytes, self.limits = app, max_bytes, limits or {}

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or len(length) > 19 or int(length) > limit):
            await self._refuse(send, limit)
            return
        # Read the whole (bounded) body first, so an oversize chunked body never half-reaches a handler.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        message = f"Request body is larger than the limit of {limit} bytes."
        await _send_message(send, 413, message, [(b"connection", b"close")])


class UnexpectedErrorMiddleware:
    """Answer an exception nobody foresaw with a 500 WebMessage, logged once, connection kept.

    Starlette's own handler for `Exception` re-raises after answering, so the server logs it a
    second time and drops the keep-alive connection; here the exception ends with the answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = context.request_id()  # bound by RequestIdMiddleware, outside this one
            log.exception(
                "unhandled error on %s %s (request id %s)", scope.get("method"), scope.get("path"), request_id,
                extra={"request_id": request_id},
            )
            if not started:
                await _send_message(send, 500, "An unexpected error occurred.")
