"""DHIS2 `filter`, `order` and `queryString` parameters as SQLAlchemy Core expressions.

The caller maps each public property path (`subject`, `assignee.id`, ...) to a `Property`:
an SQL expression plus the kind of value it holds. Everything here is dialect-neutral and
runs unchanged on PostgreSQL and SQLite:

* `like` and its variants are case-sensitive SQL `LIKE` with `%` and `_` escaped (the SQLite
  engine turns on `PRAGMA case_sensitive_like`).
* `ilike` and `token` are case-insensitive regular expressions (`(?i)...`), a syntax both
  PostgreSQL's `~` and Python's `re` (SQLAlchemy's SQLite `REGEXP`) understand. Unlike
  SQLite's `lower()`, they fold non-ASCII letters too ("TRAORÉ" matches "traoré"). On
  PostgreSQL this relies on a UTF-8 `LC_CTYPE` (e.g. `C.UTF-8`), as for `lower()`/`ILIKE`.
* A negated operator (`!eq`, `ne`, `!like`, `!in`, `!token`, ...) selects exactly the rows its
  positive form does not, so rows whose value is NULL are included.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import BigInteger, String, and_, cast, false, func, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement


class QueryError(ValueError):
    """A filter/order cannot be applied; `.message` is the user-facing DHIS2-style text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Filter:
    """One `filter=path:op[:value]` parameter."""

    path: str
    op: str
    value: str | None


@dataclass(frozen=True)
class Order:
    """One `order=path[:asc|desc|iasc|idesc]` item."""

    path: str
    descending: bool
    case_insensitive: bool


class Kind(Enum):
    """How a property's filter values are parsed and compared."""

    STRING = "string"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    DATETIME = "datetime"
    ENUM = "enum"


@dataclass(frozen=True)
class Property:
    """A filterable/sortable property: its SQL expression and value kind."""

    expression: Any  # a column, mapped attribute or SQL expression
    kind: Kind
    enum_values: frozenset[str] = frozenset()
    sortable: bool = True


_NO_VALUE = frozenset({"null", "!null", "empty", "!empty"})
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "ge": operator.ge,
    "gte": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "lte": operator.le,
}
_TEXT_OPS = frozenset({"like", "$like", "like$", "ilike", "$ilike", "ilike$", "token"})
_NEGATIONS = {
    "!eq": "eq",
    "ne": "eq",
    "neq": "eq",
    "!in": "in",
    "!token": "token",
    **{f"!{op}": op for op in ("like", "$like", "like$", "ilike", "$ilike", "ilike$")},
}
_BOOLEAN_OPS = frozenset({"eq", "in"})  # with their negations: !eq, ne, neq, !in
_INT64 = range(-(2**63), 2**63)
_INT32 = range(-(2**31), 2**31)
_DIRECTIONS = {"asc": (False, False), "desc": (True, False), "iasc": (False, True), "idesc": (True, True)}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TOKEN_SEPARATORS = re.compile(r"[\W_]+")
# "Start of the text or a character that is not a letter or digit". Valid in both
# PostgreSQL's ARE syntax and Python's re; `(?i)` must open the pattern in both.
_WORD_START = r"(?i)(?:^|\W|_)"


def parse_filters(values: Sequence[str]) -> list[Filter]:
    """Parse `prop:op:value` strings; the value may contain ':'; null/empty ops take none."""
    filters = []
    for raw in values:
        path, sep, rest = raw.partition(":")
        op, has_value, value = rest.partition(":")
        if not path or not sep or not op:
            raise QueryError(f"Invalid filter => {raw}")
        filters.append(Filter(path, op, value if has_value and op not in _NO_VALUE else None))
    return filters


def parse_order(values: Sequence[str]) -> list[Order]:
    """Parse `a:desc,b` items (comma-separated and/or repeated); a bare path is ascending."""
    orders = []
    for raw in values:
        for item in raw.split(","):
            path, _, direction = item.strip().partition(":")
            if not path and not direction:
                continue
            key = direction.strip().lower() or "asc"
            if not path or key not in _DIRECTIONS:
                raise QueryError(f"Invalid order `{item.strip()}`: expected property:asc|desc|iasc|idesc.")
            descending, case_insensitive = _DIRECTIONS[key]
            orders.append(Order(path.strip(), descending, case_insensitive))
    return orders


