"""Validation notification with a real `herald worker` process on Redis, killed half-way."""

from __future__ import annotations

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


def writing(engine: Engine) -> bool:
    """A worker's notification transaction is inserting conversations, messages or inbox rows right now."""
    with engine.connect() as conn:
        return bool(conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'active' AND query ~ '^INSERT INTO (conversations|messages|user_messages|validation_notifications)'"
        ).scalar())


def counts(engine: Engine) -> tuple[int, int, int, int]:
    """(results notified, validation conversations, notification rows, inbox rows)."""
    with engine.connect() as conn:
        return (
            conn.scalar(select(func.count()).where(ValidationResult.notification_sent)) or 0,
            conn.scalar(select(func.count()).select_from(Conversation).where(Conversation.message_type == "VALIDATION_RESULT")) or 0,
            conn.scalar(select(func.count()).select_from(ValidationNotification)) or 0,
            conn.scalar(select(func.count()).select_from(UserMessage).where(UserMessage.message_type == "VALIDATION_RESULT")) or 0,
        )


def test_a_worker_killed_while_notifying_5000_results_notifies_each_once_after_restart(
    validation_fleet: Fleet, tmp_path: Path
) -> None:
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
        wait_until(lambda: writing(engine), timeout_s=30, interval_s=0.01, what="the worker to be writing conversations")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    assert counts(engine) == (0, 0, 0, 0)  # one transaction: nothing of the killed run is left
    second = worker_process(env, tmp_path / "second.log")
    try:
        wait_until(lambda: counts(engine)[0] == RESULTS, timeout_s=120, interval_s=0.2, what="the restarted worker")
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(20)
    assert counts(engine) == (RESULTS, RESULTS, RESULTS, RESULTS * MEMBERS)
    with engine.connect() as conn:
        pairs = conn.execute(
            select(ValidationNotification.result_id, func.count()).group_by(ValidationNotification.result_id).having(func.count() > 1)
        ).all()
        assert pairs == []
        attempts, done = conn.execute(select(OutboxEvent.attempts, OutboxEvent.done_at)).one()
    assert attempts >= 2 and done is not None
