"""Trigger-to-sent latency for email on an idle fleet: 1, 100 and 10,000 recipients.

A counting aiosmtpd sink (bench/_peers.py) runs in its own process and notes the wall-clock time
each message's DATA ended. Herald's API and a `herald worker` (Redis broker, P processes) run as
subprocesses on a scratch PostgreSQL database, started and left idle (their consumers backed off,
relays waiting) before every POST. Latency is measured from the moment the POST's 201 arrived at
the client to each mail's arrival at the sink (the sink's receive time, not the row's ``sent_at``,
which the recorder writes a moment later). 1 and 100 recipients are named users; 10,000 is an org
unit. For the 1-recipient runs the rows' own timestamps split the time into hops (outbox relay,
fan-out, delivery pickup and claim, SMTP).

The idle fleet's database load is measured too: transactions per second on the scratch database
(``pg_stat_database``, commits + rollbacks, less this script's own) over ``--idle-s`` seconds with
nothing to do. Run:
    .venv/bin/python -m bench.latency [--single 20] [--hundred 5] [--large 1] [--processes 2]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

from bench._deliveries import email_fleet, forget_namespace
from bench._support import (
    emit,
    free_port,
    print_table,
    process,
    scratch_database,
    seed_org_unit,
    uvicorn_command,
    wait_for_port,
)

OU = "OuLate00001"
USERS = 10_000
IDLE_GAP_S = 2.0  # before each POST: long enough for every consumer to back off to its idle poll
DEADLINE_S = 300.0


def uid(i: int) -> str:
    """The UID of seeded user i (bench._support.seed_org_unit with tag "mail")."""
    return f"M{i:010d}"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Sink:
    """The SMTP sink's stats endpoint."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def reset(self) -> None:
        """Forget what arrived so far."""
        self.client.post("/reset")

    def wait_for(self, count: int, start: float) -> list[float]:
        """Arrival times once ``count`` mails arrived (polled with a deadline)."""
        while (got := self.client.get("/stats").json()["messages"]) < count:
            if time.monotonic() - start > DEADLINE_S:
                raise RuntimeError(f"only {got} of {count} mails arrived in {DEADLINE_S:.0f} s")
            time.sleep(0.01 if count < 1000 else 0.1)
        times: list[float] = self.client.get("/times").json()
        return times


def post(client: httpx.Client, body: dict[str, Any]) -> tuple[float, str]:
    """POST a conversation; (wall-clock time the 201 arrived, conversation uid)."""
    response = client.post("/api/messageConversations", json=body)
    at = time.time()
    assert response.status_code == 201, response.text
    return at, response.headers["Location"].rsplit("/", 1)[1]


def hops(engine: Engine, conversation: str, created_at: float) -> dict[str, float]:
    """Where one single-recipient run's time went, in ms from the 201, from the rows' timestamps."""
    query = text(
        "SELECT extract(epoch FROM o.enqueued_at) AS relayed, extract(epoch FROM o.done_at) AS fanned_out, "
        "extract(epoch FROM d.claimed_at) AS claimed, extract(epoch FROM d.sent_at) AS recorded "
        "FROM conversations c JOIN messages m ON m.conversation_id = c.id JOIN deliveries d ON d.message_id = m.id "
        "JOIN outbox o ON o.kind = 'conversation.created' AND CAST(o.payload ->> 'conversation_id' AS BIGINT) = c.id "
        "WHERE c.uid = :uid"
    )
    with engine.connect() as conn:
        row = conn.execute(query, {"uid": conversation}).one()
    return {name: (float(value) - created_at) * 1000 for name, value in row._mapping.items() if value is not None}


def idle_rate(engine: Engine, seconds: float) -> float:
    """Transactions per second on this database while the fleet idles (this script's own left out)."""
    query = text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        before = conn.execute(query).scalar_one()
        conn.commit()
        time.sleep(seconds)
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        after = conn.execute(query).scalar_one()
        conn.commit()
    return max(0.0, (after - before - 2) / seconds)  # the two transactions of this connection's own


