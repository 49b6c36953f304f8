"""The operators' delivery search and bulk actions with 1,000,000 delivery rows on PostgreSQL.

Seeds a scratch database with COPY (1,000 users x 1,000 messages, one email each: 85% SENT,
12% DEAD of which 100,000 with smtp-550, 2% FAILED, 1% UNKNOWN), then times, median of a few
runs, the SQL behind /api/ops/deliveries and /api/deliveries (first page, a deep keyset page,
filters, the total), the dashboard's overview poll, and one "retry everything matching"
over the 100,000 smtp-550 rows. Run:
    .venv/bin/python -m bench.ops [--rows 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import text

from bench._support import emit, median, print_table, psycopg_connection, scratch_database

USERS = 1_000


def seed(url: str, rows: int) -> None:
    """Users, one conversation of ``rows / USERS`` messages, and ``rows`` deliveries, by COPY."""
    from messaging.db import make_engine

    engine = make_engine(url)
    messages = rows // USERS
    start = datetime(2026, 11, 1)
    with engine.begin() as conn:
        raw = psycopg_connection(conn)
        with raw.cursor() as cursor:
            with cursor.copy("COPY users (uid, username, first_name, surname, email, disabled, created, last_updated) FROM STDIN") as copy:
                for i in range(USERS):
                    copy.write_row((f"U{i:010d}", f"opsuser{i}", "Ops", f"User {i}", f"user{i}@clinic.example", False, start, start))
            cursor.execute(
                "INSERT INTO conversations (uid, subject, message_type, status, priority, last_message, message_count, "
                "created, last_updated) VALUES ('C0000000001', 'Bench', 'PRIVATE', 'NONE', 'NONE', %s, %s, %s, %s)",
                (start, messages, start, start),
            )
            with cursor.copy("COPY messages (uid, conversation_id, text, internal, created, last_updated) FROM STDIN") as copy:
                for m in range(messages):
                    at = start + timedelta(seconds=m * 60)
                    copy.write_row((f"M{m:010d}", 1, "Stock is low.", False, at, at))
            cursor.execute("SELECT min(id) FROM users WHERE username LIKE 'opsuser%%'")
            first_user = cursor.fetchone()[0]  # type: ignore[index]
            cursor.execute("SELECT min(id) FROM messages")
            first_message = cursor.fetchone()[0]  # type: ignore[index]
            columns = ("message_id, user_id, channel, status, address, attempts, next_attempt_at, last_error_code, "
                       "last_error, provider_id, created, updated, sent_at")  # fmt: skip
            with cursor.copy(f"COPY deliveries ({columns}) FROM STDIN") as copy:
                n = 0
                for m in range(messages):
                    created = start + timedelta(seconds=m * 60)
                    for u in range(USERS):
                        kind = n % 100
                        address = f"user{u}@clinic.example"
                        row: tuple[Any, ...]
                        if kind < 10:  # 10%: 100,000 of 1,000,000 with smtp-550
                            row = ("DEAD", 1, created, "smtp-550", "SMTP 550 on RCPT TO: 5.1.1 User unknown", None, None)
                        elif kind < 12:
                            row = ("DEAD", 8, created, "smtp-554", "gave up after 8 attempts: 554", None, None)
                        elif kind < 14:
                            row = ("FAILED", 2, created + timedelta(hours=1), "smtp-451", "try later", None, None)
                        elif kind < 15:
                            row = ("UNKNOWN", 1, created, "lease-expired", "the worker stopped", None, None)
                        else:
                            row = ("SENT", 1, created, None, None, f"<m{n}@bench>", created + timedelta(seconds=2))
                        status, attempts, next_at, code, error, provider, sent = row
                        copy.write_row((first_message + m, first_user + u, "email", status, address, attempts, next_at,
                                        code, error, provider, created, created, sent))  # fmt: skip
                        n += 1
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def timed(runs: int, call: Callable[[], Any]) -> tuple[float, Any]:
    """Median milliseconds of ``runs`` calls (after one warm-up), and the last result."""
    result = call()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - t0) * 1000)
    return median(samples), result


def main() -> None:
    """Seed, time, print a table, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from messaging import deliveries
    from messaging.db import make_engine, make_sessionmaker
    from messaging.deliveries import DeliveryQuery
    from messaging.ops import overview

    with scratch_database() as url:
        t0 = time.perf_counter()
        seed(url, args.rows)
        seed_s = time.perf_counter() - t0
        engine = make_engine(url)
        maker = make_sessionmaker(engine)
        with engine.connect() as conn:
            total_rows = conn.scalar(text("SELECT count(*) FROM deliveries"))
            deep_id = conn.scalar(text("SELECT id FROM deliveries ORDER BY id LIMIT 1 OFFSET 1000"))
            dead_deep = conn.scalar(text("SELECT id FROM deliveries WHERE status = 'DEAD' ORDER BY id LIMIT 1 OFFSET 500"))
        dead = DeliveryQuery(statuses=("DEAD",))
        dead_550 = DeliveryQuery(statuses=("DEAD",), error_codes=("smtp-550",))
        cases: list[tuple[str, Callable[[Any], Any]]] = [
            ("first page, no filter", lambda s: deliveries.page(s, DeliveryQuery(), limit=50)),
            ("first page, status=DEAD", lambda s: deliveries.page(s, dead, limit=50)),
            ("first page, DEAD + errorCode=smtp-550", lambda s: deliveries.page(s, dead_550, limit=50)),
            ("first page, recipient=opsuser7 + DEAD", lambda s: deliveries.page(
                s, DeliveryQuery(statuses=("DEAD",), recipient="opsuser7"), limit=50)),
            ("deep keyset page (1,000 rows from the end), no filter", lambda s: deliveries.page(
                s, DeliveryQuery(), limit=50, before_id=deep_id)),
            ("deep keyset page, status=DEAD (500 from the end)", lambda s: deliveries.page(
                s, dead, limit=50, before_id=dead_deep)),
            ("deep keyset page, DEAD + smtp-550", lambda s: deliveries.page(
                s, dead_550, limit=50, before_id=dead_deep)),
            ("attempt history of a page (50 ids)", lambda s: deliveries.attempts_of(s, list(range(1, 51)))),
            ("total, status=DEAD", lambda s: deliveries.count(s, dead)),
            ("total, no filter", lambda s: deliveries.count(s, DeliveryQuery())),
            ("dashboard overview poll", lambda s: overview.overview(s)),
        ]  # fmt: skip
        figures: dict[str, Any] = {"rows": total_rows, "seed_s": round(seed_s, 1)}
        table = []
        with maker() as session:
            for name, case in cases:
                ms, _ = timed(args.runs, partial(case, session))
                table.append((name, f"{ms:.1f}"))
                figures[name] = round(ms, 2)
            matching = deliveries.count(session, dead_550)
        with maker() as session:
            t0 = time.perf_counter()
            batch = deliveries.act(session, deliveries.RETRY, dead_550)
            session.commit()
            retry_ms = (time.perf_counter() - t0) * 1000
        table.append((f"retry everything matching DEAD + smtp-550 ({batch.changed:,} rows, one statement)", f"{retry_ms:.0f}"))
        figures["retry_matching_rows"] = batch.changed
        figures["retry_matching_ms"] = round(retry_ms)
        figures["matching_before_retry"] = matching
        engine.dispose()
    print_table(f"Delivery search and actions with {total_rows:,} delivery rows (median of {args.runs}, ms)",
                table, ("query", "ms"))  # fmt: skip
    emit(figures)


if __name__ == "__main__":
    main()
