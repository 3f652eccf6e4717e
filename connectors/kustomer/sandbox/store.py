"""The sandbox's in-memory state: records, indexed collections and the registries around them.

Everything a test may want to inspect lives on :class:`SandboxState` (``sb.state``): the collections
(``sb.state.customers``...), tokens, OAuth clients and grants, bulk jobs, inbound hook transactions, emitted
outbound-webhook events and delivery attempts, request counters and a request log.

Records keep attributes in wire form (camelCase keys, ISO strings) and timestamps as epoch milliseconds;
:mod:`~connectors.kustomer.sandbox.resources` renders them into JSON:API resources. Each collection keeps
ordered indexes so list pages, time-range filters and keyset-style search do not re-sort everything.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AuthCode",
    "BulkBatch",
    "BulkJob",
    "Collection",
    "DeliveryAttempt",
    "Grant",
    "OAuthClient",
    "Org",
    "PendingAuthorization",
    "Record",
    "RefreshToken",
    "RequestLogEntry",
    "SandboxState",
    "SortedIndex",
    "TimeRange",
    "TokenRecord",
]

OrderBy = Literal["id", "created", "updated"]


@dataclass(slots=True, eq=False)
class Record:
    """One stored object.

    Attributes:
        type: JSON:API type (``customer``).
        id: 24-hex id.
        attrs: stored attributes in wire form (no timestamps, ``rev`` or computed attributes).
        rels: relationship name -> target id (or list of ids, or None).
        created_ms: ``createdAt`` as epoch ms.
        updated_ms: ``updatedAt`` as epoch ms (every write).
        modified_ms: ``modifiedAt`` as epoch ms (every write through the API).
        rev: incremented on every write.
        created_by: user id of the creator.
        modified_by: user id of the last writer.
        deleted_ms: set on tombstones (deleted objects kept for ``includeDeleted`` searches).
    """

    type: str
    id: str
    attrs: dict[str, Any]
    rels: dict[str, Any]
    created_ms: int
    updated_ms: int
    modified_ms: int
    rev: int = 1
    created_by: str | None = None
    modified_by: str | None = None
    deleted_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A ``filter[createdAt|updatedAt][gt|gte|lt|lte]`` bound set on one timestamp."""

    field: Literal["created", "updated"]
    lo: int | None = None
    lo_inclusive: bool = True
    hi: int | None = None
    hi_inclusive: bool = False

    def contains(self, ms: int) -> bool:
        """Whether ``ms`` lies in the range."""
        if self.lo is not None and (ms < self.lo or (ms == self.lo and not self.lo_inclusive)):
            return False
        return not (self.hi is not None and (ms > self.hi or (ms == self.hi and not self.hi_inclusive)))


