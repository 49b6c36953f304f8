"""Feedback and the ticket tools under /api/messageConversations: parse, authorize, stage, commit, render.

Register this router before /api/messageConversations: `POST /feedback` would otherwise be taken
for a reply to a conversation named "feedback", and `DELETE /{uid}/assign` for removing a user
named "assign".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from api.bodies import TextBody
from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.queries import AssignParams, FeedbackParams, PriorityParams, StatusParams
from api.render import base_url, respond, respond_message
from messaging import tickets

router = APIRouter(prefix="/api/messageConversations", tags=["messageConversations"], route_class=SessionClosingRoute)


def _answer(ctx: Ctx, change: Callable[[], dict[str, Any]]) -> Response:
    """Run a change, commit it, and answer DHIS2's RootNode (bare {"message": ...} errors too)."""
    try:
        body = change()
    except tickets.BareAnswer as exc:
        return respond(ctx.request, {"message": exc.message}, status_code=exc.status)
    ctx.session.commit()
    return respond(ctx.request, body)


@router.post("/feedback", status_code=201)
def send_feedback(ctx: CtxDep, text: TextBody, query: FeedbackParams) -> Response:
    """A TICKET to the feedback recipients from the text body; 201 "Feedback created" with Location."""
    conversation = tickets.send_feedback(
        ctx.session,
        sender=ctx.user,
        subject=query.subject,
        text=text,
        meta_data=f"User-agent: {ctx.request.headers.get('user-agent', '')}",
    )
    ctx.session.commit()
    location = f"{base_url(ctx.request, ctx.settings.base_url)}/api/messageConversations/{conversation.uid}"
    return respond_message(ctx.request, 201, "Feedback created", headers={"Location": location})


@router.post("/{uid}/status")
def set_status(ctx: CtxDep, uid: str, query: StatusParams) -> Response:
    """Set the status; answers `{"<STATUS>": ["<uid>"]}`."""
    status = query.status

    def change() -> dict[str, Any]:
        tickets.set_status(ctx.session, actor=ctx.user, conversation_uid=uid, status=status)
        return {status.value: [uid]}

    return _answer(ctx, change)


@router.post("/{uid}/priority")
def set_priority(ctx: CtxDep, uid: str, query: PriorityParams) -> Response:
    """Set the priority; answers `{"<PRIORITY>": ["<uid>"]}`."""
    priority = query.priority

    def change() -> dict[str, Any]:
        tickets.set_priority(ctx.session, actor=ctx.user, conversation_uid=uid, priority=priority)
        return {priority.value: [uid]}

    return _answer(ctx, change)


@router.post("/{uid}/assign")
def assign(ctx: CtxDep, uid: str, query: AssignParams) -> Response:
    """Assign a user (tickets: feedback recipients only); the assignee is not made a participant."""

    def change() -> dict[str, Any]:
        assignee = tickets.assign(ctx.session, actor=ctx.user, conversation_uid=uid, user_uid=query.user_id)
        return {"message": f"User {assignee.display_name} was assigned successfully"}

    return _answer(ctx, change)


@router.delete("/{uid}/assign")
def unassign(ctx: CtxDep, uid: str) -> Response:
    """Remove the assignee."""

    def change() -> dict[str, Any]:
        tickets.unassign(ctx.session, actor=ctx.user, conversation_uid=uid)
        return {"message": "Message is no longer assigned to user"}

    return _answer(ctx, change)
