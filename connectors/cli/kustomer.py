"""``connectors kustomer``: Kustomer-specific commands (roles to grant, CRM Klass provisioning)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from connectors.cli._common import handle_errors, print_json, run
from connectors.cli.connections import print_roles

__all__ = ["app"]

app = typer.Typer(help="Kustomer-specific commands.", no_args_is_help=True)


@app.command("roles")
@handle_errors
def roles(
    operations: Annotated[list[str] | None, typer.Argument(help="Operations, e.g. genericContact::list.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the Kustomer roles to grant an API key for the given operations (all when none given)."""
    print_roles("kustomer", list(operations or []), as_json=as_json)


@app.command("provision")
@handle_errors
def provision(
    owner: Annotated[str, typer.Option("--owner", "-o", help="The tenant whose org to provision.")],
    label: Annotated[str, typer.Option("--label", help="Connection label.")] = "",
    model: Annotated[
        list[str] | None, typer.Option("--model", help="CRM model to provision (default: all three).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create the CRM Klasses and their attributes in the owner's Kustomer org (idempotent)."""
    from connectors.kustomer.provision import provision_crm
    from connectors.runtime.connection import Connectors

    async def go() -> dict[str, Any]:
        async with Connectors(embedded=True) as hub:
            conn = await hub.get("kustomer", owner, label)
            report = await provision_crm(conn, models=model or None)
            return report.to_dict()

    report = run(go())
    if as_json:
        print_json(report)
        return
    console = Console()
    for line in report["lines"]:
        console.print(line)
