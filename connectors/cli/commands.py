r"""``connectors commands``: validate an app definition and try its commands locally before publishing.

::

    connectors commands validate app.json
    connectors commands run app.json ecommstore.app.store.refundOrder \
        --arg store=dunder-mifflin --body '{"foo": "bar"}' \
        --header 'Authorization: Bearer {{authToken}}' --setting ecommstore.default.authToken=s3cret

Failures print one ``error: ...`` line on stderr and exit with status 1; with ``--json`` the JSON document on
stdout says what failed instead. Setting values are secrets: they are never printed. Heavy imports happen
inside the commands, so ``connectors --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from connectors.cli._common import fail, print_json

if TYPE_CHECKING:
    import httpx
    from rich.table import Table

    from connectors.kustomer.commands import AppDefinition, CommandResult

__all__ = ["app", "build_app"]

_JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document instead of text.")]
_AppFile = Annotated[Path, typer.Argument(help="App definition JSON file.", show_default=False)]
_Name = Annotated[str, typer.Argument(help="Command name (with or without '.app.').", show_default=False)]
_Args = Annotated[list[str] | None, typer.Option("--arg", help="NAME=VALUE for a permitted arg.")]
_Body = Annotated[str | None, typer.Option("--body", help="JSON request body.")]
_Headers = Annotated[list[str] | None, typer.Option("--header", "-H", help="'Name: value' header (templated).")]
_Settings = Annotated[list[str] | None, typer.Option("--setting", help="KEY=VALUE app setting (secret).")]
_Org = Annotated[str, typer.Option("--org", help="Org id the run is made for.")]
_Timeout = Annotated[float, typer.Option("--timeout", help="Request timeout in seconds.")]


def _fail(message: str, *, as_json: bool, document: dict[str, Any] | None = None) -> NoReturn:
    if not as_json:
        fail(message)
    print_json(document if document is not None else {"ok": False, "error": message})
    raise typer.Exit(1)


def _load_json(path: Path, *, as_json: bool) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}", as_json=as_json)
    except ValueError as exc:
        _fail(f"{path} is not valid JSON: {exc}", as_json=as_json)


def _pairs(values: list[str] | None, *, option: str, separator: str, as_json: bool) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        key, found, rest = value.partition(separator)
        if not found or not key.strip():
            # Never echo the value: --setting values are secrets.
            _fail(
                f"{option} expects {'NAME=VALUE' if separator == '=' else repr('Name: value')}",
                as_json=as_json,
            )
        pairs[key.strip()] = rest.strip() if separator == ":" else rest
    return pairs


def _commands_table(app_definition: AppDefinition) -> Table:
    from rich.table import Table

    table = Table("method", "args", "cacheSeconds", "audit")
    table.add_column("command", overflow="fold")
    table.add_column("url", overflow="fold")
    for command in app_definition.commands:
        table.add_row(
            command.http_method,
            ", ".join(command.permitted_args) or "-",
            "-" if command.cache_seconds is None else f"{command.cache_seconds:g}",
            "yes" if command.audit_logging else "no",
            command.name,
            command.url,
        )
    return table


def _print_result(result: CommandResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result.to_json())
        if not result.ok:
            raise typer.Exit(1)
        return
    if not result.ok:
        detail = "" if result.body is None else f": {json.dumps(result.body)[:200]}"
        fail(f"{result.command}: {result.error}{detail}")
    from rich.console import Console

    console = Console()
    age = "" if result.cache_age_seconds is None else f", {result.cache_age_seconds:.0f}s old"
    console.print(f"{result.command}: {result.status} ({result.source}{age})", soft_wrap=True)
    if isinstance(result.body, str):
        console.print(result.body, markup=False, highlight=False, soft_wrap=True)
    elif result.body is not None:
        console.print_json(data=result.body)


def build_app(*, transport: httpx.AsyncBaseTransport | None = None) -> typer.Typer:
    """Build the ``commands`` sub-app.

    Args:
        transport: httpx transport for requests to command targets (tests, proxies); None uses the network.

    Returns:
        The Typer sub-app with ``validate`` and ``run``.
    """
    cli = typer.Typer(help="Validate Kustomer app definitions and try their commands locally.", no_args_is_help=True)

    @cli.command()
    def validate(path: _AppFile, as_json: _JsonOption = False) -> None:
        """Check an app definition's commands against every documented rule."""
        from rich.console import Console

        from connectors.kustomer.commands import AppDefinition, definition_errors

        data = _load_json(path, as_json=as_json)
        errors = definition_errors(data)
        if errors:
            problems = [{"path": e.path, "message": e.message.removeprefix(f"{e.path}: ")} for e in errors]
            if as_json:
                _fail("", as_json=True, document={"valid": False, "errors": problems})
            for error in errors[1:]:
                typer.echo(f"  {error.message}", err=True)
            more = f" (and {len(errors) - 1} more, listed above)" if len(errors) > 1 else ""
            fail(f"{path}: {errors[0].message}{more}")
        app_definition = AppDefinition.model_validate(data)
        names = [command.name for command in app_definition.commands]
        if as_json:
            print_json({"valid": True, "app": app_definition.app, "commands": names})
            return
        console = Console()
        summary = f"{path}: app {app_definition.app!r} is valid ({len(names)} command{'s' * (len(names) != 1)})"
        console.print(summary, soft_wrap=True, markup=False, highlight=False)
        if names:
            console.print(_commands_table(app_definition))

    @cli.command()
    def run(
        path: _AppFile,
        name: _Name,
        arg: _Args = None,
        body: _Body = None,
        header: _Headers = None,
        setting: _Settings = None,
        org: _Org = "default",
        timeout: _Timeout = 30.0,
        as_json: _JsonOption = False,
    ) -> None:
        """Run one command of an app definition against its real target."""
        from connectors.errors import CommandDefinitionError, CommandError
        from connectors.kustomer.commands import (
            CommandRegistry,
            CommandRunner,
            InMemoryAppSettings,
            SyncCommandRunner,
        )

        data = _load_json(path, as_json=as_json)
        try:
            registry = CommandRegistry([data])
        except CommandDefinitionError as exc:
            hint = "run 'connectors commands validate' for every problem"
            _fail(f"{path}: {exc.message} ({hint})", as_json=as_json)
        args = _pairs(arg, option="--arg", separator="=", as_json=as_json)
        headers = _pairs(header, option="--header", separator=":", as_json=as_json)
        settings = _pairs(setting, option="--setting", separator="=", as_json=as_json)
        payload: Any = None
        if body is not None:
            try:
                payload = json.loads(body)
            except ValueError as exc:
                _fail(f"--body is not valid JSON: {exc}", as_json=as_json)
        runner = CommandRunner(
            registries=registry,
            settings=InMemoryAppSettings({org: settings}),
            transport=transport,
            timeout=timeout,
        )
        try:
            result = SyncCommandRunner(runner).run(name, org_id=org, body=payload, headers=headers, args=args)
        except CommandError as exc:
            _fail(exc.message, as_json=as_json)
        _print_result(result, as_json=as_json)

    return cli


app = build_app()
"""The ``commands`` sub-app (the root CLI adds it with ``add_typer(app, name="commands")``)."""
