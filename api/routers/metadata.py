"""POST /api/metadata: DHIS2 metadata import in one transaction."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.bodies import media_type, parse_json
from api.deps import Body, CtxDep
from api.render import respond_message
from messaging.errors import Conflict, Forbidden, UnsupportedMediaType
from messaging.metadata import MetadataError, import_metadata

router = APIRouter(prefix="/api", tags=["metadata"])
IMPORT_AUTHORITY = "F_METADATA_IMPORT"


@router.post("/metadata")
def post_metadata(ctx: CtxDep, raw: Body) -> Response:
    """Create or update organisation units, roles, users and groups; all or nothing."""
    if not ctx.user.has_any(IMPORT_AUTHORITY):
        raise Forbidden(f"Access is denied, requires one Authority from [{IMPORT_AUTHORITY}]")
    kind = media_type(ctx.request)
    if kind and kind != "application/json":
        raise UnsupportedMediaType(f"Content type '{kind}' not supported")
    payload = parse_json(raw)
    if not isinstance(payload, dict):
        raise Conflict("Metadata payload must be a JSON object.")
    try:
        report = import_metadata(ctx.session, payload, ctx.user)
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
