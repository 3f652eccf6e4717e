"""Bulk push against the in-process sandbox: local validation, matching, split retries, no duplicates."""

from __future__ import annotations

import random
from typing import Any

import pytest

from connectors import Connection, Connectors
from connectors.errors import (
    ConfigurationError,
    InsufficientPermissionsError,
    MappingError,
    UnsupportedOperationError,
)
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.bulk import PushOptions, PushProgress, RowResult
from unified_models import Contact

from .conftest import DEFECTS, FAST, contact_rows, customers_with_email, live_count

pytestmark = pytest.mark.anyio


def _requests(sb: Sandbox, method: str | None = None, suffix: str = "") -> int:
    return sum(1 for e in sb.state.request_log if (method is None or e.method == method) and e.path.endswith(suffix))


async def test_thousand_rows_three_percent_invalid_land_exactly_once(conn: Connection, sb: Sandbox) -> None:
    rng = random.Random(7)
    rows = contact_rows(1000, prefix="k")
    bad = sorted(rng.sample(range(1000), 30))
    broken: dict[int, str] = {}
    for n, index in enumerate(bad):
        name, breaker, _ = DEFECTS[n % len(DEFECTS)]
        breaker(rows[index])
        broken[index] = name
    before = live_count(sb, "customers")

    report = await conn.sync("genericContact").push(rows, match="email", options=FAST)

    assert (report.rows, report.created, report.rejected, report.updated, report.skipped) == (1000, 970, 30, 0, 0)
    rejected = {r.index: r for r in report.rejected_rows()}
    assert set(rejected) == set(bad)
    for index, result in rejected.items():
        assert result.reason, f"row {index} has no reason"
        if broken[index] == "bad suffix":
            assert result.field == "customFields.tier" and "suffix" in result.reason
        elif broken[index] == "bad type":
            assert result.field == "customFields.scoreNum" and "number" in result.reason
        elif broken[index] == "bad email":
            assert result.field == "email"
        elif broken[index] == "bad date":
            assert result.field == "customFields.renewalAt"
        else:  # only Kustomer knows: the reason is Kustomer's, found by split retries
            assert "E.164" in result.reason
    assert live_count(sb, "customers") == before + 970
    for index, row in enumerate(rows):
        found = customers_with_email(sb, row["email"]) if broken.get(index) != "bad email" else []
        assert len(found) == (0 if index in broken else 1), (index, found)
    created = {r.index: r.id for r in report.results if r.status == "created"}
    assert len(set(created.values())) == 970
    sample = sb.state.customers.get(created[min(created)])
    assert sample is not None and sample.attrs["custom"]["tierStr"] in ("gold", "silver")
    # Locally invalid rows never cost a request: 970 valid rows, at most 100 per job.
    server_side = sum(1 for i in bad if not dict((n, local) for n, _, local in DEFECTS)[broken[i]])
    assert report.jobs >= 10 + server_side
    assert sum(r.status == "rejected" for r in report.results) == 30


async def test_rerun_is_idempotent_and_updates_changed_rows(conn: Connection, sb: Sandbox) -> None:
    rows = contact_rows(150, prefix="again")
    sync = conn.sync("genericContact")
    first = await sync.push(rows, match="email", options=FAST)
    assert first.created == 150
    count = live_count(sb, "customers")

    second = await sync.push(rows, match="email", options=FAST)
    assert (second.created, second.updated, second.skipped, second.jobs) == (0, 0, 150, 0)

    for row in rows[:10]:
        row["lastName"] = "Changed"
    third = await sync.push(rows, match="email", options=FAST)
    assert (third.created, third.updated, third.skipped) == (0, 10, 140)
    assert live_count(sb, "customers") == count
    (cid,) = customers_with_email(sb, rows[0]["email"])
    record = sb.state.customers.get(cid)
    assert record is not None and record.attrs["name"] == "First0 Changed"


