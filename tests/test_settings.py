"""Settings by concern: each class reads its own keys, the roots compose them, and every key is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.settings import ApiSettings, AppSettings
from channels.settings import SmtpSettings, TwilioSettings
from herald.settings import HeraldSettings, load_settings
from messaging.settings import (
    BrokerSettings,
    DatabaseSettings,
    DeliveryPolicySettings,
    ObservabilitySettings,
    OutboxSettings,
    SecuritySettings,
    SettingsBase,
    SettingsError,
    SiteSettings,
    known_keys,
    load,
)
from workers.settings import FleetSettings, WorkerSettings

CONCERNS: tuple[type[SettingsBase], ...] = (
    DatabaseSettings, BrokerSettings, SiteSettings, ApiSettings, SecuritySettings, OutboxSettings,
    WorkerSettings, DeliveryPolicySettings, SmtpSettings, TwilioSettings, ObservabilitySettings,
)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_key_belongs_to_exactly_one_concern_and_the_root_reads_them_all() -> None:
    owners: dict[str, list[str]] = {}
    for concern in CONCERNS:
        for key in known_keys(concern):
            owners.setdefault(key, []).append(concern.__name__)
    assert {key: names for key, names in owners.items() if len(names) > 1} == {}
    assert set(owners) == known_keys(HeraldSettings)
    assert set(HeraldSettings.model_fields) == {name for c in CONCERNS for name in c.model_fields}


def test_the_api_and_the_fleet_each_read_what_they_need_and_herald_is_both() -> None:
    settings = load_settings({"BROKER_URL": "redis://127.0.0.1:6379/0", "HERALD_MAX_BODY_BYTES": "4096"})
    assert isinstance(settings, AppSettings) and isinstance(settings, FleetSettings)
    assert settings.max_body_bytes == 4096 and not settings.in_process_workers
    assert "HERALD_MAX_BODY_BYTES" not in known_keys(FleetSettings)
    assert "HERALD_WORKER_THREADS" not in known_keys(AppSettings)


def test_every_key_is_documented_under_its_concern() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", text, flags=re.MULTILINE))
    documented |= set(re.findall(r"\(or `([A-Z][A-Z0-9_]+)`\)", text))
    documented |= set(re.findall(r"^\| `[A-Z_]+`, `([A-Z][A-Z0-9_]+)`", text, flags=re.MULTILINE))
    documented |= set(re.findall(r"^\| `[A-Z_]+` or `([A-Z][A-Z0-9_]+)`", text, flags=re.MULTILINE))
    assert known_keys(HeraldSettings) - documented == set()
    for concern in CONCERNS:
        assert f"`{concern.__name__}`" in text


def test_defaults_are_the_documented_ones_without_any_environment() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite:///./herald.db" and settings.broker_namespace == "herald"
    assert (settings.max_attempts, settings.retry_base_s, settings.retry_max_s) == (8, 30.0, 3600.0)
    assert (settings.outbox_poll_s, settings.worker_threads, settings.smtp_connections) == (0.1, 4, 4)
    assert settings.smtp_url is None and settings.twilio_auth_token is None and settings.in_process_workers


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"HERALD_MAX_BODY_BYTE": "1"}, "HERALD_MAX_BODY_BYTE"),
        ({"HERALD_MAX_BODY_BYTES": "lots"}, "HERALD_MAX_BODY_BYTES"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"HERALD_RETRY_BASE_S": "60", "HERALD_RETRY_MAX_S": "10"}, "HERALD_RETRY_MAX_S"),
        ({"SMTP_URL": "http://mail"}, "SMTP_URL"),
        ({"TWILIO_API_BASE_URL": "ftp://x"}, "TWILIO_API_BASE_URL"),
        ({"HERALD_LOG_LEVEL": "LOUD"}, "HERALD_LOG_LEVEL"),
    ],
)
def test_an_unknown_or_malformed_key_stops_loading_and_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environ)


def test_a_process_s_class_refuses_a_herald_key_it_does_not_read() -> None:
    # Why the roots load the composed class: a worker-only class would take an API key for a typo.
    with pytest.raises(SettingsError, match="HERALD_MAX_BODY_BYTES"):
        load(FleetSettings, {"HERALD_MAX_BODY_BYTES": "4096"})
    assert load(FleetSettings, {"HERALD_WORKER_THREADS": "3"}).worker_threads == 3


def test_the_old_upload_ttl_name_still_works() -> None:
    assert load_settings({"HERALD_UNATTACHED_UPLOAD_TTL": "60"}).unattached_upload_ttl_s == 60.0
    assert load_settings({"HERALD_UNATTACHED_UPLOAD_TTL_S": "61"}).unattached_upload_ttl_s == 61.0


def test_urls_lose_their_trailing_slash_and_secrets_stay_hidden() -> None:
    settings = load_settings({
        "HERALD_BASE_URL": "https://messages.example.org/", "SMTP_URL": "smtp://u:hunter2@mail:25",
        "TWILIO_AUTH_TOKEN": "tok-secret",
    })
    assert settings.base_url == "https://messages.example.org"
    assert "hunter2" not in repr(settings) and "tok-secret" not in repr(settings)
