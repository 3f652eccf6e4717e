"""``connection.resources(model)`` against the sandbox: every model and operation, filters, pagination."""

from __future__ import annotations

from typing import Any

import pytest

from connectors import Connection
from connectors.errors import (
    InvalidCursorError,
    MappingError,
    NotFoundError,
    QueryError,
    UnsupportedOperationError,
)
from connectors.kustomer.sandbox import Sandbox
from unified_models import Company, Contact, Engagement, ref

pytestmark = pytest.mark.anyio


def _requests(sandbox: Sandbox) -> int:
    return int(sandbox.state.counters.get("requests", 0))


async def test_contact_crud_and_partial_update_keeps_company(connection: Connection, sandbox: Sandbox) -> None:
    contacts = connection.resources("genericContact")
    company = (await connection.resources("genericCompany").list(limit=1)).data[0]
    created = await contacts.create(
        Contact(
            first_name="Ada",
            last_name="Lovelace",
            email="ada@example.com",
            phones=[{"type": "mobile", "value": "+15550100"}],  # type: ignore[list-item]
            company=company.as_ref(),
            external_id="ext-ada",
            tags=["vip"],
            custom_fields={"loyaltyTierStr": "gold"},
        )
    )
    assert created.id and created.first_name == "Ada" and created.company == company.as_ref()
    updated = await contacts.update(created.id, {"firstName": "Augusta"})
    assert updated.first_name == "Augusta"
    assert updated.last_name == "Lovelace"  # the other half of Kustomer's single name survives
    assert updated.company == company.as_ref()  # Kustomer unlinks on omission; we always resend it
    assert updated.custom_fields["loyaltyTierStr"] == "gold"
    fetched = await contacts.retrieve(created.id, include_raw=True)
    assert fetched.raw is not None and fetched.raw["type"] == "customer"
    await contacts.delete(created.id)
    with pytest.raises(NotFoundError):
        await contacts.retrieve(created.id)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"email": "lookup@example.com"}, 1),
        ({"phone": "+15550199"}, 1),
        ({"externalId": "lookup-1"}, 1),
        ({"email": "nobody@example.com"}, 0),
    ],
)
async def test_lookup_filters_use_lookup_paths(
    connection: Connection, sandbox: Sandbox, filters: dict[str, Any], expected: int
) -> None:
    contacts = connection.resources("genericContact")
    await contacts.create(
        {"firstName": "Look", "email": "lookup@example.com", "phone": "+15550199", "externalId": "lookup-1"}
    )
    searches_before = int(sandbox.state.counters.get("search", 0))
    page = await contacts.list(filters=filters)
    assert len(page.data) == expected
    assert page.next is None
    assert int(sandbox.state.counters.get("search", 0)) == searches_before  # no search budget spent


async def test_search_filters(connection: Connection) -> None:
    contacts = connection.resources("genericContact")
    made = await contacts.create({"firstName": "Zebedee", "lastName": "Quux", "tags": ["zz-tag"]})
    by_name = await contacts.list(filters={"name": "Zebedee"})
    assert [c.id for c in by_name.data] == [made.id]
    by_tag = await contacts.list(filters={"tags": "zz-tag"})
    assert made.id in [c.id for c in by_tag.data]
    gold = await contacts.list(filters={"custom.loyaltyTierStr": "gold"}, limit=100)
    assert gold.data and all(c.custom_fields.get("loyaltyTierStr") == "gold" for c in gold.data)
    numeric = await contacts.list(filters={"custom.lifetimeValueNum": {"gte": 1000}}, limit=100)
    assert all(float(c.custom_fields["lifetimeValueNum"]) >= 1000 for c in numeric.data)
    by_ids = await contacts.list(filters={"ids": [made.id, "0" * 24]})
    assert [c.id for c in by_ids.data] == [made.id]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"favouriteColour": "red"}, "filters.favouriteColour"),
        ({"custom.notSuffixed": 1}, "custom.notSuffixed"),
        ({"custom.loyaltyTierStr": {"approx": "gold"}}, "custom.loyaltyTierStr"),
        ({"updatedAfter": "yesterday"}, "updatedAfter"),
        ({"ids": "abc"}, "filters.ids"),
        ({"ids": ["a"], "email": "x@example.com"}, "filters.ids"),
    ],
)
async def test_bad_filters_are_query_errors_before_any_request(
    connection: Connection, sandbox: Sandbox, filters: dict[str, Any], field: str
) -> None:
    before = _requests(sandbox)
    with pytest.raises(QueryError) as info:
        await connection.resources("genericContact").list(filters=filters)
    assert info.value.field == field
    assert _requests(sandbox) == before


