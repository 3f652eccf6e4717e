"""Security of the library: proxy SSRF, OAuth state and PKCE, secrets at rest and in output, request size limits.

* **Proxy SSRF.** ``Connection.proxy`` takes a *path* on the connection's Kustomer host. Absolute URLs,
  scheme-relative and scheme/host tricks, ``..`` (raw, encoded, double-encoded), encoded slashes, backslashes,
  ``@`` userinfo, control characters and CRLF injection are refused with ``ProxyRefusedError`` before anything
  is sent; fuzzed paths never reach another host nor a traversed path; redirects off the host are returned,
  never followed; caller headers cannot replace the credential or the host.
* **OAuth.** ``state`` is single-use (a replay is refused, even two callbacks racing), expires, is bound to the
  authorization it was made for; a code injected from another authorization fails the PKCE check; the store
  never holds a usable state.
* **Secrets** (API keys, access and refresh tokens, the client secret, authorization codes, the deployment key)
  never appear in logs (every logger at DEBUG), error messages and reprs, a recorded cassette, nor in clear in
  the database (SQLite file bytes, every PostgreSQL row).
* **Size limits**: a request body over Kustomer's 100 kB is refused with a typed ``PayloadTooLargeError``; a
  push row over it is rejected with a reason while the others land.
"""

from __future__ import annotations

import base64
import os
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import pytest
import vcr
from _reliability import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    LogCapture,
    Tally,
    capture_logs,
    consent,
    fuzz,
    quiet_settings,
)
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import MetaData, Table, create_engine, inspect, select

from connectors import Connection, Connectors, Settings
from connectors.errors import (
    ConnectorError,
    OAuthFlowError,
    PayloadTooLargeError,
    ProxyRefusedError,
)
from connectors.kustomer.sandbox import Sandbox, running_sandbox
from connectors.runtime.auth import exchange_code, hash_state
from connectors.runtime.bulk import PushOptions
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from connectors.testing import Scrubber, audit_cassette, audit_cassettes, vcr_config

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

REPO = Path(__file__).resolve().parents[2]
EVIL = "evil.example.net"