def run_size(
    engine: Engine, api: httpx.Client, sink: Sink, count: int, runs: int, *, breakdown: bool = False
) -> tuple[list[float], list[dict[str, float]]]:
    """Latencies in ms over ``runs`` POSTs to ``count`` recipients; per-run hops when ``breakdown``."""
    latencies: list[float] = []
    splits: list[dict[str, float]] = []
    for run in range(runs):
        if count >= USERS:
            body: dict[str, Any] = {"organisationUnits": [{"id": OU}]}
        else:
            first = (run * count) % (USERS - count)
            body = {"users": [{"id": uid(i)} for i in range(first, first + count)]}
        body.update(subject="Latency", text="Meeting on Monday.")
        sink.reset()
        time.sleep(IDLE_GAP_S)
        start = time.monotonic()
        at, conversation = post(api, body)
        arrivals = sink.wait_for(count, start)
        latencies.extend((t - at) * 1000 for t in arrivals)
        if breakdown:
            split = hops(engine, conversation, at)
            split["smtp"] = (max(arrivals) - at) * 1000
            splits.append(split)
    return latencies, splits


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    from messaging.db import make_engine

    parser = argparse.ArgumentParser()
    parser.add_argument("--single", type=int, default=20, help="runs with 1 recipient")
    parser.add_argument("--hundred", type=int, default=5, help="runs with 100 recipients")
    parser.add_argument("--large", type=int, default=1, help="runs with 10,000 recipients")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4, help="HERALD_SMTP_CONNECTIONS (per worker process)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds the idle fleet's DB load is sampled")
    args = parser.parse_args()
    smtp_port, stats_port, api_port = free_port(), free_port(), free_port()
    namespace = f"bench-{secrets.token_hex(3)}"
    sizes = [(1, args.single), (100, args.hundred), (USERS, args.large)]
    results: dict[int, list[float]] = {}
    splits: list[dict[str, float]] = []
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed_org_unit(engine, OU, USERS, tag="mail", contact="email")
        env, peer, worker = email_fleet(db_url, namespace, smtp_port, stats_port, connections=args.connections,
                                        processes=args.processes, threads=args.threads)
        logs = Path(tempfile.mkdtemp(prefix="herald-bench-latency-"))
        print(f"logs: {logs}")
        with process(peer, {}, smtp_port, log=logs / "sink.log"), \
                process(uvicorn_command("herald.asgi:create_app_from_env", api_port, factory=True), env, api_port,
                        log=logs / "api.log"), \
                process(worker, env, log=logs / "worker.log"), \
                httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60, auth=("admin", "district")) as api:
            wait_for_port(stats_port)
            sink = Sink(f"http://127.0.0.1:{stats_port}")
            time.sleep(3)  # let the workers boot and their relays start
            run_size(engine, api, sink, 1, 1)  # warm-up: first connections, first plans
            idle_tps = idle_rate(engine, args.idle_s)
            for count, runs in sizes:
                if runs:
                    results[count], split = run_size(engine, api, sink, count, runs, breakdown=count == 1)
                    splits.extend(split)
        engine.dispose()
    forget_namespace(namespace)
    table = []
    figures: dict[str, Any] = {"idle_db_tps": round(idle_tps, 1), "processes": args.processes,
                               "threads": args.threads, "connections": args.connections}
    for count, runs in sizes:
        if not runs:
            continue
        values = results[count]
        p50, p99, top = percentile(values, 50), percentile(values, 99), max(values)
        table.append((f"{count:,}", str(runs), f"{len(values):,}", f"{p50:.0f}", f"{p99:.0f}", f"{top:.0f}"))
        figures[f"r{count}"] = {"runs": runs, "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "max_ms": round(top, 1)}
    print_table(
        "bench/latency.py  (email, idle fleet; 201 -> the sink's receive time, ms)",
        table, ("recipients", "runs", "mails", "p50 ms", "p99 ms", "max ms"),
    )
    if splits:
        names = ["relayed", "fanned_out", "claimed", "smtp", "recorded"]
        medians = {n: statistics.median(s[n] for s in splits if n in s) for n in names}
        print_table(
            "1 recipient: median ms from the 201 to each hop (outbox enqueued, fan-out done, delivery claimed, "
            "mail at the sink, row SENT)",
            [tuple(f"{medians[n]:.0f}" for n in names)], tuple(names),
        )
        figures["single_hops_ms"] = {n: round(v, 1) for n, v in medians.items()}
    print(f"idle fleet: {idle_tps:.1f} database transactions/s over {args.idle_s:.0f} s")
    emit(figures)


if __name__ == "__main__":
    main()
