"""The channels' settings: SMTP for email, Twilio for SMS (no vendor import here, so the API can read them)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from messaging.settings import SettingsBase, env, http_url


class SmtpSettings(SettingsBase):
    """The email channel: the SMTP server (none turns email off), the sender and the connections."""

    smtp_url: SecretStr | None = Field(default=None, validation_alias=env("SMTP_URL"))
    email_from: str = Field(default="no-reply@localhost", validation_alias=env("HERALD_EMAIL_FROM"))
    app_title: str = Field(default="DHIS 2", validation_alias=env("HERALD_APP_TITLE"))
    smtp_connections: int = Field(default=4, ge=1, le=64, validation_alias=env("HERALD_SMTP_CONNECTIONS"))
    smtp_timeout_s: float = Field(default=30.0, gt=0, validation_alias=env("HERALD_SMTP_TIMEOUT_S"))

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("must be smtp://[user:pass@]host:port or smtps://...")
        return value


class TwilioSettings(SettingsBase):
    """The SMS channel: the Twilio account (none turns SMS off), the sender, the rate and the concurrency."""

    twilio_account_sid: str | None = Field(default=None, validation_alias=env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: SecretStr | None = Field(default=None, validation_alias=env("TWILIO_AUTH_TOKEN"))
    twilio_from_number: str | None = Field(default=None, validation_alias=env("TWILIO_FROM_NUMBER"))
    twilio_messaging_service_sid: str | None = Field(
        default=None, validation_alias=env("TWILIO_MESSAGING_SERVICE_SID")
    )
    twilio_api_base_url: str | None = Field(default=None, validation_alias=env("TWILIO_API_BASE_URL"))
    sms_rate_per_s: float = Field(default=10.0, gt=0, validation_alias=env("HERALD_SMS_RATE"))
    sms_concurrency: int = Field(default=16, ge=1, le=256, validation_alias=env("HERALD_SMS_CONCURRENCY"))
    sms_timeout_s: float = Field(default=10.0, gt=0, validation_alias=env("HERALD_SMS_TIMEOUT_S"))

    @field_validator("twilio_api_base_url")
    @classmethod
    def _api_base_url(cls, value: str | None) -> str | None:
        return http_url(value)
