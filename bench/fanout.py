"""Fan-out throughput: an organisation unit with 100,000 users, from POST to the last inbox (and delivery) row.

Herald's API and a `herald worker` (Redis broker) run as subprocesses on a scratch PostgreSQL
database. Each run POSTs one message to the org unit and polls the outbox row until the worker
marks it done (the last chunk's inbox rows and deliveries commit in that same transaction). The
baseline, in the same run, is a raw COPY of the same number of rows (same columns) into a scratch
table, and with ``--channels`` also a COPY of the delivery rows into a copy of the deliveries
table with all its indexes. With channels on, every user has the addresses, the email channel
points at an SMTP sink and SMS at the Twilio stand-in: deliveries are sent while the fan-out runs,
as in production; what a run left unsent is discarded before the next. Peak RSS (VmHWM) of the
API process and of the worker's processes is read at the end. Run:
    .venv/bin/python -m bench.fanout [--users 100000] [--runs 3] [--channels none|email|email,sms]
"""

from __future__ import annotations

import argparse
import base64
import io
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from bench._support import (
    REDIS_URL,
    email_address,
    emit,
    free_port,
    median,
    peak_rss_mb,
    phone_number,
    print_table,
    process,
    psycopg_connection,
    scratch_database,
    seed_org_unit,
    uvicorn_command,
    wait_for_port,
)

OU = "OuBench0001"
STARTUP_S = 180.0  # a process starting on a machine shared by others can take longer than _support's 30 s


def copy_baseline(engine: Engine, rows: int, *, indexed: bool) -> float:
    """Seconds to COPY `rows` inbox-shaped rows into a fresh scratch table in one transaction."""
    table = f"scratch_{secrets.token_hex(3)}"
    with engine.begin() as conn:
        conn.execute(text(
            f"CREATE TABLE {table} (conversation_id bigint NOT NULL, user_id bigint NOT NULL, read boolean NOT NULL, "
            "follow_up boolean NOT NULL, last_message timestamp NOT NULL, message_type varchar(32) NOT NULL"
            + (", PRIMARY KEY (conversation_id, user_id))" if indexed else ")")
        ))
        if indexed:
            conn.execute(text(f"CREATE INDEX ON {table} (user_id, message_type, last_message, conversation_id) INCLUDE (read, follow_up)"))
    now = datetime(2026, 1, 1)
    buffer = io.StringIO("".join(f"1\t{i}\tf\tf\t{now}\tPRIVATE\n" for i in range(rows)))
    start = time.perf_counter()
    with engine.begin() as conn, psycopg_connection(conn).cursor() as cursor, cursor.copy(
        f"COPY {table} (conversation_id, user_id, read, follow_up, last_message, message_type) FROM STDIN"
    ) as copy:
        copy.write(buffer.getvalue())
    elapsed = time.perf_counter() - start
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    return elapsed


def copy_deliveries_baseline(engine: Engine, rows: int, channels: list[str]) -> float:
    """Seconds to COPY the delivery rows of ``rows`` users into a copy of ``deliveries`` with all its indexes."""
    if not channels:
        return 0.0
    table = f"scratch_{secrets.token_hex(3)}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (LIKE deliveries INCLUDING DEFAULTS INCLUDING INDEXES)"))
    now = datetime(2026, 1, 1)
    lines = [
        f"1\t{i}\t{channel}\tQUEUED\t{email_address(i) if channel == 'email' else phone_number(i)}\t0\t{now}\t{now}\t{now}\t{now}\n"
        for channel in channels
        for i in range(rows)
    ]
    buffer = "".join(lines)
    start = time.perf_counter()
    with engine.begin() as conn, psycopg_connection(conn).cursor() as cursor, cursor.copy(
        f"COPY {table} (message_id, user_id, channel, status, address, attempts, next_attempt_at, created, updated, "
        "enqueued_at) FROM STDIN"
    ) as copy:
        copy.write(buffer)
    elapsed = time.perf_counter() - start
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    return elapsed


def warm_up(engine: Engine, url: str) -> None:
    """One small message through API and worker: the first request pays the password check, the first job its imports."""
    from messaging.demo import MOBILE

    with httpx.Client(timeout=60, auth=("admin", "district")) as client:
        response = client.post(f"{url}/api/messageConversations",
                               json={"subject": "Warm-up", "text": "Hello", "users": [{"id": MOBILE}]})
    assert response.status_code == 201, response.text
    deadline = time.perf_counter() + STARTUP_S
    with engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM outbox WHERE done_at IS NULL")).scalar():
            conn.commit()
            if time.perf_counter() > deadline:
                raise RuntimeError("the warm-up message was not processed in time")
            time.sleep(0.01)


