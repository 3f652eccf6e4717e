"""Incremental pull and full export of one model, resumable from a watermark in the connection store.

::

    sync = conn.sync("genericContact")
    async for contact in sync.pull():            # first run: full export; later runs: only what changed
        handle(contact)

**Watermark.** Per (connection, model) the store keeps (scope ``<connection id>:<model>:pull``) either
``{"mode": "incremental", "updatedAt": "...Z", "ids": [...]}`` -- the ``updatedAt`` of the last record
consumed and the ids of the records consumed *at exactly that timestamp* (an ``updatedAt`` + id keyset that
does not depend on how the provider orders ties) -- or, while a full export runs,
``{"mode": "full", "page": n, "offset": k, "since": "...Z"}``. It is written with compare-and-swap, so two
pulls of the same model cannot both advance it (the second fails with
:class:`~connectors.errors.StoreConflictError`).

**Incremental pull** asks for records with ``updatedAt >= watermark`` sorted by ``updatedAt`` (Kustomer: the
list endpoint's ``filter[updatedAt][gte]`` where it exists, else search, whose 100-page cap the resource
backend pages past), and skips the records already consumed at the watermark's timestamp. A record
updated while the pull runs comes again later with its new ``updatedAt``.

**Full export** (``full=True``, and the first pull of a model) uses the cheapest endpoint: the plain list,
on the org budget, by page number, so ``concurrency`` pages are fetched at once (the transport's rate
limiter keeps them within the budget) and yielded in order. Before the first page it reads the newest
``updatedAt`` of the model: when the export ends, the watermark becomes that timestamp, so everything
changed during the export is pulled again by the next incremental pull (no gap; records the export
delivered with exactly that timestamp are not repeated, others changed meanwhile come again). An export
that stops half-way resumes at the page (and offset) it reached. Models the provider cannot filter by date
(Kustomer users and teams) are exported in full on every pull.

**Delivery semantics.** The watermark moves only past records the consumer has *finished*: a record counts
as consumed when the consumer asks for the next one (or the iteration ends normally). It is committed at the
end of every page and, with ``checkpoint_every=n``, after every ``n`` consumed records. After a crash the
next pull starts right after the last committed record: delivery is **at-least-once**, and the records
delivered again are at most those consumed since the last checkpoint (with ``checkpoint_every=1``, only
the record being processed when the crash happened: exactly once per consumed record, per resume). A
consumer that ``break``s out of the loop has not finished the record it broke on; it comes again next time.
Deletions are not reported (Kustomer has no delete events or tombstones on these endpoints).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, overload

import anyio.to_thread

from connectors.errors import (
    ConfigurationError,
    PermissionDeniedError,
    StoreConflictError,
    UnsupportedOperationError,
)
from connectors.runtime.connector import ListQuery
from unified_models import UnifiedResource

if TYPE_CHECKING:
    from connectors.runtime.bulk import ModelSync
    from connectors.runtime.connector import ResourceBackend

__all__ = [
    "ExportBackend",
    "ExportPage",
    "MappedRecords",
    "PullProgress",
    "Puller",
    "format_watermark_time",
    "read_watermark",
    "reset_watermark",
]

logger = logging.getLogger(__name__)

EPOCH: Final = "1970-01-01T00:00:00.000Z"
_VERSION: Final = 1
_YIELD_EVERY: Final = 10  # records between event-loop turns while a page is consumed (lets read-ahead go out)


@dataclass(frozen=True, slots=True)
class PullProgress:
    """A snapshot handed to ``on_progress`` after each page.

    Attributes:
        mode: ``full`` (export) or ``incremental``.
        records: records yielded so far.
        pages: pages fetched and yielded so far.
        total: records the export is expected to yield (when the provider says; ``None`` otherwise).
        elapsed: seconds since the pull started.
    """

    mode: Literal["full", "incremental"]
    records: int
    pages: int
    total: int | None
    elapsed: float


class MappedRecords(Sequence[UnifiedResource]):
    """Provider records mapped as they are read: ``map_one(raw[i])`` on each access, nothing cached.

    An export page built with it is mapped by the consumer, record by record, while the request of the next
    page is in flight (mapping inside the fetching task would run after the response, on the critical path).
    A record that cannot be mapped raises its ``MappingError`` when it is reached.
    """

    __slots__ = ("_map", "_raw")

    def __init__(self, raw: Sequence[Any], map_one: Callable[[Any], UnifiedResource]) -> None:
        self._raw = raw
        self._map = map_one

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> UnifiedResource: ...

    @overload
    def __getitem__(self, index: slice) -> MappedRecords: ...

    def __getitem__(self, index: int | slice) -> UnifiedResource | MappedRecords:
        if isinstance(index, slice):
            return MappedRecords(self._raw[index], self._map)
        return self._map(self._raw[index])

    def __iter__(self) -> Iterator[UnifiedResource]:
        return map(self._map, self._raw)


@dataclass(frozen=True, slots=True)
class ExportPage:
    """One page of a full export.

    Attributes:
        records: the page's records, mapped (a list) or mapped as they are read (:class:`MappedRecords`).
        has_next: whether a next page exists.
        total: total records, when the provider reports it.
        total_pages: total pages, when the provider reports it.
    """

    records: Sequence[UnifiedResource]
    has_next: bool
    total: int | None = None
    total_pages: int | None = None


class ExportBackend(Protocol):
    """What a connector's bulk backend offers for pulls (optional: without it, pulls use ``iter``).

    Attributes:
        supports_incremental: the list backend accepts ``updatedSince`` with ``sort="updatedAt"``.
        page_export: pages can be fetched by number (concurrently).
        max_page_size: the largest page the export endpoint serves.
    """

    supports_incremental: bool
    page_export: bool
    max_page_size: int

    async def export_page(self, page: int, size: int, *, include_raw: bool) -> ExportPage:
        """Fetch page ``page`` (1-based) of the plain list."""
        ...


def format_watermark_time(value: datetime) -> str:
    """A watermark timestamp: UTC, milliseconds, ``Z`` (Kustomer's format; lexicographic = chronological)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _since_text(value: datetime | str) -> str:
    if isinstance(value, datetime):
        return format_watermark_time(value)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"since must be an ISO 8601 timestamp, got {value!r}") from None
    return format_watermark_time(parsed)