async def test_update_keeps_the_company_link_and_other_emails(conn: Connection, sb: Sandbox) -> None:
    company = await conn.resources("genericCompany").create({"name": "Keep Co"})
    contact = await conn.resources("genericContact").create(
        {
            "firstName": "Ann",
            "lastName": "Lee",
            "emails": [{"type": "work", "value": "ann@example.com"}, {"value": "ann2@example.com"}],
            "company": {"model": "genericCompany", "id": company.id},
        }
    )
    report = await conn.sync("genericContact").push(
        [{"email": "ANN@example.com", "lastName": "Smith"}], match="email", options=FAST
    )
    assert report.updated == 1 and report.results[0].id == contact.id
    record = sb.state.customers.get(contact.id or "")
    assert record is not None
    assert record.attrs["name"] == "Ann Smith"
    assert record.rels["company"] == company.id
    # Matched case-insensitively; the row's spelling is written over the first entry, whose type is kept.
    assert [(e.get("type"), e["email"]) for e in record.attrs["emails"]] == [
        ("work", "ANN@example.com"),
        ("other", "ann2@example.com"),
    ]


async def test_a_rejected_batch_is_bisected_until_the_invalid_row_is_alone(conn: Connection, sb: Sandbox) -> None:
    rows = contact_rows(64, prefix="split")
    rows[37]["phone"] = "0000"  # only Kustomer refuses it
    report = await conn.sync("genericContact").push(rows, match="email", options=FAST)
    assert report.created == 63 and report.rejected == 1
    (bad,) = report.rejected_rows()
    assert bad.index == 37 and "E.164" in (bad.reason or "")
    # 1 rejected job of 64, then 2 halves, ... down to the lone row: 2 jobs per level, 6 levels.
    assert report.jobs == 1 + 2 * 6
    assert customers_with_email(sb, rows[37]["email"]) == []
    assert all(len(customers_with_email(sb, r["email"])) == 1 for i, r in enumerate(rows) if i != 37)


async def test_request_level_refusal_is_split_too(conn: Connection, sb: Sandbox) -> None:
    sb.settings.max_body_bytes = 6_000  # a job of 40 rows is too large: 413 for the whole request
    rows = contact_rows(40, prefix="big")
    report = await conn.sync("genericContact").push(rows, match="email", options=FAST)
    assert report.created == 40 and report.rejected == 0
    assert any(e.status == 413 for e in sb.state.request_log)


async def test_dry_run_writes_nothing(conn: Connection, sb: Sandbox) -> None:
    existing = next(iter(sb.state.customers.live.values()))
    email = existing.attrs["emails"][0]["email"]
    rows: list[dict[str, Any]] = [
        {"email": email, "lastName": "Dry"},
        {"email": "new-dry@example.com", "firstName": "New"},
        {"email": "bad", "firstName": "Bad"},
    ]
    before = live_count(sb, "customers")
    writes = _requests(sb, "POST", "/bulk") + _requests(sb, "PUT", "/bulk")
    report = await conn.sync("genericContact").push(rows, match="email", dry_run=True, options=FAST)
    assert report.dry_run
    assert [(r.index, r.status) for r in sorted(report.results, key=lambda r: r.index)] == [
        (0, "updated"),
        (1, "created"),
        (2, "rejected"),
    ]
    assert report.results[0].id == existing.id or any(r.id == existing.id for r in report.results)
    assert live_count(sb, "customers") == before
    assert _requests(sb, "POST", "/bulk") + _requests(sb, "PUT", "/bulk") == writes
    assert conn.session.store is not None
    assert conn.session.store.get_watermark(f"{conn.id}:genericContact:bulk-jobs") is None


async def test_duplicate_keys_in_one_push_update_the_first_record(conn: Connection, sb: Sandbox) -> None:
    rows = [
        {"email": "dup@example.com", "firstName": "One"},
        {"email": "other@example.com", "firstName": "Other"},
        {"email": "DUP@example.com", "firstName": "Two"},
    ]
    report = await conn.sync("genericContact").push(rows, match="email", options=FAST)
    assert (report.created, report.updated) == (2, 1)
    (cid,) = customers_with_email(sb, "dup@example.com")
    record = sb.state.customers.get(cid)
    assert record is not None and record.attrs["name"] == "Two"


