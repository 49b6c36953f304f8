"""The operations dashboard (/ops) and its JSON (/api/ops/...): authority ALL, figures from the database and the broker.

`GET /api/ops/workers` (heartbeats) belongs to the observability side; the dashboard asks for it
and shows "no worker data" when it does not answer 200.
"""

from __future__ import annotations

from datetime import datetime
from html import escape as html_escape
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from api.bodies import DeliveryActionBody
from api.delivery_query import SEARCH_KEYS, delivery_id, from_search, search_query
from api.deps import Ctx, CtxDep, SessionClosingRoute, SessionDep, state_of
from api.queries import NoParams, OpsDeliveriesParams, ThroughputParams
from api.render import respond, respond_message
from api.routers.deliveries import present, present_attempt
from api.wire import DeliveryAction
from messaging import deliveries
from messaging.errors import BadRequest, Forbidden, NotFound, Unauthorized
from messaging.ops import broker, overview

router = APIRouter(tags=["ops"], route_class=SessionClosingRoute)
STATIC = {"ops.js": "text/javascript; charset=utf-8", "ops.css": "text/css; charset=utf-8"}
QUEUES = ("outbox", "deliveries")  # the Dramatiq queues (workers/broker.py names them namespace.queue)


async def _operator(ctx: CtxDep) -> Ctx:
    # A dependency, so a caller without ALL gets the 403 before any parameter's or body's 400.
    if not ctx.user.is_super:
        raise Forbidden("Only users with authority ALL may see and act on operations.")
    return ctx


OperatorCtx = Annotated[Ctx, Depends(_operator)]


def _asset(name: str) -> str:
    return resources.files("api").joinpath("static", "ops", name).read_text(encoding="utf-8")


