"""The periodic clean-up of uploads never attached to a message (HERALD_UNATTACHED_UPLOAD_TTL).

Every worker process, and the in-process fleet, runs one sweeper thread beside its worker: every
HERALD_UPLOAD_CLEANUP_INTERVAL_S it deletes, in batches, the uploads older than the TTL that no
message took. Several sweepers at once are harmless: a row is deleted once.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import dramatiq
from dramatiq.middleware import Middleware
from sqlalchemy import Engine

from messaging.attachments import delete_unattached
from messaging.db import make_sessionmaker
from messaging.models import utcnow
from messaging.settings import SecuritySettings
from workers.outage import Outage

log = logging.getLogger("herald.uploads")
BATCH = 500


class UploadSweeper:
    """Deletes expired unattached uploads every `interval_s` in a daemon thread."""

    def __init__(self, engine: Engine, *, ttl_s: float, interval_s: float, database_outage: Outage | None = None) -> None:
        self.sessions = make_sessionmaker(engine)
        self.ttl_s, self.interval_s = ttl_s, interval_s
        # A database outage is the runtime's one start line and one end line, never a traceback per pass.
        self.database_outage = database_outage or Outage("database", log)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> tuple[int, int]:
        """Delete every upload past the TTL that is still unattached; (rows, bytes) removed."""
        cutoff = utcnow() - timedelta(seconds=self.ttl_s)
        total_rows = total_bytes = 0
        while True:
            with self.sessions() as session:
                rows, size_bytes = delete_unattached(session, created_before=cutoff, batch=BATCH)
                session.commit()
            total_rows, total_bytes = total_rows + rows, total_bytes + size_bytes
            if rows < BATCH:
                break
        if total_rows:
            log.info("removed %d unattached uploads (%d bytes) older than %.0f s", total_rows, total_bytes, self.ttl_s)
        return total_rows, total_bytes

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:
                self.database_outage.failed(exc, "upload-sweeper")
            else:
                self.database_outage.ok("upload-sweeper")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start the sweeper thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="herald-upload-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the sweeper thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


class UploadSweeperMiddleware(Middleware):
    """Runs an UploadSweeper while its worker is up."""

    def __init__(self, sweeper: UploadSweeper) -> None:
        self.sweeper = sweeper

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start sweeping with the worker."""
        self.sweeper.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Stop sweeping with the worker."""
        self.sweeper.stop()


def install(settings: SecuritySettings, engine: Engine, broker: dramatiq.Broker, database_outage: Outage | None = None) -> UploadSweeper:
    """Attach an upload sweeper to the broker's workers; return it."""
    sweeper = UploadSweeper(
        engine,
        ttl_s=settings.unattached_upload_ttl_s,
        interval_s=settings.upload_cleanup_interval_s,
        database_outage=database_outage,
    )
    broker.add_middleware(UploadSweeperMiddleware(sweeper))
    return sweeper
