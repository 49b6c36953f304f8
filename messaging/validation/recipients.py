"""Who a validation notification goes to, as DHIS2's DefaultValidationNotificationService resolves it.

A template's recipients are the members of its recipientUserGroups, except that
``notifyUsersInHierarchyOnly`` keeps the members assigned to the result's org unit or one of its
ancestors, and otherwise ``notifyParentOrganisationUnitOnly`` replaces each member by the users of
the parent of their org unit (who need not be members). Herald users may have several org units:
any of them counts. Everything here is set-based SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, Select, and_, false, or_, select, true
from sqlalchemy.orm import aliased

from messaging.models import OrganisationUnit, UserGroupMember, UserOrgUnit
from messaging.validation.models import TemplateGroup, ValidationNotificationTemplate, ValidationResult

T = ValidationNotificationTemplate
_MEMBER_OU = aliased(UserOrgUnit, name="member_ou")
_MEMBER_UNIT = aliased(OrganisationUnit, name="member_unit")
_PARENT_OU = aliased(UserOrgUnit, name="parent_ou")
_RESULT_UNIT = aliased(OrganisationUnit, name="result_unit")


def in_hierarchy(result_unit: Any, user_unit: Any) -> Any:
    """SQL: the user's org unit is the result's org unit or one of its ancestors (paths are /uid/uid...)."""
    return or_(result_unit.path == user_unit.path, result_unit.path.like(user_unit.path + "/%"))


def plain_recipients(pairs: Any) -> Select[Any]:
    """(conversation_id, user_id) for the ``pairs`` whose templates notify their groups' members as they are.

    Members are de-duplicated per template before the join, so no (conversation, user) comes out twice.
    """
    members = (
        select(TemplateGroup.template_id, UserGroupMember.user_id)
        .join(UserGroupMember, UserGroupMember.group_id == TemplateGroup.group_id)
        .join(T, T.id == TemplateGroup.template_id)
        .where(T.notify_users_in_hierarchy_only.is_(false()), T.notify_parent_org_unit_only.is_(false()))
        .distinct()
        .subquery()
    )
    return select(pairs.c.conversation_id, members.c.user_id).join(members, members.c.template_id == pairs.c.template_id)


def pair_recipients(pairs: Any) -> list[Select[Any]]:
    """SELECTs of (conversation_id, user_id) for rows of ``pairs`` whose templates restrict their recipients.

    One SELECT per mode (hierarchy only, parent only); a user may come out twice, so insert with ON CONFLICT.
    """
    base = (
        select(pairs.c.conversation_id, UserGroupMember.user_id)
        .join(T, T.id == pairs.c.template_id)
        .join(TemplateGroup, TemplateGroup.template_id == pairs.c.template_id)
        .join(UserGroupMember, UserGroupMember.group_id == TemplateGroup.group_id)
    )
    hierarchy = (
        base.join(ValidationResult, ValidationResult.id == pairs.c.result_id)
        .join(_RESULT_UNIT, _RESULT_UNIT.id == ValidationResult.org_unit_id)
        .join(_MEMBER_OU, _MEMBER_OU.user_id == UserGroupMember.user_id)
        .join(_MEMBER_UNIT, _MEMBER_UNIT.id == _MEMBER_OU.org_unit_id)
        .where(T.notify_users_in_hierarchy_only.is_(true()), in_hierarchy(_RESULT_UNIT, _MEMBER_UNIT))
    )
    parents = (
        select(pairs.c.conversation_id, _PARENT_OU.user_id)
        .join(T, T.id == pairs.c.template_id)
        .join(TemplateGroup, TemplateGroup.template_id == pairs.c.template_id)
        .join(UserGroupMember, UserGroupMember.group_id == TemplateGroup.group_id)
        .join(_MEMBER_OU, _MEMBER_OU.user_id == UserGroupMember.user_id)
        .join(_MEMBER_UNIT, _MEMBER_UNIT.id == _MEMBER_OU.org_unit_id)
        .join(_PARENT_OU, _PARENT_OU.org_unit_id == _MEMBER_UNIT.parent_id)
        .where(T.notify_users_in_hierarchy_only.is_(false()), T.notify_parent_org_unit_only.is_(true()))
    )
    return [hierarchy, parents]


Key = tuple[int, int | None]  # (template id, result org unit id when the template is hierarchy-only)


def key_recipients(conn: Connection, templates: Collection[int], org_units: Collection[int]) -> dict[Key, set[int]]:
    """Recipients of each (template, org unit) key: org unit None unless the template is hierarchy-only."""
    found: dict[Key, set[int]] = defaultdict(set)
    if not templates:
        return found
    members = (
        select(TemplateGroup.template_id, UserGroupMember.user_id)
        .join(T, T.id == TemplateGroup.template_id)
        .join(UserGroupMember, UserGroupMember.group_id == TemplateGroup.group_id)
        .where(TemplateGroup.template_id.in_(list(templates)))
    )
    plain = members.where(T.notify_users_in_hierarchy_only.is_(false()), T.notify_parent_org_unit_only.is_(false()))
    for template_id, user_id in conn.execute(plain):
        found[(template_id, None)].add(user_id)
    parents = (
        members.with_only_columns(TemplateGroup.template_id, _PARENT_OU.user_id)
        .join(_MEMBER_OU, _MEMBER_OU.user_id == UserGroupMember.user_id)
        .join(_MEMBER_UNIT, _MEMBER_UNIT.id == _MEMBER_OU.org_unit_id)
        .join(_PARENT_OU, _PARENT_OU.org_unit_id == _MEMBER_UNIT.parent_id)
        .where(T.notify_users_in_hierarchy_only.is_(false()), T.notify_parent_org_unit_only.is_(true()))
    )
    for template_id, user_id in conn.execute(parents):
        found[(template_id, None)].add(user_id)
    if org_units:
        hierarchy = (
            members.with_only_columns(TemplateGroup.template_id, _RESULT_UNIT.id, UserGroupMember.user_id)
            .join(_MEMBER_OU, _MEMBER_OU.user_id == UserGroupMember.user_id)
            .join(_MEMBER_UNIT, _MEMBER_UNIT.id == _MEMBER_OU.org_unit_id)
            .join(_RESULT_UNIT, and_(_RESULT_UNIT.id.in_(list(org_units)), in_hierarchy(_RESULT_UNIT, _MEMBER_UNIT)))
            .where(T.notify_users_in_hierarchy_only.is_(true()))
        )
        for template_id, unit_id, user_id in conn.execute(hierarchy):
            found[(template_id, unit_id)].add(user_id)
    return found