async def test_ambiguous_match_is_rejected(conn: Connection, sb: Sandbox) -> None:
    contacts = conn.resources("genericContact")
    a = await contacts.create({"email": "twin@example.com", "firstName": "A"})
    b = await contacts.create({"email": "twin@example.com", "firstName": "B"})
    report = await conn.sync("genericContact").push(
        [{"email": "twin@example.com", "lastName": "X"}], match="email", options=FAST
    )
    (result,) = report.results
    assert result.status == "rejected" and result.field == "email"
    assert (
        "2 existing records" in (result.reason or "")
        and a.id in (result.reason or "")
        and b.id in (result.reason or "")
    )


async def test_rows_without_the_match_key_are_rejected(conn: Connection) -> None:
    report = await conn.sync("genericContact").push([{"firstName": "Nokey"}], match="email", options=FAST)
    (result,) = report.results
    assert result.status == "rejected" and result.field == "email" and "match key" in (result.reason or "")


async def test_companies_match_on_name_and_require_a_name(conn: Connection, sb: Sandbox) -> None:
    existing = next(iter(sb.state.companies.live.values()))
    name = existing.attrs["name"]
    rows: list[dict[str, Any]] = [
        {"name": f"  {name.upper()} ", "employeeCount": 77},
        {"name": "Brand New Co", "domains": ["brand.example"]},
        {"domains": ["noname.example"]},
        {"name": "Bad Count", "employeeCount": -1},
    ]
    report = await conn.sync("genericCompany").push(rows, match="name", options=FAST)
    by_index = {r.index: r for r in report.results}
    assert by_index[0].status == "updated" and by_index[0].id == existing.id
    assert by_index[1].status == "created"
    assert by_index[2].status == "rejected" and by_index[2].field == "name"
    assert by_index[3].status == "rejected" and by_index[3].field == "employeeCount"
    record = sb.state.companies.get(existing.id)
    assert record is not None and record.attrs["employeeCount"] == 77
    assert record.attrs["name"] == name.upper()  # matched case-insensitively, written as the row says


async def test_companies_match_on_external_id(conn: Connection, sb: Sandbox) -> None:
    rows = [{"name": f"Ext {i}", "externalId": f"co-{i}"} for i in range(5)]
    sync = conn.sync("genericCompany")
    assert (await sync.push(rows, match="externalId", options=FAST)).created == 5
    rows[2]["name"] = "Renamed"
    again = await sync.push(rows, match="external_id", options=FAST)
    assert (again.created, again.updated, again.skipped) == (0, 1, 4)


async def test_custom_objects_match_on_external_id(conn: Connection, sb: Sandbox) -> None:
    rows = [
        {"title": f"Order {i}", "externalId": f"bulk-order-{i}", "customFields": {"orderTotalNum": i * 10}}
        for i in range(6)
    ]
    rows[4]["customFields"] = {"orderTotal": 1}  # no suffix
    sync = conn.sync("custom:order")
    report = await sync.push(rows, match="externalId", options=FAST)
    assert (report.created, report.rejected) == (5, 1)
    rows[0]["customFields"] = {"orderTotalNum": 999}
    again = await sync.push(rows, match="externalId", options=FAST)
    assert (again.updated, again.skipped, again.rejected, again.created) == (1, 4, 1, 0)
    kobjects = [
        r for r in sb.state.kobjects.live.values() if str(r.attrs.get("externalId", "")).startswith("bulk-order-")
    ]
    assert len(kobjects) == 5


