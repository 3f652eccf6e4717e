"""Customers: envelopes, pagination, filters, CRUD semantics, lookups, sub-resources, custom attributes."""

from __future__ import annotations

import re

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox

from .conftest import error_text, first_error

pytestmark = pytest.mark.anyio

ID = re.compile(r"[0-9a-f]{24}")
TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


async def create(client: httpx.AsyncClient, **attrs: object) -> dict[str, object]:
    r = await client.post("/v1/customers", json=attrs)
    assert r.status_code == 201, r.text
    data: dict[str, object] = r.json()["data"]
    return data


async def test_list_envelope_and_links(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.get("/v1/customers", params={"pageSize": 25, "page": 2})
    assert r.status_code == 200
    assert ID.fullmatch(r.headers["x-request-id"]) is None
    assert r.headers["x-request-id"]
    body = r.json()
    assert body["meta"] == {"page": 2, "pageSize": 25, "total": 60, "totalPages": 3}
    assert body["links"] == {
        "self": "/v1/customers?page=2&pageSize=25",
        "first": "/v1/customers?page=1&pageSize=25",
        "prev": "/v1/customers?page=1&pageSize=25",
        "next": "/v1/customers?page=3&pageSize=25",
        "last": "/v1/customers?page=3&pageSize=25",
    }
    item = body["data"][0]
    assert item["type"] == "customer"
    assert ID.fullmatch(item["id"])
    assert item["links"]["self"] == f"/v1/customers/{item['id']}"
    attrs = item["attributes"]
    for key in ("createdAt", "updatedAt", "modifiedAt"):
        assert TS.fullmatch(attrs[key])
    assert isinstance(attrs["rev"], int)
    assert set(attrs["conversationCounts"]) == {"all", "open", "snoozed", "done"}
    assert "displayName" in attrs
    assert "sharedEmails" in attrs
    assert "progressiveStatus" in attrs
    assert item["relationships"]["org"]["data"] == {"type": "org", "id": sb.org_id}
    last = (await client.get("/v1/customers", params={"pageSize": 25, "page": 3})).json()
    assert last["links"]["next"] is None
    assert len(last["data"]) == 10


async def test_following_next_visits_every_customer_once(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    url: str | None = "/v1/customers?pageSize=7&sort=-updatedAt"
    while url:
        body = (await client.get(url)).json()
        seen += [d["id"] for d in body["data"]]
        url = body["links"]["next"]
    assert len(seen) == len(set(seen)) == 60


async def test_trailing_slashes_are_accepted(client: httpx.AsyncClient) -> None:
    a = await client.get("/v1/customers/", params={"pageSize": 3})
    b = await client.get("/v1/customers", params={"pageSize": 3})
    assert a.status_code == b.status_code == 200
    assert a.json()["data"] == b.json()["data"]
    one = a.json()["data"][0]["id"]
    assert (await client.get(f"/v1/customers/{one}/")).json()["data"]["id"] == one
    assert (await client.post("/v1/customers/", json={"name": "Slash"})).status_code == 201


async def test_page_size_limits(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/customers", params={"pageSize": 100})).status_code == 200
    r = await client.get("/v1/customers", params={"pageSize": 101})
    assert r.status_code == 400
    assert first_error(r)["source"] == {"parameter": "pageSize"}
    assert (await client.get("/v1/customers", params={"page": 0})).status_code == 400
    assert (await client.get("/v1/customers", params={"page": "x"})).status_code == 400
    assert (await client.get("/v1/customers", params={"sort": "name"})).status_code == 400


async def test_sort_and_time_filters(client: httpx.AsyncClient, sb: Sandbox) -> None:
    records = list(sb.state.customers)
    pivot = sorted(r.updated_ms for r in records)[30]
    from connectors.kustomer.sandbox.timeutil import iso

    r = await client.get(
        "/v1/customers", params={"filter[updatedAt][gte]": iso(pivot), "sort": "updatedAt", "pageSize": 100}
    )
    data = r.json()["data"]
    assert [d["id"] for d in data] == [
        x.id for x in sorted((x for x in records if x.updated_ms >= pivot), key=lambda x: (x.updated_ms, x.id))
    ]
    assert r.json()["links"]["self"].startswith("/v1/customers?page=1&pageSize=100&filter[updatedAt][gte]=")
    r = await client.get("/v1/customers", params={"filter[updatedAt][lt]": iso(pivot), "sort": "-createdAt"})
    created = [d["attributes"]["createdAt"] for d in r.json()["data"]]
    assert created == sorted(created, reverse=True)
    assert all(d["attributes"]["updatedAt"] < iso(pivot) for d in r.json()["data"])
    r = await client.get("/v1/customers", params={"filter[createdAt][gte]": "2020-01-01", "sort": "createdAt"})
    assert r.json()["meta"]["total"] == 60
    assert (await client.get("/v1/customers", params={"filter[name][eq]": "x"})).status_code == 400
    assert (await client.get("/v1/customers", params={"filter[createdAt][gte]": "soon"})).status_code == 400


async def test_seeded_updated_at_ties(client: httpx.AsyncClient) -> None:
    data = (await client.get("/v1/customers", params={"pageSize": 100})).json()["data"]
    stamps = [d["attributes"]["updatedAt"] for d in data]
    assert len(set(stamps)) < len(stamps) / 2


async def test_create_get_delete(client: httpx.AsyncClient) -> None:
    created = await create(
        client,
        name="Grace Hopper",
        externalId="gh-1",
        emails=[{"type": "work", "email": "grace@example.com"}],
        phones=[{"type": "mobile", "phone": "+15557654321"}],
        tags=["navy"],
    )
    attrs = created["attributes"]
    assert isinstance(attrs, dict)
    assert attrs["emails"][0]["email"] == "grace@example.com"
    assert ID.fullmatch(attrs["emails"][0]["id"])
    assert ID.fullmatch(attrs["phones"][0]["id"])
    assert attrs["rev"] == 1
    assert attrs["displayName"] == "Grace Hopper"
    cid = created["id"]
    got = (await client.get(f"/v1/customers/{cid}")).json()["data"]
    assert got == created
    tags = (await client.get("/v1/tags", params={"pageSize": 100})).json()["data"]
    assert "navy" in {t["attributes"]["name"] for t in tags}
    assert (await client.delete(f"/v1/customers/{cid}")).status_code == 204
    assert (await client.get(f"/v1/customers/{cid}")).status_code == 404
    assert (await client.delete(f"/v1/customers/{cid}")).status_code == 404


async def test_put_merges_unless_replace(client: httpx.AsyncClient) -> None:
    created = await create(
        client, name="Ada", locale="en_GB", custom={"loyaltyTierStr": "gold", "lifetimeValueNum": 10}
    )
    cid = created["id"]
    r = await client.put(f"/v1/customers/{cid}", json={"name": "Ada L.", "custom": {"lifetimeValueNum": 11}})
    attrs = r.json()["data"]["attributes"]
    assert attrs["name"] == "Ada L."
    assert attrs["locale"] == "en_GB"
    assert attrs["custom"] == {"loyaltyTierStr": "gold", "lifetimeValueNum": 11}
    assert attrs["rev"] == 2
    r = await client.patch(f"/v1/customers/{cid}", json={"custom": {"loyaltyTierStr": None}})
    assert r.json()["data"]["attributes"]["custom"] == {"lifetimeValueNum": 11}
    r = await client.put(f"/v1/customers/{cid}", params={"replace": "true"}, json={"name": "Only name"})
    attrs = r.json()["data"]["attributes"]
    assert attrs["name"] == "Only name"
    assert "locale" not in attrs
    assert "custom" not in attrs
    assert attrs["rev"] == 4


async def test_omitting_company_on_update_unlinks_it(client: httpx.AsyncClient, sb: Sandbox) -> None:
    company = next(iter(sb.state.companies)).id
    created = await create(client, name="Linked", company=company)
    assert created["relationships"]["company"]["data"] == {"type": "company", "id": company}  # type: ignore[index]
    cid = created["id"]
    r = await client.put(f"/v1/customers/{cid}", json={"name": "Linked", "company": company})
    assert r.json()["data"]["relationships"]["company"]["data"]["id"] == company
    r = await client.patch(f"/v1/customers/{cid}", json={"name": "Still linked?"})
    assert r.json()["data"]["relationships"]["company"] == {"data": None}
    r = await client.put(f"/v1/customers/{cid}", json={"company": company})
    assert r.json()["data"]["relationships"]["company"]["data"]["id"] == company
    r = await client.put(f"/v1/customers/{cid}", json={"locale": "fr_FR"})
    assert r.json()["data"]["relationships"]["company"] == {"data": None}


async def test_rev_conflict(client: httpx.AsyncClient) -> None:
    cid = (await create(client, name="Rev"))["id"]
    assert (await client.patch(f"/v1/customers/{cid}", json={"name": "a", "rev": 1})).status_code == 200
    r = await client.patch(f"/v1/customers/{cid}", json={"name": "b", "rev": 1})
    assert r.status_code == 409
    assert first_error(r)["meta"] == {"rev": 2}


async def test_external_id_is_unique(client: httpx.AsyncClient) -> None:
    await create(client, externalId="dup-1")
    r = await client.post("/v1/customers", json={"externalId": "dup-1"})
    assert r.status_code == 409


async def test_lookups(client: httpx.AsyncClient) -> None:
    created = await create(
        client,
        name="Look Up",
        externalId="ext/with space",
        emails=[{"email": "Look.Up+tag@Example.com"}],
        phones=[{"phone": "+1 (555) 000-1234"}],
    )
    cid = created["id"]
    for path in (
        "/v1/customers/email=look.up+tag@example.com",
        "/v1/customers/email=Look.Up%2Btag%40Example.com",
        "/v1/customers/phone=+15550001234",
        "/v1/customers/phone=%2B1%20555%20000%201234",
        "/v1/customers/externalId=ext%2Fwith%20space",
    ):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["data"]["id"] == cid
    for path in (
        "/v1/customers/email=nobody@example.com",
        "/v1/customers/externalId=nope",
        "/v1/customers/phone=1",
    ):
        r = await client.get(path)
        assert r.status_code == 404
        assert first_error(r)["code"] == "not_found"


async def test_validation_errors(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/customers", json={"name": "X", "favouriteColor": "blue"})
    assert r.status_code == 400
    assert error_text(r) == '"favouriteColor" is not allowed'
    r = await client.post("/v1/customers", json={"emails": [{"email": "not-an-email"}]})
    assert r.status_code == 400
    assert first_error(r)["source"] == {"pointer": "/emails/0/email"}
    r = await client.post("/v1/customers", json={"phones": [{"phone": "555-CALL-NOW"}]})
    assert r.status_code == 400
    r = await client.post("/v1/customers", json={"company": "0" * 24})
    assert r.status_code == 400
    assert "company" in error_text(r)
    r = await client.post("/v1/customers", json=[{"name": "array"}])
    assert r.status_code == 400
    r = await client.post("/v1/customers", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = await client.post("/v1/customers", json={"displayName": "response only"})
    assert r.status_code == 400


async def test_custom_attribute_errors_name_the_attribute(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/customers", json={"custom": {"favouriteColour": "red"}})
    assert r.status_code == 400
    assert "favouriteColour" in error_text(r)
    assert first_error(r)["source"] == {"pointer": "/custom/favouriteColour"}
    r = await client.post("/v1/customers", json={"custom": {"lifetimeValueNum": "lots"}})
    assert r.status_code == 400
    assert "lifetimeValueNum" in error_text(r)
    r = await client.post("/v1/customers", json={"custom": {"loyaltyTierStr": "diamond"}})
    assert r.status_code == 400
    assert "enumeration" in error_text(r)
    r = await client.post("/v1/customers", json={"custom": {"lastOrderAt": "2026-02-03", "marketingOptInBool": "true"}})
    assert r.status_code == 201
    assert r.json()["data"]["attributes"]["custom"] == {
        "lastOrderAt": "2026-02-03T00:00:00.000Z",
        "marketingOptInBool": True,
    }


async def test_id_custom_attributes_need_metadata_and_existing_targets(client: httpx.AsyncClient, sb: Sandbox) -> None:
    user = sb.owner_id
    r = await client.post("/v1/customers", json={"custom": {"accountManagerId": user}})
    assert r.status_code == 201
    r = await client.post("/v1/customers", json={"custom": {"accountManagerId": "0" * 24}})
    assert r.status_code == 400
    assert "does not exist" in error_text(r)
    r = await client.post("/v1/customers", json={"custom": {"favouriteAgentId": user}})
    assert r.status_code == 400
    assert "metadata" in error_text(r)
    r = await client.put(
        "/v1/metadata/customer",
        json={"properties": {"favouriteAgentId": {"displayName": "Favourite Agent", "target": "user"}}},
    )
    assert r.status_code == 200
    assert r.json()["data"]["attributes"]["properties"]["favouriteAgentId"]["type"] == "id"
    assert (await client.post("/v1/customers", json={"custom": {"favouriteAgentId": user}})).status_code == 201
    r = await client.post("/v1/customers", json={"custom": {"favouriteAgentId": [user]}})
    assert r.status_code == 400


async def test_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    for path in ("/v1/customers/" + "f" * 24, "/v1/customers/not-an-id"):
        r = await client.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json"


async def test_customer_sub_resources(client: httpx.AsyncClient, sb: Sandbox) -> None:
    cid = str((await create(client, name="Sub"))["id"])
    r = await client.post(f"/v1/customers/{cid}/conversations", json={"name": "Help"})
    assert r.status_code == 201
    conv = r.json()["data"]
    assert conv["relationships"]["customer"]["data"]["id"] == cid
    r = await client.post(
        f"/v1/customers/{cid}/messages",
        json={
            "channel": "email",
            "direction": "in",
            "app": "postmark",
            "conversation": conv["id"],
            "preview": "hi",
        },
    )
    assert r.status_code == 201
    r = await client.post(f"/v1/conversations/{conv['id']}/notes", json={"body": "internal"})
    assert r.status_code == 201
    assert len((await client.get(f"/v1/customers/{cid}/conversations")).json()["data"]) == 1
    assert len((await client.get(f"/v1/customers/{cid}/messages")).json()["data"]) == 1
    notes = (await client.get(f"/v1/customers/{cid}/notes")).json()["data"]
    assert [n["attributes"]["body"] for n in notes] == ["internal"]
    customer = (await client.get(f"/v1/customers/{cid}")).json()["data"]["attributes"]
    assert customer["conversationCounts"] == {"all": 1, "open": 1, "snoozed": 0, "done": 0}
    assert customer["lastConversation"]["id"] == conv["id"]
    assert customer["progressiveStatus"] == "open"
    r = await client.post(f"/v1/customers/{cid}/klasses/order", json={"title": "Order #1", "externalId": "o-1"})
    assert r.status_code == 201
    kobjects = (await client.get(f"/v1/customers/{cid}/klasses/order")).json()["data"]
    assert [k["attributes"]["title"] for k in kobjects] == ["Order #1"]
    assert (await client.get("/v1/customers/" + "0" * 24 + "/conversations")).status_code == 404
