"""Dramatiq brokers: Redis or RabbitMQ from BROKER_URL, or an in-process stub when it is empty."""

from __future__ import annotations

from urllib.parse import urlsplit

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from messaging.settings import BrokerSettings


def build_broker(settings: BrokerSettings) -> dramatiq.Broker:
    """The broker for BROKER_URL (never installed as Dramatiq's global unless the caller does)."""
    url = settings.broker_url
    if not url:
        return StubBroker()
    scheme = urlsplit(url).scheme
    if scheme in {"redis", "rediss"}:
        return RedisBroker(url=url, namespace=settings.broker_namespace)
    if scheme in {"amqp", "amqps"}:
        return RabbitmqBroker(url=url)
    raise ValueError(f"unsupported BROKER_URL scheme {scheme!r}")


def queue_name(settings: BrokerSettings, name: str) -> str:
    """Queue names carry the namespace so test runs and deployments never share queues."""
    return f"{settings.broker_namespace}.{name}"
