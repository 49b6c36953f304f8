"""The FastAPI application factory: the composition root of the HTTP edge."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine, event
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from api import openapi, queries
from api import sessions as web_sessions
from api.auth import Authenticator, login_limits
from api.deps import HeraldState
from api.metrics import HttpMetrics, MetricsMiddleware
from api.middleware import ApiPathMiddleware, BodyLimitMiddleware, UnexpectedErrorMiddleware
from api.render import respond_message
from api.request_id import RequestIdMiddleware
from api.routers import apps, auth, directory, file_resources, message_conversations, metadata, settings, shell, system
from api.routers import deliveries as delivery_routes
from api.routers import observability as observability_routes
from api.routers import ops as ops_routes
from api.routers import ops_workers as ops_worker_routes
from api.routers import tickets as ticket_routes
from api.routers import validation_results as validation_result_routes
from api.routers import validation_rules as validation_rule_routes
from api.security_headers import SecurityHeadersMiddleware
from api.settings import AppSettings
from api.trusted_host import TrustedHostMiddleware
from messaging.attachments import MAX_ATTACHMENT_BYTES
from messaging.db import make_engine, make_sessionmaker
from messaging.errors import HeraldError, Unauthorized

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and part headers around an uploaded file


def create_app(
    config: AppSettings,
    *,
    engine: Engine | None = None,
    on_commit: Callable[[], None] | None = None,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """Build the API for these settings.

    `engine`: share the caller's engine. `on_commit`: called after every commit (the in-process
    relay wakes up at once instead of at its next poll). `lifespan`: start and stop what the
    composition root runs beside the app.
    """
    engine = engine or make_engine(config.database_url)
    app = FastAPI(
        title="Herald",
        version="0.1.0",
        docs_url=None,  # api/openapi.py serves Swagger UI with its own, offline assets
        openapi_url=openapi.OPENAPI_PATH,
        redoc_url=None,
        lifespan=lifespan,
        # Herald's observability is its own (Prometheus, request-id logs: docs/operations.md). FastAPI's
        # OpenTelemetry hooks, on by default, look the global providers up in the environment on
        # every request: 2.5% of a POST's CPU (issue 12) for spans nobody collects.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    sessions = make_sessionmaker(engine)
    if on_commit is not None:
        event.listen(sessions, "after_commit", lambda _session: on_commit())
    app.state.herald = HeraldState(
        settings=config,
        engine=engine,
        sessions=sessions,
        authenticator=Authenticator(cache_s=config.auth_cache_s, limits=login_limits(config)),
    )
    web_sessions.install(app.state.herald)
    # Order matters: tickets and file_resources claim /feedback, /attachments and /{uid}/assign before
    # message_conversations' /{uid} and /{uid}/{user}; shell and auth claim /dhis-web-commons* before apps.
    for module in (
        ticket_routes, file_resources, message_conversations, directory, settings, metadata, system, auth, shell, apps,
        delivery_routes, ops_routes, observability_routes, ops_worker_routes, validation_result_routes,
        validation_rule_routes,
    ):
        app.include_router(module.router)
    openapi.install(app)
    _install_error_handlers(app)
    upload_limit = MAX_ATTACHMENT_BYTES + UPLOAD_OVERHEAD_BYTES
    limits = {
        "/api/apps": config.max_app_bytes + UPLOAD_OVERHEAD_BYTES,
        "/api/fileResources": upload_limit,
        "/api/messageConversations/attachments": upload_limit,
        "/api/validationResults": config.validation_max_body_bytes,
    }
    # Outermost first: paths are rewritten before the body limit picks its limit.
    app.state.http_metrics = HttpMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.http_metrics)  # innermost: sees the matched route
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes, limits=limits)
    app.add_middleware(ApiPathMiddleware)
    app.add_middleware(TrustedHostMiddleware, settings=config)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(UnexpectedErrorMiddleware)  # catches the inner middlewares' errors too
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer, a 500 included, carries the request id
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HeraldError)
    async def herald_error(request: Request, exc: HeraldError) -> Response:
        headers = getattr(exc, "headers", None)
        browser = "x-requested-with" in request.headers or web_sessions.SESSION_COOKIE in request.cookies
        if isinstance(exc, Unauthorized) and not browser:
            # Browsers (the DHIS2 apps' XHR, a session's download links) must not get the native credential prompt.
            headers = {"WWW-Authenticate": 'Basic realm="DHIS2"'}
        return respond_message(
            request, exc.status, exc.message, headers=headers, error_code=exc.error_code, response=exc.response
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # Query models (api/queries.py) carry DHIS2's text; anything else names the parameter.
        return respond_message(request, 400, queries.error_text(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return respond_message(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
