"""ConnectionStore on SQLite (memory and file) and PostgreSQL: every method, locking and migrations."""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text, update

from connectors.errors import ConfigurationError, NotConnectedError, OAuthFlowError
from connectors.runtime.secrets import SecretBox, Secrets
from connectors.runtime.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ConnectionRecord,
    ConnectionStore,
    StoreConflictError,
    _connections,
)


def connect(store: ConnectionStore, owner: str = "tenant-1", **overrides: Any) -> ConnectionRecord:
    kwargs: dict[str, Any] = {
        "connector_id": "kustomer",
        "owner_id": owner,
        "auth_type": "oauth2",
        "status": "active",
        "region": "us",
        "org": "acme",
        "base_url": None,
        "operations": ("genericContact::list", "genericContact::create"),
        "granted_roles": ("org.permission.customer.read",),
        "settings": {"mappings": {"genericContact": {"nickname": "nicknameStr"}}},
        "metadata": {"orgId": "org-1", "userId": "user-1"},
        "secrets": Secrets(access_token="at-1", refresh_token="rt-1", token_type="Bearer"),
        "access_expires_at": 1_000.0,
    }
    kwargs.update(overrides)
    return store.upsert_connection(**kwargs)


# ------------------------------------------------------------------------------------------ connections


def test_upsert_get_and_list(store: ConnectionStore) -> None:
    record = connect(store)
    assert len(record.id) == 32
    assert record.token_version == 1
    assert record.label == ""
    assert record.created_at.tzinfo is UTC
    assert store.get("kustomer", "tenant-1") == record
    assert store.get_by_id(record.id) == record
    assert store.get("kustomer", "tenant-2") is None
    assert store.get("kustomer", "tenant-1", "other") is None
    assert store.get_by_id("0" * 32) is None

    fetched = store.get_by_id(record.id)
    assert fetched is not None
    assert fetched.secrets.access_token == "at-1"
    assert fetched.operations == ("genericContact::list", "genericContact::create")
    assert fetched.granted_roles == ("org.permission.customer.read",)
    assert fetched.settings == {"mappings": {"genericContact": {"nickname": "nicknameStr"}}}
    assert fetched.metadata == {"orgId": "org-1", "userId": "user-1"}
    assert fetched.access_expires_at == 1_000.0
    assert (fetched.region, fetched.org, fetched.base_url) == ("us", "acme", None)


def test_labels_allow_several_connections_per_owner(store: ConnectionStore) -> None:
    main = connect(store)
    sandbox = connect(store, label="sandbox", secrets=Secrets(api_key="ak-sandbox"), auth_type="api_key")
    other_owner = connect(store, owner="tenant-2")
    assert len({main.id, sandbox.id, other_owner.id}) == 3
    labelled = store.get("kustomer", "tenant-1", "sandbox")
    assert labelled is not None
    assert labelled.secrets.api_key == "ak-sandbox"
    assert labelled.auth_type == "api_key"
    assert [r.id for r in store.list()] == [main.id, sandbox.id, other_owner.id]
    assert [r.id for r in store.list(owner_id="tenant-1")] == [main.id, sandbox.id]
    assert [r.id for r in store.list(owner_id="tenant-2", connector_id="kustomer")] == [other_owner.id]
    assert store.list(connector_id="other") == []


