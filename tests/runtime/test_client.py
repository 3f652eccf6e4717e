"""``KustomerClient`` against the sandbox: hosts and regions, every error class, retries, 429 handling."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from connectors.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RegionMismatchError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
)
from connectors.kustomer.client import KustomerClient, error_from_response, lookup_path, resolve_base_url
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime.ratelimit import InProcessRateLimiter
from connectors.runtime.transport import EXT_ATTEMPTS, RetryPolicy

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=6, backoff_base=0.001, backoff_max=0.01, max_total_wait=10.0)


def small_sandbox(**settings: Any) -> Sandbox:
    return Sandbox(SandboxSettings(customers=6, companies=2, users=2, teams=1, **settings))


@pytest.fixture
async def client_for(sandbox: Sandbox) -> AsyncIterator[Callable[..., KustomerClient]]:
    """``client_for(sb=None, key=None, **kw)``: a client on a sandbox (the fixture's by default), closed after."""
    made: list[KustomerClient] = []

    def make(sb: Sandbox | None = None, *, key: str | None = None, **kwargs: Any) -> KustomerClient:
        sb = sb or sandbox
        kwargs.setdefault("retry_policy", FAST)
        token = key or sb.mint_api_key()
        client = KustomerClient(
            auth=_Bearer(token), base_url=kwargs.pop("base_url", sb.base_url), transport=sb.transport(), **kwargs
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _requests(sb: Sandbox, path: str | None = None) -> list[Any]:
    return [e for e in sb.state.request_log if path is None or e.path == path]


# -- hosts and regions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "https://api.kustomerapp.com"),
        ({"region": "us"}, "https://api.kustomerapp.com"),
        ({"region": "EU"}, "https://api.prod2.kustomerapp.com"),
        ({"region": "in"}, "https://api.prod4.kustomerapp.com"),
        ({"org": "acme"}, "https://acme.api.kustomerapp.com"),
        ({"org": "acme", "region": "eu"}, "https://acme.api.kustomerapp.com"),  # the subdomain routes itself
        ({"base_url": "http://127.0.0.1:8900/", "org": "acme"}, "http://127.0.0.1:8900"),
        ({"base_url": "https://proxy.example.com/kustomer/"}, "https://proxy.example.com/kustomer"),
    ],
)
def test_resolve_base_url(kwargs: dict[str, str], expected: str) -> None:
    assert resolve_base_url(**kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"region": "mars"}, "unknown Kustomer region 'mars'"),
        ({"org": "Acme Corp"}, "org must be a Kustomer org subdomain"),
        ({"org": "evil.com/x"}, "org must be a Kustomer org subdomain"),
        ({"base_url": "ftp://example.com"}, r"base_url must be an http\(s\) URL"),
        ({"base_url": "/relative"}, r"base_url must be an http\(s\) URL"),
    ],
)
def test_resolve_base_url_refuses_bad_values(kwargs: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        resolve_base_url(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "host"),
    [
        ({"region": "us"}, "api.kustomerapp.com"),
        ({"region": "eu"}, "api.prod2.kustomerapp.com"),
        ({"region": "in"}, "api.prod4.kustomerapp.com"),
        ({"org": "acme"}, "acme.api.kustomerapp.com"),
    ],
)
async def test_requests_go_to_the_selected_region(kwargs: dict[str, Any], host: str) -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"data": {"type": "user", "id": "u1", "attributes": {}}})

    async with KustomerClient(auth=_Bearer("k"), transport=httpx.MockTransport(handler), **kwargs) as client:
        await client.current_user()
    assert [(u.scheme, u.host, u.path) for u in seen] == [("https", host, "/v1/users/current")]


def test_lookup_path_encodes_the_value() -> None:
    assert lookup_path("customers", "email", "sam+x@example.com") == "/v1/customers/email=sam+x@example.com"
    assert lookup_path("customers", "externalId", "a/b?c#d%") == "/v1/customers/externalId=a%2Fb%3Fc%23d%25"


async def test_pod_mismatch_names_the_region_to_set(client_for: Callable[..., KustomerClient]) -> None:
    eu = small_sandbox(region="eu")
    us_key = eu.mint_api_key(region="us")
    client = client_for(eu, key=us_key)
    with pytest.raises(RegionMismatchError) as caught:
        await client.current_token()
    err = caught.value
    assert isinstance(err, AuthenticationError) and err.status_code == 401
    assert err.expected_region == "us"
    assert "set region='us'" in str(err) and "pod prod1" in str(err)
    assert err.request_id and err.request_id in str(err)
    # the key minted for the sandbox's own region works
    assert (await client_for(eu, key=eu.mint_api_key(region="eu")).current_token())["type"]


