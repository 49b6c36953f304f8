"""GET /api/ops/workers: every worker process, its heartbeat and the jobs it is running (authority ALL)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from api.deps import CtxDep, SessionClosingRoute
from api.render import respond
from messaging import heartbeats
from messaging.errors import Forbidden

router = APIRouter(prefix="/api/ops", tags=["operations"], route_class=SessionClosingRoute)


@router.get("/workers")
def workers(ctx: CtxDep) -> Response:
    """The workers seen lately, each with ``fresh`` (heartbeat within three periods) and its current jobs."""
    if not ctx.user.is_super:
        raise Forbidden("Only users with authority ALL may see the workers.")
    views = heartbeats.list_workers(ctx.session, heartbeat_s=ctx.settings.heartbeat_s)
    body: list[dict[str, Any]] = [
        {
            "id": w.id,
            "hostname": w.hostname,
            "pid": w.pid,
            "kind": w.kind,
            "queues": w.queues,
            "startedAt": w.started_at,
            "lastSeen": w.last_seen,
            "fresh": w.fresh,
            "current": w.current,
        }
        for w in views
    ]
    return respond(ctx.request, {"workers": body}, xml_root="workers")
