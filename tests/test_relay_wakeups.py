"""Wake-ups instead of idle polls: outbox and delivery NOTIFYs on PostgreSQL, enqueue wake-ups on Redis."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from dramatiq.message import Message
from sqlalchemy import Engine, func, select, update

from messaging import deliveries, outbox
from messaging.db import make_sessionmaker
from messaging.deliveries.relay import NOTIFY_CHANNEL
from messaging.models import OutboxEvent, utcnow
from tests.conftest import REDIS_URL, wait_until
from workers.broker import WakingRedisBroker
from workers.relay import OUTBOX_CHANNEL, OUTBOX_TRIGGER, Listener, Relay

WAIT_S = 10.0  # only ever reached when the behaviour is broken


def _stage_event(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        outbox.stage(session, outbox.CONVERSATION_CREATED, {"conversation_id": 0, "users": [], "groups": [],
                                                            "org_units": []})
        session.commit()
    with engine.connect() as conn:
        return int(conn.scalar(select(func.max(OutboxEvent.id))))


def _mark_done(engine: Engine, event_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(done_at=utcnow()))


def test_a_committed_outbox_event_notifies_a_listening_relay(delivery_db: tuple[str, Engine]) -> None:
    _, engine = delivery_db
    listener = Listener(engine, OUTBOX_CHANNEL, OUTBOX_TRIGGER)
    try:
        event_id = _stage_event(engine)
        assert listener.wait(WAIT_S) is True
    finally:
        listener.close()
        _mark_done(engine, event_id)


def test_a_listener_refuses_a_database_without_its_trigger(delivery_db: tuple[str, Engine]) -> None:
    _, engine = delivery_db
    with pytest.raises(LookupError, match="no_such_trigger"):
        Listener(engine, OUTBOX_CHANNEL, "no_such_trigger")


def test_releasing_deliveries_notifies_the_delivery_relays(delivery_db: tuple[str, Engine]) -> None:
    _, engine = delivery_db
    listener = Listener(engine, NOTIFY_CHANNEL)
    try:
        deliveries.release(engine, [2**40])  # no such row: the notification goes anyway, harmlessly
        assert listener.wait(WAIT_S) is True
    finally:
        listener.close()


def test_a_listening_relay_hands_over_an_event_committed_while_it_waits(
    delivery_db: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, engine = delivery_db
    monkeypatch.setattr("workers.relay.LISTEN_IDLE_S", 600.0)  # no pass of its own in the test's time: only the NOTIFY
    sent: list[int] = []
    lock = threading.Lock()

    def send(event_id: int) -> None:
        with lock:
            sent.append(event_id)

    relay = Relay(engine, send, poll_s=0.05, stale_s=3600.0, batch=100)
    relay.start()
    event_id = None
    try:
        wait_until(lambda: relay._listener is not None, what="the relay to listen")
        event_id = _stage_event(engine)
        wait_until(lambda: event_id in sent, what="the event handed to the broker")
    finally:
        relay.stop()
        if event_id is not None:
            _mark_done(engine, event_id)
    assert sent.count(event_id) == 1


@contextmanager
def waking_consumer(redis_namespace: str, queue: str, prefetch: int) -> Iterator[tuple[WakingRedisBroker, Any]]:
    """A waking broker of its own namespace with a consumer of `queue`; every key and socket gone afterwards."""
    broker = WakingRedisBroker(url=REDIS_URL, namespace=f"{redis_namespace}-{queue}-{secrets.token_hex(3)}")
    broker.declare_queue(queue)
    consumer = broker.consume(queue, prefetch=prefetch, timeout=100)
    try:
        yield broker, consumer
    finally:
        consumer.close()
        broker.flush_all()
        for key in broker.client.scan_iter(f"{broker.namespace}*"):
            broker.client.delete(key)
        broker.close()
        broker.client.connection_pool.disconnect()  # close() leaves the pool's sockets to the GC


def test_an_idle_redis_consumer_is_woken_by_an_enqueue_and_gets_the_message(redis_namespace: str) -> None:
    with waking_consumer(redis_namespace, "wake", prefetch=1) as (broker, consumer):
        assert next(consumer) is None  # empty: it waited, and nothing came
        message = broker.enqueue(Message(queue_name="wake", actor_name="noop", args=(1,), kwargs={}, options={}))
        assert consumer._wait(WAIT_S) is True
        got = wait_until(lambda: next(consumer), what="the message")
        assert got.message_id == message.message_id and got.args == (1,)
        consumer.ack(got)


def test_messages_enqueued_in_one_pipeline_wake_an_idle_consumer_and_each_arrives_once(redis_namespace: str) -> None:
    with waking_consumer(redis_namespace, "many", prefetch=50) as (broker, consumer):
        assert next(consumer) is None  # empty: it waited, and nothing came
        messages = [Message(queue_name="many", actor_name="noop", args=(i,), kwargs={}, options={}) for i in range(120)]
        broker.enqueue_many(messages)
        assert consumer._wait(WAIT_S) is True
        got: list[int] = []

        def take() -> bool:
            while (message := next(consumer)) is not None:
                got.append(message.args[0])
                consumer.ack(message)
            return len(got) >= len(messages)

        wait_until(take, what="every message")
        assert sorted(got) == list(range(120))
        assert broker.client.hlen(f"{broker.namespace}:many.msgs") == 0  # acked: nothing left behind
