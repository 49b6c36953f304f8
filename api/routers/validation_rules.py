"""GET /api/validationRules[/{id}] and /api/validationNotificationTemplates[/{id}]: DHIS2 metadata, read back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from starlette.responses import Response

from api import fields
from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.queries import FieldsParams, FilterQuery, ListParams, ListQuery, pager
from api.render import base_url, respond
from messaging import query as q
from messaging.errors import BadRequest, NotFound
from messaging.validation import reading
from messaging.validation.models import ValidationNotificationTemplate, ValidationRule

router = APIRouter(prefix="/api", tags=["validation"], route_class=SessionClosingRoute)
LIST_FIELDS = "id,name,displayName,href"  # DECISIONS #22


def where_and_orders(query: FilterQuery, props: dict[str, q.Property]) -> tuple[Any, list[Any]]:
    """`filter`, `rootJunction` and `order` as SQL, or a 400 WebMessage."""
    try:
        where = reading.props_where(props, query.filter, query.root_junction)
        orders = q.order_clauses(props, q.parse_order(query.order))
    except q.QueryError as exc:
        raise BadRequest(exc.message) from None
    return where, orders


def listing(
    ctx: Ctx, key: str, rows: list[Any], total: int, query: ListQuery, present: Callable[[Any], dict[str, Any]],
    *, default_fields: str = LIST_FIELDS,
) -> Response:
    """A DHIS2 list body: pager (when paging) and the items with `fields` applied."""
    body: dict[str, Any] = {}
    if query.paging:
        body["pager"] = pager(ctx.request, query, total, base=base_url(ctx.request, ctx.settings.base_url))
    body[key] = fields.render_many((present(row) for row in rows), query.spec(default_fields))
    return respond(ctx.request, body, xml_root=key)


def _list_of(
    ctx: Ctx, query: ListQuery, model: Any, props: dict[str, q.Property], key: str, present: Callable[[Any], dict[str, Any]]
) -> Response:
    where, orders = where_and_orders(query, props)
    statement = select(model).where(where) if where is not None else select(model)
    total, rows = reading.page(
        ctx.session, statement, [*(orders or [model.name]), model.id],
        size=query.page_size if query.paging else None, number=query.page,
    )
    return listing(ctx, key, [row[0] for row in rows], total, query, present)


def _base(ctx: Ctx) -> str:
    return base_url(ctx.request, ctx.settings.base_url)


@router.get("/validationRules")
def list_rules(ctx: CtxDep, query: ListParams) -> Response:
    """Validation rules, with fields, filter, order and paging."""
    base = _base(ctx)
    return _list_of(ctx, query, ValidationRule, reading.RULE_PROPS, "validationRules", lambda r: reading.rule_dict(r, base))


@router.get("/validationRules/{uid}")
def get_rule(ctx: CtxDep, uid: str, query: FieldsParams) -> Response:
    """One validation rule."""
    rule = reading.by_uid(ctx.session, ValidationRule, uid)
    if rule is None:
        raise NotFound(f"ValidationRule with id {uid} could not be found.", error_code="E1005")
    return respond(ctx.request, fields.render(reading.rule_dict(rule, _base(ctx)), query.spec("*")), xml_root="validationRule")


@router.get("/validationNotificationTemplates")
def list_templates(ctx: CtxDep, query: ListParams) -> Response:
    """Validation notification templates, with fields, filter, order and paging."""
    base = _base(ctx)
    return _list_of(
        ctx, query, ValidationNotificationTemplate, reading.TEMPLATE_PROPS, "validationNotificationTemplates",
        lambda t: reading.template_dict(ctx.session, t, base),
    )


@router.get("/validationNotificationTemplates/{uid}")
def get_template(ctx: CtxDep, uid: str, query: FieldsParams) -> Response:
    """One validation notification template."""
    template = reading.by_uid(ctx.session, ValidationNotificationTemplate, uid)
    if template is None:
        raise NotFound(f"ValidationNotificationTemplate with id {uid} could not be found.", error_code="E1005")
    body = fields.render(reading.template_dict(ctx.session, template, _base(ctx)), query.spec("*"))
    return respond(ctx.request, body, xml_root="validationNotificationTemplate")
