"""Queue depth read from the broker itself: Redis (Dramatiq's keys) or RabbitMQ (a passive declare)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """One broker queue: messages waiting, messages handed to a worker and not acked (None: unknown)."""

    queue: str
    waiting: int | None
    in_progress: int | None
    delayed: int | None = None
    error: str | None = None


def broker_kind(url: str | None) -> str:
    """redis, rabbitmq or in-process (no BROKER_URL: the stub broker inside `herald serve`)."""
    if not url:
        return "in-process"
    scheme = urlsplit(url).scheme
    return "redis" if scheme in {"redis", "rediss"} else "rabbitmq" if scheme in {"amqp", "amqps"} else scheme


def queue_depths(url: str | None, namespace: str, queues: Sequence[str], *, timeout_s: float = 2.0) -> list[QueueDepth]:
    """The depth of each queue as the broker holds it; in-process: nothing to ask (empty)."""
    kind = broker_kind(url)
    if url is None or kind == "in-process":
        return []
    try:
        if kind == "redis":
            return _redis(url, namespace, queues, timeout_s)
        if kind == "rabbitmq":
            return _rabbitmq(url, queues, timeout_s)
    except Exception as exc:  # a broker outage is a figure to show, not a 500
        return [QueueDepth(q, None, None, error=f"{type(exc).__name__}: the broker did not answer") for q in queues]
    return [QueueDepth(q, None, None, error=f"unsupported broker {kind}") for q in queues]


def _redis(url: str, namespace: str, queues: Sequence[str], timeout_s: float) -> list[QueueDepth]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            # Dramatiq's layout: the list of waiting ids, the hash of every message not yet acked,
            # and the delay queue (retries with a countdown).
            pipe.llen(f"{namespace}:{queue}")
            pipe.hlen(f"{namespace}:{queue}.msgs")
            pipe.hlen(f"{namespace}:{queue}.DQ.msgs")
        answers = pipe.execute()
    finally:
        client.close()
    depths = []
    for i, queue in enumerate(queues):
        waiting, held, delayed = (int(v) for v in answers[3 * i : 3 * i + 3])
        depths.append(QueueDepth(queue, waiting, max(held - waiting, 0), delayed))
    return depths


def _rabbitmq(url: str, queues: Sequence[str], timeout_s: float) -> list[QueueDepth]:
    import pika
    import pika.exceptions

    params = pika.URLParameters(url)
    params.socket_timeout = timeout_s
    params.blocked_connection_timeout = timeout_s
    connection = pika.BlockingConnection(params)
    try:
        depths = []
        for queue in queues:
            channel = connection.channel()
            try:
                ok = channel.queue_declare(queue=queue, passive=True)
                depths.append(QueueDepth(queue, int(ok.method.message_count), None))
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing was ever sent
                depths.append(QueueDepth(queue, 0, None))
            finally:
                if channel.is_open:
                    channel.close()
        return depths
    finally:
        connection.close()
