"""``connectors.runtime.auth``: API keys, PKCE, token parsing and the TokenManager's refresh rules.

The token endpoint is an ``httpx.MockTransport`` here, so each rule can be provoked exactly; the sandbox
flows are in ``test_oauth.py`` and the multi-process race in ``test_processes.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import pytest

from connectors.errors import (
    APIConnectionError,
    ConfigurationError,
    NeedsReauthError,
    OAuthFlowError,
    StoreConflictError,
)
from connectors.runtime.auth import (
    LIFETIME_KEY,
    ApiKeyAuth,
    AuthEvent,
    OAuthClientConfig,
    OAuthTokenAuth,
    TokenManager,
    TokenResponse,
    authorization_url,
    exchange_code,
    hash_state,
    new_pkce_pair,
    new_state,
    refresh_grant,
)
from connectors.runtime.secrets import Secrets
from connectors.runtime.store import ConnectionRecord, ConnectionStore, LockedConnection

pytestmark = pytest.mark.anyio

CONFIG = OAuthClientConfig(
    client_id="cid",
    client_secret="SEKRET-client",
    authorize_url="https://id.test/authorize",
    token_url="https://id.test/token",
)
NOW = 1_800_000_000.0


# -- small pieces ------------------------------------------------------------------------------------------------


def test_api_key_auth_sets_the_bearer_header_and_hides_the_key() -> None:
    auth = ApiKeyAuth("  SEKRET-key  ")
    request = httpx.Request("GET", "https://api.kustomerapp.com/v1/customers")
    flow = auth.auth_flow(request)
    assert next(flow).headers["Authorization"] == "Bearer SEKRET-key"
    assert "SEKRET" not in repr(auth) and "SEKRET" not in str(auth)
    for empty in ("", "   "):
        with pytest.raises(ConfigurationError, match="api_key is empty"):
            ApiKeyAuth(empty)


def test_pkce_pair_is_s256() -> None:
    pair = new_pkce_pair()
    assert 43 <= len(pair.verifier) <= 128
    digest = hashlib.sha256(pair.verifier.encode()).digest()
    assert pair.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pair.verifier not in repr(pair)
    assert new_pkce_pair().verifier != pair.verifier


def test_state_values_are_random_and_stored_hashed() -> None:
    a, b = new_state(), new_state()
    assert a != b and len(a) >= 40
    assert hash_state(a) == hashlib.sha256(a.encode()).hexdigest() != a


def test_authorization_url() -> None:
    pair = new_pkce_pair()
    url = authorization_url(CONFIG, redirect_uri="https://app/cb", scopes=["a.b", "c.d"], state="st", pkce=pair)
    query = {k: v[0] for k, v in parse_qs(httpx.URL(url).query.decode()).items()}
    assert query == {
        "response_type": "code",
        "client_id": "cid",
        "redirect_uri": "https://app/cb",
        "scope": "a.b c.d",
        "state": "st",
        "code_challenge": pair.challenge,
        "code_challenge_method": "S256",
    }
    assert "SEKRET" not in url and "SEKRET" not in repr(CONFIG)


def test_token_response_repr_and_secrets() -> None:
    token = TokenResponse("SEKRET-a", "SEKRET-r", "Bearer", NOW + 60, ("x",), 60.0)
    assert "SEKRET" not in repr(token)
    kept = token.to_secrets(previous=Secrets(refresh_token="old", extra={"oauth_client": "{}"}))
    assert (kept.access_token, kept.refresh_token, kept.extra) == (
        "SEKRET-a",
        "SEKRET-r",
        {"oauth_client": "{}", LIFETIME_KEY: "60.0"},
    )
    no_refresh = TokenResponse("a2", None, "Bearer", None, None, None)
    assert no_refresh.to_secrets(previous=kept).refresh_token == "SEKRET-r"  # the old one is kept
    assert LIFETIME_KEY not in no_refresh.to_secrets(previous=kept).extra


def _token_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


async def test_code_exchange_request_and_expiry_from_the_injected_clock() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(_form(request))
        return httpx.Response(
            200, json={"access_token": "a", "refresh_token": "r", "expires_in": "120", "scope": "x y"}
        )

    async with _token_client(handler) as http:
        token = await exchange_code(
            http, CONFIG, code="c", redirect_uri="https://app/cb", code_verifier="v" * 43, clock=lambda: NOW
        )
    assert seen == [
        {
            "grant_type": "authorization_code",
            "client_id": "cid",
            "code": "c",
            "redirect_uri": "https://app/cb",
            "code_verifier": "v" * 43,
            "client_secret": "SEKRET-client",
        }
    ]
    assert (token.expires_at, token.lifetime, token.scopes, token.token_type) == (
        NOW + 120,
        120.0,
        ("x", "y"),
        "Bearer",
    )


@pytest.mark.parametrize(
    ("status", "body", "raises", "error"),
    [
        (400, {"error": "invalid_grant", "error_description": "used"}, OAuthFlowError, "invalid_grant"),
        (401, {"error": "invalid_client"}, OAuthFlowError, "invalid_client"),
        (200, {"token_type": "Bearer"}, OAuthFlowError, "invalid_response"),
        (200, {"error": "access_denied"}, OAuthFlowError, "access_denied"),
        (503, {"error": "temporarily_unavailable"}, APIConnectionError, None),
        (502, "<html>bad gateway</html>", APIConnectionError, None),
    ],
)
async def test_token_endpoint_failures(status: int, body: Any, raises: type[Exception], error: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    async with _token_client(handler) as http:
        with pytest.raises(raises) as caught:
            await refresh_grant(http, CONFIG, refresh_token="SEKRET-refresh")
    if error is not None:
        assert isinstance(caught.value, OAuthFlowError) and caught.value.error == error
    assert "SEKRET" not in str(caught.value)


async def test_client_secret_basic() -> None:
    config = OAuthClientConfig(
        "cid", "SEKRET-client", "https://id.test/a", "https://id.test/t", auth_method="client_secret_basic"
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "a"})

    async with _token_client(handler) as http:
        await refresh_grant(http, config, refresh_token="r")
    assert seen[0].headers["authorization"].startswith("Basic ")
    assert "client_secret" not in _form(seen[0])


# -- TokenManager -------------------------------------------------------------------------------------------------


class TokenServer:
    """A token endpoint that rotates refresh tokens and refuses reuse, counting refreshes."""

    def __init__(self, *, rotate: bool = True, lifetime: int = 600, delay: float = 0.0) -> None:
        self.rotate = rotate
        self.lifetime = lifetime
        self.delay = delay
        self.valid = {"r1"}
        self.refreshes = 0
        self.n = 1
        self.fail_with: tuple[int, dict[str, Any]] | None = None
        self.gate: asyncio.Event | None = None
        self._lock = threading.Lock()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = _form(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail_with is not None:
            return httpx.Response(self.fail_with[0], json=self.fail_with[1])
        with self._lock:
            if form.get("refresh_token") not in self.valid:
                return httpx.Response(400, json={"error": "invalid_grant"})
            self.refreshes += 1
            self.n += 1
            body: dict[str, Any] = {"access_token": f"a{self.n}", "expires_in": self.lifetime, "token_type": "Bearer"}
            if self.rotate:
                self.valid = {f"r{self.n}"}
                body["refresh_token"] = f"r{self.n}"
        return httpx.Response(200, json=body)


def _seed(
    store: ConnectionStore, *, expires_at: float | None, refresh: str | None = "r1", lifetime: str = "600"
) -> ConnectionRecord:
    return store.upsert_connection(
        connector_id="kustomer",
        owner_id="o1",
        auth_type="oauth2",
        status="active",
        base_url="https://acme.api.kustomerapp.com",
        operations=("genericUser::list",),
        granted_roles=("org.permission.user.read",),
        secrets=Secrets(access_token="a1", refresh_token=refresh, token_type="Bearer", extra={LIFETIME_KEY: lifetime}),
        access_expires_at=expires_at,
    )


def _manager(
    store: ConnectionStore,
    record: ConnectionRecord,
    server: TokenServer,
    *,
    now: Callable[[], float] = lambda: NOW,
    **kwargs: Any,
) -> TokenManager:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return TokenManager(store=store, record=record, config=CONFIG, http=http, clock=now, **kwargs)


async def test_no_refresh_before_the_margin_then_one(memory_store: ConnectionStore) -> None:
    server = TokenServer()
    clock = [NOW]
    manager = _manager(memory_store, _seed(memory_store, expires_at=NOW + 600), server, now=lambda: clock[0], margin=60)
    assert await manager.access_token() == ("a1", 1)
    clock[0] = NOW + 539
    assert (await manager.access_token())[0] == "a1"
    clock[0] = NOW + 541
    token, version = await manager.access_token()
    assert (token, version, server.refreshes, manager.refreshes) == ("a2", 2, 1, 1)
    stored = memory_store.get_by_id(manager.record.id)
    assert stored is not None and stored.secrets.refresh_token == "r2" and stored.access_expires_at == NOW + 541 + 600


async def test_margin_is_capped_at_half_the_lifetime(memory_store: ConnectionStore) -> None:
    record = _seed(memory_store, expires_at=NOW + 30, lifetime="30")
    manager = _manager(memory_store, record, TokenServer(lifetime=30), margin=300)
    assert manager.refresh_due_at() == NOW + 15
    unknown = _manager(
        memory_store, _seed(memory_store, expires_at=NOW + 30, lifetime="junk"), TokenServer(), margin=300
    )
    assert unknown.refresh_due_at() == NOW - 270  # no lifetime known: the configured margin


async def test_old_refresh_token_is_kept_when_none_is_returned(memory_store: ConnectionStore) -> None:
    server = TokenServer(rotate=False)
    manager = _manager(memory_store, _seed(memory_store, expires_at=NOW - 1), server)
    assert (await manager.access_token())[0] == "a2"
    stored = memory_store.get_by_id(manager.record.id)
    assert stored is not None and stored.secrets.refresh_token == "r1" and stored.secrets.access_token == "a2"
    assert stored.granted_roles == ("org.permission.user.read",)  # no scope in the response: unchanged


async def test_many_tasks_one_refresh(memory_store: ConnectionStore) -> None:
    server = TokenServer(delay=0.05)
    manager = _manager(memory_store, _seed(memory_store, expires_at=NOW - 1), server)
    tokens = await asyncio.gather(*(manager.access_token() for _ in range(20)))
    assert {t for t, _ in tokens} == {"a2"} and server.refreshes == 1


async def test_managers_sharing_a_store_refresh_once(memory_store: ConnectionStore) -> None:
    """Two managers (as two hubs of one process would have) on one connection: the store decides."""
    server = TokenServer(delay=0.02)
    record = _seed(memory_store, expires_at=NOW - 1)
    managers = [_manager(memory_store, record, server) for _ in range(3)]
    tokens = await asyncio.gather(*(m.access_token() for m in managers for _ in range(3)))
    assert {t for t, _ in tokens} == {"a2"} and server.refreshes == 1


def test_threads_with_their_own_event_loops_refresh_once(file_store: Callable[..., ConnectionStore]) -> None:
    server = TokenServer(delay=0.05)
    record = _seed(file_store(), expires_at=NOW - 1)
    barrier = threading.Barrier(4)
    results: list[str] = []

    def worker() -> None:
        store = file_store()
        manager = _manager(store, record, server)
        barrier.wait()
        results.append(asyncio.run(manager.access_token())[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["a2"] * 4 and server.refreshes == 1


async def test_reactive_refresh_once_after_401(memory_store: ConnectionStore) -> None:
    server = TokenServer()
    manager = _manager(memory_store, _seed(memory_store, expires_at=None), server)
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200 if request.headers["authorization"] == "Bearer a2" else 401)

    async with httpx.AsyncClient(transport=httpx.MockTransport(api), auth=OAuthTokenAuth(manager)) as client:
        assert (await client.get("https://api.test/v1/x")).status_code == 200
        assert seen == ["Bearer a1", "Bearer a2"] and server.refreshes == 1
        server.valid = {"r2"}  # unchanged; the API now refuses every token: one refresh + one retry, then 401
        seen.clear()

        def refuse(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers["authorization"])
            return httpx.Response(401)

        client._transport = httpx.MockTransport(refuse)
        assert (await client.get("https://api.test/v1/x")).status_code == 401
        assert seen == ["Bearer a2", "Bearer a3"] and server.refreshes == 2
    assert "a1" not in repr(OAuthTokenAuth(manager))


async def test_api_error_on_sync_auth_flow() -> None:
    auth = OAuthTokenAuth.__new__(OAuthTokenAuth)
    with pytest.raises(RuntimeError, match="async-only"):
        next(auth.sync_auth_flow(httpx.Request("GET", "https://x")))


@pytest.mark.parametrize(
    ("fail_with", "reason"),
    [
        ((400, {"error": "invalid_grant"}), "invalid_grant"),
        ((401, {"error": "invalid_client"}), "invalid_client"),
        ((400, {"error": "unauthorized_client"}), "unauthorized_client"),
    ],
)
async def test_refusals_mark_needs_reauth_persistently(
    memory_store: ConnectionStore, fail_with: tuple[int, dict[str, Any]], reason: str
) -> None:
    server = TokenServer()
    server.fail_with = fail_with
    events: list[AuthEvent] = []
    manager = _manager(memory_store, _seed(memory_store, expires_at=NOW - 1), server, on_event=events.append)
    with pytest.raises(NeedsReauthError, match=reason):
        await manager.access_token()
    stored = memory_store.get_by_id(manager.record.id)
    assert stored is not None and stored.status == "needs_reauth" and reason in (stored.status_reason or "")
    assert [(e.kind, e.reason) for e in events] == [("needs_reauth", f"refresh refused: {reason}")]
    assert events[0].at == NOW
    with pytest.raises(NeedsReauthError):  # no more attempts
        await manager.access_token()
    assert len(events) == 1


async def test_no_refresh_token_means_needs_reauth(memory_store: ConnectionStore) -> None:
    manager = _manager(memory_store, _seed(memory_store, expires_at=NOW - 1, refresh=None), TokenServer())
    with pytest.raises(NeedsReauthError, match="no refresh token"):
        await manager.access_token()
    stored = memory_store.get_by_id(manager.record.id)
    assert stored is not None and stored.status == "needs_reauth"


async def test_deleted_connection(memory_store: ConnectionStore) -> None:
    manager = _manager(memory_store, _seed(memory_store, expires_at=NOW - 1), TokenServer())
    memory_store.delete(manager.record.id)
    with pytest.raises(NeedsReauthError, match="was deleted"):
        await manager.access_token()


async def test_transient_failure_keeps_a_still_valid_token(
    memory_store: ConnectionStore, caplog: pytest.LogCaptureFixture
) -> None:
    server = TokenServer()
    server.fail_with = (503, {"error": "temporarily_unavailable"})
    clock = [NOW + 590]  # inside the 60 s margin, 10 s before expiry
    manager = _manager(memory_store, _seed(memory_store, expires_at=NOW + 600), server, now=lambda: clock[0], margin=60)
    assert await manager.access_token() == ("a1", 1)
    assert "proactive token refresh failed (APIConnectionError)" in caplog.text
    clock[0] = NOW + 600  # expired: now the failure is the caller's
    with pytest.raises(APIConnectionError):
        await manager.access_token()
    stored = memory_store.get_by_id(manager.record.id)
    assert stored is not None and stored.status == "active"  # a passing failure marks nothing


class _RotatingElsewhere(ConnectionStore):
    """A store where another writer (not taking our lock) rotates the tokens while our refresh is refused."""

    rotated = False

    @contextmanager
    def refresh_lock(self, id: str) -> Iterator[LockedConnection]:
        if self.rotated is False and self._calls_of_refresh_lock() == 2:
            record = self.get_by_id(id)
            assert record is not None
            self.upsert_connection(
                connector_id=record.connector_id,
                owner_id=record.owner_id,
                auth_type="oauth2",
                status="active",
                base_url=record.base_url,
                secrets=Secrets(access_token="a-elsewhere", refresh_token="r-elsewhere"),
                access_expires_at=NOW + 600,
            )
            self.rotated = True
        with super().refresh_lock(id) as locked:
            yield locked

    def _calls_of_refresh_lock(self) -> int:
        self.calls = getattr(self, "calls", 0) + 1
        return self.calls


async def test_invalid_grant_after_a_concurrent_rotation_is_recovered_by_rereading() -> None:
    import os

    from connectors.runtime.secrets import SecretBox

    store = _RotatingElsewhere("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    try:
        server = TokenServer()
        server.valid = set()  # r1 was rotated by the other writer: refused
        events: list[AuthEvent] = []
        manager = _manager(store, _seed(store, expires_at=NOW - 1), server, on_event=events.append)
        assert (await manager.access_token())[0] == "a-elsewhere"
        assert store.rotated and events == []
        stored = store.get_by_id(manager.record.id)
        assert stored is not None and stored.status == "active"
    finally:
        store.close()


async def test_cancelling_the_caller_does_not_interrupt_the_refresh(file_store: Callable[..., ConnectionStore]) -> None:
    store = file_store(lock_timeout=2.0)
    server = TokenServer()
    server.gate = asyncio.Event()
    manager = _manager(store, _seed(store, expires_at=NOW - 1), server)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.access_token(), 0.1)  # e.g. a request timeout upstream
    server.gate.set()
    for _ in range(100):
        stored = store.get_by_id(manager.record.id)
        assert stored is not None
        if stored.token_version == 2:
            break
        await asyncio.sleep(0.02)
    # the rotated refresh token was saved, not lost with the cancelled caller
    assert stored is not None and stored.secrets.refresh_token == "r2" and server.refreshes == 1
    # and the refresh lock was released
    other = file_store(lock_timeout=1.0)
    with other.refresh_lock(manager.record.id) as locked:
        assert locked.record.token_version == 2


async def test_cancelled_while_waiting_for_the_store_lock(file_store: Callable[..., ConnectionStore]) -> None:
    store = file_store(lock_timeout=5.0)
    record = _seed(store, expires_at=NOW - 1)
    holder = file_store(lock_timeout=5.0)
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with holder.refresh_lock(record.id):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    server = TokenServer()
    manager = _manager(store, record, server)
    with anyio.move_on_after(0.2):
        await manager.access_token()
    release.set()
    thread.join(5)
    for _ in range(100):
        stored = store.get_by_id(record.id)
        if stored is not None and stored.token_version == 2:
            break
        await asyncio.sleep(0.02)
    assert server.refreshes == 1
    with file_store(lock_timeout=1.0).refresh_lock(record.id) as locked:  # nothing leaked
        assert locked.record.token_version == 2


async def test_store_busy_is_a_passing_failure(file_store: Callable[..., ConnectionStore]) -> None:
    store = file_store(lock_timeout=0.2)
    record = _seed(store, expires_at=NOW - 1)
    manager = _manager(store, record, TokenServer())
    with file_store(lock_timeout=0.2).refresh_lock(record.id), pytest.raises(StoreConflictError):
        await manager.access_token()
    assert (await manager.access_token())[0] == "a2"


def test_token_lifetime_counts_from_the_request(memory_store: ConnectionStore) -> None:
    started = time.time()

    async def go() -> TokenResponse:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"access_token": "a", "expires_in": 60})

        async with _token_client(handler) as http:
            return await refresh_grant(http, CONFIG, refresh_token="r")

    token = asyncio.run(go())
    assert token.expires_at is not None and started + 60 <= token.expires_at <= time.time() + 60
