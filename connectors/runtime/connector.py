"""What a connector is: its operations and the roles they need, its auth, and its resource backends.

A connector plugin subclasses :class:`Connector` and registers the class with the
``register_connectors`` hook. The runtime (:mod:`connectors.runtime.connection`) creates one instance per
connection and asks it for resource backends; the connector never stores credentials itself.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from unified_models import FieldDefinition, Page, UnifiedResource

if TYPE_CHECKING:
    import httpx

    from connectors.runtime.auth import OAuthClientConfig
    from connectors.runtime.session import Identity, Session
    from connectors.settings import Settings

__all__ = [
    "AuthType",
    "Connector",
    "FieldsBackend",
    "ListQuery",
    "Operation",
    "ResourceBackend",
    "RoleChoice",
    "apply_role_overrides",
    "check_resource_id",
    "roles_satisfy",
]

AuthType = Literal["api_key", "oauth2"]

RoleChoice = tuple[str, ...]
"""Alternative roles of which any one suffices; the first is the one to request or grant."""

CRUD_ACTIONS: tuple[str, ...] = ("list", "retrieve", "create", "update", "delete")


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation a connection can be allowed to perform.

    Attributes:
        name: ``<model>::<action>`` (``genericContact::list``) or a named operation (``proxy::read``).
        requires: each entry is a :data:`RoleChoice`; every entry must be satisfied.
        description: what the operation does, for consent pages and ``connectors connections roles``.
    """

    name: str
    requires: tuple[RoleChoice, ...]
    description: str = ""

    @property
    def preferred_roles(self) -> tuple[str, ...]:
        """The role to request for each requirement (the first of each choice)."""
        return tuple(choice[0] for choice in self.requires if choice)

    def missing(self, granted: Iterable[str]) -> tuple[str, ...]:
        """Return the preferred role of every requirement that ``granted`` does not satisfy."""
        held = frozenset(granted)
        return tuple(choice[0] for choice in self.requires if choice and not roles_satisfy(held, choice))


def roles_satisfy(granted: frozenset[str], choice: RoleChoice) -> bool:
    """Whether ``granted`` holds any role of ``choice``, counting Kustomer's broad legacy roles.

    A granted role also covers every role it is a dotted prefix of, as in Kustomer's role model: ``org.admin``
    grants every ``org.admin.*`` role, ``org.user`` every ``org.user.*`` role and ``org.permission.customer``
    every ``org.permission.customer.*`` role.
    """
    for role in choice:
        if role in granted:
            return True
        parts = role.split(".")
        if any(".".join(parts[:cut]) in granted for cut in range(2, len(parts))):
            return True
    return False


_ID_RE = re.compile(r"^[A-Za-z0-9_.:@+=~-]{1,200}$")


def check_resource_id(value: object, model: str, *, field: str = "id") -> str:
    """Return ``value`` when it is a safe record id, else raise a :class:`~connectors.errors.MappingError`.

    Ids end up in URL paths: only letters, digits and ``_ . : @ + = ~ -`` are accepted (Kustomer ids are 24 hex
    digits; engagement notes are ``note:<id>``), never ``.`` or ``..``, at most 200 characters.
    """
    from connectors.errors import MappingError

    if not isinstance(value, str) or not _ID_RE.match(value) or value in (".", ".."):
        raise MappingError(f"invalid id {value!r}", model=model, field=field)
    return value