JUNCTIONS = ("AND", "OR")


def parse_junction(text: str) -> str:
    """DHIS2 `rootJunction` (any case, blanks around it) as AND or OR, else QueryError."""
    root = text.strip().upper()
    if root not in JUNCTIONS:
        raise QueryError(f"Invalid rootJunction `{text[:40]}`: expected AND or OR.")
    return root


def where_clause(
    props: Mapping[str, Property], filters: Sequence[Filter], junction: str = "AND"
) -> ColumnElement[bool] | None:
    """Combine the filters with `junction` (DHIS2 `rootJunction`, AND or OR); None if none."""
    root = parse_junction(junction)
    parts = [_predicate(_lookup(props, f.path), f.op, f.value, f.path) for f in filters]
    if not parts:
        return None
    return and_(*parts) if root == "AND" else or_(*parts)


def order_clauses(props: Mapping[str, Property], orders: Sequence[Order]) -> list[ColumnElement[Any]]:
    """ORDER BY terms; iasc/idesc compare lower-cased text; NULLs sort as PostgreSQL does."""
    clauses: list[ColumnElement[Any]] = []
    for order in orders:
        prop = _lookup(props, order.path)
        if not prop.sortable:
            raise QueryError(f"Property `{order.path}` cannot be used to order.")
        expr = prop.expression
        if order.case_insensitive and prop.kind in (Kind.STRING, Kind.ENUM):
            expr = func.lower(_as_text(prop))
        clauses.append(expr.desc().nulls_first() if order.descending else expr.asc().nulls_last())
    return clauses


def narrowed_values(props: Mapping[str, Property], filters: Sequence[Filter], path: str) -> frozenset[str] | None:
    """The values an enum property can still take under AND-ed `eq`/`in` filters on it; None if unconstrained."""
    prop = _lookup(props, path)
    allowed: frozenset[str] | None = None
    for f in filters:
        if f.path != path or f.value is None or f.op not in ("eq", "in"):
            continue
        items = [f.value] if f.op == "eq" else _parse_list(f.value)
        values = frozenset(_parse_value(prop, item, path) for item in items)
        allowed = values if allowed is None else allowed & values
    return allowed


def text_match(expr: Any, op: str, query: str) -> ColumnElement[bool]:
    """The `queryString` predicate: `expr <op> query` for any filter operator (default token)."""
    return _predicate(Property(expr, Kind.STRING), op, query, "queryString")


def query_tokens(text: str) -> list[str]:
    """Split text into DHIS2 tokens: runs of letters and digits (other characters separate)."""
    return [t for t in _TOKEN_SEPARATORS.split(unicodedata.normalize("NFC", text)) if t]


def _lookup(props: Mapping[str, Property], path: str) -> Property:
    prop = props.get(path)
    if prop is None:
        raise QueryError(f"Unknown path property: {path}")
    return prop


def _as_text(prop: Property) -> ColumnElement[Any]:
    return cast(prop.expression, String) if prop.kind is Kind.ENUM else prop.expression


