"""The public entry point: the :class:`Connectors` hub, :class:`Connection` and :class:`Resources`.

::

    hub = Connectors()                                        # settings from the environment
    conn = await hub.connect("kustomer", "tenant-1", api_key=key, region="eu")
    contacts = conn.resources("genericContact")
    page = await contacts.list(limit=50, filters={"updatedAfter": "2026-01-01T00:00:00Z"})
    async for contact in contacts.iter():
        ...
    # OAuth
    request = await hub.authorize("kustomer", "tenant-2", operations=["genericContact::list"],
                                  redirect_uri="https://app.example.com/oauth/callback", org="acme")
    # redirect the user to request.url; then, on the callback:
    conn = await hub.complete_authorization(code=code, state=state)

Every call checks, before touching the API, that the credential was granted the roles the operation needs
(:class:`~connectors.errors.InsufficientPermissionsError` names the missing roles); a 403 from the provider
becomes the same error.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

import anyio.to_thread
import httpx
from pydantic import ValidationError

from connectors.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    ConnectorError,
    InsufficientPermissionsError,
    MappingError,
    NotConnectedError,
    OAuthFlowError,
    PermissionDeniedError,
)
from connectors.registry import Registry, default_registry
from connectors.runtime.auth import (
    ApiKeyAuth,
    AuthEvent,
    OAuthTokenAuth,
    TokenManager,
    authorization_url,
    exchange_code,
    hash_state,
    new_pkce_pair,
    new_state,
)
from connectors.runtime.connector import Connector, ListQuery, Operation, apply_role_overrides
from connectors.runtime.proxy import build_proxy_request
from connectors.runtime.ratelimit import InProcessRateLimiter, RateLimiter
from connectors.runtime.secrets import Secrets
from connectors.runtime.session import Identity, Session
from connectors.runtime.store import ConnectionRecord, ConnectionStore
from connectors.runtime.transport import ResilientTransport
from connectors.settings import Settings
from unified_models import (
    Company,
    Contact,
    Engagement,
    FieldDefinition,
    Opportunity,
    Page,
    Pipeline,
    Stage,
    UnifiedResource,
    User,
    Workspace,
    model_class,
    partial,
)

if TYPE_CHECKING:
    from connectors.runtime.bulk import ModelSync
    from connectors.runtime.connector import FieldsBackend, ResourceBackend
    from connectors.runtime.webhooks import ConnectionWebhooks, WebhookHub

__all__ = [
    "AuthorizationRequest",
    "Connection",
    "ConnectionInfo",
    "Connectors",
    "Fields",
    "Resources",
]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=UnifiedResource)
AuthEventHandler = Callable[[AuthEvent], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What a connection is, without its secrets (safe to log and return over HTTP)."""

    id: str
    connector_id: str
    owner_id: str
    label: str
    auth_type: str
    status: str
    status_reason: str | None
    region: str | None
    org: str | None
    base_url: str | None
    operations: tuple[str, ...]
    granted_roles: tuple[str, ...] | None
    metadata: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: ConnectionRecord) -> ConnectionInfo:
        """Build from a store record (drops secrets and settings)."""
        return cls(
            id=record.id,
            connector_id=record.connector_id,
            owner_id=record.owner_id,
            label=record.label,
            auth_type=record.auth_type,
            status=record.status,
            status_reason=record.status_reason,
            region=record.region,
            org=record.org,
            base_url=record.base_url,
            operations=tuple(record.operations),
            granted_roles=tuple(record.granted_roles) if record.granted_roles is not None else None,
            metadata=dict(record.metadata),
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (camelCase keys)."""
        return {
            "object": "connection",
            "id": self.id,
            "connectorId": self.connector_id,
            "ownerId": self.owner_id,
            "label": self.label,
            "authType": self.auth_type,
            "status": self.status,
            "statusReason": self.status_reason,
            "region": self.region,
            "org": self.org,
            "baseUrl": self.base_url,
            "operations": list(self.operations),
            "grantedRoles": list(self.granted_roles) if self.granted_roles is not None else None,
            "metadata": dict(self.metadata),
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Where to send the user to grant access.

    Attributes:
        url: the provider authorization URL, or ``None`` when the existing grant already covers the
            requested operations (no re-consent needed).
        state: the state value bound to this request (single use, expires).
        scopes: the scopes requested.
        already_authorized: whether the existing connection already covers everything.
        connection_id: the existing connection, when ``already_authorized``.
    """

    url: str | None
    state: str | None
    scopes: tuple[str, ...]
    already_authorized: bool = False
    connection_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "authorizationUrl": self.url,
            "state": self.state,
            "scopes": list(self.scopes),
            "alreadyAuthorized": self.already_authorized,
            "connectionId": self.connection_id,
        }


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Connectors:
    """The hub: creates, authorizes, stores and opens connections.

    Args:
        settings: deployment settings (default: :meth:`Settings.from_env`).
        store: the connection store (default: from settings; SQLite under ``settings.home``).
        registry: plugins (default: built-ins + installed entry points).
        limiter: the rate limiter shared by connections (default: Redis when ``settings.redis_url``,
            else in-process).
        transport: innermost HTTP transport for every provider call (tests and the embedded sandbox pass
            the sandbox's in-process transport).
        embedded: allow generating a secret key file on first run (the embedded default of ``serve``).
        clock: time source.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        store: ConnectionStore | None = None,
        registry: Registry | None = None,
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        embedded: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry or default_registry()
        self._owns_store = store is None
        self.store = store or _store_from_settings(self.settings, embedded=embedded)
        self._owns_limiter = limiter is None
        self.limiter = limiter or _limiter_from_settings(self.settings)
        self.transport = transport
        self.clock = clock
        self._auth_handlers: list[AuthEventHandler] = []
        self._webhooks: WebhookHub | None = None
        self._open: dict[str, Connection] = {}
        self._token_http = httpx.AsyncClient(
            transport=ResilientTransport(transport), timeout=30.0, follow_redirects=False
        )

    def __repr__(self) -> str:
        return f"Connectors(connectors={sorted(self.registry.connectors)!r})"

    async def __aenter__(self) -> Connectors:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every open connection and the store (when the hub created it)."""
        if self._webhooks is not None:
            await self._webhooks.aclose()
        for connection in list(self._open.values()):
            await connection.aclose()
        self._open.clear()
        await self._token_http.aclose()
        if self._owns_limiter:
            aclose = getattr(self.limiter, "aclose", None)
            if aclose is not None:
                await aclose()
        if self._owns_store:
            await anyio.to_thread.run_sync(self.store.close)

    @property
    def webhooks(self) -> WebhookHub:
        """Receiving and dispatching webhook events for every connection (see :mod:`connectors.runtime.webhooks`)."""
        if self._webhooks is None:
            from connectors.runtime.webhooks import WebhookHub

            self._webhooks = WebhookHub(self)
        return self._webhooks

    def on(self, pattern: str) -> Callable[[Any], Any]:
        """Register a webhook event handler: ``@hub.on("genericContact::updated")`` (see :attr:`webhooks`)."""
        return self.webhooks.on(pattern)

    def on_auth_event(self, handler: AuthEventHandler) -> AuthEventHandler:
        """Register a handler called after token refreshes and when a connection needs re-auth.

        Usable as a decorator.
        """
        self._auth_handlers.append(handler)
        return handler

    async def _emit(self, event: AuthEvent) -> None:
        for handler in self._auth_handlers:
            result = handler(event)
            if result is not None:
                await result

    # -- creating connections -----------------------------------------------------------------------

    def connector_class(self, connector_id: str) -> type[Connector]:
        """The registered connector class (raises PluginError for an unknown id)."""
        return self.registry.connector(connector_id)

    async def connect(
        self,
        connector_id: str,
        owner_id: str,
        *,
        api_key: str,
        label: str = "",
        region: str | None = None,
        org: str | None = None,
        base_url: str | None = None,
        operations: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Create (or replace) an API-key connection after verifying the key with the provider.

        ``operations`` defaults to every operation the key's roles allow. When given, each must be
        allowed, or nothing is stored.

        Raises:
            InsufficientPermissionsError: the key lacks roles that ``operations`` need.
            AuthenticationError: the provider refused the key (``RegionMismatchError`` names the region).
            ConfigurationError: bad region/org/base_url or unknown operations.
        """
        cls = self.connector_class(connector_id)
        _check_owner(owner_id)
        resolved = cls.resolve_base_url(region=region, org=org, base_url=base_url)
        conn_settings = dict(settings or {})
        table = _operations(cls, conn_settings)
        if operations is not None:
            _check_known(cls, table, operations)
        secrets_ = Secrets(api_key=api_key.strip())
        draft = _draft_record(connector_id, owner_id, label, "api_key", region, org, resolved, conn_settings, secrets_)
        identity = await self._identify(cls, draft, ApiKeyAuth(api_key))
        granted = identity.granted_roles
        if operations is None:
            chosen = [n for n, op in table.items() if granted is None or not op.missing(granted)]
        else:
            chosen = list(operations)
            if granted is not None:
                _raise_missing(table, chosen, granted)
        record = await anyio.to_thread.run_sync(
            lambda: self.store.upsert_connection(
                connector_id=connector_id,
                owner_id=owner_id,
                label=label,
                auth_type="api_key",
                status="active",
                region=region,
                org=org,
                base_url=resolved,
                operations=tuple(chosen),
                granted_roles=granted,
                settings=conn_settings,
                metadata=_identity_metadata(identity),
                secrets=secrets_,
                access_expires_at=None,
            )
        )
        return await self._open_record(record)

    async def authorize(
        self,
        connector_id: str,
        owner_id: str,
        *,
        operations: Sequence[str],
        redirect_uri: str,
        label: str = "",
        region: str | None = None,
        org: str | None = None,
        base_url: str | None = None,
        oauth_client: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        state_ttl: float = 600.0,
    ) -> AuthorizationRequest:
        """Start an OAuth connection: return the URL to send the user to.

        Scopes are exactly the roles that ``operations`` need (plus ``offline_access`` when configured),
        unioned with the operations the owner's existing connection already has. When the existing grant
        already covers every requested operation, no consent is needed: the connection's operations are
        extended and ``already_authorized`` is true.

        Args:
            connector_id: the connector (``kustomer``).
            owner_id: the tenant.
            operations: the operations to allow (``genericContact::list``...).
            redirect_uri: where the provider sends the user back (your ``/oauth/callback``).
            label: tells several connections of one owner apart.
            region: provider region.
            org: provider org (Kustomer's OAuth endpoints are per org).
            base_url: explicit API base URL (the sandbox).
            oauth_client: a per-tenant OAuth client (``{"client_id", "client_secret"}``) overriding the
                deployment's (whitelabel).
            settings: connection settings (field mappings, Klass names...).
            state_ttl: seconds the authorization may take before its state expires.

        Raises:
            ConfigurationError: no OAuth client configured, or bad region/org/base_url/operations.
        """
        cls = self.connector_class(connector_id)
        _check_owner(owner_id)
        if not redirect_uri.startswith(("https://", "http://")):
            raise ConfigurationError(f"redirect_uri must be an absolute http(s) URL, got {redirect_uri!r}")
        conn_settings = dict(settings or {})
        table = _operations(cls, conn_settings)
        _check_known(cls, table, operations)
        resolved = cls.resolve_base_url(region=region, org=org, base_url=base_url)  # bad input fails first
        existing = await anyio.to_thread.run_sync(lambda: self.store.get(connector_id, owner_id, label))
        if existing is not None and existing.auth_type == "oauth2" and existing.status == "active":
            granted = existing.granted_roles or ()
            if all(not table[name].missing(granted) for name in operations):
                merged = tuple(dict.fromkeys([*existing.operations, *operations]))
                await anyio.to_thread.run_sync(lambda: self.store.update(existing.id, operations=merged))
                return AuthorizationRequest(
                    url=None,
                    state=None,
                    scopes=tuple(cls.oauth_scopes(merged, self.settings)),
                    already_authorized=True,
                    connection_id=existing.id,
                )
            conn_settings = {**existing.settings, **conn_settings}
        all_ops = tuple(dict.fromkeys([*(existing.operations if existing else ()), *operations]))
        config = cls.oauth_client(self.settings, region=region, org=org, base_url=resolved, override=oauth_client)
        scopes = cls.oauth_scopes(all_ops, self.settings)
        state = new_state()
        pkce = new_pkce_pair()
        state_hash = hash_state(state)
        # The store encrypts the whole state payload (it holds the PKCE verifier and any client secret).
        payload: dict[str, Any] = {
            "connector_id": connector_id,
            "owner_id": owner_id,
            "label": label,
            "region": region,
            "org": org,
            "base_url": resolved,
            "operations": list(all_ops),
            "settings": conn_settings,
            "redirect_uri": redirect_uri,
            "code_verifier": pkce.verifier,
            "client_override": dict(oauth_client) if oauth_client else None,
        }
        expires_at = self.clock() + state_ttl
        await anyio.to_thread.run_sync(lambda: self.store.save_oauth_state(state_hash, payload, expires_at=expires_at))
        url = authorization_url(config, redirect_uri=redirect_uri, scopes=scopes, state=state, pkce=pkce)
        return AuthorizationRequest(url=url, state=state, scopes=tuple(scopes))

    async def complete_authorization(self, *, code: str | None, state: str, error: str | None = None) -> Connection:
        """Finish an OAuth connection from the callback's ``code`` and ``state``.

        The state is single-use and expires; it is bound to the connector, owner and label it was made for.

        Raises:
            OAuthFlowError: unknown/expired/replayed state, the user denied access (``error``), or the
                provider refused the code or PKCE verifier.
        """
        state_hash = hash_state(state)
        now = self.clock()
        payload = await anyio.to_thread.run_sync(lambda: self.store.consume_oauth_state(state_hash, now=now))
        if payload is None:
            raise OAuthFlowError("unknown, expired or already used OAuth state", error="invalid_state")
        if error:
            raise OAuthFlowError(f"the authorization was not granted: {error}", error=error)
        if not code:
            raise OAuthFlowError("the callback carries no authorization code", error="invalid_request")
        cls = self.connector_class(payload["connector_id"])
        verifier = payload["code_verifier"]
        override = payload.get("client_override")
        config = cls.oauth_client(
            self.settings, region=payload["region"], org=payload["org"], base_url=payload["base_url"], override=override
        )
        token = await exchange_code(
            self._token_http,
            config,
            code=code,
            redirect_uri=payload["redirect_uri"],
            code_verifier=verifier,
            clock=self.clock,
        )
        extra: dict[str, str] = {}
        if override:
            extra["oauth_client"] = _json_dumps(override)
        secrets_ = token.to_secrets(previous=Secrets(extra=extra))
        draft = _draft_record(
            payload["connector_id"],
            payload["owner_id"],
            payload["label"],
            "oauth2",
            payload["region"],
            payload["org"],
            payload["base_url"],
            payload["settings"],
            secrets_,
        )
        identity = await self._identify(cls, draft, ApiKeyAuth(token.access_token))
        granted = cls.granted_from_scopes(token.scopes) if token.scopes is not None else identity.granted_roles
        record = await anyio.to_thread.run_sync(
            lambda: self.store.upsert_connection(
                connector_id=payload["connector_id"],
                owner_id=payload["owner_id"],
                label=payload["label"],
                auth_type="oauth2",
                status="active",
                region=payload["region"],
                org=payload["org"],
                base_url=payload["base_url"],
                operations=tuple(payload["operations"]),
                granted_roles=granted,
                settings=payload["settings"],
                metadata=_identity_metadata(identity),
                secrets=secrets_,
                access_expires_at=token.expires_at,
            )
        )
        return await self._open_record(record)

    async def _identify(self, cls: type[Connector], record: ConnectionRecord, auth: httpx.Auth) -> Identity:
        session = Session(
            record=record,
            registry=self.registry,
            settings=self.settings,
            store=None,
            auth=auth,
            transport=self.transport,
            limiter=self.limiter,
            clock=self.clock,
        )
        connector = cls(session)
        try:
            return await connector.identify()
        finally:
            await connector.aclose()

    # -- opening connections ------------------------------------------------------------------------

    async def get(self, connector_id: str, owner_id: str, label: str = "") -> Connection:
        """Open the connection of ``owner_id`` for ``connector_id``.

        Raises:
            NotConnectedError: there is none.
        """
        record = await anyio.to_thread.run_sync(lambda: self.store.get(connector_id, owner_id, label))
        if record is None:
            suffix = f" (label {label!r})" if label else ""
            raise NotConnectedError(f"owner {owner_id!r} has no {connector_id} connection{suffix}")
        return await self._open_record(record)

    async def get_by_id(self, connection_id: str) -> Connection:
        """Open a connection by its id.

        Raises:
            NotConnectedError: no such connection.
        """
        record = await anyio.to_thread.run_sync(lambda: self.store.get_by_id(connection_id))
        if record is None:
            raise NotConnectedError(f"no connection {connection_id!r}")
        return await self._open_record(record)

    async def list(self, *, owner_id: str | None = None, connector_id: str | None = None) -> list[ConnectionInfo]:
        """Connections (without secrets), optionally of one owner and/or connector."""
        records = await anyio.to_thread.run_sync(lambda: self.store.list(owner_id=owner_id, connector_id=connector_id))
        return [ConnectionInfo.from_record(r) for r in records]

    async def disconnect(self, connector_id: str, owner_id: str, label: str = "") -> bool:
        """Delete a connection and its secrets. Returns whether one existed."""
        record = await anyio.to_thread.run_sync(lambda: self.store.get(connector_id, owner_id, label))
        if record is None:
            return False
        if record.status == "active":
            # Release this connection's share of provider webhooks (best effort: the connection goes anyway).
            try:
                await (await self._open_record(record)).webhooks.unsubscribe()
            except (ConnectorError, NotImplementedError) as exc:
                logger.info("could not unsubscribe the webhooks of connection %s: %s", record.id, type(exc).__name__)
        cached = self._open.pop(record.id, None)
        if cached is not None:
            await cached.aclose()
        return await anyio.to_thread.run_sync(lambda: self.store.delete(record.id))

    async def _open_record(self, record: ConnectionRecord) -> Connection:
        cached = self._open.get(record.id)
        if cached is not None:
            current = cached.session.record
            if _same_endpoint(current, record):
                # New tokens (another process refreshed), a new API key, a new status or operations: the open
                # connection takes the newer record in place. Tasks using it keep going; nothing is closed.
                if (record.token_version, record.updated_at) > (current.token_version, current.updated_at):
                    cached.session.record = record
                return cached
            await cached.aclose()  # another host, region, auth type or settings: a new client
        connection = self._build(record)
        self._open[record.id] = connection
        return connection

    def _build(self, record: ConnectionRecord) -> Connection:
        cls = self.connector_class(record.connector_id)
        manager: TokenManager | None = None
        auth: httpx.Auth
        holder: list[Session] = []  # the key is read from the session's current record on every request
        if record.auth_type == "api_key":
            if not record.secrets.api_key:
                raise ConfigurationError(f"connection {record.id} has no API key")
            auth = ApiKeyAuth(lambda: holder[0].record.secrets.api_key)
        else:
            override = None
            if record.secrets.extra.get("oauth_client"):
                override = _json_loads(record.secrets.extra["oauth_client"])
            config = cls.oauth_client(
                self.settings, region=record.region, org=record.org, base_url=record.base_url, override=override
            )
            manager = TokenManager(
                store=self.store,
                record=record,
                config=config,
                http=self._token_http,
                margin=self.settings.refresh_margin,
                on_event=self._emit,
                clock=self.clock,
                scopes_to_roles=cls.granted_from_scopes,
            )
            auth = OAuthTokenAuth(manager)
        session = Session(
            record=record,
            registry=self.registry,
            settings=self.settings,
            store=self.store,
            auth=auth,
            transport=self.transport,
            limiter=self.limiter,
            token_manager=manager,
            clock=self.clock,
        )
        holder.append(session)
        return Connection(self, cls(session))


def _same_endpoint(a: ConnectionRecord, b: ConnectionRecord) -> bool:
    """Whether an open connection built from ``a`` can serve ``b`` by taking its record in place."""
    return (
        a.auth_type == b.auth_type
        and (a.region, a.org, a.base_url) == (b.region, b.org, b.base_url)
        and a.settings == b.settings
        and a.metadata.get("orgId") == b.metadata.get("orgId")
        and a.secrets.extra.get("oauth_client") == b.secrets.extra.get("oauth_client")
    )


def _store_from_settings(settings: Settings, *, embedded: bool) -> ConnectionStore:
    env = {"CONNECTORS_HOME": str(settings.home)}
    if settings.database_url:
        env["CONNECTORS_DATABASE_URL"] = settings.database_url
    import os

    if os.environ.get("CONNECTORS_SECRET_KEY"):
        env["CONNECTORS_SECRET_KEY"] = os.environ["CONNECTORS_SECRET_KEY"]
    return ConnectionStore.from_env(env, embedded_default=embedded)


def _limiter_from_settings(settings: Settings) -> RateLimiter:
    if settings.redis_url:
        from connectors.runtime.ratelimit import RedisRateLimiter

        return RedisRateLimiter(settings.redis_url, headroom=settings.rate_headroom)
    return InProcessRateLimiter(headroom=settings.rate_headroom)


def _json_dumps(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _json_loads(value: str) -> Any:
    import json

    return json.loads(value)


def _check_owner(owner_id: str) -> None:
    if not owner_id or not owner_id.strip() or len(owner_id) > 200:
        raise ConfigurationError("owner_id must be a non-empty string of at most 200 characters")


def _operations(cls: type[Connector], settings: Mapping[str, Any]) -> Mapping[str, Operation]:
    try:
        return apply_role_overrides(cls.operations(), settings.get("role_overrides"))
    except KeyError as exc:
        raise ConfigurationError(str(exc.args[0])) from None


def _check_known(cls: type[Connector], table: Mapping[str, Operation], operations: Iterable[str]) -> None:
    unknown = [name for name in operations if name not in table]
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(table), n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigurationError(f"{cls.id} has no operation {', '.join(hints)}")


def _raise_missing(table: Mapping[str, Operation], operations: Iterable[str], granted: Iterable[str]) -> None:
    held = tuple(granted)
    missing: dict[str, None] = {}
    failing: list[str] = []
    for name in operations:
        lacking = table[name].missing(held)
        if lacking:
            failing.append(name)
            missing.update(dict.fromkeys(lacking))
    if failing:
        raise InsufficientPermissionsError(
            operation=", ".join(failing), missing_roles=list(missing), granted_roles=held
        )


def _draft_record(
    connector_id: str,
    owner_id: str,
    label: str,
    auth_type: Literal["api_key", "oauth2"],
    region: str | None,
    org: str | None,
    base_url: str,
    settings: Mapping[str, Any],
    secrets_: Secrets,
) -> ConnectionRecord:
    now = _utcnow()
    return ConnectionRecord(
        id=f"draft-{uuid.uuid4().hex}",
        connector_id=connector_id,
        owner_id=owner_id,
        label=label,
        auth_type=auth_type,
        status="pending",
        region=region,
        org=org,
        base_url=base_url,
        operations=(),
        granted_roles=None,
        settings=dict(settings),
        metadata={},
        secrets=secrets_,
        token_version=0,
        access_expires_at=None,
        status_reason=None,
        created_at=now,
        updated_at=now,
    )


def _identity_metadata(identity: Identity) -> dict[str, Any]:
    return {k: v for k, v in identity.to_dict().items() if k != "grantedRoles" and v is not None}


class Connection:
    """One tenant's connection to a provider. Get it from :class:`Connectors`; don't build it yourself."""

    def __init__(self, hub: Connectors, connector: Connector) -> None:
        self.hub = hub
        self.connector = connector
        self.session = connector.session

    def __repr__(self) -> str:
        rec = self.session.record
        return (
            f"Connection(id={rec.id!r}, connector={rec.connector_id!r}, owner={rec.owner_id!r}, status={rec.status!r})"
        )

    @property
    def info(self) -> ConnectionInfo:
        """The connection without its secrets."""
        return ConnectionInfo.from_record(self.session.record)

    @property
    def id(self) -> str:
        """The connection id."""
        return self.session.record.id

    async def aclose(self) -> None:
        """Close the connection's HTTP resources (the stored connection stays)."""
        await self.connector.aclose()

    # -- permissions ------------------------------------------------------------------------------

    def operation(self, name: str) -> Operation:
        """The operation ``name`` with this connection's role overrides applied.

        Raises:
            ConfigurationError: unknown operation.
        """
        table = _operations(type(self.connector), self.session.record.settings)
        if name not in table:
            _check_known(type(self.connector), table, [name])
        return table[name]

    def require(self, name: str) -> Operation:
        """Fail early unless the credential was granted what operation ``name`` needs.

        Raises:
            InsufficientPermissionsError: naming the operation and the missing roles.
            NeedsReauthError: the connection must be re-authorized first.
        """
        from connectors.errors import NeedsReauthError

        record = self.session.record
        if record.status == "needs_reauth":
            raise NeedsReauthError(
                f"connection {record.connector_id}/{record.owner_id} needs re-authorization"
                + (f": {record.status_reason}" if record.status_reason else "")
            )
        op = self.operation(name)
        granted = record.granted_roles
        if granted is not None:
            missing = op.missing(granted)
            if missing:
                raise InsufficientPermissionsError(operation=name, missing_roles=missing, granted_roles=granted)
        return op

    def permission_error(self, name: str, exc: PermissionDeniedError) -> InsufficientPermissionsError:
        """Translate a provider 403 into :class:`InsufficientPermissionsError` for operation ``name``."""
        granted = self.session.record.granted_roles
        missing: tuple[str, ...] = ()
        # The connection's table first; when it says nothing is missing (a wrong ``role_overrides``), the
        # connector's own table.
        for op in (self.operation(name), type(self.connector).operations().get(name)):
            if op is not None and not missing:
                missing = op.missing(granted) if granted is not None else op.preferred_roles
        return InsufficientPermissionsError(
            operation=name, missing_roles=missing, granted_roles=granted, detail=exc.detail
        )

    # -- API --------------------------------------------------------------------------------------

    async def whoami(self) -> Identity:
        """Ask the provider who this connection's credential is (org, user, roles)."""
        self.require("whoami")
        return await self.connector.identify()

    @overload
    def resources(self, model: Literal["genericContact"]) -> Resources[Contact]: ...
    @overload
    def resources(self, model: Literal["genericCompany"]) -> Resources[Company]: ...
    @overload
    def resources(self, model: Literal["genericUser"]) -> Resources[User]: ...
    @overload
    def resources(self, model: Literal["genericWorkspace"]) -> Resources[Workspace]: ...
    @overload
    def resources(self, model: Literal["crmOpportunity"]) -> Resources[Opportunity]: ...
    @overload
    def resources(self, model: Literal["crmPipeline"]) -> Resources[Pipeline]: ...
    @overload
    def resources(self, model: Literal["crmStage"]) -> Resources[Stage]: ...
    @overload
    def resources(self, model: Literal["crmEngagement"]) -> Resources[Engagement]: ...
    @overload
    def resources(self, model: str) -> Resources[UnifiedResource]: ...

    def resources(self, model: str) -> Resources[Any]:
        """CRUD over one unified model (``custom:<klass>`` for custom objects).

        Raises:
            ConfigurationError: the connector does not map this model.
        """
        try:
            model_class(model)
        except KeyError as exc:
            raise ConfigurationError(str(exc.args[0])) from None
        return Resources(self, model)

    def fields(self, model: str) -> Fields:
        """Field definitions (standard + custom) of one unified model."""
        try:
            model_class(model)
        except KeyError as exc:
            raise ConfigurationError(str(exc.args[0])) from None
        return Fields(self, model)

    @property
    def webhooks(self) -> ConnectionWebhooks:
        """Webhook subscriptions of this connection (see :mod:`connectors.runtime.webhooks`)."""
        from connectors.runtime.webhooks import ConnectionWebhooks

        return ConnectionWebhooks(self)

    def sync(self, model: str) -> ModelSync:
        """Bulk push (split retries) and incremental pull of one model (see :mod:`connectors.runtime.bulk`)."""
        from connectors.runtime.bulk import ModelSync

        try:
            model_class(model)
        except KeyError as exc:
            raise ConfigurationError(str(exc.args[0])) from None
        return ModelSync(self, model)

    async def proxy(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a raw request to the provider with this connection's auth, budget and retries.

        ``path`` is relative to the provider API host (``/v1/customers``); absolute URLs, ``..``,
        encoded slashes, ``@`` and other attempts to leave the host are refused. Redirects are never
        followed. The response is returned whatever its status.

        Raises:
            ProxyRefusedError: the path tries to leave the provider API host.
            NeedsReauthError: the credential must be re-authorized.
            APIConnectionError: the provider could not be reached (``APITimeoutError`` on timeouts).
            RateLimitError: the org budget could not be had within the wait cap.
        """
        self.require("proxy")
        http = self.connector.http
        request = build_proxy_request(
            http,
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            allowed_prefixes=type(self.connector).proxy_path_prefixes,
        )
        where = str(request.url.copy_with(query=None))
        try:
            return await http.send(request)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"proxy {request.method} {request.url.path}: no answer in time", method=request.method, url=where
            ) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"proxy {request.method} {request.url.path}: {type(exc).__name__}", method=request.method, url=where
            ) from exc


def _page_query(
    limit: int,
    cursor: str | None,
    filters: Mapping[str, Any] | None,
    q: str | None,
    fields: Sequence[str] | None,
    sort: str | None,
) -> ListQuery:
    if limit < 1:
        raise ConfigurationError(f"limit must be at least 1, got {limit}")
    return ListQuery(limit=limit, cursor=cursor, filters=dict(filters or {}), q=q, fields=fields, sort=sort)


class Resources(Generic[T]):
    """CRUD over one unified model of one connection."""

    def __init__(self, connection: Connection, model: str) -> None:
        self.connection = connection
        self.model = model
        self._op_prefix = "custom" if model.startswith("custom:") else model
        self._backend: ResourceBackend | None = None

    def __repr__(self) -> str:
        return f"Resources({self.model!r}, connection={self.connection.id!r})"

    @property
    def backend(self) -> ResourceBackend:
        """The connector's backend for this model."""
        if self._backend is None:
            self._backend = self.connection.connector.resource_backend(self.model)
        return self._backend

    def _op(self, action: str) -> str:
        name = f"{self._op_prefix}::{action}"
        self.connection.require(name)
        return name

    def _coerce(self, data: T | Mapping[str, Any], *, partial_ok: bool) -> UnifiedResource:
        cls = model_class(self.model)
        if isinstance(data, UnifiedResource):
            if not isinstance(data, cls):
                raise MappingError(f"expected a {cls.__name__}, got {type(data).__name__}", model=self.model)
            return data
        payload = dict(data)
        if self.model.startswith("custom:"):
            payload.setdefault("objectType", self.model.split(":", 1)[1])
        target = partial(cls) if partial_ok else cls
        try:
            return target.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or None
            raise MappingError(first["msg"], model=self.model, field=where) from exc

    async def _call(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except PermissionDeniedError as exc:
            raise self.connection.permission_error(name, exc) from exc

    async def list(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filters: Mapping[str, Any] | None = None,
        q: str | None = None,
        fields: Sequence[str] | None = None,
        sort: str | None = None,
        include_raw: bool = False,
    ) -> Page[T]:
        """Return one page; pass ``page.next`` back as ``cursor`` for the next one.

        Args:
            limit: records per page.
            cursor: opaque cursor from a previous page.
            filters: e.g. ``{"email": ...}``, ``{"updatedAfter": ...}``, ``{"ids": [...]}``,
                ``{"custom.loyaltyTier": "gold"}`` (see the README for each model's filters).
            q: free-text search.
            fields: only these fields (a hint).
            sort: ``updatedAt`` / ``-updatedAt`` / ``createdAt`` / ...
            include_raw: attach the provider object as ``raw``.
        """
        name = self._op("list")
        query = _page_query(limit, cursor, filters, q, fields, sort)
        return cast("Page[T]", await self._call(name, lambda: self.backend.list(query, include_raw=include_raw)))

    async def iter(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        q: str | None = None,
        fields: Sequence[str] | None = None,
        sort: str | None = None,
        page_size: int = 100,
        include_raw: bool = False,
    ) -> AsyncIterator[T]:
        """Iterate over every record, page after page (constant memory)."""
        name = self._op("list")
        query = _page_query(page_size, None, filters, q, fields, sort)
        try:
            async for item in self.backend.iter(query, include_raw=include_raw):
                yield cast("T", item)
        except PermissionDeniedError as exc:
            raise self.connection.permission_error(name, exc) from exc

    async def retrieve(self, id: str, *, expand: Sequence[str] = (), include_raw: bool = False) -> T:
        """Return one record.

        Raises:
            NotFoundError: no such record.
        """
        name = self._op("retrieve")
        _check_id(id, self.model)
        return cast(
            "T", await self._call(name, lambda: self.backend.retrieve(id, expand=expand, include_raw=include_raw))
        )

    async def create(self, data: T | Mapping[str, Any], *, include_raw: bool = False) -> T:
        """Create a record from a model instance or a dict (camelCase or snake_case keys).

        Raises:
            MappingError: invalid input (names the field) — nothing is sent.
        """
        name = self._op("create")
        obj = self._coerce(data, partial_ok=False)
        return cast("T", await self._call(name, lambda: self.backend.create(obj, include_raw=include_raw)))

    async def update(self, id: str, data: T | Mapping[str, Any], *, include_raw: bool = False) -> T:
        """Update only the given fields (PATCH semantics) and return the record as stored.

        Raises:
            MappingError: invalid input (names the field) — nothing is sent.
            NotFoundError: no such record.
        """
        name = self._op("update")
        _check_id(id, self.model)
        obj = self._coerce(data, partial_ok=True)
        return cast("T", await self._call(name, lambda: self.backend.update(id, obj, include_raw=include_raw)))

    async def delete(self, id: str) -> None:
        """Delete a record.

        Raises:
            UnsupportedOperationError: the provider cannot delete this model.
            NotFoundError: no such record.
        """
        name = self._op("delete")
        _check_id(id, self.model)
        await self._call(name, lambda: self.backend.delete(id))


def _check_id(id: str, model: str) -> None:
    if not isinstance(id, str) or not id or len(id) > 200 or any(c in id for c in "/?#\\") or id in (".", ".."):
        raise MappingError(f"invalid id {id!r}", model=model, field="id")


class Fields:
    """Field definitions of one unified model of one connection."""

    def __init__(self, connection: Connection, model: str) -> None:
        self.connection = connection
        self.model = model
        self._op_prefix = "custom" if model.startswith("custom:") else model

    def __repr__(self) -> str:
        return f"Fields({self.model!r}, connection={self.connection.id!r})"

    def _backend(self) -> FieldsBackend:
        return self.connection.connector.fields_backend(self.model)

    async def list(self) -> list[FieldDefinition]:
        """Standard and custom fields, typed."""
        name = f"{self._op_prefix}::fieldRead"
        self.connection.require(name)
        try:
            return await self._backend().list()
        except PermissionDeniedError as exc:
            raise self.connection.permission_error(name, exc) from exc

    async def create(
        self, display_name: str, type: str, *, options: Sequence[str] | None = None, key: str | None = None
    ) -> FieldDefinition:
        """Create a custom field; the provider attribute name is derived the way Kustomer derives it.

        Raises:
            MappingError: bad display name or type (nothing is sent).
        """
        name = f"{self._op_prefix}::fieldWrite"
        self.connection.require(name)
        try:
            return await self._backend().create(display_name, type, options=options, key=key)
        except PermissionDeniedError as exc:
            raise self.connection.permission_error(name, exc) from exc