async def test_match_on_id_updates_and_rejects_unknown_ids(conn: Connection, sb: Sandbox) -> None:
    existing = next(iter(sb.state.customers.live.values()))
    rows = [
        {"id": existing.id, "lastName": "ById"},
        {"id": "0123456789abcdef01234567", "lastName": "Ghost"},
        {"firstName": "No Id", "email": "noid@example.com"},
    ]
    report = await conn.sync("genericContact").push(rows, match="id", options=FAST)
    by_index = {r.index: r for r in report.results}
    assert by_index[0].status == "updated" and by_index[0].id == existing.id
    assert by_index[1].status == "rejected" and "no genericContact with id" in (by_index[1].reason or "")
    assert by_index[2].status == "created"


async def test_without_match_every_row_is_created(conn: Connection, sb: Sandbox) -> None:
    before = live_count(sb, "customers")
    report = await conn.sync("genericContact").push(contact_rows(3, prefix="nomatch"), options=FAST)
    assert report.created == 3 and live_count(sb, "customers") == before + 3
    assert not any(e.path == "/v1/customers/search" for e in sb.state.request_log)


async def test_unified_models_and_async_iterables_are_accepted(conn: Connection) -> None:
    async def rows() -> Any:
        yield Contact(email="model@example.com", first_name="Model")
        yield {"email": "dict@example.com"}

    report = await conn.sync("genericContact").push(rows(), match="email", options=FAST)
    assert report.created == 2


async def test_wrong_row_types_are_rejected(conn: Connection) -> None:
    from unified_models import Company

    report = await conn.sync("genericContact").push(
        [Company(name="x"), "not a row"],
        match=None,
        options=FAST,  # type: ignore[list-item]
    )
    assert [r.status for r in report.results] == ["rejected", "rejected"]
    assert "Contact" in (report.results[0].reason or "")


async def test_progress_and_result_callbacks(conn: Connection) -> None:
    seen: list[PushProgress] = []
    results: list[tuple[RowResult, Any]] = []
    rows = contact_rows(12, prefix="cb")
    rows[3]["email"] = "broken"
    report = await conn.sync("genericContact").push(
        rows,
        match="email",
        on_progress=seen.append,
        on_result=lambda r, row: results.append((r, row)),
        keep_results="rejected",
        options=PushOptions(batch_size=5, poll_interval=0.002, poll_max_interval=0.01),
    )
    assert [r.status for r in report.results] == ["rejected"]
    assert len(results) == 12 and {r.index for r, _ in results} == set(range(12))
    assert next(row for r, row in results if r.index == 3) is rows[3]
    assert seen[-1].done == 12 and seen[-1].created == 11 and seen[-1].requests == report.requests
    assert report.jobs == 3  # 11 valid rows in jobs of 5


async def test_keep_results_none_keeps_counts_only(conn: Connection) -> None:
    report = await conn.sync("genericContact").push(
        contact_rows(5, prefix="none"), match="email", keep_results="none", options=FAST
    )
    assert report.created == 5 and report.results == []
    summary = report.to_dict(include_results=False)
    assert summary["created"] == 5 and "results" not in summary


async def test_lost_acknowledgement_does_not_duplicate(conn: Connection, sb: Sandbox) -> None:
    # Every bulk create is applied but answered with a 502 or a dropped connection.
    sb.settings.fault_after_write_rate = 1.0
    sb.settings.fault_paths = r"/v1/customers/bulk$"
    rows = contact_rows(20, prefix="lost")
    report = await conn.sync("genericContact").push(rows, match="email", options=FAST)
    sb.settings.fault_after_write_rate = 0.0
    assert report.created == 20 and report.rejected == 0
    assert all(len(customers_with_email(sb, r["email"])) == 1 for r in rows)
    assert conn.session.store is not None
    assert conn.session.store.get_watermark(f"{conn.id}:genericContact:bulk-jobs") == {"v": 1, "jobs": {}}


async def test_lost_acknowledgement_without_key_is_not_retried(conn: Connection, sb: Sandbox) -> None:
    sb.settings.fault_after_write_rate = 1.0
    sb.settings.fault_paths = r"/v1/customers/bulk$"
    before = live_count(sb, "customers")
    report = await conn.sync("genericContact").push(contact_rows(3, prefix="nokey"), options=FAST)
    sb.settings.fault_after_write_rate = 0.0
    assert report.rejected == 3 and "duplicate" in (report.results[0].reason or "")
    assert live_count(sb, "customers") == before + 3  # applied once, never twice


