"""A worker process for ``test_processes.py``: call the counting server through a shared Redis budget.

Usage: python rl_worker.py URL REDIS_URL PREFIX LIMIT WINDOW HEADROOM START DURATION CONCURRENCY
Prints one JSON line with what this process saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from connectors.runtime.ratelimit import Bucket, RedisRateLimiter
from connectors.runtime.transport import (
    EXT_ATTEMPTS,
    EXT_BUCKETS,
    EXT_HEADERS_BUCKET,
    EXT_MAX_WAIT,
    ResilientTransport,
)


async def main(argv: list[str]) -> dict[str, float]:
    url, redis_url, prefix = argv[0], argv[1], argv[2]
    limit, window, headroom = int(argv[3]), float(argv[4]), float(argv[5])
    start, duration, concurrency = float(argv[6]), float(argv[7]), int(argv[8])

    limiter = RedisRateLimiter(redis_url, prefix=prefix, headroom=headroom)
    bucket = Bucket("org", limit, window)
    ext = {EXT_BUCKETS: [bucket], EXT_HEADERS_BUCKET: bucket, EXT_MAX_WAIT: 30.0}
    stats = {"sent": 0, "ok": 0, "retried": 0}
    async with httpx.AsyncClient(transport=ResilientTransport(limiter=limiter), base_url=url) as client:
        await client.get("/ping")  # warm the connection pool and the scripts before the start
        await asyncio.sleep(max(0.0, start - time.time()))
        end = start + duration

        async def worker() -> None:
            while time.time() < end:
                response = await client.get("/hit", extensions=ext)
                stats["sent"] += response.extensions[EXT_ATTEMPTS]
                stats["ok"] += response.status_code == 200
                stats["retried"] += response.extensions[EXT_ATTEMPTS] > 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    await limiter.aclose()
    return stats


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))))
