"""Property tests: any app definition is either a valid model or a CommandDefinitionError with a path."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.errors import CommandDefinitionError
from connectors.kustomer.commands import AppDefinition, definition_errors, parse_app_definition

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

schema_types = st.sampled_from(["string", "boolean", "number", "object", "array", "integer", "null"])


def schemas(depth: int = 2) -> st.SearchStrategy[object]:
    leaf = st.fixed_dictionaries({"type": schema_types})
    if depth == 0:
        return leaf | json_values
    return st.one_of(
        leaf,
        json_values,
        st.fixed_dictionaries(
            {"type": schema_types},
            optional={
                "properties": st.dictionaries(st.text(max_size=5), schemas(depth - 1), max_size=3) | json_values,
                "required": st.lists(st.text(max_size=5), max_size=3) | json_values,
                "additionalProperties": st.booleans() | json_values,
                "items": json_values,
                "enum": json_values,
            },
        ),
    )


names = st.one_of(
    st.text(max_size=20),
    st.builds(lambda rest: f"acme.app.{rest}", st.text(max_size=12)),
    st.sampled_from(["acme.app.thing", "acme.thing", "other.app.thing", "acme.app."]),
)
urls = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "https://api.acme.test/x",
            "https://{{{store}}}.acme.test/orders",
            "http://{{store}}/{{#if x}}a{{/if}}",
            "https://{{authToken}}.acme.test",
            "https://{{store",
            "ftp://x",
        ]
    ),
    st.builds(lambda text: f"https://{text}", st.text(max_size=20)),
)
commands = st.fixed_dictionaries(
    {},
    optional={
        "name": names | json_values,
        "displayName": st.text(max_size=10) | json_values,
        "permittedArgs": st.lists(st.text(max_size=8), max_size=3) | json_values,
        "permittedUrlArgs": st.lists(st.text(max_size=8), max_size=3),
        "url": urls | json_values,
        "httpMethod": st.sampled_from(["get", "post", "put", "patch", "delete", "POST", "head"]) | json_values,
        "auditLogging": st.booleans() | json_values,
        "cacheSeconds": st.integers(0, 700) | st.floats(allow_nan=True) | json_values,
        "appSettings": st.fixed_dictionaries(
            {}, optional={"authToken": st.fixed_dictionaries({}, optional={"key": st.text(max_size=25)})}
        )
        | json_values,
        "appAccountName": st.text(max_size=8) | json_values,
        "inputSchema": schemas(),
        "outputSchema": schemas(),
        "unknownProperty": json_values,
    },
)
app_definitions = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "app": st.sampled_from(["acme", "ecommstore", "a b", ""]) | json_values,
            "version": st.text(max_size=6) | json_values,
            "commands": st.lists(commands, max_size=3) | json_values,
            "extra": json_values,
        },
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(app_definitions)
def test_any_definition_is_a_model_or_a_definition_error_with_a_path(data):
    errors = definition_errors(data)  # never raises: every problem is a CommandDefinitionError
    assert all(isinstance(error, CommandDefinitionError) and error.path for error in errors)
    if errors:
        with pytest.raises(CommandDefinitionError) as caught:
            parse_app_definition(data)
        assert caught.value.path == errors[0].path
        assert str(caught.value).startswith(f"{caught.value.path}: ")
        return
    app = parse_app_definition(data)
    assert isinstance(app, AppDefinition)
    # A valid definition survives a JSON round trip unchanged.
    assert parse_app_definition(json.loads(app.model_dump_json(by_alias=True))) == app


valid_args = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), max_size=3, unique=True).filter(
    lambda args: "authToken" not in args
)
valid_schemas = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "boolean", "number", "array"])}),
    lambda children: st.fixed_dictionaries(
        {"type": st.just("object")},
        optional={
            "properties": st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), children, max_size=3),
            "additionalProperties": st.just(True),
            "required": st.lists(st.from_regex(r"[a-z]{1,5}", fullmatch=True), max_size=2, unique=True),
        },
    ),
    max_leaves=6,
)


@st.composite
def valid_apps(draw: st.DrawFn) -> dict[str, object]:
    app_id = draw(st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True))
    count = draw(st.integers(0, 3))
    suffixes = draw(
        st.lists(st.from_regex(r"[a-zA-Z0-9_]{1,6}", fullmatch=True), min_size=count, max_size=count, unique=True)
    )
    result = []
    for suffix in suffixes:
        args = draw(valid_args)
        command: dict[str, object] = {
            "name": f"{app_id}.app.{suffix}",
            "url": "https://" + "".join(f"{{{{{{{arg}}}}}}}." for arg in args) + "acme.test/path",
            "httpMethod": draw(st.sampled_from(["get", "post", "put", "patch", "delete"])),
            "permittedArgs": args,
        }
        if draw(st.booleans()):
            command["cacheSeconds"] = draw(st.integers(15, 600) | st.floats(15, 600))
        if draw(st.booleans()):
            command["appSettings"] = {"authToken": {"key": f"{app_id}.default.token"}}
        if draw(st.booleans()):
            command["inputSchema"] = draw(valid_schemas)
        if draw(st.booleans()):
            command["outputSchema"] = draw(valid_schemas)
        result.append(command)
    return {"app": app_id, "version": "1.0.0", "commands": result}


@settings(max_examples=200, deadline=None)
@given(valid_apps())
def test_definitions_built_by_the_rules_are_valid(data):
    app = parse_app_definition(data)
    assert [command.name for command in app.commands] == [command["name"] for command in data["commands"]]
