"""Validation-result notification throughput: 10,000 results in one POST, groups of 1,000 users.

Herald's API and a `herald worker` (Redis broker) run as subprocesses on a scratch PostgreSQL
database. Two cases, each one POST of ``--results`` results to a rule whose template sends to a
group of ``--members`` users: SINGLE_NOTIFICATION (one conversation per result: results x members
inbox rows) and COLLECTIVE_SUMMARY (one conversation for the group: members inbox rows). The time
runs from the POST to the outbox event done (the inbox rows commit with it). In the same run,
bench/fanout.py's fan-out (one message to an org unit of ``--fanout-users``) gives the baseline
rate. Run:
    .venv/bin/python -m bench.validation [--results 10000] [--members 1000] [--fanout-users 100000]
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
    print_table,
    process,
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


def results(rule: str, count: int) -> list[dict[str, Any]]:
    """``count`` distinct results of one rule (daily periods)."""
    first = date(1990, 1, 1)
    return [
        {"validationRule": {"id": rule}, "organisationUnit": {"id": NGELEHUN},
         "period": {"id": (first + timedelta(days=i)).strftime("%Y%m%d")}, "leftsideValue": i + 1, "rightsideValue": 0}
        for i in range(count)
    ]


def notify_once(engine: Engine, url: str, rule: str, count: int) -> tuple[float, float, int]:
    """POST the results; (seconds to the last inbox row, seconds the POST took, inbox rows written)."""
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM user_messages WHERE message_type = 'VALIDATION_RESULT'")).scalar() or 0
        last_event = conn.execute(text("SELECT coalesce(max(id), 0) FROM outbox")).scalar()
    body = results(rule, count)
    with httpx.Client(timeout=300) as client:
        start = time.perf_counter()
        response = client.post(f"{url}/api/validationResults", json=body, headers={"Authorization": AUTH})
        accepted = time.perf_counter() - start
    assert response.status_code == 200, response.text[:500]
    assert response.json()["response"]["importCount"]["imported"] == count
    with engine.connect() as conn:
        while True:
            done = conn.execute(text(
                "SELECT done_at FROM outbox WHERE id > :last AND kind = 'validation.results'"
            ), {"last": last_event}).scalar()
            conn.commit()
            if done is not None:
                break
            if time.perf_counter() - start > 900:
                raise RuntimeError("notification did not finish in 900 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        after = conn.execute(text("SELECT count(*) FROM user_messages WHERE message_type = 'VALIDATION_RESULT'")).scalar() or 0
    return elapsed, accepted, int(after - before)


def main() -> None:
    """Run both cases and the fan-out baseline; print the table and the JSON line."""
    from messaging.db import make_engine, make_sessionmaker
    from messaging.metadata import import_metadata

    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--fanout-users", type=int, default=100_000)
    args = parser.parse_args()
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
            fan_s, _ = fan_out_once(engine, url, args.fanout_users)
            single_s, single_post_s, single_rows = notify_once(engine, url, SINGLE_RULE, args.results)
            summary_s, summary_post_s, summary_rows = notify_once(engine, url, SUMMARY_RULE, args.results)
        engine.dispose()

    fan_rate = (args.fanout_users + 1) / fan_s
    single_rate, summary_rate = single_rows / single_s, summary_rows / summary_s
    # Each recipient of either strategy is told of every result: results x members (result, recipient) notifications.
    told = args.results * args.members
    told_single, told_summary = told / single_s, told / summary_s
    table = [
        ("fan-out: one message to an org unit", f"{fan_s * 1000:,.0f}", f"{args.fanout_users + 1:,}", f"{fan_rate:,.0f}", "1.00"),
        ("SINGLE_NOTIFICATION: POST -> last inbox row", f"{single_s * 1000:,.0f}", f"{single_rows:,}", f"{single_rate:,.0f}",
         f"{single_rate / fan_rate:.2f}"),
        ("  of which POST answered", f"{single_post_s * 1000:,.0f}", "-", "-", "-"),
        ("COLLECTIVE_SUMMARY: POST -> last inbox row", f"{summary_s * 1000:,.0f}", f"{summary_rows:,}", f"{summary_rate:,.0f}",
         f"{summary_rate / fan_rate:.2f}"),
        ("  of which POST answered", f"{summary_post_s * 1000:,.0f}", "-", "-", "-"),
        ("SUMMARY as (result, recipient) notifications", f"{summary_s * 1000:,.0f}", f"{told:,}", f"{told_summary:,.0f}",
         f"{told_summary / fan_rate:.2f}"),
    ]
    print_table(
        f"bench/validation.py  ({args.results:,} results in one POST, a group of {args.members:,} users; one run)",
        table, ("case", "ms", "inbox rows", "rows/s", "ratio to fan-out"),
    )
    emit({
        "results": args.results,
        "members": args.members,
        "fanout_rows_per_s": round(fan_rate),
        "single_post_to_last_row_ms": round(single_s * 1000, 1),
        "single_rows_per_s": round(single_rate),
        "single_results_per_s": round(args.results / single_s),
        "single_notifications_per_s": round(told_single),
        "single_ratio_to_fanout": round(single_rate / fan_rate, 3),
        "summary_post_to_last_row_ms": round(summary_s * 1000, 1),
        "summary_rows_per_s": round(summary_rate),
        "summary_results_per_s": round(args.results / summary_s),
        "summary_ratio_to_fanout": round(summary_rate / fan_rate, 3),
        "summary_notifications_per_s": round(told_summary),
        "summary_notifications_ratio_to_fanout": round(told_summary / fan_rate, 3),
    })


if __name__ == "__main__":
    main()
