"""Failed-login throttling shared by every API process (DECISIONS #23).

Each failed login adds a row under two keys: the username and the client address. A key with
`max_failures` rows younger than the window is refused, whatever the password, until enough of
them age out; refused attempts add no rows, so a lock ends at most one window after it began
and nothing ever locks for good. A successful login clears its username's failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from messaging.models import LoginFailure, utcnow

MAX_KEY_CHARS = 320


@dataclass(frozen=True)
class LoginLimits:
    """How many failures within `window_s` lock a username, and an address."""

    max_failures: int = 5
    max_address_failures: int = 100
    window_s: float = 900.0


@dataclass(frozen=True)
class Lock:
    """A refused key: what is locked and for how long yet."""

    what: str  # "user" or "address"
    retry_after_s: int


def user_key(username: str) -> str:
    """The throttle key of a username."""
    return f"user:{username}"[:MAX_KEY_CHARS]


def address_key(address: str) -> str:
    """The throttle key of a client address."""
    return f"addr:{address}"[:MAX_KEY_CHARS]


def _keys(username: str, address: str | None) -> dict[str, int]:
    return {user_key(username): 0, **({address_key(address): 1} if address else {})}


def current_lock(
    session: Session, limits: LoginLimits, username: str, address: str | None, *, now: datetime | None = None
) -> tuple[Lock | None, int]:
    """The lock on this username or address, if any (the username's first), and the username's failures."""
    now = now or utcnow()
    since = now - timedelta(seconds=limits.window_s)
    keys = _keys(username, address)
    rows = session.execute(
        select(LoginFailure.key, func.count())
        .where(LoginFailure.key.in_(keys), LoginFailure.failed_at > since)
        .group_by(LoginFailure.key)
    ).all()
    counts = dict(rows)
    for key, (what, limit) in zip(keys, (("user", limits.max_failures), ("address", limits.max_address_failures)), strict=False):
        count = counts.get(key, 0)
        if count >= limit:
            # The lock lifts when the (count - limit + 1)-th oldest failure leaves the window.
            oldest = session.scalar(
                select(LoginFailure.failed_at)
                .where(LoginFailure.key == key, LoginFailure.failed_at > since)
                .order_by(LoginFailure.failed_at)
                .offset(count - limit)
                .limit(1)
            )
            remaining = (oldest - since).total_seconds() if oldest else limits.window_s
            return Lock(what, max(1, math.ceil(remaining))), counts.get(user_key(username), 0)
    return None, counts.get(user_key(username), 0)


def record_failure(
    session: Session, limits: LoginLimits, username: str, address: str | None, *, now: datetime | None = None
) -> None:
    """Stage a failed login under the username and the address, and drop rows past the window. No commit."""
    now = now or utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - timedelta(seconds=limits.window_s)))
    session.add_all(LoginFailure(key=key, failed_at=now) for key in _keys(username, address))


def unlock(session: Session, *, username: str | None = None, address: str | None = None) -> int:
    """Stage the removal of a username's and/or an address's failures; how many rows. No commit."""
    keys = [user_key(username)] if username else []
    keys += [address_key(address)] if address else []
    if not keys:
        return 0
    result = session.execute(delete(LoginFailure).where(LoginFailure.key.in_(keys)))
    return int(getattr(result, "rowcount", 0) or 0)
