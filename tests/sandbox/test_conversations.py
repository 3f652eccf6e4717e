"""Conversations, messages, notes: CRUD, counters, tags, per-customer create limit."""

from __future__ import annotations

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox

from .conftest import FakeClock, error_text

pytestmark = pytest.mark.anyio


async def new_customer(client: httpx.AsyncClient) -> str:
    r = await client.post("/v1/customers", json={"name": "Conv Owner"})
    return str(r.json()["data"]["id"])


async def test_conversation_crud(client: httpx.AsyncClient, sb: Sandbox) -> None:
    cid = await new_customer(client)
    assert (await client.post("/v1/conversations", json={"name": "No customer"})).status_code == 400
    r = await client.post("/v1/conversations", json={"customer": cid, "status": "snoozed"})
    assert r.status_code == 400
    user = sb.owner_id
    r = await client.post(
        "/v1/conversations",
        json={
            "customer": cid,
            "name": "Refund",
            "priority": 4,
            "externalId": "conv-1",
            "assignedUsers": [user],
        },
    )
    assert r.status_code == 201
    conv = r.json()["data"]
    attrs = conv["attributes"]
    assert attrs["status"] == "open"
    assert attrs["priority"] == 4
    assert attrs["direction"] == "in"
    assert attrs["messageCount"] == 0
    assert attrs["noteCount"] == 0
    assert attrs["channels"] == []
    assert conv["relationships"]["messages"] == {"links": {"self": f"/v1/conversations/{conv['id']}/messages"}}
    assert conv["relationships"]["customer"]["data"]["id"] == cid
    assert (await client.get("/v1/conversations/externalId=conv-1")).json()["data"]["id"] == conv["id"]
    assert (await client.get("/v1/conversations/externalId=none")).status_code == 404
    r = await client.patch(f"/v1/conversations/{conv['id']}", json={"status": "snoozed"})
    assert r.json()["data"]["attributes"]["status"] == "snoozed"
    r = await client.put(f"/v1/conversations/{conv['id']}", params={"replace": "true"}, json={"name": "Only"})
    attrs = r.json()["data"]["attributes"]
    assert attrs["name"] == "Only"
    assert attrs["priority"] == 1
    assert attrs["assignedUsers"] == []
    assert r.json()["data"]["relationships"]["customer"]["data"]["id"] == cid
    for bad in (
        {"priority": 6},
        {"assignedUsers": [user] * 11},
        {"assignedTeams": ["0" * 24]},
        {"status": "closed"},
    ):
        assert (await client.patch(f"/v1/conversations/{conv['id']}", json=bad)).status_code == 400, bad
    assert (await client.delete(f"/v1/conversations/{conv['id']}")).status_code == 204
    assert (await client.get(f"/v1/conversations/{conv['id']}")).status_code == 404
    listed = (await client.get("/v1/conversations", params={"sort": "desc", "pageSize": 5})).json()["data"]
    ids = [c["id"] for c in listed]
    assert ids == sorted(ids, reverse=True)


async def test_messages_maintain_the_conversation(client: httpx.AsyncClient) -> None:
    cid = await new_customer(client)
    r = await client.post(
        "/v1/messages",
        json={"customer": cid, "channel": "sms", "direction": "in", "app": "twilio", "preview": "Hi"},
    )
    assert r.status_code == 201
    message = r.json()["data"]
    conv_id = message["relationships"]["conversation"]["data"]["id"]  # created on the fly
    assert message["attributes"]["status"] == "received"
    r = await client.post(
        f"/v1/conversations/{conv_id}/messages",
        json={
            "channel": "email",
            "direction": "out",
            "app": "postmark",
            "subject": "Re: Hi",
            "externalId": "m-1",
        },
    )
    assert r.status_code == 201
    assert r.json()["data"]["relationships"]["customer"]["data"]["id"] == cid
    conv = (await client.get(f"/v1/conversations/{conv_id}")).json()["data"]["attributes"]
    assert conv["messageCount"] == 2
    assert conv["outboundMessageCount"] == 1
    assert conv["channels"] == ["sms", "email"]
    assert conv["rev"] == 3
    msgs = (await client.get(f"/v1/conversations/{conv_id}/messages")).json()["data"]
    assert len(msgs) == 2
    assert (await client.get("/v1/messages/externalid=m-1")).json()["data"]["attributes"]["subject"] == "Re: Hi"
    assert (await client.get("/v1/messages/externalId=m-1")).status_code == 200
    mid = msgs[0]["id"]
    r = await client.patch(f"/v1/messages/{mid}", json={"preview": "Hello"})
    assert r.json()["data"]["attributes"]["preview"] == "Hello"
    assert (await client.get(f"/v1/messages/{mid}")).json()["data"]["attributes"]["preview"] == "Hello"
    assert (await client.delete(f"/v1/messages/{mid}")).status_code == 405
    r = await client.post("/v1/messages", json={"customer": cid, "channel": "pigeon", "direction": "in", "app": "x"})
    assert r.status_code == 400
    assert "channel" in error_text(r)
    r = await client.post("/v1/messages", json={"customer": cid, "channel": "sms", "direction": "in"})
    assert error_text(r) == '"app" is required'
    other = await new_customer(client)
    r = await client.post(
        "/v1/messages",
        json={"customer": other, "conversation": conv_id, "channel": "sms", "direction": "in", "app": "x"},
    )
    assert r.status_code == 400
    assert (await client.get("/v1/messages", params={"pageSize": 3})).json()["meta"]["pageSize"] == 3


