"""Running the sandbox over real HTTP: ``serve()`` (foreground) and ``running_sandbox()`` (tests)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from connectors.kustomer.sandbox.app import Sandbox
from connectors.kustomer.sandbox.auth import DEFAULT_DEMO_ROLES
from connectors.kustomer.sandbox.settings import SandboxSettings

__all__ = ["running_sandbox", "serve"]


def serve(settings: SandboxSettings | None = None, host: str = "127.0.0.1", port: int = 8900) -> None:
    """Run the sandbox with uvicorn until interrupted; print the base URL and a ready all-roles API key.

    Args:
        settings: sandbox settings (defaults apply).
        host: interface to bind.
        port: TCP port.
    """
    sandbox = Sandbox(settings, base_url=f"http://{host}:{port}")
    token = sandbox.mint_api_key(roles=DEFAULT_DEMO_ROLES, name="sandbox demo key")
    print(f"Kustomer sandbox listening on {sandbox.base_url}")
    print(f"  org: {sandbox.state.org.name} ({sandbox.state.org.id}), region {sandbox.settings.region}")
    print(f"  API key (all roles): {token}")
    print(f"  docs: {sandbox.base_url}/docs   admin: {sandbox.base_url}/sandbox")
    uvicorn.run(sandbox.app, host=host, port=port, log_level="info", lifespan="off", ws="none")


@contextlib.contextmanager
def running_sandbox(
    settings: SandboxSettings | None = None, *, sandbox: Sandbox | None = None, startup_timeout: float = 10.0
) -> Iterator[tuple[Sandbox, str]]:
    """Serve a sandbox with uvicorn on ``127.0.0.1`` and a free port in a background thread.

    Args:
        settings: settings of a new sandbox (ignored when ``sandbox`` is given).
        sandbox: an existing sandbox to serve instead.
        startup_timeout: seconds to wait for the server to accept connections.

    Yields:
        ``(sandbox, base_url)``; ``sandbox.base_url`` is set to ``base_url``.

    Raises:
        RuntimeError: the server did not start in time.
    """
    sb = sandbox if sandbox is not None else Sandbox(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    previous_base = sb.base_url
    sb.base_url = base_url
    config = uvicorn.Config(
        sb.app, log_level="warning", lifespan="off", ws="none", http="h11", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="kustomer-sandbox", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Kustomer sandbox server did not start")
            time.sleep(0.005)
        yield sb, base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        sb.base_url = previous_base
