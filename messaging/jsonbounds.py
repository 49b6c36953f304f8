"""JSON parsing with bounds on size, nesting depth and number length, checked before any work.

Every JSON-reading path (request bodies, app manifests, metadata) goes through `load_json`, so a
5,000-digit number, a document nested 100,000 deep or a NaN never reaches a parser, a database or
a recursion limit. The nesting check is one linear pass, done only when the document has more
brackets than the depth limit, so ordinary bodies cost nothing extra.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64  # DHIS2 metadata nests a handful of levels; the app platform's manifests fewer
MAX_NUMBER_DIGITS = 40  # longer than any id, count or 64-bit value a client sends
# A string, closed or not (an unclosed one runs to the end once: re-scanning from each of its quotes
# would cost the square of the body), or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class JsonBoundsError(ValueError):
    """The text is not JSON or lies beyond a bound; `str(exc)` is a user-facing reason."""


def _nesting_depth(raw: bytes) -> int:
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _number_parsers(max_digits: int) -> tuple[Any, Any]:
    def parse_int(text: str) -> int:
        if len(text) - text.startswith("-") > max_digits:
            raise JsonBoundsError(f"a number has more than {max_digits} digits")
        return int(text)

    def parse_float(text: str) -> float:
        if sum(c.isdigit() for c in text) > max_digits:
            raise JsonBoundsError(f"a number has more than {max_digits} digits")
        value = float(text)
        if not math.isfinite(value):
            raise JsonBoundsError(f"the number {text} is out of range")
        return value

    return parse_int, parse_float


def _constant(name: str) -> Any:
    raise JsonBoundsError(f"{name} is not a JSON value")


def load_json(
    raw: bytes | str,
    *,
    max_bytes: int | None = None,
    max_depth: int = MAX_DEPTH,
    max_digits: int = MAX_NUMBER_DIGITS,
) -> Any:
    """Decode JSON (UTF-8, a BOM allowed) within the bounds, or raise JsonBoundsError saying why."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonBoundsError(f"the document is larger than {max_bytes} bytes")
    if data.count(b"[") + data.count(b"{") > max_depth and _nesting_depth(data) > max_depth:
        raise JsonBoundsError(f"the document is nested deeper than {max_depth} levels")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonBoundsError(f"the document is not UTF-8: {exc}") from None
    parse_int, parse_float = _number_parsers(max_digits)
    try:
        return json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=_constant)
    except JsonBoundsError:
        raise
    except RecursionError:
        raise JsonBoundsError("the document is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise JsonBoundsError(str(exc)) from None
