"""The host app (``connectors serve``) attacked as a whole: tenants, fuzzed requests, the proxy, size limits.

* **Cross-tenant.** Owner B's session tries to reach owner A on *every* route the app serves (enumerated from
  the app itself: a new route without an attack fails the suite): naming A by header or query, A's
  connection by id (header, query, path), A's subscriber by id. JSON routes answer 404 -- exactly like something
  that does not exist -- and never A's data; the HTML Connect page shows B's page and changes nothing of A's.
  Afterwards A's connection, subscriber and subscriptions are intact.
* **Fuzzed requests.** Every JSON route gets random query strings (declared and unknown parameters, odd values),
  random JSON bodies (valid bodies mutated) and random bytes with random content types, as the operator and as a
  session: the answer is 2xx or a 4xx carrying ``{"error": {"code", "message"}}``, never a 5xx.
* **Proxy** through ``/proxy/{path}``: SSRF paths never reach another host nor a traversed path.
* **Size limits**: bodies over ``max_body_bytes`` (declared or streamed) get 413 with a reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
from _reliability import CLIENT_ID, CLIENT_SECRET, Tally, fuzz, json_values, mutations, quiet_settings
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from connectors import Connection, Connectors, Settings
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from connectors.server import ServerConfig, create_app

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

OPERATOR_KEY = "reliability-operator-key-5d1c9e0a"
PUBLIC_URL = "http://testserver"
MAX_BODY = 64 * 1024
REMOTE = ("203.0.113.9", 40000)


class Recorder(httpx.AsyncBaseTransport):
    """Every request the hub sends to "Kustomer" (to prove the proxy never leaves the host)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    sb: Sandbox
    hub: Connectors
    recorder: Recorder
    conn_a: Connection
    conn_b: Connection
    contact_id: str
    subscriber_a: str
    token_b: str
    api_key_a: str


def operator(owner: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    if owner is not None:
        headers["X-Connectors-Owner"] = owner
    return headers


@pytest.fixture
async def world() -> AsyncIterator[World]:
    sb = Sandbox(quiet_settings(customers=6, companies=2, users=3))
    sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [f"{PUBLIC_URL}/oauth/callback"])
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(b"h" * 32))
    recorder = Recorder(sb.transport())
    settings = Settings(
        public_url=PUBLIC_URL,
        kustomer={
            "base_url": sb.base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "rate_limit": 10_000_000,
            "search_limit": 10_000_000,
        },
    )
    hub = Connectors(settings=settings, store=store, transport=recorder)
    app = create_app(hub=hub, config=ServerConfig(poll_interval=0, max_body_bytes=MAX_BODY), operator_key=OPERATOR_KEY)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=REMOTE)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
                key_a = sb.mint_api_key(name="a")
                conn_a = await hub.connect("kustomer", "tenant-a", api_key=key_a, base_url=sb.base_url)
                conn_b = await hub.connect(
                    "kustomer", "tenant-b", api_key=sb.mint_api_key(name="b"), base_url=sb.base_url
                )
                contact = await conn_a.resources("genericContact").create(
                    {"firstName": "Alice", "email": "a@a.example"}
                )
                made = await client.post(
                    "/webhooks/subscribers",
                    json={"url": "https://a.example.com/hooks", "events": ["*"]},
                    headers=operator("tenant-a"),
                )
                assert made.status_code == 201, made.text
                subscribed = await client.post(
                    "/webhooks/subscriptions",
                    json={"events": ["genericContact::created"]},
                    headers=operator("tenant-a"),
                )
                assert subscribed.status_code == 201, subscribed.text
                session = await client.post("/sessions", json={"ownerId": "tenant-b"}, headers=operator())
                assert session.status_code == 201, session.text
                yield World(
                    app,
                    client,
                    sb,
                    hub,
                    recorder,
                    conn_a,
                    conn_b,
                    str(contact.id),
                    made.json()["id"],
                    session.json()["token"],
                    key_a,
                )
    finally:
        await hub.aclose()
        store.close()


