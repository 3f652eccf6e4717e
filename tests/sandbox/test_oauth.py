"""OAuth 2.0: consent page, PKCE, codes, refresh rotation with reuse detection, RFC 6749 errors."""

from __future__ import annotations

import base64
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox
from connectors.kustomer.sandbox.oauth import pkce_challenge

from .conftest import FakeClock, make_client

pytestmark = pytest.mark.anyio

REDIRECT = "https://app.example.com/callback"
SCOPE = "org.permission.customer.read org.user.customer.read offline_access"


def consent_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', page))


async def authorize(
    c: httpx.AsyncClient,
    *,
    client_id: str = "app",
    scope: str = SCOPE,
    verifier: str | None = None,
    decision: str = "approve",
    state: str = "xyz",
) -> dict[str, list[str]]:
    params = {
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": scope,
        "state": state,
    }
    if verifier:
        params |= {"code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"}
    page = await c.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    r = await c.post("/oauth/authorize", data={**consent_fields(page.text), "decision": decision})
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


@pytest.fixture
def oauth_sb(sb: Sandbox) -> Sandbox:
    sb.register_oauth_client("app", "s3cret", [REDIRECT])
    sb.register_oauth_client("spa", None, [REDIRECT], public=True)
    return sb


async def token(c: httpx.AsyncClient, data: dict[str, str], *, basic: tuple[str, str] | None = None) -> httpx.Response:
    headers = {}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    return await c.post("/oauth/token", data=data, headers=headers)


async def test_consent_page_html(oauth_sb: Sandbox) -> None:
    async with make_client(oauth_sb) as c:
        r = await c.get(
            "/oauth/authorize",
            params={"client_id": "app", "redirect_uri": REDIRECT, "response_type": "code", "scope": SCOPE},
        )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert page.startswith("<!doctype html>")
    assert "<code>org.permission.customer.read</code>" in page
    assert "offline_access" in page
    assert 'method="post"' in page
    assert 'value="approve"' in page
    assert 'value="deny"' in page
    fields = consent_fields(page)
    assert set(fields) == {"request_id", "csrf_token"}


async def test_authorization_code_with_pkce_and_refresh_rotation(oauth_sb: Sandbox, clock: FakeClock) -> None:
    verifier = secrets.token_urlsafe(48)
    async with make_client(oauth_sb) as c:
        query = await authorize(c, verifier=verifier)
        assert query["state"] == ["xyz"]
        code = query["code"][0]
        bad = await token(
            c,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": "x" * 50,
            },
            basic=("app", "s3cret"),
        )
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_grant"
        r = await token(
            c,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            basic=("app", "s3cret"),
        )
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 86400
        assert body["scope"] == SCOPE
        assert body["refresh_token"]
        access, refresh = body["access_token"], body["refresh_token"]
        assert oauth_sb.state.counters["oauth.authorization_code"] == 1
    async with make_client(oauth_sb, access) as api:
        assert (await api.get("/v1/customers", params={"pageSize": 1})).status_code == 200
        assert (await api.get("/v1/companies")).status_code == 403  # exactly the granted roles
        me = (await api.get("/v1/users/current")).json()["data"]
        assert me["id"] == oauth_sb.owner_id
        assert me["attributes"]["userType"] == "user"
        current = (await api.get("/v1/auth/tokens/current")).json()["data"]["attributes"]
        assert current["roles"] == ["org.permission.customer.read", "org.user.customer.read"]
    async with make_client(oauth_sb) as c:
        clock.advance(3600)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": "app",
            "client_secret": "s3cret",
        }
        r1 = await token(c, form)
        assert r1.status_code == 200
        rotated = r1.json()["refresh_token"]
        assert rotated != refresh
        assert r1.json()["access_token"] != access
        r2 = await token(c, {**form, "refresh_token": rotated})
        assert r2.status_code == 200
        newest_access, newest_refresh = r2.json()["access_token"], r2.json()["refresh_token"]
        assert oauth_sb.state.counters["oauth.refresh"] == 2
        reuse = await token(c, form)  # the first, long rotated refresh token
        assert reuse.status_code == 400
        assert reuse.json()["error"] == "invalid_grant"
        assert oauth_sb.state.counters["oauth.refresh_reuse"] == 1
        after = await token(c, {**form, "refresh_token": newest_refresh})
        assert after.status_code == 400  # the whole family is revoked
    async with make_client(oauth_sb, newest_access) as api:
        assert (await api.get("/v1/users/current")).status_code == 401
    async with make_client(oauth_sb, access) as api:
        assert (await api.get("/v1/users/current")).status_code == 401


