"""Shared pieces of the delivery and fan-out tests: recipients with addresses, a live Herald, broker workers.

The delivery tests run on the workers' database (``worker_pg_url``, ``delivery_db`` in conftest.py):
the session's shared server keeps an in-process relay on the main database, and it would carry out
these tests' outbox events with its own settings (no channels) before theirs could.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import uvicorn
from sqlalchemy import Engine, select

from api.app import create_app
from herald.settings import HeraldSettings
from messaging.db import make_sessionmaker
from messaging.directory import set_system_setting, set_user_setting
from messaging.metadata import import_metadata
from messaging.models import Conversation, Delivery, Message, User
from tests.conftest import LiveServer, free_tcp_port, make_settings, serve, wait_until
from tests.support.smtp_sink import SmtpSink
from workers.runtime import Runtime, build_runtime

BASE_URL = "https://herald.example"  # the public URL, as a reverse proxy would serve it
APP_TITLE = "Herald Test"
EMAIL_FROM = "no-reply@herald.example"
FROM_NUMBER = "+15005550006"

# uid -> (username, first name, surname, email, phone, extra)
ANA, BEN, CARA, DAN, EVE, MIA = "UsrAna00001", "UsrBen00001", "UsrCara0001", "UsrDan00001", "UsrEve00001", "UsrMia00001"
RECIPIENTS: dict[str, dict[str, Any]] = {
    ANA: {"username": "ana", "firstName": "Ana", "surname": "Silva", "email": "ana@clinic.example",
          "phoneNumber": "00256 772 100 001"},
    BEN: {"username": "ben", "firstName": "Ben", "surname": "Okello", "email": "ben@clinic.example",
          "phoneNumber": "+256772100002"},
    CARA: {"username": "cara", "firstName": "Cara", "surname": "Mensah", "email": "cara@clinic.example",
           "phoneNumber": "+256772100003"},  # opts out of both (user settings)
    DAN: {"username": "dan", "firstName": "Dan", "surname": "Achieng"},  # no address at all
    EVE: {"username": "eve", "firstName": "Eve", "surname": "Nakato", "email": "eve@clinic.example",
          "phoneNumber": "+256772100005", "disabled": True},
    MIA: {"username": "mia", "firstName": "Mia", "surname": "Kato", "email": "mia@clinic.example",
          "phoneNumber": "+256772100006"},  # a ticket manager (F_MANAGE_TICKETS)
}
PASSWORD = "district"
LOGINS = frozenset({BEN, MIA})
TEST_DEFAULTS = {
    "HERALD_BASE_URL": BASE_URL,
    "HERALD_APP_TITLE": APP_TITLE,
    "HERALD_EMAIL_FROM": EMAIL_FROM,
    "HERALD_RETRY_BASE_S": "0.05",
    "HERALD_RETRY_MAX_S": "0.2",
    "HERALD_SMTP_TIMEOUT_S": "5",
}


def answers_left(sink: SmtpSink, command: str) -> int:
    """How many scripted answers to ``command`` (MAIL, RCPT, DATA) the sink has not given yet.

    SmtpSink has no public accessor for this (yet): it reads the script under the sink's lock.
    """
    with sink._lock:
        return len(sink._scripts[command])


def mails_to(sink: SmtpSink) -> Counter[str]:
    """How many mails each address received."""
    return Counter(rcpt for mail in sink.messages for rcpt in mail.rcpt_tos)


def seed_metadata(engine: Engine, payload: dict[str, Any]) -> None:
    """Import DHIS2 metadata straight into the database (no HTTP); the import must succeed."""
    with make_sessionmaker(engine)() as session:
        report = import_metadata(session, payload)
        assert report.ok, report.as_response()
        session.commit()


def seed_recipients(engine: Engine) -> None:
    """Six users beside the demo ones: addresses, an opt-out, none, a disabled one, a ticket manager."""
    users = [
        {"id": uid, "organisationUnits": [{"id": "ImspTQPwCqd"}],
         "userRoles": [{"id": "RoleMgr0001" if uid == MIA else "Euq3XfEIEbx"}], **fields,
         **({"password": PASSWORD} if uid in LOGINS else {})}  # argon2 is slow: only who logs in
        for uid, fields in RECIPIENTS.items()
    ]
    roles = [{"id": "RoleMgr0001", "name": "Ticket manager", "authorities": ["F_MANAGE_TICKETS"]}]
    seed_metadata(engine, {"userRoles": roles, "users": users})
    with make_sessionmaker(engine)() as session:
        cara = session.scalar(select(User.id).where(User.uid == CARA))
        assert cara is not None
        set_user_setting(session, cara, "keyMessageEmailNotification", False)
        set_user_setting(session, cara, "keyMessageSmsNotification", False)
        session.commit()


def set_system(engine: Engine, key: str, value: Any) -> None:
    """Change a system setting directly."""
    with make_sessionmaker(engine)() as session:
        set_system_setting(session, key, value)
        session.commit()


def post_message(client: httpx.Client, *user_uids: str, subject: str = "Stock report", text: str = "Stock is low.") -> str:
    """Start a conversation with these users; the new conversation's UID."""
    body = {"subject": subject, "text": text, "users": [{"id": uid} for uid in user_uids]}
    response = client.post("/api/messageConversations", json=body)
    assert response.status_code == 201, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


