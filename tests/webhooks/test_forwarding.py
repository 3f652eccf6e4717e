"""Forwarding to the host app's subscribers: signed with their own secret, retried, isolated per owner."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import Connection, Connectors
from connectors.errors import ConfigurationError
from connectors.kustomer.sandbox import Sandbox
from unified_models import Event

from .conftest import RECEIVE_URL, table_dump

pytestmark = pytest.mark.anyio


@dataclass
class Subscriber:
    fail_first: int = 0
    calls: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            return Response(status_code=503)
        self.received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])]))


@pytest.fixture
def sub(whub: Connectors) -> Subscriber:
    subscriber = Subscriber()
    whub.webhooks.forward_transport = subscriber.transport()
    return subscriber


async def test_subscribers_get_signed_events(conn: Connection, wsb: Sandbox, whub: Connectors, sub: Subscriber) -> None:
    hub = whub.webhooks
    created = await hub.add_subscriber(
        owner_id="tenant-1", url="https://host.example.com/hook", events=["genericContact::*"]
    )
    assert created.secret and len(created.secret) == 64
    assert created.secret not in repr(created) and "**********" in repr(created)
    assert created.secret not in table_dump(whub.store)
    listed = await hub.list_subscribers(owner_id="tenant-1")
    assert [s.id for s in listed] == [created.id] and listed[0].secret is None
    assert "secret" not in listed[0].to_dict() and created.to_dict()["secret"] == created.secret
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Fwd"})
    await wsb.drain()
    await hub.drain()
    ((headers, body),) = sub.received
    expected = hmac.new(created.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-connectors-signature"] == expected
    assert headers["x-connectors-event"] == "genericContact::created"
    event = Event.model_validate(json.loads(body))
    assert event.id == contact.id and event.owner_id == "tenant-1"
    assert headers["x-connectors-delivery"] == event.idempotency_key
    assert hub.stats["forwarded"] == 1


async def test_failed_forwards_are_retried_with_backoff(
    conn: Connection, wsb: Sandbox, whub: Connectors, sub: Subscriber
) -> None:
    now = [5_000_000.0]
    hub = whub.webhooks
    hub.clock = lambda: now[0]
    hub.configure(backoff_base=10.0)
    sub.fail_first = 2
    await hub.add_subscriber(owner_id="tenant-1", url="https://host.example.com/hook", events=["*"])
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    await conn.resources("genericContact").create({"firstName": "Later"})
    await wsb.drain()
    await hub.drain()
    assert sub.calls == 1 and not sub.received
    (row,) = whub.store.list_outbox()
    assert row.attempts == 1 and row.available_at == now[0] + 10.0 and row.last_error == "subscriber answered 503"
    now[0] += 9.0
    await hub.drain()
    assert sub.calls == 1  # not due yet
    now[0] += 1.0
    await hub.drain()
    assert sub.calls == 2
    now[0] += 20.0
    await hub.drain()
    assert sub.calls == 3 and len(sub.received) == 1
    assert whub.store.list_outbox() == []
    assert hub.stats["forward_failures"] == 2 and hub.stats["forwarded"] == 1


async def test_forwarding_gives_up_and_keeps_a_dead_letter(
    conn: Connection, wsb: Sandbox, whub: Connectors, sub: Subscriber
) -> None:
    hub = whub.webhooks
    hub.configure(backoff_base=0.0, forward_max_attempts=3)
    sub.fail_first = 100
    await hub.add_subscriber(owner_id="tenant-1", url="https://host.example.com/hook", events=["*"])
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    await conn.resources("genericContact").create({"firstName": "Never"})
    await wsb.drain()
    await hub.drain()
    assert sub.calls == 3
    assert whub.store.outbox_counts() == {"pending_local": 0, "pending_forward": 0, "dead": 1}
    assert hub.stats["dead_letters"] == 1


async def test_subscribers_are_per_owner(
    conn: Connection, conn2: Connection, wsb: Sandbox, whub: Connectors, sub: Subscriber
) -> None:
    hub = whub.webhooks
    other = await hub.add_subscriber(owner_id="tenant-2", url="https://host.example.com/hook", events=["*"])
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    await conn.resources("genericContact").create({"firstName": "Private"})
    await wsb.drain()
    await hub.drain()
    assert sub.received == []
    assert await hub.list_subscribers(owner_id="tenant-1") == []
    assert not await hub.remove_subscriber(owner_id="tenant-1", id=other.id)
    assert await hub.remove_subscriber(owner_id="tenant-2", id=other.id)
    assert await hub.list_subscribers(owner_id="tenant-2") == []


async def test_removing_a_subscriber_drops_its_pending_deliveries(
    conn: Connection, wsb: Sandbox, whub: Connectors, sub: Subscriber
) -> None:
    hub = whub.webhooks
    hub.configure(backoff_base=3600.0)
    sub.fail_first = 1
    created = await hub.add_subscriber(owner_id="tenant-1", url="https://host.example.com/hook", events=["*"])
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    await conn.resources("genericContact").create({"firstName": "Pending"})
    await wsb.drain()
    await hub.drain()
    assert len(whub.store.list_outbox()) == 1
    assert await hub.remove_subscriber(owner_id="tenant-1", id=created.id)
    assert whub.store.list_outbox() == []
    assert whub.store.get_webhook_subscriber_secret(created.id) is None


async def test_bad_subscribers(whub: Connectors) -> None:
    hub = whub.webhooks
    for kwargs in (
        {"owner_id": "", "url": "https://x.example.com", "events": ["*"]},
        {"owner_id": "t", "url": "not a url", "events": ["*"]},
        {"owner_id": "t", "url": "https://x.example.com", "events": []},
        {"owner_id": "t", "url": "https://x.example.com", "events": ["genericContact::nope"]},
        {"owner_id": "t", "url": "https://x.example.com", "events": "*"},
    ):
        with pytest.raises(ConfigurationError):
            await hub.add_subscriber(**kwargs)
