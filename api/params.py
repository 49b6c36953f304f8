"""Query parameters shared by DHIS2 list endpoints: fields, filter, order, paging."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from messaging.errors import BadRequest

MAX_PAGE_SIZE = 10_000
INT_MAX_DIGITS = 4300  # int()'s own default limit: a longer number was always refused, never clamped
BEYOND = 10**24  # larger than every bound a parameter clamps to
TRUE = frozenset({"true", "on", "yes", "1"})  # Spring's StringToBooleanConverter, as DHIS2 binds booleans
FALSE = frozenset({"false", "off", "no", "0"})


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() == "true"


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


def _int(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Value '{raw}' is not valid for parameter {name}.") from None
    return max(minimum, min(value, maximum))


@dataclass(frozen=True)
class Paging:
    """page, pageSize and paging as asked."""

    page: int
    page_size: int
    enabled: bool


def paging(request: Request) -> Paging:
    """Read page, pageSize and paging (DHIS2 defaults 1, 50, true)."""
    return Paging(
        page=_int(request, "page", 1, 1, 10**9),
        page_size=_int(request, "pageSize", 50, 1, MAX_PAGE_SIZE),
        enabled=_bool(request.query_params.get("paging"), True),
    )


def multi(request: Request, name: str) -> list[str]:
    """All values of a repeatable parameter, also split on commas where DHIS2 allows it."""
    return [v for v in request.query_params.getlist(name) if v != ""]


def uid_list(request: Request, name: str) -> list[str]:
    """A repeatable, comma-joinable list of ids (mc=a&mc=b or mc=a,b)."""
    return [part.strip() for value in request.query_params.getlist(name) for part in value.split(",") if part.strip()]


def pager(request: Request, page: Paging, total: int, *, base: str) -> dict[str, Any]:
    """DHIS2's pager object with absolute next/prev links where they apply."""
    page_count = max(1, ceil(total / page.page_size)) if total else 1
    current = min(max(page.page, 1), page_count)
    body: dict[str, Any] = {"page": current, "pageCount": page_count, "total": total, "pageSize": page.page_size}
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    path = f"{base}{request.url.path}"
    if current < page_count:
        body["nextPage"] = f"{path}?{urlencode([*params, ('page', str(current + 1))])}"
    if current > 1:
        body["prevPage"] = f"{path}?{urlencode([*params, ('page', str(current - 1))])}"
    return body
