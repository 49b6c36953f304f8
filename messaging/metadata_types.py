"""The JSON types of DHIS2 metadata properties, checked before anything reads them.

Booleans are what DHIS2's Jackson parser takes: JSON true/false and the strings "true"/"false"
(any case); null is false. A property of the wrong type is an import error naming it (409),
never a guess: `"disabled": "no"` disables nobody.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

TYPE_ERROR = "E4070"  # Herald's code: a property of the wrong JSON type
CYCLE_ERROR = "E4071"  # Herald's code: an organisation unit would be its own ancestor

TEXT = {
    "organisationUnits": ("id", "name", "shortName", "code"),
    "userRoles": ("id", "name", "code"),
    "users": ("id", "username", "password", "firstName", "surname", "email", "phoneNumber", "code"),
    "userGroups": ("id", "name", "code"),
}
BOOLEANS = {"users": ("disabled",)}
REFERENCES = {"organisationUnits": ("parent",)}
REFERENCE_LISTS = {"users": ("organisationUnits", "userRoles"), "userGroups": ("users",)}
TEXT_LISTS = {"userRoles": ("authorities",)}
USER_CREDENTIALS = ("username", "password", "disabled", "userRoles")


def as_boolean(value: Any) -> bool:
    """The boolean DHIS2 reads from a JSON value; ValueError for anything else."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise ValueError(value)


def _is_boolean(value: Any) -> bool:
    try:
        as_boolean(value)
    except ValueError:
        return False
    return True


def _is_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("id"), (str, type(None)))


def _problems(key: str, item: Mapping[str, Any], props: tuple[str, ...] | None = None) -> Iterator[tuple[str, str]]:
    def wanted(prop: str) -> bool:
        return prop in item and item[prop] is not None and (props is None or prop in props)

    for prop in TEXT.get(key, ()):
        if wanted(prop) and not isinstance(item[prop], str):
            yield prop, "a string"
    for prop in BOOLEANS.get(key, ()):
        if prop in item and (props is None or prop in props) and not _is_boolean(item[prop]):
            yield prop, 'true, false, "true" or "false"'
    for prop in REFERENCES.get(key, ()):
        if wanted(prop) and not _is_reference(item[prop]):
            yield prop, 'an object with an "id"'
    for prop in REFERENCE_LISTS.get(key, ()):
        if wanted(prop) and not (isinstance(item[prop], list) and all(_is_reference(v) for v in item[prop])):
            yield prop, 'a list of objects with an "id"'
    for prop in TEXT_LISTS.get(key, ()):
        if wanted(prop) and not (isinstance(item[prop], list) and all(isinstance(v, str) for v in item[prop])):
            yield prop, "a list of strings"


def type_errors(key: str, item: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(errorCode, message, property) for every property of `item` (of list `key`) with a wrong JSON type."""
    problems = list(_problems(key, item))
    if key == "users" and "userCredentials" in item and item["userCredentials"] is not None:
        credentials = item["userCredentials"]
        if isinstance(credentials, Mapping):
            problems += [(f"userCredentials.{p}", what) for p, what in _problems(key, credentials, USER_CREDENTIALS)]
        else:
            problems.append(("userCredentials", "an object"))
    return [(TYPE_ERROR, f"Property `{prop}` must be {what}.", prop) for prop, what in problems]
