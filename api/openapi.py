"""The OpenAPI document at /api/openapi.json and Swagger UI at /api/docs, both served offline.

Herald's bodies are parsed by typed_body dependencies (api/bodies.py: bounded JSON, XML, text),
which FastAPI does not see as bodies. This module documents each route's body from the very
BodySpec that parses it (the pydantic models of api/wire.py), so the document cannot drift from
the parser; and the WebMessage every error answers with. Query parameters are documented by
FastAPI from the query models that parse them (api/queries.py). Swagger UI's assets (5.x, which
reads OpenAPI 3.1) come from the `swagger-ui-py` package, never from a CDN.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.responses import FileResponse, HTMLResponse, Response

from api.bodies import JSON_OR_TEXT, BodySpec, body_spec_of
from api.wire import Ref, WebMessage
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


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


TEXT_CONTENT = {"text/plain": {"schema": {"type": "string"}}}


def body_content(spec: BodySpec) -> dict[str, Any]:
    """The requestBody content a BodySpec parses: the model's schema under each media type it reads."""
    if spec.model is None:
        return dict(TEXT_CONTENT)
    content: dict[str, Any] = {"application/json": {"schema": _schema(spec.model)}}
    if spec.xml is not None:
        content["application/xml"] = {"schema": _schema(spec.model)}
    if spec.media == JSON_OR_TEXT:
        content.update(TEXT_CONTENT)
    return content


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, full path, route) of every documented operation, through included routers."""
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path_format
        if isinstance(route, APIRoute) and route.include_in_schema and path:
            for method in route.methods or ():
                yield method.lower(), path, route


def body_specs(route: APIRoute) -> list[BodySpec]:
    """Every typed_body dependency of a route (normally one)."""
    found, stack = [], list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        spec = body_spec_of(dependant.call)
        if spec is not None:
            found.append(spec)
        stack.extend(dependant.dependencies)
    return found


ERROR_STATUSES = ("400", "401", "403", "404", "409", "413", "415", "500")


def _present(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without pydantic's `anyOf [T, null]`: an optional parameter is absent, never null."""
    options = schema.get("anyOf")
    if not options:
        return schema
    typed = [option for option in options if option.get("type") != "null"]
    if len(typed) != 1:
        return schema
    return {**typed[0], **{key: value for key, value in schema.items() if key != "anyOf"}}


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes, description=__doc__)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    bodies: dict[tuple[str, str], BodySpec] = {}
    for method, path, route in api_routes(app):
        for spec in body_specs(route):
            bodies[(method, path)] = spec
    models: set[type[BaseModel]] = {Ref, WebMessage}
    models.update(spec.model for spec in bodies.values() if spec.model is not None)
    for model in sorted(models, key=lambda m: m.__name__):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    error = {"description": "A DHIS2 WebMessage", "content": {"application/json": {"schema": _schema(WebMessage)}}}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            body = bodies.get((method, path))
            if body is not None:
                operation["requestBody"] = {"required": not body.optional, "content": body_content(body)}
            for parameter in operation.get("parameters", ()):
                parameter["schema"] = _present(parameter.get("schema", {}))
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