def apply_role_overrides(
    operations: Mapping[str, Operation], overrides: Mapping[str, Sequence[Sequence[str]]] | None
) -> Mapping[str, Operation]:
    """Return ``operations`` with the requirements of some operations replaced.

    Deployments use this (the ``role_overrides`` connection setting) where a provider's role names are not
    documented and turn out to differ.

    Args:
        operations: the default table.
        overrides: operation name -> list of role choices (each a list of alternatives).

    Raises:
        KeyError: an override names an unknown operation.
    """
    if not overrides:
        return operations
    table = dict(operations)
    for name, requires in overrides.items():
        if name not in table:
            raise KeyError(f"role_overrides names unknown operation {name!r}")
        table[name] = Operation(name, tuple(tuple(choice) for choice in requires), table[name].description)
    return table


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list request in unified terms.

    Attributes:
        limit: page size wanted (the connector clamps it to the provider maximum).
        cursor: an opaque cursor from a previous :class:`~unified_models.Page`.
        filters: unified filters (``email``, ``updatedAfter``, ``ids``, ``custom.<key>``...).
        q: free-text search.
        fields: restrict returned fields (a hint; connectors may return more).
        sort: ``field`` or ``-field``.
    """

    limit: int = 100
    cursor: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    q: str | None = None
    fields: Sequence[str] | None = None
    sort: str | None = None


class ResourceBackend(Protocol):
    """CRUD over one unified model for one connection (returned by :meth:`Connector.resource_backend`)."""

    model: str

    async def list(self, query: ListQuery, *, include_raw: bool = False) -> Page[UnifiedResource]:
        """Return one page."""
        ...

    def iter(self, query: ListQuery, *, include_raw: bool = False) -> AsyncIterator[UnifiedResource]:
        """Iterate every record across pages."""
        ...

    async def retrieve(self, id: str, *, expand: Sequence[str] = (), include_raw: bool = False) -> UnifiedResource:
        """Return one record; ``expand`` names references to embed in ``raw``/expanded fields."""
        ...

    async def create(self, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        """Create a record and return it as stored."""
        ...

    async def update(self, id: str, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        """Update only ``obj.model_fields_set`` and return the record as stored."""
        ...

    async def delete(self, id: str) -> None:
        """Delete a record."""
        ...


class FieldsBackend(Protocol):
    """Field definitions of one unified model for one connection."""

    async def list(self) -> list[FieldDefinition]:
        """Standard and custom fields, typed."""
        ...

    async def create(
        self, display_name: str, type: str, *, options: Sequence[str] | None = None, key: str | None = None
    ) -> FieldDefinition:
        """Create a custom field at the provider and return its definition."""
        ...


class Connector(ABC):
    """Base class of connector plugins.

    Class attributes describe the connector; instances are cheap and bound to one connection session.
    """

    #: Unique connector id (``kustomer``).
    id: ClassVar[str]
    #: Human name (``Kustomer``).
    display_name: ClassVar[str]
    #: Auth types the connector supports.
    auth_types: ClassVar[frozenset[AuthType]] = frozenset({"api_key"})
    #: Path prefixes the proxy may reach on the provider host (empty: any path on the host).
    proxy_path_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def operations(cls) -> Mapping[str, Operation]:
        """Every operation the connector offers, by name."""

    @classmethod
    def operation(cls, name: str) -> Operation:
        """Return one operation.

        Raises:
            KeyError: unknown operation (the message lists close names).
        """
        ops = cls.operations()
        try:
            return ops[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, list(ops), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"{cls.id} has no operation {name!r}{hint}") from None

    @classmethod
    def roles_for(cls, operations: Iterable[str]) -> tuple[str, ...]:
        """The sorted union of preferred roles that ``operations`` need (what to request or grant)."""
        roles: set[str] = set()
        for name in operations:
            roles.update(cls.operation(name).preferred_roles)
        return tuple(sorted(roles))

    @classmethod
    @abstractmethod
    def resolve_base_url(cls, *, region: str | None, org: str | None, base_url: str | None) -> str:
        """The provider API base URL of a connection.

        Raises:
            connectors.errors.ConfigurationError: unknown region or malformed values.
        """

    @classmethod
    def oauth_client(
        cls,
        settings: Settings,
        *,
        region: str | None,
        org: str | None,
        base_url: str | None,
        override: Mapping[str, Any] | None = None,
    ) -> OAuthClientConfig:
        """The OAuth client to use for a connection (deployment client, or a per-tenant ``override``).

        Raises:
            connectors.errors.ConfigurationError: OAuth is not configured for this connector.
        """
        from connectors.errors import ConfigurationError

        raise ConfigurationError(f"connector {cls.id!r} does not support OAuth")

    @classmethod
    def oauth_scopes(cls, operations: Iterable[str], settings: Settings) -> tuple[str, ...]:
        """Scopes to request for ``operations`` (by default exactly the roles they need)."""
        return cls.roles_for(operations)

    @classmethod
    def granted_from_scopes(cls, scopes: Iterable[str]) -> tuple[str, ...]:
        """Roles granted, from the scopes of a token response (drops non-role scopes)."""
        return tuple(sorted(scopes))

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    @abstractmethod
    def http(self) -> httpx.AsyncClient:
        """The authenticated, rate-limited HTTP client of this connection (used by the proxy)."""

    @abstractmethod
    async def identify(self) -> Identity:
        """Ask the provider who the credential is and which roles it holds."""

    async def aclose(self) -> None:
        """Release the connector's HTTP resources."""
        await self.http.aclose()

    @abstractmethod
    def resource_backend(self, model: str) -> ResourceBackend:
        """Return the backend of ``model`` for this session's connection."""

    def bulk_backend(self, model: str) -> Any:
        """The bulk-write backend of ``model`` (see :mod:`connectors.runtime.bulk`).

        Raises:
            connectors.errors.UnsupportedOperationError: the connector has no bulk writes.
        """
        from connectors.errors import UnsupportedOperationError

        raise UnsupportedOperationError("this connector has no bulk writes", operation=f"{model}::create")

    def webhook_backend(self) -> Any:
        """The provider side of webhooks: subscribe, verify, normalise (see :mod:`connectors.runtime.webhooks`).

        Raises:
            connectors.errors.UnsupportedOperationError: the connector has no webhooks.
        """
        from connectors.errors import UnsupportedOperationError

        raise UnsupportedOperationError("this connector has no webhooks", operation="webhooks::subscribe")

    def fields_backend(self, model: str) -> FieldsBackend:
        """Return the field-definition backend of ``model`` (connectors without custom fields keep this)."""
        from connectors.errors import UnsupportedOperationError

        raise UnsupportedOperationError("this connector has no field definitions", operation=f"{model}::fieldRead")
