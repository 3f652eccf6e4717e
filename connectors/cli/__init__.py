"""The ``connectors`` command line.

Each area is a Typer sub-app in its own module; heavy imports happen inside the commands so that
``connectors --help`` stays fast. Errors print one ``error: ...`` line and exit non-zero; ``--debug`` (or
``CONNECTORS_DEBUG=1``) shows tracebacks instead.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from connectors.cli import connections, kustomer, resources, server
from connectors.cli import sync as sync_cli
from connectors.cli.commands import app as commands_app
from connectors.cli.webhooks import app as webhooks_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="connectors",
    help="unified-connectors: Kustomer through unified models, with auth, proxy, webhooks and bulk sync.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    if debug:
        os.environ["CONNECTORS_DEBUG"] = "1"


server.register(app)
app.add_typer(connections.app, name="connections")
app.add_typer(resources.app, name="resources")
app.registered_commands.extend(resources.proxy_app.registered_commands)
app.add_typer(kustomer.app, name="kustomer")
app.add_typer(commands_app, name="commands")
app.add_typer(sync_cli.app, name="sync")
app.add_typer(webhooks_app, name="webhooks")


def main() -> None:
    """Run the ``connectors`` command line (the ``connectors`` console script)."""
    app()
