"""Every documented rule of an app definition's ``commands``, each failing with a clear message and path."""

from __future__ import annotations

import re

import pytest

from connectors.errors import CommandDefinitionError, CommandError
from connectors.kustomer.commands import (
    AppDefinition,
    CommandRegistry,
    definition_errors,
    parse_app_definition,
)


def only_error(data):
    errors = definition_errors(data)
    assert len(errors) == 1, [str(error) for error in errors]
    with pytest.raises(CommandDefinitionError) as caught:
        parse_app_definition(data)
    assert caught.value.path == errors[0].path
    return errors[0]


def test_seed_example_validates(seed_app):
    app = parse_app_definition(seed_app)
    assert isinstance(app, AppDefinition)
    assert definition_errors(seed_app) == []
    (command,) = app.commands
    assert command.name == "ecommstore.app.store.refundOrder"
    assert command.display_name == "Refund Order"
    assert command.permitted_args == ["store"]
    assert command.url == "https://{{{store}}}.example-ecommstore.com/orders"
    assert command.http_method == "post"
    assert command.audit_logging is True
    assert command.cache_seconds == 15
    assert command.auth_token_key == "ecommstore.default.authToken"
    assert command.input_schema is not None
    assert command.input_schema["required"] == ["foo"]
    assert command.output_schema is not None
    assert command.output_schema["additionalProperties"] is True
    assert app.version == "0.0.1"
    assert app.title == "E-comm Store"
    assert app.command("ecommstore.app.store.refundOrder") is command
    assert app.command("nope") is None


def test_dumps_back_to_camel_case(seed_app):
    dumped = parse_app_definition(seed_app).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["commands"][0]["permittedArgs"] == ["store"]
    assert dumped["commands"][0]["appSettings"] == {"authToken": {"key": "ecommstore.default.authToken"}}


def test_minimal_command_and_other_app_properties_are_kept(acme_app):
    data = acme_app()
    data["kviews"] = [{"resource": "customer"}]
    app = parse_app_definition(data)
    command = app.commands[0]
    assert command.permitted_args == []
    assert command.audit_logging is False
    assert command.cache_seconds is None
    assert command.app_settings is None
    assert command.auth_token_key is None
    assert app.model_extra == {"kviews": [{"resource": "customer"}]}


def test_parse_returns_an_already_parsed_definition(seed_app):
    app = parse_app_definition(seed_app)
    assert parse_app_definition(app) is app


@pytest.mark.parametrize("missing", ["name", "url", "httpMethod"])
def test_required_properties(seed_command, seed_app, missing):
    del seed_command[missing]
    error = only_error(seed_app)
    assert error.path == f"commands/0/{missing}"
    assert "required" in error.message


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_documented_methods(acme_app, method):
    assert parse_app_definition(acme_app(httpMethod=method)).commands[0].http_method == method


@pytest.mark.parametrize("method", ["POST", "head", "options", "", 1])
def test_other_methods_are_refused(acme_app, method):
    error = only_error(acme_app(httpMethod=method))
    assert error.path == "commands/0/httpMethod"
    assert "'get', 'post', 'put', 'patch' or 'delete'" in error.message


@pytest.mark.parametrize("seconds", [15, 15.5, 300, 600])
def test_cache_seconds_in_range(acme_app, seconds):
    assert parse_app_definition(acme_app(cacheSeconds=seconds)).commands[0].cache_seconds == seconds


@pytest.mark.parametrize("seconds", [14, 14.99, 601, 0, -15, "15", True, None])
def test_cache_seconds_out_of_range_or_not_a_number(acme_app, seconds):
    data = acme_app(cacheSeconds=seconds)
    if seconds is None:  # an explicit null means "not set"
        assert parse_app_definition(data).commands[0].cache_seconds is None
        return
    error = only_error(data)
    assert error.path == "commands/0/cacheSeconds"


