"""``/resources/{model}`` and ``/fields/{model}``: Morph's envelope, list/search, CRUD, validation."""

from __future__ import annotations

import httpx
import pytest

from connectors import Connection
from connectors.kustomer.sandbox import Sandbox
from connectors.server.envelope import parse_filters, resource_envelope
from connectors.server.errors import HTTPProblem
from unified_models import Contact

from .conftest import operator

pytestmark = pytest.mark.anyio

A = operator("tenant-a")


def test_envelope_shape() -> None:
    contact = Contact.model_validate(
        {"id": "c1", "createdAt": "2026-01-01T00:00:00Z", "firstName": "Ada", "raw": {"id": "c1", "type": "customer"}}
    )
    env = resource_envelope("genericContact", contact, include_raw=True)
    assert env["object"] == "resource" and env["model"] == "genericContact" and env["id"] == "c1"
    assert env["createdAt"] == "2026-01-01T00:00:00Z" and env["updatedAt"] is None
    assert env["fields"]["firstName"] == "Ada"
    assert not {"id", "createdAt", "updatedAt", "raw"} & set(env["fields"])
    assert env["rawResource"] == {"id": "c1", "type": "customer"}
    assert "rawResource" not in resource_envelope("genericContact", contact)


def test_parse_filters() -> None:
    items = [
        ("limit", "5"),
        ("filter[email]", "a@b.co"),
        ("filter[ids]", "x,y"),
        ("filter[ids]", "z"),
        ("filter[tags]", "vip"),
        ("filter[custom.loyaltyTierStr]", "gold"),
        ("filter[custom.lifetimeValueNum][gte]", "100"),
        ("filter[custom.marketingOptInBool]", "true"),
        ("filter[custom.codeStr]", '"42"'),
        ("filter[custom.tierStr][in]", "gold,silver"),
        ("filter[custom.noteTxt][not_set]", ""),
        ("filter[name]", "a"),
        ("filter[name]", "b"),
    ]
    assert parse_filters(items) == {
        "email": "a@b.co",
        "ids": ["x", "y", "z"],
        "tags": ["vip"],
        "custom.loyaltyTierStr": "gold",
        "custom.lifetimeValueNum": {"gte": 100},
        "custom.marketingOptInBool": True,
        "custom.codeStr": "42",
        "custom.tierStr": {"in": ["gold", "silver"]},
        "custom.noteTxt": {"not_set": True},
        "name": ["a", "b"],
    }
    with pytest.raises(HTTPProblem) as info:
        parse_filters([("filters[email]", "x"), ("filter[email][eq]", "y"), ("q", "a\x1bb")])
    paths = [e["path"] for e in info.value.errors or []]
    assert paths == ["query.filters[email]", "query.filter[email][eq]", "query.q"]
    for bad in ("../customers", "a/b", "x?y", "%2e"):
        with pytest.raises(HTTPProblem, match="invalid id"):
            parse_filters([("filter[ids]", bad)])


