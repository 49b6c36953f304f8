"""Worker process entry point for the Dramatiq CLI (`herald worker` runs it).

This module is a composition root: it reads the settings once, at import, because the Dramatiq
CLI imports it in every worker process and takes the global broker from it.
"""

from __future__ import annotations

import dramatiq

from herald.settings import load_settings
from messaging.logs import configure_logging
from workers.runtime import build_runtime

settings = load_settings()
configure_logging(settings.log_level, settings.log_format)
if not settings.broker_url:
    raise SystemExit("herald worker needs BROKER_URL (redis://... or amqp://...); `herald serve` runs workers in-process")
runtime = build_runtime(settings)
dramatiq.set_broker(runtime.broker)
broker = runtime.broker
