"""inputSchema coercion/rejection and outputSchema coercion/filtering."""

from __future__ import annotations

import json

import pytest

from connectors.errors import CommandError
from connectors.kustomer.commands._schema import coerce_input, coerce_output

pytestmark = pytest.mark.anyio


def obj(**properties):
    return {"type": "object", "properties": properties}


S = {"type": "string"}
N = {"type": "number"}
B = {"type": "boolean"}
A = {"type": "array"}


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        (S, "x", "x"),
        (S, 12, "12"),
        (S, 1.5, "1.5"),
        (S, 2.0, "2"),
        (S, True, "true"),
        (S, False, "false"),
        (S, None, ""),
        (S, ["only"], "only"),
        (N, 3, 3),
        (N, 2.5, 2.5),
        (N, "12", 12),
        (N, "-1.5e2", -150.0),
        (N, "0", 0),
        (N, True, 1),
        (N, False, 0),
        (N, None, 0),
        (N, ["7"], 7),
        (B, True, True),
        (B, "true", True),
        (B, "false", False),
        (B, 1, True),
        (B, 0, False),
        (B, 0.0, False),
        (B, None, False),
        (B, ["true"], True),
        (A, [1, "a"], [1, "a"]),
        (A, "x", ["x"]),
        (A, 3, [3]),
        (A, False, [False]),
    ],
)
def test_input_coercion_to_schema_types(schema, value, expected):
    coerced, problems = coerce_input({"v": value}, obj(v=schema))
    assert problems == []
    assert coerced == {"v": expected}
    assert type(coerced["v"]) is type(expected)


@pytest.mark.parametrize(
    ("schema", "value", "got"),
    [
        (S, {"a": 1}, "object"),
        (S, [1, 2], "array"),
        (N, "12abc", "string"),
        (N, " 12", "string"),
        (N, "", "string"),
        (N, "1e999", "string"),
        (N, {}, "object"),
        (B, "yes", "string"),
        (B, 2, "number"),
        (A, {"a": 1}, "object"),
        (A, None, "null"),
        (obj(), "x", "string"),
    ],
)
def test_input_values_that_cannot_be_converted_are_rejected(schema, value, got):
    _, problems = coerce_input({"v": value}, obj(v=schema))
    assert problems == [f"v: expected {schema['type']}, got {got}"]


def test_input_nested_objects_required_and_additional_properties():
    schema = {
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {"id": N, "gift": B},
                "required": ["id"],
                "additionalProperties": False,
            },
        },
        "required": ["order", "reason"],
        "additionalProperties": False,
    }
    coerced, problems = coerce_input({"order": {"id": "5", "gift": "true"}, "reason": "late"}, schema)
    assert problems == ["(body): Additional properties are not allowed ('reason' was unexpected)"]
    assert coerced == {"order": {"id": 5, "gift": True}, "reason": "late"}
    _, problems = coerce_input({"order": {"gift": 1, "note": "x"}}, schema)
    assert problems == [
        "(body): 'reason' is a required property",
        "order: 'id' is a required property",
        "order: Additional properties are not allowed ('note' was unexpected)",
    ]


def test_input_missing_body_counts_as_empty_object():
    assert coerce_input(None, {"type": "object", "required": ["foo"]})[1] == ["(body): 'foo' is a required property"]
    assert coerce_input(None, {"type": "object"}) == ({}, [])
    assert coerce_input(None, S) == ("", [])
    assert coerce_input([1], obj())[1] == ["(body): expected object, got array"]


def test_input_additional_properties_default_to_allowed():
    assert coerce_input({"x": 1}, obj(a=S)) == ({"x": 1}, [])


def test_output_filters_converts_and_never_fails():
    schema = {
        "type": "object",
        "properties": {
            "foo": S,
            "count": N,
            "flags": {"type": "object", "properties": {"a": B}, "additionalProperties": False},
        },
        "required": ["foo", "missing"],
        "additionalProperties": False,
    }
    body = {"foo": 1, "count": "nope", "flags": {"a": "true", "b": 1}, "secretInternal": "x"}
    assert coerce_output(body, schema) == {"foo": "1", "flags": {"a": True}}


def test_output_keeps_additional_properties_when_allowed():
    assert coerce_output({"foo": 1, "x": [1]}, {"type": "object", "properties": {"foo": S}}) == {
        "foo": "1",
        "x": [1],
    }


@pytest.mark.parametrize("body", [[1, 2], "text", None, 5])
def test_output_body_of_the_wrong_kind_becomes_none(body):
    assert coerce_output(body, obj(foo=S)) is None


def test_output_top_level_scalars_and_arrays():
    assert coerce_output("5", N) == 5
    assert coerce_output({"a": 1}, A) is None
    assert coerce_output("x", A) == ["x"]


# --- through the runner ---


async def test_runner_sends_the_coerced_body_and_refuses_bad_ones(make_runner, target, acme_app):
    schema = {
        "type": "object",
        "properties": {"qty": N, "ids": A},
        "required": ["qty"],
        "additionalProperties": False,
    }
    runner = make_runner(acme_app(inputSchema=schema))
    await runner.run("acme.app.thing", body={"qty": "3", "ids": "a1"})
    assert json.loads(target.requests[0].content) == {"qty": 3, "ids": ["a1"]}
    with pytest.raises(CommandError, match=r"body rejected by inputSchema: \(body\): 'qty' is a required property"):
        await runner.run("acme.app.thing", body={"ids": []})
    with pytest.raises(CommandError, match="qty: expected number, got string"):
        await runner.run("acme.app.thing", body={"qty": "three"})
    with pytest.raises(CommandError, match="'other' was unexpected"):
        await runner.run("acme.app.thing", body={"qty": 1, "other": 1})
    assert target.calls == 1


async def test_runner_interpolates_after_validation(make_runner, target, acme_app):
    # The schema sees the caller's body: a templated string is a string, interpolated afterwards.
    runner = make_runner(acme_app(permittedArgs=["n"], inputSchema=obj(v=S)))
    await runner.run("acme.app.thing", body={"v": "n={{{n}}}"}, args={"n": "5"})
    assert json.loads(target.requests[0].content) == {"v": "n=5"}


async def test_runner_applies_the_output_schema_to_successes_only(make_runner, target, acme_app):
    schema = {"type": "object", "properties": {"id": S}, "additionalProperties": False}
    runner = make_runner(acme_app(outputSchema=schema))
    target.body = {"id": 9, "internal": "x"}
    assert (await runner.run("acme.app.thing")).body == {"id": "9"}
    target.status = 422
    target.body = {"message": "bad", "internal": "x"}
    assert (await runner.run("acme.app.thing")).body == {"message": "bad", "internal": "x"}
