"""Worker of the cross-process subscribe test (imported by name in ``spawn`` children)."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors import Connectors, Settings
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore


def subscribe_worker(
    url: str, key: bytes, owner: str, events: list[str], receive_url: str, barrier: Any, results: Any
) -> None:
    """Open the shared store, wait for the others, subscribe ``owner`` to ``events``; report the webhook ids."""

    async def go() -> list[str | None]:
        store = ConnectionStore(url, secret_box=SecretBox(key))
        hub = Connectors(settings=Settings(), store=store)
        try:
            conn = await hub.get("kustomer", owner)
            await asyncio.to_thread(barrier.wait, 60)
            subs = await conn.webhooks.subscribe(events, url=receive_url)
            return [s.kustomer_webhook_id for s in subs]
        finally:
            await hub.aclose()
            store.close()

    try:
        results.put(("ok", owner, asyncio.run(go())))
    except BaseException as exc:  # reported to the parent
        results.put(("error", owner, repr(exc)))
