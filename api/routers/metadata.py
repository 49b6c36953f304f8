"""POST /api/metadata: DHIS2 metadata import in one transaction."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.bodies import MetadataBody
from api.deps import CtxDep, SessionClosingRoute
from api.render import respond_message
from messaging.errors import Conflict, Forbidden
from messaging.metadata import MetadataError, import_metadata

router = APIRouter(prefix="/api", tags=["metadata"], route_class=SessionClosingRoute)
IMPORT_AUTHORITY = "F_METADATA_IMPORT"


@router.post("/metadata")
def post_metadata(ctx: CtxDep, metadata: MetadataBody) -> Response:
    """Create or update organisation units, roles, users and groups; all or nothing."""
    if not ctx.user.has_any(IMPORT_AUTHORITY):
        raise Forbidden(f"Access is denied, requires one Authority from [{IMPORT_AUTHORITY}]")
    try:
        report = import_metadata(ctx.session, metadata.payload(), ctx.user)
    except MetadataError as exc:
        raise Conflict(str(exc)) from None
    if not report.ok:
        ctx.session.rollback()
        return respond_message(
            ctx.request,
            409,
            "One or more errors occurred, please see full details in import report.",
            response=report.as_response(),
        )
    ctx.session.commit()
    return respond_message(ctx.request, 200, None, response=report.as_response())
