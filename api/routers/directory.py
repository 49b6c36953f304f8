"""Read endpoints for users, user groups, organisation units, /me and userLookup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from api import fields
from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.queries import FieldsParams, ListParams, ListQuery, LookupParams, pager
from api.render import base_url, respond
from messaging import directory, inbox
from messaging import query as q
from messaging.errors import BadRequest, NotFound
from messaging.models import (
    OrganisationUnit,
    User,
    UserGroup,
    UserGroupMember,
    UserOrgUnit,
    UserRole,
    UserRoleMember,
)

router = APIRouter(prefix="/api", tags=["directory"], route_class=SessionClosingRoute)
LOOKUP_LIMIT = 25


def _display(user: Any) -> Any:
    return func.trim(user.first_name + literal(" ") + user.surname)


def _count(link: Any, column: Any, owner: Any) -> Any:
    return select(func.count()).where(column == owner).scalar_subquery()


USER_PROPS = {
    "id": q.Property(User.uid, q.Kind.STRING),
    "username": q.Property(User.username, q.Kind.STRING),
    "firstName": q.Property(User.first_name, q.Kind.STRING),
    "surname": q.Property(User.surname, q.Kind.STRING),
    "displayName": q.Property(_display(User), q.Kind.STRING),
    "name": q.Property(_display(User), q.Kind.STRING),
    "email": q.Property(User.email, q.Kind.STRING),
    "phoneNumber": q.Property(User.phone_number, q.Kind.STRING),
    "disabled": q.Property(User.disabled, q.Kind.BOOLEAN),
    "created": q.Property(User.created, q.Kind.DATETIME),
    "lastUpdated": q.Property(User.last_updated, q.Kind.DATETIME),
}
GROUP_PROPS = {
    "id": q.Property(UserGroup.uid, q.Kind.STRING),
    "name": q.Property(UserGroup.name, q.Kind.STRING),
    "displayName": q.Property(UserGroup.name, q.Kind.STRING),
    "created": q.Property(UserGroup.created, q.Kind.DATETIME),
    "lastUpdated": q.Property(UserGroup.last_updated, q.Kind.DATETIME),
    "users": q.Property(_count(UserGroupMember, UserGroupMember.group_id, UserGroup.id), q.Kind.INTEGER),
}
ORG_UNIT_PROPS = {
    "id": q.Property(OrganisationUnit.uid, q.Kind.STRING),
    "name": q.Property(OrganisationUnit.name, q.Kind.STRING),
    "displayName": q.Property(OrganisationUnit.name, q.Kind.STRING),
    "shortName": q.Property(OrganisationUnit.short_name, q.Kind.STRING),
    "path": q.Property(OrganisationUnit.path, q.Kind.STRING),
    "level": q.Property(OrganisationUnit.level, q.Kind.INTEGER),
    "created": q.Property(OrganisationUnit.created, q.Kind.DATETIME),
    "lastUpdated": q.Property(OrganisationUnit.last_updated, q.Kind.DATETIME),
    "users": q.Property(_count(UserOrgUnit, UserOrgUnit.org_unit_id, OrganisationUnit.id), q.Kind.INTEGER),
}


# Contact details: readable, filterable and sortable only with ALL or a user-management authority
# (issue 8); anyone else sees only their own, and a filter or order on them is an unknown property.
CONTACT_PROPS = frozenset({"email", "phoneNumber"})
USER_MANAGEMENT = ("F_USER_VIEW", "F_USER_ADD")
PUBLIC_USER_PROPS = {k: v for k, v in USER_PROPS.items() if k not in CONTACT_PROPS}


def _named(uid: str, name: str, base: str, resource: str) -> dict[str, Any]:
    return {"id": uid, "href": f"{base}/api/{resource}/{uid}", "name": name, "displayName": name}


def user_dict(session: Session, user: User, base: str, *, private: bool) -> dict[str, Any]:
    """A user as DHIS2 renders it; never the password, contact details only when `private`."""

    def related(model: Any, link: Any, column: Any, resource: str) -> Callable[[], list[dict[str, Any]]]:
        def load() -> list[dict[str, Any]]:
            rows = session.execute(
                select(model.uid, model.name)
                .join(link, column == model.id)
                .where(link.user_id == user.id)
                .order_by(model.name)
            )
            return [_named(uid, name, base, resource) for uid, name in rows]

        return load

    groups = related(UserGroup, UserGroupMember, UserGroupMember.group_id, "userGroups")
    units = related(OrganisationUnit, UserOrgUnit, UserOrgUnit.org_unit_id, "organisationUnits")
    roles = related(UserRole, UserRoleMember, UserRoleMember.role_id, "userRoles")

    return {
        "id": user.uid,
        "href": f"{base}/api/users/{user.uid}",
        "code": None,
        "name": user.display_name,
        "displayName": user.display_name,
        "created": user.created,
        "lastUpdated": user.last_updated,
        "username": user.username,
        "firstName": user.first_name,
        "surname": user.surname,
        "email": user.email if private else None,
        "phoneNumber": user.phone_number if private else None,
        "disabled": user.disabled,
        "userCredentials": {"username": user.username, "disabled": user.disabled, "userRoles": roles},
        "userGroups": groups,
        "organisationUnits": units,
        "userRoles": roles,
    }


def group_dict(session: Session, group: UserGroup, base: str) -> dict[str, Any]:
    """A user group with its members (lazy)."""

    def users() -> list[dict[str, Any]]:
        rows = session.execute(
            select(User.uid, User.first_name, User.surname, User.username)
            .join(UserGroupMember, UserGroupMember.user_id == User.id)
            .where(UserGroupMember.group_id == group.id)
            .order_by(User.id)
        )
        return [
            _named(uid, f"{first} {last}".strip() or username, base, "users") for uid, first, last, username in rows
        ]

    return {
        **_named(group.uid, group.name, base, "userGroups"),
        "created": group.created,
        "lastUpdated": group.last_updated,
        "users": users,
    }


def org_unit_dict(session: Session, unit: OrganisationUnit, base: str) -> dict[str, Any]:
    """An organisation unit with its parent, children and users (lazy)."""

    def parent() -> dict[str, Any] | None:
        if unit.parent_id is None:
            return None
        row = session.execute(
            select(OrganisationUnit.uid, OrganisationUnit.name).where(OrganisationUnit.id == unit.parent_id)
        ).first()
        return _named(row[0], row[1], base, "organisationUnits") if row else None

    def children() -> list[dict[str, Any]]:
        rows = session.execute(
            select(OrganisationUnit.uid, OrganisationUnit.name)
            .where(OrganisationUnit.parent_id == unit.id)
            .order_by(OrganisationUnit.name)
        )
        return [_named(uid, name, base, "organisationUnits") for uid, name in rows]

    def users() -> list[dict[str, Any]]:
        rows = session.execute(
            select(User.uid, User.first_name, User.surname, User.username)
            .join(UserOrgUnit, UserOrgUnit.user_id == User.id)
            .where(UserOrgUnit.org_unit_id == unit.id)
            .order_by(User.id)
        )
        return [
            _named(uid, f"{first} {last}".strip() or username, base, "users") for uid, first, last, username in rows
        ]

    return {
        **_named(unit.uid, unit.name, base, "organisationUnits"),
        "shortName": unit.short_name,
        "displayShortName": unit.short_name,
        "created": unit.created,
        "lastUpdated": unit.last_updated,
        "path": unit.path,
        "level": unit.level,
        "parent": parent,
        "children": children,
        "users": users,
    }


def _list(
    ctx: Ctx,
    query: ListQuery,
    *,
    model: Any,
    props: dict[str, q.Property],
    key: str,
    present: Callable[[Any], dict[str, Any]],
    extra: ColumnElement[bool] | None = None,
) -> Response:
    request = ctx.request
    try:
        where = q.where_clause(props, q.parse_filters(query.filter), query.root_junction)
        orders = q.order_clauses(props, q.parse_order(query.order))
    except q.QueryError as exc:
        raise BadRequest(exc.message) from None
    conditions = [c for c in (where, extra) if c is not None]
    statement: Select[Any] = select(model).where(and_(*conditions)) if conditions else select(model)
    total = ctx.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    statement = statement.order_by(*(orders or [props["displayName"].expression]), model.id)
    if query.paging:
        statement = statement.limit(query.page_size).offset((query.page - 1) * query.page_size)
    spec = query.spec("id,displayName")
    body: dict[str, Any] = {}
    base = base_url(request, ctx.settings.base_url)
    if query.paging:
        body["pager"] = pager(request, query, int(total), base=base)
    body[key] = fields.render_many((present(obj) for obj in ctx.session.scalars(statement)), spec)
    return respond(request, body, xml_root=key)


def _base(ctx: Ctx) -> str:
    return base_url(ctx.request, ctx.settings.base_url)


def _manages_users(ctx: Ctx) -> bool:
    return ctx.user.has_any(*USER_MANAGEMENT)


def _private(ctx: Ctx, user: User) -> bool:
    return ctx.user.id == user.id or _manages_users(ctx)


@router.get("/users")
def list_users(ctx: CtxDep, query: ListParams) -> Response:
    """Users, with DHIS2's fields, filter, order and paging."""
    base = _base(ctx)
    return _list(
        ctx,
        query,
        model=User,
        props=USER_PROPS if _manages_users(ctx) else PUBLIC_USER_PROPS,
        key="users",
        present=lambda u: user_dict(ctx.session, u, base, private=_private(ctx, u)),
    )