def test_audit_logging_must_be_boolean_even_in_the_seed_typo(acme_app):
    # The seed's cacheSeconds example reads '"auditLogging": 15'.
    error = only_error(acme_app(auditLogging=15))
    assert error.path == "commands/0/auditLogging"
    assert parse_app_definition(acme_app(auditLogging=True)).commands[0].audit_logging is True


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ecommstore.store.refundOrder", "prefixed 'ecommstore.app.'"),
        ("other.app.store.refundOrder", "prefixed 'ecommstore.app.'"),
        ("ecommstore.application.refund", "prefixed 'ecommstore.app.'"),
        ("ecommstore.app.", "dot-separated segments"),
        ("ecommstore.app..refund", "dot-separated segments"),
        ("ecommstore.app.refund order", "dot-separated segments"),
        ("ecommstore.app.refund/order", "dot-separated segments"),
        ("", "dot-separated segments"),
    ],
)
def test_command_names_are_prefixed_with_the_app(seed_command, seed_app, name, fragment):
    seed_command["name"] = name
    error = only_error(seed_app)
    assert error.path == "commands/0/name"
    assert fragment in error.message


def test_command_names_are_unique_within_the_app(seed_app):
    seed_app["commands"].append(dict(seed_app["commands"][0]))
    error = only_error(seed_app)
    assert error.path == "commands/1/name"
    assert "globally unique" in error.message
    assert "commands/0" in error.message


def test_registry_keeps_names_globally_unique_and_replaces_new_versions(seed_app, acme_app):
    registry = CommandRegistry([seed_app, acme_app()])
    assert len(registry) == 2
    assert set(registry.apps) == {"ecommstore", "acme"}
    newer = dict(seed_app, version="0.0.2")
    newer["commands"] = [dict(seed_app["commands"][0], name="ecommstore.app.store.cancelOrder")]
    registry.register(newer)
    assert registry.find("ecommstore.app.store.refundOrder") is None
    found = registry.find("ecommstore.app.store.cancelOrder")
    assert found is not None
    assert found.app.version == "0.0.2"
    assert [item.command.name for item in registry] == ["acme.app.thing", "ecommstore.app.store.cancelOrder"]
    registry.unregister("acme")
    registry.unregister("never-registered")
    assert len(registry) == 1
    assert "CommandRegistry(apps=['ecommstore']" in repr(registry)


def test_registry_resolves_names_without_the_app_infix(seed_app):
    registry = CommandRegistry([seed_app])
    full = registry.resolve("ecommstore.app.store.refundOrder")
    assert registry.resolve("ecommstore.store.refundOrder") is full
    assert registry.find("ecommstore.app.nope") is None
    assert registry.find("ecommstore") is None
    assert registry.find("other.store.refundOrder") is None
    with pytest.raises(CommandError, match=re.escape("unknown command 'ecommstore.nope'")):
        registry.resolve("ecommstore.nope")


@pytest.mark.parametrize(
    "key",
    [
        "authToken",
        "ecommstore.authToken",
        "ecommstore.default.auth.token",
        "ecommstore..authToken",
        "ecommstore.default.auth token",
    ],
)
def test_setting_keys_have_three_segments(seed_command, seed_app, key):
    seed_command["appSettings"]["authToken"]["key"] = key
    error = only_error(seed_app)
    assert error.path == "commands/0/appSettings/authToken/key"
    assert "<app>.<category>.<value>" in error.message


def test_setting_keys_start_with_the_app_id(seed_command, seed_app):
    seed_command["appSettings"]["authToken"]["key"] = "otherapp.default.authToken"
    error = only_error(seed_app)
    assert error.path == "commands/0/appSettings/authToken/key"
    assert "must start with the app id" in error.message


def test_only_auth_token_is_a_documented_app_setting(seed_command, seed_app):
    seed_command["appSettings"]["apiKey"] = {"key": "ecommstore.default.apiKey"}
    error = only_error(seed_app)
    assert error.path == "commands/0/appSettings/apiKey"
    assert "unknown property" in error.message


