"""/api/apps and the installed DHIS2 web apps' files.

Installing and removing apps needs `ALL` or `M_dhis-web-app-management`. The apps' files are
public, as in DHIS2 (the login screen is part of them); the API behind them is not. A core app
is served at /dhis-web-{short_name}/, any other at /api/apps/{key}/. Their `index.html` gets
the `__DHIS2_BASE_URL__` placeholder replaced by Herald's absolute base URL, so an app finds
the API wherever it is served (also behind a path prefix).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from api.deps import Ctx, CtxDep, SessionClosingRoute, state_of
from api.queries import AppsParams
from api.render import base_url, respond
from messaging import apps
from messaging.errors import BadRequest, Forbidden, NotFound

router = APIRouter(tags=["apps"], route_class=SessionClosingRoute)
APP_MANAGEMENT = "M_dhis-web-app-management"
REWRITTEN_PAGES = frozenset({"index.html", "plugin.html"})  # the pages DHIS2 rewrites too
PREFERRED_HOME = "messaging"


def _require_app_manager(ctx: Ctx) -> None:
    if not ctx.user.has_any(APP_MANAGEMENT):
        raise Forbidden(f"Access is denied, requires one Authority from [{APP_MANAGEMENT}]")


def root_path(request: Request) -> str:
    """The path prefix Herald is mounted under ("" at the root)."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def home_path(request: Request) -> str:
    """Where a browser lands after login: the messaging app if installed, else the first core app, else /."""
    installed = [app for app in apps.list_apps(state_of(request).settings.apps_dir) if app.core_app]
    installed.sort(key=lambda app: app.key != PREFERRED_HOME)
    return root_path(request) + (installed[0].launch_path if installed else "/")


def app_dict(app: apps.InstalledApp, base: str) -> dict[str, Any]:
    """An installed app as DHIS2's GET /api/apps lists it."""
    manifest = app.manifest
    description = manifest.get("description")
    return {
        "key": app.key,
        "name": app.name,
        "shortName": app.short_name,
        "version": app.version,
        "description": description if isinstance(description, str) else "",
        "appType": "APP",
        "appState": "OK",
        "coreApp": app.core_app,
        "isBundledApp": False,
        "folderName": app.key,
        "baseUrl": base + app.launch_path.rstrip("/"),
        "launchUrl": base + app.launch_path,
        "launch_path": manifest.get("launch_path", "index.html"),
        "default_locale": manifest.get("default_locale", "en"),
        "icons": manifest.get("icons") if isinstance(manifest.get("icons"), dict) else {},
        "developer": manifest.get("developer") if isinstance(manifest.get("developer"), dict) else {},
        "activities": manifest.get("activities") if isinstance(manifest.get("activities"), dict) else {},
    }


@router.get("/api/apps")
def list_installed_apps(ctx: CtxDep, query: AppsParams) -> Response:
    """The installed apps (a JSON array, as DHIS2); `key=` picks one."""
    installed = apps.list_apps(ctx.settings.apps_dir)
    if query.key is not None:
        installed = [app for app in installed if app.key == query.key]
        if not installed:
            raise NotFound(f"App does not exist: {query.key}")
    base = base_url(ctx.request, ctx.settings.base_url)
    return respond(ctx.request, [app_dict(app, base) for app in installed], xml_root="apps")


@router.post("/api/apps", status_code=204)
def install_app(ctx: CtxDep, file: Annotated[UploadFile | None, File()] = None) -> Response:
    """Install (or replace) an app from an App Hub zip in the multipart field `file`; 204 as DHIS2."""
    _require_app_manager(ctx)
    if file is None:
        raise BadRequest("Required request part 'file' is not present")
    apps.install_zip(file.file, ctx.settings.apps_dir, max_bytes=ctx.settings.max_app_bytes)
    return Response(status_code=204)


@router.delete("/api/apps/{key}", status_code=204)
def uninstall_app(ctx: CtxDep, key: str) -> Response:
    """Remove an installed app; 404 when there is none."""
    _require_app_manager(ctx)
    if not apps.delete_app(ctx.settings.apps_dir, key):
        raise NotFound(f"App does not exist: {key}")
    return Response(status_code=204)


def _redirect_to_folder(request: Request) -> Response:
    # Relative asset links in index.html only resolve against the folder, trailing slash included.
    target = request.url.path + "/"  # the ASGI path already carries any root_path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(target, status_code=301)


def _serve(request: Request, app: apps.InstalledApp | None, relative: str) -> Response:
    if app is None:
        raise NotFound("App not found.")
    found = apps.resolve_asset(app, relative)
    if found is None:
        raise NotFound(f"No such file in app '{app.key}': {relative or 'index.html'}")
    name = found.relative_to(app.path.resolve()).as_posix()
    headers = {"Cache-Control": apps.cache_control_for(name), "X-Content-Type-Options": "nosniff"}
    if found.name in REWRITTEN_PAGES:
        settings = state_of(request).settings
        page = apps.render_index(app, found.read_bytes(), base_url(request, settings.base_url))
        headers["Cache-Control"] = apps.NO_CACHE  # it names the current hashed assets
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)
    return FileResponse(found, media_type=apps.content_type_for(found), headers=headers)


@router.api_route("/dhis-web-{short_name}", methods=["GET", "HEAD"], include_in_schema=False)
def core_app_folder(request: Request, short_name: str) -> Response:
    """/dhis-web-x redirects to /dhis-web-x/ (relative asset links need the slash)."""
    if apps.find_by_launch_prefix(state_of(request).settings.apps_dir, short_name) is None:
        raise NotFound("App not found.")
    return _redirect_to_folder(request)


@router.api_route("/dhis-web-{short_name}/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
def core_app_file(request: Request, short_name: str, path: str) -> Response:
    """A file of a core app; the folder itself serves index.html."""
    return _serve(request, apps.find_by_launch_prefix(state_of(request).settings.apps_dir, short_name), path)


@router.api_route("/api/apps/{key}", methods=["GET", "HEAD"], include_in_schema=False)
def app_folder(request: Request, key: str) -> Response:
    """/api/apps/x redirects to /api/apps/x/."""
    if apps.get_app(state_of(request).settings.apps_dir, key) is None:
        raise NotFound(f"App '{key}' not found.")
    return _redirect_to_folder(request)


@router.api_route("/api/apps/{key}/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
def app_file(request: Request, key: str, path: str) -> Response:
    """A file of an app served under /api/apps/ (any app, core ones too, as DHIS2)."""
    suffix = request.scope.get("herald.format")
    if suffix:  # the API path middleware took ".json"/".xml" off the name; a file needs it back
        path = f"{path}.{suffix}"
    return _serve(request, apps.get_app(state_of(request).settings.apps_dir, key), path)