def test_reconnect_replaces_and_bumps_token_version(store: ConnectionStore) -> None:
    first = connect(store)
    again = connect(
        store,
        status="pending",
        secrets=Secrets(api_key="ak-new"),
        auth_type="api_key",
        granted_roles=None,
        settings={},
        metadata={},
    )
    assert again.id == first.id
    assert again.created_at == first.created_at
    assert again.token_version == first.token_version + 1
    stored = store.get_by_id(first.id)
    assert stored == again
    assert stored is not None
    assert stored.secrets == Secrets(api_key="ak-new")
    assert stored.granted_roles is None
    assert stored.updated_at >= first.updated_at
    assert len(store.list()) == 1


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"auth_type": "basic"}, ValueError),
        ({"status": "broken"}, ValueError),
        ({"secrets": {"api_key": "x"}}, TypeError),
        ({"operations": "genericContact::list"}, TypeError),
        ({"settings": {"when": datetime.now(UTC)}}, TypeError),
        ({"owner_id": ""}, ValueError),
    ],
)
def test_upsert_validates(store: ConnectionStore, overrides: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        connect(store, **overrides)
    assert store.list() == []


def test_update(store: ConnectionStore) -> None:
    record = connect(store)
    updated = store.update(
        record.id,
        status="needs_reauth",
        status_reason="refresh token revoked",
        granted_roles=["a", "b"],
        operations=["genericCompany::list"],
        settings={"x": 1},
        metadata={"orgId": "org-2"},
        region="eu",
        org="acme-eu",
        base_url="https://acme.api.kustomerapp.com",
    )
    assert updated.status == "needs_reauth"
    assert updated.status_reason == "refresh token revoked"
    assert updated.granted_roles == ("a", "b")
    assert updated.operations == ("genericCompany::list",)
    assert updated.settings == {"x": 1}
    assert updated.metadata == {"orgId": "org-2"}
    assert (updated.region, updated.org, updated.base_url) == (
        "eu",
        "acme-eu",
        "https://acme.api.kustomerapp.com",
    )
    assert updated.token_version == record.token_version
    assert updated.secrets == record.secrets
    assert store.get_by_id(record.id) == updated
    assert store.update(record.id, granted_roles=None).granted_roles is None


def test_update_rejects_unknown_and_secret_fields(store: ConnectionStore) -> None:
    record = connect(store)
    with pytest.raises(TypeError, match="colour"):
        store.update(record.id, colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"secrets.*refresh_lock"):
        store.update(record.id, secrets=Secrets(api_key="x"))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="token_version"):
        store.update(record.id, token_version=9)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="status"):
        store.update(record.id, status="gone")  # type: ignore[arg-type]
    with pytest.raises(NotConnectedError):
        store.update("f" * 32, status="active")
    assert store.get_by_id(record.id) == record


def test_delete(store: ConnectionStore) -> None:
    record = connect(store)
    assert store.delete(record.id) is True
    assert store.delete(record.id) is False
    assert store.get_by_id(record.id) is None
    assert store.list() == []


# ------------------------------------------------------------------------------------------ refresh lock


def test_refresh_lock_saves_tokens_with_cas(store: ConnectionStore) -> None:
    record = connect(store)
    with store.refresh_lock(record.id) as locked:
        assert locked.record == record
        new = Secrets(access_token="at-2", refresh_token="rt-2", token_type="Bearer")
        saved = locked.save_tokens(new, access_expires_at=2_000.0, granted_roles=("r1",))
        assert saved.token_version == record.token_version + 1
        assert locked.record == saved
        again = locked.save_tokens(Secrets(access_token="at-3"), access_expires_at=None)
        assert again.token_version == record.token_version + 2
        assert again.granted_roles == ("r1",)  # None keeps the stored roles
    stored = store.get_by_id(record.id)
    assert stored == again
    assert stored is not None
    assert stored.secrets == Secrets(access_token="at-3")
    assert stored.access_expires_at is None
    with pytest.raises(RuntimeError, match="released"):
        locked.save_tokens(new, access_expires_at=None)


def test_refresh_lock_rolls_back_on_error(store: ConnectionStore) -> None:
    record = connect(store)

    def write_then_fail() -> None:
        with store.refresh_lock(record.id) as locked:
            locked.save_tokens(Secrets(access_token="lost"), access_expires_at=None)
            locked.mark_needs_reauth("nope")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        write_then_fail()
    assert store.get_by_id(record.id) == record


