"""Fixtures of the Kustomer sandbox tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest

from connectors.kustomer.sandbox import DEFAULT_DEMO_ROLES, Sandbox, SandboxSettings

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on a 60 s window boundary


class FakeClock:
    """An injectable clock (``sb.clock``) that only moves when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def small_settings(**overrides: Any) -> SandboxSettings:
    """Small, fast settings for tests."""
    values: dict[str, Any] = {
        "customers": 60,
        "companies": 12,
        "users": 8,
        "teams": 3,
        "bulk_processing_seconds": 0.0,
        "webhook_retry_base_seconds": 0.005,
    }
    values.update(overrides)
    return SandboxSettings(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> SandboxSettings:
    return small_settings()


@pytest.fixture
def sb(settings: SandboxSettings, clock: FakeClock) -> Sandbox:
    return Sandbox(settings, clock=clock)


@pytest.fixture
def token(sb: Sandbox) -> str:
    return sb.mint_api_key(roles=DEFAULT_DEMO_ROLES, name="all roles")


def make_client(sb: Sandbox, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=sb.transport(), base_url=sb.base_url, headers=headers, **kwargs)


@pytest.fixture
async def client(sb: Sandbox, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(sb, token) as c:
        yield c


ClientFactory = Callable[[Sequence[str]], httpx.AsyncClient]


@pytest.fixture
async def client_with_roles(sb: Sandbox) -> AsyncIterator[ClientFactory]:
    """``client_with_roles(["org.user.customer.read"])`` -> a client whose key holds only those roles."""
    opened: list[httpx.AsyncClient] = []

    def factory(roles: Sequence[str]) -> httpx.AsyncClient:
        c = make_client(sb, sb.mint_api_key(roles=list(roles), name="limited"))
        opened.append(c)
        return c

    yield factory
    for c in opened:
        await c.aclose()


def first_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "errors" in body, body
    error: dict[str, Any] = body["errors"][0]
    return error


def error_text(response: httpx.Response) -> str:
    error = first_error(response)
    return str(error.get("detail") or error.get("message"))
