"""Companies, users, teams, tags."""

from __future__ import annotations

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox

from .conftest import error_text

pytestmark = pytest.mark.anyio


async def test_company_crud_and_domains(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/companies", json={"externalId": "no-name"})
    assert r.status_code == 400
    assert error_text(r) == '"name" is required'
    r = await client.post(
        "/v1/companies",
        json={"name": "Initrode", "externalId": "c-1", "domains": [{"domain": "initrode.example.org"}]},
    )
    assert r.status_code == 201
    company = r.json()["data"]
    assert company["type"] == "company"
    assert company["attributes"]["domains"][0]["domain"] == "initrode.example.org"
    cid = company["id"]
    r = await client.put(f"/v1/companies/{cid}", json={"employeeCount": 12})
    assert r.json()["data"]["attributes"]["name"] == "Initrode"
    assert r.json()["data"]["attributes"]["employeeCount"] == 12
    assert (await client.post("/v1/companies", json={"name": "x", "domains": ["plain.example.org"]})).status_code == 400


async def test_company_delete_and_patch_are_not_in_the_api(client: httpx.AsyncClient, sb: Sandbox) -> None:
    cid = next(iter(sb.state.companies)).id
    assert (await client.delete(f"/v1/companies/{cid}")).status_code == 405
    assert (await client.patch(f"/v1/companies/{cid}", json={"name": "x"})).status_code == 405
    sb.settings.company_delete_supported = True
    linked = next(c for c in sb.state.customers if c.rels.get("company"))
    company = linked.rels["company"]
    assert (await client.patch(f"/v1/companies/{company}", json={"name": "Renamed"})).status_code == 200
    assert (await client.delete(f"/v1/companies/{company}")).status_code == 204
    assert (await client.get(f"/v1/companies/{company}")).status_code == 404
    customer = (await client.get(f"/v1/customers/{linked.id}")).json()["data"]
    assert customer["relationships"]["company"] == {"data": None}


async def test_company_list_filters(client: httpx.AsyncClient, sb: Sandbox) -> None:
    ext = next(c for c in sb.state.companies if c.attrs.get("externalId"))
    r = await client.get("/v1/companies", params={"externalId": ext.attrs["externalId"]})
    assert [d["id"] for d in r.json()["data"]] == [ext.id]
    word = str(ext.attrs["name"]).split()[0].upper()
    r = await client.get("/v1/companies", params={"filter": word})
    assert ext.id in [d["id"] for d in r.json()["data"]]
    assert all(word.lower() in d["attributes"]["name"].lower() for d in r.json()["data"])
    r = await client.get("/v1/companies", params={"filter": word, "externalId": ext.attrs["externalId"]})
    assert r.json()["meta"]["total"] == len(sb.state.companies)  # both given -> both ignored


async def test_users(client: httpx.AsyncClient, sb: Sandbox, token: str) -> None:
    r = await client.get("/v1/users", params={"pageSize": 500})
    assert r.status_code == 200
    users = r.json()["data"]
    assert {u["attributes"]["userType"] for u in users} >= {"user", "machine"}
    assert (await client.get("/v1/users", params={"pageSize": 501})).status_code == 400
    machine = (await client.get("/v1/users", params={"userType": "machine"})).json()["data"]
    assert all(u["attributes"]["userType"] == "machine" for u in machine)
    pending = (await client.get("/v1/users", params={"pending": "true"})).json()["data"]
    assert len(pending) == 1
    assert pending[0]["attributes"]["pending"] is True
    deleted = (await client.get("/v1/users", params={"deleted": "true"})).json()["data"]
    assert len(deleted) == 1
    assert deleted[0]["attributes"]["deleted"] is True
    owner = sb.state.users.get(sb.owner_id)
    assert owner is not None
    by_email = (await client.get("/v1/users", params={"email": owner.attrs["email"].upper()})).json()["data"]
    assert [u["id"] for u in by_email] == [owner.id]
    r = await client.get("/v1/users", params={"pending": "true", "userType": "machine"})
    assert r.status_code == 400
    assert "cannot be combined" in error_text(r)
    current = (await client.get("/v1/users/current")).json()["data"]
    assert current["id"] == sb.token_record(token).user_id
    assert current["attributes"]["userType"] == "machine"
    ids = [u["id"] for u in users[:3]]
    many = (await client.get(f"/v1/users/{','.join(ids)}")).json()["data"]
    assert [u["id"] for u in many] == ids
    assert (await client.get(f"/v1/users/{ids[0]}")).json()["data"]["id"] == ids[0]
    assert (await client.get(f"/v1/users/{ids[0]},{'0' * 24}")).status_code == 404
    r = await client.post("/v1/users", json={"name": "New Agent", "email": "agent@example.com", "userType": "hourly"})
    assert r.status_code == 201
    uid = r.json()["data"]["id"]
    r = await client.put(f"/v1/users/{uid}", json={"displayName": "Agent"})
    assert r.json()["data"]["attributes"]["displayName"] == "Agent"
    assert (await client.post("/v1/users", json={"name": "No email"})).status_code == 400
    r = await client.put("/v1/users/current", json={"displayName": "Robot"})
    assert r.json()["data"]["attributes"]["displayName"] == "Robot"


async def test_teams(client: httpx.AsyncClient, sb: Sandbox) -> None:
    users = [u.id for u in sb.state.users][:3]
    r = await client.post("/v1/teams", json={"name": "Night shift", "members": users[:1]})
    assert r.status_code == 201
    tid = r.json()["data"]["id"]
    r = await client.post(f"/v1/teams/{tid}/members", json={"members": users[1:]})
    assert r.json()["data"]["attributes"]["members"] == users
    r = await client.request("DELETE", f"/v1/teams/{tid}/members", json={"members": [users[0]]})
    assert r.json()["data"]["attributes"]["members"] == users[1:]
    r = await client.delete(f"/v1/teams/{tid}/members", params={"members": users[1]})
    assert r.json()["data"]["attributes"]["members"] == users[2:]
    assert (await client.post(f"/v1/teams/{tid}/members", json=["0" * 24])).status_code == 400
    r = await client.patch(f"/v1/teams/{tid}", json={"displayName": "Nights"})
    assert r.json()["data"]["attributes"]["displayName"] == "Nights"
    r = await client.put(f"/v1/teams/{tid}", json={"name": "Night Shift"})
    assert r.json()["data"]["attributes"]["name"] == "Night Shift"
    teams = (await client.get(f"/v1/users/{users[2]}/teams")).json()["data"]
    assert tid in [t["id"] for t in teams]
    assert (await client.get("/v1/teams", params={"pageSize": 500})).status_code == 200
    assert (await client.delete(f"/v1/teams/{tid}")).status_code == 204
    assert (await client.get(f"/v1/teams/{tid}")).status_code == 404


async def test_tags(client: httpx.AsyncClient) -> None:
    tags = (await client.get("/v1/tags")).json()["data"]
    assert tags
    assert all(t["type"] == "tag" for t in tags)
    one = tags[0]
    assert (await client.get(f"/v1/tags/{one['id']}")).json()["data"]["attributes"]["name"] == one["attributes"]["name"]
