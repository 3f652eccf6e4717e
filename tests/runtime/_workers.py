"""Code run in child processes (``multiprocessing`` spawn) by ``test_processes.py``.

Not a test module: spawn children import it by name, so the parent puts this folder on ``sys.path``.

Each worker builds its own :class:`~connectors.Connectors` hub, either from explicit pieces (a store opened on
the shared database with the shared key, passed as bytes because a ``SecretBox`` refuses to be pickled) or
purely from environment variables, as a deployed worker would (``spec["environ"]``). It opens the connection,
waits at a barrier so that every process starts at the same instant, calls the connection until the deadline
and puts a plain dict describing what happened on the results queue.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from typing import Any


async def _hammer(spec: dict[str, Any], barrier: Any) -> dict[str, Any]:
    from connectors import Connectors, Settings
    from connectors.runtime.secrets import SecretBox
    from connectors.runtime.store import ConnectionStore

    if "environ" in spec:
        os.environ.update(spec["environ"])
        hub = Connectors()  # settings, store and limiter from the environment only
    else:
        store = ConnectionStore(spec["db_url"], secret_box=SecretBox(spec["key"]))
        settings = Settings(refresh_margin=spec["refresh_margin"], kustomer=spec.get("kustomer", {}))
        hub = Connectors(settings=settings, store=store)
    ok = 0
    statuses: dict[str, int] = {}
    failures: list[str] = []
    try:
        conn = await hub.get("kustomer", spec["owner"])
        users = conn.resources("genericUser")
        manager = conn.session.token_manager

        async def call() -> int:
            if spec.get("call") == "list":
                await users.list(limit=1)
                return 200
            response = await conn.proxy("GET", "/v1/users/current")
            if response.status_code != 200:
                failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
            return response.status_code

        await call()  # warm up (connection pool, first token check) before the common start
        await asyncio.to_thread(barrier.wait, 60)
        started = time.time()
        deadline = started + spec["duration"]

        async def loop() -> None:
            nonlocal ok
            while time.time() < deadline:
                try:
                    status = await call()
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                else:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    ok += status == 200
                if spec.get("pause"):
                    await asyncio.sleep(spec["pause"])

        await asyncio.gather(*(loop() for _ in range(spec.get("concurrency", 1))))
        finished = time.time()
    finally:
        await hub.aclose()
        if "environ" not in spec:
            store.close()
    return {
        "pid": os.getpid(),
        "started": started,
        "finished": finished,
        "ok": ok,
        "statuses": statuses,
        "failed": len(failures),
        "failures": failures[:5],
        "refreshes": manager.refreshes if manager is not None else 0,
    }


def run(spec: dict[str, Any], barrier: Any, results: Any) -> None:
    """Process entry point: hammer one connection and put the report (or the crash) on ``results``."""
    try:
        report = asyncio.run(_hammer(spec, barrier))
    except BaseException:
        barrier.abort()
        results.put({"pid": os.getpid(), "crash": traceback.format_exc()})
        raise
    results.put(report)
