"""One /metrics scrape with 1,000,000 delivery rows (and as many attempts) on PostgreSQL: before and after.

Seeds a scratch database like bench/ops.py (1,000 users x 1,000 messages, one email each, 85%
SENT), gives every delivery the attempt the recorder would have written, then times, median of
``--runs``:
- before: the queries a scrape ran until now (every delivery grouped by channel and status, every
  SENT delivery joined to its message for the latency histogram, the queues, the inbox count);
- after: ``messaging.metrics.figures`` and the whole Prometheus text (``api.metrics.exposition``),
  in steady state: before each timed scrape, ``--tail`` new attempts are written (30 s of traffic
  at 100 attempts/s by default), so each scrape folds one step and reads one step live;
- the first two scrapes after the upgrade (everything is tail, then everything is folded once).
Run:
    .venv/bin/python -m bench.metrics [--rows 1000000] [--runs 5] [--tail 3000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sqlalchemy import Engine, text

from bench._support import emit, median, print_table, scratch_database
from bench.ops import seed

# The scrape as it was (messaging/metrics.py at 12909e6), as SQL.
BEFORE = (
    "SELECT channel, status, count(*), sum(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END) "
    "FROM deliveries GROUP BY channel, status ORDER BY channel, status",
    "SELECT count(*), min(created_at) FROM outbox WHERE done_at IS NULL",
    "SELECT channel, count(*), min(next_attempt_at) FROM deliveries WHERE status IN ('QUEUED', 'FAILED') "
    "AND next_attempt_at <= now() GROUP BY channel ORDER BY channel",
    "SELECT d.channel, count(*), sum(extract(epoch FROM d.sent_at - m.created)), "
    + ", ".join(
        f"sum(CASE WHEN extract(epoch FROM d.sent_at - m.created) <= {b} THEN 1 ELSE 0 END)"
        for b in (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
    )
    + " FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.sent_at IS NOT NULL "
    "GROUP BY d.channel ORDER BY d.channel",
    "SELECT count(*) FROM user_messages",
)


def seed_attempts(engine: Engine) -> None:
    """One attempt per delivery that has been tried: its last outcome, finished when it was sent or failed."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO delivery_attempts (delivery_id, attempt, claimed_at, finished_at, outcome, error_code) "
            "SELECT id, greatest(attempts, 1), created, coalesce(sent_at, next_attempt_at), status, last_error_code "
            "FROM deliveries WHERE status <> 'QUEUED'"
        ))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE delivery_attempts"))


def add_traffic(engine: Engine, first_id: int, n: int, step: int) -> None:
    """``n`` new SENT attempts (a later claim of existing deliveries), as the recorder appends them."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO delivery_attempts (delivery_id, attempt, claimed_at, finished_at, outcome) "
            "SELECT id, attempts + 1, created + make_interval(days => :step), created + make_interval(days => :step), 'SENT' "
            "FROM deliveries WHERE id >= :first ORDER BY id LIMIT :n"
        ), {"first": first_id, "n": n, "step": step})


def main() -> None:
    """Seed, time, print a table, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tail", type=int, default=3000)
    args = parser.parse_args()

    from api.metrics import HttpMetrics, exposition
    from messaging import metrics
    from messaging.db import make_engine, make_sessionmaker

    with scratch_database() as url:
        t0 = time.perf_counter()
        seed(url, args.rows)
        engine = make_engine(url)
        seed_attempts(engine)
        seed_s = time.perf_counter() - t0
        maker = make_sessionmaker(engine)
        with engine.connect() as conn:
            rows = int(conn.scalar(text("SELECT count(*) FROM deliveries")) or 0)
            attempts = int(conn.scalar(text("SELECT count(*) FROM delivery_attempts")) or 0)
            first_delivery = int(conn.scalar(text("SELECT min(id) FROM deliveries")) or 0)

        def before() -> None:
            with engine.connect() as conn:
                for statement in BEFORE:
                    conn.execute(text(statement)).all()

        def after() -> Any:
            with maker() as session:
                return metrics.figures(session)

        before()  # warm the cache as the after-runs will be
        before_ms = []
        for _ in range(args.runs):
            t = time.perf_counter()
            before()
            before_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        after()  # first scrape after the upgrade: every attempt is above the watermark
        first_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        after()  # second: folds the first step (every attempt) into the totals
        second_ms = (time.perf_counter() - t) * 1000
        after_ms, text_ms = [], []
        http = HttpMetrics()
        for run in range(args.runs):
            add_traffic(engine, first_delivery + run * args.tail, args.tail, run + 1)
            t = time.perf_counter()
            figures = after()
            after_ms.append((time.perf_counter() - t) * 1000)
            add_traffic(engine, first_delivery + (run + args.runs) * args.tail, args.tail, run + 1)
            t = time.perf_counter()
            exposition(http, maker)
            text_ms.append((time.perf_counter() - t) * 1000)
        with engine.connect() as conn:
            total = int(conn.scalar(text("SELECT count(*) FROM delivery_attempts")) or 0)
        # Every attempt but the last step's is still counted exactly once.
        counted = sum(figures.attempts.outcomes.values())
        engine.dispose()
    figures_out = {
        "rows": rows, "attempts_seeded": attempts, "tail_per_scrape": args.tail, "seed_s": round(seed_s, 1),
        "before_ms": round(median(before_ms), 1), "after_ms": round(median(after_ms), 1),
        "after_exposition_ms": round(median(text_ms), 1), "first_scrape_ms": round(first_ms), "second_scrape_ms": round(second_ms),
        "ratio": round(median(before_ms) / max(median(after_ms), 0.001), 1),
        "counted_attempts_at_last_figures": counted, "attempts_at_end": total,
    }  # fmt: skip
    print_table(
        f"/metrics scrape with {rows:,} deliveries and {attempts:,} attempts (median of {args.runs}, ms)",
        [
            ("before: group the whole table, join every SENT row", f"{median(before_ms):.1f}"),
            (f"after: figures, {args.tail:,} new attempts per scrape", f"{median(after_ms):.1f}"),
            ("after: the whole Prometheus text", f"{median(text_ms):.1f}"),
            ("first scrape after the upgrade (all attempts live)", f"{first_ms:.0f}"),
            ("second scrape (folds them all once)", f"{second_ms:.0f}"),
        ],
        ("scrape", "ms"),
    )
    emit(figures_out)


if __name__ == "__main__":
    main()
