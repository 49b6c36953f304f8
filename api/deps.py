"""Request-scoped dependencies: the database session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from api.auth import Authenticator
from messaging.directory import Principal
from messaging.settings import Settings

T = TypeVar("T")


@dataclass
class HeraldState:
    """What the app factory builds once and every request shares."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    authenticator: Authenticator


@dataclass
class Ctx:
    """One authenticated request: its session, principal and settings."""

    session: Session
    user: Principal
    settings: Settings
    request: Request


def state_of(request: Request) -> HeraldState:
    """The HeraldState of the app serving this request."""
    state: HeraldState = request.app.state.herald
    return state


def _session(request: Request) -> Iterator[Session]:
    with state_of(request).sessions() as session:
        yield session


def _ctx(request: Request) -> Iterator[Ctx]:
    # One dependency (one thread hop) opens the session and authenticates on it.
    state = state_of(request)
    with state.sessions() as session:
        user = state.authenticator.authenticate(session, request)
        yield Ctx(session=session, user=user, settings=state.settings, request=request)


def _run_authenticated(request: Request, work: Callable[[Ctx], T]) -> T:
    state = state_of(request)
    with state.sessions() as session:
        user = state.authenticator.authenticate(session, request)
        return work(Ctx(session=session, user=user, settings=state.settings, request=request))


async def authenticated(request: Request, work: Callable[[Ctx], T]) -> T:
    """Authenticate and run `work` on one session in ONE threadpool hop; the session closes before the answer.

    CtxDep costs three hops per request (open and authenticate, the handler, the teardown);
    each hop is a thread handoff and an event-loop wake-up, about a sixth of the event loop's
    time on the POST path (issue 12). `work` must commit itself, as every handler does.
    """
    return await run_in_threadpool(_run_authenticated, request, work)


SessionDep = Annotated[Session, Depends(_session)]
CtxDep = Annotated[Ctx, Depends(_ctx)]


async def _raw_body(request: Request) -> bytes:
    """The request body, read on the event loop before a sync handler runs in the threadpool."""
    return await request.body()


Body = Annotated[bytes, Depends(_raw_body)]
