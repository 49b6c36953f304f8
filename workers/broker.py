"""Dramatiq brokers: Redis or RabbitMQ from BROKER_URL, or an in-process stub when it is empty.

The Redis broker is Dramatiq's, with one change: an idle consumer waits for a wake-up instead of
sleeping. Dramatiq's Redis consumer finds an empty queue and sleeps (exponential backoff up to the
worker timeout, 100 ms under ``herald worker``) before it looks again, so every hop through an idle
queue cost up to that long (two hops between a POST and its first email). Here every enqueue also
PUBLISHes on the queue's wake channel, and the consumer spends its backoff blocked on that
subscription: a message is fetched a round trip after it was enqueued, and an idle consumer still
asks Redis no more often than before. The subscription is taken when the consumer is made, so a
message enqueued between an empty fetch and the wait is not missed (the publish is buffered on
the subscribed socket). This uses the consumer's internals: dramatiq is pinned in pyproject.toml.

``enqueue_many`` sends many messages through one pipeline (Dramatiq's own dispatch script, the
same arguments its ``enqueue`` passes) and wakes each queue once: a fan-out hands its delivery
jobs over at ~26,000 messages/s instead of ~5,100 with a round trip (and a PUBLISH) each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from messaging.settings import BrokerSettings

FULL_PREFETCH_WAIT_S = 0.005


def build_broker(settings: BrokerSettings) -> dramatiq.Broker:
    """The broker for BROKER_URL (never installed as Dramatiq's global unless the caller does)."""
    url = settings.broker_url
    if not url:
        from dramatiq.brokers.stub import StubBroker

        return StubBroker()
    scheme = urlsplit(url).scheme
    if scheme in {"redis", "rediss"}:
        return WakingRedisBroker(url=url, namespace=settings.broker_namespace)
    if scheme in {"amqp", "amqps"}:
        return RabbitmqBroker(url=url)
    raise ValueError(f"unsupported BROKER_URL scheme {scheme!r}")


def queue_name(settings: BrokerSettings, name: str) -> str:
    """Queue names carry the namespace so test runs and deployments never share queues."""
    return f"{settings.broker_namespace}.{name}"


class WakingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose idle consumers are woken by each enqueue instead of polling."""

    def wake_channel(self, queue_name: str) -> str:
        """The pub/sub channel an enqueue on ``queue_name`` publishes to."""
        return f"{self.namespace}:{queue_name}.wake"

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Enqueue as Dramatiq does, then wake the queue's idle consumers (delayed messages wait anyway)."""
        enqueued = super().enqueue(message, delay=delay)
        if delay is None:
            self.client.publish(self.wake_channel(enqueued.queue_name), b"")
        return enqueued

    def enqueue_many(self, messages: Sequence[Message[Any]]) -> None:
        """Enqueue messages (no delay) in one pipeline, as ``enqueue`` would one by one; wake each queue once.

        Raises what Redis raises; then any of them may or may not be enqueued (jobs are idempotent).
        """
        if not messages:
            return
        pipe = self.client.pipeline(transaction=False)
        dispatch = self.scripts["dispatch"]
        enqueued = []
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid4())})
            self.emit_before("enqueue", message, None)
            dispatch(keys=[self.namespace], client=pipe, args=[
                "enqueue", current_millis(), message.queue_name, self.broker_id, self.heartbeat_timeout,
                self.dead_message_ttl, self._should_do_maintenance("enqueue"), self._max_unpack_size(),
                message.options["redis_message_id"], message.encode(),
            ])  # fmt: skip
            enqueued.append(message)
        for queue in sorted({m.queue_name for m in enqueued}):
            pipe.publish(self.wake_channel(queue), b"")
        pipe.execute()
        for message in enqueued:
            self.emit_after("enqueue", message, None)

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        """Consumers that wait on the wake channel."""
        return _WakingConsumer


class _WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer (``__next__`` as in 2.2.1) with the idle sleep spent on a subscription."""

    def __init__(self, broker: WakingRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._wake = broker.client.pubsub(ignore_subscribe_messages=True)
        try:
            self._wake.subscribe(broker.wake_channel(queue_name))
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None

    def __next__(self) -> Any:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                if self.outstanding_message_count >= self.prefetch:
                    # Every prefetched message is being worked on: their acks are handled between
                    # two calls, so come back soon (no Redis call here) rather than after a backoff.
                    self._wait(FULL_PREFETCH_WAIT_S)
                    return None
                self.message_cache = messages = self.broker.do_fetch(
                    self.queue_name, self.prefetch - self.outstanding_message_count
                )
                if not messages:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    if self._wait(backoff_ms / 1000):
                        self.misses = 0  # something was enqueued: look again at once, and soon after
                    return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None

    def _wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for a wake-up; True when one came (all pending ones are read)."""
        woken = False
        while self._wake.get_message(timeout=timeout_s) is not None:
            woken, timeout_s = True, 0.0
        return woken

    def close(self) -> None:
        """Close the subscription, then the consumer."""
        try:
            self._wake.close()
        finally:
            super().close()