CONNECT_PAGE = [
    ("GET", "/connect"),
    ("POST", "/connect/api-key"),
    ("POST", "/connect/oauth"),
    ("POST", "/connect/disconnect"),
]


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves: the OpenAPI schema plus the HTML Connect page."""
    spec = app.openapi()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops] + CONNECT_PAGE


def _selectors(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """The tenant selectors each route declares (``ownerId``, ``connectionId`` query parameters)."""
    spec = app.openapi()
    return {
        (m.upper(), p): {param["name"] for param in op.get("parameters", [])}
        for p, ops in spec["paths"].items()
        for m, op in ops.items()
    }


# -- cross-tenant ---------------------------------------------------------------------------------------------------

NOT_TENANT_SCOPED = {
    ("GET", "/healthz"): "no tenant data",
    ("GET", "/operations"): "the static operation table (an owner named there is still checked: see below)",
    ("POST", "/webhooks/kustomer"): "Kustomer's deliveries: verified by signature, routed by org (fuzzed elsewhere)",
    ("GET", "/oauth/callback"): "bound to a single-use state (see test_security)",
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/resources/{model}"): {"firstName": "Mallory"},
    ("PATCH", "/resources/{model}/{id}"): {"firstName": "Mallory"},
    ("POST", "/fields/{model}"): {"name": "Stolen", "type": "text"},
    ("POST", "/connections"): {"ownerId": "tenant-a", "apiKey": "x" * 40},
    ("POST", "/sessions"): {"ownerId": "tenant-a"},
    ("POST", "/webhooks/subscriptions"): {"events": ["genericContact::updated"]},
    ("POST", "/webhooks/subscribers"): {"url": "https://mallory.example.com/", "events": ["*"]},
    ("POST", "/proxy/{path}"): {"name": "x"},
    ("PUT", "/proxy/{path}"): {"name": "x"},
    ("PATCH", "/proxy/{path}"): {"name": "x"},
}


def _fill(path: str, w: World) -> str:
    return (
        path.replace("{model}", "genericContact")
        .replace("{id}", w.contact_id)
        .replace("{connection_id}", w.conn_a.id)
        .replace("{subscriber_id}", w.subscriber_a)
        .replace("{path}", f"v1/customers/{w.contact_id}")
    )


def _attempts(route: str, selectors: set[str], w: World) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """Ways for B's session to name A on one route: (path, headers, query)."""
    path = _fill(route, w)
    b = {"Authorization": f"Bearer {w.token_b}"}
    out: list[tuple[str, dict[str, str], dict[str, str]]] = []
    if "ownerId" in selectors or route.startswith("/connect"):
        out += [(path, {**b, "X-Connectors-Owner": "tenant-a"}, {}), (path, b, {"ownerId": "tenant-a"})]
    if "connectionId" in selectors or route.startswith("/connect"):
        out += [(path, {**b, "X-Connectors-Connection": w.conn_a.id}, {}), (path, b, {"connectionId": w.conn_a.id})]
    if "{connection_id}" in route or "{subscriber_id}" in route:
        out.append((path, b, {}))  # A's id in the path is enough
    return out