async def test_privileged_message_attributes_need_org_admin(client_with_roles: object, sb: Sandbox) -> None:
    factory = client_with_roles
    assert callable(factory)
    limited: httpx.AsyncClient = factory(["org.permission.message.create"])
    admin: httpx.AsyncClient = factory(["org.permission.message.create", "org.admin"])
    customer = next(iter(sb.state.customers)).id
    body = {
        "customer": customer,
        "channel": "chat",
        "direction": "in",
        "app": "chat",
        "createdAt": "2020-01-01",
    }
    assert (await limited.post("/v1/messages", json=body)).status_code == 403
    r = await admin.post("/v1/messages", json=body)
    assert r.status_code == 201
    assert r.json()["data"]["attributes"]["createdAt"] == "2020-01-01T00:00:00.000Z"


async def test_notes(client: httpx.AsyncClient) -> None:
    cid = await new_customer(client)
    conv = (await client.post(f"/v1/customers/{cid}/conversations", json={})).json()["data"]["id"]
    r = await client.post("/v1/notes", json={"conversation": conv, "body": "first"})
    assert r.status_code == 201
    note = r.json()["data"]
    assert note["relationships"]["customer"]["data"]["id"] == cid
    await client.post(f"/v1/conversations/{conv}/notes", json={"body": "second"})
    assert (await client.get(f"/v1/conversations/{conv}")).json()["data"]["attributes"]["noteCount"] == 2
    r = await client.put(f"/v1/notes/{note['id']}", json={"body": "edited"})
    assert r.json()["data"]["attributes"]["body"] == "edited"
    assert (await client.delete(f"/v1/notes/{note['id']}")).status_code == 204
    assert (await client.get(f"/v1/conversations/{conv}")).json()["data"]["attributes"]["noteCount"] == 1
    assert [n["attributes"]["body"] for n in (await client.get(f"/v1/conversations/{conv}/notes")).json()["data"]] == [
        "second"
    ]
    assert (await client.post("/v1/notes", json={"conversation": conv})).status_code == 400


async def test_conversation_tags(client: httpx.AsyncClient, sb: Sandbox) -> None:
    cid = await new_customer(client)
    conv = (await client.post(f"/v1/customers/{cid}/conversations", json={"tags": ["billing"]})).json()["data"]
    billing = next(t for t in sb.state.tags if t.attrs["name"] == "billing")
    r = await client.post(f"/v1/conversations/{conv['id']}/tags", json={"tags": ["brand-new", billing.id]})
    assert r.status_code == 200
    assert r.json()["data"]["attributes"]["tags"] == ["billing", "brand-new"]
    assert "brand-new" in {t.attrs["name"] for t in sb.state.tags}
    r = await client.request("DELETE", f"/v1/conversations/{conv['id']}/tags", json={"tags": ["BILLING"]})
    assert r.json()["data"]["attributes"]["tags"] == ["brand-new"]
    assert (await client.post(f"/v1/conversations/{conv['id']}/tags", json={"tags": []})).status_code == 400


async def test_per_customer_create_limit(client: httpx.AsyncClient, sb: Sandbox, clock: FakeClock) -> None:
    sb.settings.create_limit_per_customer = 3
    cid = await new_customer(client)
    for _ in range(3):
        assert (await client.post(f"/v1/customers/{cid}/conversations", json={})).status_code == 201
    r = await client.post(f"/v1/customers/{cid}/conversations", json={})
    assert r.status_code == 429
    assert "importedAt" in error_text(r)
    r = await client.post(f"/v1/customers/{cid}/conversations", json={"importedAt": "2020-01-01T00:00:00Z"})
    assert r.status_code == 201
    other = await new_customer(client)
    assert (await client.post(f"/v1/customers/{other}/conversations", json={})).status_code == 201
    clock.advance(sb.settings.rate_window_seconds)
    assert (await client.post(f"/v1/customers/{cid}/conversations", json={})).status_code == 201
