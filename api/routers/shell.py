"""What the DHIS2 header bar asks besides the API proper: the app menu, the logo, and `/`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.render import base_url, respond
from api.routers.apps import home_path, root_path
from messaging import apps
from messaging.errors import NotFound

router = APIRouter(tags=["shell"], route_class=SessionClosingRoute)
DESCRIPTION_CHARS = 80  # DHIS2 cuts module descriptions here
CUSTOM_LOGOS = frozenset({"logo_banner", "logo_front"})
NO_APP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald</title></head>
<body><h1>Herald</h1>
<p>No web app is installed yet. Install the DHIS2 messaging app with
<code>herald apps install messaging-100.0.47.zip</code> (see docs/messaging-app.md).</p>
<p>The API is at <a href="api/docs">api/docs</a>.</p></body></html>
"""


def app_authority(app: apps.InstalledApp) -> str:
    """The authority that shows an app in a user's menu (DHIS2: M_dhis-web-x for core apps)."""
    return f"M_dhis-web-{app.short_name}" if app.core_app else f"M_{app.key}"


def _icon(app: apps.InstalledApp, base: str) -> str | None:
    icons = app.manifest.get("icons")
    if not isinstance(icons, dict):
        return None
    for size in ("48", "128", "16"):
        icon = icons.get(size)
        if isinstance(icon, str) and icon and "://" not in icon:
            return base + app.launch_path + icon.lstrip("/")
    return None


def module_dict(app: apps.InstalledApp, base: str) -> dict[str, Any]:
    """An app as an entry of the header bar's app menu (absolute links)."""
    description = app.manifest.get("description")
    name = f"dhis-web-{app.short_name}" if app.core_app else app.key
    module = {
        "name": name,
        "namespace": base + app.launch_path.rstrip("/"),
        "defaultAction": base + app.launch_path,
        "displayName": app.name,
        "icon": _icon(app, base),
        "description": description[:DESCRIPTION_CHARS] if isinstance(description, str) else "",
    }
    return {key: value for key, value in module.items() if value is not None}  # DHIS2 omits nulls


def _modules(ctx: Ctx) -> Response:
    base = base_url(ctx.request, ctx.settings.base_url)
    visible = [
        app for app in apps.list_apps(ctx.settings.apps_dir) if ctx.user.has_any(app_authority(app))
    ]
    return respond(ctx.request, {"modules": [module_dict(app, base) for app in visible]}, xml_root="modules")


@router.get("/dhis-web-commons/menu/getModules.action")
def get_modules(ctx: CtxDep) -> Response:
    """The installed apps the caller may open (ALL sees all; others need the app's M_ authority)."""
    return _modules(ctx)


@router.get("/api/apps/menu")
def apps_menu(ctx: CtxDep) -> Response:
    """The same menu at DHIS2's newer address."""
    return _modules(ctx)


@router.get("/api/staticContent/{key}")
def static_content(key: str) -> Response:
    """Custom logos (public): Herald has none, so the header bar shows the DHIS2 logo."""
    if key in CUSTOM_LOGOS:
        raise NotFound("No custom file found.")
    raise NotFound(f"Key does not exist: {key}")


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    """The landing page: the messaging app when installed, else a note on how to install it."""
    target = home_path(request)
    if target != root_path(request) + "/":
        return RedirectResponse(target, status_code=302)
    return HTMLResponse(NO_APP_PAGE)
