"""Issue 8: other users' email and phoneNumber are neither shown, nor filterable, nor sortable without ALL or
a user-management authority, on every directory endpoint; one's own are."""

from __future__ import annotations

import json

import pytest

from tests.conftest import LiveServer
from tests.support.demo import ALICE, IBRAHIM, MOBILE, NGELEHUN_CHC, NGELEHUN_STAFF

CONTACT_VALUES = ("alice@dhis2.example", "admin@dhis2.example", "+23276000002", "dhis2.example")
GROUP_WITH_MOBILE, UNIT_WITH_ALICE = NGELEHUN_STAFF, NGELEHUN_CHC


def _unknown(server: LiveServer, path: str, prop: str) -> str:
    return str(server.client().get(path, params={"filter": f"no{prop}:eq:x"}).json()["message"]).replace(f"no{prop}", prop)


@pytest.mark.parametrize(
    "params",
    [
        {"filter": "phoneNumber:$like:+2"},
        {"filter": "email:like:@"},
        {"filter": "email:null"},
        {"filter": "phoneNumber:!null"},
        {"filter": ["username:eq:ibrahim", "phoneNumber:like$:2"], "rootJunction": "OR"},
        {"order": "email:asc"},
        {"order": "phoneNumber:idesc"},
    ],
)
def test_a_user_without_user_management_cannot_filter_or_order_users_by_contact_details(
    any_server: LiveServer, params: dict[str, object]
) -> None:
    response = any_server.client("mobile").get("/api/users", params=params)  # type: ignore[arg-type]
    assert response.status_code == 400, response.text
    prop = "email" if "email" in json.dumps(params) else "phoneNumber"
    assert response.json()["message"] == _unknown(any_server, "/api/users", prop)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/users", {"fields": "id,email,phoneNumber", "paging": "false"}),
        ("/api/users", {"fields": "*", "paging": "false"}),
        (f"/api/users/{ALICE}", {"fields": "*"}),
        (f"/api/users/{IBRAHIM}", {}),
        ("/api/userGroups", {"fields": "users[*,email,phoneNumber]"}),
        (f"/api/userGroups/{GROUP_WITH_MOBILE}", {"fields": "users[email,phoneNumber,userCredentials]"}),
        ("/api/organisationUnits", {"fields": "users[*,email,phoneNumber]", "paging": "false"}),
        (f"/api/organisationUnits/{UNIT_WITH_ALICE}", {"fields": "users[email,phoneNumber]"}),
        ("/api/userLookup", {"query": "alice@dhis2.example"}),
        ("/api/userLookup", {"query": "dhis2.example"}),
        ("/api/userLookup/feedbackRecipients", {"query": "@"}),
        ("/api/me", {"fields": "*,userGroups[*],organisationUnits[*]"}),
    ],
)
def test_no_directory_endpoint_shows_others_contact_details_to_a_user_without_user_management(
    any_server: LiveServer, path: str, params: dict[str, str]
) -> None:
    response = any_server.client("mobile").get(path, params=params)
    assert response.status_code == 200, response.text
    assert not [value for value in CONTACT_VALUES if value in response.text], response.text


def test_user_lookup_by_email_finds_nobody_without_user_management_and_the_user_with_it(any_server: LiveServer) -> None:
    assert any_server.client("mobile").get("/api/userLookup", params={"query": "alice@dhis2"}).json()["users"] == []
    found = any_server.client().get("/api/userLookup", params={"query": "alice@dhis2"}).json()["users"]
    assert [u["id"] for u in found] == [ALICE]


def test_a_user_still_sees_their_own_contact_details(any_server: LiveServer) -> None:
    client = any_server.client("mobile")
    assert client.get("/api/me", params={"fields": "phoneNumber"}).json() == {"phoneNumber": "+23276000001"}
    assert client.get(f"/api/users/{MOBILE}", params={"fields": "phoneNumber"}).json() == {"phoneNumber": "+23276000001"}


def test_a_superuser_sees_filters_and_orders_by_contact_details(any_server: LiveServer) -> None:
    admin = any_server.client()
    found = admin.get("/api/users", params={"filter": "email:like:alice@", "fields": "id,email"}).json()["users"]
    assert found == [{"id": ALICE, "email": "alice@dhis2.example"}]
    ordered = admin.get("/api/users", params={"order": "phoneNumber:asc", "filter": "phoneNumber:!null", "fields": "phoneNumber"})
    assert [u["phoneNumber"] for u in ordered.json()["users"]] == ["+23276000001", "+23276000002"]