def test_mark_needs_reauth(store: ConnectionStore) -> None:
    record = connect(store)
    with store.refresh_lock(record.id) as locked:
        marked = locked.mark_needs_reauth("invalid_grant")
    assert marked.status == "needs_reauth"
    assert marked.status_reason == "invalid_grant"
    assert marked.token_version == record.token_version
    assert store.get_by_id(record.id) == marked


def test_refresh_lock_unknown_connection(store: ConnectionStore) -> None:
    with pytest.raises(NotConnectedError), store.refresh_lock("e" * 32):
        pass  # pragma: no cover


def test_cas_failure_is_a_clear_error(store: ConnectionStore) -> None:
    record = connect(store)

    def bypass_then_save() -> None:
        with store.refresh_lock(record.id) as locked:
            # A writer that bypassed the lock (simulated on the locked transaction itself).
            locked._conn.execute(update(_connections).where(_connections.c.id == record.id).values(token_version=7))
            locked.save_tokens(Secrets(access_token="at-x"), access_expires_at=None)

    with pytest.raises(StoreConflictError, match="token_version 1 is no longer current"):
        bypass_then_save()
    assert store.get_by_id(record.id) == record  # rolled back


def test_refresh_lock_entered_and_exited_in_different_threads(store: ConnectionStore) -> None:
    record = connect(store)
    cm = store.refresh_lock(record.id)
    holder: dict[str, Any] = {}
    enter = threading.Thread(target=lambda: holder.setdefault("locked", cm.__enter__()))
    enter.start()
    enter.join()
    locked = holder["locked"]

    def save_and_exit() -> None:
        locked.save_tokens(Secrets(access_token="from-thread-2"), access_expires_at=5.0)
        cm.__exit__(None, None, None)

    leave = threading.Thread(target=save_and_exit)
    leave.start()
    leave.join()
    stored = store.get_by_id(record.id)
    assert stored is not None
    assert stored.secrets.access_token == "from-thread-2"
    assert stored.token_version == 2


@pytest.mark.anyio
async def test_refresh_lock_through_anyio_worker_threads(store: ConnectionStore) -> None:
    record = connect(store)

    async def refresh_once(n: int) -> None:
        cm = store.refresh_lock(record.id)
        locked = await anyio.to_thread.run_sync(cm.__enter__)
        try:
            current = locked.record.secrets.extra.get("n", "0")
            await anyio.sleep(0.001)
            await anyio.to_thread.run_sync(
                lambda: locked.save_tokens(Secrets(extra={"n": str(int(current) + 1)}), access_expires_at=None)
            )
        finally:
            await anyio.to_thread.run_sync(cm.__exit__, None, None, None)

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(refresh_once, n)
    stored = store.get_by_id(record.id)
    assert stored is not None
    assert stored.token_version == 1 + 5
    assert stored.secrets.extra == {"n": "5"}


