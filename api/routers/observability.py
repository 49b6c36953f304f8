"""/metrics (Prometheus text) and /health/live, /health/ready: public, nothing sensitive in them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.deps import SessionClosingRoute, state_of
from api.metrics import exposition
from messaging import health

router = APIRouter(tags=["observability"], route_class=SessionClosingRoute)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text: this process's HTTP figures and the fleet's, from the database."""
    state = state_of(request)
    body = await run_in_threadpool(exposition, request.app.state.http_metrics, state.sessions)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/health/live")
def live() -> Response:
    """The process is up and answering."""
    return JSONResponse({"status": "UP"})


@router.get("/health/ready")
def ready(request: Request) -> Response:
    """Ready: database at current migrations, broker reachable, a fresh worker heartbeat; else 503 naming what is not."""
    state = state_of(request)
    settings = state.settings
    heads = getattr(request.app.state, "migration_heads", None)
    if heads is None:
        heads = request.app.state.migration_heads = health.expected_heads(state.engine)
    checks: dict[str, health.Check] = {
        "database": health.database(state.engine, heads),
        "broker": health.broker(settings.broker_url, settings.health_timeout_s),
    }
    with state.sessions() as session:
        checks["workers"] = health.workers(
            session, heartbeat_s=settings.heartbeat_s, in_process=settings.in_process_workers
        )
    failing = [name for name, check in checks.items() if not check.ok]
    body: dict[str, Any] = {
        "status": "DOWN" if failing else "UP",
        "failing": failing,
        "checks": {name: {"ok": check.ok, "detail": check.detail} for name, check in checks.items()},
    }
    return JSONResponse(body, status_code=503 if failing else 200)
