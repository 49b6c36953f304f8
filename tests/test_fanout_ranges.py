"""A fan-out split into ranges that workers write at once: progress, removals, crashes and a killed worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis
from sqlalchemy import Connection, Engine, select

from messaging import conversations, deliveries, fanout, outbox
from messaging.db import make_sessionmaker
from messaging.demo import ADMIN
from messaging.directory import principal_for, user_by_uid
from messaging.models import OutboxEvent, User
from messaging.ops import overview
from messaging.participants import INBOX_DONE
from tests.conftest import REDIS_URL, wait_until
from tests.support.deliveries import SmtpSink, redis_fleet, worker_process
from tests.test_fanout_progress import (
    delivered_users,
    in_progress,
    inbox_rows,
    org_unit_with_email_users,
    relayed_fan_out,
    send_to_org_unit,
)

pytestmark = [pytest.mark.postgres]


def ranges_of(engine: Engine, event_id: int) -> list[OutboxEvent]:
    """The range events a fan-out was split into, in user id order."""
    with make_sessionmaker(engine)() as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.kind == outbox.FANOUT_RANGE).order_by(OutboxEvent.id))
        return [e for e in events if e.payload[fanout.RANGE]["parent"] == event_id]


def done(engine: Engine, event_id: int) -> bool:
    """Whether the outbox event is marked done."""
    with engine.connect() as conn:
        return conn.scalar(select(OutboxEvent.done_at).where(OutboxEvent.id == event_id)) is not None


def test_a_split_fan_out_shows_progress_keeps_removals_survives_a_crashed_range_and_ends_with_its_last_range(
    delivery_db: tuple[str, Engine],
) -> None:
    _, engine = delivery_db
    bulk, conversation, event_id = relayed_fan_out(engine)
    notify = deliveries.notifier(("email",))
    audience = 25 + 3  # the org unit, BEN and MIA by name, and the sender

    # The first step only cuts the audience into two ranges of user ids and stages one event for each.
    assert fanout.run_step(engine, event_id, notify, chunk=10, ranges=2) == fanout.Progress(
        done=False, expanded=0, audience=audience
    )
    first, second = ranges_of(engine, event_id)
    spans = [fanout.Span(r.payload[fanout.RANGE]["after"], r.payload[fanout.RANGE]["upto"]) for r in (first, second)]
    assert spans[0].after is None and spans[0].upto == spans[1].after and spans[1].upto is None
    assert in_progress(engine) == [(0, audience)]  # the ranges themselves are not listed
    assert fanout.run_step(engine, event_id, notify, chunk=10, ranges=2) is None  # its ranges carry it on
    assert inbox_rows(engine, conversation) and len(inbox_rows(engine, conversation)) == 3  # the request's rows only

    # The second range goes first, a chunk at a time, and the fan-out's progress moves with it.
    step = fanout.run_step(engine, second.id, notify, chunk=10)
    assert step is not None and not step.done
    assert in_progress(engine) == [(10, audience)]

    # A member of the first range removed before the fan-out reached them stays removed.
    upto = spans[0].upto
    assert upto is not None
    removed = max(u for u in bulk if u <= upto)
    with make_sessionmaker(engine)() as session:
        admin, target = user_by_uid(session, ADMIN), session.get(User, removed)
        assert admin is not None and target is not None
        conversations.remove_participant(session, actor=principal_for(session, admin), conversation_uid=conversation, user_uid=target.uid)
        session.commit()

    # A range whose transaction fails after its inbox rows (a worker dying mid-chunk) leaves nothing behind.
    def crash(conn: Connection, event: OutboxEvent, span: fanout.Span | None) -> None:
        raise RuntimeError("killed mid-chunk")

    request_rows = set(inbox_rows(engine, conversation))
    with pytest.raises(RuntimeError, match="killed mid-chunk"):
        fanout.run_step(engine, first.id, crash, chunk=10)
    assert set(inbox_rows(engine, conversation)) == request_rows
    assert in_progress(engine) == [(10, audience)]
    outbox.record_failure(engine, first.id, "RuntimeError: killed mid-chunk")  # what the actor does then
    with make_sessionmaker(engine)() as session:
        assert [f.last_error for f in overview.fanouts(session)] == ["RuntimeError: killed mid-chunk"]

    # Run again, each range to its end: the fan-out is done with its last range, not before.
    assert fanout.process_event(engine, second.id, notify, chunk=10) is True
    assert not done(engine, event_id)
    assert fanout.process_event(engine, first.id, notify, chunk=10) is True
    assert done(engine, event_id) and in_progress(engine) == []
    assert fanout.process_event(engine, first.id, notify, chunk=10) is False  # a done range never runs twice

    rows = inbox_rows(engine, conversation)
    assert len(rows) == len(set(rows)) == audience - 1 and removed not in rows
    emails = delivered_users(engine)
    assert len(emails) == len(set(emails))
    assert sorted(u for u in emails if u in set(bulk)) == [u for u in bulk if u != removed]


@pytest.mark.redis
def test_ranges_written_at_once_by_a_worker_killed_and_an_emptied_broker_give_each_recipient_one_row_and_one_email(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str, tmp_path: Path
) -> None:
    url, engine = delivery_db
    count = 20_000
    bulk = org_unit_with_email_users(engine, count)
    # Four ranges of 500-recipient chunks, two worker threads; the fleet's sweeper re-enqueues after a second.
    namespace = f"{redis_namespace}-ranges"
    overrides = {"SMTP_URL": smtp_sink.url, "HERALD_FANOUT_CHUNK": "500", "HERALD_FANOUT_RANGES": "4", "HERALD_OUTBOX_POLL_S": "0.05"}
    with redis_fleet(url, engine, REDIS_URL, namespace, **overrides) as fleet:
        conversation, event_id = send_to_org_unit(engine)
        env = fleet.worker_env()

        def expanded() -> int:
            with engine.connect() as conn:
                return conn.scalar(select(OutboxEvent.progress_expanded).where(OutboxEvent.id == event_id)) or 0

        first = worker_process(env, tmp_path / "first-worker.log")
        try:
            wait_until(lambda: expanded() > 0, timeout_s=60, interval_s=0.005, what="a range's first chunk to commit")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        assert not done(engine, event_id) and 0 < expanded() < count + 1, "the worker should die mid-fan-out"
        ranges = ranges_of(engine, event_id)
        assert len(ranges) == 4 and not all(r.done_at for r in ranges)
        # Redis restarts empty: the killed worker's jobs and the ranges still queued are gone.
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()

        second = worker_process(env, tmp_path / "second-worker.log")
        try:
            wait_until(lambda: done(engine, event_id), timeout_s=120, interval_s=0.1, what="a new worker to finish every range")
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
    assert all(r.done_at for r in ranges_of(engine, event_id))
    rows = inbox_rows(engine, conversation)
    assert len(rows) == len(set(rows)) == count + 1 and set(bulk) <= set(rows)
    emails = delivered_users(engine)
    assert len(emails) == len(set(emails)) == count and set(emails) == set(bulk)


def test_a_fan_out_of_one_chunk_is_not_split(delivery_db: tuple[str, Engine]) -> None:
    _, engine = delivery_db
    org_unit_with_email_users(engine, 5)
    conversation, event_id = send_to_org_unit(engine)
    with engine.connect() as conn:
        assert conn.scalar(select(OutboxEvent.payload).where(OutboxEvent.id == event_id))[INBOX_DONE]
    assert fanout.process_event(engine, event_id, chunk=10, ranges=4) is True
    assert ranges_of(engine, event_id) == [] and done(engine, event_id)
    assert len(inbox_rows(engine, conversation)) == 5 + 1
