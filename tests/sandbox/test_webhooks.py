"""Outbound webhooks: subscriptions, events from every write path, signatures, retries, duplicates, order."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.kustomer.sandbox import Sandbox

from .conftest import FakeClock, error_text, make_client, small_settings

pytestmark = pytest.mark.anyio


@dataclass
class Receiver:
    """An ASGI webhook receiver that records deliveries and can fail the first ones."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    calls: int = 0

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            return Response(status_code=503)
        self.received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def wsb(receiver: Receiver, clock: FakeClock) -> Sandbox:
    return Sandbox(small_settings(), clock=clock, webhook_transport=httpx.ASGITransport(app=receiver.app()))


@pytest.fixture
async def wclient(wsb: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(wsb, wsb.mint_api_key()) as c:
        yield c


async def subscribe(c: httpx.AsyncClient, events: list[str], **extra: Any) -> dict[str, Any]:
    body = {"name": "sync", "url": "https://receiver.example.com/hook", "events": events, **extra}
    r = await c.post("/v1/outbound-webhooks", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def test_events_list_and_subscription_rules(wclient: httpx.AsyncClient, wsb: Sandbox) -> None:
    events = (await wclient.get("/v1/outbound-webhooks/events")).json()["events"]
    assert len(events) == 10
    assert "kustomer.customer.create" in events
    assert "kustomer.team.update" in events
    wsb.settings.tag_events_enabled = True
    events = (await wclient.get("/v1/outbound-webhooks/events")).json()["events"]
    assert "kustomer.tag.create" in events
    hook = await subscribe(wclient, ["kustomer.customer.create"], headers=[{"name": "X-Env", "value": "test"}])
    attrs = hook["attributes"]
    assert attrs["enabled"] is True
    assert len(attrs["token"]) == 64
    assert (await wclient.get(f"/v1/outbound-webhooks/{hook['id']}")).json()["data"]["attributes"]["token"] == attrs[
        "token"
    ]
    r = await wclient.put(f"/v1/outbound-webhooks/{hook['id']}", json={"enabled": False})
    assert r.json()["data"]["attributes"]["token"] == attrs["token"]
    for bad in (
        {"events": ["kustomer.widget.create"]},
        {"events": []},
        {"events": ["kustomer.customer.create"] * 13},
        {"url": "ftp://x.example.com"},
        {"name": "x" * 256},
    ):
        body = {"name": "bad", "url": "https://r.example.com", "events": ["kustomer.customer.create"], **bad}
        assert (await wclient.post("/v1/outbound-webhooks", json=body)).status_code == 400, bad
    wsb.settings.allow_http_webhooks = False
    r = await wclient.post(
        "/v1/outbound-webhooks",
        json={"name": "h", "url": "http://r.example.com", "events": ["kustomer.user.create"]},
    )
    assert r.status_code == 400
    assert "https" in error_text(r)
    for _ in range(4):
        await subscribe(wclient, ["kustomer.user.create"])
    r = await wclient.post(
        "/v1/outbound-webhooks",
        json={"name": "6th", "url": "https://r.example.com", "events": ["kustomer.user.create"]},
    )
    assert r.status_code == 400
    assert "at most 5" in error_text(r)
    assert len((await wclient.get("/v1/outbound-webhooks")).json()["data"]) == 5
    assert (await wclient.delete(f"/v1/outbound-webhooks/{hook['id']}")).status_code == 204


async def test_delivery_envelope_headers_and_signature(
    wclient: httpx.AsyncClient, wsb: Sandbox, receiver: Receiver
) -> None:
    hook = await subscribe(
        wclient,
        ["kustomer.customer.create", "kustomer.customer.update"],
        headers=[{"name": "X-Env", "value": "test"}],
    )
    token = hook["attributes"]["token"]
    created = (await wclient.post("/v1/customers", json={"name": "Hooked", "locale": "en_US"})).json()["data"]
    await wclient.patch(f"/v1/customers/{created['id']}", json={"name": "Hooked 2"})
    await wsb.drain_webhooks()
    assert len(receiver.received) == 2
    for headers, body in receiver.received:
        expected = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-kustomer-webhook-signature"] == expected
        assert headers["content-type"] == "application/json"
        assert headers["x-env"] == "test"
    create, update = receiver.events()
    assert receiver.received[0][0]["x-kustomer-webhook-event"] == "kustomer.customer.create"
    assert set(create) == {"id", "name", "org", "partition", "data", "changes"}
    assert create["name"] == "kustomer.customer.create"
    assert create["changes"] is None
    assert create["org"] == create["partition"] == wsb.org_id
    assert create["data"]["id"] == created["id"]
    assert create["data"]["links"]["self"] == f"/v1/customers/{created['id']}"
    assert update["name"] == "kustomer.customer.update"
    renamed = {"before": "Hooked", "after": "Hooked 2"}
    assert update["changes"] == {"attributes": {"name": renamed, "displayName": renamed}}
    assert update["data"]["attributes"]["rev"] == 2
    transactions = (await wclient.get(f"/v1/outbound-webhooks/{hook['id']}/transactions")).json()["data"]
    assert len(transactions) == 2
    assert all(t["attributes"]["success"] for t in transactions)


async def test_events_from_every_write_path(wclient: httpx.AsyncClient, wsb: Sandbox, receiver: Receiver) -> None:
    await subscribe(
        wclient,
        [
            "kustomer.customer.create",
            "kustomer.customer.update",
            "kustomer.conversation.create",
            "kustomer.conversation.update",
            "kustomer.message.create",
            "kustomer.user.create",
            "kustomer.team.update",
        ],
    )
    await wclient.post("/v1/customers/bulk", json=[{"name": "b1"}, {"name": "b2"}])
    await wsb.drain_bulk()
    customer = next(iter(wsb.state.customers)).id
    await wclient.put(f"/v1/customers/{customer}", params={"replace": "true"}, json={"name": "replaced"})
    await wclient.post(f"/v1/customers/{customer}/messages", json={"channel": "chat", "direction": "in", "app": "chat"})
    await wclient.post("/v1/users", json={"name": "U", "email": "u@example.com"})
    team = next(iter(wsb.state.teams)).id
    await wclient.post(f"/v1/teams/{team}/members", json={"members": [wsb.owner_id]})
    await wsb.drain_webhooks()
    names = [e["name"] for e in receiver.events()]
    assert names.count("kustomer.customer.create") == 2
    assert "kustomer.customer.update" in names
    assert names.count("kustomer.conversation.create") == 1  # implied by the conversation-less message
    assert "kustomer.message.create" in names
    assert "kustomer.conversation.update" in names
    assert "kustomer.user.create" in names
    assert "kustomer.team.update" in names
    conv_update = next(e for e in receiver.events() if e["name"] == "kustomer.conversation.update")
    assert conv_update["changes"]["attributes"]["messageCount"] == {"before": 0, "after": 1}


async def test_retries_with_backoff(wclient: httpx.AsyncClient, wsb: Sandbox, receiver: Receiver) -> None:
    receiver.fail_first = 2
    await subscribe(wclient, ["kustomer.customer.create"])
    await wclient.post("/v1/customers", json={"name": "retry"})
    await wsb.drain_webhooks()
    attempts = [(d.attempt, d.status_code) for d in wsb.state.webhook_deliveries]
    assert attempts == [(1, 503), (2, 503), (3, 204)]
    assert len(receiver.received) == 1


async def test_gives_up_and_can_disable(wclient: httpx.AsyncClient, wsb: Sandbox, receiver: Receiver) -> None:
    receiver.fail_first = 100
    wsb.settings.webhook_max_attempts = 2
    wsb.settings.webhook_disable_after_failures = 1
    hook = await subscribe(wclient, ["kustomer.customer.create"])
    await wclient.post("/v1/customers", json={"name": "fail"})
    await wsb.drain_webhooks()
    assert [d.status_code for d in wsb.state.webhook_deliveries] == [503, 503]
    assert wsb.state.outbound_webhooks.live[hook["id"]].attrs["enabled"] is False
    await wclient.post("/v1/customers", json={"name": "not sent"})
    await wsb.drain_webhooks()
    assert len(wsb.state.webhook_deliveries) == 2


async def test_connection_errors_are_retried(clock: FakeClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sb = Sandbox(small_settings(webhook_max_attempts=3), clock=clock, webhook_transport=httpx.MockTransport(refuse))
    async with make_client(sb, sb.mint_api_key()) as c:
        await subscribe(c, ["kustomer.customer.create"])
        await c.post("/v1/customers", json={"name": "x"})
        await sb.drain_webhooks()
    assert [d.error is not None for d in sb.state.webhook_deliveries] == [True, True, True]


async def test_duplicates_and_reordering(wclient: httpx.AsyncClient, wsb: Sandbox, receiver: Receiver) -> None:
    wsb.settings.webhook_duplicate_rate = 1.0
    await subscribe(wclient, ["kustomer.customer.create"])
    await wclient.post("/v1/customers", json={"name": "twice"})
    await wsb.drain_webhooks()
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == 2
    assert ids[0] == ids[1]
    assert [d.duplicate for d in wsb.state.webhook_deliveries] == [False, True]
    receiver.received.clear()
    wsb.settings.webhook_duplicate_rate = 0.0
    for i in range(12):
        await wclient.post("/v1/customers", json={"name": f"ordered {i}"})
    await wsb.drain_webhooks()
    in_order = [e["data"]["attributes"]["name"] for e in receiver.events()]
    assert in_order == [f"ordered {i}" for i in range(12)]
    receiver.received.clear()
    wsb.settings.webhook_reorder = True
    wsb.settings.webhook_reorder_max_delay_seconds = 0.02
    for i in range(12):
        await wclient.post("/v1/customers", json={"name": f"shuffled {i}"})
    await wsb.drain_webhooks()
    shuffled = [e["data"]["attributes"]["name"] for e in receiver.events()]
    assert sorted(shuffled) == sorted(f"shuffled {i}" for i in range(12))
    assert shuffled != [f"shuffled {i}" for i in range(12)]