async def test_search_pages_past_the_100_page_cap_without_gaps_or_repeats(
    big_connection: Connection, big_sandbox: Sandbox
) -> None:
    customers = [r for r in big_sandbox.state.collections["customers"] if r.deleted_ms is None]
    total = len(customers)
    stamps = [r.updated_ms for r in customers]
    assert len(set(stamps)) < len(stamps) / 2  # many customers share a timestamp
    contacts = big_connection.resources("genericContact")
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        page = await contacts.list(limit=2, filters={"createdSince": "2000-01-01T00:00:00Z"}, cursor=cursor)
        pages += 1
        seen.extend(c.id or "" for c in page.data)
        if page.next is None:
            break
        cursor = page.next
    assert pages > 100
    assert len(seen) == len(set(seen)) == total


async def test_keyset_list_with_date_filter_and_descending_sort(big_connection: Connection) -> None:
    contacts = big_connection.resources("genericContact")
    ascending = [c async for c in contacts.iter(filters={"updatedSince": "2000-01-01T00:00:00Z"}, page_size=7)]
    descending = [c async for c in contacts.iter(sort="-updatedAt", page_size=7, filters={"name": ""})]
    assert len({c.id for c in ascending}) == len(ascending) == 250
    assert {c.id for c in descending} == {c.id for c in ascending}
    assert [c.updated_at for c in descending] == sorted((c.updated_at for c in descending), reverse=True)


async def test_plain_list_iteration_and_cursor_tampering(big_connection: Connection) -> None:
    contacts = big_connection.resources("genericContact")
    everything = [c.id async for c in contacts.iter(page_size=100)]
    assert len(everything) == len(set(everything)) == 250
    page = await contacts.list(limit=10)
    assert page.next
    tampered = page.next[:-2] + ("AA" if not page.next.endswith("AA") else "BB")
    with pytest.raises(InvalidCursorError):
        await contacts.list(limit=10, cursor=tampered)
    with pytest.raises(InvalidCursorError):  # a cursor of another query
        await contacts.list(limit=10, cursor=page.next, filters={"name": "a"})


async def test_company_crud_and_unsupported_delete(connection: Connection, sandbox: Sandbox) -> None:
    companies = connection.resources("genericCompany")
    with pytest.raises(MappingError) as missing:
        await companies.create({"domains": ["nameless.example"]})
    assert missing.value.field == "name"
    made = await companies.create(Company(name="Initech", domains=["initech.example"], employee_count=120))
    assert made.domains == ["initech.example"]
    changed = await companies.update(made.id or "", {"employeeCount": 130})
    assert changed.employee_count == 130 and changed.name == "Initech"
    before = _requests(sandbox)
    with pytest.raises(UnsupportedOperationError, match="no endpoint to delete a company"):
        await companies.delete(made.id or "")
    assert _requests(sandbox) == before
    found = await companies.list(filters={"externalId": "missing"})
    assert found.data == []


