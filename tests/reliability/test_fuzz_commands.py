"""Bad input, fuzzed: Apps Platform app definitions into the commands validator and the registration route.

Seeds are valid app definitions (the documented ``ecommstore`` example and a second app using every optional
property); Hypothesis mutates them and also sends arbitrary JSON. The validator either accepts the definition
or raises ``CommandDefinitionError`` with a path; the "all problems" and "first problem" entry points agree;
an accepted definition round-trips and keeps the documented safety rules (no ``{{authToken}}`` in a URL,
command names prefixed by the app id, a literal ``http(s)://`` scheme). ``POST /v1/apps/available`` of the
sandbox answers 201 exactly for what the validator accepts and 400 with the problems otherwise, never 5xx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
from _reliability import Tally, fuzz, json_values, mutations, quiet_settings
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import CommandDefinitionError
from connectors.kustomer.commands import AppDefinition, CommandRegistry, definition_errors, parse_app_definition
from connectors.kustomer.sandbox import Sandbox

pytestmark = [pytest.mark.reliability]

ECOMMSTORE: dict[str, Any] = {
    "app": "ecommstore",
    "version": "0.0.1",
    "title": "E-comm Store",
    "commands": [
        {
            "name": "ecommstore.app.store.refundOrder",
            "displayName": "Refund Order",
            "permittedArgs": ["store"],
            "url": "https://{{{store}}}.example-ecommstore.com/orders",
            "httpMethod": "post",
            "auditLogging": True,
            "cacheSeconds": 15,
            "appSettings": {"authToken": {"key": "ecommstore.default.authToken"}},
            "inputSchema": {
                "type": "object",
                "properties": {"foo": {"type": "string"}},
                "additionalProperties": False,
                "required": ["foo"],
            },
            "outputSchema": {
                "type": "object",
                "properties": {"foo": {"type": "string"}},
                "additionalProperties": True,
                "required": [],
            },
        }
    ],
}
TRACKER: dict[str, Any] = {
    "app": "tracker_2",
    "commands": [
        {
            "name": "tracker_2.app.orders.lookup",
            "permittedUrlArgs": ["order", "region"],
            "url": "https://api.example.com/{{region}}/orders/{{order}}?full=1",
            "httpMethod": "get",
            "appAccountName": "tracker",
            "outputSchema": {"type": "object", "properties": {"items": {"type": "array"}, "ok": {"type": "boolean"}}},
        },
        {"name": "tracker_2.app.ping", "url": "http://status.example.com/ping", "httpMethod": "delete"},
    ],
    "klasses": [{"name": "order"}],
}
SEEDS = [ECOMMSTORE, TRACKER]
MUSTACHE = re.compile(r"\{\{\{?\s*([^}\s]+)\s*\}?\}\}")

identifier = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,8}", fullmatch=True)
url_parts = st.sampled_from(
    [
        "https://{{{%s}}}.example.com/x",
        "https://api.example.com/{{%s}}",
        "http://api.example.com/a?b={{%s}}",
        "https://{{{%s}}}/x",  # the whole host from an arg
        "https://api.example.com/{{authToken}}",  # the secret in a URL
        "{{%s}}://api.example.com/x",  # the scheme from an arg
        "https://api.example.com@{{{%s}}}/x",
        "ftp://api.example.com/{{%s}}",
        "https://api.example.com/{{{authToken}}}#{{%s}}",
    ]
)


@st.composite
def constructed(draw: st.DrawFn) -> dict[str, Any]:
    """Definitions built from the documented shape: mostly valid, with hostile templates mixed in."""
    app = draw(identifier)
    args = draw(st.lists(identifier | st.just("authToken"), max_size=3, unique=True))
    commands = []
    for index in range(draw(st.integers(0, 3))):
        template = draw(url_parts)
        url = template % (args[0] if args else "x") if "%s" in template else template
        command: dict[str, Any] = {
            "name": f"{app}.app.{draw(identifier)}{index}",
            "url": url,
            "httpMethod": draw(st.sampled_from(["get", "post", "put", "patch", "delete", "POST"])),
            "permittedArgs": args,
        }
        if draw(st.booleans()):
            command["cacheSeconds"] = draw(st.integers(0, 700))
        if draw(st.booleans()):
            command["appSettings"] = {"authToken": {"key": f"{draw(st.sampled_from([app, 'other']))}.default.token"}}
        commands.append(command)
    return {"app": app, "commands": commands}


definitions = st.sampled_from(SEEDS).flatmap(lambda seed: mutations(seed, json_values)) | constructed() | json_values


def _accepted_is_safe(app: AppDefinition) -> None:
    for command in app.commands:
        assert command.name.startswith(f"{app.app}.app."), command.name
        assert "authToken" not in MUSTACHE.findall(command.url), command.url
        assert command.url.startswith(("http://", "https://")), command.url
        assert command.http_method in ("get", "post", "put", "patch", "delete")
        if command.cache_seconds is not None:
            assert 15 <= command.cache_seconds <= 600


def test_fuzzed_app_definitions_are_accepted_safely_or_refused_with_a_path(tally: Tally) -> None:
    counts = {"accepted": 0, "refused": 0}

    @fuzz(2000)
    @given(definition=definitions)
    def check(definition: Any) -> None:
        errors = definition_errors(definition)
        refusal: CommandDefinitionError | None = None
        try:
            app = parse_app_definition(definition)
        except CommandDefinitionError as exc:
            refusal = exc
        if refusal is not None:
            counts["refused"] += 1
            assert errors, "parse_app_definition refused what definition_errors accepts"
            assert refusal.path == errors[0].path
            assert all(isinstance(e, CommandDefinitionError) and e.message for e in errors)
            return
        counts["accepted"] += 1
        assert errors == []
        _accepted_is_safe(app)
        dumped = app.model_dump(mode="json", by_alias=True)
        assert parse_app_definition(json.loads(json.dumps(dumped))) == app  # round trip through JSON
        stored = app.model_dump(mode="json", by_alias=True, exclude_none=True)  # what registries keep
        assert parse_app_definition(stored).commands == app.commands
        CommandRegistry([app])  # registrable as is

    check()
    tried = sum(counts.values())
    tally.record("app definitions", tried=tried, rejected=counts["refused"])
    tally.note(
        f"app definitions: {tried} fuzzed, {counts['accepted']} accepted (all safe), {counts['refused']} refused"
    )
    assert counts["accepted"] > 0 and counts["refused"] > 0


@pytest.mark.anyio
async def test_the_registration_route_answers_4xx_with_the_problems_never_5xx(tally: Tally) -> None:
    sb = Sandbox(quiet_settings())
    key = sb.mint_api_key(name="apps")
    statuses: dict[int, int] = {}
    mismatched: list[Any] = []
    async with httpx.AsyncClient(
        transport=sb.transport(), base_url=sb.base_url, headers={"Authorization": f"Bearer {key}"}
    ) as client:

        async def post(raw: bytes, definition: Any) -> None:
            response = await client.post(
                "/v1/apps/available", content=raw, headers={"content-type": "application/json"}
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text
            valid = definition is not None and not definition_errors(definition)
            if valid != (response.status_code == 201):
                mismatched.append(definition)
            if response.status_code == 400:
                errors = response.json()["errors"]
                assert errors and all(e.get("title") or e.get("detail") or e.get("message") for e in errors)

        @fuzz(400)
        @given(definition=definitions, raw=st.none() | st.binary(max_size=60))
        def check(definition: Any, raw: bytes | None) -> None:
            if raw is None:  # the definition as JSON (most examples)
                anyio.from_thread.run(post, json.dumps(definition).encode(), definition)
            else:  # bytes that are rarely JSON at all
                try:
                    parsed: Any = json.loads(raw)
                except ValueError:
                    parsed = None
                anyio.from_thread.run(post, raw, parsed)

        await anyio.to_thread.run_sync(check)
    tried = sum(statuses.values())
    refused = tried - statuses.get(201, 0)
    tally.record("app registration (HTTP)", tried=tried, rejected=refused, lost=len(mismatched))
    tally.note(f"app registration route: {tried} posts, statuses {dict(sorted(statuses.items()))}")
    assert mismatched == []
    assert statuses.get(201, 0) > 0 and refused > 0


def _cli_validate() -> Callable[[Any], tuple[int, str]]:
    from typer.testing import CliRunner

    from connectors.cli import app as cli_app

    runner = CliRunner()

    def go(path: Any) -> tuple[int, str]:
        result = runner.invoke(cli_app, ["commands", "validate", str(path)])
        return result.exit_code, result.output + (repr(result.exception) if result.exception else "")

    return go


def test_the_cli_validator_exits_1_with_a_message_never_a_traceback(tmp_path: Any, tally: Tally) -> None:
    validate = _cli_validate()
    counts = {"valid": 0, "invalid": 0}

    @fuzz(60)
    @given(definition=definitions)
    def check(definition: Any) -> None:
        path = tmp_path / "app.json"
        path.write_text(json.dumps(definition))
        code, output = validate(path)
        assert "Traceback" not in output
        if definition_errors(definition):
            counts["invalid"] += 1
            assert code == 1 and output.strip(), output
        else:
            counts["valid"] += 1
            assert code == 0, output

    check()
    tally.record("app definitions (CLI)", tried=sum(counts.values()), rejected=counts["invalid"])
    assert counts["invalid"] > 0
