"""Two real processes share one Redis budget against a fixed-window counting server (uvicorn).

The server counts like Kustomer: a fixed window, a 429 with ``x-ratelimit-*`` headers past the limit. The
window is compressed (60 requests per 2 s) so the test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

LIMIT = 60
WINDOW = 2.0
HEADROOM = 0.06  # compressed windows shrink the jitter tolerance (headroom * window / 2): keep ~60 ms
DURATION = 4.0
PROCESSES = 2
CONCURRENCY = 4
LATENCY = 0.02

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("rl_worker.py")


class CountingServer:
    """ASGI app: fixed-window counter returning 429 + x-ratelimit-* headers past ``limit``."""

    def __init__(self, limit: int, window: float, latency: float) -> None:
        self.limit, self.window, self.latency = limit, window, latency
        self.current: int | None = None
        self.count = 0
        self.accepted: list[float] = []
        self.rejected: list[float] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        headers: list[tuple[bytes, bytes]] = []
        status = 200
        if scope["path"] == "/hit":
            now = time.time()
            window_id = math.floor(now / self.window)
            if window_id != self.current:
                self.current, self.count = window_id, 0
            self.count += 1
            if self.count > self.limit:
                status = 429
                self.rejected.append(now)
            else:
                self.accepted.append(now)
            headers = [
                (b"x-ratelimit-limit", str(self.limit).encode()),
                (b"x-ratelimit-remaining", str(max(self.limit - self.count, 0)).encode()),
                (b"x-ratelimit-reset", f"{(window_id + 1) * self.window:.3f}".encode()),
            ]
            await asyncio.sleep(self.latency)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
def counting_server() -> Iterator[tuple[str, CountingServer]]:
    app = CountingServer(LIMIT, WINDOW, LATENCY)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", http="h11", ws="none", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.redis
@pytest.mark.http
@pytest.mark.slow
def test_two_processes_share_one_budget_without_429(
    redis_url: str, redis_prefix: str, counting_server: tuple[str, CountingServer]
) -> None:
    url, app = counting_server
    start = time.time() + 2.0  # both processes import, connect and warm up first
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    args = [url, redis_url, redis_prefix, LIMIT, WINDOW, HEADROOM, start, DURATION, CONCURRENCY]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert time.time() > start, "the workers started late: raise the start delay"
    in_run = [t for t in app.accepted if start <= t <= start + DURATION]
    budget = LIMIT / WINDOW * DURATION
    achieved = len(in_run) / budget
    print(
        f"\n{PROCESSES} processes, budget {LIMIT}/{WINDOW:g}s, headroom {HEADROOM}: "
        f"{len(in_run)} requests in {DURATION:g}s = {achieved:.1%} of the budget, "
        f"{len(app.rejected)} x 429, per process {results}"
    )
    assert app.rejected == []
    assert all(r["retried"] == 0 for r in results)
    assert achieved >= 0.9
    assert all(r["ok"] > 0.3 * budget / PROCESSES for r in results)  # both processes got a fair share
