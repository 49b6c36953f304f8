"""User settings, system settings and /api/configuration (feedback recipients)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from starlette.responses import PlainTextResponse, Response

from api.bodies import FeedbackGroupBody, SettingValueBody
from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.params import small_int
from api.queries import ForUserParams, SystemSettingParams, UserSettingParams
from api.render import respond, respond_message
from api.wire import FeedbackGroup
from messaging import directory
from messaging.errors import BadRequest, Forbidden, NotFound
from messaging.ids import is_uid
from messaging.models import UserGroup

router = APIRouter(prefix="/api", tags=["settings"], route_class=SessionClosingRoute)
MAX_VALUE_CHARS = 10_000
BOOLEAN_KEYS = frozenset({"keyMessageEmailNotification", "keyMessageSmsNotification"})
INTEGER_KEYS = frozenset({"keySmsMaxLength"})
SYSTEM_SETTING_AUTHORITY = "F_SYSTEM_SETTING"


def _value(key: str, value: str | None, body: str) -> Any:
    text = value if value is not None else body
    if text == "":
        raise BadRequest("Value must be specified as query param or as payload")
    if len(text) > MAX_VALUE_CHARS:
        raise BadRequest(f"Value is longer than {MAX_VALUE_CHARS} characters.")
    if "\x00" in text:
        raise BadRequest("Value must not contain NUL characters.")
    if key in BOOLEAN_KEYS:
        if text.lower() not in {"true", "false"}:
            raise BadRequest(f"Value '{text}' is not valid for setting {key}: expected true or false.")
        return text.lower() == "true"
    if key in INTEGER_KEYS:
        number = small_int(text, max_digits=9)
        if number is None:
            raise BadRequest(f"Value '{text[:40]}' is not valid for setting {key}: expected a whole number.")
        return number
    return text


def _target_user_id(ctx: Ctx, user: str | None) -> int:
    if not user or user in {ctx.user.uid, ctx.user.username}:
        return ctx.user.id
    if not ctx.user.has_any("F_USER_ADD"):
        raise Forbidden("You are not allowed to change settings of other users.")
    target = directory.user_by_uid(ctx.session, user) or directory.user_by_username(ctx.session, user)
    if target is None:
        raise NotFound(f"User does not exist: {user}")
    return target.id


@router.get("/userSettings")
def all_user_settings(ctx: CtxDep, query: ForUserParams) -> Response:
    """Every setting of the caller (or `user`), defaults filled in."""
    return respond(ctx.request, directory.user_settings(ctx.session, _target_user_id(ctx, query.user)), xml_root="userSettings")


@router.get("/userSettings/{key}")
def get_user_setting(ctx: CtxDep, key: str, query: ForUserParams) -> Response:
    """One user setting as plain text (DHIS2), falling back to the system setting."""
    value = directory.get_user_setting(ctx.session, _target_user_id(ctx, query.user), key)
    if value is None:
        raise NotFound(f"User setting not found for key: {key}")
    return PlainTextResponse(str(value).lower() if isinstance(value, bool) else str(value))


@router.post("/userSettings/{key}")
def set_user_setting(ctx: CtxDep, key: str, body: SettingValueBody, query: UserSettingParams) -> Response:
    """Set a user setting from `value=` or a text body."""
    target = _target_user_id(ctx, query.user)
    directory.set_user_setting(ctx.session, target, key, _value(key, query.value, body))
    ctx.session.commit()
    return respond_message(ctx.request, 200, f"User setting saved for key: {key}")


@router.get("/systemSettings/{key}")
def get_system_setting(ctx: CtxDep, key: str) -> Response:
    """One system setting as {key: value}."""
    value = directory.get_system_setting(ctx.session, key)
    return respond(ctx.request, {key: value} if value is not None else {}, xml_root="systemSettings")


@router.get("/systemSettings")
def all_system_settings(ctx: CtxDep) -> Response:
    """The system settings Herald knows, defaults filled in."""
    values = {k: directory.get_system_setting(ctx.session, k) for k in directory.SYSTEM_SETTING_DEFAULTS}
    values.pop(directory.FEEDBACK_RECIPIENTS_KEY, None)
    return respond(ctx.request, values, xml_root="systemSettings")


@router.post("/systemSettings/{key}")
def set_system_setting(ctx: CtxDep, key: str, body: SettingValueBody, query: SystemSettingParams) -> Response:
    """Set a system setting (ALL or F_SYSTEM_SETTING)."""
    if not ctx.user.has_any(SYSTEM_SETTING_AUTHORITY):
        raise Forbidden(f"Access is denied, requires one Authority from [{SYSTEM_SETTING_AUTHORITY}]")
    if key == directory.FEEDBACK_RECIPIENTS_KEY:
        raise BadRequest("Set feedback recipients through /api/configuration/feedbackRecipients.")
    value = _value(key, query.value, body)
    directory.set_system_setting(ctx.session, key, value)
    ctx.session.commit()
    return respond_message(ctx.request, 200, f"System setting '{key}' set to value '{value}'.")


def _feedback(ctx: Ctx) -> dict[str, Any]:
    group = directory.feedback_group(ctx.session)
    if group is None:
        # The official app reads feedbackRecipients.id unconditionally: never null.
        return {"id": ""}
    return {"id": group.uid, "name": group.name, "displayName": group.name}


@router.get("/configuration")
def configuration(ctx: CtxDep) -> Response:
    """Server configuration; feedbackRecipients is always an object."""
    return respond(
        ctx.request,
        {"feedbackRecipients": _feedback(ctx), "systemId": "herald", "infrastructuralIndicators": None},
        xml_root="configuration",
    )


@router.get("/configuration/feedbackRecipients")
def get_feedback_recipients(ctx: CtxDep) -> Response:
    """The feedback-recipients group."""
    group = directory.feedback_group(ctx.session)
    if group is None:
        raise NotFound("Feedback recipients group is not configured.")
    return respond(ctx.request, _feedback(ctx), xml_root="userGroup")


@router.post("/configuration/feedbackRecipients")
def set_feedback_recipients(ctx: CtxDep, body: FeedbackGroupBody) -> Response:
    """Set the feedback-recipients group from a group UID body (DECISIONS #13)."""
    if not ctx.user.has_any(SYSTEM_SETTING_AUTHORITY):
        raise Forbidden(f"Access is denied, requires one Authority from [{SYSTEM_SETTING_AUTHORITY}]")
    text = body.uid
    if not is_uid(text):
        raise BadRequest(FeedbackGroup.NOT_OBJECT)
    group = ctx.session.scalar(select(UserGroup).where(UserGroup.uid == text))
    if group is None:
        raise NotFound(f"UserGroup with id {text} could not be found.", error_code="E1005")
    directory.set_system_setting(ctx.session, directory.FEEDBACK_RECIPIENTS_KEY, group.uid)
    ctx.session.commit()
    return Response(status_code=204)


@router.delete("/configuration/feedbackRecipients")
def clear_feedback_recipients(ctx: CtxDep) -> Response:
    """Unset the feedback-recipients group."""
    if not ctx.user.has_any(SYSTEM_SETTING_AUTHORITY):
        raise Forbidden(f"Access is denied, requires one Authority from [{SYSTEM_SETTING_AUTHORITY}]")
    directory.set_system_setting(ctx.session, directory.FEEDBACK_RECIPIENTS_KEY, None)
    ctx.session.commit()
    return Response(status_code=204)
