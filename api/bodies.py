"""Request bodies: bounded JSON or safe XML, then one pydantic model per route (api/wire.py).

A route declares its body as one of the `...Body` aliases below. The dependency reads the body,
parses it within messaging.jsonbounds' limits (digits, depth, size: before any work), converts XML
into the dict the same model parses, validates once, and turns the first pydantic error into the
DHIS2 WebMessage the route always answered (409 for a bad object, 400 for a bad parameter, 415 for
a content type it does not read). openapi.py documents each route from the same spec.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from fastapi import Depends
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from api.wire import (
    DeliveryAction,
    FeedbackGroup,
    Login,
    MessageDraft,
    MetadataImport,
    Recipients,
    Requeue,
    UidArray,
    ValidationResults,
)
from messaging.errors import BadRequest, Conflict, HeraldError, UnsupportedMediaType
from messaging.jsonbounds import JsonBoundsError, load_json

XML_TYPES = ("application/xml", "text/xml")


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and unpaired surrogates: no database takes them


def _unstorable(value: Any) -> bool:
    # Iterative: the document may be nested as deeply as the parser allows.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(raw: bytes, error: type[Exception] = Conflict) -> Any:
    """Decode JSON within messaging.jsonbounds' limits or raise `error` (DHIS2: 409 on create, 400 elsewhere)."""
    try:
        body = load_json(raw)
    except JsonBoundsError as exc:
        raise error(f"JSON parse error: {exc}.") from None
    if _unstorable(body):
        raise error("JSON parse error: strings must not contain NUL characters or unpaired surrogates.")
    return body


