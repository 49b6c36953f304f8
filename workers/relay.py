"""The outbox relay and sweeper: moves committed outbox events onto the broker.

It claims due events (never enqueued, or enqueued longer ago than HERALD_OUTBOX_STALE_S and
still not done) and sends one message per event. A lost broker message, an emptied Redis or a
killed worker therefore only delays an event by the stale limit; actors are idempotent, so a
duplicate is harmless.

On PostgreSQL the relay does not poll an idle database every HERALD_OUTBOX_POLL_S: it LISTENs on
its own connection, and a statement trigger on ``outbox`` (migration 0012_delivery) NOTIFYs when
an event commits, so a pass starts a round trip after the commit. The notification is only a hint:
passes still run every ``idle_wait_s`` (a few seconds: the sweeper's work, and events written while
the listener was reconnecting), and passes are at least ``MIN_PASS_GAP_S`` apart, so a stream of
commits is claimed in batches rather than one pass per event. Without a listener (SQLite, or the
connection lost), the relay polls every HERALD_OUTBOX_POLL_S as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import psycopg
from sqlalchemy import Engine

from messaging import context, outbox
from workers.outage import Outage

log = logging.getLogger("herald.relay")

Send = Callable[[int], Any]

OUTBOX_CHANNEL = "herald_outbox"  # NOTIFY channel of the outbox trigger (migration 0012_delivery)
OUTBOX_TRIGGER = "outbox_notify"
LISTEN_IDLE_S = 5.0  # longest a listening relay waits without a notification before a pass anyway
MIN_PASS_GAP_S = 0.02  # a notification wakes the relay at once, but not more often than this
LISTEN_RETRY_S = 5.0  # after the listener failed, poll this long before connecting it again
_WAIT_SLICE_S = 0.1  # how long one wait on the socket lasts: stop() and wake() land between them


class Listener:
    """A PostgreSQL connection of its own that LISTENs on one channel; waits cost no query."""

    def __init__(self, engine: Engine, channel: str, trigger: str | None = None) -> None:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
        try:
            if trigger is not None and self._conn.execute(
                "SELECT 1 FROM pg_trigger WHERE tgname = %s AND NOT tgisinternal", (trigger,)
            ).fetchone() is None:
                raise LookupError(f"no trigger {trigger} (is the database migrated?)")
            self._conn.execute(f'LISTEN "{channel}"')
        except BaseException:
            self._conn.close()
            raise

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for a notification; True when one (or more: all are read) came."""
        got = False
        for _ in self._conn.notifies(timeout=timeout_s, stop_after=1):
            got = True
        if got:
            for _ in self._conn.notifies(timeout=0):
                pass
        return got

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class Relay:
    """Polls the outbox and hands due events to `send`; runs in a daemon thread."""

    thread_name: ClassVar[str] = "herald-outbox-relay"
    notify_channel: ClassVar[str | None] = OUTBOX_CHANNEL
    notify_trigger: ClassVar[str | None] = OUTBOX_TRIGGER  # without it nothing would NOTIFY: poll

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
        self._listener: Listener | None = None
        self._listen_after = 0.0  # monotonic time before which no listener is tried again

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

    def idle_wait_s(self) -> float:
        """How long a listening relay waits for a notification before a pass anyway."""
        return max(self.poll_s, min(LISTEN_IDLE_S, self.stale_s / 4))

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                listener = self._listen()  # before the pass: what commits during it is not missed
                started = time.monotonic()
                try:
                    count = self.run_once()
                except Exception as exc:
                    self.database_outage.failed(exc, self.thread_name)
                    count = 0
                else:
                    self.database_outage.ok(self.thread_name)
                if count >= self.batch:
                    continue
                if listener is None:
                    self._wake.wait(self.poll_s)
                else:
                    try:
                        self._wait_notified(listener, started)
                    except Exception as exc:  # never let a failed wait end the relay thread
                        self.database_outage.failed(exc, self.thread_name)
                        self._drop_listener()
                        self._stop.wait(self.poll_s)
                self._wake.clear()
        finally:
            self._drop_listener()

    def _listen(self) -> Listener | None:
        """The listener, connected if it can be (PostgreSQL only); None: poll."""
        channel = self.notify_channel
        if self._listener is not None or channel is None or self.engine.dialect.name != "postgresql":
            return self._listener
        if time.monotonic() < self._listen_after:
            return None
        try:
            self._listener = Listener(self.engine, channel, self.notify_trigger)
        except Exception as exc:
            self._listen_after = time.monotonic() + LISTEN_RETRY_S
            log.warning("%s cannot LISTEN (%s): polling every %.2f s", self.thread_name, type(exc).__name__, self.poll_s)
        return self._listener

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except Exception:
                log.debug("closing the %s listener failed", self.thread_name, exc_info=True)

    def _wait_notified(self, listener: Listener, started: float) -> None:
        """Wait for a notification, a wake() or stop(), or ``idle_wait_s``; then keep the pass gap."""
        deadline = time.monotonic() + self.idle_wait_s()
        notified = False
        while not notified and not self._wake.is_set() and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                notified = listener.wait(min(remaining, _WAIT_SLICE_S))
            except Exception as exc:
                # The connection is gone: poll until it can be made again (the pass runs now).
                log.warning("%s lost its listener (%s)", self.thread_name, type(exc).__name__)
                self._drop_listener()
                self._listen_after = time.monotonic() + LISTEN_RETRY_S
                return
        gap = started + MIN_PASS_GAP_S - time.monotonic()
        if gap > 0:
            self._stop.wait(gap)

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
