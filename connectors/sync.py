"""A thin synchronous facade over the async API, for scripts and notebooks.

::

    from connectors import SyncConnectors

    with SyncConnectors() as hub:
        conn = hub.connect("kustomer", "tenant-1", api_key=key, region="us")
        for contact in conn.resources("genericContact").iter():
            print(contact.email)

Every method runs the async method of the same name on one private event loop (an anyio blocking portal
in a background thread); there is no second implementation of anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from connectors.errors import InsufficientPermissionsError, PermissionDeniedError
from connectors.runtime.bulk import ModelSync, PushReport
from connectors.runtime.connection import (
    AuthEventHandler,
    AuthorizationRequest,
    Connection,
    ConnectionInfo,
    Connectors,
    Fields,
    Resources,
)
from connectors.runtime.connector import Connector, Operation
from connectors.runtime.session import Identity
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
)

if TYPE_CHECKING:
    from connectors.runtime.connector import ResourceBackend
    from connectors.runtime.store import ConnectionStore
    from connectors.settings import Settings

__all__ = ["SyncConnection", "SyncConnectors", "SyncFields", "SyncModelSync", "SyncResources"]

T = TypeVar("T", bound=UnifiedResource)


def _iterate(portal: BlockingPortal, aiter: AsyncIterator[T]) -> Iterator[T]:
    sentinel = object()

    async def step() -> Any:
        try:
            return await aiter.__anext__()
        except StopAsyncIteration:
            return sentinel

    try:
        while True:
            item = portal.call(step)
            if item is sentinel:
                return
            yield item
    finally:
        aclose = getattr(aiter, "aclose", None)
        if aclose is not None:
            portal.call(aclose)


class SyncResources(Generic[T]):
    """Synchronous :class:`~connectors.runtime.connection.Resources`."""

    def __init__(self, portal: BlockingPortal, inner: Resources[T]) -> None:
        self._portal = portal
        self._inner = inner

    def __repr__(self) -> str:
        return f"Sync{self._inner!r}"

    @property
    def backend(self) -> ResourceBackend:
        """See :attr:`Resources.backend`."""
        return self._inner.backend

    def list(
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
        """See :meth:`Resources.list`."""
        return self._portal.call(
            lambda: self._inner.list(
                limit=limit, cursor=cursor, filters=filters, q=q, fields=fields, sort=sort, include_raw=include_raw
            )
        )

    def iter(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        q: str | None = None,
        fields: Sequence[str] | None = None,
        sort: str | None = None,
        page_size: int = 100,
        include_raw: bool = False,
    ) -> Iterator[T]:
        """See :meth:`Resources.iter`."""
        return _iterate(
            self._portal,
            self._inner.iter(
                filters=filters, q=q, fields=fields, sort=sort, page_size=page_size, include_raw=include_raw
            ),
        )

    def retrieve(self, id: str, *, expand: Sequence[str] = (), include_raw: bool = False) -> T:
        """See :meth:`Resources.retrieve`."""
        return self._portal.call(lambda: self._inner.retrieve(id, expand=expand, include_raw=include_raw))

    def create(self, data: T | Mapping[str, Any], *, include_raw: bool = False) -> T:
        """See :meth:`Resources.create`."""
        return self._portal.call(lambda: self._inner.create(data, include_raw=include_raw))

    def update(self, id: str, data: T | Mapping[str, Any], *, include_raw: bool = False) -> T:
        """See :meth:`Resources.update`."""
        return self._portal.call(lambda: self._inner.update(id, data, include_raw=include_raw))

    def delete(self, id: str) -> None:
        """See :meth:`Resources.delete`."""
        self._portal.call(lambda: self._inner.delete(id))


class SyncFields:
    """Synchronous :class:`~connectors.runtime.connection.Fields`."""

    def __init__(self, portal: BlockingPortal, inner: Fields) -> None:
        self._portal = portal
        self._inner = inner

    def list(self) -> list[FieldDefinition]:
        """See :meth:`Fields.list`."""
        return self._portal.call(self._inner.list)

    def create(
        self, display_name: str, type: str, *, options: Sequence[str] | None = None, key: str | None = None
    ) -> FieldDefinition:
        """See :meth:`Fields.create`."""
        return self._portal.call(lambda: self._inner.create(display_name, type, options=options, key=key))


class SyncModelSync:
    """Synchronous :class:`~connectors.runtime.bulk.ModelSync` (bulk push and incremental pull)."""

    def __init__(self, portal: BlockingPortal, inner: ModelSync) -> None:
        self._portal = portal
        self._inner = inner

    def __repr__(self) -> str:
        return f"Sync{self._inner!r}"

    def push(self, rows: Iterable[Any], **kwargs: Any) -> PushReport:
        """See :meth:`ModelSync.push` (same keyword arguments)."""
        return self._portal.call(lambda: self._inner.push(rows, **kwargs))

    def pull(self, **kwargs: Any) -> Iterator[UnifiedResource]:
        """See :meth:`ModelSync.pull` (same keyword arguments)."""
        return _iterate(self._portal, self._inner.pull(**kwargs))

    def watermark(self) -> dict[str, Any] | None:
        """See :meth:`ModelSync.watermark`."""
        value: dict[str, Any] | None = self._portal.call(self._inner.watermark)
        return value

    def reset(self) -> None:
        """See :meth:`ModelSync.reset`."""
        self._portal.call(self._inner.reset)


class SyncConnection:
    """Synchronous :class:`~connectors.runtime.connection.Connection`."""

    def __init__(self, portal: BlockingPortal, inner: Connection) -> None:
        self._portal = portal
        self._inner = inner

    def __repr__(self) -> str:
        return f"Sync{self._inner!r}"

    @property
    def info(self) -> ConnectionInfo:
        """See :attr:`Connection.info`."""
        return self._inner.info

    @property
    def id(self) -> str:
        """See :attr:`Connection.id`."""
        return self._inner.id

    @property
    def async_connection(self) -> Connection:
        """The async connection underneath."""
        return self._inner

    def operation(self, name: str) -> Operation:
        """See :meth:`Connection.operation`."""
        return self._inner.operation(name)

    def require(self, name: str) -> Operation:
        """See :meth:`Connection.require`."""
        return self._inner.require(name)

    def permission_error(self, name: str, exc: PermissionDeniedError) -> InsufficientPermissionsError:
        """See :meth:`Connection.permission_error`."""
        return self._inner.permission_error(name, exc)

    def whoami(self) -> Identity:
        """See :meth:`Connection.whoami`."""
        return self._portal.call(self._inner.whoami)

    @overload
    def resources(self, model: Literal["genericContact"]) -> SyncResources[Contact]: ...
    @overload
    def resources(self, model: Literal["genericCompany"]) -> SyncResources[Company]: ...
    @overload
    def resources(self, model: Literal["genericUser"]) -> SyncResources[User]: ...
    @overload
    def resources(self, model: Literal["genericWorkspace"]) -> SyncResources[Workspace]: ...
    @overload
    def resources(self, model: Literal["crmOpportunity"]) -> SyncResources[Opportunity]: ...
    @overload
    def resources(self, model: Literal["crmPipeline"]) -> SyncResources[Pipeline]: ...
    @overload
    def resources(self, model: Literal["crmStage"]) -> SyncResources[Stage]: ...
    @overload
    def resources(self, model: Literal["crmEngagement"]) -> SyncResources[Engagement]: ...
    @overload
    def resources(self, model: str) -> SyncResources[UnifiedResource]: ...

    def resources(self, model: str) -> SyncResources[Any]:
        """See :meth:`Connection.resources`."""
        return SyncResources(self._portal, self._inner.resources(model))

    def fields(self, model: str) -> SyncFields:
        """See :meth:`Connection.fields`."""
        return SyncFields(self._portal, self._inner.fields(model))

    def proxy(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """See :meth:`Connection.proxy` (the body is read before returning)."""

        async def go() -> httpx.Response:
            response = await self._inner.proxy(method, path, params=params, json=json, content=content, headers=headers)
            await response.aread()
            return response

        return self._portal.call(go)

    def sync(self, model: str) -> SyncModelSync:
        """See :meth:`Connection.sync`."""
        return SyncModelSync(self._portal, self._inner.sync(model))

    def close(self) -> None:
        """Close the connection's HTTP resources (:meth:`Connection.aclose`); the stored connection stays."""
        self._portal.call(self._inner.aclose)

    def aclose(self) -> None:
        """The same as :meth:`close` (the name of the async twin, kept for parity)."""
        self.close()