async def test_permissions_are_checked_before_any_request(bulk_hub: Connectors, sb: Sandbox) -> None:
    roles = ["org.permission.customer.read", "org.permission.customer.create", "org.permission.customer.update"]
    roles.append("org.permission.search.create")
    conn = await bulk_hub.connect(
        "kustomer", "tenant-nobulk", api_key=sb.mint_api_key(roles=roles), base_url=sb.base_url
    )
    before = len(sb.state.request_log)
    with pytest.raises(InsufficientPermissionsError) as info:
        await conn.sync("genericContact").push(contact_rows(2), match="email", options=FAST)
    assert "org.permission.bulk.read" in info.value.missing_roles
    assert len(sb.state.request_log) == before


async def test_unsupported_models_and_keys(conn: Connection) -> None:
    with pytest.raises(UnsupportedOperationError):
        await conn.sync("genericUser").push([{"email": "u@example.com"}], options=FAST)
    with pytest.raises(ConfigurationError, match="matched on"):
        await conn.sync("genericCompany").push([{"name": "x"}], match="email", options=FAST)
    with pytest.raises(ConfigurationError):
        PushOptions(concurrency=0)


async def test_check_mapping_names_the_bad_field(conn: Connection) -> None:
    sync = conn.sync("genericContact")
    sync.check_mapping(["firstName", "email", "custom.ageNum", "customFields.tierStr", "external_id"])
    with pytest.raises(MappingError, match=r"customFields\.Age"):
        sync.check_mapping(["custom.Age"])
    with pytest.raises(MappingError, match=r"genericContact\.nickname"):
        sync.check_mapping(["nickname"])
    with pytest.raises(MappingError, match="updatedAt"):
        sync.check_mapping(["updatedAt"])


async def test_concurrent_jobs_all_land(conn: Connection, sb: Sandbox) -> None:
    rows = contact_rows(230, prefix="conc")
    report = await conn.sync("genericContact").push(
        rows, match="email", options=PushOptions(batch_size=20, concurrency=6, poll_interval=0.002, match_group=100)
    )
    assert report.created == 230 and report.jobs == 12
    assert len({r.id for r in report.results}) == 230


async def test_thousand_companies_with_missing_names_and_bad_custom_fields(conn: Connection, sb: Sandbox) -> None:
    rng = random.Random(11)
    rows: list[dict[str, Any]] = [
        {"name": f"Company {i}", "externalId": f"co-bulk-{i}", "customFields": {"seatsNum": i, "planStr": "pro"}}
        for i in range(1000)
    ]
    bad = sorted(rng.sample(range(1000), 30))
    defects = ["missing name", "bad suffix", "bad type"]
    for n, index in enumerate(bad):
        kind = defects[n % 3]
        if kind == "missing name":
            del rows[index]["name"]
        elif kind == "bad suffix":
            rows[index]["customFields"] = {"seats": 3}
        else:
            rows[index]["customFields"] = {"seatsNum": "three"}
    before = live_count(sb, "companies")
    report = await conn.sync("genericCompany").push(rows, match="externalId", options=FAST)
    assert (report.created, report.rejected, report.jobs) == (970, 30, 10)  # nothing invalid reached Kustomer
    fields = {r.index: r.field for r in report.rejected_rows()}
    assert set(fields) == set(bad)
    assert {fields[i] for i in bad} == {"name", "customFields.seats", "customFields.seatsNum"}
    assert live_count(sb, "companies") == before + 970
    external = [str(r.attrs.get("externalId")) for r in sb.state.companies.live.values()]
    assert (
        len([e for e in external if e.startswith("co-bulk-")])
        == len(set(external) & {r["externalId"] for r in rows})
        == 970
    )