@router.get("/users/{uid}")
def get_user(ctx: CtxDep, uid: str, query: FieldsParams) -> Response:
    """One user."""
    user = directory.user_by_uid(ctx.session, uid)
    if user is None:
        raise NotFound(f"User with id {uid} could not be found.", error_code="E1005")
    body = fields.render(user_dict(ctx.session, user, _base(ctx), private=_private(ctx, user)), query.spec("*"))
    return respond(ctx.request, body, xml_root="user")


@router.get("/userGroups")
def list_user_groups(ctx: CtxDep, query: ListParams) -> Response:
    """User groups, with fields, filter (`users:gte:1`), order and paging."""
    base = _base(ctx)
    return _list(ctx, query, model=UserGroup, props=GROUP_PROPS, key="userGroups", present=lambda g: group_dict(ctx.session, g, base))


@router.get("/userGroups/{uid}")
def get_user_group(ctx: CtxDep, uid: str, query: FieldsParams) -> Response:
    """One user group."""
    group = ctx.session.scalar(select(UserGroup).where(UserGroup.uid == uid))
    if group is None:
        raise NotFound(f"UserGroup with id {uid} could not be found.", error_code="E1005")
    return respond(ctx.request, fields.render(group_dict(ctx.session, group, _base(ctx)), query.spec("*")), xml_root="userGroup")


