"""The command runner: interpolation, secrets, schemas, caching, Cache Fallback Mode and audit logging."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_handlebars import HandlebarsError

from connectors.errors import CommandError
from connectors.kustomer.commands._audit import (
    AuditEntry,
    AuditOutcome,
    AuditSink,
    InMemoryAuditLog,
    ResultSource,
)
from connectors.kustomer.commands._cache import CachedResponse, CacheKey, CommandCache, InMemoryCommandCache
from connectors.kustomer.commands._models import AUTH_TOKEN_VARIABLE
from connectors.kustomer.commands._registry import CommandRegistry, RegisteredCommand
from connectors.kustomer.commands._schema import coerce_input, coerce_output
from connectors.kustomer.commands._settings import AppSettingsProvider, InMemoryAppSettings
from connectors.kustomer.commands._templating import Redactor, render_json, render_text, resolved_url_problem

__all__ = [
    "CACHE_RETENTION_SECONDS",
    "DEFAULT_ORG",
    "FALLBACK_PROBE_EVERY",
    "KEPT_RESPONSE_HEADERS",
    "ArgValue",
    "Clock",
    "CommandResult",
    "CommandRunRequest",
    "CommandRunner",
    "RegistryProvider",
    "SyncCommandRunner",
    "command_run_path",
]

CACHE_RETENTION_SECONDS: Final = 24 * 60 * 60
"""Successful responses are kept this long ("we cache every command run response for 24 hours")."""

FALLBACK_PROBE_EVERY: Final = 5
"""While Cache Fallback Mode is active, every 5th run (counted since activation) fetches live data."""

DEFAULT_ORG: Final = "default"
"""Org id used when none is given (the CLI, single-tenant embedding)."""

KEPT_RESPONSE_HEADERS: Final = frozenset(
    {
        "cache-control",
        "content-language",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "location",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-request-id",
    }
)
"""Response headers passed back to the caller (never cookies or auth headers)."""

_FORBIDDEN_REQUEST_HEADERS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")

ArgValue = str | int | float | bool | None
Clock = Callable[[], float]
RegistryProvider = Callable[[str], CommandRegistry]


def command_run_path(name: str) -> str:
    """Return the API path that runs command ``name`` (``/v1/commands/{name}/run``, name percent-encoded)."""
    return f"/v1/commands/{quote(name, safe='')}/run"


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class CommandRunRequest(_Wire):
    """The body of ``POST /v1/commands/{name}/run``.

    ``urlArgs`` (the Cards SDK's name) is accepted as an alias of ``args``.

    Attributes:
        body: the request body for the target (string values are interpolated).
        headers: request headers for the target (values are interpolated; ``{{authToken}}`` is the secret).
        args: values for the command's ``permittedArgs``.
    """

    model_config = ConfigDict(extra="forbid")

    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    args: dict[str, ArgValue] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _url_args_alias(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "urlArgs" in data:
            if "args" in data and data["args"] != data["urlArgs"]:
                raise ValueError("give args or urlArgs (the Cards SDK's name for args), not both")
            data = {("args" if key == "urlArgs" else key): value for key, value in data.items()}
        return data


class CommandResult(_Wire):
    """What a command run returns.

    An upstream 4xx/5xx or an unreachable target with no cached value to serve is *not* raised: it comes back
    as a result with ``error`` set (and ``ok`` false), like an HTTP client returns a response. Call
    :meth:`raise_for_error` to turn it into a :class:`~connectors.errors.CommandError`. Refusals before any
    request (unknown command, args not permitted, body rejected by ``inputSchema``, missing app setting) raise
    :class:`~connectors.errors.CommandError`.

    Attributes:
        command: the command's full name.
        status: the HTTP status served (None when the target could not be reached).
        headers: the kept response headers (:data:`KEPT_RESPONSE_HEADERS`).
        body: the response body; for a success, after ``outputSchema`` coercion and filtering.
        source: ``live``, ``cache`` (fresh cached value) or ``fallback`` (served by Cache Fallback Mode).
        cache_age_seconds: age of the served cached value; None for live responses.
        fallback_active: whether Cache Fallback Mode is active for this request after the run.
        error: why the run failed (None on success).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    command: str
    status: int | None
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    source: ResultSource = "live"
    cache_age_seconds: float | None = None
    fallback_active: bool = False
    error: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when a usable response was served (live < 400, or a cached value)."""
        return self.error is None

    def raise_for_error(self) -> CommandResult:
        """Return ``self`` when :attr:`ok`, else raise.

        Raises:
            CommandError: the run failed (the message names the command and the upstream status).
        """
        if self.error is not None:
            raise CommandError(f"command {self.command!r} failed: {self.error}")
        return self

    def to_json(self) -> dict[str, Any]:
        """Return the camelCase JSON form (what the run endpoint answers)."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True, slots=True)
class _Prepared:
    registered: RegisteredCommand
    org_id: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    key: CacheKey | None
    redactor: Redactor

    @property
    def name(self) -> str:
        return self.registered.command.name


@dataclass(frozen=True, slots=True)
class _Live:
    status: int | None
    headers: dict[str, str]
    body: Any
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and self.status < 400


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """Lends an injected transport to a per-run client without letting the client close it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Leave the borrowed transport open: its owner closes it."""


class CommandRunner:
    """Runs Apps Platform commands the way Kustomer documents it.

    Args:
        registries: the registry of every org, or a callable returning the registry of an org id.
        settings: per-org app settings (the secrets behind ``{{authToken}}``).
        cache: response cache and fallback state (in-memory by default).
        audit: where audit entries go when a command has ``auditLogging`` (in-memory list by default).
        transport: httpx transport for requests to command targets (tests, proxies); left open by the runner.
        clock: returns the current time in epoch seconds (cache ages, audit timestamps).
        timeout: timeout of each request to a target, in seconds.
    """

    def __init__(
        self,
        *,
        registries: CommandRegistry | RegistryProvider,
        settings: AppSettingsProvider | None = None,
        cache: CommandCache | None = None,
        audit: AuditSink | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        timeout: float = 30.0,
    ) -> None:
        self._registries = registries
        self.settings: AppSettingsProvider = settings if settings is not None else InMemoryAppSettings()
        self.cache: CommandCache = cache if cache is not None else InMemoryCommandCache()
        self.audit: AuditSink = audit if audit is not None else InMemoryAuditLog()
        self._transport = transport
        self._clock = clock
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"CommandRunner(settings={self.settings!r}, cache={self.cache!r}, audit={self.audit!r})"

    def registry_for(self, org_id: str) -> CommandRegistry:
        """Return the command registry of ``org_id``."""
        if isinstance(self._registries, CommandRegistry):
            return self._registries
        return self._registries(org_id)

    async def run(
        self,
        name: str,
        *,
        org_id: str = DEFAULT_ORG,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        args: Mapping[str, ArgValue] | None = None,
    ) -> CommandResult:
        """Run a command.

        Args:
            name: the command name, with or without the ``.app.`` infix.
            org_id: the org running it (selects registry, app settings, cache and fallback state).
            body: JSON body; validated/coerced by ``inputSchema``, then its string values are interpolated.
            headers: request headers; values are interpolated (``{{authToken}}`` = the secret app setting).
            args: values for ``permittedArgs``; missing ones render as empty strings.

        Returns:
            The result; ``ok`` is false when the target answered 4xx/5xx (or was unreachable) and no cached
            value could be served.

        Raises:
            CommandError: nothing was sent because the command is unknown, an arg is not permitted, the body
                breaks ``inputSchema``, a header is invalid, or the secret app setting is not set.
        """
        registered = self.registry_for(org_id).resolve(name)
        audit_args = _audit_args(args)
        try:
            prepared = await self._prepare(registered, org_id, body, headers or {}, args or {})
        except CommandError:
            await self._record(registered, org_id, audit_args, "refused", None, None, Redactor())
            raise
        result, upstream_status = await self._execute(prepared)
        outcome: AuditOutcome = (
            "ok" if result.ok else ("transport_error" if result.status is None else "upstream_error")
        )
        await self._record(registered, org_id, audit_args, outcome, result, upstream_status, prepared.redactor)
        return result

    async def _prepare(
        self,
        registered: RegisteredCommand,
        org_id: str,
        body: Any,
        headers: Any,
        args: Any,
    ) -> _Prepared:
        command = registered.command
        prefix = f"command {command.name!r}"
        if not isinstance(args, Mapping):
            raise CommandError(f"{prefix}: args must be an object of strings")
        refused = sorted(set(args) - set(command.permitted_args))
        if refused:
            allowed = ", ".join(command.permitted_args) or "none"
            raise CommandError(f"{prefix}: args not in permittedArgs: {', '.join(refused)} (permitted: {allowed})")
        context: dict[str, Any] = dict.fromkeys(command.permitted_args, "")
        for key, value in args.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise CommandError(f"{prefix}: arg {key!r} must be a string")
            context[key] = value

        secret_context = dict(context)
        redactor = Redactor()
        if command.auth_token_key is not None:
            secret = await self.settings.get_setting(org_id, command.auth_token_key)
            if secret is None:
                raise CommandError(f"{prefix}: app setting {command.auth_token_key!r} is not set for org {org_id!r}")
            secret_context[AUTH_TOKEN_VARIABLE] = secret
            redactor = Redactor([secret])

        url = self._render(prefix, "url", command.url, context, redactor)
        problem = resolved_url_problem(command.url, url)
        if problem is not None:
            raise CommandError(f"{prefix}: {problem}")

        resolved_headers = self._resolve_headers(prefix, headers, secret_context, redactor)

        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError):
            raise CommandError(
                f"{prefix}: body must be JSON (objects, arrays, strings, numbers, booleans, null)"
            ) from None
        if command.input_schema is not None:
            body, problems = coerce_input(body, command.input_schema)
            if problems:
                details = redactor.text("; ".join(problems))
                raise CommandError(f"{prefix}: body rejected by inputSchema: {details}")
        try:
            resolved_body = render_json(body, secret_context)
        except HandlebarsError as exc:
            raise CommandError(f"{prefix}: cannot interpolate the body: {redactor.text(str(exc))}") from None

        key = None
        if command.cache_seconds is not None:
            key = CacheKey.build(
                org_id=org_id, command=command.name, url=url, headers=resolved_headers, body=resolved_body
            )
        return _Prepared(
            registered=registered,
            org_id=org_id,
            method=command.http_method.upper(),
            url=url,
            headers=resolved_headers,
            body=resolved_body,
            key=key,
            redactor=redactor,
        )

    @classmethod
    def _resolve_headers(
        cls, prefix: str, headers: Any, context: Mapping[str, Any], redactor: Redactor
    ) -> dict[str, str]:
        if not isinstance(headers, Mapping):
            raise CommandError(f"{prefix}: headers must be an object of strings")
        resolved: dict[str, str] = {}
        for header, template in headers.items():
            if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
                raise CommandError(f"{prefix}: {header!r} is not a valid header name")
            if header.lower() in _FORBIDDEN_REQUEST_HEADERS:
                raise CommandError(f"{prefix}: header {header!r} is set by the runner and cannot be given")
            if not isinstance(template, str):
                raise CommandError(f"{prefix}: header {header!r} must be a string")
            value = cls._render(prefix, f"header {header!r}", template, context, redactor)
            if not _HEADER_VALUE.fullmatch(value):
                raise CommandError(
                    f"{prefix}: header {header!r} must be printable ASCII (no line breaks) once interpolated"
                )
            resolved[header] = value
        return resolved

    @staticmethod
    def _render(prefix: str, where: str, template: str, context: Mapping[str, Any], redactor: Redactor) -> str:
        try:
            return render_text(template, context)
        except HandlebarsError as exc:
            raise CommandError(f"{prefix}: cannot interpolate the {where}: {redactor.text(str(exc))}") from None

    async def _execute(self, prepared: _Prepared) -> tuple[CommandResult, int | None]:
        """Serve from cache or fetch live, following Cache Fallback Mode; also return the live status."""
        key = prepared.key
        cache_seconds = prepared.registered.command.cache_seconds
        if key is None or cache_seconds is None:
            live = await self._fetch(prepared)
            return self._live_result(prepared, live, fallback_active=False), live.status

        state = await self.cache.count_fallback_run(key)
        entry = await self._stored(key)
        if state is not None:
            # Cache Fallback Mode is active: serve the cached value, whatever its age, except on every 5th run
            # (a live probe) or when there is nothing cached to serve.
            probe = state.runs % FALLBACK_PROBE_EVERY == 0
            if entry is not None and not probe:
                return self._served(prepared, entry, "fallback", fallback_active=True), None
        elif entry is not None and self._clock() - entry.stored_at <= cache_seconds:
            return self._served(prepared, entry, "cache", fallback_active=False), None

        live = await self._fetch(prepared)
        if live.succeeded:
            assert live.status is not None
            if state is not None:
                await self.cache.deactivate_fallback(key)
            await self.cache.set_response(
                key,
                CachedResponse(status=live.status, headers=live.headers, body=live.body, stored_at=self._clock()),
            )
            return self._live_result(prepared, live, fallback_active=False), live.status
        await self.cache.activate_fallback(key, at=self._clock(), status=live.status)
        if entry is not None:
            return self._served(prepared, entry, "fallback", fallback_active=True), live.status
        return self._live_result(prepared, live, fallback_active=True), live.status

    async def _stored(self, key: CacheKey) -> CachedResponse | None:
        entry = await self.cache.get_response(key)
        if entry is not None and self._clock() - entry.stored_at >= CACHE_RETENTION_SECONDS:
            await self.cache.delete_response(key)
            return None
        return entry

    def _client(self) -> httpx.AsyncClient:
        transport = _BorrowedTransport(self._transport) if self._transport is not None else None
        return httpx.AsyncClient(transport=transport, timeout=self._timeout, follow_redirects=False)

    async def _fetch(self, prepared: _Prepared) -> _Live:
        headers = dict(prepared.headers)
        content: bytes | None = None
        if prepared.body is not None:
            content = json.dumps(prepared.body, ensure_ascii=False, allow_nan=False).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        try:
            async with self._client() as client:
                response = await client.request(prepared.method, prepared.url, headers=headers, content=content)
        except Exception as exc:
            # Any failure to get a response is a transport failure. Keep only the exception type: its text
            # could quote a header, and so the secret.
            return _Live(None, {}, None, f"could not reach the command target ({type(exc).__name__})")
        kept = {name: value for name, value in response.headers.items() if name.lower() in KEPT_RESPONSE_HEADERS}
        body = _decode(response)
        error = None if response.status_code < 400 else f"the command target answered {response.status_code}"
        return _Live(response.status_code, kept, body, error)

    def _served(
        self, prepared: _Prepared, entry: CachedResponse, source: ResultSource, *, fallback_active: bool
    ) -> CommandResult:
        return CommandResult(
            command=prepared.name,
            status=entry.status,
            headers=prepared.redactor.json(dict(entry.headers)),
            body=self._output(prepared, entry.body),
            source=source,
            cache_age_seconds=max(0.0, self._clock() - entry.stored_at),
            fallback_active=fallback_active,
        )

    def _live_result(self, prepared: _Prepared, live: _Live, *, fallback_active: bool) -> CommandResult:
        body = self._output(prepared, live.body) if live.succeeded else prepared.redactor.json(live.body)
        return CommandResult(
            command=prepared.name,
            status=live.status,
            headers=prepared.redactor.json(live.headers),
            body=body,
            source="live",
            fallback_active=fallback_active,
            error=live.error,
        )

    @staticmethod
    def _output(prepared: _Prepared, body: Any) -> Any:
        schema = prepared.registered.command.output_schema
        body = prepared.redactor.json(body)
        return coerce_output(body, schema) if schema is not None else body

    async def _record(
        self,
        registered: RegisteredCommand,
        org_id: str,
        args: dict[str, str],
        outcome: AuditOutcome,
        result: CommandResult | None,
        upstream_status: int | None,
        redactor: Redactor,
    ) -> None:
        if not registered.command.audit_logging:
            return
        entry = AuditEntry(
            org_id=org_id,
            command=registered.command.name,
            args={key: redactor.text(value) for key, value in args.items()},
            outcome=outcome,
            status=result.status if result is not None else None,
            upstream_status=upstream_status,
            source=result.source if result is not None and result.status is not None else None,
            timestamp=datetime.fromtimestamp(self._clock(), tz=UTC),
        )
        await self.audit.record(entry)


