"""Metadata import of validationRules and validationNotificationTemplates (hooked into messaging.metadata).

``messaging.metadata`` calls ``check`` for each object of these keys while it validates the whole
payload, and ``write`` once everything validated, so the import stays all or nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from messaging.models import UserGroup
from messaging.validation.models import (
    OPERATORS,
    Importance,
    SendStrategy,
    TemplateGroup,
    TemplateRule,
    ValidationNotificationTemplate,
    ValidationRule,
)
from messaging.validation.periods import PERIOD_TYPES

RULES, TEMPLATES = "validationRules", "validationNotificationTemplates"
KLASS = {
    RULES: "org.hisp.dhis.validation.ValidationRule",
    TEMPLATES: "org.hisp.dhis.validation.notification.ValidationNotificationTemplate",
}
ORDER = (RULES, TEMPLATES)
NAME_MAX = 230
MESSAGE_TEMPLATE_MAX = 1000  # DHIS2's @PropertyRange(min = 1, max = 1000) on messageTemplate


class Report(Protocol):
    """The per-object report of messaging.metadata."""

    def error(self, code: str, message: str, prop: str | None = None) -> None:
        """Record an error against this object."""


class Importer(Protocol):
    """What this module needs of messaging.metadata's importer."""

    session: Session
    payload: Mapping[str, Any]

    def _exists(self, model: Any, key: str, uid: Any) -> bool: ...

    def _upsert(self, model: Any, key: str, item: Mapping[str, Any]) -> Any: ...


def check(importer: Importer, key: str, item: Mapping[str, Any], report: Report) -> None:
    """Record every error of one validation rule or template."""
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        report.error("E4000", "Missing required property `name`.", "name")
    elif len(name) > NAME_MAX:
        report.error("E4001", f"Maximum length of property `name`is {NAME_MAX}, but given length was {len(name)}.", "name")
    if key == RULES:
        _check_rule(item, report)
    else:
        _check_template(importer, item, report)


def _one_of(item: Mapping[str, Any], prop: str, allowed: Any, report: Report, *, required: bool = False) -> None:
    value = item.get(prop)
    if value is None:
        if required:
            report.error("E4000", f"Missing required property `{prop}`.", prop)
        return
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(sorted(allowed))
        report.error("E4004", f"Property `{prop}` must be one of {choices}, but was `{value}`.", prop)


def _check_rule(item: Mapping[str, Any], report: Report) -> None:
    _one_of(item, "importance", {i.value for i in Importance}, report)
    _one_of(item, "operator", OPERATORS, report, required=True)
    _one_of(item, "periodType", PERIOD_TYPES, report)
    for side in ("leftSide", "rightSide"):
        value = item.get(side)
        if not isinstance(value, Mapping) or not isinstance(value.get("expression"), str) or not value["expression"]:
            report.error("E4000", f"Missing required property `{side}.expression`.", side)
    for prop in ("description", "instruction"):
        if item.get(prop) is not None and not isinstance(item[prop], str):
            report.error("E4004", f"Property `{prop}` must be a string.", prop)


def _refs(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return [value]
    return [v.get("id") if isinstance(v, Mapping) else v for v in value]


def _check_template(importer: Importer, item: Mapping[str, Any], report: Report) -> None:
    message = item.get("messageTemplate")
    if not isinstance(message, str) or not message:
        report.error("E4000", "Missing required property `messageTemplate`.", "messageTemplate")
    elif len(message) > MESSAGE_TEMPLATE_MAX:
        report.error(
            "E4001",
            f"Maximum length of property `messageTemplate`is {MESSAGE_TEMPLATE_MAX}, but given length was {len(message)}.",
            "messageTemplate",
        )
    if item.get("subjectTemplate") is not None and not isinstance(item["subjectTemplate"], str):
        report.error("E4004", "Property `subjectTemplate` must be a string.", "subjectTemplate")
    _one_of(item, "sendStrategy", {s.value for s in SendStrategy}, report)
    for prop in ("notifyUsersInHierarchyOnly", "notifyParentOrganisationUnitOnly"):
        if item.get(prop) is not None and not isinstance(item[prop], bool):
            report.error("E4004", f"Property `{prop}` must be true or false.", prop)
    for prop, model, key, klass in (
        ("validationRules", ValidationRule, RULES, "ValidationRule"),
        ("recipientUserGroups", UserGroup, "userGroups", "UserGroup"),
    ):
        refs = _refs(item.get(prop))
        if refs is None:
            continue
        if not isinstance(item.get(prop), list):
            report.error("E4004", f"Property `{prop}` must be a list of objects with an id.", prop)
            continue
        for ref in refs:
            if not importer._exists(model, key, ref):
                report.error("E5002", f"Invalid reference [{ref}] ({klass}) on object property `{prop}`", prop)


def write(importer: Importer) -> None:
    """Create or update the validated rules, then the templates and their links. No commit."""
    session = importer.session
    for item in importer.payload.get(RULES, []):
        rule = importer._upsert(ValidationRule, RULES, item)
        rule.name = item["name"]
        rule.description = item.get("description")
        rule.instruction = item.get("instruction")
        rule.importance = item.get("importance") or Importance.MEDIUM.value
        rule.operator = item["operator"]
        left, right = item["leftSide"], item["rightSide"]
        rule.left_description, rule.left_expression = left.get("description"), left["expression"]
        rule.right_description, rule.right_expression = right.get("description"), right["expression"]
        rule.period_type = item.get("periodType") or "Monthly"
    session.flush()
    for item in importer.payload.get(TEMPLATES, []):
        template = importer._upsert(ValidationNotificationTemplate, TEMPLATES, item)
        template.name = item["name"]
        template.subject_template = item.get("subjectTemplate")
        template.message_template = item["messageTemplate"]
        template.notify_users_in_hierarchy_only = bool(item.get("notifyUsersInHierarchyOnly"))
        template.notify_parent_org_unit_only = bool(item.get("notifyParentOrganisationUnitOnly"))
        template.send_strategy = item.get("sendStrategy") or SendStrategy.COLLECTIVE_SUMMARY.value
        session.flush()
        for prop, model, link, column in (
            ("validationRules", ValidationRule, TemplateRule, "rule_id"),
            ("recipientUserGroups", UserGroup, TemplateGroup, "group_id"),
        ):
            refs = _refs(item.get(prop))
            if refs is None:
                continue
            session.execute(delete(link).where(link.template_id == template.id))
            ids = list(dict.fromkeys(session.scalars(select(model.id).where(model.uid.in_(refs))))) if refs else []
            session.add_all(link(template_id=template.id, **{column: target}) for target in ids)
    session.flush()
