"""Validation notification with a real `herald worker` process on Redis, killed half-way."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from messaging.models import Conversation, OutboxEvent, UserMessage
from messaging.validation.models import ValidationNotification, ValidationResult
from tests.conftest import REDIS_URL, reset_with_demo, wait_until
from tests.support.deliveries import Fleet, broker_fleet, seed_metadata, worker_process
from tests.support.validation import NGELEHUN, RULE_HIGH, RULES, template
from tests.test_fanout import bulk_org_unit

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
RESULTS, MEMBERS = 5_000, 200
GROUP = "UgValBulk01"


@pytest.fixture
def validation_fleet(worker_pg_url: str, worker_pg_engine: Engine, redis_namespace: str) -> Iterator[Fleet]:
    """Demo data, an API without workers, and a Redis broker for `herald worker` processes."""
    reset_with_demo(worker_pg_engine)
    with broker_fleet(worker_pg_url, worker_pg_engine, REDIS_URL, f"{redis_namespace}-validation") as fleet:
        yield fleet


def bulk_group(engine: Engine, members: int) -> None:
    """A user group of ``members`` users (inserted with COPY)."""
    bulk_org_unit(engine, "OuValBulk01", members)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO user_groups (uid, name, created, last_updated) VALUES ('{GROUP}', 'Bulk', now(), now())"
        )
        conn.exec_driver_sql(
            "INSERT INTO user_group_members (group_id, user_id) SELECT g.id, u.id FROM user_groups g, users u "
            f"WHERE g.uid = '{GROUP}' AND u.username LIKE 'bulk-OuValBulk01-%%'"
        )


RUN_TABLES, CHUNK_TABLES = "conversations|messages|validation_notifications", "user_messages"


def writing(engine: Engine, tables: str) -> bool:
    """A worker's transaction is inserting into one of ``tables`` right now."""
    with engine.connect() as conn:
        return bool(conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            f"AND state = 'active' AND query ~ '^INSERT INTO ({tables}) '"
        ).scalar())


def quiet(engine: Engine) -> bool:
    """No other backend of this database runs a statement (the killed worker's have ended)."""
    with engine.connect() as conn:
        return not conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'active'"
        ).scalar()


def run_done(engine: Engine) -> bool:
    """The notification run committed (its chunk events need not be done)."""
    with engine.connect() as conn:
        return conn.scalar(select(OutboxEvent.done_at).order_by(OutboxEvent.id).limit(1)) is not None


def chunk_rows_done(engine: Engine) -> int:
    """Inbox rows the done chunk events account for: members x the parts they cover."""
    with engine.connect() as conn:
        events = conn.execute(select(OutboxEvent.payload).where(OutboxEvent.done_at.is_not(None))).scalars()
        return sum((p["parts"][1] - p["parts"][0]) * MEMBERS for p in events if "parts" in p)


def all_done(engine: Engine) -> bool:
    """Every outbox event (the run and its chunks) is done."""
    with engine.connect() as conn:
        return not conn.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.done_at.is_(None)))


def counts(engine: Engine) -> tuple[int, int, int, int]:
    """(results notified, validation conversations, notification rows, inbox rows)."""
    with engine.connect() as conn:
        return (
            conn.scalar(select(func.count()).where(ValidationResult.notification_sent)) or 0,
            conn.scalar(select(func.count()).select_from(Conversation).where(Conversation.message_type == "VALIDATION_RESULT")) or 0,
            conn.scalar(select(func.count()).select_from(ValidationNotification)) or 0,
            conn.scalar(select(func.count()).select_from(UserMessage).where(UserMessage.message_type == "VALIDATION_RESULT")) or 0,
        )


@pytest.mark.parametrize("kill_in", ["run", "chunk"])
def test_a_worker_killed_while_notifying_5000_results_notifies_each_once_after_restart(
    validation_fleet: Fleet, tmp_path: Path, kill_in: str
) -> None:
    """Killed in the run (conversations) or in one of its inbox chunks: each leaves nothing or all of itself."""
    engine = validation_fleet.engine
    bulk_group(engine, MEMBERS)
    seed_metadata(engine, {"validationRules": RULES,
                           "validationNotificationTemplates": [template("VntBulk0001", [RULE_HIGH], [GROUP], "SINGLE_NOTIFICATION")]})
    first_day = date(2010, 1, 1)
    body = [
        {"validationRule": {"id": RULE_HIGH}, "organisationUnit": {"id": NGELEHUN},
         "period": {"id": (first_day + timedelta(days=i)).strftime("%Y%m%d")}, "leftsideValue": i, "rightsideValue": 0}
        for i in range(RESULTS)
    ]
    with validation_fleet.client() as client:
        response = client.post("/api/validationResults", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["response"]["importCount"]["imported"] == RESULTS
    env = {**validation_fleet.worker_env(), "HERALD_OUTBOX_STALE_S": "1", "HERALD_OUTBOX_POLL_S": "0.05"}
    first = worker_process(env, tmp_path / "first.log")
    try:
        if kill_in == "run":
            wait_until(lambda: writing(engine, RUN_TABLES), timeout_s=30, interval_s=0.01, what="the run to be writing")
        else:
            wait_until(lambda: run_done(engine) and writing(engine, CHUNK_TABLES), timeout_s=60, interval_s=0.01,
                       what="a chunk to be writing inbox rows")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    wait_until(lambda: quiet(engine), timeout_s=60, interval_s=0.05, what="the killed worker's statements to end")
    notified, conversations, notifications, inbox_rows = counts(engine)
    # The run commits its results, conversations and notification rows together, and stages
    # its chunks with them; each chunk's inbox rows commit with the chunk's done mark.
    assert notified == conversations == notifications == (0 if kill_in == "run" else RESULTS)
    assert inbox_rows == chunk_rows_done(engine)
    if kill_in == "chunk":
        assert inbox_rows < RESULTS * MEMBERS
    second = worker_process(env, tmp_path / "second.log")
    try:
        wait_until(lambda: counts(engine)[0] == RESULTS and all_done(engine), timeout_s=180, interval_s=0.2,
                   what="the restarted worker")
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(20)
    assert counts(engine) == (RESULTS, RESULTS, RESULTS, RESULTS * MEMBERS)
    with engine.connect() as conn:
        pairs = conn.execute(
            select(ValidationNotification.result_id, func.count()).group_by(ValidationNotification.result_id).having(func.count() > 1)
        ).all()
        assert pairs == []
        events = conn.execute(select(OutboxEvent.payload, OutboxEvent.attempts).order_by(OutboxEvent.id)).all()
    # 1,000,000 inbox rows are more than one chunk: the run staged several, covering its parts once.
    parts = [e.payload["parts"] for e in events[1:]]
    assert len(parts) > 1 and parts[0][0] == 0 and parts[-1][1] == RESULTS
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert max(e.attempts for e in events) >= 2  # the killed one ran again
