"""Responses in DHIS2's shapes: JSON or XML by Accept header or path suffix, and WebMessages."""

from __future__ import annotations

import json
import re
from datetime import datetime
from http import HTTPStatus
from typing import Any

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

DXF_NAMESPACE = "http://dhis2.org/schema/dxf/2.0"
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
JSON_TYPE = "application/json;charset=UTF-8"
XML_TYPE = "application/xml;charset=UTF-8"
# Scalars written as XML attributes rather than child elements (DHIS2's DXF convention).
XML_ATTRIBUTES = frozenset(
    {"id", "name", "displayName", "code", "created", "lastUpdated", "href", "read", "followUp", "messageCount"}
)
# Answers whose lists hold bare UIDs (DHIS2 RootNode collections).
UID_LISTS = frozenset({"markedRead", "markedUnread", "markedFollowup", "unmarkedFollowup", "removed"})
SINGULAR = {
    "messageConversations": "messageConversation",
    "userMessages": "userMessage",
    "messages": "message",
    "organisationUnits": "organisationUnit",
    "userGroups": "userGroup",
    "userRoles": "userRole",
    "users": "user",
    "attachments": "attachment",
    "authorities": "authority",
    "children": "child",
    "typeReports": "typeReport",
    "objectReports": "objectReport",
    "errorReports": "errorReport",
    "modules": "module",
}


def format_datetime(value: datetime) -> str:
    """DHIS2's date format: ISO-8601 without zone, milliseconds (UTC here)."""
    if value.tzinfo is None and value.year >= 1000:
        return value.isoformat(timespec="milliseconds")  # the same text, in C: a list renders hundreds
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(body: Any) -> bytes:
    """Compact JSON bytes with DHIS2 dates."""
    return json.dumps(body, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def wants_xml(request: Request) -> bool:
    """True when the client asked for XML: a .xml suffix, or Accept preferring XML over JSON."""
    suffix = request.scope.get("herald.format")
    if suffix:
        return bool(suffix == "xml")
    accept = request.headers.get("accept", "").lower()
    if "xml" not in accept:
        return False
    xml_at = min(accept.find(t) for t in ("application/xml", "text/xml") if t in accept) if (
        "application/xml" in accept or "text/xml" in accept
    ) else -1
    json_at = accept.find("application/json")
    return xml_at >= 0 and (json_at < 0 or xml_at < json_at)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_datetime(value)
    # JSON may carry characters XML 1.0 cannot (control characters): show them as U+FFFD.
    return NOT_XML_CHAR.sub("\ufffd", str(value))


def _singular(key: str) -> str:
    if key in UID_LISTS:
        return "uid"
    return SINGULAR.get(key, key[:-1] if key.endswith("s") and len(key) > 1 else key)


def _fill(element: Any, value: Any, key: str, namespace: str | None) -> None:
    tag = (lambda name: f"{{{namespace}}}{name}") if namespace else (lambda name: name)
    if isinstance(value, dict):
        for child_key, child in value.items():
            if child is None:
                continue
            if child_key in XML_ATTRIBUTES and not isinstance(child, (dict, list)):
                element.set("link" if child_key == "href" else child_key, _scalar(child))
            elif isinstance(child, list):
                # A list named like the root (messageConversations) sits directly under it, as the doc shows.
                is_root_list = child_key == etree.QName(element).localname and element.getparent() is None
                wrapper = element if is_root_list else etree.SubElement(element, tag(child_key))
                for item in child:
                    _fill(etree.SubElement(wrapper, tag(_singular(child_key))), item, child_key, namespace)
            else:
                _fill(etree.SubElement(element, tag(child_key)), child, child_key, namespace)
    elif isinstance(value, list):
        for item in value:
            _fill(etree.SubElement(element, tag(_singular(key))), item, key, namespace)
    elif value is not None:
        element.text = _scalar(value)


def to_xml(root: str, body: Any, *, namespace: str | None = DXF_NAMESPACE) -> bytes:
    """Serialise a rendered dict as DHIS2 DXF XML under `root`."""
    nsmap = {None: namespace} if namespace else None
    element = etree.Element(f"{{{namespace}}}{root}" if namespace else root, nsmap=nsmap)
    _fill(element, body, root, namespace)
    return bytes(etree.tostring(element, xml_declaration=True, encoding="UTF-8"))


def respond(
    request: Request,
    body: Any,
    *,
    status_code: int = 200,
    xml_root: str = "response",
    headers: dict[str, str] | None = None,
) -> Response:
    """Answer in JSON, or in XML when the client asked for it."""
    if wants_xml(request):
        return Response(to_xml(xml_root, body), status_code=status_code, media_type=XML_TYPE, headers=headers)
    return Response(dumps(body), status_code=status_code, media_type=JSON_TYPE, headers=headers)


def web_message(
    status_code: int,
    message: str | None = None,
    *,
    error_code: str | None = None,
    response: Any = None,
    dev_message: str | None = None,
) -> dict[str, Any]:
    """A DHIS2 WebMessage body (null fields omitted)."""
    body: dict[str, Any] = {
        "httpStatus": HTTPStatus(status_code).phrase,
        "httpStatusCode": status_code,
        "status": "OK" if status_code < 400 else "ERROR",
    }
    if error_code:
        body["errorCode"] = error_code
    if message is not None:
        body["message"] = message
    if dev_message:
        body["devMessage"] = dev_message
    if response is not None:
        body["response"] = response
    return body


def respond_message(
    request: Request,
    status_code: int,
    message: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Answer with a WebMessage in the negotiated format."""
    return respond(
        request,
        web_message(status_code, message, **extra),
        status_code=status_code,
        xml_root="webMessage",
        headers=headers,
    )


def base_url(request: Request, configured: str | None) -> str:
    """The public base URL: HERALD_BASE_URL when set, else derived from the request."""
    if configured:
        return configured
    return str(request.base_url).rstrip("/")
