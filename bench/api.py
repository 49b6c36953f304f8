"""API throughput and latency against a bare FastAPI endpoint measured in the same run.

1. POST /api/messageConversations to 3 users, 32 concurrent clients (wrk), Herald vs. a bare
   FastAPI endpoint that only validates the body: requests/s ratio (goal >= 0.3) and p99.
2. GET /api/messageConversations?pageSize=50 for a user with 100,000 conversations, and the
   messaging app's own list query (folder filter, its fields, order, pageSize=35): p99 with 1 client
   (goal < 50 ms) and with 8 clients (goal < 100 ms), median of the rounds.

Both servers run as one uvicorn process each on PostgreSQL; wrk generates the load. Run:
    .venv/bin/python -m bench.api [--seconds 10]
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench._support import (
    REDIS_URL,
    cpu_seconds,
    emit,
    free_port,
    median,
    postgres_cpu_seconds,
    print_table,
    process,
    psycopg_connection,
    scratch_database,
    uvicorn_command,
    wrk,
)

CONVERSATIONS = 100_000
BODY = json.dumps(
    {"subject": "Stock report", "text": "Please send the stock report.",
     "users": [{"id": "OYLGMiazHtW"}, {"id": "N3PZBUlN8vq"}, {"id": "PhzytPW3g2J"}]}
)


def seed(url: str) -> None:
    """Demo data, and a user `reader` with CONVERSATIONS conversations (COPY)."""
    from messaging.db import make_engine, make_sessionmaker
    from messaging.demo import load_demo
    from messaging.metadata import import_metadata

    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        load_demo(session)
        import_metadata(session, {"users": [{"id": "ReaderUser1", "username": "reader", "password": "district",
                                             "firstName": "Rea", "surname": "Der"}]})
        session.commit()
    with engine.begin() as conn:
        with psycopg_connection(conn).cursor() as cursor, cursor.copy(
            "COPY conversations (uid, subject, message_type, status, priority, last_message, message_count, "
            "created, last_updated, last_sender_id) FROM STDIN"
        ) as copy:
            start = datetime(2026, 1, 1)
            for i in range(CONVERSATIONS):
                copy.write_row((f"R{i:010d}", f"Report {i}", "PRIVATE", "NONE", "NONE",
                                start + timedelta(seconds=i), 1, start, start, 1))
        conn.execute(text(
            "INSERT INTO user_messages (conversation_id, user_id, read, follow_up, last_message, message_type) "
            "SELECT c.id, u.id, (c.id % 3 = 0), false, c.last_message, c.message_type FROM conversations c, users u "
            "WHERE u.username = 'reader' AND c.uid LIKE 'R%'"
        ))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # what autovacuum does after a bulk load; enables index-only counts
    engine.dispose()


# The list requests: DHIS2's default page, and the messaging app's folder query as it sends it.
LIST_QUERIES = {
    "plain": "pageSize=50",
    "app": ("fields=id,displayName,subject,messageType,lastSender%5Bid%2C%20displayName%5D,"
            "assignee%5Bid%2C%20displayName%5D,status,priority,lastUpdated,read,lastMessage,followUp"
            "&order=lastMessage%3Adesc&filter=messageType%3Aeq%3APRIVATE&pageSize=35"),
}
LIST_LABELS = {"plain": "pageSize=50", "app": "app list query"}
LIST_CASES = (("plain", 1), ("plain", 8), ("app", 1), ("app", 8))


def measured(pid: int, url: str, *, duration_s: int, **options: Any) -> dict[str, float]:
    """wrk's figures for `url` plus the server's and PostgreSQL's CPU milliseconds per request."""
    server, database = cpu_seconds(pid), postgres_cpu_seconds()
    figures = wrk(url, duration_s=duration_s, **options)
    requests = max(figures["rps"] * duration_s, 1.0)
    return {**figures, "cpu_ms": (cpu_seconds(pid) - server) / requests * 1000,
            "pg_cpu_ms": (postgres_cpu_seconds() - database) / requests * 1000}


def list_figures(port: int, *, seconds: int, rounds: int, pid: int) -> dict[tuple[str, int], dict[str, float]]:
    """Requests/s, p99 and CPU per request of each list case, the median of `rounds` runs (the machine is shared)."""
    headers = auth("reader")
    url = f"http://127.0.0.1:{port}/api/messageConversations?"
    wrk(url + LIST_QUERIES["app"], headers=headers, connections=1, threads=1, duration_s=2)  # warm up
    runs: dict[tuple[str, int], list[dict[str, float]]] = {case: [] for case in LIST_CASES}
    for _ in range(rounds):
        for name, clients in LIST_CASES:
            runs[name, clients].append(measured(pid, url + LIST_QUERIES[name], headers=headers, connections=clients,
                                                threads=min(clients, 2), duration_s=seconds))
    return {case: {key: median([r[key] for r in results]) for key in ("rps", "p99_ms", "errors", "cpu_ms", "pg_cpu_ms")}
            for case, results in runs.items()}


