"""Bulk push with split retries, and the per-model sync facade returned by ``Connection.sync(model)``.

::

    sync = conn.sync("genericContact")
    report = await sync.push(rows, match="email")          # rows: dicts or unified models, streamed
    print(report.created, report.updated, report.rejected, report.skipped)
    async for contact in sync.pull():                       # incremental, resumable (see .incremental)
        ...

How a push works
----------------
Rows are read one by one (an iterable or async iterable: memory stays flat) and each is validated
**locally** first: the unified model (required fields, e-mail and phone syntax), then the connector's
request body (custom-field suffix and value type). A row that fails is *rejected* with the reason and the
field, without costing a request.

Valid rows are collected in *groups* (``PushOptions.match_group`` rows). Each group is matched in one
lookup against existing records on the ``match`` key (contacts: ``externalId``, ``email``, ``phone``;
companies: ``externalId``, ``name``; custom objects: ``externalId``; any model: ``id``): a match becomes an
*update* (or is *skipped* when it would change nothing), the rest become *creates*. A key matching several
records is rejected as ambiguous. Two rows of one push with the same key are never in flight together: the
later one waits for the earlier one to land and then updates it.

The lookup of one group overlaps the dispatch of the group before it. Creates and updates go out in bulk jobs
of at most ``backend.max_items`` records (Kustomer: 100), up to
``PushOptions.concurrency`` jobs at a time. Each item carries a client reference (``_clientRef``) echoed in
the job results, so every landed record is tied to its row.

**Split retries.** Kustomer rejects a whole batch when one record in it is invalid, and does not say which
one. A rejected batch is bisected: each half is sent again as its own job, recursively, until every valid
record has landed and every invalid one is alone and rejected with Kustomer's reason. Nothing of a rejected
batch was written, so resending its records cannot create duplicates. A request refused as a whole (400,
409, 413...) is split the same way.

**Crash safety.** Before a job is submitted its client references (and keyed hashes of the rows' match
keys, never the keys themselves) are recorded in the connection store (scope
``<connection id>:<model>:bulk-jobs``), and the job id right after Kustomer accepts it; the entry is removed
once the job's results are in. A push first *recovers*: it waits for every job left by an earlier push that
died, and treats the records those jobs created as existing, so a rerun matches them instead of creating
them again. A submit whose outcome is unknown (a 5xx or a dropped connection after the request was sent)
is resolved the same way: after ``PushOptions.ambiguous_delay`` the rows are looked up by their key, and
only those not found are sent again. Rows without a match key cannot be looked up and are rejected
instead of risking a duplicate. Run one push per (connection, model) at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import anyio
import anyio.to_thread
from pydantic import ValidationError

from connectors.errors import (
    APIConnectionError,
    APIStatusError,
    ConfigurationError,
    MappingError,
    PermissionDeniedError,
    ServerError,
    StoreConflictError,
)
from unified_models import UnifiedResource, model_class

if TYPE_CHECKING:
    from connectors.runtime.connection import Connection
    from connectors.runtime.incremental import PullProgress
    from connectors.runtime.store import ConnectionStore

__all__ = [
    "BulkAction",
    "BulkBackend",
    "BulkItem",
    "Existing",
    "ItemOutcome",
    "KeepResults",
    "ModelSync",
    "PushOptions",
    "PushProgress",
    "PushReport",
    "RowResult",
    "RowStatus",
]

logger = logging.getLogger(__name__)

RowStatus = Literal["created", "updated", "rejected", "skipped"]
"""The outcome of one row: ``skipped`` means it matched a record it would not change."""

BulkAction = Literal["create", "update"]
"""What a bulk job does."""

KeepResults = Literal["all", "rejected", "none"]
"""Which per-row results a :class:`PushReport` keeps (``none``/``rejected`` keep memory flat)."""

_NOT_WRITABLE: Final = frozenset(
    {"raw", "createdAt", "updatedAt", "created_at", "updated_at", "objectType", "object_type"}
)
_LEDGER_VERSION: Final = 1
_CAS_ATTEMPTS: Final = 50
_KNOWN_KEYS_LIMIT: Final = 100_000


# -- data types ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one input row.

    Attributes:
        index: 0-based position of the row in the input.
        status: ``created``, ``updated``, ``rejected`` or ``skipped``.
        id: the provider id of the record written or matched (``None`` when rejected, or when a dry run
            would create it).
        reason: why the row was rejected (Kustomer's message, or the local validation error).
        field: the offending field when known (``email``, ``customFields.ageNum``...).
    """

    index: int
    status: RowStatus
    id: str | None = None
    reason: str | None = None
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``row`` is the 0-based index)."""
        out: dict[str, Any] = {"row": self.index, "status": self.status, "id": self.id}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(slots=True)
class PushReport:
    """The summary of a push.

    Attributes:
        model: the unified model pushed.
        match: the match key (``None``: every row is created).
        dry_run: nothing was written; statuses say what would have happened.
        rows: rows read.
        created: rows created (or that would be, in a dry run).
        updated: rows that updated a matching record.
        rejected: rows refused locally or by the provider (see ``results`` for reasons).
        skipped: rows matching a record they would not change.
        requests: API requests made (lookups, job submissions, polls).
        jobs: bulk jobs submitted (split retries included).
        recovered_jobs: unfinished jobs of an earlier push resolved first.
        elapsed: wall time in seconds.
        results: per-row results, as ``keep_results`` asked (in completion order).
    """

    model: str
    match: str | None
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    skipped: int = 0
    requests: int = 0
    jobs: int = 0
    recovered_jobs: int = 0
    elapsed: float = 0.0
    results: list[RowResult] = field(default_factory=list)

    def rejected_rows(self) -> list[RowResult]:
        """The rejected rows among the kept results, by row index."""
        return sorted((r for r in self.results if r.status == "rejected"), key=lambda r: r.index)

    def to_dict(self, *, include_results: bool = True) -> dict[str, Any]:
        """JSON-safe form (camelCase keys)."""
        out: dict[str, Any] = {
            "object": "pushReport",
            "model": self.model,
            "match": self.match,
            "dryRun": self.dry_run,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "requests": self.requests,
            "jobs": self.jobs,
            "recoveredJobs": self.recovered_jobs,
            "elapsedSeconds": round(self.elapsed, 3),
        }
        if include_results:
            out["results"] = [r.to_dict() for r in sorted(self.results, key=lambda r: r.index)]
        return out


@dataclass(frozen=True, slots=True)
class PushProgress:
    """A snapshot handed to ``on_progress`` while a push runs.

    Attributes:
        rows: rows read so far.
        done: rows with a final outcome.
        created: rows created so far.
        updated: rows updated so far.
        rejected: rows rejected so far.
        skipped: rows skipped so far.
        requests: API requests so far.
        elapsed: seconds since the push started.
    """

    rows: int
    done: int
    created: int
    updated: int
    rejected: int
    skipped: int
    requests: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class PushOptions:
    """Tuning of a push (the defaults suit Kustomer).

    Attributes:
        batch_size: records per bulk job (capped by the backend's maximum; Kustomer: 100).
        match_group: rows matched per lookup (Kustomer: one search with ``in`` over up to 500 values).
        concurrency: bulk jobs in flight at once (the transport's rate budget paces the requests).
        poll_interval: first wait before polling a job; doubles up to ``poll_max_interval``.
        poll_max_interval: longest wait between two polls.
        job_timeout: seconds a job may take before the push fails with :class:`BulkError` (the job stays
            recorded and the next push resolves it).
        ambiguous_delay: seconds to wait before looking up rows whose submit outcome is unknown.
        max_attempts: sends of one row whose outcome stays unknown before it is rejected.
    """

    batch_size: int = 100
    match_group: int = 500
    concurrency: int = 4
    poll_interval: float = 0.05
    poll_max_interval: float = 2.0
    job_timeout: float = 600.0
    ambiguous_delay: float = 2.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        for name in ("batch_size", "match_group", "concurrency", "max_attempts"):
            if int(getattr(self, name)) < 1:
                raise ConfigurationError(f"PushOptions.{name} must be at least 1")
        for name in ("poll_interval", "poll_max_interval", "job_timeout", "ambiguous_delay"):
            if float(getattr(self, name)) < 0:
                raise ConfigurationError(f"PushOptions.{name} must not be negative")


@dataclass(frozen=True, slots=True)
class Existing:
    """A provider record found by a lookup.

    Attributes:
        id: its provider id.
        raw: the record as the provider returned it (handed back to :meth:`BulkBackend.update_body`).
    """

    id: str
    raw: Any


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One record of a bulk job.

    Attributes:
        ref: the client reference echoed in the job results.
        body: the provider request body of the record.
        id: the record to update (``None`` for a create).
    """

    ref: str
    body: Mapping[str, Any]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """The result of one item of a finished job: ``id`` when it landed, ``error`` when its batch failed.

    Neither means the outcome is unknown (the job results did not mention the item). ``uncertain`` marks
    an ``error`` of a batch that partly succeeded without saying which items did: the item may have landed.
    """

    ref: str
    id: str | None = None
    error: str | None = None
    uncertain: bool = False


class BulkBackend(Protocol):
    """The connector side of bulk sync for one model (``Connector.bulk_backend(model)``).

    Mapping and matching stay pure; ``find``/``fetch``/``submit``/``wait``/``export_page`` do the I/O.
    """

    model: str
    max_items: int
    requests: int

    def check_push(self) -> None:
        """Raise :class:`UnsupportedOperationError` when the model has no bulk writes."""
        ...

    def match_keys(self) -> Sequence[str]:
        """The keys rows can be matched on (unified camelCase names, ``id`` included)."""
        ...

    def key_value(self, obj: UnifiedResource, key: str) -> str | None:
        """The normalised value of ``key`` in a row (``None`` when the row has none)."""
        ...

    def check_custom_key(self, key: str) -> None:
        """Raise :class:`MappingError` when a custom field key maps to an invalid provider attribute."""
        ...

    def create_body(self, obj: UnifiedResource) -> dict[str, Any]:
        """The create request body of a row (raises :class:`MappingError`)."""
        ...

    def update_body(self, obj: UnifiedResource, current: Existing) -> dict[str, Any] | None:
        """The update body of a row matched to ``current``, or ``None`` when it changes nothing."""
        ...

    async def find(self, key: str, values: Sequence[str]) -> dict[str, list[Existing]]:
        """Existing records by normalised key value (several records may share a value)."""
        ...

    async def submit(self, action: BulkAction, items: Sequence[BulkItem]) -> str:
        """Submit one bulk job and return its id."""
        ...

    async def wait(
        self, job_id: str, refs: Sequence[str], *, max_seconds: float, poll_interval: float, poll_max_interval: float
    ) -> list[ItemOutcome]:
        """Wait for a job and return the outcome of each of its items (``refs`` in submission order)."""
        ...


# -- the engine ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    index: int
    source: Any
    obj: UnifiedResource
    key: str | None
    key_hash: str | None
    body: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    attempts: int = 0
    resent: bool = False  # sent again after an unknown outcome: the earlier send may have landed

    @property
    def ref(self) -> str:
        return f"r{self.index}"


class _Ambiguous(Exception):
    """A submit whose outcome is unknown (the request may have been applied)."""

    def __init__(self, reason: str, entry: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.entry = entry


class _Refused(Exception):
    """A submit refused as a whole before anything was applied (4xx)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _set_watermark(
    store: ConnectionStore, scope: str, value: Mapping[str, Any], expected: Mapping[str, Any] | None
) -> bool:
    return store.set_watermark(scope, value, expected=expected)


class _JobLedger:
    """Unfinished bulk jobs of one (connection, model), kept in the store's watermark table (CAS)."""

    def __init__(self, store: ConnectionStore | None, scope: str) -> None:
        self.store = store
        self.scope = scope
        self._lock = anyio.Lock()

    async def _read(self) -> dict[str, Any] | None:
        store = self.store
        if store is None:
            return None
        return await anyio.to_thread.run_sync(lambda: store.get_watermark(self.scope))

    async def entries(self) -> dict[str, dict[str, Any]]:
        current = await self._read()
        jobs = current.get("jobs") if current else None
        return dict(jobs) if isinstance(jobs, dict) else {}

    async def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        store = self.store
        if store is None:
            return
        async with self._lock:
            for _ in range(_CAS_ATTEMPTS):
                current = await self._read()
                jobs = dict(current.get("jobs") or {}) if current else {}
                change(jobs)
                value = {"v": _LEDGER_VERSION, "jobs": jobs}
                written = await anyio.to_thread.run_sync(_set_watermark, store, self.scope, value, current)
                if written:
                    return
            raise StoreConflictError(f"could not update the bulk job ledger {self.scope} (too many concurrent changes)")

    async def add(self, entry: str, action: BulkAction, refs: Sequence[str], key_hashes: Sequence[str | None]) -> None:
        record = {"job": None, "action": action, "refs": list(refs), "keys": list(key_hashes), "at": time.time()}

        def change(jobs: dict[str, Any]) -> None:
            jobs[entry] = record

        await self._update(change)

    async def set_job(self, entry: str, job_id: str) -> None:
        def change(jobs: dict[str, Any]) -> None:
            if entry in jobs:
                jobs[entry] = {**jobs[entry], "job": job_id}

        await self._update(change)

    async def remove(self, *entries: str) -> None:
        def change(jobs: dict[str, Any]) -> None:
            for entry in entries:
                jobs.pop(entry, None)

        await self._update(change)


class _Pusher:
    """One push: validation, matching, jobs, split retries, report."""

    def __init__(
        self,
        sync: ModelSync,
        backend: BulkBackend,
        *,
        match: str | None,
        dry_run: bool,
        options: PushOptions,
        on_progress: Callable[[PushProgress], None] | None,
        on_result: Callable[[RowResult, Any], None] | None,
        keep_results: KeepResults,
    ) -> None:
        self.sync = sync
        self.backend = backend
        self.model = sync.model
        self.match = match
        self.dry_run = dry_run
        self.options = options
        self.batch = max(1, min(options.batch_size, backend.max_items))
        self.on_progress = on_progress
        self.on_result = on_result
        self.keep = keep_results
        self.report = PushReport(model=sync.model, match=match, dry_run=dry_run)
        self.started = time.monotonic()
        self.requests_before = backend.requests
        self.known: OrderedDict[str, str] = OrderedDict()
        self.inflight: dict[str, int] = {}
        self.done = 0
        store = sync.connection.session.store
        self.ledger = _JobLedger(None if dry_run else store, f"{sync.connection.id}:{sync.model}:bulk-jobs")
        # Keyed hashes of match keys: stable across processes (the ledger), never the keys themselves.
        self._hash_key = store.secret_box.derive_key("bulk-match-keys") if store is not None else os.urandom(32)
        self._idle = anyio.Event()
        self._idle.set()
        self._active = 0
        self._slots = anyio.Semaphore(options.concurrency)
        self._planned: tuple[list[_Row], list[_Row]] | None = None  # matched, not yet dispatched
        self._tg: anyio.abc.TaskGroup | None = None

    # -- bookkeeping ------------------------------------------------------------------------------------

    def key_hash(self, key: str | None) -> str | None:
        if key is None or self.match is None:
            return None
        text = f"{self.model}\0{self.match}\0{key}".encode()
        return hmac.new(self._hash_key, text, hashlib.sha256).hexdigest()[:32]

    def remember(self, key_hash: str | None, id: str) -> None:
        if key_hash is None:
            return
        self.known[key_hash] = id
        self.known.move_to_end(key_hash)
        while len(self.known) > _KNOWN_KEYS_LIMIT:
            self.known.popitem(last=False)

    def progress(self) -> None:
        self.report.requests = self.backend.requests - self.requests_before
        if self.on_progress is None:
            return
        r = self.report
        self.on_progress(
            PushProgress(
                rows=r.rows,
                done=self.done,
                created=r.created,
                updated=r.updated,
                rejected=r.rejected,
                skipped=r.skipped,
                requests=r.requests,
                elapsed=time.monotonic() - self.started,
            )
        )

    def finish(self, row: _Row | None, result: RowResult, source: Any = None) -> None:
        r = self.report
        if result.status == "created":
            r.created += 1
        elif result.status == "updated":
            r.updated += 1
        elif result.status == "skipped":
            r.skipped += 1
        else:
            r.rejected += 1
        self.done += 1
        if row is not None:
            source = row.source
            if row.key_hash is not None:
                left = self.inflight.get(row.key_hash, 0) - 1
                if left > 0:
                    self.inflight[row.key_hash] = left
                else:
                    self.inflight.pop(row.key_hash, None)
            if result.status in ("created", "updated", "skipped") and result.id is not None:
                self.remember(row.key_hash, result.id)
        if self.keep == "all" or (self.keep == "rejected" and result.status == "rejected"):
            r.results.append(result)
        if self.on_result is not None:
            self.on_result(result, source)

    def reject(self, row: _Row, reason: str, field: str | None = None) -> None:
        self.finish(row, RowResult(row.index, "rejected", reason=reason, field=field))

    # -- reading rows -----------------------------------------------------------------------------------

    def validate(self, source: Any) -> UnifiedResource:
        """The row as a unified model (raises :class:`MappingError` naming the field)."""
        cls = model_class(self.model)
        if isinstance(source, UnifiedResource):
            if not isinstance(source, cls):
                raise MappingError(f"expected a {cls.__name__}, got {type(source).__name__}", model=self.model)
            return source
        if not isinstance(source, Mapping):
            raise MappingError(
                f"a row must be a mapping or a {cls.__name__}, got {type(source).__name__}", model=self.model
            )
        payload = dict(source)
        if self.model.startswith("custom:"):
            payload.setdefault("objectType", self.model.split(":", 1)[1])
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or None
            message = str(first["msg"]).removeprefix("Value error, ")
            raise MappingError(message, model=self.model, field=where) from None

    def coerce(self, index: int, source: Any) -> _Row | RowResult:
        """Validate a row locally; a :class:`RowResult` means it is rejected."""
        try:
            obj = self.validate(source)
            key = self.backend.key_value(obj, self.match) if self.match is not None else None
            row = _Row(index, source, obj, key, self.key_hash(key))
            if self.match != "id" or key is None:
                row.body = self.backend.create_body(obj)
        except MappingError as exc:
            return RowResult(index, "rejected", reason=exc.reason, field=exc.field)
        if key is None and self.match not in (None, "id"):
            return RowResult(
                index, "rejected", reason=f"the row has no value for the match key {self.match!r}", field=self.match
            )
        return row

    async def groups(self, rows: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[list[_Row]]:
        group: list[_Row] = []
        keys: set[str] = set()
        index = 0
        async for source in _aiter(rows):
            self.report.rows += 1
            row = self.coerce(index, source)
            index += 1
            if isinstance(row, RowResult):
                self.finish(None, row, source)
                continue
            if row.key is not None and (
                row.key in keys or (row.key_hash is not None and row.key_hash in self.inflight)
            ):
                if group:
                    yield group
                group, keys = [], set()
                await self.flush()  # the earlier row with this key must be sent...
                await self.drain()  # ...and land first
            group.append(row)
            if row.key is not None:
                keys.add(row.key)
            if len(group) >= self.options.match_group:
                yield group
                group, keys = [], set()
        if group:
            yield group

    # -- matching and planning --------------------------------------------------------------------------

    async def plan(self, group: list[_Row]) -> tuple[list[_Row], list[_Row]]:
        """Match a group; return (creates, updates) and finish skipped/ambiguous rows."""
        for row in group:
            if row.key_hash is not None:
                self.inflight[row.key_hash] = self.inflight.get(row.key_hash, 0) + 1
        existing: dict[str, list[Existing]] = {}
        if self.match is not None:
            by_id: list[str] = []
            by_key: list[str] = []
            for row in group:
                if row.key is None:
                    continue
                known = self.known.get(row.key_hash) if row.key_hash is not None else None
                if self.match == "id":
                    by_id.append(row.key)
                elif known is not None:
                    by_id.append(known)
                else:
                    by_key.append(row.key)
            if by_key:
                existing.update(await self._call_find(self.match, sorted(set(by_key))))
            if by_id:
                found = await self._call_find("id", sorted(set(by_id)))
                for row in group:
                    if row.key is None:
                        continue
                    target = row.key if self.match == "id" else self.known.get(row.key_hash or "")
                    if target is not None and target in found and row.key not in existing:
                        existing[row.key] = found[target]
        creates: list[_Row] = []
        updates: list[_Row] = []
        for row in group:
            matches = existing.get(row.key, []) if row.key is not None else []
            if self.match == "id" and row.key is not None and not matches:
                self.reject(row, f"no {self.model} with id {row.key!r}", "id")
                continue
            if len(matches) > 1:
                ids = ", ".join(m.id for m in matches[:5])
                self.reject(
                    row, f"{self.match}={row.key!r} matches {len(matches)} existing records ({ids})", self.match
                )
                continue
            if not matches:
                creates.append(row)
                continue
            current = matches[0]
            try:
                body = self.backend.update_body(row.obj, current)
            except MappingError as exc:
                self.reject(row, exc.reason, exc.field)
                continue
            if body is None:
                self.finish(row, RowResult(row.index, "skipped", id=current.id))
                continue
            row.body, row.target = body, current.id
            updates.append(row)
        return creates, updates

    async def _call_find(self, key: str, values: Sequence[str]) -> dict[str, list[Existing]]:
        try:
            return await self.backend.find(key, values)
        except PermissionDeniedError as exc:
            raise self.sync.connection.permission_error(f"{self.sync.op_prefix}::list", exc) from exc

    # -- landing ----------------------------------------------------------------------------------------

    async def drain(self) -> None:
        await self._idle.wait()

    async def flush(self) -> None:
        """Dispatch the planned group that waits for its turn (see :meth:`run`)."""
        if self._planned is None:
            return
        creates, updates = self._planned
        self._planned = None
        if self.dry_run:
            for row in creates:
                self.finish(row, RowResult(row.index, "created"))
            for row in updates:
                self.finish(row, RowResult(row.index, "updated", id=row.target))
        else:
            assert self._tg is not None
            await self.dispatch(self._tg, "create", creates)
            await self.dispatch(self._tg, "update", updates)
        self.progress()

    def _start(self) -> None:
        self._active += 1
        self._idle = anyio.Event() if self._active == 1 else self._idle

    def _stop(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()

    async def dispatch(self, tg: anyio.abc.TaskGroup, action: BulkAction, rows: list[_Row]) -> None:
        for start in range(0, len(rows), self.batch):
            chunk = rows[start : start + self.batch]
            await self._slots.acquire()
            self._start()

            async def run(chunk: list[_Row] = chunk) -> None:
                try:
                    await self.land(action, chunk)
                finally:
                    self._slots.release()
                    self._stop()
                    self.progress()

            tg.start_soon(run)

    async def land(self, action: BulkAction, rows: list[_Row]) -> None:
        """Send ``rows`` in one job; bisect a rejected batch until each invalid row is alone."""
        for row in rows:
            row.attempts += 1
        try:
            outcomes = await self.run_job(action, rows)
        except _Refused as exc:
            await self.fail(action, [(row, exc.reason) for row in rows])
            return
        except _Ambiguous as exc:
            await self.resolve_unknown(action, rows, exc.reason, exc.entry)
            return
        by_ref = {o.ref: o for o in outcomes}
        failed: list[tuple[_Row, str]] = []
        maybe: list[_Row] = []
        unknown: list[_Row] = []
        reason = "the bulk job results do not mention these records"
        for row in rows:
            outcome = by_ref.get(row.ref)
            if outcome is not None and outcome.id is not None:
                status: RowStatus = "created" if action == "create" else "updated"
                self.finish(row, RowResult(row.index, status, id=outcome.id))
            elif outcome is not None and outcome.error is not None and outcome.uncertain:
                maybe.append(row)
                reason = outcome.error
            elif outcome is not None and outcome.error is not None:
                failed.append((row, outcome.error))
            else:
                unknown.append(row)
        if failed:
            await self.fail(action, failed)
        if maybe:  # part of the batch landed, but which part is not said: look up before splitting
            await self.resolve_unknown(action, maybe, reason, None, failed=True)
        if unknown:
            await self.resolve_unknown(action, unknown, "the bulk job results do not mention these records", None)

    async def fail(self, action: BulkAction, failed: list[tuple[_Row, str]]) -> None:
        """Split failed rows; rows re-sent after an unknown outcome are looked up first, once.

        The earlier send of a re-sent row may have landed after all (its job was still queued when the rows
        were looked up): the re-send then fails ("already exists") although the row is in Kustomer.
        """
        resent = [(row, reason) for row, reason in failed if row.resent]
        rest = [(row, reason) for row, reason in failed if not row.resent]
        for row, _ in resent:
            row.resent = False
        if resent:
            await self.resolve_unknown(action, [row for row, _ in resent], resent[0][1], None, failed=True)
        if rest:
            await self.split(action, rest)

    async def split(self, action: BulkAction, failed: list[tuple[_Row, str]]) -> None:
        if len(failed) == 1:
            row, reason = failed[0]
            self.reject(row, reason)
            return
        rows = [row for row, _ in failed]
        middle = len(rows) // 2
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.land, action, rows[:middle])
            tg.start_soon(self.land, action, rows[middle:])

    async def run_job(self, action: BulkAction, rows: list[_Row]) -> list[ItemOutcome]:
        items = [BulkItem(row.ref, row.body, row.target) for row in rows]
        entry = uuid.uuid4().hex
        await self.ledger.add(entry, action, [i.ref for i in items], [row.key_hash for row in rows])
        try:
            job_id = await self.backend.submit(action, items)
        except PermissionDeniedError as exc:
            await self.ledger.remove(entry)
            raise self.sync.connection.permission_error(f"{self.sync.op_prefix}::{action}", exc) from exc
        except (ServerError, APIConnectionError) as exc:
            raise _Ambiguous(f"the bulk submit failed ({exc.message})", entry) from exc
        except APIStatusError as exc:  # refused before anything was applied
            await self.ledger.remove(entry)
            if exc.status_code in (400, 409, 413, 422):
                raise _Refused(exc.detail or exc.message) from exc
            raise
        # Anything else (cancellation included) keeps the entry: the job may exist; the next push resolves it.
        self.report.jobs += 1
        await self.ledger.set_job(entry, job_id)
        try:
            outcomes = await self.backend.wait(
                job_id,
                [i.ref for i in items],
                max_seconds=self.options.job_timeout,
                poll_interval=self.options.poll_interval,
                poll_max_interval=self.options.poll_max_interval,
            )
        except PermissionDeniedError as exc:
            raise self.sync.connection.permission_error("bulk::read", exc) from exc
        await self.ledger.remove(entry)
        return outcomes

    async def resolve_unknown(
        self, action: BulkAction, rows: list[_Row], reason: str, entry: str | None, *, failed: bool = False
    ) -> None:
        """Rows whose job outcome is unknown: look creates up before sending them again.

        With ``failed``, the rows were in a batch that failed in part: those not found failed, and are
        split until the invalid ones are alone.
        """
        retry: list[_Row] = []
        if action == "create":
            keyed = [row for row in rows if row.key is not None and self.match not in (None, "id")]
            for row in rows:
                if row.key is None or self.match in (None, "id"):
                    self.reject(row, f"{reason}; not sent again: without a match key a retry could duplicate it")
            if keyed:
                await anyio.sleep(self.options.ambiguous_delay)
                assert self.match is not None
                found = await self._call_find(self.match, sorted({row.key for row in keyed if row.key}))
                for row in keyed:
                    matches = found.get(row.key or "", [])
                    if matches:
                        self.finish(row, RowResult(row.index, "created", id=matches[0].id))
                    else:
                        retry.append(row)
        else:
            retry = list(rows)
        if entry is not None:
            await self.ledger.remove(entry)
        if failed:
            if retry:
                await self.split(action, [(row, reason) for row in retry])
            return
        again = [row for row in retry if row.attempts < self.options.max_attempts]
        for row in again:
            row.resent = action == "create"
        for row in retry:
            if row.attempts >= self.options.max_attempts:
                self.reject(row, f"{reason} (gave up after {row.attempts} attempts)")
        for start in range(0, len(again), self.batch):
            await self.land(action, again[start : start + self.batch])

    # -- recovery ---------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Resolve jobs an earlier push left unfinished (it crashed): their records count as existing."""
        entries = await self.ledger.entries()
        if not entries:
            return
        logger.info("resolving %d unfinished bulk job(s) of %s before pushing", len(entries), self.model)
        for name, entry in entries.items():
            job_id = entry.get("job")
            refs = [str(r) for r in entry.get("refs") or []]
            hashes = list(entry.get("keys") or [])
            if isinstance(job_id, str) and job_id:
                try:
                    outcomes = await self.backend.wait(
                        job_id,
                        refs,
                        max_seconds=self.options.job_timeout,
                        poll_interval=self.options.poll_interval,
                        poll_max_interval=self.options.poll_max_interval,
                    )
                except APIStatusError as exc:
                    if exc.status_code != 404:
                        raise
                    outcomes = []  # the provider forgot the job; matching finds what it wrote
                ids = {o.ref: o.id for o in outcomes if o.id is not None}
                for ref, key_hash in zip(refs, hashes, strict=False):
                    if isinstance(key_hash, str) and ref in ids:
                        self.remember(key_hash, ids[ref])
            else:
                # Crashed between recording and submitting, or the submit outcome was unknown: if the
                # job exists it runs now; give it time so that matching sees what it creates.
                at = float(entry.get("at") or 0.0)
                wait = at + self.options.ambiguous_delay - time.time()
                if wait > 0:
                    await anyio.sleep(min(wait, self.options.ambiguous_delay))
            await self.ledger.remove(name)
            self.report.recovered_jobs += 1

    # -- main -------------------------------------------------------------------------------------------

    async def run(self, rows: Iterable[Any] | AsyncIterable[Any]) -> PushReport:
        if not self.dry_run:
            await self.recover()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            async for group in self.groups(rows):
                # Match group N while group N-1 is dispatched (which waits for free job slots), so the lookup's
                # round trip hides behind the jobs. Group N never shares a key with N-1 (groups() flushes and
                # drains first when a key repeats), so matching it before N-1 lands changes nothing.
                # (A bare task, not a task group: the lookup's own errors must reach the caller unwrapped.)
                planning = asyncio.ensure_future(self.plan(group))
                try:
                    await self.flush()
                    self._planned = await planning
                finally:
                    if not planning.done():
                        planning.cancel()
                        planning.add_done_callback(_consume_outcome)
            await self.flush()
        self.report.elapsed = time.monotonic() - self.started
        self.progress()
        return self.report


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    """Retrieve a cancelled task's outcome, so an error raised while it was cancelled is not reported as lost."""
    if not task.cancelled():
        task.exception()


async def _aiter(rows: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


# -- the facade ------------------------------------------------------------------------------------------


class ModelSync:
    """Bulk push and incremental pull of one unified model of one connection (``conn.sync(model)``)."""

    def __init__(self, connection: Connection, model: str) -> None:
        self.connection = connection
        self.model = model
        self.op_prefix = "custom" if model.startswith("custom:") else model
        self._backend: BulkBackend | None = None

    def __repr__(self) -> str:
        return f"ModelSync({self.model!r}, connection={self.connection.id!r})"

    @property
    def backend(self) -> BulkBackend:
        """The connector's bulk backend of this model.

        Raises:
            UnsupportedOperationError: the connector has no bulk backend.
        """
        if self._backend is None:
            self._backend = self.connection.connector.bulk_backend(self.model)
        return self._backend

    def _check_match(self, backend: BulkBackend, match: str | None) -> str | None:
        if match is None:
            return None
        allowed = list(backend.match_keys())
        wanted = _camel(match.strip())
        if wanted not in allowed:
            raise ConfigurationError(f"{self.model} rows can be matched on {', '.join(allowed)}; got match={match!r}")
        return wanted

    async def push(
        self,
        rows: Iterable[UnifiedResource | Mapping[str, Any]] | AsyncIterable[UnifiedResource | Mapping[str, Any]],
        *,
        match: str | None = None,
        dry_run: bool = False,
        on_progress: Callable[[PushProgress], None] | None = None,
        on_result: Callable[[RowResult, Any], None] | None = None,
        keep_results: KeepResults = "all",
        options: PushOptions | None = None,
    ) -> PushReport:
        """Upsert many records through the provider's bulk endpoints (see the module docstring).

        Args:
            rows: unified models or dicts (camelCase or snake_case keys), read lazily.
            match: the key matching rows to existing records (``email``, ``externalId``...; ``id``: rows
                carrying an ``id`` update that record, the others are created); ``None``: every row is
                created (no lookups; a rerun creates the rows again).
            dry_run: match and validate, but write nothing; the report says what would happen.
            on_progress: called with a :class:`PushProgress` as the push advances.
            on_result: called with each row's :class:`RowResult` and the row as given, as it completes.
            keep_results: which per-row results the report keeps (``rejected``/``none`` for huge inputs).
            options: tuning (batch size, concurrency, polling...).

        Returns:
            The :class:`PushReport`.

        Raises:
            InsufficientPermissionsError: the connection lacks ``<model>::create``, ``::update``,
                ``::list`` (matching) or ``bulk::read`` (checked before any request).
            UnsupportedOperationError: the model has no bulk writes.
            ConfigurationError: an unknown match key or bad options.
            BulkError: a job did not finish within ``options.job_timeout``.
        """
        backend = self.backend
        backend.check_push()
        key = self._check_match(backend, match)
        for action in ("create", "update", *(("list",) if key is not None else ())):
            self.connection.require(f"{self.op_prefix}::{action}")
        self.connection.require("bulk::read")
        pusher = _Pusher(
            self,
            backend,
            match=key,
            dry_run=dry_run,
            options=options or PushOptions(),
            on_progress=on_progress,
            on_result=on_result,
            keep_results=keep_results,
        )
        try:
            return await pusher.run(rows)
        except BaseExceptionGroup as group:  # task groups wrap failures; surface the typed error
            raise _first_error(group) from None

    def check_mapping(self, fields: Iterable[str]) -> None:
        """Check target fields of a column mapping before reading any row.

        ``fields`` are unified field names (camelCase or snake_case) or ``custom.<key>`` custom fields; a
        custom key must map to a provider attribute with a valid type suffix (Kustomer: ``ageNum``).

        Raises:
            MappingError: naming the first unknown field or invalid custom key.
        """
        cls = model_class(self.model)
        names = {n for n in cls.model_fields} | {_camel(n) for n in cls.model_fields}
        backend = self.backend
        for target in fields:
            if target.startswith(("custom.", "customFields.")):
                key = target.split(".", 1)[1]
                if not key:
                    raise MappingError("a custom field needs a key after 'custom.'", model=self.model, field=target)
                backend.check_custom_key(key)
            elif target not in names or target in _NOT_WRITABLE:
                known = ", ".join(sorted(_camel(n) for n in cls.model_fields if _camel(n) not in _NOT_WRITABLE))
                raise MappingError(
                    f"unknown or read-only field; fields: {known}, custom.<key>", model=self.model, field=target
                )

    def pull(
        self,
        *,
        since: datetime | str | None = None,
        full: bool = False,
        resume: bool = True,
        commit: bool = True,
        concurrency: int = 4,
        page_size: int = 100,
        checkpoint_every: int | None = None,
        include_raw: bool = False,
        on_progress: Callable[[PullProgress], None] | None = None,
        before_commit: Callable[[], Awaitable[None] | None] | None = None,
    ) -> AsyncIterator[UnifiedResource]:
        """Iterate records changed since the stored watermark (see :mod:`connectors.runtime.incremental`).

        Args:
            since: start at this ``updatedAt`` instead of the stored watermark.
            full: export everything (the cheapest endpoint, pages fetched concurrently).
            resume: continue from the stored watermark (or an interrupted full export).
            commit: store the watermark as records are consumed.
            concurrency: pages in flight during a full export (the rate budget still applies).
            page_size: records per page.
            checkpoint_every: also commit after this many consumed records (default: at page ends).
            include_raw: attach the provider object as ``raw``.
            on_progress: called with a :class:`~connectors.runtime.incremental.PullProgress` per page.
            before_commit: called (and awaited) before each watermark write: flush your sink here, so the
                watermark never moves past records that are not durable.

        Returns:
            An async iterator of unified records.
        """
        from connectors.runtime.incremental import Puller

        return Puller(
            self,
            since=since,
            full=full,
            resume=resume,
            commit=commit,
            concurrency=concurrency,
            page_size=page_size,
            checkpoint_every=checkpoint_every,
            include_raw=include_raw,
            on_progress=on_progress,
            before_commit=before_commit,
        ).run()

    async def watermark(self) -> dict[str, Any] | None:
        """The stored pull watermark of this model (``None`` before the first pull)."""
        from connectors.runtime.incremental import read_watermark

        return await read_watermark(self)

    async def reset(self) -> None:
        """Forget the pull watermark: the next pull is a full export."""
        from connectors.runtime.incremental import reset_watermark

        await reset_watermark(self)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception of a (nested) group that is not a cancellation."""
    cancelled = anyio.get_cancelled_exc_class()
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, cancelled):
            return exc
    return group


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
