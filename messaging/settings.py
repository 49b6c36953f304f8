"""Herald's configuration, read from the environment once by a composition root.

Every key is documented in docs/configuration.md. Unknown ``HERALD_*`` keys and malformed
values stop start-up with a message that names the key (``SettingsError``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """The environment holds an unknown or malformed configuration key."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """All of Herald's settings. Units are in the names; secrets are SecretStr."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False, frozen=True)

    # --- core (issue 2) ---
    database_url: str = Field(default="sqlite:///./herald.db", validation_alias=_env("DATABASE_URL"))
    broker_url: str = Field(default="", validation_alias=_env("BROKER_URL"))
    broker_namespace: str = Field(default="herald", validation_alias=_env("HERALD_BROKER_NAMESPACE"))
    base_url: str | None = Field(default=None, validation_alias=_env("HERALD_BASE_URL"))
    admin_password: SecretStr | None = Field(default=None, validation_alias=_env("HERALD_ADMIN_PASSWORD"))
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, validation_alias=_env("HERALD_MAX_BODY_BYTES"))
    outbox_poll_s: float = Field(default=0.1, gt=0, le=60, validation_alias=_env("HERALD_OUTBOX_POLL_S"))
    outbox_stale_s: float = Field(default=30.0, gt=0, validation_alias=_env("HERALD_OUTBOX_STALE_S"))
    outbox_batch: int = Field(default=500, ge=1, le=10000, validation_alias=_env("HERALD_OUTBOX_BATCH"))
    fanout_chunk: int = Field(default=25_000, ge=1, le=1_000_000, validation_alias=_env("HERALD_FANOUT_CHUNK"))
    worker_threads: int = Field(default=4, ge=1, le=64, validation_alias=_env("HERALD_WORKER_THREADS"))
    auth_cache_s: float = Field(default=300.0, ge=0, validation_alias=_env("HERALD_AUTH_CACHE_S"))
    log_level: str = Field(default="INFO", validation_alias=_env("HERALD_LOG_LEVEL"))

    # --- email and SMS (issue 3) ---
    smtp_url: SecretStr | None = Field(default=None, validation_alias=_env("SMTP_URL"))
    email_from: str = Field(default="no-reply@localhost", validation_alias=_env("HERALD_EMAIL_FROM"))
    app_title: str = Field(default="DHIS 2", validation_alias=_env("HERALD_APP_TITLE"))
    smtp_connections: int = Field(default=4, ge=1, le=64, validation_alias=_env("HERALD_SMTP_CONNECTIONS"))
    smtp_timeout_s: float = Field(default=30.0, gt=0, validation_alias=_env("HERALD_SMTP_TIMEOUT_S"))
    twilio_account_sid: str | None = Field(default=None, validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: SecretStr | None = Field(default=None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    twilio_from_number: str | None = Field(default=None, validation_alias=_env("TWILIO_FROM_NUMBER"))
    twilio_messaging_service_sid: str | None = Field(
        default=None, validation_alias=_env("TWILIO_MESSAGING_SERVICE_SID")
    )
    twilio_api_base_url: str | None = Field(default=None, validation_alias=_env("TWILIO_API_BASE_URL"))
    sms_rate_per_s: float = Field(default=10.0, gt=0, validation_alias=_env("HERALD_SMS_RATE"))
    max_attempts: int = Field(default=8, ge=1, le=100, validation_alias=_env("HERALD_MAX_ATTEMPTS"))
    retry_base_s: float = Field(default=30.0, gt=0, validation_alias=_env("HERALD_RETRY_BASE_S"))
    retry_max_s: float = Field(default=3600.0, gt=0, validation_alias=_env("HERALD_RETRY_MAX_S"))
    delivery_lease_s: float = Field(default=300.0, gt=0, validation_alias=_env("HERALD_DELIVERY_LEASE_S"))
    delivery_stale_s: float = Field(default=120.0, gt=0, validation_alias=_env("HERALD_DELIVERY_STALE_S"))
    delivery_batch: int = Field(default=50, ge=1, le=1000, validation_alias=_env("HERALD_DELIVERY_BATCH"))
    sms_concurrency: int = Field(default=16, ge=1, le=256, validation_alias=_env("HERALD_SMS_CONCURRENCY"))
    sms_timeout_s: float = Field(default=10.0, gt=0, validation_alias=_env("HERALD_SMS_TIMEOUT_S"))

    # --- browser app hosting (issue 4) ---
    apps_dir: Path = Field(default=Path("./herald-apps"), validation_alias=_env("HERALD_APPS_DIR"))
    max_app_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, validation_alias=_env("HERALD_MAX_APP_BYTES"))
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0, validation_alias=_env("HERALD_SESSION_TTL_S"))

    # --- security: logins, uploads, trusted links (issue 8) ---
    login_max_failures: int = Field(default=5, ge=1, le=1000, validation_alias=_env("HERALD_LOGIN_MAX_FAILURES"))
    login_window_s: float = Field(default=900.0, gt=0, le=86400, validation_alias=_env("HERALD_LOGIN_WINDOW_S"))
    login_max_address_failures: int = Field(
        default=100, ge=1, le=100000, validation_alias=_env("HERALD_LOGIN_MAX_ADDRESS_FAILURES")
    )
    allowed_hosts: str = Field(default="localhost,127.0.0.1,::1", validation_alias=_env("HERALD_ALLOWED_HOSTS"))
    max_unattached_uploads: int = Field(default=20, ge=1, validation_alias=_env("HERALD_MAX_UNATTACHED_UPLOADS"))
    max_unattached_upload_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, validation_alias=_env("HERALD_MAX_UNATTACHED_UPLOAD_BYTES")
    )
    unattached_upload_ttl_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        validation_alias=AliasChoices("HERALD_UNATTACHED_UPLOAD_TTL_S", "HERALD_UNATTACHED_UPLOAD_TTL"),
    )
    upload_cleanup_interval_s: float = Field(
        default=600.0, gt=0, le=86400, validation_alias=_env("HERALD_UPLOAD_CLEANUP_INTERVAL_S")
    )

    # (spacer: keep sections apart so parallel branches merge cleanly)

    # --- input limits and parsing (issue 9) ---

    # (spacer)

    # --- validation-result notifications (issue 10) ---
    validation_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, validation_alias=_env("HERALD_VALIDATION_MAX_BODY_BYTES")
    )  # POST /api/validationResults: 10,000 results are about 1.5 MB

    # (spacer)

    # --- operations: dashboard, deliveries, CLI (issue 11) ---

    # (spacer)

    # --- observability: metrics, health, logs, heartbeats (issue 11) ---
    log_format: Literal["text", "json"] = Field(default="text", validation_alias=_env("HERALD_LOG_FORMAT"))
    heartbeat_s: float = Field(default=5.0, gt=0, le=300, validation_alias=_env("HERALD_HEARTBEAT_S"))
    health_timeout_s: float = Field(default=2.0, gt=0, le=30, validation_alias=_env("HERALD_HEALTH_TIMEOUT_S"))

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"redis", "rediss", "amqp", "amqps"}:
            raise ValueError("must be empty, redis://... or amqp://...")
        return value

    @field_validator("base_url", "twilio_api_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("must be smtp://[user:pass@]host:port or smtps://...")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator("retry_max_s")
    @classmethod
    def _retry_window(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("retry_base_s")
        if base is not None and value < base:
            raise ValueError("must not be less than HERALD_RETRY_BASE_S")
        return value

    @property
    def in_process_workers(self) -> bool:
        """True when no broker is configured: the API process runs the workers too."""
        return not self.broker_url


def known_keys() -> set[str]:
    """Every environment key Herald reads."""
    keys: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            keys.update(str(choice) for choice in alias.choices)
    return keys


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise SettingsError naming the offending key."""
    env = dict(os.environ if environ is None else environ)
    unknown = sorted(k for k in env if k.startswith("HERALD_") and k not in known_keys())
    if unknown:
        raise SettingsError(f"unknown configuration key {unknown[0]} (see docs/configuration.md)")
    values = {k: v for k, v in env.items() if k in known_keys()}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else "?"
        raise SettingsError(f"invalid value for {key}: {error['msg']}") from None
