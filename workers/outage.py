"""Outage logging: one WARNING when a dependency starts failing, one when it is back, a count between.

A relay polls ten times a second; logging a traceback per failed poll buried the one line an
operator needs under hundreds (229 tracebacks in 35 s with Redis stopped). ``Outage`` logs the
first failure (its type and message, no traceback), a reminder with the count every
``remind_s``, and the recovery with the count and the duration.

Several components report to one ``Outage`` (the relays, the heartbeat, Dramatiq's consumers),
each under its own ``source``: the outage ends when every source that failed has succeeded
again, so one component failing for its own reason holds it open (one line a minute) instead
of flapping between start and end with its neighbours' successes. Failures without a source
(Dramatiq's consumers, which never report a success) start or extend it; a success without a
source (the heartbeat's probe, which speaks for the whole process) ends it.
"""

from __future__ import annotations

import logging
import threading
import time


class Outage:
    """The state of one dependency (broker, database, SMTP server) as seen by one component."""

    def __init__(self, what: str, logger: logging.Logger, *, remind_s: float = 60.0) -> None:
        self.what, self.log, self.remind_s = what, logger, remind_s
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        self._reminded = 0.0
        self._failing: set[str] = set()

    @property
    def down(self) -> bool:
        """True between the first failure and the next success."""
        return self._since is not None

    def failed(self, exc: BaseException, source: str | None = None, **extra: object) -> None:
        """A call to the dependency failed: log it if this starts an outage, or when a reminder is due."""
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if source is not None:
                self._failing.add(source)
            if self._since is None:
                self._since, self._reminded = now, now
                self.log.warning(
                    "%s unavailable: %s: %s (logged once; its recovery will be logged)",
                    self.what, type(exc).__name__, _short(exc),
                    extra={"outage": self.what, "event": "outage-start", **extra},
                )
            elif now - self._reminded >= self.remind_s:
                self._reminded = now
                self.log.warning(
                    "%s still unavailable after %.0f s (%d failures so far): %s",
                    self.what, now - self._since, self._failures, type(exc).__name__,
                    extra={"outage": self.what, "event": "outage-ongoing", "failures": self._failures},
                )

    def ok(self, source: str | None = None) -> None:
        """A call to the dependency succeeded: log the recovery once no source is failing any more."""
        if self._since is None:
            return
        with self._lock:
            if source is None:
                self._failing.clear()
            else:
                self._failing.discard(source)
            if self._since is None or self._failing:
                return
            duration_s, failures = time.monotonic() - self._since, self._failures
            self._since, self._failures = None, 0
        self.log.warning(
            "%s available again after %.1f s (%d failures during the outage)", self.what, duration_s, failures,
            extra={"outage": self.what, "event": "outage-end", "failures": failures, "duration_s": round(duration_s, 1)},
        )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]
