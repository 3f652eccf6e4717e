"""Bulk sync: bulk push vs one request per record, full pull vs a raw httpx loop, and use of the org budget.

``run(quick)`` returns result rows (see ``benchmarks/_harness.py``). Self-contained: it starts its own
sandboxes, each in a separate Python process served by uvicorn on loopback (so the client and the server do
not share a GIL), and talks to them over HTTP.

1. **Push** ``N`` contacts (10k; quick: 1k) with ``sync("genericContact").push(rows, match="email")`` vs
   one ``resources("genericContact").create(row)`` per record, both with 8 requests/jobs in flight, sandbox
   latency 50 ms and a budget that never throttles (so the wall times compare latency-bound work). Rows
   report the requests each used and the minutes those requests take at Kustomer's 1,000 req/min budget.
   Target: the bulk push is >= 20x faster.
2. **Full pull** of 50k contacts (quick: 5k) with ``sync(...).pull(full=True, concurrency=4)`` (mapping to
   unified models, watermark commits) vs a minimal raw ``httpx`` loop over the same pages (``GET`` +
   ``response.json()``, sequential). Target: ratio <= 1.15.
3. **Budget use**: the same full pull against an org budget compressed to 120 requests per 6 s window (1,200
   req/min: about Kustomer's Enterprise budget, and well under what the client can fetch, so the run is
   budget-bound), stopped after 20k records (quick: 5k); the client's org bucket gets the same window.
   Records/min achieved vs the records/min the budget allows. Target: >= 95 % of the budget, zero 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

__all__ = ["run"]

LATENCY_MS = 50.0
BUDGET_LIMIT = 120
BUDGET_WINDOW = 6.0
BUDGET_RECORDS = 20_000
UNTHROTTLED = 1_000_000

_SERVER = r"""
import json, socket, sys
import uvicorn
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(2048)
base = "http://127.0.0.1:%d" % sock.getsockname()[1]
sb = Sandbox(SandboxSettings.model_validate(json.loads(sys.argv[1])), base_url=base)
print(json.dumps({"base_url": base, "api_key": sb.mint_api_key(name="bench-bulk")}), flush=True)
config = uvicorn.Config(sb.app, log_level="warning", access_log=False, lifespan="off", ws="none")
uvicorn.Server(config).run(sockets=[sock])
"""


def _log(message: str) -> None:
    print(f"[bulk] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sandbox(**settings: Any) -> Iterator[tuple[str, str]]:
    """A sandbox in its own process; yields ``(base_url, api_key)``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, json.dumps(settings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process did not start")
        ready = json.loads(line)
        yield ready["base_url"], ready["api_key"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.asynccontextmanager
async def _connection(base_url: str, api_key: str, *, rate_limit: int = UNTHROTTLED) -> AsyncIterator[Any]:
    from connectors import Connectors, Settings
    from connectors.runtime.secrets import SecretBox
    from connectors.runtime.store import ConnectionStore

    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    settings = Settings(kustomer={"rate_limit": rate_limit, "search_limit": rate_limit})
    async with Connectors(settings=settings, store=store) as hub:
        yield await hub.connect("kustomer", f"bench-{uuid.uuid4().hex[:8]}", api_key=api_key, base_url=base_url)
    store.close()


async def _counters(base_url: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get("/sandbox/requests")
        return {k: int(v) for k, v in response.json()["counters"].items()}


async def _patch_settings(base_url: str, **changes: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.patch("/sandbox/settings", json=changes)
        response.raise_for_status()


def _rows(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "firstName": f"Bench{i}",
            "lastName": prefix,
            "email": f"{prefix}-{i}@bench.example.com",
            "customFields": {"tierStr": "gold" if i % 3 else "silver"},
        }
        for i in range(n)
    ]


# -- 1. push -----------------------------------------------------------------------------------------------


async def _bulk_push(conn: Any, rows: list[dict[str, Any]]) -> tuple[float, int, int]:
    from connectors.runtime.bulk import PushOptions

    start = time.perf_counter()
    report = await conn.sync("genericContact").push(
        rows, match="email", keep_results="none", options=PushOptions(concurrency=8)
    )
    elapsed = time.perf_counter() - start
    if report.created != len(rows):
        raise RuntimeError(f"bulk push created {report.created} of {len(rows)} rows")
    return elapsed, report.requests, report.jobs


async def _per_record(conn: Any, rows: list[dict[str, Any]], concurrency: int = 8) -> float:
    contacts = conn.resources("genericContact")
    gate = asyncio.Semaphore(concurrency)

    async def one(row: dict[str, Any]) -> None:
        async with gate:
            await contacts.create(row)

    start = time.perf_counter()
    await asyncio.gather(*(one(row) for row in rows))
    return time.perf_counter() - start


async def _push_rows(quick: bool) -> list[dict[str, Any]]:
    n = 1_000 if quick else 10_000
    repeats = 1 if quick else 3
    with _sandbox(
        customers=0,
        companies=2,
        users=2,
        teams=1,
        conversations_per_customer=0,
        latency_ms=LATENCY_MS,
        rate_limit_per_minute=UNTHROTTLED,
        search_limit_per_minute=UNTHROTTLED,
    ) as (base_url, key):
        async with _connection(base_url, key) as conn:
            times: list[float] = []
            requests = jobs = 0
            for rep in range(repeats):
                elapsed, requests, jobs = await _bulk_push(conn, _rows(n, f"bulk{rep}"))
                times.append(elapsed)
                _log(f"bulk push {n}: {elapsed:.2f}s, {requests} requests, {jobs} jobs")
            before = (await _counters(base_url)).get("requests", 0)
            baseline = await _per_record(conn, _rows(n, "single"))
            baseline_requests = (await _counters(base_url)).get("requests", 0) - before
            _log(f"one request per record {n}: {baseline:.2f}s, {baseline_requests} requests")
    median = statistics.median(times)
    speedup = baseline / median
    return [
        {
            "name": f"bulk push {n:,} contacts, match=email (50 ms latency, 8 in flight)",
            "median_seconds": median,
            "baseline_seconds": baseline,
            "ratio_vs_baseline": median / baseline,
            "speedup": round(speedup, 1),
            "target": "speedup >= 20x",
            "met": speedup >= 20,
            "requests": requests,
            "baseline_requests": baseline_requests,
            "jobs": jobs,
            "minutes_at_1000_rpm": round(requests / 1000, 2),
            "baseline_minutes_at_1000_rpm": round(baseline_requests / 1000, 2),
            "rows_per_second": round(n / median),
        }
    ]


# -- 2. and 3. pull ----------------------------------------------------------------------------------------


async def _pull(conn: Any, concurrency: int, limit: int | None = None) -> tuple[float, int]:
    sync = conn.sync("genericContact")
    await sync.reset()
    start = time.perf_counter()
    count = 0
    async for _ in sync.pull(full=True, concurrency=concurrency):
        count += 1
        if limit is not None and count >= limit:
            break
    return time.perf_counter() - start, count


async def _raw_loop(base_url: str, key: str) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    start = time.perf_counter()
    count = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30.0) as client:
        page = 1
        while True:
            response = await client.get("/v1/customers", params={"page": page, "pageSize": 100, "sort": "createdAt"})
            response.raise_for_status()
            body = response.json()
            count += len(body["data"])
            if not body["links"].get("next"):
                break
            page += 1
    return time.perf_counter() - start, count


async def _pull_rows(quick: bool) -> list[dict[str, Any]]:
    n = 5_000 if quick else 50_000
    repeats = 1 if quick else 3
    rows: list[dict[str, Any]] = []
    with _sandbox(
        customers=n,
        companies=2,
        users=2,
        teams=1,
        conversations_per_customer=0,
        orders_per_customer=0,
        rate_limit_per_minute=UNTHROTTLED,
        search_limit_per_minute=UNTHROTTLED,
    ) as (base_url, key):
        async with _connection(base_url, key) as conn:
            await _pull(conn, 4)  # warm up both sides
            await _raw_loop(base_url, key)
            ours: list[float] = []
            raw: list[float] = []
            for _ in range(repeats):
                elapsed, count = await _pull(conn, 4)
                assert count == n, count
                ours.append(elapsed)
                elapsed, count = await _raw_loop(base_url, key)
                assert count == n, count
                raw.append(elapsed)
                _log(f"full pull {n}: {ours[-1]:.2f}s vs raw loop {raw[-1]:.2f}s")
            sequential, _ = await _pull(conn, 1)
            _log(f"full pull {n}, concurrency 1: {sequential:.2f}s")
        median, base = statistics.median(ours), statistics.median(raw)
        rows.append(
            {
                "name": f"full pull {n:,} contacts to unified models (concurrency 4) vs raw httpx loop",
                "median_seconds": median,
                "baseline_seconds": base,
                "ratio_vs_baseline": median / base,
                "target": "ratio <= 1.15",
                "met": median / base <= 1.15,
                "records_per_second": round(n / median),
                "concurrency_1_seconds": round(sequential, 3),
            }
        )
        rows.append(await _budget_row(base_url, key, min(n, BUDGET_RECORDS)))
    return rows


async def _budget_row(base_url: str, key: str, n: int) -> dict[str, Any]:
    from connectors.runtime.ratelimit import Bucket

    await _patch_settings(base_url, rate_limit_per_minute=BUDGET_LIMIT, rate_window_seconds=BUDGET_WINDOW)
    # Let the current (unthrottled) window end so the measured run starts with a fresh server window.
    await asyncio.sleep(BUDGET_WINDOW - (time.time() % BUDGET_WINDOW) + 0.05)
    async with _connection(base_url, key, rate_limit=BUDGET_LIMIT) as conn:
        client = conn.connector.client
        client.org_bucket = Bucket(client.org_bucket.key, BUDGET_LIMIT, BUDGET_WINDOW)
        before = await _counters(base_url)
        elapsed, count = await _pull(conn, 4, limit=n)
        after = await _counters(base_url)
    requests = after.get("requests", 0) - before.get("requests", 0)
    limited = after.get("status.429", 0) - before.get("status.429", 0)
    budget_rps = BUDGET_LIMIT / BUDGET_WINDOW
    achieved_rps = requests / elapsed
    share = 100 * achieved_rps / budget_rps
    _log(f"budget run: {requests} requests in {elapsed:.2f}s = {share:.1f}% of the budget, {limited} x 429")
    return {
        "name": f"full pull, {n:,} contacts vs org budget ({BUDGET_LIMIT} req / {BUDGET_WINDOW:g} s window)",
        "value": round(share, 1),
        "unit": "% of budget",
        "target": ">= 95% of budget, zero 429s",
        "met": share >= 95 and limited == 0,
        "records_per_minute": round(count / elapsed * 60),
        "budget_records_per_minute": round(budget_rps * 100 * 60),
        "requests": requests,
        "responses_429": limited,
        "seconds": round(elapsed, 2),
    }


async def _run(quick: bool) -> list[dict[str, Any]]:
    rows = await _push_rows(quick)
    rows += await _pull_rows(quick)
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the bulk sync benchmarks; see the module docstring."""
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(json.dumps(row))
