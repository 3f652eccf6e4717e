"""The same behaviours over real HTTP: uvicorn on loopback via ``running_sandbox``."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.kustomer.sandbox import Sandbox, running_sandbox
from connectors.kustomer.sandbox.oauth import pkce_challenge

from .conftest import START, FakeClock, first_error, small_settings

pytestmark = pytest.mark.http

Live = tuple[Sandbox, httpx.Client]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Sandbox, str]]:
    with running_sandbox(small_settings()) as (sb, base_url):
        yield sb, base_url


@pytest.fixture
def live(server: tuple[Sandbox, str]) -> Iterator[Live]:
    sb, base_url = server
    sb.reset(small_settings())
    sb.clock = FakeClock()
    token = sb.mint_api_key(name="http tests")
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=5) as client:
        yield sb, client


def test_served_base_url(server: tuple[Sandbox, str]) -> None:
    sb, base_url = server
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
    assert sb.base_url == base_url
    assert httpx.get(f"{base_url}/sandbox").json()["baseUrl"] == base_url


def test_core_semantics_over_http(live: Live) -> None:
    sb, c = live
    company = next(iter(sb.state.companies)).id
    body = {
        "name": "Http",
        "company": company,
        "locale": "de_DE",
        "emails": [{"email": "http@example.com"}],
        "externalId": "http/1",
    }
    r = c.post("/v1/customers/", json=body)
    assert r.status_code == 201
    cid = r.json()["data"]["id"]
    assert c.get("/v1/customers/email=http@example.com").json()["data"]["id"] == cid
    assert c.get("/v1/customers/externalId=http%2F1").json()["data"]["id"] == cid
    assert c.get("/v1/customers/email=nobody@example.com").status_code == 404
    r = c.put(f"/v1/customers/{cid}/", json={"name": "Http 2", "company": company})
    attrs = r.json()["data"]["attributes"]
    assert attrs["locale"] == "de_DE"
    assert attrs["name"] == "Http 2"
    r = c.put(f"/v1/customers/{cid}", json={"name": "Http 3"})
    assert r.json()["data"]["relationships"]["company"] == {"data": None}
    r = c.put(f"/v1/customers/{cid}", params={"replace": "true"}, json={"name": "Replaced"})
    assert "locale" not in r.json()["data"]["attributes"]
    r = c.post("/v1/customers", json={"custom": {"shoeSize": 42}})
    assert r.status_code == 400
    assert "shoeSize" in first_error(r)["detail"]
    eu = sb.mint_api_key(region="eu")
    r = c.get("/v1/customers", headers={"Authorization": f"Bearer {eu}"})
    assert r.status_code == 401
    assert first_error(r)["detail"] == "Auth token associated with pod prod2 but request is being handled by prod1"
    assert r.headers["x-request-id"]


def test_rate_limits_over_http_both_styles(live: Live) -> None:
    sb, c = live
    sb.settings.rate_limit_per_minute = 2
    sb.settings.rate_window_seconds = 30
    assert isinstance(sb.clock, FakeClock)
    sb.clock.now = START + 5
    statuses = [c.get("/v1/users/current") for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in statuses] == ["1", "0", "0"]
    assert {r.headers["x-ratelimit-reset"] for r in statuses} == {str(int(START + 30))}
    assert first_error(statuses[2])["code"] == "too_many_requests"
    sb.settings.ratelimit_reset_style = "delay"
    r = c.get("/v1/users/current")
    assert r.status_code == 429
    assert r.headers["x-ratelimit-reset"] == "25"
    sb.clock.now = START + 30
    assert c.get("/v1/users/current").status_code == 200


def test_faults_over_http(live: Live) -> None:
    sb, c = live
    before = len(sb.state.customers)
    for setting, status in (("fault_500_rate", 500), ("fault_502_rate", 502), ("fault_503_rate", 503)):
        setattr(sb.settings, setting, 1.0)
        r = c.post("/v1/customers", json={"name": "nope"})
        assert r.status_code == status
        setattr(sb.settings, setting, 0.0)
    sb.settings.fault_502_rate = 1.0
    lb = c.get("/v1/users/current")
    assert lb.status_code == 502
    assert lb.headers["content-type"].startswith("text/html")
    assert c.get("/sandbox/settings").status_code == 200  # admin routes are never faulted
    sb.settings.fault_502_rate = 0.0
    sb.settings.drop_connection_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        c.post("/v1/customers", json={"name": "nope"})
    sb.settings.drop_connection_rate = 0.0
    assert len(sb.state.customers) == before
    sb.settings.burst_429_rate = 1.0
    sb.settings.burst_429_length = 2
    assert c.get("/v1/users/current").status_code == 429
    sb.settings.burst_429_rate = 0.0
    assert [c.get("/v1/users/current").status_code for _ in range(2)] == [429, 200]
    sb.settings.fault_after_write_rate = 1.0
    outcomes = set()
    for i in range(6):
        try:
            outcomes.add(c.post("/v1/customers", json={"name": f"applied {i}"}).status_code)
        except httpx.RemoteProtocolError:
            outcomes.add("dropped")
    sb.settings.fault_after_write_rate = 0.0
    assert outcomes == {502, "dropped"}
    assert len(sb.state.customers) == before + 6
    sb.settings.slow_response_rate = 1.0
    sb.settings.slow_response_ms = 400
    with pytest.raises(httpx.ReadTimeout):
        c.get("/v1/users/current", timeout=0.1)
    sb.settings.slow_response_rate = 0.0
    assert c.get("/v1/users/current").status_code == 200


def test_oauth_over_http(live: Live) -> None:
    sb, c = live
    redirect = "http://127.0.0.1:1/callback"
    sb.register_oauth_client("web", "secret", [redirect])
    verifier = secrets.token_urlsafe(48)
    params = {
        "client_id": "web",
        "redirect_uri": redirect,
        "response_type": "code",
        "state": "st",
        "scope": "org.permission.customer.read offline_access",
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    with httpx.Client(base_url=str(c.base_url), timeout=5) as browser:
        page = browser.get("/oauth/authorize", params=params)
        assert page.status_code == 200
        assert "<code>org.permission.customer.read</code>" in page.text
        fields = dict(re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', page.text))
        r = browser.post("/oauth/authorize", data={**fields, "decision": "approve"})
        assert r.status_code == 302
        query = parse_qs(urlsplit(r.headers["location"]).query)
        assert query["state"] == ["st"]
        form = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": redirect,
            "code_verifier": verifier,
        }
        tokens = browser.post("/oauth/token", data=form, auth=("web", "secret")).json()
        assert browser.post("/oauth/token", data=form, auth=("web", "secret")).json()["error"] == "invalid_grant"
        assert (
            browser.get("/v1/customers", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code
            == 401
        )
        page = browser.get("/oauth/authorize", params=params)
        fields = dict(re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', page.text))
        code = parse_qs(
            urlsplit(browser.post("/oauth/authorize", data={**fields, "decision": "approve"}).headers["location"]).query
        )["code"][0]
        tokens = browser.post("/oauth/token", data={**form, "code": code}, auth=("web", "secret")).json()
        api = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert browser.get("/v1/customers", headers=api).status_code == 200
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        rotated = browser.post("/oauth/token", data=refresh, auth=("web", "secret")).json()
        assert rotated["refresh_token"] != tokens["refresh_token"]
        reuse = browser.post("/oauth/token", data=refresh, auth=("web", "secret"))
        assert reuse.status_code == 400
        assert reuse.json()["error"] == "invalid_grant"
        assert (
            browser.get("/v1/customers", headers={"Authorization": f"Bearer {rotated['access_token']}"}).status_code
            == 401
        )
        again = {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}
        assert browser.post("/oauth/token", data=again, auth=("web", "secret")).status_code == 400


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers.items()), body))
        type(self).arrived.set()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_webhook_delivery_over_real_http(live: Live) -> None:
    sb, c = live
    _Recorder.received = []
    _Recorder.arrived = threading.Event()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/kustomer"
        subscription = {"name": "real", "url": url, "events": ["kustomer.customer.create"]}
        hook = c.post("/v1/outbound-webhooks", json=subscription).json()["data"]
        created = c.post("/v1/customers", json={"name": "Delivered"}).json()["data"]
        assert _Recorder.arrived.wait(5)
        headers, body = _Recorder.received[0]
        lower = {k.lower(): v for k, v in headers.items()}
        token = hook["attributes"]["token"]
        assert lower["x-kustomer-webhook-signature"] == hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
        assert lower["x-kustomer-webhook-event"] == "kustomer.customer.create"
        event = json.loads(body)
        assert event["data"]["id"] == created["id"]
        assert event["changes"] is None
        deadline = time.monotonic() + 5
        while not sb.state.webhook_deliveries and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sb.state.webhook_deliveries[0].status_code == 200
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(5)


def test_bulk_and_search_cap_over_http(live: Live) -> None:
    sb, c = live
    items: list[dict[str, Any]] = [
        {"name": "fine", "_clientRef": "a"},
        {"name": "bad", "emails": [{"email": "x"}]},
    ]
    job = c.post("/v1/customers/bulk", json=items).json()["data"]
    deadline = time.monotonic() + 5
    while c.get(f"/v1/bulk/{job['id']}").json()["data"]["attributes"]["status"] != "complete":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    batch = c.get(f"/v1/bulk/{job['id']}/batches").json()["data"][0]["attributes"]
    assert batch["successCount"] == 0
    assert batch["failureCount"] == 2
    assert "email" in batch["errors"][0]["message"]
    assert not any(r.attrs.get("name") == "fine" for r in sb.state.customers)
    r = c.post("/v1/customers/search", params={"page": 100, "pageSize": 1}, json={"queryContext": "message"})
    assert r.json()["links"]["next"] == "/v1/customers/search?page=101&pageSize=1"
    r = c.post("/v1/customers/search", params={"page": 101, "pageSize": 1}, json={"queryContext": "message"})
    assert r.status_code == 400
    assert "100 pages" in first_error(r)["message"]


def test_running_sandbox_with_an_existing_sandbox() -> None:
    sb = Sandbox(small_settings(customers=2))
    with running_sandbox(sandbox=sb) as (same, base_url):
        assert same is sb
        r = httpx.get(f"{base_url}/v1/customers", headers={"Authorization": f"Bearer {sb.mint_api_key()}"})
        assert r.json()["meta"]["total"] == 2
    assert sb.base_url == "http://sandbox.kustomer.test"
