"""Bearer tokens, roles, region mismatch, token introspection."""

from __future__ import annotations

import pytest

from connectors.kustomer.sandbox import DEFAULT_DEMO_ROLES, Sandbox
from connectors.kustomer.sandbox.auth import decode_jwt, signing_key

from .conftest import ClientFactory, FakeClock, first_error, make_client

pytestmark = pytest.mark.anyio


async def test_missing_and_invalid_tokens(sb: Sandbox) -> None:
    async with make_client(sb) as anonymous:
        r = await anonymous.get("/v1/customers")
        assert r.status_code == 401
        assert first_error(r)["code"] == "unauthorized"
        assert r.headers["x-ratelimit-limit"] == "1000"
        for header in ("Bearer", "Basic abc", "Bearer not-a-jwt", "Bearer a.b.c"):
            r = await anonymous.get("/v1/customers", headers={"Authorization": header})
            assert r.status_code == 401, header
        forged = sb.mint_api_key()[:-4] + "AAAA"
        r = await anonymous.get("/v1/customers", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401


async def test_api_key_claims(sb: Sandbox) -> None:
    token = sb.mint_api_key(roles=["org.user.customer.read"], name="reporting")
    claims = decode_jwt(token, signing_key(sb.settings.seed))
    user = sb.state.users.get(claims["user"])
    assert user is not None
    assert user.attrs["userType"] == "machine"
    assert claims["org"] == sb.org_id
    assert claims["orgName"] == "sandbox"
    assert claims["roles"] == ["org.user.customer.read"]
    assert claims["aud"] == "urn:consumer"
    assert claims["iss"] == "urn:api"
    assert claims["sub"] == claims["user"]
    assert claims["pod"] == "prod1"
    assert claims["userType"] == "machine"


async def test_region_mismatch_message(sb: Sandbox) -> None:
    eu = sb.mint_api_key(region="eu")
    async with make_client(sb, eu) as c:
        r = await c.get("/v1/customers")
    assert r.status_code == 401
    assert first_error(r)["detail"] == "Auth token associated with pod prod2 but request is being handled by prod1"
    india = Sandbox(sb.settings.model_copy(update={"region": "in", "customers": 1}))
    async with make_client(india, india.mint_api_key(region="us")) as c:
        r = await c.get("/v1/customers")
    assert first_error(r)["detail"] == "Auth token associated with pod prod1 but request is being handled by prod4"


async def test_expired_and_revoked(sb: Sandbox, clock: FakeClock) -> None:
    short = sb.mint_api_key(expires_in=60)
    async with make_client(sb, short) as c:
        assert (await c.get("/v1/users/current")).status_code == 200
        clock.advance(61)
        r = await c.get("/v1/users/current")
        assert r.status_code == 401
        assert "Expired" in first_error(r)["detail"]
    revoked = sb.mint_api_key()
    async with make_client(sb, revoked) as c:
        assert (await c.get("/v1/users/current")).status_code == 200
        assert sb.revoke_token(revoked)
        assert (await c.get("/v1/users/current")).status_code == 401
    own = sb.mint_api_key()
    async with make_client(sb, own) as c:
        assert (await c.delete("/v1/auth/tokens/current")).status_code == 204
        assert (await c.get("/v1/auth/tokens/current")).status_code == 401
    assert not sb.revoke_token("nope")


async def test_roles_any_one_of(client_with_roles: ClientFactory, sb: Sandbox) -> None:
    legacy = client_with_roles(["org.user.customer.read"])
    permission = client_with_roles(["org.permission.customer.read"])
    broad = client_with_roles(["org.user"])
    family = client_with_roles(["org.permission.customer"])
    nothing = client_with_roles(["org.permission.company.read"])
    for c in (legacy, permission, broad, family):
        assert (await c.get("/v1/customers")).status_code == 200
    r = await nothing.get("/v1/customers")
    assert r.status_code == 403
    error = first_error(r)
    assert error["code"] == "forbidden"
    assert "org.permission.customer.read" in error["detail"]
    assert "org.user.customer.read" in error["detail"]
    assert error["meta"]["requiredRoles"] == ["org.permission.customer.read", "org.user.customer.read"]
    assert (await legacy.post("/v1/customers", json={})).status_code == 403
    admin_only = client_with_roles(["org.admin"])
    assert (await admin_only.get("/v1/customers")).status_code == 403  # org.admin does not imply org.user.*
    assert (await admin_only.get("/v1/klasses")).status_code == 200
    sb.settings.missing_role_status = 401
    assert (await nothing.get("/v1/customers")).status_code == 401


async def test_token_introspection_needs_no_roles(client_with_roles: ClientFactory, sb: Sandbox) -> None:
    bare = client_with_roles([])
    r = await bare.get("/v1/auth/tokens/current")
    assert r.status_code == 200
    attrs = r.json()["data"]["attributes"]
    assert attrs["roles"] == []
    assert attrs["name"] == "limited"
    assert len(attrs["lastTokenChars"]) == 6
    assert attrs["createdAt"].endswith("Z")
    assert attrs["lastAccessedAt"].endswith("Z")
    assert r.json()["data"]["relationships"]["user"]["data"]["type"] == "user"
    roles = (await bare.get("/v1/auth/roles")).json()["data"]
    assert {r["id"] for r in roles} == set(DEFAULT_DEMO_ROLES)
    assert (await bare.get("/v1/users/current")).status_code == 200


async def test_every_v1_route_demands_auth(sb: Sandbox) -> None:
    paths = {p: ops for p, ops in sb.app.openapi()["paths"].items() if p.startswith("/v1")}
    assert sum(len(ops) for ops in paths.values()) > 80
    async with make_client(sb) as anonymous:
        for path, operations in paths.items():
            concrete = path.replace("{", "").replace("}", "")
            for method in operations:
                r = await anonymous.request(method.upper(), concrete)
                assert r.status_code == 401, (method, path)