class Recorder(httpx.AsyncBaseTransport):
    """Records every request the library sends, then hands it to ``inner`` (or answers ``script(request)``)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        script: Callable[[httpx.Request], httpx.Response | None] | None = None,
    ) -> None:
        self.inner = inner
        self.script = script
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        if self.script is not None and (answer := self.script(request)) is not None:
            return answer
        return await self.inner.handle_async_request(request)


# -- proxy SSRF -------------------------------------------------------------------------------------------------

SSRF_ATTEMPTS = [
    # absolute URLs and other schemes
    f"http://{EVIL}/v1/customers",
    f"https://{EVIL}/",
    f"HTTPS://{EVIL}/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://127.0.0.1:8080/admin",
    "http://[::1]/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "javascript:alert(1)",
    "data:text/plain,hi",
    f"http:{EVIL}/x",
    f"http:/{EVIL}/x",
    f"https:\\\\{EVIL}\\x",
    f" http://{EVIL}/",
    # scheme-relative and host tricks
    f"//{EVIL}/v1/customers",
    f"///{EVIL}/",
    f"////{EVIL}/",
    f"\\\\{EVIL}\\share",
    f"/\\{EVIL}/",
    f"\\/{EVIL}/",
    f"@{EVIL}/v1/customers",
    f"/@{EVIL}/",
    f"/v1@{EVIL}/customers",
    f"/v1/customers@{EVIL}",
    f":@{EVIL}/",
    f"user:pass@{EVIL}/",
    f"{EVIL}:443@api.kustomerapp.com/",
    f"/%2f%2f{EVIL}/",
    f"/%5c%5c{EVIL}/",
    f"/%40{EVIL}",
    # dot segments, raw and encoded
    "/v1/../../admin",
    "/v1/customers/../../../etc/passwd",
    "../v1/customers",
    "..",
    "/..",
    "/v1/./customers",
    "/v1/customers/.",
    "/v1/%2e%2e/%2e%2e/admin",
    "/v1/%2E%2E/admin",
    "/v1/.%2e/admin",
    "/v1/%2e./admin",
    "/v1/customers/%252e%252e/%252e%252e/admin",
    "/v1/customers/..%2f..%2fadmin",
    "/v1/customers%2f..%2f..%2fadmin",
    "/v1/customers/%2F",
    "/v1/customers/..\\..\\admin",
    "/v1/customers/%5c..%5cadmin",
    # control characters, CRLF and header injection, whitespace
    "/v1/customers\r\nHost: evil.example.net",
    "/v1/customers%0d%0aHost:%20evil.example.net",
    "/v1/customers\x00",
    "/v1/customers%00",
    "/v1/cust omers",
    "/v1/customers\t",
    "/v1/customers\x7f",
    # fragments and empties
    f"/v1/customers#@{EVIL}",
    "",
]


async def _proxy_connection(
    make_hub: Callable[..., Connectors], transport: httpx.AsyncBaseTransport, sb: Sandbox
) -> Connection:
    hub = make_hub(transport)
    return await hub.connect("kustomer", "tenant-proxy", api_key=sb.mint_api_key(name="proxy"), base_url=sb.base_url)


async def test_proxy_refuses_every_ssrf_attempt(make_hub: Callable[..., Connectors], tally: Tally) -> None:
    sb = Sandbox(quiet_settings())
    recorder = Recorder(sb.transport())
    conn = await _proxy_connection(make_hub, recorder, sb)
    before = len(recorder.sent)
    accepted: list[str] = []
    for attempt in SSRF_ATTEMPTS:
        for method in ("GET", "POST"):
            refusal: ProxyRefusedError | None = None
            try:
                response = await conn.proxy(method, attempt)
            except ProxyRefusedError as exc:
                refusal = exc
            if refusal is None:
                accepted.append(f"{method} {attempt!r} -> {response.status_code}")
            else:
                assert str(refusal)
    sent = recorder.sent[before:]
    tally.record(
        "proxy SSRF attempts",
        tried=2 * len(SSRF_ATTEMPTS),
        rejected=2 * len(SSRF_ATTEMPTS) - len(accepted),
        lost=len(accepted) + len(sent),
    )
    assert accepted == []
    assert sent == []  # refused before anything was sent


# Building blocks of paths an attacker may try; the fuzzer glues them together.
FRAGMENTS = [
    "/",
    "//",
    "\\",
    "..",
    ".",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%25",
    "%252e",
    "%252f",
    "%40",
    "@",
    ":",
    "?",
    "#",
    "&",
    "=",
    ";",
    "v1",
    "customers",
    "users",
    "http:",
    "https:",
    "file:",
    EVIL,
    "127.0.0.1",
    "localhost",
    "[::1]",
    "%00",
    "%0d%0a",
    " ",
    "\t",
    "\u2215",
    "\uff0e\uff0e",
    "~",
    "*",
    "'",
    '"',
    "<",
    ">",
]
benign = st.sampled_from(["v1", "customers", "users", "current", "teams", "search", "0" * 24, "a.b", "x-y"])
segment = benign | st.sampled_from(FRAGMENTS) | st.text(string.ascii_letters + string.digits + "-_.~%", max_size=6)
paths = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS) | benign, min_size=1, max_size=8).map("".join),  # raw concatenations
    st.lists(segment, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts)),  # path-shaped
    st.tuples(st.lists(benign, max_size=3), segment, st.sampled_from(["", "?", "?q=", "#"]), segment).map(
        lambda t: "/v1/" + "/".join(t[0]) + "/" + t[1] + t[2] + t[3]
    ),
)


async def test_fuzzed_proxy_paths_never_leave_the_kustomer_host(
    make_hub: Callable[..., Connectors], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings())
    recorder = Recorder(sb.transport())
    conn = await _proxy_connection(make_hub, recorder, sb)
    host = httpx.URL(sb.base_url).host
    counts = {"refused": 0, "sent": 0}
    escaped: list[str] = []

    async def attempt(path: str, method: str) -> None:
        before = len(recorder.sent)
        try:
            await conn.proxy(method, path)
        except ProxyRefusedError:
            counts["refused"] += 1
            assert len(recorder.sent) == before
            return
        counts["sent"] += 1
        for request in recorder.sent[before:]:
            decoded = unquote(unquote(request.url.raw_path.decode("ascii").split("?", 1)[0]))
            segments = decoded.replace("\\", "/").split("/")
            if request.url.host != host or ".." in segments or "." in segments:
                escaped.append(f"{path!r} -> {request.url}")

    @fuzz(2500, shrink=False)
    @given(path=paths, method=st.sampled_from(["GET", "DELETE", "POST"]))
    def check(path: str, method: str) -> None:
        anyio.from_thread.run(attempt, path, method)

    await anyio.to_thread.run_sync(check)
    tried = counts["refused"] + counts["sent"]
    tally.record("proxy paths (fuzzed)", tried=tried, rejected=counts["refused"], lost=len(escaped))
    tally.note(
        f"proxy path fuzz: {tried} paths, {counts['refused']} refused, {counts['sent']} sent to the Kustomer host"
    )
    assert escaped == [], escaped[:5]
    assert counts["refused"] > 0 and counts["sent"] > 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_proxy_returns_redirects_off_the_host_and_never_follows_them(
    status: int, make_hub: Callable[..., Connectors], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings())
    targets = [f"http://{EVIL}/steal", f"//{EVIL}/steal", "http://169.254.169.254/latest/meta-data/"]

    def script(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/v1/redirect/"):
            index = int(request.url.path.rsplit("/", 1)[1])
            return httpx.Response(status, headers={"Location": targets[index]})
        return None

    recorder = Recorder(sb.transport(), script)
    conn = await _proxy_connection(make_hub, recorder, sb)
    for index, target in enumerate(targets):
        response = await conn.proxy("GET", f"/v1/redirect/{index}")
        assert response.status_code == status and response.headers["location"] == target
    hosts = {request.url.host for request in recorder.sent}
    tally.record(
        "proxy redirects",
        tried=len(targets),
        rejected=len(targets),
        lost=len(hosts - {"sandbox.kustomer.test", httpx.URL(sb.base_url).host}),
    )
    assert hosts == {httpx.URL(sb.base_url).host}


async def test_proxy_caller_headers_cannot_replace_the_credential_or_the_host(
    make_hub: Callable[..., Connectors], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings())
    recorder = Recorder(sb.transport())
    conn = await _proxy_connection(make_hub, recorder, sb)
    own = recorder.sent[-1].headers["authorization"]
    hostile = {
        "Authorization": "Bearer stolen-or-forged",
        "Host": EVIL,
        "X-Forwarded-Host": EVIL,
        "Forwarded": f"host={EVIL}",
        "Cookie": "session=1",
        "Proxy-Authorization": "Basic eA==",
        "Transfer-Encoding": "chunked",
    }
    response = await conn.proxy("GET", "/v1/users/current", headers=hostile, params={"next": f"http://{EVIL}/"})
    assert response.status_code == 200
    sent = recorder.sent[-1]
    assert sent.url.host == httpx.URL(sb.base_url).host
    assert sent.headers["authorization"] == own
    assert all(
        name.lower() not in {"x-forwarded-host", "forwarded", "cookie", "proxy-authorization"} for name in sent.headers
    )
    tally.record("proxy header tricks", tried=len(hostile), rejected=len(hostile))


# -- OAuth state and PKCE -----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _authorize(hub: Connectors, sb: Sandbox, owner: str) -> tuple[str, dict[str, str]]:
    """Start an authorization and approve it; return the state the hub made and the callback's query."""
    request = await hub.authorize(
        "kustomer", owner, operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sb.base_url
    )
    assert request.url is not None and request.state is not None
    assert len(request.state) >= 32 and CLIENT_SECRET not in request.url
    return request.state, await consent(request.url, transport=sb.transport())


