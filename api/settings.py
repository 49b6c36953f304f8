"""The HTTP edge's settings, and the composed class ``create_app`` is built from."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from channels.settings import SmtpSettings, TwilioSettings
from messaging.settings import (
    BrokerSettings,
    DatabaseSettings,
    ObservabilitySettings,
    SecuritySettings,
    SettingsBase,
    SiteSettings,
    env,
)


class ApiSettings(SettingsBase):
    """Request limits, trusted hosts, browser apps and sessions, the credentials cache."""

    allowed_hosts: str = Field(default="localhost,127.0.0.1,::1", validation_alias=env("HERALD_ALLOWED_HOSTS"))
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, validation_alias=env("HERALD_MAX_BODY_BYTES"))
    # POST /api/validationResults: 10,000 results are about 1.5 MB
    validation_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, validation_alias=env("HERALD_VALIDATION_MAX_BODY_BYTES")
    )
    auth_cache_s: float = Field(default=300.0, ge=0, validation_alias=env("HERALD_AUTH_CACHE_S"))
    apps_dir: Path = Field(default=Path("./herald-apps"), validation_alias=env("HERALD_APPS_DIR"))
    max_app_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, validation_alias=env("HERALD_MAX_APP_BYTES"))
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0, validation_alias=env("HERALD_SESSION_TTL_S"))


class AppSettings(
    ApiSettings,
    SiteSettings,
    DatabaseSettings,
    BrokerSettings,
    SecuritySettings,
    ObservabilitySettings,
    SmtpSettings,
    TwilioSettings,
):
    """Everything the API reads: its own limits, the database, the broker (health, ops), logins, the channels' switches."""
