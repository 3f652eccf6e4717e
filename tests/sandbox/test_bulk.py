"""Bulk jobs: lifecycle, whole-batch rejection, PUT/DELETE, limits, one request against the budget."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox

from .conftest import first_error

pytestmark = pytest.mark.anyio


async def run(client: httpx.AsyncClient, sb: Sandbox, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    r = await client.request(method, path, **kwargs)
    assert r.status_code == 201, r.text
    job = r.json()["data"]
    assert job["type"] == "bulk"
    assert job["attributes"]["status"] == "queued"
    await sb.drain_bulk()
    done = (await client.get(f"/v1/bulk/{job['id']}")).json()["data"]
    assert done["attributes"]["status"] == "complete"
    batches = (await client.get(f"/v1/bulk/{job['id']}/batches")).json()["data"]
    return {"job": done, "batches": [b["attributes"] for b in batches]}


async def test_bulk_create_lifecycle(client: httpx.AsyncClient, sb: Sandbox) -> None:
    before = len(sb.state.customers)
    items = [{"name": f"Bulk {i}", "_clientRef": f"row-{i}"} for i in range(3)]
    r = await client.post("/v1/customers/bulk", json=items)
    assert r.status_code == 201
    job = r.json()["data"]
    assert job["attributes"]["context"] == "customer"
    assert job["attributes"]["batches"] == {"complete": 0, "total": 1}
    assert job["attributes"]["payload"] == {"api": {"method": "POST", "path": "/v1/customers/bulk"}}
    polled = (await client.get(f"/v1/bulk/{job['id']}")).json()["data"]["attributes"]["status"]
    assert polled in ("queued", "running", "complete")
    await sb.drain_bulk()
    done = (await client.get(f"/v1/bulk/{job['id']}")).json()["data"]["attributes"]
    assert done["status"] == "complete"
    assert done["completed"] is True
    assert done["batches"] == {"complete": 1, "total": 1}
    batch = (await client.get(f"/v1/bulk/{job['id']}/batches")).json()["data"][0]["attributes"]
    assert batch["status"] == "complete"
    assert batch["successCount"] == 3
    assert batch["failureCount"] == 0
    assert batch["errors"] == []
    assert [r["_clientRef"] for r in batch["results"]] == ["row-0", "row-1", "row-2"]
    assert [r["id"] for r in batch["results"]] == batch["objectIds"]
    assert batch["completedAt"].endswith("Z")
    assert len(sb.state.customers) == before + 3


async def test_one_invalid_item_rejects_the_whole_batch(client: httpx.AsyncClient, sb: Sandbox) -> None:
    sb.settings.bulk_batch_size = 3
    before = len(sb.state.customers)
    items: list[dict[str, Any]] = [{"name": f"ok {i}"} for i in range(6)]
    items[4] = {"name": "bad", "custom": {"lifetimeValueNum": "lots"}}
    result = await run(client, sb, "POST", "/v1/customers/bulk", json=items)
    good, bad = result["batches"]
    assert good["successCount"] == 3
    assert good["failureCount"] == 0
    assert bad["successCount"] == 0
    assert bad["failureCount"] == 3
    assert bad["objectIds"] == []
    assert bad["results"] == []
    assert len(bad["errors"]) == 1
    message = bad["errors"][0]["message"]
    assert "lifetimeValueNum" in message
    assert "4" not in message
    assert "index" not in message
    assert len(sb.state.customers) == before + 3
    assert result["job"]["attributes"]["failureCount"] == 3


async def test_bulk_update_and_delete(client: httpx.AsyncClient, sb: Sandbox) -> None:
    targets = [c.id for c in sb.state.customers][:2]
    result = await run(
        client,
        sb,
        "PUT",
        "/v1/customers/bulk",
        json=[{"id": t, "locale": "nl_NL", "_clientRef": t} for t in targets],
    )
    assert result["batches"][0]["successCount"] == 2
    assert all(sb.state.customers.live[t].attrs["locale"] == "nl_NL" for t in targets)
    assert all(sb.state.customers.live[t].rels["company"] is None for t in targets)  # omission unlinks
    result = await run(
        client, sb, "PUT", "/v1/customers/bulk", params={"ids": ",".join(targets)}, json={"name": "Same"}
    )
    assert all(sb.state.customers.live[t].attrs["name"] == "Same" for t in targets)
    result = await run(client, sb, "PUT", "/v1/customers/bulk", json=[{"id": "0" * 24, "name": "ghost"}])
    assert result["batches"][0]["failureCount"] == 1
    result = await run(client, sb, "DELETE", "/v1/customers/bulk", params={"ids": ",".join(targets)})
    assert result["batches"][0]["successCount"] == 2
    assert all(sb.state.customers.get(t) is None for t in targets)


async def test_bulk_other_resources(client: httpx.AsyncClient, sb: Sandbox) -> None:
    customer = next(iter(sb.state.customers)).id
    result = await run(client, sb, "POST", "/v1/companies/bulk", json=[{"name": "B1"}, {"name": "B2"}])
    assert result["batches"][0]["successCount"] == 2
    result = await run(client, sb, "POST", "/v1/conversations/bulk", json=[{"customer": customer}])
    conv = result["batches"][0]["objectIds"][0]
    msg = {"conversation": conv, "channel": "chat", "direction": "in", "app": "chat"}
    result = await run(client, sb, "POST", "/v1/messages/bulk", json=[msg, msg])
    assert result["batches"][0]["successCount"] == 2
    result = await run(client, sb, "POST", "/v1/notes/bulk", json=[{"conversation": conv, "body": "n"}])
    assert result["batches"][0]["successCount"] == 1
    assert sb.state.conversations.live[conv].attrs["messageCount"] == 2
    result = await run(
        client,
        sb,
        "POST",
        "/v1/klasses/order/bulk",
        json=[{"title": "K1", "externalId": "k"}, {"title": "K2"}],
    )
    created = result["batches"][0]["objectIds"]
    result = await run(client, sb, "PUT", "/v1/klasses/order/bulk", json=[{"id": created[1], "title": "K2b"}])
    assert sb.state.kobjects.live[created[1]].attrs["title"] == "K2b"
    result = await run(client, sb, "DELETE", "/v1/klasses/order/bulk", json=created)
    assert result["batches"][0]["successCount"] == 2
    result = await run(client, sb, "POST", "/v1/klasses/order/bulk", json=[{"title": "A", "externalId": "same"}] * 2)
    assert result["batches"][0]["failureCount"] == 2
    assert (await client.post("/v1/klasses/nope/bulk", json=[{"title": "x"}])).status_code == 404


async def test_bulk_request_validation(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.post("/v1/customers/bulk", json=[{"name": "x"}] * 101)
    assert r.status_code == 400
    assert set(first_error(r)) == {"code", "message", "meta"}
    assert (await client.post("/v1/customers/bulk", json={"name": "not an array"})).status_code == 400
    assert (await client.post("/v1/customers/bulk", json=[])).status_code == 400
    assert (
        await client.post("/v1/customers/bulk", content=b"[", headers={"content-type": "application/json"})
    ).status_code == 400
    assert (await client.delete("/v1/customers/bulk")).status_code == 400
    assert (await client.get("/v1/bulk/" + "0" * 24)).status_code == 404
    assert (await client.post("/v1/customers/bulk", json=[{"name": "x"}] * 100)).status_code == 201
    await sb.drain_bulk()


async def test_bulk_counts_as_one_request(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.post("/v1/customers/bulk", json=[{"name": f"n{i}"} for i in range(100)])
    remaining = int(r.headers["x-ratelimit-remaining"])
    await sb.drain_bulk()
    r = await client.get("/v1/users/current")
    assert int(r.headers["x-ratelimit-remaining"]) == remaining - 1
