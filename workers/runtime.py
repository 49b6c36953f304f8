"""The worker fleet's composition: broker, actors and relay built from one FleetSettings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from sqlalchemy import Engine

from messaging import fanout, heartbeats, outbox
from messaging.db import make_engine
from workers import delivery, upload_cleanup
from workers.broker import build_broker, queue_name
from workers.heartbeat import HeartbeatMiddleware
from workers.outage import Outage
from workers.relay import Relay
from workers.settings import FleetSettings
from workers.tracing import RequestIdMiddleware

log = logging.getLogger("herald.workers")


@dataclass
class Runtime:
    """Everything a worker process (or the in-process fleet) needs."""

    settings: FleetSettings
    engine: Engine
    broker: dramatiq.Broker
    relay: Relay
    actors: dict[str, dramatiq.Actor[Any, Any]] = field(default_factory=dict)
    deliveries: delivery.DeliveryWorkers | None = None  # None: neither email nor SMS is configured


class RelayMiddleware(Middleware):
    """Runs the outbox relay in every worker process while its worker is up."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.relay.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.relay.stop()


def build_runtime(settings: FleetSettings, *, engine: Engine | None = None, broker: dramatiq.Broker | None = None) -> Runtime:
    """Declare Herald's actors on a broker for these settings."""
    engine = engine or make_engine(settings.database_url, pool_size=settings.worker_threads + 2)
    broker = broker or build_broker(settings)
    broker.add_middleware(RequestIdMiddleware())
    # One of each per runtime: relays, heartbeat and consumers report to them, so an outage is one start line, one end line.
    broker_outage, database_outage = Outage("broker", log), Outage("database", log)
    deliveries = delivery.install(settings, engine, broker, broker_outage, database_outage)

    def process_outbox(event_id: int) -> None:
        """Carry out one outbox event (idempotent: a done event is skipped)."""
        try:
            done = fanout.process_event(
                engine, event_id, notify=deliveries.notify if deliveries else None, chunk=settings.fanout_chunk,
                ranges=settings.fanout_ranges,
            )
        except Exception as exc:
            outbox.record_failure(engine, event_id, f"{type(exc).__name__}: {exc}")
            raise
        log.info("outbox event %d %s", event_id, "processed" if done else "already done", extra={"outbox_id": event_id})

    outbox_actor: dramatiq.Actor[[int], None] = dramatiq.actor(
        broker=broker,
        actor_name="herald.process_outbox",
        queue_name=queue_name(settings, "outbox"),
        max_retries=5,
        min_backoff=500,
        max_backoff=30_000,
    )(process_outbox)
    relay = Relay(
        engine,
        lambda event_id: outbox_actor.send(event_id),
        poll_s=settings.outbox_poll_s,
        stale_s=settings.outbox_stale_s,
        batch=settings.outbox_batch,
        broker_outage=broker_outage,
        database_outage=database_outage,
    )
    broker.add_middleware(RelayMiddleware(relay))
    upload_cleanup.install(settings, engine, broker, database_outage)
    actors: dict[str, dramatiq.Actor[Any, Any]] = {"outbox": outbox_actor}
    if deliveries is not None:
        actors["deliver"] = deliveries.actor
    broker.add_middleware(
        HeartbeatMiddleware(
            engine,
            kind=heartbeats.IN_PROCESS if settings.in_process_workers else heartbeats.WORKER,
            queues=sorted({actor.queue_name for actor in actors.values()}),
            heartbeat_s=settings.heartbeat_s,
            broker_outage=broker_outage,
            database_outage=database_outage,
        )
    )
    return Runtime(settings=settings, engine=engine, broker=broker, relay=relay, actors=actors, deliveries=deliveries)


class InProcessFleet:
    """Workers and relay inside the API process (BROKER_URL empty): one command, a whole system."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.worker = dramatiq.Worker(runtime.broker, worker_threads=runtime.settings.worker_threads, worker_timeout=100)

    def start(self) -> None:
        """Start the worker threads (the relay starts with them)."""
        self.worker.start()
        log.info("in-process workers started (%d threads)", self.runtime.settings.worker_threads)

    def stop(self) -> None:
        """Stop workers and relay."""
        self.worker.stop()
