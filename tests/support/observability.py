"""A Redis server of the test's own (to stop and start at will), and readers of workers' JSON logs.

Never the shared Redis: other runs use it. ``OwnRedis`` runs ``redis-server`` on a free port,
without persistence, and can stop and start it again on the same port (the broker URL stays valid).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import uvicorn

from tests.conftest import free_tcp_port, wait_until


class OwnRedis:
    """A redis-server process on loopback, owned by one test."""

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout_s=10, what="the test's own redis-server to answer")

    def stop(self) -> None:
        """Kill it (as a crash would) and wait until it is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def answers(self) -> bool:
        """True when it answers PING."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def __enter__(self) -> OwnRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a worker's log file (anything else in it is returned as {"raw": line})."""
    lines: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            lines.append({"raw": line})
    return lines


@contextmanager
def api_only(app: Any) -> Iterator[str]:
    """Serve an app (no workers beside it) on loopback; yields its base URL."""
    port = free_tcp_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
