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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._deliveries import Comparison, email_fleet, fleet_run, forget_namespace
from bench._support import (
    email_address,
    free_port,
    process,
    scratch_database,
    seed_org_unit,
    uvicorn_command,
    wait_for_port,
)

OU = "OuMail00001"
POLICY = email.policy.compat32.clone(linesep="\r\n", mangle_from_=False)  # the channel's policy
TEXT = "All field workers: meeting on Monday."


def renderer() -> Callable[[int], bytes]:
    """Mail i as Herald renders it (the channel's own `render`): both sides build identical messages."""
    from channels.base import Envelope
    from channels.email import EmailChannel, SmtpServer

    channel = EmailChannel(server=SmtpServer("127.0.0.1", 25), email_from="no-reply@herald.example", app_title="DHIS 2")

    def render(i: int) -> bytes:
        envelope = Envelope(
            delivery_id=i, channel="email", message_uid="MsgBench001", conversation_uid="ConvBench01",
            message_type="PRIVATE", recipient_uid=f"M{i:010d}", recipient_name=f"Mail User {i}",
            address=email_address(i), subject="District meeting", text=TEXT, sender_name="John Traore",
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
            await client.sendmail("no-reply@herald.example", [email_address(i)], render(i))

    await asyncio.gather(*(pump(c) for c in clients))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(c.quit() for c in clients))
    return elapsed


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
    n, total_connections = args.recipients, args.processes * args.connections
    smtp_port, stats_port, api_port = free_port(), free_port(), free_port()
    namespace = f"bench-{secrets.token_hex(3)}"
    comparison = Comparison(n, f"http://127.0.0.1:{stats_port}")
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed_org_unit(engine, OU, n, tag="mail", contact="email")
        env, peer, worker = email_fleet(db_url, namespace, smtp_port, stats_port, connections=args.connections,
                                        processes=args.processes, threads=args.threads)
        logs = Path(tempfile.mkdtemp(prefix="herald-bench-email-"))
        print(f"logs: {logs}")
        with process(peer, {}, smtp_port, log=logs / "sink.log"), \
                process(uvicorn_command("herald.asgi:create_app_from_env", api_port, factory=True), env, api_port,
                        log=logs / "api.log"), \
                process(worker, env, log=logs / "worker.log"):
            wait_for_port(stats_port)
            time.sleep(2)  # let the workers boot and their relays start polling
            for _ in range(args.runs):
                comparison.run(
                    lambda: asyncio.run(raw_run(smtp_port, n, total_connections)),
                    lambda: fleet_run(engine, f"http://127.0.0.1:{api_port}", OU, TEXT, n),
                    engine,
                )
        engine.dispose()
    forget_namespace(namespace)
    comparison.report(
        f"bench/email.py  ({n:,} recipients; fleet: {args.processes} processes x {args.threads} threads x "
        f"{args.connections} SMTP connections",
        noun="mail", raw_label=f"raw aiosmtplib, {total_connections} reused connections", goal=0.8,
        figures={"connections": total_connections, "processes": args.processes, "threads": args.threads},
    )

if __name__ == "__main__":
    main()
