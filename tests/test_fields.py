"""DHIS2 `fields` filtering (api/fields.py): the syntax the clients send and how objects render."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import pytest

from api.fields import FieldsError, parse_fields, render, render_many, requested_top_level

T0 = datetime(2026, 11, 26, 20, 45, 0)
T1 = datetime(2026, 11, 26, 21, 0, 0)

LIST_QUERY = (
    "filter=messageType%3Aeq%3APRIVATE&pageSize=35&page=1&fields=id,displayName,subject,messageType,"
    "lastSender%5Bid%2C%20displayName%5D,assignee%5Bid%2C%20displayName%5D,status,priority,lastUpdated,"
    "read,lastMessage,followUp&order=lastMessage%3Adesc"
)
GET_ONE_QUERY = (
    "fields=*,assignee%5Bid%2C%20displayName%5D,messages%5B*%2Csender%5Bid%2CdisplayName%5D,"
    "attachments%5Bid%2C%20name%2C%20contentLength%5D%5D,userMessages%5Buser%5Bid%2C%20displayName%5D%5D"
)


def user(uid: str, name: str) -> dict[str, Any]:
    return {"id": uid, "code": None, "name": name, "displayName": name, "username": name.lower()}


ALICE = user("xE7jOejl9FI", "Alice")
BOB = user("M5zQapPyTZI", "Bob")


def conversation() -> dict[str, Any]:
    """A conversation shaped like the one the API layer hands to render()."""
    return {
        "id": "mcUid000001",
        "name": "Stock",
        "displayName": "Stock",
        "created": T0,
        "lastUpdated": T1,
        "subject": "Stock",
        "lastSender": ALICE,
        "lastMessage": T1,
        "messageCount": 2,
        "messageType": "PRIVATE",
        "status": "NONE",
        "priority": "NONE",
        "assignee": BOB,
        "extMessageId": None,
        "read": False,
        "followUp": True,
        "userMessages": [
            {"key": "k1", "user": ALICE, "read": True, "followUp": False},
            {"key": "k2", "user": BOB, "read": False, "followUp": True},
        ],
        "messages": [
            {
                "id": "msgUid00001",
                "text": "Hello",
                "created": T0,
                "internal": False,
                "sender": ALICE,
                "attachments": [],
                "metadata": None,
            },
            {
                "id": "msgUid00002",
                "text": "Hi",
                "created": T1,
                "internal": False,
                "sender": BOB,
                "attachments": [
                    {
                        "id": "WUpGCatY4IA",
                        "name": "hello.txt",
                        "contentLength": 17,
                        "contentType": "text/plain",
                    }
                ],
                "metadata": None,
            },
        ],
    }


def fields_of(query: str) -> list[str]:
    return parse_qs(query)["fields"]


# ---------------------------------------------------------------- what the official app sends


def test_the_apps_list_query_renders_the_row_the_list_needs() -> None:
    spec = parse_fields(fields_of(LIST_QUERY), "id,displayName")

    assert render(conversation(), spec) == {
        "id": "mcUid000001",
        "displayName": "Stock",
        "lastUpdated": T1,
        "subject": "Stock",
        "lastSender": {"id": "xE7jOejl9FI", "displayName": "Alice"},
        "lastMessage": T1,
        "messageType": "PRIVATE",
        "status": "NONE",
        "priority": "NONE",
        "assignee": {"id": "M5zQapPyTZI", "displayName": "Bob"},
        "read": False,
        "followUp": True,
    }


def test_the_apps_get_one_query_renders_messages_senders_attachments_and_participants() -> None:
    spec = parse_fields(fields_of(GET_ONE_QUERY), "*")

    assert render(conversation(), spec) == {
        "id": "mcUid000001",
        "name": "Stock",
        "displayName": "Stock",
        "created": T0,
        "lastUpdated": T1,
        "subject": "Stock",
        "lastSender": {"id": "xE7jOejl9FI"},
        "lastMessage": T1,
        "messageCount": 2,
        "messageType": "PRIVATE",
        "status": "NONE",
        "priority": "NONE",
        "assignee": {"id": "M5zQapPyTZI", "displayName": "Bob"},
        "read": False,
        "followUp": True,
        "userMessages": [
            {"user": {"id": "xE7jOejl9FI", "displayName": "Alice"}},
            {"user": {"id": "M5zQapPyTZI", "displayName": "Bob"}},
        ],
        "messages": [
            {
                "id": "msgUid00001",
                "text": "Hello",
                "created": T0,
                "internal": False,
                "sender": {"id": "xE7jOejl9FI", "displayName": "Alice"},
                "attachments": [],
            },
            {
                "id": "msgUid00002",
                "text": "Hi",
                "created": T1,
                "internal": False,
                "sender": {"id": "M5zQapPyTZI", "displayName": "Bob"},
                "attachments": [{"id": "WUpGCatY4IA", "name": "hello.txt", "contentLength": 17}],
            },
        ],
    }


def test_the_user_group_search_string_with_an_encoded_space_selects_both_fields() -> None:
    spec = parse_fields(fields_of("fields=id%2C%20displayName&pageSize=10"), "*")

    assert render({"id": "g1", "displayName": "Nurses", "users": [ALICE]}, spec) == {
        "id": "g1",
        "displayName": "Nurses",
    }


def test_the_unread_count_query_selects_only_read() -> None:
    assert render(conversation(), parse_fields("read", "id,displayName")) == {"read": False}


# ---------------------------------------------------------------- defaults and joining


@pytest.mark.parametrize("values", [None, "", "  ", [], ["", " "], ","])
def test_an_empty_or_missing_fields_value_uses_the_default(values: Any) -> None:
    spec = parse_fields(values, "id,displayName")

    assert render(conversation(), spec) == {"id": "mcUid000001", "displayName": "Stock"}


def test_repeated_fields_values_are_joined_with_commas() -> None:
    spec = parse_fields(["id", "subject", "lastSender[displayName]"], "*")

    assert render(conversation(), spec) == {
        "id": "mcUid000001",
        "subject": "Stock",
        "lastSender": {"displayName": "Alice"},
    }


def test_whitespace_around_names_commas_and_brackets_is_ignored() -> None:
    spec = parse_fields("  id ,\tmessages [ text , sender [ id ] ] ,  status ", "*")

    assert render(conversation(), spec) == {
        "id": "mcUid000001",
        "status": "NONE",
        "messages": [
            {"text": "Hello", "sender": {"id": "xE7jOejl9FI"}},
            {"text": "Hi", "sender": {"id": "M5zQapPyTZI"}},
        ],
    }


def test_parentheses_nest_like_square_brackets() -> None:
    spec = parse_fields("lastSender(id,displayName),messages(text)", "*")

    assert render(conversation(), spec) == {
        "lastSender": {"id": "xE7jOejl9FI", "displayName": "Alice"},
        "messages": [{"text": "Hello"}, {"text": "Hi"}],
    }


def test_equivalent_fields_strings_parse_once_and_share_the_cached_spec() -> None:
    first = parse_fields("id, displayName , lastSender[ id ]", "*")

    assert parse_fields(["id", "displayName", "lastSender[id]"], "*") is first


# ---------------------------------------------------------------- * and references


def test_star_collapses_references_and_lists_of_references_to_their_id() -> None:
    out = render(conversation(), parse_fields("*", "*"))

    assert out["lastSender"] == {"id": "xE7jOejl9FI"}
    assert out["assignee"] == {"id": "M5zQapPyTZI"}
    assert out["messages"] == [{"id": "msgUid00001"}, {"id": "msgUid00002"}]


def test_star_renders_embedded_objects_fully_with_their_references_collapsed() -> None:
    out = render(conversation(), parse_fields("*", "*"))

    assert out["userMessages"] == [
        {"key": "k1", "user": {"id": "xE7jOejl9FI"}, "read": True, "followUp": False},
        {"key": "k2", "user": {"id": "M5zQapPyTZI"}, "read": False, "followUp": True},
    ]


def test_a_bare_reference_name_renders_only_its_id() -> None:
    assert render(conversation(), parse_fields("lastSender", "*")) == {"lastSender": {"id": "xE7jOejl9FI"}}


def test_a_bare_embedded_object_name_renders_it_with_star_semantics() -> None:
    obj = {"sharing": {"public": "rw------", "owner": ALICE, "external": None}}

    assert render(obj, parse_fields("sharing", "*")) == {
        "sharing": {"public": "rw------", "owner": {"id": "xE7jOejl9FI"}}
    }


def test_explicit_subfields_win_over_star_for_the_same_key() -> None:
    out = render(conversation(), parse_fields("*,lastSender[id,displayName]", "*"))

    assert out["lastSender"] == {"id": "xE7jOejl9FI", "displayName": "Alice"}
    assert out["assignee"] == {"id": "M5zQapPyTZI"}


def test_the_same_field_listed_twice_merges_its_subfields() -> None:
    out = render(conversation(), parse_fields("lastSender[id],lastSender[displayName]", "*"))

    assert out == {"lastSender": {"id": "xE7jOejl9FI", "displayName": "Alice"}}


def test_subfields_on_a_primitive_are_ignored() -> None:
    assert render(conversation(), parse_fields("subject[id]", "*")) == {"subject": "Stock"}


def test_a_reference_with_subfields_it_lacks_renders_as_an_empty_object() -> None:
    assert render(conversation(), parse_fields("lastSender[surname]", "*")) == {"lastSender": {}}


def test_lists_of_primitives_and_tuples_are_rendered_element_by_element() -> None:
    obj = {"authorities": ("ALL", "M_dhis-web-messaging"), "tags": ["a", "b"], "refs": (ALICE, BOB)}

    assert render(obj, parse_fields("*", "*")) == {
        "authorities": ["ALL", "M_dhis-web-messaging"],
        "tags": ["a", "b"],
        "refs": [{"id": "xE7jOejl9FI"}, {"id": "M5zQapPyTZI"}],
    }


# ---------------------------------------------------------------- exclusions and presets


def test_an_exclusion_removes_keys_that_star_included() -> None:
    out = render(conversation(), parse_fields("*,!messages,!userMessages", "*"))

    assert "messages" not in out
    assert "userMessages" not in out
    assert out["subject"] == "Stock"


def test_an_exclusion_wins_over_an_explicitly_listed_field() -> None:
    assert render(conversation(), parse_fields("id,subject,!subject", "*")) == {"id": "mcUid000001"}


def test_exclusions_work_inside_brackets() -> None:
    out = render(conversation(), parse_fields("messages[*,!attachments,!sender]", "*"))

    assert out == {
        "messages": [
            {"id": "msgUid00001", "text": "Hello", "created": T0, "internal": False},
            {"id": "msgUid00002", "text": "Hi", "created": T1, "internal": False},
        ]
    }


def test_the_identifiable_preset_selects_the_identifiable_properties_present() -> None:
    obj = {
        "id": "u1",
        "code": "C1",
        "name": "N",
        "displayName": "D",
        "created": T0,
        "lastUpdated": T1,
        "href": "http://x/api/users/u1",
        "shortName": "S",
        "username": "n",
        "description": "desc",
    }

    assert render(obj, parse_fields(":identifiable", "*")) == {
        "id": "u1",
        "code": "C1",
        "name": "N",
        "displayName": "D",
        "created": T0,
        "lastUpdated": T1,
        "href": "http://x/api/users/u1",
    }


def test_the_nameable_preset_adds_short_name_and_description() -> None:
    obj = {"id": "u1", "name": "N", "shortName": "S", "description": "desc", "username": "n"}

    assert render(obj, parse_fields(":nameable", "*")) == {
        "id": "u1",
        "name": "N",
        "shortName": "S",
        "description": "desc",
    }


@pytest.mark.parametrize("preset", [":all", ":owner"])
def test_the_all_and_owner_presets_are_the_same_as_star(preset: str) -> None:
    assert render(conversation(), parse_fields(preset, "id")) == render(
        conversation(), parse_fields("*", "id")
    )


def test_presets_work_as_subfields_and_mix_with_names() -> None:
    out = render(conversation(), parse_fields("lastSender[:identifiable,username]", "*"))

    assert out == {
        "lastSender": {"id": "xE7jOejl9FI", "name": "Alice", "displayName": "Alice", "username": "alice"}
    }


# ---------------------------------------------------------------- transformers


@pytest.mark.parametrize("sep", ["~", "::"])
def test_rename_writes_the_value_under_the_new_key(sep: str) -> None:
    spec = parse_fields(f"id{sep}rename(uid),subject", "*")

    assert render(conversation(), spec) == {"uid": "mcUid000001", "subject": "Stock"}


@pytest.mark.parametrize(
    "fields", ["lastSender~rename(from)[displayName]", "lastSender[displayName]::rename(from)"]
)
def test_rename_combines_with_subfields_before_or_after_the_brackets(fields: str) -> None:
    assert render(conversation(), parse_fields(fields, "*")) == {"from": {"displayName": "Alice"}}


def test_rename_of_a_star_field_replaces_the_original_key() -> None:
    out = render(conversation(), parse_fields("*,subject~rename(title)", "*"))

    assert out["title"] == "Stock"
    assert "subject" not in out


def test_size_counts_list_items_and_string_length() -> None:
    out = render(conversation(), parse_fields("messages~size,subject::size,userMessages~size", "*"))

    assert out == {"subject": 5, "userMessages": 2, "messages": 2}


def test_transformers_chain_left_to_right() -> None:
    assert render(conversation(), parse_fields("messages~size~rename(count)", "*")) == {"count": 2}


def test_is_empty_and_is_not_empty_report_on_collections() -> None:
    obj = {"attachments": [], "messages": [1]}
    spec = parse_fields("attachments~isEmpty,messages~isEmpty,attachments~isNotEmpty~rename(has)", "*")

    assert render(obj, spec) == {"attachments": True, "has": False, "messages": False}


def test_pluck_turns_a_list_of_references_into_their_ids() -> None:
    out = render(conversation(), parse_fields("messages~pluck", "*"))

    assert out == {"messages": ["msgUid00001", "msgUid00002"]}


def test_pluck_with_an_argument_takes_that_field_from_each_item() -> None:
    out = render(conversation(), parse_fields("messages::pluck(text)", "*"))

    assert out == {"messages": ["Hello", "Hi"]}


def test_pluck_of_references_collapses_plucked_references_unless_subfields_are_given() -> None:
    bare = render(conversation(), parse_fields("messages~pluck(sender)", "*"))
    detailed = render(conversation(), parse_fields("messages~pluck(sender)[displayName]", "*"))

    assert bare == {"messages": [{"id": "xE7jOejl9FI"}, {"id": "M5zQapPyTZI"}]}
    assert detailed == {"messages": [{"displayName": "Alice"}, {"displayName": "Bob"}]}


# ---------------------------------------------------------------- None, absent keys, lazy values


def test_none_values_are_omitted_at_the_top_level_and_inside_nested_objects() -> None:
    out = render(conversation(), parse_fields("*,lastSender[id,code,name],messages[id,metadata]", "*"))

    assert "extMessageId" not in out
    assert out["lastSender"] == {"id": "xE7jOejl9FI", "name": "Alice"}
    assert out["messages"] == [{"id": "msgUid00001"}, {"id": "msgUid00002"}]


def test_a_selected_key_missing_from_the_object_is_skipped() -> None:
    assert render(conversation(), parse_fields("id,noSuchField,assignee[id]", "*")) == {
        "id": "mcUid000001",
        "assignee": {"id": "M5zQapPyTZI"},
    }


def test_datetimes_are_left_as_they_are() -> None:
    out = render(conversation(), parse_fields("created,lastMessage", "*"))

    assert out == {"created": T0, "lastMessage": T1}
    assert isinstance(out["created"], datetime)


def test_a_lazy_value_is_not_called_when_its_field_is_not_selected() -> None:
    def explode() -> list[Any]:
        raise AssertionError("lazy value was computed")

    obj = {"id": "mcUid000001", "messages": explode, "userMessages": explode}

    assert render(obj, parse_fields("id", "*")) == {"id": "mcUid000001"}
    assert render(obj, parse_fields("*,!messages,!userMessages", "*")) == {"id": "mcUid000001"}


def test_a_selected_lazy_value_is_called_once_and_rendered_like_a_plain_value() -> None:
    calls: list[str] = []

    def messages() -> Any:
        calls.append("messages")
        return conversation()["messages"]

    obj = {"id": "mcUid000001", "messages": messages}

    assert render(obj, parse_fields("messages[text]", "*")) == {
        "messages": [{"text": "Hello"}, {"text": "Hi"}]
    }
    assert render(obj, parse_fields("*", "*")) == {
        "id": "mcUid000001",
        "messages": [{"id": "msgUid00001"}, {"id": "msgUid00002"}],
    }
    assert calls == ["messages", "messages"]


def test_lazy_values_inside_nested_objects_are_resolved_only_when_selected() -> None:
    def explode() -> str:
        raise AssertionError("lazy nested value was computed")

    obj = {"lastSender": {"id": "xE7jOejl9FI", "displayName": lambda: "Alice", "email": explode}}

    assert render(obj, parse_fields("lastSender[displayName]", "*")) == {
        "lastSender": {"displayName": "Alice"}
    }
    assert render(obj, parse_fields("lastSender", "*")) == {"lastSender": {"id": "xE7jOejl9FI"}}


def test_a_lazy_value_returning_none_is_omitted() -> None:
    assert render({"id": "x", "assignee": lambda: None}, parse_fields("id,assignee[id]", "*")) == {"id": "x"}


# ---------------------------------------------------------------- order, render_many, top-level keys


def test_output_keys_follow_the_objects_key_order_not_the_request_order() -> None:
    out = render(conversation(), parse_fields("status,subject~rename(title),id", "*"))

    assert list(out) == ["id", "title", "status"]


def test_render_many_renders_each_object_with_the_same_spec() -> None:
    spec = parse_fields("id,lastSender[displayName]", "*")
    objs = [conversation() for _ in range(50)]

    out = render_many(objs, spec)

    assert len(out) == 50
    assert all(row == {"id": "mcUid000001", "lastSender": {"displayName": "Alice"}} for row in out)


def test_requested_top_level_lists_the_named_source_keys_minus_exclusions() -> None:
    spec = parse_fields("id,lastSender[id],messages~size,subject~rename(title),read,!read", "*")

    assert requested_top_level(spec) == {"id", "lastSender", "messages", "subject"}


@pytest.mark.parametrize("fields", ["*", "id,*", ":identifiable", "id,:nameable", ":all,!messages"])
def test_requested_top_level_is_none_when_star_or_a_preset_is_present(fields: str) -> None:
    assert requested_top_level(parse_fields(fields, "id")) is None


def test_requested_top_level_ignores_nested_stars() -> None:
    assert requested_top_level(parse_fields("messages[*]", "*")) == {"messages"}


# ---------------------------------------------------------------- malformed input


def test_an_unclosed_bracket_is_reported_with_the_offending_string() -> None:
    with pytest.raises(FieldsError) as err:
        parse_fields("messages[text", "*")

    assert str(err.value) == "Invalid fields parameter: unbalanced brackets in 'messages[text'"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ("messages]", "unbalanced brackets"),
        ("messages[text)", "unbalanced brackets"),
        ("a[b[c]", "unbalanced brackets"),
        ("a[]", "empty field name"),
        ("a[b,]", "empty field name"),
        ("a[,b]", "empty field name"),
        ("id~frobnicate", "unknown transformer 'frobnicate'"),
        ("id::upper", "unknown transformer 'upper'"),
        ("id~rename", "transformer 'rename' needs an argument"),
        ("id~rename()", "transformer 'rename' needs an argument"),
        ("id~size(x)", "transformer 'size' takes no argument"),
        (":everything", "unknown preset ':everything'"),
        ("dis play", "unexpected ' '"),
        ("!messages[text]", "an excluded field takes no sub-fields"),
        ("id;name", "unexpected ';'"),
        ("a" + "[a" * 40 + "]" * 40, "nested deeper than 32 levels"),
    ],
)
def test_malformed_fields_raise_a_fields_error_saying_what_is_wrong(fields: str, reason: str) -> None:
    with pytest.raises(FieldsError, match=r"^Invalid fields parameter: ") as err:
        parse_fields(fields, "*")

    assert reason in str(err.value)


def test_a_fields_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_fields("a[", "*")
