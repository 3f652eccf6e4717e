"""Inbound web hooks, admin routes, the extra-router seam, seed data."""

from __future__ import annotations

import re
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import JSONResponse

from connectors.kustomer.sandbox import Principal, Sandbox, SandboxSettings
from connectors.kustomer.sandbox.routes.common import get_sandbox, require_roles

from .conftest import ClientFactory, first_error, make_client, small_settings

pytestmark = pytest.mark.anyio


async def test_inbound_web_hook(client: httpx.AsyncClient, client_with_roles: ClientFactory, sb: Sandbox) -> None:
    r = await client.post("/v1/hooks/web", json={"name": "Okendo reviews"})
    assert r.status_code == 201
    hook = r.json()["data"]
    url = hook["attributes"]["url"]
    assert url.startswith("http://sandbox.kustomer.test/v1/hooks/web/")
    assert hook["attributes"]["eventName"] == f"kustomer.hooks.web.{hook['id']}.receive"
    path = url.removeprefix(sb.base_url)
    poster = client_with_roles(["org.hooks"])
    assert (await client_with_roles(["org.admin"]).post(path, json={})).status_code == 403
    review = {"reviewerEmail": "reviewer@example.com", "review": {"rating": 4}}
    r = await poster.post(path, json=review)
    assert r.status_code == 200
    transaction = r.json()["data"]
    assert transaction["type"] == "transaction"
    assert transaction["attributes"]["data"] == review
    assert transaction["attributes"]["createdAt"].endswith("Z")
    assert transaction["relationships"]["hook"]["data"] == {"type": "web_hook", "id": hook["id"]}
    assert transaction["relationships"]["org"]["links"]["self"] == f"/v1/org/{sb.org_id}"
    r = await poster.post(path, data={"a": "1", "b": ["2", "3"]})
    assert r.json()["data"]["attributes"]["data"] == {"a": "1", "b": ["2", "3"]}
    r = await poster.post(path, files={"file": ("r.txt", b"hello", "text/plain")}, data={"k": "v"})
    assert r.json()["data"]["attributes"]["data"]["file"] == {
        "filename": "r.txt",
        "contentType": "text/plain",
        "size": 5,
    }
    xml = b'<review id="7"><rating>4</rating><tag>a</tag><tag>b</tag></review>'
    r = await poster.post(path, content=xml, headers={"content-type": "application/xml"})
    assert r.json()["data"]["attributes"]["data"] == {"review": {"@id": "7", "rating": "4", "tag": ["a", "b"]}}
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    assert (await poster.post(path, content=bomb, headers={"content-type": "text/xml"})).status_code == 400
    assert (await poster.post(path, content=b"{", headers={"content-type": "application/json"})).status_code == 400
    big = b'{"x": "' + b"a" * (400 * 1024) + b'"}'
    r = await poster.post(path, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    medium = b'{"x": "' + b"a" * (200 * 1024) + b'"}'
    assert (await poster.post(path, content=medium, headers={"content-type": "application/json"})).status_code == 200
    assert (await poster.post("/v1/hooks/web/unknown", json={})).status_code == 404
    stored = (await client.get("/sandbox/hooks/transactions")).json()["data"]
    assert len(stored) == len(sb.state.hook_transactions) == 5
    listed = (await client.get("/v1/hooks/web")).json()["data"]
    assert [h["id"] for h in listed] == [hook["id"]]


async def test_body_limit_for_other_endpoints(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/customers", json={"name": "x" * (101 * 1024)})
    assert r.status_code == 413
    assert r.headers["x-ratelimit-limit"] == "1000"
    assert first_error(r)["code"] == "payload_too_large"


async def test_admin_routes(sb: Sandbox) -> None:
    async with make_client(sb) as c:
        index = (await c.get("/sandbox")).json()
        assert index["org"]["id"] == sb.org_id
        assert index["counts"]["customers"] == 60
        assert (await c.get("/sandbox", headers={"accept": "text/html"})).text.startswith("<!doctype html>")
        r = await c.post("/sandbox/keys", json={"roles": ["org.user.customer.read"], "name": "via admin"})
        assert r.status_code == 201
        key = r.json()
        r = await c.get("/v1/customers", headers={"Authorization": f"Bearer {key['token']}"})
        assert r.status_code == 200
        assert (await c.delete(f"/sandbox/keys/{key['id']}")).status_code == 204
        r = await c.get("/v1/customers", headers={"Authorization": f"Bearer {key['token']}"})
        assert r.status_code == 401
        r = await c.patch("/sandbox/settings", json={"latency_ms": 1, "fault_502_rate": 0.25})
        assert r.json()["fault_502_rate"] == 0.25
        assert sb.settings.latency_ms == 1
        assert (await c.patch("/sandbox/settings", json={"fault_502_rate": 2})).status_code == 400
        assert (await c.patch("/sandbox/settings", json={"no_such_setting": 1})).status_code == 400
        r = await c.post("/sandbox/oauth/clients", json={"client_id": "cli", "redirect_uris": ["http://localhost/cb"]})
        assert r.status_code == 400  # confidential without secret
        r = await c.post(
            "/sandbox/oauth/clients",
            json={"client_id": "cli", "client_secret": "s", "redirect_uris": ["http://l/cb"]},
        )
        assert r.status_code == 201
        assert "cli" in sb.state.oauth_clients
        counters = (await c.get("/sandbox/requests")).json()
        assert counters["counters"]["requests"] >= 2
        assert counters["recent"][0]["path"] == "/v1/customers"
        assert (await c.put("/sandbox/app-settings", json={"ecommstore.default.authToken": "t"})).status_code == 200
        assert sb.state.app_settings[sb.org_id] == {"ecommstore.default.authToken": "t"}
        assert (await c.put("/sandbox/apps/ecommstore", json={"app": "ecommstore", "commands": []})).status_code == 200
        assert (await c.get("/sandbox/apps/ecommstore")).json()["app"] == "ecommstore"
        old_org = sb.org_id
        r = await c.post("/sandbox/reset", json={"seed": 7, "settings": {"customers": 5}})
        assert r.status_code == 200
        assert sb.org_id != old_org
        assert len(sb.state.customers) == 5
        assert sb.settings.seed == 7
        r = await c.get("/v1/customers", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert r.json()["meta"]["total"] == 5
        assert (await c.get("/sandbox/webhooks/deliveries")).json() == {"data": []}
        assert (await c.get("/sandbox/webhooks/events")).json() == {"data": []}


async def test_admin_token() -> None:
    sb = Sandbox(small_settings(customers=1, admin_token="letmein"))
    async with make_client(sb) as c:
        assert (await c.get("/sandbox/settings")).status_code == 401
        assert (await c.get("/sandbox/settings", headers={"x-sandbox-admin-token": "letmein"})).status_code == 200


async def test_extra_routers_get_auth_and_rate_limits() -> None:
    router = APIRouter()

    @router.post("/v1/extras/{name}/run")
    async def run_command(
        name: str,
        request: Request,
        who: Annotated[Principal, Depends(require_roles("org.permission.apps.read"))],
    ) -> JSONResponse:
        sandbox = get_sandbox(request)
        return JSONResponse({"data": {"name": name, "user": who.user_id, "org": sandbox.org_id}})

    sb = Sandbox(small_settings(customers=1), extra_routers=[router])
    async with make_client(sb, sb.mint_api_key(roles=["org.permission.apps.read"])) as c:
        r = await c.post("/v1/extras/shop.app.refund/run", json={})
        assert r.status_code == 200
        assert r.json()["data"]["name"] == "shop.app.refund"
        assert "x-ratelimit-remaining" in r.headers
    async with make_client(sb, sb.mint_api_key(roles=["org.user.customer.read"])) as c:
        assert (await c.post("/v1/extras/x/run", json={})).status_code == 403
    async with make_client(sb) as c:
        assert (await c.post("/v1/extras/x/run", json={})).status_code == 401
    later = APIRouter()
    later.add_api_route("/v1/ping", lambda: {"pong": True}, methods=["GET"])
    sb.include_router(later)
    async with make_client(sb, sb.mint_api_key()) as c:
        assert (await c.get("/v1/ping")).json() == {"pong": True}


def test_seed_is_deterministic_and_realistic() -> None:
    a = Sandbox(SandboxSettings(seed=3, customers=150))
    b = Sandbox(SandboxSettings(seed=3, customers=150))
    c = Sandbox(SandboxSettings(seed=4, customers=150))
    ids_a = [r.id for r in a.state.customers]
    assert ids_a == [r.id for r in b.state.customers]
    assert [r.attrs for r in a.state.customers] == [r.attrs for r in b.state.customers]
    assert ids_a != [r.id for r in c.state.customers]
    emails = [e["email"] for r in a.state.customers for e in r.attrs["emails"]]
    assert all(re.fullmatch(r"[^@]+@example\.(com|net|org)", e) for e in emails)
    assert all(re.fullmatch(r"\+1555\d{7}", p["phone"]) for r in a.state.customers for p in r.attrs["phones"])
    assert all(d["domain"].endswith(".example.org") for r in a.state.companies for d in r.attrs["domains"])
    stamps = [r.updated_ms for r in a.state.customers]
    assert max(stamps.count(s) for s in set(stamps)) >= 10  # the import cluster
    statuses = {r.attrs["status"] for r in a.state.conversations}
    assert statuses == {"open", "snoozed", "done"}
    channels = {ch for r in a.state.conversations for ch in r.attrs["channels"]}
    assert len(channels) >= 6
    assert len(a.state.notes) > 0
    assert len(a.state.kobjects) > 0
    assert len(a.state.teams) == 4
    assert ids_a == sorted(ids_a)  # ids grow with creation order
    for conv in a.state.conversations:
        assert conv.attrs["messageCount"] == len(a.state.messages.related("conversation", conv.id))
