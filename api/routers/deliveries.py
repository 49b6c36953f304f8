"""Email and SMS deliveries for operators (authority ALL), and Twilio's status callbacks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api import fields
from api.bodies import RequeueBody
from api.delivery_query import delivery_id, from_search, order_from
from api.deps import Ctx, CtxDep, SessionClosingRoute, state_of
from api.queries import DeliveriesParams, pager
from api.render import base_url, respond, respond_message
from api.wire import Requeue
from channels.sms_status import valid_signature
from messaging import deliveries
from messaging.deliveries import AttemptView, DeliveryView
from messaging.errors import BadRequest, Conflict, Forbidden, NotFound
from messaging.models import Delivery, DeliveryStatus

router = APIRouter(prefix="/api", tags=["deliveries"], route_class=SessionClosingRoute)
STATUSES = frozenset(s.value for s in DeliveryStatus)
WAITING = frozenset({DeliveryStatus.QUEUED.value, DeliveryStatus.FAILED.value})


async def _operator(ctx: CtxDep) -> Ctx:
    # A dependency, so a caller without ALL gets the 403 before any parameter's or body's 400.
    if not ctx.user.is_super:
        raise Forbidden("Only users with authority ALL may manage deliveries.")
    return ctx


OperatorCtx = Annotated[Ctx, Depends(_operator)]


def _statuses(values: list[str], allowed: frozenset[str]) -> list[str]:
    wanted = [part.strip().upper() for value in values for part in value.split(",") if part.strip()]
    for status in wanted:
        if status not in allowed:
            raise BadRequest(f"Value '{status}' is not valid for parameter status: expected one of {', '.join(sorted(allowed))}.")
    return wanted


def present(view: DeliveryView) -> dict[str, Any]:
    """A delivery as the API shows it."""
    body = {
        "id": view.id,
        "channel": view.channel,
        "status": view.status,
        "address": view.address,
        "attempts": view.attempts,
        # While SENDING the column holds the end of the claim's lease; once settled it means nothing.
        "nextAttemptAt": view.next_attempt_at if view.status in WAITING else None,
        "leaseExpiresAt": view.next_attempt_at if view.status == DeliveryStatus.SENDING.value else None,
        "lastErrorCode": view.last_error_code,
        "lastError": view.last_error,
        "providerId": view.provider_id,
        "providerStatus": view.provider_status,
        "created": view.created,
        "lastUpdated": view.updated,
        "sentAt": view.sent_at,
        "message": {"id": view.message_uid},
        "messageConversation": {"id": view.conversation_uid},
        "user": {"id": view.user_uid, "username": view.username},
    }
    return {key: value for key, value in body.items() if value is not None}


def present_attempt(attempt: AttemptView) -> dict[str, Any]:
    """One attempt of a delivery as the API shows it."""
    body = {
        "attempt": attempt.attempt,
        "claimedAt": attempt.claimed_at,
        "finishedAt": attempt.finished_at,
        "outcome": attempt.outcome,
        "errorCode": attempt.error_code,
        "providerAnswer": attempt.provider_answer,
        "providerId": attempt.provider_id,
    }
    return {key: value for key, value in body.items() if value is not None}


@router.get("/deliveries")
def list_deliveries(ctx: OperatorCtx, params: DeliveriesParams) -> Response:
    """Deliveries newest first, with DHIS2's fields, filter, order and paging, and the search keys."""
    request = ctx.request
    query = from_search(params.search(), params.filter, params.root_junction)
    order = order_from(params.order)
    spec = params.spec("*")
    offset, limit = ((params.page - 1) * params.page_size, params.page_size) if params.paging else (0, 100_000)
    rows = deliveries.page(ctx.session, query, limit=limit, offset=offset, order=order)
    items = [present(row) for row in rows]
    if "attemptHistory" in {f.name for f in spec.fields}:  # only when asked: one more query per page
        history = deliveries.attempts_of(ctx.session, [row.id for row in rows])
        for item in items:
            item["attemptHistory"] = [present_attempt(a) for a in history[item["id"]]]
    body: dict[str, Any] = {"deliveries": fields.render_many(items, spec)}
    if params.paging:
        total = deliveries.count(ctx.session, query)
        body = {"pager": pager(request, params, total, base=base_url(request, ctx.settings.base_url)), **body}
    return respond(request, body, xml_root="deliveries")


@router.post("/deliveries/requeue")
def requeue_deliveries(ctx: OperatorCtx, body: RequeueBody) -> Response:
    """Re-drive a selection (``{"ids": [...]}``) or all (``{"all": true}``) DEAD deliveries now.

    ``"statuses": ["FAILED", "DEAD", "UNKNOWN"]`` widens it to failed and unknown ones.
    """
    statuses = _statuses(body.statuses, deliveries.RETRYABLE)
    if not statuses:  # found by the long fuzz run: [] or [","] reached the domain's ValueError, a 500
        raise BadRequest(Requeue.MESSAGES["statuses"])
    every = body.all is True
    ids = tuple(body.ids) if body.ids is not None else None
    if ids is not None and every:
        raise BadRequest("Give either 'ids' or 'all': true, not both.")
    if ids is None and not every:
        raise BadRequest("Give the deliveries to requeue ('ids') or 'all': true.")
    count = deliveries.requeue(ctx.session, ids=ids, every=every, statuses=statuses)
    ctx.session.commit()
    return respond_message(ctx.request, 200, f"{count} deliveries requeued", response={"requeued": count})


@router.post("/deliveries/{raw_id}/requeue")
def requeue_delivery(ctx: OperatorCtx, raw_id: str) -> Response:
    """Re-drive one FAILED, DEAD or UNKNOWN delivery now."""
    ident = delivery_id(raw_id)
    row = ctx.session.get(Delivery, ident)
    if row is None:
        raise NotFound(f"Delivery does not exist: {ident}")
    if row.status not in deliveries.RETRYABLE:
        raise Conflict(f"Delivery {ident} is {row.status}; only FAILED, DEAD and UNKNOWN deliveries can be requeued.")
    count = deliveries.requeue(ctx.session, ids=[ident], statuses=deliveries.RETRYABLE)
    ctx.session.commit()
    return respond_message(ctx.request, 200, f"{count} deliveries requeued", response={"requeued": count})


def public_url(request: Request, configured: str | None) -> str:
    """The URL Twilio posted to: HERALD_BASE_URL and the path when set, else the request's own URL."""
    if not configured:
        return str(request.url)
    query = request.url.query
    return f"{configured.rstrip('/')}{request.url.path}" + (f"?{query}" if query else "")


@router.post("/sms/twilio/status")
async def twilio_status(request: Request) -> Response:
    """Twilio's message status callback: signature checked, status applied monotonically."""
    state = state_of(request)
    token = state.settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        raise NotFound("The SMS channel is not configured.")
    form = await request.form()
    params = {key: value for key, value in form.items() if isinstance(value, str)}
    signature = request.headers.get("x-twilio-signature", "")
    if not valid_signature(token.get_secret_value(), public_url(request, state.settings.base_url), params, signature):
        raise Forbidden("The request does not carry a valid X-Twilio-Signature.")
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not status:
        raise BadRequest("MessageSid and MessageStatus are required.")

    def apply() -> None:
        with state.sessions() as session:
            deliveries.apply_sms_status(session, sid, status, params.get("ErrorCode"))
            session.commit()

    await run_in_threadpool(apply)
    return Response(status_code=204)
