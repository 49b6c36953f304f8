"""DHIS2 ISO period identifiers: parse, check and name their period type."""

from __future__ import annotations

import re
from datetime import date

# Period type name -> pattern of its ISO id (DHIS2's PeriodType ISO formats).
_WEEK_PREFIXES = {"Weekly": "W", "WeeklyWednesday": "WedW", "WeeklyThursday": "ThuW",
                  "WeeklySaturday": "SatW", "WeeklySunday": "SunW", "BiWeekly": "BiW"}
_FINANCIAL = {"FinancialFeb": "Feb", "FinancialApril": "April", "FinancialJuly": "July",
              "FinancialAug": "Aug", "FinancialSep": "Sep", "FinancialOct": "Oct", "FinancialNov": "Nov"}
PERIOD_TYPES = frozenset(
    {"Daily", "Monthly", "BiMonthly", "Quarterly", "QuarterlyNov", "SixMonthly", "SixMonthlyApril",
     "SixMonthlyNov", "Yearly", *_WEEK_PREFIXES, *_FINANCIAL}
)

_YEAR = r"(?P<y>[12]\d{3})"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("Yearly", re.compile(rf"{_YEAR}")),
    ("Monthly", re.compile(rf"{_YEAR}(?P<m>\d{{2}})")),
    ("Daily", re.compile(rf"{_YEAR}(?P<m>\d{{2}})(?P<d>\d{{2}})")),
    ("BiMonthly", re.compile(rf"{_YEAR}(?P<n>\d{{2}})B")),
    ("Quarterly", re.compile(rf"{_YEAR}Q(?P<n>\d)")),
    ("QuarterlyNov", re.compile(rf"{_YEAR}NovQ(?P<n>\d)")),
    ("SixMonthly", re.compile(rf"{_YEAR}S(?P<n>\d)")),
    ("SixMonthlyApril", re.compile(rf"{_YEAR}AprilS(?P<n>\d)")),
    ("SixMonthlyNov", re.compile(rf"{_YEAR}NovS(?P<n>\d)")),
    *((name, re.compile(rf"{_YEAR}{prefix}(?P<n>\d{{1,2}})")) for name, prefix in _WEEK_PREFIXES.items()),
    *((name, re.compile(rf"{_YEAR}{suffix}")) for name, suffix in _FINANCIAL.items()),
]
_MAX_N = {"BiMonthly": 6, "Quarterly": 4, "QuarterlyNov": 4, "SixMonthly": 2, "SixMonthlyApril": 2,
          "SixMonthlyNov": 2, "BiWeekly": 27}


class PeriodError(ValueError):
    """Not a DHIS2 ISO period id."""


def parse_period(iso: object) -> tuple[str, str]:
    """(period type, canonical ISO id) of a DHIS2 period id such as 202401, 2024Q1, 2024W5; PeriodError otherwise."""
    if not isinstance(iso, str):
        raise PeriodError(f"Invalid period: `{iso}`")
    value = iso.strip()
    for name, pattern in _PATTERNS:
        match = pattern.fullmatch(value)
        if match is None:
            continue
        year = int(match["y"])
        parts = match.groupdict()
        if name == "Monthly" and not 1 <= int(parts["m"]) <= 12:
            break
        if name == "Daily":
            try:
                date(year, int(parts["m"]), int(parts["d"]))
            except ValueError:
                break
        n = int(parts["n"]) if parts.get("n") else None
        if n is not None:
            if name.startswith("Weekly"):
                if not 1 <= n <= _weeks_in(year):
                    break
                # DHIS2 writes weeks without a leading zero: 2024W05 is 2024W5.
                return name, f"{year}{_WEEK_PREFIXES[name]}{n}"
            if not 1 <= n <= _MAX_N[name]:
                break
            if name == "BiWeekly":
                return name, f"{year}BiW{n}"
        return name, value
    raise PeriodError(f"Invalid period: `{iso}`")


def _weeks_in(year: int) -> int:
    """52 or 53: ISO years whose 28 December falls in week 53 have 53 weeks."""
    return date(year, 12, 28).isocalendar()[1]
