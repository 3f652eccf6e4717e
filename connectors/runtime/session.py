"""The per-connection runtime context handed to a connector: record, auth, transport, budget, mapping."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from connectors.mapping import FieldMapping, MappingContext

if TYPE_CHECKING:
    from connectors.registry import Registry
    from connectors.runtime.auth import TokenManager
    from connectors.runtime.ratelimit import RateLimiter
    from connectors.runtime.store import ConnectionRecord, ConnectionStore
    from connectors.settings import Settings

__all__ = ["Identity", "Session"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a credential is: the org and user behind it and what it was granted.

    Attributes:
        org_id: provider org id.
        org_name: provider org name/subdomain, when known.
        user_id: the (machine) user acting for the credential.
        user_name: that user's name.
        user_email: that user's email.
        granted_roles: roles the credential holds (``None`` when the provider does not say).
        credential_name: the API key's label, when the provider reports one.
        extra: anything else the connector found useful.
    """

    org_id: str | None
    org_name: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    user_email: str | None = None
    granted_roles: tuple[str, ...] | None = None
    credential_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (camelCase keys)."""
        return {
            "orgId": self.org_id,
            "orgName": self.org_name,
            "userId": self.user_id,
            "userName": self.user_name,
            "userEmail": self.user_email,
            "grantedRoles": list(self.granted_roles) if self.granted_roles is not None else None,
            "credentialName": self.credential_name,
        }


class Session:
    """Runtime context of one connection, shared by the connector's backends.

    Connectors read the record (region, base URL, settings), use ``auth`` + ``transport`` + ``limiter`` to
    build their HTTP client, and ``mapping_context()`` to call mappers through the registry.
    """

    def __init__(
        self,
        *,
        record: ConnectionRecord,
        registry: Registry,
        settings: Settings,
        store: ConnectionStore | None,
        auth: httpx.Auth,
        transport: httpx.AsyncBaseTransport | None,
        limiter: RateLimiter | None,
        token_manager: TokenManager | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._record = record
        # (model, include_raw) -> the context built from the current record object (rebuilt when it changes)
        self._contexts: dict[tuple[str, bool], tuple[ConnectionRecord, MappingContext]] = {}
        self.registry = registry
        self.settings = settings
        self.store = store
        self.auth = auth
        self.transport = transport
        self.limiter = limiter
        self.token_manager = token_manager
        self.clock = clock

    def __repr__(self) -> str:
        rec = self.record
        return f"Session(connector={rec.connector_id!r}, owner={rec.owner_id!r}, label={rec.label!r})"

    @property
    def record(self) -> ConnectionRecord:
        """The connection as last read (OAuth refreshes update it)."""
        if self.token_manager is not None:
            return self.token_manager.record
        return self._record

    @record.setter
    def record(self, value: ConnectionRecord) -> None:
        self._record = value
        if self.token_manager is not None:
            self.token_manager.record = value

    @property
    def connector_settings(self) -> Mapping[str, Any]:
        """The connection's connector settings (field mappings, Klass names, ...)."""
        return self.record.settings

    def field_mapping(self, model: str) -> FieldMapping:
        """The custom field mapping of ``model`` on this connection."""
        mappings = self.record.settings.get("field_mappings") or {}
        spec = mappings.get(model) or {}
        if isinstance(spec, Mapping) and "fields" in spec:
            return FieldMapping(fields=dict(spec["fields"]), passthrough=bool(spec.get("passthrough", True)))
        return FieldMapping(fields=dict(spec))

    def mapping_context(self, model: str, *, include_raw: bool = False) -> MappingContext:
        """The :class:`~connectors.mapping.MappingContext` for ``model``.

        Contexts are immutable and reused while the connection's record (and so its settings) stays the same.
        """
        record = self.record
        cached = self._contexts.get((model, include_raw))
        if cached is not None and cached[0] is record:
            return cached[1]
        context = MappingContext(
            connector_id=record.connector_id,
            model=model,
            field_mapping=self.field_mapping(model),
            settings=record.settings,
            include_raw=include_raw,
        )
        self._contexts[(model, include_raw)] = (record, context)
        return context
