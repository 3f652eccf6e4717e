"""Inbound hooks (us -> Kustomer): ``send_to_hook`` posts to ``/v1/hooks/web/{hash}`` with org.hooks."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from connectors import Connection, Connectors, Settings
from connectors.errors import (
    ConfigurationError,
    InsufficientPermissionsError,
    NotFoundError,
    ServerError,
    WebhookPayloadError,
)
from connectors.kustomer.sandbox import Sandbox
from connectors.kustomer.webhooks import HOOK_MAX_BYTES, send_to_hook
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

pytestmark = pytest.mark.anyio

REVIEW = {
    "reviewerEmail": "reviewer@example.com",
    "orderId": "#1205",
    "review": {"rating": 4, "title": "My New Favourite Product", "isRecommended": True},
    "product": {"productId": "1885452822491", "sku": "888888"},
}


@pytest.fixture
async def hook_url(api: httpx.AsyncClient) -> str:
    r = await api.post("/v1/hooks/web", json={"name": "Okendo reviews"})
    assert r.status_code == 201
    return str(r.json()["data"]["attributes"]["url"])


async def test_posts_like_the_okendo_integration(conn: Connection, wsb: Sandbox, hook_url: str) -> None:
    result = await send_to_hook(conn, hook_url, REVIEW)
    assert result.status_code == 200 and result.attempts == 1
    (transaction,) = wsb.state.hook_transactions
    assert result.transaction_id == transaction["id"]
    assert transaction["attributes"]["data"] == REVIEW
    assert result.transaction["relationships"]["hook"]["data"]["type"] == "web_hook"
    assert result.size == len(json.dumps(REVIEW, separators=(",", ":")).encode())
    assert result.to_dict()["transactionId"] == transaction["id"]
    # The path alone, the hash alone and the connection's webhooks facade work too.
    path = hook_url.removeprefix(wsb.base_url)
    assert (await send_to_hook(conn, path, {"n": 2})).status_code == 200
    assert (await send_to_hook(conn, path.rsplit("/", 1)[1], {"n": 3})).status_code == 200
    assert (await conn.webhooks.send_to_hook(hook_url, {"n": 4})).status_code == 200
    assert [t["attributes"]["data"] for t in wsb.state.hook_transactions][1:] == [{"n": 2}, {"n": 3}, {"n": 4}]


async def test_xml_and_form_bodies(conn: Connection, wsb: Sandbox, hook_url: str) -> None:
    await send_to_hook(conn, hook_url, b"<review><rating>5</rating></review>", content_type="application/xml")
    await send_to_hook(conn, hook_url, "a=1&b=2", content_type="application/x-www-form-urlencoded")
    assert [t["attributes"]["data"] for t in wsb.state.hook_transactions] == [
        {"review": {"rating": "5"}},
        {"a": "1", "b": "2"},
    ]


async def test_size_is_checked_before_sending(conn: Connection, wsb: Sandbox, hook_url: str) -> None:
    big = {"blob": "x" * HOOK_MAX_BYTES}
    with pytest.raises(WebhookPayloadError) as exc:
        await send_to_hook(conn, hook_url, big)
    assert exc.value.reason == "too_large" and str(HOOK_MAX_BYTES) in str(exc.value)
    with pytest.raises(WebhookPayloadError) as exc:
        await send_to_hook(conn, hook_url, {"x": object()})
    assert exc.value.reason == "not_json"
    assert wsb.state.hook_transactions == []
    # Kustomer's own limit answers 413 when ours is raised.
    from connectors.errors import PayloadTooLargeError

    with pytest.raises(PayloadTooLargeError):
        await send_to_hook(conn, hook_url, big, max_bytes=10 * HOOK_MAX_BYTES)


async def test_the_credential_never_leaves_the_kustomer_host(conn: Connection, wsb: Sandbox, hook_url: str) -> None:
    hash_ = hook_url.rsplit("/", 1)[1]
    for bad in (
        f"https://evil.example.com/v1/hooks/web/{hash_}",
        f"{wsb.base_url}/v1/customers",
        f"{wsb.base_url}/v1/hooks/web/{hash_}?x=1",
        f"{wsb.base_url}/v1/hooks/web/../customers",
        "https://user@api.kustomerapp.com/v1/hooks/web/abc",
        "",
        "/v1/hooks/form/abc",
    ):
        with pytest.raises(ConfigurationError):
            await send_to_hook(conn, bad, {})
    assert wsb.state.hook_transactions == []
    with pytest.raises(NotFoundError):
        await send_to_hook(conn, f"{wsb.base_url}/v1/hooks/web/{'0' * 40}", {})


async def test_the_org_hooks_role_is_required(whub: Connectors, wsb: Sandbox, hook_url: str) -> None:
    key = wsb.mint_api_key(roles=["org.permission.customer.read"], name="no hooks")
    conn = await whub.connect("kustomer", "tenant-nohooks", api_key=key, base_url=wsb.base_url)
    with pytest.raises(InsufficientPermissionsError) as exc:
        await send_to_hook(conn, hook_url, REVIEW)
    assert exc.value.missing_roles == ("org.hooks",)
    assert wsb.state.hook_transactions == []


class FailFirstHookPost(httpx.AsyncBaseTransport):
    """Answers the first hook post with a 503 from 'the load balancer'."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/v1/hooks/web/" in request.url.path and self.failed == 0:
            self.failed += 1
            return httpx.Response(503, text="<html>busy</html>")
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def flaky(wsb: Sandbox) -> AsyncIterator[tuple[Connection, FailFirstHookPost]]:
    transport = FailFirstHookPost(wsb.transport())
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    hub = Connectors(settings=Settings(), store=store, transport=transport)
    conn = await hub.connect("kustomer", "tenant-f", api_key=wsb.mint_api_key(), base_url=wsb.base_url)
    yield conn, transport
    await hub.aclose()
    store.close()


async def test_server_errors_are_retried_only_on_request(
    flaky: tuple[Connection, FailFirstHookPost], wsb: Sandbox, hook_url: str
) -> None:
    conn, transport = flaky
    with pytest.raises(ServerError):  # a processed post would run the workflow twice: not retried by default
        await send_to_hook(conn, hook_url, REVIEW)
    assert wsb.state.hook_transactions == []
    transport.failed = 0
    result = await send_to_hook(conn, hook_url, REVIEW, retry_server_errors=True)
    assert result.attempts == 2 and len(wsb.state.hook_transactions) == 1


async def test_with_a_bare_client(wsb: Sandbox, hook_url: str) -> None:
    from connectors.kustomer.client import KustomerClient
    from connectors.runtime.auth import ApiKeyAuth

    async with KustomerClient(
        auth=ApiKeyAuth(wsb.mint_api_key(roles=["org.hooks"])), base_url=wsb.base_url, transport=wsb.transport()
    ) as client:
        result = await send_to_hook(client, hook_url, {"direct": True})
    assert result.transaction["attributes"]["data"] == {"direct": True}
