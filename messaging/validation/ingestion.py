"""Storing posted validation results: each (rule, period, org unit, attribute option combo) once, ever."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from messaging import outbox
from messaging.conversations import chunks
from messaging.ids import is_uid, new_uid
from messaging.models import OrganisationUnit, utcnow
from messaging.validation.models import DEFAULT_COMBO, ValidationResult, ValidationRule
from messaging.validation.periods import PeriodError, parse_period

KEY = ("rule_id", "period", "org_unit_id", "attribute_option_combo")


class ResultsPayloadError(ValueError):
    """The body is neither a list of results nor {"validationResults": [...]}."""


@dataclass
class ImportSummary:
    """DHIS2's ImportSummary of one POST: counts and one conflict per bad entry."""

    imported: int = 0
    ignored: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    result_ids: list[int] = field(default_factory=list)

    @property
    def status(self) -> str:
        """SUCCESS, WARNING (some conflicts) or ERROR (nothing valid)."""
        if not self.conflicts:
            return "SUCCESS"
        return "WARNING" if self.imported or self.ignored else "ERROR"

    def as_response(self) -> dict[str, Any]:
        """The `response` of the WebMessage."""
        return {
            "responseType": "ImportSummary",
            "status": self.status,
            "importCount": {"imported": self.imported, "updated": 0, "ignored": self.ignored, "deleted": 0},
            "conflicts": self.conflicts,
        }

    def conflict(self, index: int, prop: str, obj: Any, message: str) -> None:
        """Record why entry `index` was not stored."""
        self.conflicts.append({"object": "" if obj is None else str(obj), "property": prop, "value": message, "indexes": [index]})


def entries_of(payload: Any) -> list[Any]:
    """The list of results of a body: a JSON list, or {"validationResults": [...]}."""
    if isinstance(payload, Mapping):
        payload = payload.get("validationResults")
    if not isinstance(payload, list):
        raise ResultsPayloadError('Expected a list of validation results or {"validationResults": [...]}.')
    return payload


def _ref(entry: Mapping[str, Any], prop: str) -> Any:
    value = entry.get(prop)
    return value.get("id") if isinstance(value, Mapping) else value


def _number(value: Any) -> tuple[bool, float | None]:
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False, None
    return True, float(value)


def store_results(session: Session, entries: Sequence[Any]) -> ImportSummary:
    """Insert the valid entries not stored yet and stage their notification. No commit."""
    summary = ImportSummary()
    objects = [e if isinstance(e, Mapping) else {} for e in entries]
    rule_uids = {u for e in objects if isinstance(u := _ref(e, "validationRule"), str) and is_uid(u)}
    unit_uids = {u for e in objects if isinstance(u := _ref(e, "organisationUnit"), str) and is_uid(u)}
    rules = _ids(session, ValidationRule, rule_uids)
    units = _ids(session, OrganisationUnit, unit_uids)
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    duplicates = 0
    now = utcnow()
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            summary.conflict(index, "validationResult", entry, "Validation result must be an object.")
            continue
        row = _row(summary, index, entry, rules, units, now)
        if row is None:
            continue
        key = tuple(row[k] for k in KEY)
        if key in rows:
            duplicates += 1  # the same result twice in one request: stored once
            continue
        rows[key] = row
    inserted = _insert(session, list(rows.values()))
    summary.imported = len(inserted)
    summary.ignored = len(rows) - len(inserted) + duplicates
    summary.result_ids = sorted(inserted)
    if inserted:
        stage_notification(session, summary.result_ids)
    return summary


