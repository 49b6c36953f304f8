"""The channel contract: what a delivery route takes, what it answers, what it promises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

ELLIPSIS = "..."


@dataclass(frozen=True, slots=True)
class Envelope:
    """One (message, recipient, channel) delivery, with everything a channel needs to send it."""

    delivery_id: int
    channel: str
    message_uid: str
    conversation_uid: str
    message_type: str
    recipient_uid: str
    recipient_name: str
    address: str  # an email address or a phone number, as the user wrote it
    subject: str
    text: str
    sender_name: str | None = None
    conversation_url: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """The provider accepted the message: its id for it (SMTP Message-ID, Twilio SID)."""

    provider_id: str | None
    status: str = "SENT"


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """What a channel can carry, as data; ``fit_text`` enforces it."""

    max_text_length: int | None = None  # characters; None: unlimited

    def __post_init__(self) -> None:
        if self.max_text_length is not None and self.max_text_length <= len(ELLIPSIS):
            raise ValueError(f"max_text_length must be more than {len(ELLIPSIS)}")

    def fit_text(self, text: str) -> str:
        """The text, cut to the limit and ending in "..." when it is longer (DECISIONS #17)."""
        limit = self.max_text_length
        if limit is None or len(text) <= limit:
            return text
        return text[: limit - len(ELLIPSIS)] + ELLIPSIS


@runtime_checkable
class Channel(Protocol):
    """One delivery route (email, SMS).

    ``send`` delivers the envelope once or raises a ``channels.errors.DeliveryError``:
    ``PermanentDeliveryError`` (never retry), ``TransientDeliveryError`` (retry later,
    honouring ``retry_after_s``) or ``UnknownOutcomeError`` (the provider may have it; do not
    resend blindly). It never retries by itself beyond reopening a connection that the
    provider had dropped before anything was sent, and never returns False. ``send`` is safe
    to call concurrently from one event loop. ``aclose`` releases connections; the channel
    reopens them lazily if used again.
    """

    name: ClassVar[str]
    limits: ChannelLimits

    async def send(self, envelope: Envelope) -> Receipt:
        """Deliver the envelope once, or raise DeliveryError."""
        ...

    async def aclose(self) -> None:
        """Close the channel's connections."""
        ...
