"""Fixtures of the runtime tests: OAuth consent against the sandbox, a controllable clock, clean hubs.

Helpers are handed out as fixtures (test modules cannot import a ``conftest`` under ``--import-mode=importlib``).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors import Connection, Connectors, Settings
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

CLIENT_ID = "unified-connectors-test"
CLIENT_SECRET = "test-client-secret"
REDIRECT_URI = "https://app.example.com/oauth/callback"


@dataclass
class FakeClock:
    """Epoch seconds that move only when told to (shared by a sandbox and a hub)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Redirect:
    """Where the consent page sent the browser back to."""

    url: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        return self.params.get("code")

    @property
    def state(self) -> str:
        return self.params["state"]


ConsentFn = Callable[..., Awaitable[Redirect]]


async def run_consent(url: str, *, approve: bool = True, transport: httpx.AsyncBaseTransport | None = None) -> Redirect:
    """Play the user: open the consent page, press Approve (or Deny), follow nothing, read the redirect."""
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
        page = await client.get(url)
        assert page.status_code == 200, page.text
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert request_id and csrf, page.text
        parts = urlsplit(url)
        decision = await client.post(
            f"{parts.scheme}://{parts.netloc}{parts.path}",
            data={
                "request_id": request_id.group(1),
                "csrf_token": csrf.group(1),
                "decision": "approve" if approve else "deny",
            },
        )
    assert decision.status_code == 302, decision.text
    location = decision.headers["location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return Redirect(location, params)


@pytest.fixture
def run_consent_fn() -> Callable[..., Awaitable[Redirect]]:
    """:func:`run_consent` itself (for sandboxes other than the shared one)."""
    return run_consent


@pytest.fixture
def consent(sandbox: Sandbox) -> ConsentFn:
    """``await consent(url, approve=True)``: the consent step against the in-process ``sandbox``."""
    sandbox.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])

    async def go(url: str, *, approve: bool = True) -> Redirect:
        return await run_consent(url, approve=approve, transport=sandbox.transport())

    return go


OAuthConnectFn = Callable[..., Awaitable[Connection]]


@pytest.fixture
def oauth_connect(consent: ConsentFn, sandbox: Sandbox) -> OAuthConnectFn:
    """``await oauth_connect(hub, owner, operations)``: authorize, approve and complete; returns the connection."""

    async def go(hub: Connectors, owner: str, operations: Sequence[str], **kwargs: Any) -> Connection:
        kwargs.setdefault("base_url", sandbox.base_url)
        request = await hub.authorize("kustomer", owner, operations=operations, redirect_uri=REDIRECT_URI, **kwargs)
        assert request.url is not None
        redirect = await consent(request.url)
        return await hub.complete_authorization(code=redirect.code, state=redirect.state)

    return go


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked_sandbox(clock: FakeClock) -> Sandbox:
    """A small sandbox on the fake clock, with short OAuth lifetimes and the test OAuth client."""
    sb = Sandbox(
        SandboxSettings(
            customers=10,
            companies=2,
            users=3,
            teams=1,
            oauth_access_token_ttl_seconds=600,
            oauth_refresh_idle_seconds=3600,
        ),
        clock=clock,
    )
    sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    return sb


@pytest.fixture
async def clocked_hub(
    clocked_sandbox: Sandbox, clock: FakeClock, memory_store: ConnectionStore
) -> AsyncIterator[Connectors]:
    """A hub on the fake clock talking to ``clocked_sandbox`` (refresh margin 60 s)."""
    hub = Connectors(
        settings=Settings(refresh_margin=60, kustomer={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        store=memory_store,
        transport=clocked_sandbox.transport(),
        clock=clock,
    )
    yield hub
    await hub.aclose()


@pytest.fixture
def clocked_connect(clocked_hub: Connectors, clocked_sandbox: Sandbox) -> Callable[..., Awaitable[Connection]]:
    """``await clocked_connect(owner, operations)``: an OAuth connection on the clocked hub."""

    async def go(owner: str = "tenant-o", operations: Sequence[str] = ("genericUser::list",)) -> Connection:
        request = await clocked_hub.authorize(
            "kustomer", owner, operations=operations, redirect_uri=REDIRECT_URI, base_url=clocked_sandbox.base_url
        )
        assert request.url is not None
        redirect = await run_consent(request.url, transport=clocked_sandbox.transport())
        return await clocked_hub.complete_authorization(code=redirect.code, state=redirect.state)

    return go


@pytest.fixture
def file_store(tmp_path: Any) -> Iterator[Callable[..., ConnectionStore]]:
    """``file_store(**kw)``: a SQLite file store (real cross-connection locking), closed at the end."""
    opened: list[ConnectionStore] = []
    key = os.urandom(32)

    def make(**kwargs: Any) -> ConnectionStore:
        store = ConnectionStore(f"sqlite:///{tmp_path / 'connectors.db'}", secret_box=SecretBox(key), **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
