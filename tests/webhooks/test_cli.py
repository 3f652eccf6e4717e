"""``connectors webhooks subscribe|ls|unsubscribe|poll|send-hook`` against a sandbox served over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from connectors.cli.webhooks import app
from connectors.kustomer.sandbox import Sandbox, running_sandbox

from .conftest import RECEIVE_URL, sandbox_settings


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Sandbox, str]]:
    monkeypatch.setenv("CONNECTORS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONNECTORS_SECRET_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    monkeypatch.delenv("CONNECTORS_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONNECTORS_DEBUG", raising=False)  # another CLI test may have left --debug on
    monkeypatch.setenv("KUSTOMER_SEARCH_LIMIT", "100000")
    with running_sandbox(sandbox_settings()) as (sb, base_url):

        async def connect() -> None:
            from connectors import Connectors

            async with Connectors(embedded=True) as hub:
                await hub.connect("kustomer", "acme", api_key=sb.mint_api_key(), base_url=base_url)

        asyncio.run(connect())
        yield sb, base_url


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_subscribe_list_poll_unsubscribe(served: tuple[Sandbox, str]) -> None:
    sb, base_url = served
    out = invoke(
        "subscribe", "--owner", "acme", "-e", "genericContact::created", "-e", "genericCompany::*", "--url", RECEIVE_URL
    )
    assert "genericContact::created: native (webhook " in out and "genericCompany::deleted: polled" in out
    rows = json.loads(invoke("ls", "--owner", "acme", "--json"))
    assert sorted((r["event"], r["native"]) for r in rows) == [
        ("genericCompany::created", False),
        ("genericCompany::deleted", False),
        ("genericCompany::updated", False),
        ("genericContact::created", True),
    ]
    assert "genericContact::created\tnative" in invoke("ls", "--owner", "acme")
    assert len(sb.state.outbound_webhooks) == 1
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {sb.mint_api_key()}"}) as api:
        created = api.post("/v1/companies", json={"name": "Polled Inc"}).json()["data"]
    lines = [json.loads(line) for line in invoke("poll", "--owner", "acme").splitlines()]
    assert [(e["model"], e["trigger"], e["id"]) for e in lines] == [("genericCompany", "created", created["id"])]
    assert lines[0]["data"]["name"] == "Polled Inc" and lines[0]["source"] == "poll"
    assert invoke("poll", "--owner", "acme") == ""
    assert "removed 3 subscription(s)" in invoke("unsubscribe", "--owner", "acme", "-e", "genericCompany::*")
    assert "removed 1 subscription(s)" in invoke("unsubscribe", "--owner", "acme")
    assert len(sb.state.outbound_webhooks) == 0
    assert "has no webhook subscriptions" in invoke("ls", "--owner", "acme")


def test_send_hook(served: tuple[Sandbox, str], tmp_path: Path) -> None:
    sb, base_url = served
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {sb.mint_api_key()}"}) as api:
        hook = api.post("/v1/hooks/web", json={"name": "reviews"}).json()["data"]["attributes"]["url"]
    result = json.loads(invoke("send-hook", "--owner", "acme", hook, "--data", '{"rating": 5}'))
    assert result["statusCode"] == 200 and result["transactionId"] == sb.state.hook_transactions[0]["id"]
    payload = tmp_path / "p.json"
    payload.write_text('{"rating": 4}')
    invoke("send-hook", "--owner", "acme", hook, "--data-file", str(payload))
    assert [t["attributes"]["data"] for t in sb.state.hook_transactions] == [{"rating": 5}, {"rating": 4}]


def test_errors_are_one_line(served: tuple[Sandbox, str]) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["subscribe", "--owner", "acme", "-e", "genericContact::exploded"])
    assert bad.exit_code == 1 and "ConfigurationError" in bad.output and "Traceback" not in bad.output
    nobody = runner.invoke(app, ["ls", "--owner", "nobody"])
    assert nobody.exit_code == 1 and "NotConnectedError" in nobody.output
    both = runner.invoke(app, ["send-hook", "--owner", "acme", "abc", "--data", "{}", "--data-file", "x"])
    assert both.exit_code == 1 and "exactly one of --data or --data-file" in both.output
    not_json = runner.invoke(app, ["send-hook", "--owner", "acme", "abc", "--data", "{"])
    assert not_json.exit_code == 1 and "not valid JSON" in not_json.output
