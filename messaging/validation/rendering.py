"""Template rendering as DHIS2's ValidationNotificationMessageRenderer does it, and the summary texts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from messaging.validation.models import OPERATORS, Importance

SUBJECT_CHAR_LIMIT = 100
# Validation templates have every delivery channel, SMS included, so DHIS2 always cuts to the SMS limit.
SMS_CHAR_LIMIT = 160 * 4
MISSING_VALUE_REPLACEMENT = "[N/A]"
VALUE_ON_ERROR = "[SERVER ERROR]"
LN = "\n"
VARIABLES = (
    "rule_name", "rule_description", "operator", "importance", "left_side_description",
    "right_side_description", "left_side_value", "right_side_value", "org_unit_name", "period", "current_date",
)
_VARIABLE = re.compile(r"V\{([a-z_]*)}")
_VALID_CONTENT = re.compile(r"^[A-Za-z0-9_]+$")
# Attribute and data element expressions are not supported in validation templates: DHIS2 writes [N/A].
_UNSUPPORTED = (re.compile(r"A\{([A-Za-z][A-Za-z0-9]{10})}"), re.compile(r"#\{([A-Za-z][A-Za-z0-9]{10})}"))
# DHIS2's SmsMessageSender recognises a summary by this and sends its first line only.
_SUMMARY = re.compile(r"\s*High\s*[0-9]*\s*,\s*medium\s*[0-9]*\s*,\s*low\s*[0-9]*\s*")
_RANK = {Importance.HIGH.value: 3, Importance.MEDIUM.value: 2, Importance.LOW.value: 1}


@dataclass(frozen=True)
class Facts:
    """What a template's variables read of one validation result."""

    rule_name: str
    rule_description: str | None
    operator: str
    importance: str
    left_side_description: str | None
    right_side_description: str | None
    left_side_value: float | None
    right_side_value: float | None
    org_unit_name: str
    period: str


def java_double(value: float | None) -> str:
    """Java's Double.toString: 5.0, 0.001, 1.0E7, 1.0E-4; null is DHIS2's resolver error."""
    if value is None:
        return VALUE_ON_ERROR
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    magnitude = abs(value)
    if value == 0 or 1e-3 <= magnitude < 1e7:
        return repr(float(value))
    # Scientific, from Python's shortest round-trip digits (as Java's are): 1.23456789E7.
    sign, digits, exponent = Decimal(repr(float(value))).as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) + exponent - 1
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{power}"


def _values(facts: Facts, today: str) -> dict[str, str]:
    return {
        "rule_name": facts.rule_name,
        "rule_description": facts.rule_description or "",
        "operator": OPERATORS.get(facts.operator, ""),
        "importance": facts.importance,
        "left_side_description": facts.left_side_description or "",
        "right_side_description": facts.right_side_description or "",
        "left_side_value": java_double(facts.left_side_value),
        "right_side_value": java_double(facts.right_side_value),
        "org_unit_name": facts.org_unit_name,
        "period": facts.period,
        "current_date": today,
    }


def _replace(template: str | None, values: Mapping[str, str]) -> str:
    if not template:
        return ""

    def variable(match: re.Match[str]) -> str:
        key = match.group(1)
        if not _VALID_CONTENT.match(key):
            return MISSING_VALUE_REPLACEMENT  # e.g. V{}: never resolved
        return values.get(key, "")  # an unknown variable has no resolver: empty

    text = _VARIABLE.sub(variable, template)
    for pattern in _UNSUPPORTED:
        text = pattern.sub(MISSING_VALUE_REPLACEMENT, text)
    return text


def render(subject_template: str | None, message_template: str | None, facts: Facts, now: datetime) -> tuple[str, str]:
    """(subject, text) of one (result, template): variables replaced, subject cut to 100, text to 640."""
    values = _values(facts, now.strftime("%Y-%m-%d"))
    subject = _replace(subject_template, values)[:SUBJECT_CHAR_LIMIT]
    text = _replace(message_template, values)[:SMS_CHAR_LIMIT]
    return subject, text


def summary(rendered: Iterable[tuple[str, str, str]], now: datetime) -> tuple[str, str, str]:
    """DHIS2's collective summary of (importance, subject, text) pairs, in order: (subject, text, priority)."""
    items = list(rendered)
    counts = {level.value: 0 for level in Importance}
    for importance, _, _ in items:
        counts[importance] = counts.get(importance, 0) + 1
    subject = f"Validation violations as of {now.strftime('%Y-%m-%d %H:%M:%S')}"
    text = f"Violations: High {counts['HIGH']}, medium {counts['MEDIUM']}, low {counts['LOW']}"
    text += "".join(f"{LN}{LN}{s}{LN}{m}" for _, s, m in items)
    return subject, text, highest(i for i, _, _ in items)


def highest(importances: Iterable[str]) -> str:
    """The conversation priority of these importances: HIGH if any, else MEDIUM if any, else LOW."""
    best = max((_RANK.get(i, 0) for i in importances), default=1)
    return {3: "HIGH", 2: "MEDIUM"}.get(best, "LOW")


def sms_text(text: str) -> str:
    """What DHIS2's SMS sender sends of a text: a collective summary's first line, anything else whole."""
    if _SUMMARY.search(text):
        return text.split(LN, 1)[0]
    return text
