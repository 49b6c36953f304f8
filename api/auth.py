"""HTTP Basic authentication against argon2 hashes, without stalling the event loop.

Verification runs in the worker thread of the request's dependency. Each request reads the
user, their authorities and the login-throttle counts fresh, in one statement
(messaging.credentials), so a password change, disabling, a role or authority change or a
deletion made by any API process counts at the next request. Only the argon2 check is cached: a
verified (username, password) pair is remembered for HERALD_AUTH_CACHE_S under a keyed digest of
the password, and only while the stored hash is unchanged.

Failed logins are throttled per username and per client address (messaging.login_throttle):
a locked username or address gets 429 with Retry-After on every way in, whatever the password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import Literal

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.requests import Request

from api.bodies import UNSTORABLE
from messaging import credentials, login_throttle
from messaging.directory import Principal
from messaging.errors import TooManyRequests, Unauthorized
from messaging.login_throttle import LoginLimits
from messaging.passwords import hash_password, verify_password
from messaging.settings import SecuritySettings

# Checked against when the username is unknown, so timing does not reveal which usernames exist.
_DUMMY_HASH = hash_password(secrets.token_hex(16))
MAX_CACHE_ENTRIES = 10_000

# Further ways to authenticate (browser sessions); each returns None when it does not apply.
AuthHook = Callable[[Session, Request], Principal | None]


class Authenticator:
    """Resolves the Principal of a request or raises Unauthorized."""

    def __init__(self, *, cache_s: float, limits: LoginLimits | None = None) -> None:
        self.cache_s = cache_s
        self.limits = limits or LoginLimits()
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, bytes], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.hooks: list[AuthHook] = []

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def check_password(
        self, session: Session, username: str, password: str, *, address: str | None = None
    ) -> Principal | None:
        """The user's Principal when the credentials are right and the user is enabled.

        TooManyRequests while the username or the address is locked; a wrong password is
        recorded (committed at once), a right one clears the username's failures.
        """
        if UNSTORABLE.search(username):
            # No user can have such a name, and no database takes it as a throttle key: a plain refusal.
            verify_password(_DUMMY_HASH, password)
            return None
        creds = self._load(session, username, address)
        if creds.user_failures or creds.address_failures:
            # Only a key with failures in the window can be locked: the exact lock needs its own reads.
            lock, _ = login_throttle.current_lock(session, self.limits, username, address)
            if lock is not None:
                minutes = math.ceil(lock.retry_after_s / 60)
                subject = "This account is" if lock.what == "user" else "Logins from this address are"
                raise TooManyRequests(
                    f"{subject} temporarily locked after too many failed logins; try again in {minutes} minute"
                    f"{'' if minutes == 1 else 's'}.",
                    lock.retry_after_s,
                )
        principal = self._verify(creds, username, password)
        if principal is False:
            login_throttle.record_failure(session, self.limits, username, address)
            session.commit()
            return None
        if creds.user_failures and principal is not None:
            login_throttle.unlock(session, username=username)
            session.commit()
        return principal or None

    def _load(self, session: Session, username: str, address: str | None) -> credentials.Credentials:
        # The pool does not ping on checkout (messaging/db.py): when this, a request's first statement,
        # finds its connection dead (the database restarted), the pool is invalidated and it runs again
        # once on a fresh connection, so a restart costs no request.
        fresh = not session.in_transaction()
        try:
            return credentials.load(session, self.limits, username, address)
        except DBAPIError as exc:
            if not (fresh and exc.connection_invalidated):
                raise
            session.rollback()
            return credentials.load(session, self.limits, username, address)

    def _verify(self, creds: credentials.Credentials, username: str, password: str) -> Principal | Literal[False] | None:
        # False: wrong password or unknown user (a failure); None: right password of a disabled user.
        password_hash = creds.password_hash
        if creds.principal is None or not password_hash:
            verify_password(_DUMMY_HASH, password)
            return False
        key = (username, self._digest(password))
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if not (cached and cached[0] == password_hash and cached[1] > now):
            if not verify_password(password_hash, password):
                return False
            if self.cache_s > 0:
                with self._lock:
                    if len(self._cache) >= MAX_CACHE_ENTRIES:
                        self._cache.clear()
                    self._cache[key] = (password_hash, now + self.cache_s)
        if creds.disabled:
            return None
        return creds.principal

    def authenticate(self, session: Session, request: Request) -> Principal:
        """Basic credentials first, then any hook (session cookie); else Unauthorized."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "basic" and encoded:
            try:
                username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("Unauthorized") from None
            address = request.client.host if request.client else None
            principal = self.check_password(session, username, password, address=address) if sep else None
            if principal is None:
                raise Unauthorized("Unauthorized")
            return principal
        for hook in self.hooks:
            principal = hook(session, request)
            if principal is not None:
                return principal
        raise Unauthorized("Unauthorized")


def login_limits(settings: SecuritySettings) -> LoginLimits:
    """The failed-login limits of these settings (HERALD_LOGIN_*)."""
    return LoginLimits(
        max_failures=settings.login_max_failures,
        max_address_failures=settings.login_max_address_failures,
        window_s=settings.login_window_s,
    )
