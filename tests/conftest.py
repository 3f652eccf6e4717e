"""Shared pytest configuration: async backend, real services (PostgreSQL, Redis), sandbox and hub fixtures.

PostgreSQL and Redis are used for real. On a machine without them the tests that need them are skipped with
the reason, except when ``CI=true``, where a missing service is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from connectors import Connection, Connectors
    from connectors.kustomer.sandbox import Sandbox
    from connectors.runtime.store import ConnectionStore

REDIS_URL = os.environ.get("CONNECTORS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL_ENV = "CONNECTORS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL schema (``search_path`` set through libpq ``options``), dropped at the end.

    The server is ``$CONNECTORS_TEST_POSTGRES_URL`` or the local trust-auth one. Unreachable: the test is
    skipped, unless ``CI=true``, where a missing service is a failure.
    """
    base = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    shown = base.render_as_string(hide_password=True)
    schema = f"connectors_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, connect_args={"connect_timeout": 3}, pool_pre_ping=True)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        reason = f"PostgreSQL not reachable at {shown}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the service is required)")
        pytest.skip(reason)
    existing = base.query.get("options")
    options = " ".join(filter(None, [existing if isinstance(existing, str) else None, f"-csearch_path={schema}"]))
    url = base.update_query_dict({"options": options})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` is unusable, or None. Probed once per session (a fast TCP check, then PING)."""
    parsed = urlsplit(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1.0).close()
    except OSError as exc:
        return f"Redis not reachable at {url} ({type(exc).__name__}: {exc})"
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {url} does not answer PING ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a reachable Redis; skips the test without one, except under ``CI=true`` where it fails."""
    problem = _redis_problem(REDIS_URL)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; CI=true requires the service")
        pytest.skip(problem)
    return REDIS_URL


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"


@pytest.fixture
def sandbox() -> Sandbox:
    """A fresh in-process Kustomer sandbox (small seed) — ``connectors.kustomer.sandbox.Sandbox``."""
    from connectors.kustomer.sandbox import Sandbox, SandboxSettings

    # Budgets far above what tests spend: the client paces searches to the budget (100/min by default).
    return Sandbox(
        SandboxSettings(
            customers=60, companies=12, users=8, teams=3, rate_limit_per_minute=100_000, search_limit_per_minute=100_000
        )
    )


@pytest.fixture
def memory_store() -> Iterator[ConnectionStore]:
    """An in-memory connection store with a random key."""
    from connectors.runtime.secrets import SecretBox
    from connectors.runtime.store import ConnectionStore

    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    yield store
    store.close()


@pytest.fixture
async def hub(sandbox: Sandbox, memory_store: ConnectionStore) -> AsyncIterator[Connectors]:
    """A ``Connectors`` hub whose provider calls go to the in-process sandbox (async tests only)."""
    from connectors import Connectors, Settings

    connectors = Connectors(
        settings=Settings(
            kustomer={
                "client_id": "unified-connectors-test",
                "client_secret": "test-client-secret",
                "rate_limit": 100_000,
                "search_limit": 100_000,
            }
        ),
        store=memory_store,
        transport=sandbox.transport(),
    )
    yield connectors
    await connectors.aclose()


@pytest.fixture
async def connection(hub: Connectors, sandbox: Sandbox) -> Connection:
    """An API-key connection of owner ``tenant-1`` with every role, on the in-process sandbox."""
    key = sandbox.mint_api_key(name="tests")
    return await hub.connect("kustomer", "tenant-1", api_key=key, base_url=sandbox.base_url)
