"""``connectors webhooks``: subscribe to unified events, list and remove subscriptions, poll, post to hooks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from connectors.cli._common import fail, handle_errors, print_json, run

if TYPE_CHECKING:
    from connectors.runtime.connection import Connection, Connectors

__all__ = ["app"]

app = typer.Typer(
    help="Webhooks: subscribe to unified events (native or polled), poll virtual webhooks, post to Kustomer hooks.",
    no_args_is_help=True,
)

Owner = Annotated[str, typer.Option("--owner", "-o", help="The tenant (owner id).")]
ConnectorOpt = Annotated[str, typer.Option("--connector", "-c", help="Connector id.")]
Label = Annotated[str, typer.Option("--label", help="Label, when an owner has several connections.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Events = Annotated[
    list[str],
    typer.Option("--event", "-e", help="Unified event, e.g. genericContact::created, genericCompany::* (repeatable)."),
]


async def _connection(hub: Connectors, connector: str, owner: str, label: str) -> Connection:
    return await hub.get(connector, owner, label)


def _hub() -> Connectors:
    from connectors.runtime.connection import Connectors

    return Connectors(embedded=True)


@app.command("subscribe")
@handle_errors
def subscribe(
    owner: Owner,
    event: Events,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="Where Kustomer POSTs deliveries (your POST /webhooks/kustomer); omit to poll everything."
        ),
    ] = None,
    connector: ConnectorOpt = "kustomer",
    label: Label = "",
    as_json: AsJson = False,
) -> None:
    """Subscribe an owner's connection to unified events (idempotent)."""

    async def go() -> list[dict[str, Any]]:
        async with _hub() as hub:
            conn = await _connection(hub, connector, owner, label)
            return [s.to_dict() for s in await conn.webhooks.subscribe(event, url=url)]

    rows = run(go())
    if as_json:
        print_json(rows)
        return
    for row in rows:
        how = f"native (webhook {row['kustomerWebhookId']})" if row["native"] else "polled"
        typer.echo(f"{row['event']}: {how}")


@app.command("ls")
@handle_errors
def ls(owner: Owner, connector: ConnectorOpt = "kustomer", label: Label = "", as_json: AsJson = False) -> None:
    """List an owner's subscriptions."""

    async def go() -> list[dict[str, Any]]:
        async with _hub() as hub:
            conn = await _connection(hub, connector, owner, label)
            return [s.to_dict() for s in await conn.webhooks.list()]

    rows = run(go())
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"{owner} has no webhook subscriptions")
    for row in rows:
        how = "native" if row["native"] else "polled"
        typer.echo(f"{row['event']}\t{how}\t{row['kustomerWebhookId'] or '-'}\t{row['createdAt']}")


@app.command("unsubscribe")
@handle_errors
def unsubscribe(
    owner: Owner,
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Event or pattern to remove (repeatable; default: all).")
    ] = None,
    connector: ConnectorOpt = "kustomer",
    label: Label = "",
) -> None:
    """Remove subscriptions (all of them without --event); unused Kustomer webhooks are deleted."""

    async def go() -> int:
        async with _hub() as hub:
            conn = await _connection(hub, connector, owner, label)
            return await conn.webhooks.unsubscribe(event or None)

    count = run(go())
    typer.echo(f"removed {count} subscription(s)")


@app.command("poll")
@handle_errors
def poll(
    owner: Owner,
    connector: ConnectorOpt = "kustomer",
    label: Label = "",
    watch: Annotated[bool, typer.Option("--watch", help="Keep polling until interrupted.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between rounds with --watch.", min=0.1)] = 60.0,
) -> None:
    """Run virtual-webhook rounds for an owner's connection; print each event as a JSON line."""
    import asyncio

    async def go() -> None:
        async with _hub() as hub:
            conn = await _connection(hub, connector, owner, label)
            while True:
                for event in await conn.webhooks.poll():
                    sys.stdout.write(event.model_dump_json() + "\n")
                sys.stdout.flush()
                if not watch:
                    return
                await asyncio.sleep(interval)

    try:
        run(go())
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("send-hook")
@handle_errors
def send_hook(
    owner: Owner,
    hook_url: Annotated[str, typer.Argument(help="The hook's URL (…/v1/hooks/web/<hash>), path or hash.")],
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON payload.")] = None,
    data_file: Annotated[
        Path | None, typer.Option("--data-file", help="Read the JSON payload from a file ('-': stdin).")
    ] = None,
    connector: ConnectorOpt = "kustomer",
    label: Label = "",
) -> None:
    """Post a JSON payload to a Kustomer inbound web hook (role org.hooks; at most 400 kb)."""
    if (data is None) == (data_file is None):
        fail("give exactly one of --data or --data-file")
    if data_file is not None:
        text = sys.stdin.read() if str(data_file) == "-" else data_file.read_text(encoding="utf-8")
    else:
        text = data or ""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"the payload is not valid JSON: {exc}")

    async def go() -> dict[str, Any]:
        from connectors.kustomer.webhooks import send_to_hook

        async with _hub() as hub:
            conn = await _connection(hub, connector, owner, label)
            result = await send_to_hook(conn, hook_url, payload)
            return result.to_dict()

    print_json(run(go()))
