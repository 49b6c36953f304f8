"""The shared vocabulary of the delivery statements: channels, status groups and table handles.

Every statement that exists twice (raw PostgreSQL text beside its portable SQLAlchemy twin) takes
its status names from here, so the two forms cannot drift apart: ``sql_in(DUE)`` renders the same
group a Core statement gets as ``_T.c.status.in_(DUE)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table

from messaging.models import Delivery, DeliveryAttempt, DeliveryStatus, User

EMAIL, SMS = "email", "sms"
CHANNELS = (EMAIL, SMS)

QUEUED = DeliveryStatus.QUEUED.value
SENDING = DeliveryStatus.SENDING.value
SENT = DeliveryStatus.SENT.value
DELIVERED = DeliveryStatus.DELIVERED.value
FAILED = DeliveryStatus.FAILED.value
DEAD = DeliveryStatus.DEAD.value
UNKNOWN = DeliveryStatus.UNKNOWN.value
SKIPPED = DeliveryStatus.SKIPPED.value
DISCARDED = DeliveryStatus.DISCARDED.value

DUE = (QUEUED, FAILED)  # what a claim may take once next_attempt_at has passed
RECORDABLE = (SENDING, UNKNOWN)  # where an outcome may land: UNKNOWN yields to the real outcome
RETRYABLE = frozenset({FAILED, DEAD, UNKNOWN})  # what "retry now" and "discard" act on
REQUEUEABLE = RETRYABLE  # the older name, kept for callers of `requeue`
STATUSES = frozenset(s.value for s in DeliveryStatus)

DELIVERIES = cast(Table, Delivery.__table__)
ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
USERS = cast(Table, User.__table__)


def sql_in(values: Iterable[str]) -> str:
    """A group of status names as a SQL list literal, ``('QUEUED', 'FAILED')``, for the raw statements."""
    names = list(values)
    for name in names:
        if not name.isupper() or not name.replace("_", "").isalpha():
            raise ValueError(f"not a status name: {name!r}")
    return "(" + ", ".join(f"'{name}'" for name in names) + ")"
