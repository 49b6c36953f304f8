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
from pathlib import Path

from bench._deliveries import Comparison, fleet_run, forget_namespace, peer_stats
from bench._support import (
    REDIS_URL,
    free_port,
    phone_number,
    process,
    scratch_database,
    seed_org_unit,
    uvicorn_command,
    wait_for_port,
)

OU = "OuSms000001"
FROM_NUMBER = "+15005550006"
TEXT = "All field workers: meeting on Monday at the district office."


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
            await messages.create_async(to=phone_number(i), from_=FROM_NUMBER, body=TEXT)

    await asyncio.gather(*(pump() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await http.close()
    return elapsed


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
    n, total = args.recipients, args.processes * args.concurrency
    stats_port, api_port = free_port(), free_port()
    stats_url = f"http://127.0.0.1:{stats_port}"
    namespace = f"bench-{secrets.token_hex(3)}"
    comparison = Comparison(n, stats_url)
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed_org_unit(engine, OU, n, tag="sms", contact="phone_number")
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
                    comparison.run(
                        lambda: asyncio.run(raw_run(twilio_url, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, n, total)),
                        lambda: fleet_run(engine, f"http://127.0.0.1:{api_port}", OU, TEXT, n),
                        engine,
                    )
        engine.dispose()
    forget_namespace(namespace)
    comparison.report(
        f"bench/sms.py  ({n:,} SMS; fleet: {args.processes} processes x {args.threads} threads x "
        f"{args.concurrency} in flight",
        noun="SMS", raw_label=f"raw twilio create_async, {total} in flight", goal=0.6,
        figures={"concurrency": total, "processes": args.processes, "threads": args.threads},
    )

if __name__ == "__main__":
    main()
