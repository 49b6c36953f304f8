"""Durable fan-out on PostgreSQL with real Dramatiq workers on Redis (and RabbitMQ)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select, update

from messaging import fanout
from messaging.models import Conversation, OutboxEvent, User, UserMessage
from tests.conftest import RABBITMQ_URL, REDIS_URL, reset_with_demo, wait_until
from tests.support.deliveries import Fleet, broker_fleet, seed_metadata

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def uid(n: int, prefix: str = "u") -> str:
    """Deterministic DHIS2-shaped UIDs for test objects."""
    return f"{prefix}{n:010d}"[:11].ljust(11, "0")


@pytest.fixture
def redis_fleet(worker_pg_url: str, worker_pg_engine: Engine, redis_namespace: str) -> Iterator[Fleet]:
    """Empty demo database, an API, and a Redis worker runtime (not started)."""
    reset_with_demo(worker_pg_engine)
    with broker_fleet(worker_pg_url, worker_pg_engine, REDIS_URL, f"{redis_namespace}-fanout") as fleet:
        yield fleet


def seed_directory(engine: Engine) -> None:
    """Two org units (parent and child), two overlapping groups, a dozen users."""
    users = [
        {"id": uid(i), "username": f"worker{i}", "firstName": "Worker", "surname": str(i),
         "organisationUnits": [{"id": "OuChild0001" if i < 4 else "OuParent001"}]}
        for i in range(12)
    ]
    payload = {
        "organisationUnits": [
            {"id": "OuParent001", "name": "Parent"},
            {"id": "OuChild0001", "name": "Child", "parent": {"id": "OuParent001"}},
        ],
        "users": users,
        "userGroups": [
            {"id": "GroupA00001", "name": "A", "users": [{"id": uid(i)} for i in (4, 5, 6)]},
            {"id": "GroupB00001", "name": "B", "users": [{"id": uid(i)} for i in (6, 7, 0)]},
        ],
    }
    seed_metadata(engine, payload)


def participants(engine: Engine, conversation_uid: str) -> dict[str, bool]:
    """username -> read flag of every participant."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(User.username, UserMessage.read)
            .join(UserMessage, UserMessage.user_id == User.id)
            .join(Conversation, Conversation.id == UserMessage.conversation_id)
            .where(Conversation.uid == conversation_uid)
        )
        return {name: read for name, read in rows}


def post_message(fleet: Fleet, body: dict[str, Any]) -> str:
    """POST a message as admin and return the new conversation's UID."""
    with fleet.client() as client:
        response = client.post("/api/messageConversations", json={"subject": "Fan-out", "text": "Hello", **body})
    assert response.status_code == 201, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


def test_groups_and_org_units_expand_to_direct_members_once_each(redis_fleet: Fleet) -> None:
    seed_directory(redis_fleet.engine)
    conversation = post_message(
        redis_fleet,
        {
            # The sender lists themself too: they stay a single, read participant.
            "users": [{"id": uid(4)}, {"id": "PhzytPW3g2J"}, {"id": "xE7jOejl9FI"}],
            "userGroups": [{"id": "GroupA00001"}, {"id": "GroupB00001"}],
            "organisationUnits": [{"id": "OuChild0001"}],
        },
    )
    # Committed before any worker ran: the sender and the users named directly take part already
    # (DECISIONS #20); worker4 is named and in group A, and still gets one row.
    assert participants(redis_fleet.engine, conversation) == {"admin": True, "mobile": False, "worker4": False}
    redis_fleet.start_worker()
    expected = {"admin", "mobile"} | {f"worker{i}" for i in (0, 1, 2, 3, 4, 5, 6, 7)}

    def expanded() -> dict[str, bool] | None:
        found = participants(redis_fleet.engine, conversation)
        return found if set(found) == expected else None

    found = wait_until(expanded, what="the Redis worker to expand the recipients")
    # The parent org unit's users (worker8..11) are not recipients: org units do not include descendants.
    assert found == {name: name == "admin" for name in expected}


