"""Kustomer Apps Platform commands: app-definition models and validation, a runner, and API routes.

Commands are reusable requests an app defines (``commands`` in its app definition) and Kustomer runs on its
behalf through ``POST /v1/commands/{name}/run``, injecting secret app settings. This package validates
definitions against every documented rule and runs commands with Kustomer's documented behaviour::

    registry = CommandRegistry([app_json])                       # CommandDefinitionError(path=...) if invalid
    settings = InMemoryAppSettings({"org-1": {"ecommstore.default.authToken": "s3cret"}})
    runner = CommandRunner(registries=registry, settings=settings)
    result = await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "bar"},
        headers={"Authorization": "Bearer {{authToken}}"},
        args={"store": "dunder-mifflin"},
    )                                                            # -> CommandResult(status=200, source="live")

Run behaviour
-------------
* Interpolation (Handlebars, via ``pydantic-handlebars``): ``{{{arg}}}`` raw, ``{{arg}}`` HTML-escaped exactly
  like Handlebars.js; an unknown or missing variable renders as ``""``. Args are interpolated into the URL,
  every header value and every string value of the body (recursively; object keys are not), because the
  ``permittedArgs`` description says "url, headers or body". Body interpolation happens *after*
  ``inputSchema`` validation, so the schema sees what the caller sent.
* ``{{authToken}}`` is the secret ``appSettings.authToken.key`` setting of the running org. It is available in
  header values and the body only (the ``appSettings`` description names "headers and body"); a URL template
  using it is refused at validation, so the secret never lands in a URL or access log. A command that declares
  the setting refuses to run when the org has not set it. ``authToken`` is reserved: it cannot be a permitted
  arg.
* Args not in ``permittedArgs`` are refused (nothing is sent). Arg values are strings (numbers and booleans
  are accepted and rendered as Handlebars would).
* Args can fill in the URL's host only with letters, digits, ``.`` and ``-`` (``https://{{{store}}}.x.com``
  reaches ``acme.x.com``, but ``evil.com/#`` is refused), so a caller cannot send the secret header elsewhere.
* ``inputSchema``: the body is converted to the schema types (Ajv ``coerceTypes`` rules), then validated with
  ``jsonschema``: missing ``required`` properties and properties refused by ``additionalProperties: false``
  reject the run. ``outputSchema``: converted the same way; unconvertible properties are dropped, additional
  properties filtered when ``additionalProperties`` is false, and missing ``required`` ones are simply absent
  (the docs: "the property won't be transmitted"); a body that cannot be converted at all becomes None.
  The output schema applies to successful responses; error bodies are returned as received.
* The result is a typed :class:`CommandResult` (status, kept headers, body, ``source`` live|cache|fallback,
  ``cache_age_seconds``). An upstream 4xx/5xx (or an unreachable target) without a cached value to serve is
  a result with ``ok=False`` and ``error`` set, not an exception: the caller usually wants the target's error
  body, and an exception would hide it. :meth:`CommandResult.raise_for_error` converts. Refusals before any
  request raise :class:`~connectors.errors.CommandError`.
* The secret is redacted (``***``) from error messages, audit entries, the returned body and headers, and it
  never appears in a repr; cache keys hold a SHA-256 digest of the resolved request, not the request.
* Audit log (``auditLogging: true``): one :class:`AuditEntry` per run (org, command, args, outcome, status,
  upstream status, source, timestamp), including refused runs. Never headers or body.

Cache Fallback Mode (``cacheSeconds`` set; nothing is cached and the mode never activates without it)
------------------------------------------------------------------------------------------------------------
Keyed per org + command + resolved URL + resolved headers + resolved body:

1. Every successful (status < 400) response is cached for 24 hours with its timestamp; error responses are
   never cached. An entry aged 24 h or more is deleted and treated as absent.
2. Mode off: a cached value aged ``<= cacheSeconds`` is served (``source="cache"``); an older one triggers a
   live fetch. A live success replaces the cached value.
3. A live 4xx/5xx activates the mode for the key, and the cached value (however old) is served
   (``source="fallback"``) when there is one; otherwise the failure result is returned. A target that cannot
   be reached at all counts like a 5xx (not documented; the closest documented case).
4. Mode on: runs are counted from activation; runs 1-4 serve the cached value without calling the target,
   run 5 (and 10, 15, ...) probes the target live. With nothing cached, every run calls the target (there is
   nothing else to serve). A probe that fails keeps the mode on and serves the cached value.
5. Any live response with status < 400 deactivates the mode (and refreshes the cache).

Seed inconsistencies and how they are handled
---------------------------------------------
* Run examples use ``ecommstore.store.refundOrder`` while the command is ``ecommstore.app.store.refundOrder``:
  :meth:`CommandRegistry.find` resolves a name without the ``.app.`` infix to ``<app>.app.<rest>``.
* The ``url`` description says ``permittedUrlArgs``; the property is ``permittedArgs``:
  ``permittedUrlArgs`` is accepted as its alias in a definition (giving both is an error).
* The Cards SDK passes ``urlArgs`` where the API takes ``args``: the run request accepts ``urlArgs`` as an
  alias.
* The ``cacheSeconds`` example reads ``"auditLogging": 15``: taken as a typo for ``"cacheSeconds": 15``;
  ``auditLogging`` must be a boolean.
* The run example's body ``{"refundOption": true}`` does not satisfy the example's own ``inputSchema``
  (``foo`` required, no additional properties): run as-is, it is refused with both problems named.
* The ``args`` example explains ``"under-mifflin"`` for the value ``"dunder-mifflin"``: a typo, nothing to do.
* Where args go: the intro says "the URL", ``permittedArgs`` says "url, headers or body": all three.
* "We cache every command run response": only successful ones (otherwise the fallback would serve errors).
* "every on every 5th command run": a probe on runs 5, 10, 15, ... counted since activation.
* "top level object types: properties, required, additionalProperties" means schema keywords. The subset is
  ``type`` (string, boolean, number, object, array) plus those three keywords, in nested property schemas
  too; anything else (``items``, ``enum``, ``integer``, schema-valued ``additionalProperties``, ...) is an
  error with its path. ``httpMethod`` is lower case as documented (``POST`` is refused).
* ``cacheSeconds`` "enables client-side caching": the cache lives wherever the runner runs (the sandbox).
* ``appAccountName`` (OAuth 2.0 client app account) is validated and kept, but not resolved by this runner.
* The run endpoint and its response shape are unconfirmed in public sources (kustomer-api.md §2.12); the
  response is this package's :class:`CommandResult` JSON.

Definitions are checked by :func:`parse_app_definition` (first problem) or :func:`definition_errors` (all);
every problem is a :class:`~connectors.errors.CommandDefinitionError` with a ``path`` such as
``commands/0/cacheSeconds``. Command names are ``<app>.app.<segments>``, unique within the app and across a
:class:`CommandRegistry`; the app id is letters, digits, ``_`` and ``-``; setting keys are
``<app>.<category>.<value>``; URL templates start with a literal ``http://`` or ``https://``.
"""

