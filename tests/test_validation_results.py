"""Validation results over HTTP: stored once each, notified by the workers as DHIS2 does."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest

from tests.conftest import LiveServer, settle
from tests.support.validation import (
    ADMIN,
    BO,
    CHIEFS,
    GROUPS,
    MOHAMED,
    NGELEHUN,
    NJANDAMA,
    RULE_HIGH,
    RULE_LOW,
    RULE_MEDIUM,
    RULES,
    TEAM,
    import_metadata,
    result,
    template,
    validation_conversations,
)
from tests.test_cli import clean_env, run

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


def post_results(server: LiveServer, body: Any, user: str = "admin") -> Any:
    """POST /api/validationResults and return the response."""
    with server.client(user) as client:
        return client.post("/api/validationResults", json=body)


def test_a_single_notification_renders_every_variable_and_goes_to_the_template_groups(any_server: LiveServer) -> None:
    with any_server.client() as client:
        import_metadata(client, [template("VntSingle01", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION")])
    response = post_results(any_server, [result(RULE_HIGH)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Import was successful."
    assert body["response"]["importCount"] == {"imported": 1, "updated": 0, "ignored": 0, "deleted": 0}
    settle(any_server)
    [conversation] = validation_conversations(any_server.engine)
    assert conversation["subject"] == "ANC visits above expected at Ngelehun CHC"
    assert conversation["text"] == "ANC 1st visits 12.0 <= 10.0 in 202401"
    assert conversation["priority"] == "HIGH" and conversation["status"] == "OPEN"
    assert conversation["sender"] is None and conversation["last_sender"] is None
    assert conversation["users"] == {"alice": False, "ibrahim": False, "mohamed": False, "admin": False}


def test_a_result_posted_twice_is_stored_and_notified_once_and_the_retry_is_told_so(any_server: LiveServer) -> None:
    with any_server.client() as client:
        import_metadata(client, [template("VntSingle01", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION")])
    assert post_results(any_server, {"validationResults": [result(RULE_HIGH)]}).status_code == 200
    again = post_results(any_server, [result(RULE_HIGH), result(RULE_HIGH, period="2024W05"), result(RULE_HIGH, period="2024W5")])
    assert again.json()["response"]["importCount"]["imported"] == 1
    assert again.json()["response"]["importCount"]["ignored"] == 2
    settle(any_server)
    assert len(validation_conversations(any_server.engine)) == 2
    with any_server.client() as client:
        listed = client.get("/api/validationResults", params={"filter": "period:eq:2024W5"}).json()
    assert [r["period"]["id"] for r in listed["validationResults"]] == ["2024W5"]


def test_two_concurrent_posts_of_the_same_result_store_and_notify_it_once(server: LiveServer) -> None:
    with server.client() as client:
        import_metadata(client, [template("VntSingle01", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION")])
    batch = [result(RULE_HIGH, period=f"2023{m:02d}") for m in range(1, 13)]
    answers: list[Any] = []
    barrier = threading.Barrier(2)

    def post() -> None:
        barrier.wait()
        answers.append(post_results(server, batch).json()["response"]["importCount"])

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["imported"] for a in answers) == [0, 12] or sum(a["imported"] for a in answers) == 12
    assert sum(a["ignored"] for a in answers) == 12
    settle(server)
    assert len(validation_conversations(server.engine)) == 12


def test_a_partly_bad_request_keeps_the_valid_results_and_names_each_bad_one(server: LiveServer) -> None:
    with server.client() as client:
        import_metadata(client, [template("VntSingle01", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION")])
    body = [
        result(RULE_HIGH),
        result("NoSuchRule1"),
        result(RULE_HIGH, period="202413"),
        result(RULE_HIGH, org_unit="NoSuchUnit1"),
        result(RULE_HIGH, leftsideValue="lots"),
        "not an object",
    ]
    response = post_results(server, body)
    assert response.status_code == 409
    answer = response.json()
    assert answer["message"] == "One more conflicts encountered, please check import summary."
    assert answer["response"]["status"] == "WARNING"
    assert answer["response"]["importCount"]["imported"] == 1
    conflicts = {(c["indexes"][0], c["value"]) for c in answer["response"]["conflicts"]}
    assert conflicts == {
        (1, "Validation rule not found or not accessible: `NoSuchRule1`"),
        (2, "Period not valid: `202413`"),
        (3, "Organisation unit not found or not accessible: `NoSuchUnit1`"),
        (4, "Value must be a number: `lots`"),
        (5, "Validation result must be an object."),
    }
    settle(server)
    assert len(validation_conversations(server.engine)) == 1


def test_posting_results_needs_all_or_f_run_validation(server: LiveServer) -> None:
    response = post_results(server, [result(RULE_HIGH)], user="alice")
    assert response.status_code == 403
    assert response.json()["message"] == "Access is denied, requires one Authority from [F_RUN_VALIDATION]"
    with server.client("alice") as client:
        assert client.post("/api/validation/sendNotifications").status_code == 403
        assert client.delete("/api/validationResults").status_code == 403


def test_a_collective_summary_goes_once_to_each_distinct_set_of_recipients_with_dhis2s_texts(any_server: LiveServer) -> None:
    with any_server.client() as client:
        import_metadata(
            client,
            [
                template("VntSummary1", [RULE_HIGH, RULE_LOW], [TEAM], "COLLECTIVE_SUMMARY"),
                template("VntSummary2", [RULE_MEDIUM], [CHIEFS], "COLLECTIVE_SUMMARY"),
            ],
        )
    post_results(any_server, [result(RULE_LOW), result(RULE_HIGH, org_unit=BO), result(RULE_MEDIUM)])
    settle(any_server)
    conversations = validation_conversations(any_server.engine)
    assert len(conversations) == 2
    by_users = {frozenset(c["users"]): c for c in conversations}
    team = by_users[frozenset({"alice", "ibrahim", "admin"})]
    mohamed = by_users[frozenset({"mohamed"})]
    assert re.fullmatch(r"Validation violations as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", team["subject"])
    assert team["priority"] == "HIGH" and team["status"] == "OPEN"
    assert team["text"] == (
        "Violations: High 1, medium 0, low 1"
        "\n\nANC visits above expected at Bo\nANC 1st visits 12.0 <= 10.0 in 202401"
        "\n\nMeasles doses at Ngelehun CHC\nANC 1st visits 12.0 <= 10.0 in 202401"
    )
    assert mohamed["priority"] == "HIGH"
    assert mohamed["text"].startswith("Violations: High 1, medium 1, low 1\n\n")


def test_hierarchy_only_keeps_members_at_the_result_org_unit_or_above(any_server: LiveServer) -> None:
    with any_server.client() as client:
        import_metadata(
            client,
            [template("VntHierarc1", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION", notifyUsersInHierarchyOnly=True)],
        )
    post_results(any_server, [result(RULE_HIGH, org_unit=NGELEHUN), result(RULE_HIGH, org_unit=NJANDAMA)])
    settle(any_server)
    users = sorted(sorted(c["users"]) for c in validation_conversations(any_server.engine))
    # Alice sits at Ngelehun, Ibrahim at Njandama, Mohamed at Bo, admin at Sierra Leone.
    assert users == [["admin", "alice", "mohamed"], ["admin", "ibrahim", "mohamed"]]


def test_parent_only_notifies_the_users_of_each_members_parent_org_unit(server: LiveServer) -> None:
    with server.client() as client:
        import_metadata(
            client,
            [template("VntParent01", [RULE_LOW], [CHIEFS], "SINGLE_NOTIFICATION", notifyParentOrganisationUnitOnly=True)],
        )
    post_results(server, [result(RULE_LOW)])
    settle(server)
    [conversation] = validation_conversations(server.engine)
    # Mohamed (Bo) is the only member: the users of Bo's parent, Sierra Leone, get it instead.
    assert conversation["users"] == {"admin": False}
    assert conversation["priority"] == "LOW"


def test_subject_is_cut_to_100_and_text_to_640_characters_and_unknown_variables_vanish(server: LiveServer) -> None:
    long = template("VntCuts0001", [RULE_MEDIUM], [CHIEFS], "SINGLE_NOTIFICATION",
                    subjectTemplate="S" * 120, messageTemplate="V{unknown}V{}" + "x" * 900 + " V{importance}")
    with server.client() as client:
        import_metadata(client, [long])
    post_results(server, [result(RULE_MEDIUM)])
    settle(server)
    [conversation] = validation_conversations(server.engine)
    assert conversation["subject"] == "S" * 100
    assert conversation["text"] == ("[N/A]" + "x" * 900)[:640]
    assert conversation["priority"] == "MEDIUM"


def test_current_date_description_and_org_unit_variables_render(server: LiveServer) -> None:
    text = "V{rule_description}|V{importance}|V{right_side_description}|V{current_date}|A{abcdefghijk}"
    with server.client() as client:
        import_metadata(client, [template("VntVars0001", [RULE_LOW], [CHIEFS], "SINGLE_NOTIFICATION", messageTemplate=text)])
    post_results(server, [result(RULE_LOW, leftsideValue=12345678.9, rightsideValue=None)])
    settle(server)
    [conversation] = validation_conversations(server.engine)
    description, importance, right, today, attribute = conversation["text"].split("|")
    assert (description, importance, right, attribute) == ("Measles doses description", "LOW", "Expected pregnancies", "[N/A]")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", today)


def test_results_list_filters_pages_and_deletes_like_dhis2(any_server: LiveServer) -> None:
    with any_server.client() as client:
        import_metadata(client, [template("VntSingle01", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION")])
        post_results(any_server, [result(RULE_HIGH, period=p) for p in ("202401", "202402", "2024Q1")])
        post_results(any_server, [result(RULE_LOW)])  # no template: never notified
        settle(any_server)
        sent = client.get("/api/validationResults", params={"filter": "notificationSent:eq:true", "pageSize": 2}).json()
        assert sent["pager"]["total"] == 3 and len(sent["validationResults"]) == 2
        unsent = client.get("/api/validationResults", params={"filter": "notificationSent:eq:false"}).json()
        [low] = unsent["validationResults"]
        assert low["validationRule"]["id"] == RULE_LOW and low["organisationUnit"]["id"] == NGELEHUN
        assert low["leftsideValue"] == 12.0 and low["dayInPeriod"] == 15
        assert low["attributeOptionCombo"]["id"] == "HllvX50cXC0"
        one = client.get(f"/api/validationResults/{low['id']}", params={"fields": "id,period[id,isoDate]"}).json()
        assert one == {"id": low["id"], "period": {"id": "202401", "isoDate": "202401"}}
        by_rule = client.get("/api/validationResults", params={"filter": f"validationRule.id:eq:{RULE_HIGH}", "fields": "id"})
        assert len(by_rule.json()["validationResults"]) == 3
        assert client.delete(f"/api/validationResults/{low['id']}").status_code == 204
        missing = client.get(f"/api/validationResults/{low['id']}")
        assert missing.status_code == 404 and missing.json()["httpStatus"] == "Not Found"
        assert client.delete("/api/validationResults", params={"filter": "period:eq:2024Q1"}).status_code == 204
        assert client.get("/api/validationResults").json()["pager"]["total"] == 2


def test_send_notifications_notifies_every_result_not_yet_notified(server: LiveServer) -> None:
    with server.client() as client:
        import_metadata(client, [])
        post_results(server, [result(RULE_HIGH)])  # no template yet: stored, not notified
        settle(server)
        assert validation_conversations(server.engine) == []
        import_metadata(client, [template("VntSingle01", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION")])
        answer = client.put("/api/validation/sendNotifications")
        assert answer.status_code == 200
        assert answer.json()["message"] == "Initiated VALIDATION_RESULTS_NOTIFICATION"
        settle(server)
        assert len(validation_conversations(server.engine)) == 1
        client.post("/api/validation/sendNotifications")
        settle(server)
        assert len(validation_conversations(server.engine)) == 1


def test_validation_conversations_are_in_the_validation_folder_and_assignable_to_anyone(server: LiveServer) -> None:
    with server.client() as client:
        import_metadata(client, [template("VntSingle01", [RULE_HIGH], [TEAM], "SINGLE_NOTIFICATION")])
    post_results(server, [result(RULE_HIGH)])
    settle(server)
    with server.client("alice") as alice:
        folder = alice.get(
            "/api/messageConversations",
            params={"filter": "messageType:eq:VALIDATION_RESULT", "fields": "id,subject,status,priority,assignee,read"},
        ).json()
        [item] = folder["messageConversations"]
        assert item["status"] == "OPEN" and item["priority"] == "HIGH" and item["read"] is False
    with server.client() as client:
        assigned = client.post(f"/api/messageConversations/{item['id']}/assign", params={"userId": MOHAMED})
        assert assigned.status_code == 200, assigned.text
        shown = client.get(f"/api/messageConversations/{item['id']}", params={"fields": "assignee[id]"}).json()
        assert shown["assignee"]["id"] == MOHAMED
    assert ADMIN


def test_validation_metadata_reads_back_with_fields_filter_and_paging(server: LiveServer) -> None:
    with server.client() as client:
        import_metadata(client, [template("VntSingle01", [RULE_HIGH, RULE_LOW], [TEAM], "SINGLE_NOTIFICATION")])
        rules = client.get(
            "/api/validationRules", params={"filter": ["importance:eq:HIGH", "id:like:Vr"], "fields": "id,name,leftSide"}
        )
        assert rules.json()["validationRules"] == [
            {"id": RULE_HIGH, "name": "ANC visits above expected",
             "leftSide": {"description": "ANC 1st visits", "expression": "#{fbfJHSPpUQD}"}}
        ]
        assert client.get("/api/validationRules", params={"pageSize": 1}).json()["pager"]["pageCount"] == 5  # 2 of the demo
        one = client.get("/api/validationNotificationTemplates/VntSingle01",
                         params={"fields": "sendStrategy,validationRules[id],recipientUserGroups[id]"}).json()
        assert one["sendStrategy"] == "SINGLE_NOTIFICATION"
        assert sorted(r["id"] for r in one["validationRules"]) == sorted([RULE_HIGH, RULE_LOW])
        assert one["recipientUserGroups"] == [{"id": TEAM}]
        assert client.get("/api/validationRules/NoSuchRule1").status_code == 404


def test_validation_metadata_is_all_or_nothing(server: LiveServer) -> None:
    with server.client() as client:
        bad = template("VntBad00001", ["NoSuchRule1"], [TEAM], "SOMETIMES")
        response = client.post("/api/metadata", json={"validationRules": [{"id": "VrOk0000001", "name": "Fine",
                                "operator": "equal_to", "leftSide": {"expression": "1"}, "rightSide": {"expression": "1"}}],
                                "validationNotificationTemplates": [bad]})
        assert response.status_code == 409
        errors = [e["message"] for t in response.json()["response"]["typeReports"] for o in t["objectReports"] for e in o["errorReports"]]
        assert "Invalid reference [NoSuchRule1] (ValidationRule) on object property `validationRules`" in errors
        assert any("sendStrategy" in e for e in errors)
        assert client.get("/api/validationRules/VrOk0000001").status_code == 404


def test_herald_import_takes_validation_rules_and_templates(tmp_path: Any) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/herald.db")
    assert run("db", "upgrade", env=env).returncode == 0
    payload = tmp_path / "validation.json"
    payload.write_text(json.dumps({
        "userGroups": [{**g, "users": []} for g in GROUPS], "validationRules": RULES,
        "validationNotificationTemplates": [template("VntCli00001", [RULE_HIGH], [TEAM], "COLLECTIVE_SUMMARY")],
    }))
    result = run("import", str(payload), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["created"] == 2 + 3 + 1