def test_a_user_in_two_of_the_groups_gets_one_inbox_row(redis_fleet: Fleet) -> None:
    seed_directory(redis_fleet.engine)
    # worker6 is in both groups; only groups are named, so no union de-duplicates for us.
    conversation = post_message(redis_fleet, {"userGroups": [{"id": "GroupA00001"}, {"id": "GroupB00001"}]})
    with redis_fleet.engine.connect() as conn:
        event_id = conn.scalar(select(OutboxEvent.id))
    assert fanout.process_event(redis_fleet.engine, event_id) is True
    assert participants(redis_fleet.engine, conversation) == {
        "admin": True, "worker0": False, "worker4": False, "worker5": False, "worker6": False, "worker7": False,
    }


def test_groups_and_org_units_split_into_ranges_give_each_member_one_inbox_row(redis_fleet: Fleet) -> None:
    seed_directory(redis_fleet.engine)
    conversation = post_message(redis_fleet, {"userGroups": [{"id": "GroupA00001"}, {"id": "GroupB00001"}],
                                              "organisationUnits": [{"id": "OuChild0001"}]})  # fmt: skip
    engine = redis_fleet.engine
    with engine.connect() as conn:
        event_id = conn.scalar(select(OutboxEvent.id).where(OutboxEvent.kind == "conversation.created"))
    assert event_id is not None
    # Nine recipients (worker0 to worker7 and the sender), chunks of two, up to three ranges.
    assert fanout.process_event(engine, event_id, chunk=2, ranges=3) is True
    with engine.connect() as conn:
        ranges = list(conn.scalars(select(OutboxEvent.id).where(OutboxEvent.kind == "fanout.range").order_by(OutboxEvent.id)))
        assert conn.scalar(select(OutboxEvent.done_at).where(OutboxEvent.id == event_id)) is None
    assert len(ranges) == 3
    for range_id in reversed(ranges):
        assert fanout.process_event(engine, range_id, chunk=2) is True
    assert set(participants(engine, conversation)) == {"admin"} | {f"worker{i}" for i in range(8)}
    with engine.connect() as conn:
        assert conn.scalar(select(OutboxEvent.done_at).where(OutboxEvent.id == event_id)) is not None
        progress = conn.execute(select(OutboxEvent.progress_expanded, OutboxEvent.progress_audience).where(OutboxEvent.id == event_id)).one()
    assert tuple(progress) == (9, 9)


def test_running_the_same_fanout_event_again_changes_nothing(redis_fleet: Fleet) -> None:
    seed_directory(redis_fleet.engine)
    conversation = post_message(redis_fleet, {"userGroups": [{"id": "GroupA00001"}]})
    with redis_fleet.engine.connect() as conn:
        event_id = conn.scalar(select(OutboxEvent.id))
    assert fanout.process_event(redis_fleet.engine, event_id) is True
    first = participants(redis_fleet.engine, conversation)
    assert fanout.process_event(redis_fleet.engine, event_id) is False  # already done
    # Even forced to run again (done flag lost), the unique (conversation, user) key keeps it harmless.
    with redis_fleet.engine.begin() as conn:
        conn.execute(update(OutboxEvent).values(done_at=None))
    assert fanout.process_event(redis_fleet.engine, event_id) is True
    assert participants(redis_fleet.engine, conversation) == first
    with redis_fleet.engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(UserMessage).join(Conversation, Conversation.id == UserMessage.conversation_id).where(Conversation.uid == conversation))
    assert rows == len(first) == 4


