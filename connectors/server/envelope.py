"""Morph's resource envelope, list queries from query strings, and JSON bodies validated against unified models.

A record is answered as::

    {"object": "resource", "model": "genericContact", "id": "...",
     "fields": {"firstName": ..., "email": ..., "customFields": {...}},   # every unified field but the four below
     "createdAt": "...", "updatedAt": "...", "rawResource": {...}}        # rawResource only with raw=true

and a page as ``{"object": "list", "data": [<resource>...], "next": "<cursor>" | null}``.

List filters come as ``filter[<name>]=<value>`` (repeat a parameter for a list; ``ids`` and ``tags`` also take
commas) and ``filter[custom.<key>][<op>]=<value>`` with op one of ``equals, contains, in, gt, gte, lt, lte,
not_set``. Values of ``custom.*`` filters are read as JSON when they parse (``true``, ``42``, ``["a","b"]``) and
as text otherwise; quote a string that looks like JSON (``"42"``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError
from starlette.requests import Request

from connectors.server.errors import HTTPProblem, pydantic_errors, validation_problem
from unified_models import CUSTOM_PREFIX, FieldDefinition, Page, UnifiedResource, model_class, partial

__all__ = [
    "LIST_PARAMS",
    "check_id",
    "check_model",
    "delete_envelope",
    "fields_envelope",
    "list_envelope",
    "parse_filters",
    "read_json_object",
    "resource_envelope",
    "split_list",
    "validate_resource_body",
]

LIST_PARAMS: Final = frozenset(
    {"limit", "cursor", "q", "sort", "fields", "raw", "expand", "ownerId", "connectionId", "connectorId", "label"}
)
_FILTER_RE: Final = re.compile(r"^filter\[([^\[\]]+)\](?:\[([^\[\]]+)\])?$")
_LIST_FILTERS: Final = frozenset({"ids", "tags"})
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_SPACE: Final = re.compile(r"[\x00-\x20\x7f]")
_KLASS: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_BAD_ID: Final = re.compile(r"[/?#\\%]")
_ENVELOPE_KEYS: Final = ("id", "createdAt", "updatedAt", "raw")
_READ_ONLY_INPUT: Final = frozenset({"id", "createdAt", "created_at", "updatedAt", "updated_at", "raw"})


def check_model(model: str) -> type[UnifiedResource]:
    """The class of a unified model id from a URL (``custom:<klass>`` needs a plain Klass name).

    Raises:
        HTTPProblem: 404 ``unknown_model`` (the message lists the known models).
    """
    if model.startswith(CUSTOM_PREFIX) and not _KLASS.match(model[len(CUSTOM_PREFIX) :]):
        raise HTTPProblem(404, "unknown_model", "custom:<klass> needs a Klass name of letters, digits, '-', '_' or '.'")
    try:
        return model_class(model)
    except KeyError as exc:
        raise HTTPProblem(404, "unknown_model", str(exc.args[0]), extra={"model": model}) from None


def check_id(id: str) -> str:
    """A record id from a URL.

    Raises:
        HTTPProblem: 422 naming ``path.id`` for whitespace, control characters, slashes, ``?``, ``#``, ``%``
            or a dot segment.
    """
    if not id or len(id) > 200 or id in (".", "..") or _BAD_ID.search(id) or _SPACE.search(id):
        raise validation_problem([{"path": "path.id", "message": "not a valid record id"}])
    return id


def resource_envelope(model: str, obj: UnifiedResource, *, include_raw: bool = False) -> dict[str, Any]:
    """Morph's resource envelope of one record."""
    data = obj.model_dump(mode="json", by_alias=True)
    envelope: dict[str, Any] = {
        "object": "resource",
        "model": obj.model_id if model.startswith(CUSTOM_PREFIX) else model,
        "id": data.get("id"),
        "fields": {k: v for k, v in data.items() if k not in _ENVELOPE_KEYS},
        "createdAt": data.get("createdAt"),
        "updatedAt": data.get("updatedAt"),
    }
    if include_raw:
        envelope["rawResource"] = data.get("raw")
    return envelope


def list_envelope(model: str, page: Page[Any], *, include_raw: bool = False) -> dict[str, Any]:
    """``{"object": "list", "data": [...], "next": cursor | null}`` (plus ``total`` when known)."""
    body: dict[str, Any] = {
        "object": "list",
        "model": model,
        "data": [resource_envelope(model, item, include_raw=include_raw) for item in page.data],
        "next": page.next,
    }
    if page.total is not None:
        body["total"] = page.total
    return body


def delete_envelope(model: str, id: str) -> dict[str, Any]:
    """The answer to a deletion."""
    return {"object": "resource", "model": model, "id": id, "deleted": True}


def fields_envelope(model: str, definitions: Sequence[FieldDefinition]) -> dict[str, Any]:
    """A list of field definitions."""
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "field", **d.model_dump(mode="json", by_alias=True)} for d in definitions],
        "next": None,
    }


