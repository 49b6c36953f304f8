"""DHIS2 period ids and the renderer's value formats, without a server."""

from __future__ import annotations

from datetime import datetime

import pytest

from messaging.validation.periods import PeriodError, parse_period
from messaging.validation.rendering import Facts, java_double, render, sms_text, summary


@pytest.mark.parametrize(
    ("iso", "expected"),
    [
        ("202401", ("Monthly", "202401")), ("2024Q1", ("Quarterly", "2024Q1")), ("2024W05", ("Weekly", "2024W5")),
        ("2024", ("Yearly", "2024")), ("20240115", ("Daily", "20240115")), ("2024BiW3", ("BiWeekly", "2024BiW3")),
        ("202401B", ("BiMonthly", "202401B")), ("2024AprilS2", ("SixMonthlyApril", "2024AprilS2")),
        ("2024July", ("FinancialJuly", "2024July")), ("2024SunW3", ("WeeklySunday", "2024SunW3")),
        ("2020W53", ("Weekly", "2020W53")),
    ],
)
def test_dhis2_period_ids_are_recognised_and_weeks_written_as_dhis2_does(iso: str, expected: tuple[str, str]) -> None:
    assert parse_period(iso) == expected


@pytest.mark.parametrize("iso", ["202413", "2024Q5", "2021W53", "20240230", "2024W0", "abc", "", None, 202401])
def test_impossible_periods_are_refused(iso: object) -> None:
    with pytest.raises(PeriodError):
        parse_period(iso)


@pytest.mark.parametrize(
    ("value", "text"),
    [(5, "5.0"), (0.001, "0.001"), (0.0001, "1.0E-4"), (1e7, "1.0E7"), (12345678.9, "1.23456789E7"), (-3, "-3.0"),
     (None, "[SERVER ERROR]")],
)
def test_values_render_as_javas_double_to_string(value: float | None, text: str) -> None:
    assert java_double(value) == text


def test_a_summary_counts_each_importance_and_its_sms_is_the_first_line() -> None:
    now = datetime(2024, 2, 3, 4, 5, 6)
    subject, text, priority = summary([("LOW", "a", "x"), ("MEDIUM", "b", "y")], now)
    assert subject == "Validation violations as of 2024-02-03 04:05:06"
    assert text == "Violations: High 0, medium 1, low 1\n\na\nx\n\nb\ny"
    assert priority == "MEDIUM"
    assert sms_text(text) == "Violations: High 0, medium 1, low 1"
    assert sms_text("Stock is low.\nReorder.") == "Stock is low.\nReorder."


def test_the_operator_variable_is_the_mathematical_form() -> None:
    facts = Facts("R", None, "compulsory_pair", "HIGH", None, None, 1.0, 2.0, "Bo", "2024")
    assert render("V{operator}", "V{rule_description}|V{left_side_description}", facts, datetime(2024, 1, 1)) == (
        "[Compulsory pair]", "|"
    )