def test_refresh_lock_threads_are_mutually_exclusive(store: ConnectionStore) -> None:
    record = connect(store, secrets=Secrets(extra={"n": "0"}))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                with store.refresh_lock(record.id) as locked:
                    n = int(locked.record.secrets.extra["n"])
                    time.sleep(0.001)
                    locked.save_tokens(Secrets(extra={"n": str(n + 1)}), access_expires_at=None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = store.get_by_id(record.id)
    assert stored is not None
    assert stored.secrets.extra == {"n": "20"}
    assert stored.token_version == 1 + 20


def test_lock_wait_times_out_as_store_conflict(shared_url: str, box: SecretBox) -> None:
    with (
        ConnectionStore(shared_url, secret_box=box) as holder,
        ConnectionStore(shared_url, secret_box=box, lock_timeout=0.2) as waiter,
    ):
        record = connect(holder)
        with holder.refresh_lock(record.id):
            started = time.monotonic()
            with pytest.raises(StoreConflictError, match="locked by another"):
                waiter.update(record.id, status="disabled")
            assert time.monotonic() - started < 5
            with pytest.raises(StoreConflictError), waiter.refresh_lock(record.id):
                pass  # pragma: no cover
            assert waiter.get_by_id(record.id) == record  # readers are not blocked
        assert waiter.update(record.id, status="disabled").status == "disabled"


@pytest.mark.postgres
def test_postgres_locks_only_the_row(postgres_url: str, box: SecretBox) -> None:
    with (
        ConnectionStore(postgres_url, secret_box=box) as holder,
        ConnectionStore(postgres_url, secret_box=box, lock_timeout=0.5) as other,
    ):
        first = connect(holder, owner="row-lock-a")
        second = connect(holder, owner="row-lock-b")
        with holder.refresh_lock(first.id), other.refresh_lock(second.id) as locked:
            locked.save_tokens(Secrets(access_token="b-2"), access_expires_at=None)
        assert other.delete(first.id)
        assert other.delete(second.id)


def test_memory_store_serialises_threads(box: SecretBox) -> None:
    with ConnectionStore("sqlite:///:memory:", secret_box=box, lock_timeout=0.2) as store:
        record = connect(store)
        with store.refresh_lock(record.id):
            result: list[BaseException] = []
            thread = threading.Thread(target=lambda: _capture(result, lambda: store.get_by_id(record.id)))
            thread.start()
            thread.join()
            assert len(result) == 1
            assert isinstance(result[0], StoreConflictError)
        assert store.get_by_id(record.id) == record


def _capture(into: list[BaseException], fn: Any) -> None:
    try:
        fn()
    except BaseException as exc:
        into.append(exc)


# ------------------------------------------------------------------------------------------ oauth state


def test_oauth_state_is_single_use(store: ConnectionStore) -> None:
    payload = {"owner_id": "tenant-1", "code_verifier": "pkce-verifier-123", "redirect": "/done"}
    store.save_oauth_state("hash-1", payload, expires_at=100.0)
    with pytest.raises(OAuthFlowError):
        store.save_oauth_state("hash-1", payload, expires_at=100.0)
    assert store.consume_oauth_state("hash-1", now=50.0) == payload
    assert store.consume_oauth_state("hash-1", now=50.0) is None  # replay
    assert store.consume_oauth_state("never-saved", now=50.0) is None


def test_oauth_state_expiry_and_purge(store: ConnectionStore) -> None:
    store.save_oauth_state("old-1", {"a": 1}, expires_at=10.0)
    store.save_oauth_state("old-2", {"a": 2}, expires_at=20.0)
    store.save_oauth_state("fresh", {"a": 3}, expires_at=1_000.0)
    assert store.consume_oauth_state("old-1", now=30.0) is None  # expired
    with store.engine.connect() as conn:
        remaining = conn.execute(text("SELECT state_hash FROM connectors_oauth_states")).scalars().all()
    assert remaining == ["fresh"]  # old-2 purged on the way
    assert store.consume_oauth_state("fresh", now=30.0) == {"a": 3}


def test_oauth_state_concurrent_consumers(shared_url: str, box: SecretBox) -> None:
    with ConnectionStore(shared_url, secret_box=box) as store:
        store.save_oauth_state("race", {"ok": True}, expires_at=time.time() + 60)
        barrier = threading.Barrier(6)
        results: list[dict[str, Any] | None] = []

        def consume() -> None:
            barrier.wait()
            results.append(store.consume_oauth_state("race", now=time.time()))

        threads = [threading.Thread(target=consume) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results, key=lambda r: r is None) == [{"ok": True}] + [None] * 5


# ------------------------------------------------------------------------------------------ webhook dedupe


def test_seen_once(store: ConnectionStore) -> None:
    assert store.seen_once("hooks:a", "evt-1", now=100.0, retention_seconds=60) is True
    assert store.seen_once("hooks:a", "evt-1", now=101.0, retention_seconds=60) is False
    assert store.seen_once("hooks:b", "evt-1", now=101.0, retention_seconds=60) is True  # scopes are separate
    assert store.seen_once("hooks:a", "evt-2", now=102.0, retention_seconds=60) is True
    # After the retention a key is new again.
    assert store.seen_once("hooks:a", "evt-1", now=200.0, retention_seconds=60) is True
    assert store.seen_once("hooks:a", "evt-1", now=201.0, retention_seconds=60) is False


def test_seen_once_purges_old_entries(store: ConnectionStore) -> None:
    for i in range(20):
        store.seen_once("hooks:p", f"evt-{i}", now=float(i), retention_seconds=5)
    with store.engine.connect() as conn:
        count = conn.execute(text("SELECT COUNT(*) FROM connectors_seen_events WHERE scope = 'hooks:p'")).scalar_one()
    assert count <= 7  # bounded by the retention (plus the amortised purge interval)


def test_seen_once_threads(shared_url: str, box: SecretBox) -> None:
    with ConnectionStore(shared_url, secret_box=box) as store:
        barrier = threading.Barrier(8)
        results: list[bool] = []

        def race() -> None:
            barrier.wait()
            results.append(store.seen_once("hooks:t", "evt-race", now=time.time(), retention_seconds=3600))

        threads = [threading.Thread(target=race) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_seen_once_threads_memory(box: SecretBox) -> None:
    with ConnectionStore("sqlite:///:memory:", secret_box=box) as store:
        results: list[bool] = []
        threads = [
            threading.Thread(target=lambda: results.append(store.seen_once("s", "k", now=1.0, retention_seconds=10)))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == [False] * 7 + [True]


# ------------------------------------------------------------------------------------------ watermarks


def test_watermarks(store: ConnectionStore) -> None:
    assert store.get_watermark("sync:contacts") is None
    assert store.set_watermark("sync:contacts", {"updatedAt": "2024-01-01T00:00:00Z"}) is True
    assert store.get_watermark("sync:contacts") == {"updatedAt": "2024-01-01T00:00:00Z"}
    assert store.set_watermark("sync:contacts", {"updatedAt": "2024-02-01T00:00:00Z", "page": 2}) is True
    assert store.get_watermark("sync:contacts") == {"updatedAt": "2024-02-01T00:00:00Z", "page": 2}


def test_watermark_compare_and_swap(store: ConnectionStore) -> None:
    assert store.set_watermark("poll", {"cursor": 1}, expected=None) is True
    assert store.set_watermark("poll", {"cursor": 9}, expected=None) is False  # already exists
    assert store.set_watermark("poll", {"cursor": 2}, expected={"cursor": 5}) is False
    assert store.get_watermark("poll") == {"cursor": 1}
    # key order does not matter: values are compared canonically
    assert store.set_watermark("poll", {"cursor": 2, "b": 1}, expected={"cursor": 1}) is True
    assert store.set_watermark("poll", {"cursor": 3}, expected={"b": 1, "cursor": 2}) is True
    assert store.get_watermark("poll") == {"cursor": 3}
    assert store.set_watermark("missing", {"x": 1}, expected={"x": 0}) is False
    assert store.get_watermark("missing") is None


# ------------------------------------------------------------------------------------------ other secrets


def test_generic_secrets(store: ConnectionStore) -> None:
    assert store.get_secret("conn-1", "webhook_token") is None
    store.put_secret("conn-1", "webhook_token", "whsec-1")
    store.put_secret("conn-2", "webhook_token", "whsec-2")
    assert store.get_secret("conn-1", "webhook_token") == "whsec-1"
    store.put_secret("conn-1", "webhook_token", "whsec-rotated")
    assert store.get_secret("conn-1", "webhook_token") == "whsec-rotated"
    assert store.delete_secret("conn-1", "webhook_token") is True
    assert store.delete_secret("conn-1", "webhook_token") is False
    assert store.get_secret("conn-1", "webhook_token") is None
    assert store.get_secret("conn-2", "webhook_token") == "whsec-2"


# ------------------------------------------------------------------------------------- encryption at rest


def test_ciphertext_swapped_between_rows_does_not_decrypt(store: ConnectionStore) -> None:
    victim = connect(store, owner="victim", secrets=Secrets(access_token="victim-token"))
    attacker = connect(store, owner="attacker", secrets=Secrets(access_token="attacker-token"))
    with store.engine.begin() as conn:
        token = conn.execute(
            text("SELECT secrets_ciphertext FROM connectors_connections WHERE id = :id"), {"id": victim.id}
        ).scalar_one()
        conn.execute(
            text("UPDATE connectors_connections SET secrets_ciphertext = :t WHERE id = :id"),
            {"t": token, "id": attacker.id},
        )
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        store.get_by_id(attacker.id)

    store.put_secret("a", "token", "secret-a")
    store.put_secret("b", "token", "secret-b")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE connectors_secrets SET ciphertext = "
                "(SELECT ciphertext FROM connectors_secrets WHERE scope = 'a') WHERE scope = 'b'"
            )
        )
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        store.get_secret("b", "token")


def test_wrong_key_and_rotation(shared_url: str) -> None:
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    with ConnectionStore(shared_url, secret_box=SecretBox(old_key)) as store:
        record = connect(store)
        store.put_secret("s", "n", "generic-secret")
        store.save_oauth_state("h", {"v": "verifier"}, expires_at=time.time() + 60)
    with (
        ConnectionStore(shared_url, secret_box=SecretBox(new_key)) as store,
        pytest.raises(ConfigurationError, match="wrong CONNECTORS_SECRET_KEY"),
    ):
        store.get_by_id(record.id)
    with ConnectionStore(shared_url, secret_box=SecretBox(new_key, old_keys=[old_key])) as store:
        assert store.get_by_id(record.id) == record
        assert store.reencrypt_all() == 3
        assert store.reencrypt_all() == 0
    with ConnectionStore(shared_url, secret_box=SecretBox(new_key)) as store:
        assert store.get_by_id(record.id) == record
        assert store.get_secret("s", "n") == "generic-secret"
        assert store.consume_oauth_state("h", now=time.time()) == {"v": "verifier"}


# ------------------------------------------------------------------------------------------ schema


def test_schema_is_created_once_and_reopening_is_idempotent(tmp_path: Path, box: SecretBox) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with ConnectionStore(url, secret_box=box) as store:
        record = connect(store)
        assert store.schema_version() == SCHEMA_VERSION
    with ConnectionStore(url, secret_box=box) as store, ConnectionStore(url, secret_box=box) as again:
        assert store.get_by_id(record.id) == record
        assert again.schema_version() == SCHEMA_VERSION
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT version, description FROM connectors_schema_version")).all()
        assert [tuple(r) for r in rows] == [(m.version, m.description) for m in MIGRATIONS]


@pytest.mark.postgres
def test_postgres_schema_reopen(postgres_url: str, box: SecretBox) -> None:
    with (
        ConnectionStore(postgres_url, secret_box=box) as first,
        ConnectionStore(postgres_url, secret_box=box),
    ):
        assert first.schema_version() == SCHEMA_VERSION
        with first.engine.connect() as conn:
            count = conn.execute(text("SELECT COUNT(*) FROM connectors_schema_version")).scalar_one()
        assert count == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path, box: SecretBox) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with ConnectionStore(url, secret_box=box) as store, store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO connectors_schema_version (version, description, applied_at) "
                "VALUES (999, 'from the future', '2030-01-01 00:00:00')"
            )
        )
    with pytest.raises(ConfigurationError, match="schema version 999"):
        ConnectionStore(url, secret_box=box)