def auth(user: str) -> dict[str, str]:
    """A Basic authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:district".encode()).decode()}


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with scratch_database() as url:
        seed(url)
        herald_port, bare_port = free_port(), free_port()
        env = {"DATABASE_URL": url, "BROKER_URL": REDIS_URL,
               "HERALD_BROKER_NAMESPACE": f"bench-{secrets.token_hex(3)}", "HERALD_LOG_LEVEL": "WARNING"}
        post_headers = {"Content-Type": "application/json", **auth("admin")}
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "herald": []}
        with process(uvicorn_command("herald.asgi:create_app_from_env", herald_port, factory=True), env,
                     herald_port) as herald, \
                process(uvicorn_command("bench.bare:app", bare_port), {}, bare_port) as bare:
            # Warm both up (auth cache, connection pools).
            wrk(f"http://127.0.0.1:{herald_port}/api/messageConversations", method="POST", body=BODY,
                headers=post_headers, duration_s=2)
            for _ in range(args.rounds):
                runs["bare"].append(measured(bare.pid, f"http://127.0.0.1:{bare_port}/api/messageConversations",
                                             method="POST", body=BODY, headers={"Content-Type": "application/json"},
                                             duration_s=args.seconds))
                runs["herald"].append(measured(herald.pid, f"http://127.0.0.1:{herald_port}/api/messageConversations",
                                               method="POST", body=BODY, headers=post_headers, duration_s=args.seconds))
            lists = list_figures(herald_port, seconds=args.seconds, rounds=args.rounds, pid=herald.pid)

    bare_rps = median([r["rps"] for r in runs["bare"]])
    herald_rps = median([r["rps"] for r in runs["herald"]])
    errors = sum(r["errors"] for r in runs["herald"])
    def cpu(results: list[dict[str, float]], key: str = "cpu_ms") -> float:
        return median([r[key] for r in results])

    rows = [
        ("POST, bare FastAPI (baseline)", f"{bare_rps:,.0f}", f"{median([r['p99_ms'] for r in runs['bare']]):.1f}",
         f"{cpu(runs['bare']):.2f}", "-", "-"),
        ("POST, Herald (3 recipients)", f"{herald_rps:,.0f}", f"{median([r['p99_ms'] for r in runs['herald']]):.1f}",
         f"{cpu(runs['herald']):.2f}", f"{cpu(runs['herald'], 'pg_cpu_ms'):.2f}", f"{herald_rps / bare_rps:.2f}"),
        *((f"GET {LIST_LABELS[name]}, 100k convs, {clients} client{'s' if clients > 1 else ''}",
           f"{lists[name, clients]['rps']:,.0f}", f"{lists[name, clients]['p99_ms']:.1f}",
           f"{lists[name, clients]['cpu_ms']:.2f}", f"{lists[name, clients]['pg_cpu_ms']:.2f}", "-")
          for name, clients in LIST_CASES),
    ]
    print_table(f"bench/api.py  (median of {args.rounds} x {args.seconds}s, 32 connections for POST; "
                f"non-2xx from Herald: {errors:.0f}; CPU ms per request, PostgreSQL: every backend on the machine)",
                rows, ("case", "req/s", "p99 ms", "server CPU ms", "PostgreSQL CPU ms", "ratio to bare"))
    emit({
        "post_rps": round(herald_rps, 1),
        "bare_rps": round(bare_rps, 1),
        "post_ratio_to_bare": round(herald_rps / bare_rps, 3),
        "post_p99_ms": round(median([r["p99_ms"] for r in runs["herald"]]), 2),
        "post_api_cpu_ms": round(cpu(runs["herald"]), 3),
        "post_pg_cpu_ms": round(cpu(runs["herald"], "pg_cpu_ms"), 3),
        "bare_cpu_ms": round(cpu(runs["bare"]), 3),
        "list_app_query_api_cpu_ms": round(lists["app", 1]["cpu_ms"], 3),
        "list_app_query_pg_cpu_ms": round(lists["app", 1]["pg_cpu_ms"], 3),
        "list_100k_p99_ms": round(lists["plain", 1]["p99_ms"], 2),
        "list_100k_8_clients_p99_ms": round(lists["plain", 8]["p99_ms"], 2),
        "list_100k_app_query_p99_ms": round(lists["app", 1]["p99_ms"], 2),
        "list_100k_app_query_8_clients_p99_ms": round(lists["app", 8]["p99_ms"], 2),
        "list_100k_rps": round(lists["plain", 1]["rps"], 1),
        "list_100k_8_clients_rps": round(lists["plain", 8]["rps"], 1),
        "list_errors": sum(f["errors"] for f in lists.values()),
        "post_errors": errors,
    })


if __name__ == "__main__":
    main()
