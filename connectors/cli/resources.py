"""``connectors resources``: list, get, create, update and delete unified records of a connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from connectors.cli._common import fail, handle_errors, print_json, run

__all__ = ["app", "parse_data", "parse_filters"]

app = typer.Typer(help="Read and write unified records (genericContact, crmOpportunity, ...).", no_args_is_help=True)

Model = Annotated[str, typer.Argument(help="Unified model id, e.g. genericContact or custom:order.")]
Owner = Annotated[str, typer.Option("--owner", "-o", help="The tenant (owner id).")]
Connector = Annotated[str, typer.Option("--connector", "-c", help="Connector id.")]
Label = Annotated[str, typer.Option("--label", help="Connection label.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Data = Annotated[str, typer.Option("--data", "-d", help="JSON object, or @file.json.")]


def parse_filters(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, lists, objects) is taken as JSON."""
    filters: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--filter expects key=value, got {item!r}")
        try:
            filters[key] = json.loads(value)
        except json.JSONDecodeError:
            filters[key] = value
    return filters


def parse_data(data: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@path``."""
    text = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--data is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    if not isinstance(value, dict):
        fail("--data must be a JSON object")
    return value


def _dump(obj: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = obj.model_dump(mode="json", exclude_none=True)
    return dumped


def _table(model: str, rows: list[dict[str, Any]]) -> None:
    preferred = ["id", "name", "firstName", "lastName", "email", "title", "type", "status", "updatedAt"]
    columns = [c for c in preferred if any(c in r for r in rows)][:6] or ["id"]
    table = Table(title=model)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    Console().print(table)


async def _connection(connector: str, owner: str, label: str) -> Any:
    from connectors.runtime.connection import Connectors

    hub = Connectors(embedded=True)
    return hub, await hub.get(connector, owner, label)


@app.command("list")
@handle_errors
def list_cmd(
    model: Model,
    owner: Owner,
    connector: Connector = "kustomer",
    label: Label = "",
    limit: Annotated[int, typer.Option(help="Records per page.")] = 20,
    filter_: Annotated[list[str] | None, typer.Option("--filter", "-f", help="key=value (repeatable).")] = None,
    q: Annotated[str | None, typer.Option(help="Free-text search.")] = None,
    sort: Annotated[str | None, typer.Option(help="updatedAt, -updatedAt, createdAt, -createdAt.")] = None,
    cursor: Annotated[str | None, typer.Option(help="Cursor from a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    as_json: AsJson = False,
) -> None:
    """List (and search) records."""
    filters = parse_filters(filter_)

    async def go() -> tuple[list[dict[str, Any]], str | None]:
        hub, conn = await _connection(connector, owner, label)
        async with hub:
            resources = conn.resources(model)
            if all_pages:
                rows = [_dump(o) async for o in resources.iter(filters=filters, q=q, sort=sort, page_size=limit)]
                return rows, None
            page = await resources.list(limit=limit, cursor=cursor, filters=filters, q=q, sort=sort)
            return [_dump(o) for o in page.data], page.next

    rows, next_cursor = run(go())
    if as_json:
        print_json({"object": "list", "data": rows, "next": next_cursor})
        return
    _table(model, rows)
    if next_cursor:
        typer.echo(f"next page: --cursor {next_cursor}")


@app.command("get")
@handle_errors
def get(
    model: Model,
    id: Annotated[str, typer.Argument(help="Record id.")],
    owner: Owner,
    connector: Connector = "kustomer",
    label: Label = "",
    expand: Annotated[list[str] | None, typer.Option(help="Reference to expand (repeatable).")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Include the Kustomer object.")] = False,
) -> None:
    """Print one record as JSON."""

    async def go() -> dict[str, Any]:
        hub, conn = await _connection(connector, owner, label)
        async with hub:
            return _dump(await conn.resources(model).retrieve(id, expand=expand or (), include_raw=raw))

    print_json(run(go()))


@app.command("create")
@handle_errors
def create(model: Model, owner: Owner, data: Data, connector: Connector = "kustomer", label: Label = "") -> None:
    """Create a record from JSON (camelCase field names) and print it."""
    payload = parse_data(data)

    async def go() -> dict[str, Any]:
        hub, conn = await _connection(connector, owner, label)
        async with hub:
            return _dump(await conn.resources(model).create(payload))

    print_json(run(go()))


@app.command("update")
@handle_errors
def update(
    model: Model,
    id: Annotated[str, typer.Argument(help="Record id.")],
    owner: Owner,
    data: Data,
    connector: Connector = "kustomer",
    label: Label = "",
) -> None:
    """Update only the given fields and print the record."""
    payload = parse_data(data)

    async def go() -> dict[str, Any]:
        hub, conn = await _connection(connector, owner, label)
        async with hub:
            return _dump(await conn.resources(model).update(id, payload))

    print_json(run(go()))


@app.command("delete")
@handle_errors
def delete(
    model: Model,
    id: Annotated[str, typer.Argument(help="Record id.")],
    owner: Owner,
    connector: Connector = "kustomer",
    label: Label = "",
) -> None:
    """Delete a record."""

    async def go() -> None:
        hub, conn = await _connection(connector, owner, label)
        async with hub:
            await conn.resources(model).delete(id)

    run(go())
    typer.echo(f"deleted {model} {id}")


proxy_app = typer.Typer(help="Raw authenticated request to the provider API.")


@proxy_app.command("proxy")
@handle_errors
def proxy(
    method: Annotated[str, typer.Argument(help="GET, POST, PUT, PATCH, DELETE.")],
    path: Annotated[str, typer.Argument(help="Path on the API host, e.g. /v1/customers?pageSize=5.")],
    owner: Owner,
    connector: Connector = "kustomer",
    label: Label = "",
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON body, or @file.json.")] = None,
) -> None:
    """Send a raw request with the connection's auth, rate budget and retries; print the response."""
    body = parse_data(data) if data else None

    async def go() -> tuple[int, str]:
        hub, conn = await _connection(connector, owner, label)
        async with hub:
            response = await conn.proxy(method, path, json=body)
            return response.status_code, response.text

    status, text = run(go())
    typer.echo(text)
    if status >= 400:
        raise typer.Exit(1)
