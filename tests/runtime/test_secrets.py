"""No secret in any log line, repr, exception or stored row in clear, through the whole runtime.

Known secrets are seeded (an API key, an OAuth client secret) or captured as they are issued (access and
refresh tokens, the PKCE verifier, the authorization code). Then connect, authorize, refresh (proactive and
reactive), fail in every way we can, with every logger at DEBUG (httpx, httpcore and SQLAlchemy included),
and scan the captured logs, the reprs and messages of everything we touched, and every row of every table of
the store (raw SQL, found through the catalog) plus the SQLite files themselves.
"""

from __future__ import annotations

import base64
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from connectors import Connection, Connectors, Settings
from connectors.errors import ConnectorError, InsufficientPermissionsError, NeedsReauthError, NotFoundError
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime import connection as connection_module
from connectors.runtime.auth import PKCEPair, new_pkce_pair
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

pytestmark = pytest.mark.anyio

CLIENT_ID = "leak-test-client"
CLIENT_SECRET = "SEED-client-secret-5e1f77a0"
REDIRECT_URI = "https://app.example.com/oauth/callback"


class Secrets:
    """The plain values to look for, with the encodings a careless log might use."""

    def __init__(self) -> None:
        self.values: set[str] = {CLIENT_SECRET}

    def add(self, value: str | None) -> None:
        if value:
            self.values.add(value)
            if value.count(".") == 2:  # a JWT: its signature alone is secret too
                self.values.add(value.rsplit(".", 1)[1])

    def forms(self) -> Iterator[tuple[str, str]]:
        for value in self.values:
            raw = value.encode()
            for form in (
                value,
                base64.b64encode(raw).decode().rstrip("="),
                base64.urlsafe_b64encode(raw).decode().rstrip("="),
                raw.hex(),
            ):
                yield value, form

    def assert_absent(self, where: str, haystack: str | bytes) -> None:
        text_ = haystack.decode("latin-1") if isinstance(haystack, bytes) else haystack
        for value, form in self.forms():
            if form in text_:  # no assert: its message would print the secret into the test report
                at = text_.index(form)
                pytest.fail(f"secret {value[:4]}… leaked into {where} (at offset {at})", pytrace=False)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConnectionStore]:
    box = SecretBox(os.urandom(32))
    url = f"sqlite:///{tmp_path / 'leak.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = ConnectionStore(url, secret_box=box)
    yield store
    store.close()


