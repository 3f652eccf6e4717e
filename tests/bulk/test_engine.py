"""The generic engine against an in-memory backend with other bulk semantics than the sandbox's.

Kustomer's per-item error shape is UNCONFIRMED: these backends answer the ways it could, and the engine must
never duplicate a record and always isolate the invalid ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from connectors import Connection
from connectors.errors import AuthenticationError, BulkError
from connectors.runtime.bulk import BulkAction, BulkItem, Existing, ItemOutcome, PushOptions
from unified_models import Contact, UnifiedResource

from .conftest import FAST

pytestmark = pytest.mark.anyio


class FakeBackend:
    """Contacts in a dict; a row named ``BAD`` is invalid. ``mode`` picks how job results read."""

    model = "genericContact"
    max_items = 10

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.records: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, list[ItemOutcome]] = {}
        self.submits = 0
        self.fail_submit: Exception | None = None

    def check_push(self) -> None:
        return None

    def match_keys(self) -> Sequence[str]:
        return ("id", "email")

    def key_value(self, obj: UnifiedResource, key: str) -> str | None:
        assert isinstance(obj, Contact)
        if key == "email":
            return obj.email.lower() if obj.email else None
        return obj.id

    def check_custom_key(self, key: str) -> None:
        return None

    def create_body(self, obj: UnifiedResource) -> dict[str, Any]:
        assert isinstance(obj, Contact)
        return {"email": obj.email, "name": obj.first_name}

    def update_body(self, obj: UnifiedResource, current: Existing) -> dict[str, Any] | None:
        body = self.create_body(obj)
        return None if current.raw == body else body

    async def find(self, key: str, values: Sequence[str]) -> dict[str, list[Existing]]:
        self.requests += 1
        out: dict[str, list[Existing]] = {}
        for record_id, record in self.records.items():
            value = record_id if key == "id" else str(record["email"]).lower()
            if value in values:
                out.setdefault(value, []).append(Existing(record_id, dict(record)))
        return out

    async def submit(self, action: BulkAction, items: Sequence[BulkItem]) -> str:
        self.requests += 1
        self.submits += 1
        if self.fail_submit is not None:
            raise self.fail_submit
        job = uuid.uuid4().hex
        invalid = [i for i in items if i.body.get("name") == "BAD"]
        outcomes = []
        for item in items:
            if item in invalid:
                outcomes.append(ItemOutcome(item.ref, error="name must not be BAD"))
                continue
            if self.mode == "all-or-nothing" and invalid:
                outcomes.append(ItemOutcome(item.ref, error="name must not be BAD"))
                continue
            record_id = item.id or uuid.uuid4().hex[:24]
            self.records[record_id] = dict(item.body)
            outcomes.append(ItemOutcome(item.ref, id=record_id))
        if self.mode == "unattributed" and invalid:  # some landed, the results do not say which
            outcomes = [ItemOutcome(o.ref, error="name must not be BAD", uncertain=True) for o in outcomes]
        if self.mode == "silent":
            outcomes = [ItemOutcome(o.ref) for o in outcomes]
        self.jobs[job] = outcomes
        return job

    async def wait(
        self, job_id: str, refs: Sequence[str], *, max_seconds: float, poll_interval: float, poll_max_interval: float
    ) -> list[ItemOutcome]:
        self.requests += 1
        if self.mode == "hang":
            raise BulkError(f"job {job_id} still running")
        return self.jobs[job_id]


def _rows(n: int, bad: Sequence[int] = ()) -> list[dict[str, Any]]:
    return [{"email": f"e{i}@example.com", "firstName": "BAD" if i in bad else f"N{i}"} for i in range(n)]


def _sync(conn: Connection, backend: FakeBackend) -> Any:
    sync = conn.sync("genericContact")
    sync._backend = backend  # type: ignore[assignment]
    return sync


@pytest.mark.parametrize("mode", ["all-or-nothing", "per-item", "unattributed"])
async def test_every_semantics_isolates_invalid_rows_without_duplicates(conn: Connection, mode: str) -> None:
    backend = FakeBackend(mode)
    bad = [3, 14, 15, 27]
    report = await _sync(conn, backend).push(_rows(30, bad), match="email", options=FAST)
    assert (report.created, report.rejected) == (26, 4)
    assert {r.index for r in report.rejected_rows()} == set(bad)
    assert all(r.reason == "name must not be BAD" for r in report.rejected_rows())
    emails = [r["email"] for r in backend.records.values()]
    assert len(emails) == len(set(emails)) == 26


async def test_results_that_mention_nothing_are_looked_up(conn: Connection) -> None:
    backend = FakeBackend("silent")
    report = await _sync(conn, backend).push(_rows(12), match="email", options=FAST)
    assert report.created == 12 and len(backend.records) == 12
    assert backend.submits == 2  # nothing sent twice


async def test_unknown_outcome_of_updates_is_resent(conn: Connection) -> None:
    backend = FakeBackend("silent")
    backend.records = {f"id{i}": {"email": f"e{i}@example.com", "name": "old"} for i in range(3)}
    report = await _sync(conn, backend).push(_rows(3), match="email", options=FAST)
    assert report.rejected == 3 and "gave up after 3 attempts" in (report.results[0].reason or "")
    assert backend.submits == 3  # updates are safe to resend, up to max_attempts


async def test_a_job_that_never_finishes_fails_typed_and_is_recovered_later(conn: Connection) -> None:
    backend = FakeBackend("hang")
    sync = _sync(conn, backend)
    with pytest.raises(BulkError, match="still running"):
        await sync.push(_rows(5), match="email", options=FAST)
    assert conn.session.store is not None
    ledger = conn.session.store.get_watermark(f"{conn.id}:genericContact:bulk-jobs")
    assert ledger is not None and len(ledger["jobs"]) == 1
    (entry,) = ledger["jobs"].values()
    assert entry["job"] and entry["refs"] == [f"r{i}" for i in range(5)] and all(entry["keys"])
    backend.mode = "per-item"
    report = await sync.push(_rows(5), match="email", options=FAST)
    assert report.recovered_jobs == 1
    assert (report.created, report.updated, report.skipped) == (0, 0, 5)  # the hung job had written them


async def test_fatal_errors_surface_typed(conn: Connection) -> None:
    backend = FakeBackend("per-item")
    backend.fail_submit = AuthenticationError("token revoked", status_code=401)
    with pytest.raises(AuthenticationError, match="token revoked"):
        await _sync(conn, backend).push(_rows(25), match="email", options=PushOptions(batch_size=5, concurrency=3))
    # Jobs cancelled around their submit stay recorded (they might exist); the next push resolves them.
    assert conn.session.store is not None
    ledger = conn.session.store.get_watermark(f"{conn.id}:genericContact:bulk-jobs")
    assert ledger is not None and all(entry["job"] is None for entry in ledger["jobs"].values())
    backend.fail_submit = None
    report = await _sync(conn, backend).push(_rows(25), match="email", options=FAST)
    assert report.recovered_jobs == len(ledger["jobs"]) and report.created == 25
    assert conn.session.store.get_watermark(f"{conn.id}:genericContact:bulk-jobs") == {"v": 1, "jobs": {}}