async def test_oauth_state_replay_expiry_mismatch_and_pkce_are_refused(
    make_hub: Callable[..., Connectors], make_store: Callable[..., ConnectionStore], tmp_path: Path, tally: Tally
) -> None:
    clock = Clock()
    sb = Sandbox(quiet_settings(), clock=clock)
    sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    key = os.urandom(32)
    url = f"sqlite:///{tmp_path / 'oauth.db'}"
    hub = make_hub(sb.transport(), store=make_store(url, key), clock=clock)
    other = make_hub(sb.transport(), store=make_store(url, key), clock=clock)  # a second worker
    refused: list[str] = []

    async def refused_with(reason: str, **kwargs: Any) -> None:
        refusal: OAuthFlowError | None = None
        try:
            await hub.complete_authorization(**kwargs)
        except OAuthFlowError as exc:
            refusal = exc
        assert refusal is not None, f"{reason}: accepted"
        assert "Bearer" not in str(refusal)
        refused.append(reason)

    # replay: the state works once
    state, callback = await _authorize(hub, sb, "tenant-replay")
    assert callback["state"] == state
    await hub.complete_authorization(code=callback["code"], state=state)
    await refused_with("replay", code=callback["code"], state=state)

    # four callbacks racing with one state, on two workers: exactly one wins
    state, callback = await _authorize(hub, sb, "tenant-race")
    outcomes: list[str] = []

    async def complete(worker: Connectors) -> None:
        try:
            await worker.complete_authorization(code=callback["code"], state=state)
        except OAuthFlowError:
            outcomes.append("refused")
        else:
            outcomes.append("connected")

    async with anyio.create_task_group() as tg:
        for worker in (hub, other, hub, other):
            tg.start_soon(complete, worker)
    assert sorted(outcomes) == ["connected", "refused", "refused", "refused"]

    # expiry: a state older than its TTL is refused, and its code is never exchanged
    exchanged = sb.state.counters["oauth.authorization_code"]
    state, callback = await _authorize(hub, sb, "tenant-expiry")
    clock.now += 601  # the default state TTL is 600 s
    await refused_with("expired", code=callback["code"], state=state)
    assert sb.state.counters["oauth.authorization_code"] == exchanged

    # forged and mismatched states
    await refused_with("forged", code=callback["code"], state="forged-" + "x" * 40)
    state_a, _callback_a = await _authorize(hub, sb, "tenant-a")
    state_b, callback_b = await _authorize(hub, sb, "tenant-b")
    # B's code with A's state: A's PKCE verifier does not match B's challenge (a code injection)
    await refused_with("code from another authorization (PKCE)", code=callback_b["code"], state=state_a)
    assert [c.owner_id for c in await hub.list(owner_id="tenant-a")] == []
    # B still completes with its own state: the injection did not burn its code
    conn_b = await hub.complete_authorization(code=callback_b["code"], state=state_b)
    assert conn_b.info.owner_id == "tenant-b"

    # the user denied access: refused, nothing stored
    request = await hub.authorize(
        "kustomer", "tenant-denied", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sb.base_url
    )
    assert request.url is not None and request.state is not None
    denied = await consent(request.url, approve=False, transport=sb.transport())
    await refused_with("denied", code=denied.get("code"), state=request.state, error=denied.get("error"))
    assert await hub.list(owner_id="tenant-denied") == []

    # PKCE verifier mismatch at the token endpoint itself
    state, callback = await _authorize(hub, sb, "tenant-pkce")
    cls = hub.connector_class("kustomer")
    client = cls.oauth_client(hub.settings, region=None, org=None, base_url=sb.base_url, override=None)
    async with httpx.AsyncClient(transport=sb.transport()) as http:
        with pytest.raises(OAuthFlowError):
            await exchange_code(http, client, code=callback["code"], redirect_uri=REDIRECT_URI, code_verifier="v" * 64)
    refused.append("PKCE verifier mismatch")

    # the store never holds a usable state, only its hash
    raw = b"".join([await p.read_bytes() async for p in anyio.Path(tmp_path).glob("oauth.db*")])  # db and WAL
    assert state.encode() not in raw and hash_state(state).encode() in raw

    tally.record("OAuth callbacks", tried=len(refused) + 5, rejected=len(refused) + outcomes.count("refused"))
    assert refused == [
        "replay",
        "expired",
        "forged",
        "code from another authorization (PKCE)",
        "denied",
        "PKCE verifier mismatch",
    ]


