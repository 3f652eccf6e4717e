"""Org-wide budget: headers on every /v1 response, 429, reset styles, shared by all tokens."""

from __future__ import annotations

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox

from .conftest import START, FakeClock, first_error, make_client

pytestmark = pytest.mark.anyio


async def test_headers_and_429_epoch_style(client: httpx.AsyncClient, sb: Sandbox, clock: FakeClock) -> None:
    sb.settings.rate_limit_per_minute = 3
    sb.settings.rate_window_seconds = 10
    clock.now = START + 2.5
    remaining = []
    for _ in range(3):
        r = await client.get("/v1/users/current")
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "3"
        assert r.headers["x-ratelimit-reset"] == str(int(START + 10))
        remaining.append(int(r.headers["x-ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    r = await client.get("/v1/users/current")
    assert r.status_code == 429
    assert first_error(r)["code"] == "too_many_requests"
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert r.headers["x-ratelimit-reset"] == str(int(START + 10))
    assert sb.state.counters["rate_limited"] == 1
    other = sb.mint_api_key(name="other key")  # shared by every token of the org
    async with make_client(sb, other) as c2:
        assert (await c2.get("/v1/users/current")).status_code == 429
    clock.now = START + 10
    r = await client.get("/v1/users/current")
    assert r.status_code == 200
    assert r.headers["x-ratelimit-remaining"] == "2"
    assert r.headers["x-ratelimit-reset"] == str(int(START + 20))


async def test_delay_style(client: httpx.AsyncClient, sb: Sandbox, clock: FakeClock) -> None:
    sb.settings.ratelimit_reset_style = "delay"
    sb.settings.rate_limit_per_minute = 1
    sb.settings.rate_window_seconds = 60
    clock.now = START + 15.2
    r = await client.get("/v1/users/current")
    assert r.headers["x-ratelimit-reset"] == "45"
    r = await client.get("/v1/users/current")
    assert r.status_code == 429
    assert r.headers["x-ratelimit-reset"] == "45"
    clock.now = START + 59.5
    assert (await client.get("/v1/users/current")).headers["x-ratelimit-reset"] == "1"


async def test_admin_and_oauth_routes_are_not_limited(client: httpx.AsyncClient, sb: Sandbox) -> None:
    sb.settings.rate_limit_per_minute = 1
    await client.get("/v1/users/current")
    assert (await client.get("/v1/users/current")).status_code == 429
    r = await client.get("/sandbox")
    assert r.status_code == 200
    assert "x-ratelimit-limit" not in r.headers
    assert "x-request-id" in r.headers
    sb.settings.rate_limit_enabled = False
    r = await client.get("/v1/users/current")
    assert r.status_code == 200
    assert "x-ratelimit-limit" not in r.headers