def _scope(sync: ModelSync) -> str:
    return f"{sync.connection.id}:{sync.model}:pull"


async def _read_raw(sync: ModelSync) -> dict[str, Any] | None:
    store = sync.connection.session.store
    if store is None:
        return None
    scope = _scope(sync)
    return await anyio.to_thread.run_sync(lambda: store.get_watermark(scope))


async def read_watermark(sync: ModelSync) -> dict[str, Any] | None:
    """The stored pull watermark of ``sync``'s model (``None`` when there is none or it was reset)."""
    value = await _read_raw(sync)
    if value is None or value.get("mode") not in ("incremental", "full", "complete"):
        return None
    return value


async def reset_watermark(sync: ModelSync) -> None:
    """Forget the pull watermark of ``sync``'s model (the next pull is a full export)."""
    store = sync.connection.session.store
    if store is None:
        return
    scope = _scope(sync)
    await anyio.to_thread.run_sync(lambda: store.set_watermark(scope, {"v": _VERSION, "mode": "reset"}))


class Puller:
    """One pull (see the module docstring); ``run()`` is the async iterator ``ModelSync.pull`` returns."""

    def __init__(
        self,
        sync: ModelSync,
        *,
        since: datetime | str | None,
        full: bool,
        resume: bool,
        commit: bool,
        concurrency: int,
        page_size: int,
        checkpoint_every: int | None,
        include_raw: bool,
        on_progress: Callable[[PullProgress], None] | None,
        before_commit: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if page_size < 1:
            raise ConfigurationError("page_size must be at least 1")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ConfigurationError("checkpoint_every must be at least 1")
        self.sync = sync
        self.since = _since_text(since) if since is not None else None
        self.full = full
        self.resume = resume
        self.commit_enabled = commit
        self.concurrency = concurrency
        self.page_size = page_size
        self.checkpoint_every = checkpoint_every
        self.include_raw = include_raw
        self.on_progress = on_progress
        self.before_commit = before_commit
        self.operation = f"{sync.op_prefix}::list"
        self.expected: Mapping[str, Any] | None = None
        self.records = 0
        self.pages = 0
        self.total: int | None = None
        self.started = time.monotonic()
        self.export: ExportBackend | None = None

    # -- watermark --------------------------------------------------------------------------------------

    async def commit(self, value: dict[str, Any]) -> None:
        """Store ``value`` if nobody else moved the watermark since this pull last read or wrote it."""
        if not self.commit_enabled:
            return
        store = self.sync.connection.session.store
        if store is None:
            return
        full = {"v": _VERSION, **value}
        if full == self.expected:
            return
        if self.before_commit is not None:
            result = self.before_commit()
            if result is not None:
                await result
        scope = _scope(self.sync)
        expected = self.expected
        written = await anyio.to_thread.run_sync(lambda: store.set_watermark(scope, full, expected=expected))
        if not written:
            raise StoreConflictError(
                f"another pull of {self.sync.model} on connection {self.sync.connection.id} moved the watermark; "
                "run one pull per model at a time"
            )
        self.expected = full

    def progress(self, mode: Literal["full", "incremental"]) -> None:
        """Report progress to ``on_progress``."""
        if self.on_progress is not None:
            self.on_progress(PullProgress(mode, self.records, self.pages, self.total, time.monotonic() - self.started))

    # -- backends ---------------------------------------------------------------------------------------

    def _resources(self) -> ResourceBackend:
        return self.sync.connection.connector.resource_backend(self.sync.model)

    def _export_backend(self) -> ExportBackend | None:
        try:
            backend = self.sync.backend
        except UnsupportedOperationError:
            return None
        return backend if hasattr(backend, "export_page") else None  # type: ignore[return-value]

    def _incremental_ok(self) -> bool:
        return self.export is None or bool(getattr(self.export, "supports_incremental", True))

    async def _latest(self) -> str:
        """The newest ``updatedAt`` of the model right now (the watermark a full export ends at)."""
        query = ListQuery(limit=1, filters={"updatedSince": EPOCH}, sort="-updatedAt")
        page = await self._resources().list(query)
        newest = page.data[0].updated_at if page.data else None
        return format_watermark_time(newest) if newest is not None else EPOCH

    # -- main -------------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[UnifiedResource]:
        """Yield the records (see the module docstring)."""
        self.sync.connection.require(self.operation)
        self.export = self._export_backend()
        stored = await _read_raw(self.sync)
        self.expected = stored
        start: Mapping[str, Any] | None = stored if self.resume else None
        if start is not None and start.get("mode") not in ("incremental", "full"):
            start = None
        try:
            if self.since is not None and self._incremental_ok():
                source = self._incremental(self.since, ())
            elif start is not None and start.get("mode") == "full" and start.get("pageSize") == self.page_size:
                source = self._full(int(start.get("page", 1)), int(start.get("offset", 0)), start.get("since"))
            elif not self.full and start is not None and start.get("mode") == "incremental" and self._incremental_ok():
                source = self._incremental(str(start["updatedAt"]), tuple(start.get("ids") or ()))
            else:
                source = self._full(1, 0, None)
            async for record in source:
                yield record
        except PermissionDeniedError as exc:
            raise self.sync.connection.permission_error(self.operation, exc) from exc

    async def _incremental(self, since: str, skip_ids: tuple[str, ...]) -> AsyncIterator[UnifiedResource]:
        backend = self._resources()
        query = ListQuery(limit=self.page_size, filters={"updatedSince": since}, sort="updatedAt")
        last_ts, tie = since, set(skip_ids)
        cursor: str | None = None
        consumed = 0
        while True:
            page = await backend.list(dataclasses.replace(query, cursor=cursor), include_raw=self.include_raw)
            self.pages += 1
            for record in page.data:
                stamp = format_watermark_time(record.updated_at) if record.updated_at is not None else None
                if stamp is not None and stamp == last_ts and record.id in tie:
                    continue  # consumed before, at the watermark's timestamp
                self.records += 1
                yield record
                consumed += 1
                if stamp is not None and record.id is not None and stamp >= last_ts:
                    if stamp == last_ts:
                        tie.add(record.id)
                    else:
                        last_ts, tie = stamp, {record.id}
                if self.checkpoint_every is not None and consumed % self.checkpoint_every == 0:
                    await self.commit(_incremental_mark(last_ts, tie))
            await self.commit(_incremental_mark(last_ts, tie))
            self.progress("incremental")
            if page.next is None:
                return
            cursor = page.next

    async def _full(self, first_page: int, offset: int, since: Any) -> AsyncIterator[UnifiedResource]:
        incremental = self._incremental_ok()
        mark: str | None = str(since) if isinstance(since, str) else None
        if mark is None and incremental:
            mark = await self._latest()
        export = self.export
        if export is None or not export.page_export:
            async for record in self._full_sequential(mark):
                yield record
            return
        exporter: ExportBackend = export
        size = min(self.page_size, export.max_page_size)
        state = {"mode": "full", "page": first_page, "offset": offset, "pageSize": self.page_size, "since": mark}
        await self.commit(state)
        tasks: dict[int, asyncio.Task[ExportPage]] = {}
        at_mark: set[str] = set()
        mark_time = _mark_time(mark)
        last_page: int | None = None
        next_fetch = first_page
        page_no = first_page
        consumed = 0

        def launch() -> None:
            # Keep `concurrency` pages in flight from the start (the mark was read first, so nothing is fetched
            # before it); once a page tells how many there are, never launch past the last one. A small export
            # may cost up to `concurrency - 1` requests past its end, for an export that does not wait for page 1
            # before fanning out.
            nonlocal next_fetch
            while len(tasks) < self.concurrency and (last_page is None or next_fetch <= last_page):
                tasks[next_fetch] = asyncio.create_task(
                    exporter.export_page(next_fetch, size, include_raw=self.include_raw)
                )
                next_fetch += 1

        try:
            while True:
                launch()
                result = await tasks.pop(page_no)
                self.pages += 1
                if result.total_pages is not None:
                    last_page = result.total_pages
                if result.total is not None:
                    self.total = result.total
                if not result.has_next:
                    last_page = page_no
                # The page just awaited is no longer in flight: request the next one(s) now, so Kustomer and the
                # network work while the consumer handles this page (with concurrency 1 too: one request in
                # flight at a time, but never idle). The loop gets a turn every few records, so they go out.
                launch()
                records = result.records[offset:] if page_no == first_page else result.records
                skip = offset if page_no == first_page else 0
                for position, record in enumerate(records, start=skip):
                    if position % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    self.records += 1
                    if _stamp_is(record, mark_time):
                        at_mark.add(str(record.id))  # up to date as of the mark: the next pull skips it
                    yield record
                    consumed += 1
                    if self.checkpoint_every is not None and consumed % self.checkpoint_every == 0:
                        await self.commit({**state, "page": page_no, "offset": position + 1})
                self.progress("full")
                if last_page is not None and page_no >= last_page:
                    break
                page_no += 1
                await self.commit({**state, "page": page_no, "offset": 0})
        finally:
            for task in tasks.values():
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks.values(), return_exceptions=True)
        await self._finish_full(mark, at_mark)

    async def _full_sequential(self, mark: str | None) -> AsyncIterator[UnifiedResource]:
        """A full export through the resource backend's ``iter`` (no page numbers: not resumable mid-way)."""
        backend = self._resources()
        query = ListQuery(limit=self.page_size)
        at_mark: set[str] = set()
        mark_time = _mark_time(mark)
        async for record in backend.iter(query, include_raw=self.include_raw):
            self.records += 1
            if _stamp_is(record, mark_time):
                at_mark.add(str(record.id))
            yield record
        self.progress("full")
        await self._finish_full(mark, at_mark)

    async def _finish_full(self, mark: str | None, at_mark: set[str]) -> None:
        if mark is not None:
            await self.commit(_incremental_mark(mark, at_mark))
        else:
            await self.commit({"mode": "complete", "at": format_watermark_time(datetime.now(UTC))})


def _mark_time(mark: str | None) -> datetime | None:
    return datetime.fromisoformat(mark.replace("Z", "+00:00")) if mark is not None else None


def _stamp_is(record: UnifiedResource, mark: datetime | None) -> bool:
    # Compares datetimes (timestamps carry milliseconds), not formatted strings: this runs per record.
    return mark is not None and record.id is not None and record.updated_at == mark


def _incremental_mark(stamp: str, ids: set[str] | tuple[str, ...]) -> dict[str, Any]:
    return {"mode": "incremental", "updatedAt": stamp, "ids": sorted(ids)}