# -- secrets ------------------------------------------------------------------------------------------------------


class Flow:
    """Runs everything that handles a secret, keeps the secrets it saw, the errors it got, the objects it built."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {"client_secret": CLIENT_SECRET}
        self.errors: list[BaseException] = []
        self.objects: list[Any] = []

    def secret(self, name: str, value: str | None) -> None:
        if value:
            self.secrets[name] = value

    async def expect_error(self, call: Callable[[], Any]) -> None:
        try:
            await call()
        except ConnectorError as exc:
            self.errors.append(exc)
        else:
            raise AssertionError("the call was expected to fail")

    async def run(
        self, sb: Sandbox, base_url: str, store: ConnectionStore, key: bytes, logs: LogCapture | None = None
    ) -> None:
        self.secret("store_key", base64.urlsafe_b64encode(key).decode())
        self.secret("store_key_hex", key.hex())
        clock = Clock()
        clock.now = time.time()
        settings = Settings(refresh_margin=60, kustomer={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
        async with Connectors(settings=settings, store=store, clock=clock) as hub:
            # API key: connect, read, write, proxy, and what fails
            api_key = sb.mint_api_key(name="secrets")
            self.secret("api_key", api_key)
            conn = await hub.connect("kustomer", "tenant-secrets", api_key=api_key, base_url=base_url)
            contacts = conn.resources("genericContact")
            await contacts.list(limit=2)
            await contacts.create({"firstName": "Secret", "lastName": "Keeper", "email": "keeper@example.com"})
            await conn.proxy("GET", "/v1/users/current")
            forged = api_key[:-6] + ("A" * 6 if not api_key.endswith("A" * 6) else "B" * 6)
            self.secret("forged_key", forged)
            await self.expect_error(lambda: hub.connect("kustomer", "tenant-forged", api_key=forged, base_url=base_url))
            await self.expect_error(lambda: contacts.retrieve("0" * 24))
            await self.expect_error(lambda: conn.proxy("GET", f"http://{EVIL}/?token={api_key}"))
            narrow_key = sb.mint_api_key(roles=["org.permission.user.read"], name="narrow")
            self.secret("narrow_key", narrow_key)
            narrow = await hub.connect("kustomer", "tenant-narrow", api_key=narrow_key, base_url=base_url)
            await self.expect_error(lambda: narrow.resources("genericContact").list())
            # OAuth: consent (the test plays the browser), code exchange, a refresh
            request = await hub.authorize(
                "kustomer",
                "tenant-oauth",
                operations=["genericUser::list"],
                redirect_uri=REDIRECT_URI,
                base_url=base_url,
            )
            assert request.url is not None and request.state is not None
            if logs is not None:
                logs.paused = True  # the test plays the browser here: its requests are not the library's
            callback = await consent(request.url)
            if logs is not None:
                logs.paused = False
            self.secret("code", callback["code"])
            state = request.state
            self.secret("state", state)
            oauth = await hub.complete_authorization(code=callback["code"], state=state)
            first = oauth.session.record.secrets
            self.secret("access_token", first.access_token)
            self.secret("refresh_token", first.refresh_token)
            clock.now += 86_400 * 2  # expired: the next call refreshes
            await oauth.resources("genericUser").list(limit=1)
            second = oauth.session.record.secrets
            assert second.access_token != first.access_token
            self.secret("access_token_2", second.access_token)
            self.secret("refresh_token_2", second.refresh_token)
            await self.expect_error(lambda: hub.complete_authorization(code=callback["code"], state=state))
            self.objects += [
                hub,
                conn,
                narrow,
                oauth,
                conn.session,
                oauth.session,
                conn.session.auth,
                oauth.session.auth,
                oauth.session.token_manager,
                oauth.session.record,
                conn.info,
                oauth.info.to_dict(),
                oauth.session.record.secrets,
                hub.settings,
                store,
                store.secret_box,
                contacts,
                oauth.connector,
                conn.connector.http,
            ]

    def leaks(self, text: str, where: str) -> list[str]:
        return [f"{name} in {where}" for name, value in self.secrets.items() if value in text]


def _error_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc)]
    if isinstance(exc, ConnectorError):
        parts.append(repr(exc.to_dict()))
    parts.extend(repr(value) for value in vars(exc).values())
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        parts.append(_error_text(cause))
    return "\n".join(parts)


@pytest.mark.http
async def test_secrets_never_reach_logs_errors_reprs_cassettes_or_the_sqlite_file(tmp_path: Path, tally: Tally) -> None:
    key = os.urandom(32)
    db = tmp_path / "secrets.db"
    store = ConnectionStore(f"sqlite:///{db}", secret_box=SecretBox(key))
    cassette = tmp_path / "flow.yaml"
    flow = Flow()
    sandbox = Sandbox(quiet_settings(oauth_access_token_ttl_seconds=3600))
    sandbox.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    scrubber = Scrubber(origin="https://api.provider.test", secrets=[CLIENT_SECRET])
    try:
        recorder = vcr.VCR(record_mode="all").use_cassette(str(cassette), **vcr_config(scrubber))
        with running_sandbox(sandbox=sandbox) as (sb, base_url), capture_logs() as logs, recorder:
            await flow.run(sb, base_url, store, key, logs)
    finally:
        store.close()
    problems = flow.leaks(logs.text(), "logs")
    for exc in flow.errors:
        problems += flow.leaks(_error_text(exc), f"{type(exc).__name__}")
    for obj in flow.objects:
        problems += flow.leaks(repr(obj) + str(obj), f"repr of {type(obj).__name__}")
    problems += flow.leaks(await anyio.Path(cassette).read_text(encoding="utf-8"), "the cassette")
    problems += [str(leak) for leak in audit_cassette(cassette, secrets=list(flow.secrets.values()))]
    raw = b"".join([await p.read_bytes() async for p in anyio.Path(tmp_path).glob("secrets.db*")]).decode("latin-1")
    problems += flow.leaks(raw, "the SQLite file")
    committed = audit_cassettes(REPO / "cassettes") if (REPO / "cassettes").is_dir() else []
    problems += [f"committed cassette: {leak}" for leak in committed]
    checked = len(flow.secrets) * (4 + len(flow.errors) + len(flow.objects))
    tally.record("secret exposure checks", tried=checked, lost=len(problems))
    tally.note(
        f"secrets: {len(flow.secrets)} secrets x logs ({len(logs.lines)} lines at DEBUG), {len(flow.errors)} errors, "
        f"{len(flow.objects)} reprs, a cassette, the SQLite file and {len(committed)} leaks in committed cassettes"
    )
    assert len(flow.errors) == 5 and len(logs.lines) > 10
    assert problems == [], problems


@pytest.mark.postgres
async def test_secrets_are_never_stored_in_clear_in_postgresql(postgres_url: str, tally: Tally) -> None:
    key = os.urandom(32)
    store = ConnectionStore(postgres_url, secret_box=SecretBox(key))
    flow = Flow()
    settings = quiet_settings(oauth_access_token_ttl_seconds=3600)
    try:
        with running_sandbox(settings) as (sb, base_url):
            sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
            await flow.run(sb, base_url, store, key)
    finally:
        store.close()
    engine = create_engine(postgres_url)
    rows: list[str] = []
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            for name in tables:
                table = Table(name, MetaData(), autoload_with=conn)
                rows.extend(repr(tuple(row)) for row in conn.execute(select(table)))
    finally:
        engine.dispose()
    problems = flow.leaks("\n".join(rows), "PostgreSQL rows")
    tally.record("secret exposure checks", tried=len(flow.secrets) * len(tables), lost=len(problems))
    assert tables and rows
    assert problems == [], problems


# -- request size limits --------------------------------------------------------------------------------------------


async def test_bodies_over_kustomer_limit_are_refused_with_a_typed_error(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings(customers=0))
    conn = await connect_key(make_hub(sb.transport()), sb)
    big = "x" * (sb.settings.max_body_bytes + 1)
    with pytest.raises(PayloadTooLargeError) as caught:
        await conn.resources("genericContact").create({"firstName": "Big", "customFields": {"notesTxt": big}})
    assert "413" in str(caught.value) and big not in str(caught.value)
    response = await conn.proxy(
        "POST",
        "/v1/customers",
        content=b"{" + b" " * (sb.settings.max_body_bytes + 10) + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    # in a push, the big row is rejected with the reason, the others land
    rows: list[dict[str, Any]] = [{"firstName": f"S{i}", "externalId": f"size-{i}"} for i in range(5)]
    rows.insert(2, {"firstName": "Huge", "externalId": "size-huge", "customFields": {"notesTxt": "y" * 150_000}})
    report = await conn.sync("genericContact").push(
        rows, match="externalId", options=PushOptions(poll_interval=0.001, ambiguous_delay=0.0)
    )
    landed = {str(r.attrs.get("externalId")) for r in sb.state.customers}
    rejected = report.rejected_rows()
    tally.record(
        "request size limits",
        tried=3 + len(rows),
        rejected=2 + len(rejected),
        lost=len({f"size-{i}" for i in range(5)} - landed) + ("size-huge" in landed),
    )
    assert [r.index for r in rejected] == [2] and rejected[0].reason
    assert landed == {f"size-{i}" for i in range(5)}
