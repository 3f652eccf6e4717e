"""Faults: exports, bulk pushes and single CRUD calls while the sandbox fails on purpose.

The sandbox injects the issue's mix (10% 5xx as JSON 500s and HTML 502/503s, 2% dropped connections, slow
responses, bursts of three 429s) plus, for writes, *after-write* faults: the write is applied, then the answer
is lost (a 502 or a dropped connection). What the library guarantees, and what these tests check exactly:

* **Reads** are retried (idempotent): an export yields every record exactly once; when a fault outlasts the
  retries, the export stops with a typed error and a rerun resumes at the page it reached, still without a
  record repeated or missing.
* **Bulk pushes** resolve every unknown outcome by looking the rows up before sending them again: each
  record lands exactly once.
* **Single non-idempotent writes** (``create`` = POST, ``update`` of a customer = PATCH) are *never* repeated
  once they may have reached Kustomer: they are retried only on 429 and connect errors (nothing was
  processed). Anything else surfaces as ``ServerError`` / ``APIConnectionError``, and then the write happened
  *at most once* (look it up, e.g. by ``externalId``, before trying again). Idempotent writes (PUT, DELETE) are
  retried; a DELETE whose first attempt was applied reports success, not ``NotFoundError``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import pytest
from _reliability import FAULTS, FaultCounter, Tally, quiet_settings

from connectors import Connection, Connectors
from connectors.errors import APIConnectionError, NotFoundError, RateLimitError, ServerError
from connectors.kustomer.sandbox import Sandbox, running_sandbox
from connectors.kustomer.sandbox.faults import FaultDecision
from connectors.kustomer.sandbox.store import Record
from connectors.runtime.bulk import PushOptions

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

TRANSIENT = (ServerError, APIConnectionError, RateLimitError)
"""What a fault that outlasts the retries surfaces as."""

EXPORT_RECORDS = 20_000
HTTP_EXPORT_RECORDS = 2_000
PUSH_RECORDS = 5_000
CRUD_CALLS = 200


async def _export(conn: Connection, model: str, *, concurrency: int, max_resumes: int = 20) -> tuple[Counter[str], int]:
    """Run a full export, resuming after transient errors; return how often each id was seen, and resumes."""
    sync = conn.sync(model)
    seen: Counter[str] = Counter()
    resumes = 0
    full = True
    while True:
        try:
            async for record in sync.pull(full=full, concurrency=concurrency, page_size=100):
                seen[str(record.id)] += 1
        except TRANSIENT:
            resumes += 1
            assert resumes <= max_resumes, "the export keeps failing"
            full = False  # resume the interrupted export from the stored watermark
            continue
        return seen, resumes


def _account(tally: Tally, sb: Sandbox, slow: FaultCounter) -> int:
    return tally.add_faults(sb.state.counters, slow=slow.slow)


async def _gather(call: Callable[[Any], Awaitable[None]], items: Iterable[Any], *, concurrency: int = 50) -> None:
    """Run ``call(item)`` for every item, ``concurrency`` at a time (the faults' backoffs overlap)."""
    limit = anyio.Semaphore(concurrency)

    async def one(item: Any) -> None:
        async with limit:
            await call(item)

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)


def _record(sb: Sandbox, id_: str) -> Record:
    record = sb.state.customers.get(id_)
    assert record is not None
    return record


# -- exports ----------------------------------------------------------------------------------------------------


async def test_export_of_20k_records_under_faults_is_exactly_once(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings(customers=EXPORT_RECORDS, companies=1, users=2, teams=0))
    expected = {record.id for record in sb.state.customers}
    conn = await connect_key(make_hub(sb.transport()), sb)
    slow = FaultCounter(sb)
    for name, value in FAULTS.items():
        setattr(sb.settings, name, value)
    started = time.perf_counter()
    seen, resumes = await _export(conn, "genericContact", concurrency=4)
    elapsed = time.perf_counter() - started
    faults = _account(tally, sb, slow)

    repeated = sum(n - 1 for n in seen.values() if n > 1)
    missing = len(expected - set(seen))
    unknown = len(set(seen) - expected)
    tally.record("export (in-process)", tried=EXPORT_RECORDS, lost=repeated + missing + unknown)
    tally.note(
        f"export: {len(seen)} unique contacts of {EXPORT_RECORDS} in {elapsed:.1f}s through {faults} injected faults "
        f"({sb.state.counters['requests']} requests, {resumes} resumes); repeated {repeated}, missing {missing}"
    )
    assert faults > 0.05 * sb.state.counters["requests"], "the faults were not injected"
    assert sb.state.counters["faults.burst"] > 0 and sb.state.counters["faults.drop"] > 0
    assert (repeated, missing, unknown) == (0, 0, 0)
    assert len(seen) == EXPORT_RECORDS


