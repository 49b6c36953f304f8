"""Typed input at the edge: every query parameter is parsed by the pydantic model the OpenAPI document shows."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from api import queries
from api.app import create_app
from api.params import BEYOND, flag, whole_number
from tests.conftest import LiveServer, make_settings, reset_with_demo

API = "/api/messageConversations"
STOCK = "ZjHHSjyyeJ2"  # a demo conversation the admin takes part in
HUGE = "9" * 5000


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The app as served; never started, so no database is needed."""
    return create_app(make_settings())


@pytest.fixture(scope="module")
def demo(pg_server: LiveServer) -> Iterator[LiveServer]:
    """The PostgreSQL server with the demo data, loaded once: refused requests write nothing."""
    reset_with_demo(pg_server)
    yield pg_server
    pg_server.close_clients()


def _routes(app: FastAPI) -> Iterator[APIRoute]:
    # Every route, the undocumented ones (the dashboard, installed apps) too.
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context.original_route


def _dependants(route: APIRoute) -> Iterator[Any]:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        yield dependant
        stack.extend(dependant.dependencies)


# ---------------------------------------------------------------- one model per route, and only there


def test_no_route_reads_raw_query_parameters_outside_the_query_models(app: FastAPI) -> None:
    # Whole modules, so a helper a handler calls counts too (directory's list, validation's where_and_orders).
    modules: dict[str, ModuleType] = {}
    for route in _routes(app):
        for dependant in _dependants(route):
            module = inspect.getmodule(dependant.call) if dependant.call is not None else None
            if module is not None:
                modules[module.__name__] = module
    assert "api.routers.message_conversations" in modules and "api.deps" in modules
    readers = sorted(name for name, module in modules.items()
                     if name != "api.queries" and "query_params" in inspect.getsource(module))
    assert readers == [], "declare an api.queries model (Annotated[Model, Query()]) instead of reading request.query_params"


def test_every_query_parameter_is_a_field_of_one_query_model(app: FastAPI) -> None:
    checked = 0
    for route in _routes(app):
        params = [field for dependant in _dependants(route) for field in dependant.query_params]
        annotations = [field.field_info.annotation for field in params]
        assert all(isinstance(a, type) and issubclass(a, queries.QueryModel) for a in annotations), (route.path, annotations)
        assert len(params) <= 1, (route.path, annotations)
        checked += len(params)
    assert checked >= 40  # lists, singles, flags, tickets, replies, settings, lookups, ops, deliveries...


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_every_documented_query_parameter_has_a_schema_type(app: FastAPI) -> None:
    document = app.openapi()
    seen: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] != "query":
                    continue
                schema = _resolve(document, parameter["schema"])
                assert schema.get("type") in {"string", "integer", "boolean", "array"}, (method, path, parameter)
                if schema["type"] == "array":
                    assert schema["items"].get("type") == "string", (method, path, parameter)
                seen.setdefault((method, path), {})[parameter["name"]] = {**schema, "required": parameter["required"]}
    listing = {"fields", "filter", "order", "rootJunction", "page", "pageSize", "paging"}
    for path in (API, "/api/users", "/api/userGroups", "/api/organisationUnits", "/api/validationRules",
                 "/api/validationNotificationTemplates", "/api/validationResults", "/api/deliveries"):
        assert listing <= seen[("get", path)].keys(), path
    conversations = seen[("get", API)]
    assert {"queryString", "queryOperator"} <= conversations.keys()
    assert (conversations["page"]["type"], conversations["paging"]["type"]) == ("integer", "boolean")
    assert conversations["rootJunction"]["enum"] == ["AND", "OR"]
    assert seen[("delete", API)]["mc"]["required"] is True
    status = seen[("post", f"{API}/{{uid}}/status")]["messageConversationStatus"]
    assert status["required"] is True and status["enum"] == ["NONE", "OPEN", "PENDING", "INVALID", "SOLVED"]
    assert seen[("post", f"{API}/{{uid}}/priority")]["messageConversationPriority"]["enum"] == ["NONE", "LOW", "MEDIUM", "HIGH"]
    assert seen[("post", f"{API}/{{uid}}")].keys() == {"internal", "attachments"}
    assert seen[("get", "/api/ops/throughput")]["hours"]["type"] == "integer"
    assert {"before", "pageSize", "total"} <= seen[("get", "/api/ops/deliveries")].keys()


