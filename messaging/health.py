"""Readiness checks: the database and its migrations, the broker, the workers. Each answers ok or why not.

The answers name the failing part and the kind of failure only: no URLs, hosts or credentials,
since ``/health/ready`` is public.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pika
import redis
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from messaging import heartbeats
from messaging.migrate import alembic_config


@dataclass(frozen=True, slots=True)
class Check:
    """One part's verdict: ``detail`` says what was found (why not, when not ok)."""

    ok: bool
    detail: str


def expected_heads(engine: Engine) -> set[str]:
    """The migration heads this code expects (the newest revisions in messaging/migrations)."""
    return set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def database(engine: Engine, heads: set[str]) -> Check:
    """Reachable, and at the migration heads this code expects."""
    try:
        # Read alembic_version directly: a MigrationContext logs two INFO lines per probe.
        with engine.connect() as conn:
            current = (
                set(conn.scalars(text("SELECT version_num FROM alembic_version")))
                if inspect(conn).has_table("alembic_version") else set()
            )
    except Exception as exc:
        return Check(False, f"unreachable ({type(exc).__name__})")
    if current != heads:
        return Check(False, f"migrations not current: database at {', '.join(sorted(current)) or 'none'}, "
                            f"code expects {', '.join(sorted(heads))} (run `herald db upgrade`)")
    return Check(True, f"reachable, migrations at {', '.join(sorted(heads))}")


def broker(url: str, timeout_s: float) -> Check:
    """Redis answers PING, or RabbitMQ accepts a connection; in-process needs no broker."""
    if not url:
        return Check(True, "in-process")
    scheme = urlsplit(url).scheme
    try:
        if scheme in {"redis", "rediss"}:
            client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            try:
                client.ping()
            finally:
                client.close()
            return Check(True, "redis answers PING")
        parameters = pika.URLParameters(url)
        parameters.socket_timeout = parameters.blocked_connection_timeout = timeout_s
        parameters.connection_attempts, parameters.retry_delay = 1, 0
        pika.BlockingConnection(parameters).close()
        return Check(True, "rabbitmq accepts connections")
    except Exception as exc:
        return Check(False, f"unreachable ({type(exc).__name__})")


def workers(session: Session, *, heartbeat_s: float, in_process: bool) -> Check:
    """At least one fresh worker heartbeat (in-process: the API's own fleet beating)."""
    kind = heartbeats.IN_PROCESS if in_process else None
    try:
        fresh = heartbeats.fresh_count(session, heartbeat_s=heartbeat_s, kind=kind)
    except Exception as exc:
        return Check(False, f"unknown: heartbeats unreadable ({type(exc).__name__})")
    if not fresh:
        return Check(False, f"no {'in-process fleet' if in_process else 'worker'} heartbeat in the last "
                            f"{heartbeats.fresh_s(heartbeat_s):g} s")
    return Check(True, f"{fresh} fresh heartbeat{'s' if fresh != 1 else ''}")
