"""Fixtures of the Kustomer resource tests: a bigger sandbox for pagination, a provisioned CRM."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors import Connection, Connectors
from connectors.kustomer.sandbox import Sandbox, SandboxSettings


@pytest.fixture
def big_sandbox() -> Sandbox:
    """250 customers: enough for more than 100 search pages of 2."""
    return Sandbox(
        SandboxSettings(
            customers=250,
            companies=20,
            users=6,
            teams=2,
            rate_limit_per_minute=100_000,
            search_limit_per_minute=100_000,
        )
    )


@pytest.fixture
async def big_connection(big_sandbox: Sandbox, memory_store: object) -> AsyncIterator[Connection]:
    from connectors import Settings

    settings = Settings(kustomer={"rate_limit": 100_000, "search_limit": 100_000})
    hub = Connectors(settings=settings, store=memory_store, transport=big_sandbox.transport())  # type: ignore[arg-type]
    conn = await hub.connect("kustomer", "tenant-1", api_key=big_sandbox.mint_api_key(), base_url=big_sandbox.base_url)
    yield conn
    await hub.aclose()


@pytest.fixture
async def crm_connection(connection: Connection) -> Connection:
    """The shared ``connection`` with the CRM Klasses provisioned."""
    from connectors.kustomer.provision import provision_crm

    await provision_crm(connection)
    return connection
