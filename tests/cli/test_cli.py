"""The ``connectors`` command line against a sandbox over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.cli import app
from connectors.kustomer.sandbox import Sandbox, SandboxSettings, running_sandbox

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def live_sandbox() -> Iterator[tuple[Sandbox, str]]:
    with running_sandbox(SandboxSettings(customers=30, search_limit_per_minute=10_000)) as (sb, base_url):
        yield sb, base_url


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CONNECTORS_HOME", str(tmp_path / "home"))
    for name in ("CONNECTORS_DATABASE_URL", "CONNECTORS_SECRET_KEY", "CONNECTORS_REDIS_URL", "CONNECTORS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUSTOMER_SEARCH_LIMIT", "10000")
    return CliRunner()


def _connect(cli: CliRunner, base_url: str, key: str, owner: str = "acme") -> None:
    result = cli.invoke(
        app,
        ["connections", "add", "--owner", owner, "--base-url", base_url, "--api-key-env", "TEST_KEY"],
        env={"TEST_KEY": key},
    )
    assert result.exit_code == 0, result.output
    assert f"connected {owner} to kustomer" in result.output


def test_help_lists_every_area(cli: CliRunner) -> None:
    result = cli.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "sandbox", "connections", "resources", "proxy", "kustomer", "commands"):
        assert command in result.output


def test_roles_to_grant(cli: CliRunner) -> None:
    result = cli.invoke(app, ["kustomer", "roles", "genericContact::list", "genericContact::create", "--json"])
    assert result.exit_code == 0, result.output
    roles = json.loads(result.output)["roles"]
    assert roles == ["org.permission.customer.create", "org.permission.customer.read", "org.permission.search.create"]
    typo = cli.invoke(app, ["kustomer", "roles", "genericContact::lst"])
    assert typo.exit_code == 1
    assert "did you mean genericContact::list" in typo.output


def test_connections_and_resources_end_to_end(cli: CliRunner, live_sandbox: tuple[Sandbox, str]) -> None:
    sb, base_url = live_sandbox
    key = sb.mint_api_key(name="cli test")
    _connect(cli, base_url, key)
    listed = cli.invoke(app, ["connections", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [r["ownerId"] for r in rows] == ["acme"]
    assert key not in listed.output

    page = cli.invoke(app, ["resources", "list", "genericContact", "--owner", "acme", "--limit", "3", "--json"])
    assert page.exit_code == 0, page.output
    body = json.loads(page.output)
    assert len(body["data"]) == 3 and body["next"]

    created = cli.invoke(
        app,
        [
            "resources",
            "create",
            "genericContact",
            "--owner",
            "acme",
            "--data",
            '{"firstName": "Cli", "email": "cli@example.com"}',
        ],
    )
    assert created.exit_code == 0, created.output
    contact_id = json.loads(created.output)["id"]
    updated = cli.invoke(
        app, ["resources", "update", "genericContact", contact_id, "--owner", "acme", "--data", '{"lastName": "User"}']
    )
    assert json.loads(updated.output)["lastName"] == "User"
    got = cli.invoke(app, ["resources", "get", "genericContact", contact_id, "--owner", "acme"])
    assert json.loads(got.output)["email"] == "cli@example.com"
    found = cli.invoke(
        app, ["resources", "list", "genericContact", "--owner", "acme", "--filter", "email=cli@example.com", "--json"]
    )
    assert [c["id"] for c in json.loads(found.output)["data"]] == [contact_id]

    proxied = cli.invoke(app, ["proxy", "GET", f"/v1/customers/{contact_id}", "--owner", "acme"])
    assert proxied.exit_code == 0, proxied.output
    assert json.loads(proxied.output)["data"]["id"] == contact_id
    refused = cli.invoke(app, ["proxy", "GET", "https://evil.example/v1/customers", "--owner", "acme"])
    assert refused.exit_code == 1
    assert "error: ProxyRefusedError" in refused.output

    deleted = cli.invoke(app, ["resources", "delete", "genericContact", contact_id, "--owner", "acme"])
    assert deleted.exit_code == 0
    missing = cli.invoke(app, ["resources", "get", "genericContact", contact_id, "--owner", "acme"])
    assert missing.exit_code == 1
    assert missing.output.startswith("error: NotFoundError")
    assert "Traceback" not in missing.output

    removed = cli.invoke(app, ["connections", "rm", "--owner", "acme"])
    assert removed.exit_code == 0
    gone = cli.invoke(app, ["resources", "list", "genericContact", "--owner", "acme"])
    assert gone.exit_code == 1 and "NotConnectedError" in gone.output


def test_bad_input_is_one_line_and_debug_shows_the_traceback(cli: CliRunner, live_sandbox: tuple[Sandbox, str]) -> None:
    sb, base_url = live_sandbox
    _connect(cli, base_url, sb.mint_api_key(), owner="bad-input")
    bad = cli.invoke(app, ["resources", "create", "genericCompany", "--owner", "bad-input", "--data", "{not json"])
    assert bad.exit_code == 1 and bad.output.startswith("error: --data is not valid JSON")
    invalid = cli.invoke(app, ["resources", "create", "genericCompany", "--owner", "bad-input", "--data", "{}"])
    assert invalid.exit_code == 1
    assert "MappingError: genericCompany.name" in invalid.output
    debug = cli.invoke(
        app, ["--debug", "resources", "create", "genericCompany", "--owner", "bad-input", "--data", "{}"]
    )
    assert debug.exit_code == 1
    assert debug.exception is not None


def test_wrong_key_is_refused_with_a_clear_error(cli: CliRunner, live_sandbox: tuple[Sandbox, str]) -> None:
    _, base_url = live_sandbox
    result = cli.invoke(
        app,
        ["connections", "add", "--owner", "x", "--base-url", base_url, "--api-key-env", "K"],
        env={"K": "not-a-key"},
    )
    assert result.exit_code == 1
    assert "AuthenticationError" in result.output
    assert "not-a-key" not in result.output
