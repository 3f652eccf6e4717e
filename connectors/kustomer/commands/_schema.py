"""Input/output body coercion for the documented JSON-schema subset.

Kustomer "automatically converts properties ... to the corresponding type specified in the schema". The
conversions follow Ajv's ``coerceTypes: "array"`` (the JSON-schema validator Node services use): numbers
and booleans become strings, numeric strings become numbers, ``"true"``/``"false"`` and ``1``/``0`` become
booleans, ``null`` becomes ``""``/``0``/``false``, a scalar becomes a one-item array and a one-item array
a scalar. Numeric strings must be JSON numbers (``" 12"`` is not converted). Objects are never converted.

After coercion, input bodies are validated with ``jsonschema`` (missing ``required`` properties, properties
refused by ``additionalProperties: false``, values that could not be converted). Output bodies are never
refused: properties that cannot be converted are dropped, properties refused by ``additionalProperties:
false`` are filtered out, and missing ``required`` properties are simply absent ("won't be transmitted").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from jsonschema import Draft202012Validator

__all__ = ["coerce_input", "coerce_output"]


class _Fail:
    """Marker: the value cannot be converted to the schema's type."""


_FAIL: Final = _Fail()
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_TYPES: Final[tuple[tuple[type, str], ...]] = (
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _to_string(value: Any) -> str | _Fail:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(value)
    return "" if value is None else _FAIL


def _to_number(value: Any) -> int | float | _Fail:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int | float):
        return value
    if value is None:
        return 0
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        if any(mark in value for mark in ".eE"):
            number = float(value)
            return number if math.isfinite(number) else _FAIL
        return int(value)
    return _FAIL


def _to_boolean(value: Any) -> bool | _Fail:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    return _FAIL


_SCALARS: Final = {"string": _to_string, "number": _to_number, "boolean": _to_boolean}


def _coerce(value: Any, schema: Mapping[str, Any], *, output: bool) -> Any:
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, Mapping):
            return _FAIL
        properties: Mapping[str, Any] = schema.get("properties", {})
        allow_extra = schema.get("additionalProperties", True) is not False
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub = properties.get(key)
            if sub is None:
                if allow_extra or not output:
                    result[key] = item
                continue
            coerced = _coerce(item, sub, output=output)
            if isinstance(coerced, _Fail):
                if output:
                    continue
                coerced = item
            result[key] = coerced
        return result
    if kind == "array":
        if isinstance(value, list):
            return value
        return _FAIL if isinstance(value, Mapping) or value is None else [value]
    convert = _SCALARS.get(str(kind))
    if convert is None:
        return _FAIL
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return convert(value)


def _message(error: Any) -> str:
    if error.validator == "type":
        return f"expected {error.validator_value}, got {_json_type(error.instance)}"
    return str(error.message)


def coerce_input(body: Any, schema: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Convert a command's input body to its ``inputSchema`` and validate it.

    A missing body (None) is treated as ``{}`` when the schema is an object schema, so missing ``required``
    properties are reported as such.

    Args:
        body: the caller's body.
        schema: the command's ``inputSchema`` (already checked to be inside the subset).

    Returns:
        ``(coerced body, problems)``; each problem reads ``path: message`` and the request must be refused
        when there is any.
    """
    if body is None and schema.get("type") == "object":
        body = {}
    coerced = _coerce(body, schema, output=False)
    if isinstance(coerced, _Fail):
        coerced = body
    errors = Draft202012Validator(dict(schema)).iter_errors(coerced)
    problems = sorted(
        f"{'/'.join(str(part) for part in error.absolute_path) or '(body)'}: {_message(error)}" for error in errors
    )
    return coerced, problems


def coerce_output(body: Any, schema: Mapping[str, Any]) -> Any:
    """Convert and filter a command's response body with its ``outputSchema``; never fails.

    Args:
        body: the decoded JSON response body.
        schema: the command's ``outputSchema``.

    Returns:
        The converted body: unconvertible properties dropped, additional properties filtered when the schema
        says ``additionalProperties: false``; None when the body as a whole cannot be converted.
    """
    coerced = _coerce(body, schema, output=True)
    return None if isinstance(coerced, _Fail) else coerced