async def test_code_is_single_use_and_reuse_revokes(oauth_sb: Sandbox) -> None:
    async with make_client(oauth_sb) as c:
        code = (await authorize(c))["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        first = await token(c, form, basic=("app", "s3cret"))
        assert first.status_code == 200
        second = await token(c, form, basic=("app", "s3cret"))
        assert second.json()["error"] == "invalid_grant"
        refresh = await token(
            c,
            {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
            basic=("app", "s3cret"),
        )
        assert refresh.status_code == 400
    async with make_client(oauth_sb, first.json()["access_token"]) as api:
        assert (await api.get("/v1/users/current")).status_code == 401


async def test_code_expiry_and_refresh_idle_expiry(oauth_sb: Sandbox, clock: FakeClock) -> None:
    async with make_client(oauth_sb) as c:
        code = (await authorize(c))["code"][0]
        clock.advance(61)
        r = await token(c, {"grant_type": "authorization_code", "code": code}, basic=("app", "s3cret"))
        assert r.json()["error"] == "invalid_grant"
        code = (await authorize(c))["code"][0]
        r = await token(c, {"grant_type": "authorization_code", "code": code}, basic=("app", "s3cret"))
        refresh = r.json()["refresh_token"]
        clock.advance(14 * 86400)
        r = await token(c, {"grant_type": "refresh_token", "refresh_token": refresh}, basic=("app", "s3cret"))
        assert r.json()["error"] == "invalid_grant"
        assert "expired" in r.json()["error_description"]


async def test_access_token_expiry(oauth_sb: Sandbox, clock: FakeClock) -> None:
    oauth_sb.settings.oauth_access_token_ttl_seconds = 120
    async with make_client(oauth_sb) as c:
        code = (await authorize(c, scope="org.user.customer.read"))["code"][0]
        body = (await token(c, {"grant_type": "authorization_code", "code": code}, basic=("app", "s3cret"))).json()
        assert "refresh_token" not in body  # no offline_access
        assert body["expires_in"] == 120
    async with make_client(oauth_sb, body["access_token"]) as api:
        assert (await api.get("/v1/users/current")).status_code == 200
        clock.advance(121)
        assert (await api.get("/v1/users/current")).status_code == 401


async def test_public_client_needs_pkce(oauth_sb: Sandbox) -> None:
    async with make_client(oauth_sb) as c:
        params = {
            "client_id": "spa",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": SCOPE,
            "state": "s",
        }
        r = await c.get("/oauth/authorize", params=params)
        assert r.status_code == 302
        assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_request"]
        verifier = secrets.token_urlsafe(48)
        code = (await authorize(c, client_id="spa", verifier=verifier))["code"][0]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "spa",
            "redirect_uri": REDIRECT,
        }
        assert (await token(c, form)).json()["error"] == "invalid_grant"  # no verifier
        code = (await authorize(c, client_id="spa", verifier=verifier))["code"][0]
        r = await token(c, {**form, "code": code, "code_verifier": verifier})
        assert r.status_code == 200
        r = await token(c, {**form, "client_secret": "nope"})
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"


async def test_deny_and_authorize_errors(oauth_sb: Sandbox) -> None:
    async with make_client(oauth_sb) as c:
        assert (await authorize(c, decision="deny")) == {
            "error": ["access_denied"],
            "error_description": ["The user denied access."],
            "state": ["xyz"],
        }
        base = {"client_id": "app", "redirect_uri": REDIRECT, "response_type": "code", "scope": SCOPE}
        for bad in ({"client_id": "nope"}, {"redirect_uri": "https://evil.example.com/cb"}):
            r = await c.get("/oauth/authorize", params={**base, **bad})
            assert r.status_code == 400
            assert "text/html" in r.headers["content-type"]
            assert "location" not in r.headers
        for bad, error in (
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"scope": "offline_access"}, "invalid_scope"),
            ({"scope": "customers:read"}, "invalid_scope"),
            ({"code_challenge": "abc", "code_challenge_method": "plain"}, "invalid_request"),
        ):
            r = await c.get("/oauth/authorize", params={**base, **bad})
            assert r.status_code == 302, bad
            assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == [error]
        page = await c.get("/oauth/authorize", params=base)
        fields = consent_fields(page.text)
        r = await c.post("/oauth/authorize", data={**fields, "csrf_token": "forged", "decision": "approve"})
        assert r.status_code == 400
        r = await c.post("/oauth/authorize", data={**fields, "decision": "approve"})
        assert r.status_code == 302
        r = await c.post("/oauth/authorize", data={**fields, "decision": "approve"})
        assert r.status_code == 400  # already answered


async def test_token_endpoint_errors(oauth_sb: Sandbox) -> None:
    async with make_client(oauth_sb) as c:
        r = await token(c, {"grant_type": "authorization_code", "code": "x"}, basic=("app", "wrong"))
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"
        assert r.headers["www-authenticate"].startswith("Basic")
        r = await token(
            c, {"grant_type": "authorization_code", "code": "x", "client_id": "ghost", "client_secret": "x"}
        )
        assert r.status_code == 401
        r = await token(c, {"grant_type": "password"}, basic=("app", "s3cret"))
        assert r.json()["error"] == "unsupported_grant_type"
        r = await token(c, {"code": "x"}, basic=("app", "s3cret"))
        assert r.json()["error"] == "invalid_request"
        r = await token(c, {"grant_type": "authorization_code", "code": "nope"}, basic=("app", "s3cret"))
        assert r.json()["error"] == "invalid_grant"
        r = await token(
            c,
            {"grant_type": "authorization_code", "code": "x", "client_secret": "s3cret"},
            basic=("app", "s3cret"),
        )
        assert r.json()["error"] == "invalid_request"
        r = await c.post("/oauth/token", json={"grant_type": "refresh_token"})
        assert r.json()["error"] == "invalid_request"


async def test_refresh_cannot_widen_scope(oauth_sb: Sandbox) -> None:
    async with make_client(oauth_sb) as c:
        code = (await authorize(c))["code"][0]
        body = (await token(c, {"grant_type": "authorization_code", "code": code}, basic=("app", "s3cret"))).json()
        form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
        r = await token(c, {**form, "scope": "org.admin"}, basic=("app", "s3cret"))
        assert r.json()["error"] == "invalid_scope"
        r = await token(c, {**form, "scope": "org.user.customer.read"}, basic=("app", "s3cret"))
        assert r.status_code == 200
        assert r.json()["scope"] == "org.user.customer.read"
