"""Typed input at the edge: every body is parsed by the pydantic model the OpenAPI document shows."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import pytest
from fastapi import FastAPI
from fastapi.params import Depends
from starlette.requests import Request

from api import bodies
from api.app import create_app
from api.openapi import api_routes, body_content, body_specs
from api.wire import MessageDraft
from messaging.errors import BadRequest, Conflict, HeraldError, UnsupportedMediaType
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The app as served; never started, so no database is needed."""
    return create_app(make_settings())


def _request(content_type: str | None = "application/json") -> Request:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""})


def _calls(route: Any) -> Iterator[Any]:
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        yield dependant.call
        stack.extend(dependant.dependencies)


def _reads_the_body(call: object) -> bool:
    try:
        source = inspect.getsource(call)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    return ".body()" in source or ".stream()" in source


def test_no_route_reads_a_raw_body_without_a_model(app: FastAPI) -> None:
    raw_readers = [f"{method} {path}" for method, path, route in api_routes(app) if any(
        _reads_the_body(call) and getattr(call, "__module__", "") != "api.bodies" for call in _calls(route))]
    assert raw_readers == [], "read the body through an api.bodies typed body (a model), not by hand"


def test_every_body_taking_operation_is_documented_from_the_spec_its_handler_receives(app: FastAPI) -> None:
    document = app.openapi()
    checked = 0
    for method, path, route in api_routes(app):
        specs = body_specs(route)
        operation = document["paths"][path][method]
        if not specs:
            # Only FastAPI's own body parameters (form, multipart) may take a body without a spec.
            assert "requestBody" not in operation or route.body_field is not None, (method, path)
            continue
        assert len(specs) == 1, (method, path)
        spec = specs[0]
        assert operation["requestBody"]["content"] == body_content(spec), (method, path)
        # The handler's parameter is the spec's model (a str for a text body).
        hints = get_type_hints(route.endpoint, include_extras=True)
        received = [
            get_args(hint)[0]
            for hint in hints.values()
            if get_origin(hint) is Annotated
            and any(isinstance(m, Depends) and bodies.body_spec_of(m.dependency) is spec for m in get_args(hint)[1:])
        ]
        assert received == [spec.model or str], (method, path, received)
        if spec.model is not None:
            schema = document["components"]["schemas"][spec.model.__name__]
            assert schema["title"] == spec.model.model_json_schema()["title"]
        checked += 1
    assert checked >= 15  # create, reply, flags, recipients, feedback, login, metadata, settings, ops...


def _error(spec: bodies.BodySpec, raw: bytes, content_type: str | None = "application/json") -> HeraldError:
    with pytest.raises(HeraldError) as caught:
        bodies.parse_body(spec, _request(content_type), raw)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b'{"text": "x"}', Conflict, "Missing required property `subject`."),
        (b'{"subject": "   "}', Conflict, "Missing required property `subject`."),
        (b'{"subject": 5}', Conflict, "Missing required property `subject`."),
        (b'{"subject": "' + b"s" * 256 + b'"}', Conflict, "Property `subject` is longer than 255 characters."),
        (b'{"subject": "s", "text": ["x"]}', Conflict, "Property `text` must be a string."),
        (b'{"subject": "s", "users": "x"}', Conflict, "Property `users` must be a list of objects with an `id`."),
        (b'{"subject": "s", "userGroups": [{"id": 5}]}', Conflict, "Property `userGroups` must be a list of objects with an `id`."),
        (b'{"subject": "s", "attachments": [5]}', Conflict, "Property `attachments` must be a list of objects with an `id`."),
        (b"[]", Conflict, "Request body must be a JSON object."),
        (b'{"subject": ', Conflict, None),
    ],
)
def test_a_bad_draft_answers_the_dhis2_message_the_hand_written_checks_gave(raw: bytes, status: type, message: str | None) -> None:
    error = _error(bodies.DRAFT, raw)
    assert type(error) is status
    if message is not None:
        assert error.message == message


