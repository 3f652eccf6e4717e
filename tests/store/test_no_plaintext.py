"""Secrets never appear in clear: not in any stored row, log line, repr, str or exception."""

from __future__ import annotations

import base64
import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update

from connectors.errors import ConfigurationError
from connectors.runtime.secrets import SecretBox, Secrets
from connectors.runtime.store import ConnectionStore, StoreConflictError, _aad, _connections

API_KEY = "SEED-apikey-4f9c1e77d2"
ACCESS_TOKEN = "SEED-access-8b2d0a55e1"
REFRESH_TOKEN = "SEED-refresh-1c7e93f0aa"
CLIENT_SECRET = "SEED-clientsecret-6d41b8"
WEBHOOK_TOKEN = "SEED-webhook-93a0f1c2"
PKCE_VERIFIER = "SEED-pkce-verifier-7aa0c3"
NEW_ACCESS = "SEED-access2-55e0b7d913"
NEW_REFRESH = "SEED-refresh2-0f3c8e1d"
SEEDS = (
    API_KEY,
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    CLIENT_SECRET,
    WEBHOOK_TOKEN,
    PKCE_VERIFIER,
    NEW_ACCESS,
    NEW_REFRESH,
)


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
    ]


def assert_clean(where: str, haystack: str) -> None:
    for secret in SEEDS:
        for form in encodings(secret):
            assert form not in haystack, f"{secret!r} leaked into {where}"


def all_rows(store: ConnectionStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database, found through the catalog (not our table list)."""
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


def save_after_a_bypassing_write(store: ConnectionStore, connection_id: str) -> None:
    with store.refresh_lock(connection_id) as locked:
        locked._conn.execute(update(_connections).where(_connections.c.id == connection_id).values(token_version=99))
        locked.save_tokens(Secrets(api_key=API_KEY), access_expires_at=None)


def test_secrets_never_in_clear(
    store: ConnectionStore,
    box: SecretBox,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    # Exercise every writing path with echo on, so SQL logging is covered too.
    store.engine.echo = True
    seen: list[str] = []
    errors: list[BaseException] = []

    record = store.upsert_connection(
        connector_id="kustomer",
        owner_id="tenant-leak",
        auth_type="oauth2",
        status="active",
        region="us",
        org="acme",
        base_url=None,
        operations=("genericContact::list",),
        granted_roles=("org.permission.customer.read",),
        settings={"mapping": "x"},
        metadata={"orgId": "org-1"},
        secrets=Secrets(
            access_token=ACCESS_TOKEN,
            refresh_token=REFRESH_TOKEN,
            token_type="Bearer",
            extra={"client_secret": CLIENT_SECRET},
        ),
        access_expires_at=123.0,
    )
    api = store.upsert_connection(
        connector_id="kustomer",
        owner_id="tenant-leak",
        label="api",
        auth_type="api_key",
        status="active",
        region="us",
        org=None,
        base_url=None,
        operations=(),
        granted_roles=None,
        settings={},
        metadata={},
        secrets=Secrets(api_key=API_KEY),
        access_expires_at=None,
    )
    store.put_secret(record.id, "webhook_signing", WEBHOOK_TOKEN)
    store.save_oauth_state("state-hash", {"code_verifier": PKCE_VERIFIER}, expires_at=9e9)
    store.save_oauth_state("state-hash-2", {"code_verifier": PKCE_VERIFIER}, expires_at=9e9)
    with store.refresh_lock(record.id) as locked:
        seen.append(repr(locked))
        seen.append(repr(locked.record))
        locked.save_tokens(
            Secrets(
                access_token=NEW_ACCESS,
                refresh_token=NEW_REFRESH,
                token_type="Bearer",
                extra={"client_secret": CLIENT_SECRET},
            ),
            access_expires_at=456.0,
        )
    assert store.consume_oauth_state("state-hash", now=1.0) == {"code_verifier": PKCE_VERIFIER}
    store.update(record.id, status="active", metadata={"orgId": "org-1", "user": "u"})

    # Failure paths.
    with pytest.raises(TypeError) as type_error:
        store.update(api.id, secrets=Secrets(api_key=API_KEY))  # type: ignore[call-arg]
    errors.append(type_error.value)
    with pytest.raises(StoreConflictError) as conflict:
        save_after_a_bypassing_write(store, api.id)
    errors.append(conflict.value)
    stored_token = all_rows(store)["connectors_secrets"][0][2]
    with pytest.raises(ConfigurationError) as wrong_key:
        SecretBox(bytes(32)).decrypt(stored_token, aad=_aad("secret", record.id, "webhook_signing"))
    errors.append(wrong_key.value)

    # Reads.
    for found in (
        store.get("kustomer", "tenant-leak"),
        store.get("kustomer", "tenant-leak", "api"),
        store.get_by_id(record.id),
        *store.list(owner_id="tenant-leak"),
    ):
        assert found is not None
        seen.extend([repr(found), str(found), repr(found.secrets), f"{found}"])
    assert store.get_secret(record.id, "webhook_signing") == WEBHOOK_TOKEN
    seen.extend([repr(store), repr(box), str(store.list())])
    store.engine.echo = False

    # 1. stored rows: every table, every column, through raw SQL
    rows = all_rows(store)
    assert {"connectors_connections", "connectors_secrets", "connectors_oauth_states"} <= set(rows)
    assert rows["connectors_connections"]
    assert_clean("the database rows", repr(rows))
    # ... and the raw files of a SQLite database (main file, WAL, shm)
    if store.dialect == "sqlite" and store.engine.url.database not in (None, "", ":memory:"):
        db = Path(store.engine.url.database or "")
        for path in db.parent.glob(db.name + "*"):
            assert_clean(str(path), path.read_bytes().decode("latin-1"))

    # 2. logs (caplog and the echo handler's stdout)
    captured = capsys.readouterr()
    assert "INSERT INTO connectors_connections" in captured.out + caplog.text  # echo really was on
    assert_clean("the logs", caplog.text + captured.out + captured.err)

    # 3. reprs and str of records, stores, boxes
    assert_clean("reprs", "\n".join(seen))

    # 4. exceptions: messages and full tracebacks
    for exc in errors:
        assert_clean(f"{type(exc).__name__}", str(exc) + repr(exc) + "".join(traceback.format_exception(exc)))
