"""The domain's settings, one pydantic-settings class per concern, and the loader every root uses.

Each package declares the settings of what it owns (``channels/settings.py``, ``api/settings.py``,
``workers/settings.py``); the composition roots (``herald/settings.py``) combine them into one
class and read the environment once with ``load``. Unknown ``HERALD_*`` keys and malformed values
stop start-up with a message that names the key (``SettingsError``). Every key is documented in
docs/configuration.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound="SettingsBase")


class SettingsError(Exception):
    """The environment holds an unknown or malformed configuration key."""


def env(*names: str) -> AliasChoices:
    """The environment key(s) a field is read from: the first is the documented one."""
    return AliasChoices(*names)


class SettingsBase(BaseSettings):
    """What every settings class shares: frozen, read only from the keys its fields name."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False, frozen=True)


def http_url(value: str | None) -> str | None:
    """An http(s) URL without its trailing slash, or None when empty."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class DatabaseSettings(SettingsBase):
    """Where the database is."""

    database_url: str = Field(default="sqlite:///./herald.db", validation_alias=env("DATABASE_URL"))

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value


class BrokerSettings(SettingsBase):
    """Which broker carries the jobs (none: the API process runs the workers); read by workers, health and ops."""

    broker_url: str = Field(default="", validation_alias=env("BROKER_URL"))
    broker_namespace: str = Field(default="herald", validation_alias=env("HERALD_BROKER_NAMESPACE"))

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"redis", "rediss", "amqp", "amqps"}:
            raise ValueError("must be empty, redis://... or amqp://...")
        return value

    @property
    def in_process_workers(self) -> bool:
        """True when no broker is configured: the API process runs the workers too."""
        return not self.broker_url


class SiteSettings(SettingsBase):
    """Herald's public address: links in API answers and in notifications."""

    base_url: str | None = Field(default=None, validation_alias=env("HERALD_BASE_URL"))

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return http_url(value)


class OutboxSettings(SettingsBase):
    """How the outbox relay polls and re-sends events, and how many recipients one fan-out step writes."""

    outbox_poll_s: float = Field(default=0.1, gt=0, le=60, validation_alias=env("HERALD_OUTBOX_POLL_S"))
    outbox_stale_s: float = Field(default=30.0, gt=0, validation_alias=env("HERALD_OUTBOX_STALE_S"))
    outbox_batch: int = Field(default=500, ge=1, le=10000, validation_alias=env("HERALD_OUTBOX_BATCH"))
    fanout_chunk: int = Field(default=25_000, ge=1, le=1_000_000, validation_alias=env("HERALD_FANOUT_CHUNK"))
    fanout_ranges: int = Field(default=2, ge=1, le=64, validation_alias=env("HERALD_FANOUT_RANGES"))


class DeliveryPolicySettings(SettingsBase):
    """Retries, backoff and leases of email and SMS deliveries."""

    max_attempts: int = Field(default=8, ge=1, le=100, validation_alias=env("HERALD_MAX_ATTEMPTS"))
    retry_base_s: float = Field(default=30.0, gt=0, validation_alias=env("HERALD_RETRY_BASE_S"))
    retry_max_s: float = Field(default=3600.0, gt=0, validation_alias=env("HERALD_RETRY_MAX_S"))
    delivery_lease_s: float = Field(default=300.0, gt=0, validation_alias=env("HERALD_DELIVERY_LEASE_S"))
    delivery_stale_s: float = Field(default=120.0, gt=0, validation_alias=env("HERALD_DELIVERY_STALE_S"))
    delivery_batch: int = Field(default=200, ge=1, le=1000, validation_alias=env("HERALD_DELIVERY_BATCH"))

    @field_validator("retry_max_s")
    @classmethod
    def _retry_window(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("retry_base_s")
        if base is not None and value < base:
            raise ValueError("must not be less than HERALD_RETRY_BASE_S")
        return value


class SecuritySettings(SettingsBase):
    """The first admin's password, login throttling and limits on unattached uploads."""

    admin_password: SecretStr | None = Field(default=None, validation_alias=env("HERALD_ADMIN_PASSWORD"))
    login_max_failures: int = Field(default=5, ge=1, le=1000, validation_alias=env("HERALD_LOGIN_MAX_FAILURES"))
    login_window_s: float = Field(default=900.0, gt=0, le=86400, validation_alias=env("HERALD_LOGIN_WINDOW_S"))
    login_max_address_failures: int = Field(
        default=100, ge=1, le=100000, validation_alias=env("HERALD_LOGIN_MAX_ADDRESS_FAILURES")
    )
    max_unattached_uploads: int = Field(default=20, ge=1, validation_alias=env("HERALD_MAX_UNATTACHED_UPLOADS"))
    max_unattached_upload_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, validation_alias=env("HERALD_MAX_UNATTACHED_UPLOAD_BYTES")
    )
    unattached_upload_ttl_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        validation_alias=env("HERALD_UNATTACHED_UPLOAD_TTL_S", "HERALD_UNATTACHED_UPLOAD_TTL"),
    )
    upload_cleanup_interval_s: float = Field(
        default=600.0, gt=0, le=86400, validation_alias=env("HERALD_UPLOAD_CLEANUP_INTERVAL_S")
    )


class ObservabilitySettings(SettingsBase):
    """Logs, worker heartbeats and readiness checks."""

    log_level: str = Field(default="INFO", validation_alias=env("HERALD_LOG_LEVEL"))
    log_format: Literal["text", "json"] = Field(default="text", validation_alias=env("HERALD_LOG_FORMAT"))
    heartbeat_s: float = Field(default=5.0, gt=0, le=300, validation_alias=env("HERALD_HEARTBEAT_S"))
    health_timeout_s: float = Field(default=2.0, gt=0, le=30, validation_alias=env("HERALD_HEALTH_TIMEOUT_S"))

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()


def known_keys(cls: type[SettingsBase]) -> set[str]:
    """Every environment key a settings class reads."""
    keys: set[str] = set()
    for field in cls.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            keys.update(str(choice) for choice in alias.choices)
    return keys


def load(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read and validate ``cls`` from the environment; raise SettingsError naming the offending key.

    ``cls`` must be the composed class of a whole process: a ``HERALD_*`` key it does not read is
    refused as unknown (a typo must not pass for a default).
    """
    env_ = dict(os.environ if environ is None else environ)
    keys = known_keys(cls)
    unknown = sorted(k for k in env_ if k.startswith("HERALD_") and k not in keys)
    if unknown:
        raise SettingsError(f"unknown configuration key {unknown[0]} (see docs/configuration.md)")
    values = {k: v for k, v in env_.items() if k in keys}
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else "?"
        raise SettingsError(f"invalid value for {key}: {error['msg']}") from None
