"""/api/system/info and friends: what clients ask before anything else."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import PlainTextResponse, Response

from api.deps import CtxDep, SessionClosingRoute
from api.render import base_url, respond
from messaging.models import utcnow

router = APIRouter(prefix="/api", tags=["system"], route_class=SessionClosingRoute)
DHIS2_VERSION = "2.42.0"  # the app platform derives /api/{minor}/ from this
HERALD_REVISION = "herald-0.1.0"


@router.get("/system/info")
def system_info(ctx: CtxDep) -> Response:
    """Server version and clock (authenticated, as DHIS2: a 401 here starts the app's login)."""
    return respond(
        ctx.request,
        {
            "version": DHIS2_VERSION,
            "revision": HERALD_REVISION,
            "serverDate": utcnow(),
            "serverTimeZoneId": "UTC",
            "contextPath": base_url(ctx.request, ctx.settings.base_url),
            "systemName": "Herald",
            "calendar": "iso8601",
            "dateFormat": "yyyy-mm-dd",
        },
        xml_root="systemInfo",
    )


@router.get("/system/ping")
def ping() -> Response:
    """Liveness (public)."""
    return PlainTextResponse("pong")
