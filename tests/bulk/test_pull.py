"""Incremental pull and full export: watermarks, resume after a crash, concurrency, CAS."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from connectors import Connection, Connectors, Settings
from connectors.errors import ConfigurationError, InsufficientPermissionsError, StoreConflictError
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.incremental import PullProgress, format_watermark_time
from connectors.runtime.store import ConnectionStore

from .conftest import BIG_BUDGET, sandbox_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox(sandbox_settings(customers=230, seed_import_cluster_fraction=0.2))


def _customer_ids(sb: Sandbox) -> set[str]:
    return set(sb.state.customers.live)


def _pages(sb: Sandbox) -> list[str]:
    return [e.path for e in sb.state.request_log if e.method == "GET" and e.path == "/v1/customers"]


async def _drain(iterator: Any) -> list[Any]:
    return [record async for record in iterator]


async def test_first_pull_is_a_concurrent_full_export(conn: Connection, sb: Sandbox) -> None:
    seen: list[PullProgress] = []
    records = await _drain(conn.sync("genericContact").pull(concurrency=4, page_size=50, on_progress=seen.append))
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)) == 230 and set(ids) == _customer_ids(sb)
    # 5 pages of 50 (plus one 1-record read of the newest updatedAt); nothing fetched twice or in vain.
    assert len(_pages(sb)) == 6
    assert seen[-1].mode == "full" and seen[-1].records == 230 and seen[-1].total == 230
    mark = await conn.sync("genericContact").watermark()
    assert mark is not None and mark["mode"] == "incremental"
    newest = max(r.updated_ms for r in sb.state.customers.live.values())
    assert mark["updatedAt"] == format_watermark_time(_dt(newest))
    # the records the export delivered at exactly that time are not delivered again
    assert await _drain(conn.sync("genericContact").pull()) == []


def _dt(ms: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def test_incremental_pull_yields_only_changes(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericContact")
    await _drain(sync.pull())
    contacts = conn.resources("genericContact")
    some = sorted(_customer_ids(sb))[:3]
    for cid in some:
        await contacts.update(cid, {"lastName": "Changed"})
    created = await contacts.create({"email": "fresh@example.com"})
    changed = await _drain(sync.pull())
    assert sorted(r.id for r in changed) == sorted([*some, created.id])
    assert all(r.last_name == "Changed" for r in changed if r.id in some)
    assert await _drain(sync.pull()) == []


async def test_incremental_pull_resumes_after_a_crash_without_gaps_or_repeats(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericContact")
    await sync.reset()
    first = sync.pull(since="2000-01-01T00:00:00Z", page_size=20, checkpoint_every=1)
    consumed = []
    async for record in first:
        consumed.append(record.id)
        if len(consumed) == 57:
            break  # the process dies while handling record 57: it was never finished
    del first
    gc.collect()
    rest = [r.id async for r in sync.pull(page_size=20)]
    assert rest[0] == consumed[-1]  # the unfinished record comes again, and only it
    assert set(consumed[:-1]).isdisjoint(rest)
    assert set(consumed) | set(rest) == _customer_ids(sb)
    assert len(rest) == len(set(rest))


async def test_incremental_checkpoints_at_page_ends_by_default(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericContact")
    consumed = []
    async for record in sync.pull(since="2000-01-01T00:00:00Z", page_size=25):
        consumed.append(record.id)
        if len(consumed) == 60:
            break
    rest = [r.id async for r in sync.pull(page_size=25)]
    # the last checkpoint was after record 50: records 51..60 come again (at-least-once)
    assert rest[:10] == consumed[50:60]
    assert set(consumed) | set(rest) == _customer_ids(sb)


async def test_full_export_resumes_mid_page(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericContact")
    consumed = []
    async for record in sync.pull(full=True, page_size=30, concurrency=3, checkpoint_every=1):
        consumed.append(record.id)
        if len(consumed) == 75:
            break
    mark = await sync.watermark()
    assert mark is not None and mark["mode"] == "full" and (mark["page"], mark["offset"]) == (3, 14)
    rest = [r.id async for r in sync.pull(page_size=30, concurrency=3)]
    assert rest[0] == consumed[-1]
    assert len(consumed) - 1 + len(rest) == 230
    assert set(consumed) | set(rest) == _customer_ids(sb)
    assert (await sync.watermark() or {}).get("mode") == "incremental"


async def test_a_changed_page_size_restarts_the_export(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericContact")
    async for _ in sync.pull(full=True, page_size=30, checkpoint_every=1):
        break
    assert len(await _drain(sync.pull(page_size=40))) == 230


async def test_two_pulls_of_one_model_cannot_both_advance(conn: Connection) -> None:
    sync = conn.sync("genericContact")
    a = sync.pull(page_size=50)
    b = sync.pull(page_size=50)
    await a.__anext__()
    await b.__anext__()

    async def advance_both() -> None:
        for _ in range(120):
            await a.__anext__()
            await b.__anext__()

    with pytest.raises(StoreConflictError, match="one pull per model"):
        await advance_both()
    await a.aclose()
    await b.aclose()


async def test_before_commit_runs_before_every_watermark_write(conn: Connection, store: ConnectionStore) -> None:
    scope = f"{conn.id}:genericContact:pull"
    marks: list[Any] = []
    records = 0

    def flush() -> None:
        marks.append((records, store.get_watermark(scope)))

    async for _ in conn.sync("genericContact").pull(page_size=100, before_commit=flush):
        records += 1
    # before each write the store still holds the previous value (nothing moved past unflushed records)
    assert [count for count, _ in marks] == [0, 100, 200, 230]
    assert marks[0][1] is None and marks[1][1]["page"] == 1 and marks[2][1]["page"] == 2


async def test_commit_false_and_since(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericContact")
    assert len(await _drain(sync.pull(commit=False))) == 230
    assert await sync.watermark() is None
    target = sorted(sb.state.customers.live.values(), key=lambda r: (r.updated_ms, r.id))[-5]
    since = format_watermark_time(_dt(target.updated_ms))
    recent = await _drain(sync.pull(since=since, commit=False))
    expected = {r.id for r in sb.state.customers.live.values() if r.updated_ms >= target.updated_ms}
    assert {r.id for r in recent} == expected
    with pytest.raises(ConfigurationError, match="since"):
        await _drain(sync.pull(since="last tuesday"))
    with pytest.raises(ConfigurationError):
        sync.pull(concurrency=0)


async def test_models_without_date_filters_are_exported_every_time(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericUser")
    first = await _drain(sync.pull())
    second = await _drain(sync.pull())
    assert len(first) == len(second) == len(sb.state.users.live)
    mark = await sync.watermark()
    assert mark is not None and mark["mode"] == "complete"


async def test_companies_pull_incrementally_through_search(conn: Connection, sb: Sandbox) -> None:
    sync = conn.sync("genericCompany")
    assert len(await _drain(sync.pull(page_size=3))) == len(sb.state.companies.live)
    company = next(iter(sb.state.companies.live.values()))
    await conn.resources("genericCompany").update(company.id, {"name": "Renamed Inc"})
    changed = await _drain(sync.pull(page_size=3))
    assert [c.id for c in changed] == [company.id]


async def test_reset_forgets_the_watermark(conn: Connection) -> None:
    sync = conn.sync("genericContact")
    await _drain(sync.pull())
    await sync.reset()
    assert await sync.watermark() is None
    assert len(await _drain(sync.pull())) == 230


async def test_pull_needs_the_list_operation(bulk_hub: Connectors, sb: Sandbox) -> None:
    key = sb.mint_api_key(roles=["org.permission.company.read"])
    conn = await bulk_hub.connect("kustomer", "tenant-nolist", api_key=key, base_url=sb.base_url)
    with pytest.raises(InsufficientPermissionsError):
        await _drain(conn.sync("genericContact").pull())


async def test_pull_without_store_still_iterates(sb: Sandbox) -> None:
    hub = Connectors(settings=Settings(kustomer=BIG_BUDGET), transport=sb.transport(), store=_store())
    conn = await hub.connect("kustomer", "t", api_key=sb.mint_api_key(), base_url=sb.base_url)
    conn.session.store = None
    assert len(await _drain(conn.sync("genericContact").pull())) == 230
    await hub.aclose()


def _store() -> ConnectionStore:
    import os

    from connectors.runtime.secrets import SecretBox

    return ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
