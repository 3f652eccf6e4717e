"""The Connect page over HTTP (the browser test drives the same flow in Chromium)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from connectors import Connectors
from connectors.kustomer.sandbox import Sandbox

from .conftest import OPERATOR_KEY, make_client
from .test_connections import consent, local

pytestmark = pytest.mark.anyio


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


@contextlib.asynccontextmanager
async def signed_in(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as browser:
        r = await browser.get(f"/connect?session={token}&operations=genericContact::list")
        assert r.status_code == 303
        assert r.headers["location"] == "/connect?operations=genericContact%3A%3Alist"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        yield browser


async def test_signed_out(app: FastAPI) -> None:
    async with make_client(app) as browser:
        r = await browser.get("/connect")
        assert r.status_code == 401 and 'id="error"' in r.text
        r = await browser.get("/connect?session=cs1.bogus.sig")
        assert r.status_code == 401 and "set-cookie" not in r.headers
        r = await browser.get(f"/connect?session={OPERATOR_KEY}")
        assert r.status_code == 401 and "not a session token" in r.text
        browser.cookies.set("connectors_session", OPERATOR_KEY)
        assert (await browser.get("/connect")).status_code == 401  # the operator key never works from a cookie


async def test_pick_operations_and_see_roles(app: FastAPI, mint: Callable[..., Any]) -> None:
    async with signed_in(app, await mint("acme")) as browser:
        page = await browser.get("/connect")
        assert page.status_code == 200
        assert '<strong id="owner">acme</strong>' in page.text
        assert 'value="genericContact::create"' in page.text
        assert 'data-roles="org.permission.customer.create"' in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        review = await browser.get("/connect?operations=genericContact::list&operations=genericCompany::create")
        roles = re.findall(
            r"<li><code>([^<]+)</code></li>", review.text.split('id="roles-needed"')[1].split("</ul>")[0]
        )
        assert roles == [
            "org.permission.company.create",
            "org.permission.customer.read",
            "org.permission.search.create",
        ]
        assert 'id="oauth-form"' in review.text and 'id="apikey-form"' in review.text
        bad = await browser.get("/connect?operations=genericContact::explode")
        assert bad.status_code == 422 and "unknown operation" in bad.text
        static = await browser.get("/connect/static/connect.js")
        assert static.status_code == 200 and "roles-live" in static.text


async def test_api_key_path(app: FastAPI, sb: Sandbox, server_hub: Connectors, mint: Callable[..., Any]) -> None:
    async with signed_in(app, await mint("acme")) as browser:
        page = await browser.get("/connect?operations=genericContact::list")
        csrf = csrf_of(page.text)
        form = {"csrf": csrf, "operations": "genericContact::list", "api_key": sb.mint_api_key(name="page")}
        r = await browser.post("/connect/api-key", data={**form, "csrf": "forged"})
        assert r.status_code == 403 and (await server_hub.list(owner_id="acme")) == []
        r = await browser.post("/connect/api-key", data=form)
        assert r.status_code == 303
        status = await browser.get(r.headers["location"])
        assert 'id="status"' in status.text and 'data-status="active"' in status.text
        [info] = await server_hub.list(owner_id="acme")
        assert info.operations == ("genericContact::list",)
        # a key without the roles: the page says which roles are missing, nothing is stored
        weak = sb.mint_api_key(roles=["org.permission.company.read"], name="weak")
        r = await browser.post(
            "/connect/api-key",
            data={"csrf": csrf, "operations": "genericContact::list", "api_key": weak, "label": "second"},
        )
        assert r.status_code == 403 and "org.permission.customer.read" in r.text
        assert len(await server_hub.list(owner_id="acme")) == 1
        r = await browser.post(
            "/connect/api-key", data={"csrf": csrf, "operations": "genericContact::list", "api_key": "junk"}
        )
        assert r.status_code == 422 and "refused the API key" in r.text
        # disconnect from the page
        r = await browser.post("/connect/disconnect", data={"csrf": csrf, "connection_id": info.id})
        assert r.status_code == 303 and await server_hub.list(owner_id="acme") == []


async def test_oauth_path(app: FastAPI, sb: Sandbox, server_hub: Connectors, mint: Callable[..., Any]) -> None:
    async with signed_in(app, await mint("acme")) as browser:
        page = await browser.get("/connect?operations=genericContact::list")
        r = await browser.post(
            "/connect/oauth",
            data={"csrf": csrf_of(page.text), "operations": ["genericContact::list", "genericContact::update"]},
        )
        assert r.status_code == 303
        authorize = r.headers["location"]
        assert authorize.startswith(f"{sb.base_url}/oauth/authorize?")
        scopes = parse_qs(urlsplit(authorize).query)["scope"][0].split()
        assert set(scopes) == {
            "org.permission.customer.read",
            "org.permission.search.create",
            "org.permission.customer.update",
            "offline_access",
        }
        back = await consent(sb, authorize)
        r = await browser.get(local(back))
        assert r.status_code == 303
        landing = r.headers["location"]
        assert landing.startswith("/connect?connectionId=")
        done = await browser.get(landing)
        assert 'data-status="active"' in done.text
        [info] = await server_hub.list(owner_id="acme")
        assert info.auth_type == "oauth2"
        r = await browser.post("/connect/oauth", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 422 and "choose at least one operation" in r.text
