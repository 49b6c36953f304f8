"""Users, authorities, settings and configuration as the rest of the domain needs them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from messaging.errors import BadRequest
from messaging.models import (
    SystemSetting,
    User,
    UserGroup,
    UserGroupMember,
    UserRole,
    UserRoleMember,
    UserSetting,
)

SUPER_AUTHORITY = "ALL"
MANAGE_TICKETS = "F_MANAGE_TICKETS"
FEEDBACK_RECIPIENTS_KEY = "feedbackRecipients"
SETTING_KEY_MAX_CHARS = 120  # the key columns of user_settings and system_settings

# DHIS2 2.33 (the documented version) defaults: notifications on (DECISIONS #14).
SYSTEM_SETTING_DEFAULTS: dict[str, Any] = {
    "keyMessageEmailNotification": True,
    "keyMessageSmsNotification": True,
    "applicationTitle": "DHIS 2",
    "helpPageLink": "https://docs.dhis2.org/en/use/user-guides/dhis-core-version-master/working-with-your-account/messaging.html",
    "keySmsMaxLength": 1071,
    "keyUiLocale": "en",
}
USER_SETTING_DEFAULTS: dict[str, Any] = {"keyUiLocale": "en", "keyDbLocale": "en"}


@dataclass(frozen=True)
class Principal:
    """The authenticated user a request acts as."""

    id: int
    uid: str
    username: str
    first_name: str
    surname: str
    authorities: frozenset[str]

    @property
    def is_super(self) -> bool:
        """Holds the ALL authority."""
        return SUPER_AUTHORITY in self.authorities

    @property
    def display_name(self) -> str:
        """First name and surname."""
        return f"{self.first_name} {self.surname}".strip() or self.username

    def has_any(self, *authorities: str) -> bool:
        """ALL, or any of the given authorities."""
        return self.is_super or any(a in self.authorities for a in authorities)


def authorities_of(session: Session, user_id: int) -> frozenset[str]:
    """Union of the authorities of the user's roles."""
    rows = session.scalars(
        select(UserRole.authorities)
        .join(UserRoleMember, UserRoleMember.role_id == UserRole.id)
        .where(UserRoleMember.user_id == user_id)
    )
    return frozenset(a for authorities in rows for a in (authorities or []))


def principal_for(session: Session, user: User) -> Principal:
    """Build the Principal of a loaded user."""
    return Principal(
        id=user.id,
        uid=user.uid,
        username=user.username,
        first_name=user.first_name,
        surname=user.surname,
        authorities=authorities_of(session, user.id),
    )


def _storable(text: str) -> bool:
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


def user_by_uid(session: Session, uid: str) -> User | None:
    """The user with that UID, if any."""
    if not _storable(uid):
        return None
    return session.scalar(select(User).where(User.uid == uid))


def user_by_username(session: Session, username: str) -> User | None:
    """The user with that username, if any (a NUL or a lone surrogate names nobody, and no database takes one)."""
    if not _storable(username):
        return None
    return session.scalar(select(User).where(User.username == username))


def _check_key(key: str) -> None:
    if not key or len(key) > SETTING_KEY_MAX_CHARS:
        raise BadRequest(f"Setting key must be 1 to {SETTING_KEY_MAX_CHARS} characters long.")


def get_system_setting(session: Session, key: str) -> Any:
    """A system setting, or Herald's default for it (None when it has none)."""
    row = session.get(SystemSetting, key)
    return row.value if row is not None else SYSTEM_SETTING_DEFAULTS.get(key)


def set_system_setting(session: Session, key: str, value: Any) -> None:
    """Stage a system setting. No commit."""
    _check_key(key)
    row = session.get(SystemSetting, key)
    if row is None:
        session.add(SystemSetting(key=key, value=value))
    else:
        row.value = value


def get_user_setting(session: Session, user_id: int, key: str) -> Any:
    """A user setting, falling back to the system setting of the same key (DHIS2 semantics)."""
    row = session.get(UserSetting, (user_id, key))
    if row is not None:
        return row.value
    system = get_system_setting(session, key)
    return system if system is not None else USER_SETTING_DEFAULTS.get(key)


def user_settings(session: Session, user_id: int) -> dict[str, Any]:
    """All of a user's settings with defaults filled in."""
    values = dict(USER_SETTING_DEFAULTS)
    for key in ("keyMessageEmailNotification", "keyMessageSmsNotification"):
        values[key] = get_system_setting(session, key)
    for row in session.scalars(select(UserSetting).where(UserSetting.user_id == user_id)):
        values[row.key] = row.value
    return values


def set_user_setting(session: Session, user_id: int, key: str, value: Any) -> None:
    """Stage a user setting. No commit."""
    _check_key(key)
    row = session.get(UserSetting, (user_id, key))
    if row is None:
        session.add(UserSetting(user_id=user_id, key=key, value=value))
    else:
        row.value = value


def feedback_group(session: Session) -> UserGroup | None:
    """The user group configured as feedback recipients, if any."""
    uid = get_system_setting(session, FEEDBACK_RECIPIENTS_KEY)
    if not uid:
        return None
    return session.scalar(select(UserGroup).where(UserGroup.uid == uid))


def in_feedback_group(session: Session, user_id: int) -> bool:
    """Is the user a member of the feedback-recipients group?"""
    group = feedback_group(session)
    if group is None:
        return False
    return bool(
        session.scalar(
            select(
                exists().where(UserGroupMember.group_id == group.id, UserGroupMember.user_id == user_id)
            )
        )
    )


def is_ticket_manager(session: Session, principal: Principal) -> bool:
    """ALL, F_MANAGE_TICKETS, or a feedback-recipients member (DECISIONS #9)."""
    return principal.has_any(MANAGE_TICKETS) or in_feedback_group(session, principal.id)


def group_ids_of(session: Session, user_id: int) -> list[str]:
    """UIDs of the groups a user belongs to."""
    return list(
        session.scalars(
            select(UserGroup.uid)
            .join(UserGroupMember, UserGroupMember.group_id == UserGroup.id)
            .where(UserGroupMember.user_id == user_id)
            .order_by(UserGroup.uid)
        )
    )
