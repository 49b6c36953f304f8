"""Query parameters: one pydantic model per family of routes, validated once at the edge.

A route declares its parameters as one of the `...Params` aliases below (`Annotated[Model,
Query()]`): FastAPI fills the model from the query string (a repeatable parameter as a tuple of
its values, any other the last value given), validates it once before the handler runs, and
documents every parameter with its type in /api/openapi.json. Values are read by the bounded
parsers of api/params.py (never int() of 5,000 digits or of '²'); a wrong value is a
`PARAMETER_ERROR` carrying DHIS2's text, which `error_text` turns into the 400 WebMessage.

Unknown parameters are ignored, as DHIS2 ignores them, except on a `ClosedQuery` (deliveries,
ops), which answers 400 naming the first one. Filter and order values stay raw strings here:
messaging/query.py parses them by the property's type. Every model's validators are built at
import; a request only runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import ceil
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlencode

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from starlette.requests import Request

from api.delivery_query import delivery_id
from api.fields import FieldsError, FieldSpec, parse_fields
from api.params import flag, small_int, whole_number
from messaging import inbox, tickets
from messaging import query as q
from messaging.errors import BadRequest
from messaging.models import ConversationPriority, ConversationStatus

PARAMETER_ERROR = "dhis2_parameter"  # a pydantic error type whose message is the WebMessage text
MAX_PAGE = 10**9
MAX_PAGE_SIZE = 10_000
MAX_OPS_PAGE = 500
MAX_HOURS = 168
NOT_PATH = frozenset({"query", "path", "body"})


def invalid(message: str) -> PydanticCustomError:
    """A wrong parameter; `message` is the DHIS2 text the 400 WebMessage carries."""
    return PydanticCustomError(PARAMETER_ERROR, "{message}", {"message": message})


def error_text(errors: Sequence[Any]) -> str:
    """The 400 WebMessage text of a request's first validation error (a parser's DHIS2 text where it gave one)."""
    first = errors[0] if errors else {}
    if first.get("type") == PARAMETER_ERROR:
        return str(first["msg"])
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in NOT_PATH)
    return f"Invalid value for parameter '{where}': {first.get('msg', 'invalid')}"


def _shown(value: Any) -> str:
    return str(value)[:40]


def _empty(value: Any) -> bool:
    # Absent or given empty (`page=`): the default, as the hand parsers had it.
    return value is None or value == ""


# ---------------------------------------------------------------- value types


def clamped(name: str, minimum: int, maximum: int, default: int) -> BeforeValidator:
    """A whole number clamped into [minimum, maximum] (DHIS2 clamps page and pageSize); empty: `default`."""

    def parse(value: Any) -> int:
        if _empty(value):
            return default
        number = value if isinstance(value, int) else whole_number(value) if isinstance(value, str) else None
        if number is None:
            raise invalid(f"Value '{_shown(value)}' is not valid for parameter {name}.")
        return max(minimum, min(number, maximum))

    return BeforeValidator(parse)


def bounded(name: str, max_digits: int, minimum: int, maximum: int) -> BeforeValidator:
    """ASCII digits within [minimum, maximum], else 400 saying so (ops parameters: no clamping)."""

    def parse(value: Any) -> int:
        number = small_int(value, max_digits) if isinstance(value, str) else None
        if number is None or not minimum <= number <= maximum:
            raise invalid(f"Value '{_shown(value)}' is not valid for parameter {name}: expected {minimum} to {maximum}.")
        return number

    return BeforeValidator(parse)


def boolean(name: str, default: bool) -> BeforeValidator:
    """true/false (also on/off, yes/no, 1/0) as DHIS2 binds it; empty: `default`; anything else 400."""

    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if _empty(value):
            return default
        result = flag(value) if isinstance(value, str) else None
        if result is None:
            raise invalid(f"Value '{_shown(value)}' is not valid for parameter {name}.")
        return result

    return BeforeValidator(parse)


def _values(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else [value]


def _given(value: Any) -> tuple[str, ...]:
    return tuple(v for v in _values(value) if v != "")


def _split(value: Any) -> tuple[str, ...]:
    return tuple(part.strip() for v in _values(value) if isinstance(v, str) for part in v.split(",") if part.strip())


def required_list(name: str) -> BeforeValidator:
    """A repeatable, comma-joinable list of ids that must name at least one (Spring's text when none)."""

    def parse(value: Any) -> tuple[str, ...]:
        values = _split(value)
        if not values:
            raise invalid(f"Required request parameter '{name}' for method parameter type List is not present")
        return values

    return BeforeValidator(parse)


def _junction(value: Any) -> str:
    if _empty(value):
        return "AND"
    try:
        return q.parse_junction(value if isinstance(value, str) else repr(value))
    except q.QueryError as exc:
        raise invalid(exc.message) from None


def dhis2_enum(parse: Callable[[str | None], Any]) -> BeforeValidator:
    """An enum parameter read by a domain parser that raises BadRequest with Spring's text (missing or invalid)."""

    def run(value: Any) -> Any:
        try:
            return parse(value if value is None or isinstance(value, str) else repr(value))
        except BadRequest as exc:
            raise invalid(exc.message) from None

    return BeforeValidator(run)


def _before_id(value: Any) -> int | None:
    if _empty(value):
        return None
    try:
        return delivery_id(value if isinstance(value, str) else repr(value))
    except BadRequest as exc:
        raise invalid(exc.message) from None


def _search_text(value: Any) -> Any:
    return (value.strip() or None) if isinstance(value, str) else value


Repeated = Annotated[tuple[str, ...], BeforeValidator(_given)]  # filter=a&filter=b; empty values dropped
Joinable = Annotated[tuple[str, ...], BeforeValidator(_split)]  # mc=a&mc=b or mc=a,b
Junction = Annotated[Literal["AND", "OR"], BeforeValidator(_junction)]


def _field(alias: str | None = None, default: Any = None, description: str = "", **extra: Any) -> Any:
    return Field(default, alias=alias, description=description, json_schema_extra=extra or None)


# ---------------------------------------------------------------- models


class QueryModel(BaseModel):
    """The query parameters of one family of routes; parameters it does not name are ignored (DHIS2).

    `REQUIRED` names parameters whose absence their own parser reports (Spring's "Required request
    parameter ... is not present"), so the document marks them required and the text stays DHIS2's.
    """

    model_config = ConfigDict(extra="ignore")
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    NAMES: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.NAMES = frozenset(info.alias or name for name, info in cls.model_fields.items())

    @model_validator(mode="before")
    @classmethod
    def _absent_as_none(cls, data: Any) -> Any:
        if cls.REQUIRED and isinstance(data, dict):
            return {**dict.fromkeys(cls.REQUIRED), **data}
        return data


class ClosedQuery(QueryModel):
    """Parameters of an endpoint that refuses what it does not know (400 naming it), instead of ignoring it."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(key for key in data if key not in cls.NAMES)
            if unknown:
                raise invalid(f"Unknown parameter '{_shown(unknown[0])}'; this endpoint takes {', '.join(sorted(cls.NAMES))}.")
        return data


FIELDS_TEXT = "DHIS2 field selection, e.g. id,displayName,messages[text]; repeatable"
FILTER_TEXT = "property:operator:value, repeatable; values are parsed by the property's type"
ORDER_TEXT = "property:asc|desc|iasc|idesc, comma-joined or repeated"
JUNCTION_TEXT = "how filters combine: AND or OR (any case)"


class FieldsQuery(QueryModel):
    """`fields`, for a single object."""

    fields: tuple[str, ...] = _field(default=(), description=FIELDS_TEXT)

    def spec(self, default: str) -> FieldSpec:
        """The field selection (or `default`), or a 400 WebMessage naming what is wrong."""
        try:
            return parse_fields(self.fields, default)
        except FieldsError as exc:
            raise BadRequest(str(exc)) from None


class FilterQuery(QueryModel):
    """`filter`, `order` and `rootJunction` (a delete by filter reads no paging)."""

    filter: Repeated = _field(default=(), description=FILTER_TEXT)
    order: Repeated = _field(default=(), description=ORDER_TEXT)
    root_junction: Junction = _field("rootJunction", "AND", JUNCTION_TEXT)


class ListQuery(FilterQuery, FieldsQuery):
    """DHIS2's metadata-list parameters (GetObjectListParams)."""

    page: Annotated[int, clamped("page", 1, MAX_PAGE, 1)] = _field(default=1, description="page number, from 1")
    page_size: Annotated[int, clamped("pageSize", 1, MAX_PAGE_SIZE, 50)] = _field(
        "pageSize", 50, f"items per page, clamped to 1..{MAX_PAGE_SIZE}"
    )
    paging: Annotated[bool, boolean("paging", True)] = _field(default=True, description="false: every item, no pager")


class ConversationListQuery(ListQuery):
    """The conversation list: DHIS2's list parameters plus its search."""

    query_string: Annotated[str | None, BeforeValidator(_search_text)] = _field(
        "queryString", None, "search subject, message texts and sender names"
    )
    # Checked by the route only with a queryString, and a 409 there, as DHIS2 does.
    query_operator: str = _field("queryOperator", "token", "operator for queryString", enum=sorted(inbox.SEARCH_OPERATORS))


class ConversationQuery(FieldsQuery):
    """One conversation: `fields`, and `markRead=true` to mark it read for the caller."""

    mark_read: Annotated[bool, boolean("markRead", False)] = _field("markRead", False, "mark it read for the caller")


class ReplyQuery(QueryModel):
    """A reply: an internal note (ticket managers) and attachment ids (repeated or comma-joined)."""

    internal: Annotated[bool, boolean("internal", False)] = _field(default=False, description="a ticket manager's internal note")
    attachments: Joinable = _field(default=(), description="file resource ids, repeated or comma-joined")


class BatchRemoveQuery(QueryModel):
    """`DELETE /api/messageConversations?mc=a&mc=b[&user=u]` (DECISIONS #5)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("mc",)
    mc: Annotated[tuple[str, ...], required_list("mc")] = _field(default=..., description="conversation ids, repeated or comma-joined")
    user: str | None = _field(description="remove this user instead of the caller (DECISIONS #6)")


class ForUserQuery(QueryModel):
    """`user`: act for another user (DECISIONS #6) or read their settings."""

    user: str | None = _field(description="another user's id (or username, for settings)")


class ForUserUidQuery(QueryModel):
    """`userUid`: act for another user on one conversation (DECISIONS #6)."""

    user_uid: str | None = _field("userUid", description="another user's id")


class StatusQuery(QueryModel):
    """`messageConversationStatus`, required, one of DHIS2's statuses."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("messageConversationStatus",)
    status: Annotated[ConversationStatus, dhis2_enum(tickets.parse_status)] = _field("messageConversationStatus", ...)


class PriorityQuery(QueryModel):
    """`messageConversationPriority`, required, one of DHIS2's priorities."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("messageConversationPriority",)
    priority: Annotated[ConversationPriority, dhis2_enum(tickets.parse_priority)] = _field(
        "messageConversationPriority", ...
    )


class AssignQuery(QueryModel):
    """`userId`: the assignee (missing or unknown: DHIS2's bare 404)."""

    user_id: str | None = _field("userId", description="the assignee's id")


class FeedbackQuery(QueryModel):
    """`subject` of a feedback ticket (missing: Spring's 400, from the domain)."""

    subject: str | None = _field(description="the ticket's subject")


class LookupQuery(QueryModel):
    """`query` of the user lookups."""

    query: str = _field(default="", description="part of a name, username or email, or an id")


class UserSettingQuery(QueryModel):
    """A user setting's `value` (else the body) and whose (`user`)."""

    value: str | None = _field(description="the value; the request body when absent")
    user: str | None = _field(description="another user's id or username (F_USER_ADD)")


class SystemSettingQuery(QueryModel):
    """A system setting's `value` (else the body)."""

    value: str | None = _field(description="the value; the request body when absent")


class AppsQuery(QueryModel):
    """`key` picks one installed app."""

    key: str | None = _field(description="one app's key")


class UnlockQuery(QueryModel):
    """Whose failed logins to forget."""

    username: str | None = _field(description="a username")
    address: str | None = _field(description="a client address")


class FileResourceQuery(QueryModel):
    """`domain` of an upload (MESSAGE_ATTACHMENT)."""

    domain: str | None = _field(description="MESSAGE_ATTACHMENT")


class NoQuery(ClosedQuery):
    """An ops endpoint that takes no parameter (any is a 400)."""


class ThroughputQuery(ClosedQuery):
    """`hours` of sends to chart."""

    hours: Annotated[int, bounded("hours", 3, 1, MAX_HOURS)] = _field(default=24, description=f"1 to {MAX_HOURS}")


SEARCH_TEXT = "repeated or comma-joined"


class DeliverySearchQuery(ClosedQuery):
    """The delivery search keys; their values are read by api/delivery_query.py, as a bulk action's `query` is."""

    channel: Joinable = _field(default=(), description=f"email or sms, {SEARCH_TEXT}")
    status: Joinable = _field(default=(), description=f"delivery statuses, {SEARCH_TEXT}")
    error_code: Joinable = _field("errorCode", (), f"provider error codes, {SEARCH_TEXT}")
    recipient: str | None = _field(description="the address or number")
    user: Joinable = _field(default=(), description=f"recipient user ids, {SEARCH_TEXT}")
    message_conversation: Joinable = _field("messageConversation", (), f"conversation ids, {SEARCH_TEXT}")
    created_from: str | None = _field("from", description="created at or after (an ISO 8601 date or time)")
    created_to: str | None = _field("to", description="created before (an ISO 8601 date or time)")

    def search(self) -> dict[str, Any]:
        """The search keys given, as api.delivery_query.search_query reads them."""
        given = {
            "channel": self.channel, "status": self.status, "errorCode": self.error_code, "recipient": self.recipient,
            "user": self.user, "messageConversation": self.message_conversation, "from": self.created_from,
            "to": self.created_to,
        }  # fmt: skip
        return {key: list(value) if isinstance(value, tuple) else value for key, value in given.items() if value}


class DeliveriesQuery(DeliverySearchQuery, ListQuery):
    """`GET /api/deliveries`: the search keys and DHIS2's list parameters; nothing else."""

    model_config = ConfigDict(extra="forbid")  # bases' configs merge in order: say it here


class OpsDeliveriesQuery(DeliverySearchQuery):
    """`GET /api/ops/deliveries`: the search keys, filters, and keyset paging (`before` the last id seen)."""

    filter: Repeated = _field(default=(), description=FILTER_TEXT)
    root_junction: Junction = _field("rootJunction", "AND", JUNCTION_TEXT)
    before: Annotated[int | None, BeforeValidator(_before_id)] = _field(description="the last delivery id seen")
    page_size: Annotated[int, bounded("pageSize", 6, 1, MAX_OPS_PAGE)] = _field("pageSize", 50, f"1 to {MAX_OPS_PAGE}")
    total: Annotated[bool, boolean("total", False)] = _field(default=False, description="also count every match")


# The aliases routes declare: FastAPI fills, validates and documents each model from the query string.
FieldsParams = Annotated[FieldsQuery, Query()]
FilterParams = Annotated[FilterQuery, Query()]
ListParams = Annotated[ListQuery, Query()]
ConversationListParams = Annotated[ConversationListQuery, Query()]
ConversationParams = Annotated[ConversationQuery, Query()]
ReplyParams = Annotated[ReplyQuery, Query()]
BatchRemoveParams = Annotated[BatchRemoveQuery, Query()]
ForUserParams = Annotated[ForUserQuery, Query()]
ForUserUidParams = Annotated[ForUserUidQuery, Query()]
StatusParams = Annotated[StatusQuery, Query()]
PriorityParams = Annotated[PriorityQuery, Query()]
AssignParams = Annotated[AssignQuery, Query()]
FeedbackParams = Annotated[FeedbackQuery, Query()]
LookupParams = Annotated[LookupQuery, Query()]
UserSettingParams = Annotated[UserSettingQuery, Query()]
SystemSettingParams = Annotated[SystemSettingQuery, Query()]
AppsParams = Annotated[AppsQuery, Query()]
UnlockParams = Annotated[UnlockQuery, Query()]
FileResourceParams = Annotated[FileResourceQuery, Query()]
NoParams = Annotated[NoQuery, Query()]
ThroughputParams = Annotated[ThroughputQuery, Query()]
DeliveriesParams = Annotated[DeliveriesQuery, Query()]
OpsDeliveriesParams = Annotated[OpsDeliveriesQuery, Query()]


def pager(request: Request, page: ListQuery, total: int, *, base: str) -> dict[str, Any]:
    """DHIS2's pager object with absolute next/prev links where they apply (the other parameters as sent)."""
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
