"""Fixtures of the bulk sync tests: a sandbox with generous budgets and fast bulk jobs, rows with known defects."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connectors import Connection, Connectors, Settings
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime.bulk import PushOptions
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

FAST = PushOptions(poll_interval=0.002, poll_max_interval=0.02, ambiguous_delay=0.0)
"""Push options for tests: poll quickly, no wait before resolving unknown outcomes."""

BIG_BUDGET = {"rate_limit": 1_000_000, "search_limit": 1_000_000}


def sandbox_settings(**overrides: Any) -> SandboxSettings:
    """Small seed, budgets that never throttle, bulk jobs that finish in milliseconds."""
    base: dict[str, Any] = {
        "customers": 40,
        "companies": 10,
        "users": 4,
        "teams": 2,
        "conversations_per_customer": 0.2,
        "rate_limit_per_minute": 1_000_000,
        "search_limit_per_minute": 1_000_000,
        "bulk_processing_seconds": 0.001,
    }
    base.update(overrides)
    return SandboxSettings(**base)


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox(sandbox_settings())


@pytest.fixture
def store() -> AsyncIterator[ConnectionStore]:
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    yield store
    store.close()


@pytest.fixture
async def bulk_hub(sb: Sandbox, store: ConnectionStore) -> AsyncIterator[Connectors]:
    hub = Connectors(settings=Settings(kustomer=BIG_BUDGET), store=store, transport=sb.transport())
    yield hub
    await hub.aclose()


@pytest.fixture
async def conn(bulk_hub: Connectors, sb: Sandbox) -> Connection:
    return await bulk_hub.connect("kustomer", "tenant-bulk", api_key=sb.mint_api_key(name="bulk"), base_url=sb.base_url)


def contact_rows(n: int, *, prefix: str = "row") -> list[dict[str, Any]]:
    """``n`` valid contact rows with unique e-mails and a custom attribute."""
    return [
        {
            "firstName": f"First{i}",
            "lastName": f"Last{i}",
            "email": f"{prefix}{i}@example.com",
            "externalId": f"{prefix}-ext-{i}",
            "customFields": {"tierStr": "gold" if i % 2 else "silver", "scoreNum": i},
        }
        for i in range(n)
    ]


# Defects: (name, how to break a row, the row is caught locally?)
DEFECTS: list[tuple[str, Callable[[dict[str, Any]], None], bool]] = [
    ("bad suffix", lambda r: r.__setitem__("customFields", {"tier": "gold"}), True),
    ("bad type", lambda r: r.__setitem__("customFields", {"scoreNum": "not a number"}), True),
    ("bad email", lambda r: r.__setitem__("email", "not-an-email"), True),
    ("bad date", lambda r: r.__setitem__("customFields", {"renewalAt": "yesterday"}), True),
    # Accepted by the unified model, refused by Kustomer (E.164): only split retries can isolate it.
    ("bad phone", lambda r: r.__setitem__("phone", "0000"), False),
]


def customers_with_email(sb: Sandbox, email: str) -> list[str]:
    """Ids of live sandbox customers having ``email``."""
    email = email.lower()
    return [
        rec.id
        for rec in sb.state.customers.live.values()
        if any(str(e.get("email", "")).lower() == email for e in rec.attrs.get("emails") or ())
    ]


def live_count(sb: Sandbox, collection: str) -> int:
    return len(sb.state.collections[collection].live)