def fan_out_once(engine: Engine, url: str, users: int, channels: tuple[str, ...] = ()) -> tuple[float, float]:
    """POST to the org unit; return (seconds to the last inbox and delivery row, seconds to the 201)."""
    auth = "Basic " + base64.b64encode(b"admin:district").decode()
    body = {"subject": "District meeting", "text": "All field workers: meeting on Monday.",
            "organisationUnits": [{"id": OU}]}
    with httpx.Client(timeout=60) as client:
        start = time.perf_counter()
        response = client.post(f"{url}/api/messageConversations", json=body, headers={"Authorization": auth})
        accepted = time.perf_counter() - start
    assert response.status_code == 201, response.text
    conversation = response.headers["Location"].rsplit("/", 1)[1]
    with engine.connect() as conn:
        while True:
            done = conn.execute(text(
                "SELECT o.done_at, o.enqueued_at, o.created_at FROM outbox o JOIN conversations c ON o.kind = 'conversation.created' "
                "AND c.id = (o.payload->>'conversation_id')::bigint WHERE c.uid = :uid"
            ), {"uid": conversation}).first()
            conn.commit()
            if done is not None and done.done_at is not None:
                break
            if time.perf_counter() - start > 600:
                raise RuntimeError("fan-out did not finish in 600 s")
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        # Where the time went: the outbox row's timestamps (the relay's wait, the worker's chunks).
        print(f"  run: {elapsed * 1000:,.0f} ms; relay {(done.enqueued_at - done.created_at).total_seconds() * 1000:,.0f} ms,"
              f" worker {(done.done_at - done.enqueued_at).total_seconds() * 1000:,.0f} ms")
        count = conn.execute(text(
            "SELECT count(*) FROM user_messages um JOIN conversations c ON c.id = um.conversation_id WHERE c.uid = :uid"
        ), {"uid": conversation}).scalar()
        sent = conn.execute(text(
            "SELECT count(*) FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "JOIN conversations c ON c.id = m.conversation_id WHERE c.uid = :uid"
        ), {"uid": conversation}).scalar()
        if channels:  # what this run left to send would compete with the next run's fan-out: discarded
            conn.execute(text("UPDATE deliveries SET status = 'DISCARDED' WHERE status IN ('QUEUED', 'FAILED')"))
            conn.commit()
    assert count == users + 1, f"expected {users + 1} inbox rows, found {count}"
    assert sent == users * len(channels), f"expected {users * len(channels)} deliveries, found {sent}"
    return elapsed, accepted


