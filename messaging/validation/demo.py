"""Demo validation metadata: two rules, a single-notification template and its recipient group."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from messaging.metadata import import_metadata
from messaging.validation.models import ValidationRule

ANC_RULE, MEASLES_RULE = "BcQ7VdAnc01", "BcQ7VdMsl02"
TEMPLATE, GROUP = "BcQ7VdTpl01", "BcQ7VdGrp01"
ALICE, FATMATA = "OYLGMiazHtW", "awtnYWiVEd5"  # demo users at Ngelehun CHC (messaging/demo.py)

PAYLOAD = {
    "userGroups": [
        {"id": GROUP, "name": "Data quality officers", "users": [{"id": ALICE}, {"id": FATMATA}]},
    ],
    "validationRules": [
        {
            "id": ANC_RULE, "name": "ANC 2nd visits not above 1st visits", "importance": "HIGH",
            "description": "ANC 2nd visits cannot exceed ANC 1st visits", "operator": "less_than_or_equal_to",
            "periodType": "Monthly", "instruction": "Check the ANC register for double counting.",
            "leftSide": {"description": "ANC 2nd visits", "expression": "#{hfdmMSPBgLG}"},
            "rightSide": {"description": "ANC 1st visits", "expression": "#{fbfJHSPpUQD}"},
        },
        {
            "id": MEASLES_RULE, "name": "Measles doses within stock issued", "importance": "MEDIUM",
            "description": "Measles doses given cannot exceed doses issued", "operator": "less_than_or_equal_to",
            "periodType": "Monthly",
            "leftSide": {"description": "Measles doses given", "expression": "#{YtbsuPPo010}"},
            "rightSide": {"description": "Measles doses issued", "expression": "#{l6byfWFUGaP}"},
        },
    ],
    "validationNotificationTemplates": [
        {
            "id": TEMPLATE, "name": "Data quality alert", "sendStrategy": "SINGLE_NOTIFICATION",
            "subjectTemplate": "V{rule_name} at V{org_unit_name} (V{period})",
            "messageTemplate": "V{rule_description}: V{left_side_description} V{left_side_value} V{operator} "
            "V{right_side_description} V{right_side_value}. Importance V{importance}, found V{current_date}.",
            "validationRules": [{"id": ANC_RULE}, {"id": MEASLES_RULE}],
            "recipientUserGroups": [{"id": GROUP}],
        },
    ],
}


def load_validation_demo(session: Session) -> bool:
    """Import the demo validation metadata unless it is there; True when it wrote anything. No commit."""
    if session.scalar(select(ValidationRule.id).where(ValidationRule.uid == ANC_RULE)) is not None:
        return False
    report = import_metadata(session, PAYLOAD)
    if not report.ok:
        raise RuntimeError(f"demo validation metadata failed to import: {report.as_response()}")
    return True