def test_pending_migration_steps_run_in_order(tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.runtime import store as store_module

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ConnectionStore(url, secret_box=box).close()
    ran: list[int] = []

    def step(version: int) -> store_module.Migration:
        def apply(conn: Any) -> None:
            ran.append(version)
            conn.execute(text(f"CREATE TABLE connectors_test_step_{version} (x INTEGER)"))

        return store_module.Migration(version, f"step {version}", apply)

    first, second = SCHEMA_VERSION + 1, SCHEMA_VERSION + 2
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, step(first), step(second)))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", second)
    with ConnectionStore(url, secret_box=box) as store:
        assert store.schema_version() == second
    ConnectionStore(url, secret_box=box).close()
    assert ran == [first, second]


def test_unsupported_database(box: SecretBox) -> None:
    with pytest.raises(ConfigurationError, match="unsupported"):
        ConnectionStore("mysql://user@localhost/db", secret_box=box)


# ------------------------------------------------------------------------------------------ from_env


def test_from_env_embedded_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    env = {"CONNECTORS_HOME": str(home)}
    with (
        caplog.at_level(logging.WARNING, logger="connectors.runtime.secrets"),
        ConnectionStore.from_env(env, embedded_default=True) as store,
    ):
        record = connect(store)
        assert store.dialect == "sqlite"
        assert repr(store) == f"ConnectionStore('sqlite:///{home / 'connectors.db'}')"
    assert (home / "connectors.db").exists()
    assert (home / "secret.key").exists()
    assert "secret.key" in caplog.text
    caplog.clear()
    with ConnectionStore.from_env(env, embedded_default=True) as store:
        assert store.get_by_id(record.id) == record
    assert not caplog.records
    # the working-directory default
    monkeypatch.chdir(tmp_path)
    with ConnectionStore.from_env({}, embedded_default=True):
        pass
    assert (tmp_path / ".connectors" / "connectors.db").exists()
    assert (tmp_path / ".connectors" / "secret.key").exists()


