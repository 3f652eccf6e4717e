"""Who may call the host app: operator key, session tokens, loopback demo access."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from fastapi import FastAPI

from connectors import Connection, Connectors
from connectors.server import ServerConfig, create_app
from connectors.server.sessions import SessionCodec, SessionTokenError

from .conftest import OPERATOR_KEY, bearer, make_client, operator

pytestmark = pytest.mark.anyio


# -- session tokens (unit) ------------------------------------------------------------------------------------
def test_session_codec_round_trip_and_expiry() -> None:
    now = [1000.0]
    codec = SessionCodec(b"k" * 32, clock=lambda: now[0])
    token, claims = codec.mint("tenant-a", ttl=60, operations=["genericContact::list"])
    assert token.startswith("cs1.")
    verified = codec.verify(token)
    assert verified.owner_id == "tenant-a"
    assert verified.operations == ("genericContact::list",)
    assert verified.allows("genericContact::list") and not verified.allows("genericContact::create")
    assert claims.expires_at == 1060
    now[0] = 1060.0
    with pytest.raises(SessionTokenError, match="expired"):
        codec.verify(token)


def test_session_codec_refuses_forgery() -> None:
    codec = SessionCodec(b"k" * 32)
    other = SessionCodec(b"x" * 32)
    token, _ = codec.mint("tenant-a", ttl=60)
    with pytest.raises(SessionTokenError, match="signature"):
        other.verify(token)
    body, signature = token[4:].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["o"] = "tenant-b"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(SessionTokenError, match="signature"):
        codec.verify(f"cs1.{forged}.{signature}")
    for bad in ("cs1.", "cs1.abc", "nope", "cs1." + "a" * 20000, "cs1.é.x"):
        with pytest.raises(SessionTokenError):
            codec.verify(bad)
    with pytest.raises(ValueError, match="16 bytes"):
        SessionCodec(b"short")
    assert repr(codec) == "SessionCodec(key='***')"


def test_session_codec_rejects_bad_arguments() -> None:
    codec = SessionCodec(b"k" * 32)
    with pytest.raises(ValueError, match="owner"):
        codec.mint(" ", ttl=10)
    with pytest.raises(ValueError, match="ttl"):
        codec.mint("a", ttl=0)
    assert codec.check_csrf("s", codec.csrf_token("s"))
    assert not codec.check_csrf("s", codec.csrf_token("t"))


# -- over HTTP ------------------------------------------------------------------------------------------------
async def test_missing_and_bad_credentials_are_401(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/resources/genericContact", headers={"X-Connectors-Owner": "tenant-a"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    for header in ("Basic abc", "Bearer", "Bearer wrong-key", f"Bearer {OPERATOR_KEY}x", "Token abc"):
        r = await client.get("/resources/genericContact", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert OPERATOR_KEY not in r.text


async def test_operator_acts_for_the_named_owner(client: httpx.AsyncClient, conn_a: Connection) -> None:
    r = await client.get("/resources/genericContact?limit=2", headers=operator("tenant-a"))
    assert r.status_code == 200
    assert len(r.json()["data"]) == 2
    r = await client.get("/resources/genericContact?limit=2&ownerId=tenant-a", headers=operator())
    assert r.status_code == 200
    r = await client.get("/resources/genericContact", headers=operator())
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["path"] == "header.X-Connectors-Owner"
    r = await client.get("/resources/genericContact?ownerId=tenant-b", headers=operator("tenant-a"))
    assert r.status_code == 422
    r = await client.get("/resources/genericContact", headers=operator("x" * 201))
    assert r.status_code == 422


async def test_session_tokens_scope_owner_and_operations(
    client: httpx.AsyncClient, conn_a: Connection, mint: object
) -> None:
    token = await mint("tenant-a", ["genericContact::list"])  # type: ignore[operator]
    r = await client.get("/resources/genericContact?limit=1", headers=bearer(token))
    assert r.status_code == 200
    contact_id = r.json()["data"][0]["id"]
    r = await client.get(f"/resources/genericContact/{contact_id}", headers=bearer(token))
    assert r.status_code == 403
    assert r.json()["error"] == {
        "type": "Forbidden",
        "code": "operation_not_allowed",
        "message": "this session does not allow genericContact::retrieve",
        "operation": "genericContact::retrieve",
    }
    # naming another owner is a 404, exactly like an owner that does not exist
    r1 = await client.get("/resources/genericContact", headers=bearer(token, **{"X-Connectors-Owner": "tenant-b"}))
    r2 = await client.get("/resources/genericContact", headers=bearer(token, **{"X-Connectors-Owner": "nobody"}))
    assert r1.status_code == r2.status_code == 404
    assert r1.json() == r2.json()


async def test_sessions_are_operator_only_and_validated(
    client: httpx.AsyncClient, conn_a: Connection, mint: object
) -> None:
    token = await mint("tenant-a")  # type: ignore[operator]
    r = await client.post("/sessions", json={"ownerId": "tenant-b"}, headers=bearer(token))
    assert r.status_code == 404  # a session cannot even see that the route exists
    r = await client.post(
        "/sessions", json={"ownerId": "tenant-a", "operations": ["genericContact::lst"]}, headers=operator()
    )
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["path"] == "body.operations[0]"
    r = await client.post("/sessions", json={"ownerId": "tenant-a", "ttlSeconds": 10**9}, headers=operator())
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["path"] == "body.ttlSeconds"
    r = await client.post("/sessions", json={"ownerId": ""}, headers=operator())
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["path"] == "body.ownerId"
    r = await client.post("/sessions", json={"ownerId": "tenant-a", "ttlSeconds": 30}, headers=operator())
    body = r.json()
    assert r.status_code == 201
    assert body["object"] == "session" and body["ownerId"] == "tenant-a" and body["operations"] is None
    assert body["expiresAt"] - body["issuedAt"] == 30


async def test_expired_session_is_401(server_hub: Connectors, conn_a: Connection) -> None:
    now = [1_000_000.0]
    codec_clock = lambda: now[0]  # noqa: E731
    app = create_app(hub=server_hub, operator_key=OPERATOR_KEY)
    async with app.router.lifespan_context(app):
        state = app.state.server
        state.sessions = SessionCodec(server_hub.store.secret_box.derive_key("session"), clock=codec_clock)
        token, _ = state.sessions.mint("tenant-a", ttl=5)
        async with make_client(app) as c:
            assert (await c.get("/connections", headers=bearer(token))).status_code == 200
            now[0] += 5
            r = await c.get("/connections", headers=bearer(token))
            assert r.status_code == 401
            assert "expired" in r.json()["error"]["message"]


async def test_sessions_are_accepted_by_every_app_sharing_the_key(server_hub: Connectors, conn_a: Connection) -> None:
    # two apps on one store (two workers): a token minted by one works on the other
    first = create_app(hub=server_hub, operator_key=OPERATOR_KEY)
    second = create_app(hub=server_hub, operator_key=OPERATOR_KEY)
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        make_client(first) as c1,
        make_client(second) as c2,
    ):
        r = await c1.post("/sessions", json={"ownerId": "tenant-a"}, headers=operator())
        token = r.json()["token"]
        r = await c2.get("/connections", headers=bearer(token))
        assert r.status_code == 200
        assert [c["ownerId"] for c in r.json()["data"]] == ["tenant-a"]


async def test_no_operator_key_means_no_operator(server_hub: Connectors, conn_a: Connection) -> None:
    app = create_app(hub=server_hub)
    async with app.router.lifespan_context(app), make_client(app) as c:
        r = await c.get("/connections", headers=operator("tenant-a"))
        assert r.status_code == 401


def _loopback_app(hub: Connectors) -> FastAPI:
    return create_app(hub=hub, operator_key=OPERATOR_KEY, config=ServerConfig(loopback_owner="tenant-a"))


async def test_loopback_access_acts_as_the_demo_owner_only(
    server_hub: Connectors, conn_a: Connection, conn_b: Connection
) -> None:
    app = _loopback_app(server_hub)
    async with app.router.lifespan_context(app):
        async with make_client(app, client=("127.0.0.1", 5000), base_url="http://localhost:8000") as local:
            r = await local.get("/resources/genericContact?limit=1")
            assert r.status_code == 200
            r = await local.get("/connections")
            assert [c["ownerId"] for c in r.json()["data"]] == ["tenant-a"]
            r = await local.get(f"/connections/{conn_b.id}")
            assert r.status_code == 404
            r = await local.get("/resources/genericContact", headers={"X-Connectors-Owner": "tenant-b"})
            assert r.status_code == 404
            # same-origin writes are fine
            r = await local.post(
                "/resources/genericContact",
                json={"firstName": "Lo"},
                headers={"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-origin"},
            )
            assert r.status_code == 201
            # a web page on another site cannot write through the visitor's browser (CSRF)
            r = await local.post(
                "/resources/genericContact", json={"firstName": "X"}, headers={"Origin": "https://evil.example"}
            )
            assert r.status_code == 401
            r = await local.post(
                "/resources/genericContact", json={"firstName": "X"}, headers={"Sec-Fetch-Site": "cross-site"}
            )
            assert r.status_code == 401
            # sessions still need the operator
            assert (await local.post("/sessions", json={"ownerId": "tenant-a"})).status_code == 404
        # DNS rebinding: a loopback client but a foreign Host name
        async with make_client(app, client=("127.0.0.1", 5000), base_url="http://evil.example:8000") as rebound:
            assert (await rebound.get("/resources/genericContact")).status_code == 401
        # not from loopback
        async with make_client(app, base_url="http://localhost:8000") as remote:
            assert (await remote.get("/resources/genericContact")).status_code == 401
        async with make_client(app, client=("::1", 5000), base_url="http://[::1]:8000") as ipv6:
            assert (await ipv6.get("/resources/genericContact?limit=1")).status_code == 200
