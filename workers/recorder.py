"""Outcome writing for the delivery workers: one thread, batched writes, trackers for the jobs.

Sends finish one at a time; writing each outcome in its own transaction would cost a commit per
delivery. The recorder thread takes whatever arrived while its last write ran (and lingers a
moment for more), writes it with one executemany, and tells each job's ``Tracker`` how many of
its outcomes are now on disk. A failed write is retried; when it keeps failing the rows stay
SENDING and the sweeper marks them UNKNOWN when their lease ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter

from sqlalchemy import Engine

from messaging import deliveries
from messaging.deliveries import Outcome, RetryPolicy

log = logging.getLogger("herald.deliveries")


class Tracker:
    """Counts the outcomes one job waits for: done once every one it expects is written."""

    def __init__(self) -> None:
        self._expected = self._written = 0
        self._sealed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def expect(self, count: int) -> None:
        """More outcomes to wait for (before they are submitted)."""
        with self._cond:
            self._expected += count

    def written(self, count: int, error: BaseException | None = None) -> None:
        """``count`` outcomes were written (or failed to be, with ``error``)."""
        with self._cond:
            self._written += count
            self._error = self._error or error
            if self._sealed and self._written >= self._expected:
                self._cond.notify_all()

    def wait(self) -> None:
        """No more outcomes will be expected: wait for the written ones (in short, interruptible waits)."""
        with self._cond:
            self._sealed = True
            while self._written < self._expected:
                self._cond.wait(0.1)
            if self._error is not None:
                raise self._error


class Recorder:
    """Writes outcomes from one thread in batches: what arrived while the last write ran, and a moment more."""

    def __init__(self, engine: Engine, policy: RetryPolicy, *, max_batch: int = 1000, linger_s: float = 0.02) -> None:
        self.engine, self.policy, self.max_batch, self.linger_s = engine, policy, max_batch, linger_s
        self._queue: queue.SimpleQueue[tuple[Outcome, Tracker] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, outcome: Outcome, tracker: Tracker) -> None:
        """Queue an outcome the tracker expects."""
        self._queue.put((outcome, tracker))

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
            batch = [] if item is None else [item]
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
                    batch.append(item)
            if batch:
                self._write(batch)

    def _write(self, batch: list[tuple[Outcome, Tracker]]) -> None:
        error: BaseException | None = None
        for attempt in range(6):
            try:
                deliveries.record(self.engine, [outcome for outcome, _ in batch], self.policy)
            except Exception as exc:
                if attempt == 5:
                    # The rows stay SENDING; the sweeper marks them UNKNOWN when their lease ends.
                    log.exception("could not record %d delivery outcomes", len(batch))
                    error = exc
                    break
                log.warning("recording delivery outcomes failed (%s); retrying", type(exc).__name__)
                time.sleep(min(0.2 * 2**attempt, 5.0))
            else:
                break
        for tracker, count in Counter(tracker for _, tracker in batch).items():
            tracker.written(count, error)
