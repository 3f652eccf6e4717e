"""Kustomer resource backends: list/search/iterate/retrieve/create/update/delete per unified model.

Each list request picks the cheapest endpoint that can answer it:

1. a *lookup path* (``/v1/customers/email=...``) when the only filter is an email, phone or external id;
2. direct fetches when the filter is ``ids``;
3. the *plain list* endpoint (``GET /v1/customers``; the org budget) when there are no filters, or only date
   filters the list endpoint understands;
4. the *search* endpoint (``POST /v1/customers/search``; the 100/min search budget) otherwise.

Search (and date-filtered lists) page with a keyset on ``(updatedAt, position among equal timestamps)``:
Kustomer's search stops at page 100, so the cursor starts a new *segment* ``updatedAt >= last seen`` and
skips the records of that timestamp already returned. Within one segment pages are numbered. Nothing is
skipped or repeated as long as Kustomer orders records of equal ``updatedAt`` the same way on every query
(the sandbox orders them by id). Cursors are signed (:mod:`connectors.runtime.cursor`).
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import (
    MappingError,
    NotFoundError,
    QueryError,
    UnsupportedOperationError,
)
from connectors.kustomer.client import error_from_response, lookup_path
from connectors.kustomer.query import parse_timestamp, search_criteria
from connectors.runtime.connector import ListQuery, check_resource_id
from connectors.runtime.cursor import CursorCodec
from connectors.runtime.transport import EXT_ATTEMPTS
from unified_models import Page, ResourceRef, UnifiedResource

if TYPE_CHECKING:
    from connectors.kustomer.connector import KustomerConnector

__all__ = ["SEARCH_PAGE_CAP", "KustomerBackend", "ResourceSpec", "backend_for"]

SEARCH_PAGE_CAP: Final = 100
"""Kustomer's hard limit on search pages (kustomer-api.md §2.10)."""

_IDS_LIMIT: Final = 100
_FETCH_CONCURRENCY: Final = 8
_YIELD_EVERY: Final = 10  # records mapped between two turns of the event loop in iter()

Criterion = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """How one unified model lives in Kustomer.

    Attributes:
        model: unified model id.
        collection: path segment under ``/v1`` (``customers``, ``klasses/crm-stage``).
        search_context: ``queryContext`` for search, or ``None`` when Kustomer cannot search it.
        search_prefix: prefix of search attributes when it differs from the context (KObjects of a Klass
            search with ``queryContext: kobject_<klass>`` but attributes ``kobject_<attr>`` and
            ``kobject_custom_<klass>_<attr>``; kustomer-api.md §2.10).
        max_page_size: the list endpoint's largest ``pageSize``.
        update_method: ``PATCH`` or ``PUT`` (PUT merges unless ``?replace=true``).
        delete_unsupported: why Kustomer cannot delete it, or ``None``.
        lookups: filter name -> lookup-path key (``email`` -> ``/customers/email=...``).
        query_lookups: filter name -> list query parameter (``externalId`` -> ``?externalId=``).
        list_date_filters: the list endpoint understands ``filter[updatedAt][gte]`` and ``sort``.
        needs_current: updates read the record first (read-modify-write fields).
        filters: model-specific search filters.
        multi_get: ``GET /v1/{collection}/{id1,id2}`` returns several records at once.
        default_sort: list sort that is stable under updates (``createdAt``) or ``None``.
    """

    model: str
    collection: str
    search_context: str | None
    search_prefix: str | None = None
    custom_prefix: str | None = None
    max_page_size: int = 100
    update_method: str = "PATCH"
    delete_unsupported: str | None = None
    lookups: Mapping[str, str] = field(default_factory=dict)
    query_lookups: Mapping[str, str] = field(default_factory=dict)
    list_date_filters: bool = False
    needs_current: bool = True
    filters: Mapping[str, Criterion] = field(default_factory=dict)
    multi_get: bool = False
    default_sort: str | None = None


def _eq(attr: str) -> Criterion:
    return lambda v: {attr: {"in": list(v)} if isinstance(v, list) else {"equals": v}}


def _contains(attr: str) -> Criterion:
    return lambda v: {attr: {"contains": v}}


def _standard_filters(ctx: str) -> dict[str, Criterion]:
    return {
        "name": _contains(f"{ctx}_name"),
        "externalId": _eq(f"{ctx}_externalId"),
        "tags": _eq(f"{ctx}_tags"),
    }


