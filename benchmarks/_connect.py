"""Shared benchmark plumbing: a hub + API-key connection on a sandbox, and the raw-httpx baseline export."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from connectors import Connection, Connectors
    from connectors.runtime.ratelimit import RateLimiter

__all__ = [
    "configurable_window",
    "connection",
    "iter_export",
    "pull_available",
    "pull_export",
    "raw_client",
    "raw_export",
    "raw_export_concurrent",
    "raw_page",
]

CUSTOMERS_PATH = "/v1/customers"


@asynccontextmanager
async def connection(
    base_url: str,
    api_key: str,
    *,
    rate_limit: int = 1000,
    rate_window: float | None = None,
    limiter: RateLimiter | None = None,
    owner_id: str = "bench",
) -> AsyncIterator[tuple[Connectors, Connection]]:
    """A :class:`~connectors.Connectors` hub (in-memory store) and an API-key connection to ``base_url``.

    Args:
        base_url: the sandbox's base URL.
        api_key: a sandbox API key.
        rate_limit: the org budget (requests per window) the client assumes until the server says.
        rate_window: the budget's window in seconds (``KustomerSettings.rate_window``; Kustomer's 60 s when
            None).
        limiter: the rate limiter (default: the hub's in-process one).
        owner_id: the tenant.

    Yields:
        ``(hub, connection)``; the hub is closed on exit.
    """
    from connectors import Connectors, Settings
    from connectors.runtime.secrets import SecretBox
    from connectors.runtime.store import ConnectionStore
    from connectors.settings import KustomerSettings

    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    options: dict[str, Any] = {"rate_limit": rate_limit}
    if rate_window is not None:
        options["rate_window"] = rate_window
    kustomer = KustomerSettings(**options)
    hub = Connectors(settings=Settings(kustomer=kustomer), store=store, limiter=limiter)
    try:
        conn = await hub.connect("kustomer", owner_id, api_key=api_key, base_url=base_url)
        yield hub, conn
    finally:
        await hub.aclose()
        store.close()


def raw_client(base_url: str, api_key: str) -> httpx.AsyncClient:
    """The baseline client: plain ``httpx.AsyncClient`` with the same bearer auth."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        timeout=60.0,
    )


async def raw_page(client: httpx.AsyncClient, page: int, page_size: int) -> dict[str, Any]:
    """One page of customers, decoded (the same request the connector's plain-list export sends)."""
    response = await client.get(CUSTOMERS_PATH, params={"page": page, "pageSize": page_size, "sort": "createdAt"})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def raw_export(client: httpx.AsyncClient, page_size: int = 100) -> int:
    """The minimal loop a user could write: GET pages, decode, follow ``links.next``. Returns the records."""
    count = 0
    page = 1
    while True:
        body = await raw_page(client, page, page_size)
        count += len(body["data"])
        if not (body.get("links") or {}).get("next"):
            return count
        page += 1


async def raw_export_concurrent(client: httpx.AsyncClient, pages: int, concurrency: int, page_size: int = 100) -> int:
    """The raw baseline with ``concurrency`` page requests in flight (pages known in advance). Returns records."""
    queue = iter(range(1, pages + 1))
    counts: list[int] = []

    async def worker() -> None:
        for page in queue:
            counts.append(len((await raw_page(client, page, page_size))["data"]))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sum(counts)


async def iter_export(conn: Connection, page_size: int = 100) -> int:
    """Export every contact through ``Resources.iter`` (the plain list endpoint). Returns records."""
    count = 0
    async for _ in conn.resources("genericContact").iter(page_size=page_size):
        count += 1
    return count


def pull_available() -> str | None:
    """``None`` when ``Connection.sync(model).pull(full=True, concurrency=N)`` exists, else why not."""
    try:
        from connectors.runtime.bulk import ModelSync
    except ImportError as exc:
        return f"connectors.runtime.bulk cannot be imported ({exc})"
    pull = getattr(ModelSync, "pull", None)
    if pull is None:
        return "ModelSync has no pull()"
    params = inspect.signature(pull).parameters
    missing = [p for p in ("full", "concurrency") if p not in params]
    return f"ModelSync.pull() has no {', '.join(missing)} parameter" if missing else None


async def pull_export(conn: Connection, *, concurrency: int, page_size: int = 100) -> int:
    """Full export through ``conn.sync("genericContact").pull(full=True, concurrency=...)`` without touching
    the stored watermark (``commit=False, resume=False`` where supported). Returns records."""
    sync = conn.sync("genericContact")
    params = inspect.signature(sync.pull).parameters
    options: dict[str, Any] = {"full": True, "concurrency": concurrency}
    for name, value in (("commit", False), ("resume", False), ("page_size", page_size)):
        if name in params:
            options[name] = value
    count = 0
    async for _ in sync.pull(**options):
        count += 1
    return count


def configurable_window() -> bool:
    """Whether ``KustomerSettings`` has ``rate_window`` (the connector can be told a compressed window)."""
    from connectors.settings import KustomerSettings

    return "rate_window" in KustomerSettings.model_fields
