"""Tenant isolation across every route: a session of one owner never reaches another owner's anything.

Every route of the app must appear in ``CASES`` (or in ``NOT_TENANT_SCOPED`` with a reason): adding a route
without an isolation case fails ``test_every_route_has_an_isolation_case``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount

from connectors import Connection

from .conftest import bearer, make_client
from .fakes import FakeConnectionWebhooks, FakeWebhookHub

pytestmark = pytest.mark.anyio

NOT_TENANT_SCOPED = {
    ("GET", "/healthz"): "no tenant data",
    ("GET", "/"): "a map of the API",
    ("GET", "/operations"): "the connector's static operation table",
    ("POST", "/webhooks/kustomer"): "Kustomer's deliveries, verified by signature and routed by org",
    ("GET", "/oauth/callback"): "bound to the single-use state of whoever started the flow",
    ("POST", "/sessions"): "operator only (covered below: 404 for sessions)",
    ("GET", "/connect"): "HTML; covered by test_connect_page_isolation",
    ("POST", "/connect/api-key"): "HTML; covered by test_connect_page_isolation",
    ("POST", "/connect/oauth"): "HTML; covered by test_connect_page_isolation",
    ("POST", "/connect/disconnect"): "HTML; covered by test_connect_page_isolation",
}


@dataclass
class World:
    client: httpx.AsyncClient
    token_a: str
    conn_a: Connection
    conn_b: Connection
    contact_id: str
    subscriber_b: str
    fake: FakeWebhookHub


@dataclass(frozen=True)
class Case:
    method: str
    route: str
    # (path, extra headers, query params, json body) per attempt
    attempts: Callable[[World], list[tuple[str, dict[str, str], dict[str, str], Any]]]


def by_owner_and_connection(path: Callable[[World], str], body: Any = None) -> Callable[[World], list[Any]]:
    def build(w: World) -> list[Any]:
        p = path(w)
        return [
            (p, {"X-Connectors-Owner": "tenant-b"}, {}, body),
            (p, {}, {"ownerId": "tenant-b"}, body),
            (p, {"X-Connectors-Connection": w.conn_b.id}, {}, body),
            (p, {}, {"connectionId": w.conn_b.id}, body),
        ]

    return build


def by_connection_id(suffix: str = "") -> Callable[[World], list[Any]]:
    return lambda w: [(f"/connections/{w.conn_b.id}{suffix}", {}, {}, None)]


CASES = [
    Case("GET", "/resources/{model}", by_owner_and_connection(lambda w: "/resources/genericContact")),
    Case(
        "POST", "/resources/{model}", by_owner_and_connection(lambda w: "/resources/genericContact", {"firstName": "X"})
    ),
    Case(
        "GET", "/resources/{model}/{id}", by_owner_and_connection(lambda w: f"/resources/genericContact/{w.contact_id}")
    ),
    Case(
        "PATCH",
        "/resources/{model}/{id}",
        by_owner_and_connection(lambda w: f"/resources/genericContact/{w.contact_id}", {"firstName": "X"}),
    ),
    Case(
        "DELETE",
        "/resources/{model}/{id}",
        by_owner_and_connection(lambda w: f"/resources/genericContact/{w.contact_id}"),
    ),
    Case("GET", "/fields/{model}", by_owner_and_connection(lambda w: "/fields/genericContact")),
    Case(
        "POST",
        "/fields/{model}",
        by_owner_and_connection(lambda w: "/fields/genericContact", {"name": "Z", "type": "text"}),
    ),
    Case("GET", "/proxy/{path:path}", by_owner_and_connection(lambda w: "/proxy/v1/customers")),
    Case("POST", "/proxy/{path:path}", by_owner_and_connection(lambda w: "/proxy/v1/customers", {"name": "X"})),
    Case(
        "PUT",
        "/proxy/{path:path}",
        by_owner_and_connection(lambda w: f"/proxy/v1/customers/{w.contact_id}", {"name": "X"}),
    ),
    Case(
        "PATCH",
        "/proxy/{path:path}",
        by_owner_and_connection(lambda w: f"/proxy/v1/customers/{w.contact_id}", {"name": "X"}),
    ),
    Case("DELETE", "/proxy/{path:path}", by_owner_and_connection(lambda w: f"/proxy/v1/customers/{w.contact_id}")),
    Case("HEAD", "/proxy/{path:path}", by_owner_and_connection(lambda w: "/proxy/v1/customers")),
    Case("OPTIONS", "/proxy/{path:path}", by_owner_and_connection(lambda w: "/proxy/v1/customers")),
    Case("GET", "/connections/{connection_id}", by_connection_id()),
    Case("DELETE", "/connections/{connection_id}", by_connection_id()),
    Case("GET", "/connections/{connection_id}/whoami", by_connection_id("/whoami")),
    Case("GET", "/connections", lambda w: [("/connections", {"X-Connectors-Owner": "tenant-b"}, {}, None)]),
    Case(
        "POST",
        "/connections",
        lambda w: [
            ("/connections", {}, {}, {"ownerId": "tenant-b", "operations": ["genericContact::list"]}),
            ("/connections", {"X-Connectors-Owner": "tenant-b"}, {}, {"operations": ["genericContact::list"]}),
        ],
    ),
    Case("GET", "/webhooks/subscriptions", by_owner_and_connection(lambda w: "/webhooks/subscriptions")),
    Case(
        "POST",
        "/webhooks/subscriptions",
        by_owner_and_connection(lambda w: "/webhooks/subscriptions", {"events": ["genericContact::created"]}),
    ),
    Case("DELETE", "/webhooks/subscriptions", by_owner_and_connection(lambda w: "/webhooks/subscriptions")),
    Case(
        "GET",
        "/webhooks/subscribers",
        lambda w: [("/webhooks/subscribers", {"X-Connectors-Owner": "tenant-b"}, {}, None)],
    ),
    Case(
        "POST",
        "/webhooks/subscribers",
        lambda w: [
            (
                "/webhooks/subscribers",
                {"X-Connectors-Owner": "tenant-b"},
                {},
                {"url": "https://x.example", "events": ["*"]},
            )
        ],
    ),
    Case(
        "DELETE",
        "/webhooks/subscribers/{subscriber_id}",
        lambda w: [(f"/webhooks/subscribers/{w.subscriber_b}", {}, {}, None)],
    ),
    Case("GET", "/events", lambda w: [("/events", {"X-Connectors-Owner": "tenant-b"}, {}, None)]),
]


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) of the app, walking included routers (FastAPI may keep them nested)."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.update((method, prefix + route.path) for method in route.methods)
            elif hasattr(route, "original_router"):
                context = getattr(route, "include_context", None)
                walk(route.original_router.routes, prefix + (getattr(context, "prefix", "") or ""))
            elif hasattr(route, "methods") and hasattr(route, "path") and not isinstance(route, Mount):
                found.update((method, prefix + route.path) for method in route.methods or ())

    walk(app.routes, "")
    return found


@pytest.fixture
async def world(
    client: httpx.AsyncClient, conn_a: Connection, conn_b: Connection, fake: FakeWebhookHub, mint: Callable[..., Any]
) -> World:
    token_a = await mint("tenant-a")
    r = await client.get("/resources/genericContact?limit=1", headers=bearer(token_a))
    sub = await fake.add_subscriber(owner_id="tenant-b", url="https://b.example", events=["*"])
    return World(client, token_a, conn_a, conn_b, r.json()["data"][0]["id"], sub.id, fake)


async def test_every_route_has_an_isolation_case(app: FastAPI) -> None:
    covered = {(c.method, c.route) for c in CASES} | set(NOT_TENANT_SCOPED)
    docs = {(m, p) for m in ("GET", "HEAD") for p in ("/docs", "/openapi.json", "/docs/oauth2-redirect")}
    routes = api_routes(app)
    assert ("GET", "/resources/{model}") in routes and ("POST", "/connect/oauth") in routes  # the walk works
    missing = routes - covered - docs
    assert not missing, f"routes without a tenant-isolation case: {sorted(missing)}"
    stale = covered - routes
    assert not stale, f"isolation cases for routes that do not exist: {sorted(stale)}"
    mounts = sorted(r.path for r in app.routes if isinstance(r, Mount))
    assert mounts == ["/connect/static"]  # static files only (the embedded sandbox is not mounted here)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.route}")
async def test_other_owner_is_unreachable(world: World, case: Case) -> None:
    missing_body = None
    for path, headers, params, body in case.attempts(world):
        kwargs: dict[str, Any] = {"headers": {**bearer(world.token_a), **headers}, "params": params}
        if body is not None:
            kwargs["json"] = body
        r = await world.client.request(case.method, path, **kwargs)
        assert r.status_code == 404, (path, headers, params, r.status_code, r.text)
        assert world.conn_b.id not in r.text and "tenant-b" not in r.text
        # indistinguishable from something that does not exist at all
        ghost_path = path.replace(world.conn_b.id, uuid.uuid4().hex).replace(world.subscriber_b, "sub_ghost")
        ghost_headers = {
            k: v.replace(world.conn_b.id, uuid.uuid4().hex).replace("tenant-b", "nobody") for k, v in headers.items()
        }
        ghost_params = {
            k: v.replace(world.conn_b.id, uuid.uuid4().hex).replace("tenant-b", "nobody") for k, v in params.items()
        }
        ghost_kwargs = {**kwargs, "headers": {**bearer(world.token_a), **ghost_headers}, "params": ghost_params}
        ghost = await world.client.request(case.method, ghost_path, **ghost_kwargs)
        assert ghost.status_code == 404
        if r.content or ghost.content:
            missing_body = (r.json(), ghost.json())
            assert missing_body[0] == missing_body[1]
    # nothing of tenant-b changed
    assert (
        await world.client.get(f"/connections/{world.conn_b.id}", headers={"Authorization": "Bearer x"})
    ).status_code == 401
    infos = await world.conn_b.hub.list(owner_id="tenant-b")
    assert [i.id for i in infos] == [world.conn_b.id]
    assert world.subscriber_b in world.fake.subscribers
    assert FakeConnectionWebhooks.registry.get(world.conn_b.id, []) == []


async def test_session_sees_only_its_own_connections(world: World) -> None:
    r = await world.client.get("/connections", headers=bearer(world.token_a))
    assert [c["id"] for c in r.json()["data"]] == [world.conn_a.id]
    r = await world.client.get("/webhooks/subscribers", headers=bearer(world.token_a))
    assert r.json()["data"] == []
    r = await world.client.post("/sessions", json={"ownerId": "tenant-a"}, headers=bearer(world.token_a))
    assert r.status_code == 404


async def test_connect_page_isolation(app: FastAPI, world: World) -> None:
    async with make_client(app) as browser:
        r = await browser.get(f"/connect?session={world.token_a}")
        assert r.status_code == 303
        page = await browser.get("/connect")
        assert world.conn_a.id in page.text and world.conn_b.id not in page.text and "tenant-b" not in page.text
        import re

        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        r = await browser.post("/connect/disconnect", data={"csrf": csrf.group(1), "connection_id": world.conn_b.id})
        assert r.status_code == 303
        assert [i.id for i in await world.conn_b.hub.list(owner_id="tenant-b")] == [world.conn_b.id]
        page = await browser.get(f"/connect?connectionId={world.conn_b.id}&status=active")
        assert world.conn_b.id not in page.text