def split_list(values: Sequence[str]) -> list[str]:
    """Repeated and comma-separated values as one list (empty items dropped)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_filters(items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Unified filters from query items (see the module docstring).

    Raises:
        HTTPProblem: 422 for an unknown parameter or a malformed filter (the path names it).
    """
    grouped: dict[tuple[str, str | None], list[str]] = {}
    problems: list[dict[str, Any]] = []
    for key, text in items:
        if _CONTROL.search(text):
            problems.append({"path": f"query.{key}", "message": "control characters are not allowed"})
            continue
        if key in LIST_PARAMS:
            continue
        match = _FILTER_RE.match(key)
        if match is None:
            problems.append({"path": f"query.{key}", "message": "unknown query parameter"})
            continue
        name, op = match.group(1), match.group(2)
        if op is not None and not name.startswith("custom."):
            problems.append({"path": f"query.{key}", "message": "operators are only supported on custom.<key> filters"})
            continue
        grouped.setdefault((name, op), []).append(text)
    if problems:
        raise validation_problem(problems)
    filters: dict[str, Any] = {}
    for (name, op), values in grouped.items():
        if name.startswith("custom."):
            if op is None:
                decoded = [_json_or_text(v) for v in values]
                value: Any = decoded[0] if len(decoded) == 1 else decoded
            elif op == "in":
                value = {"in": [_json_or_text(v) for v in split_list(values)]}
            elif op == "not_set":
                value = {"not_set": _json_or_text(values[-1]) if values[-1] else True}
            else:
                value = {op: _json_or_text(values[-1])}
            if name in filters and isinstance(filters[name], dict) and isinstance(value, dict):
                raise validation_problem(
                    [{"path": f"query.filter[{name}]", "message": "give one operator per custom filter"}]
                )
            filters[name] = value
        elif name in _LIST_FILTERS:
            filters[name] = split_list(values)
            if name == "ids":
                bad = [i for i in filters[name] if len(i) > 200 or i in (".", "..") or _BAD_ID.search(i)]
                if bad:
                    raise validation_problem([{"path": "query.filter[ids]", "message": f"invalid id {bad[0]!r}"}])
        else:
            filters[name] = values[0] if len(values) == 1 else values
    return filters


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        HTTPProblem: 415 for a non-JSON content type; 422 for an empty, malformed or non-object body.
    """
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise HTTPProblem(415, "unsupported_media_type", "send the body as Content-Type: application/json")
    raw = await request.body()
    if not raw.strip():
        raise validation_problem([{"path": "body", "message": "a JSON object is required"}])
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise validation_problem(
            [{"path": "body", "message": f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"}]
        ) from None
    except UnicodeDecodeError:
        raise validation_problem([{"path": "body", "message": "the body is not UTF-8"}]) from None
    if not isinstance(body, dict):
        raise validation_problem([{"path": "body", "message": "must be a JSON object"}])
    return body


def validate_resource_body(model: str, body: Mapping[str, Any], *, update: bool) -> UnifiedResource:
    """Validate a create (full) or update (partial) body against the unified model.

    The body is either the fields themselves or an envelope ``{"fields": {...}}`` (optionally with
    ``"object": "resource"`` and ``"model"``). Every problem is reported with its path.

    Raises:
        HTTPProblem: 422 ``validation_error`` listing every invalid field.
    """
    cls = check_model(model)
    prefix: tuple[str, ...] = ("body",)
    fields: Mapping[str, Any] = body
    if isinstance(body.get("fields"), dict) and "fields" not in cls.model_fields:
        problems = []
        for key, value in body.items():
            if key == "fields":
                continue
            if key == "object" and value == "resource":
                continue
            if key == "model" and value == model:
                continue
            problems.append({"path": f"body.{key}", "message": "unexpected next to fields (or a wrong value)"})
        if problems:
            raise validation_problem(problems)
        fields = body["fields"]
        prefix = ("body", "fields")
    where = ".".join(prefix)
    read_only = sorted(k for k in fields if k in _READ_ONLY_INPUT)
    if read_only:
        raise validation_problem([{"path": f"{where}.{k}", "message": "is read-only"} for k in read_only])
    payload = dict(fields)
    if model.startswith(CUSTOM_PREFIX):
        object_type = model[len(CUSTOM_PREFIX) :]
        given = payload.get("objectType", payload.get("object_type", object_type))
        if given != object_type:
            raise validation_problem([{"path": f"{where}.objectType", "message": f"must be {object_type!r}"}])
        payload.pop("object_type", None)
        payload["objectType"] = object_type
    target = partial(cls) if update else cls
    try:
        return target.model_validate(payload)
    except ValidationError as exc:
        raise validation_problem(pydantic_errors(exc.errors(include_url=False), prefix=prefix)) from None
