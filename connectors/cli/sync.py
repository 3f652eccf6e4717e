"""``connectors sync``: bulk push from CSV/JSONL files and incremental pull to JSONL.

::

    connectors sync push genericContact people.csv --owner acme --match email --dry-run
    connectors sync push genericContact people.csv -o acme --match email -m "E-mail=email" -m "Age=custom.ageNum"
    connectors sync pull genericContact --owner acme --out contacts.jsonl          # incremental after the 1st
    connectors sync pull genericContact --owner acme --full --out all.jsonl

Input rows are streamed. CSV: a header row; ``--map column=field`` maps a column to a unified field
(``firstName``), to ``custom.<attribute>`` (Kustomer's type suffix rules: ``ageNum``, ``tierStr``,
``renewalAt``...), or ``-`` to ignore it; unmapped columns are taken as field names. Empty cells are left
out (they never clear a value); cells holding a JSON array or object (``["vip","beta"]``) are decoded.
JSONL: one JSON object per line; ``--map key=field`` renames keys the same way. The file is checked before
any request: its syntax, and the target fields and custom attribute suffixes of the columns (CSV) or of the
``--map`` options (JSONL). Rejected rows go to
``<file>.rejected.jsonl`` (or ``--rejected``) with the reason, the field and the row as read.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from connectors.cli._common import fail, handle_errors, print_json, run

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from connectors.runtime.bulk import PushProgress, PushReport, RowResult
    from connectors.runtime.connection import Connection, Connectors
    from connectors.runtime.incremental import PullProgress

__all__ = ["RowSource", "app", "parse_mapping"]

app = typer.Typer(help="Bulk push (split retries) and incremental pull of unified records.", no_args_is_help=True)

Model = Annotated[str, typer.Argument(help="Unified model id, e.g. genericContact or custom:order.")]
Owner = Annotated[str, typer.Option("--owner", "-o", help="The tenant (owner id).")]
Connector = Annotated[str, typer.Option("--connector", "-c", help="Connector id.")]
Label = Annotated[str, typer.Option("--label", help="Connection label.")]
Quiet = Annotated[bool, typer.Option("--no-progress", help="No progress bar.")]

IGNORE = "-"


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """``column=field`` pairs (``field`` may be ``custom.<attribute>``, or ``-`` to ignore the column)."""
    mapping: dict[str, str] = {}
    for item in items or []:
        column, sep, target = item.rpartition("=")
        if not sep or not column or not target.strip():
            fail(f"--map expects column=field, got {item!r}")
        mapping[column] = target.strip()
    return mapping


def _cell(value: str) -> Any:
    text = value.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value


class _Unassembled(ValueError):
    """A row whose ``custom.<key>`` cells cannot join its ``customFields`` value (not an object)."""


def _put(row: dict[str, Any], target: str, value: Any) -> None:
    if target.startswith(("custom.", "customFields.")):
        fields = row.setdefault("customFields", {})
        if not isinstance(fields, dict):
            raise _Unassembled(target)
        fields[target.split(".", 1)[1]] = value
    elif target == "customFields" and isinstance(value, dict) and isinstance(row.get(target), dict):
        row[target] = {**value, **row[target]}  # custom.<key> cells read earlier are kept
    else:
        row[target] = value


class RowSource:
    """Rows of a CSV or JSONL file, checked up front and streamed afterwards.

    Args:
        path: a ``.csv`` or ``.jsonl``/``.ndjson`` file.
        mapping: column (or key) -> field.

    Raises:
        typer.Exit: the file cannot be read or a line is not valid (the message names the line).
    """

    def __init__(self, path: Path, mapping: Mapping[str, str]) -> None:
        self.path = path
        self.mapping = dict(mapping)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".ndjson"):
            fail(f"{path}: expected a .csv or .jsonl file")
        self.kind = "csv" if suffix == ".csv" else "jsonl"
        self.columns: list[str] = []
        self.rows = self._check()

    def _open(self) -> IO[str]:
        return (
            self.path.open(newline="", encoding="utf-8-sig") if self.kind == "csv" else self.path.open(encoding="utf-8")
        )

    def _check(self) -> int:
        """Count the rows and check the syntax (nothing is sent before the whole file is readable)."""
        count = 0
        try:
            with self._open() as handle:
                if self.kind == "csv":
                    reader = csv.reader(handle)
                    header = next(reader, None)
                    if not header:
                        fail(f"{self.path}: the CSV file has no header row")
                    self.columns = [c.strip() for c in header]
                    unknown = sorted(set(self.mapping) - set(self.columns))
                    if unknown:
                        fail(f"{self.path}: --map names columns the header lacks: {', '.join(unknown)}")
                    for count, _ in enumerate(reader, start=1):  # noqa: B007 - counting
                        pass
                else:
                    for number, line in enumerate(handle, start=1):
                        if not line.strip():
                            continue
                        try:
                            value = json.loads(line)
                        except json.JSONDecodeError as exc:
                            fail(f"{self.path} line {number}: invalid JSON ({exc.msg}, column {exc.colno})")
                        if not isinstance(value, dict):
                            fail(f"{self.path} line {number}: expected a JSON object")
                        count += 1
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            fail(f"{self.path}: {exc}")
        return count

    def targets(self) -> list[str]:
        """The fields to check before pushing: every CSV column's, or the ``--map`` targets of a JSONL file.

        (Other JSONL keys vary per line; a bad one rejects its row with the reason.)
        """
        if self.kind == "jsonl":
            return [t for t in self.mapping.values() if t != IGNORE]
        return [self.mapping.get(c, c) for c in self.columns if c and self.mapping.get(c, c) != IGNORE]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self._open() as handle:
            if self.kind == "csv":
                reader = csv.reader(handle)
                next(reader, None)
                targets = [self.mapping.get(c, c) for c in self.columns]
                for record in reader:
                    row: dict[str, Any] = {}
                    try:
                        for target, value in zip(targets, record, strict=False):
                            if target != IGNORE and target and value.strip() != "":
                                _put(row, target, _cell(value))
                    except _Unassembled:  # as read: the push rejects it, naming the field
                        row = dict(zip(self.columns, record, strict=False))
                    yield row
            else:
                for line in handle:
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    row = {}
                    try:
                        for key, value in data.items():
                            target = self.mapping.get(key, key)
                            if target != IGNORE:
                                _put(row, target, value)
                    except _Unassembled:  # as read: the push rejects it, naming the field
                        row = data
                    yield row


def _progress_bar(quiet: bool) -> Progress | None:
    if quiet:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TextColumn("{task.fields[stats]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


async def _open(connector: str, owner: str, label: str) -> tuple[Connectors, Connection]:
    from connectors.runtime.connection import Connectors

    hub = Connectors(embedded=True)
    try:
        return hub, await hub.get(connector, owner, label)
    except BaseException:
        await hub.aclose()
        raise


@app.command("push")
@handle_errors
def push(
    model: Model,
    file: Annotated[Path, typer.Argument(help="Rows to push: a .csv (with header) or .jsonl file.")],
    owner: Owner,
    match: Annotated[
        str | None,
        typer.Option(help="Match rows to existing records on this key (email, phone, externalId, name, id)."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", "-m", help="column=field; field may be custom.<attrSuffix> or '-' (repeatable)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and match, write nothing.")] = False,
    rejected: Annotated[
        Path | None, typer.Option(help="Where to write rejected rows (default: <file>.rejected.jsonl).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Bulk jobs in flight.")] = 4,
    batch_size: Annotated[int, typer.Option(min=1, max=100, help="Records per bulk job.")] = 100,
    connector: Connector = "kustomer",
    label: Label = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any row is rejected.")] = False,
    quiet: Quiet = False,
) -> None:
    """Upsert rows through Kustomer's bulk endpoints; invalid rows are isolated with their reason."""
    from connectors.runtime.bulk import PushOptions

    source = RowSource(file, parse_mapping(map_))
    rejected_path = rejected or file.with_name(file.name + ".rejected.jsonl")
    bar = _progress_bar(quiet)

    async def go() -> PushReport:
        hub, conn = await _open(connector, owner, label)
        async with hub:
            sync = conn.sync(model)
            sync.check_mapping(source.targets())
            out: IO[str] | None = None
            task: TaskID | None = None

            def on_result(result: RowResult, row: Any) -> None:
                nonlocal out
                if result.status != "rejected":
                    return
                if out is None:
                    out = rejected_path.open("w", encoding="utf-8")
                entry = {"row": result.index + 1, "reason": result.reason, "field": result.field, "data": row}
                out.write(json.dumps(entry, default=str) + "\n")

            def on_progress(p: PushProgress) -> None:
                if bar is not None and task is not None:
                    rate = p.done / p.elapsed if p.elapsed > 0 else 0.0
                    stats = f"+{p.created} ~{p.updated} x{p.rejected} ={p.skipped}"
                    bar.update(task, completed=p.done, rate=f"{rate:,.0f}", stats=stats)

            try:
                if bar is not None:
                    bar.start()
                    action = "check" if dry_run else "push"
                    task = bar.add_task(f"{action} {model}", total=source.rows, rate="0", stats="")
                return await sync.push(
                    source,
                    match=match,
                    dry_run=dry_run,
                    on_progress=on_progress,
                    on_result=on_result,
                    keep_results="none",
                    options=PushOptions(concurrency=concurrency, batch_size=batch_size),
                )
            finally:
                if bar is not None:
                    bar.stop()
                if out is not None:
                    out.close()

    report = run(go())
    if as_json:
        summary = report.to_dict(include_results=False)
        summary["rejectedFile"] = str(rejected_path) if report.rejected else None
        print_json(summary)
    else:
        verb = "would be " if dry_run else ""
        typer.echo(
            f"{report.rows} rows: {report.created} {verb}created, {report.updated} {verb}updated, "
            f"{report.rejected} rejected, {report.skipped} skipped "
            f"({report.requests} requests, {report.jobs} bulk jobs, {report.elapsed:.1f}s)"
        )
        if report.recovered_jobs:
            typer.echo(f"resolved {report.recovered_jobs} unfinished bulk job(s) of an earlier push first")
        if report.rejected:
            typer.echo(f"rejected rows and reasons: {rejected_path}")
    if strict and report.rejected:
        raise typer.Exit(1)


