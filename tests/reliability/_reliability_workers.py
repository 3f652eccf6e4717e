"""Code run in spawned child processes by the race tests (not a test module).

``conftest.py`` puts this folder on ``sys.path``; spawned children import this module by name. Each worker
builds its own hub on the shared database (the key travels as bytes: a ``SecretBox`` refuses to be pickled),
waits at a barrier so that every process starts at the same instant, calls its connection until the deadline
and puts a plain dict describing what happened on the results queue.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from typing import Any

__all__ = ["hammer"]


async def _hammer(spec: dict[str, Any], barrier: Any) -> dict[str, Any]:
    from connectors import Connectors, Settings
    from connectors.runtime.secrets import SecretBox
    from connectors.runtime.store import ConnectionStore

    store = ConnectionStore(spec["db_url"], secret_box=SecretBox(spec["key"]))
    hub = Connectors(
        settings=Settings(refresh_margin=spec["refresh_margin"], kustomer=spec["kustomer"]),
        store=store,
    )
    ok = 0
    failures: list[str] = []
    try:
        conn = await hub.get("kustomer", spec["owner"])
        users = conn.resources("genericUser")
        manager = conn.session.token_manager
        assert manager is not None
        await users.list(limit=1)  # warm up (pool, first token check) before the common start
        await asyncio.to_thread(barrier.wait, 60)
        started = time.time()
        deadline = started + spec["duration"]

        async def loop() -> None:
            nonlocal ok
            while time.time() < deadline:
                try:
                    await users.list(limit=1)
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                else:
                    ok += 1
                await asyncio.sleep(spec["pause"])

        await asyncio.gather(*(loop() for _ in range(spec["concurrency"])))
        finished = time.time()
    finally:
        await hub.aclose()
        store.close()
    return {
        "pid": os.getpid(),
        "started": started,
        "finished": finished,
        "ok": ok,
        "failures": failures[:5],
        "failed": len(failures),
        "refreshes": manager.refreshes,
    }


def hammer(spec: dict[str, Any], barrier: Any, results: Any) -> None:
    """Process entry point: call one OAuth connection until the deadline; put the report (or the crash)."""
    try:
        report = asyncio.run(_hammer(spec, barrier))
    except BaseException:
        barrier.abort()
        results.put({"pid": os.getpid(), "crash": traceback.format_exc()})
        raise
    results.put(report)
