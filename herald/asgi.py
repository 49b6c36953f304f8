"""ASGI factory for `uvicorn --factory herald.asgi:create_app_from_env` (the Procfile's web process)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.app import create_app
from herald.settings import load_settings
from messaging.db import make_engine
from workers.runtime import InProcessFleet, build_runtime


def create_app_from_env() -> FastAPI:
    """Build the API from the environment; without BROKER_URL it runs the workers in-process."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # One connection per threadpool thread (AnyIO default: 40), so none is closed and reopened under load.
    engine = make_engine(settings.database_url, pool_size=40)
    if not settings.in_process_workers:
        return create_app(settings, engine=engine)
    fleet = InProcessFleet(build_runtime(settings, engine=engine))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        fleet.start()
        try:
            yield
        finally:
            fleet.stop()

    return create_app(settings, engine=engine, on_commit=fleet.runtime.relay.wake, lifespan=lifespan)
