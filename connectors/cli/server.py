"""``connectors serve`` (the host app) and ``connectors sandbox`` (a local Kustomer)."""

from __future__ import annotations

from typing import Annotated

import typer

from connectors.cli._common import handle_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``sandbox`` to the root app."""
    app.command("serve")(serve)
    app.command("sandbox")(sandbox)


@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (needs PostgreSQL + Redis for >1).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the host app: unified REST API, connections, OAuth, proxy, webhooks.

    With no Kustomer credentials configured it starts on the embedded default: a SQLite store and an
    in-process Kustomer sandbox, seeded, with a ready demo connection.
    """
    from connectors.server.run import serve as run_server

    run_server(host=host, port=port, workers=workers, log_level=log_level)


@handle_errors
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8900,
    customers: Annotated[int, typer.Option(help="Seeded customers.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed of the seed data.")] = 42,
    org: Annotated[str, typer.Option(help="Org name.")] = "acme",
    region: Annotated[str, typer.Option(help="Region/pod the sandbox pretends to be (us, eu, in).")] = "us",
    latency_ms: Annotated[float, typer.Option(help="Added latency per request (ms).")] = 0.0,
    rate_limit: Annotated[int, typer.Option(help="Org requests per minute.")] = 1000,
) -> None:
    """Run a local Kustomer API (the sandbox) and print its base URL and a ready API key."""
    from connectors.kustomer.sandbox import SandboxSettings
    from connectors.kustomer.sandbox import serve as run_sandbox

    settings = SandboxSettings(
        customers=customers,
        seed=seed,
        org_name=org,
        region=region,
        latency_ms=latency_ms,
        rate_limit_per_minute=rate_limit,
    )
    run_sandbox(settings, host=host, port=port)
