"""``/connections``, ``/operations``, ``/sessions`` and the OAuth flow through ``/oauth/callback``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors import Connection
from connectors.kustomer.sandbox import Sandbox

from .conftest import PUBLIC_URL, bearer, operator

pytestmark = pytest.mark.anyio


async def consent(sb: Sandbox, authorization_url: str, *, decision: str = "approve") -> str:
    """Drive the sandbox consent page like a browser; return the redirect back to us."""
    async with httpx.AsyncClient(transport=sb.transport(), base_url=sb.base_url) as browser:
        page = await browser.get(authorization_url)
        assert page.status_code == 200, page.text
        fields = dict(re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', page.text))
        answer = await browser.post("/oauth/authorize", data={**fields, "decision": decision})
        assert answer.status_code == 302
        return answer.headers["location"]


def local(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL
    return parts.path + ("?" + parts.query if parts.query else "")


async def test_api_key_connection(client: httpx.AsyncClient, sb: Sandbox) -> None:
    key = sb.mint_api_key(name="k")
    r = await client.post(
        "/connections",
        json={"ownerId": "acme", "apiKey": key, "operations": ["genericContact::list", "genericContact::create"]},
        headers=operator(),
    )
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["object"] == "connection" and info["ownerId"] == "acme" and info["authType"] == "api_key"
    assert info["status"] == "active" and info["baseUrl"] == sb.base_url
    assert info["operations"] == ["genericContact::list", "genericContact::create"]
    assert key not in r.text
    r = await client.get(f"/connections/{info['id']}", headers=operator())
    assert r.json()["id"] == info["id"]
    r = await client.get(f"/connections/{info['id']}/whoami", headers=operator())
    assert r.status_code == 200 and r.json()["object"] == "identity" and r.json()["grantedRoles"]
    r = await client.get("/connections", headers=operator("acme"))
    assert [c["id"] for c in r.json()["data"]] == [info["id"]]
    r = await client.delete(f"/connections/{info['id']}", headers=operator())
    assert r.json() == {"object": "connection", "id": info["id"], "deleted": True}
    assert (await client.get(f"/connections/{info['id']}", headers=operator())).status_code == 404
    assert (await client.delete(f"/connections/{info['id']}", headers=operator())).status_code == 404


async def test_api_key_problems(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.post("/connections", json={"ownerId": "acme", "apiKey": "not-a-key"}, headers=operator())
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_credentials"
    assert r.json()["error"]["errors"][0]["path"] == "body.apiKey"
    assert "not-a-key" not in r.text
    limited = sb.mint_api_key(roles=["org.permission.customer.read"], name="limited")
    r = await client.post(
        "/connections",
        json={"ownerId": "acme", "apiKey": limited, "operations": ["genericContact::create"]},
        headers=operator(),
    )
    assert r.status_code == 403
    assert r.json()["error"]["missingRoles"] == ["org.permission.customer.create"]
    r = await client.post(
        "/connections",
        json={"ownerId": "acme", "apiKey": limited, "operations": ["genericContact::lsit"]},
        headers=operator(),
    )
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.operations[0]"
    r = await client.post("/connections", json={"ownerId": "acme", "authType": "api_key"}, headers=operator())
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.apiKey"
    r = await client.post("/connections", json={"ownerId": "acme", "apiKey": limited, "region": 5}, headers=operator())
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.region"
    r = await client.post("/connections", json={"apiKey": limited}, headers=operator())
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "header.X-Connectors-Owner"
    r = await client.post(
        "/connections", json={"ownerId": "acme", "apiKey": limited, "connectorId": "zendesk"}, headers=operator()
    )
    assert r.status_code == 404


async def test_sessions_cannot_choose_hosts_or_clients(
    client: httpx.AsyncClient, sb: Sandbox, mint: Callable[..., Any]
) -> None:
    token = await mint("acme")
    key = sb.mint_api_key(name="k")
    for extra, field in (
        ({"baseUrl": "http://169.254.169.254"}, "baseUrl"),
        ({"settings": {"role_overrides": {}}}, "settings"),
        ({"oauthClient": {"clientId": "x"}}, "oauthClient"),
    ):
        r = await client.post("/connections", json={"apiKey": key, **extra}, headers=bearer(token))
        assert r.status_code == 403, field
        assert r.json()["error"] == {
            "type": "Forbidden",
            "code": "operator_only",
            "message": f"only the operator may set {field}",
            "field": field,
        }
    r = await client.post("/connections", json={"apiKey": key, "ownerId": "other"}, headers=bearer(token))
    assert r.status_code == 404
    r = await client.post("/connections", json={"apiKey": key}, headers=bearer(token))
    assert r.status_code == 201 and r.json()["ownerId"] == "acme"
    # a restricted session can only grant what it holds
    narrow = await mint("acme", ["genericContact::list"])
    r = await client.post(
        "/connections",
        json={"apiKey": key, "label": "x", "operations": ["genericContact::create"]},
        headers=bearer(narrow),
    )
    assert r.status_code == 403
    r = await client.post("/connections", json={"apiKey": key, "label": "x"}, headers=bearer(narrow))
    assert r.status_code == 201 and r.json()["operations"] == ["genericContact::list"]


async def test_oauth_flow_end_to_end(client: httpx.AsyncClient, sb: Sandbox, mint: Callable[..., Any]) -> None:
    token = await mint("acme")
    ops = ["genericContact::list", "genericContact::retrieve"]
    r = await client.post("/connections", json={"operations": ops, "returnUrl": "/done?x=1"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "authorization" and body["alreadyAuthorized"] is False
    url = body["authorizationUrl"]
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{sb.base_url}/oauth/authorize")
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/oauth/callback"]
    assert set(query["scope"][0].split()) == {
        "org.permission.customer.read",
        "org.permission.search.create",
        "offline_access",
    }
    back = await consent(sb, url)
    r = await client.get(local(back))
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    assert target.path == "/done"
    params = parse_qs(target.query)
    assert params["x"] == ["1"] and params["status"] == ["active"]
    connection_id = params["connectionId"][0]
    r = await client.get(f"/connections/{connection_id}", headers=bearer(token))
    assert r.json()["authType"] == "oauth2" and r.json()["operations"] == ops
    r = await client.get("/resources/genericContact?limit=1", headers=bearer(token))
    assert r.status_code == 200
    # the state is single-use: a replay finds neither the state nor the return URL
    r = await client.get(local(back))
    assert r.status_code == 400 and 'id="error"' in r.text
    # asking again for covered operations needs no consent
    r = await client.post("/connections", json={"operations": ["genericContact::list"]}, headers=bearer(token))
    assert r.json()["alreadyAuthorized"] is True and r.json()["authorizationUrl"] is None


async def test_oauth_callback_without_return_url_renders_a_page(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.post(
        "/connections", json={"ownerId": "acme", "operations": ["genericContact::list"]}, headers=operator()
    )
    back = await consent(sb, r.json()["authorizationUrl"])
    page = await client.get(local(back))
    assert page.status_code == 200
    assert 'id="result"' in page.text and "active" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    # replay: the state was consumed
    replay = await client.get(local(back))
    assert replay.status_code == 400 and 'id="error"' in replay.text
    replay_json = await client.get(local(back), headers={"Accept": "application/json"})
    assert replay_json.status_code == 400 and replay_json.json()["error"]["code"] == "invalid_state"


async def test_oauth_denied_and_bad_state(client: httpx.AsyncClient, sb: Sandbox) -> None:
    r = await client.post(
        "/connections",
        json={"ownerId": "acme", "operations": ["genericContact::list"], "returnUrl": f"{PUBLIC_URL}/back"},
        headers=operator(),
    )
    back = await consent(sb, r.json()["authorizationUrl"], decision="deny")
    r = await client.get(local(back))
    assert r.status_code == 303
    params = parse_qs(urlsplit(r.headers["location"]).query)
    assert params["error"] == ["access_denied"]
    assert (await client.get("/connections", headers=operator("acme"))).json()["data"] == []
    r = await client.get("/oauth/callback?code=x&state=forged")
    assert r.status_code == 400 and "unknown, expired or already used" in r.text
    r = await client.get("/oauth/callback")
    assert r.status_code == 400
    r = await client.get("/oauth/callback", headers={"Accept": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "query.state"


async def test_oauth_needs_operations_and_safe_return_urls(client: httpx.AsyncClient) -> None:
    r = await client.post("/connections", json={"ownerId": "acme"}, headers=operator())
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["path"] == "body.operations"
    for bad in ("https://evil.example/steal", "//evil.example/x", "javascript:alert(1)", "/\\evil"):
        r = await client.post(
            "/connections",
            json={"ownerId": "acme", "operations": ["genericContact::list"], "returnUrl": bad},
            headers=operator(),
        )
        assert r.status_code == 422, bad
        assert r.json()["error"]["errors"][0]["path"] == "body.returnUrl"
    r = await client.post(
        "/connections", json={"ownerId": "acme", "apiKey": "k", "returnUrl": "/x"}, headers=operator()
    )
    assert r.status_code == 422


async def test_operations_lists_roles(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/operations", headers=operator())
    ops = {o["name"]: o for o in r.json()["data"]}
    assert ops["genericContact::list"]["roles"] == ["org.permission.customer.read", "org.permission.search.create"]
    assert "org.user.customer.read" in ops["genericContact::list"]["alternatives"][0]
    r = await client.get(
        "/operations", params={"operations": "genericContact::list,genericCompany::create"}, headers=operator()
    )
    assert r.json()["roles"] == [
        "org.permission.company.create",
        "org.permission.customer.read",
        "org.permission.search.create",
    ]
    assert len(r.json()["data"]) == 2
    r = await client.get("/operations", params={"operations": "nope"}, headers=operator())
    assert r.status_code == 422
    assert (await client.get("/operations")).status_code == 401
    assert (await client.get("/operations?connectorId=zendesk", headers=operator())).status_code == 404