def _audit_args(args: Any) -> dict[str, str]:
    if not isinstance(args, Mapping):
        return {}
    return {str(key): "" if value is None else _arg_text(value) for key, value in args.items()}


def _arg_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    content_type = response.headers.get("content-type", "")
    if "json" in content_type or not content_type:
        try:
            return json.loads(response.content)
        except ValueError:
            pass
    return response.text


class SyncCommandRunner:
    """Blocking facade over :class:`CommandRunner` (the CLI, scripts); same method names.

    Each call runs its own event loop, so do not call it from async code.

    Args:
        runner: the async runner to drive.
    """

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner

    def __repr__(self) -> str:
        return f"SyncCommandRunner({self.runner!r})"

    def run(
        self,
        name: str,
        *,
        org_id: str = DEFAULT_ORG,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        args: Mapping[str, ArgValue] | None = None,
    ) -> CommandResult:
        """Run a command and wait for it; see :meth:`CommandRunner.run`.

        Args:
            name: the command name.
            org_id: the org running it.
            body: JSON body.
            headers: request headers.
            args: values for ``permittedArgs``.

        Returns:
            The result.

        Raises:
            CommandError: the run was refused before any request.
        """
        call = partial(self.runner.run, name, org_id=org_id, body=body, headers=headers, args=args)
        return anyio.run(call)