def _customer_spec() -> ResourceSpec:
    filters = _standard_filters("customer") | {
        "email": _eq("customer_email"),
        "phone": _eq("customer_phone"),
        "company": _eq("customer_company_id"),
    }
    return ResourceSpec(
        model="genericContact",
        collection="customers",
        search_context="customer",
        lookups={"email": "email", "phone": "phone", "externalId": "externalId"},
        list_date_filters=True,
        filters=filters,
        default_sort="createdAt",
    )


def _company_spec(settings: Mapping[str, Any]) -> ResourceSpec:
    delete_ok = bool(settings.get("company_delete_supported"))
    return ResourceSpec(
        model="genericCompany",
        collection="companies",
        search_context="company",
        update_method="PUT",
        delete_unsupported=None
        if delete_ok
        else "Kustomer's public API has no endpoint to delete a company (set company_delete_supported if yours has)",
        query_lookups={"externalId": "externalId"},
        filters=_standard_filters("company"),
    )


def _user_spec() -> ResourceSpec:
    return ResourceSpec(
        model="genericUser",
        collection="users",
        search_context=None,
        max_page_size=500,
        update_method="PUT",
        delete_unsupported="Kustomer's API cannot delete users (deactivate them in Kustomer's settings)",
        query_lookups={"email": "email", "userType": "userType"},
        needs_current=True,
        multi_get=True,
    )


def _team_spec() -> ResourceSpec:
    return ResourceSpec(
        model="genericWorkspace",
        collection="teams",
        search_context=None,
        max_page_size=500,
        needs_current=False,
    )


def _kobject_spec(model: str, klass: str) -> ResourceSpec:
    ctx = "kobject"
    return ResourceSpec(
        model=model,
        collection=f"klasses/{klass}",
        search_context=f"kobject_{klass}",
        search_prefix=ctx,
        custom_prefix=f"kobject_custom_{klass}",
        update_method="PUT",
        lookups={"externalId": "externalId"},
        needs_current=True,
        filters={
            "name": _contains(f"{ctx}_title"),
            "externalId": _eq(f"{ctx}_externalId"),
            "tags": _eq(f"{ctx}_tags"),
            "contact": _eq(f"{ctx}_customer_id"),
        },
    )


