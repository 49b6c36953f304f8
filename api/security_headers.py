"""Headers every answer carries: no MIME sniffing anywhere, and no framing of Herald's pages by other sites.

`X-Content-Type-Options: nosniff` goes on every response. HTML pages (the shell, installed apps,
login pages) also get `X-Frame-Options: SAMEORIGIN` and, unless the page already has a
Content-Security-Policy, `Content-Security-Policy: frame-ancestors 'self'` (clickjacking).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecurityHeadersMiddleware:
    """Add nosniff to every response and the anti-framing headers to HTML ones."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; amend the response's headers on their way out."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").lower().startswith(("text/html", "application/xhtml")):
                    headers.setdefault("X-Frame-Options", "SAMEORIGIN")
                    headers.setdefault("Content-Security-Policy", "frame-ancestors 'self'")
            await send(message)

        await self.app(scope, receive, send_with_headers)
