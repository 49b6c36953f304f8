"""A fan-out in chunks: progress visible between chunks, removals holding across them, and a killed worker resuming."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from messaging import conversations, deliveries, fanout
from messaging.db import make_sessionmaker
from messaging.demo import ADMIN
from messaging.directory import principal_for, user_by_uid
from messaging.models import Conversation, Delivery, OutboxEvent, User, UserMessage, utcnow
from messaging.ops import overview
from tests.conftest import REDIS_URL, wait_until
from tests.support.deliveries import BEN, MIA, SmtpSink, redis_fleet, worker_process

pytestmark = [pytest.mark.postgres]

OU = "OuChunk0001"


def org_unit_with_email_users(engine: Engine, count: int) -> list[int]:
    """An org unit with ``count`` users who have email addresses (COPY, as the benchmark seeds); their ids."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO org_units (uid, name, short_name, path, level, created, last_updated) "
            f"VALUES ('{OU}', 'Chunks', 'Chunks', '/{OU}', 1, now(), now())"
        )
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            with cursor.copy(
                "COPY users (uid, username, first_name, surname, email, disabled, created, last_updated) FROM STDIN"
            ) as copy:
                for i in range(count):
                    copy.write_row((f"Chk{i:08d}", f"chunk{i}", "Chunk", str(i), f"chunk{i}@clinic.example", False, "now", "now"))
            cursor.execute(
                "INSERT INTO user_org_units (org_unit_id, user_id) "
                "SELECT (SELECT id FROM org_units WHERE uid = %s), id FROM users WHERE username LIKE 'chunk%%'",
                (OU,),
            )
        return list(conn.scalars(select(User.id).where(User.username.like("chunk%")).order_by(User.id)))


def send_to_org_unit(engine: Engine, *user_uids: str) -> tuple[str, int]:
    """Admin writes to the org unit (and to these users by name); the conversation's UID and its outbox event."""
    with make_sessionmaker(engine)() as session:
        admin = user_by_uid(session, ADMIN)
        assert admin is not None
        conversation = conversations.send_private_message(
            session, sender=principal_for(session, admin), subject="Chunked", text="Hello",
            refs=conversations.RecipientRefs(users=list(user_uids), org_units=[OU]),
        )  # fmt: skip
        session.commit()
        uid = conversation.uid
        event_id = session.scalar(select(func.max(OutboxEvent.id)))
        assert event_id is not None
        return uid, event_id


def relayed_fan_out(engine: Engine) -> tuple[list[int], str, int]:
    """25 org-unit users with addresses, and a message to them and to BEN and MIA by name, its event
    handed to the broker as the relay does: the bulk users' ids, the conversation's UID, the event id."""
    bulk = org_unit_with_email_users(engine, 25)
    conversation, event_id = send_to_org_unit(engine, BEN, MIA)
    with engine.begin() as conn:
        conn.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(enqueued_at=utcnow()))
    return bulk, conversation, event_id


def inbox_rows(engine: Engine, conversation_uid: str) -> list[int]:
    """The user ids with an inbox row in the conversation."""
    with engine.connect() as conn:
        return list(conn.scalars(
            select(UserMessage.user_id).join(Conversation, Conversation.id == UserMessage.conversation_id)
            .where(Conversation.uid == conversation_uid)
        ))  # fmt: skip


def delivered_users(engine: Engine) -> list[int]:
    """The user id of every email delivery row (one per row, duplicates kept)."""
    with engine.connect() as conn:
        return list(conn.scalars(select(Delivery.user_id).where(Delivery.channel == "email")))


def in_progress(engine: Engine) -> list[tuple[int, int | None]]:
    """(expanded, audience) of each fan-out the ops overview shows in progress."""
    with make_sessionmaker(engine)() as session:
        return [(f.expanded, f.audience) for f in overview.fanouts(session)]


