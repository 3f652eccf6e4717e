"""``connection.proxy``: authenticated passthrough to the connection's Kustomer host, and its refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from connectors import Connection, Connectors, Settings
from connectors.errors import APIConnectionError, NeedsReauthError, ProxyRefusedError
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime.proxy import build_proxy_request, check_proxy_path
from connectors.runtime.store import ConnectionStore

pytestmark = pytest.mark.anyio


class Recorder(httpx.AsyncBaseTransport):
    """Forwards to the sandbox, remembering every request; ``canned`` answers some paths itself."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.canned: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path in self.canned:
            return self.canned[request.url.path](request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def recorder(sandbox: Sandbox) -> Recorder:
    return Recorder(sandbox.transport())


@pytest.fixture
async def proxied(sandbox: Sandbox, memory_store: ConnectionStore, recorder: Recorder) -> AsyncIterator[Connection]:
    async with Connectors(store=memory_store, transport=recorder, settings=Settings()) as hub:
        conn = await hub.connect("kustomer", "t1", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
        recorder.requests.clear()
        yield conn


async def test_get_passthrough(proxied: Connection, recorder: Recorder, sandbox: Sandbox) -> None:
    response = await proxied.proxy(
        "get",
        "/v1/customers",
        params={"pageSize": 2, "page": 1},
        headers={"X-Trace": "t-1", "Authorization": "Bearer stolen", "Cookie": "a=b", "Host": "evil.example.com"},
    )
    assert response.status_code == 200
    body = response.json()
    assert len(body["data"]) == 2 and body["data"][0]["type"] == "customer"
    assert "x-ratelimit-limit" in response.headers and "x-request-id" in response.headers
    sent = recorder.requests[-1]
    assert sent.url.host == "sandbox.kustomer.test" and sent.url.path == "/v1/customers"
    assert dict(sent.url.params) == {"pageSize": "2", "page": "1"}
    assert sent.headers["x-trace"] == "t-1"
    assert sent.headers["authorization"] != "Bearer stolen"  # the connection's credential, always
    assert "cookie" not in sent.headers and sent.headers["host"] == "sandbox.kustomer.test"


async def test_writes_and_statuses_pass_through(proxied: Connection, recorder: Recorder, sandbox: Sandbox) -> None:
    created = await proxied.proxy("POST", "/v1/customers", json={"name": "Via Proxy"})
    assert created.status_code == 201
    customer_id = created.json()["data"]["id"]
    patched = await proxied.proxy("PATCH", f"/v1/customers/{customer_id}", json={"name": "Patched"})
    assert patched.json()["data"]["attributes"]["name"] == "Patched"
    missing = await proxied.proxy("GET", "/v1/customers/000000000000000000000000")
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "not_found"  # returned, not raised
    bad = await proxied.proxy(
        "POST", "/v1/customers", content=b'{"bogus": 1}', headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    deleted = await proxied.proxy("DELETE", f"/v1/customers/{customer_id}")
    assert deleted.status_code == 204
    head = await proxied.proxy("HEAD", "/v1/users")
    assert head.status_code in (200, 405)


async def test_path_without_leading_slash_and_query_in_path(proxied: Connection, recorder: Recorder) -> None:
    response = await proxied.proxy("GET", "v1/users?pageSize=1", params={"page": 2})
    assert response.status_code == 200
    url = recorder.requests[-1].url
    assert url.path == "/v1/users" and dict(url.params) == {"pageSize": "1", "page": "2"}


async def test_redirects_are_returned_not_followed(proxied: Connection, recorder: Recorder) -> None:
    recorder.canned["/v1/moved"] = lambda request: httpx.Response(
        302, headers={"Location": "https://evil.example.com/x"}
    )
    response = await proxied.proxy("GET", "/v1/moved")
    assert response.status_code == 302 and response.headers["location"] == "https://evil.example.com/x"
    assert [r.url.host for r in recorder.requests] == ["sandbox.kustomer.test"]


async def test_a_403_is_returned_and_no_role_is_needed_to_proxy(
    sandbox: Sandbox, memory_store: ConnectionStore
) -> None:
    async with Connectors(store=memory_store, transport=sandbox.transport(), settings=Settings()) as hub:
        key = sandbox.mint_api_key(roles=["org.permission.user.read"])
        conn = await hub.connect("kustomer", "t1", api_key=key, base_url=sandbox.base_url)
        assert conn.info.operations and "proxy" in conn.info.operations
        denied = await conn.proxy("GET", "/v1/customers")
        assert denied.status_code == 403
        assert (await conn.proxy("GET", "/v1/users")).status_code == 200


REFUSED = [
    ("https://evil.example.com/v1/customers", "absolute URLs"),
    ("http://sandbox.kustomer.test/v1/customers", "absolute URLs"),
    ("//evil.example.com/v1/customers", "'//'"),
    ("///evil.example.com", "'//'"),
    ("http:/v1/customers", "absolute URLs"),
    ("javascript:alert(1)", "absolute URLs"),
    ("/v1/../sandbox/reset", "dot segments"),
    ("/v1/customers/..", "dot segments"),
    ("/v1/./customers", "dot segments"),
    ("/v1/%2e%2e/sandbox", "encoded"),
    ("/v1/%2E%2E/sandbox", "encoded"),
    ("/v1/customers%2f..%2fsandbox", "encoded"),
    ("/v1/%252e%252e/x", "encoded"),
    ("/%2f%2fevil.example.com", "encoded"),
    ("/v1/customers%5c..", "encoded"),
    ("/v1/a\\..\\b", "backslash"),
    ("/v1/customers@evil.example.com", "'@'"),
    ("/v1/x y", "whitespace"),
    ("/v1/x\r\nHost: evil", "control"),
    ("/v1/x\x00", "control"),
    ("/v1/customers#frag", "fragment"),
    ("", "empty"),
]


@pytest.mark.parametrize(("path", "why"), REFUSED)
async def test_refusals_send_nothing(proxied: Connection, recorder: Recorder, path: str, why: str) -> None:
    with pytest.raises(ProxyRefusedError, match=why):
        await proxied.proxy("GET", path)
    assert recorder.requests == []


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "get\r\nx"])
async def test_methods_outside_the_allowed_set_are_refused(
    proxied: Connection, recorder: Recorder, method: str
) -> None:
    with pytest.raises(ProxyRefusedError, match="not allowed"):
        await proxied.proxy(method, "/v1/customers")
    assert recorder.requests == []


def test_built_url_stays_under_the_base_path() -> None:
    client = httpx.AsyncClient(base_url="https://gateway.example.com/kustomer")
    request = build_proxy_request(client, "GET", "/v1/customers")
    assert str(request.url) == "https://gateway.example.com/kustomer/v1/customers"
    assert check_proxy_path("v1/x?next=http://a.b/c") == "/v1/x?next=http://a.b/c"  # a URL in the query is data


async def test_proxy_requests_share_the_org_budget(memory_store: ConnectionStore) -> None:
    # 10 requests per 0.5 s window, and 24 proxied requests: more than two windows' worth, so only pacing
    # against the org budget avoids 429s. The window is compressed, so the headroom is large enough to absorb
    # scheduling jitter on a loaded machine (see the ratelimit module docstring: tolerance ~ headroom*window/2).
    sb = Sandbox(
        SandboxSettings(customers=4, companies=1, users=2, teams=0, rate_limit_per_minute=10, rate_window_seconds=0.5)
    )
    settings = Settings(kustomer={"rate_limit": 10, "rate_window": 0.5}, rate_headroom=0.4)
    async with Connectors(store=memory_store, transport=sb.transport(), settings=settings) as hub:
        conn = await hub.connect("kustomer", "t1", api_key=sb.mint_api_key(), base_url=sb.base_url)
        for _ in range(24):
            assert (await conn.proxy("GET", "/v1/users")).status_code == 200
    assert sb.state.counters["rate_limited"] == 0


async def test_transport_errors_are_typed(memory_store: ConnectionStore) -> None:
    sb = Sandbox(SandboxSettings(customers=2, companies=1, users=2, teams=0))
    async with Connectors(store=memory_store, transport=sb.transport(), settings=Settings()) as hub:
        conn = await hub.connect("kustomer", "t1", api_key=sb.mint_api_key(), base_url=sb.base_url)
        sb.settings.drop_connection_rate = 1.0
        with pytest.raises(APIConnectionError) as caught:  # a POST is not retried after a dropped connection
            await conn.proxy("POST", "/v1/customers", json={"name": "x"}, params={"token": "not-in-error"})
    assert caught.value.url == f"{sb.base_url}/v1/customers"
    assert "not-in-error" not in str(caught.value)


async def test_proxy_needs_an_active_connection(
    clocked_connect: Callable[..., Any], clocked_sandbox: Sandbox, clock: Any
) -> None:
    conn = await clocked_connect()
    assert (await conn.proxy("GET", "/v1/users/current")).status_code == 200
    for grant in clocked_sandbox.state.oauth_grants.values():
        clocked_sandbox.oauth.revoke_grant(grant, "uninstalled")
    clock.advance(3600)
    with pytest.raises(NeedsReauthError):
        await conn.proxy("GET", "/v1/users/current")
    with pytest.raises(NeedsReauthError):
        await conn.proxy("GET", "/v1/users/current")


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/sandbox/keys", "/oauth/token", "/healthz", "/v1x/customers", "/"])
async def test_proxy_only_reaches_the_kustomer_api_paths(connection: Any, sandbox: Any, path: str) -> None:
    from connectors.errors import ProxyRefusedError

    before = int(sandbox.state.counters.get("requests", 0))
    with pytest.raises(ProxyRefusedError, match="only reaches the provider API"):
        await connection.proxy("POST", path)
    assert int(sandbox.state.counters.get("requests", 0)) == before
