"""Fan-out throughput: an organisation unit with 100,000 users, from POST to the last inbox row.

Herald's API and a `herald worker` (Redis broker) run as subprocesses on a scratch PostgreSQL
database. Each run POSTs one message to the org unit and polls the outbox row until the worker
marks it done (the inbox rows commit in that same transaction). The baseline, in the same run, is
a raw COPY of the same number of rows (same columns) into a scratch table. Run:
    .venv/bin/python -m bench.fanout [--users 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import io
import secrets
import sys
import time
from datetime import datetime

import httpx
from sqlalchemy import Engine, text

from bench._support import (
    REDIS_URL,
    emit,
    free_port,
    median,
    print_table,
    process,
    psycopg_connection,
    scratch_database,
    seed_org_unit,
    uvicorn_command,
)

OU = "OuBench0001"


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
            conn.execute(text(f"CREATE INDEX ON {table} (user_id, last_message) INCLUDE (message_type, read, follow_up)"))
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


def fan_out_once(engine: Engine, url: str, users: int) -> tuple[float, float]:
    """POST to the org unit; return (seconds to the last inbox row, seconds the worker's SQL took)."""
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
                "SELECT o.done_at, o.enqueued_at FROM outbox o JOIN conversations c "
                "ON c.id = (o.payload->>'conversation_id')::bigint WHERE c.uid = :uid"
            ), {"uid": conversation}).first()
            conn.commit()
            if done is not None and done.done_at is not None:
                break
            if time.perf_counter() - start > 120:
                raise RuntimeError("fan-out did not finish in 120 s")
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        count = conn.execute(text(
            "SELECT count(*) FROM user_messages um JOIN conversations c ON c.id = um.conversation_id WHERE c.uid = :uid"
        ), {"uid": conversation}).scalar()
    assert count == users + 1, f"expected {users + 1} inbox rows, found {count}"
    return elapsed, accepted


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    from messaging.db import make_engine

    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed_org_unit(engine, OU, args.users, tag="field")
        port = free_port()
        env = {"DATABASE_URL": db_url, "BROKER_URL": REDIS_URL, "HERALD_LOG_LEVEL": "WARNING",
               "HERALD_BROKER_NAMESPACE": f"bench-{secrets.token_hex(3)}", "HERALD_OUTBOX_POLL_S": "0.02"}
        fanout_s: list[float] = []
        accept_s: list[float] = []
        copy_s: list[float] = []
        copy_indexed_s: list[float] = []
        with process(uvicorn_command("herald.asgi:create_app_from_env", port, factory=True), env, port), \
                process([sys.executable, "-m", "herald.cli", "worker", "--processes", "1", "--threads", "4"], env):
            time.sleep(2)  # let the worker boot and its relay start polling
            for _ in range(args.runs):
                copy_s.append(copy_baseline(engine, args.users + 1, indexed=False))
                copy_indexed_s.append(copy_baseline(engine, args.users + 1, indexed=True))
                elapsed, accepted = fan_out_once(engine, f"http://127.0.0.1:{port}", args.users)
                fanout_s.append(elapsed)
                accept_s.append(accepted)
        engine.dispose()

    rows = args.users + 1
    fan, raw, raw_ix = median(fanout_s), median(copy_s), median(copy_indexed_s)
    table = [
        ("Herald: POST -> last inbox row", f"{fan * 1000:,.0f}", f"{rows / fan:,.0f}", f"{raw / fan:.2f}"),
        ("  of which POST answered (201)", f"{median(accept_s) * 1000:,.1f}", "-", "-"),
        ("COPY into unindexed scratch table", f"{raw * 1000:,.0f}", f"{rows / raw:,.0f}", "1.00"),
        ("COPY into scratch table with the inbox's indexes", f"{raw_ix * 1000:,.0f}", f"{rows / raw_ix:,.0f}",
         f"{raw / raw_ix:.2f}"),
    ]
    print_table(f"bench/fanout.py  ({args.users:,} users in one org unit, median of {args.runs} runs)",
                table, ("case", "ms", "rows/s", "ratio to COPY"))
    emit({
        "recipients": args.users,
        "recipients_per_s": round(rows / fan),
        "copy_rows_per_s": round(rows / raw),
        "copy_indexed_rows_per_s": round(rows / raw_ix),
        "ratio_to_copy": round(raw / fan, 3),
        "ratio_to_indexed_copy": round(raw_ix / fan, 3),
        "post_to_last_row_ms": round(fan * 1000, 1),
        "post_accepted_ms": round(median(accept_s) * 1000, 2),
    })


if __name__ == "__main__":
    main()
