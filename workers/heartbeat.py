"""Worker heartbeats: each worker process reports itself and its jobs under way every HERALD_HEARTBEAT_S.

``HeartbeatMiddleware`` tracks the jobs each worker thread is running (queue, actor, message
id, since), and a thread writes them with the process's identity to ``worker_heartbeats``.
The same thread probes the broker, so a broker outage is noticed (and its end logged) even
when nothing is being sent; and it quiets Dramatiq's consumers, which log a connection error
every three seconds per queue for as long as the broker is down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

import dramatiq
import pika
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from sqlalchemy import Engine

from messaging import heartbeats
from messaging.models import utcnow
from workers.outage import Outage

log = logging.getLogger("herald.workers")


class ConsumerQuieter(logging.Filter):
    """On a consumer's logger: its connection errors feed the broker ``Outage`` instead of the log."""

    def __init__(self, broker_outage: Outage) -> None:
        super().__init__()
        self.broker_outage = broker_outage

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop connection errors and restarts (the outage logs the start and the end)."""
        message = record.getMessage()
        if "connection error" in message:
            self.broker_outage.failed(ConnectionError(message.split(": ", 1)[-1]))
            return False
        return not (message.startswith("Restarting consumer") and self.broker_outage.down)


class HeartbeatMiddleware(Middleware):
    """Writes this process's heartbeat row while its worker is up, with the jobs under way."""

    def __init__(
        self, engine: Engine, *, kind: str, queues: list[str], heartbeat_s: float, broker_outage: Outage,
        database_outage: Outage,
    ) -> None:
        self.engine, self.kind, self.queues, self.heartbeat_s = engine, kind, queues, heartbeat_s
        self.broker_outage, self.database_outage = broker_outage, database_outage
        self.quieter = ConsumerQuieter(broker_outage)
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broker: dramatiq.Broker | None = None
        self._id = ""
        self._started_at = utcnow()

    # --- the jobs under way ---

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Note the job as under way."""
        job = {"queue": message.queue_name, "actor": message.actor_name, "messageId": message.message_id,
               "since": utcnow().isoformat(timespec="seconds") + "Z"}
        with self._lock:
            self._jobs[message.message_id] = job

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """The job ended."""
        with self._lock:
            self._jobs.pop(message.message_id, None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """The job was skipped."""
        with self._lock:
            self._jobs.pop(message.message_id, None)

    def after_consumer_thread_boot(self, broker: dramatiq.Broker, thread: Any) -> None:
        """Quiet this consumer's per-retry connection errors."""
        thread.logger.addFilter(self.quieter)

    # --- the heartbeat thread ---

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start beating (a fresh id per boot: pids are reused)."""
        self._broker = broker
        self._id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._started_at = utcnow()
        self._stop.clear()
        self._beat()
        self._thread = threading.Thread(target=self._run, name="herald-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Stop beating and remove this process's row."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        try:
            heartbeats.forget(self.engine, self._id)
        except Exception as exc:
            log.warning("could not remove the heartbeat row: %s", type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._beat()
            self._probe_broker()

    def _beat(self) -> None:
        with self._lock:
            current = sorted(self._jobs.values(), key=lambda job: str(job["since"]))
        beat = heartbeats.Beat(
            id=self._id, hostname=socket.gethostname(), pid=os.getpid(), kind=self.kind, queues=self.queues,
            started_at=self._started_at, current=current,
        )
        try:
            heartbeats.beat(self.engine, beat)
        except Exception as exc:
            self.database_outage.failed(exc, "heartbeat")
        else:
            self.database_outage.ok()  # authoritative: clears every source (a relay may have nothing to retry)

    def _probe_broker(self) -> None:
        try:
            if isinstance(self._broker, RedisBroker):
                self._broker.client.ping()
            elif isinstance(self._broker, RabbitmqBroker):
                pika.BlockingConnection(self._broker.parameters).close()
            else:
                return
        except Exception as exc:
            self.broker_outage.failed(exc, "heartbeat")
        else:
            self.broker_outage.ok()  # authoritative, as above
