"""The search DSL: contexts, operators, groups, sort/ties, keyset paging, 100-page cap, idsOnly, deleted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox
from connectors.kustomer.sandbox.timeutil import iso

from .conftest import ClientFactory, FakeClock, first_error

pytestmark = pytest.mark.anyio

SEARCH = "/v1/customers/search"


async def search(client: httpx.AsyncClient, body: dict[str, Any], **params: Any) -> httpx.Response:
    return await client.post(SEARCH, json=body, params=params)


async def ids(client: httpx.AsyncClient, body: dict[str, Any], **params: Any) -> list[str]:
    r = await search(client, body, **{"pageSize": 500, **params})
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["data"]]


async def test_equals_contains_in_and_not_set(client: httpx.AsyncClient, sb: Sandbox) -> None:
    target = next(c for c in sb.state.customers if len(c.attrs["emails"]) > 1)
    second = target.attrs["emails"][1]["email"].upper()
    assert await ids(client, {"queryContext": "customer", "and": [{"customer_email": {"equals": second}}]}) == [
        target.id
    ]
    name_part = target.attrs["name"].split()[0].lower()
    found = await ids(client, {"queryContext": "customer", "and": [{"customer_name": {"contains": name_part}}]})
    assert target.id in found
    assert all(name_part in sb.state.customers.live[i].attrs["name"].lower() for i in found)
    tiers = {"in": ["gold", "platinum"]}
    found = await ids(client, {"queryContext": "customer", "and": [{"customer_custom_loyaltyTierStr": tiers}]})
    expected = {c.id for c in sb.state.customers if c.attrs["custom"]["loyaltyTierStr"] in ("gold", "platinum")}
    assert set(found) == expected
    no_phone = await ids(client, {"queryContext": "customer", "and": [{"customer_phone": {"not_set": ""}}]})
    assert set(no_phone) == {c.id for c in sb.state.customers if not c.attrs["phones"]}
    phone = next(c for c in sb.state.customers if c.attrs["phones"])
    digits = phone.attrs["phones"][0]["phone"].replace("+1", "+1 ")
    assert await ids(client, {"queryContext": "customer", "and": [{"customer_phone": {"equals": digits}}]}) == [
        phone.id
    ]


async def test_or_not_nested_and_numbers(client: httpx.AsyncClient, sb: Sandbox) -> None:
    body = {
        "queryContext": "customer",
        "or": [
            {"customer_custom_lifetimeValueNum": {"gte": 4000}},
            {
                "and": [
                    {"customer_custom_marketingOptInBool": {"equals": True}},
                    {"customer_tags": {"equals": "vip"}},
                ]
            },
        ],
        "not": {"customer_custom_loyaltyTierStr": {"equals": "bronze"}},
    }
    found = set(await ids(client, body))

    def matches(c: Any) -> bool:
        custom = c.attrs["custom"]
        either = custom["lifetimeValueNum"] >= 4000 or (custom["marketingOptInBool"] and "vip" in c.attrs["tags"])
        return bool(either and custom["loyaltyTierStr"] != "bronze")

    assert found == {c.id for c in sb.state.customers if matches(c)}
    assert found


async def test_other_contexts(client: httpx.AsyncClient, sb: Sandbox) -> None:
    conv = next(iter(sb.state.conversations))
    customer = conv.rels["customer"]
    found = await ids(
        client,
        {"queryContext": "conversation", "and": [{"conversation_customer_id": {"equals": customer}}]},
    )
    assert set(found) == {c.id for c in sb.state.conversations.related("customer", customer)}
    r = await search(client, {"queryContext": "conversation", "and": [{"conversation_status": {"equals": "open"}}]})
    assert all(d["type"] == "conversation" and d["attributes"]["status"] == "open" for d in r.json()["data"])
    r = await search(client, {"queryContext": "message", "and": [{"message_channel": {"in": ["email", "sms"]}}]})
    assert {d["attributes"]["channel"] for d in r.json()["data"]} <= {"email", "sms"}
    r = await search(client, {"queryContext": "note", "and": [{"note_body": {"contains": "billing"}}]})
    assert all("billing" in d["attributes"]["body"].lower() for d in r.json()["data"])
    r = await search(client, {"queryContext": "company", "and": [{"company_name": {"starts_with": "acme"}}]})
    assert [d["attributes"]["name"][:4] for d in r.json()["data"]] == ["Acme"]
    order = next(iter(sb.state.kobjects))
    total = order.attrs["custom"]["orderTotalNum"]
    r = await search(
        client,
        {"queryContext": "kobject_order", "and": [{"kobject_custom_order_orderTotalNum": {"equals": total}}]},
    )
    assert order.id in [d["id"] for d in r.json()["data"]]
    r = await search(
        client,
        {"queryContext": "kobject_order", "and": [{"kobject_custom_orderStatusStr": {"equals": "paid"}}]},
    )
    assert r.status_code == 200
    assert all(d["type"] == "kobject" for d in r.json()["data"])


async def test_dates_and_time_zone(client: httpx.AsyncClient, sb: Sandbox) -> None:
    stamps = sorted({c.updated_ms for c in sb.state.customers})
    pivot = iso(stamps[len(stamps) // 2])
    found = await ids(client, {"queryContext": "customer", "and": [{"customer_updated_at": {"gte": pivot}}]})
    assert set(found) == {c.id for c in sb.state.customers if iso(c.updated_ms) >= pivot}
    day = {"queryContext": "customer", "and": [{"customer_created_at": {"lt": "2025-06-01"}}]}
    utc = set(await ids(client, day))
    tokyo = set(await ids(client, {**day, "timeZone": "Asia/Tokyo"}))
    assert tokyo <= utc
    r = await search(client, {**day, "timeZone": "Mars/Olympus"})
    assert r.status_code == 400


async def test_sort_with_ties_broken_by_id(client: httpx.AsyncClient, sb: Sandbox) -> None:
    body = {"queryContext": "customer", "sort": [{"customer_updated_at": "asc"}]}
    found = await ids(client, body)
    expected = sorted(sb.state.customers, key=lambda c: (c.updated_ms, c.id))
    assert found == [c.id for c in expected]
    body = {
        "queryContext": "customer",
        "sort": [{"customer_custom_loyaltyTierStr": "desc"}, {"customer_name": "asc"}],
    }
    rows = (await search(client, body, pageSize=500)).json()["data"]
    keys = [(r["attributes"]["custom"]["loyaltyTierStr"], r["attributes"]["name"].lower()) for r in rows]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    default = await ids(client, {"queryContext": "customer"})
    desc = sorted(sb.state.customers, key=lambda c: c.id)
    desc.sort(key=lambda c: c.updated_ms, reverse=True)
    assert default == [c.id for c in desc]


async def test_keyset_paging_over_ties(client: httpx.AsyncClient, sb: Sandbox) -> None:
    """updated_at >= last + id > last-id-at-that-time visits everything exactly once, despite ties."""
    seen: list[str] = []
    last_ts: str | None = None
    last_id = ""
    while True:
        criteria: list[dict[str, Any]] = []
        if last_ts is not None:
            criteria = [
                {
                    "or": [
                        {"customer_updated_at": {"gt": last_ts}},
                        {
                            "and": [
                                {"customer_updated_at": {"equals": last_ts}},
                                {"customer_id": {"gt": last_id}},
                            ]
                        },
                    ]
                }
            ]
        body = {"queryContext": "customer", "and": criteria, "sort": [{"customer_updated_at": "asc"}]}
        page = (await search(client, body, pageSize=7)).json()["data"]
        if not page:
            break
        seen += [p["id"] for p in page]
        last_ts, last_id = page[-1]["attributes"]["updatedAt"], page[-1]["id"]
    assert len(seen) == len(set(seen)) == len(sb.state.customers)


async def test_hundred_page_cap(client: httpx.AsyncClient) -> None:
    body = {"queryContext": "message"}
    r = await search(client, body, page=100, pageSize=1)
    assert r.status_code == 200
    assert r.json()["links"]["next"] == "/v1/customers/search?page=101&pageSize=1"
    r = await search(client, body, page=101, pageSize=1)
    assert r.status_code == 400
    error = first_error(r)
    assert set(error) == {"code", "message", "meta"}  # search errors use the simple shape
    assert "100 pages" in error["message"]
    assert (await search(client, body, pageSize=501)).status_code == 400
    assert (await search(client, body, pageSize=500)).status_code == 200


async def test_ids_only_and_links(client: httpx.AsyncClient) -> None:
    r = await search(client, {"queryContext": "customer"}, idsOnly="true", pageSize=10)
    body = r.json()
    assert all(set(d) == {"type", "id"} for d in body["data"])
    assert body["links"]["next"] == "/v1/customers/search?page=2&pageSize=10&idsOnly=true"
    assert body["meta"]["total"] == 60
    assert body["meta"]["totalPages"] == 6


async def test_include_deleted(client: httpx.AsyncClient, sb: Sandbox, clock: FakeClock) -> None:
    victim = next(iter(sb.state.customers)).id
    assert (await client.delete(f"/v1/customers/{victim}")).status_code == 204
    plain = await ids(client, {"queryContext": "customer"})
    assert victim not in plain
    r = await search(client, {"queryContext": "customer", "includeDeleted": True}, pageSize=500)
    tombstone = next(d for d in r.json()["data"] if d["id"] == victim)
    assert tombstone["attributes"]["deleted"] is True
    assert tombstone["attributes"]["deletedAt"] == iso(sb.now_ms())


@pytest.mark.parametrize(
    "body",
    [
        {"and": []},
        {"queryContext": "widget"},
        {"queryContext": "kobject_nope"},
        {"queryContext": "customer", "and": [{"customer_favourite": {"equals": 1}}]},
        {"queryContext": "customer", "and": [{"customer_name": {"resembles": "x"}}]},
        {"queryContext": "customer", "and": [{"conversation_status": {"equals": "open"}}]},
        {"queryContext": "customer", "and": [{"customer_custom_fooBar": {"equals": 1}}]},
        {"queryContext": "customer", "and": [{"customer_created_at": {"gt": "someday"}}]},
        {"queryContext": "customer", "and": [{"customer_custom_marketingOptInBool": {"gt": True}}]},
        {"queryContext": "customer", "and": [{"customer_name": {"in": "x"}}]},
        {"queryContext": "customer", "and": {"customer_name": {"equals": "x"}}},
        {"queryContext": "customer", "sort": [{"customer_name": "up"}]},
        {"queryContext": "customer", "filter": {}},
    ],
)
async def test_invalid_queries(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    r = await search(client, body)
    assert r.status_code == 400
    assert first_error(r)["message"]


async def test_search_has_its_own_budget(client_with_roles: ClientFactory, sb: Sandbox, clock: FakeClock) -> None:
    sb.settings.search_limit_per_minute = 3
    c = client_with_roles(["org.user.search.read", "org.user.customer.read"])
    for _ in range(3):
        r = await c.post(SEARCH, json={"queryContext": "customer"}, params={"pageSize": 1})
        assert r.status_code == 200
    assert r.headers["x-ratelimit-limit"] == "3"
    assert r.headers["x-ratelimit-remaining"] == "0"
    r = await c.post(SEARCH, json={"queryContext": "customer"})
    assert r.status_code == 429
    assert (await c.get("/v1/customers")).status_code == 200
    clock.advance(sb.settings.rate_window_seconds)
    assert (await c.post(SEARCH, json={"queryContext": "customer"})).status_code == 200


async def test_archive_search(client: httpx.AsyncClient, sb: Sandbox, clock: FakeClock) -> None:
    assert (await client.post("/v1/customers/archive/search", json={"queryContext": "customer"})).json()["data"] == []
    seed_now = sb.settings.seed_time.timestamp()
    clock.now = seed_now + 86400 - 4 * 3600  # one day later, minus 4 grid steps: cutoff inside the seeded span
    sb.settings.search_archive_after_days = 1
    recent = await ids(client, {"queryContext": "customer"})
    r = await client.post("/v1/customers/archive/search", json={"queryContext": "customer"}, params={"pageSize": 500})
    archived = [d["id"] for d in r.json()["data"]]
    assert recent
    assert archived
    assert not set(recent) & set(archived)
    assert len(recent) + len(archived) == len(sb.state.customers)
