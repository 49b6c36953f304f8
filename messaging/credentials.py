"""What a login needs, read fresh in one statement: the user, their authorities, recent failures.

Every Basic-auth request reads this once (issue 12). Nothing of it is cached between requests,
so a password change, a disabled user, a role or authority change or a deletion made by any
process counts at the very next request; only the argon2 verification is cached, by the caller,
and only while the stored hash is unchanged.

The throttle counts come along as two scalar subqueries on `ix_login_failures_key`, so the
common case (no failure in the window) costs no extra round trip; only a username or address
with failures goes on to `login_throttle.current_lock` for the exact lock and its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, literal_column, select
from sqlalchemy.orm import Session

from messaging.directory import Principal
from messaging.login_throttle import LoginLimits, address_key, user_key
from messaging.models import LoginFailure, User, UserRole, UserRoleMember, utcnow

_USERS = cast(Table, User.__table__)
_ROLES = cast(Table, UserRole.__table__)
_MEMBERS = cast(Table, UserRoleMember.__table__)
_FAILURES = cast(Table, LoginFailure.__table__)


@dataclass(frozen=True)
class Credentials:
    """A login attempt's facts: the user (None when unknown) and the failures in the window."""

    principal: Principal | None
    password_hash: str | None
    disabled: bool
    user_failures: int
    address_failures: int


def _failures(key: str) -> Any:
    return (
        select(func.count())
        .select_from(_FAILURES)
        .where(_FAILURES.c.key == bindparam(key), _FAILURES.c.failed_at > bindparam("since"))
        .scalar_subquery()
    )


def _statement() -> Any:
    # A one-row anchor, so the failure counts come back for unknown usernames too.
    anchor = select(literal_column("1").label("one")).subquery()
    users, members, roles = _USERS, _MEMBERS, _ROLES
    return select(
        users.c.id, users.c.uid, users.c.username, users.c.first_name, users.c.surname,
        users.c.password_hash, users.c.disabled, roles.c.authorities,
        _failures("user_key").label("user_failures"),
        _failures("address_key").label("address_failures"),
    ).select_from(
        anchor.outerjoin(users, users.c.username == bindparam("username"))
        .outerjoin(members, members.c.user_id == users.c.id)
        .outerjoin(roles, roles.c.id == members.c.role_id)
    )


# Built once: building a statement costs about as much Python as running the cached one.
_LOAD = _statement()


def load(
    session: Session, limits: LoginLimits, username: str, address: str | None, *, now: datetime | None = None
) -> Credentials:
    """One statement: the user named `username` with their authorities, and the recent failures."""
    since = (now or utcnow()) - timedelta(seconds=limits.window_s)
    params = {
        "username": username,
        "user_key": user_key(username),
        "address_key": address_key(address) if address else "",  # no key is empty: a count of 0
        "since": since,
    }
    rows = session.execute(_LOAD, params).all()
    first = rows[0]
    principal = None
    if first.id is not None:
        principal = Principal(
            id=first.id,
            uid=first.uid,
            username=first.username,
            first_name=first.first_name,
            surname=first.surname,
            authorities=frozenset(a for row in rows for a in (row.authorities or [])),
        )
    return Credentials(
        principal=principal,
        password_hash=first.password_hash,
        disabled=bool(first.disabled),
        user_failures=int(first.user_failures or 0),
        address_failures=int(first.address_failures or 0),
    )