async def test_every_route_refuses_another_owners_session_with_404_and_no_data(world: World, tally: Tally) -> None:
    w = world
    secrets_of_a = [w.conn_a.id, "tenant-a", "a.example.com", w.subscriber_a, w.api_key_a, "Alice"]
    wrong: list[str] = []
    tried = 0
    browser_b = httpx.AsyncClient(  # B on the Connect page: the session travels in its cookie
        transport=httpx.ASGITransport(app=w.app, client=REMOTE),
        base_url=PUBLIC_URL,
        cookies={"connectors_session": w.token_b},
    )
    selectors = _selectors(w.app)
    for method, route in _routes(w.app):
        if (method, route) in NOT_TENANT_SCOPED:
            continue
        attempts = _attempts(route, selectors.get((method, route), set()), w)
        assert attempts, f"{method} {route}: no way to name another owner is known; teach _attempts()"
        for path, headers, params in attempts:
            tried += 1
            body = BODIES.get((method, route))
            if route.startswith("/connect"):
                form = {"connection_id": w.conn_a.id, "api_key": "x" * 40, "csrf_token": "x"}
                response = await browser_b.request(method, path, params=params, data=form if method == "POST" else None)
                if response.status_code >= 500:
                    wrong.append(f"{method} {route} {params} -> {response.status_code}")
            else:
                response = await w.client.request(method, path, params=params, headers=headers, json=body)
                if response.status_code != 404:
                    wrong.append(f"{method} {route} {sorted(headers)} {params} -> {response.status_code}")
            text = response.text
            leaked = [s for s in secrets_of_a if s in text]
            if leaked:
                wrong.append(f"{method} {route} {params}: A's data in the answer: {leaked}")
    await browser_b.aclose()
    # A is intact
    as_a = operator("tenant-a")
    intact = [
        (await w.client.get(f"/connections/{w.conn_a.id}", headers=as_a)).status_code == 200,
        [s["id"] for s in (await w.client.get("/webhooks/subscribers", headers=as_a)).json()["data"]]
        == [w.subscriber_a],
        "genericContact::created"
        in [s["event"] for s in (await w.client.get("/webhooks/subscriptions", headers=as_a)).json()["data"]],
        (await w.conn_a.resources("genericContact").retrieve(w.contact_id)).first_name == "Alice",
    ]
    routes = len(_routes(w.app)) - len(NOT_TENANT_SCOPED)
    tally.record(
        "cross-tenant attempts", tried=tried, rejected=tried - len(wrong), lost=len(wrong) + intact.count(False)
    )
    tally.note(
        f"cross-tenant: {tried} attempts by another owner's session on {routes} routes, {len(wrong)} got through"
    )
    assert wrong == [], wrong
    assert intact == [True] * 4


async def test_every_route_is_covered_by_the_cross_tenant_attack(world: World) -> None:
    """A route added to the app without a tenant selector or id this suite knows how to attack fails here."""
    known = {"{model}", "{id}", "{connection_id}", "{subscriber_id}", "{path}"}
    selectors = _selectors(world.app)
    for method, route in _routes(world.app):
        params = {part for part in route.split("/") if part.startswith("{")}
        assert params <= known, f"{method} {route}: teach _fill() its parameters"
        in_reach = (method, route) in NOT_TENANT_SCOPED or _attempts(
            route, selectors.get((method, route), set()), world
        )
        assert in_reach, f"{method} {route}: no cross-tenant attempt"
        if (method, route) in BODIES or method in ("GET", "DELETE", "HEAD", "OPTIONS") or route.startswith("/connect"):
            continue
        assert (method, route) in NOT_TENANT_SCOPED, f"{method} {route}: give it an attack body in BODIES"


# -- fuzzed requests --------------------------------------------------------------------------------------------------

VALID_BODIES: dict[tuple[str, str], Any] = {
    **BODIES,
    ("POST", "/connections"): {"ownerId": "tenant-a", "apiKey": "not-a-real-key-0123456789", "label": "f"},
    ("POST", "/sessions"): {"ownerId": "tenant-a", "operations": ["genericContact::list"], "ttlSeconds": 60},
    ("POST", "/webhooks/subscribers"): {"url": "https://a.example.com/more", "events": ["genericContact::*"]},
}
PARAM_NAMES = [
    "limit",
    "cursor",
    "q",
    "sort",
    "fields",
    "raw",
    "expand",
    "ownerId",
    "connectionId",
    "connectorId",
    "label",
    "events",
    "operations",
    "code",
    "state",
    "error",
    "filter[email]",
    "filter[updatedAfter]",
    "email",
    "ids",
    "x",
    "",
    "a" * 300,
]
odd_values = (
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e309",
            "NaN",
            "true",
            "null",
            "[]",
            "{}",
            "\x00",
            "%00",
            "../..",
            "genericContact::*",
            "a" * 5000,
            "cs1.forged.token",
            "tenant-a",
            "😀",
            "\ud83d",
        ]
    )
    | st.text(max_size=20)
    | st.integers().map(str)
)
query = st.lists(st.tuples(st.sampled_from(PARAM_NAMES), odd_values), max_size=4)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "",
    ]
)