async def test_list_envelope_and_cursor(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/resources/genericContact", params={"limit": 25}, headers=A)
    assert r.status_code == 200
    page = r.json()
    assert page["object"] == "list" and page["model"] == "genericContact"
    assert len(page["data"]) == 25 and page["next"]
    first = page["data"][0]
    assert set(first) == {"object", "model", "id", "fields", "createdAt", "updatedAt"}
    assert "email" in first["fields"] and "customFields" in first["fields"]
    seen = [item["id"] for item in page["data"]]
    cursor = page["next"]
    while cursor:
        r = await client.get("/resources/genericContact", params={"limit": 25, "cursor": cursor}, headers=A)
        assert r.status_code == 200
        seen += [item["id"] for item in r.json()["data"]]
        cursor = r.json()["next"]
    assert len(seen) == len(set(seen)) == 60
    r = await client.get("/resources/genericContact", params={"cursor": page["next"] + "x"}, headers=A)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_cursor"


async def test_search_filters_and_raw(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/resources/genericContact", params={"limit": 1, "raw": "true"}, headers=A)
    item = r.json()["data"][0]
    assert item["rawResource"]["type"] == "customer" and item["rawResource"]["id"] == item["id"]
    email = item["fields"]["email"]
    r = await client.get("/resources/genericContact", params={"filter[email]": email}, headers=A)
    assert [i["id"] for i in r.json()["data"]] == [item["id"]]
    tier = item["fields"]["customFields"]["loyaltyTierStr"]
    r = await client.get(
        "/resources/genericContact", params={"filter[custom.loyaltyTierStr]": tier, "limit": 100}, headers=A
    )
    assert r.status_code == 200
    data = r.json()["data"]
    assert data and all(i["fields"]["customFields"]["loyaltyTierStr"] == tier for i in data)
    r = await client.get(
        "/resources/genericContact",
        params={"filter[custom.lifetimeValueNum][gte]": "4000", "limit": 100},
        headers=A,
    )
    assert all(i["fields"]["customFields"]["lifetimeValueNum"] >= 4000 for i in r.json()["data"])
    r = await client.get("/resources/genericContact", params={"filter[shoeSize]": "42"}, headers=A)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_query"
    r = await client.get("/resources/genericContact", params={"filters[email]": "x"}, headers=A)
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["path"] == "query.filters[email]"
    r = await client.get("/resources/genericContact", params={"limit": 0}, headers=A)
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["path"] == "query.limit"


async def test_crud_round_trip(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.post(
        "/resources/genericContact",
        json={"fields": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "tags": ["vip"]}},
        headers=A,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    cid = created["id"]
    assert created["fields"]["firstName"] == "Ada" and created["createdAt"]
    # flat bodies are accepted too
    r = await client.post("/resources/genericContact", json={"firstName": "Flat"}, headers=A)
    assert r.status_code == 201
    r = await client.patch(f"/resources/genericContact/{cid}", json={"fields": {"lastName": "Byron"}}, headers=A)
    assert r.status_code == 200
    assert r.json()["fields"]["lastName"] == "Byron" and r.json()["fields"]["firstName"] == "Ada"
    r = await client.get(f"/resources/genericContact/{cid}", params={"raw": "1"}, headers=A)
    assert r.status_code == 200
    assert r.json()["fields"]["lastName"] == "Byron" and r.json()["rawResource"]["id"] == cid
    r = await client.delete(f"/resources/genericContact/{cid}", headers=A)
    assert r.json() == {"object": "resource", "model": "genericContact", "id": cid, "deleted": True}
    r = await client.get(f"/resources/genericContact/{cid}", headers=A)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_retrieve_expand(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/resources/genericContact", params={"limit": 50}, headers=A)
    with_company = next(i for i in r.json()["data"] if i["fields"]["company"])
    r = await client.get(f"/resources/genericContact/{with_company['id']}", params={"expand": "company"}, headers=A)
    assert r.status_code == 200
    company = r.json()["fields"]["company"]
    assert company["model"] == "genericCompany" and company["resource"]["name"]


async def test_validation_errors_name_every_field(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.post(
        "/resources/genericContact",
        json={"fields": {"email": "nope", "phones": [{"value": "abc!"}], "shoe": 1}},
        headers=A,
    )
    assert r.status_code == 422
    paths = sorted(e["path"] for e in r.json()["error"]["errors"])
    assert paths == ["body.fields.email", "body.fields.phones.0.value", "body.fields.shoe"]
    r = await client.post("/resources/genericContact", json={"fields": {"id": "x", "createdAt": "y"}}, headers=A)
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["error"]["errors"]] == ["body.fields.createdAt", "body.fields.id"]
    r = await client.post("/resources/genericContact", json={"fields": {}, "extra": 1}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.extra"
    r = await client.post("/resources/genericCompany", json={"fields": {}}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.fields.name"
    r = await client.post(
        "/resources/genericContact", content=b"{nope", headers={**A, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "invalid JSON" in r.json()["error"]["message"]
    r = await client.post(
        "/resources/genericContact", content=b"[1]", headers={**A, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body"
    r = await client.post("/resources/genericContact", content=b"", headers={**A, "Content-Type": "application/json"})
    assert r.status_code == 422
    r = await client.post(
        "/resources/genericContact", content=b"firstName=a", headers={**A, "Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    r = await client.patch("/resources/genericContact/abc", json={"email": 5}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.email"


async def test_unknown_model_and_unsupported_operation(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/resources/genericThing", headers=A)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_model"
    r = await client.get("/resources/genericCompany", params={"limit": 1}, headers=A)
    company_id = r.json()["data"][0]["id"]
    r = await client.delete(f"/resources/genericCompany/{company_id}", headers=A)
    assert r.status_code == 405 and r.headers["allow"] == "GET, PATCH"
    assert r.json()["error"]["code"] == "unsupported_operation"


async def test_custom_objects(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/resources/custom:order", params={"limit": 2}, headers=A)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data and all(i["model"] == "custom:order" for i in data)
    r = await client.post("/resources/custom:order", json={"fields": {"objectType": "invoice"}}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.fields.objectType"


async def test_insufficient_roles_are_403_with_missing_roles(
    client: httpx.AsyncClient, server_hub: object, sb: Sandbox
) -> None:
    key = sb.mint_api_key(roles=["org.permission.customer.read", "org.permission.search.create"], name="ro")
    r = await client.post("/connections", json={"ownerId": "reader", "apiKey": key}, headers=operator())
    assert r.status_code == 201
    reader = operator("reader")
    assert (await client.get("/resources/genericContact?limit=1", headers=reader)).status_code == 200
    r = await client.post("/resources/genericContact", json={"firstName": "X"}, headers=reader)
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["code"] == "insufficient_permissions"
    assert error["missingRoles"] == ["org.permission.customer.create"]
    assert "org.permission.customer.read" in error["grantedRoles"]


async def test_fields(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/fields/genericContact", headers=A)
    assert r.status_code == 200
    keys = {f["key"] for f in r.json()["data"]}
    assert {"firstName", "email", "loyaltyTierStr"} <= keys
    assert all(f["object"] == "field" for f in r.json()["data"])
    r = await client.post("/fields/genericContact", json={"name": "Shoe Size", "type": "number"}, headers=A)
    assert r.status_code == 201, r.text
    assert r.json()["providerKey"] == "shoeSizeNum" and r.json()["isCustom"] is True
    r = await client.get("/fields/genericContact", headers=A)
    assert "shoeSizeNum" in {f["key"] for f in r.json()["data"]}
    r = await client.post("/fields/genericContact", json={"name": "", "type": "number", "x": 1}, headers=A)
    assert r.status_code == 422
    assert sorted(e["path"] for e in r.json()["error"]["errors"]) == ["body.name", "body.x"]
    r = await client.get("/fields/nope", headers=A)
    assert r.status_code == 404
