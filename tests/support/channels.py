"""Shared pieces of the channel tests: channels built for one test and closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from channels.base import Channel

C = TypeVar("C", bound=Channel)


@asynccontextmanager
async def closed_afterwards(build: Callable[..., C]) -> AsyncIterator[Callable[..., C]]:
    """``build``, remembering every channel it builds; each is closed when the block ends."""
    made: list[C] = []

    def make(*args: object, **kwargs: object) -> C:
        channel = build(*args, **kwargs)
        made.append(channel)
        return channel

    try:
        yield make
    finally:
        for channel in made:
            await channel.aclose()
