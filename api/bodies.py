"""Request bodies: DHIS2 message drafts in JSON or XML (parsed safely), UID arrays, text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from starlette.requests import Request

from messaging.conversations import RecipientRefs
from messaging.errors import BadRequest, Conflict, UnsupportedMediaType
from messaging.jsonbounds import JsonBoundsError, load_json

XML_TYPES = ("application/xml", "text/xml")


@dataclass(frozen=True)
class Draft:
    """A new message as a client sent it."""

    subject: Any = None
    text: Any = None
    refs: RecipientRefs = field(default_factory=RecipientRefs)
    attachments: list[str] = field(default_factory=list)


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


def _xml_ids(element: Element, wrapper: str) -> list[str]:
    node = _child(element, wrapper)
    if node is None:
        return []
    return [c.get("id") or (c.text or "").strip() for c in node]


def _json_ids(body: dict[str, Any], key: str, *, strings_allowed: bool = False) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Conflict(f"Property `{key}` must be a list of objects with an `id`.")
    ids = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            ids.append(item["id"])
        elif strings_allowed and isinstance(item, str):
            ids.append(item)
        else:
            raise Conflict(f"Property `{key}` must be a list of objects with an `id`.")
    return ids


def draft_from_request(request: Request, raw: bytes, *, malformed: type[Exception] = Conflict) -> Draft:
    """Read a message draft from a JSON or XML body."""
    kind = media_type(request)
    if kind in XML_TYPES or kind.endswith("+xml"):
        root = parse_xml(raw)
        if _local(root.tag) != "message":
            raise Conflict("XML root element must be <message>.")
        subject, text = _child(root, "subject"), _child(root, "text")
        return Draft(
            subject=subject.text if subject is not None else None,
            text=text.text if text is not None else None,
            refs=RecipientRefs(
                users=_xml_ids(root, "users"),
                groups=_xml_ids(root, "userGroups"),
                org_units=_xml_ids(root, "organisationUnits"),
            ),
            attachments=_xml_ids(root, "attachments"),
        )
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"Content type '{kind}' not supported")
    body = parse_json(raw, malformed)
    if not isinstance(body, dict):
        raise Conflict("Request body must be a JSON object.")
    return Draft(
        subject=body.get("subject"),
        text=body.get("text"),
        refs=RecipientRefs(
            users=_json_ids(body, "users"),
            groups=_json_ids(body, "userGroups"),
            org_units=_json_ids(body, "organisationUnits"),
        ),
        # The doc sends strings, the official app objects (DECISIONS #10).
        attachments=_json_ids(body, "attachments", strings_allowed=True),
    )


def uid_array(raw: bytes) -> list[str]:
    """A JSON array of UIDs (the read/unread/follow-up bodies)."""
    body = parse_json(raw, BadRequest)
    if not isinstance(body, list) or not all(isinstance(item, str) for item in body):
        raise BadRequest("Request body must be a JSON array of ids.")
    return body


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
