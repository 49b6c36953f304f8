"""A Redis server of the test's own (to stop and start at will), and readers of workers' JSON logs.

Never the shared Redis: other runs use it. ``OwnRedis`` runs ``redis-server`` on a free port,
without persistence, and can stop and start it again on the same port (the broker URL stays valid).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests.conftest import free_tcp_port, serve_app, wait_until


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
    with serve_app(app) as url:
        yield url


class TcpProxy:
    """A TCP forwarder to a local port that a test can cut (as a database outage would) and restore.

    It runs its own event loop in a thread; ``cut`` closes the listener and every connection,
    ``restore`` listens again on the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_tcp_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.difference_update({writer, up_writer})

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def start(self) -> None:
        """Start forwarding."""
        self._thread.start()
        self.restore()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)

    def restore(self) -> None:
        """Forward again, on the same port."""
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def stop(self) -> None:
        """Cut and stop the loop."""
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
