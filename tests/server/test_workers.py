"""``connectors serve --workers 2`` on PostgreSQL + Redis against a sandbox over HTTP, hitting both workers.

Each check pins its requests to one worker by reusing one HTTP connection for ``/healthz`` (which tells the
worker's pid) and the request under test. The test proves that nothing per process breaks a second worker:
connections (store), session tokens and cursors (keys derived from the shared deployment key), OAuth state
(store), and the rate budget (Redis).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from connectors.kustomer.sandbox import SandboxSettings, running_sandbox

from .conftest import OPERATOR_KEY, free_socket, operator, serve_env, serve_process

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.http, pytest.mark.slow]

CLIENT_ID = "workers-test"
CLIENT_SECRET = "workers-test-secret"


def on_worker(url: str, want: Callable[[int], bool], attempts: int = 200) -> tuple[httpx.Client, int]:
    """A client whose single keep-alive connection is served by a worker whose pid satisfies ``want``."""
    for _ in range(attempts):
        client = httpx.Client(base_url=url, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        pid = client.get("/healthz").json()["pid"]
        if want(pid):
            return client, pid
        client.close()
    raise AssertionError("could not reach the wanted worker")


class Pins:
    """Fresh clients pinned to one worker each, checked again after use (a recycled connection would show)."""

    def __init__(self, url: str, pid_a: int, pid_b: int) -> None:
        self.url, self.pids = url, {"a": pid_a, "b": pid_b}

    @contextlib.contextmanager
    def on(self, worker: str) -> Iterator[httpx.Client]:
        pid = self.pids[worker]
        client, _ = on_worker(self.url, lambda p: p == pid)
        try:
            yield client
            assert client.get("/healthz").json()["pid"] == pid, "the connection moved to another worker"
        finally:
            client.close()


def test_two_workers_share_everything(tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    with running_sandbox(SandboxSettings(customers=80, companies=6, users=4, teams=2)) as (sb, sandbox_url):
        sock, port = free_socket()
        sock.close()
        url = f"http://127.0.0.1:{port}"
        sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [f"{url}/oauth/callback"])
        env = serve_env(
            CONNECTORS_HOME=str(tmp_path / "home"),
            CONNECTORS_DATABASE_URL=postgres_url,
            CONNECTORS_REDIS_URL=redis_url,
            CONNECTORS_SECRET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
            CONNECTORS_OPERATOR_KEY=OPERATOR_KEY,
            CONNECTORS_PUBLIC_URL=url,
            KUSTOMER_BASE_URL=sandbox_url,
            KUSTOMER_CLIENT_ID=CLIENT_ID,
            KUSTOMER_CLIENT_SECRET=CLIENT_SECRET,
        )
        with serve_process(["--host", "127.0.0.1", "--port", str(port), "--workers", "2"], env, tmp_path, url):
            first, pid_a = on_worker(url, lambda pid: True)
            first.close()
            second, pid_b = on_worker(url, lambda pid: pid != pid_a)
            second.close()
            pins = Pins(url, pid_a, pid_b)
            for worker in ("a", "b"):
                with pins.on(worker) as client:
                    health = client.get("/healthz").json()
                    assert health["store"] == "postgresql" and health["rateLimiter"] == "redis"
                    assert health["embedded"] is False
            _shared_state(pins, sb)
        log = (tmp_path / "serve.log").read_text()
        assert "with 2 workers" in log
        assert OPERATOR_KEY not in log


def _shared_state(pins: Pins, sb: Any) -> None:
    # a connection made through worker A is served by worker B
    key = sb.mint_api_key(name="workers")
    with pins.on("a") as a:
        r = a.post("/connections", json={"ownerId": "tenant-w", "apiKey": key}, headers=operator())
        assert r.status_code == 201, r.text
        connection_id = r.json()["id"]
        token = a.post("/sessions", json={"ownerId": "tenant-w"}, headers=operator()).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    with pins.on("b") as b:
        assert b.get(f"/connections/{connection_id}", headers=operator()).json()["ownerId"] == "tenant-w"
        # a session minted by A works on B ...
        page = b.get("/resources/genericContact?limit=30", headers=auth)
        assert page.status_code == 200, page.text
    # ... and a cursor from B works on A
    with pins.on("a") as a:
        more = a.get("/resources/genericContact", params={"limit": 30, "cursor": page.json()["next"]}, headers=auth)
        assert more.status_code == 200, more.text
    ids = [item["id"] for item in page.json()["data"] + more.json()["data"]]
    assert len(set(ids)) == 60
    # OAuth: started on A, finished on B (the state and its PKCE verifier live in PostgreSQL)
    with pins.on("a") as a:
        r = a.post("/connections", json={"operations": ["genericCompany::list"], "label": "oauth"}, headers=auth)
        authorization_url = r.json()["authorizationUrl"]
    with httpx.Client() as browser:
        consent = browser.get(authorization_url)
        fields = dict(re.findall(r'name="(request_id|csrf_token)" value="([^"]+)"', consent.text))
        action = authorization_url.split("?")[0]
        back = browser.post(action, data={**fields, "decision": "approve"}).headers["location"]
    parts = urlsplit(back)
    with pins.on("b") as b:
        done = b.get(f"{parts.path}?{parts.query}", headers={"Accept": "application/json"})
        assert done.status_code == 200, done.text
        assert done.json()["authType"] == "oauth2" and done.json()["label"] == "oauth"
    with pins.on("a") as a:
        r = a.get("/resources/genericCompany?limit=2", headers={**auth, "X-Connectors-Label": "oauth"})
        assert r.status_code == 200 and len(r.json()["data"]) == 2
    # events: the stream is on B, Kustomer's webhook may land on either worker; Redis carries it across
    with pins.on("a") as a:
        r = a.post("/webhooks/subscriptions", json={"events": ["genericContact::created"]}, headers=auth)
        assert r.status_code == 201, r.text
    sse, _ = on_worker(pins.url, lambda p: p == pins.pids["b"])
    with contextlib.closing(sse), sse.stream("GET", "/events", headers=auth, timeout=httpx.Timeout(15.0)) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        with pins.on("a") as a:
            created = a.post("/resources/genericContact", json={"firstName": "Across"}, headers=auth)
            assert created.status_code == 201
        event_line = next(line for line in lines if line.startswith("event: "))
        data_line = next(lines)
    assert event_line == "event: genericContact::created"
    assert f'"id":"{created.json()["id"]}"' in data_line and '"ownerId":"tenant-w"' in data_line
    # deleted on B: gone for A at once (no per-process cache hides it)
    with pins.on("b") as b:
        assert b.delete(f"/connections/{connection_id}", headers=operator()).status_code == 200
    with pins.on("a") as a:
        assert a.get("/resources/genericContact?limit=1", headers=auth).status_code == 404
