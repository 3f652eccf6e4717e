"""``connectors sync push|pull`` through Typer's CliRunner, against a sandbox served over loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connectors import Connectors, Settings
from connectors.cli.sync import app
from connectors.kustomer.sandbox import Sandbox, running_sandbox
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

from .conftest import BIG_BUDGET, customers_with_email, live_count, sandbox_settings

pytestmark = pytest.mark.http

OWNER = "cli-tenant"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Sandbox, str]]:
    with running_sandbox(sandbox_settings(customers=30)) as pair:
        yield pair


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: tuple[Sandbox, str]) -> Path:
    sb, base_url = served
    key = os.urandom(32)
    monkeypatch.setenv("CONNECTORS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONNECTORS_SECRET_KEY", base64.urlsafe_b64encode(key).decode())
    monkeypatch.setenv("KUSTOMER_RATE_LIMIT", "1000000")
    monkeypatch.setenv("KUSTOMER_SEARCH_LIMIT", "1000000")
    monkeypatch.delenv("CONNECTORS_DATABASE_URL", raising=False)
    (tmp_path / "home").mkdir()
    store = ConnectionStore(f"sqlite:///{tmp_path / 'home' / 'connectors.db'}", secret_box=SecretBox(key))

    async def connect() -> None:
        async with Connectors(settings=Settings(kustomer=BIG_BUDGET), store=store) as hub:
            await hub.connect("kustomer", OWNER, api_key=sb.mint_api_key(), base_url=base_url)

    asyncio.run(connect())
    store.close()
    return tmp_path


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_push_csv_with_mapping_and_rejected_file(home: Path, served: tuple[Sandbox, str]) -> None:
    sb, _ = served
    path = _csv(
        home / "people.csv",
        ["E-mail", "First", "Last", "Age", "Tags", "Internal"],
        [
            ["cli1@example.com", "Ada", "One", "36", '["vip","beta"]', "x"],
            ["cli2@example.com", "Bob", "Two", "", "", "y"],
            ["not-an-email", "Bad", "Row", "1", "", "z"],
            ["cli4@example.com", "Cat", "Four", "forty", "", "z"],
        ],
    )
    maps = ["-m", "E-mail=email", "-m", "First=firstName", "-m", "Last=lastName", "-m", "Age=custom.ageNum"]
    maps += ["-m", "Tags=tags", "-m", "Internal=-"]
    result = invoke("push", "genericContact", path, "--owner", OWNER, "--match", "email", *maps, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "4 rows: 2 created, 0 updated, 2 rejected, 0 skipped" in result.stdout
    rejected_file = home / "people.csv.rejected.jsonl"
    lines = [json.loads(line) for line in rejected_file.read_text().splitlines()]
    assert [(e["row"], e["field"]) for e in sorted(lines, key=lambda e: e["row"])] == [
        (3, "email"),
        (4, "customFields.ageNum"),
    ]
    assert lines[0]["reason"] and lines[0]["data"]["firstName"] in ("Bad", "Cat")
    (cid,) = customers_with_email(sb, "cli1@example.com")
    record = sb.state.customers.get(cid)
    assert record is not None
    assert record.attrs["custom"] == {"ageNum": 36} and record.attrs["tags"] == ["vip", "beta"]
    assert record.attrs["name"] == "Ada One"
    (cid2,) = customers_with_email(sb, "cli2@example.com")
    record2 = sb.state.customers.get(cid2)
    assert record2 is not None and not record2.attrs.get("custom")  # the empty Age cell was left out

    again = invoke("push", "genericContact", path, "-o", OWNER, "--match", "email", *maps, "--json", "--strict")
    assert again.exit_code == 1  # --strict: rows were rejected
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["skipped"], summary["rejected"]) == (0, 2, 2)
    assert summary["rejectedFile"] == str(rejected_file)


def test_dry_run_writes_nothing(home: Path, served: tuple[Sandbox, str]) -> None:
    sb, _ = served
    path = home / "dry.jsonl"
    path.write_text(json.dumps({"email": "dry-cli@example.com", "firstName": "Dry"}) + "\n\n")
    before = live_count(sb, "customers")
    result = invoke("push", "genericContact", path, "-o", OWNER, "--match", "email", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "1 rows: 1 would be created" in result.stdout
    assert live_count(sb, "customers") == before
    assert "check genericContact" in result.stderr  # the progress bar


def test_bad_custom_field_mapping_fails_before_any_request(home: Path, served: tuple[Sandbox, str]) -> None:
    sb, _ = served
    path = _csv(home / "bad.csv", ["email", "Age"], [["x@example.com", "3"]])
    before = len(sb.state.request_log)
    result = invoke("push", "genericContact", path, "-o", OWNER, "-m", "Age=custom.Age", "--no-progress")
    assert result.exit_code == 1
    assert "customFields.Age" in result.stderr and "suffix" in result.stderr
    jsonl = home / "bad.jsonl"
    jsonl.write_text(json.dumps({"email": "y@example.com", "age": 3}) + "\n")
    result = invoke("push", "genericContact", jsonl, "-o", OWNER, "-m", "age=custom.age", "--no-progress")
    assert result.exit_code == 1 and "customFields.age" in result.stderr
    requests = [e.path for e in list(sb.state.request_log)[before:]]
    assert all(not p.endswith(("/bulk", "/search")) for p in requests)


def test_input_errors_name_the_line(home: Path) -> None:
    path = home / "broken.jsonl"
    path.write_text('{"email": "ok@example.com"}\n{"email": \n')
    result = invoke("push", "genericContact", path, "-o", OWNER, "--no-progress")
    assert result.exit_code == 1 and "broken.jsonl line 2: invalid JSON" in result.stderr
    result = invoke("push", "genericContact", home / "rows.txt", "-o", OWNER)
    assert result.exit_code == 1 and "expected a .csv or .jsonl file" in result.stderr
    csv_path = _csv(home / "cols.csv", ["email"], [["a@example.com"]])
    result = invoke("push", "genericContact", csv_path, "-o", OWNER, "-m", "Mail=email")
    assert result.exit_code == 1 and "header lacks: Mail" in result.stderr
    result = invoke("push", "genericContact", csv_path, "-o", OWNER, "-m", "nonsense")
    assert result.exit_code == 1 and "column=field" in result.stderr


def test_pull_full_then_incremental(home: Path, served: tuple[Sandbox, str]) -> None:
    sb, _ = served
    out = home / "contacts.jsonl"
    result = invoke("pull", "genericContact", "-o", OWNER, "--out", out, "--no-progress", "--concurrency", "3")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["id"] for line in lines} == set(sb.state.customers.live)
    assert "watermark" in result.stdout

    result = invoke("pull", "genericContact", "-o", OWNER, "--out", out, "--append")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("0 genericContact records")
    assert len(out.read_text().splitlines()) == len(lines)

    result = invoke("pull", "genericContact", "-o", OWNER, "--out", home / "all.jsonl", "--full", "--no-progress")
    assert result.exit_code == 0
    assert len((home / "all.jsonl").read_text().splitlines()) == len(sb.state.customers.live)


def test_unknown_connection_is_one_line(home: Path) -> None:
    result = invoke("pull", "genericContact", "-o", "nobody", "--out", home / "x.jsonl")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: NotConnectedError")
