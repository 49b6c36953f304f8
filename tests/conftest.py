"""Shared fixtures: this run's own PostgreSQL database and Redis namespace, a live server, SMTP and Twilio stand-ins.

Services are required, never skipped: a missing PostgreSQL or Redis fails the run. Each run
creates its own database (herald_test_<random>) and Redis namespace, so runs never collide.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import redis
import uvicorn
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session

from api.app import create_app
from herald.settings import HeraldSettings, load_settings
from messaging.db import make_engine, make_sessionmaker
from messaging.demo import load_demo
from messaging.migrate import upgrade
from messaging.models import Base
from tests.support.smtp_sink import SmtpSink
from tests.support.twilio_standin import TwilioStandIn
from workers.runtime import InProcessFleet, build_runtime

PG_ADMIN_URL = os.environ.get("HERALD_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("HERALD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
RUN_ID = secrets.token_hex(4)
T = TypeVar("T")


def free_tcp_port() -> int:
    """A TCP port nobody listens on right now (some servers cannot bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], *, timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


@contextmanager
def pg_database(suffix: str = "") -> Iterator[str]:
    """A PostgreSQL database of this run's own (herald_test_<run><suffix>), dropped afterwards."""
    name = f"herald_test_{RUN_ID}{suffix}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the service is required: fail, never skip
        pytest.fail(f"PostgreSQL is required ({PG_ADMIN_URL}): {exc}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def migrated_engine(url: str) -> Iterator[Engine]:
    """An engine on `url`, migrated to head."""
    engine = make_engine(url, pool_size=10)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The run's PostgreSQL database, shared by the API tests and the session's live server."""
    with pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """An engine on the run's database, migrated to head."""
    with migrated_engine(pg_url) as engine:
        yield engine


@pytest.fixture(scope="session")
def worker_pg_url() -> Iterator[str]:
    """A second database for tests that run their own workers.

    The session's live server runs an in-process relay on the main database; on this one no
    other relay competes for outbox events or deliveries.
    """
    with pg_database("_workers") as url:
        yield url


@pytest.fixture(scope="session")
def worker_pg_engine(worker_pg_url: str) -> Iterator[Engine]:
    """An engine on the workers' database, migrated to head."""
    with migrated_engine(worker_pg_url) as engine:
        yield engine


def truncate_all(engine: Engine) -> None:
    """Empty every table (between tests)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="session")
def redis_namespace() -> Iterator[str]:
    """A Redis key namespace of this run's own; its keys are deleted at the end."""
    namespace = f"herald-test-{RUN_ID}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is required ({REDIS_URL}): {exc}")
    yield namespace
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()


def make_settings(**overrides: Any) -> HeraldSettings:
    """Settings for tests, from explicit values only (never the developer's environment)."""
    values = {"DATABASE_URL": "sqlite://", "HERALD_OUTBOX_POLL_S": "0.02", "HERALD_AUTH_CACHE_S": "300"}
    values.update({k: str(v) for k, v in overrides.items()})
    return load_settings(values)


@dataclass
class LiveServer:
    """A real uvicorn server on loopback with Herald and its in-process workers."""

    url: str
    engine: Engine
    settings: HeraldSettings
    fleet: InProcessFleet
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, user: str | None = "admin", password: str = "district", **kwargs: Any) -> httpx.Client:
        """An HTTP client authenticated as `user` (None: anonymous); closed after the test."""
        auth = (user, password) if user else None
        client = httpx.Client(base_url=self.url, auth=auth, timeout=30, **kwargs)
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        """Close every client handed out so far."""
        while self.clients:
            self.clients.pop().close()

    def session(self) -> Session:
        """A database session on the server's database."""
        return make_sessionmaker(self.engine)()


@contextmanager
def serve(settings: HeraldSettings, engine: Engine) -> Iterator[LiveServer]:
    """Run Herald (API + in-process workers) in a thread until the block ends."""
    fleet = InProcessFleet(build_runtime(settings, engine=engine))
    fleet.start()
    app = create_app(settings, engine=engine, on_commit=fleet.runtime.relay.wake)
    try:
        with serve_app(app) as url:
            yield LiveServer(url=url, engine=engine, settings=settings, fleet=fleet)
    finally:
        fleet.stop()


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yields its base URL."""
    port = free_tcp_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def pg_server(pg_url: str, pg_engine: Engine) -> Iterator[LiveServer]:
    """Herald on PostgreSQL with in-process workers, shared by the API tests."""
    with serve(make_settings(DATABASE_URL=pg_url), pg_engine) as live:
        yield live


def drain_outbox(engine: Engine, timeout_s: float = 20.0) -> None:
    """Wait until workers have finished every outbox event (so emptying tables races nothing)."""
    from messaging.models import OutboxEvent

    def idle() -> bool:
        with engine.connect() as conn:
            return not conn.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.done_at.is_(None)))

    wait_until(idle, timeout_s=timeout_s, interval_s=0.02, what="the in-process workers to finish the outbox")


def settle(server: LiveServer) -> None:
    """Wait until the server's in-process worker has carried out every outbox event."""
    drain_outbox(server.engine, timeout_s=10.0)


@pytest.fixture
def drain_outbox_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let the in-process worker finish this test's events before the next test empties the tables.

    Modules that want it name it in ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    yield
    live = request.node.funcargs.get("server") or request.node.funcargs.get("any_server")
    if live is not None:
        settle(live)


def reset_with_demo(target: LiveServer | Engine) -> None:
    """Empty the tables of a server (or engine) and load the demo data."""
    engine = target if isinstance(target, Engine) else target.engine
    if not isinstance(target, Engine):
        drain_outbox(engine)
    truncate_all(engine)
    with make_sessionmaker(engine)() as session:
        load_demo(session)
        session.commit()


@pytest.fixture
def server(pg_server: LiveServer) -> Iterator[LiveServer]:
    """The PostgreSQL server with empty tables and the demo data loaded."""
    reset_with_demo(pg_server)
    yield pg_server
    pg_server.close_clients()
    drain_outbox(pg_server.engine)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Herald on SQLite (the zero-setup default) with in-process workers."""
    path = tmp_path_factory.mktemp("sqlite") / "herald.db"
    settings = make_settings(DATABASE_URL=f"sqlite:///{path}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with serve(settings, engine) as live:
        yield live
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """The demo server on each supported database in turn."""
    live: LiveServer = request.getfixturevalue("pg_server" if request.param == "postgresql" else "sqlite_server")
    reset_with_demo(live)
    yield live
    live.close_clients()
    drain_outbox(live.engine)


@pytest.fixture
def delivery_db(worker_pg_url: str, worker_pg_engine: Engine) -> tuple[str, Engine]:
    """The workers' database with the demo data and the delivery tests' recipients."""
    from tests.support.deliveries import seed_recipients  # that module imports this one

    reset_with_demo(worker_pg_engine)
    seed_recipients(worker_pg_engine)
    return worker_pg_url, worker_pg_engine


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on loopback that keeps every message it accepts."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    """Twilio's Messages API on loopback, answering like Twilio unless scripted."""
    with TwilioStandIn() as standin:
        yield standin
