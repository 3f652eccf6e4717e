"""Latency and fault injection (in process; tests/sandbox/test_http.py repeats the kinds over HTTP)."""

from __future__ import annotations

import time

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox

from .conftest import small_settings

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("setting", "status", "content_type"),
    [
        ("fault_500_rate", 500, "application/json"),
        ("fault_502_rate", 502, "text/html"),
        ("fault_503_rate", 503, "text/html"),
    ],
)
async def test_error_faults_happen_before_any_effect(
    client: httpx.AsyncClient, sb: Sandbox, setting: str, status: int, content_type: str
) -> None:
    before = len(sb.state.customers)
    setattr(sb.settings, setting, 1.0)
    r = await client.post("/v1/customers", json={"name": "never stored"})
    assert r.status_code == status
    assert r.headers["content-type"].startswith(content_type)
    assert "x-request-id" in r.headers
    assert len(sb.state.customers) == before
    assert sb.state.counters[f"faults.{status}"] == 1
    assert (await client.get("/sandbox/settings")).status_code == 200  # admin routes are never faulted


async def test_dropped_connection(client: httpx.AsyncClient, sb: Sandbox) -> None:
    sb.settings.drop_connection_rate = 1.0
    before = len(sb.state.customers)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/customers", json={"name": "never stored"})
    assert len(sb.state.customers) == before


async def test_burst_of_429s(client: httpx.AsyncClient, sb: Sandbox) -> None:
    sb.settings.burst_429_rate = 1.0
    sb.settings.burst_429_length = 3
    r = await client.get("/v1/users/current")
    assert r.status_code == 429
    assert r.headers["x-ratelimit-remaining"] == "0"
    sb.settings.burst_429_rate = 0.0
    assert [(await client.get("/v1/users/current")).status_code for _ in range(3)] == [429, 429, 200]


async def test_after_write_faults_apply_the_write(client: httpx.AsyncClient, sb: Sandbox) -> None:
    sb.settings.fault_after_write_rate = 1.0
    before = len(sb.state.customers)
    outcomes = set()
    for i in range(8):
        try:
            r = await client.post("/v1/customers", json={"name": f"applied {i}"})
            outcomes.add(r.status_code)
        except httpx.RemoteProtocolError:
            outcomes.add("dropped")
    assert outcomes == {502, "dropped"}
    assert len(sb.state.customers) == before + 8
    assert (await client.get("/v1/customers", params={"pageSize": 1})).status_code == 200  # reads unaffected
    r = await client.post("/v1/customers", json={"bogus": 1})
    assert r.status_code == 400  # failed writes are answered normally


async def test_fault_paths_and_slow_responses(client: httpx.AsyncClient, sb: Sandbox) -> None:
    sb.settings.fault_502_rate = 1.0
    sb.settings.fault_paths = r"^/v1/companies"
    assert (await client.get("/v1/customers", params={"pageSize": 1})).status_code == 200
    assert (await client.get("/v1/companies")).status_code == 502
    sb.settings.fault_502_rate = 0.0
    sb.settings.slow_response_rate = 1.0
    sb.settings.slow_response_ms = 60
    start = time.perf_counter()
    assert (await client.get("/v1/companies")).status_code == 200
    assert time.perf_counter() - start >= 0.05
    with pytest.raises(ValueError, match="regular expression"):
        sb.settings.fault_paths = "("


async def test_latency_with_jitter(client: httpx.AsyncClient, sb: Sandbox) -> None:
    sb.settings.latency_ms = 30
    sb.settings.latency_jitter_ms = 10
    start = time.perf_counter()
    await client.get("/v1/users/current")
    assert time.perf_counter() - start >= 0.018


async def test_fault_sequences_are_deterministic() -> None:
    async def sequence() -> list[int]:
        sb = Sandbox(small_settings(customers=1, fault_500_rate=0.3, fault_503_rate=0.2))
        async with httpx.AsyncClient(
            transport=sb.transport(),
            base_url=sb.base_url,
            headers={"Authorization": f"Bearer {sb.mint_api_key()}"},
        ) as c:
            return [(await c.get("/v1/users/current")).status_code for _ in range(30)]

    first = await sequence()
    assert first == await sequence()
    assert {200, 500, 503} <= set(first)