@contextmanager
def channel_peers(channels: list[str], logs: Path) -> Iterator[dict[str, str]]:
    """The SMTP sink and the Twilio stand-in the channels need, as Herald settings."""
    from tests.support.twilio_standin import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

    env: dict[str, str] = {}
    with ExitStack() as stack:
        if "email" in channels:
            smtp_port, stats_port = free_port(), free_port()
            peer = [sys.executable, "-m", "bench._peers", "smtp", "--port", str(smtp_port), "--stats-port", str(stats_port)]
            stack.enter_context(process(peer, {}, log=logs / "sink.log"))
            wait_for_port(smtp_port, STARTUP_S)
            env |= {"SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "HERALD_EMAIL_FROM": "no-reply@herald.example"}
        if "sms" in channels:
            stats_port = free_port()
            peer = [sys.executable, "-m", "bench._peers", "twilio", "--stats-port", str(stats_port)]
            stack.enter_context(process(peer, {}, log=logs / "twilio.log"))
            wait_for_port(stats_port, STARTUP_S)
            port = httpx.get(f"http://127.0.0.1:{stats_port}/stats").json()["port"]
            env |= {"TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
                    "TWILIO_FROM_NUMBER": "+15005550006", "TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}"}
        yield env


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    from messaging.db import make_engine

    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--channels", default="none", choices=["none", "email", "email,sms"])
    args = parser.parse_args()
    channels = [] if args.channels == "none" else args.channels.split(",")
    contacts = [{"email": "email", "sms": "phone_number"}[c] for c in channels]
    logs = Path(tempfile.mkdtemp(prefix="herald-bench-fanout-"))
    print(f"logs: {logs}")
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed_org_unit(engine, OU, args.users, tag="field", contacts=contacts)
        port = free_port()
        env = {"DATABASE_URL": db_url, "BROKER_URL": REDIS_URL, "HERALD_LOG_LEVEL": "WARNING",
               "HERALD_BROKER_NAMESPACE": f"bench-{secrets.token_hex(3)}", "HERALD_OUTBOX_POLL_S": "0.02",
               "HERALD_BASE_URL": "https://herald.example"}
        fanout_s: list[float] = []
        accept_s: list[float] = []
        copy_s: list[float] = []
        copy_indexed_s: list[float] = []
        copy_deliveries_s: list[float] = []
        with channel_peers(channels, logs) as peers, \
                process(uvicorn_command("herald.asgi:create_app_from_env", port, factory=True), env | peers,
                        log=logs / "api.log") as api, \
                process([sys.executable, "-m", "herald.cli", "worker", "--processes", "1", "--threads", "4"],
                        env | peers, log=logs / "worker.log") as worker:
            wait_for_port(port, STARTUP_S)
            time.sleep(2)  # let the worker boot and its relay start polling
            warm_up(engine, f"http://127.0.0.1:{port}")
            for _ in range(args.runs):
                copy_s.append(copy_baseline(engine, args.users + 1, indexed=False))
                copy_indexed_s.append(copy_baseline(engine, args.users + 1, indexed=True))
                copy_deliveries_s.append(copy_deliveries_baseline(engine, args.users, channels))
                elapsed, accepted = fan_out_once(engine, f"http://127.0.0.1:{port}", args.users, tuple(channels))
                fanout_s.append(elapsed)
                accept_s.append(accepted)
            api_rss, worker_rss = peak_rss_mb(api.pid), peak_rss_mb(worker.pid, tree=True)
        engine.dispose()

    rows = args.users + 1
    fan, raw, raw_ix = median(fanout_s), median(copy_s), median(copy_indexed_s)
    # The same rows COPY'd: inbox rows plus, with channels, the delivery rows (each COPY is one stream).
    same = median([a + b for a, b in zip(copy_indexed_s, copy_deliveries_s, strict=True)])
    delivery_rows = args.users * len(channels)
    table = [
        ("Herald: POST -> last inbox" + (" and delivery row" if channels else " row"), f"{fan * 1000:,.0f}",
         f"{(rows + delivery_rows) / fan:,.0f}", f"{raw / fan:.2f}"),
        ("  of which POST answered (201)", f"{median(accept_s) * 1000:,.1f}", "-", "-"),
        ("COPY into unindexed scratch table", f"{raw * 1000:,.0f}", f"{rows / raw:,.0f}", "1.00"),
        ("COPY into scratch table with the inbox's indexes", f"{raw_ix * 1000:,.0f}", f"{rows / raw_ix:,.0f}",
         f"{raw / raw_ix:.2f}"),
    ]
    if channels:
        table.append((f"  + COPY of the {delivery_rows:,} delivery rows, deliveries' indexes", f"{same * 1000:,.0f}",
                      f"{(rows + delivery_rows) / same:,.0f}", f"{raw / same:.2f}"))
    table += [("peak RSS, API process (MB)", f"{api_rss:,.0f}", "-", "-"),
              ("peak RSS, worker processes (MB, largest)", f"{worker_rss:,.0f}", "-", "-")]
    print_table(f"bench/fanout.py  ({args.users:,} users in one org unit, channels: {args.channels}, "
                f"median of {args.runs} runs)", table, ("case", "ms", "rows/s", "ratio to COPY"))
    print(f"Herald / indexed COPY of the same rows: {same / fan:.2f}")
    emit({
        "recipients": args.users,
        "channels": args.channels,
        "recipients_per_s": round(rows / fan),
        "copy_rows_per_s": round(rows / raw),
        "copy_indexed_rows_per_s": round(rows / raw_ix),
        "ratio_to_copy": round(raw / fan, 3),
        "ratio_to_indexed_copy": round(raw_ix / fan, 3),
        "ratio_to_indexed_copy_same_rows": round(same / fan, 3),
        "copy_same_rows_ms": round(same * 1000, 1),
        "post_to_last_row_ms": round(fan * 1000, 1),
        "post_accepted_ms": round(median(accept_s) * 1000, 2),
        "api_peak_rss_mb": round(api_rss, 1),
        "worker_peak_rss_mb": round(worker_rss, 1),
        "runs": args.runs,
    })


if __name__ == "__main__":
    main()
