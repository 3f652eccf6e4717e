"""Sandbox timing figures (not a test): ``python tests/sandbox/timing.py [customers]``.

Prints the time to construct a Sandbox with N customers (default 10,000, other sizes at their defaults) and
the median time to serve in-process a 100-item ``GET /v1/customers`` page, a sorted/filtered page and a
search page.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import httpx

from connectors.kustomer.sandbox import Sandbox, SandboxSettings


async def _median(client: httpx.AsyncClient, method: str, url: str, runs: int, **kwargs: object) -> float:
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        r = await client.request(method, url.format(page=1 + i % 50), **kwargs)  # type: ignore[arg-type]
        samples.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
    return statistics.median(samples) * 1000


async def main(customers: int) -> None:
    start = time.perf_counter()
    sb = Sandbox(
        SandboxSettings(customers=customers, rate_limit_per_minute=1_000_000, search_limit_per_minute=1_000_000)
    )
    built = time.perf_counter() - start
    counts = {name: len(coll) for name, coll in sb.state.collections.items() if len(coll)}
    print(f"construct Sandbox(customers={customers}): {built:.3f} s  {counts}")
    token = sb.mint_api_key()
    async with httpx.AsyncClient(
        transport=sb.transport(), base_url=sb.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        await client.get("/v1/customers")  # warm up (builds the middleware stack)
        page = await _median(client, "GET", "/v1/customers?page={page}&pageSize=100", 200)
        print(f"GET /v1/customers?pageSize=100 (in-process), median of 200: {page:.2f} ms")
        sorted_page = await _median(
            client,
            "GET",
            "/v1/customers?page={page}&pageSize=100&sort=-updatedAt&filter[updatedAt][gte]=2025-01-01",
            200,
        )
        print(f"GET /v1/customers sorted + filtered, median of 200: {sorted_page:.2f} ms")
        body = {"queryContext": "customer", "sort": [{"customer_updated_at": "asc"}]}
        search = await _median(client, "POST", "/v1/customers/search?page={page}&pageSize=100", 100, json=body)
        print(f"POST /v1/customers/search pageSize=100 (cached query), median of 100: {search:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
