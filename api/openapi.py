"""The OpenAPI document at /api/openapi.json and Swagger UI at /api/docs, both served offline.

Herald's handlers read most bodies raw (JSON or XML by content type, text for replies), so
FastAPI cannot see them. This module adds what the handlers accept to the generated document:
request bodies (from the pydantic wire models below), DHIS2's list parameters, and the
WebMessage every error answers with. Swagger UI's assets (5.x, which reads OpenAPI 3.1) come
from the `swagger-ui-py` package, never from a CDN.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import FileResponse, HTMLResponse, Response

from messaging.errors import NotFound

DOCS_PATH = "/api/docs"
OPENAPI_PATH = "/api/openapi.json"
ASSETS_PATH = "/api/docs/assets"

def _assets_dir() -> Path:
    """swagger-ui-py's static folder, found without importing the package (it pulls in its framework glue)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: pip install -e . installs it")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


ASSETS_DIR = _assets_dir()
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "oauth2-redirect.html"})


class Ref(BaseModel):
    """A reference to a DHIS2 object by id."""

    id: str = Field(examples=["OYLGMiazHtW"])


class MessageDraft(BaseModel):
    """A new conversation (DHIS2's `message`); recipients as references, attachments as ids or references."""

    model_config = ConfigDict(json_schema_extra={"xml": {"name": "message"}})
    subject: str = Field(examples=["Stock of vaccines"])
    text: str = Field(examples=["Please confirm this month's stock."])
    users: list[Ref] = []
    userGroups: list[Ref] = []
    organisationUnits: list[Ref] = []
    attachments: list[str | Ref] = []


class Recipients(BaseModel):
    """Recipients to add to a conversation."""

    users: list[Ref] = []
    userGroups: list[Ref] = []
    organisationUnits: list[Ref] = []


class Feedback(BaseModel):
    """A ticket to the feedback recipients (`subject` may also come as a parameter)."""

    subject: str | None = None
    text: str


class Login(BaseModel):
    """The app platform's login body."""

    username: str
    password: str


class WebMessage(BaseModel):
    """DHIS2's answer to every error (and to some successes)."""

    httpStatus: str = Field(examples=["Bad Request"])
    httpStatusCode: int = Field(examples=[400])
    status: str = Field(examples=["ERROR"])
    message: str


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


UID_ARRAY = {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]{10}$"}}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/messageConversations"): {
        "application/json": {"schema": _schema(MessageDraft)},
        "application/xml": {"schema": _schema(MessageDraft)},
    },
    ("post", "/api/messageConversations/{uid}"): TEXT,
    ("post", "/api/messageConversations/{uid}/recipients"): {
        "application/json": {"schema": _schema(Recipients)},
        "application/xml": {"schema": _schema(Recipients)},
    },
    ("post", "/api/messageConversations/feedback"): {"application/json": {"schema": _schema(Feedback)}, **TEXT},
    ("post", "/api/auth/login"): {"application/json": {"schema": _schema(Login)}},
    ("post", "/api/metadata"): {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    ("post", "/api/userSettings/{key}"): TEXT,
    ("post", "/api/systemSettings/{key}"): TEXT,
    ("post", "/api/configuration/feedbackRecipients"): {"application/json": {"schema": _schema(Ref)}, **TEXT},
    ("post", "/api/validationResults"): {
        "application/json": {"schema": {"oneOf": [
            {"type": "array", "items": {"type": "object"}},
            {"type": "object", "properties": {"validationResults": {"type": "array", "items": {"type": "object"}}}},
        ]}},
    },
    **{
        ("post", f"/api/ops/deliveries/{action}"): {"application/json": {"schema": {
            "type": "object",
            "properties": {"ids": {"type": "array", "items": {"type": "integer"}}, "query": {"type": "object"}},
        }}}
        for action in ("retry", "discard")
    },
    **{
        ("post", f"/api/messageConversations/{action}"): {"application/json": {"schema": UID_ARRAY}}
        for action in ("read", "unread", "followup", "unfollowup")
    },
}
LISTS = ("/api/messageConversations", "/api/users", "/api/userGroups", "/api/organisationUnits", "/api/deliveries")
LIST_PARAMETERS = [
    ("fields", "DHIS2 field selection, e.g. id,displayName,messages[text]", {"type": "string"}),
    ("filter", "property:operator:value, repeatable", {"type": "array", "items": {"type": "string"}}),
    ("order", "property:asc|desc|iasc|idesc", {"type": "string"}),
    ("rootJunction", "AND or OR", {"type": "string", "enum": ["AND", "OR"]}),
    ("page", "page number, from 1", {"type": "integer", "minimum": 1}),
    ("pageSize", "items per page", {"type": "integer", "minimum": 1}),
    ("paging", "false for every item", {"type": "boolean"}),
]
ERROR_STATUSES = ("400", "401", "403", "404", "409", "413", "415", "500")


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes, description=__doc__)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (Ref, MessageDraft, Recipients, Feedback, Login, WebMessage):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    error = {"description": "A DHIS2 WebMessage", "content": {"application/json": {"schema": _schema(WebMessage)}}}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            content = BODIES.get((method, path))
            if content is not None:
                operation["requestBody"] = {"required": True, "content": content}
            if method == "get" and path in LISTS:
                names = {p["name"] for p in operation.setdefault("parameters", [])}
                operation["parameters"] += [
                    {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
                    for name, text, schema in LIST_PARAMETERS
                    if name not in names
                ]
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # validation errors answer 400 WebMessages here
            for status in ERROR_STATUSES:
                responses.setdefault(status, error)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return doc


router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
def swagger_ui() -> HTMLResponse:
    """Swagger UI on Herald's document, its assets served by Herald."""
    return get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="Herald API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        oauth2_redirect_url=f"{ASSETS_PATH}/oauth2-redirect.html",
    )


@router.get(ASSETS_PATH + "/{name}")
def swagger_asset(name: str) -> Response:
    """One of Swagger UI's files, from the swagger-ui-py package."""
    if name not in ASSETS:
        raise NotFound(f"No such documentation asset: {name}")
    return FileResponse(ASSETS_DIR / name, headers={"Cache-Control": "public, max-age=86400"})


def install(app: FastAPI) -> None:
    """Serve /api/docs and its assets, and the completed document at /api/openapi.json."""
    app.include_router(router)
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(_document(app))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
