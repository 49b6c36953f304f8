"""One Herald for the read-after-write tests, whose workers start when the test says so.

Three set-ups, the same interface: PostgreSQL with a real Dramatiq worker on Redis, and the
in-process fleet (``workers.runtime.InProcessFleet``, what ``herald serve`` runs without a broker)
on PostgreSQL and on SQLite. Until ``start_workers()`` the outbox events wait, so a test can act
deterministically "before the fan-out"; after it, a test races the real workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from api.app import create_app
from herald.settings import HeraldSettings
from messaging.db import make_engine
from messaging.migrate import upgrade
from messaging.models import Conversation, OutboxEvent, User, UserMessage
from tests.conftest import REDIS_URL, drain_outbox, make_settings, reset_with_demo, serve_app
from tests.support.deliveries import broker_fleet, seed_metadata
from workers.runtime import InProcessFleet, build_runtime

PASSWORD = "district"
GROUP = "GrpRaw00001"  # alice and fatmata (seeded by ``seed_group``)


@dataclass
class Herald:
    """An API on loopback and workers that start on demand."""

    url: str
    engine: Engine
    start: Callable[[], None]
    clients: list[httpx.Client] = field(default_factory=list)
    started: bool = False

    def client(self, user: str = "admin") -> httpx.Client:
        """A client authenticated as a demo user (closed after the test)."""
        client = httpx.Client(base_url=self.url, auth=(user, PASSWORD), timeout=30)
        self.clients.append(client)
        return client

    def start_workers(self) -> None:
        """Let the workers (relay included) carry out the outbox from now on."""
        if not self.started:
            self.start()
            self.started = True

    def fanned_out(self) -> None:
        """Start the workers if need be and wait until every outbox event is done."""
        self.start_workers()
        drain_outbox(self.engine, timeout_s=30.0)

    def participants(self, conversation_uid: str) -> dict[str, tuple[bool, bool]]:
        """username -> (read, followUp) of every participant, straight from the database."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(User.username, UserMessage.read, UserMessage.follow_up)
                .join(UserMessage, UserMessage.user_id == User.id)
                .join(Conversation, Conversation.id == UserMessage.conversation_id)
                .where(Conversation.uid == conversation_uid)
            )
            return {name: (read, follow_up) for name, read, follow_up in rows}

    def pending_events(self) -> int:
        """Outbox events not done yet."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.done_at.is_(None))) or 0)


def seed_group(engine: Engine) -> None:
    """A group of two demo users, alice and fatmata, under a UID of this module's own."""
    seed_metadata(engine, {"userGroups": [
        {"id": GROUP, "name": "Read-after-write", "users": [{"id": "OYLGMiazHtW"}, {"id": "awtnYWiVEd5"}]},
    ]})


@contextmanager
def _uvicorn(settings: HeraldSettings, engine: Engine, on_commit: Callable[[], None] | None) -> Iterator[str]:
    with serve_app(create_app(settings, engine=engine, on_commit=on_commit)) as url:
        yield url


@contextmanager
def in_process_herald(settings: HeraldSettings, engine: Engine) -> Iterator[Herald]:
    """Herald with the in-process fleet, as ``serve`` in conftest.py builds it, started on demand."""
    fleet = InProcessFleet(build_runtime(settings, engine=engine))
    with _uvicorn(settings, engine, fleet.runtime.relay.wake) as url:
        herald = Herald(url=url, engine=engine, start=fleet.start)
        try:
            yield herald
        finally:
            for client in herald.clients:
                client.close()
            if herald.started:
                drain_outbox(engine, timeout_s=30.0)
                fleet.stop()


@contextmanager
def redis_herald(url: str, engine: Engine, namespace: str) -> Iterator[Herald]:
    """Herald's API and a real Dramatiq worker on Redis (started on demand), on PostgreSQL."""
    with broker_fleet(url, engine, REDIS_URL, namespace) as fleet:
        herald = Herald(url=fleet.url, engine=engine, start=fleet.start_worker)
        try:
            yield herald
        finally:
            for client in herald.clients:
                client.close()
            if herald.started:
                drain_outbox(engine, timeout_s=30.0)


@contextmanager
def herald_on(kind: str, *, pg_url: str, pg_engine: Engine, namespace: str, tmp_path: Path) -> Iterator[Herald]:
    """The Herald of one kind ("redis", "in-process-postgresql", "in-process-sqlite") with the demo data."""
    if kind == "in-process-sqlite":
        settings = make_settings(DATABASE_URL=f"sqlite:///{tmp_path}/herald.db")
        engine = make_engine(settings.database_url)
        upgrade(engine)
        try:
            reset_with_demo(engine)
            seed_group(engine)
            with in_process_herald(settings, engine) as herald:
                yield herald
        finally:
            engine.dispose()
        return
    reset_with_demo(pg_engine)
    seed_group(pg_engine)
    if kind == "redis":
        with redis_herald(pg_url, pg_engine, namespace) as herald:
            yield herald
    else:
        with in_process_herald(make_settings(DATABASE_URL=pg_url), pg_engine) as herald:
            yield herald
