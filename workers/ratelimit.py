"""Token buckets for HERALD_SMS_RATE: one in Redis shared by every worker process, or a local one.

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; ``take(want)`` grants what
it has (up to ``want``) at once and says how long until the next token when it has none, so a
caller asks for a whole batch in one round trip and never spins. The Redis bucket does the
arithmetic in one Lua script on the server's clock, so processes on different machines share
it exactly.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol

import redis

# KEYS[1]: the bucket; ARGV: rate per second, burst, tokens wanted. Returns {granted, ms until one more}.
_TAKE = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait_ms = 0
if granted == 0 then wait_ms = math.ceil((1 - tokens) / rate * 1000) end
return {granted, wait_ms}
"""


class TokenBucket(Protocol):
    """Grants up to ``want`` tokens now; with none to give, says how long until the next."""

    def take(self, want: int) -> tuple[int, float]:
        """(tokens granted, seconds until one more when none was granted)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def burst_for(rate_per_s: float) -> float:
    """One second's worth of tokens, at least one."""
    return max(1.0, rate_per_s)


class LocalBucket:
    """A bucket for this process only (no Redis broker: in-process workers or RabbitMQ)."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate, self.burst = rate_per_s, burst if burst is not None else burst_for(rate_per_s)
        self._tokens, self._at = self.burst, time.monotonic()
        self._lock = threading.Lock()

    def take(self, want: int) -> tuple[int, float]:
        """Grant what the bucket holds, up to ``want``."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            granted = min(want, math.floor(self._tokens))
            self._tokens -= granted
            return granted, 0.0 if granted else (1 - self._tokens) / self.rate

    def close(self) -> None:
        """Nothing to release."""


class RedisBucket:
    """A bucket in Redis under ``key``, shared by every process that names the same key."""

    def __init__(self, url: str, key: str, rate_per_s: float, burst: float | None = None) -> None:
        self.key, self.rate = key, rate_per_s
        self.burst = burst if burst is not None else burst_for(rate_per_s)
        self._client: Any = redis.Redis.from_url(url)
        self._script = self._client.register_script(_TAKE)

    def take(self, want: int) -> tuple[int, float]:
        """Grant what the shared bucket holds, up to ``want`` (one round trip)."""
        granted, wait_ms = self._script(keys=[self.key], args=[self.rate, self.burst, want])
        return int(granted), int(wait_ms) / 1000.0

    def close(self) -> None:
        """Close the Redis connections."""
        self._client.close()


def take_within(bucket: TokenBucket, want: int, deadline: float) -> int:
    """Tokens for up to ``want`` sends, waiting for at least one until ``deadline`` (monotonic); 0 when none came."""
    while True:
        granted, wait_s = bucket.take(want)
        if granted:
            return granted
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 0
        # Short sleeps: Dramatiq's time limit and shutdown interrupt a worker thread between them.
        time.sleep(min(max(wait_s, 0.001), remaining, 0.05))