@router.get("/ops", include_in_schema=False)
def dashboard(request: Request, session: SessionDep) -> Response:
    """The dashboard page; not logged in: its login form; logged in without ALL: 403."""
    try:
        user = state_of(request).authenticator.authenticate(session, request)
    except Unauthorized:
        user = None
    if user is not None and not user.is_super:
        return HTMLResponse(
            "<!doctype html><title>Forbidden</title><p>Only users with authority ALL may see the operations dashboard.</p>",
            status_code=403,
        )
    root = html_escape(str(request.scope.get("root_path", "")).rstrip("/"))
    html = _asset("index.html").replace("{{state}}", "dashboard" if user else "login").replace("{{root}}", root)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/ops/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    """The dashboard's script and style sheet, from the package (no build step, no CDN)."""
    if name not in STATIC:
        raise NotFound(f"No such file: {name}")
    return Response(_asset(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def _age_s(now: datetime, since: datetime | None) -> float | None:
    return round(max((now - since).total_seconds(), 0.0), 1) if since is not None else None


def overview_body(ctx: Ctx) -> dict[str, Any]:
    """The overview as JSON: channels, queues (database and broker), fan-outs, latency."""
    settings = ctx.settings
    figures = overview.overview(ctx.session)
    now = figures.at
    depths = {d.queue: d for d in broker.queue_depths(
        settings.broker_url, settings.broker_namespace, [f"{settings.broker_namespace}.{q}" for q in QUEUES]
    )}  # fmt: skip
    channels = [
        {
            "channel": c.channel, "waiting": c.waiting, "inProgress": c.in_progress, "retrying": c.retrying,
            "nextAttemptAt": _iso(c.next_attempt_at), "dead": c.dead, "unknown": c.unknown,
            "sentLastHour": c.sent_last_hour, "deliveredLastHour": c.delivered_last_hour,
            "oldestWaitingAgeS": _age_s(now, c.oldest_waiting_at),
        }
        for c in figures.channels
    ]  # fmt: skip
    o = figures.outbox
    waiting_deliveries = sum(c.waiting for c in figures.channels)
    oldest_delivery = min((c.oldest_waiting_at for c in figures.channels if c.oldest_waiting_at), default=None)
    queues = []
    for name, db_figures in (
        ("outbox", {"waiting": o.waiting, "inProgress": o.in_progress, "retrying": o.retrying,
                    "nextAttemptAt": _iso(o.next_attempt_at), "oldestWaitingAgeS": _age_s(now, o.oldest_waiting_at)}),
        ("deliveries", {"waiting": waiting_deliveries, "inProgress": sum(c.in_progress for c in figures.channels),
                        "retrying": sum(c.retrying for c in figures.channels),
                        "nextAttemptAt": _iso(min((c.next_attempt_at for c in figures.channels if c.next_attempt_at),
                                                  default=None)),
                        "dead": sum(c.dead for c in figures.channels),
                        "oldestWaitingAgeS": _age_s(now, oldest_delivery)}),
    ):  # fmt: skip
        depth = depths.get(f"{settings.broker_namespace}.{name}")
        queue: dict[str, Any] = {"queue": name, **db_figures}
        if depth is not None:
            queue["broker"] = {k: v for k, v in {"waiting": depth.waiting, "inProgress": depth.in_progress,
                                                 "delayed": depth.delayed, "error": depth.error}.items()
                               if v is not None}  # fmt: skip
        queues.append(queue)
    return {
        "at": _iso(now),
        "broker": broker.broker_kind(settings.broker_url),
        "channels": channels,
        "queues": queues,
        "latencyS": overview.latency_s(ctx.session),
        "fanOuts": [
            {"eventId": f.event_id, "conversation": f.conversation_uid, "subject": f.subject, "expanded": f.expanded,
             "audience": f.audience, "startedAt": _iso(f.started_at), "attempts": f.attempts, "lastError": f.last_error}
            for f in overview.fanouts(ctx.session)
        ],
    }


@router.get("/api/ops/overview")
def get_overview(ctx: OperatorCtx, _: NoParams) -> Response:
    """Per queue and per channel: waiting, in progress, retrying (next attempt), dead, sent/delivered last hour, oldest age."""
    return respond(ctx.request, overview_body(ctx))


@router.get("/api/ops/throughput")
def get_throughput(ctx: OperatorCtx, query: ThroughputParams) -> Response:
    """Sends per channel per minute over the last ``hours`` (default 24, at most 168)."""
    hours = query.hours
    series = overview.throughput(ctx.session, hours=hours)
    return respond(ctx.request, {
        "hours": hours,
        "series": {channel: [[_iso(at), n] for at, n in points] for channel, points in series.items()},
    })  # fmt: skip


@router.get("/api/ops/latency")
def get_latency(ctx: OperatorCtx, _: NoParams) -> Response:
    """Trigger-to-sent seconds per channel (p50, p90, p99) over the last hour."""
    return respond(ctx.request, {"latencyS": overview.latency_s(ctx.session)})


@router.get("/api/ops/fanouts")
def get_fanouts(ctx: OperatorCtx, _: NoParams) -> Response:
    """Fan-outs in progress: expanded X of Y."""
    return respond(ctx.request, {"fanOuts": overview_body(ctx)["fanOuts"]})


@router.get("/api/ops/deliveries")
def search_deliveries(ctx: OperatorCtx, params: OpsDeliveriesParams) -> Response:
    """Deliveries newest first, keyset-paginated (``before`` = the last id seen), each with its attempt history."""
    query = from_search(params.search(), params.filter, params.root_junction)
    size = params.page_size
    rows = deliveries.page(ctx.session, query, limit=size + 1, before_id=params.before)
    more, rows = len(rows) > size, rows[:size]
    history = deliveries.attempts_of(ctx.session, [row.id for row in rows])
    items = []
    for row in rows:
        item = present(row)
        item["attemptHistory"] = [present_attempt(a) for a in history[row.id]]
        items.append(item)
    body: dict[str, Any] = {"deliveries": items, "next": {"before": rows[-1].id} if more and rows else None}
    if params.total:
        body["total"] = deliveries.count(ctx.session, query)
    return respond(ctx.request, body)


@router.get("/api/ops/deliveries/{raw_id}")
def get_delivery(ctx: OperatorCtx, raw_id: str) -> Response:
    """One delivery with its attempt history."""
    ident = delivery_id(raw_id)
    rows = deliveries.page(ctx.session, deliveries.DeliveryQuery(ids=(ident,)), limit=1)
    if not rows:
        raise NotFound(f"Delivery does not exist: {ident}")
    item = present(rows[0])
    item["attemptHistory"] = [present_attempt(a) for a in deliveries.attempts_of(ctx.session, [ident])[ident]]
    return respond(ctx.request, item)


def _act(ctx: Ctx, body: DeliveryAction, action: str) -> Response:
    given = body.model_fields_set
    if ("ids" in given) == ("query" in given):
        raise BadRequest(DeliveryAction.NOT_OBJECT)
    if "ids" in given:
        if body.ids is None:
            raise BadRequest(DeliveryAction.MESSAGES["ids"])
        query = deliveries.DeliveryQuery(ids=tuple(body.ids))
    else:
        source = body.query
        if source is None:
            raise BadRequest(DeliveryAction.MESSAGES["query"])
        bad = sorted(set(source) - set(SEARCH_KEYS))
        if bad:
            raise BadRequest(f"Unknown search key '{bad[0]}'; the keys are {', '.join(SEARCH_KEYS)}.")
        query = search_query(source)
        # Only FAILED, DEAD and UNKNOWN rows can be retried or discarded: ask for another status and nothing matches.
        bad_status = sorted(set(query.statuses) - deliveries.RETRYABLE)
        if bad_status:
            raise BadRequest(f"Only FAILED, DEAD and UNKNOWN deliveries can be acted on, not {bad_status[0]}.")
    batch = deliveries.act(ctx.session, action, query)
    ctx.session.commit()
    verb = "retried" if action == deliveries.RETRY else "discarded"
    return respond_message(ctx.request, 200, f"{batch.changed} deliveries {verb}", response={verb: batch.changed})


@router.post("/api/ops/deliveries/retry")
def retry_deliveries(ctx: OperatorCtx, body: DeliveryActionBody, _: NoParams) -> Response:
    """Retry now the FAILED, DEAD and UNKNOWN deliveries of a selection or of everything matching a query."""
    return _act(ctx, body, deliveries.RETRY)


@router.post("/api/ops/deliveries/discard")
def discard_deliveries(ctx: OperatorCtx, body: DeliveryActionBody, _: NoParams) -> Response:
    """Discard (DISCARDED, never sent) the FAILED, DEAD and UNKNOWN deliveries of a selection or a query."""
    return _act(ctx, body, deliveries.DISCARD)

