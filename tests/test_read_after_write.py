"""What a caller wrote is there when the answer comes (issue 9, DECISIONS #20).

Users named on create, reply and add-recipients take part in the request's own transaction; the
fan-out adds group and org-unit members later and never undoes a removal, read, unread or
follow-up made before it reached them. Each test runs on PostgreSQL with a real Dramatiq worker on
Redis, and on the in-process fleet on PostgreSQL and SQLite. "At once" means the next request
right after the answer, with the workers running and racing it; "before the fan-out" means the
workers start only afterwards, so that order is certain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.support.demo import ADMIN, ALICE, FATMATA, IBRAHIM, MOBILE
from tests.support.participants import GROUP, Herald, herald_on

API = "/api/messageConversations"
TEXT = {"Content-Type": "text/plain"}
PEOPLE = {"alice": ALICE, "ibrahim": IBRAHIM, "fatmata": FATMATA}


@pytest.fixture(params=["redis", "in-process-postgresql", "in-process-sqlite"])
def herald(
    request: pytest.FixtureRequest, worker_pg_url: str, worker_pg_engine: Engine, redis_namespace: str, tmp_path: Path
) -> Iterator[Herald]:
    """Herald of each kind in turn, demo data loaded, workers not started yet."""
    with herald_on(
        request.param, pg_url=worker_pg_url, pg_engine=worker_pg_engine,
        namespace=f"{redis_namespace}-raw", tmp_path=tmp_path,
    ) as live:
        yield live


def create(herald: Herald, *, users: Sequence[str] = (), groups: Sequence[str] = (), sender: str = "admin") -> str:
    """POST a conversation and return its UID."""
    body = {"subject": "Read after write", "text": "Are you there?",
            "users": [{"id": u} for u in users], "userGroups": [{"id": g} for g in groups]}
    response = herald.client(sender).post(API, json=body)
    assert response.status_code == 201, response.text
    return str(response.headers["Location"].rsplit("/", 1)[1])


def participant_uids(herald: Herald, conversation: str, as_user: str = "admin") -> set[str]:
    """The participants' UIDs as the API shows them."""
    response = herald.client(as_user).get(f"{API}/{conversation}", params={"fields": "userMessages[user[id]]"})
    assert response.status_code == 200, response.text
    return {um["user"]["id"] for um in response.json()["userMessages"]}


def test_three_named_recipients_list_read_mark_read_and_leave_right_after_the_create(herald: Herald) -> None:
    herald.start_workers()
    conversation = create(herald, users=list(PEOPLE.values()))
    for name, uid in PEOPLE.items():
        client = herald.client(name)
        listed = client.get(API, params={"fields": "id,read", "filter": f"id:eq:{conversation}"}).json()
        assert listed["messageConversations"] == [{"id": conversation, "read": False}], name
        one = client.get(f"{API}/{conversation}", params={"fields": "id,userMessages[user[id]]"})
        assert one.status_code == 200, (name, one.text)
        assert {um["user"]["id"] for um in one.json()["userMessages"]} >= {ADMIN, uid}
        assert client.post(f"{API}/{conversation}/read").json() == {"markedRead": [conversation]}
        assert client.delete(f"{API}/{conversation}").json() == {"removed": [uid]}
    herald.fanned_out()
    assert herald.participants(conversation) == {"admin": (True, False)}
    for name in PEOPLE:
        assert herald.client(name).get(f"{API}/{conversation}").status_code == 403, name


def test_every_named_participant_is_there_in_the_first_answer_with_its_flags(herald: Herald) -> None:
    conversation = create(herald, users=list(PEOPLE.values()))  # no worker has run
    assert participant_uids(herald, conversation, "ibrahim") == {ADMIN, *PEOPLE.values()}
    assert herald.participants(conversation) == {
        "admin": (True, False), "alice": (False, False), "ibrahim": (False, False), "fatmata": (False, False),
    }


def test_reads_unreads_and_follow_ups_made_before_the_fanout_hold_after_it(herald: Herald) -> None:
    # alice is named and also a member of the group the fan-out expands.
    conversation = create(herald, users=[ALICE, IBRAHIM], groups=[GROUP])
    alice, ibrahim = herald.client("alice"), herald.client("ibrahim")
    assert alice.post(f"{API}/read", json=[conversation]).json() == {"markedRead": [conversation]}
    assert alice.post(f"{API}/followup", json=[conversation]).json() == {"markedFollowup": [conversation]}
    assert ibrahim.post(f"{API}/{conversation}/read").json() == {"markedRead": [conversation]}
    assert ibrahim.post(f"{API}/{conversation}/unread").json() == {"markedUnread": [conversation]}
    assert herald.pending_events() == 1
    herald.fanned_out()
    assert herald.participants(conversation) == {
        "admin": (True, False), "alice": (True, True), "ibrahim": (False, False), "fatmata": (False, False),
    }