# ---------------------------------------------------------------- bounded parsers


@pytest.mark.parametrize(
    ("text", "number"),
    [("5", 5), (" -3 ", -3), ("1_000", 1000), ("0" * 30 + "7", 7), ("9" * 30, BEYOND), ("-" + "9" * 30, -BEYOND),
     ("9" * 4300, BEYOND), (HUGE, None), ("²", None), ("two", None), ("", None), ("9" * 30 + "x", None)],
)
def test_whole_numbers_are_read_as_int_reads_them_without_converting_long_ones(text: str, number: int | None) -> None:
    assert whole_number(text) == number


def test_booleans_are_read_as_dhis2_binds_them() -> None:
    assert [flag(t) for t in ("true", "FALSE", " yes ", "off", "1", "0")] == [True, False, True, False, True, False]
    assert [flag(t) for t in ("maybe", "", "t", "truee")] == [None, None, None, None]


# ---------------------------------------------------------------- behaviour: 400 WebMessages with DHIS2's text


def _assert_400(response: Any, message: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert (body["httpStatus"], body["httpStatusCode"], body["status"]) == ("Bad Request", 400, "ERROR"), body
    assert body["message"] == message


@pytest.mark.parametrize(
    ("method", "path", "params", "message"),
    [
        # DHIS2's list parameters, on every list
        ("GET", API, {"page": "two"}, "Value 'two' is not valid for parameter page."),
        ("GET", API, {"page": "²"}, "Value '²' is not valid for parameter page."),
        ("GET", API, {"pageSize": HUGE}, f"Value '{HUGE[:40]}' is not valid for parameter pageSize."),
        ("GET", API, {"paging": "maybe"}, "Value 'maybe' is not valid for parameter paging."),
        ("GET", API, {"rootJunction": "XOR"}, "Invalid rootJunction `XOR`: expected AND or OR."),
        ("GET", "/api/users", {"pageSize": "²"}, "Value '²' is not valid for parameter pageSize."),
        ("GET", "/api/organisationUnits", {"rootJunction": "NOR"}, "Invalid rootJunction `NOR`: expected AND or OR."),
        ("GET", "/api/validationRules", {"paging": "sometimes"}, "Value 'sometimes' is not valid for parameter paging."),
        ("GET", "/api/validationResults", {"page": HUGE}, f"Value '{HUGE[:40]}' is not valid for parameter page."),
        ("DELETE", "/api/validationResults", {"rootJunction": "XOR"}, "Invalid rootJunction `XOR`: expected AND or OR."),
        ("GET", "/api/deliveries", {"page": "²"}, "Value '²' is not valid for parameter page."),
        # one conversation, replies, batch removal
        ("GET", f"{API}/{STOCK}", {"markRead": "perhaps"}, "Value 'perhaps' is not valid for parameter markRead."),
        ("DELETE", API, {}, "Required request parameter 'mc' for method parameter type List is not present"),
        ("DELETE", API, {"mc": ","}, "Required request parameter 'mc' for method parameter type List is not present"),
        # tickets
        ("POST", f"{API}/{STOCK}/status", {"messageConversationStatus": "CLOSED"},
         "Value 'CLOSED' is not valid for parameter messageConversationStatus. Valid values are: [NONE, OPEN, PENDING, INVALID, SOLVED]"),
        ("POST", f"{API}/{STOCK}/status", {},
         "Required request parameter 'messageConversationStatus' for method parameter type MessageConversationStatus is not present"),
        ("POST", f"{API}/{STOCK}/priority", {"messageConversationPriority": "urgent"},
         "Value 'urgent' is not valid for parameter messageConversationPriority. Valid values are: [NONE, LOW, MEDIUM, HIGH]"),
        # ops and deliveries: bounded, and closed to parameters they do not know
        ("GET", "/api/ops/throughput", {"hours": "²"}, "Value '²' is not valid for parameter hours: expected 1 to 168."),
        ("GET", "/api/ops/throughput", {"hours": HUGE}, f"Value '{HUGE[:40]}' is not valid for parameter hours: expected 1 to 168."),
        ("GET", "/api/ops/throughput", {"days": "1"}, "Unknown parameter 'days'; this endpoint takes hours."),
        ("GET", "/api/ops/deliveries", {"pageSize": "501"}, "Value '501' is not valid for parameter pageSize: expected 1 to 500."),
        ("GET", "/api/ops/deliveries", {"before": HUGE},
         f"Value '{HUGE[:40]}' is not valid for a delivery id: expected a positive 64-bit integer."),
        ("GET", "/api/ops/deliveries", {"total": "maybe"}, "Value 'maybe' is not valid for parameter total."),
        ("GET", "/api/ops/overview", {"x": "1"}, "Unknown parameter 'x'; this endpoint takes ."),
        ("GET", "/api/deliveries", {"bogus": "1"},
         "Unknown parameter 'bogus'; this endpoint takes channel, errorCode, fields, filter, from, messageConversation, "
         "order, page, pageSize, paging, recipient, rootJunction, status, to, user."),
    ],
)
def test_a_bad_query_parameter_is_a_400_web_message_with_the_dhis2_text(
    demo: LiveServer, method: str, path: str, params: dict[str, str], message: str
) -> None:
    _assert_400(demo.client().request(method, path, params=params), message)


def test_a_bad_flag_on_a_reply_is_refused_before_anything_is_written(demo: LiveServer) -> None:
    admin = demo.client()
    before = admin.get(f"{API}/{STOCK}", params={"fields": "messageCount"}).json()["messageCount"]
    response = admin.post(f"{API}/{STOCK}", params={"internal": "maybe"}, content="x", headers={"Content-Type": "text/plain"})
    _assert_400(response, "Value 'maybe' is not valid for parameter internal.")
    assert admin.get(f"{API}/{STOCK}", params={"fields": "messageCount"}).json()["messageCount"] == before


def test_without_authority_all_the_answer_is_403_before_any_parameter_is_judged(demo: LiveServer) -> None:
    mobile = demo.client("mobile")
    for path, params in (("/api/deliveries", {"bogus": "1"}), ("/api/ops/throughput", {"hours": "0"}),
                         ("/api/ops/deliveries", {"pageSize": "²"}), ("/api/validationResults", {"rootJunction": "x"})):
        method = "DELETE" if path == "/api/validationResults" else "GET"
        assert mobile.request(method, path, params=params).status_code == 403, path
    assert mobile.get("/api/ops/overview").status_code == 403


def test_dhis2_endpoints_ignore_parameters_they_do_not_know_and_clamp_paging(demo: LiveServer) -> None:
    admin = demo.client()
    assert admin.get(API, params={"bogus": "1", "defaults": "INCLUDE"}).status_code == 200
    assert admin.get("/api/users", params={"query": "x", "translate": "true"}).status_code == 200
    pager = admin.get(API, params={"page": "0", "pageSize": "9" * 30}).json()["pager"]
    assert (pager["page"], pager["pageSize"]) == (1, 10_000)
    assert admin.get(API, params={"pageSize": "-4"}).json()["pager"]["pageSize"] == 1
    assert "pager" not in admin.get(API, params={"paging": "FALSE"}).json()
    assert "pager" not in admin.get("/api/users", params={"paging": "0"}).json()
    assert admin.get(API, params={"paging": ""}).json()["pager"]["page"] == 1
    ors = admin.get(API, params={"filter": ["subject:ilike:stock", "messageType:eq:SYSTEM"], "rootJunction": " or "})
    assert ors.status_code == 200 and ors.json()["pager"]["total"] >= 1


def test_repeated_and_comma_joined_values_reach_the_handler_as_one_list(demo: LiveServer) -> None:
    admin = demo.client()
    page = admin.get(API, params={"fields": ["id", "subject"], "order": ["subject:asc"], "paging": "false"}).json()
    assert page["messageConversations"] and set(page["messageConversations"][0]) == {"id", "subject"}
    last = page["messageConversations"][-1]["id"]
    assert last != STOCK
    removed = admin.delete(API, params={"mc": [f" {last},aaaaaaaaaaa", ""]})
    assert removed.status_code == 200 and removed.json() == {"removed": [last]}
