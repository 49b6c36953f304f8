"""Users, groups, org units, /me, lookups, settings, configuration, metadata import and HTTP Basic."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from messaging.models import (
    OrganisationUnit,
    User,
    UserGroup,
    UserGroupMember,
    UserOrgUnit,
    UserRole,
    UserRoleMember,
)
from tests.conftest import LiveServer, wait_until
from tests.support.demo import ADMIN, ALICE, FATMATA, IBRAHIM, MOBILE, MOHAMED, NGELEHUN_STAFF

FEEDBACK_GROUP, FIELD_WORKERS = "QYrzIjSfI8z", "ZoHNWQajIoe"
SIERRA_LEONE, BO, BADJIA, NGELEHUN, NJANDAMA, BOMBALI = (
    "ImspTQPwCqd",
    "O6uvpzGd5pu",
    "YuQRtpLP10I",
    "DiszpKrYNg8",
    "g8upMTyEZGZ",
    "fdc6uOvgoji",
)
CLERK_ROLE = "Euq3XfEIEbx"
SECRET = "Sup3r-secret-passw0rd"
TABLES = (User, UserRole, UserGroup, OrganisationUnit, UserGroupMember, UserOrgUnit, UserRoleMember)
pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


# ---------------------------------------------------------------- helpers


def counts(server: LiveServer) -> dict[str, int]:
    with server.session() as session:
        return {m.__tablename__: int(session.scalar(select(func.count()).select_from(m)) or 0) for m in TABLES}


def password_hash(server: LiveServer, username: str) -> str | None:
    with server.session() as session:
        return session.scalar(select(User.password_hash).where(User.username == username))


def import_ok(server: LiveServer, payload: dict[str, Any], client: httpx.Client | None = None) -> dict[str, Any]:
    response = (client or server.client()).post("/api/metadata", json=payload)
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    body: dict[str, Any] = response.json()
    return body


def new_user(uid: str, username: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": uid,
        "username": username,
        "password": SECRET,
        "firstName": "New",
        "surname": username.title(),
        "userRoles": [{"id": CLERK_ROLE}],
        **extra,
    }


def names(body: dict[str, Any], key: str, field: str = "displayName") -> list[str]:
    return [item[field] for item in body[key]]


# ---------------------------------------------------------------- /api/metadata


def test_metadata_import_creates_org_units_roles_users_and_groups(server: LiveServer) -> None:
    body = import_ok(
        server,
        {
            "organisationUnits": [
                {"id": "newDistr001", "name": "Kenema", "shortName": "Kenema", "parent": {"id": SIERRA_LEONE}},
                {"id": "newClinic01", "name": "Kenema Clinic", "parent": {"id": "newDistr001"}},
            ],
            "userRoles": [{"id": "newRole0001", "name": "Reporter", "authorities": ["F_SEND_EMAIL"]}],
            "users": [new_user("newUser0001", "kadi", organisationUnits=[{"id": "newClinic01"}], userRoles=[{"id": "newRole0001"}])],
            "userGroups": [{"id": "newGroup001", "name": "Kenema team", "users": [{"id": "newUser0001"}, {"id": ALICE}]}],
        },
    )
    assert body["httpStatusCode"] == 200
    assert body["status"] == "OK"
    report = body["response"]
    assert report["responseType"] == "ImportReport"
    assert report["status"] == "OK"
    assert report["stats"] == {"created": 5, "updated": 0, "deleted": 0, "ignored": 0, "total": 5}
    admin = server.client()
    clinic = admin.get("/api/organisationUnits/newClinic01", params={"fields": "name,level,path,parent[id],users[id]"}).json()
    assert clinic == {
        "name": "Kenema Clinic",
        "path": f"/{SIERRA_LEONE}/newDistr001/newClinic01",
        "level": 3,
        "parent": {"id": "newDistr001"},
        "users": [{"id": "newUser0001"}],
    }
    group = admin.get("/api/userGroups/newGroup001", params={"fields": "displayName,users[id]"}).json()
    assert group["displayName"] == "Kenema team"
    assert {u["id"] for u in group["users"]} == {"newUser0001", ALICE}
    kadi = server.client("kadi", SECRET).get("/api/me", params={"fields": "id,authorities,userGroups[id]"}).json()
    assert kadi == {"id": "newUser0001", "userGroups": [{"id": "newGroup001"}], "authorities": ["F_SEND_EMAIL"]}


def test_metadata_import_updates_objects_it_already_has(server: LiveServer) -> None:
    import_ok(server, {"users": [new_user("newUser0001", "kadi")]})
    body = import_ok(
        server,
        {
            "users": [{"id": "newUser0001", "username": "kadi", "firstName": "Kadiatu", "surname": "Koroma"}],
            "userGroups": [{"id": FIELD_WORKERS, "name": "Field workers (all)", "users": [{"id": "newUser0001"}]}],
        },
    )
    assert body["response"]["stats"] == {"created": 0, "updated": 2, "deleted": 0, "ignored": 0, "total": 2}
    admin = server.client()
    assert admin.get("/api/users/newUser0001", params={"fields": "displayName"}).json() == {"displayName": "Kadiatu Koroma"}
    group = admin.get(f"/api/userGroups/{FIELD_WORKERS}", params={"fields": "name,users[id]"}).json()
    assert group == {"name": "Field workers (all)", "users": [{"id": "newUser0001"}]}
    # No password in the update: the old one still works.
    assert server.client("kadi", SECRET).get("/api/me").status_code == 200


def test_metadata_import_accepts_the_user_credentials_form(server: LiveServer) -> None:
    import_ok(
        server,
        {
            "users": [
                {
                    "id": "credUser001",
                    "firstName": "Cred",
                    "surname": "Ential",
                    "email": "cred@dhis2.example",
                    "userCredentials": {"username": "cred", "password": SECRET, "userRoles": [{"id": "yrB6vc5Ip3r"}]},
                }
            ]
        },
    )
    me = server.client("cred", SECRET).get("/api/me", params={"fields": "id,username,email,authorities"}).json()
    assert me == {"id": "credUser001", "username": "cred", "email": "cred@dhis2.example", "authorities": ["ALL"]}


def test_a_dangling_reference_is_a_409_import_report_and_nothing_is_written(server: LiveServer) -> None:
    before = counts(server)
    response = server.client().post(
        "/api/metadata",
        json={
            "organisationUnits": [{"id": "newDistr001", "name": "Kenema", "parent": {"id": SIERRA_LEONE}}],
            "users": [new_user("newUser0001", "kadi", organisationUnits=[{"id": "noSuchUnit1"}])],
            "userGroups": [{"id": "newGroup001", "name": "Ghosts", "users": [{"id": "noSuchUser1"}]}],
        },
    )
    assert response.status_code == 409
    body = response.json()
    assert body["httpStatus"] == "Conflict"
    assert body["status"] == "ERROR"
    assert body["message"] == "One or more errors occurred, please see full details in import report."
    report = body["response"]
    assert report["status"] == "ERROR"
    errors = [
        (type_report["klass"], error["errorCode"], error["message"])
        for type_report in report["typeReports"]
        for object_report in type_report["objectReports"]
        for error in object_report["errorReports"]
    ]
    assert errors == [
        (
            "org.hisp.dhis.user.User",
            "E5002",
            "Invalid reference [noSuchUnit1] (OrganisationUnit) on object property `organisationUnits`",
        ),
        ("org.hisp.dhis.user.UserGroup", "E5002", "Invalid reference [noSuchUser1] (User) on object property `users`"),
    ]
    assert SECRET not in response.text
    assert counts(server) == before
    assert server.client().get("/api/organisationUnits/newDistr001").status_code == 404


def import_refused(server: LiveServer, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """Import that must fail as a whole: 409, an import report, nothing written; returns (errorCode, property)."""
    before = counts(server)
    response = server.client().post("/api/metadata", json=payload)
    assert response.status_code == 409, response.text
    assert response.json()["response"]["status"] == "ERROR"
    assert counts(server) == before
    return [
        (error["errorCode"], error.get("errorProperty", ""))
        for type_report in response.json()["response"]["typeReports"]
        for object_report in type_report["objectReports"]
        for error in object_report["errorReports"]
    ]


@pytest.mark.parametrize(
    ("payload", "prop"),
    [
        ({"userGroups": [{"name": "g" * 231}]}, "name"),
        ({"userRoles": [{"name": "r" * 231}]}, "name"),
        ({"organisationUnits": [{"name": "o" * 231}]}, "name"),
        ({"organisationUnits": [{"name": "Short", "shortName": "s" * 51}]}, "shortName"),
        ({"users": [new_user("newUser0001", "u" * 256, surname="Long")]}, "username"),
        ({"users": [new_user("newUser0001", "kadi", firstName="f" * 161)]}, "firstName"),
        ({"users": [new_user("newUser0001", "kadi", surname="s" * 161)]}, "surname"),
        ({"users": [new_user("newUser0001", "kadi", email="e" * 250 + "@x.org")]}, "email"),
        ({"users": [new_user("newUser0001", "kadi", phoneNumber="1" * 65)]}, "phoneNumber"),
    ],
)
def test_metadata_longer_than_its_column_is_an_e4001_import_error(
    server: LiveServer, payload: dict[str, Any], prop: str
) -> None:
    assert import_refused(server, payload) == [("E4001", prop)]


@pytest.mark.parametrize("uid", ["newUser0001", MOBILE], ids=["new-user", "renamed-user"])
def test_a_username_taken_by_another_user_is_refused(server: LiveServer, uid: str) -> None:
    errors = import_refused(server, {"users": [{"id": uid, "username": "alice", "password": SECRET}]})
    assert errors == [("E4054", "username")]
    # Alice was not touched.
    assert server.client("alice").get("/api/me").status_code == 200
    assert server.client("alice", SECRET).get("/api/me").status_code == 401


def test_two_new_users_with_one_username_are_refused(server: LiveServer) -> None:
    errors = import_refused(server, {"users": [new_user("newUser0001", "twin"), new_user("newUser0002", "twin")]})
    assert errors == [("E4054", "username")]


def test_a_user_without_an_id_is_matched_by_username(server: LiveServer) -> None:
    body = import_ok(server, {"users": [{"username": "alice", "firstName": "Alicia"}]})
    assert body["response"]["stats"]["updated"] == 1
    assert server.client().get(f"/api/users/{ALICE}", params={"fields": "firstName"}).json() == {"firstName": "Alicia"}


def test_metadata_import_needs_all_or_f_metadata_import(server: LiveServer) -> None:
    before = counts(server)
    refused = server.client("mobile").post("/api/metadata", json={"userGroups": [{"name": "Mine"}]})
    assert refused.status_code == 403
    assert refused.json()["message"] == "Access is denied, requires one Authority from [F_METADATA_IMPORT]"
    assert counts(server) == before
    import_ok(
        server,
        {
            "userRoles": [{"id": "importRole1", "name": "Importer", "authorities": ["F_METADATA_IMPORT"]}],
            "users": [new_user("importer001", "importer", userRoles=[{"id": "importRole1"}])],
        },
    )
    importer = server.client("importer", SECRET)
    import_ok(server, {"userGroups": [{"id": "newGroup001", "name": "Imported"}]}, client=importer)
    assert server.client().get("/api/userGroups/newGroup001").json()["name"] == "Imported"


def test_passwords_are_stored_hashed_and_never_answered(server: LiveServer) -> None:
    import_ok(server, {"users": [new_user("newUser0001", "kadi")]})
    stored = password_hash(server, "kadi")
    assert stored is not None
    assert stored.startswith("$argon2")
    assert SECRET not in stored
    admin, kadi = server.client(), server.client("kadi", SECRET)
    answers = [
        admin.get("/api/users/newUser0001", params={"fields": "*"}),
        admin.get("/api/users/newUser0001", params={"fields": ":all,userCredentials[*],password,passwordHash"}),
        admin.get("/api/users", params={"fields": "*", "paging": "false"}),
        admin.get("/api/users/newUser0001.xml", params={"fields": "*"}),
        kadi.get("/api/me"),
        kadi.get("/api/me", params={"fields": "*,userCredentials[*]"}),
        admin.get("/api/userLookup", params={"query": "kadi"}),
        admin.get("/api/userGroups", params={"fields": "*,users[*]"}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text
        assert "$argon2" not in answer.text
        assert "password" not in answer.text.lower()


# ---------------------------------------------------------------- users, groups, org units


def test_users_list_with_fields_filter_order_and_paging(server: LiveServer) -> None:
    admin = server.client()
    body = admin.get("/api/users", params={"fields": "id,displayName", "pageSize": 2}).json()
    assert body["pager"]["total"] == 6
    assert body["pager"]["pageCount"] == 3
    assert names(body, "users") == ["Alice Banda", "Fatmata Sesay"]  # by displayName
    assert body["pager"]["nextPage"] == f"{server.url}/api/users?fields=id%2CdisplayName&pageSize=2&page=2"
    token = admin.get("/api/users", params={"fields": "id,displayName", "filter": "displayName:token:ali ban"}).json()
    assert token["users"] == [{"id": ALICE, "displayName": "Alice Banda"}]
    by_username = admin.get("/api/users", params={"filter": "username:in:[mobile,mohamed]", "order": "username:desc"}).json()
    assert names(by_username, "users") == ["Mohamed Conteh", "Mobile User"]
    assert admin.get("/api/users", params={"filter": "nonsense:eq:1"}).status_code == 400


def test_one_user_by_id_as_the_app_s_deep_link_asks(server: LiveServer) -> None:
    mobile = server.client("mobile")
    assert mobile.get(f"/api/42/users/{ALICE}", params={"fields": "id,displayName"}).json() == {
        "id": ALICE,
        "displayName": "Alice Banda",
    }
    missing = mobile.get("/api/users/noSuchUser1")
    assert missing.status_code == 404
    assert missing.json()["message"] == "User with id noSuchUser1 could not be found."


def test_contact_details_are_private_to_the_user_and_administrators(server: LiveServer) -> None:
    fields = {"fields": "id,email,phoneNumber"}
    assert server.client("mobile").get(f"/api/users/{ALICE}", params=fields).json() == {"id": ALICE}
    assert server.client().get(f"/api/users/{ALICE}", params=fields).json() == {"id": ALICE, "email": "alice@dhis2.example"}
    assert server.client("alice").get(f"/api/users/{ALICE}", params=fields).json() == {
        "id": ALICE,
        "email": "alice@dhis2.example",
    }
    listed = server.client("mobile").get("/api/users", params={"fields": "email", "paging": "false"}).json()
    assert all("email" not in u for u in listed["users"])


def test_user_groups_answer_the_app_s_search_exactly_as_it_sends_it(server: LiveServer) -> None:
    response = server.client("mobile").get("/api/42/userGroups?fields=id%2C%20displayName&pageSize=10&filter=displayName%3Atoken%3AFiel")
    assert response.status_code == 200
    assert response.json()["userGroups"] == [{"id": FIELD_WORKERS, "displayName": "Field workers"}]
    assert response.json()["pager"]["pageSize"] == 10


def test_user_groups_filter_on_member_count_and_show_members(server: LiveServer) -> None:
    admin = server.client()
    import_ok(server, {"userGroups": [{"id": "emptyGroup1", "name": "Empty"}]})
    with_members = admin.get("/api/userGroups", params={"filter": "users:gte:1", "paging": "false"}).json()
    assert "Empty" not in names(with_members, "userGroups")
    assert len(with_members["userGroups"]) == 4  # the demo groups, the validation one (issue 10) included
    one = admin.get(f"/api/userGroups/{FIELD_WORKERS}", params={"fields": "id,name,users[id,displayName]"}).json()
    assert sorted(one["users"], key=lambda u: u["id"]) == [
        {"id": IBRAHIM, "displayName": "Ibrahim Kamara"},
        {"id": FATMATA, "displayName": "Fatmata Sesay"},
    ]
    assert admin.get("/api/userGroups/noSuchGroup").json()["message"] == "UserGroup with id noSuchGroup could not be found."


def test_org_units_answer_the_app_s_search_exactly_as_it_sends_it(server: LiveServer) -> None:
    mobile = server.client("mobile")
    url = "/api/42/organisationUnits?fields=id,displayName&pageSize=10&filter=displayName%3Atoken%3A{q}&filter=users%3Agte%3A1"
    assert mobile.get(url.format(q="ngel")).json()["organisationUnits"] == [{"id": NGELEHUN, "displayName": "Ngelehun CHC"}]
    # "b" starts Bo, Badjia and Bombali, but only Bo has users of its own.
    assert mobile.get(url.format(q="b")).json()["organisationUnits"] == [{"id": BO, "displayName": "Bo"}]
    all_with_users = mobile.get("/api/organisationUnits", params={"filter": "users:gte:1", "paging": "false"}).json()
    assert set(names(all_with_users, "organisationUnits")) == {"Sierra Leone", "Bo", "Ngelehun CHC", "Njandama MCHP"}
    none = mobile.get("/api/organisationUnits", params={"filter": "users:eq:0", "paging": "false"}).json()
    assert set(names(none, "organisationUnits")) == {"Badjia", "Bombali"}


def test_one_org_unit_with_its_parent_children_and_users(server: LiveServer) -> None:
    body = server.client().get(
        f"/api/organisationUnits/{BADJIA}", params={"fields": "id,name,level,path,parent[id,name],children[id],users~size"}
    ).json()
    assert body == {
        "id": BADJIA,
        "name": "Badjia",
        "path": f"/{SIERRA_LEONE}/{BO}/{BADJIA}",
        "level": 3,
        "parent": {"id": BO, "name": "Bo"},
        "children": [{"id": NGELEHUN}, {"id": NJANDAMA}],
        "users": 0,
    }
    assert server.client().get("/api/organisationUnits/noSuchUnit1").status_code == 404


def test_directory_lists_answer_in_xml(server: LiveServer) -> None:
    response = server.client().get("/api/organisationUnits.xml", params={"filter": f"id:eq:{BOMBALI}"})
    assert response.headers["content-type"].startswith("application/xml")
    assert f'id="{BOMBALI}"' in response.text
    assert "organisationUnits" in response.text


# ---------------------------------------------------------------- /api/me


def test_me_always_has_settings_authorities_user_groups_name_and_email(server: LiveServer) -> None:
    import_ok(server, {"users": [new_user("newUser0001", "kadi")]})  # no email, no groups
    for client, uid in ((server.client("mobile"), MOBILE), (server.client("kadi", SECRET), "newUser0001")):
        me = client.get("/api/42/me").json()
        assert me["id"] == uid
        for key in ("settings", "authorities", "userGroups", "name", "email"):
            assert key in me, (uid, key)
        assert isinstance(me["settings"], dict)
        assert me["settings"]["keyUiLocale"] == "en"
        assert me["authorities"] == ["M_dhis-web-messaging"]
        header = client.get("/api/42/me", params={"fields": "authorities,avatar,email,name,settings"}).json()
        assert set(header) == {"authorities", "email", "name", "settings"}
    assert server.client("kadi", SECRET).get("/api/me").json()["userGroups"] == []
    assert server.client("mobile").get("/api/me", params={"fields": "userGroups[id]"}).json() == {
        "userGroups": [{"id": NGELEHUN_STAFF}]
    }


def test_me_shows_the_caller_s_own_settings(server: LiveServer) -> None:
    mobile = server.client("mobile")
    assert mobile.post("/api/userSettings/keyUiLocale", params={"value": "fr"}).status_code == 200
    assert mobile.get("/api/me", params={"fields": "settings"}).json()["settings"]["keyUiLocale"] == "fr"


def test_me_dashboard_counts_unread_conversations(server: LiveServer) -> None:
    assert server.client().get("/api/me/dashboard").json() == {"unreadInterpretations": 0, "unreadMessageConversations": 4}
    alice = server.client("alice")
    assert alice.get("/api/me/dashboard").json()["unreadMessageConversations"] == 0
    assert server.client().post("/api/messageConversations/ZrKML5WiyFm", content="ping").status_code == 200
    wait_until(lambda: alice.get("/api/me/dashboard").json()["unreadMessageConversations"] == 1, what="alice's unread count")


# ---------------------------------------------------------------- lookups


def test_user_lookup_finds_users_by_name_username_or_email(server: LiveServer) -> None:
    mobile = server.client("mobile")
    assert [u["id"] for u in server.client().get("/api/userLookup", params={"query": "alice@dhis2"}).json()["users"]] == [ALICE]
    # Without user management email is not searched (issue 8): it would reveal the address piece by piece.
    assert mobile.get("/api/userLookup", params={"query": "alice@dhis2"}).json() == {"users": []}
    for query in ("ali", "Banda", "ALICE"):
        found = mobile.get("/api/userLookup", params={"query": query}).json()
        assert [u["id"] for u in found["users"]] == [ALICE], query
    assert found["users"][0] == {
        "id": ALICE,
        "username": "alice",
        "firstName": "Alice",
        "surname": "Banda",
        "displayName": "Alice Banda",
    }
    assert len(mobile.get("/api/userLookup", params={"query": ""}).json()["users"]) == 6
    assert mobile.get("/api/userLookup", params={"query": "nobody-like-this"}).json() == {"users": []}


@pytest.mark.parametrize("query", ["%", "_", "a%e", "__"])
def test_user_lookup_treats_wildcards_as_plain_characters(server: LiveServer, query: str) -> None:
    assert server.client("mobile").get("/api/userLookup", params={"query": query}).json() == {"users": []}


def test_user_lookup_leaves_out_disabled_users(server: LiveServer) -> None:
    import_ok(server, {"users": [{"id": ALICE, "username": "alice", "disabled": True}]})
    assert server.client("mobile").get("/api/userLookup", params={"query": "alice"}).json() == {"users": []}


def test_feedback_recipient_lookup_lists_the_group_s_members(server: LiveServer) -> None:
    mobile = server.client("mobile")
    found = mobile.get("/api/userLookup/feedbackRecipients", params={"query": ""}).json()
    assert {u["id"] for u in found["users"]} == {ADMIN, MOHAMED}
    only = mobile.get("/api/userLookup/feedbackRecipients", params={"query": "moh"}).json()
    assert [u["id"] for u in only["users"]] == [MOHAMED]
    assert server.client().delete("/api/configuration/feedbackRecipients").status_code in (200, 204)
    assert mobile.get("/api/userLookup/feedbackRecipients", params={"query": ""}).json() == {"users": []}


# ---------------------------------------------------------------- settings


def test_user_settings_default_to_the_system_setting_and_take_value_or_body(server: LiveServer) -> None:
    mobile = server.client("mobile")
    key = "/api/userSettings/keyMessageEmailNotification"
    assert mobile.get(key).text == "true"
    saved = mobile.post(key, params={"value": "false"})
    assert saved.status_code == 200
    assert saved.json()["status"] == "OK"
    assert mobile.get(key).text == "false"
    assert mobile.post(key, content="true", headers={"Content-Type": "text/plain"}).status_code == 200
    assert mobile.get(key).text == "true"
    # Other users keep the default.
    assert server.client("alice").get(key).text == "true"


def test_a_system_setting_changes_the_default_for_users_without_their_own(server: LiveServer) -> None:
    admin, mobile, alice = server.client(), server.client("mobile"), server.client("alice")
    assert alice.post("/api/userSettings/keyMessageSmsNotification", params={"value": "true"}).status_code == 200
    assert admin.get("/api/systemSettings/keyMessageSmsNotification").json() == {"keyMessageSmsNotification": True}
    assert admin.post("/api/systemSettings/keyMessageSmsNotification", params={"value": "false"}).status_code == 200
    assert admin.get("/api/systemSettings/keyMessageSmsNotification").json() == {"keyMessageSmsNotification": False}
    assert mobile.get("/api/userSettings/keyMessageSmsNotification").text == "false"
    assert alice.get("/api/userSettings/keyMessageSmsNotification").text == "true"
    assert admin.post("/api/systemSettings/applicationTitle", content="Herald", headers={"Content-Type": "text/plain"}).status_code == 200
    assert mobile.get("/api/systemSettings/applicationTitle").json() == {"applicationTitle": "Herald"}


def test_only_administrators_change_system_settings(server: LiveServer) -> None:
    refused = server.client("mobile").post("/api/systemSettings/keyMessageEmailNotification", params={"value": "false"})
    assert refused.status_code == 403
    assert refused.json()["status"] == "ERROR"
    assert server.client().get("/api/systemSettings/keyMessageEmailNotification").json() == {
        "keyMessageEmailNotification": True
    }


def test_an_administrator_may_read_and_change_another_user_s_setting(server: LiveServer) -> None:
    admin = server.client()
    key = "/api/userSettings/keyMessageEmailNotification"
    assert admin.post(key, params={"value": "false", "user": ALICE}).status_code == 200
    assert admin.get(key, params={"user": ALICE}).text == "false"
    assert server.client("alice").get(key).text == "false"
    assert admin.get(key).text == "true"


def test_other_users_settings_are_refused_to_non_administrators(server: LiveServer) -> None:
    mobile = server.client("mobile")
    key = "/api/userSettings/keyMessageEmailNotification"
    for response in (mobile.post(key, params={"value": "false", "user": ALICE}), mobile.get(key, params={"user": ALICE})):
        assert response.status_code == 403
        assert response.json()["status"] == "ERROR"
    assert server.client("alice").get(key).text == "true"
    # Naming yourself is fine.
    assert mobile.post(key, params={"value": "false", "user": MOBILE}).status_code == 200


@pytest.mark.parametrize("value", ["maybe", "", "1"])
def test_a_boolean_setting_refuses_other_values(server: LiveServer, value: str) -> None:
    response = server.client("mobile").post("/api/userSettings/keyMessageEmailNotification", params={"value": value})
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR"


def test_a_setting_value_with_a_nul_character_is_refused(server: LiveServer) -> None:
    response = server.client("mobile").post("/api/userSettings/keyUiLocale", content=b"f\x00r", headers={"Content-Type": "text/plain"})
    assert 400 <= response.status_code < 500
    assert response.json()["status"] == "ERROR"


# ---------------------------------------------------------------- configuration


def test_configuration_shows_the_feedback_recipients_group(server: LiveServer) -> None:
    body = server.client("mobile").get("/api/configuration").json()
    assert body["feedbackRecipients"]["id"] == FEEDBACK_GROUP
    assert body["feedbackRecipients"]["displayName"] == "Feedback managers"


def test_feedback_recipients_are_always_an_object_even_when_unset(server: LiveServer) -> None:
    admin = server.client()
    assert admin.delete("/api/configuration/feedbackRecipients").status_code in (200, 204)
    feedback = server.client("mobile").get("/api/configuration").json()["feedbackRecipients"]
    assert isinstance(feedback, dict)
    assert feedback["id"] == ""


def test_setting_the_feedback_recipients_takes_a_group_id_as_text(server: LiveServer) -> None:
    admin = server.client()
    response = admin.post("/api/configuration/feedbackRecipients", content=FIELD_WORKERS, headers={"Content-Type": "text/plain"})
    assert response.status_code in (200, 204)
    assert admin.get("/api/configuration").json()["feedbackRecipients"]["id"] == FIELD_WORKERS
    lookup = admin.get("/api/userLookup/feedbackRecipients", params={"query": ""}).json()
    assert {u["id"] for u in lookup["users"]} == {IBRAHIM, FATMATA}
    missing = admin.post("/api/configuration/feedbackRecipients", content="noSuchGroup", headers={"Content-Type": "text/plain"})
    assert missing.status_code == 404
    assert admin.get("/api/configuration").json()["feedbackRecipients"]["id"] == FIELD_WORKERS
    refused = server.client("mobile").post(
        "/api/configuration/feedbackRecipients", content=FEEDBACK_GROUP, headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 403
    assert admin.get("/api/configuration").json()["feedbackRecipients"]["id"] == FIELD_WORKERS


# ---------------------------------------------------------------- HTTP Basic


@pytest.mark.parametrize(
    "auth",
    [None, ("admin", "wrong"), ("nobody", "district"), ("admin", "")],
    ids=["missing", "wrong-password", "unknown-user", "empty-password"],
)
def test_missing_or_wrong_credentials_get_a_401_with_a_basic_challenge(
    server: LiveServer, auth: tuple[str, str] | None
) -> None:
    client = server.client(auth[0], auth[1]) if auth else server.client(None)
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.json()["httpStatusCode"] == 401
    assert response.json()["status"] == "ERROR"


@pytest.mark.parametrize("header", ["Basic !!!notbase64", "Basic " + "YWRtaW4=", "Bearer abc", "Basic"])
def test_a_malformed_authorization_header_is_a_401(server: LiveServer, header: str) -> None:
    response = server.client(None).get("/api/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["status"] == "ERROR"


def test_xhr_callers_get_no_basic_challenge(server: LiveServer) -> None:
    response = server.client(None).get("/api/me", headers={"X-Requested-With": "XMLHttpRequest"})
    assert response.status_code == 401
    assert "www-authenticate" not in response.headers
    wrong = server.client("admin", "wrong").get("/api/me", headers={"X-Requested-With": "XMLHttpRequest"})
    assert wrong.status_code == 401
    assert "www-authenticate" not in wrong.headers


def test_a_disabled_user_is_refused_at_once(server: LiveServer) -> None:
    alice = server.client("alice")
    assert alice.get("/api/me").status_code == 200  # now cached
    import_ok(server, {"users": [{"id": ALICE, "username": "alice", "disabled": True}]})
    assert alice.get("/api/me").status_code == 401
    import_ok(server, {"users": [new_user("newUser0001", "kadi", disabled=True)]})
    assert server.client("kadi", SECRET).get("/api/me").status_code == 401


def test_a_password_change_takes_effect_at_once(server: LiveServer) -> None:
    old = server.client("alice")
    assert old.get("/api/me").status_code == 200  # now cached
    import_ok(server, {"users": [{"id": ALICE, "username": "alice", "password": SECRET}]})
    assert old.get("/api/me").status_code == 401
    assert server.client("alice", SECRET).get("/api/me").status_code == 200


def test_every_api_resource_needs_credentials(server: LiveServer) -> None:
    anonymous = server.client(None)
    for path in (
        "/api/messageConversations",
        "/api/users",
        "/api/userGroups",
        "/api/organisationUnits",
        "/api/me/dashboard",
        "/api/userLookup?query=a",
        "/api/configuration",
        "/api/systemSettings/applicationTitle",
        "/api/userSettings/keyUiLocale",
    ):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.post("/api/metadata", json={}).status_code == 401
