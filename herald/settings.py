"""The whole of Herald's configuration: the API's and the fleet's settings composed, read once per process."""

from __future__ import annotations

from collections.abc import Mapping

from api.settings import AppSettings
from messaging.settings import load
from workers.settings import FleetSettings


class HeraldSettings(AppSettings, FleetSettings):
    """Every key of every concern, flat (``settings.database_url``); units in the names, secrets as SecretStr."""


def load_settings(environ: Mapping[str, str] | None = None) -> HeraldSettings:
    """Read and validate every key; raise SettingsError naming an unknown or malformed one."""
    return load(HeraldSettings, environ)
