"""Request-scoped dependencies: the database session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from api.auth import Authenticator
from api.settings import AppSettings
from messaging.directory import Principal


@dataclass
class HeraldState:
    """What the app factory builds once and every request shares."""

    settings: AppSettings
    engine: Engine
    sessions: sessionmaker[Session]
    authenticator: Authenticator


@dataclass
class Ctx:
    """One authenticated request: its session, principal and settings."""

    session: Session
    user: Principal
    settings: AppSettings
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


SessionDep = Annotated[Session, Depends(_session)]
CtxDep = Annotated[Ctx, Depends(_ctx)]