from __future__ import annotations

from connectors.kustomer.commands._audit import (
    AuditEntry,
    AuditOutcome,
    AuditSink,
    InMemoryAuditLog,
    ResultSource,
)
from connectors.kustomer.commands._cache import (
    CachedResponse,
    CacheKey,
    CommandCache,
    FallbackState,
    InMemoryCommandCache,
)
from connectors.kustomer.commands._models import (
    AppDefinition,
    AppSettingsRef,
    AuthTokenSetting,
    CommandDefinition,
    HttpMethod,
    definition_errors,
    parse_app_definition,
)
from connectors.kustomer.commands._registry import CommandRegistries, CommandRegistry, RegisteredCommand
from connectors.kustomer.commands._router import (
    DEFAULT_REGISTER_PATH,
    OrgResolver,
    commands_router,
    request_state_org,
)
from connectors.kustomer.commands._runner import (
    CACHE_RETENTION_SECONDS,
    DEFAULT_ORG,
    FALLBACK_PROBE_EVERY,
    KEPT_RESPONSE_HEADERS,
    ArgValue,
    Clock,
    CommandResult,
    CommandRunner,
    CommandRunRequest,
    RegistryProvider,
    SyncCommandRunner,
    command_run_path,
)
from connectors.kustomer.commands._settings import AppSettingsProvider, InMemoryAppSettings

__all__ = [
    "CACHE_RETENTION_SECONDS",
    "DEFAULT_ORG",
    "DEFAULT_REGISTER_PATH",
    "FALLBACK_PROBE_EVERY",
    "KEPT_RESPONSE_HEADERS",
    "AppDefinition",
    "AppSettingsProvider",
    "AppSettingsRef",
    "ArgValue",
    "AuditEntry",
    "AuditOutcome",
    "AuditSink",
    "AuthTokenSetting",
    "CacheKey",
    "CachedResponse",
    "Clock",
    "CommandCache",
    "CommandDefinition",
    "CommandRegistries",
    "CommandRegistry",
    "CommandResult",
    "CommandRunRequest",
    "CommandRunner",
    "FallbackState",
    "HttpMethod",
    "InMemoryAppSettings",
    "InMemoryAuditLog",
    "InMemoryCommandCache",
    "OrgResolver",
    "RegisteredCommand",
    "RegistryProvider",
    "ResultSource",
    "SyncCommandRunner",
    "command_run_path",
    "commands_router",
    "definition_errors",
    "parse_app_definition",
    "request_state_org",
]