async def test_export_over_http_with_dropped_connections_and_slow_responses(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    settings = quiet_settings(customers=HTTP_EXPORT_RECORDS, companies=1, users=2, teams=0)
    with running_sandbox(settings) as (sb, base_url):
        expected = {record.id for record in sb.state.customers}
        conn = await connect_key(make_hub(None), sb, base_url=base_url)
        slow = FaultCounter(sb)
        sb.settings.drop_connection_rate = 0.05
        sb.settings.fault_502_rate = 0.03
        sb.settings.slow_response_rate = 0.2
        sb.settings.slow_response_ms = 150.0
        started = time.perf_counter()
        # The resource iterator: sequential page-number requests over real sockets.
        seen: Counter[str] = Counter()
        async for contact in conn.resources("genericContact").iter(page_size=50):
            seen[str(contact.id)] += 1
        iter_elapsed = time.perf_counter() - started
        # And the concurrent export, over the same sockets.
        exported, resumes = await _export(conn, "genericContact", concurrency=3)
        faults = _account(tally, sb, slow)

    lost = sum(n - 1 for n in seen.values()) + len(expected - set(seen))
    lost += sum(n - 1 for n in exported.values()) + len(expected - set(exported))
    tally.record("export (HTTP)", tried=2 * HTTP_EXPORT_RECORDS, lost=lost)
    tally.note(
        f"HTTP export: {HTTP_EXPORT_RECORDS} contacts twice (iterator {iter_elapsed:.1f}s, concurrent export "
        f"{resumes} resumes) through {faults} faults: {sb.state.counters['faults.drop']} dropped connections, "
        f"{slow.slow} slow responses"
    )
    assert sb.state.counters["faults.drop"] > 0 and slow.slow > 0
    assert lost == 0
    assert set(seen) == expected == set(exported)


# -- bulk push --------------------------------------------------------------------------------------------------


async def test_bulk_push_of_5k_records_under_faults_lands_each_record_exactly_once(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings(customers=0, companies=1))
    conn = await connect_key(make_hub(sb.transport()), sb)
    slow = FaultCounter(sb)
    for name, value in FAULTS.items():
        setattr(sb.settings, name, value)
    sb.settings.fault_after_write_rate = 0.1  # bulk submits applied, answers lost
    rows = [
        {"firstName": f"Row{i}", "lastName": "Push", "email": f"row{i}@push.example.com", "externalId": f"push-{i}"}
        for i in range(PUSH_RECORDS)
    ]
    # ambiguous_delay covers the sandbox's job latency (the documented condition for exactly-once); more
    # attempts than the default, so that one batch failing three times running is resent rather than rejected.
    options = PushOptions(poll_interval=0.002, poll_max_interval=0.02, ambiguous_delay=0.25, max_attempts=8)
    started = time.perf_counter()
    reruns = 0
    while True:  # a fault that outlasts every retry stops the push; a rerun resolves what it left in flight
        try:
            report = await conn.sync("genericContact").push(rows, match="externalId", options=options)
        except TRANSIENT:
            reruns += 1
            assert reruns <= 5, "the push keeps failing"
            continue
        break
    elapsed = time.perf_counter() - started
    faults = _account(tally, sb, slow)

    landed = Counter(str(record.attrs.get("externalId")) for record in sb.state.customers)
    duplicated = sum(n - 1 for n in landed.values() if n > 1)
    missing = sum(1 for i in range(PUSH_RECORDS) if landed[f"push-{i}"] == 0)
    rejected = report.rejected
    tally.record("bulk push", tried=PUSH_RECORDS, rejected=rejected, lost=duplicated + missing)
    tally.note(
        f"bulk push: {PUSH_RECORDS} rows in {elapsed:.1f}s, {report.jobs} jobs, {report.requests} requests, "
        f"{faults} faults ({sb.state.counters['faults.after_write_502'] + sb.state.counters['faults.after_write_drop']}"
        f" after-write), {reruns} reruns; duplicated {duplicated}, missing {missing}"
    )
    assert sb.state.counters["faults.after_write_502"] + sb.state.counters["faults.after_write_drop"] > 0
    assert (duplicated, missing, rejected) == (0, 0, 0), report.rejected_rows()[:3]
    assert report.created + report.skipped == PUSH_RECORDS  # a rerun matches (skips) what landed before
    assert len(sb.state.customers) == PUSH_RECORDS


# -- single CRUD calls ------------------------------------------------------------------------------------------


async def test_single_writes_under_faults_are_never_duplicated(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings(customers=0, companies=1))
    conn = await connect_key(make_hub(sb.transport()), sb)
    contacts = conn.resources("genericContact")
    slow = FaultCounter(sb)
    for name, value in FAULTS.items():
        setattr(sb.settings, name, value)
    sb.settings.slow_response_ms = 5.0
    sb.settings.fault_after_write_rate = 0.1

    # create = POST: at most once; exactly once when it reports success
    created: dict[str, str] = {}
    failed_creates: list[str] = []

    async def create(i: int) -> None:
        marker = f"crud-{i}"
        try:
            contact = await contacts.create({"firstName": "Crud", "lastName": str(i), "externalId": marker})
        except (ServerError, APIConnectionError):
            failed_creates.append(marker)
        else:
            created[marker] = str(contact.id)

    await _gather(create, range(CRUD_CALLS))
    by_marker = Counter(str(record.attrs.get("externalId")) for record in sb.state.customers)
    duplicated = sum(n - 1 for n in by_marker.values() if n > 1)
    missing = sum(1 for marker in created if by_marker[marker] != 1)
    applied_unknown = sum(1 for marker in failed_creates if by_marker[marker] == 1)

    # update of a customer = PATCH: never applied twice (its rev moves by at most one per call)
    revs = {id_: _record(sb, id_).rev for id_ in created.values()}
    updates = Counter[str]()

    async def update(id_: str) -> None:
        try:
            await contacts.update(id_, {"locale": "fr-FR"})
        except (ServerError, APIConnectionError):
            updates["failed"] += 1
        else:
            updates["ok"] += 1
        updates["applied twice"] += _record(sb, id_).rev > revs[id_] + 1

    await _gather(update, created.values())

    # delete = DELETE (idempotent, retried): a delete whose first attempt was applied still reports success
    deletes = Counter[str]()

    async def delete(id_: str) -> None:
        try:
            await contacts.delete(id_)
        except (ServerError, APIConnectionError):
            deletes["failed"] += 1
        else:
            deletes["ok"] += 1
            deletes["still there"] += sb.state.customers.get(id_) is not None

    await _gather(delete, created.values())
    double_applied, still_there = updates["applied twice"], deletes["still there"]
    faults = _account(tally, sb, slow)
    after_write = sb.state.counters["faults.after_write_502"] + sb.state.counters["faults.after_write_drop"]

    calls = CRUD_CALLS + len(created) * 2
    lost = duplicated + missing + double_applied + still_there
    failures = len(failed_creates) + updates["failed"] + deletes["failed"]
    tally.record("single writes", tried=calls, rejected=failures, lost=lost)
    tally.note(
        f"single writes: {calls} calls through {faults} faults ({after_write} after-write); creates "
        f"{len(created)} ok / {len(failed_creates)} failed ({applied_unknown} of them applied), updates "
        f"{updates['ok']}/{updates['failed']}, deletes {deletes['ok']}/{deletes['failed']}; duplicated {duplicated}, "
        f"PATCH applied twice {double_applied}"
    )
    assert after_write > 0 and failed_creates, "the faults were not injected"
    assert (duplicated, missing, double_applied, still_there) == (0, 0, 0, 0)


async def test_a_delete_applied_before_its_answer_was_lost_reports_success(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings(customers=3, companies=1))
    conn = await connect_key(make_hub(sb.transport()), sb)
    contacts = conn.resources("genericContact")
    ids = [record.id for record in sb.state.customers]
    sb.settings.fault_paths = r"^/v1/customers/[0-9a-f]{24}$"
    sb.settings.fault_after_write_rate = 1.0  # every delete is applied, then its answer is lost
    outcomes: list[str] = []
    for id_ in ids:
        try:
            await contacts.delete(id_)
        except NotFoundError:
            outcomes.append("not found")
        else:
            outcomes.append("ok")
    sb.settings.fault_after_write_rate = 0.0
    with pytest.raises(NotFoundError):  # a record that never existed is still not found
        await contacts.delete("0" * 24)
    tally.add_faults(sb.state.counters)
    tally.record("single writes", tried=len(ids), lost=outcomes.count("not found"))
    assert outcomes == ["ok"] * len(ids)
    assert len(sb.state.customers) == 0


async def test_a_resent_batch_whose_first_send_landed_late_is_reported_created(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    """The first submit is applied but its answer lost; the rows are looked up before its job ran, so they are sent
    again, and that second job fails ("already exists"): the rows are looked up once more and reported created."""
    sb = Sandbox(quiet_settings(customers=0, companies=1, bulk_processing_seconds=0.2))
    conn = await connect_key(make_hub(sb.transport()), sb)
    inner = sb.faults.decide
    faulted: list[str] = []

    def decide(settings: Any, *, method: str, path: str) -> FaultDecision:
        if method == "POST" and path == "/v1/customers/bulk" and not faulted:
            faulted.append(path)
            return FaultDecision(after_write="502")
        return inner(settings, method=method, path=path)

    sb.faults.decide = decide  # type: ignore[method-assign]
    rows = [{"firstName": f"Late{i}", "externalId": f"late-{i}"} for i in range(40)]
    options = PushOptions(poll_interval=0.01, poll_max_interval=0.05, ambiguous_delay=0.0)
    report = await conn.sync("genericContact").push(rows, match="externalId", options=options)
    tally.add_faults(sb.state.counters)
    landed = Counter(str(record.attrs.get("externalId")) for record in sb.state.customers)
    wrong = report.rejected + sum(n != 1 for n in landed.values()) + (len(landed) != len(rows))
    tally.record("bulk push", tried=len(rows), lost=wrong)
    assert faulted and sb.state.counters["faults.after_write_502"] == 1
    assert report.rejected == 0, report.rejected_rows()[:2]
    assert report.created == len(rows)
    assert sorted(landed.values()) == [1] * len(rows)
