"""Webhook routes against the webhooks contract (a faithful fake), and the SSE stream driven over ASGI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from connectors import Connection, Connectors

from .conftest import bearer, operator
from .fakes import FakeConnectionWebhooks, FakeWebhookHub, event

pytestmark = pytest.mark.anyio

A = operator("tenant-a")


async def test_receiver(client: httpx.AsyncClient, fake: FakeWebhookHub) -> None:
    r = await client.post(
        "/webhooks/kustomer", content=b'{"id": "e1"}', headers={"X-Kustomer-Webhook-Signature": "good"}
    )
    assert r.status_code == 200
    assert r.json() == {"object": "delivery", "accepted": True, "duplicate": False, "stale": False, "events": 0}
    body, headers, connector_id = fake.deliveries[0]
    assert body == b'{"id": "e1"}' and connector_id == "kustomer"
    assert headers["x-kustomer-webhook-signature"] == "good"
    r = await client.post(
        "/webhooks/kustomer", content=b'{"id": "e1"}', headers={"X-Kustomer-Webhook-Signature": "bad"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "webhook_signature"
    r = await client.post("/webhooks/kustomer", content=b"garbage", headers={"X-Kustomer-Webhook-Signature": "good"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_payload"


async def test_subscribers(client: httpx.AsyncClient, fake: FakeWebhookHub, mint: Callable[..., Any]) -> None:
    r = await client.post(
        "/webhooks/subscribers", json={"url": "https://hooks.example/a", "events": ["genericContact::*"]}, headers=A
    )
    assert r.status_code == 201
    created = r.json()
    assert created["object"] == "webhookSubscriber" and created["ownerId"] == "tenant-a"
    assert len(created["secret"]) >= 16
    r = await client.get("/webhooks/subscribers", headers=A)
    assert [s["id"] for s in r.json()["data"]] == [created["id"]]
    assert "secret" not in r.json()["data"][0]
    for bad, message in (
        ({"url": "http://hooks.example/a", "events": ["*"]}, "https"),
        ({"url": "ftp://hooks.example/a", "events": ["*"]}, "https"),
        ({"url": "https://u:p@hooks.example/a", "events": ["*"]}, "credentials"),
        ({"url": "https://hooks.example/a", "events": ["genericContact::exploded"]}, "expected"),
        ({"url": "https://hooks.example/a", "events": []}, ""),
    ):
        r = await client.post("/webhooks/subscribers", json=bad, headers=A)
        assert r.status_code == 422, bad
        assert message in r.json()["error"]["message"]
    narrow = await mint("tenant-a", ["genericCompany::list"])
    r = await client.post(
        "/webhooks/subscribers",
        json={"url": "https://h.example", "events": ["genericContact::created"]},
        headers=bearer(narrow),
    )
    assert r.status_code == 403
    r = await client.post(
        "/webhooks/subscribers",
        json={"url": "https://h.example", "events": ["genericCompany::created"]},
        headers=bearer(narrow),
    )
    assert r.status_code == 201
    r = await client.delete(f"/webhooks/subscribers/{created['id']}", headers=A)
    assert r.json() == {"object": "webhookSubscriber", "id": created["id"], "deleted": True}
    assert (await client.delete(f"/webhooks/subscribers/{created['id']}", headers=A)).status_code == 404


async def test_subscriptions(client: httpx.AsyncClient, fake: FakeWebhookHub, conn_a: Connection) -> None:
    r = await client.post(
        "/webhooks/subscriptions", json={"events": ["genericContact::created", "genericCompany::updated"]}, headers=A
    )
    assert r.status_code == 201
    assert [s["event"] for s in r.json()["data"]] == ["genericContact::created", "genericCompany::updated"]
    assert FakeConnectionWebhooks.urls[conn_a.id] == "http://testserver/webhooks/kustomer"
    r = await client.get("/webhooks/subscriptions", headers=A)
    assert len(r.json()["data"]) == 2 and r.json()["data"][0]["native"] is True
    r = await client.post("/webhooks/subscriptions", json={"events": ["genericContact::*"]}, headers=A)
    assert r.status_code == 422
    r = await client.delete("/webhooks/subscriptions", params={"events": "genericCompany::updated"}, headers=A)
    assert r.json() == {"object": "subscriptions", "removed": 1}
    r = await client.delete("/webhooks/subscriptions", headers=A)
    assert r.json()["removed"] == 1


class SSEClient:
    """Drives the ASGI app directly so streamed chunks arrive one by one (httpx's ASGI transport buffers)."""

    def __init__(self, app: FastAPI, path: str, headers: dict[str, str]) -> None:
        self.app = app
        raw_path, _, query = path.partition("?")
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": raw_path,
            "raw_path": raw_path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in {**headers, "host": "testserver"}.items()],
            "client": ("203.0.113.7", 1),
            "server": ("testserver", 80),
            "state": {},
        }
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.start: dict[str, Any] = {}
        self.disconnect = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SSEClient:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.start = message
            elif message["type"] == "http.response.body" and message.get("body"):
                self.chunks.put_nowait(message["body"])

        self.task = asyncio.create_task(self.app(self.scope, receive, send))
        return self

    async def next_chunk(self) -> bytes:
        return await asyncio.wait_for(self.chunks.get(), timeout=5)

    async def __aexit__(self, *exc: object) -> None:
        self.disconnect.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=5)