# -- error classes ----------------------------------------------------------------------------------------


async def test_jsonapi_error_body_becomes_a_typed_error(client_for: Callable[..., KustomerClient]) -> None:
    client = client_for()
    response = await client.send("POST", "/v1/customers", json_body={"name": "x", "bogus": 1})
    await response.aread()
    err = error_from_response(response)
    assert type(err) is BadRequestError
    assert (err.status_code, err.error_code) == (400, "bad_request")
    assert err.detail == '"bogus" is not allowed'
    assert err.request_id == response.headers["x-request-id"]
    assert err.method == "POST" and err.url is not None and err.url.endswith("/v1/customers")
    assert f"(request id {err.request_id})" in str(err)
    assert err.to_dict()["kustomerCode"] == "bad_request"
    with pytest.raises(BadRequestError):
        await client.json("POST", "/v1/customers", json_body={"name": "x", "bogus": 1})


async def test_simple_error_body_becomes_a_typed_error(client_for: Callable[..., KustomerClient]) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client_for().json("POST", "/v1/customers/search", json_body={"queryContext": "nope"}, search=True)
    assert caught.value.detail == "Unknown queryContext 'nope'"
    assert caught.value.error_code == "bad_request"
    assert caught.value.request_id


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"errors": [{"code": "bad_request", "message": "m1", "meta": {}}]}, "bad_request", "m1"),
        ({"errors": [{"status": "422", "code": "invalid", "title": "T", "detail": "D"}]}, "invalid", "D"),
        ({"errors": [{"status": "422", "code": "invalid", "title": "Only a title"}]}, "invalid", "Only a title"),
        ({"errors": {"code": "single", "message": "as object"}}, "single", "as object"),
        ({"error": "invalid_thing", "message": "top-level"}, "invalid_thing", "top-level"),
        ({"errorCode": "E42", "message": "singer style"}, "E42", "singer style"),
        ("<html>gateway</html>", None, None),
    ],
)
async def test_error_shapes(body: Any, code: str | None, detail: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(422, text=body, headers={"x-kustomer-request-id": "rid-1"})
        return httpx.Response(422, json=body, headers={"x-kustomer-request-id": "rid-1"})

    async with KustomerClient(auth=_Bearer("k"), transport=httpx.MockTransport(handler), base_url="http://k") as client:
        with pytest.raises(UnprocessableEntityError) as caught:
            await client.json("GET", "/v1/x")
    assert (caught.value.error_code, caught.value.detail, caught.value.request_id) == (code, detail, "rid-1")


async def test_every_status_class_from_the_sandbox(client_for: Callable[..., KustomerClient], sandbox: Sandbox) -> None:
    client = client_for()
    customer_id = next(iter(sandbox.state.customers)).id
    # 404
    with pytest.raises(NotFoundError) as nf:
        await client.json("GET", "/v1/customers/000000000000000000000000")
    assert nf.value.detail == "customer 000000000000000000000000 not found"
    # 409 (optimistic locking)
    with pytest.raises(ConflictError) as conflict:
        await client.json("PUT", f"/v1/customers/{customer_id}", json_body={"rev": 999, "name": "y"})
    assert "rev 999" in (conflict.value.detail or "")
    # 413
    with pytest.raises(PayloadTooLargeError):
        await client.json("POST", "/v1/customers", json_body={"name": "a" * 200_000})
    # 405 has no class of its own: the base class, with the status
    with pytest.raises(APIStatusError) as other:
        await client.json("DELETE", "/v1/companies/abc")
    assert type(other.value) is APIStatusError and other.value.status_code == 405
    # 403
    limited = client_for(key=sandbox.mint_api_key(roles=["org.permission.user.read"]))
    with pytest.raises(PermissionDeniedError) as denied:
        await limited.json("GET", "/v1/customers")
    assert "org.permission.customer.read" in (denied.value.detail or "")
    # 401 (revoked key)
    key = sandbox.mint_api_key()
    revoked = client_for(key=key)
    sandbox.revoke_token(key)
    with pytest.raises(AuthenticationError) as unauth:
        await revoked.current_token()
    assert not isinstance(unauth.value, RegionMismatchError)
    assert key not in str(unauth.value) and key not in repr(unauth.value.to_dict())


async def test_5xx_after_retries_is_a_server_error(client_for: Callable[..., KustomerClient]) -> None:
    sb = small_sandbox(fault_500_rate=1.0)
    client = client_for(sb, retry_policy=RetryPolicy(max_retries=2, backoff_base=0.001))
    with pytest.raises(ServerError) as caught:
        await client.json("GET", "/v1/customers")
    assert caught.value.status_code == 500
    assert len(_requests(sb, "/v1/customers")) == 3  # one try + two retries
    sb.settings.fault_500_rate = 0.0
    sb.settings.fault_502_rate = 1.0
    with pytest.raises(ServerError) as gateway:
        await client.json("GET", "/v1/customers")
    assert gateway.value.status_code == 502 and gateway.value.detail is None  # an HTML body from the "LB"
    assert isinstance(gateway.value.body, str) and "502" in gateway.value.body


async def test_dropped_connections_become_api_connection_errors(client_for: Callable[..., KustomerClient]) -> None:
    sb = small_sandbox(drop_connection_rate=1.0)
    with pytest.raises(APIConnectionError) as caught:
        await client_for(sb, retry_policy=RetryPolicy(max_retries=1, backoff_base=0.001)).json("GET", "/v1/users")
    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.method == "GET" and (caught.value.url or "").endswith("/v1/users")
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


async def test_timeouts_become_api_timeout_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    policy = RetryPolicy(max_retries=1, backoff_base=0.001)
    async with KustomerClient(
        auth=_Bearer("k"), transport=httpx.MockTransport(handler), base_url="http://k", retry_policy=policy
    ) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.json("GET", "/v1/users", params={"secret": "not-in-url"})
    assert caught.value.url == "http://k/v1/users"


async def test_bodies_that_are_not_json_are_response_validation_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/users/current":
            return httpx.Response(200, json={"data": ["not", "an", "object"]})
        return httpx.Response(200, text="<html>", headers={"content-type": "text/html"})

    async with KustomerClient(auth=_Bearer("k"), transport=httpx.MockTransport(handler), base_url="http://k") as client:
        with pytest.raises(ResponseValidationError, match="not JSON"):
            await client.json("GET", "/v1/customers")
        with pytest.raises(ResponseValidationError, match="expected a JSON:API object"):
            await client.current_user()
        assert await client.content("GET", "/v1/customers") == b"<html>"


# -- retries with fault injection -----------------------------------------------------------------------------


async def test_idempotent_requests_survive_injected_faults(client_for: Callable[..., KustomerClient]) -> None:
    sb = small_sandbox(seed=7, fault_502_rate=0.15, fault_503_rate=0.05, drop_connection_rate=0.05, fault_500_rate=0.05)
    client = client_for(sb)
    attempts = []
    for _ in range(40):
        response = await client.request("GET", "/v1/users", params={"pageSize": 1})
        assert response.status_code == 200
        attempts.append(response.extensions[EXT_ATTEMPTS])
    counters = sb.state.counters
    faults = sum(counters[f"faults.{kind}"] for kind in ("500", "502", "503", "drop"))
    assert faults > 5
    assert sum(a - 1 for a in attempts) == faults  # every fault was retried once, nothing else was
    assert max(attempts) > 1


async def test_writes_are_never_repeated_after_they_may_have_been_applied(
    client_for: Callable[..., KustomerClient],
) -> None:
    sb = small_sandbox(fault_after_write_rate=1.0)
    client = client_for(sb)
    before = len(sb.state.customers)
    with pytest.raises((ServerError, APIConnectionError)):
        await client.json("POST", "/v1/customers", json_body={"name": "Only Once"})
    assert len(sb.state.customers) == before + 1  # applied ...
    assert len(_requests(sb, "/v1/customers")) == 1  # ... and not sent again
    # a pre-effect fault on a POST is not retried either: Kustomer may not have said "not processed"
    sb.settings.fault_after_write_rate = 0.0
    sb.settings.fault_500_rate = 1.0
    with pytest.raises(ServerError):
        await client.json("POST", "/v1/customers", json_body={"name": "Never"})
    assert len(_requests(sb, "/v1/customers")) == 2
    # PUT is idempotent: the after-write fault is retried and the final answer is the stored record
    sb.settings.fault_500_rate = 0.0
    sb.settings.fault_after_write_rate = 0.5
    target = next(iter(sb.state.customers)).id
    body = await client.json("PUT", f"/v1/customers/{target}", json_body={"name": "Put Twice"})
    assert body["data"]["attributes"]["name"] == "Put Twice"


async def test_explicitly_idempotent_posts_are_retried(client_for: Callable[..., KustomerClient]) -> None:
    sb = small_sandbox(seed=3, fault_502_rate=0.5, fault_paths=r"^/v1/customers/search$")
    client = client_for(sb)
    for _ in range(6):
        body = await client.json(
            "POST", "/v1/customers/search", json_body={"queryContext": "customer"}, idempotent=True, search=True
        )
        assert isinstance(body["data"], list)
    assert sb.state.counters["faults.502"] > 0


# -- 429 handling, both x-ratelimit-reset semantics ------------------------------------------------------------


@pytest.mark.parametrize("style", ["epoch", "delay"])
async def test_429_waits_for_the_reset_and_succeeds(style: str, client_for: Callable[..., KustomerClient]) -> None:
    sb = small_sandbox(rate_limit_per_minute=4, rate_window_seconds=1.0, ratelimit_reset_style=style)
    client = client_for(sb, retry_policy=RetryPolicy(max_retries=3, backoff_base=0.01, max_total_wait=5.0))
    attempts = []
    for _ in range(8):
        response = await client.request("GET", "/v1/users")
        attempts.append(response.extensions[EXT_ATTEMPTS])
    assert sb.state.counters["rate_limited"] >= 1
    # each request was refused at most once: after a 429 the client waited until the window reset
    assert max(attempts) == 2
    refused = [e for e in sb.state.request_log if e.status == 429]
    for entry in refused:  # the retry of each refusal came in a later window
        later = [e for e in sb.state.request_log if e.at > entry.at and e.status == 200]
        assert later and int(later[0].at // 1.0) > int(entry.at // 1.0)


@pytest.mark.parametrize("style", ["epoch", "delay"])
async def test_429_headers_feed_the_limiter_so_no_429_at_all(
    style: str, client_for: Callable[..., KustomerClient]
) -> None:
    sb = small_sandbox(rate_limit_per_minute=4, rate_window_seconds=1.0, ratelimit_reset_style=style)
    client = client_for(sb, limiter=InProcessRateLimiter(), rate_window=1.0, rate_limit=1000)
    for _ in range(9):
        assert (await client.request("GET", "/v1/users")).status_code == 200
    assert sb.state.counters["rate_limited"] == 0


@pytest.mark.parametrize("style", ["epoch", "delay"])
async def test_429_past_the_wait_cap_raises_rate_limit_error(
    style: str, client_for: Callable[..., KustomerClient]
) -> None:
    sb = small_sandbox(burst_429_rate=1.0, burst_429_length=50, rate_window_seconds=30.0, ratelimit_reset_style=style)
    client = client_for(sb, retry_policy=RetryPolicy(max_retries=3, max_total_wait=1.0))
    before = time.time()
    with pytest.raises(RateLimitError) as caught:
        await client.json("GET", "/v1/users")
    err = caught.value
    assert err.status_code == 429 and err.retry_at is not None
    window_end = (sb.clock() // 30.0 + 1) * 30.0
    assert abs(err.retry_at - window_end) <= 1.5  # epoch read as epoch, delay read as a delay
    assert err.retry_at > before
    assert err.to_dict()["retryAt"] == err.retry_at
    assert json.dumps(err.to_dict())  # JSON-safe


async def test_the_org_budget_is_shared_by_every_client_of_the_org(sandbox: Sandbox) -> None:
    sb = small_sandbox(rate_limit_per_minute=6, rate_window_seconds=1.0)
    limiter = InProcessRateLimiter()
    clients = [
        KustomerClient(
            auth=_Bearer(sb.mint_api_key()),
            base_url=sb.base_url,
            transport=sb.transport(),
            limiter=limiter,
            budget_key=sb.org_id,
            rate_limit=6,
            rate_window=1.0,
        )
        for _ in range(2)
    ]
    try:
        for i in range(12):
            assert (await clients[i % 2].request("GET", "/v1/users")).status_code == 200
    finally:
        for client in clients:
            await client.aclose()
    assert sb.state.counters["rate_limited"] == 0
