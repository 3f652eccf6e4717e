"""Serve a Kustomer sandbox for the benchmarks: ``python -m benchmarks._sandbox_server SETTINGS_JSON``.

Binds ``127.0.0.1`` on a free port, seeds the sandbox from the given settings, mints an all-roles API key and
prints one JSON line ``{"base_url", "api_key", "org_id", "seed_seconds"}`` on stdout once the socket
listens, then serves with uvicorn (no access log) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import socket
import sys
import time

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Seed, announce the base URL and key on stdout, and serve."""
    args = sys.argv[1:] if argv is None else argv
    raw = json.loads(args[0]) if args else {}
    import uvicorn

    from connectors.kustomer.sandbox import Sandbox, SandboxSettings

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections queue in the backlog until uvicorn accepts them
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    start = time.perf_counter()
    sandbox = Sandbox(SandboxSettings.model_validate(raw), base_url=base_url)
    seed_seconds = time.perf_counter() - start
    key = sandbox.mint_api_key(name="benchmarks")
    ready = {"base_url": base_url, "api_key": key, "org_id": sandbox.state.org.id, "seed_seconds": seed_seconds}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    config = uvicorn.Config(
        sandbox.app, log_level="warning", access_log=False, lifespan="off", ws="none", timeout_graceful_shutdown=1
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
