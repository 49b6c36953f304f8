"""Delivery workers: the ``herald.deliver`` actor, and the relay and sweeper that feed it.

``install`` declares them on a broker: the actor (its body is ``workers.sending.DeliveryHost``),
the relay (hands due deliveries to the broker in jobs of ids; sweeps expired leases and lost
jobs), the hand-over (sends the jobs of the rows a fan-out has just created) and a middleware
that runs the host, the relay and the hand-over in every worker process.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from sqlalchemy import Engine

from messaging import context, deliveries, fanout
from messaging.deliveries import relay as deliveries_relay
from messaging.deliveries.relay import NOTIFY_CHANNEL
from workers.broker import WakingRedisBroker, queue_name
from workers.outage import Outage
from workers.relay import Relay
from workers.sending import SLOT_WAIT_S, DeliveryHost, build_channels
from workers.settings import FleetSettings

log = logging.getLogger("herald.deliveries")

JOBS_PER_SEND = 1000  # deliver jobs per broker pipeline: 200,000 ids at the default HERALD_DELIVERY_BATCH


class DeliveryRelay(Relay):
    """Hands due deliveries to the broker in jobs of HERALD_DELIVERY_BATCH ids; sweeps lost and stuck ones.

    Every ``sweep_s`` it also marks SENDING rows past their lease UNKNOWN (a worker died
    mid-send) and re-enqueues rows enqueued longer than HERALD_DELIVERY_STALE_S ago and still
    not claimed (the broker lost the job).
    """

    thread_name = "herald-delivery-relay"
    notify_channel = NOTIFY_CHANNEL  # releases and scheduled retries NOTIFY it (messaging.deliveries.relay)
    notify_trigger = None

    def __init__(
        self,
        engine: Engine,
        send_jobs: Callable[[list[tuple[str, list[int]]]], Any],
        channels: Sequence[str],
        settings: FleetSettings,
        broker_outage: Outage | None = None,
        database_outage: Outage | None = None,
    ) -> None:
        super().__init__(
            engine,
            lambda _id: None,
            poll_s=settings.outbox_poll_s,
            stale_s=settings.delivery_stale_s,
            batch=settings.outbox_batch,
            broker_outage=broker_outage,
            database_outage=database_outage,
        )
        self.send_jobs, self.channels, self.job_size = send_jobs, tuple(channels), settings.delivery_batch
        self.sweep_s = max(settings.outbox_poll_s, min(5.0, settings.delivery_stale_s / 4, settings.delivery_lease_s / 4))
        self._next_sweep = 0.0

    def idle_wait_s(self) -> float:
        """Until the earliest row not yet handed over is due, or the next sweep, whichever comes first.

        New rows never wait for this: the fan-out dispatches them itself. A release or a newly
        scheduled retry NOTIFYs, and the wait is worked out again then.
        """
        until_sweep = max(0.0, self._next_sweep - time.monotonic())
        try:
            due_in = deliveries_relay.next_due_in_s(self.engine)
        except Exception:
            # The database is unreachable: the next pass reports the outage (once); poll until then.
            return self.poll_s
        wait = until_sweep if due_in is None else min(until_sweep, due_in)
        return max(self.poll_s, wait)

    def run_once(self) -> int:
        """Enqueue one batch of due deliveries (and sweep when it is time); return how many went."""
        claimed = deliveries.claim_due(self.engine, self.channels, limit=self.batch)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.sweep_s
            expired = deliveries.expire_leases(self.engine)
            if expired:
                log.warning("%d deliveries were SENDING past their lease (a worker died): marked UNKNOWN", expired)
            lost = deliveries.claim_due(self.engine, self.channels, limit=self.batch, stale_s=self.stale_s)
            if lost:
                log.warning("re-enqueueing %d deliveries whose jobs were lost", len(lost))
            claimed += lost
        return self.dispatch(claimed)

    def dispatch(self, claimed: list[tuple[int, str]]) -> int:
        """Send jobs for rows marked enqueued, HERALD_DELIVERY_BATCH ids each; return how many went.

        Rows the broker refuses are released (their enqueued mark cleared) for the next poll.
        The fan-out calls this too, for the rows it has just created.
        """
        by_channel: dict[str, list[int]] = defaultdict(list)
        for delivery_id, channel in claimed:
            by_channel[channel].append(delivery_id)
        jobs = [
            (channel, ids[start : start + self.job_size])
            for channel, ids in by_channel.items()
            for start in range(0, len(ids), self.job_size)
        ]
        sent: set[int] = set()
        try:
            for start in range(0, len(jobs), JOBS_PER_SEND):
                batch = jobs[start : start + JOBS_PER_SEND]
                self.send_jobs(batch)
                sent.update(i for _, ids in batch for i in ids)
        except Exception as exc:
            self.broker_outage.failed(exc, self.thread_name, deliveries=len(claimed) - len(sent))
            deliveries.release(self.engine, [i for i, _ in claimed if i not in sent])
        else:
            if sent:
                self.broker_outage.ok(self.thread_name)
        return len(sent)


class HandOver:
    """Sends the jobs of the rows a fan-out chunk has just created from a thread of its own.

    The fan-out's thread goes on to its next chunk at once instead of sending a job per
    HERALD_DELIVERY_BATCH ids itself: 4,000 broker round trips for 100,000 email + SMS recipients,
    which held a chunk's successor back by seconds while sends competed for the CPU. The rows are
    marked enqueued when created: should the process die before they go, the relay's sweep
    re-enqueues them (HERALD_DELIVERY_STALE_S), as when a dispatch fails. Not started: inline.

    At most ``depth`` chunks wait: a chunk finding the queue full waits for room, so the worker's
    memory stays flat with the audience when the broker takes jobs slower than chunks make them
    (unbounded, a million-user email + SMS fan-out peaked at 1.47x the worker's RSS at 100k).
    """

    thread_name = "herald-delivery-handover"

    def __init__(self, dispatch: Callable[[list[tuple[int, str]]], object], depth: int = 2) -> None:
        self._dispatch = dispatch
        # Each chunk with the request id of the job that made it, so its jobs carry it (workers/tracing.py).
        self._queue: queue.Queue[tuple[str | None, list[tuple[int, str]]] | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None

    def __call__(self, created: list[tuple[int, str]]) -> None:
        """Queue (id, channel) pairs for the broker, waiting for room (send them now when the thread is not running)."""
        if self._thread is None:
            self._dispatch(created)
        else:
            self._queue.put((context.request_id(), created))

    def start(self) -> None:
        """Start the hand-over thread."""
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:  # the broker hangs: what is left stays enqueued for the sweep
                return
            thread.join(timeout_s)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            request_id, created = item
            try:
                with context.bound(request_id):
                    self._dispatch(created)
            except Exception:  # the rows stay enqueued: the relay's sweep sends them again
                log.exception("handing %d new deliveries to the broker failed", len(created))


class DeliveryMiddleware(Middleware):
    """Runs the delivery host, relay and hand-over in every worker process while its worker is up."""

    def __init__(self, host: DeliveryHost, relay: DeliveryRelay, hand_over: HandOver) -> None:
        self.host, self.relay, self.hand_over = host, relay, hand_over

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.host.start()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.hand_over.start()
        self.relay.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.relay.stop()
        self.hand_over.stop()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.host.stop()


@dataclass
class DeliveryWorkers:
    """What ``install`` declared: the fan-out hook, the actor, the host and the relay."""

    channels: tuple[str, ...]
    notify: fanout.NotificationHook
    actor: dramatiq.Actor[[str, list[int]], None]
    host: DeliveryHost
    relay: DeliveryRelay


def install(
    settings: FleetSettings,
    engine: Engine,
    broker: dramatiq.Broker,
    broker_outage: Outage | None = None,
    database_outage: Outage | None = None,
) -> DeliveryWorkers | None:
    """Declare the deliver actor, relay and host on a broker; None when neither email nor SMS is configured."""
    channels = tuple(build_channels(settings))  # fails loudly on a half-configured channel
    if deliveries.EMAIL not in channels:
        log.info("email channel off: SMTP_URL is not set")
    if deliveries.SMS not in channels:
        log.info("SMS channel off: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set")
    if not channels:
        return None
    log.info("delivery channels on: %s", ", ".join(channels))
    host = DeliveryHost(settings, engine, channels)

    def deliver(channel: str, ids: list[int]) -> None:
        """Claim a batch of deliveries and start their sends (idempotent: only rows this job claims are sent)."""
        host.deliver(channel, ids)

    actor: dramatiq.Actor[[str, list[int]], None] = dramatiq.actor(
        broker=broker,
        actor_name="herald.deliver",
        queue_name=queue_name(settings, "deliveries"),
        max_retries=0,  # the rows carry their own retries; a lost job is re-enqueued by the relay
        # Room to wait for slots and claim; the sends run on the host's loop, outside the job.
        time_limit=int((SLOT_WAIT_S + settings.delivery_lease_s) * 1000),
    )(deliver)
    def send_jobs(jobs: list[tuple[str, list[int]]]) -> None:
        """Enqueue deliver jobs: through one Redis pipeline when the broker has one, else one by one."""
        if isinstance(broker, WakingRedisBroker):
            broker.enqueue_many([actor.message(channel, ids) for channel, ids in jobs])
        else:
            for channel, ids in jobs:
                actor.send(channel, ids)

    relay = DeliveryRelay(engine, send_jobs, channels, settings, broker_outage, database_outage)
    hand_over = HandOver(relay.dispatch)
    broker.add_middleware(DeliveryMiddleware(host, relay, hand_over))
    return DeliveryWorkers(channels, deliveries.notifier(channels, hand_over), actor, host, relay)