def test_an_emptied_redis_between_commit_and_delivery_loses_nothing(redis_fleet: Fleet) -> None:
    seed_directory(redis_fleet.engine)
    conversation = post_message(redis_fleet, {"organisationUnits": [{"id": "OuParent001"}]})
    # The relay hands the event to Redis, then Redis restarts empty before any worker takes it.
    assert redis_fleet.runtime.relay.run_once() == 1
    client = redis.Redis.from_url(REDIS_URL)
    namespace = redis_fleet.settings.broker_namespace
    keys = list(client.scan_iter(f"{namespace}*"))
    assert keys, "the relay should have enqueued the event in Redis"
    client.delete(*keys)
    client.close()
    redis_fleet.start_worker()
    expected = {"admin"} | {f"worker{i}" for i in range(4, 12)}
    wait_until(
        lambda: set(participants(redis_fleet.engine, conversation)) == expected,
        timeout_s=15,
        what="the sweeper to re-enqueue the lost event",
    )
    with redis_fleet.engine.connect() as conn:
        attempts, done = conn.execute(select(OutboxEvent.attempts, OutboxEvent.done_at)).one()
    assert attempts >= 2 and done is not None


def test_a_worker_process_killed_mid_fanout_loses_nothing(redis_fleet: Fleet, tmp_path: Any) -> None:
    count = 20_000
    bulk_org_unit(redis_fleet.engine, "OuBulk00001", count)
    conversation = post_message(redis_fleet, {"organisationUnits": [{"id": "OuBulk00001"}]})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "BROKER_", "DATABASE_"))},
        "DATABASE_URL": redis_fleet.settings.database_url,
        "BROKER_URL": redis_fleet.settings.broker_url,
        "HERALD_BROKER_NAMESPACE": redis_fleet.settings.broker_namespace,
        "HERALD_OUTBOX_STALE_S": "1",
        "HERALD_OUTBOX_POLL_S": "0.05",
    }
    command = [sys.executable, "-m", "herald.cli", "worker", "--processes", "1", "--threads", "2"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with redis_fleet.engine.connect() as conn:
            wait_until(
                lambda: conn.scalar(select(OutboxEvent.enqueued_at)) is not None,
                timeout_s=30,
                what="the worker process to pick up the event",
            )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(
            lambda: len(participants(redis_fleet.engine, conversation)) == count + 1,
            timeout_s=60,
            interval_s=0.2,
            what="a new worker to finish the fan-out",
        )
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(20)
    with redis_fleet.engine.connect() as conn:
        assert conn.scalar(select(OutboxEvent.done_at)) is not None


def bulk_org_unit(engine: Engine, ou_uid: str, count: int) -> None:
    """An org unit with `count` users, inserted with COPY (as the benchmark does)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO org_units (uid, name, short_name, path, level, created, last_updated) "
            f"VALUES ('{ou_uid}', 'Bulk', 'Bulk', '/{ou_uid}', 1, now(), now())"
        )
        ou_id = conn.exec_driver_sql(f"SELECT id FROM org_units WHERE uid = '{ou_uid}'").scalar()
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            with cursor.copy(
                "COPY users (uid, username, first_name, surname, disabled, created, last_updated) FROM STDIN"
            ) as copy:
                for i in range(count):
                    copy.write_row((f"B{ou_uid[2:6]}{i:06d}", f"bulk-{ou_uid}-{i}", "Bulk", str(i), False, "now", "now"))
            cursor.execute(
                "INSERT INTO user_org_units (org_unit_id, user_id) SELECT %s, id FROM users WHERE username LIKE %s",
                (ou_id, f"bulk-{ou_uid}-%"),
            )


@pytest.mark.rabbitmq
def test_rabbitmq_broker_fans_out_too(worker_pg_url: str, worker_pg_engine: Engine, redis_namespace: str) -> None:
    pg_engine = worker_pg_engine
    reset_with_demo(pg_engine)
    seed_directory(pg_engine)
    with broker_fleet(worker_pg_url, pg_engine, RABBITMQ_URL, f"{redis_namespace}-amqp") as fleet:
        conversation = post_message(fleet, {"userGroups": [{"id": "GroupB00001"}]})
        fleet.start_worker()
        wait_until(
            lambda: set(participants(pg_engine, conversation)) == {"admin", "worker0", "worker6", "worker7"},
            timeout_s=20,
            what="the RabbitMQ worker to expand the group",
        )
