"""``connectors connections``: add, list, remove connections; print the roles operations need."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from connectors.cli._common import fail, handle_errors, print_json, run

__all__ = ["app", "print_roles"]

app = typer.Typer(help="Manage connections (one per tenant and connector).", no_args_is_help=True)

Owner = Annotated[str, typer.Option("--owner", "-o", help="The tenant (owner id).")]
Connector = Annotated[str, typer.Option("--connector", "-c", help="Connector id.")]
Label = Annotated[str, typer.Option("--label", help="Label, when an owner has several connections.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def print_roles(connector_id: str, operations: list[str], *, as_json: bool) -> None:
    """Print the roles ``operations`` need (what to grant an API key / what OAuth requests)."""
    from connectors.registry import default_registry

    cls = default_registry().connector(connector_id)
    table_ops = cls.operations()
    unknown = [name for name in operations if name not in table_ops]
    if unknown:
        import difflib

        hints = [
            name + (f" (did you mean {m[0]}?)" if (m := difflib.get_close_matches(name, list(table_ops), n=1)) else "")
            for name in unknown
        ]
        fail(f"unknown operation(s): {', '.join(hints)}")
    chosen = operations or sorted(table_ops)
    roles = cls.roles_for(chosen)
    if as_json:
        print_json({"operations": chosen, "roles": list(roles)})
        return
    console = Console()
    table = Table(title=f"{cls.display_name} roles to grant")
    table.add_column("operation")
    table.add_column("roles (any one of each group; the first is the one to grant)")
    for name in chosen:
        op = table_ops[name]
        table.add_row(name, "\n".join(" | ".join(choice) for choice in op.requires) or "(none)")
    console.print(table)
    console.print("Grant these roles to the API key:")
    for role in roles:
        console.print(f"  {role}")


@app.command("roles")
@handle_errors
def roles_cmd(
    operations: Annotated[list[str] | None, typer.Argument(help="Operations, e.g. genericContact::list.")] = None,
    connector: Connector = "kustomer",
    as_json: AsJson = False,
) -> None:
    """Print the roles the given operations need (all operations when none are given)."""
    print_roles(connector, list(operations or []), as_json=as_json)


@app.command("add")
@handle_errors
def add(
    owner: Owner,
    connector: Connector = "kustomer",
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="Environment variable holding the API key.")
    ] = "KUSTOMER_API_KEY",
    region: Annotated[str | None, typer.Option(help="us | eu | in")] = None,
    org: Annotated[str | None, typer.Option(help="Org subdomain (acme -> acme.api.kustomerapp.com).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Explicit API base URL (a sandbox).")] = None,
    label: Label = "",
    operation: Annotated[
        list[str] | None, typer.Option("--operation", help="Operation to allow (repeatable; default: all granted).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Connect an owner with an API key (read from --api-key-env, else prompted without echo)."""
    from connectors.runtime.connection import Connectors

    api_key = os.environ.get(api_key_env) or typer.prompt("Kustomer API key", hide_input=True)

    async def go() -> dict[str, object]:
        async with Connectors(embedded=True) as hub:
            conn = await hub.connect(
                connector,
                owner,
                api_key=api_key,
                region=region,
                org=org,
                base_url=base_url,
                label=label,
                operations=operation,
            )
            return conn.info.to_dict()

    info = run(go())
    if as_json:
        print_json(info)
    else:
        typer.echo(f"connected {owner} to {connector} ({len(info['operations'])} operations)")  # type: ignore[arg-type]


@app.command("ls")
@handle_errors
def ls(
    owner: Annotated[str | None, typer.Option("--owner", "-o", help="Only this owner.")] = None,
    as_json: AsJson = False,
) -> None:
    """List connections (never their secrets)."""
    from connectors.runtime.connection import Connectors

    async def go() -> list[dict[str, object]]:
        async with Connectors(embedded=True) as hub:
            return [info.to_dict() for info in await hub.list(owner_id=owner)]

    rows = run(go())
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("owner", "connector", "label", "auth", "status", "region/base", "operations"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["ownerId"]),
            str(row["connectorId"]),
            str(row["label"]),
            str(row["authType"]),
            str(row["status"]),
            str(row["region"] or row["baseUrl"]),
            str(len(row["operations"])),  # type: ignore[arg-type]
        )
    Console().print(table)


@app.command("rm")
@handle_errors
def rm(owner: Owner, connector: Connector = "kustomer", label: Label = "") -> None:
    """Delete a connection and its secrets."""
    from connectors.runtime.connection import Connectors

    async def go() -> bool:
        async with Connectors(embedded=True) as hub:
            return await hub.disconnect(connector, owner, label)

    if not run(go()):
        fail(f"owner {owner!r} has no {connector} connection")
    typer.echo(f"removed the {connector} connection of {owner}")