async def test_users_and_workspaces(connection: Connection, sandbox: Sandbox) -> None:
    users = (await connection.resources("genericUser").list(limit=5)).data
    assert users and all(u.id for u in users)
    with pytest.raises(UnsupportedOperationError):
        await connection.resources("genericUser").delete(users[0].id or "")
    teams = connection.resources("genericWorkspace")
    team = await teams.create({"name": "Escalations", "members": [u.as_ref() for u in users[:3]]})
    assert [m.id for m in team.members] == [u.id for u in users[:3]]
    before = _requests(sandbox)
    expanded = await teams.retrieve(team.id or "", expand=["members"])
    assert _requests(sandbox) - before == 2  # the team, then ONE multi-get for all members (no N+1)
    assert [m.resource.id for m in expanded.members if m.resource] == [u.id for u in users[:3]]
    renamed = await teams.update(team.id or "", {"displayName": "Escalations team"})
    assert renamed.display_name == "Escalations team" and renamed.name == "Escalations"
    await teams.delete(team.id or "")
    with pytest.raises(NotFoundError):
        await teams.retrieve(team.id or "")
    with pytest.raises(QueryError, match="cannot search"):
        await teams.list(filters={"name": "x"})


async def test_engagements_conversations_and_notes(connection: Connection) -> None:
    engagements = connection.resources("crmEngagement")
    contact = (await connection.resources("genericContact").list(limit=1)).data[0]
    owner = (await connection.resources("genericUser").list(limit=1)).data[0]
    call = await engagements.create(
        Engagement(
            type="call",
            direction="inbound",
            status="inProgress",
            title="Billing question",
            description="Customer asked about the March invoice",
            started_at="2026-02-01T10:00:00Z",  # type: ignore[arg-type]
            owner=owner.as_ref(),
            contacts=[contact.as_ref()],
        )
    )
    assert call.type == "call" and call.direction == "inbound" and call.status == "inProgress"
    assert call.owner == owner.as_ref() and call.contacts == [contact.as_ref()]
    done = await engagements.update(call.id or "", {"status": "completed"})
    assert done.status == "completed"
    note = await engagements.create(
        {
            "type": "note",
            "description": "Left a voicemail",
            "startedAt": "2026-02-01T11:00:00Z",
            "contacts": [contact.as_ref()],
        }
    )
    assert (note.id or "").startswith("note:")
    again = await engagements.retrieve(note.id or "")
    assert again.type == "note" and again.description == "Left a voicemail"
    notes = await engagements.list(filters={"type": "note"}, limit=100)
    assert note.id in [n.id for n in notes.data]
    # A type filter searches the channels of conversations' messages (a new conversation has none yet).
    emails = await engagements.list(filters={"type": "email"}, limit=100)
    assert emails.data and all(e.type == "email" for e in emails.data)
    every = [e.id async for e in engagements.iter(page_size=50)]
    assert call.id in every and note.id in every and len(every) == len(set(every))
    await engagements.delete(note.id or "")
    with pytest.raises(NotFoundError):
        await engagements.retrieve(note.id or "")


async def test_crm_models_after_provisioning(crm_connection: Connection) -> None:
    conn = crm_connection
    stage = await conn.resources("crmStage").create({"name": "Discovery", "type": "open", "order": 0})
    pipeline = await conn.resources("crmPipeline").create({"name": "New business", "stages": [stage.as_ref()]})
    contact = (await conn.resources("genericContact").list(limit=1)).data[0]
    opp = await conn.resources("crmOpportunity").create(
        {
            "name": "Initech renewal",
            "amount": 12000,
            "currency": "usd",
            "status": "open",
            "closeDate": "2026-06-30",
            "stage": stage.as_ref(),
            "pipeline": pipeline.as_ref(),
            "contacts": [contact.as_ref()],
        }
    )
    assert opp.amount == 12000 and opp.currency == "USD" and str(opp.close_date) == "2026-06-30"
    won = await conn.resources("crmOpportunity").update(opp.id or "", {"status": "won", "probability": 100})
    assert won.status == "won" and won.name == "Initech renewal" and won.stage == stage.as_ref()
    found = await conn.resources("crmOpportunity").list(filters={"name": "Initech"})
    assert [o.id for o in found.data] == [opp.id]
    expanded = await conn.resources("crmOpportunity").retrieve(opp.id or "", expand=["stage", "contacts"])
    assert expanded.stage and expanded.stage.resource and expanded.stage.resource.name == "Discovery"  # type: ignore[attr-defined]
    with pytest.raises(MappingError) as bad:
        await conn.resources("crmOpportunity").create({"name": "x", "stage": ref("crmPipeline", pipeline.id or "")})
    assert bad.value.field == "stage"
    await conn.resources("crmOpportunity").delete(opp.id or "")


