"""Benchmark 4: full-export speedup from fetching pages concurrently, at 100 ms latency, within the budget.

The sandbox (own process) adds 100 ms to every request and enforces an org budget of 6,000 requests per
minute (100 per second: eight requests in flight every 100 ms fit in it); the connection assumes the same
budget, so its rate limiter paces the requests and no 429 should occur (counted server-side).

Cases, round-robin in the same run:

* **raw c=1 / raw c=8** (the physical limit): ``httpx.AsyncClient`` fetching the same pages, one at a time
  or eight workers over the known page numbers, decoding only.
* **connector c=1 / c=8**: ``conn.sync("genericContact").pull(full=True, concurrency=N)`` (the sync
  engine's full export on the plain list endpoint, without touching the stored watermark). Reported as
  "not available yet" when ``ModelSync.pull`` does not exist.

Size: 10,000 records (100 pages; quick: 800). Target: connector time at concurrency 1 / at concurrency 8
>= 5x (median of the per-round ratios; the cases run round-robin). The ratio column compares the
connector at concurrency 8 with raw httpx at concurrency 8.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks._connect import (
    connection,
    pull_available,
    pull_export,
    raw_client,
    raw_export,
    raw_export_concurrent,
)
from benchmarks._harness import Row, at_least, interleave_async, log, median, paired_ratio, row, run_coroutine
from benchmarks._sandbox import SandboxProcess

__all__ = ["run"]

NAME = "concurrency"
TARGET = 5.0
LATENCY_MS = 100.0
BUDGET_PER_MINUTE = 6_000
CONCURRENCY = 8
PAGE_SIZE = 100


async def _measure(
    base_url: str, api_key: str, records: int, repeats: int, *, with_pull: bool
) -> dict[str, list[float]]:
    pages = math.ceil(records / PAGE_SIZE)
    async with (
        connection(base_url, api_key, rate_limit=BUDGET_PER_MINUTE) as (_hub, conn),
        raw_client(base_url, api_key) as client,
    ):

        def check(case: str, got: int) -> None:
            if got != records:
                raise RuntimeError(f"{case} exported {got} records, expected {records}")

        async def raw1() -> None:
            check("raw c=1", await raw_export(client, PAGE_SIZE))

        async def raw8() -> None:
            check("raw c=8", await raw_export_concurrent(client, pages, CONCURRENCY, PAGE_SIZE))

        cases: dict[str, Any] = {"raw c=1": raw1, "raw c=8": raw8}
        if with_pull:

            async def pull1() -> None:
                check("connector c=1", await pull_export(conn, concurrency=1, page_size=PAGE_SIZE))

            async def pull8() -> None:
                check("connector c=8", await pull_export(conn, concurrency=CONCURRENCY, page_size=PAGE_SIZE))

            cases |= {"connector c=1": pull1, "connector c=8": pull8}
        await conn.resources("genericContact").list(limit=1)  # warm the connection pools
        await client.get("/v1/customers", params={"pageSize": 1})
        return await interleave_async(cases, repeats=repeats, warmup=0)


def run(quick: bool) -> list[Row]:
    """Run benchmark 4 (see the module docstring)."""
    records = 800 if quick else 10_000
    repeats = 1 if quick else 3
    unavailable = pull_available()
    rows: list[Row] = []
    with SandboxProcess(
        customers=records,
        conversations_per_customer=0,
        orders_per_customer=0,
        latency_ms=LATENCY_MS,
        rate_limit_per_minute=BUDGET_PER_MINUTE,
    ) as sb:
        log(NAME, f"{records:,} records, {LATENCY_MS:g} ms latency, budget {BUDGET_PER_MINUTE:,}/min")
        before = sb.counters()
        times = run_coroutine(
            lambda: _measure(sb.base_url, sb.api_key, records, repeats, with_pull=unavailable is None)
        )
        after = sb.counters()
    too_many = after.get("status.429", 0) - before.get("status.429", 0)
    raw1, raw8 = median(times["raw c=1"]), median(times["raw c=8"])
    rows.append(
        row(
            f"raw httpx, concurrency 1 vs {CONCURRENCY} (physical limit)",
            median_seconds=raw8,
            speedup=paired_ratio(times["raw c=1"], times["raw c=8"]),
            concurrency_1_seconds=raw1,
            records=records,
            repeats=repeats,
        )
    )
    if unavailable is not None:
        rows.append(row(f"connector, concurrency 1 vs {CONCURRENCY}", status=f"not available yet: {unavailable}"))
        return rows
    c1, c8 = median(times["connector c=1"]), median(times["connector c=8"])
    speedup = paired_ratio(times["connector c=1"], times["connector c=8"])
    rows.append(
        row(
            f"sync.pull(full), concurrency 1 vs {CONCURRENCY}",
            median_seconds=c8,
            baseline_seconds=raw8,
            ratio_vs_baseline=paired_ratio(times["connector c=8"], times["raw c=8"]),
            target=f"speedup >= {TARGET:g}x, 0 x 429",
            met=at_least(speedup, TARGET) and too_many == 0,
            speedup=speedup,
            concurrency_1_seconds=c1,
            records_per_second=records / c8,
            responses_429=too_many,
        )
    )
    return rows