class KustomerBackend:
    """CRUD over one Kustomer collection, mapped through the registry (see the module docstring)."""

    def __init__(self, connector: KustomerConnector, spec: ResourceSpec) -> None:
        self.connector = connector
        self.spec = spec
        self.model = spec.model
        self.client = connector.client
        self.session = connector.session
        self._codec = _codec_for(connector)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"

    # -- mapping --------------------------------------------------------------------------------------

    def to_unified(self, resource: Any, *, include_raw: bool) -> UnifiedResource:
        """Map one Kustomer resource through the registered mapper and extensions."""
        context = self.session.mapping_context(self.model, include_raw=include_raw)
        return self.session.registry.to_unified(resource, context)

    def to_unified_page(self, resources: Sequence[Any], *, include_raw: bool) -> builtins.list[UnifiedResource]:
        """Map a page of Kustomer resources with one mapping context (built once per page, not per record)."""
        return [*map(self.unified_mapper(include_raw=include_raw), resources)]

    def unified_mapper(self, *, include_raw: bool) -> Callable[[Any], UnifiedResource]:
        """A function mapping one Kustomer resource, with the mapping context built once."""
        context = self.session.mapping_context(self.model, include_raw=include_raw)
        to_unified = self.session.registry.to_unified
        return lambda resource: to_unified(resource, context)

    def to_body(self, obj: UnifiedResource, *, current: Any = None) -> dict[str, Any]:
        """Map a unified object to Kustomer's flat request body."""
        context = self.session.mapping_context(self.model)
        if current is not None:
            context = dataclasses.replace(context, current=current)
        return self.session.registry.to_provider(obj, context)

    # -- paths ----------------------------------------------------------------------------------------

    def collection_path(self) -> str:
        """``/v1/<collection>``."""
        return f"/v1/{self.spec.collection}"

    def item_path(self, id: str) -> str:
        """``/v1/<collection>/<id>``."""
        return f"/v1/{self.spec.collection}/{id}"

    # -- reads ----------------------------------------------------------------------------------------

    async def fetch(self, id: str) -> dict[str, Any]:
        """``GET`` one raw Kustomer resource (raises NotFoundError)."""
        body = await self.client.json("GET", self.item_path(id))
        return _data_object(body)

    async def retrieve(self, id: str, *, expand: Sequence[str] = (), include_raw: bool = False) -> UnifiedResource:
        """Return one record, with ``expand`` references resolved (one batched round per model)."""
        obj = self.to_unified(await self.fetch(id), include_raw=include_raw)
        if expand:
            obj = await expand_refs(self.connector, obj, expand)
        return obj

    def _scope(self, strategy: str, query: ListQuery, size: int) -> str:
        payload = json.dumps(
            [self.model, strategy, size, sorted((k, repr(v)) for k, v in query.filters.items()), query.q, query.sort],
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    async def list(self, query: ListQuery, *, include_raw: bool = False) -> Page[UnifiedResource]:
        """Return one page, choosing lookup / ids / list / search as the module docstring says."""
        strategy = self._strategy(query)
        state: dict[str, Any] = {}
        size = self._page_size(query, strategy)
        scope = self._scope(strategy, query, size)
        if query.cursor:
            state = self._codec.decode(query.cursor, scope=scope)
        if strategy == "lookup":
            records = await self._lookup(query)
            return Page(data=self.to_unified_page(records, include_raw=include_raw))
        if strategy == "ids":
            records = await self._by_ids(builtins.list(query.filters["ids"]))
            return Page(data=self.to_unified_page(records, include_raw=include_raw))
        records, next_state = await self._fetch_page(query, strategy, state, size)
        data = self.to_unified_page(records, include_raw=include_raw)
        next_cursor = None
        if next_state is not None:
            next_cursor = self._codec.encode({**next_state, "s": scope})
        return Page(data=data, next=next_cursor)

    async def _fetch_page(
        self, query: ListQuery, strategy: str, state: Mapping[str, Any], size: int
    ) -> tuple[builtins.list[dict[str, Any]], dict[str, Any] | None]:
        if strategy == "page":
            return await self._plain_page(query, state, size)
        return await self._keyset_page(query, state, size, search=strategy == "search")

    async def iter(self, query: ListQuery, *, include_raw: bool = False) -> AsyncIterator[UnifiedResource]:
        """Every record across pages.

        One page ahead: the next page is requested before the current one is mapped, and the mapping gives the
        event loop a turn every few records, so Kustomer and the network work while this process maps. A
        consumer that stops early has cost at most one extra request; a failure of the page fetched ahead is
        raised when its records would be due.
        """
        strategy = self._strategy(query)
        if strategy in ("lookup", "ids") or type(self).list is not KustomerBackend.list:
            cursor = query.cursor
            while True:  # one page, or a subclass's own list(): page after page through it
                page = await self.list(dataclasses.replace(query, cursor=cursor), include_raw=include_raw)
                for item in page.data:
                    yield item
                if page.next is None:
                    return
                cursor = page.next
        size = self._page_size(query, strategy)
        state = self._codec.decode(query.cursor, scope=self._scope(strategy, query, size)) if query.cursor else {}
        ahead: asyncio.Task[tuple[builtins.list[dict[str, Any]], dict[str, Any] | None]] | None
        ahead = asyncio.ensure_future(self._fetch_page(query, strategy, state, size))
        try:
            while ahead is not None:
                records, next_state = await ahead
                ahead = None
                if next_state is not None:
                    ahead = asyncio.ensure_future(self._fetch_page(query, strategy, next_state, size))
                to_unified = self.unified_mapper(include_raw=include_raw)
                for index, record in enumerate(records):
                    if index % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # a turn for the request of the next page
                    yield to_unified(record)
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    def _page_size(self, query: ListQuery, strategy: str) -> int:
        cap = 500 if strategy == "search" else self.spec.max_page_size
        return max(1, min(query.limit, cap))

    def _strategy(self, query: ListQuery) -> str:
        filters = dict(query.filters)
        if "ids" in filters:
            if len(filters) > 1:
                raise QueryError("'ids' cannot be combined with other filters", field="filters.ids")
            ids = filters["ids"]
            if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
                raise QueryError("expected a list of id strings", field="filters.ids")
            for index, value in enumerate(ids):
                try:
                    check_resource_id(value, self.model)
                except MappingError:
                    raise QueryError(f"invalid id {value!r}", field=f"filters.ids.{index}") from None
            if len(ids) > _IDS_LIMIT:
                raise QueryError(f"at most {_IDS_LIMIT} ids per request", field="filters.ids")
            return "ids"
        if query.sort not in (None, "updatedAt", "-updatedAt", "createdAt", "-createdAt"):
            raise QueryError("sort by updatedAt, -updatedAt, createdAt or -createdAt", field="sort")
        if len(filters) == 1 and query.q is None:
            (name,) = filters
            if name in self.spec.lookups or name in self.spec.query_lookups:
                return "lookup"
        if not filters and query.q is None:
            return "keyset" if query.sort and self.spec.list_date_filters else "page"
        only_dates = all(name in ("updatedAfter", "updatedSince", "updatedBefore") for name in filters)
        if only_dates and query.q is None and self.spec.list_date_filters:
            return "keyset"
        if self.spec.search_context is None:
            names = ", ".join(sorted(filters)) or "q"
            raise QueryError(
                f"Kustomer cannot search {self.model}; supported filters: "
                + (", ".join(sorted(self.spec.query_lookups)) or "none"),
                field=f"filters.{names}",
            )
        return "search"

    async def _lookup(self, query: ListQuery) -> builtins.list[dict[str, Any]]:
        ((name, value),) = query.filters.items()
        if not isinstance(value, str) or not value:
            raise QueryError("expected a non-empty string", field=f"filters.{name}")
        if name in self.spec.lookups:
            base = self.spec.collection
            try:
                body = await self.client.json("GET", lookup_path(base, self.spec.lookups[name], value))
            except NotFoundError:
                return []
            found = body.get("data") if isinstance(body, dict) else None
            if isinstance(found, list):
                return [r for r in found if isinstance(r, dict)]
            return [found] if isinstance(found, dict) else []
        params = {self.spec.query_lookups[name]: value, "pageSize": self.spec.max_page_size}
        body = await self.client.json("GET", self.collection_path(), params=params)
        return _data_list(body)

    async def _by_ids(self, ids: builtins.list[str]) -> builtins.list[dict[str, Any]]:
        if not ids:
            return []
        if self.spec.multi_get and len(ids) > 1:
            body = await self.client.json("GET", self.item_path(",".join(ids)))
            by_id = {r.get("id"): r for r in _data_list(body)}
            return [by_id[i] for i in ids if i in by_id]
        limiter = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def one(i: str) -> dict[str, Any] | None:
            async with limiter:
                try:
                    return await self.fetch(i)
                except NotFoundError:
                    return None

        results = await asyncio.gather(*(one(i) for i in ids))
        return [r for r in results if r is not None]

    async def _plain_page(
        self, query: ListQuery, state: Mapping[str, Any], size: int
    ) -> tuple[builtins.list[dict[str, Any]], dict[str, Any] | None]:
        page = int(state.get("p", 1))
        params: dict[str, Any] = {"page": page, "pageSize": size}
        if self.spec.default_sort:
            params["sort"] = self.spec.default_sort
        body = await self.client.json("GET", self.collection_path(), params=params)
        records = _data_list(body)
        return records, ({"m": "page", "p": page + 1} if _has_next(body, records, size) else None)

    async def _keyset_page(
        self, query: ListQuery, state: Mapping[str, Any], size: int, *, search: bool
    ) -> tuple[builtins.list[dict[str, Any]], dict[str, Any] | None]:
        descending = bool(query.sort and query.sort.startswith("-"))
        sort_field = (query.sort or "updatedAt").lstrip("-")
        seg_ts: str | None = state.get("ts")
        page = int(state.get("p", 1))
        offset = int(state.get("o", 0))
        last_ts: str | None = state.get("lt")
        tie = int(state.get("tie", 0))
        body = await (
            self._search(query, seg_ts, page, size, sort_field, descending)
            if search
            else self._date_list(query, seg_ts, page, size, sort_field, descending)
        )
        records = _data_list(body)
        has_next = _has_next(body, records, size)
        records = records[offset:]
        for record in records:
            ts = _attr(record, sort_field)
            if ts == last_ts:
                tie += 1
            else:
                last_ts, tie = ts, 1
        if not has_next:
            return records, None
        cap = SEARCH_PAGE_CAP if search else self.connector.session.connector_settings.get("list_page_cap")
        if cap is not None and page + 1 > int(cap):
            if last_ts is None:
                raise QueryError("records carry no timestamp to continue past Kustomer's page cap", field="sort")
            next_page, next_offset = divmod(tie, size)
            if next_page + 1 > int(cap):
                raise QueryError(
                    f"more than {int(cap) * size} records share {sort_field}={last_ts}; "
                    "Kustomer cannot page past them (use a larger page size)",
                    field="sort",
                )
            return records, {"m": "ks", "ts": last_ts, "p": next_page + 1, "o": next_offset, "lt": last_ts, "tie": tie}
        return records, {"m": "ks", "ts": seg_ts, "p": page + 1, "o": 0, "lt": last_ts, "tie": tie}

    def _criteria(self, query: ListQuery) -> builtins.list[dict[str, Any]]:
        from connectors.kustomer.custom_fields import parse_attribute_name

        ctx = self.spec.search_prefix or self.spec.search_context or ""

        def attr_check(attr: str) -> None:
            try:
                parse_attribute_name(attr)
            except ValueError as exc:
                raise QueryError(str(exc), field=f"custom.{attr}") from None

        filters = {k: v for k, v in query.filters.items()}
        criteria = search_criteria(
            ctx,
            filters,
            custom_prefix=self.spec.custom_prefix,
            supported=self.spec.filters,
            field_mapping=self.session.field_mapping(self.model),
            attr_check=attr_check,
        )
        if query.q:
            criteria.append({f"{ctx}_name": {"contains": query.q}})
        return criteria

    async def _search(
        self, query: ListQuery, seg_ts: str | None, page: int, size: int, sort_field: str, descending: bool
    ) -> Any:
        context = self.spec.search_context
        assert context is not None
        prefix = self.spec.search_prefix or context
        attr = "updated_at" if sort_field == "updatedAt" else "created_at"
        criteria = self._criteria(query)
        if seg_ts is not None:
            criteria.append({f"{prefix}_{attr}": {"lte" if descending else "gte": seg_ts}})
        body: dict[str, Any] = {
            "queryContext": context,
            "and": criteria,
            "sort": [{f"{prefix}_{attr}": "desc" if descending else "asc"}],
        }
        return await self.client.json(
            "POST",
            "/v1/customers/search",
            params={"page": page, "pageSize": size},
            json_body=body,
            idempotent=True,
            search=True,
        )

    async def _date_list(
        self, query: ListQuery, seg_ts: str | None, page: int, size: int, sort_field: str, descending: bool
    ) -> Any:
        params: builtins.list[tuple[str, Any]] = [("page", page), ("pageSize", size)]
        params.append(("sort", f"-{sort_field}" if descending else sort_field))
        ops = {"updatedAfter": "gt", "updatedSince": "gte", "updatedBefore": "lt"}
        for name, value in query.filters.items():
            ts = parse_timestamp(value, field=name)
            from connectors.kustomer.query import format_timestamp

            params.append((f"filter[updatedAt][{ops[name]}]", format_timestamp(ts)))
        if seg_ts is not None:
            params.append((f"filter[{sort_field}][{'lte' if descending else 'gte'}]", seg_ts))
        return await self.client.json("GET", self.collection_path(), params=params)

    # -- writes ---------------------------------------------------------------------------------------

    async def create(self, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        """``POST`` the mapped body (never retried after it may have reached Kustomer)."""
        body = self.to_body(obj)
        created = await self.client.json("POST", self.collection_path(), json_body=body, idempotent=False)
        return self.to_unified(_data_object(created), include_raw=include_raw)

    async def update(self, id: str, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        """Write only the fields set on ``obj`` (reading the record first where the mapping needs it)."""
        current = await self.fetch(id) if self.spec.needs_current else None
        body = self.to_body(obj, current=current)
        if not body:
            return self.to_unified(current if current is not None else await self.fetch(id), include_raw=include_raw)
        updated = await self.client.json(self.spec.update_method, self.item_path(id), json_body=body)
        return self.to_unified(_data_object(updated), include_raw=include_raw)

    async def delete(self, id: str) -> None:
        """``DELETE`` the record, or explain why Kustomer cannot.

        DELETE is retried (idempotent): a 404 on a retry means an earlier attempt, whose answer was lost,
        deleted the record, and counts as success.
        """
        if self.spec.delete_unsupported:
            raise UnsupportedOperationError(self.spec.delete_unsupported, operation=f"{self.model}::delete")
        response = await self.client.send("DELETE", self.item_path(id))
        if response.status_code == 404 and response.extensions.get(EXT_ATTEMPTS, 1) > 1:
            return
        if response.status_code >= 400:
            await response.aread()
            raise error_from_response(response)


def _codec_for(connector: KustomerConnector) -> CursorCodec:
    cached = getattr(connector, "_cursor_codec", None)
    if isinstance(cached, CursorCodec):
        return cached
    store = connector.session.store
    secret = store.secret_box.derive_key("cursor") if store is not None else None
    codec = CursorCodec(secret) if secret else CursorCodec.derive(connector.session.record.id.encode() * 2)
    connector._cursor_codec = codec  # type: ignore[attr-defined]
    return codec


def _data_object(body: Any) -> dict[str, Any]:
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        data: dict[str, Any] = body["data"]
        return data
    from connectors.errors import ResponseValidationError

    raise ResponseValidationError("expected a JSON:API object with 'data'")


def _data_list(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return [r for r in body["data"] if isinstance(r, dict)]
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        return [body["data"]]
    from connectors.errors import ResponseValidationError

    raise ResponseValidationError("expected a JSON:API list with 'data'")


def _has_next(body: Any, records: Sequence[Any], size: int) -> bool:
    links = body.get("links") if isinstance(body, dict) else None
    if isinstance(links, dict) and "next" in links:
        return bool(links["next"])
    return len(records) >= size


def _attr(record: Mapping[str, Any], name: str) -> str | None:
    attrs = record.get("attributes")
    value = attrs.get(name) if isinstance(attrs, dict) else None
    return value if isinstance(value, str) else None


# -- expansion ---------------------------------------------------------------------------------------


async def expand_refs(connector: KustomerConnector, obj: UnifiedResource, expand: Sequence[str]) -> UnifiedResource:
    """Replace the references named in ``expand`` by references carrying the resource.

    All ids of one model are fetched in one batch (users in one multi-get request, others concurrently),
    so expanding a list of 10 contacts costs one round, not ten sequential calls.

    Raises:
        QueryError: ``expand`` names a field that is not a reference of the model.
    """
    refs: dict[str, list[ResourceRef]] = {}
    for name in expand:
        snake = _snake(name)
        if snake not in type(obj).model_fields:
            raise QueryError(f"{obj.model_id} has no field {name!r} to expand", field=f"expand.{name}")
        value = getattr(obj, snake)
        items = value if isinstance(value, list) else [value] if value is not None else []
        if not all(isinstance(item, ResourceRef) for item in items):
            raise QueryError(f"{name!r} is not a reference", field=f"expand.{name}")
        refs[snake] = items
    by_model: dict[str, set[str]] = {}
    for items in refs.values():
        for ref in items:
            by_model.setdefault(ref.model, set()).add(ref.id)
    fetched: dict[tuple[str, str], UnifiedResource] = {}

    async def load(model: str, ids: set[str]) -> None:
        backend = connector.resource_backend(model)
        page = await backend.list(ListQuery(filters={"ids": sorted(ids)}, limit=len(ids)))
        for item in page.data:
            if item.id is not None:
                fetched[(model, item.id)] = item

    await asyncio.gather(*(load(model, ids) for model, ids in by_model.items()))
    updates: dict[str, Any] = {}
    for snake, items in refs.items():
        new = [r.model_copy(update={"resource": fetched.get((r.model, r.id))}) for r in items]
        updates[snake] = new if isinstance(getattr(obj, snake), list) else (new[0] if new else None)
    return obj.model_copy(update=updates)


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def backend_for(connector: KustomerConnector, model: str) -> KustomerBackend:
    """Build the backend of ``model`` for ``connector``'s connection.

    Raises:
        UnsupportedOperationError: the model is not mapped to Kustomer.
    """
    settings = connector.session.connector_settings
    if model == "genericContact":
        return KustomerBackend(connector, _customer_spec())
    if model == "genericCompany":
        return KustomerBackend(connector, _company_spec(settings))
    if model == "genericUser":
        return KustomerBackend(connector, _user_spec())
    if model == "genericWorkspace":
        return KustomerBackend(connector, _team_spec())
    if model == "crmEngagement":
        from connectors.kustomer.engagements import EngagementBackend

        return EngagementBackend(connector)
    from connectors.kustomer.klasses import klass_name

    if model in ("crmOpportunity", "crmPipeline", "crmStage") or model.startswith("custom:"):
        return KustomerBackend(connector, _kobject_spec(model, klass_name(model, settings)))
    raise UnsupportedOperationError(f"Kustomer has no mapping for {model!r}", operation=f"{model}::list")


# Keep the validation helper reachable for mappers that check ids.
_ = (MappingError, Awaitable)