def _all_rows(store: ConnectionStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            tables = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars().all()
        else:
            tables = (
                conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
                .scalars()
                .all()
            )
        return {table: [tuple(row) for row in conn.execute(text(f'SELECT * FROM "{table}"'))] for table in tables}


async def test_no_secret_anywhere(
    store: ConnectionStore,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    run_consent_fn: Callable[..., Any],
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sqlalchemy.engine", "connectors", "anyio"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    secrets = Secrets()
    touched: list[Any] = []
    errors: list[BaseException] = []

    pairs: list[PKCEPair] = []

    def recording_pkce() -> PKCEPair:
        pair = new_pkce_pair()
        pairs.append(pair)
        return pair

    monkeypatch.setattr(connection_module, "new_pkce_pair", recording_pkce)

    now = [1_800_000_000.0]
    sb = Sandbox(
        SandboxSettings(customers=5, companies=1, users=2, teams=0, oauth_access_token_ttl_seconds=600),
        clock=lambda: now[0],
    )
    sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    settings = Settings(refresh_margin=60, kustomer={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    hub = Connectors(settings=settings, store=store, transport=sb.transport(), clock=lambda: now[0])
    touched += [hub, settings, settings.kustomer, store]

    async def expect(exc_type: type[BaseException], coro: Any) -> None:
        with pytest.raises(exc_type) as caught:
            await coro
        errors.append(caught.value)

    try:
        # API keys: a good one, a refused one, one for the wrong region
        api_key = sb.mint_api_key(roles=["org.permission.user.read"], name="leak key")
        secrets.add(api_key)
        api_conn = await hub.connect("kustomer", "leak-api", api_key=api_key, base_url=sb.base_url)
        touched += [
            api_conn,
            api_conn.info,
            api_conn.info.to_dict(),
            api_conn.session,
            api_conn.session.record,
            api_conn.connector,
        ]
        await api_conn.resources("genericUser").list(limit=1)
        await expect(InsufficientPermissionsError, api_conn.resources("genericContact").create({"firstName": "x"}))
        await expect(NotFoundError, api_conn.resources("genericUser").retrieve("000000000000000000000000"))
        await expect(ConnectorError, api_conn.proxy("GET", "https://evil.example.com/v1/users"))
        denied = await api_conn.proxy("GET", "/v1/customers")
        touched.append(denied.text)
        bad_key = api_key[:-4] + "AAAA"
        secrets.add(bad_key)
        await expect(ConnectorError, hub.connect("kustomer", "leak-bad", api_key=bad_key, base_url=sb.base_url))
        wrong_region = sb.mint_api_key(region="eu")
        secrets.add(wrong_region)
        await expect(ConnectorError, hub.connect("kustomer", "leak-region", api_key=wrong_region, base_url=sb.base_url))

        # OAuth: authorize, consent, complete
        request = await hub.authorize(
            "kustomer", "leak-oauth", operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=sb.base_url
        )
        touched.append(request)
        for pair in pairs:
            secrets.add(pair.verifier)
        redirect = await run_consent_fn(request.url, transport=sb.transport())
        secrets.add(redirect.code)
        conn: Connection = await hub.complete_authorization(code=redirect.code, state=redirect.state)
        record = conn.session.record
        secrets.add(record.secrets.access_token)
        secrets.add(record.secrets.refresh_token)
        touched += [conn, conn.info.to_dict(), record, conn.session.token_manager, conn.session.auth]

        # proactive refresh, then a reactive one (the provider revokes the access token early)
        now[0] += 560
        await conn.resources("genericUser").list(limit=1)
        secrets.add(conn.session.record.secrets.access_token)
        secrets.add(conn.session.record.secrets.refresh_token)
        sb.revoke_token(conn.session.record.secrets.access_token or "")
        await conn.resources("genericUser").list(limit=1)
        secrets.add(conn.session.record.secrets.access_token)
        secrets.add(conn.session.record.secrets.refresh_token)
        for raw in sb.state.oauth_refresh_tokens:  # every refresh token ever issued
            secrets.add(raw)
        touched += [conn.session.record, conn.session.token_manager]

        # a reused authorization code, a refresh that fails for good
        await expect(ConnectorError, hub.complete_authorization(code=redirect.code, state=redirect.state))
        for grant in sb.state.oauth_grants.values():
            sb.oauth.revoke_grant(grant, "uninstalled")
        now[0] += 600
        await expect(NeedsReauthError, conn.resources("genericUser").list(limit=1))
        touched.append(conn.session.record)
    finally:
        await hub.aclose()

    assert len(secrets.values) >= 10
    # logs: formatted text, messages and raw arguments
    secrets.assert_absent("captured logs", caplog.text)
    for log in caplog.records:
        secrets.assert_absent(f"log record of {log.name}", f"{log.getMessage()} {log.args!r} {log.exc_text or ''}")
    # reprs and strs
    for obj in touched:
        secrets.assert_absent(f"repr of {type(obj).__name__}", repr(obj))
        secrets.assert_absent(f"str of {type(obj).__name__}", str(obj))
    # exceptions, their causes, bodies, dicts and tracebacks
    assert len(errors) == 7
    for err in errors:
        chain: BaseException | None = err
        while chain is not None:
            secrets.assert_absent(f"{type(chain).__name__}", f"{chain} {chain!r} {getattr(chain, '__dict__', '')}")
            if isinstance(chain, ConnectorError):
                secrets.assert_absent(f"{type(chain).__name__}.to_dict", repr(chain.to_dict()))
            chain = chain.__cause__ or chain.__context__
        secrets.assert_absent("traceback", "".join(traceback.format_exception(err)))
    # every table, found through the catalog
    rows = _all_rows(store)
    assert "connectors_connections" in rows
    for table, content in rows.items():
        secrets.assert_absent(f"table {table}", repr(content))
    # and the database files themselves (WAL included)
    if store.dialect == "sqlite":
        database = store.engine.url.database
        assert database is not None
        for path in Path(database).parent.glob(Path(database).name + "*"):
            secrets.assert_absent(f"file {path.name}", path.read_bytes())