@st.composite
def requests(
    draw: st.DrawFn, routes: list[tuple[str, str]]
) -> tuple[str, str, list[tuple[str, str]], Any, bytes | None, str]:
    """(method, route, query, json body or None, raw bytes or None, content type)."""
    method, route = draw(st.sampled_from(routes))
    seed = VALID_BODIES.get((method, route))
    raw: bytes | None = None
    body: Any = None
    kind = draw(st.sampled_from(["none", "mutated", "random", "bytes"]))
    if kind == "mutated" and seed is not None:
        body = draw(mutations(seed, json_values))
    elif kind == "random":
        body = draw(json_values)
    elif kind == "bytes":
        raw = draw(st.binary(max_size=64))
    return method, route, draw(query), body, raw, draw(content_types)


def _has_reason(response: httpx.Response, route: str) -> bool:
    """The host app's ``{"error": {code, message}}``; the proxy also passes Kustomer's own ``errors`` through."""
    if route == "/oauth/callback" and response.headers.get("content-type", "").startswith("text/html"):
        return 'id="error"' in response.text  # the browser's page says what failed
    if "json" not in response.headers.get("content-type", ""):
        return False
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message") and error.get("code"):
        return True
    upstream = body.get("errors") if isinstance(body, dict) and route.startswith("/proxy") else None
    if not isinstance(upstream, list) or not upstream or not isinstance(upstream[0], dict):
        return False
    return bool(upstream[0].get("detail") or upstream[0].get("title"))


async def test_fuzzed_requests_get_2xx_or_a_4xx_with_a_reason_never_a_5xx(world: World, tally: Tally) -> None:
    w = world
    streams = {"/events"}  # server-sent events: an accepted request never ends (covered by the cross-tenant test)
    routes = [
        r for r in _routes(w.app) if not r[1].startswith(("/connect", "/webhooks/kustomer")) and r[1] not in streams
    ]
    statuses: Counter[int] = Counter()
    problems: list[str] = []

    async def send(case: tuple[str, str, list[tuple[str, str]], Any, bytes | None, str], as_operator: bool) -> None:
        method, route, pairs, body, raw, content_type = case
        params = httpx.QueryParams(tuple(pairs))
        path = _fill(route, w).replace(w.conn_a.id, "0" * 32)  # never the real connection: nothing is deleted
        headers = operator("tenant-a") if as_operator else {"Authorization": f"Bearer {w.token_b}"}
        if content_type:
            headers["Content-Type"] = content_type
        content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            response = await w.client.request(method, path, params=params, headers=headers, content=content)
        except UnicodeEncodeError:  # a lone surrogate cannot even be put on the wire by the client
            statuses[0] += 1
            return
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            problems.append(
                f"{method} {path} {params!r} {content!r:.120} -> {response.status_code} {response.text:.200}"
            )
        elif response.status_code >= 400 and method != "HEAD" and not _has_reason(response, route):
            problems.append(f"{method} {path} -> {response.status_code} without a reason: {response.text:.200}")

    @fuzz(1500, shrink=False)
    @given(case=requests(routes), as_operator=st.booleans())
    def check(case: Any, as_operator: bool) -> None:
        anyio.from_thread.run(send, case, as_operator)

    await anyio.to_thread.run_sync(check)
    tried = sum(statuses.values())
    refused = sum(n for status, n in statuses.items() if status >= 400)
    tally.record("host-app requests", tried=tried, rejected=refused, lost=len(problems))
    unsendable = statuses.pop(0, 0)
    tally.note(
        f"host-app fuzz: {tried} requests on {len(routes)} routes, statuses {dict(sorted(statuses.items()))}"
        f" ({unsendable} more could not be encoded by the client)"
    )
    assert problems == [], problems[:5]