def parse_sse(chunk: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in chunk.decode().strip().splitlines():
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


async def test_sse_stream_delivers_only_the_owners_events(app: FastAPI, fake: FakeWebhookHub) -> None:
    async with SSEClient(app, "/events?events=genericContact::*", A) as sse:
        assert (await sse.next_chunk()).startswith(b"retry: 3000")
        assert sse.start["status"] == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in sse.start["headers"]
        assert fake.streams[0].owner_id == "tenant-a" and fake.streams[0].patterns == ("genericContact::*",)
        fake.publish(event("tenant-b"))  # another owner: never delivered
        fake.publish(event("tenant-a", "genericCompany"))  # another pattern: never delivered
        mine = event("tenant-a")
        fake.publish(mine)
        message = parse_sse(await sse.next_chunk())
        assert message["event"] == "genericContact::updated"
        assert message["id"] == mine.idempotency_key
        data = json.loads(message["data"])
        assert (
            data["ownerId"] == "tenant-a"
            and data["object"] == "event"
            and data["idempotencyKey"] == mine.idempotency_key
        )
        assert sse.chunks.empty()
    assert fake.closed_streams == 1 and fake.streams == []


async def test_sse_heartbeat_and_session_filter(
    server_hub: Connectors, fake: FakeWebhookHub, mint: Callable[..., Any]
) -> None:
    from connectors.server import ServerConfig, create_app

    from .conftest import OPERATOR_KEY

    app = create_app(
        hub=server_hub, operator_key=OPERATOR_KEY, config=ServerConfig(sse_heartbeat_seconds=0.05, poll_interval=0)
    )
    async with app.router.lifespan_context(app):
        token = app.state.server.sessions.mint("tenant-a", ttl=60, operations=["genericCompany::list"])[0]
        async with SSEClient(app, "/events", bearer(token)) as sse:
            await sse.next_chunk()
            assert await sse.next_chunk() == b": keep-alive\n\n"
            fake.publish(event("tenant-a", "genericContact"))  # the session cannot read contacts
            fake.publish(event("tenant-a", "genericCompany"))
            chunk = await sse.next_chunk()
            while chunk == b": keep-alive\n\n":
                chunk = await sse.next_chunk()
            assert parse_sse(chunk)["event"] == "genericCompany::updated"


async def test_sse_validation(client: httpx.AsyncClient, fake: FakeWebhookHub) -> None:
    r = await client.get("/events", params={"events": "genericContact::boom"}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "query.events[0]"
    assert (await client.get("/events")).status_code == 401
