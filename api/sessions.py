"""Browser sessions beside Basic auth: a `JSESSIONID` cookie backed by a `web_sessions` row.

The cookie carries a random token; the table keeps only its SHA-256, so a copy of the table
gives no session away. Every API process reads the same rows, so a login works on any of them
and a logout ends the session everywhere. A session lasts HERALD_SESSION_TTL_S from its login
(nothing is written on reads); the cookie itself dies with the browser.

Cross-site request forgery: a browser sends the cookie with cross-site requests too, Basic
credentials it does not. So a cookie-authenticated request that changes data must carry
`X-Requested-With` (a header a cross-site page cannot add without a CORS preflight, which Herald
never grants) and, when the browser names an `Origin` (or only a `Referer`), come from this
site. Requests with Basic credentials are exempt.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from api.deps import HeraldState
from api.settings import AppSettings
from api.trusted_host import is_trusted_host
from messaging.directory import Principal, principal_for
from messaging.errors import Forbidden
from messaging.models import User, WebSession, utcnow

SESSION_COOKIE = "JSESSIONID"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def token_hash(token: str) -> str:
    """The SHA-256 (hex) under which a session token is stored."""
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).hexdigest()


def start_session(session: Session, user_id: int, *, ttl_s: float, replacing: str | None = None) -> str:
    """Stage a new session for the user and return its token. No commit.

    The token is always fresh: a cookie the browser presented (`replacing`) is never adopted,
    and its session, if it was one, ends here. Expired sessions are swept on the way.
    """
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    if replacing:
        session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(replacing)))
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=token_hash(token),
            user_id=user_id,
            # Unused by the DHIS2 apps (they prove themselves with X-Requested-With); kept random.
            csrf_token=secrets.token_hex(32),
            created=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return token


def end_session(session: Session, token: str) -> bool:
    """Stage the deletion of the session behind this token; False when there was none. No commit."""
    result = session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))
    return bool(getattr(result, "rowcount", 0))


def principal_for_token(session: Session, token: str) -> Principal | None:
    """The enabled user of a live session, or None."""
    row = session.get(WebSession, token_hash(token))
    if row is None or row.expires_at <= utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return principal_for(session, user)


def is_https(request: Request) -> bool:
    """True when the browser talks HTTPS to us, directly or through a trusted proxy that says so.

    uvicorn applies X-Forwarded-Proto only from its trusted proxies (FORWARDED_ALLOW_IPS).
    """
    return request.url.scheme == "https"


def _cookie_path(request: Request) -> str:
    root = str(request.scope.get("root_path") or "").rstrip("/")
    return root + "/"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    """Set JSESSIONID: HttpOnly, SameSite=Lax, Secure over HTTPS, gone when the browser closes."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path=_cookie_path(request),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    """Tell the browser to drop JSESSIONID."""
    response.delete_cookie(
        SESSION_COOKIE, path=_cookie_path(request), httponly=True, samesite="lax", secure=is_https(request)
    )


def _authority(scheme: str, netloc: str) -> str:
    """host[:port] in lower case, without the scheme's default port ("" when unreadable)."""
    try:
        parts = urlsplit(f"//{netloc.strip()}")
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    if port is None or str(port) == _DEFAULT_PORTS.get(scheme.lower()):
        return host
    return f"{host}:{port}"


def _own_authorities(request: Request, settings: AppSettings) -> set[str]:
    # The same trusted host the links use (api/trusted_host.py): HERALD_BASE_URL, else the checked
    # Host header. Never a client-sent X-Forwarded-Host.
    if settings.base_url:
        parts = urlsplit(settings.base_url)
        own = {_authority(parts.scheme, parts.netloc)}
    else:
        scheme = "https" if is_https(request) else "http"
        host = request.headers.get("host", "")
        own = {_authority(scheme, host)} if is_trusted_host(settings, host) else set()
    own.discard("")
    return own


def check_same_origin(request: Request, settings: AppSettings) -> None:
    """Refuse a request whose Origin (or, lacking one, Referer) names another site."""
    source = request.headers.get("origin")
    if source is None:
        source = request.headers.get("referer")
    if source is None:
        return
    parts = urlsplit(source.strip())
    if not parts.scheme or not parts.netloc or _authority(parts.scheme, parts.netloc) not in _own_authorities(
        request, settings
    ):
        raise Forbidden("Cross-site request refused: its Origin is not this server.")


def check_csrf(request: Request, settings: AppSettings) -> None:
    """Refuse a cookie-authenticated request that changes data without proof it comes from our pages."""
    if request.method in SAFE_METHODS:
        return
    if not request.headers.get("x-requested-with"):
        raise Forbidden(
            "Cross-site request refused: a request with a session cookie that changes data "
            "must send the header X-Requested-With."
        )
    check_same_origin(request, settings)


class CookieAuth:
    """Authenticator hook: the principal of a live JSESSIONID, CSRF-checked for unsafe methods."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings

    def __call__(self, session: Session, request: Request) -> Principal | None:
        """The session's principal; None without a live session; Forbidden on a forged request."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        principal = principal_for_token(session, token)
        if principal is None:
            return None
        check_csrf(request, self.settings)
        return principal


def install(state: HeraldState) -> None:
    """Let the app's authenticator accept session cookies."""
    state.authenticator.hooks.append(CookieAuth(state.settings))
