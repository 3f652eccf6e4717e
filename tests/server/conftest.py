"""Fixtures of the host-app tests: an app on the in-process sandbox, clients per kind of caller, live servers."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from connectors import Connection, Connectors, Settings
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from connectors.server import ServerConfig, create_app

if TYPE_CHECKING:
    from .fakes import FakeWebhookHub

OPERATOR_KEY = "operator-key-for-tests-0123456789"
PUBLIC_URL = "http://testserver"
CLIENT_ID = "server-tests-client"
CLIENT_SECRET = "server-tests-secret"
REMOTE = ("203.0.113.7", 40000)  # a non-loopback client address


def operator(owner: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}", **extra}
    if owner is not None:
        headers["X-Connectors-Owner"] = owner
    return headers


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


@pytest.fixture
def sb() -> Sandbox:
    sandbox = Sandbox(SandboxSettings(customers=60, companies=12, users=8, teams=3))
    sandbox.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [f"{PUBLIC_URL}/oauth/callback"])
    return sandbox


@pytest.fixture
def store() -> Iterator[ConnectionStore]:
    opened = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    yield opened
    opened.close()


@pytest.fixture
def settings(sb: Sandbox) -> Settings:
    return Settings(
        public_url=PUBLIC_URL,
        kustomer={"base_url": sb.base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )


@pytest.fixture
async def server_hub(settings: Settings, store: ConnectionStore, sb: Sandbox) -> AsyncIterator[Connectors]:
    hub = Connectors(settings=settings, store=store, transport=sb.transport())
    yield hub
    await hub.aclose()


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(poll_interval=0)


@pytest.fixture
async def app(server_hub: Connectors, server_config: ServerConfig) -> AsyncIterator[FastAPI]:
    application = create_app(hub=server_hub, config=server_config, operator_key=OPERATOR_KEY)
    async with application.router.lifespan_context(application):
        yield application


def make_client(app: FastAPI, *, client: tuple[str, int] = REMOTE, base_url: str = PUBLIC_URL) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as c:
        yield c


@pytest.fixture
async def conn_a(server_hub: Connectors, sb: Sandbox) -> Connection:
    """Owner tenant-a, every role."""
    return await server_hub.connect("kustomer", "tenant-a", api_key=sb.mint_api_key(name="a"), base_url=sb.base_url)


@pytest.fixture
async def conn_b(server_hub: Connectors, sb: Sandbox) -> Connection:
    """Owner tenant-b, every role (the same sandbox org: isolation is ours, not Kustomer's)."""
    return await server_hub.connect("kustomer", "tenant-b", api_key=sb.mint_api_key(name="b"), base_url=sb.base_url)


@pytest.fixture
def fake(server_hub: Connectors, monkeypatch: pytest.MonkeyPatch) -> FakeWebhookHub:
    """The webhooks hub replaced by a faithful fake (routes tested on their own)."""
    from .fakes import FakeConnectionWebhooks, FakeWebhookHub

    hub = FakeWebhookHub()
    monkeypatch.setattr(server_hub, "_webhooks", hub)
    monkeypatch.setattr(Connection, "webhooks", property(lambda self: FakeConnectionWebhooks(self)))
    FakeConnectionWebhooks.registry = {}
    return hub


@pytest.fixture
def mint(client: httpx.AsyncClient) -> Callable[..., Any]:
    async def mint_session(owner: str, operations: list[str] | None = None, ttl: float | None = None) -> str:
        body: dict[str, Any] = {"ownerId": owner}
        if operations is not None:
            body["operations"] = operations
        if ttl is not None:
            body["ttlSeconds"] = ttl
        response = await client.post("/sessions", json=body, headers=operator())
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    return mint_session


# -- live servers ---------------------------------------------------------------------------------------------
def free_socket() -> tuple[socket.socket, int]:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose listener says TCP, and
    # without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return sock, port


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, sock: socket.socket, *, startup_timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` (lifespan included) with uvicorn on ``sock`` in a background thread."""
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", http="h11", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="host-app", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the host app did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextlib.contextmanager
def embedded_server(
    home: Path, *, customers: int = 40, operator_key: str | None = OPERATOR_KEY, loopback: bool = False
) -> Iterator[tuple[str, FastAPI]]:
    """The embedded demo (sandbox mounted, demo owner connected) on a live loopback port."""
    from connectors.server import EmbeddedOptions

    sock, port = free_socket()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(home=home, public_url=base, operator_key=operator_key)
    config = ServerConfig(loopback_owner="demo" if loopback else None, sse_heartbeat_seconds=0.2)
    app = create_app(
        settings=settings,
        config=config,
        embedded=EmbeddedOptions(customers=customers, companies=8, users=4, teams=2),
    )
    with serve_in_thread(app, sock) as url:
        yield url, app


# -- `connectors serve` in a subprocess -----------------------------------------------------------------------
SERVE_ENV_DROP = ("KUSTOMER_", "CONNECTORS_")


def serve_env(**values: str) -> dict[str, str]:
    """The current environment without any KUSTOMER_*/CONNECTORS_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVE_ENV_DROP)}
    env.update(values)
    return env


@contextlib.contextmanager
def serve_process(args: list[str], env: dict[str, str], cwd: Path, url: str, *, timeout: float = 90.0) -> Iterator[Any]:
    """Run ``connectors serve ARGS`` until ``url``/healthz answers 200; stop it (its whole group) afterwards."""
    import signal
    import subprocess
    import sys

    log = (cwd / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from connectors.cli import main; main()", "serve", *args],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"connectors serve exited with {proc.returncode}: {(cwd / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"connectors serve did not start: {(cwd / 'serve.log').read_text()}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
