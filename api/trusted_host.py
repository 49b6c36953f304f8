"""Trusted links: Herald builds absolute URLs only from HERALD_BASE_URL or from a Host it knows.

Without HERALD_BASE_URL, every absolute link (Location, pager, system/info contextPath, the apps'
base URL) is derived from the request's Host header, so a request whose Host is not one of
HERALD_ALLOWED_HOSTS (any port) is refused with a 400 WebMessage before any route runs. With
HERALD_BASE_URL set, links come from it and the Host is not consulted. `X-Forwarded-Host` is never
read; `X-Forwarded-Proto`/`-For` count only from uvicorn's trusted proxies (FORWARDED_ALLOW_IPS).
Health and metrics probes, which build no links, are exempt.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.render import dumps, web_message
from api.settings import AppSettings

EXEMPT_PREFIXES = ("/health/", "/metrics")
ANY_HOST = "*"


def host_name(authority: str) -> str:
    """The lower-case host of `host[:port]` (IPv6 without brackets); "" when unreadable."""
    try:
        return (urlsplit(f"//{authority.strip()}").hostname or "").lower()
    except ValueError:
        return ""


def allowed_hosts(settings: AppSettings) -> frozenset[str]:
    """HERALD_ALLOWED_HOSTS as a set of lower-case host names."""
    return frozenset(h.strip().strip("[]").lower() for h in settings.allowed_hosts.split(",") if h.strip())


def is_trusted_host(settings: AppSettings, authority: str, allowed: frozenset[str] | None = None) -> bool:
    """True when links may be built from this Host header (`allowed`: `allowed_hosts(settings)`, parsed already)."""
    allowed = allowed_hosts(settings) if allowed is None else allowed
    return ANY_HOST in allowed or host_name(authority) in allowed


class TrustedHostMiddleware:
    """Refuse (400) a request whose Host is not allowed when links would be built from it."""

    def __init__(self, app: ASGIApp, settings: AppSettings) -> None:
        self.app, self.settings = app, settings
        self.allowed = allowed_hosts(settings)  # parsed once, not on every request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the Host of HTTP requests when HERALD_BASE_URL is unset."""
        if scope["type"] == "http" and not self.settings.base_url and not str(scope["path"]).startswith(EXEMPT_PREFIXES):
            authority = Headers(scope=scope).get("host", "")
            if not is_trusted_host(self.settings, authority, self.allowed):
                payload = dumps(
                    web_message(
                        400,
                        "Host not allowed: set HERALD_BASE_URL, or add the host to HERALD_ALLOWED_HOSTS.",
                    )
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json;charset=UTF-8"),
                            (b"content-length", str(len(payload)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": payload})
                return
        await self.app(scope, receive, send)
