"""The reliability and security suite: fixtures, the ``reliability`` marker and the summary printed at the end.

Every test in this folder is marked ``reliability`` (run the suite alone with ``python -m pytest -m
reliability``). Tests report what they did to the session-wide tally (fixture ``tally``, see
``_reliability.Tally``): faults the sandbox injected (read from ``sb.state.counters``), races run, inputs
tried, inputs rejected with a typed error, and inputs *lost* (a valid record missing from an export or a
push, a write duplicated, an event never dispatched, a hostile input accepted). ``lost`` must stay 0: each test
asserts it, and the session fails if a test forgot to.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # test modules and spawned workers import the helpers by name
    sys.path.insert(0, str(HERE))

from _reliability import Tally, hub_settings  # noqa: E402

from connectors import Connection, Connectors  # noqa: E402
from connectors.kustomer.sandbox import Sandbox  # noqa: E402
from connectors.runtime.secrets import SecretBox  # noqa: E402
from connectors.runtime.store import ConnectionStore  # noqa: E402

_TALLY = Tally()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``reliability`` (modules say so too; this keeps a new one from slipping)."""
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the suite's summary: faults injected, races run, inputs tried, rejected, lost."""
    if not (_TALLY.tried or _TALLY.faults or _TALLY.races):
        return
    terminalreporter.section("reliability summary")
    for line in _TALLY.lines():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when anything was lost, even if the test that lost it did not assert."""
    if _TALLY.total_lost and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tally() -> Tally:
    """The session's tally."""
    return _TALLY


@pytest.fixture
def make_store() -> Iterator[Callable[..., ConnectionStore]]:
    """``make_store(url="sqlite:///:memory:", key=None)``: a connection store, closed at the end."""
    opened: list[ConnectionStore] = []

    def make(url: str = "sqlite:///:memory:", key: bytes | None = None) -> ConnectionStore:
        store = ConnectionStore(url, secret_box=SecretBox(key or os.urandom(32)))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
async def make_hub(make_store: Callable[..., ConnectionStore]) -> AsyncIterator[Callable[..., Connectors]]:
    """``make_hub(transport, store=None, clock=None, **kustomer)``: a hub with the suite's settings (closed after)."""
    hubs: list[Connectors] = []

    def make(
        transport: httpx.AsyncBaseTransport | None,
        store: ConnectionStore | None = None,
        clock: Callable[[], float] | None = None,
        **kustomer: Any,
    ) -> Connectors:
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        hub = Connectors(settings=hub_settings(**kustomer), store=store or make_store(), transport=transport, **extra)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.aclose()


ConnectKey = Callable[..., Awaitable[Connection]]


@pytest.fixture
def connect_key() -> ConnectKey:
    """``await connect_key(hub, sb, owner="tenant-r", base_url=None)``: an API-key connection with every role."""

    async def go(hub: Connectors, sb: Sandbox, owner: str = "tenant-r", base_url: str | None = None) -> Connection:
        key = sb.mint_api_key(name=f"key-{owner}")
        return await hub.connect("kustomer", owner, api_key=key, base_url=base_url or sb.base_url)

    return go