@dataclass(frozen=True)
class Row:
    """A delivery as the tests look at it."""

    id: int
    username: str
    channel: str
    status: str
    address: str | None
    attempts: int
    last_error_code: str | None
    last_error: str | None
    provider_id: str | None
    provider_status: str | None
    message_uid: str
    conversation_uid: str


def deliveries_of(engine: Engine, conversation_uid: str | None = None, channel: str | None = None) -> list[Row]:
    """Every delivery (of one conversation, of one channel), by username."""
    query = (
        select(
            Delivery.id, User.username, Delivery.channel, Delivery.status, Delivery.address, Delivery.attempts,
            Delivery.last_error_code, Delivery.last_error, Delivery.provider_id, Delivery.provider_status,
            Message.uid.label("message_uid"), Conversation.uid.label("conversation_uid"),
        )
        .join(User, User.id == Delivery.user_id)
        .join(Message, Message.id == Delivery.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .order_by(User.username, Delivery.channel, Delivery.id)
    )
    if conversation_uid is not None:
        query = query.where(Conversation.uid == conversation_uid)
    if channel is not None:
        query = query.where(Delivery.channel == channel)
    with engine.connect() as conn:
        return [Row(**row._asdict()) for row in conn.execute(query)]


def by_user(rows: list[Row]) -> dict[str, Row]:
    """Rows keyed by username (one channel)."""
    return {row.username: row for row in rows}


def settled(engine: Engine, conversation_uid: str, *, count: int, timeout_s: float = 15.0,
            channel: str | None = None, final: frozenset[str] = frozenset({"SENT", "DEAD", "SKIPPED", "UNKNOWN"})) -> dict[str, Row]:
    """Wait until the conversation has ``count`` deliveries, all in a final state; return them by username."""

    def check() -> dict[str, Row] | None:
        rows = deliveries_of(engine, conversation_uid, channel)
        if len(rows) == count and all(row.status in final for row in rows):
            return by_user(rows)
        return None

    found: dict[str, Row] = wait_until(check, timeout_s=timeout_s, what=f"{count} settled deliveries")
    return found


@contextmanager
def herald(url: str, engine: Engine, **overrides: Any) -> Iterator[LiveServer]:
    """Herald on PostgreSQL with in-process workers and the tests' delivery settings."""
    settings = make_settings(DATABASE_URL=url, **{**TEST_DEFAULTS, **overrides})
    with serve(settings, engine) as live:
        try:
            yield live
        finally:
            live.close_clients()


@dataclass
class Fleet:
    """An API without workers, and a worker runtime on a real broker, started on demand."""

    url: str
    engine: Engine
    settings: HeraldSettings
    runtime: Runtime
    worker: dramatiq.Worker | None = None

    def client(self, user: str = "admin") -> httpx.Client:
        """An authenticated client (close it)."""
        return httpx.Client(base_url=self.url, auth=(user, PASSWORD), timeout=30)

    def start_worker(self, threads: int = 4) -> None:
        """Start a real Dramatiq worker (its relays and delivery host start with it)."""
        self.worker = dramatiq.Worker(self.runtime.broker, worker_threads=threads, worker_timeout=100)
        self.worker.start()

    def stop_worker(self) -> None:
        """Stop the worker."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def worker_env(self) -> dict[str, str]:
        """The environment for a `herald worker` subprocess with these settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "BROKER_", "DATABASE_", "SMTP_", "TWILIO_"))}
        for name, field in HeraldSettings.model_fields.items():
            value = getattr(self.settings, name)
            alias = field.validation_alias
            key = str(alias.choices[0]) if alias is not None and hasattr(alias, "choices") else None
            if key is None or value is None or key == "HERALD_APPS_DIR":
                continue
            env[key] = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        return env


@contextmanager
def broker_fleet(url: str, engine: Engine, broker_url: str, namespace: str, **values: Any) -> Iterator[Fleet]:
    """An API and a (not yet started) worker runtime on the given broker, with these settings only."""
    settings = make_settings(
        DATABASE_URL=url, BROKER_URL=broker_url, HERALD_BROKER_NAMESPACE=namespace, HERALD_OUTBOX_STALE_S="1", **values
    )
    runtime = build_runtime(settings, engine=engine)
    runtime.broker.flush_all()
    app = create_app(settings, engine=engine)
    port = free_tcp_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn")
    fleet = Fleet(url=f"http://127.0.0.1:{port}", engine=engine, settings=settings, runtime=runtime)
    try:
        yield fleet
    finally:
        fleet.stop_worker()
        runtime.relay.stop()
        if runtime.deliveries is not None:
            runtime.deliveries.relay.stop()
        runtime.broker.flush_all()
        runtime.broker.close()
        server.should_exit = True
        thread.join(10)


@contextmanager
def redis_fleet(url: str, engine: Engine, broker_url: str, namespace: str, **overrides: Any) -> Iterator[Fleet]:
    """An API and a (not yet started) worker runtime on Redis, with the tests' delivery settings."""
    with broker_fleet(url, engine, broker_url, namespace, **{**TEST_DEFAULTS, **overrides}) as fleet:
        yield fleet


def worker_process(env: dict[str, str], log_path: Path, threads: int = 2) -> subprocess.Popen[bytes]:
    """A `herald worker` process (one Dramatiq process) in its own session, so it can be killed whole.

    Its log goes to ``log_path`` (pytest's tmp_path keeps it for a failed test).
    """
    command = [sys.executable, "-m", "herald.cli", "worker", "--processes", "1", "--threads", str(threads)]
    with log_path.open("ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)