@router.get("/organisationUnits")
def list_org_units(ctx: CtxDep, query: ListParams) -> Response:
    """Organisation units, with fields, filter (`displayName:token:`, `users:gte:1`), order and paging."""
    base = _base(ctx)
    return _list(
        ctx,
        query,
        model=OrganisationUnit,
        props=ORG_UNIT_PROPS,
        key="organisationUnits",
        present=lambda u: org_unit_dict(ctx.session, u, base),
    )


@router.get("/organisationUnits/{uid}")
def get_org_unit(ctx: CtxDep, uid: str, query: FieldsParams) -> Response:
    """One organisation unit."""
    unit = ctx.session.scalar(select(OrganisationUnit).where(OrganisationUnit.uid == uid))
    if unit is None:
        raise NotFound(f"OrganisationUnit with id {uid} could not be found.", error_code="E1005")
    body = fields.render(org_unit_dict(ctx.session, unit, _base(ctx)), query.spec("*"))
    return respond(ctx.request, body, xml_root="organisationUnit")


def me_dict(ctx: Ctx) -> dict[str, Any]:
    """The caller, with settings, authorities and groups always present (the app shell needs them)."""
    user = ctx.session.get(User, ctx.user.id)
    assert user is not None
    body = user_dict(ctx.session, user, _base(ctx), private=True)
    body["settings"] = lambda: directory.user_settings(ctx.session, user.id)
    body["email"] = user.email or ""  # the header bar's profile menu reads it; never absent
    body["authorities"] = sorted(ctx.user.authorities)
    body["programs"] = []
    body["dataSets"] = []
    return body


@router.get("/me")
def me(ctx: CtxDep, query: FieldsParams) -> Response:
    """The current user."""
    return respond(ctx.request, fields.render(me_dict(ctx), query.spec("*")), xml_root="user")


@router.get("/me/dashboard")
def me_dashboard(ctx: CtxDep) -> Response:
    """Unread counts for the header bar."""
    return respond(
        ctx.request,
        {"unreadInterpretations": 0, "unreadMessageConversations": inbox.unread_count(ctx.session, ctx.user.id)},
        xml_root="dashboard",
    )


def _lookup(ctx: Ctx, query: str, restrict: ColumnElement[bool] | None = None) -> Response:
    term = query.strip().lower()
    conditions: list[ColumnElement[bool]] = [User.disabled.is_(False)]
    if query.strip():
        # autoescape: a % or _ typed into the search box is a character, not a wildcard.
        conditions.append(
            or_(
                func.lower(User.username).contains(term, autoescape=True),
                func.lower(_display(User)).contains(term, autoescape=True),
                User.uid == query.strip(),
                # Matching by email tells who has an address: only for those who may read it.
                *([func.lower(func.coalesce(User.email, "")).contains(term, autoescape=True)] if _manages_users(ctx) else []),
            )
        )
    if restrict is not None:
        conditions.append(restrict)
    users = ctx.session.scalars(select(User).where(*conditions).order_by(User.first_name, User.surname, User.id).limit(LOOKUP_LIMIT))
    return respond(
        ctx.request,
        {
            "users": [
                {
                    "id": u.uid,
                    "username": u.username,
                    "firstName": u.first_name,
                    "surname": u.surname,
                    "displayName": u.display_name,
                }
                for u in users
            ]
        },
        xml_root="userLookups",
    )


@router.get("/userLookup")
def user_lookup(ctx: CtxDep, query: LookupParams) -> Response:
    """Find users by name, username or email (recipient search)."""
    return _lookup(ctx, query.query)


@router.get("/userLookup/feedbackRecipients")
def feedback_recipient_lookup(ctx: CtxDep, query: LookupParams) -> Response:
    """Find users among the feedback recipients (ticket assignment)."""
    group = directory.feedback_group(ctx.session)
    if group is None:
        return respond(ctx.request, {"users": []}, xml_root="userLookups")
    members = select(UserGroupMember.user_id).where(UserGroupMember.group_id == group.id)
    return _lookup(ctx, query.query, User.id.in_(members))
