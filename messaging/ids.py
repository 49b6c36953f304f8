"""DHIS2 identifiers: 11 characters, a letter then letters or digits."""

from __future__ import annotations

import re
import secrets
import string

_LETTERS = string.ascii_letters
_ALPHANUMERIC = string.ascii_letters + string.digits
UID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]{10}$")


def new_uid() -> str:
    """A fresh DHIS2 UID from a cryptographically secure generator."""
    return secrets.choice(_LETTERS) + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(10))


def is_uid(value: object) -> bool:
    """True when value is a syntactically valid DHIS2 UID."""
    return isinstance(value, str) and UID_PATTERN.match(value) is not None