def test_auth_token_needs_a_key(seed_command, seed_app):
    seed_command["appSettings"]["authToken"] = {}
    assert only_error(seed_app).path == "commands/0/appSettings/authToken/key"


def test_unknown_command_properties_are_refused(seed_command, seed_app):
    seed_command["headers"] = {"X": "y"}
    error = only_error(seed_app)
    assert error.path == "commands/0/headers"
    assert "unknown property" in error.message


def test_permitted_url_args_is_an_alias_of_permitted_args(acme_app):
    data = acme_app(permittedUrlArgs=["store"], url="https://{{{store}}}.acme.test/")
    assert parse_app_definition(data).commands[0].permitted_args == ["store"]


def test_permitted_url_args_together_with_permitted_args_is_refused(acme_app):
    error = only_error(acme_app(permittedUrlArgs=["a"], permittedArgs=["a"]))
    assert error.path == "commands/0/permittedUrlArgs"


@pytest.mark.parametrize(
    ("args", "index", "fragment"),
    [
        (["authToken"], 0, "reserved"),
        (["store", "store"], 1, "listed twice"),
        (["store", "bad name"], 1, "not a variable name"),
        (["1st"], 0, "not a variable name"),
        ([""], 0, "not a variable name"),
    ],
)
def test_permitted_args_names(acme_app, args, index, fragment):
    error = only_error(acme_app(permittedArgs=args))
    assert error.path == f"commands/0/permittedArgs/{index}"
    assert fragment in error.message


def test_permitted_args_must_be_a_list_of_strings(acme_app):
    assert only_error(acme_app(permittedArgs="store")).path == "commands/0/permittedArgs"
    assert only_error(acme_app(permittedArgs=[1])).path == "commands/0/permittedArgs/0"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://files.acme.test/x", "literal 'https://' or 'http://'"),
        ("{{{base}}}/orders", "literal 'https://' or 'http://'"),
        ("//acme.test/orders", "literal 'https://' or 'http://'"),
        ("https:///orders", "no host"),
        ("https://{{store.acme.test/", "not a valid Handlebars template"),
        ("https://{{#if a}}x.acme.test/", "not a valid Handlebars template"),
        ("https://api.acme.test/?token={{authToken}}", "must not use {{authToken}}"),
    ],
)
def test_url_templates(acme_app, url, fragment):
    error = only_error(acme_app(url=url, permittedArgs=["store", "base", "a"]))
    assert error.path == "commands/0/url"
    assert fragment in error.message


def test_url_may_use_http_and_any_case_scheme(acme_app):
    assert parse_app_definition(acme_app(url="HTTP://localhost:8080/x")).commands[0].url.startswith("HTTP")


@pytest.mark.parametrize(
    ("prop", "value"),
    [("displayName", 7), ("appAccountName", ""), ("appAccountName", 3), ("inputSchema", "object")],
)
def test_property_types(acme_app, prop, value):
    assert only_error(acme_app(**{prop: value})).path == f"commands/0/{prop}"


def test_app_account_name_is_kept(acme_app):
    assert parse_app_definition(acme_app(appAccountName="shopify")).commands[0].app_account_name == "shopify"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ([], "(root)"),
        ("app", "(root)"),
        (None, "(root)"),
        ({}, "app"),
        ({"app": "e comm"}, "app"),
        ({"app": "acme.v2"}, "app"),
        ({"app": "acme", "commands": {}}, "commands"),
        ({"app": "acme", "commands": [1]}, "commands/0"),
        ({"app": "acme", "version": 1}, "version"),
    ],
)
def test_app_level_shape(data, path):
    assert only_error(data).path == path


# --- inputSchema / outputSchema: the documented subset ---


