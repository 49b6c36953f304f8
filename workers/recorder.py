"""Outcome writing for the delivery workers: one thread, batched writes.

Sends finish one at a time; writing each outcome in its own transaction would cost a commit per
delivery. The recorder thread takes whatever arrived while its last write ran (and lingers a
moment for more) and writes it with one executemany. A failed write is retried; when it keeps
failing the rows stay SENDING and the sweeper marks them UNKNOWN when their lease ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Engine

from messaging import deliveries
from messaging.deliveries import Outcome, RetryPolicy
from workers.outage import Outage

log = logging.getLogger("herald.deliveries")


class Recorder:
    """Writes outcomes from one thread in batches: what arrived while the last write ran, and a moment more."""

    def __init__(self, engine: Engine, policy: RetryPolicy, *, max_batch: int = 1000, linger_s: float = 0.02) -> None:
        self.engine, self.policy, self.max_batch, self.linger_s = engine, policy, max_batch, linger_s
        self._queue: queue.SimpleQueue[Sequence[Outcome] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.database_outage = Outage("database (delivery recorder)", log)

    def submit(self, *outcomes: Outcome) -> None:
        """Queue outcomes to be written (several at once cost one hand-over: each wakes the writer thread)."""
        if outcomes:
            self._queue.put(outcomes)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="herald-delivery-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        running = True
        while running:
            item = self._queue.get()
            batch = [] if item is None else list(item)
            running = item is not None
            # Linger a little: sends finish one by one, and a write per outcome would cost a commit each.
            until = time.monotonic() + self.linger_s
            while running and len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    running = False
                else:
                    batch.extend(item)
            if batch:
                self._write(batch)

    def _write(self, batch: list[Outcome]) -> None:
        for attempt in range(6):
            try:
                deliveries.record(self.engine, batch, self.policy)
            except Exception as exc:
                self.database_outage.failed(exc)
                if attempt == 5:
                    # The rows stay SENDING; the sweeper marks them UNKNOWN when their lease ends.
                    log.error("could not record %d delivery outcomes: %s", len(batch), type(exc).__name__)
                    return
                time.sleep(min(0.2 * 2**attempt, 5.0))
            else:
                self.database_outage.ok()
                return
