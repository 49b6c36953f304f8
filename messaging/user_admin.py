"""Who may manage which users and roles, as DHIS2 decides it (canIssueUserRole / canModifyUser).

A user without `ALL` may only hand out, create or change user roles whose authorities it holds
itself, may only create or change users whose authorities it holds itself (so never an `ALL`
user), and may set no password but its own unless it holds `F_USER_ADD` as well.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from messaging.directory import FEEDBACK_RECIPIENTS_KEY, MANAGE_TICKETS, Principal, authorities_of, get_system_setting
from messaging.models import User, UserGroup, UserGroupMember, UserRole

USER_ADD_AUTHORITY = "F_USER_ADD"
ROLE_DENIED = "E3032"  # DHIS2: "User `{0}` does not have access to user role"
UPDATE_DENIED = "E3001"  # DHIS2: "User `{0}` is not allowed to update object `{1}`"


def _listed(authorities: Iterable[str]) -> str:
    return ", ".join(sorted(authorities))


def role_authorities(session: Session, uids: Iterable[str]) -> dict[str, set[str]]:
    """{role uid: its stored authorities} of the stored roles among `uids`."""
    wanted = sorted(set(uids))
    if not wanted:
        return {}
    rows = session.execute(select(UserRole.uid, UserRole.authorities).where(UserRole.uid.in_(wanted)))
    return {uid: set(authorities or []) for uid, authorities in rows}


def role_change_refusal(importer: Principal, role: str, authorities: set[str]) -> str | None:
    """Why `importer` may not create or change a role holding these authorities (None: it may)."""
    lacking = authorities - importer.authorities
    if importer.is_super or not lacking:
        return None
    return (
        f"User `{importer.username}` does not have access to user role `{role}`: a user role can only be "
        f"created or changed by a user holding all of its authorities (lacking {_listed(lacking)})"
    )


def role_grant_refusal(importer: Principal, role: str, authorities: set[str]) -> str | None:
    """Why `importer` may not assign this role to a user (None: it may)."""
    lacking = authorities - importer.authorities
    if importer.is_super or not lacking:
        return None
    return (
        f"User `{importer.username}` does not have access to user role `{role}`: a user role can only be "
        f"assigned by a user holding all of its authorities (lacking {_listed(lacking)})"
    )


def user_change_refusal(session: Session, importer: Principal, user: User) -> str | None:
    """Why `importer` may not change this stored user (None: it may)."""
    if importer.is_super:
        return None
    lacking = authorities_of(session, user.id) - importer.authorities
    if not lacking:
        if importer.has_any(MANAGE_TICKETS) or not _in_feedback_group(session, user.id):
            return None
        # Feedback-group members are ticket managers (DECISIONS #9): as privileged as the authority.
        lacking = frozenset({MANAGE_TICKETS})
    return (
        f"User `{importer.username}` is not allowed to update object `{user.uid}`: a user can only be changed "
        f"by a user holding all of its authorities (lacking {_listed(lacking)})"
    )


def _in_feedback_group(session: Session, user_id: int) -> bool:
    group_uid = get_system_setting(session, FEEDBACK_RECIPIENTS_KEY)
    if not group_uid:
        return False
    member = (
        select(UserGroupMember.user_id)
        .join(UserGroup, UserGroup.id == UserGroupMember.group_id)
        .where(UserGroup.uid == group_uid, UserGroupMember.user_id == user_id)
    )
    return session.scalar(member) is not None


def password_refusal(importer: Principal, user: User | None) -> str | None:
    """Why `importer` may not set the password of this user (None for a new user; None: it may)."""
    if importer.is_super or USER_ADD_AUTHORITY in importer.authorities:
        return None
    if user is not None and user.id == importer.id:
        return None
    target = f"of user `{user.uid}`" if user is not None else "of a new user"
    return (
        f"User `{importer.username}` is not allowed to set the password {target}: setting another user's "
        f"password requires ALL or {USER_ADD_AUTHORITY}"
    )


def group_change_refusal(session: Session, importer: Principal, group_uid: str) -> str | None:
    """Why `importer` may not change the members of this group (None: it may)."""
    if importer.has_any(MANAGE_TICKETS) or get_system_setting(session, FEEDBACK_RECIPIENTS_KEY) != group_uid:
        return None
    return (
        f"User `{importer.username}` is not allowed to update object `{group_uid}`: the members of the feedback "
        f"recipients group are ticket managers, so changing them requires ALL or {MANAGE_TICKETS}"
    )
