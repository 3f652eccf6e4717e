"""Creating connections, shared by the JSON API (``POST /connections``) and the Connect page.

* :func:`connect_with_api_key` verifies the key with Kustomer, checks its roles against the operations and
  stores the connection.
* :func:`start_oauth` returns the authorization URL (the OAuth state, with its PKCE verifier, lives in the
  store, so any worker can finish the flow) and remembers where to send the browser afterwards.
* :func:`finish_oauth` is the callback: it completes the authorization and tells where to redirect.

Only an operator may point a connection at an explicit ``base_url`` or bring its own OAuth client: a session
could otherwise aim the server at an internal address (SSRF) and read it through the proxy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread

from connectors.errors import AuthenticationError, ConnectorError, OAuthFlowError
from connectors.runtime.auth import hash_state
from connectors.runtime.connection import AuthorizationRequest, Connection
from connectors.server.config import origin_of
from connectors.server.errors import HTTPProblem, validation_problem
from connectors.server.security import Principal, not_found
from connectors.server.state import ServerState

__all__ = [
    "CallbackOutcome",
    "ConnectionTarget",
    "check_operations",
    "check_return_url",
    "connect_with_api_key",
    "finish_oauth",
    "resolve_target",
    "start_oauth",
    "with_query",
]

_RETURN_PREFIX = "server-return:"


@dataclass(frozen=True, slots=True)
class ConnectionTarget:
    """Where and for whom a new connection is made.

    Attributes:
        connector_id: the connector.
        owner_id: the owner.
        label: the label.
        region: Kustomer region, or None.
        org: Kustomer org subdomain, or None.
        base_url: explicit API base URL, or None.
    """

    connector_id: str
    owner_id: str
    label: str
    region: str | None
    org: str | None
    base_url: str | None


def with_query(url: str, params: Mapping[str, str | None]) -> str:
    """``url`` with ``params`` appended to its query (``None`` values skipped)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def check_return_url(state: ServerState, url: str, *, path: str = "body.returnUrl") -> str:
    """Accept a path on this app, or an absolute URL on an allowed origin (no open redirects).

    Raises:
        HTTPProblem: 422 naming ``path``.
    """
    if url.startswith("/") and not url.startswith("//") and "\\" not in url and len(url) <= 2000:
        return url
    allowed = {origin_of(state.public_url), *state.config.return_origins}
    if origin_of(url) and origin_of(url) in allowed and len(url) <= 2000:
        return url
    message = "must be a path on this app or a URL on an allowed origin (CONNECTORS_RETURN_ORIGINS)"
    raise validation_problem([{"path": path, "message": message}])


def check_operations(
    state: ServerState, connector_id: str, operations: Sequence[str], *, principal: Principal, path: str
) -> list[str]:
    """Validate operation names (422 naming each unknown one) and the caller's right to grant them (403).

    Raises:
        HTTPProblem: 422 for unknown operations, 403 for operations a session does not allow.
    """
    try:
        table = state.hub.connector_class(connector_id).operations()
    except ConnectorError:
        raise not_found("connector") from None
    unknown = [
        {"path": f"{path}[{i}]", "message": f"unknown operation {name!r}"}
        for i, name in enumerate(operations)
        if name not in table
    ]
    if unknown:
        raise validation_problem(unknown)
    for name in operations:
        principal.require(name)
    return list(dict.fromkeys(operations))


def resolve_target(
    state: ServerState,
    principal: Principal,
    *,
    connector_id: str | None,
    owner_id: str | None,
    label: str,
    region: str | None,
    org: str | None,
    base_url: str | None,
) -> ConnectionTarget:
    """Fill defaults from the deployment settings and refuse what the caller may not choose.

    Raises:
        HTTPProblem: 404 for another owner or an unknown connector; 403 when a non-operator gives
            ``base_url``; 422 without an owner.
    """
    connector = connector_id or state.config.default_connector
    if connector not in state.hub.registry.connectors:
        raise not_found("connector")
    if owner_id is not None and not principal.is_operator and owner_id != principal.owner_id:
        raise not_found("owner")
    owner = owner_id or principal.require_owner()
    if base_url is not None and not principal.is_operator:
        raise HTTPProblem(403, "operator_only", "only the operator may set baseUrl", extra={"field": "baseUrl"})
    ks = state.hub.settings.kustomer
    if base_url is None and region is None and org is None:
        base_url, region, org = ks.base_url, ks.region, ks.org
    return ConnectionTarget(connector, owner, label, region, org, base_url)