async def test_forged_deliveries_to_the_receive_route_get_401_or_400(world: World, tally: Tally) -> None:
    w = world
    statuses: Counter[int] = Counter()

    async def post(raw: bytes, headers: dict[str, str]) -> None:
        response = await w.client.post("/webhooks/kustomer", content=raw, headers=headers)
        statuses[response.status_code] += 1
        assert response.status_code in (400, 401), (response.status_code, response.text)
        assert response.json()["error"]["message"]

    @fuzz(300, shrink=False)
    @given(
        raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
        headers=st.dictionaries(
            st.sampled_from(["X-Kustomer-Webhook-Signature", "X-Kustomer-Webhook-Event", "Content-Type"]),
            st.from_regex(r"[0-9a-f]{64}", fullmatch=True) | st.text(st.characters(max_codepoint=126), max_size=70),
            max_size=3,
        ),
    )
    def check(raw: bytes, headers: dict[str, str]) -> None:
        anyio.from_thread.run(post, raw, headers)

    await anyio.to_thread.run_sync(check)
    tally.record("webhook receive route", tried=sum(statuses.values()), rejected=sum(statuses.values()))


# -- the proxy route and size limits ---------------------------------------------------------------------------------

HOST_SSRF = [
    "http://evil.example.net/",
    "https:%2F%2Fevil.example.net",
    "%2F%2Fevil.example.net/x",
    "@evil.example.net",
    "v1/%2e%2e/%2e%2e/admin",
    "v1/customers/..%2f..%2fadmin",
    "%5c%5cevil.example.net",
    "v1%2f..%2f..%2fsandbox",
    "..%2F..%2Fsandbox/settings",
    "v1/customers%23@evil.example.net",
    "v1/customers%0d%0aHost:evil",
    "..;/sandbox",
    "%252e%252e/sandbox",
    "v1/customers/%2e",
    "https://169.254.169.254/latest/meta-data/",
]


async def test_the_proxy_route_never_leaves_the_kustomer_host(world: World, tally: Tally) -> None:
    w = world
    host = httpx.URL(w.sb.base_url).host
    before = len(w.recorder.sent)
    statuses: Counter[int] = Counter()
    for attempt in HOST_SSRF:
        for method in ("GET", "POST", "DELETE"):
            response = await w.client.request(
                method, f"/proxy/{attempt}", headers=operator("tenant-a"), json={} if method == "POST" else None
            )
            statuses[response.status_code] += 1
            assert response.status_code < 500, (attempt, response.text)
    escaped = []
    for request in w.recorder.sent[before:]:
        decoded = unquote(unquote(request.url.raw_path.decode("ascii").split("?", 1)[0]))
        if request.url.host != host or ".." in decoded.replace("\\", "/").split("/") or decoded.startswith("/sandbox"):
            escaped.append(str(request.url))
    tally.record(
        "proxy route SSRF",
        tried=3 * len(HOST_SSRF),
        rejected=sum(n for s, n in statuses.items() if s >= 400),
        lost=len(escaped),
    )
    assert escaped == []


async def test_request_bodies_over_the_limit_get_413_with_a_reason(world: World, tally: Tally) -> None:
    w = world
    big = b'{"firstName": "' + b"x" * (MAX_BODY + 1) + b'"}'

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096

    cases: list[tuple[str, httpx.Response]] = [
        ("declared", await w.client.post("/resources/genericContact", content=big, headers=operator("tenant-a"))),
        (
            "streamed",
            await w.client.post(
                "/resources/genericContact",
                content=streamed(),
                headers={**operator("tenant-a"), "Content-Type": "application/json"},
            ),
        ),
        ("receive route", await w.client.post("/webhooks/kustomer", content=big)),
        ("proxy", await w.client.post("/proxy/v1/customers", content=big, headers=operator("tenant-a"))),
        ("sessions", await w.client.post("/sessions", content=big, headers=operator())),
    ]
    bad_length = await w.client.post(
        "/resources/genericContact", content=b"{}", headers={**operator("tenant-a"), "Content-Length": "abc"}
    )
    wrong = [name for name, r in cases if r.status_code != 413 or "exceeds" not in r.json()["error"]["message"]]
    tally.record("request size limits", tried=len(cases) + 1, rejected=len(cases) + 1, lost=len(wrong))
    assert wrong == [], [(n, r.status_code, r.text[:200]) for n, r in cases]
    assert bad_length.status_code == 400
