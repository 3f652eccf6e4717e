"""App-definition models for Apps Platform commands and the rules that validate them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from connectors.errors import CommandDefinitionError
from connectors.kustomer.commands._templating import url_template_problems

__all__ = [
    "AUTH_TOKEN_VARIABLE",
    "SCHEMA_KEYWORDS",
    "SCHEMA_TYPES",
    "AppDefinition",
    "AppSettingsRef",
    "AuthTokenSetting",
    "CommandDefinition",
    "HttpMethod",
    "definition_errors",
    "json_path",
    "parse_app_definition",
    "schema_problems",
]

HttpMethod = Literal["get", "post", "put", "patch", "delete"]

AUTH_TOKEN_VARIABLE: Final = "authToken"  # noqa: S105 - a variable name, not a secret
"""The Handlebars variable that resolves to the secret ``appSettings.authToken`` at run time."""

SCHEMA_TYPES: Final = ("string", "boolean", "number", "object", "array")
"""The schema data types the Apps Platform documents for ``inputSchema``/``outputSchema``."""

SCHEMA_KEYWORDS: Final = ("type", "properties", "required", "additionalProperties")
"""``type`` plus the three keywords the Apps Platform documents ("top level object types")."""

_APP_ID = re.compile(r"[A-Za-z0-9_-]+")
_NAME_SEGMENT = r"[A-Za-z0-9_-]+"
_COMMAND_NAME = re.compile(rf"{_NAME_SEGMENT}(?:\.{_NAME_SEGMENT})*")
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_SETTING_SEGMENT = re.compile(_NAME_SEGMENT)


class _RuleViolation(ValueError):
    """Raised inside validators; carries ``(relative path, message)`` pairs for :func:`definition_errors`."""

    def __init__(self, problems: Sequence[tuple[Sequence[str | int], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = list(problems)


def json_path(parts: Iterable[str | int]) -> str:
    """Join location parts into the ``commands/0/url`` form used by :class:`CommandDefinitionError`.

    ``~`` and ``/`` inside a key are escaped as in a JSON pointer (``~0``, ``~1``); the root is ``(root)``.

    Args:
        parts: keys and list indexes from the outermost to the innermost.

    Returns:
        The joined path.
    """
    joined = "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in parts)
    return joined or "(root)"


def schema_problems(schema: Any, *, top_level: bool = True) -> list[tuple[list[str | int], str]]:
    """List every way ``schema`` leaves the documented JSON-schema subset.

    The subset: each schema is an object with a ``type`` among :data:`SCHEMA_TYPES`; an ``object`` schema may
    add ``properties`` (name -> schema), ``required`` (unique names) and ``additionalProperties`` (boolean).
    Anything else (``items``, ``enum``, ``$ref``, a list of types, ...) is reported.

    Args:
        schema: the candidate schema (any JSON value).
        top_level: whether ``schema`` is the root (only changes wording).

    Returns:
        ``(relative path, message)`` pairs; empty when the schema is inside the subset.
    """
    problems: list[tuple[list[str | int], str]] = []
    what = "a schema" if top_level else "a property schema"
    if not isinstance(schema, Mapping):
        return [([], f"{what} must be a JSON object")]
    for keyword in schema:
        if keyword not in SCHEMA_KEYWORDS:
            supported = ", ".join(SCHEMA_KEYWORDS)
            problems.append(([str(keyword)], f"unsupported schema keyword (supported: {supported})"))
    kind = schema.get("type")
    if "type" not in schema:
        problems.append(([], f"{what} needs a 'type' ({', '.join(SCHEMA_TYPES)})"))
    elif not isinstance(kind, str) or kind not in SCHEMA_TYPES:
        problems.append((["type"], f"unsupported type {kind!r} (supported: {', '.join(SCHEMA_TYPES)})"))
    if kind != "object":
        for keyword in ("properties", "required", "additionalProperties"):
            if keyword in schema:
                problems.append(([keyword], "only allowed in a schema of type 'object'"))
        return problems
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        problems.append((["properties"], "must be an object mapping property names to schemas"))
        properties = {}
    for name, sub in properties.items():
        problems.extend(
            (["properties", str(name), *path], message) for path, message in schema_problems(sub, top_level=False)
        )
    additional = schema.get("additionalProperties", True)
    if not isinstance(additional, bool):
        problems.append((["additionalProperties"], "must be true or false (schema values are not supported)"))
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
        problems.append((["required"], "must be a list of property names"))
    else:
        seen: set[str] = set()
        for index, item in enumerate(required):
            if item in seen:
                problems.append((["required", index], f"{item!r} is listed twice"))
            seen.add(item)
            if additional is False and item not in properties:
                problems.append(
                    (
                        ["required", index],
                        f"{item!r} is required but not in properties and additionalProperties "
                        "is false, so no body could satisfy the schema",
                    )
                )
    return problems


class _Model(BaseModel):
    """Wire model: camelCase aliases, strict JSON types, unknown properties refused, immutable."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class AuthTokenSetting(_Model):
    """``appSettings.authToken``: which app setting holds the secret token.

    Attributes:
        key: lookup string of the app setting, formatted ``<app>.<category>.<value>``.
    """

    key: str

    @field_validator("key")
    @classmethod
    def _three_segments(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 3 or not all(_SETTING_SEGMENT.fullmatch(part) for part in parts):
            raise _RuleViolation(
                [((), "must be formatted '<app>.<category>.<value>' (e.g. 'ecommstore.default.authToken')")]
            )
        return value


class AppSettingsRef(_Model):
    """``appSettings``: the app settings a command uses (only ``authToken`` is documented).

    Attributes:
        auth_token: the secret setting exposed to header and body templates as ``{{authToken}}``.
    """

    auth_token: AuthTokenSetting | None = None


class CommandDefinition(_Model):
    """One entry of an app definition's ``commands`` array, with every documented property.

    Attributes:
        name: globally unique name, prefixed ``<app>.app.`` (checked by :class:`AppDefinition`).
        display_name: metadata for the Kustomer UI.
        permitted_args: variables callers may interpolate (``permittedUrlArgs`` is accepted as an alias).
        url: target URL template; the scheme (``http://``/``https://``) must be literal.
        http_method: one of ``get``, ``post``, ``put``, ``patch``, ``delete`` (lower case, as documented).
        audit_logging: record every run in the audit log.
        cache_seconds: 15..600; enables caching and Cache Fallback Mode.
        app_settings: the secret app setting(s) the command uses.
        app_account_name: an OAuth 2.0 client app account (validated and carried, not resolved locally).
        input_schema: validates and coerces the request body (documented JSON-schema subset).
        output_schema: coerces and filters the response body (documented JSON-schema subset).
    """

    name: str
    display_name: str | None = None
    permitted_args: list[str] = Field(default_factory=list)
    url: str
    http_method: HttpMethod
    audit_logging: bool = False
    cache_seconds: float | None = Field(default=None, ge=15, le=600)
    app_settings: AppSettingsRef | None = None
    app_account_name: str | None = Field(default=None, min_length=1)
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _permitted_url_args_alias(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "permittedUrlArgs" in data:
            if "permittedArgs" in data or "permitted_args" in data:
                raise _RuleViolation(
                    [(("permittedUrlArgs",), "give permittedArgs only (permittedUrlArgs is its old name)")]
                )
            data = {("permittedArgs" if key == "permittedUrlArgs" else key): value for key, value in data.items()}
        return data

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _COMMAND_NAME.fullmatch(value):
            raise _RuleViolation([((), "must be dot-separated segments of letters, digits, '_' or '-'")])
        return value

    @field_validator("permitted_args")
    @classmethod
    def _arg_names(cls, value: list[str]) -> list[str]:
        problems: list[tuple[Sequence[str | int], str]] = []
        seen: set[str] = set()
        for index, arg in enumerate(value):
            if arg == AUTH_TOKEN_VARIABLE:
                problems.append(((index,), f"{arg!r} is reserved for the secret app setting; use appSettings"))
            elif not _ARG_NAME.fullmatch(arg):
                problems.append(((index,), f"{arg!r} is not a variable name (letters, digits, '_' or '-')"))
            elif arg in seen:
                problems.append(((index,), f"{arg!r} is listed twice"))
            seen.add(arg)
        if problems:
            raise _RuleViolation(problems)
        return value

    @field_validator("url")
    @classmethod
    def _url_template(cls, value: str) -> str:
        problems = url_template_problems(value)
        if problems:
            raise _RuleViolation([((), message) for message in problems])
        return value

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _schema_subset(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            problems = schema_problems(value)
            if problems:
                raise _RuleViolation(problems)
        return value

    @property
    def auth_token_key(self) -> str | None:
        """The app-setting key behind ``{{authToken}}``, if the command declares one."""
        if self.app_settings is None or self.app_settings.auth_token is None:
            return None
        return self.app_settings.auth_token.key


class AppDefinition(_Model):
    """An app definition: ``app`` id, metadata and its ``commands``.

    Properties other than ``commands`` (klasses, kviews, settings, ...) are kept as they are.

    Attributes:
        app: the app id (letters, digits, ``_``, ``-``); prefixes command names and setting keys.
        version: app version.
        title: app title.
        commands: the command definitions.
    """

    model_config = ConfigDict(extra="allow")

    app: str
    version: str | None = None
    title: str | None = None
    commands: list[CommandDefinition] = Field(default_factory=list)

    @field_validator("app")
    @classmethod
    def _app_id(cls, value: str) -> str:
        if not _APP_ID.fullmatch(value):
            raise _RuleViolation([((), "app id must be letters, digits, '_' or '-'")])
        return value

    @model_validator(mode="after")
    def _cross_command_rules(self) -> AppDefinition:
        problems: list[tuple[Sequence[str | int], str]] = []
        prefix = f"{self.app}.app."
        first_index: dict[str, int] = {}
        for index, command in enumerate(self.commands):
            where: list[str | int] = ["commands", index]
            if not command.name.startswith(prefix) or command.name == prefix:
                problems.append(([*where, "name"], f"must be prefixed {prefix!r} (e.g. '{prefix}store.refundOrder')"))
            if command.name in first_index:
                problems.append(
                    (
                        [*where, "name"],
                        f"must be globally unique: already used by commands/{first_index[command.name]}",
                    )
                )
            first_index.setdefault(command.name, index)
            key = command.auth_token_key
            if key is not None and key.split(".")[0] != self.app:
                problems.append(
                    (
                        [*where, "appSettings", "authToken", "key"],
                        f"must start with the app id: '{self.app}.<category>.<value>'",
                    )
                )
        if problems:
            raise _RuleViolation(problems)
        return self

    def command(self, name: str) -> CommandDefinition | None:
        """Return the command called ``name`` in this app, or None."""
        return next((command for command in self.commands if command.name == name), None)


_PYDANTIC_MESSAGES: Final[Mapping[str, str]] = {
    "missing": "required property is missing",
    "extra_forbidden": "unknown property (not part of the documented command format)",
}


def definition_errors(data: Any) -> list[CommandDefinitionError]:
    """Validate an app definition and return every problem found (empty when it is valid).

    Args:
        data: the parsed app-definition JSON.

    Returns:
        One :class:`CommandDefinitionError` per problem, each with its ``path``.
    """
    try:
        AppDefinition.model_validate(data)
    except ValidationError as exc:
        return _errors_from(exc)
    return []


def parse_app_definition(data: Any) -> AppDefinition:
    """Validate an app definition and return the model.

    Args:
        data: the parsed app-definition JSON, or an :class:`AppDefinition`.

    Returns:
        The validated definition.

    Raises:
        CommandDefinitionError: the first problem found; ``path`` locates it (all problems: see
            :func:`definition_errors`).
    """
    if isinstance(data, AppDefinition):
        return data
    try:
        return AppDefinition.model_validate(data)
    except ValidationError as exc:
        errors = _errors_from(exc)
        first = errors[0]
        if len(errors) > 1:
            more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            raise CommandDefinitionError(_strip_path(first) + more, path=first.path) from None
        raise first from None


def _strip_path(error: CommandDefinitionError) -> str:
    return error.message.removeprefix(f"{error.path}: ")


def _errors_from(exc: ValidationError) -> list[CommandDefinitionError]:
    errors: list[CommandDefinitionError] = []
    for item in exc.errors(include_url=False):
        location = list(item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, _RuleViolation):
            errors.extend(
                CommandDefinitionError(message, path=json_path([*location, *relative]))
                for relative, message in cause.problems
            )
            continue
        message = _PYDANTIC_MESSAGES.get(item["type"], item["msg"])
        errors.append(CommandDefinitionError(message, path=json_path(location)))
    return errors
