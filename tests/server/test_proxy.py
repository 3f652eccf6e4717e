"""``ANY /proxy/{path}``: passthrough with the connection's auth, the same refusals as ``connection.proxy``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from connectors import Connection, Connectors
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.store import ConnectionStore
from connectors.server import create_app
from connectors.settings import Settings

from .conftest import OPERATOR_KEY, bearer, make_client, operator

pytestmark = pytest.mark.anyio

A = operator("tenant-a")


class Recording(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def recorded(
    sb: Sandbox, settings: Settings, store: ConnectionStore
) -> AsyncIterator[tuple[httpx.AsyncClient, Recording]]:
    transport = Recording(sb.transport())
    hub = Connectors(settings=settings, store=store, transport=transport)
    await hub.connect("kustomer", "tenant-a", api_key=sb.mint_api_key(name="a"), base_url=sb.base_url)
    app = create_app(hub=hub, operator_key=OPERATOR_KEY)
    async with app.router.lifespan_context(app), make_client(app) as client:
        yield client, transport
    await hub.aclose()


async def test_get_is_relayed_with_the_connection_auth(recorded: tuple[httpx.AsyncClient, Recording]) -> None:
    client, transport = recorded
    r = await client.get(
        "/proxy/v1/customers",
        params={"pageSize": 2, "ownerId": "tenant-a"},
        headers={**operator(), "X-Connectors-Connector": "kustomer", "Accept": "application/json", "Cookie": "a=b"},
    )
    assert r.status_code == 200
    assert len(r.json()["data"]) == 2
    assert r.headers["content-type"].startswith("application/json")
    assert "x-ratelimit-remaining" in r.headers
    upstream = transport.requests[-1]
    assert upstream.url.path == "/v1/customers"
    assert dict(upstream.url.params) == {"pageSize": "2"}
    assert upstream.headers["authorization"] != f"Bearer {OPERATOR_KEY}"
    assert upstream.headers["authorization"].startswith("Bearer ey")
    assert "cookie" not in upstream.headers
    assert not any(k.lower().startswith("x-connectors") for k in upstream.headers)


async def test_writes_errors_and_head(recorded: tuple[httpx.AsyncClient, Recording]) -> None:
    client, transport = recorded
    r = await client.post("/proxy/v1/customers", json={"name": "Proxy Person"}, headers=A)
    assert r.status_code == 201, r.text
    customer_id = r.json()["data"]["id"]
    assert transport.requests[-1].method == "POST"
    r = await client.patch(f"/proxy/v1/customers/{customer_id}", json={"name": "Renamed"}, headers=A)
    assert r.status_code == 200 and r.json()["data"]["attributes"]["name"] == "Renamed"
    r = await client.get("/proxy/v1/customers/000000000000000000000000", headers=A)
    assert r.status_code == 404
    assert r.json()["errors"][0]["status"] == "404"  # Kustomer's own error body, as it was
    # HEAD is passed on like any method (the sandbox, like many APIs, has no HEAD route: its 405 is relayed)
    r = await client.request("HEAD", "/proxy/v1/customers", headers=A)
    assert transport.requests[-1].method == "HEAD"
    assert r.status_code == 405 and r.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/proxy/v1/%2e%2e/sandbox/keys",
        "/proxy/v1/customers%2fx",
        "/proxy//evil.example/v1/customers",
        "/proxy/v1/%252e",
        "/proxy/https:/evil.example/",
        "/proxy/v1/a@evil.example",
    ],
)
async def test_refusals(recorded: tuple[httpx.AsyncClient, Recording], path: str) -> None:
    client, transport = recorded
    before = len(transport.requests)
    r = await client.get(path, headers=A)
    assert r.status_code == 400, path
    assert r.json()["error"]["code"] == "proxy_refused"
    assert len(transport.requests) == before


async def test_proxy_respects_session_operations(
    client: httpx.AsyncClient, conn_a: Connection, mint: Callable[..., Any]
) -> None:
    token = await mint("tenant-a", ["genericContact::list"])
    r = await client.get("/proxy/v1/customers", headers=bearer(token))
    assert r.status_code == 403 and r.json()["error"]["operation"] == "proxy"
    token = await mint("tenant-a", ["proxy"])
    r = await client.get("/proxy/v1/customers?pageSize=1", headers=bearer(token))
    assert r.status_code == 200
    r = await client.request("TRACE", "/proxy/v1/customers", headers=bearer(token))
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
