"""The Connect page end to end in a real headless Chromium (Debian's chromium, driven by Playwright).

Never ``playwright install``: the browser is the system one (``.ci/run`` installs it). Without it the test is
skipped with the reason, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import embedded_server, operator

pytestmark = [pytest.mark.browser, pytest.mark.http]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def pick(page: Any, *operations: str) -> None:
    for name in operations:
        page.check(f'input[name="operations"][value="{name}"]')


def test_oauth_connect_flow_in_chromium(browser: Any, tmp_path: Path) -> None:
    with embedded_server(tmp_path / "home", loopback=True) as (url, _app):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/connect")
        assert page.inner_text("#owner") == "demo"
        pick(page, "genericContact::list", "genericContact::create")
        live = page.locator("#roles-live li").all_inner_texts()  # computed by connect.js as boxes are ticked
        assert live == [
            "org.permission.customer.create",
            "org.permission.customer.read",
            "org.permission.search.create",
        ]
        assert page.inner_text("#roles-live-count") == "3"
        page.click("#continue")
        assert page.locator("#roles-needed li").all_inner_texts() == live
        page.fill('#oauth-form input[name="label"]', "browser")
        page.click("#connect-oauth")
        # Kustomer's (the sandbox's) consent page
        page.wait_for_url("**/sandbox-kustomer/oauth/authorize?*")
        scopes = page.locator("#scopes li").all_inner_texts()
        assert "org.permission.customer.create" in scopes and any("offline_access" in s for s in scopes)
        page.screenshot(path=str(tmp_path / "consent.png"))
        page.click("button.approve")
        # back through /oauth/callback to the Connect page, showing the new connection
        page.wait_for_url("**/connect?connectionId=*")
        status = page.locator("#status")
        assert status.get_attribute("data-status") == "active"
        connection_id = page.url.split("connectionId=")[1].split("&")[0]
        page.screenshot(path=str(tmp_path / "connected.png"), full_page=True)
        row = page.locator(f'tr[data-connection-id="{connection_id}"]')
        assert row.locator(".status").inner_text() == "active"
        context.close()
        with httpx.Client(base_url=url, headers=operator("demo")) as api:
            info = api.get(f"/connections/{connection_id}").json()
            assert info["authType"] == "oauth2" and info["label"] == "browser"
            assert info["operations"] == ["genericContact::list", "genericContact::create"]
            r = api.get("/resources/genericContact?limit=1", headers={"X-Connectors-Label": "browser"})
            assert r.status_code == 200


def test_api_key_connect_flow_in_chromium(browser: Any, tmp_path: Path) -> None:
    with embedded_server(tmp_path / "home") as (url, app):
        with httpx.Client(base_url=url, headers=operator()) as api:
            token = api.post("/sessions", json={"ownerId": "shop-42"}).json()["token"]
        key = app.state.server.embedded.sandbox.mint_api_key(name="browser key")
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/connect?session={token}")
        assert "session=" not in page.url  # the token moved into an HttpOnly cookie
        assert page.inner_text("#owner") == "shop-42"
        assert context.cookies()[0]["httpOnly"] is True
        pick(page, "genericCompany::list", "genericCompany::retrieve")
        page.click("#continue")
        assert page.locator("#roles-needed li").all_inner_texts() == [
            "org.permission.company.read",
            "org.permission.search.create",
        ]
        page.fill("#api-key", key)
        page.click("#connect-apikey")
        page.wait_for_url("**/connect?connectionId=*")
        assert page.locator("#status").get_attribute("data-status") == "active"
        assert key not in page.content()
        context.close()
        with httpx.Client(base_url=url, headers=operator("shop-42")) as api:
            [info] = api.get("/connections").json()["data"]
            assert info["authType"] == "api_key" and info["operations"] == [
                "genericCompany::list",
                "genericCompany::retrieve",
            ]