class SortedIndex:
    """``(timestamp_ms, id)`` keys kept sorted; ties are broken by id."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: list[tuple[int, str]] = []

    def add(self, key: tuple[int, str]) -> None:
        """Insert a key."""
        bisect.insort(self.keys, key)

    def remove(self, key: tuple[int, str]) -> None:
        """Remove a key if present."""
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]

    def load(self, keys: Iterable[tuple[int, str]]) -> None:
        """Replace all keys at once (seeding)."""
        self.keys = sorted(keys)

    def bounds(self, rng: TimeRange | None) -> tuple[int, int]:
        """Slice bounds of the keys inside ``rng`` (all keys for None)."""
        lo, hi = 0, len(self.keys)
        if rng is None:
            return lo, hi
        if rng.lo is not None:
            probe = (rng.lo, "") if rng.lo_inclusive else (rng.lo, "\uffff")
            lo = bisect.bisect_left(self.keys, probe)
        if rng.hi is not None:
            probe = (rng.hi, "\uffff") if rng.hi_inclusive else (rng.hi, "")
            hi = bisect.bisect_left(self.keys, probe)
        return lo, max(lo, hi)


class Collection:
    """All records of one type, with ordered, relationship and lookup indexes.

    Live records are kept in id (= creation) order; deleted ones move to :attr:`tombstones`.

    Args:
        name: collection name (``customers``).
        type: JSON:API type of its records.
        rel_index: relationship names to index (target id -> ids).
        lookup_keys: function giving a record's ``(kind, normalised value)`` lookup keys.
    """

    def __init__(
        self,
        name: str,
        type: str,
        *,
        rel_index: Sequence[str] = (),
        lookup_keys: Callable[[Record], Iterable[tuple[str, str]]] | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.live: dict[str, Record] = {}
        self.tombstones: dict[str, Record] = {}
        self.by_created = SortedIndex()
        self.by_updated = SortedIndex()
        self.rel_index_names = tuple(rel_index)
        self.rel_index: dict[str, dict[str, dict[str, None]]] = {name: {} for name in rel_index}
        self._lookup_keys = lookup_keys
        self.lookups: dict[tuple[str, str], dict[str, None]] = {}
        self.version = 0

    def __len__(self) -> int:
        return len(self.live)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.live.values())

    def __contains__(self, record_id: object) -> bool:
        return record_id in self.live

    def get(self, record_id: str) -> Record | None:
        """The live record with this id."""
        return self.live.get(record_id)

    def get_any(self, record_id: str) -> Record | None:
        """The live record, or its tombstone."""
        return self.live.get(record_id) or self.tombstones.get(record_id)

    # -- indexes -------------------------------------------------------------------------------------------
    def _index_secondary(self, record: Record) -> None:
        for rel in self.rel_index_names:
            for target in _ids(record.rels.get(rel)):
                self.rel_index[rel].setdefault(target, {})[record.id] = None
        if self._lookup_keys is not None:
            for key in self._lookup_keys(record):
                self.lookups.setdefault(key, {})[record.id] = None

    def _unindex_secondary(self, record: Record) -> None:
        for rel in self.rel_index_names:
            for target in _ids(record.rels.get(rel)):
                bucket = self.rel_index[rel].get(target)
                if bucket is not None:
                    bucket.pop(record.id, None)
        if self._lookup_keys is not None:
            for key in self._lookup_keys(record):
                bucket = self.lookups.get(key)
                if bucket is not None:
                    bucket.pop(record.id, None)
                    if not bucket:
                        del self.lookups[key]

    def insert(self, record: Record, *, index: bool = True) -> None:
        """Add a new live record (``index=False`` defers indexing to :meth:`rebuild_indexes`)."""
        self.live[record.id] = record
        self.version += 1
        if index:
            self.by_created.add((record.created_ms, record.id))
            self.by_updated.add((record.updated_ms, record.id))
            self._index_secondary(record)

    def rebuild_indexes(self) -> None:
        """Rebuild every index from the live records (after bulk loading)."""
        self.by_created.load((r.created_ms, r.id) for r in self.live.values())
        self.by_updated.load((r.updated_ms, r.id) for r in self.live.values())
        self.rel_index = {name: {} for name in self.rel_index_names}
        self.lookups = {}
        for record in self.live.values():
            self._index_secondary(record)
        self.version += 1

    @contextmanager
    def updating(self, record: Record) -> Iterator[Record]:
        """Context in which ``record`` may be mutated; indexes are fixed up afterwards."""
        self.by_created.remove((record.created_ms, record.id))
        self.by_updated.remove((record.updated_ms, record.id))
        self._unindex_secondary(record)
        try:
            yield record
        finally:
            self.by_created.add((record.created_ms, record.id))
            self.by_updated.add((record.updated_ms, record.id))
            self._index_secondary(record)
            self.version += 1

    def delete(self, record: Record, deleted_ms: int) -> None:
        """Move a live record to the tombstones."""
        if self.live.pop(record.id, None) is None:
            return
        self.by_created.remove((record.created_ms, record.id))
        self.by_updated.remove((record.updated_ms, record.id))
        self._unindex_secondary(record)
        record.deleted_ms = deleted_ms
        self.tombstones[record.id] = record
        self.version += 1

    # -- queries -------------------------------------------------------------------------------------------
    def related(self, rel: str, target_id: str) -> list[Record]:
        """Live records whose relationship ``rel`` points at ``target_id``, in id order."""
        ids = self.rel_index.get(rel, {}).get(target_id, {})
        return sorted((self.live[i] for i in ids if i in self.live), key=_by_id)

    def lookup(self, kind: str, value: str) -> list[Record]:
        """Live records with lookup key ``(kind, value)``, in id order."""
        ids = self.lookups.get((kind, value), {})
        return sorted((self.live[i] for i in ids if i in self.live), key=_by_id)

    def page(
        self,
        *,
        order: OrderBy = "id",
        descending: bool = False,
        ranges: Sequence[TimeRange] = (),
        where: Callable[[Record], bool] | None = None,
        subset: Iterable[Record] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[int, list[Record]]:
        """Return ``(total, records)`` of one page of live records.

        Args:
            order: sort by id (creation), ``createdAt`` or ``updatedAt``; ties broken by id.
            descending: reverse the order.
            ranges: time-range filters (all must hold).
            where: extra predicate.
            subset: restrict to these records (e.g. one customer's conversations).
            offset: records to skip.
            limit: page size.

        Returns:
            The total number of matches and the page.
        """
        if subset is not None:
            candidates: Sequence[Record] = list(subset)
            if order != "id":
                key = _by_created if order == "created" else _by_updated
                candidates = sorted(candidates, key=key)
        elif order == "id":
            if not ranges and where is None:
                total = len(self.live)
                values: Iterable[Record] = reversed(list(self.live.values())) if descending else self.live.values()
                return total, list(itertools.islice(values, offset, offset + limit))
            candidates = list(self.live.values())
        else:
            index = self.by_created if order == "created" else self.by_updated
            own = next((r for r in ranges if r.field == order), None)
            start, stop = index.bounds(own)
            ranges = [r for r in ranges if r is not own]
            if not ranges and where is None:
                total = stop - start
                if descending:
                    s_stop = stop - offset
                    s_start = max(start, s_stop - limit)
                    keys = index.keys[s_start:s_stop][::-1] if s_stop > start else []
                else:
                    keys = index.keys[start + offset : min(stop, start + offset + limit)]
                return total, [self.live[k[1]] for k in keys]
            candidates = [self.live[k[1]] for k in index.keys[start:stop]]
        matched = [r for r in candidates if _matches(r, ranges, where)]
        if descending:
            matched.reverse()
        return len(matched), matched[offset : offset + limit]


def _matches(record: Record, ranges: Sequence[TimeRange], where: Callable[[Record], bool] | None) -> bool:
    for rng in ranges:
        if not rng.contains(record.created_ms if rng.field == "created" else record.updated_ms):
            return False
    return where is None or where(record)


def _by_id(record: Record) -> str:
    return record.id


def _by_created(record: Record) -> tuple[int, str]:
    return record.created_ms, record.id


def _by_updated(record: Record) -> tuple[int, str]:
    return record.updated_ms, record.id


def _ids(value: Any) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


# -- registries ----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Org:
    """The emulated org."""

    id: str
    name: str


@dataclass(slots=True)
class TokenRecord:
    """An API key or OAuth access token (both are signed JWTs)."""

    id: str
    kind: Literal["api_key", "oauth"]
    name: str
    user_id: str
    roles: tuple[str, ...]
    created_ms: int
    expires_ms: int | None
    pod: str
    last_chars: str = ""
    revoked: bool = False
    grant_id: str | None = None
    last_accessed_ms: int | None = None


@dataclass(slots=True)
class OAuthClient:
    """A registered OAuth client (an installed app)."""

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]
    public: bool
    name: str


@dataclass(slots=True)
class PendingAuthorization:
    """An authorization request waiting for the consent decision."""

    id: str
    csrf: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None
    user_id: str
    created_ms: int


@dataclass(slots=True)
class AuthCode:
    """An authorization code (single use)."""

    code: str
    client_id: str
    redirect_uri: str
    grant_id: str
    code_challenge: str | None
    expires_ms: int
    used: bool = False


@dataclass(slots=True)
class Grant:
    """One authorization (a token family): every access and refresh token issued from one code."""

    id: str
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    created_ms: int
    access_token_ids: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    revoked: bool = False
    revoked_reason: str | None = None


@dataclass(slots=True)
class RefreshToken:
    """A refresh token; ``status`` becomes ``rotated`` once exchanged."""

    token: str
    grant_id: str
    client_id: str
    scopes: tuple[str, ...]
    issued_ms: int
    status: Literal["active", "rotated", "revoked"] = "active"


@dataclass(slots=True)
class BulkBatch:
    """One batch of a bulk job."""

    index: int
    items: list[Any]
    status: Literal["queued", "running", "complete"] = "queued"
    success_count: int = 0
    failure_count: int = 0
    object_ids: list[str] = field(default_factory=list)
    completed_ms: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class BulkJob:
    """A bulk operation (``POST/PUT/DELETE .../bulk``)."""

    id: str
    resource: str
    context: str
    method: str
    path: str
    klass: str | None
    batches: list[BulkBatch]
    user_id: str
    created_ms: int
    updated_ms: int
    status: Literal["queued", "running", "complete"] = "queued"


@dataclass(slots=True)
class DeliveryAttempt:
    """One outbound-webhook delivery attempt."""

    delivery_id: str
    event_id: str
    event: str
    webhook_id: str
    url: str
    attempt: int
    at: float
    body: bytes
    headers: dict[str, str]
    status_code: int | None = None
    error: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(slots=True)
class RequestLogEntry:
    """One request as seen by the sandbox."""

    request_id: str
    method: str
    path: str
    status: int
    token_id: str | None
    at: float
    outcome: str = "ok"


class SandboxState:
    """Everything the sandbox holds in memory (``sb.state``).

    Args:
        org: the emulated org.
        collections: collections by name.
    """

    def __init__(self, org: Org, collections: dict[str, Collection]) -> None:
        self.org = org
        self.collections = collections
        self.tokens: dict[str, TokenRecord] = {}
        self.metadata: dict[str, dict[str, dict[str, Any]]] = {}
        self.oauth_clients: dict[str, OAuthClient] = {}
        self.oauth_pending: dict[str, PendingAuthorization] = {}
        self.oauth_codes: dict[str, AuthCode] = {}
        self.oauth_grants: dict[str, Grant] = {}
        self.oauth_refresh_tokens: dict[str, RefreshToken] = {}
        self.bulk_jobs: dict[str, BulkJob] = {}
        self.hook_transactions: list[dict[str, Any]] = []
        self.webhook_events: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.webhook_deliveries: deque[DeliveryAttempt] = deque(maxlen=10_000)
        self.app_settings: dict[str, dict[str, str]] = {org.id: {}}
        self.app_definitions: dict[str, dict[str, Any]] = {}
        self.counters: Counter[str] = Counter()
        self.request_log: deque[RequestLogEntry] = deque(maxlen=10_000)
        self.create_counts: dict[tuple[str, int], int] = {}

    def collection(self, name: str) -> Collection:
        """A collection by name (``customers``)."""
        return self.collections[name]

    @property
    def customers(self) -> Collection:
        """Customers."""
        return self.collections["customers"]

    @property
    def companies(self) -> Collection:
        """Companies."""
        return self.collections["companies"]

    @property
    def conversations(self) -> Collection:
        """Conversations."""
        return self.collections["conversations"]

    @property
    def messages(self) -> Collection:
        """Messages."""
        return self.collections["messages"]

    @property
    def notes(self) -> Collection:
        """Notes."""
        return self.collections["notes"]

    @property
    def users(self) -> Collection:
        """Users (human and machine)."""
        return self.collections["users"]

    @property
    def teams(self) -> Collection:
        """Teams."""
        return self.collections["teams"]

    @property
    def klasses(self) -> Collection:
        """Klasses (custom object types)."""
        return self.collections["klasses"]

    @property
    def kobjects(self) -> Collection:
        """KObjects (custom objects) of every Klass."""
        return self.collections["kobjects"]

    @property
    def tags(self) -> Collection:
        """Tags."""
        return self.collections["tags"]

    @property
    def outbound_webhooks(self) -> Collection:
        """Outbound webhook subscriptions."""
        return self.collections["outbound_webhooks"]

    @property
    def web_hooks(self) -> Collection:
        """Inbound web hooks."""
        return self.collections["web_hooks"]

    def klass_by_name(self, name: str) -> Record | None:
        """The live Klass named ``name``."""
        found = self.klasses.lookup("name", name)
        return found[0] if found else None
