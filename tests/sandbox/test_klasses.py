"""Klasses, KObjects (addressed by Klass name) and custom-attribute metadata."""

from __future__ import annotations

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox
from connectors.kustomer.sandbox.timeutil import iso

from .conftest import ClientFactory, FakeClock, error_text

pytestmark = pytest.mark.anyio


async def test_klass_crud_and_overloaded_paths(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.post("/v1/klasses", json={"name": "crm-opportunity", "displayName": "Opportunity"})
    assert r.status_code == 201
    klass = r.json()["data"]
    assert klass["type"] == "klass"
    assert (await client.post("/v1/klasses", json={"name": "crm-opportunity"})).status_code == 409
    assert (await client.post("/v1/klasses", json={"name": "Bad Name"})).status_code == 400
    names = [k["attributes"]["name"] for k in (await client.get("/v1/klasses")).json()["data"]]
    assert names == ["order", "crm-opportunity"]
    by_id = (await client.get(f"/v1/klasses/{klass['id']}")).json()["data"]
    assert by_id["type"] == "klass"
    assert by_id["id"] == klass["id"]
    by_name = (await client.get("/v1/klasses/crm-opportunity")).json()
    assert by_name["data"] == []
    assert by_name["meta"]["total"] == 0
    r = await client.put(f"/v1/klasses/{klass['id']}", json={"icon": "briefcase"})
    assert r.json()["data"]["attributes"]["icon"] == "briefcase"
    assert (await client.put("/v1/klasses/crm-opportunity", json={"icon": "x"})).status_code == 404
    assert (await client.put(f"/v1/klasses/{klass['id']}", json={"name": "renamed"})).status_code == 400
    r = await client.put(f"/v1/klasses/{klass['id']}", json={"status": "disabled"})
    assert r.status_code == 200
    assert (await client.post("/v1/klasses/crm-opportunity", json={"title": "x"})).status_code == 400
    disabled = (await client.get("/v1/klasses", params={"status": "disabled"})).json()["data"]
    assert [k["id"] for k in disabled] == [klass["id"]]
    assert (await client.delete(f"/v1/klasses/{klass['id']}")).status_code == 204
    assert (await client.get("/v1/klasses/crm-opportunity")).status_code == 404


async def test_kobject_crud(client: httpx.AsyncClient, sb: Sandbox) -> None:
    customer = next(iter(sb.state.customers)).id
    assert (await client.post("/v1/klasses/nope", json={"title": "x"})).status_code == 404
    assert (await client.post("/v1/klasses/order", json={"externalId": "no-title"})).status_code == 400
    r = await client.post(
        "/v1/klasses/order",
        json={
            "title": "Order #9",
            "externalId": "ord-9",
            "customer": customer,
            "data": {"anything": [1, 2]},
            "custom": {"orderTotalNum": 12.5, "orderStatusStr": "paid"},
        },
    )
    assert r.status_code == 201
    obj = r.json()["data"]
    assert obj["type"] == "kobject"
    assert obj["links"]["self"] == f"/v1/klasses/order/{obj['id']}"
    assert obj["relationships"]["klass"]["data"]["type"] == "klass"
    assert obj["attributes"]["rev"] == 1
    assert (await client.get(f"/v1/klasses/order/{obj['id']}")).json()["data"] == obj
    assert (await client.get("/v1/klasses/order/externalId=ord-9")).json()["data"]["id"] == obj["id"]
    assert (await client.get("/v1/klasses/order/externalId=ord-x")).status_code == 404
    assert (await client.post("/v1/klasses/order", json={"title": "dup", "externalId": "ord-9"})).status_code == 409
    r = await client.put(f"/v1/klasses/order/{obj['id']}", json={"custom": {"orderStatusStr": "shipped"}})
    attrs = r.json()["data"]["attributes"]
    assert attrs["custom"] == {"orderTotalNum": 12.5, "orderStatusStr": "shipped"}
    assert attrs["rev"] == 2
    r = await client.put(f"/v1/klasses/order/{obj['id']}", json={"custom": {"orderStatusStr": "lost"}})
    assert r.status_code == 400
    r = await client.put(f"/v1/klasses/order/{obj['id']}", json={"custom": {"orderTotalNum": "much"}})
    assert "orderTotalNum" in error_text(r)
    await client.post("/v1/klasses", json={"name": "ticket"})
    assert (await client.get(f"/v1/klasses/ticket/{obj['id']}")).status_code == 404
    assert (await client.delete(f"/v1/klasses/order/{obj['id']}")).status_code == 204
    assert (await client.get(f"/v1/klasses/order/{obj['id']}")).status_code == 404


async def test_kobject_incremental_listing(client: httpx.AsyncClient, sb: Sandbox, clock: FakeClock) -> None:
    all_orders = (await client.get("/v1/klasses/order", params={"pageSize": 100})).json()
    assert all_orders["meta"]["total"] == sum(1 for _ in sb.state.kobjects)
    clock.advance(10)
    since = iso(sb.now_ms())
    r = await client.post("/v1/klasses/order", json={"title": "Fresh"})
    fresh = r.json()["data"]["id"]
    r = await client.get("/v1/klasses/order", params={"fromDate": since, "sort": "updatedAt"})
    assert [d["id"] for d in r.json()["data"]] == [fresh]


async def test_per_klass_roles(client_with_roles: ClientFactory) -> None:
    allowed = client_with_roles(["org.permission.kobject.kobject_order.read"])
    denied = client_with_roles(["org.permission.kobject.kobject_ticket.read"])
    assert (await allowed.get("/v1/klasses/order")).status_code == 200
    assert (await denied.get("/v1/klasses/order")).status_code == 403


async def test_metadata(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.get("/v1/metadata/customer")
    props = r.json()["data"]["attributes"]["properties"]
    assert props["loyaltyTierStr"]["enumeration"] == ["bronze", "silver", "gold", "platinum"]
    assert (await client.get("/v1/metadata/kobject_order")).status_code == 200
    assert (await client.get("/v1/metadata/kobject_nope")).status_code == 404
    assert (await client.get("/v1/metadata/widget")).status_code == 404
    put = client.put
    assert (await put("/v1/metadata/customer", json={"properties": {"sizeString": {}}})).status_code == 400
    bad_type = {"properties": {"sizeNum": {"type": "str"}}}
    assert (await put("/v1/metadata/customer", json=bad_type)).status_code == 400
    assert (await put("/v1/metadata/customer", json={"properties": {"ownerId": {}}})).status_code == 400
    bad_target = {"properties": {"ownerId": {"target": "spaceship"}}}
    assert (await put("/v1/metadata/customer", json=bad_target)).status_code == 400
    enum_num = {"properties": {"sizeNum": {"enumeration": [1, 2]}}}
    assert (await put("/v1/metadata/customer", json=enum_num)).status_code == 400
    r = await put(
        "/v1/metadata/kobject_order",
        json={"properties": {"buyerId": {"displayName": "Buyer", "target": "customer", "multi": True}}},
    )
    assert r.status_code == 200
    customers = [c.id for c in sb.state.customers][:2]
    r = await client.post("/v1/klasses/order", json={"title": "Multi", "custom": {"buyerId": customers}})
    assert r.status_code == 201
    assert r.json()["data"]["attributes"]["custom"]["buyerId"] == customers
    r = await put("/v1/metadata/customer", json={"properties": {"notesTxt": None}})
    assert "notesTxt" not in r.json()["data"]["attributes"]["properties"]