def test_json_and_xml_drafts_parse_into_the_same_model() -> None:
    json_body = b'{"subject": "S", "text": "T", "users": [{"id": "a"}], "userGroups": null, "attachments": ["f", {"id": "g"}]}'
    xml_body = (b'<message><subject>S</subject><text>T</text><users><user id="a"/></users>'
                b"<attachments><attachment>f</attachment><attachment id=\"g\"/></attachments></message>")
    from_json = bodies.parse_body(bodies.DRAFT, _request(), json_body)
    from_xml = bodies.parse_body(bodies.DRAFT, _request("application/xml"), xml_body)
    assert isinstance(from_json, MessageDraft)
    assert (from_json.subject, from_json.text, from_json.refs) == (from_xml.subject, from_xml.text, from_xml.refs)
    assert from_json.attachment_ids == from_xml.attachment_ids
    assert from_json.refs.users == ["a"] and from_json.attachment_ids == ["f", "g"]


def test_bounds_and_content_types_come_before_the_model() -> None:
    assert type(_error(bodies.DRAFT, b'{"subject": ' + b"9" * 5000 + b"}")) is Conflict
    assert type(_error(bodies.UIDS, b"[" * 100_000)) is BadRequest
    assert type(_error(bodies.DRAFT, b"{}", "text/csv")) is UnsupportedMediaType
    assert type(_error(bodies.METADATA, b"{}", "application/xml")) is UnsupportedMediaType


@pytest.mark.parametrize(
    ("spec", "raw", "message"),
    [
        (bodies.UIDS, b'["a", 5]', "Request body must be a JSON array of ids."),
        (bodies.LOGIN, b'"x"', "Request body must be a JSON object with username and password."),
        (bodies.DELIVERY_ACTION, b'{"ids": [1], "extra": 1}', "Unknown key 'extra': expected 'ids' or 'query'."),
        (bodies.DELIVERY_ACTION, b'{"ids": [9223372036854775808]}',
         "Value '9223372036854775808' is not valid for a delivery id: expected a positive 64-bit integer."),
        (bodies.DELIVERY_ACTION, b'{"ids": [true]}', "'ids' must be a list of delivery ids (numbers)."),
        (bodies.REQUEUE, b'{"statuses": "DEAD"}', "'statuses' must be a list of FAILED, DEAD and UNKNOWN."),
        (bodies.FEEDBACK_GROUP, b'{"id": 5}',
         "Request body must be a user group id, as text, a JSON string or an object with an `id`."),
    ],
)
def test_parameter_like_bodies_are_a_400_with_the_route_message(spec: bodies.BodySpec, raw: bytes, message: str) -> None:
    error = _error(spec, raw)
    assert type(error) is BadRequest
    assert error.message == message


def test_metadata_tolerates_what_dhis2_tolerates_and_passes_it_on_unchanged() -> None:
    raw = b'{"users": [{"id": "u", "email": {"x": 1}, "teiSearchOrganisationUnits": []}], "dataElements": [{"id": "d"}]}'
    parsed = bodies.parse_body(bodies.METADATA, _request(), raw)
    # A wrongly typed known property is the import report's to refuse (per object, as DHIS2), not the parser's.
    assert parsed.payload() == {"users": [{"id": "u", "email": {"x": 1}, "teiSearchOrganisationUnits": []}],
                                "dataElements": [{"id": "d"}]}
    assert _error(bodies.METADATA, b'{"users": 5}').message == "Metadata property `users` must be a list of objects."


def test_optional_bodies_default_and_feedback_groups_come_as_text_or_json() -> None:
    assert bodies.parse_body(bodies.RECIPIENTS, _request(), b"  ").refs.users == []
    assert bodies.parse_body(bodies.FEEDBACK_GROUP, _request("text/plain"), b"OYLGMiazHtW").uid == "OYLGMiazHtW"
    assert bodies.parse_body(bodies.FEEDBACK_GROUP, _request(None), b'"OYLGMiazHtW"').uid == "OYLGMiazHtW"
    assert bodies.parse_body(bodies.FEEDBACK_GROUP, _request(), b'{"id": "OYLGMiazHtW"}').uid == "OYLGMiazHtW"
