"""DHIS2 metadata import: organisation units, user roles, users and user groups, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, aliased

from messaging import user_admin
from messaging.directory import Principal
from messaging.ids import is_uid, new_uid
from messaging.metadata_types import CYCLE_ERROR, USER_CREDENTIALS, as_boolean, type_errors
from messaging.models import (
    OrganisationUnit,
    User,
    UserGroup,
    UserGroupMember,
    UserOrgUnit,
    UserRole,
    UserRoleMember,
    WebSession,
)
from messaging.passwords import hash_passwords
from messaging.validation import metadata as validation_metadata

KLASS = {
    "organisationUnits": "org.hisp.dhis.organisationunit.OrganisationUnit",
    "userRoles": "org.hisp.dhis.user.UserRole",
    "users": "org.hisp.dhis.user.User",
    "userGroups": "org.hisp.dhis.user.UserGroup",
    **validation_metadata.KLASS,
}
ORDER = ("organisationUnits", "userRoles", "users", "userGroups", *validation_metadata.ORDER)
# Text properties held in length-limited columns: (model, {property: column}).
LIMITED = {
    "organisationUnits": (OrganisationUnit, {"name": "name", "shortName": "short_name"}),
    "userRoles": (UserRole, {"name": "name"}),
    "users": (
        User,
        {"username": "username", "firstName": "first_name", "surname": "surname", "email": "email", "phoneNumber": "phone_number"},
    ),
    "userGroups": (UserGroup, {"name": "name"}),
}


@dataclass
class ObjectReport:
    """What happened to one object, DHIS2 style."""

    klass: str
    index: int
    uid: str | None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, code: str, message: str, prop: str | None = None) -> None:
        """Record an error against this object."""
        report: dict[str, Any] = {"message": message, "mainKlass": self.klass, "errorCode": code}
        if prop:
            report["errorProperty"] = prop
        self.errors.append(report)


@dataclass
class ImportReport:
    """Counts and errors of one import."""

    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    objects: dict[str, list[ObjectReport]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No object had an error."""
        return not any(r.errors for reports in self.objects.values() for r in reports)

    def as_response(self) -> dict[str, Any]:
        """The `response` part of DHIS2's import WebMessage."""
        type_reports = []
        totals = {"created": 0, "updated": 0, "deleted": 0, "ignored": 0, "total": 0}
        for key in ORDER:
            reports = self.objects.get(key, [])
            if not reports:
                continue
            created, updated = self.created.get(key, 0), self.updated.get(key, 0)
            ignored = len(reports) - created - updated
            stats = {"created": created, "updated": updated, "deleted": 0, "ignored": ignored, "total": len(reports)}
            for k in totals:
                totals[k] += stats[k]
            type_reports.append(
                {
                    "klass": KLASS[key],
                    "stats": stats,
                    "objectReports": [
                        {"klass": r.klass, "index": r.index, "uid": r.uid, "errorReports": r.errors}
                        for r in reports
                        if r.errors
                    ],
                }
            )
        return {
            "responseType": "ImportReport",
            "status": "OK" if self.ok else "ERROR",
            "stats": totals,
            "typeReports": type_reports,
        }


def _max_length(model: Any, column: str) -> int:
    """The length limit of a String column."""
    return int(model.__table__.c[column].type.length)


class MetadataError(Exception):
    """The payload is not an object of lists of objects."""


