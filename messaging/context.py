"""The request id of the work under way, carried from the HTTP request through every job it causes.

The API sets it for each request (``api/request_id.py``); ``outbox.stage`` stores it on the event;
the workers put it in each Dramatiq message they send while it is set and set it again around
each job they process (``workers/tracing.py``); every log line carries it (``messaging/logs.py``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("herald_request_id", default=None)
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def request_id() -> str | None:
    """The request id of the work under way, or None."""
    return _request_id.get()


def sane_request_id(value: str | None) -> str | None:
    """The value when it is usable as a request id (1-64 of letters, digits and ``._:-``), else None."""
    if value and _SANE.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


@contextmanager
def bound(value: str | None) -> Iterator[None]:
    """Make ``value`` the request id inside the block (None: no request id)."""
    token = _request_id.set(value)
    try:
        yield
    finally:
        _request_id.reset(token)


def set_request_id(value: str | None) -> object:
    """Set the request id; returns the token ``reset_request_id`` takes (for hooks that cannot use ``bound``)."""
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    """Undo a ``set_request_id``."""
    _request_id.reset(token)  # type: ignore[arg-type]
