"""The embedded demo over real HTTP: sandbox mounted, demo owner connected, loopback access, restarts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import OPERATOR_KEY, embedded_server, operator

pytestmark = pytest.mark.http


def test_demo_serves_seeded_contacts_to_loopback_curl(tmp_path: Path) -> None:
    with embedded_server(tmp_path, loopback=True) as (url, _app):
        with httpx.Client(base_url=url) as curl:
            r = curl.get("/resources/genericContact")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["object"] == "list" and len(body["data"]) == 40
            assert all(item["fields"]["email"] for item in body["data"][:5])
            r = curl.get("/resources/crmOpportunity")
            assert r.status_code == 200 and len(r.json()["data"]) == 12
            r = curl.get("/resources/crmPipeline")
            assert r.json()["data"][0]["fields"]["name"]
            [info] = curl.get("/connections").json()["data"]
            assert info["ownerId"] == "demo" and info["baseUrl"] == f"{url}/sandbox-kustomer"
            health = curl.get("/healthz").json()
            assert health["status"] == "ok" and health["embedded"] is True and health["store"] == "sqlite"
            # the sandbox is reachable (a browser needs its consent page), its admin routes are not
            assert curl.get("/sandbox-kustomer/v1/customers").status_code == 401
            assert curl.get("/sandbox-kustomer/sandbox").status_code in (401, 403)
            page = curl.get(
                "/sandbox-kustomer/oauth/authorize",
                params={"client_id": "unified-connectors-demo", "response_type": "code", "scope": "x"},
            )
            assert page.status_code == 400  # an error page, not a redirect: the redirect_uri is not registered
            assert curl.get("/", headers={"Accept": "text/html"}).headers["location"] == "/connect"
            assert curl.get("/docs").status_code == 200
        # from another address, or with a foreign Host, there is no implicit owner
        with httpx.Client(base_url=url, headers={"Host": "demo.example"}) as rebound:
            assert rebound.get("/resources/genericContact").status_code == 401
        with httpx.Client(base_url=url) as op:
            r = op.get("/resources/genericContact?limit=2", headers=operator("demo"))
            assert r.status_code == 200 and len(r.json()["data"]) == 2


def test_restart_drops_the_previous_sandbox_connections(tmp_path: Path) -> None:
    with embedded_server(tmp_path) as (url, app), httpx.Client(base_url=url, headers=operator()) as c:
        key = app.state.server.embedded.sandbox.mint_api_key(name="acme")
        r = c.post("/connections", json={"ownerId": "acme", "apiKey": key, "operations": ["genericContact::list"]})
        assert r.status_code == 201, r.text
        assert sorted(i["ownerId"] for i in c.get("/connections").json()["data"]) == ["acme", "demo"]
    # the sandbox lived in memory: its keys died with it, so its connections are dropped on the next start
    with embedded_server(tmp_path) as (url, _app), httpx.Client(base_url=url, headers=operator()) as c:
        assert [i["ownerId"] for i in c.get("/connections").json()["data"]] == ["demo"]
        r = c.get("/resources/genericContact?limit=1", headers={"X-Connectors-Owner": "demo"})
        assert r.status_code == 200
    assert (tmp_path / "secret.key").exists()
    assert OPERATOR_KEY.encode() not in (tmp_path / "connectors.db").read_bytes()
    assert key.encode() not in (tmp_path / "connectors.db").read_bytes()