def _refs(value: Any) -> list[Any] | None:
    """[{"id": ...}] -> ids; None when the key is absent; invalid entries are kept for errors."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise MetadataError("references must be lists of objects with an id")
    return [item.get("id") if isinstance(item, Mapping) else item for item in value]


class _Importer:
    def __init__(self, session: Session, payload: Mapping[str, Any], importer: Principal | None) -> None:
        self.session, self.payload, self.report = session, payload, ImportReport()
        self.importer = importer
        self.progress: Callable[[int], None] | None = None
        self._resolved_users: dict[tuple[str | None, str | None], int | None] = {}
        self.known: dict[str, set[str]] = {key: set() for key in ORDER}
        self.usernames: dict[str, int] = {}  # username -> index of the payload user claiming it
        for key in ORDER:
            items = payload.get(key, [])
            if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
                raise MetadataError(f"'{key}' must be a list of objects")
            for item in items:
                if is_uid(item.get("id")):
                    self.known[key].add(item["id"])
        self.units = {u["id"]: u.get("parent") for u in payload.get("organisationUnits", []) if is_uid(u.get("id"))}
        self.payload_roles = {
            r["id"]: set(r["authorities"])
            for r in payload.get("userRoles", [])
            if is_uid(r.get("id")) and isinstance(r.get("authorities"), list) and all(isinstance(a, str) for a in r["authorities"])
        }

    def _exists(self, model: Any, key: str, uid: Any) -> bool:
        if not isinstance(uid, str) or not is_uid(uid):
            return False
        return uid in self.known[key] or self.session.scalar(select(model.id).where(model.uid == uid)) is not None

    def validate(self) -> None:
        for key in ORDER:
            reports = self.report.objects.setdefault(key, [])
            for index, item in enumerate(self.payload.get(key, [])):
                report = ObjectReport(KLASS[key], index, item.get("id"))
                reports.append(report)
                for code, message, prop in type_errors(key, item):
                    report.error(code, message, prop)
                if report.errors:
                    continue  # mistyped: the checks below would misread it
                uid = item.get("id")
                if uid is not None and not is_uid(uid):
                    report.error("E4014", f"Invalid UID `{uid}` for property `{KLASS[key]}`", "id")
                if key in validation_metadata.KLASS:
                    validation_metadata.check(self, key, item, report)
                else:
                    getattr(self, f"_check_{key}")(item, report)
                if self.importer is not None and not self.importer.is_super:
                    getattr(self, f"_authorize_{key}", lambda _i, _r: None)(item, report)

    def _check_lengths(self, key: str, item: Mapping[str, Any], report: ObjectReport) -> None:
        model, columns = LIMITED[key]
        for prop, column in columns.items():
            value, limit = item.get(prop), _max_length(model, column)
            if isinstance(value, str) and len(value) > limit:
                # DHIS2's text, missing space included.
                report.error("E4001", f"Maximum length of property `{prop}`is {limit}, but given length was {len(value)}.", prop)

    def _check_name(self, item: Mapping[str, Any], report: ObjectReport) -> None:
        if not isinstance(item.get("name"), str) or not item["name"].strip():
            report.error("E4000", "Missing required property `name`.", "name")

    def _check_organisationUnits(self, item: Mapping[str, Any], report: ObjectReport) -> None:
        self._check_name(item, report)
        self._check_lengths("organisationUnits", item, report)
        parent = (item.get("parent") or {}).get("id") if isinstance(item.get("parent"), Mapping) else None
        if parent is not None and not self._exists(OrganisationUnit, "organisationUnits", parent):
            report.error("E5002", f"Invalid reference [{parent}] (OrganisationUnit) on object property `parent`", "parent")
        elif parent is not None and is_uid(item.get("id")) and self._is_ancestor(item["id"], parent):
            report.error(
                CYCLE_ERROR,
                f"Organisation unit `{item['id']}` cannot have `{parent}` as parent: it would be its own ancestor",
                "parent",
            )

    def _parent_of(self, uid: str) -> str | None:
        # The parent this import gives the unit, else the stored one.
        if uid in self.units:
            parent = self.units[uid]
            return parent.get("id") if isinstance(parent, Mapping) and isinstance(parent.get("id"), str) else None
        parent_unit = aliased(OrganisationUnit)
        return self.session.scalar(
            select(parent_unit.uid)
            .join(OrganisationUnit, OrganisationUnit.parent_id == parent_unit.id)
            .where(OrganisationUnit.uid == uid)
        )

    def _is_ancestor(self, uid: str, parent: str) -> bool:
        """True when `uid` is `parent` or one of its ancestors (after this import)."""
        seen: set[str] = set()
        current: str | None = parent
        while current is not None and current not in seen:
            if current == uid:
                return True
            seen.add(current)
            current = self._parent_of(current)
        return False

    def _check_userRoles(self, item: Mapping[str, Any], report: ObjectReport) -> None:
        self._check_name(item, report)
        self._check_lengths("userRoles", item, report)
        authorities = item.get("authorities", [])
        if not isinstance(authorities, list) or not all(isinstance(a, str) for a in authorities):
            report.error("E4000", "Property `authorities` must be a list of strings.", "authorities")

    def _authorize_userRoles(self, item: Mapping[str, Any], report: ObjectReport) -> None:
        assert self.importer is not None
        wanted = set(item.get("authorities") or [])
        stored = user_admin.role_authorities(self.session, [item["id"]]) if is_uid(item.get("id")) else {}
        name = item.get("id") or item.get("name")
        refusal = user_admin.role_change_refusal(self.importer, str(name), wanted | stored.get(str(name), set()))
        if refusal:
            report.error(user_admin.ROLE_DENIED, refusal, "authorities")

    def _authorize_userGroups(self, item: Mapping[str, Any], report: ObjectReport) -> None:
        assert self.importer is not None
        if "users" in item and is_uid(item.get("id")):
            refusal = user_admin.group_change_refusal(self.session, self.importer, item["id"])
            if refusal:
                report.error(user_admin.UPDATE_DENIED, refusal, "users")

    def _authorize_users(self, raw: Mapping[str, Any], report: ObjectReport) -> None:
        assert self.importer is not None
        user = self._user_fields(raw)
        existing = self._existing_user(user)
        if existing is not None:
            refusal = user_admin.user_change_refusal(self.session, self.importer, existing)
            if refusal:
                report.error(user_admin.UPDATE_DENIED, refusal, "userRoles")
        roles = [r for r in _refs(user.get("userRoles")) or [] if isinstance(r, str)]
        stored = user_admin.role_authorities(self.session, [r for r in roles if r not in self.payload_roles])
        for role in dict.fromkeys(roles):
            authorities = self.payload_roles.get(role, stored.get(role, set()))
            refusal = user_admin.role_grant_refusal(self.importer, role, authorities)
            if refusal:
                report.error(user_admin.ROLE_DENIED, refusal, "userRoles")
        if user.get("password") is not None:
            refusal = user_admin.password_refusal(self.importer, existing)
            if refusal:
                report.error(user_admin.UPDATE_DENIED, refusal, "password")

    def _user_fields(self, item: Mapping[str, Any]) -> dict[str, Any]:
        raw = item.get("userCredentials")
        # Only the properties type_errors checks come from userCredentials: nothing unchecked reaches a column.
        credentials = {k: v for k, v in raw.items() if k in USER_CREDENTIALS} if isinstance(raw, Mapping) else {}
        merged = {**credentials, **{k: v for k, v in item.items() if k != "userCredentials"}}
        if "userRoles" not in item and "userRoles" in credentials:
            merged["userRoles"] = credentials["userRoles"]
        return merged

    def _check_users(self, item: Mapping[str, Any], report: ObjectReport) -> None:
        user = self._user_fields(item)
        existing = self._existing_user(user)
        if existing is None and not (isinstance(user.get("username"), str) and user["username"].strip()):
            report.error("E4000", "Missing required property `username`.", "username")
        self._check_lengths("users", user, report)
        password = user.get("password")
        if password is not None and (not isinstance(password, str) or not password):
            report.error("E4000", "Property `password` must be a non-empty string.", "password")
        for prop, model, key in (
            ("organisationUnits", OrganisationUnit, "organisationUnits"),
            ("userRoles", UserRole, "userRoles"),
        ):
            for ref in _refs(user.get(prop)) or []:
                if not self._exists(model, key, ref):
                    report.error("E5002", f"Invalid reference [{ref}] ({model.__name__}) on object property `{prop}`", prop)
        username = user.get("username")
        if isinstance(username, str):
            # Taken by another stored user, or claimed by an earlier user of this payload.
            taken = self.session.scalar(select(User.uid).where(User.username == username))
            mine = existing.uid if existing is not None else user.get("id")
            claimed = self.usernames.setdefault(username, report.index) != report.index
            if (taken is not None and taken != mine) or claimed:
                report.error("E4054", f"Property `username` with value `{username}` on object is already used", "username")

    def _check_userGroups(self, item: Mapping[str, Any], report: ObjectReport) -> None:
        self._check_name(item, report)
        self._check_lengths("userGroups", item, report)
        for ref in _refs(item.get("users")) or []:
            if not self._exists(User, "users", ref):
                report.error("E5002", f"Invalid reference [{ref}] (User) on object property `users`", "users")

    def _existing_user(self, user: Mapping[str, Any]) -> User | None:
        # An id names the user; only an id-less user is matched by username. Resolved once, when
        # validated: the write changes the user that was authorized, even if an earlier item of the
        # payload renamed someone to (or away from) this username.
        uid = user.get("id") if is_uid(user.get("id")) else None
        username = user.get("username") if uid is None and isinstance(user.get("username"), str) else None
        key = (uid, username)
        if key not in self._resolved_users:
            found = None
            if uid is not None:
                found = self.session.scalar(select(User.id).where(User.uid == uid))
            elif username is not None:
                found = self.session.scalar(select(User.id).where(User.username == username))
            self._resolved_users[key] = found
        user_id = self._resolved_users[key]
        return self.session.get(User, user_id) if user_id is not None else None

    def _upsert(self, model: Any, key: str, item: Mapping[str, Any]) -> Any:
        uid = item.get("id") if is_uid(item.get("id")) else None
        obj = self.session.scalar(select(model).where(model.uid == uid)) if uid else None
        if obj is None:
            obj = model(uid=uid or new_uid())
            self.session.add(obj)
            self.report.created[key] = self.report.created.get(key, 0) + 1
        else:
            self.report.updated[key] = self.report.updated.get(key, 0) + 1
        return obj

    def _ids(self, model: Any, uids: list[str]) -> list[int]:
        if not uids:
            return []
        return list(self.session.scalars(select(model.id).where(model.uid.in_(uids))))

    def write(self) -> None:
        units = sorted(self.payload.get("organisationUnits", []), key=lambda u: _depth(u, self.payload))
        for item in units:
            unit = self._upsert(OrganisationUnit, "organisationUnits", item)
            unit.name = item["name"]
            unit.short_name = item.get("shortName") or item["name"][:50]
            parent_uid = (item.get("parent") or {}).get("id")
            parent = self.session.scalar(select(OrganisationUnit).where(OrganisationUnit.uid == parent_uid)) if parent_uid else None
            unit.parent_id = parent.id if parent else None
            unit.path = f"{parent.path if parent else ''}/{unit.uid}"
            unit.level = (parent.level + 1) if parent else 1
            self.session.flush()
        for item in self.payload.get("userRoles", []):
            role = self._upsert(UserRole, "userRoles", item)
            role.name = item["name"]
            role.authorities = list(item.get("authorities", []))
        self.session.flush()
        users = [self._user_fields(raw) for raw in self.payload.get("users", [])]
        hashes = iter(hash_passwords([u["password"] for u in users if u.get("password")], progress=self.progress))
        for item in users:
            self._write_user(item, next(hashes) if item.get("password") else None)
        for item in self.payload.get("userGroups", []):
            group = self._upsert(UserGroup, "userGroups", item)
            group.name = item["name"]
            self.session.flush()
            members = _refs(item.get("users"))
            if members is not None:
                self.session.execute(delete(UserGroupMember).where(UserGroupMember.group_id == group.id))
                for user_id in dict.fromkeys(self._ids(User, members)):
                    self.session.add(UserGroupMember(group_id=group.id, user_id=user_id))
        self.session.flush()
        validation_metadata.write(self)

    def _write_user(self, item: dict[str, Any], password_hash: str | None) -> None:
        user = self._existing_user(item)
        stored = user is not None
        if user is None:
            user = User(uid=item["id"] if is_uid(item.get("id")) else new_uid(), username=item["username"])
            self.session.add(user)
            self.report.created["users"] = self.report.created.get("users", 0) + 1
        else:
            self.report.updated["users"] = self.report.updated.get("users", 0) + 1
        for prop, attr in (("firstName", "first_name"), ("surname", "surname")):
            if prop in item:
                setattr(user, attr, str(item[prop] or ""))
        for prop, attr in (("email", "email"), ("phoneNumber", "phone_number")):
            if prop in item:
                setattr(user, attr, item[prop] or None)
        if "disabled" in item:
            user.disabled = as_boolean(item["disabled"])
        if isinstance(item.get("username"), str):
            user.username = item["username"]
        if password_hash is not None:
            user.password_hash = password_hash
        self.session.flush()
        if stored and (item.get("password") or user.disabled):
            # A new password or a disable ends every session for good: re-enabling revives none.
            self.session.execute(delete(WebSession).where(WebSession.user_id == user.id))
        for prop, model, link, column in (
            ("organisationUnits", OrganisationUnit, UserOrgUnit, "org_unit_id"),
            ("userRoles", UserRole, UserRoleMember, "role_id"),
        ):
            refs = _refs(item.get(prop))
            if refs is None:
                continue
            self.session.execute(delete(link).where(link.user_id == user.id))
            for target in dict.fromkeys(self._ids(model, refs)):
                self.session.add(link(user_id=user.id, **{column: target}))


def _depth(unit: Mapping[str, Any], payload: Mapping[str, Any]) -> int:
    by_id = {u.get("id"): u for u in payload.get("organisationUnits", [])}
    depth, seen, current = 0, set(), unit
    while isinstance(current.get("parent"), Mapping) and current["parent"].get("id") in by_id:
        parent_id = current["parent"]["id"]
        if parent_id in seen:
            break
        seen.add(parent_id)
        current, depth = by_id[parent_id], depth + 1
    return depth


def import_metadata(
    session: Session,
    payload: Mapping[str, Any],
    importer: Principal | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate every object (and, for an `importer` without ALL, its right to it), then write them all.

    `importer` None is a trusted caller (CLI, demo, bootstrap). No commit; nothing staged on error.
    Passwords are hashed in parallel; ``progress(n)`` is called as n more users' passwords are done.
    """
    run = _Importer(session, payload, importer)
    run.progress = progress
    run.validate()
    if run.report.ok:
        run.write()
    return run.report