def parse_xml(raw: bytes) -> Element:
    """Parse XML with DTDs, entities and external references forbidden."""
    try:
        return fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise Conflict("XML with a DTD, entities or external references is not accepted.") from None
    except ParseError as exc:
        raise Conflict(f"XML parse error: {exc}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element, name: str) -> Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _xml_refs(element: Element, wrapper: str) -> list[Any]:
    node = _child(element, wrapper)
    if node is None:
        return []
    return [{"id": c.get("id") or (c.text or "").strip()} for c in node]


def message_from_xml(root: Element) -> dict[str, Any]:
    """A `<message>` document as the dict MessageDraft and Recipients parse (the same model as JSON)."""
    if _local(root.tag) != "message":
        raise Conflict("XML root element must be <message>.")
    body: dict[str, Any] = {
        key: _xml_refs(root, key) for key in ("users", "userGroups", "organisationUnits")
    }
    body["attachments"] = [ref["id"] for ref in _xml_refs(root, "attachments")]
    for key in ("subject", "text"):
        node = _child(root, key)
        if node is not None:
            body[key] = node.text
    return body


JSON = "json"  # JSON (and XML where the spec converts it); any other content type is a 415
ANY_JSON = "any-json"  # JSON whatever the content type says (Spring reads these bodies as JSON regardless)
JSON_OR_TEXT = "json-or-text"  # JSON when it says or looks so, else the text is the (string) value
TEXT = "text"  # the body is text: a reply, a ticket, a setting's value


@dataclass(frozen=True)
class BodySpec:
    """How one route's body becomes its model, and which WebMessage each failure answers."""

    model: type[BaseModel] | None  # None for a text body (the handler receives a str)
    media: str = JSON
    malformed: type[HeraldError] = Conflict  # not JSON/XML at all (DHIS2: 409 on create, 400 elsewhere)
    invalid: type[HeraldError] = Conflict  # well-formed, not the model
    xml: Callable[[Element], Any] | None = None  # converts an XML document into the dict the model parses
    optional: bool = False  # an empty body is the model's defaults (a text body: "")


def _message(model: type[BaseModel], error: Any) -> str:
    loc = error["loc"]
    messages: dict[str, str] = getattr(model, "MESSAGES", {})
    key = str(loc[0]) if loc else ""
    kind = error["type"]
    text = messages.get(f"{key}.{kind}") or messages.get(f"*.{kind}") or messages.get(key)
    if text is None:
        return str(getattr(model, "NOT_OBJECT", "Request body is not valid."))
    # replace, not format: some messages quote JSON braces
    return text.replace("{key}", key[:40]).replace("{input}", str(error.get("input"))[:40])


def validate(spec: BodySpec, data: Any) -> Any:
    """`data` (already bounded) as the spec's model, or the route's DHIS2 error for the first problem."""
    model = spec.model
    if model is None:
        raise TypeError("a text BodySpec has no model to validate")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec.invalid(_message(model, exc.errors(include_url=False)[0])) from None


def _is_json(kind: str) -> bool:
    return kind == "application/json" or kind.endswith("+json")


def _data(spec: BodySpec, kind: str, raw: bytes) -> Any:
    if spec.media == JSON:
        if spec.xml is not None and (kind in XML_TYPES or kind.endswith("+xml")):
            return spec.xml(parse_xml(raw))
        if kind and not _is_json(kind):
            raise UnsupportedMediaType(f"Content type '{kind}' not supported")
    elif spec.media == JSON_OR_TEXT:
        text = raw.decode("utf-8", errors="replace").strip()
        if not _is_json(kind) and text[:1] not in ('"', "{", "["):
            return text
    return parse_json(raw, spec.malformed)


def parse_body(spec: BodySpec, request: Request, raw: bytes) -> Any:
    """The body as the spec's model (a str for text): bounded parse first, then one model validation."""
    if spec.model is None:
        if spec.optional:
            return raw.decode("utf-8", errors="replace").strip()
        return text_body(raw)
    if spec.optional and not raw.strip():
        return spec.model()
    return validate(spec, _data(spec, media_type(request), raw))


INLINE_PARSE_BYTES = 64 * 1024  # smaller bodies parse on the event loop: cheaper than a thread hop


def typed_body(spec: BodySpec) -> Any:
    """A dependency handing the handler its parsed body; openapi.py documents the route from `spec`."""

    async def body(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > INLINE_PARSE_BYTES:  # a large metadata import must not stall other requests
            return await run_in_threadpool(parse_body, spec, request, raw)
        return parse_body(spec, request, raw)

    body.body_spec = spec  # type: ignore[attr-defined]
    return Depends(body)


def body_spec_of(call: Any) -> BodySpec | None:
    """The BodySpec of a dependency made by typed_body, else None."""
    spec = getattr(call, "body_spec", None)
    return spec if isinstance(spec, BodySpec) else None


DRAFT = BodySpec(MessageDraft, xml=message_from_xml)
# Spring binds this body itself, so malformed JSON is a 400 here (409 on create).
RECIPIENTS = BodySpec(Recipients, malformed=BadRequest, xml=message_from_xml, optional=True)
UIDS = BodySpec(UidArray, media=ANY_JSON, malformed=BadRequest, invalid=BadRequest)
LOGIN = BodySpec(Login, media=ANY_JSON, malformed=BadRequest, invalid=BadRequest)
METADATA = BodySpec(MetadataImport)
RESULTS = BodySpec(ValidationResults)
FEEDBACK_GROUP = BodySpec(FeedbackGroup, media=JSON_OR_TEXT, malformed=BadRequest, invalid=BadRequest)
DELIVERY_ACTION = BodySpec(DeliveryAction, media=ANY_JSON, malformed=BadRequest, invalid=BadRequest, optional=True)
REQUEUE = BodySpec(Requeue, media=ANY_JSON, malformed=BadRequest, invalid=BadRequest, optional=True)
TEXT_BODY = BodySpec(None, media=TEXT)
SETTING_VALUE = BodySpec(None, media=TEXT, optional=True)

DraftBody = Annotated[MessageDraft, typed_body(DRAFT)]
RecipientsBody = Annotated[Recipients, typed_body(RECIPIENTS)]
UidsBody = Annotated[UidArray, typed_body(UIDS)]
LoginBody = Annotated[Login, typed_body(LOGIN)]
MetadataBody = Annotated[MetadataImport, typed_body(METADATA)]
ResultsBody = Annotated[ValidationResults, typed_body(RESULTS)]
FeedbackGroupBody = Annotated[FeedbackGroup, typed_body(FEEDBACK_GROUP)]
DeliveryActionBody = Annotated[DeliveryAction, typed_body(DELIVERY_ACTION)]
RequeueBody = Annotated[Requeue, typed_body(REQUEUE)]
TextBody = Annotated[str, typed_body(TEXT_BODY)]
SettingValueBody = Annotated[str, typed_body(SETTING_VALUE)]

def text_body(raw: bytes) -> str:
    """The raw body as text (a reply); 400 when empty, as DHIS2."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Request body must be UTF-8 text.") from None
    if not text:
        raise BadRequest("Required request body is missing")
    if "\x00" in text:
        raise BadRequest("Request body must not contain NUL characters.")
    return text