def test_from_env_without_embedded_default_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CONNECTORS_SECRET_KEY"):
        ConnectionStore.from_env({"CONNECTORS_HOME": str(tmp_path)}, embedded_default=False)
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = {"CONNECTORS_HOME": str(tmp_path), "CONNECTORS_SECRET_KEY": key}
    with ConnectionStore.from_env(env, embedded_default=False) as store:
        connect(store)
    assert not (tmp_path / "secret.key").exists()


def test_from_env_sqlite_url_puts_the_key_next_to_the_db(tmp_path: Path) -> None:
    db = tmp_path / "data" / "store.db"
    with ConnectionStore.from_env({"CONNECTORS_DATABASE_URL": f"sqlite:///{db}"}, embedded_default=True):
        pass
    assert (tmp_path / "data" / "secret.key").exists()


def test_from_env_postgres_never_generates_a_key(tmp_path: Path) -> None:
    env = {
        "CONNECTORS_HOME": str(tmp_path),
        "CONNECTORS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
    }
    with pytest.raises(ConfigurationError, match="CONNECTORS_SECRET_KEY"):
        ConnectionStore.from_env(env, embedded_default=True)
    assert not (tmp_path / "secret.key").exists()


@pytest.mark.postgres
def test_from_env_postgres(postgres_url: str, tmp_path: Path) -> None:
    old = secrets.token_bytes(32)
    env = {
        "CONNECTORS_HOME": str(tmp_path),
        "CONNECTORS_DATABASE_URL": postgres_url.replace("postgresql+psycopg://", "postgres://"),
        "CONNECTORS_SECRET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "CONNECTORS_OLD_SECRET_KEYS": base64.urlsafe_b64encode(old).decode(),
    }
    with ConnectionStore.from_env(env, embedded_default=True) as store:
        assert store.dialect == "postgresql"
        assert "old_keys=1" in repr(store.secret_box)
        record = connect(store, owner="from-env")
        assert store.delete(record.id)
