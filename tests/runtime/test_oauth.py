"""OAuth through the hub against the sandbox: consent, scopes, incremental consent, state, PKCE, refresh."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors import Connection, Connectors, Settings
from connectors.errors import (
    ConfigurationError,
    InsufficientPermissionsError,
    NeedsReauthError,
    OAuthFlowError,
)
from connectors.kustomer.roles import KUSTOMER_OPERATIONS
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.auth import AuthEvent, hash_state
from connectors.runtime.store import ConnectionStore

pytestmark = pytest.mark.anyio

REDIRECT_URI = "https://app.example.com/oauth/callback"
ConsentFn = Callable[..., Awaitable[Any]]
ConnectFn = Callable[..., Awaitable[Connection]]


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _preferred(*operations: str) -> set[str]:
    return {choice[0] for name in operations for choice in KUSTOMER_OPERATIONS[name].requires if choice}


# -- the authorization request ----------------------------------------------------------------------------


async def test_authorization_url_requests_exactly_the_union_of_roles(hub: Connectors, sandbox: Sandbox) -> None:
    ops = ["genericContact::list", "genericContact::create", "genericCompany::retrieve"]
    request = await hub.authorize(
        "kustomer", "t-url", operations=ops, redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    assert request.url is not None and request.state is not None and not request.already_authorized
    query = _query(request.url)
    assert request.url.startswith(f"{sandbox.base_url}/oauth/authorize?")
    assert query["response_type"] == "code"
    assert query["client_id"] == "unified-connectors-test"
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["state"] == request.state
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    scopes = query["scope"].split()
    assert len(scopes) == len(set(scopes))
    assert set(scopes) == _preferred(*ops) | {"offline_access"}
    assert set(request.scopes) == set(scopes)
    assert "client_secret" not in request.url and "test-client-secret" not in request.url


async def test_offline_access_is_configurable(sandbox: Sandbox, memory_store: ConnectionStore) -> None:
    settings = Settings(kustomer={"client_id": "c", "offline_access": False})
    async with Connectors(settings=settings, store=memory_store, transport=sandbox.transport()) as hub:
        request = await hub.authorize(
            "kustomer", "t", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
        )
    assert request.url is not None
    assert _query(request.url)["scope"].split() == ["org.permission.user.read"]


async def test_kustomer_oauth_endpoints_are_per_org(memory_store: ConnectionStore) -> None:
    settings = Settings(kustomer={"client_id": "c", "client_secret": "s"})
    async with Connectors(settings=settings, store=memory_store) as hub:
        request = await hub.authorize(
            "kustomer", "t", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, org="acme"
        )
        assert request.url is not None and request.url.startswith("https://acme.kustomerapp.com/oauth/authorize?")
        with pytest.raises(ConfigurationError, match="per org"):
            await hub.authorize(
                "kustomer", "t", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, region="eu"
            )
    override = Settings(
        kustomer={
            "client_id": "c",
            "authorize_url": "https://id.example.com/a",
            "token_url": "https://id.example.com/t",
        }
    )
    async with Connectors(settings=override, store=memory_store) as hub:
        request = await hub.authorize(
            "kustomer", "t", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, region="eu"
        )
        assert request.url is not None and request.url.startswith("https://id.example.com/a?")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"operations": ["genericContact::lsit"]}, "did you mean 'genericContact::list'"),
        ({"redirect_uri": "/relative/callback"}, "redirect_uri must be an absolute"),
        ({"region": "mars"}, "unknown Kustomer region"),
    ],
)
async def test_authorize_refuses_bad_input(hub: Connectors, kwargs: dict[str, Any], error: str) -> None:
    args: dict[str, Any] = {"operations": ["genericUser::list"], "redirect_uri": REDIRECT_URI, "org": "acme", **kwargs}
    with pytest.raises(ConfigurationError, match=error):
        await hub.authorize("kustomer", "t", **args)
    assert await hub.list() == []


async def test_oauth_needs_a_client_id(sandbox: Sandbox, memory_store: ConnectionStore) -> None:
    async with Connectors(settings=Settings(), store=memory_store, transport=sandbox.transport()) as hub:
        with pytest.raises(ConfigurationError, match="KUSTOMER_CLIENT_ID"):
            await hub.authorize(
                "kustomer", "t", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
            )


# -- completing it ---------------------------------------------------------------------------------------------


async def test_consent_creates_an_oauth_connection(hub: Connectors, sandbox: Sandbox, consent: ConsentFn) -> None:
    ops = ["genericContact::list", "genericUser::retrieve"]
    request = await hub.authorize(
        "kustomer", "t1", operations=ops, redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    assert request.url is not None
    redirect = await consent(request.url)
    assert redirect.url.startswith(REDIRECT_URI) and redirect.state == request.state
    conn = await hub.complete_authorization(code=redirect.code, state=redirect.state)
    info = conn.info
    assert (info.auth_type, info.status, info.owner_id, info.operations) == ("oauth2", "active", "t1", tuple(ops))
    assert set(info.granted_roles or ()) == _preferred(*ops)  # offline_access is not a role
    assert info.metadata["orgId"] == sandbox.org_id and info.metadata["userId"] == sandbox.owner_id
    page = await conn.resources("genericContact").list(limit=3)
    assert len(page.data) == 3
    identity = await conn.whoami()
    assert identity.org_id == sandbox.org_id and identity.user_id == sandbox.owner_id
    assert (await hub.get("kustomer", "t1")).id == conn.id
    assert sandbox.state.counters["oauth.authorization_code"] == 1


async def test_denied_consent_raises_and_stores_nothing(hub: Connectors, sandbox: Sandbox, consent: ConsentFn) -> None:
    request = await hub.authorize(
        "kustomer", "t1", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    assert request.url is not None
    redirect = await consent(request.url, approve=False)
    assert redirect.code is None and redirect.params["error"] == "access_denied"
    with pytest.raises(OAuthFlowError) as caught:
        await hub.complete_authorization(code=None, state=redirect.state, error=redirect.params["error"])
    assert caught.value.error == "access_denied"
    assert await hub.list() == []
    with pytest.raises(OAuthFlowError) as again:  # the state was used up by the failed attempt
        await hub.complete_authorization(code="x", state=redirect.state)
    assert again.value.error == "invalid_state"


async def test_state_is_single_use_and_unknown_states_are_refused(
    hub: Connectors, sandbox: Sandbox, consent: ConsentFn
) -> None:
    request = await hub.authorize(
        "kustomer", "t1", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    assert request.url is not None
    redirect = await consent(request.url)
    with pytest.raises(OAuthFlowError) as forged:
        await hub.complete_authorization(code=redirect.code, state="forged-state")
    assert forged.value.error == "invalid_state"
    await hub.complete_authorization(code=redirect.code, state=redirect.state)
    with pytest.raises(OAuthFlowError) as replay:
        await hub.complete_authorization(code=redirect.code, state=redirect.state)
    assert replay.value.error == "invalid_state"
    assert sandbox.state.counters["oauth.code_reuse"] == 0  # refused before the code was sent again


async def test_state_expires(
    clocked_hub: Connectors, clocked_sandbox: Sandbox, clock: Any, run_consent_fn: ConsentFn
) -> None:
    request = await clocked_hub.authorize(
        "kustomer",
        "t1",
        operations=["genericUser::list"],
        redirect_uri=REDIRECT_URI,
        base_url=clocked_sandbox.base_url,
        state_ttl=120,
    )
    assert request.url is not None
    clock.advance(121)  # the user took too long on the consent page
    redirect = await run_consent_fn(request.url, transport=clocked_sandbox.transport())
    with pytest.raises(OAuthFlowError) as caught:
        await clocked_hub.complete_authorization(code=redirect.code, state=redirect.state)
    assert caught.value.error == "invalid_state"
    assert clocked_sandbox.state.counters["oauth.authorization_code"] == 0
    assert await clocked_hub.list() == []


async def test_state_is_bound_to_the_connector_and_owner_it_was_made_for(
    hub: Connectors, sandbox: Sandbox, consent: ConsentFn, memory_store: ConnectionStore
) -> None:
    a = await hub.authorize(
        "kustomer", "owner-a", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    b = await hub.authorize(
        "kustomer",
        "owner-b",
        operations=["genericContact::list"],
        redirect_uri=REDIRECT_URI,
        base_url=sandbox.base_url,
        label="second",
    )
    assert a.url and b.url and a.state != b.state
    # the user consents to b's request; the callback carries b's state, which names owner-b
    redirect = await consent(b.url)
    conn = await hub.complete_authorization(code=redirect.code, state=redirect.state)
    assert (conn.info.owner_id, conn.info.label, conn.info.operations) == (
        "owner-b",
        "second",
        ("genericContact::list",),
    )
    # the stored state is only a hash, and it is gone once used
    with memory_store.engine.connect() as db:
        from sqlalchemy import text

        rows = db.execute(text("SELECT state_hash FROM connectors_oauth_states")).scalars().all()
    assert rows == [hash_state(a.state or "")]


async def test_pkce_verifier_is_sent_and_checked(hub: Connectors, sandbox: Sandbox, consent: ConsentFn) -> None:
    request = await hub.authorize(
        "kustomer", "t1", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    assert request.url is not None
    redirect = await consent(request.url)
    sandbox.state.oauth_codes[redirect.code or ""].code_challenge = "A" * 43  # as if the URL had been tampered with
    with pytest.raises(OAuthFlowError) as caught:
        await hub.complete_authorization(code=redirect.code, state=redirect.state)
    assert caught.value.error == "invalid_grant" and "PKCE" in str(caught.value)
    assert await hub.list() == []


async def test_per_tenant_oauth_client(hub: Connectors, sandbox: Sandbox, consent: ConsentFn) -> None:
    sandbox.register_oauth_client("tenant-app", "tenant-app-secret", [REDIRECT_URI])
    client = {"client_id": "tenant-app", "client_secret": "tenant-app-secret"}
    request = await hub.authorize(
        "kustomer",
        "t9",
        operations=["genericUser::list"],
        redirect_uri=REDIRECT_URI,
        base_url=sandbox.base_url,
        oauth_client=client,
    )
    assert request.url is not None and _query(request.url)["client_id"] == "tenant-app"
    redirect = await consent(request.url)
    conn = await hub.complete_authorization(code=redirect.code, state=redirect.state)
    assert conn.info.metadata["credentialName"] == "oauth:tenant-app"
    # refreshes use the tenant's client too (the override is kept with the encrypted secrets)
    manager = conn.session.token_manager
    assert manager is not None
    await manager.refresh(stale_version=conn.session.record.token_version)
    assert sandbox.state.counters["oauth.refresh"] == 1
    assert (await conn.resources("genericUser").list(limit=1)).data


# -- scopes: union, incremental consent, no re-consent ------------------------------------------------------------


async def test_incremental_consent_requests_the_union(
    hub: Connectors, sandbox: Sandbox, oauth_connect: ConnectFn, consent: ConsentFn
) -> None:
    first = await oauth_connect(hub, "t2", ["genericContact::list"])
    with pytest.raises(InsufficientPermissionsError):
        await first.resources("genericCompany").list()
    request = await hub.authorize(
        "kustomer", "t2", operations=["genericCompany::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    assert request.url is not None and not request.already_authorized
    assert set(_query(request.url)["scope"].split()) == _preferred("genericContact::list", "genericCompany::list") | {
        "offline_access"
    }
    redirect = await consent(request.url)
    second = await hub.complete_authorization(code=redirect.code, state=redirect.state)
    assert second.id == first.id  # the same connection, re-authorized
    assert second.info.operations == ("genericContact::list", "genericCompany::list")
    assert await second.resources("genericCompany").list(limit=1)
    assert await second.resources("genericContact").list(limit=1)
    assert second.info.created_at == first.info.created_at


async def test_no_reconsent_when_the_grant_already_covers_the_request(
    hub: Connectors, oauth_connect: ConnectFn, sandbox: Sandbox
) -> None:
    # genericContact::list and genericContact::retrieve need the same roles
    conn = await oauth_connect(hub, "t3", ["genericContact::list"])
    codes = sandbox.state.counters["oauth.authorization_code"]
    request = await hub.authorize(
        "kustomer", "t3", operations=["genericContact::retrieve"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
    )
    assert request.already_authorized and request.url is None and request.state is None
    assert request.connection_id == conn.id
    reopened = await hub.get("kustomer", "t3")
    assert reopened.info.operations == ("genericContact::list", "genericContact::retrieve")
    assert sandbox.state.counters["oauth.authorization_code"] == codes
    contact = (await reopened.resources("genericContact").list(limit=1)).data[0]
    assert (await reopened.resources("genericContact").retrieve(contact.id or "")).id == contact.id


# -- refresh ----------------------------------------------------------------------------------------------------


async def test_proactive_refresh_before_expiry(
    clocked_connect: ConnectFn, clocked_sandbox: Sandbox, clock: Any
) -> None:
    conn = await clocked_connect()
    record = conn.session.record
    assert record.access_expires_at == pytest.approx(clock.now + 600)
    clock.advance(500)  # 100 s left; the margin is 60 s: no refresh yet
    await conn.resources("genericUser").list(limit=1)
    assert clocked_sandbox.state.counters["oauth.refresh"] == 0
    clock.advance(45)  # 55 s left: inside the margin
    await conn.resources("genericUser").list(limit=1)
    assert clocked_sandbox.state.counters["oauth.refresh"] == 1
    assert conn.session.record.token_version == record.token_version + 1
    assert conn.session.record.access_expires_at == pytest.approx(clock.now + 600)
    assert clocked_sandbox.state.counters["status.401"] == 0  # never sent an expired token
    for _ in range(3):
        await conn.resources("genericUser").list(limit=1)
    assert clocked_sandbox.state.counters["oauth.refresh"] == 1


async def test_reactive_refresh_after_a_401(clocked_connect: ConnectFn, clocked_sandbox: Sandbox) -> None:
    conn = await clocked_connect()
    token = conn.session.record.secrets.access_token or ""
    clocked_sandbox.revoke_token(token)  # the provider invalidated it early
    page = await conn.resources("genericUser").list(limit=1)
    assert page.data
    counters = clocked_sandbox.state.counters
    assert (counters["status.401"], counters["oauth.refresh"]) == (1, 1)
    assert conn.session.record.secrets.access_token != token


async def test_refresh_margin_longer_than_the_token_life_does_not_refresh_every_call(
    clocked_sandbox: Sandbox, clock: Any, memory_store: ConnectionStore, run_consent_fn: ConsentFn
) -> None:
    clocked_sandbox.settings.oauth_access_token_ttl_seconds = 30  # shorter than the default 300 s margin
    settings = Settings(kustomer={"client_id": "unified-connectors-test", "client_secret": "test-client-secret"})
    async with Connectors(
        settings=settings, store=memory_store, transport=clocked_sandbox.transport(), clock=clock
    ) as hub:
        request = await hub.authorize(
            "kustomer",
            "t",
            operations=["genericUser::list"],
            redirect_uri=REDIRECT_URI,
            base_url=clocked_sandbox.base_url,
        )
        assert request.url is not None
        redirect = await run_consent_fn(request.url, transport=clocked_sandbox.transport())
        conn = await hub.complete_authorization(code=redirect.code, state=redirect.state)
        for _ in range(5):
            await conn.resources("genericUser").list(limit=1)
        assert clocked_sandbox.state.counters["oauth.refresh"] == 0
        clock.advance(29)
        await conn.resources("genericUser").list(limit=1)
        assert clocked_sandbox.state.counters["oauth.refresh"] == 1


async def test_revoked_refresh_token_marks_needs_reauth_and_emits_an_event(
    clocked_hub: Connectors, clocked_connect: ConnectFn, clocked_sandbox: Sandbox, clock: Any
) -> None:
    events: list[AuthEvent] = []
    clocked_hub.on_auth_event(events.append)
    conn = await clocked_connect()
    for grant in clocked_sandbox.state.oauth_grants.values():
        clocked_sandbox.oauth.revoke_grant(grant, "admin uninstalled the app")
    clock.advance(590)
    with pytest.raises(NeedsReauthError, match="needs re-authorization") as caught:
        await conn.resources("genericUser").list(limit=1)
    assert "invalid_grant" in str(caught.value)
    assert [e.kind for e in events] == ["needs_reauth"]
    assert events[0].connection_id == conn.id and events[0].owner_id == "tenant-o"
    row = clocked_hub.store.get_by_id(conn.id)  # persisted, not only in this process's memory
    assert row is not None and row.status == "needs_reauth" and "invalid_grant" in (row.status_reason or "")
    stored = await clocked_hub.get("kustomer", "tenant-o")
    assert stored.info.status == "needs_reauth" and "invalid_grant" in (stored.info.status_reason or "")
    requests = clocked_sandbox.state.counters["requests"]
    with pytest.raises(NeedsReauthError):  # refused locally from now on: no request, no refresh attempt
        await stored.resources("genericUser").list(limit=1)
    assert clocked_sandbox.state.counters["requests"] == requests
    # re-authorizing brings the connection back
    again = await clocked_connect()
    assert again.id == conn.id and again.info.status == "active"
    assert (await again.resources("genericUser").list(limit=1)).data


async def test_refresh_events_reach_async_and_sync_handlers(
    clocked_hub: Connectors, clocked_connect: ConnectFn, clock: Any
) -> None:
    seen: list[str] = []

    @clocked_hub.on_auth_event
    async def on_async(event: AuthEvent) -> None:
        seen.append(f"async:{event.kind}")

    @clocked_hub.on_auth_event
    def on_sync(event: AuthEvent) -> None:
        seen.append(f"sync:{event.kind}")

    @clocked_hub.on_auth_event
    def broken(event: AuthEvent) -> None:
        raise RuntimeError("handler bug")

    conn = await clocked_connect()
    clock.advance(590)
    await conn.resources("genericUser").list(limit=1)  # a broken handler does not fail the call
    assert seen == ["async:refreshed", "sync:refreshed"]


async def test_a_refresh_by_another_process_does_not_break_calls_in_flight(
    clocked_hub: Connectors,
    clocked_connect: ConnectFn,
    clocked_sandbox: Sandbox,
    clock: Any,
    memory_store: ConnectionStore,
) -> None:
    import asyncio

    conn = await clocked_connect()
    # a second hub on the same store stands for another worker process
    other = Connectors(
        settings=clocked_hub.settings, store=memory_store, transport=clocked_sandbox.transport(), clock=clock
    )
    try:
        clocked_sandbox.settings.latency_ms = 200
        in_flight = asyncio.ensure_future(conn.resources("genericUser").list(limit=1))
        await asyncio.sleep(0.05)
        clock.advance(590)
        elsewhere = await other.get("kustomer", "tenant-o")
        await elsewhere.resources("genericUser").list(limit=1)  # the other worker refreshes
        assert clocked_sandbox.state.counters["oauth.refresh"] == 1
        again = await clocked_hub.get("kustomer", "tenant-o")  # this worker serves its next request
        assert again is conn  # the same connection, now holding the new tokens
        assert conn.session.record.token_version == elsewhere.session.record.token_version
        assert (await in_flight).data  # the call in flight was not cut off
        await again.resources("genericUser").list(limit=1)
        assert clocked_sandbox.state.counters["oauth.refresh"] == 1  # and no second refresh
    finally:
        await other.aclose()


async def test_reconnecting_with_a_new_api_key_takes_effect_for_open_connections(
    hub: Connectors, sandbox: Sandbox, memory_store: ConnectionStore
) -> None:
    first_key = sandbox.mint_api_key()
    conn = await hub.connect("kustomer", "k", api_key=first_key, base_url=sandbox.base_url)
    other = Connectors(settings=hub.settings, store=memory_store, transport=sandbox.transport())
    try:
        await other.connect("kustomer", "k", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
    finally:
        await other.aclose()
    sandbox.revoke_token(first_key)  # the old key is gone
    same = await hub.get("kustomer", "k")
    assert same is conn
    assert (await conn.resources("genericUser").list(limit=1)).data


class _NoScope(httpx.AsyncBaseTransport):
    """The sandbox, except that its token responses leave ``scope`` out (RFC 6749 allows it)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/oauth/token" or response.status_code != 200:
            return response
        await response.aread()
        body = {k: v for k, v in response.json().items() if k != "scope"}
        return httpx.Response(200, json=body, headers={"cache-control": "no-store"})


async def test_granted_roles_come_from_tokens_current_when_the_token_response_has_no_scope(
    sandbox: Sandbox, memory_store: ConnectionStore, consent: ConsentFn
) -> None:
    settings = Settings(kustomer={"client_id": "unified-connectors-test", "client_secret": "test-client-secret"})
    async with Connectors(settings=settings, store=memory_store, transport=_NoScope(sandbox.transport())) as hub:
        request = await hub.authorize(
            "kustomer", "t", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sandbox.base_url
        )
        assert request.url is not None
        redirect = await consent(request.url)
        conn = await hub.complete_authorization(code=redirect.code, state=redirect.state)
        assert conn.info.granted_roles == ("org.permission.user.read",)  # from GET /v1/auth/tokens/current
        with pytest.raises(InsufficientPermissionsError):
            await conn.resources("genericContact").list()
        manager = conn.session.token_manager
        assert manager is not None
        await manager.refresh(stale_version=conn.session.record.token_version)
        assert conn.info.granted_roles == ("org.permission.user.read",)  # a refresh without scope keeps them
