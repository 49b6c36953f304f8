"""The outbox relay and sweeper: moves committed outbox events onto the broker.

It claims due events (never enqueued, or enqueued longer ago than HERALD_OUTBOX_STALE_S and
still not done) and sends one message per event. A lost broker message, an emptied Redis or a
killed worker therefore only delays an event by the stale limit; actors are idempotent, so a
duplicate is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy import Engine

from messaging import context, outbox
from workers.outage import Outage

log = logging.getLogger("herald.relay")

Send = Callable[[int], Any]


class Relay:
    """Polls the outbox and hands due events to `send`; runs in a daemon thread."""

    thread_name: ClassVar[str] = "herald-outbox-relay"

    def __init__(
        self,
        engine: Engine,
        send: Send,
        *,
        poll_s: float,
        stale_s: float,
        batch: int,
        broker_outage: Outage | None = None,
        database_outage: Outage | None = None,
    ) -> None:
        self.engine, self.send = engine, send
        self.poll_s, self.stale_s, self.batch = poll_s, stale_s, batch
        # One start line and one end line per outage, never a traceback per poll.
        self.broker_outage = broker_outage or Outage("broker", log)
        self.database_outage = database_outage or Outage("database", log)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Claim and send one batch; return how many events were sent."""
        claimed = outbox.claim_due(self.engine, limit=self.batch, stale_s=self.stale_s)
        sent: list[int] = []
        try:
            for event in claimed:
                with context.bound(event.request_id):  # the message carries the id of the request behind it
                    self.send(event.id)
                sent.append(event.id)
        except Exception as exc:
            # The broker refused: let the unsent events go again on the next pass.
            self.broker_outage.failed(exc, self.thread_name, events=len(claimed) - len(sent))
            outbox.release(self.engine, [e.id for e in claimed if e.id not in sent])
        else:
            if sent:
                self.broker_outage.ok(self.thread_name)
        return len(sent)

    def wake(self) -> None:
        """Run the next pass now (used in-process right after a commit)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                count = self.run_once()
            except Exception as exc:
                self.database_outage.failed(exc, self.thread_name)
                count = 0
            else:
                self.database_outage.ok(self.thread_name)
            if count < self.batch:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def start(self) -> None:
        """Start the relay thread."""
        self._stop.clear()  # a worker stopped and started again restarts its relay
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the relay thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
