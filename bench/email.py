"""Email throughput: 10,000 recipients through Herald's fleet, against raw aiosmtplib, same sink, same run.

A counting aiosmtpd sink runs in its own process. Herald's API and a `herald worker` (Redis
broker, P processes with HERALD_SMTP_CONNECTIONS each) run as subprocesses on a scratch
PostgreSQL database. A fleet run POSTs one message to an org unit of N users with addresses and
polls until all N deliveries are SENT (fan-out, delivery rows, relay, claims, SMTP, outcome
writes: everything). The baseline sends N messages with raw aiosmtplib over the same total
number of reused connections from one process; it builds each message with the email channel's
own `render`, so both sides do the same MIME work and the ratio is the fleet's overhead. Run:
    .venv/bin/python -m bench.email [--recipients 10000] [--runs 3] [--processes 2] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import itertools
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import redis
from sqlalchemy import Engine, text

from bench._support import (
    REDIS_URL,
    emit,
    free_port,
    median,
    print_table,
    process,
    scratch_database,
    uvicorn_command,
    wait_for_port,
)

OU = "OuMail00001"
POLICY = email.policy.compat32.clone(linesep="\r\n", mangle_from_=False)  # the channel's policy
TEXT = "All field workers: meeting on Monday."


def seed(engine: Engine, users: int) -> None:
    """Demo data plus one org unit with `users` users who have email addresses (COPY)."""
    from messaging.db import make_sessionmaker
    from messaging.demo import load_demo

    with make_sessionmaker(engine)() as session:
        load_demo(session)
        session.commit()
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO org_units (uid, name, short_name, path, level, created, last_updated) "
            f"VALUES ('{OU}', 'Mail district', 'Mail', '/{OU}', 1, now(), now())"
        ))
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(
            "COPY users (uid, username, first_name, surname, email, disabled, created, last_updated) FROM STDIN"
        ) as copy:
            now = datetime(2026, 1, 1)
            for i in range(users):
                copy.write_row((f"M{i:010d}", f"mailuser{i}", "Mail", f"User {i}", f"user{i}@clinic.example", False, now, now))
        conn.execute(text(
            "INSERT INTO user_org_units (org_unit_id, user_id) "
            f"SELECT (SELECT id FROM org_units WHERE uid = '{OU}'), id FROM users WHERE username LIKE 'mailuser%'"
        ))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def peer_stats(stats_url: str, reset: bool = False) -> dict[str, int]:
    """The sink's counters (and optionally start them afresh)."""
    with httpx.Client(timeout=10) as client:
        if reset:
            client.post(f"{stats_url}/reset")
            return {"messages": 0, "unique": 0}
        result: dict[str, int] = client.get(f"{stats_url}/stats").json()
        return result


def renderer() -> Callable[[int], bytes]:
    """Mail i as Herald renders it (the channel's own `render`): both sides build identical messages."""
    from channels.base import Envelope
    from channels.email import EmailChannel, SmtpServer

    channel = EmailChannel(server=SmtpServer("127.0.0.1", 25), email_from="no-reply@herald.example", app_title="DHIS 2")

    def render(i: int) -> bytes:
        envelope = Envelope(
            delivery_id=i, channel="email", message_uid="MsgBench001", conversation_uid="ConvBench01",
            message_type="PRIVATE", recipient_uid=f"M{i:010d}", recipient_name=f"Mail User {i}",
            address=f"user{i}@clinic.example", subject="District meeting", text=TEXT, sender_name="John Traore",
            conversation_url="https://herald.example/dhis-web-messaging/#/PRIVATE/ConvBench01",
        )
        return channel.render(envelope).as_bytes(policy=POLICY)

    return render


