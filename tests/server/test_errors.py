"""Typed error bodies, statuses, body-size limits and rate limiting; never a 500 for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import Connection, Connectors
from connectors.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    InsufficientPermissionsError,
    InvalidCursorError,
    MappingError,
    NeedsReauthError,
    NotConnectedError,
    NotFoundError,
    ProxyRefusedError,
    QueryError,
    RateLimitError,
    ServerError,
    StoreConflictError,
    UnsupportedOperationError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from connectors.kustomer.sandbox import Sandbox
from connectors.server import ServerConfig, create_app
from connectors.server.errors import error_response, install_error_handlers, status_for

from .conftest import OPERATOR_KEY, make_client, operator

pytestmark = pytest.mark.anyio

A = operator("tenant-a")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotConnectedError("x"), 404),
        (NotFoundError("x", status_code=404), 404),
        (InsufficientPermissionsError(operation="o", missing_roles=["r"]), 403),
        (MappingError("bad", model="genericContact", field="email"), 422),
        (QueryError("bad", field="x"), 422),
        (InvalidCursorError("bad"), 422),
        (ConfigurationError("bad"), 422),
        (ProxyRefusedError("bad"), 400),
        (BadRequestError("bad", status_code=400), 400),
        (NeedsReauthError("again"), 409),
        (ConflictError("c", status_code=409), 409),
        (StoreConflictError("c"), 409),
        (UnsupportedOperationError("no", operation="genericCompany::delete"), 405),
        (RateLimitError("slow down", retry_at=None), 429),
        (WebhookSignatureError("sig"), 401),
        (WebhookPayloadError("body"), 400),
        (AuthenticationError("refused", status_code=401), 502),
        (APITimeoutError("late"), 504),
        (APIConnectionError("down"), 502),
        (ServerError("boom", status_code=503), 502),
        (ConnectorError("other"), 500),
    ],
)
def test_status_table(error: ConnectorError, status: int) -> None:
    assert status_for(error) == status
    response = error_response(error)
    assert response.status_code == status


def test_rate_limit_error_has_retry_after() -> None:
    import time

    response = error_response(RateLimitError("slow", retry_at=time.time() + 7.2))
    assert response.headers["retry-after"] in ("7", "8")
    response = error_response(RateLimitError("slow", retry_at=None, headers={"retry-after": "12"}))
    assert response.headers["retry-after"] == "12"


async def test_unexpected_exceptions_are_opaque_500s() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/boom")
    assert r.status_code == 500
    assert r.json() == {
        "error": {"type": "InternalError", "code": "internal_error", "message": "internal server error"}
    }


async def test_openapi_document(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert {"/resources/{model}", "/resources/{model}/{id}", "/proxy/{path}", "/events", "/sessions"} <= set(
        spec["paths"]
    )
    assert "requestBody" in spec["paths"]["/resources/{model}"]["post"]
    assert (await client.get("/docs")).status_code == 200


async def test_unknown_routes_and_methods_are_typed(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.put("/resources/genericContact", headers=A)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


@pytest.fixture
async def small_app(server_hub: Connectors) -> AsyncIterator[FastAPI]:
    app = create_app(hub=server_hub, operator_key=OPERATOR_KEY, config=ServerConfig(max_body_bytes=1000))
    async with app.router.lifespan_context(app):
        yield app


async def test_body_size_limit(small_app: FastAPI, conn_a: Connection) -> None:
    async with make_client(small_app) as c:
        big = {"firstName": "x" * 2000}
        r = await c.post("/resources/genericContact", json=big, headers=A)
        assert r.status_code == 413
        assert r.json()["error"] == {
            "type": "PayloadTooLarge",
            "code": "payload_too_large",
            "message": "the request body exceeds the limit of 1000 bytes",
            "maxBytes": 1000,
        }

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"firstName": "'
            for _ in range(20):
                yield b"y" * 100
            yield b'"}'

        r = await c.post(
            "/resources/genericContact", content=chunks(), headers={**A, "Content-Type": "application/json"}
        )
        assert r.status_code == 413
        r = await c.post("/proxy/v1/customers", content=chunks(), headers={**A, "Content-Type": "application/json"})
        assert r.status_code == 413
        r = await c.post("/resources/genericContact", json={"firstName": "small"}, headers=A)
        assert r.status_code == 201


async def test_rate_limits_are_429_with_retry_after(client: httpx.AsyncClient, conn_a: Connection, sb: Sandbox) -> None:
    sb.settings.burst_429_rate = 1.0  # Kustomer answers 429 ...
    sb.settings.burst_429_length = 100
    sb.settings.rate_window_seconds = 100_000.0  # ... with a reset far away: no waiting, a 429 at once
    r = await client.get("/resources/genericContact?limit=1", headers=A)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert r.json()["error"]["retryAt"] > 0
    assert int(r.headers["retry-after"]) > 120


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(
        [
            "/resources/genericContact",
            "/resources/crmOpportunity",
            "/fields/genericCompany",
            "/connections",
            "/sessions",
        ]
    ),
    body=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.text(max_size=12),
            st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)),
            max_size=5,
        ).map(lambda d: __import__("json").dumps(d).encode()),
    ),
)
async def test_bad_input_is_never_a_500(client: httpx.AsyncClient, conn_a: Connection, path: str, body: bytes) -> None:
    r = await client.post(path, content=body, headers={**A, "Content-Type": "application/json"})
    assert r.status_code < 500, (path, body, r.text)
    assert "error" in r.json() or r.status_code in (200, 201)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "limit",
                "cursor",
                "q",
                "sort",
                "raw",
                "expand",
                "filter[email]",
                "filter[custom.x][gte]",
                "filter[ids]",
                "fields",
            ]
        ),
        st.text(max_size=30),
        max_size=4,
    )
)
async def test_bad_queries_are_never_a_500(
    client: httpx.AsyncClient, conn_a: Connection, params: dict[str, str]
) -> None:
    r = await client.get("/resources/genericContact", params=params, headers=A)
    assert r.status_code < 500, (params, r.text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "PATCH", "DELETE"]),
    model=st.sampled_from(["genericContact", "genericCompany", "crmStage", "custom:order"]),
    segment=st.text(min_size=1, max_size=20),
)
async def test_bad_paths_are_never_a_500(
    client: httpx.AsyncClient, conn_a: Connection, method: str, model: str, segment: str
) -> None:
    from urllib.parse import quote

    kwargs: dict[str, object] = {"headers": A}
    if method == "PATCH":
        kwargs["json"] = {"tags": ["x"]}
    r = await client.request(method, f"/resources/{model}/{quote(segment, safe='')}", **kwargs)  # type: ignore[arg-type]
    assert r.status_code < 500, (method, model, segment, r.text)
    r = await client.get(f"/resources/custom:{quote(segment, safe='')}", headers=A)
    assert r.status_code < 500, (segment, r.text)