@pytest.mark.parametrize("which", ["inputSchema", "outputSchema"])
@pytest.mark.parametrize(
    ("schema", "path", "fragment"),
    [
        ({"type": "object", "items": {}}, "items", "unsupported schema keyword"),
        ({"type": "string", "enum": ["a"]}, "enum", "unsupported schema keyword"),
        ({"type": "object", "$ref": "#/x"}, "$ref", "unsupported schema keyword"),
        ({"type": "string", "description": "x"}, "description", "unsupported schema keyword"),
        ({"type": "integer"}, "type", "unsupported type 'integer'"),
        ({"type": "null"}, "type", "unsupported type 'null'"),
        ({"type": ["string", "null"]}, "type", "unsupported type"),
        ({"properties": {}}, "", "needs a 'type'"),
        ({"type": "string", "properties": {}}, "properties", "only allowed in a schema of type 'object'"),
        ({"type": "array", "required": []}, "required", "only allowed in a schema of type 'object'"),
        ({"type": "number", "additionalProperties": False}, "additionalProperties", "only allowed"),
        ({"type": "object", "properties": []}, "properties", "must be an object"),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            "additionalProperties",
            "true or false",
        ),
        ({"type": "object", "required": "foo"}, "required", "list of property names"),
        ({"type": "object", "required": [1]}, "required", "list of property names"),
        (
            {"type": "object", "required": ["a", "a"], "properties": {"a": {"type": "string"}}},
            "required/1",
            "twice",
        ),
        (
            {
                "type": "object",
                "required": ["b"],
                "properties": {"a": {"type": "string"}},
                "additionalProperties": False,
            },
            "required/0",
            "no body could satisfy",
        ),
        ({"type": "object", "properties": {"a": "string"}}, "properties/a", "must be a JSON object"),
        ({"type": "object", "properties": {"a": {"type": "date"}}}, "properties/a/type", "unsupported type"),
        (
            {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"format": "x"}}}}},
            "properties/a/properties/b",
            "needs a 'type'",
        ),
        (
            {"type": "object", "properties": {"a/b": {"type": "x"}}},
            "properties/a~1b/type",
            "unsupported type",
        ),
    ],
)
def test_schema_subset(seed_command, seed_app, which, schema, path, fragment):
    seed_command[which] = schema
    errors = definition_errors(seed_app)
    expected = f"commands/0/{which}/{path}".rstrip("/")
    matching = [error for error in errors if error.path == expected]
    assert matching, [str(error) for error in errors]
    assert fragment in matching[0].message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string"},
        {"type": "array"},
        {"type": "object"},
        {
            "type": "object",
            "properties": {
                "a": {"type": "number"},
                "b": {"type": "object", "properties": {"c": {"type": "boolean"}}, "required": ["c"]},
                "d": {"type": "array"},
            },
            "required": ["a"],
            "additionalProperties": False,
        },
    ],
)
def test_schemas_inside_the_subset(acme_app, schema):
    command = parse_app_definition(acme_app(inputSchema=schema, outputSchema=schema)).commands[0]
    assert command.input_schema == schema


def test_every_problem_is_reported_and_parse_names_the_rest(acme_app):
    data = acme_app(httpMethod="POST", cacheSeconds=5, url="ftp://x", bogus=1)
    errors = definition_errors(data)
    assert {error.path for error in errors} == {
        "commands/0/httpMethod",
        "commands/0/cacheSeconds",
        "commands/0/url",
        "commands/0/bogus",
    }
    with pytest.raises(CommandDefinitionError, match=r"\(and 3 more problems\)") as caught:
        parse_app_definition(data)
    assert caught.value.path == errors[0].path
    assert str(caught.value).startswith(f"{errors[0].path}: ")


def test_error_is_a_command_error_with_code_and_path(acme_app):
    error = only_error(acme_app(cacheSeconds=1000))
    assert isinstance(error, CommandError)
    assert error.to_dict()["code"] == "command_definition"
    assert str(error).startswith("commands/0/cacheSeconds: ")
