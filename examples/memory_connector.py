"""Example plugin: a whole new connector ("memory") whose "provider" is an in-memory store.

Register it with an entry point in your own package::

    [project.entry-points.unified_connectors]
    memory = "memory_connector"

or pass the module to ``build_registry(plugins=[memory_connector])``. It shows what a connector provides:
operations with the roles they need, identity, and a resource backend per model that maps through the
registry and raises the package's typed errors. ``memory_connector_contract.py`` next to it runs the
connector contract suite against it, the way a third-party connector would.

The fake provider behaves like a real one where the contract looks:

* an "org" is a base URL (``new_org()`` gives a fresh, empty one), so tests never share data;
* an API key is the comma-separated list of its roles (``memory.read,memory.write``; ``api_key(roles)``);
  a key with anything else in it is refused with a 401;
* writes need the ``memory.write`` role *at the provider*: a key without it gets a 403, even when the
  connection's role table was overridden to let the call through;
* list pages are numbered; a cursor that is not one of ours is an ``InvalidCursorError``; filters are
  ``ids``, ``tags`` (any of) and ``name`` (substring); others are a ``QueryError``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from connectors import hookimpl
from connectors.errors import (
    AuthenticationError,
    InvalidCursorError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
)
from connectors.mapping import MappingContext
from connectors.runtime.connector import Connector, ListQuery, Operation, ResourceBackend
from connectors.runtime.session import Identity
from unified_models import Page, UnifiedResource, model_class

MODELS = ("genericContact", "genericCompany")
READ, WRITE = "memory.read", "memory.write"
_ROLE = re.compile(r"^memory\.[a-z_]+$")

_ORGS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
_ORG_NUMBERS = itertools.count(1)
_IDS = itertools.count(1)


def new_org() -> str:
    """A fresh, empty org; its base URL is what ``Connectors.connect(base_url=...)`` takes."""
    base_url = f"http://org-{next(_ORG_NUMBERS)}.memory.invalid"
    _ORGS[base_url] = {}
    return base_url


def api_key(roles: Sequence[str]) -> str:
    """An API key granted ``roles``."""
    return ",".join(roles)


def _roles(key: str | None) -> tuple[str, ...] | None:
    roles = tuple(sorted(filter(None, (key or "").split(","))))
    return roles if all(_ROLE.match(role) for role in roles) else None


class PassthroughMapper:
    """Records are stored in unified JSON form, so mapping is a validation round trip."""

    def __init__(self, model: str) -> None:
        self.model = model

    def to_unified(self, resource: Any, context: MappingContext) -> UnifiedResource:
        return model_class(self.model).model_validate(resource)

    def to_provider(self, obj: UnifiedResource, context: MappingContext) -> dict[str, Any]:
        return obj.model_dump(mode="json", include=obj.model_fields_set, exclude={"id", "created_at", "updated_at"})


class MemoryBackend:
    def __init__(self, connector: MemoryConnector, model: str) -> None:
        self.model = model
        self._session = connector.session
        self._org = connector.org
        self._rows = connector.org.setdefault(model, {})
        self._granted = _roles(connector.session.record.secrets.api_key) or ()

    def _map(self, row: Mapping[str, Any]) -> UnifiedResource:
        return self._session.registry.to_unified(row, self._session.mapping_context(self.model))

    def _authorize(self, role: str, action: str) -> None:
        # What the provider does, whatever the connection's role table says.
        if role not in self._granted:
            raise PermissionDeniedError(
                f"memory provider refused {self.model} {action}: missing role {role}",
                status_code=403,
                detail=f"this endpoint needs {role}",
            )

    def _row(self, id: str) -> dict[str, Any]:
        try:
            return self._rows[id]
        except KeyError:
            raise NotFoundError(f"no {self.model} {id}", status_code=404) from None

    def _matching(self, filters: Mapping[str, Any]) -> list[str]:
        ids = sorted(self._rows, key=int)
        for name, value in filters.items():
            if name == "ids":
                wanted = {str(v) for v in value}
                ids = [i for i in ids if i in wanted]
            elif name == "tags":
                tags = set(value if isinstance(value, list | tuple) else [value])
                ids = [i for i in ids if tags & set(self._rows[i].get("tags") or [])]
            elif name == "name":
                ids = [i for i in ids if str(value) in str(self._rows[i].get("name") or self._rows[i].get("lastName"))]
            else:
                raise QueryError(f"unknown filter {name!r}; supported: ids, name, tags", field=f"filters.{name}")
        return ids

    async def list(self, query: ListQuery, *, include_raw: bool = False) -> Page[UnifiedResource]:
        self._authorize(READ, "list")
        ids = self._matching(query.filters)
        start = 0
        if query.cursor is not None:
            if not (query.cursor.startswith("p") and query.cursor[1:].isdigit()):
                raise InvalidCursorError("malformed cursor: pass back the 'next' value unchanged")
            start = int(query.cursor[1:])
        chunk = ids[start : start + query.limit]
        nxt = f"p{start + query.limit}" if start + query.limit < len(ids) else None
        return Page(data=[self._map(self._rows[i]) for i in chunk], next=nxt)

    async def iter(self, query: ListQuery, *, include_raw: bool = False) -> AsyncIterator[UnifiedResource]:
        cursor = None
        while True:
            page = await self.list(ListQuery(limit=query.limit, cursor=cursor, filters=query.filters))
            for item in page.data:
                yield item
            if page.next is None:
                return
            cursor = page.next

    async def retrieve(self, id: str, *, expand: Sequence[str] = (), include_raw: bool = False) -> UnifiedResource:
        self._authorize(READ, "retrieve")
        return self._map(self._row(id))

    async def create(self, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        self._authorize(WRITE, "create")
        row = self._session.registry.to_provider(obj, self._session.mapping_context(self.model))
        now = datetime.now(UTC).isoformat()
        row.update(id=str(next(_IDS)), createdAt=now, updatedAt=now)
        self._rows[row["id"]] = row
        return self._map(row)

    async def update(self, id: str, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        self._authorize(WRITE, "update")
        current = self._row(id)
        changes = self._session.registry.to_provider(obj, self._session.mapping_context(self.model))
        self._rows[id] = {**current, **changes, "updatedAt": datetime.now(UTC).isoformat()}
        return self._map(self._rows[id])

    async def delete(self, id: str) -> None:
        self._authorize(WRITE, "delete")
        self._row(id)
        del self._rows[id]


class MemoryConnector(Connector):
    id: ClassVar[str] = "memory"
    display_name: ClassVar[str] = "In-memory example"

    @classmethod
    def operations(cls) -> Mapping[str, Operation]:
        ops = [Operation("whoami", ()), Operation("proxy", ())]
        for model in MODELS:
            for action in ("list", "retrieve", "create", "update", "delete"):
                role = READ if action in ("list", "retrieve") else WRITE
                ops.append(Operation(f"{model}::{action}", ((role,),)))
        return {op.name: op for op in ops}

    @classmethod
    def resolve_base_url(cls, *, region: str | None, org: str | None, base_url: str | None) -> str:
        return base_url or "http://default.memory.invalid"

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        base_url = session.record.base_url or self.resolve_base_url(region=None, org=None, base_url=None)
        self.org = _ORGS.setdefault(base_url, {})
        self._http = httpx.AsyncClient(base_url=base_url)

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    async def identify(self) -> Identity:
        roles = _roles(self.session.record.secrets.api_key)
        if roles is None:
            # Never echo the key: name what is wrong with it instead.
            raise AuthenticationError("memory provider refused the API key (expected memory.* roles)", status_code=401)
        return Identity(org_id=self.session.record.base_url, granted_roles=roles)

    def resource_backend(self, model: str) -> ResourceBackend:
        return MemoryBackend(self, model)


@hookimpl
def register_connectors(register: Any) -> None:
    register(MemoryConnector)


@hookimpl
def register_mappers(register: Any) -> None:
    for model in MODELS:
        register("memory", model, PassthroughMapper(model))