@pytest.mark.parametrize("workers", ["racing", "after"])
def test_a_removal_sent_right_after_the_create_holds_after_the_fanout(herald: Herald, workers: str) -> None:
    if workers == "racing":
        herald.start_workers()
    # alice is named and in the group: without a record of her removal the group's fan-out would add her back.
    conversation = create(herald, users=[ALICE, IBRAHIM], groups=[GROUP])
    assert herald.client("alice").delete(f"{API}/{conversation}").json() == {"removed": [ALICE]}
    assert herald.client().delete(f"{API}/{conversation}/{IBRAHIM}").json() == {"removed": [IBRAHIM]}
    herald.fanned_out()
    assert herald.participants(conversation) == {"admin": (True, False), "fatmata": (False, False)}
    assert herald.client("alice").get(f"{API}/{conversation}").status_code == 403
    assert herald.client("ibrahim").get(API, params={"filter": f"id:eq:{conversation}"}).json()["pager"]["total"] == 0


def test_a_batch_removal_right_after_the_create_holds_after_the_fanout(herald: Herald) -> None:
    herald.start_workers()
    conversation = create(herald, users=[ALICE], groups=[GROUP])
    answer = herald.client("alice").delete(API, params={"mc": [conversation]})
    assert answer.json() == {"removed": [conversation]}
    herald.fanned_out()
    assert "alice" not in herald.participants(conversation)


def test_added_recipients_show_in_a_get_right_after_the_204(herald: Herald) -> None:
    herald.start_workers()
    conversation = create(herald, users=[ALICE])
    added = herald.client("alice").post(f"{API}/{conversation}/recipients", json={"users": [{"id": IBRAHIM}, {"id": MOBILE}]})
    assert added.status_code == 204, added.text
    assert participant_uids(herald, conversation, "alice") == {ADMIN, ALICE, IBRAHIM, MOBILE}
    assert herald.client("ibrahim").get(f"{API}/{conversation}", params={"fields": "read"}).json() == {"read": False}
    assert herald.client("mobile").post(f"{API}/{conversation}/read").json() == {"markedRead": [conversation]}
    herald.fanned_out()
    assert herald.participants(conversation)["mobile"] == (True, False)


def test_a_group_member_removed_before_the_groups_fanout_stays_removed(herald: Herald) -> None:
    conversation = create(herald, groups=[GROUP])
    # fatmata has no inbox row yet, so the answer names nobody; the removal is recorded all the same.
    assert herald.client().delete(f"{API}/{conversation}/{FATMATA}").json() == {"removed": []}
    herald.fanned_out()
    assert herald.participants(conversation) == {"admin": (True, False), "alice": (False, False)}
    assert herald.client("fatmata").get(f"{API}/{conversation}").status_code == 403


def test_adding_a_removed_user_by_name_brings_them_back_and_adding_their_group_does_not(herald: Herald) -> None:
    herald.start_workers()
    conversation = create(herald, users=[ALICE, FATMATA])
    assert herald.client("fatmata").delete(f"{API}/{conversation}").json() == {"removed": [FATMATA]}
    admin = herald.client()
    assert admin.post(f"{API}/{conversation}/recipients", json={"userGroups": [{"id": GROUP}]}).status_code == 204
    herald.fanned_out()
    assert "fatmata" not in herald.participants(conversation)
    assert admin.post(f"{API}/{conversation}/recipients", json={"users": [{"id": FATMATA}]}).status_code == 204
    assert herald.client("fatmata").get(f"{API}/{conversation}", params={"fields": "read"}).json() == {"read": False}
    # Back for good: a later group fan-out leaves her row alone.
    assert herald.client("fatmata").post(f"{API}/{conversation}/read").json() == {"markedRead": [conversation]}
    assert admin.post(f"{API}/{conversation}/recipients", json={"userGroups": [{"id": GROUP}]}).status_code == 204
    herald.fanned_out()
    assert herald.participants(conversation)["fatmata"] == (True, False)


@pytest.mark.parametrize("workers", ["racing", "after"])
def test_a_reply_marks_the_others_unread_at_once_and_a_read_right_after_it_stays_read(herald: Herald, workers: str) -> None:
    conversation = create(herald, users=[ALICE, IBRAHIM])
    alice, ibrahim = herald.client("alice"), herald.client("ibrahim")
    for client in (alice, ibrahim):
        assert client.post(f"{API}/{conversation}/read").json() == {"markedRead": [conversation]}
    if workers == "racing":
        herald.fanned_out()
    replied = herald.client().post(f"{API}/{conversation}", content="One more thing.", headers=TEXT)
    assert replied.status_code == 200, replied.text
    listed = alice.get(API, params={"fields": "id,read", "filter": f"id:eq:{conversation}"}).json()
    assert listed["messageConversations"] == [{"id": conversation, "read": False}]
    assert ibrahim.get(f"{API}/{conversation}", params={"fields": "read"}).json() == {"read": False}
    assert alice.post(f"{API}/{conversation}/read").json() == {"markedRead": [conversation]}
    herald.fanned_out()
    assert herald.participants(conversation) == {
        "admin": (True, False), "alice": (True, False), "ibrahim": (False, False),
    }
