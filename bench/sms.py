"""SMS throughput: 10,000 SMS through Herald's fleet, against the raw twilio async client, same stand-in, same run.

The tests' Twilio stand-in (real HTTP, Twilio's JSON) runs in its own process. Herald's API and a
`herald worker` (Redis broker, P processes with HERALD_SMS_CONCURRENCY sends in flight each, the
SMS rate bucket in Redis set far above the load) run as subprocesses on a scratch PostgreSQL
database. A fleet run POSTs one message to an org unit of N users with phone numbers and polls
until all N deliveries are SENT. The baseline sends N messages with twilio's own
`messages.create_async` (its aiohttp client) from one process at the same total concurrency. Run:
    .venv/bin/python -m bench.sms [--recipients 10000] [--runs 3] [--processes 2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import sys
import tempfile
import time
import warnings
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
from bench.email import peer_stats, steady_rate, wait_settled

OU = "OuSms000001"
FROM_NUMBER = "+15005550006"
TEXT = "All field workers: meeting on Monday at the district office."


def phone(i: int) -> str:
    """A distinct E.164 number per user."""
    return f"+25677{i:07d}"


def seed(engine: Engine, users: int) -> None:
    """Demo data plus one org unit with `users` users who have phone numbers (COPY)."""
    from messaging.db import make_sessionmaker
    from messaging.demo import load_demo

    with make_sessionmaker(engine)() as session:
        load_demo(session)
        session.commit()
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO org_units (uid, name, short_name, path, level, created, last_updated) "
            f"VALUES ('{OU}', 'SMS district', 'SMS', '/{OU}', 1, now(), now())"
        ))
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(
            "COPY users (uid, username, first_name, surname, phone_number, disabled, created, last_updated) FROM STDIN"
        ) as copy:
            now = datetime(2026, 1, 1)
            for i in range(users):
                copy.write_row((f"S{i:010d}", f"smsuser{i}", "Sms", f"User {i}", phone(i), False, now, now))
        conn.execute(text(
            "INSERT INTO user_org_units (org_unit_id, user_id) "
            f"SELECT (SELECT id FROM org_units WHERE uid = '{OU}'), id FROM users WHERE username LIKE 'smsuser%'"
        ))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


async def raw_run(base_url: str, sid: str, token: str, count: int, concurrency: int) -> float:
    """Seconds for twilio's create_async to send `count` SMS with `concurrency` in flight."""
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    client = Client(sid, token, http_client=http, environment={"TWILIO_ACCOUNT_SID": sid})
    client.api.base_url = base_url
    messages = client.api.account.messages
    numbers = itertools.count()
    start = time.perf_counter()

    async def pump() -> None:
        while (i := next(numbers)) < count:
            await messages.create_async(to=phone(i), from_=FROM_NUMBER, body=TEXT)

    await asyncio.gather(*(pump() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await http.close()
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


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    from messaging.db import make_engine
    from tests.support.twilio_standin import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

    warnings.simplefilter("ignore", DeprecationWarning)  # twilio's own aiohttp client passes auth= (aiohttp 3.14)
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="HERALD_SMS_CONCURRENCY (per worker process)")
    args = parser.parse_args()
    total = args.processes * args.concurrency
    stats_port, api_port = free_port(), free_port()
    stats_url = f"http://127.0.0.1:{stats_port}"
    namespace = f"bench-{secrets.token_hex(3)}"
    fleet_s: list[float] = []
    first_s: list[float] = []
    steady: list[float] = []
    raw_s: list[float] = []
    problems: list[str] = []
    n = args.recipients
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed(engine, n)
        logs = Path(tempfile.mkdtemp(prefix="herald-bench-sms-"))
        print(f"logs: {logs}")
        peer = [sys.executable, "-m", "bench._peers", "twilio", "--stats-port", str(stats_port)]
        with process(peer, {}, stats_port, log=logs / "twilio.log"):
            twilio_url = f"http://127.0.0.1:{peer_stats(stats_url)['port']}"
            env = {
                "DATABASE_URL": db_url, "BROKER_URL": REDIS_URL, "HERALD_BROKER_NAMESPACE": namespace,
                "HERALD_LOG_LEVEL": "WARNING", "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN, "TWILIO_FROM_NUMBER": FROM_NUMBER,
                "TWILIO_API_BASE_URL": twilio_url, "HERALD_SMS_RATE": "1000000",
                "HERALD_SMS_CONCURRENCY": str(args.concurrency), "HERALD_BASE_URL": "https://herald.example",
            }
            worker = [sys.executable, "-m", "herald.cli", "worker", "--processes", str(args.processes),
                      "--threads", str(args.threads)]
            with process(uvicorn_command("herald.asgi:create_app_from_env", api_port, factory=True), env, api_port,
                         log=logs / "api.log"), \
                    process(worker, env, log=logs / "worker.log"):
                wait_for_port(api_port)
                time.sleep(2)  # let the workers boot and their relays start polling
                for _ in range(args.runs):
                    peer_stats(stats_url, reset=True)
                    raw_s.append(asyncio.run(raw_run(twilio_url, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, n, total)))
                    got = peer_stats(stats_url)
                    if (got["messages"], got["unique"]) != (n, n):
                        problems.append(f"raw: stand-in saw {got}")
                    peer_stats(stats_url, reset=True)
                    elapsed, counts, conversation = fleet_run(engine, f"http://127.0.0.1:{api_port}", n)
                    fleet_s.append(elapsed)
                    first, rate = steady_rate(engine, conversation, n)
                    first_s.append(first)
                    steady.append(rate)
                    got = peer_stats(stats_url)
                    if counts != {"SENT": n} or (got["messages"], got["unique"]) != (n, n):
                        problems.append(f"fleet: rows {counts}, stand-in saw {got}")
        engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()

    fleet, raw = median(fleet_s), median(raw_s)
    table = [
        ("Herald fleet: POST -> last delivery SENT", f"{fleet:.2f}", f"{n / fleet:,.0f}", f"{raw / fleet:.2f}"),
        ("  of which POST -> first SMS accepted", f"{median(first_s):.2f}", "-", "-"),
        ("  steady state (10th-90th percentile of sent_at)", "-", f"{median(steady):,.0f}",
         f"{median(steady) * raw / n:.2f}"),
        (f"raw twilio create_async, {total} in flight", f"{raw:.2f}", f"{n / raw:,.0f}", "1.00"),
    ]
    print_table(
        f"bench/sms.py  ({n:,} SMS; fleet: {args.processes} processes x {args.threads} threads x "
        f"{args.concurrency} in flight; median of {args.runs} runs)",
        table, ("case", "s", "SMS/s", "ratio to raw"),
    )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    emit({
        "recipients": n,
        "fleet_sms_per_s": round(n / fleet),
        "raw_sms_per_s": round(n / raw),
        "ratio_to_raw": round(raw / fleet, 3),
        "fleet_steady_sms_per_s": round(median(steady)),
        "steady_ratio_to_raw": round(median(steady) * raw / n, 3),
        "first_sms_s": round(median(first_s), 3),
        "goal_ratio": 0.5,
        "concurrency": total,
        "processes": args.processes,
        "threads": args.threads,
        "fleet_runs_s": [round(s, 3) for s in fleet_s],
        "raw_runs_s": [round(s, 3) for s in raw_s],
        "exactly_once": not problems,
    })


if __name__ == "__main__":
    sys.exit(main())