# PostgreSQL: one statement over arrays, whatever the count (a multi-row VALUES of 10,000 results
# costs more to build and parse than to run). Elsewhere: the portable executemany, same ON CONFLICT.
_INSERT_PG = text(
    """
    INSERT INTO validation_results
        (rule_id, period, org_unit_id, attribute_option_combo, left_value, right_value, day_in_period,
         notification_sent, created)
    SELECT r, p, o, a, l, rv, d, false, :now
    FROM unnest(CAST(:rules AS BIGINT[]), CAST(:periods AS VARCHAR[]), CAST(:units AS BIGINT[]),
                CAST(:combos AS VARCHAR[]), CAST(:lefts AS FLOAT8[]), CAST(:rights AS FLOAT8[]),
                CAST(:days AS INTEGER[])) AS t(r, p, o, a, l, rv, d)
    ON CONFLICT (rule_id, period, org_unit_id, attribute_option_combo) DO NOTHING
    RETURNING id
    """
)


def _insert(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows not stored yet; the ids of those inserted."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        params = {
            "now": rows[0]["created"],
            "rules": [r["rule_id"] for r in rows], "periods": [r["period"] for r in rows],
            "units": [r["org_unit_id"] for r in rows], "combos": [r["attribute_option_combo"] for r in rows],
            "lefts": [r["left_value"] for r in rows], "rights": [r["right_value"] for r in rows],
            "days": [r["day_in_period"] for r in rows],
        }
        return list(session.execute(_INSERT_PG, params).scalars())
    statement = sqlite.insert(ValidationResult).on_conflict_do_nothing(index_elements=list(KEY)).returning(ValidationResult.id)
    inserted: list[int] = []
    for part in chunks(rows, 2000):
        inserted.extend(session.execute(statement, list(part)).scalars())
    return inserted


def stage_notification(session: Session, result_ids: list[int] | None) -> str:
    """Stage the outbox event that notifies these results (None: every result not yet notified); its batch id."""
    payload: dict[str, Any] = {"batch": new_uid()}
    if result_ids is not None:
        payload["result_ids"] = result_ids
    outbox.stage(session, outbox.VALIDATION_RESULTS, payload)
    return str(payload["batch"])


def _row(
    summary: ImportSummary, index: int, entry: Mapping[str, Any], rules: dict[str, int], units: dict[str, int], now: Any
) -> dict[str, Any] | None:
    ok = True
    rule = _ref(entry, "validationRule")
    if rule not in rules:
        summary.conflict(index, "validationRule", rule, f"Validation rule not found or not accessible: `{rule}`")
        ok = False
    unit = _ref(entry, "organisationUnit")
    if unit not in units:
        summary.conflict(index, "organisationUnit", unit, f"Organisation unit not found or not accessible: `{unit}`")
        ok = False
    raw_period = _ref(entry, "period")
    period = None
    try:
        _, period = parse_period(raw_period)
    except PeriodError:
        summary.conflict(index, "period", raw_period, f"Period not valid: `{raw_period}`")
        ok = False
    combo = _ref(entry, "attributeOptionCombo") or DEFAULT_COMBO
    if not is_uid(combo):
        summary.conflict(index, "attributeOptionCombo", combo, f"Attribute option combo not valid: `{combo}`")
        ok = False
    values: dict[str, float | None] = {}
    for prop in ("leftsideValue", "rightsideValue"):
        valid, number = _number(entry.get(prop))
        if not valid:
            summary.conflict(index, prop, entry.get(prop), f"Value must be a number: `{entry.get(prop)}`")
            ok = False
        values[prop] = number
    day = entry.get("dayInPeriod", 0)
    if day is None:
        day = 0
    if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 366:
        summary.conflict(index, "dayInPeriod", day, f"Day in period must be a whole number from 0 to 366: `{day}`")
        ok = False
    if not ok:
        return None
    return {
        "rule_id": rules[rule],
        "period": period,
        "org_unit_id": units[unit],
        "attribute_option_combo": combo,
        "left_value": values["leftsideValue"],
        "right_value": values["rightsideValue"],
        "day_in_period": day,
        "notification_sent": False,
        "created": now,
    }


def _ids(session: Session, model: Any, uids: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    ordered = sorted(uids)
    for part in chunks(ordered):
        found.update(session.execute(select(model.uid, model.id).where(model.uid.in_(part))).all())
    return found
