"""/api/messageConversations: parse, authorize, call the domain, commit, render."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from api import fields
from api.bodies import DraftBody, RecipientsBody, TextBody, UidsBody
from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.presenters import Related, conversation_dict
from api.queries import (
    BatchRemoveParams,
    ConversationListParams,
    ConversationParams,
    ForUserParams,
    ForUserUidParams,
    ReplyParams,
    pager,
)
from api.render import base_url, respond, respond_message
from messaging import conversations, inbox
from messaging import query as q
from messaging.directory import is_ticket_manager
from messaging.errors import BadRequest, Conflict, Forbidden, NotFound
from messaging.ids import is_uid

router = APIRouter(prefix="/api/messageConversations", tags=["messageConversations"], route_class=SessionClosingRoute)

LIST_DEFAULT_FIELDS = "id,name,displayName,href"
ONE_DEFAULT_FIELDS = "*"


def _base(ctx: Ctx) -> str:
    return base_url(ctx.request, ctx.settings.base_url)


def _location(ctx: Ctx, uid: str) -> dict[str, str]:
    return {"Location": f"{_base(ctx)}/api/messageConversations/{uid}"}


def _meta_data(ctx: Ctx) -> str:
    return f"User-agent: {ctx.request.headers.get('user-agent', '')}"


def _may_render_messages(spec: fields.FieldSpec) -> bool:
    top = fields.requested_top_level(spec)
    return top is None or "messages" in top


@router.get("")
def list_conversations(ctx: CtxDep, query: ConversationListParams) -> Response:
    """The caller's conversations, with DHIS2's filter, order, search, fields and paging."""
    request = ctx.request
    try:
        params = inbox.ListParams(
            filters=q.parse_filters(query.filter),
            orders=q.parse_order(query.order),
            junction=query.root_junction,
            query_string=query.query_string,
            query_operator=query.query_operator or "token",
            page=query.page,
            page_size=query.page_size,
            paging=query.paging,
        )
    except q.QueryError as exc:
        raise BadRequest(exc.message) from None
    if params.query_string and params.query_operator not in inbox.SEARCH_OPERATORS:
        # DHIS2 checks it outside the filter parser's error handling: 409, where a bad filter is 400.
        raise Conflict(f"Query operator is not supported: {params.query_operator}")
    spec = query.spec(LIST_DEFAULT_FIELDS)
    # Who manages tickets matters to a search (internal messages match) and to rendered messages.
    manager = bool(params.query_string or _may_render_messages(spec)) and is_ticket_manager(ctx.session, ctx.user)
    try:
        result = inbox.list_page(ctx.session, ctx.user.id, params, ticket_manager=manager)
    except q.QueryError as exc:
        raise BadRequest(exc.message) from None
    base = _base(ctx)
    related = Related(ctx.session, [row.id for row in result.rows], include_internal=manager)
    items = fields.render_many((conversation_dict(row, base=base, related=related) for row in result.rows), spec)
    body: dict[str, Any] = {}
    if query.paging:
        body["pager"] = pager(request, query, result.total, base=base)
    body["messageConversations"] = items
    return respond(
        request,
        body,
        xml_root="messageConversations",
        headers={"Cache-Control": "no-cache, private"},
    )


@router.post("", status_code=201)
def create_conversation(ctx: CtxDep, draft: DraftBody) -> Response:
    """Accept a private message, persist it with its fan-out, answer 201 at once."""
    conversation = conversations.send_private_message(
        ctx.session,
        sender=ctx.user,
        subject=draft.subject,
        text=draft.text or "",
        refs=draft.refs,
        attachments=draft.attachment_ids,
        meta_data=_meta_data(ctx),
    )
    ctx.session.commit()  # before the 201: dependency teardown runs after the response
    return respond_message(
        ctx.request, 201, "Message conversation created", headers=_location(ctx, conversation.uid)
    )


def _flag_answer(ctx: Ctx, key: str, uids: list[str]) -> Response:
    return respond(ctx.request, {key: uids})


@router.post("/read")
def mark_read(ctx: CtxDep, uids: UidsBody, query: ForUserParams) -> Response:
    """Mark conversations read for the caller or `user`; list those that changed."""
    changed = conversations.mark_read(ctx.session, actor=ctx.user, uids=uids.root, target_uid=query.user, read=True)
    ctx.session.commit()
    return _flag_answer(ctx, "markedRead", changed)


@router.post("/unread")
def mark_unread(ctx: CtxDep, uids: UidsBody, query: ForUserParams) -> Response:
    """Mark conversations unread for the caller or `user`; list those that changed."""
    changed = conversations.mark_read(ctx.session, actor=ctx.user, uids=uids.root, target_uid=query.user, read=False)
    ctx.session.commit()
    return _flag_answer(ctx, "markedUnread", changed)


@router.post("/followup")
def follow_up(ctx: CtxDep, uids: UidsBody, query: ForUserParams) -> Response:
    """Flag conversations for follow-up; list every one found."""
    found = conversations.set_follow_up(ctx.session, actor=ctx.user, uids=uids.root, target_uid=query.user, follow_up=True)
    ctx.session.commit()
    return _flag_answer(ctx, "markedFollowup", found)


@router.post("/unfollowup")
def unfollow_up(ctx: CtxDep, uids: UidsBody, query: ForUserParams) -> Response:
    """Clear the follow-up flag; list every conversation found."""
    found = conversations.set_follow_up(
        ctx.session, actor=ctx.user, uids=uids.root, target_uid=query.user, follow_up=False
    )
    ctx.session.commit()
    return _flag_answer(ctx, "unmarkedFollowup", found)


@router.delete("")
def remove_batch(ctx: CtxDep, query: BatchRemoveParams) -> Response:
    """Leave several conversations (or remove `user` from them); list those actually left."""
    removed = conversations.remove_batch(ctx.session, actor=ctx.user, uids=query.mc, target_uid=query.user)
    ctx.session.commit()
    return respond(ctx.request, {"removed": removed})


def _check_uid(uid: str) -> None:
    if not is_uid(uid):
        raise NotFound(f"No MessageConversation found with UID: {uid}")


@router.get("/{uid}")
def get_conversation(ctx: CtxDep, uid: str, query: ConversationParams) -> Response:
    """One conversation the caller takes part in (ALL reads all); internal messages for managers."""
    _check_uid(uid)
    conversation = conversations.get_by_uid(ctx.session, uid)
    if conversation is None:
        raise NotFound(f"No MessageConversation found with UID: {uid}")
    if not conversations.can_read(ctx.session, ctx.user, conversation):
        raise Forbidden("Not authorized to access this conversation.")
    spec = query.spec(ONE_DEFAULT_FIELDS)
    row = inbox.conversation_row(ctx.session, conversation, ctx.user.id)
    manager = _may_render_messages(spec) and is_ticket_manager(ctx.session, ctx.user)
    related = Related(ctx.session, [row.id], include_internal=manager)
    body = fields.render(conversation_dict(row, base=_base(ctx), related=related), spec)
    if query.mark_read:
        conversations.mark_read(ctx.session, actor=ctx.user, uids=[uid], target_uid=None, read=True)
        ctx.session.commit()
    return respond(ctx.request, body, xml_root="messageConversation", headers={"Cache-Control": "no-cache, private"})


@router.post("/{uid}")
def reply(ctx: CtxDep, uid: str, text: TextBody, query: ReplyParams) -> Response:
    """Reply with the raw body as text; 200 with Location (DECISIONS #3)."""
    conversation = conversations.reply(
        ctx.session,
        actor=ctx.user,
        conversation_uid=uid,
        text=text,
        internal=query.internal,
        attachments=query.attachments,
        meta_data=_meta_data(ctx),
    )
    ctx.session.commit()
    return respond_message(ctx.request, 200, "Message conversation created", headers=_location(ctx, conversation.uid))


@router.delete("/{uid}")
def leave(ctx: CtxDep, uid: str) -> Response:
    """Remove the caller from a conversation (DECISIONS #4: no endpoint deletes messages)."""
    removed = conversations.remove_participant(ctx.session, actor=ctx.user, conversation_uid=uid, user_uid=ctx.user.uid)
    ctx.session.commit()
    return respond(ctx.request, {"removed": removed}, xml_root="reply")


@router.post("/{uid}/read")
def mark_one_read(ctx: CtxDep, uid: str, query: ForUserUidParams) -> Response:
    """Mark one conversation read (for `userUid`)."""
    changed = conversations.mark_read(ctx.session, actor=ctx.user, uids=[uid], target_uid=query.user_uid, read=True)
    ctx.session.commit()
    return _flag_answer(ctx, "markedRead", changed)


@router.post("/{uid}/unread")
def mark_one_unread(ctx: CtxDep, uid: str, query: ForUserUidParams) -> Response:
    """Mark one conversation unread (for `userUid`)."""
    changed = conversations.mark_read(ctx.session, actor=ctx.user, uids=[uid], target_uid=query.user_uid, read=False)
    ctx.session.commit()
    return _flag_answer(ctx, "markedUnread", changed)


@router.post("/{uid}/recipients", status_code=204)
def add_recipients(ctx: CtxDep, uid: str, recipients: RecipientsBody) -> Response:
    """Add participants (expanded by a worker); 204, nobody is notified."""
    conversations.add_recipients(ctx.session, actor=ctx.user, conversation_uid=uid, refs=recipients.refs)
    ctx.session.commit()
    return Response(status_code=204)


@router.delete("/{uid}/{user_uid}")
def remove_participant(ctx: CtxDep, uid: str, user_uid: str) -> Response:
    """Remove a participant; answer the removed user's UID (DECISIONS #4)."""
    removed = conversations.remove_participant(ctx.session, actor=ctx.user, conversation_uid=uid, user_uid=user_uid)
    ctx.session.commit()
    return respond(ctx.request, {"removed": removed}, xml_root="reply")