def _predicate(prop: Property, op: str, value: str | None, path: str) -> ColumnElement[bool]:
    expr = prop.expression
    if op in ("null", "!null"):
        return expr.is_(None) if op == "null" else expr.is_not(None)
    if op in ("empty", "!empty"):
        empty = or_(expr.is_(None), expr == "") if prop.kind is Kind.STRING else expr.is_(None)
        return empty if op == "empty" else not_(empty)
    base = _NEGATIONS.get(op, op)
    if base not in _COMPARISONS and base not in _TEXT_OPS and base != "in":
        raise QueryError(f"`{op}` is not a valid operator.")
    if value is None:
        raise QueryError(f"Operator `{op}` of `{path}` needs a value.")
    if "\x00" in value:
        raise QueryError(f"Invalid value for `{path}`: NUL character.")
    positive: ColumnElement[bool]
    if prop.kind is Kind.BOOLEAN and base in _COMPARISONS and base not in _BOOLEAN_OPS:
        raise QueryError(f"Operator `{op}` cannot be used on `{path}`, which is a boolean: use eq, ne, null or !null.")
    if base in _COMPARISONS:
        operand = _parse_value(prop, value, path)
        positive = _COMPARISONS[base](_wide_enough(expr, [operand]), operand)
    elif base == "in":
        items = _parse_list(value)
        if not items:
            raise QueryError(f"Invalid argument `{value}` for in operator.")
        operands = [_parse_value(prop, item, path) for item in items]
        positive = _wide_enough(expr, operands).in_(operands)
    elif prop.kind not in (Kind.STRING, Kind.ENUM):
        raise QueryError(f"Operator `{op}` cannot be used on `{path}`, which is not text.")
    else:
        positive = _text_predicate(_as_text(prop), base, value)
    if base == op:
        return positive
    return not_(func.coalesce(positive, false()))


def _wide_enough(expr: Any, operands: Sequence[Any]) -> Any:
    """`expr`, widened to 64 bits when an integer operand does not fit a 32-bit column.

    PostgreSQL types the parameter after the column, so `int4_column > 2**40` would fail.
    """
    narrow = not isinstance(getattr(expr, "type", None), BigInteger)
    if narrow and any(isinstance(o, int) and not isinstance(o, bool) and o not in _INT32 for o in operands):
        return cast(expr, BigInteger)
    return expr


def _text_predicate(expr: ColumnElement[Any], op: str, value: str) -> ColumnElement[bool]:
    if op == "token":
        tokens = list(dict.fromkeys(query_tokens(value)))
        if not tokens:
            return true()
        return and_(*(expr.regexp_match(_WORD_START + re.escape(t)) for t in tokens))
    if op == "like":
        return expr.contains(value, autoescape=True)
    if op == "$like":
        return expr.startswith(value, autoescape=True)
    if op == "like$":
        return expr.endswith(value, autoescape=True)
    # ilike family. re.escape only backslashes non-alphanumerics, which PostgreSQL also reads
    # as literals; \A and \Z anchor to the very start and end in both engines.
    literal = re.escape(unicodedata.normalize("NFC", value))
    pattern = {"ilike": literal, "$ilike": r"\A" + literal, "ilike$": literal + r"\Z"}[op]
    return expr.regexp_match("(?i)" + pattern)


def _parse_list(value: str) -> list[str]:
    inner = value.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    return inner.split(",") if inner else []


def _parse_value(prop: Property, value: str, path: str) -> Any:
    kind = prop.kind
    if kind is Kind.STRING:
        length = getattr(getattr(prop.expression, "type", None), "length", None)
        if length is not None and len(value) > length:
            raise QueryError(f"Value of `{path}` is longer than its {length} characters.")
        return value
    text = value.strip()
    if kind is Kind.ENUM:
        if text not in prop.enum_values:
            allowed = ", ".join(sorted(prop.enum_values))
            raise QueryError(f"Unable to parse `{value}` as `{path}`: expected one of {allowed}.")
        return text
    if kind is Kind.BOOLEAN and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind is Kind.INTEGER and _INTEGER.fullmatch(text):
        number = int(text) if len(text) <= 20 else None  # int() of thousands of digits is slow, then refused
        if number is None or number not in _INT64:
            raise QueryError(f"Value `{value}` of `{path}` is outside the 64-bit integer range.")
        return number
    if kind is Kind.DATETIME:
        try:
            parsed = datetime.fromisoformat(text)
            return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
        except OverflowError:
            raise QueryError(f"Date `{value}` of `{path}` is outside the years 1 to 9999.") from None
        except ValueError:
            pass
    raise QueryError(f"Unable to parse `{value}` as `{kind.value}` for `{path}`.")
