"""Kustomer's side of bulk sync: bulk jobs, matching by search, and page-number exports.

Endpoints (kustomer-api.md §2.11, §2.10, §3.2):

* ``POST /v1/{customers|companies|klasses/<name>}/bulk`` (creates) and ``PUT`` (updates; items carry ``id``):
  a JSON array of at most 100 flat request bodies, each with a ``_clientRef``. Kustomer answers ``201`` with
  a ``bulk`` resource at once and runs the job asynchronously; the request counts as one against the rate
  budget.
* ``GET /v1/bulk/{id}/batches`` until every batch is ``complete`` (``GET /v1/bulk/{id}`` when the counts do not
  add up): per batch ``successCount``, ``failureCount``, ``objectIds``, ``errors`` and
  ``results[{_clientRef, id}]``. A batch
  with one invalid record is rejected whole and its error does not say which record it was; the runtime
  bisects it (:mod:`connectors.runtime.bulk`). Roles: ``org.permission.bulk.read`` to poll.
* Matching: one ``POST /v1/customers/search`` per group of rows with ``{"<ctx>_<attr>": {"in": [...]}}``
  (``pageSize`` 500), on the search budget (100/min for API keys): 500 rows per search.
* Full export: the plain list ``GET /v1/<collection>?page=N&pageSize=100`` (org budget; pages are
  independent, so they can be fetched concurrently); ``meta.totalPages`` when Kustomer reports it.

The exact shapes of batch results and per-item errors are UNCONFIRMED (§2.11): results are matched by
``_clientRef`` when present; a fully successful batch whose ``objectIds`` line up with its items is matched
by position; per-item errors carrying a ``_clientRef`` are attributed to that item. Items the results do
not mention are reported as unknown, and the runtime resolves them without risking duplicates.

Connection settings: ``bulk_max_items`` (default 100) and ``list_page_cap`` (when Kustomer caps plain list
pages, exports fall back to the sequential keyset iteration of the resource backend).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio

from connectors.errors import (
    APIConnectionError,
    BulkError,
    MappingError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    UnsupportedOperationError,
)
from connectors.kustomer.custom_fields import CustomAttributeError, parse_attribute_name
from connectors.kustomer.resources import KustomerBackend, _data_list, _has_next
from connectors.runtime.bulk import BulkAction, BulkItem, Existing, ItemOutcome
from connectors.runtime.incremental import ExportPage, MappedRecords
from unified_models import UnifiedResource

if TYPE_CHECKING:
    from connectors.kustomer.connector import KustomerConnector

__all__ = [
    "MATCH_KEYS",
    "KustomerBulkBackend",
    "bulk_backend_for",
    "normalize_key",
    "outcomes_from_batches",
    "unchanged",
]

MATCH_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "genericContact": ("id", "externalId", "email", "phone"),
    "genericCompany": ("id", "externalId", "name"),
    "custom": ("id", "externalId"),
    "kobject": ("id",),
}
"""Keys rows can be matched on, per model (``custom`` = ``custom:<klass>``; ``kobject`` = the CRM models,
whose unified form has no external id)."""

_SEARCH_PAGE_SIZE: Final = 500
_BATCH_PAGE_SIZE: Final = 100
_SEARCH_ATTRS: Final[Mapping[str, str]] = {"id": "id", "externalId": "externalId", "email": "email", "phone": "phone"}
_NON_DIGITS: Final = re.compile(r"\D+")
_SPACES: Final = re.compile(r"\s+")
_RELATIONSHIPS: Final = frozenset({"company", "customer"})


def normalize_key(key: str, value: Any) -> str | None:
    """The comparable form of a match value: e-mails lower-cased, phones as digits, names case-folded.

    Returns ``None`` for an empty value.
    """
    if value is None:
        return None
    text = str(value).strip()
    if key == "email":
        text = text.lower()
    elif key == "phone":
        text = _NON_DIGITS.sub("", text)
    elif key == "name":
        text = _SPACES.sub(" ", text).casefold()
    return text or None


def _record_keys(record: Mapping[str, Any], key: str) -> set[str]:
    attrs = record.get("attributes") if isinstance(record.get("attributes"), dict) else {}
    assert isinstance(attrs, dict)
    values: list[Any]
    if key == "id":
        values = [record.get("id")]
    elif key in ("email", "phone"):
        items = attrs.get(f"{key}s")
        values = [item.get(key) for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    else:
        values = [attrs.get(key)]
    return {n for n in (normalize_key(key, v) for v in values if isinstance(v, str)) if n is not None}


def _reason(error: Any) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    message = error.get("message") or error.get("detail") or error.get("title") or "rejected by Kustomer"
    code = error.get("code")
    return f"{message} ({code})" if code else str(message)


def _error_ref(error: Any) -> str | None:
    if not isinstance(error, Mapping):
        return None
    ref = error.get("_clientRef")
    meta = error.get("meta")
    if ref is None and isinstance(meta, Mapping):
        ref = meta.get("_clientRef")
    return str(ref) if ref is not None else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _attributes(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    attrs = resource.get("attributes")
    return attrs if isinstance(attrs, Mapping) else resource


def outcomes_from_batches(batches: Sequence[Mapping[str, Any]], refs: Sequence[str]) -> list[ItemOutcome]:
    """Turn ``GET /v1/bulk/{id}/batches`` resources into one outcome per submitted item.

    Args:
        batches: the batch resources, in order.
        refs: the ``_clientRef`` of each submitted item, in submission order.

    Returns:
        One :class:`ItemOutcome` per ref: landed (``id``), failed with its batch's reason (``error``;
        ``uncertain`` when the batch also reports successes it does not attribute), or unknown (neither).
    """
    parsed = [_attributes(b) for b in batches]
    sizes = [(_count(a.get("successCount")), _count(a.get("failureCount"))) for a in parsed]
    slices: list[tuple[Sequence[str], list[Mapping[str, Any]]]]
    if (
        parsed
        and all(s is not None and f is not None for s, f in sizes)
        and sum((s or 0) + (f or 0) for s, f in sizes) == len(refs)
    ):
        slices, start = [], 0
        for attrs, (s, f) in zip(parsed, sizes, strict=True):
            end = start + (s or 0) + (f or 0)
            slices.append((refs[start:end], [attrs]))
            start = end
    else:
        slices = [(refs, list(parsed))]
    outcomes: dict[str, ItemOutcome] = {}
    for slice_refs, group in slices:
        ids: dict[str, str] = {}
        errors: dict[str, str] = {}
        batch_reason: str | None = None
        failures = 0
        for attrs in group:
            for result in attrs.get("results") or ():
                if isinstance(result, Mapping) and result.get("_clientRef") is not None and result.get("id"):
                    ids[str(result["_clientRef"])] = str(result["id"])
            failures += _count(attrs.get("failureCount")) or 0
            for error in attrs.get("errors") or ():
                ref = _error_ref(error)
                if ref is not None:
                    errors[ref] = _reason(error)
                elif batch_reason is None:
                    batch_reason = _reason(error)
        if not ids and failures == 0 and len(group) == 1:
            object_ids = group[0].get("objectIds")
            if isinstance(object_ids, list) and len(object_ids) == len(slice_refs):
                ids = {ref: str(oid) for ref, oid in zip(slice_refs, object_ids, strict=True)}
        successes = sum(_count(a.get("successCount")) or 0 for a in group)
        # Successes the results do not attribute: a failed item of this slice may have landed after all.
        uncertain = successes > len(ids)
        for ref in slice_refs:
            if ref in ids:
                outcomes[ref] = ItemOutcome(ref, id=ids[ref])
            elif ref in errors:
                outcomes[ref] = ItemOutcome(ref, error=errors[ref])
            elif failures:
                reason = batch_reason or "rejected with its batch (no reason given)"
                outcomes[ref] = ItemOutcome(ref, error=reason, uncertain=uncertain)
            else:
                outcomes[ref] = ItemOutcome(ref)
    return [outcomes[ref] for ref in refs]


def _same(wanted: Any, current: Any) -> bool:
    """Whether writing ``wanted`` over ``current`` changes nothing (objects compare on the keys written)."""
    if wanted is None:
        return current is None or current == [] or current == ""
    if isinstance(wanted, Mapping):
        return isinstance(current, Mapping) and all(_same(v, current.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(wanted) == len(current)
            and all(_same(w, c) for w, c in zip(wanted, current, strict=True))
        )
    if isinstance(wanted, bool) or isinstance(current, bool):
        return wanted is current
    return bool(wanted == current)


def _relationship_id(record: Mapping[str, Any], name: str) -> Any:
    rels = record.get("relationships")
    rel = rels.get(name) if isinstance(rels, Mapping) else None
    data = rel.get("data") if isinstance(rel, Mapping) else None
    if isinstance(data, Mapping):
        return data.get("id")
    attrs = record.get("attributes")
    value = attrs.get(name) if isinstance(attrs, Mapping) else None
    return value if isinstance(value, str) else None


def unchanged(body: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether an update ``body`` would leave the Kustomer ``record`` as it is."""
    attrs = record.get("attributes") if isinstance(record.get("attributes"), Mapping) else {}
    assert isinstance(attrs, Mapping)
    for key, value in body.items():
        if key in _RELATIONSHIPS:
            if value != _relationship_id(record, key):
                return False
        elif not _same(value, attrs.get(key)):
            return False
    return True


