"""Server-Sent Events end to end: Kustomer (the sandbox) delivers signed webhooks, ``GET /events`` streams them.

Also the Redis fan-out that lets an SSE client on one worker see events another worker received.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import Connectors
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from connectors.server.events import RedisEvents
from connectors.settings import Settings
from unified_models import Event

from .conftest import embedded_server, operator


def read_events(response: httpx.Response, want: int, deadline: float) -> list[dict[str, Any]]:
    """Parse SSE messages from a streaming response until ``want`` events arrived."""
    events: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            break
        if line == "":
            if "event" in fields:
                events.append({**fields, "data": json.loads(fields["data"])})
                if len(events) >= want:
                    break
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return events


@pytest.mark.http
def test_kustomer_webhooks_reach_the_event_stream(tmp_path: Path) -> None:
    with embedded_server(tmp_path) as (url, _app), httpx.Client(base_url=url, headers=operator("demo")) as api:
        r = api.post("/webhooks/subscriptions", json={"events": ["genericContact::created", "genericContact::updated"]})
        assert r.status_code == 201, r.text
        assert all(s["native"] for s in r.json()["data"])
        with (
            httpx.Client(base_url=url, timeout=httpx.Timeout(10.0)) as sse,
            sse.stream("GET", "/events", params={"events": "genericContact::*"}, headers=operator("demo")) as stream,
        ):
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            created = api.post("/resources/genericContact", json={"firstName": "Streamed", "email": "s@example.com"})
            contact_id = created.json()["id"]
            api.patch(f"/resources/genericContact/{contact_id}", json={"lastName": "Event"})
            events = read_events(stream, 2, time.monotonic() + 15)
        # the client went away: its stream is released (no leak per SSE connection)
        webhooks = _app.state.server.hub.webhooks
        deadline = time.monotonic() + 10
        while webhooks._streams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not webhooks._streams
        assert [e["event"] for e in events] == ["genericContact::created", "genericContact::updated"]
        assert all(e["data"]["id"] == contact_id and e["data"]["ownerId"] == "demo" for e in events)
        assert events[0]["data"]["data"]["firstName"] == "Streamed"
        assert events[0]["id"] == events[0]["data"]["idempotencyKey"]
        # a forged delivery is refused, and nothing reaches the stream
        r = api.post(
            "/webhooks/kustomer",
            content=b'{"id": "x", "name": "kustomer.customer.create"}',
            headers={"X-Kustomer-Webhook-Signature": "00" * 32, "X-Kustomer-Webhook-Event": "kustomer.customer.create"},
        )
        assert r.status_code in (400, 401)


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_fan_out_crosses_workers(redis_url: str) -> None:
    key = os.urandom(32)

    def worker() -> Connectors:
        store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(key))
        return Connectors(settings=Settings(redis_url=redis_url), store=store)

    hub_a, hub_b = worker(), worker()
    stranger = Connectors(
        settings=Settings(redis_url=redis_url),
        store=ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32))),
    )
    a, b, other = RedisEvents(hub_a, redis_url), RedisEvents(hub_b, redis_url), RedisEvents(stranger, redis_url)
    assert a.channel == b.channel != other.channel
    try:
        for source in (a, b, other):
            await source.start()
        feed = b.open(owner_id="tenant-1", patterns=["genericContact::*"])
        foreign = other.open(owner_id=None, patterns=["*"])
        await feed.start()
        await foreign.start()
        event = Event.model_validate(
            {
                "model": "genericContact",
                "trigger": "created",
                "id": "c1",
                "idempotencyKey": "k1",
                "occurredAt": "2026-01-01T00:00:00Z",
                "ownerId": "tenant-1",
            }
        )
        skipped = event.model_copy(update={"owner_id": "tenant-2", "idempotency_key": "k2"})
        # worker A's webhook hub dispatches the events to its handlers (the one RedisEvents registered)
        await hub_a.webhooks._run_handlers(skipped)
        await hub_a.webhooks._run_handlers(event)
        received = await feed.get(5.0)
        assert received.idempotency_key == "k1" and received.owner_id == "tenant-1"
        with pytest.raises(TimeoutError):
            await foreign.get(0.3)  # another deployment (another key) never sees them
        await feed.aclose()
        with pytest.raises(StopAsyncIteration):
            await feed.get(0.1)
        await foreign.aclose()
    finally:
        for source in (a, b, other):
            await source.aclose()
        for hub in (hub_a, hub_b, stranger):
            await hub.aclose()