def test_every_chunk_commits_its_rows_and_the_overview_shows_expanded_x_of_y_between_chunks(
    delivery_db: tuple[str, Engine],
) -> None:
    _, engine = delivery_db
    bulk, conversation, event_id = relayed_fan_out(engine)
    notify = deliveries.notifier(("email",))
    audience = 25 + 3  # the org unit, BEN and MIA by name, and the sender
    # Not started: the rows the request wrote (sender, BEN, MIA) of the whole audience.
    assert in_progress(engine) == [(3, audience)]

    step = fanout.run_step(engine, event_id, notify, chunk=10)
    assert step == fanout.Progress(done=False, expanded=10, audience=audience)
    assert in_progress(engine) == [(10, audience)]
    # Chunks go by user id, and every user id below the cursor is done: inbox rows and emails alike.
    with engine.connect() as conn:
        cursor = conn.scalar(select(OutboxEvent.progress_cursor).where(OutboxEvent.id == event_id))
    assert cursor is not None
    below = [u for u in bulk if u <= cursor]
    assert below and set(below) <= set(inbox_rows(engine, conversation))
    assert not {u for u in bulk if u > cursor} & set(inbox_rows(engine, conversation))
    assert sorted(u for u in delivered_users(engine) if u in set(bulk)) == below

    # A member removed between chunks, before the fan-out reached them, stays removed: no row, no email.
    removed = bulk[-1]
    with make_sessionmaker(engine)() as session:
        admin = user_by_uid(session, ADMIN)
        target = session.get(User, removed)
        assert admin is not None and target is not None
        conversations.remove_participant(session, actor=principal_for(session, admin), conversation_uid=conversation, user_uid=target.uid)
        session.commit()

    assert fanout.run_step(engine, event_id, notify, chunk=10) == fanout.Progress(done=False, expanded=20, audience=audience)
    assert in_progress(engine) == [(20, audience)]
    assert fanout.run_step(engine, event_id, notify, chunk=10) == fanout.Progress(done=True, expanded=audience, audience=audience)
    assert in_progress(engine) == []
    assert fanout.run_step(engine, event_id, notify, chunk=10) is None  # done

    rows = inbox_rows(engine, conversation)
    assert len(rows) == len(set(rows)) == audience - 1 and removed not in rows
    emails = delivered_users(engine)
    assert sorted(u for u in emails if u in set(bulk)) == bulk[:-1]
    assert len(emails) == len(set(emails))


@pytest.mark.redis
def test_a_worker_killed_between_chunks_resumes_with_one_inbox_row_and_one_delivery_per_recipient(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str, tmp_path: Path
) -> None:
    url, engine = delivery_db
    count = 20_000
    bulk = org_unit_with_email_users(engine, count)
    # Small chunks, and a sweeper that re-enqueues the killed worker's event after a second.
    overrides = {"SMTP_URL": smtp_sink.url, "HERALD_FANOUT_CHUNK": "500", "HERALD_OUTBOX_POLL_S": "0.05"}
    with redis_fleet(url, engine, REDIS_URL, f"{redis_namespace}-chunks", **overrides) as fleet:
        conversation, event_id = send_to_org_unit(engine)
        env = fleet.worker_env()

        def progress() -> tuple[int | None, object]:
            with engine.connect() as conn:
                expanded, done = conn.execute(
                    select(OutboxEvent.progress_expanded, OutboxEvent.done_at).where(OutboxEvent.id == event_id)
                ).one()
                return expanded, done

        first = worker_process(env, tmp_path / "first-worker.log")
        try:
            wait_until(lambda: (progress()[0] or 0) > 0, timeout_s=60, interval_s=0.005, what="a first chunk to commit")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        expanded, done = progress()
        assert done is None and 0 < (expanded or 0) < count, "the worker should die mid-fan-out"

        second = worker_process(env, tmp_path / "second-worker.log")
        try:
            wait_until(lambda: progress()[1] is not None, timeout_s=120, interval_s=0.1, what="a new worker to finish the fan-out")
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
    rows = inbox_rows(engine, conversation)
    assert len(rows) == len(set(rows)) == count + 1 and set(bulk) <= set(rows)
    emails = delivered_users(engine)
    assert len(emails) == len(set(emails)) == count and set(emails) == set(bulk)
