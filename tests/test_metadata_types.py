"""Metadata import reads JSON types as DHIS2's parser does, names every mistyped property, and refuses cycles."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from messaging.models import OrganisationUnit, User
from tests.conftest import LiveServer
from tests.support.demo import ALICE

SIERRA_LEONE, BO, BADJIA = "ImspTQPwCqd", "O6uvpzGd5pu", "YuQRtpLP10I"
pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


def disabled(server: LiveServer, uid: str) -> bool:
    with server.session() as session:
        return bool(session.scalar(select(User.disabled).where(User.uid == uid)))


def refused(server: LiveServer, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """A 409 import report; its (errorCode, errorProperty) pairs."""
    response = server.client().post("/api/metadata", json=payload)
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["httpStatus"] == "Conflict"
    return [
        (error["errorCode"], error.get("errorProperty", ""))
        for type_report in body["response"]["typeReports"]
        for object_report in type_report["objectReports"]
        for error in object_report["errorReports"]
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), ("TRUE", True), ("False", False), (None, False)],
)
def test_booleans_are_json_booleans_or_the_strings_true_and_false(any_server: LiveServer, value: Any, expected: bool) -> None:
    response = any_server.client().post("/api/metadata", json={"users": [{"id": ALICE, "disabled": value}]})
    assert response.status_code == 200, response.text
    assert disabled(any_server, ALICE) is expected


@pytest.mark.parametrize("value", ["no", "yes", "1", "", 1, 0, [], {}])
def test_any_other_boolean_is_a_409_naming_the_property_and_disables_nobody(any_server: LiveServer, value: Any) -> None:
    assert refused(any_server, {"users": [{"id": ALICE, "disabled": value}]}) == [("E4070", "disabled")]
    assert disabled(any_server, ALICE) is False
    assert refused(any_server, {"users": [{"id": ALICE, "userCredentials": {"disabled": value}}]}) == [
        ("E4070", "userCredentials.disabled")
    ]


@pytest.mark.parametrize(
    ("payload", "prop"),
    [
        ({"users": [{"id": ALICE, "email": {"a": 1}}]}, "email"),
        ({"users": [{"id": ALICE, "email": ["a@b.org"]}]}, "email"),
        ({"users": [{"id": ALICE, "phoneNumber": {"n": "+232"}}]}, "phoneNumber"),
        ({"users": [{"id": ALICE, "phoneNumber": 23276000001}]}, "phoneNumber"),
        ({"users": [{"id": ALICE, "firstName": ["Al"]}]}, "firstName"),
        ({"users": [{"id": ALICE, "password": 12345678}]}, "password"),
        ({"users": [{"id": ALICE, "userRoles": {"id": "Euq3XfEIEbx"}}]}, "userRoles"),
        ({"users": [{"id": ALICE, "userRoles": ["Euq3XfEIEbx"]}]}, "userRoles"),
        ({"users": [{"id": ALICE, "organisationUnits": "ImspTQPwCqd"}]}, "organisationUnits"),
        ({"users": [{"id": ALICE, "userCredentials": "alice"}]}, "userCredentials"),
        ({"users": [{"id": ALICE, "userCredentials": {"username": ["a"]}}]}, "userCredentials.username"),
        ({"users": [{"id": 12345678901, "username": "kadi"}]}, "id"),
        ({"users": [{"id": ALICE, "userCredentials": {"password": {"x": 1}}}]}, "userCredentials.password"),
        ({"organisationUnits": [{"name": "Kenema", "shortName": {"x": 1}}]}, "shortName"),
        ({"organisationUnits": [{"name": "Kenema", "shortName": ["K"]}]}, "shortName"),
        ({"organisationUnits": [{"name": "Kenema", "parent": SIERRA_LEONE}]}, "parent"),
        ({"organisationUnits": [{"name": "Kenema", "parent": [{"id": SIERRA_LEONE}]}]}, "parent"),
        ({"organisationUnits": [{"name": {"en": "Kenema"}}]}, "name"),
        ({"userRoles": [{"name": "R", "authorities": "ALL"}]}, "authorities"),
        ({"userRoles": [{"name": "R", "authorities": [1]}]}, "authorities"),
        ({"userGroups": [{"name": "G", "users": [ALICE]}]}, "users"),
        ({"userGroups": [{"name": "G", "users": {"id": ALICE}}]}, "users"),
    ],
)
def test_a_mistyped_property_is_a_409_naming_it_never_a_500(server: LiveServer, payload: dict[str, Any], prop: str) -> None:
    assert refused(server, payload) == [("E4070", prop)]


def test_an_org_unit_cannot_be_its_own_parent(any_server: LiveServer) -> None:
    assert refused(any_server, {"organisationUnits": [{"id": BO, "name": "Bo", "parent": {"id": BO}}]}) == [
        ("E4071", "parent")
    ]
    new = {"id": "newUnit0001", "name": "Loop", "parent": {"id": "newUnit0001"}}
    assert refused(any_server, {"organisationUnits": [new]}) == [("E4071", "parent")]


def test_a_parent_below_the_unit_is_a_cycle_and_nothing_moves(any_server: LiveServer) -> None:
    # Sierra Leone > Bo > Badjia: making Badjia Sierra Leone's parent closes a loop through the stored tree.
    payload = {"organisationUnits": [{"id": SIERRA_LEONE, "name": "Sierra Leone", "parent": {"id": BADJIA}}]}
    assert refused(any_server, payload) == [("E4071", "parent")]
    with any_server.session() as session:
        assert session.scalar(select(OrganisationUnit.parent_id).where(OrganisationUnit.uid == SIERRA_LEONE)) is None


def test_a_cycle_within_one_payload_is_refused(any_server: LiveServer) -> None:
    units = [
        {"id": "newUnitAAAA", "name": "A", "parent": {"id": "newUnitBBBB"}},
        {"id": "newUnitBBBB", "name": "B", "parent": {"id": "newUnitAAAA"}},
    ]
    assert refused(any_server, {"organisationUnits": units}) == [("E4071", "parent"), ("E4071", "parent")]


def test_moving_a_unit_under_a_sibling_is_no_cycle(any_server: LiveServer) -> None:
    response = any_server.client().post(
        "/api/metadata", json={"organisationUnits": [{"id": "fdc6uOvgoji", "name": "Bombali", "parent": {"id": BO}}]}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", [{}, ["a"], 5])
def test_credentials_fields_beyond_the_checked_four_never_reach_a_column(server: LiveServer, value: Any) -> None:
    response = server.client().post(
        "/api/metadata", json={"users": [{"username": "zed", "userCredentials": {"email": value, "surname": value}}]}
    )
    assert response.status_code == 200, response.text
    with server.session() as session:
        assert session.scalar(select(User.email).where(User.username == "zed")) is None


@pytest.mark.parametrize("prop", ["operator", "importance", "periodType"])
def test_a_validation_rule_choice_given_as_a_list_is_a_409_not_a_500(server: LiveServer, prop: str) -> None:
    rule = {"name": "r", "operator": "equal_to", "leftSide": {"expression": "1"}, "rightSide": {"expression": "1"}}
    response = server.client().post("/api/metadata", json={"validationRules": [{**rule, prop: []}]})
    assert response.status_code == 409, response.text
