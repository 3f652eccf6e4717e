"""Fixtures of the webhook tests: a sandbox that delivers to a receiver calling ``hub.webhooks.handle``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors import Connection, Connectors, Settings
from connectors.errors import WebhookPayloadError, WebhookSignatureError
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime.store import ConnectionStore
from unified_models import Event

RECEIVE_URL = "https://app.example.com/webhooks/kustomer"
FAST = Settings(kustomer={"rate_limit": 100_000, "search_limit": 100_000})


def sandbox_settings(**overrides: Any) -> SandboxSettings:
    base: dict[str, Any] = {
        "seed": 7,
        "customers": 12,
        "companies": 4,
        "users": 3,
        "teams": 2,
        "conversations_per_customer": 0.5,
        "messages_per_conversation": 1.0,
        "orders_per_customer": 0.0,
        "rate_limit_per_minute": 100_000,
        "search_limit_per_minute": 100_000,
        "webhook_retry_base_seconds": 0.01,
        "company_delete_supported": True,
    }
    base.update(overrides)
    return SandboxSettings(**base)


@dataclass
class Receiver:
    """The host app's ``POST /webhooks/kustomer``: hands deliveries to ``hub.webhooks.handle``."""

    hub: Connectors | None = None
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        assert self.hub is not None
        body = await request.body()
        try:
            result = await self.hub.webhooks.handle(body, request.headers)
        except WebhookSignatureError as exc:
            self.statuses.append(401)
            self.errors.append(exc.reason)
            return JSONResponse(exc.to_dict(), status_code=401)
        except WebhookPayloadError as exc:
            self.statuses.append(400)
            self.errors.append(exc.reason)
            return JSONResponse(exc.to_dict(), status_code=400)
        self.statuses.append(200)
        return JSONResponse({k: v for k, v in result.to_dict().items() if k != "events"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhooks/kustomer", self.endpoint, methods=["POST"])])


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def wsb(receiver: Receiver) -> Sandbox:
    """A small sandbox whose outbound webhooks are delivered in-process to ``receiver``."""
    return Sandbox(sandbox_settings(), webhook_transport=httpx.ASGITransport(app=receiver.app()))


@pytest.fixture
async def whub(wsb: Sandbox, memory_store: ConnectionStore, receiver: Receiver) -> AsyncIterator[Connectors]:
    hub = Connectors(settings=FAST, store=memory_store, transport=wsb.transport())
    receiver.hub = hub
    hub.webhooks.configure(backoff_base=0.01, lock_wait=5.0)
    yield hub
    await hub.aclose()


@pytest.fixture
async def conn(whub: Connectors, wsb: Sandbox) -> Connection:
    return await whub.connect("kustomer", "tenant-1", api_key=wsb.mint_api_key(name="t1"), base_url=wsb.base_url)


@pytest.fixture
async def conn2(whub: Connectors, wsb: Sandbox) -> Connection:
    """A second owner on the same Kustomer org."""
    return await whub.connect("kustomer", "tenant-2", api_key=wsb.mint_api_key(name="t2"), base_url=wsb.base_url)


@pytest.fixture
def events(whub: Connectors) -> list[Event]:
    """Every event the hub dispatches to in-process handlers."""
    seen: list[Event] = []
    whub.webhooks.on("*")(seen.append)
    return seen


@pytest.fixture
async def api(wsb: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """A raw client on the sandbox with every role (to change data behind the connector's back)."""
    async with httpx.AsyncClient(
        transport=wsb.transport(),
        base_url=wsb.base_url,
        headers={"Authorization": f"Bearer {wsb.mint_api_key(name='raw')}"},
    ) as client:
        yield client


def names(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, e.id) for e in events]


def table_dump(store: ConnectionStore) -> str:
    """Every row of every table, as text (to look for secrets in clear)."""
    from sqlalchemy import MetaData, select

    meta = MetaData()
    meta.reflect(store.engine)
    chunks: list[str] = []
    with store.engine.connect() as c:
        for table in meta.sorted_tables:
            for row in c.execute(select(table)).all():
                chunks.append(json.dumps([str(v) for v in row]))
    return "\n".join(chunks)
