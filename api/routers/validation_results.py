"""/api/validationResults and /api/validation/sendNotifications (DECISIONS #18, #21).

POST stores the results at once and answers an import summary; their notification happens in
the workers, through the outbox event staged in the same transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from api import fields
from api.bodies import ResultsBody
from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.params import small_int
from api.queries import FieldsParams, FilterParams, ListParams
from api.render import base_url, respond, respond_message
from api.routers.validation_rules import listing, where_and_orders
from messaging.errors import Forbidden, NotFound
from messaging.validation import ingestion, reading
from messaging.validation.models import ValidationResult

router = APIRouter(prefix="/api", tags=["validation"], route_class=SessionClosingRoute)
RUN_VALIDATION = "F_RUN_VALIDATION"
PERFORM_MAINTENANCE = "F_PERFORM_MAINTENANCE"
RESULT_FIELDS = "*"  # DHIS2's ValidationResultController answers every field by default
# DHIS2's WebMessageUtils.importSummary texts.
IMPORT_MESSAGES = {
    "SUCCESS": (200, "Import was successful."),
    "WARNING": (409, "One more conflicts encountered, please check import summary."),
    "ERROR": (409, "An error occurred, please check import summary."),
}


def _require(ctx: Ctx, authority: str) -> None:
    if not ctx.user.has_any(authority):
        raise Forbidden(f"Access is denied, requires one Authority from [{authority}]")


async def _maintainer(ctx: CtxDep) -> Ctx:
    # A dependency, so a caller without the authority gets the 403 before any query parameter's 400.
    _require(ctx, PERFORM_MAINTENANCE)
    return ctx


MaintainerCtx = Annotated[Ctx, Depends(_maintainer)]


@router.post("/validationResults")
def post_results(ctx: CtxDep, results: ResultsBody) -> Response:
    """Store validation results once each and answer an import summary; notification follows in the workers."""
    _require(ctx, RUN_VALIDATION)
    summary = ingestion.store_results(ctx.session, results.entries)
    ctx.session.commit()
    status_code, message = IMPORT_MESSAGES[summary.status]
    return respond_message(ctx.request, status_code, message, response=summary.as_response())


def _id(raw: str) -> int:
    value = small_int(raw, max_digits=18)
    if value is None:
        raise NotFound(f"ValidationResult with id {raw[:40]} could not be found.", error_code="E1005")
    return value


@router.get("/validationResults")
def list_results(ctx: CtxDep, query: ListParams) -> Response:
    """Stored results, with fields, filter (notificationSent, organisationUnit, period, validationRule, created) and paging."""
    where, orders = where_and_orders(query, reading.RESULT_PROPS)
    total, rows = reading.page(
        ctx.session, reading.results_select(where), [*orders, ValidationResult.id],
        size=query.page_size if query.paging else None, number=query.page,
    )
    base = base_url(ctx.request, ctx.settings.base_url)
    return listing(
        ctx, "validationResults", rows, total, query, lambda row: reading.result_dict(row, base), default_fields=RESULT_FIELDS
    )


@router.get("/validationResults/{result_id}")
def get_result(ctx: CtxDep, result_id: str, query: FieldsParams) -> Response:
    """One stored result."""
    row = reading.result_by_id(ctx.session, _id(result_id))
    if row is None:
        raise NotFound(f"ValidationResult with id {result_id} could not be found.", error_code="E1005")
    body: dict[str, Any] = reading.result_dict(row, base_url(ctx.request, ctx.settings.base_url))
    return respond(ctx.request, fields.render(body, query.spec("*")), xml_root="validationResult")


@router.delete("/validationResults/{result_id}", status_code=204)
def delete_result(ctx: CtxDep, result_id: str) -> Response:
    """Delete one stored result (F_PERFORM_MAINTENANCE, as DHIS2)."""
    _require(ctx, PERFORM_MAINTENANCE)
    deleted = reading.delete_results(ctx.session, ValidationResult.id == _id(result_id))
    if not deleted:
        raise NotFound(f"ValidationResult with id {result_id} could not be found.", error_code="E1005")
    ctx.session.commit()
    return Response(status_code=204)


@router.delete("/validationResults", status_code=204)
def delete_results(ctx: MaintainerCtx, query: FilterParams) -> Response:
    """Delete the stored results the filters match (all of them without a filter)."""
    where, _ = where_and_orders(query, reading.RESULT_PROPS)
    reading.delete_results(ctx.session, where)
    ctx.session.commit()
    return Response(status_code=204)


@router.put("/validation/sendNotifications", operation_id="put_validation_send_notifications")
@router.post("/validation/sendNotifications", operation_id="post_validation_send_notifications")
def send_notifications(ctx: CtxDep) -> Response:
    """Notify every stored result not yet notified; answers a job report at once (DHIS2's jobConfigurationReport)."""
    _require(ctx, RUN_VALIDATION)
    job = ingestion.stage_notification(ctx.session, None)
    ctx.session.commit()
    name = "VALIDATION_RESULTS_NOTIFICATION"
    response = {"responseType": "JobConfigurationWebMessageResponse", "name": name, "id": job, "jobType": name,
                "relativeNotifierEndpoint": f"/api/system/tasks/{name}/{job}"}
    return respond_message(
        ctx.request, 200, f"Initiated {name}", response=response, headers={"Location": f"/system/tasks/{name}"}
    )