class KustomerBulkBackend:
    """Bulk push and export of one unified model on one Kustomer connection.

    Attributes:
        model: the unified model.
        max_items: records per bulk request (``bulk_max_items`` setting, at most Kustomer's 100).
        requests: API requests made so far (lookups, submissions, polls, export pages).
        supports_incremental: the model can be listed by ``updatedAt`` (else every pull is a full export).
        page_export: full exports fetch pages by number, concurrently.
        max_page_size: the list endpoint's largest page.
    """

    def __init__(self, connector: KustomerConnector, model: str) -> None:
        self.connector = connector
        self.model = model
        self.client = connector.client
        resource = connector.resource_backend(model)
        if not isinstance(resource, KustomerBackend):
            raise UnsupportedOperationError(f"no Kustomer bulk backend for {model}", operation=f"{model}::create")
        self.resource = resource
        self.spec = resource.spec
        settings = connector.session.connector_settings
        self.max_items = max(1, min(int(settings.get("bulk_max_items") or 100), 100))
        self.requests = 0
        collection = self.spec.collection
        self._push_error: str | None = None
        if model == "genericContact" or model == "genericCompany" or collection.startswith("klasses/"):
            self._keys = MATCH_KEYS.get(model) or MATCH_KEYS["custom" if model.startswith("custom:") else "kobject"]
        else:
            self._keys = ("id",)
            self._push_error = f"Kustomer has no bulk endpoint for {model} ({collection})"
        ctx = self.spec.search_context
        self._context = ctx
        self._prefix = self.spec.search_prefix or ctx
        # Engagements list conversations, then notes: not one stream sorted by updatedAt, so no keyset.
        plain = type(resource) is KustomerBackend
        self.supports_incremental = plain and (self.spec.list_date_filters or ctx is not None)
        self.page_export = plain and not settings.get("list_page_cap")
        self.max_page_size = self.spec.max_page_size

    def __repr__(self) -> str:
        return f"KustomerBulkBackend({self.model!r})"

    # -- pure parts -------------------------------------------------------------------------------------

    def check_push(self) -> None:
        """Raise :class:`UnsupportedOperationError` for a model without bulk writes."""
        if self._push_error is not None:
            raise UnsupportedOperationError(self._push_error, operation=f"{self.model}::create")

    def match_keys(self) -> Sequence[str]:
        """The keys rows of this model can be matched on."""
        return self._keys

    def key_value(self, obj: UnifiedResource, key: str) -> str | None:
        """The normalised match value of a row (the first e-mail/phone when the primary one is unset)."""
        if key == "id":
            return obj.id or None
        if key == "externalId":
            return normalize_key(key, getattr(obj, "external_id", None))
        if key in ("email", "phone"):
            value = getattr(obj, key, None)
            if value is None:
                items = getattr(obj, f"{key}s", None) or []
                value = items[0].value if items else None
            return normalize_key(key, value)
        if key == "name":
            return normalize_key(key, getattr(obj, "name", None))
        return None

    def check_custom_key(self, key: str) -> None:
        """Check that a custom field key maps to an attribute name with a valid type suffix.

        Raises:
            MappingError: naming ``customFields.<key>`` (e.g. ``Age`` has no suffix: use ``ageNum``).
        """
        field = f"customFields.{key}"
        try:
            attr = self.connector.session.field_mapping(self.model).provider_key(key)
        except KeyError:
            raise MappingError(
                "no Kustomer attribute is mapped to this field (the field mapping has passthrough off)",
                model=self.model,
                field=field,
            ) from None
        try:
            parse_attribute_name(attr)
        except CustomAttributeError as exc:
            raise MappingError(exc.reason, model=self.model, field=field) from None

    def create_body(self, obj: UnifiedResource) -> dict[str, Any]:
        """The create body (validates custom attribute suffixes and values; raises :class:`MappingError`)."""
        return self.resource.to_body(obj)

    def update_body(self, obj: UnifiedResource, current: Existing) -> dict[str, Any] | None:
        """The update body over ``current``, or ``None`` when it would change nothing."""
        body = self.resource.to_body(obj, current=current.raw)
        if not body or (isinstance(current.raw, Mapping) and unchanged(body, current.raw)):
            return None
        return body

    # -- I/O --------------------------------------------------------------------------------------------

    async def find(self, key: str, values: Sequence[str]) -> dict[str, list[Existing]]:
        """Records whose ``key`` is one of ``values`` (normalised), by value; one search per 500 values."""
        if self._context is None or self._prefix is None:
            raise UnsupportedOperationError(f"Kustomer cannot search {self.model}", operation=f"{self.model}::list")
        attr = _SEARCH_ATTRS.get(key, key)
        wanted = set(values)
        found: dict[str, dict[str, Existing]] = {}
        ordered = sorted(wanted)
        for start in range(0, len(ordered), _SEARCH_PAGE_SIZE):
            chunk = ordered[start : start + _SEARCH_PAGE_SIZE]
            body = {
                "queryContext": self._context,
                "and": [{f"{self._prefix}_{attr}": {"in": chunk}}],
                "sort": [{f"{self._prefix}_created_at": "asc"}],
            }
            page = 1
            while True:
                response = await self.client.json(
                    "POST",
                    "/v1/customers/search",
                    params={"page": page, "pageSize": _SEARCH_PAGE_SIZE},
                    json_body=body,
                    idempotent=True,
                    search=True,
                )
                self.requests += 1
                records = _data_list(response)
                for record in records:
                    record_id = record.get("id")
                    if not isinstance(record_id, str):
                        continue
                    for value in _record_keys(record, key) & wanted:
                        found.setdefault(value, {})[record_id] = Existing(record_id, record)
                if not _has_next(response, records, _SEARCH_PAGE_SIZE) or page >= 100:
                    break
                page += 1
        return {value: list(matches.values()) for value, matches in found.items()}

    async def submit(self, action: BulkAction, items: Sequence[BulkItem]) -> str:
        """``POST`` (creates) or ``PUT`` (updates) ``/v1/<collection>/bulk``; return the job id."""
        payload: list[dict[str, Any]] = []
        for item in items:
            entry = {**item.body, "_clientRef": item.ref}
            if action == "update":
                entry["id"] = item.id
            payload.append(entry)
        self.requests += 1
        body = await self.client.json(
            "POST" if action == "create" else "PUT",
            f"/v1/{self.spec.collection}/bulk",
            json_body=payload,
            idempotent=action == "update",
        )
        data = body.get("data") if isinstance(body, dict) else None
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise ResponseValidationError(f"Kustomer's bulk answer for {self.model} carries no job id")
        return job_id

    async def wait(
        self,
        job_id: str,
        refs: Sequence[str],
        *,
        max_seconds: float,
        poll_interval: float,
        poll_max_interval: float,
    ) -> list[ItemOutcome]:
        """Poll the job's batches until every item is accounted for, then map them to outcomes.

        ``GET /v1/bulk/{id}/batches`` is polled directly: the job is done when every batch is ``complete``
        and their success and failure counts add up to the items sent. When the counts do not add up (an
        UNCONFIRMED detail of Kustomer's answer), ``GET /v1/bulk/{id}`` decides.

        A poll that fails after the transport's retries (5xx, dropped connection, 429) is tried again at the
        next interval until ``max_seconds``.

        Raises:
            BulkError: the job was not complete after ``max_seconds``.
            ServerError: polls still failing at the deadline (likewise ``APIConnectionError``,
                ``RateLimitError``).
        """
        deadline = time.monotonic() + max_seconds
        delay = poll_interval
        status: str | None = None
        while True:
            await anyio.sleep(delay)
            delay = min(max(delay * 2, 0.001), poll_max_interval)
            try:
                batches = await self._batches(job_id)
                attrs = [_attributes(b) for b in batches]
                complete = bool(attrs) and all(a.get("status") == "complete" for a in attrs)
                counted = sum(
                    (_count(a.get("successCount")) or 0) + (_count(a.get("failureCount")) or 0) for a in attrs
                )
                if complete and counted == len(refs):
                    break
                if complete:
                    status = await self._status(job_id)
                    if status == "complete":
                        break
            except (ServerError, APIConnectionError, RateLimitError):
                # Polls are reads and the job runs on: a failure that outlasted the transport's retries only
                # delays the answer, until the deadline.
                if time.monotonic() >= deadline:
                    raise
                continue
            if time.monotonic() >= deadline:
                raise BulkError(
                    f"Kustomer bulk job {job_id} was still {status or 'unfinished'} after {max_seconds:g}s; "
                    "it stays recorded and the next push of this model waits for it"
                )
        return outcomes_from_batches(batches, refs)

    async def _status(self, job_id: str) -> str | None:
        body = await self.client.json("GET", f"/v1/bulk/{job_id}")
        self.requests += 1
        data = body.get("data") if isinstance(body, dict) else None
        attrs = data.get("attributes") if isinstance(data, dict) else None
        if not isinstance(attrs, dict):
            return None
        if attrs.get("completed") is True:
            return "complete"
        status = attrs.get("status")
        return status if isinstance(status, str) else None

    async def _batches(self, job_id: str) -> list[dict[str, Any]]:
        batches: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self.client.json(
                "GET", f"/v1/bulk/{job_id}/batches", params={"page": page, "pageSize": _BATCH_PAGE_SIZE}
            )
            self.requests += 1
            data_list = _data_list(body)
            batches.extend(data_list)
            if not _has_next(body, data_list, _BATCH_PAGE_SIZE):
                return batches
            page += 1

    async def export_page(self, page: int, size: int, *, include_raw: bool) -> ExportPage:
        """One page of the plain list (``GET /v1/<collection>?page=&pageSize=``), mapped as it is read."""
        params: dict[str, Any] = {"page": page, "pageSize": size}
        if self.spec.default_sort:
            params["sort"] = self.spec.default_sort
        body = await self.client.json("GET", self.resource.collection_path(), params=params)
        self.requests += 1
        records = _data_list(body)
        meta = body.get("meta") if isinstance(body, dict) else None
        total = _count(meta.get("total")) if isinstance(meta, dict) else None
        total_pages = _count(meta.get("totalPages")) if isinstance(meta, dict) else None
        return ExportPage(
            records=MappedRecords(records, self.resource.unified_mapper(include_raw=include_raw)),
            has_next=_has_next(body, records, size),
            total=total,
            total_pages=total_pages,
        )


def bulk_backend_for(connector: KustomerConnector, model: str) -> KustomerBulkBackend:
    """The bulk backend of ``model`` (the seam of :meth:`KustomerConnector.bulk_backend`).

    Raises:
        UnsupportedOperationError: the model is not mapped to Kustomer.
    """
    return KustomerBulkBackend(connector, model)
