"""A stand-in for ``connectors.runtime.webhooks.WebhookHub`` (same types), to test the routes on their own."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connectors.errors import WebhookPayloadError, WebhookSignatureError
from connectors.runtime.webhooks import HandleResult, Subscriber, Subscription, event_matches
from unified_models import Event


class FakeStream:
    """Behaves like ``connectors.runtime.webhooks.EventStream``."""

    def __init__(self, hub: FakeWebhookHub, owner_id: str | None, patterns: Sequence[str]) -> None:
        self.hub = hub
        self.owner_id = owner_id
        self.patterns = tuple(patterns)
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.closed = False

    def wants(self, event: Event) -> bool:
        if self.owner_id is not None and event.owner_id != self.owner_id:
            return False
        return any(event_matches(p, event.name) for p in self.patterns)

    async def get(self, wait: float | None = None) -> Event:
        if self.closed:
            raise StopAsyncIteration
        async with asyncio.timeout(wait):
            return await self.queue.get()

    async def aclose(self) -> None:
        self.closed = True
        if self in self.hub.streams:
            self.hub.streams.remove(self)
            self.hub.closed_streams += 1


class FakeWebhookHub:
    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        self.deliveries: list[tuple[bytes, dict[str, str], str | None]] = []
        self.streams: list[FakeStream] = []
        self.closed_streams = 0

    async def handle(
        self, raw_body: bytes, headers: Mapping[str, str], *, connector_id: str | None = None
    ) -> HandleResult:
        if headers.get("x-kustomer-webhook-signature") != "good":
            raise WebhookSignatureError("bad signature")
        if not raw_body.startswith(b"{"):
            raise WebhookPayloadError("not JSON", reason="not_json")
        self.deliveries.append((raw_body, dict(headers), connector_id))
        return HandleResult(True, raw_body == b"{}", False, [])

    def publish(self, event: Event) -> None:
        for stream in self.streams:
            if stream.wants(event):
                stream.queue.put_nowait(event)

    def stream(
        self, *, owner_id: str | None = None, patterns: Sequence[str] = ("*",), max_queue: int | None = None
    ) -> FakeStream:
        stream = FakeStream(self, owner_id, patterns)
        self.streams.append(stream)
        return stream

    async def add_subscriber(self, *, owner_id: str, url: str, events: Sequence[str]) -> Subscriber:
        sub = Subscriber(
            f"sub_{secrets.token_hex(4)}", owner_id, url, tuple(events), secrets.token_hex(16), datetime.now(UTC)
        )
        self.subscribers[sub.id] = replace(sub, secret=None)
        return sub

    async def list_subscribers(self, *, owner_id: str) -> list[Subscriber]:
        return [s for s in self.subscribers.values() if s.owner_id == owner_id]

    async def remove_subscriber(self, *, owner_id: str, id: str) -> bool:
        sub = self.subscribers.get(id)
        if sub is None or sub.owner_id != owner_id:
            return False
        del self.subscribers[id]
        return True

    async def aclose(self) -> None:
        return None


class FakeConnectionWebhooks:
    registry: dict[str, list[Subscription]] = {}
    urls: dict[str, str] = {}

    def __init__(self, connection: Any) -> None:
        self.connection_id: str = connection.id

    async def subscribe(self, events: Sequence[str], url: str | None = None) -> list[Subscription]:
        subs = self.registry.setdefault(self.connection_id, [])
        self.urls[self.connection_id] = url or ""
        have = {s.event for s in subs}
        for name in events:
            if name not in have:
                subs.append(
                    Subscription(name, name.startswith("genericContact"), "wh_1", datetime.now(UTC), self.connection_id)
                )
        return [s for s in subs if s.event in events]

    async def unsubscribe(self, events: Sequence[str] | None = None) -> int:
        subs = self.registry.get(self.connection_id, [])
        keep = [s for s in subs if events is not None and s.event not in events]
        self.registry[self.connection_id] = keep
        return len(subs) - len(keep)

    async def list(self) -> list[Subscription]:
        return list(self.registry.get(self.connection_id, []))


def event(owner: str, model: str = "genericContact", trigger: str = "updated", id: str = "c1") -> Event:
    return Event.model_validate(
        {
            "model": model,
            "trigger": trigger,
            "id": id,
            "data": None,
            "idempotencyKey": f"{owner}:{model}:{id}:{trigger}:{secrets.token_hex(3)}",
            "occurredAt": "2026-01-01T00:00:00Z",
            "connectorId": "kustomer",
            "ownerId": owner,
        }
    )