async def raw_run(port: int, count: int, connections: int) -> float:
    """Seconds for raw aiosmtplib to send `count` mails over `connections` reused connections."""
    import aiosmtplib

    render = renderer()
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) for _ in range(connections)]
    await asyncio.gather(*(c.connect() for c in clients))
    numbers = itertools.count()
    start = time.perf_counter()

    async def pump(client: aiosmtplib.SMTP) -> None:
        while (i := next(numbers)) < count:
            await client.sendmail("no-reply@herald.example", [f"user{i}@clinic.example"], render(i))

    await asyncio.gather(*(pump(c) for c in clients))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(c.quit() for c in clients))
    return elapsed


def fleet_run(engine: Engine, api_url: str, count: int) -> tuple[float, dict[str, int], str]:
    """POST to the org unit; seconds until all `count` deliveries are SENT, the status counts, the conversation."""
    body = {"subject": "District meeting", "text": TEXT, "organisationUnits": [{"id": OU}]}
    with httpx.Client(timeout=60, auth=("admin", "district")) as client:
        start = time.perf_counter()
        response = client.post(f"{api_url}/api/messageConversations", json=body)
    assert response.status_code == 201, response.text
    conversation = response.headers["Location"].rsplit("/", 1)[1]
    return (*wait_settled(engine, conversation, count, start), conversation)


def wait_settled(engine: Engine, conversation: str, count: int, start: float) -> tuple[float, dict[str, int]]:
    """Poll until the conversation's `count` deliveries exist and none is pending; return (seconds, status counts).

    The poll shares the machine with what it measures, so it stays cheap: the rows are counted
    once through the unique index until the fan-out wrote them, then only the pending ones are
    counted, through the small partial index of QUEUED/FAILED/SENDING rows.
    """
    message = text("SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.uid = :uid")
    created = text("SELECT count(*) FROM deliveries WHERE message_id = :mid")
    pending = text("SELECT count(*) FROM deliveries WHERE status IN ('QUEUED', 'FAILED', 'SENDING')")
    by_status = text("SELECT status, count(*) FROM deliveries WHERE message_id = :mid GROUP BY status")
    with engine.connect() as conn:
        message_id = conn.execute(message, {"uid": conversation}).scalar_one()
        conn.commit()
        while conn.execute(created, {"mid": message_id}).scalar_one() < count:
            conn.commit()
            _check_deadline(start)
            time.sleep(0.05)
        while left := conn.execute(pending).scalar_one():
            conn.commit()
            _check_deadline(start)
            time.sleep(0.2 if left > 1000 else 0.02)  # often only near the end, where it sets the figure
        elapsed = time.perf_counter() - start
        return elapsed, {status: n for status, n in conn.execute(by_status, {"mid": message_id})}


def steady_rate(engine: Engine, conversation: str, count: int) -> tuple[float, float]:
    """(seconds from the message's creation to its first SENT delivery, deliveries/s between the 10th and 90th percentile)."""
    query = text(
        "SELECT min(d.sent_at) - min(m.created), percentile_disc(0.1) WITHIN GROUP (ORDER BY d.sent_at), "
        "percentile_disc(0.9) WITHIN GROUP (ORDER BY d.sent_at) FROM deliveries d JOIN messages m ON m.id = d.message_id "
        "JOIN conversations c ON c.id = m.conversation_id WHERE c.uid = :uid"
    )
    with engine.connect() as conn:
        first, p10, p90 = conn.execute(query, {"uid": conversation}).one()
    span = max((p90 - p10).total_seconds(), 1e-3)
    return first.total_seconds(), 0.8 * count / span


