"""Delivery search values, as /api/deliveries, /api/ops/deliveries and their actions take them.

One parser for the query string (its typed model, api/queries.py) and for the JSON body of a bulk
action, so the dashboard's filters, the DHIS2 list and "everything matching" name the same rows.
Bad values are 400s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from api.params import small_int
from messaging import deliveries
from messaging import query as q
from messaging.deliveries import DeliveryQuery
from messaging.errors import BadRequest

INT64_MAX = 2**63 - 1
SEARCH_KEYS = ("channel", "status", "errorCode", "recipient", "user", "messageConversation", "from", "to")


def delivery_id(raw: str) -> int:
    """A delivery id from a path or a body: a positive 64-bit integer, else 400."""
    text = raw.strip()
    value = small_int(text)
    if value is None or not 0 < value <= INT64_MAX:
        raise BadRequest(f"Value '{raw[:40]}' is not valid for a delivery id: expected a positive 64-bit integer.")
    return value


def delivery_ids(value: Any) -> tuple[int, ...]:
    """The ``ids`` of a bulk action: a list of positive 64-bit integers, else 400."""
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise BadRequest("'ids' must be a list of delivery ids (numbers).")
    for i in value:
        if not 0 < i <= INT64_MAX:
            raise BadRequest(f"Value '{str(i)[:40]}' is not valid for a delivery id: expected a positive 64-bit integer.")
    return tuple(value)


def _values(raw: Any, name: str) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(item, str) for item in items):
        raise BadRequest(f"'{name}' must be a string or a list of strings.")
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def _choices(values: list[str], allowed: frozenset[str] | tuple[str, ...], name: str, fold: Callable[[str], str]) -> tuple[str, ...]:
    chosen = tuple(fold(v) for v in values)
    for value in chosen:
        if value not in allowed:
            raise BadRequest(f"Value '{value}' is not valid for parameter {name}: expected one of {', '.join(sorted(allowed))}.")
    return chosen


def _time(values: list[str], name: str) -> datetime | None:
    if not values:
        return None
    try:
        parsed = datetime.fromisoformat(values[-1])
    except ValueError:
        raise BadRequest(f"Value '{values[-1][:40]}' is not valid for parameter {name}: expected an ISO 8601 date or time.") from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def search_query(source: Mapping[str, Any], *, extra: Sequence[Any] = (), ids: tuple[int, ...] | None = None) -> DeliveryQuery:
    """A DeliveryQuery from the search keys of a query string (multi-valued) or a JSON object."""
    values = {key: _values(source[key], key) for key in SEARCH_KEYS if key in source and source[key] is not None}
    recipient = values.get("recipient", [])
    return DeliveryQuery(
        channels=_choices(values.get("channel", []), deliveries.CHANNELS, "channel", str.lower),
        statuses=_choices(values.get("status", []), deliveries.STATUSES, "status", str.upper),
        error_codes=tuple(values.get("errorCode", [])),
        recipient=recipient[-1] if recipient else None,
        user_uids=tuple(values.get("user", [])),
        conversation_uids=tuple(values.get("messageConversation", [])),
        created_after=_time(values.get("from", []), "from"),
        created_before=_time(values.get("to", []), "to"),
        ids=ids,
        extra=tuple(extra),
    )


def from_search(source: Mapping[str, Any], filters: Sequence[str], junction: str) -> DeliveryQuery:
    """The search keys of a query string, plus DHIS2 ``filter`` and ``rootJunction``."""
    try:
        parsed = q.parse_filters(filters)
        for f in parsed:
            prop = deliveries.PROPERTIES.get(f.path)
            if prop is not None and prop.kind is q.Kind.INTEGER and f.value is not None:
                _integer_in_range(f.value, f.path)
        clause = q.where_clause(deliveries.PROPERTIES, parsed, junction)
    except q.QueryError as exc:
        raise BadRequest(exc.message) from None
    return search_query(source, extra=[clause] if clause is not None else [])


def _integer_in_range(value: str, path: str) -> None:
    for part in value.strip().strip("[]").split(","):
        text = part.strip().lstrip("-")
        number = small_int(text)
        if text.isdigit() and (number is None or number > INT64_MAX):
            raise BadRequest(f"Unable to parse `{part.strip()[:40]}` as `integer` for `{path}`: out of range.")


def order_from(values: Sequence[str]) -> list[Any]:
    """DHIS2 ``order`` over the delivery properties; empty: newest first."""
    try:
        return q.order_clauses(deliveries.PROPERTIES, q.parse_order(values))
    except q.QueryError as exc:
        raise BadRequest(exc.message) from None
