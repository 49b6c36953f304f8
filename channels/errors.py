"""Why a channel could not deliver, in the terms the delivery actor acts on.

A channel delivers once or raises one of these; it never retries and never returns False.
Every error pickles (Dramatiq and process pools move them) and carries no secret.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A channel could not deliver; the caller decides what happens next.

    ``reason`` is a human-readable text safe to store and log, ``code`` a short stable label
    (``"smtp-550"``, ``"twilio-21211"``, ``"invalid-number"``) and ``retry_after_s`` the delay
    the provider asked for, when it asked.
    """

    def __init__(self, reason: str, code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(reason, code, retry_after_s)  # all args: picklable, useful repr
        self.reason, self.code, self.retry_after_s = reason, code, retry_after_s

    def __str__(self) -> str:
        return self.reason if self.code is None else f"{self.reason} [{self.code}]"


class TransientDeliveryError(DeliveryError):
    """Try again later: 4xx SMTP replies, HTTP 429 and 5xx, the provider unreachable."""


class PermanentDeliveryError(DeliveryError):
    """Never retry: unknown mailbox (SMTP 5xx), invalid or unsubscribed phone number."""


class UnknownOutcomeError(DeliveryError):
    """The request may have reached the provider (a timeout or a lost connection after it left).

    The message may or may not have been sent and no provider offers an idempotency key:
    a blind resend can deliver twice. The caller decides (mark it, ask the provider, or
    resend knowingly).
    """