@app.command("pull")
@handle_errors
def pull(
    model: Model,
    owner: Owner,
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write the records to.")],
    since: Annotated[
        str | None, typer.Option(help="Start at this updatedAt (ISO 8601) instead of the watermark.")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Export everything (pages fetched concurrently).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from the stored watermark.")] = True,
    append: Annotated[bool, typer.Option("--append", help="Append to --out instead of replacing it.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Pages in flight during a full export.")] = 4,
    page_size: Annotated[int, typer.Option(min=1, max=500, help="Records per page.")] = 100,
    connector: Connector = "kustomer",
    label: Label = "",
    quiet: Quiet = False,
) -> None:
    """Write the records changed since the last pull (the first pull exports everything) as JSONL."""
    bar = _progress_bar(quiet)

    async def go() -> tuple[int, dict[str, Any] | None]:
        hub, conn = await _open(connector, owner, label)
        async with hub:
            sync = conn.sync(model)
            count = 0
            task: TaskID | None = None
            with out.open("a" if append else "w", encoding="utf-8") as handle:

                def durable() -> None:  # the watermark moves only past records safely on disk
                    handle.flush()
                    os.fsync(handle.fileno())

                def on_progress(p: PullProgress) -> None:
                    if bar is not None and task is not None:
                        rate = p.records / p.elapsed if p.elapsed > 0 else 0.0
                        bar.update(task, completed=p.records, total=p.total, rate=f"{rate:,.0f}", stats=p.mode)

                try:
                    if bar is not None:
                        bar.start()
                        task = bar.add_task(f"pull {model}", total=None, rate="0", stats="")
                    async for record in sync.pull(
                        since=since,
                        full=full,
                        resume=resume,
                        concurrency=concurrency,
                        page_size=page_size,
                        on_progress=on_progress,
                        before_commit=durable,
                    ):
                        handle.write(record.model_dump_json(exclude_none=True) + "\n")
                        count += 1
                finally:
                    if bar is not None:
                        bar.stop()
            return count, await sync.watermark()

    count, mark = run(go())
    where = f" (watermark {mark['updatedAt']})" if mark and mark.get("updatedAt") else ""
    typer.echo(f"{count} {model} records written to {out}{where}")
