"""Validation-result notification throughput: 10,000 results in one POST, groups of 1,000 users.

Herald's API and a `herald worker` (Redis broker) run as subprocesses on a scratch PostgreSQL
database. Two cases, each one POST of ``--results`` results to a rule whose template sends to a
group of ``--members`` users: SINGLE_NOTIFICATION (one conversation per result: results x members
inbox rows) and COLLECTIVE_SUMMARY (one conversation for the group: members inbox rows). The time
runs from the POST to the outbox event done (the inbox rows commit with it). In the same run,
bench/fanout.py's fan-out (one message to an org unit of ``--fanout-users``) gives the baseline
rate, and a COPY of the single run's inbox rows (results x members) into a table with the inbox's
indexes the rate of PostgreSQL itself. The time counts until every outbox event of the run is done,
the chunk events of a large run's inbox rows included. Run:
    .venv/bin/python -m bench.validation [--results 10000] [--members 1000] [--fanout-users 100000] [--runs 1]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import time
from datetime import date, timedelta
from typing import Any

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
from bench.fanout import OU as FANOUT_OU
from bench.fanout import fan_out_once

GROUP_OU, GROUP = "OuBenchVal1", "UgBenchVal1"
SINGLE_RULE, SUMMARY_RULE = "VrBenchSgl1", "VrBenchSum1"
NGELEHUN = "DiszpKrYNg8"
AUTH = "Basic " + base64.b64encode(b"admin:district").decode()


def metadata() -> dict[str, Any]:
    """Two rules, a template of each strategy, both to the bench group."""
    def rule(uid: str, importance: str) -> dict[str, Any]:
        return {"id": uid, "name": f"Bench {uid}", "importance": importance, "operator": "less_than_or_equal_to",
                "description": "Bench rule", "leftSide": {"description": "Left", "expression": "#{fbfJHSPpUQD}"},
                "rightSide": {"description": "Right", "expression": "#{h0xKKjijTdI}"}}

    def template(uid: str, rule_uid: str, strategy: str) -> dict[str, Any]:
        return {"id": uid, "name": f"Bench {strategy}", "sendStrategy": strategy,
                "subjectTemplate": "V{rule_name} at V{org_unit_name}",
                "messageTemplate": "V{left_side_description} V{left_side_value} V{operator} V{right_side_value} in V{period}",
                "validationRules": [{"id": rule_uid}], "recipientUserGroups": [{"id": GROUP}]}

    return {
        "validationRules": [rule(SINGLE_RULE, "HIGH"), rule(SUMMARY_RULE, "MEDIUM")],
        "validationNotificationTemplates": [
            template("VntBenchSg1", SINGLE_RULE, "SINGLE_NOTIFICATION"),
            template("VntBenchSm1", SUMMARY_RULE, "COLLECTIVE_SUMMARY"),
        ],
    }


def seed_group(engine: Engine, members: int) -> None:
    """The group of ``members`` users (COPY, via seed_org_unit) and the validation metadata."""
    seed_org_unit(engine, GROUP_OU, members, tag="validator")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO user_groups (uid, name, created, last_updated) VALUES (:g, 'Bench', now(), now())"),
                     {"g": GROUP})
        conn.execute(text(
            "INSERT INTO user_group_members (group_id, user_id) SELECT g.id, u.id FROM user_groups g, users u "
            "WHERE g.uid = :g AND u.username LIKE 'validatoruser%'"
        ), {"g": GROUP})


def results(rule: str, count: int, offset: int = 0) -> list[dict[str, Any]]:
    """``count`` distinct results of one rule (daily periods from ``offset`` days after 1990-01-01)."""
    first = date(1990, 1, 1) + timedelta(days=offset)
    return [
        {"validationRule": {"id": rule}, "organisationUnit": {"id": NGELEHUN},
         "period": {"id": (first + timedelta(days=i)).strftime("%Y%m%d")}, "leftsideValue": i + 1, "rightsideValue": 0}
        for i in range(count)
    ]


def notify_once(engine: Engine, url: str, rule: str, count: int, offset: int = 0) -> tuple[float, float, int]:
    """POST the results; (seconds to the last inbox row, seconds the POST took, inbox rows written)."""
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM user_messages WHERE message_type = 'VALIDATION_RESULT'")).scalar() or 0
        last_event = conn.execute(text("SELECT coalesce(max(id), 0) FROM outbox")).scalar()
    body = results(rule, count, offset)
    with httpx.Client(timeout=300) as client:
        start = time.perf_counter()
        response = client.post(f"{url}/api/validationResults", json=body, headers={"Authorization": AUTH})
        accepted = time.perf_counter() - start
    assert response.status_code == 200, response.text[:500]
    assert response.json()["response"]["importCount"]["imported"] == count
    with engine.connect() as conn:
        while True:
            # The run's event and the chunk events it stages (inbox rows of large runs) all done:
            # the chunks commit with their run, so none can be missing once the first is done.
            pending, events = conn.execute(text(
                "SELECT count(*) FILTER (WHERE done_at IS NULL), count(*) FROM outbox "
                "WHERE id > :last AND kind = 'validation.results'"
            ), {"last": last_event}).one()
            conn.commit()
            if events and not pending:
                break
            if time.perf_counter() - start > 900:
                raise RuntimeError("notification did not finish in 900 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        after = conn.execute(text("SELECT count(*) FROM user_messages WHERE message_type = 'VALIDATION_RESULT'")).scalar() or 0
    return elapsed, accepted, int(after - before)


def copy_inbox_baseline(engine: Engine, conversations: int, members: int) -> float:
    """Seconds to COPY conversations x members inbox rows into a scratch table with the inbox's indexes.

    The same rows a single-notification run writes (one transaction, rows built before the clock starts).
    """
    table = f"scratch_{secrets.token_hex(3)}"
    with engine.begin() as conn:
        conn.execute(text(
            f"CREATE TABLE {table} (conversation_id bigint NOT NULL, user_id bigint NOT NULL, read boolean NOT NULL, "
            "follow_up boolean NOT NULL, last_message timestamp NOT NULL, message_type varchar(32) NOT NULL, "
            "PRIMARY KEY (conversation_id, user_id))"
        ))
        conn.execute(text(f"CREATE INDEX ON {table} (user_id, message_type, last_message, conversation_id) INCLUDE (read, follow_up)"))
    tail = "".join(f"\t{u}\tf\tf\t2026-01-01 00:00:00\tVALIDATION_RESULT\n" for u in range(1, members + 1))
    blocks = [(f"{c}" + tail.replace("\n", f"\n{c}"))[: -len(str(c))] for c in range(1, conversations + 1)]
    start = time.perf_counter()
    with engine.begin() as conn, psycopg_connection(conn).cursor() as cursor, cursor.copy(
        f"COPY {table} (conversation_id, user_id, read, follow_up, last_message, message_type) FROM STDIN"
    ) as copy:
        for block in blocks:
            copy.write(block)
    elapsed = time.perf_counter() - start
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    return elapsed


def main() -> None:
    """Run both cases, the fan-out and the indexed COPY baselines; print the table and the JSON line."""
    from messaging.db import make_engine, make_sessionmaker
    from messaging.metadata import import_metadata

    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--fanout-users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    fan: list[float] = []
    single: list[tuple[float, float, int]] = []
    summary: list[tuple[float, float, int]] = []
    copies: list[float] = []
    with scratch_database() as db_url:
        engine = make_engine(db_url)
        seed_org_unit(engine, FANOUT_OU, args.fanout_users, tag="field")
        seed_group(engine, args.members)
        with make_sessionmaker(engine)() as session:
            report = import_metadata(session, metadata())
            assert report.ok, report.as_response()
            session.commit()
        port = free_port()
        env = {"DATABASE_URL": db_url, "BROKER_URL": REDIS_URL, "HERALD_LOG_LEVEL": "WARNING",
               "HERALD_BROKER_NAMESPACE": f"bench-{secrets.token_hex(3)}", "HERALD_OUTBOX_POLL_S": "0.02"}
        url = f"http://127.0.0.1:{port}"
        with process(uvicorn_command("herald.asgi:create_app_from_env", port, factory=True), env, port), \
                process([sys.executable, "-m", "herald.cli", "worker", "--processes", "1", "--threads", "4"], env):
            time.sleep(2)  # let the worker boot and its relay start polling
            fan_out_once(engine, url, args.fanout_users)  # warm-up: the worker's first job pays its start-up
            for run in range(args.runs):
                fan.append(fan_out_once(engine, url, args.fanout_users)[0])
                single.append(notify_once(engine, url, SINGLE_RULE, args.results, offset=run * args.results))
                summary.append(notify_once(engine, url, SUMMARY_RULE, args.results, offset=run * args.results))
                copies.append(copy_inbox_baseline(engine, args.results, args.members))
        engine.dispose()

    fan_s, copy_s = median(fan), median(copies)
    single_s, single_post_s = median([r[0] for r in single]), median([r[1] for r in single])
    summary_s, summary_post_s = median([r[0] for r in summary]), median([r[1] for r in summary])
    single_rows, summary_rows = single[0][2], summary[0][2]
    fan_rate, copy_rate = (args.fanout_users + 1) / fan_s, args.results * args.members / copy_s
    single_rate, summary_rate = single_rows / single_s, summary_rows / summary_s
    # Each recipient of either strategy is told of every result: results x members (result, recipient) notifications.
    told = args.results * args.members
    told_single, told_summary = told / single_s, told / summary_s
    table = [
        ("fan-out: one message to an org unit", f"{fan_s * 1000:,.0f}", f"{args.fanout_users + 1:,}", f"{fan_rate:,.0f}", "1.00",
         f"{fan_rate / copy_rate:.2f}"),
        ("COPY of the single run's inbox rows, indexed", f"{copy_s * 1000:,.0f}", f"{told:,}", f"{copy_rate:,.0f}",
         f"{copy_rate / fan_rate:.2f}", "1.00"),
        ("SINGLE_NOTIFICATION: POST -> last inbox row", f"{single_s * 1000:,.0f}", f"{single_rows:,}", f"{single_rate:,.0f}",
         f"{single_rate / fan_rate:.2f}", f"{single_rate / copy_rate:.2f}"),
        ("  of which POST answered", f"{single_post_s * 1000:,.0f}", "-", "-", "-", "-"),
        ("COLLECTIVE_SUMMARY: POST -> last inbox row", f"{summary_s * 1000:,.0f}", f"{summary_rows:,}", f"{summary_rate:,.0f}",
         f"{summary_rate / fan_rate:.2f}", f"{summary_rate / copy_rate:.2f}"),
        ("  of which POST answered", f"{summary_post_s * 1000:,.0f}", "-", "-", "-", "-"),
        ("SUMMARY as (result, recipient) notifications", f"{summary_s * 1000:,.0f}", f"{told:,}", f"{told_summary:,.0f}",
         f"{told_summary / fan_rate:.2f}", f"{told_summary / copy_rate:.2f}"),
    ]
    runs = "one run" if args.runs == 1 else f"median of {args.runs} runs"
    print_table(
        f"bench/validation.py  ({args.results:,} results in one POST, a group of {args.members:,} users; {runs})",
        table, ("case", "ms", "inbox rows", "rows/s", "ratio to fan-out", "ratio to indexed COPY"),
    )
    emit({
        "results": args.results,
        "members": args.members,
        "runs": args.runs,
        "fanout_rows_per_s": round(fan_rate),
        "copy_indexed_rows_per_s": round(copy_rate),
        "single_post_to_last_row_ms": round(single_s * 1000, 1),
        "single_post_ms": round(single_post_s * 1000, 1),
        "single_rows_per_s": round(single_rate),
        "single_results_per_s": round(args.results / single_s),
        "single_notifications_per_s": round(told_single),
        "single_ratio_to_fanout": round(single_rate / fan_rate, 3),
        "single_ratio_to_indexed_copy": round(single_rate / copy_rate, 3),
        "summary_post_to_last_row_ms": round(summary_s * 1000, 1),
        "summary_post_ms": round(summary_post_s * 1000, 1),
        "summary_rows_per_s": round(summary_rate),
        "summary_results_per_s": round(args.results / summary_s),
        "summary_ratio_to_fanout": round(summary_rate / fan_rate, 3),
        "summary_notifications_per_s": round(told_summary),
        "summary_notifications_ratio_to_fanout": round(told_summary / fan_rate, 3),
        "summary_notifications_ratio_to_indexed_copy": round(told_summary / copy_rate, 3),
    })


if __name__ == "__main__":
    main()
