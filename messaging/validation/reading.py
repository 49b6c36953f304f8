"""The read side: DHIS2 representations of rules, templates and results, and their filterable properties."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.orm import Session, aliased

from messaging import query as q
from messaging.models import OrganisationUnit, UserGroup
from messaging.validation.models import (
    TemplateGroup,
    TemplateRule,
    ValidationNotificationTemplate,
    ValidationResult,
    ValidationRule,
)

Rule, Template, Result = ValidationRule, ValidationNotificationTemplate, ValidationResult
_RULE = aliased(ValidationRule, name="result_rule")
_UNIT = aliased(OrganisationUnit, name="result_unit")

RULE_PROPS = {
    "id": q.Property(Rule.uid, q.Kind.STRING),
    "name": q.Property(Rule.name, q.Kind.STRING),
    "displayName": q.Property(Rule.name, q.Kind.STRING),
    "description": q.Property(Rule.description, q.Kind.STRING),
    "importance": q.Property(Rule.importance, q.Kind.STRING),
    "operator": q.Property(Rule.operator, q.Kind.STRING),
    "periodType": q.Property(Rule.period_type, q.Kind.STRING),
    "created": q.Property(Rule.created, q.Kind.DATETIME),
    "lastUpdated": q.Property(Rule.last_updated, q.Kind.DATETIME),
}
TEMPLATE_PROPS = {
    "id": q.Property(Template.uid, q.Kind.STRING),
    "name": q.Property(Template.name, q.Kind.STRING),
    "displayName": q.Property(Template.name, q.Kind.STRING),
    "sendStrategy": q.Property(Template.send_strategy, q.Kind.STRING),
    "notifyUsersInHierarchyOnly": q.Property(Template.notify_users_in_hierarchy_only, q.Kind.BOOLEAN),
    "notifyParentOrganisationUnitOnly": q.Property(Template.notify_parent_org_unit_only, q.Kind.BOOLEAN),
    "created": q.Property(Template.created, q.Kind.DATETIME),
    "lastUpdated": q.Property(Template.last_updated, q.Kind.DATETIME),
}
RESULT_PROPS = {
    "id": q.Property(Result.id, q.Kind.INTEGER),
    "notificationSent": q.Property(Result.notification_sent, q.Kind.BOOLEAN),
    "created": q.Property(Result.created, q.Kind.DATETIME),
    "period": q.Property(Result.period, q.Kind.STRING),
    "period.id": q.Property(Result.period, q.Kind.STRING),
    "organisationUnit": q.Property(_UNIT.uid, q.Kind.STRING),
    "organisationUnit.id": q.Property(_UNIT.uid, q.Kind.STRING),
    "validationRule": q.Property(_RULE.uid, q.Kind.STRING),
    "validationRule.id": q.Property(_RULE.uid, q.Kind.STRING),
    "attributeOptionCombo": q.Property(Result.attribute_option_combo, q.Kind.STRING),
    "attributeOptionCombo.id": q.Property(Result.attribute_option_combo, q.Kind.STRING),
    "dayInPeriod": q.Property(Result.day_in_period, q.Kind.INTEGER),
}


def _named(uid: str, name: str, base: str, resource: str) -> dict[str, Any]:
    return {"id": uid, "href": f"{base}/api/{resource}/{uid}", "name": name, "displayName": name}


def rule_dict(rule: ValidationRule, base: str) -> dict[str, Any]:
    """A validation rule as DHIS2 renders it."""
    return {
        **_named(rule.uid, rule.name, base, "validationRules"),
        "created": rule.created,
        "lastUpdated": rule.last_updated,
        "description": rule.description,
        "displayDescription": rule.description,
        "instruction": rule.instruction,
        "displayInstruction": rule.instruction,
        "importance": rule.importance,
        "operator": rule.operator,
        "periodType": rule.period_type,
        "leftSide": {"description": rule.left_description, "expression": rule.left_expression},
        "rightSide": {"description": rule.right_description, "expression": rule.right_expression},
    }


def template_dict(session: Session, template: ValidationNotificationTemplate, base: str) -> dict[str, Any]:
    """A notification template with its rules and groups (lazy)."""

    def linked(model: Any, link: Any, column: Any, resource: str) -> Callable[[], list[dict[str, Any]]]:
        def load() -> list[dict[str, Any]]:
            rows = session.execute(
                select(model.uid, model.name).join(link, column == model.id).where(link.template_id == template.id).order_by(model.name)
            )
            return [_named(uid, name, base, resource) for uid, name in rows]

        return load

    return {
        **_named(template.uid, template.name, base, "validationNotificationTemplates"),
        "created": template.created,
        "lastUpdated": template.last_updated,
        "subjectTemplate": template.subject_template,
        "displaySubjectTemplate": template.subject_template,
        "messageTemplate": template.message_template,
        "displayMessageTemplate": template.message_template,
        "notifyUsersInHierarchyOnly": template.notify_users_in_hierarchy_only,
        "notifyParentOrganisationUnitOnly": template.notify_parent_org_unit_only,
        "sendStrategy": template.send_strategy,
        "validationRules": linked(ValidationRule, TemplateRule, TemplateRule.rule_id, "validationRules"),
        "recipientUserGroups": linked(UserGroup, TemplateGroup, TemplateGroup.group_id, "userGroups"),
    }


def results_select(where: ColumnElement[bool] | None) -> Select[Any]:
    """Results with their rule and org unit (the joins the filters name)."""
    statement = cast(
        Select[Any],
        select(Result, _RULE.uid, _RULE.name, _UNIT.uid, _UNIT.name)
        .join(_RULE, _RULE.id == Result.rule_id)
        .join(_UNIT, _UNIT.id == Result.org_unit_id),
    )
    return statement.where(where) if where is not None else statement


def result_dict(row: Any, base: str) -> dict[str, Any]:
    """A validation result as DHIS2 renders it (its id is a number)."""
    result, rule_uid, rule_name, unit_uid, unit_name = row
    return {
        "id": result.id,
        "validationRule": _named(rule_uid, rule_name, base, "validationRules"),
        "period": {"id": result.period, "code": result.period, "name": result.period, "isoDate": result.period},
        "organisationUnit": _named(unit_uid, unit_name, base, "organisationUnits"),
        "attributeOptionCombo": {"id": result.attribute_option_combo},
        "leftsideValue": result.left_value,
        "rightsideValue": result.right_value,
        "dayInPeriod": result.day_in_period,
        "notificationSent": result.notification_sent,
        "created": result.created,
    }


def page(session: Session, statement: Select[Any], orders: Sequence[Any], *, size: int | None, number: int) -> tuple[int, list[Any]]:
    """(total, rows of one page): size None means every row."""
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    statement = statement.order_by(*orders)
    if size is not None:
        statement = statement.limit(size).offset((number - 1) * size)
    return int(total), list(session.execute(statement))


def delete_results(session: Session, where: ColumnElement[bool] | None) -> int:
    """Delete the results matching ``where`` (every result when None). No commit."""
    ids = select(Result.id).join(_RULE, _RULE.id == Result.rule_id).join(_UNIT, _UNIT.id == Result.org_unit_id)
    if where is not None:
        ids = ids.where(where)
    outcome: Any = session.execute(delete(Result).where(Result.id.in_(ids)))
    return int(outcome.rowcount or 0)


def by_uid(session: Session, model: Any, uid: str) -> Any:
    """One rule or template by its UID, or None."""
    return session.scalar(select(model).where(model.uid == uid))


def result_by_id(session: Session, result_id: int) -> Any:
    """One result row (result, rule uid, rule name, unit uid, unit name), or None."""
    return session.execute(results_select(Result.id == result_id)).first()


def props_where(props: Mapping[str, q.Property], filters: Sequence[str], junction: str) -> ColumnElement[bool] | None:
    """The WHERE clause of DHIS2 ``filter`` parameters (QueryError on a bad one)."""
    return q.where_clause(props, q.parse_filters(filters), junction)

