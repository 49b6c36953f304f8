"""Bounded parsers of parameter text (query, path, setting values): never int() of 5,000 digits or of '²'.

Each returns None for text it does not read; the caller names the parameter in its error.
api/queries.py builds the typed query parameters from these.
"""

from __future__ import annotations

INT_MAX_DIGITS = 4300  # int()'s own default limit: a longer number was always refused, never clamped
BEYOND = 10**24  # larger than every bound a parameter clamps to
TRUE = frozenset({"true", "on", "yes", "1"})  # Spring's StringToBooleanConverter, as DHIS2 binds booleans
FALSE = frozenset({"false", "off", "no", "0"})


def small_int(text: str, max_digits: int = 19) -> int | None:
    """`text` as a whole number of at most `max_digits` ASCII digits, else None (never int() of 5,000 digits or of '²')."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= max_digits else None


def whole_number(text: str) -> int | None:
    """`text` as int() reads it (blanks, sign, '_'), without converting more than 24 characters.

    A longer run of ASCII digits is +/-BEYOND, for the caller to clamp; anything else is None.
    """
    stripped = text.strip()
    if len(stripped) <= 24:
        try:
            return int(stripped)
        except ValueError:
            return None
    sign = -1 if stripped[0] == "-" else 1
    body = stripped[1:] if stripped[0] in "+-" else stripped
    if not (body.isascii() and body.isdigit()) or len(body) > INT_MAX_DIGITS:
        return None
    digits = body.lstrip("0")
    return sign * (int(digits or "0") if len(digits) <= 24 else BEYOND)


def flag(text: str) -> bool | None:
    """A boolean as DHIS2 (Spring) binds it: true/false, on/off, yes/no, 1/0 in any case; else None."""
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    return None
