"""Pure parts: reading batch results, change detection, key normalisation, the ledger, the report."""

from __future__ import annotations

import os

import pytest

from connectors.errors import StoreConflictError
from connectors.kustomer.bulk import normalize_key, outcomes_from_batches, unchanged
from connectors.runtime.bulk import ItemOutcome, PushReport, RowResult, _JobLedger
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore


def _batch(success: int, failure: int, **attrs: object) -> dict[str, object]:
    return {"type": "bulk_batch", "attributes": {"successCount": success, "failureCount": failure, **attrs}}


def test_results_are_matched_by_client_ref_per_batch() -> None:
    refs = ["r0", "r1", "r2", "r3"]
    batches = [
        _batch(2, 0, results=[{"_clientRef": "r1", "id": "b"}, {"_clientRef": "r0", "id": "a"}]),
        _batch(0, 2, errors=[{"code": "bad_request", "message": '"name" is required'}]),
    ]
    assert outcomes_from_batches(batches, refs) == [
        ItemOutcome("r0", id="a"),
        ItemOutcome("r1", id="b"),
        ItemOutcome("r2", error='"name" is required (bad_request)'),
        ItemOutcome("r3", error='"name" is required (bad_request)'),
    ]


def test_positional_object_ids_when_results_carry_no_refs() -> None:
    batches = [_batch(2, 0, objectIds=["a", "b"]), _batch(1, 0, objectIds=["c"])]
    assert [o.id for o in outcomes_from_batches(batches, ["x", "y", "z"])] == ["a", "b", "c"]


def test_per_item_errors_and_partial_success() -> None:
    batches = [
        _batch(
            1,
            1,
            results=[{"_clientRef": "r0", "id": "a"}],
            errors=[{"message": "bad phone", "meta": {"_clientRef": "r1"}}],
        )
    ]
    assert outcomes_from_batches(batches, ["r0", "r1"]) == [
        ItemOutcome("r0", id="a"),
        ItemOutcome("r1", error="bad phone"),
    ]


def test_partial_success_without_attribution_is_uncertain() -> None:
    batches = [_batch(2, 1, errors=[{"message": "bad"}])]
    outcomes = outcomes_from_batches(batches, ["a", "b", "c"])
    assert all(o.error == "bad" and o.uncertain for o in outcomes)
    attributed = [
        _batch(2, 1, errors=["bad"], results=[{"_clientRef": "a", "id": "1"}, {"_clientRef": "c", "id": "3"}])
    ]
    assert outcomes_from_batches(attributed, ["a", "b", "c"])[1] == ItemOutcome("b", error="bad")


def test_counts_that_do_not_add_up_make_one_group_and_unknowns() -> None:
    batches = [{"attributes": {"status": "complete", "results": [{"_clientRef": "r0", "id": "a"}]}}]
    assert outcomes_from_batches(batches, ["r0", "r1"]) == [ItemOutcome("r0", id="a"), ItemOutcome("r1")]
    failed = [{"attributes": {"failureCount": 3, "errors": ["boom"]}}]
    assert outcomes_from_batches(failed, ["r0"]) == [ItemOutcome("r0", error="boom")]
    assert outcomes_from_batches([{"attributes": {"failureCount": 1}}], ["r0"])[0].error is not None


def test_unchanged_compares_only_what_is_written() -> None:
    record = {
        "id": "1",
        "attributes": {
            "name": "Ann Lee",
            "emails": [{"id": "e1", "type": "work", "email": "ann@example.com", "verified": False}],
            "custom": {"tierStr": "gold", "scoreNum": 3},
            "tags": ["a"],
        },
        "relationships": {"company": {"data": {"type": "company", "id": "c1"}}},
    }
    assert unchanged({"name": "Ann Lee", "custom": {"tierStr": "gold"}, "company": "c1"}, record)
    assert unchanged({"emails": [{"type": "work", "email": "ann@example.com"}]}, record)
    assert unchanged({"custom": {"scoreNum": 3.0}, "externalId": None}, record)
    assert not unchanged({"custom": {"tierStr": "silver"}}, record)
    assert not unchanged({"company": None}, record)
    assert not unchanged({"tags": ["a", "b"]}, record)
    assert not unchanged({"emails": []}, record)
    assert not unchanged({"custom": {"flagBool": True}}, {"attributes": {"custom": {"flagBool": 1}}})


def test_normalize_key() -> None:
    assert normalize_key("email", " Ann@Example.COM ") == "ann@example.com"
    assert normalize_key("phone", "+1 (555) 010-2000") == "15550102000"
    assert normalize_key("name", "  Acme   LABS ") == "acme labs"
    assert normalize_key("externalId", " X-1 ") == "X-1"
    assert normalize_key("email", "  ") is None
    assert normalize_key("email", None) is None


def test_report_to_dict_sorts_results() -> None:
    report = PushReport(model="genericContact", match="email", dry_run=False, rows=2, created=1, rejected=1)
    report.results = [RowResult(1, "rejected", reason="bad", field="email"), RowResult(0, "created", id="a")]
    data = report.to_dict()
    assert [r["row"] for r in data["results"]] == [0, 1]
    assert data["results"][1] == {"row": 1, "status": "rejected", "id": None, "reason": "bad", "field": "email"}
    assert [r.index for r in report.rejected_rows()] == [1]


@pytest.mark.anyio
async def test_ledger_cas_survives_concurrent_writers() -> None:
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    a = _JobLedger(store, "conn:genericContact:bulk-jobs")
    b = _JobLedger(store, "conn:genericContact:bulk-jobs")
    await a.add("e1", "create", ["r0"], ["h0"])
    await b.add("e2", "update", ["r1"], [None])
    await a.set_job("e1", "job-1")
    entries = await b.entries()
    assert set(entries) == {"e1", "e2"} and entries["e1"]["job"] == "job-1"
    await b.remove("e1", "e2")
    assert await a.entries() == {}

    store.set_watermark = lambda *args, **kwargs: False  # type: ignore[method-assign]
    with pytest.raises(StoreConflictError):
        await a.add("e3", "create", [], [])
    store.close()
