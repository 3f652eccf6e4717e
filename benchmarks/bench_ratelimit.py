"""Benchmark 3: how much of the org's rate budget the connector uses, without a single 429.

The sandbox (own process, 50 ms latency) enforces Kustomer's org budget of 600 requests per window, with the
60 s window compressed to 10 s (quick: 40 per 2 s) so a run takes seconds, not minutes. Worker processes
list contacts (``conn.resources("genericContact").list(limit=10)``) as fast as they can for ``duration``
seconds from a common start time, all through the connector's transport and rate limiter:

* **1 process** (8 tasks): the hub's :class:`~connectors.runtime.ratelimit.InProcessRateLimiter`;
* **4 processes** (4 tasks each): one :class:`~connectors.runtime.ratelimit.RedisRateLimiter` budget shared
  through Redis (skipped with the reason when Redis is not reachable).

The connection is told the compressed window through ``KustomerSettings(rate_limit=600, rate_window=10)``
(``KUSTOMER_RATE_WINDOW``); with a connector that does not have that setting yet, each worker instead
gives its client's org bucket the compressed window (``client.org_bucket = Bucket(key, 600, 10)``, under a
fresh key, after connecting under a generous limit so nothing paced on the 60 s window carries over).
Everything else is the stock connector with the library's default headroom (3 %). The run starts on a
window boundary, after every worker has connected and warmed up.

Measured: requests answered 200 within ``[start, start + duration]`` (counted by the workers) per second,
against the budget ``limit / window`` (target >= 95 %), and the sandbox's own count of 429 responses during
the run (target 0; the transport would retry them silently, so they are counted server-side).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

from benchmarks._connect import configurable_window
from benchmarks._harness import ROOT, Row, at_least, log, row
from benchmarks._sandbox import SandboxProcess

__all__ = ["run"]

NAME = "ratelimit"
TARGET = 0.95
LATENCY_MS = 50.0
PAGE_SIZE = 10
SETUP_LIMIT = 1_000_000  # while the workers connect and warm up


def _redis_url() -> str | None:
    """The Redis to share the budget through, or None when unreachable."""
    url = os.environ.get("CONNECTORS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        return None
    return url


async def _worker(cfg: dict[str, Any]) -> dict[str, Any]:
    from benchmarks._connect import configurable_window, connection
    from connectors.errors import ConnectorError
    from connectors.runtime.ratelimit import Bucket, InProcessRateLimiter, RateLimiter, RedisRateLimiter

    limit, window = int(cfg["limit"]), float(cfg["window"])
    limiter: RateLimiter = (
        RedisRateLimiter(cfg["redis_url"], prefix=cfg["prefix"]) if cfg["redis_url"] else InProcessRateLimiter()
    )
    ok_times: list[float] = []
    errors: Counter[str] = Counter()
    settable = configurable_window()
    try:
        setup = (
            connection(cfg["base_url"], cfg["api_key"], rate_limit=limit, rate_window=window, limiter=limiter)
            if settable
            else connection(cfg["base_url"], cfg["api_key"], rate_limit=SETUP_LIMIT, limiter=limiter)
        )
        async with setup as (_hub, conn):
            contacts = conn.resources("genericContact")
            await contacts.list(limit=PAGE_SIZE)  # warm the connection pool and the code paths
            if not settable:
                # No KustomerSettings.rate_window: give the client's org bucket the compressed window, under a
                # fresh key so what connect() and the warm-up observed (the generous setup limit, paced on
                # Kustomer's 60 s window) does not carry over.
                client = conn.connector.client  # type: ignore[attr-defined]
                client.org_bucket = Bucket(f"{client.org_bucket.key}:compressed", limit, window)
            # barrier: tell the parent we are ready, then wait for the common start time it sends back
            print(json.dumps({"ready": True}), flush=True)
            start = float(await asyncio.to_thread(sys.stdin.readline))
            late = time.time() - start
            await asyncio.sleep(max(0.0, -late))
            end = start + float(cfg["duration"])

            async def loop() -> None:
                while time.time() < end:
                    try:
                        await contacts.list(limit=PAGE_SIZE)
                    except ConnectorError as exc:
                        errors[type(exc).__name__] += 1
                    else:
                        ok_times.append(time.time())

            await asyncio.gather(*(loop() for _ in range(int(cfg["concurrency"]))))
    finally:
        aclose = getattr(limiter, "aclose", None)
        if aclose is not None:
            await aclose()
    return {"start": start, "ok_times": ok_times, "errors": dict(errors), "late": max(0.0, late)}


def _scenario(
    sb: SandboxProcess,
    *,
    processes: int,
    concurrency: int,
    limit: int,
    window: float,
    duration: float,
    redis_url: str | None,
) -> dict[str, Any]:
    prefix = f"bench:connectors:rl:{uuid.uuid4().hex}:"
    cfg = {
        "base_url": sb.base_url,
        "api_key": sb.api_key,
        "redis_url": redis_url,
        "prefix": prefix,
        "limit": limit,
        "window": window,
        "duration": duration,
        "concurrency": concurrency,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_ratelimit", "--worker", json.dumps(cfg)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    spawned = time.perf_counter()
    try:
        for proc in procs:  # every worker has imported, connected and warmed up
            assert proc.stdout is not None
            if not proc.stdout.readline().strip():
                raise RuntimeError(f"a rate-limit worker exited with {proc.wait()} before it was ready")
        # without a configurable window the workers connected under a generous limit; now the budget applies
        sb.patch_settings(rate_limit_per_minute=limit, rate_window_seconds=window)
        before = sb.counters()
        # start on a window boundary: the requests of connect() and warm-up fall into an earlier window
        start = math.ceil((time.time() + 0.5) / window) * window
        log(NAME, f"workers ready after {time.perf_counter() - spawned:.1f} s; starting in {start - time.time():.1f} s")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start!r}\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=duration + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"a rate-limit worker exited with {proc.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = sb.counters()
    if redis_url:
        _delete_prefix(redis_url, prefix)
    end = start + duration
    ok = sum(1 for r in results for t in r["ok_times"] if start <= t <= end)
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    budget = limit / window
    return {
        "achieved": ok / duration / budget,
        "rate": ok / duration,
        "budget": budget,
        "server_429": after.get("status.429", 0) - before.get("status.429", 0),
        "server_200": after.get("status.200", 0) - before.get("status.200", 0),
        "errors": dict(errors),
        "late": max(r["late"] for r in results),
        "per_process": [sum(1 for t in r["ok_times"] if start <= t <= end) for r in results],
    }


def _delete_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def run(quick: bool) -> list[Row]:
    """Run benchmark 3 (see the module docstring)."""
    limit, window, duration = (40, 2.0, 2.0) if quick else (600, 10.0, 30.0)
    redis_url = _redis_url()
    rows: list[Row] = []
    settings = {
        "customers": 200,
        "conversations_per_customer": 0,
        "orders_per_customer": 0,
        "latency_ms": LATENCY_MS,
        "rate_limit_per_minute": SETUP_LIMIT,
        "rate_window_seconds": window,
    }
    with SandboxProcess(**settings) as sb:
        for processes, concurrency in ((1, 8), (4, 4)):
            sb.patch_settings(rate_limit_per_minute=limit if configurable_window() else SETUP_LIMIT)
            label = f"{processes} process{'es' if processes > 1 else ''} x {concurrency} tasks"
            if processes > 1 and redis_url is None:
                rows.append(row(label, status="skipped: Redis not reachable (set CONNECTORS_BENCH_REDIS_URL)"))
                continue
            log(NAME, f"{label}: {limit} requests / {window:g} s, {LATENCY_MS:g} ms latency, {duration:g} s")
            result = _scenario(
                sb,
                processes=processes,
                concurrency=concurrency,
                limit=limit,
                window=window,
                duration=duration,
                redis_url=redis_url if processes > 1 else None,
            )
            met = at_least(result["achieved"], TARGET) and result["server_429"] == 0 and not result["errors"]
            rows.append(
                row(
                    f"{label}, {'Redis' if processes > 1 else 'in-process'} budget",
                    value=round(100 * result["achieved"], 1),
                    unit="% of budget",
                    target=f">= {TARGET:.0%} of budget, 0 x 429",
                    met=met,
                    requests_per_second=result["rate"],
                    budget_per_second=result["budget"],
                    responses_429=result["server_429"],
                    errors=", ".join(f"{k} x{v}" for k, v in result["errors"].items()) or "none",
                    per_process="/".join(str(n) for n in result["per_process"]),
                    late_start_seconds=round(result["late"], 3),
                    window_via="KustomerSettings.rate_window" if configurable_window() else "bucket override",
                )
            )
    return rows


def _main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--worker":
        result = asyncio.run(_worker(json.loads(argv[1])))
        print(json.dumps(result))
        return
    raise SystemExit("usage: python -m benchmarks.bench_ratelimit --worker CONFIG_JSON")


if __name__ == "__main__":
    _main(sys.argv[1:])
