"""Bad input, fuzzed: CSV and JSONL rows into a sync push, read the way ``connectors sync push`` reads them.

Each example writes a file mixing rows valid by construction (names, e-mails, E.164 phones, tags, typed custom
attributes) with hostile rows (values replaced by odd strings, numbers, nulls, nested JSON; keys dropped or
added in JSONL) and pushes it through :class:`connectors.cli.sync.RowSource` and ``conn.sync(model).push``.
Every row gets a unique ``externalId`` so that it can be traced in the sandbox. Then, per row:

* a valid row is reported ``created`` and is in Kustomer exactly once, under the reported id;
* a hostile row is either created (and then in Kustomer exactly once) or reported ``rejected`` with a reason,
  and then is *not* in Kustomer;
* every row has exactly one result.

Anything else counts as lost.
"""

from __future__ import annotations

import csv
import itertools
import json
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.from_thread
import anyio.to_thread
import pytest
from _reliability import ODD_STRINGS, Tally, fuzz, json_values, mutations, quiet_settings
from hypothesis import given
from hypothesis import strategies as st

from connectors import Connectors
from connectors.cli.sync import RowSource
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.bulk import PushOptions, RowResult

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

FAST = PushOptions(poll_interval=0.001, poll_max_interval=0.01, ambiguous_delay=0.0)
COLUMNS = [
    "externalId",
    "firstName",
    "lastName",
    "email",
    "phone",
    "tags",
    "custom.tierStr",
    "custom.ageNum",
    "custom.vipBool",
]

word = st.text(string.ascii_letters, min_size=1, max_size=10)
lower = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
valid_rows = st.fixed_dictionaries(
    {
        "firstName": word,
        "lastName": word,
        "email": st.builds(lambda a, b: f"{a}@{b}.example.com", lower, lower),
    },
    optional={
        "phone": st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True),
        "tags": st.lists(word, max_size=3, unique=True),
        "custom.tierStr": word,
        "custom.ageNum": st.integers(0, 120),
        "custom.vipBool": st.booleans(),
    },
)
odd_cells = st.sampled_from(ODD_STRINGS) | st.text(max_size=20) | st.integers() | st.floats() | st.none()


@st.composite
def csv_hostile(draw: st.DrawFn) -> dict[str, Any]:
    """A valid row with some cells replaced by odd values or dropped (CSV rows keep the file's columns)."""
    row = dict(draw(valid_rows))
    for column in draw(st.lists(st.sampled_from(COLUMNS[1:]), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            row[column] = draw(odd_cells)
        else:
            row.pop(column, None)
    return row


jsonl_hostile = valid_rows.flatmap(lambda row: mutations(row, json_values)) | st.dictionaries(
    st.sampled_from([*COLUMNS, "id", "company", "customFields", "emails", "createdAt", "nope", ""]),
    json_values,
    max_size=5,
)


@st.composite
def files(draw: st.DrawFn) -> tuple[str, list[tuple[bool, dict[str, Any]]]]:
    """A format and its rows, each flagged valid (by construction) or hostile."""
    kind = draw(st.sampled_from(["csv", "jsonl"]))
    hostile = csv_hostile() if kind == "csv" else jsonl_hostile
    flags = draw(st.lists(st.booleans(), min_size=5, max_size=30))
    out: list[tuple[bool, dict[str, Any]]] = []
    for is_valid in flags:
        row = draw(valid_rows) if is_valid else draw(hostile)
        out.append((is_valid, row if isinstance(row, dict) else {"value": row}))
    return kind, out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write(path: Path, kind: str, rows: list[dict[str, Any]]) -> None:
    if kind == "csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow([_cell(row.get(column)) for column in COLUMNS])
    else:
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")


async def test_fuzzed_rows_land_exactly_once_or_are_reported_rejected(
    tmp_path: Path, make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings(customers=0, companies=1))
    conn = await connect_key(make_hub(sb.transport()), sb)
    sync = conn.sync("genericContact")
    serial = itertools.count()
    counts: Counter[str] = Counter()
    problems: list[str] = []

    async def push(kind: str, rows: list[tuple[bool, dict[str, Any]]]) -> None:
        batch = next(serial)
        markers = [f"fz{batch}-{index}" for index in range(len(rows))]
        data = [{**row, "externalId": marker} for (_, row), marker in zip(rows, markers, strict=True)]
        path = tmp_path / f"rows-{batch}.{kind}"
        _write(path, kind, data)
        source = RowSource(path, {})
        sync.check_mapping(source.targets())
        reported: dict[int, RowResult] = {}

        def on_result(result: RowResult, row: Any) -> None:  # what the CLI writes to <file>.rejected.jsonl
            assert result.index not in reported, f"row {result.index} reported twice"
            reported[result.index] = result

        report = await sync.push(source, match="externalId", options=FAST, keep_results="none", on_result=on_result)
        landed = Counter(str(r.attrs.get("externalId")) for r in sb.state.customers if r.attrs.get("externalId"))
        for index, ((is_valid, _), marker) in enumerate(zip(rows, markers, strict=True)):
            counts["valid" if is_valid else "hostile"] += 1
            result = reported.get(index)
            if result is None:
                problems.append(f"{marker}: no result")
                continue
            if result.status == "created":
                record = sb.state.customers.get(result.id or "")
                if landed[marker] != 1 or record is None or record.attrs.get("externalId") != marker:
                    problems.append(f"{marker}: created but in Kustomer {landed[marker]} times")
            elif result.status == "rejected":
                counts["rejected"] += 1
                if is_valid:
                    problems.append(f"{marker}: valid row rejected: {result.reason}")
                if not result.reason or landed[marker]:
                    problems.append(f"{marker}: rejected ({result.reason!r}) but in Kustomer {landed[marker]} times")
            else:
                problems.append(f"{marker}: unexpected status {result.status}")
        assert report.rows == len(rows) == report.created + report.rejected

    @fuzz(200, shrink=False)
    @given(case=files())
    def check(case: tuple[str, list[tuple[bool, dict[str, Any]]]]) -> None:
        anyio.from_thread.run(push, *case)

    await anyio.to_thread.run_sync(check)
    tried = counts["valid"] + counts["hostile"]
    tally.record("sync push rows (CSV/JSONL)", tried=tried, rejected=counts["rejected"], lost=len(problems))
    tally.note(
        f"sync push fuzz: {tried} rows ({counts['valid']} valid, {counts['hostile']} hostile) in "
        f"{next(serial)} files; {counts['rejected']} rejected with a reason, {len(problems)} lost"
    )
    assert problems == [], problems[:5]
    assert counts["rejected"] > 0