async def test_custom_klass_objects(connection: Connection) -> None:
    from connectors.kustomer.provision import provision_klass

    first = await provision_klass(connection, "subscription", "Subscription", [("Plan", "text"), ("Seats", "number")])
    second = await provision_klass(connection, "subscription", "Subscription", [("Plan", "text"), ("Seats", "number")])
    assert first.klasses_created == ["subscription"] and first.attributes_created["subscription"] == [
        "planStr",
        "seatsNum",
    ]
    assert not second.changed
    subs = connection.resources("custom:subscription")
    made = await subs.create({"title": "Acme - Pro", "customFields": {"planStr": "pro", "seatsNum": 25}})
    assert made.model_id == "custom:subscription" and made.custom_fields == {"planStr": "pro", "seatsNum": 25}
    changed = await subs.update(made.id or "", {"customFields": {"seatsNum": 30}})
    assert changed.custom_fields["seatsNum"] == 30 and changed.title == "Acme - Pro"
    listed = await subs.list()
    assert [s.id for s in listed.data] == [made.id]


async def test_provisioning_is_idempotent(connection: Connection, sandbox: Sandbox) -> None:
    from connectors.kustomer.provision import provision_crm

    first = await provision_crm(connection)
    assert sorted(first.klasses_created) == ["crm-opportunity", "crm-pipeline", "crm-stage"]
    assert first.attributes_created["crm-opportunity"][:2] == ["amountNum", "currencyStr"]
    second = await provision_crm(connection)
    assert not second.changed
    assert sorted(second.klasses_existing) == ["crm-opportunity", "crm-pipeline", "crm-stage"]


async def test_custom_field_definitions_and_coercion_errors(connection: Connection, sandbox: Sandbox) -> None:
    fields = connection.fields("genericContact")
    listed = {f.key: f for f in await fields.list()}
    assert listed["firstName"].type == "text" and not listed["firstName"].is_custom
    assert listed["company"].type == "reference" and listed["company"].reference_model == "genericCompany"
    assert listed["loyaltyTierStr"].type == "select" and listed["loyaltyTierStr"].options
    created = await fields.create("Assigned Region", "select", options=["emea", "amer"], key="region")
    assert created.provider_key == "assignedRegionStr" and created.key == "region"
    contact = await connection.resources("genericContact").create(
        {"firstName": "R", "customFields": {"region": "emea"}}
    )
    assert contact.custom_fields["region"] == "emea"
    before = _requests(sandbox)
    with pytest.raises(MappingError) as wrong:
        await connection.resources("genericContact").create(
            {"firstName": "R", "customFields": {"lifetimeValueNum": "lots"}}
        )
    assert wrong.value.field == "customFields.lifetimeValueNum"
    assert _requests(sandbox) == before
    with pytest.raises(MappingError):
        await fields.create("Bad", "list.select")


async def test_plugin_override_of_one_mapper(sandbox: Sandbox, memory_store: object) -> None:
    import importlib.util
    import pathlib

    from connectors import Connectors, Settings, build_registry

    path = pathlib.Path(__file__).parents[2] / "examples" / "override_contact_mapper.py"
    spec = importlib.util.spec_from_file_location("override_contact_mapper", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registry = build_registry(plugins=[module], load_entrypoints=False)
    assert registry.mapper_plugin("kustomer", "genericContact") == "override_contact_mapper"
    hub = Connectors(settings=Settings(), store=memory_store, registry=registry, transport=sandbox.transport())  # type: ignore[arg-type]
    try:
        conn = await hub.connect("kustomer", "t", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
        page = await conn.resources("genericContact").list(limit=3, include_raw=True)
        for contact in page.data:
            assert contact.raw is not None
            assert contact.first_name == contact.raw["attributes"]["displayName"]
    finally:
        await hub.aclose()
