"""Protocol peers for the delivery benchmarks, each run as its own process.

    python -m bench._peers smtp --port P --stats-port S     # aiosmtpd sink that counts what it accepts
    python -m bench._peers twilio --stats-port S            # the tests' Twilio stand-in, on a free port

``GET http://127.0.0.1:S/stats`` answers {"messages": n, "unique": m} (unique Message-IDs, or
unique To numbers; the stand-in adds its "port"), ``POST /reset`` starts counting afresh. The SMTP
sink also answers ``GET /times``: the wall-clock time (``time.time()``) each message's DATA ended,
in arrival order, for the latency benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
import time
from typing import Any

from aiohttp import web

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class CountingHandler:
    """Accepts every message; counts them and their Message-IDs (nothing else is kept)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.ids: set[bytes] = set()
        self.times: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        match = _MESSAGE_ID.search(envelope.original_content or b"")
        received = time.time()
        with self.lock:
            self.count += 1
            self.times.append(received)
            if match:
                self.ids.add(match.group(1))
        return "250 OK"

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"messages": self.count, "unique": len(self.ids)}

    def reset(self) -> None:
        with self.lock:
            self.count, self.ids, self.times = 0, set(), []

    def received_at(self) -> list[float]:
        with self.lock:
            return list(self.times)


async def serve_stats(port: int, stats: Any, reset: Any, times: Any = None) -> None:
    """The stats endpoint, until the process is stopped."""

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats())

    async def post_reset(request: web.Request) -> web.Response:
        reset()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", post_reset)
    if times is not None:

        async def get_times(request: web.Request) -> web.Response:
            return web.json_response(times())

        app.router.add_get("/times", get_times)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def smtp(port: int, stats_port: int) -> None:
    """An aiosmtpd sink on ``port``."""
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10.0)
    controller.start()
    try:
        asyncio.run(serve_stats(stats_port, handler.stats, handler.reset, handler.received_at))
    finally:
        controller.stop()


def twilio(stats_port: int) -> None:
    """The Twilio stand-in of the tests, on a free port (its stats say which)."""
    from tests.support.twilio_standin import TwilioStandIn

    standin = TwilioStandIn()
    standin.start()
    offset = 0

    def stats() -> dict[str, int]:
        requests = standin.requests[offset:]
        return {"messages": len(requests), "unique": len({r.form.get("To") for r in requests}), "port": standin.port}

    def reset() -> None:
        nonlocal offset
        offset = len(standin.requests)

    try:
        asyncio.run(serve_stats(stats_port, stats, reset))
    finally:
        standin.stop()


def main() -> None:
    """Run one peer."""
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=["smtp", "twilio"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stats-port", type=int, required=True)
    args = parser.parse_args()
    if args.peer == "smtp":
        smtp(args.port, args.stats_port)
    else:
        twilio(args.stats_port)


if __name__ == "__main__":
    main()
