"""The worker fleet's settings, and the composed class ``build_runtime`` is built from."""

from __future__ import annotations

from pydantic import Field

from channels.settings import SmtpSettings, TwilioSettings
from messaging.settings import (
    BrokerSettings,
    DatabaseSettings,
    DeliveryPolicySettings,
    ObservabilitySettings,
    OutboxSettings,
    SecuritySettings,
    SettingsBase,
    SiteSettings,
    env,
)


class WorkerSettings(SettingsBase):
    """The worker process itself (the database pool is sized from its threads)."""

    worker_threads: int = Field(default=4, ge=1, le=64, validation_alias=env("HERALD_WORKER_THREADS"))


class FleetSettings(
    WorkerSettings,
    SiteSettings,
    DatabaseSettings,
    BrokerSettings,
    OutboxSettings,
    DeliveryPolicySettings,
    SecuritySettings,
    ObservabilitySettings,
    SmtpSettings,
    TwilioSettings,
):
    """Everything a worker runtime reads: broker, database, outbox, delivery policy, channels, upload cleanup."""