def _check_deadline(start: float) -> None:
    if time.perf_counter() - start > 600:
        raise RuntimeError("deliveries did not finish in 600 s")


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    from messaging.db import make_engine

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4, help="HERALD_SMTP_CONNECTIONS (per worker process)")
    args = parser.parse_args()
    total_connections = args.processes * args.connections
    smtp_port, stats_port, api_port = free_port(), free_port(), free_port()
    stats_url = f"http://127.0.0.1:{stats_port}"
    namespace = f"bench-{secrets.token_hex(3)}"
    fleet_s: list[float] = []
    first_s: list[float] = []
    steady: list[float] = []
    raw_s: list[float] = []
    problems: list[str] = []
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed(engine, args.recipients)
        env = {
            "DATABASE_URL": db_url, "BROKER_URL": REDIS_URL, "HERALD_BROKER_NAMESPACE": namespace,
            "HERALD_LOG_LEVEL": "WARNING",
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "HERALD_SMTP_CONNECTIONS": str(args.connections),
            "HERALD_EMAIL_FROM": "no-reply@herald.example", "HERALD_BASE_URL": "https://herald.example",
        }
        peer = [sys.executable, "-m", "bench._peers", "smtp", "--port", str(smtp_port), "--stats-port", str(stats_port)]
        worker = [sys.executable, "-m", "herald.cli", "worker", "--processes", str(args.processes),
                  "--threads", str(args.threads)]
        logs = Path(tempfile.mkdtemp(prefix="herald-bench-email-"))
        print(f"logs: {logs}")
        with process(peer, {}, smtp_port, log=logs / "sink.log"), \
                process(uvicorn_command("herald.asgi:create_app_from_env", api_port, factory=True), env, api_port,
                        log=logs / "api.log"), \
                process(worker, env, log=logs / "worker.log"):
            wait_for_port(stats_port)
            time.sleep(2)  # let the workers boot and their relays start polling
            for _ in range(args.runs):
                peer_stats(stats_url, reset=True)
                raw_s.append(asyncio.run(raw_run(smtp_port, args.recipients, total_connections)))
                got = peer_stats(stats_url)
                if got != {"messages": args.recipients, "unique": args.recipients}:
                    problems.append(f"raw: sink saw {got}")
                peer_stats(stats_url, reset=True)
                elapsed, counts, conversation = fleet_run(engine, f"http://127.0.0.1:{api_port}", args.recipients)
                fleet_s.append(elapsed)
                first, rate = steady_rate(engine, conversation, args.recipients)
                first_s.append(first)
                steady.append(rate)
                got = peer_stats(stats_url)
                if counts != {"SENT": args.recipients} or got != {"messages": args.recipients, "unique": args.recipients}:
                    problems.append(f"fleet: rows {counts}, sink saw {got}")
        engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()

    n = args.recipients
    fleet, raw = median(fleet_s), median(raw_s)
    table = [
        ("Herald fleet: POST -> last delivery SENT", f"{fleet:.2f}", f"{n / fleet:,.0f}", f"{raw / fleet:.2f}"),
        ("  of which POST -> first mail accepted", f"{median(first_s):.2f}", "-", "-"),
        ("  steady state (10th-90th percentile of sent_at)", "-", f"{median(steady):,.0f}",
         f"{median(steady) * raw / n:.2f}"),
        (f"raw aiosmtplib, {total_connections} reused connections", f"{raw:.2f}", f"{n / raw:,.0f}", "1.00"),
    ]
    print_table(
        f"bench/email.py  ({n:,} recipients; fleet: {args.processes} processes x {args.threads} threads x "
        f"{args.connections} SMTP connections; median of {args.runs} runs)",
        table, ("case", "s", "mails/s", "ratio to raw"),
    )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    emit({
        "recipients": n,
        "fleet_mails_per_s": round(n / fleet),
        "raw_mails_per_s": round(n / raw),
        "ratio_to_raw": round(raw / fleet, 3),
        "fleet_steady_mails_per_s": round(median(steady)),
        "steady_ratio_to_raw": round(median(steady) * raw / n, 3),
        "first_mail_s": round(median(first_s), 3),
        "goal_ratio": 0.7,
        "connections": total_connections,
        "processes": args.processes,
        "threads": args.threads,
        "fleet_runs_s": [round(s, 3) for s in fleet_s],
        "raw_runs_s": [round(s, 3) for s in raw_s],
        "exactly_once": not problems,
    })


if __name__ == "__main__":
    sys.exit(main())