async def connect_with_api_key(
    state: ServerState,
    target: ConnectionTarget,
    *,
    api_key: str,
    operations: Sequence[str] | None,
    settings: Mapping[str, Any] | None = None,
) -> Connection:
    """Verify the key with Kustomer and store the connection.

    Raises:
        HTTPProblem: 422 ``invalid_credentials`` when Kustomer refuses the key (region hint included).
        InsufficientPermissionsError: the key lacks roles the operations need (403, names them).
    """
    if not api_key.strip():
        raise validation_problem([{"path": "body.apiKey", "message": "must not be empty"}])
    try:
        return await state.hub.connect(
            target.connector_id,
            target.owner_id,
            api_key=api_key,
            label=target.label,
            region=target.region,
            org=target.org,
            base_url=target.base_url,
            operations=operations,
            settings=settings,
        )
    except AuthenticationError as exc:
        raise HTTPProblem(
            422,
            "invalid_credentials",
            f"Kustomer refused the API key: {exc.detail or exc.message}",
            errors=[{"path": "body.apiKey", "message": "refused by Kustomer"}],
            extra={"kustomerCode": exc.error_code},
        ) from None


async def start_oauth(
    state: ServerState,
    target: ConnectionTarget,
    *,
    operations: Sequence[str],
    return_url: str | None,
    redirect_uri: str | None = None,
    oauth_client: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    state_ttl: float = 600.0,
) -> AuthorizationRequest:
    """Begin an OAuth connection; remember ``return_url`` (in the store, next to the OAuth state).

    Raises:
        ConfigurationError: no OAuth client configured (422), bad region/org.
    """
    hub = state.hub
    request = await hub.authorize(
        target.connector_id,
        target.owner_id,
        operations=operations,
        redirect_uri=redirect_uri or state.callback_url,
        label=target.label,
        region=target.region,
        org=target.org,
        base_url=target.base_url,
        oauth_client=oauth_client,
        settings=settings,
        state_ttl=state_ttl,
    )
    if request.state is not None and return_url is not None:
        key = hash_state(_RETURN_PREFIX + request.state)
        payload = {"returnUrl": return_url}
        expires = hub.clock() + state_ttl
        await anyio.to_thread.run_sync(lambda: hub.store.save_oauth_state(key, payload, expires_at=expires))
    return request


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    """The result of the OAuth callback.

    Attributes:
        connection: the new connection, on success.
        error: the OAuth error code, on failure.
        message: a human explanation of the failure.
        return_url: where the flow asked the browser to go afterwards, if anywhere.
    """

    connection: Connection | None
    error: str | None
    message: str | None
    return_url: str | None

    @property
    def redirect_url(self) -> str | None:
        """``return_url`` carrying the outcome in its query (``connectionId``/``status`` or ``error``)."""
        if self.return_url is None:
            return None
        if self.connection is not None:
            info = self.connection.info
            return with_query(self.return_url, {"connectionId": info.id, "status": info.status})
        return with_query(self.return_url, {"error": self.error, "errorDescription": self.message})


async def finish_oauth(state: ServerState, *, code: str | None, state_value: str, error: str | None) -> CallbackOutcome:
    """Complete an authorization from the callback's query (any worker can, the state is in the store)."""
    hub = state.hub
    key = hash_state(_RETURN_PREFIX + state_value)
    now = hub.clock()
    saved = await anyio.to_thread.run_sync(lambda: hub.store.consume_oauth_state(key, now=now))
    return_url = str(saved["returnUrl"]) if saved and isinstance(saved.get("returnUrl"), str) else None
    try:
        connection = await hub.complete_authorization(code=code, state=state_value, error=error)
    except OAuthFlowError as exc:
        return CallbackOutcome(None, exc.error, exc.message, return_url)
    except ConnectorError as exc:
        return CallbackOutcome(None, exc.code, exc.message, return_url)
    return CallbackOutcome(connection, None, None, return_url)


def dumps_safe(value: Any) -> str:
    """JSON for embedding in HTML (``<``, ``>`` and ``&`` escaped)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
