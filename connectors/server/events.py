"""Where the event stream (``GET /events``) gets its events: this process, or every worker through Redis.

The webhooks hub dispatches a committed event to the handlers and streams of **one** process (the one that
committed or claimed it). With one worker that is enough: :class:`LocalEvents` reads
``hub.webhooks.stream()``. With several workers an SSE client connected to worker B must also see events that
worker A received, so :class:`RedisEvents` (used whenever ``CONNECTORS_REDIS_URL`` is set) registers one
handler per worker that publishes every event to a Redis channel, and each stream subscribes to that channel.
The channel name is derived from the deployment key, so deployments sharing a Redis never see each other's
events. Delivery is at least once: clients dedupe on the SSE ``id`` (the event's idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from connectors.runtime.webhooks import event_matches
from unified_models import Event

if TYPE_CHECKING:
    from connectors.runtime.connection import Connectors

__all__ = ["EventFeed", "EventSource", "LocalEvents", "RedisEvents", "event_source_for"]

logger = logging.getLogger(__name__)


class EventFeed(Protocol):
    """One consumer's events."""

    async def start(self) -> None:
        """Begin receiving (events before this are not seen)."""
        ...

    async def get(self, wait: float | None = None) -> Event:
        """The next event within ``wait`` seconds (raises ``TimeoutError``, or ``StopAsyncIteration`` when closed)."""
        ...

    async def aclose(self) -> None:
        """Stop receiving."""
        ...


class EventSource(Protocol):
    """Opens feeds of unified events."""

    def open(self, *, owner_id: str | None, patterns: Sequence[str]) -> EventFeed:
        """A feed of ``owner_id``'s events (every owner's for ``None``) matching ``patterns``."""
        ...

    async def start(self) -> None:
        """Begin (called at app startup)."""
        ...

    async def aclose(self) -> None:
        """End (called at app shutdown)."""
        ...


class LocalEvents:
    """Events of this process only (``hub.webhooks.stream``).

    Args:
        hub: the connections hub.
        queue_size: events buffered per feed before the oldest is dropped.
    """

    def __init__(self, hub: Connectors, *, queue_size: int = 1000) -> None:
        self._hub = hub
        self._size = queue_size

    def open(self, *, owner_id: str | None, patterns: Sequence[str]) -> EventFeed:
        """A feed backed by a webhooks-hub stream (registered at once)."""
        return _LocalFeed(self._hub.webhooks.stream(owner_id=owner_id, patterns=patterns, max_queue=self._size))

    async def start(self) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Nothing to close (the hub closes its streams)."""


class _LocalFeed:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def start(self) -> None:
        return None

    async def get(self, wait: float | None = None) -> Event:
        event: Event = await self._stream.get(wait)
        return event

    async def aclose(self) -> None:
        await self._stream.aclose()


class _RedisFeed:
    def __init__(self, pubsub: Any, channel: str, owner_id: str | None, patterns: Sequence[str]) -> None:
        self._pubsub = pubsub
        self._channel = channel
        self._owner = owner_id
        self._patterns = tuple(patterns)
        self._subscribed = False
        self._closed = False

    def _wants(self, event: Event) -> bool:
        if self._owner is not None and event.owner_id != self._owner:
            return False
        return any(event_matches(p, event.name) for p in self._patterns)

    async def start(self) -> None:
        if not self._subscribed:
            await self._pubsub.subscribe(self._channel)
            self._subscribed = True

    async def get(self, wait: float | None = None) -> Event:
        if self._closed:
            raise StopAsyncIteration
        await self.start()
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=min(remaining, 1.0) if remaining is not None else 1.0
            )
            if self._closed:
                raise StopAsyncIteration
            if message is None or message.get("type") != "message":
                continue
            try:
                event = Event.model_validate_json(message["data"])
            except ValidationError:
                logger.warning("ignored a malformed event on the Redis event channel")
                continue
            if self._wants(event):
                return event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            if self._subscribed:
                await self._pubsub.unsubscribe(self._channel)
            await self._pubsub.aclose()


class RedisEvents:
    """Events of every worker, fanned out through a Redis channel.

    Args:
        hub: the connections hub (its webhooks hub gets one publishing handler).
        redis_url: the Redis URL.
    """

    def __init__(self, hub: Connectors, redis_url: str) -> None:
        import redis.asyncio as aioredis

        self._hub = hub
        self._redis = aioredis.Redis.from_url(redis_url)
        digest = hashlib.sha256(hub.store.secret_box.derive_key("events-channel")).hexdigest()[:16]
        self.channel = f"unified-connectors:events:{digest}"
        self._started = False

    def __repr__(self) -> str:
        return f"RedisEvents(channel={self.channel!r})"

    async def _publish(self, event: Event) -> None:
        await self._redis.publish(self.channel, event.model_dump_json(by_alias=True))

    async def start(self) -> None:
        """Publish every event this worker dispatches."""
        if not self._started:
            self._hub.webhooks.on("*")(self._publish)
            self._started = True

    def open(self, *, owner_id: str | None, patterns: Sequence[str]) -> EventFeed:
        """A feed of the channel (subscribed by its ``start``)."""
        return _RedisFeed(self._redis.pubsub(), self.channel, owner_id, patterns)

    async def aclose(self) -> None:
        """Stop publishing and close the Redis client."""
        if self._started:
            self._hub.webhooks.off(self._publish)
            self._started = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._redis.aclose(), timeout=5)


def event_source_for(hub: Connectors, *, queue_size: int) -> EventSource:
    """Redis fan-out when the deployment has Redis, else this process's events."""
    if hub.settings.redis_url:
        return RedisEvents(hub, hub.settings.redis_url)
    return LocalEvents(hub, queue_size=queue_size)
