"""Fixtures for the transport and rate-limit tests: Redis, fake clocks."""

from __future__ import annotations

import functools
import heapq
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis


class ManualClock:
    """A clock that only moves when told to; ``sleep`` records the delay and (optionally) advances time.

    With ``advance=False`` the clock is frozen: ``acquire`` reserves slots and "sleeps" instantly, so many
    concurrent acquirers can be modelled without waiting (send time = now + waited).
    """

    def __init__(self, start: float = 1_000_000.0, *, advance: bool = True) -> None:
        self.now = start
        self.advance = advance
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        assert delay >= 0, delay
        self.sleeps.append(delay)
        if self.advance:
            self.now += delay
        await anyio.lowlevel.checkpoint()


class VirtualClock:
    """Discrete-event time for many concurrent tasks: time jumps to the next deadline once every task
    started by :meth:`run` is parked in :meth:`sleep` (tasks busy with real I/O hold time still)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()
        self._active = 0

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._heap, (self.now + delay, next(self._seq), event))
        await event.wait()

    async def run(self, *fns: Callable[[], Awaitable[Any]]) -> list[Any]:
        results: list[Any] = [None] * len(fns)
        self._active = len(fns)

        async def runner(i: int, fn: Callable[[], Awaitable[Any]]) -> None:
            try:
                results[i] = await fn()
            finally:
                self._active -= 1

        async def drive() -> None:
            while self._active > 0:
                await anyio.lowlevel.checkpoint()
                if self._heap and len(self._heap) >= self._active:
                    deadline = self._heap[0][0]
                    self.now = max(self.now, deadline)
                    while self._heap and self._heap[0][0] <= deadline:
                        heapq.heappop(self._heap)[2].set()

        async with anyio.create_task_group() as tg:
            for i, fn in enumerate(fns):
                tg.start_soon(runner, i, fn)
            tg.start_soon(drive)
        return results


@functools.cache
def unique_prefix() -> str:
    return f"test:connectors:rl:{uuid.uuid4().hex}:"


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to the test; its keys are deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture(scope="session")
def clocks() -> Any:
    """The fake clock classes, for tests (including hypothesis ones) that build their own."""

    class _Clocks:
        manual = ManualClock
        virtual = VirtualClock
        prefix = staticmethod(unique_prefix)
        cleanup = staticmethod(delete_prefix)

    return _Clocks