class SyncConnectors:
    """Synchronous :class:`~connectors.runtime.connection.Connectors`; takes the same arguments.

    Use it as a context manager (or call :meth:`close`) to stop its event-loop thread.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._closed = False
        self._cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._cm.__enter__()
        try:
            make: Callable[[], Connectors] = lambda: Connectors(**kwargs)  # noqa: E731
            self._inner = self._portal.call(_construct, make)
        except BaseException:
            self._cm.__exit__(None, None, None)
            raise

    def __repr__(self) -> str:
        return f"Sync{self._inner!r}"

    def __enter__(self) -> SyncConnectors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def async_hub(self) -> Connectors:
        """The async hub underneath."""
        return self._inner

    @property
    def settings(self) -> Settings:
        """See :attr:`Connectors.settings`."""
        return self._inner.settings

    @property
    def store(self) -> ConnectionStore:
        """See :attr:`Connectors.store`."""
        return self._inner.store

    def connector_class(self, connector_id: str) -> type[Connector]:
        """See :meth:`Connectors.connector_class`."""
        return self._inner.connector_class(connector_id)

    def on(self, pattern: str) -> Callable[[Any], Any]:
        """See :meth:`Connectors.on` (handlers run on the facade's event loop)."""
        return self._inner.on(pattern)

    def on_auth_event(self, handler: AuthEventHandler) -> AuthEventHandler:
        """See :meth:`Connectors.on_auth_event` (handlers run on the facade's event-loop thread)."""
        return self._inner.on_auth_event(handler)

    def close(self) -> None:
        """Close every connection and stop the event-loop thread (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._inner.aclose)
        finally:
            self._cm.__exit__(None, None, None)

    def aclose(self) -> None:
        """The same as :meth:`close` (the name of the async twin, kept for parity)."""
        self.close()

    def connect(self, connector_id: str, owner_id: str, **kwargs: Any) -> SyncConnection:
        """See :meth:`Connectors.connect`."""
        return SyncConnection(
            self._portal, self._portal.call(lambda: self._inner.connect(connector_id, owner_id, **kwargs))
        )

    def authorize(self, connector_id: str, owner_id: str, **kwargs: Any) -> AuthorizationRequest:
        """See :meth:`Connectors.authorize`."""
        return self._portal.call(lambda: self._inner.authorize(connector_id, owner_id, **kwargs))

    def complete_authorization(self, *, code: str | None, state: str, error: str | None = None) -> SyncConnection:
        """See :meth:`Connectors.complete_authorization`."""
        conn = self._portal.call(lambda: self._inner.complete_authorization(code=code, state=state, error=error))
        return SyncConnection(self._portal, conn)

    def get(self, connector_id: str, owner_id: str, label: str = "") -> SyncConnection:
        """See :meth:`Connectors.get`."""
        return SyncConnection(self._portal, self._portal.call(lambda: self._inner.get(connector_id, owner_id, label)))

    def get_by_id(self, connection_id: str) -> SyncConnection:
        """See :meth:`Connectors.get_by_id`."""
        return SyncConnection(self._portal, self._portal.call(lambda: self._inner.get_by_id(connection_id)))

    def list(self, *, owner_id: str | None = None, connector_id: str | None = None) -> list[ConnectionInfo]:
        """See :meth:`Connectors.list`."""
        return self._portal.call(lambda: self._inner.list(owner_id=owner_id, connector_id=connector_id))

    def disconnect(self, connector_id: str, owner_id: str, label: str = "") -> bool:
        """See :meth:`Connectors.disconnect`."""
        return self._portal.call(lambda: self._inner.disconnect(connector_id, owner_id, label))


async def _construct(make: Callable[[], Connectors]) -> Connectors:
    # Build the hub inside the portal's loop so its clients belong to that loop.
    return make()
