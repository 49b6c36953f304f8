"""Validation metadata and helpers the validation tests share."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine, select

from messaging.models import Conversation, Message, User, UserMessage
from messaging.validation.models import ValidationNotification

NGELEHUN, NJANDAMA, BO, BADJIA, SIERRA_LEONE = "DiszpKrYNg8", "g8upMTyEZGZ", "O6uvpzGd5pu", "YuQRtpLP10I", "ImspTQPwCqd"
ALICE, IBRAHIM, MOHAMED, ADMIN, FATMATA = "OYLGMiazHtW", "N3PZBUlN8vq", "Kh68cDMwZsg", "xE7jOejl9FI", "awtnYWiVEd5"
RULE_HIGH, RULE_LOW, RULE_MEDIUM = "VrHighAnc01", "VrLowMeasl1", "VrMedStock1"
TEAM, CHIEFS = "UgValTeam01", "UgValChief1"


def rule(uid: str, name: str, importance: str, **extra: Any) -> dict[str, Any]:
    """A validation rule payload."""
    return {
        "id": uid, "name": name, "description": f"{name} description", "importance": importance,
        "operator": "less_than_or_equal_to", "periodType": "Monthly",
        "leftSide": {"description": "ANC 1st visits", "expression": "#{fbfJHSPpUQD}"},
        "rightSide": {"description": "Expected pregnancies", "expression": "#{h0xKKjijTdI}"},
        **extra,
    }


def template(uid: str, rules: list[str], groups: list[str], strategy: str, **extra: Any) -> dict[str, Any]:
    """A validation notification template payload."""
    return {
        "id": uid, "name": f"Template {uid}",
        "subjectTemplate": "V{rule_name} at V{org_unit_name}",
        "messageTemplate": "V{left_side_description} V{left_side_value} V{operator} V{right_side_value} in V{period}",
        "validationRules": [{"id": r} for r in rules], "recipientUserGroups": [{"id": g} for g in groups],
        "sendStrategy": strategy, **extra,
    }


RULES = [
    rule(RULE_HIGH, "ANC visits above expected", "HIGH"),
    rule(RULE_LOW, "Measles doses", "LOW"),
    rule(RULE_MEDIUM, "Stock balance", "MEDIUM"),
]
GROUPS = [
    {"id": TEAM, "name": "Validation team", "users": [{"id": u} for u in (ALICE, IBRAHIM, MOHAMED, ADMIN)]},
    {"id": CHIEFS, "name": "District chiefs", "users": [{"id": MOHAMED}]},
]


def import_metadata(client: httpx.Client, templates: list[dict[str, Any]], **more: Any) -> httpx.Response:
    """POST rules, groups and these templates to /api/metadata; assert it worked."""
    response = client.post(
        "/api/metadata", json={"userGroups": GROUPS, "validationRules": RULES, "validationNotificationTemplates": templates, **more}
    )
    assert response.status_code == 200, response.text
    return response


def result(rule_uid: str, org_unit: str = NGELEHUN, period: str = "202401", **extra: Any) -> dict[str, Any]:
    """A ValidationResult payload."""
    return {
        "validationRule": {"id": rule_uid}, "period": {"id": period}, "organisationUnit": {"id": org_unit},
        "leftsideValue": 12.0, "rightsideValue": 10, "dayInPeriod": 15, **extra,
    }


def validation_conversations(engine: Engine) -> list[dict[str, Any]]:
    """Every VALIDATION_RESULT conversation with its text and participants' usernames, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Conversation.id, Conversation.uid, Conversation.subject, Conversation.priority, Conversation.status,
                   Conversation.last_sender_id, Message.text, Message.sender_id)
            .join(Message, Message.conversation_id == Conversation.id)
            .where(Conversation.message_type == "VALIDATION_RESULT")
            .order_by(Conversation.id)
        ).all()
        members = conn.execute(
            select(UserMessage.conversation_id, User.username, UserMessage.read)
            .join(User, User.id == UserMessage.user_id)
            .where(UserMessage.message_type == "VALIDATION_RESULT")
        ).all()
        notes = conn.execute(select(ValidationNotification.conversation_id, ValidationNotification.result_id)).all()
    by_conversation: dict[int, dict[str, bool]] = {}
    for cid, username, read in members:
        by_conversation.setdefault(cid, {})[username] = read
    result_of = dict(notes)
    return [
        {"uid": r.uid, "subject": r.subject, "priority": r.priority, "status": r.status, "text": r.text,
         "sender": r.sender_id, "last_sender": r.last_sender_id, "users": by_conversation.get(r.id, {}),
         "result_id": result_of.get(r.id)}
        for r in rows
    ]
