"""The store's webhook state on SQLite and PostgreSQL: leases, atomic commits, outbox, subscribers, migration."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from connectors.errors import StoreConflictError
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import (
    SCHEMA_VERSION,
    ConnectionStore,
    EventCandidate,
    OutboxRow,
    RemoteWebhookRef,
    VersionCheck,
    WatermarkSwap,
    WebhookSubscriptionRecord,
    _table_names,
)

from .conftest import table_dump

BACKENDS = [
    pytest.param("memory", id="sqlite-memory"),
    pytest.param("file", id="sqlite-file"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _wipe(store: ConnectionStore) -> None:
    with store.engine.begin() as conn:
        for table in _table_names():
            if table != "connectors_schema_version":
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=BACKENDS)
def wstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConnectionStore]:
    kind = request.param
    if kind == "memory":
        url = "sqlite:///:memory:"
    elif kind == "file":
        url = f"sqlite:///{tmp_path / 'w.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with ConnectionStore(url, secret_box=SecretBox(secrets.token_bytes(32))) as store:
        _wipe(store)
        yield store
        _wipe(store)


def row(target: str = "local", *, payload: dict[str, Any] | None = None, at: float = 100.0) -> OutboxRow:
    return OutboxRow(
        id=secrets.token_hex(16), target=target, owner_id="o", payload=payload or {"n": 1}, available_at=at
    )


def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    box = SecretBox(secrets.token_bytes(32))
    with ConnectionStore(url, secret_box=box) as store, store.engine.begin() as conn:
        for table in (
            "connectors_webhook_endpoints",
            "connectors_webhook_subscriptions",
            "connectors_webhook_subscribers",
            "connectors_object_versions",
            "connectors_poll_known",
            "connectors_event_outbox",
            "connectors_leases",
        ):
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("DELETE FROM connectors_schema_version WHERE version > 1"))
    with ConnectionStore(url, secret_box=box) as store:
        assert store.schema_version() == SCHEMA_VERSION == 2
        assert store.acquire_lease("l", "me", ttl=1, now=0)
        assert store.list_outbox() == []


def test_leases(wstore: ConnectionStore) -> None:
    assert wstore.acquire_lease("poll:c1", "a", ttl=10, now=100)
    assert not wstore.acquire_lease("poll:c1", "b", ttl=10, now=105)
    assert wstore.acquire_lease("poll:c1", "a", ttl=10, now=105)  # renew
    assert not wstore.acquire_lease("poll:c1", "b", ttl=10, now=114.9)
    assert wstore.acquire_lease("poll:c1", "b", ttl=10, now=115)  # expired: taken over
    assert not wstore.release_lease("poll:c1", "a")
    assert wstore.release_lease("poll:c1", "b")
    assert wstore.acquire_lease("poll:c1", "a", ttl=10, now=116)
    with pytest.raises(ValueError):
        wstore.acquire_lease("x", "a", ttl=0, now=0)


def test_dedupe_is_atomic_with_the_events(wstore: ConnectionStore) -> None:
    first = wstore.commit_events([EventCandidate(rows=(row(),))], now=100, dedupe=("kustomer:org", "e1"))
    assert first.written and first.accepted == (True,)
    again = wstore.commit_events([EventCandidate(rows=(row(),))], now=101, dedupe=("kustomer:org", "e1"))
    assert again.duplicate and not again.written and again.accepted == (False,)
    assert len(wstore.list_outbox()) == 1
    other_scope = wstore.commit_events([], now=101, dedupe=("kustomer:other", "e1"))
    assert not other_scope.duplicate
    late = wstore.commit_events([], now=100 + 3 * 86400 + 1, dedupe=("kustomer:org", "e1"))
    assert not late.duplicate  # past the retention a key counts as new again


def test_watermark_swap_is_atomic_with_the_events(wstore: ConnectionStore) -> None:
    swap = WatermarkSwap("poll:c:company", None, {"ts": "a"})
    assert wstore.commit_events([EventCandidate(rows=(row(),))], now=1, watermark=swap).written
    lost = wstore.commit_events(
        [EventCandidate(rows=(row(),))], now=2, watermark=WatermarkSwap("poll:c:company", None, {"ts": "b"})
    )
    assert not lost.swapped and lost.accepted == (False,)
    stale_cas = wstore.commit_events(
        [EventCandidate(rows=(row(),))],
        now=2,
        watermark=WatermarkSwap("poll:c:company", {"ts": "zzz"}, {"ts": "b"}),
        known_upsert={"poll:c:company": {"x": "1"}},
    )
    assert not stale_cas.swapped
    assert wstore.get_watermark("poll:c:company") == {"ts": "a"}
    assert wstore.poll_known("poll:c:company") == {}
    assert len(wstore.list_outbox()) == 1
    won = wstore.commit_events(
        [],
        now=3,
        watermark=WatermarkSwap("poll:c:company", {"ts": "a"}, {"ts": "b"}),
        known_upsert={"poll:c:company": {"x": "1", "y": None}},
    )
    assert won.written and wstore.poll_known("poll:c:company") == {"x": "1", "y": None}
    wstore.commit_events([], now=4, known_remove={"poll:c:company": ["x"]})
    assert wstore.poll_known("poll:c:company") == {"y": None}
    wstore.clear_poll_state("poll:c:company")
    assert wstore.get_watermark("poll:c:company") is None and wstore.poll_known("poll:c:company") == {}
    wstore.set_watermark("w", {"a": 1})
    assert wstore.delete_watermark("w") and not wstore.delete_watermark("w")


def test_versions_drop_stale_updates(wstore: ConnectionStore) -> None:
    def commit(version: str, *, update: bool) -> bool:
        check = VersionCheck("kustomer:o", "genericContact:1", version, drop_if_older=update)
        return wstore.commit_events([EventCandidate(rows=(row(),), version=check)], now=10).accepted[0]

    assert commit("0002", update=True)
    assert not commit("0001", update=True)  # older update: stale
    assert commit("0002", update=True)  # the same version is not older
    assert commit("0001", update=False)  # a late creation is kept...
    assert wstore.object_version("kustomer:o", "genericContact:1") == "0002"  # ...without going back
    assert commit("~", update=False)  # a deletion is a tombstone
    assert not commit("0009", update=True)
    assert wstore.object_version("kustomer:o", "genericContact:1") == "~"
    assert len(wstore.list_outbox()) == 4


def test_outbox_claims_leases_retries_and_dead_letters(wstore: ConnectionStore) -> None:
    local = row("local", at=100)
    forward = row("sub-1", at=100)
    later = row("sub-1", at=500)
    wstore.commit_events([EventCandidate(rows=(local, forward, later))], now=100, lease_seconds=30)
    assert wstore.claim_outbox(now=100, lease_seconds=10, local=True) == []  # the committer holds it
    claimed = wstore.claim_outbox(now=100, lease_seconds=10)
    assert [r.id for r in claimed] == [forward.id]
    assert wstore.claim_outbox(now=105, lease_seconds=10) == []  # leased
    assert [r.id for r in wstore.claim_outbox(now=100, lease_seconds=10, ids=[local.id])] == [local.id]
    wstore.retry_outbox(forward.id, available_at=200, error="subscriber answered 503")
    assert wstore.claim_outbox(now=150, lease_seconds=10, local=False) == []
    (again,) = wstore.claim_outbox(now=200, lease_seconds=10, local=False)
    assert again.id == forward.id and again.attempts == 1 and again.last_error == "subscriber answered 503"
    wstore.retry_outbox(forward.id, available_at=0, error="x" * 900, dead=True)
    assert wstore.outbox_counts() == {"pending_local": 1, "pending_forward": 1, "dead": 1}
    (dead,) = wstore.list_outbox(status="dead")
    assert dead.attempts == 2 and len(dead.last_error or "") == 500
    assert [r.id for r in wstore.claim_outbox(now=10_000, lease_seconds=10, local=False)] == [later.id]
    assert wstore.finish_outbox([local.id, later.id]) == 2 and wstore.finish_outbox([]) == 0


def test_concurrent_claimers_never_share_a_row(wstore: ConnectionStore) -> None:
    rows = [row("sub", at=1) for _ in range(40)]
    wstore.commit_events([EventCandidate(rows=tuple(rows))], now=1)
    taken: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        while batch := wstore.claim_outbox(now=2, lease_seconds=60, limit=3):
            with lock:
                taken.extend(r.id for r in batch)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(r.id for r in rows)


def test_concurrent_duplicate_deliveries_commit_once(wstore: ConnectionStore) -> None:
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def deliver() -> None:
        barrier.wait()
        result = wstore.commit_events([EventCandidate(rows=(row(),))], now=5, dedupe=("k:org", "same"))
        with lock:
            results.append(result.written)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(wstore.list_outbox()) == 1


def test_endpoints_with_compare_and_swap(wstore: ConnectionStore) -> None:
    ep = wstore.save_webhook_endpoint(
        id="e" * 32,
        connector_id="kustomer",
        org_key="org1",
        url="https://a.example.com/h",
        remotes=[RemoteWebhookRef("w1", ("kustomer.customer.create",))],
        expected_version=None,
    )
    assert ep.version == 1 and ep.events == {"kustomer.customer.create"}
    with pytest.raises(StoreConflictError):
        wstore.save_webhook_endpoint(
            id=ep.id, connector_id="kustomer", org_key="org1", url=ep.url, remotes=[], expected_version=None
        )
    updated = wstore.save_webhook_endpoint(
        id=ep.id,
        connector_id="kustomer",
        org_key="org1",
        url=ep.url,
        remotes=[RemoteWebhookRef("w1", ("a", "b")), RemoteWebhookRef("w2", ("c",))],
        expected_version=1,
    )
    assert updated.version == 2 and updated.created_at == ep.created_at
    with pytest.raises(StoreConflictError):
        wstore.save_webhook_endpoint(
            id=ep.id, connector_id="kustomer", org_key="org1", url=ep.url, remotes=[], expected_version=1
        )
    assert wstore.get_webhook_endpoint(ep.id) == updated
    assert wstore.list_webhook_endpoints(connector_id="kustomer", org_key="org1") == [updated]
    assert wstore.list_webhook_endpoints(org_key="other") == []
    assert wstore.delete_webhook_endpoint(ep.id) and not wstore.delete_webhook_endpoint(ep.id)


def test_subscriptions(wstore: ConnectionStore) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 2, 1, tzinfo=UTC)

    def sub(event: str, *, native: bool, at: datetime, conn: str = "c1") -> WebhookSubscriptionRecord:
        return WebhookSubscriptionRecord(
            connection_id=conn,
            event=event,
            connector_id="kustomer",
            owner_id="o1",
            org_key="org1",
            native=native,
            endpoint_id="e1" if native else None,
            created_at=at,
        )

    first = wstore.put_webhook_subscriptions([sub("genericContact::created", native=True, at=t0)])
    assert first[0].created_at == t0
    moved = wstore.put_webhook_subscriptions([sub("genericContact::created", native=False, at=t1)])
    assert moved[0].created_at == t0 and not moved[0].native and moved[0].endpoint_id is None
    wstore.put_webhook_subscriptions(
        [
            sub("genericCompany::created", native=False, at=t1),
            sub("genericContact::created", native=True, at=t1, conn="c2"),
        ]
    )
    assert len(wstore.list_webhook_subscriptions()) == 3
    assert [s.connection_id for s in wstore.list_webhook_subscriptions(endpoint_id="e1")] == ["c2"]
    assert len(wstore.list_webhook_subscriptions(org_key="org1", events=["genericContact::created"])) == 2
    assert len(wstore.list_webhook_subscriptions(native=False)) == 2
    assert wstore.delete_webhook_subscriptions("c1", ["genericCompany::created"]) == 1
    assert wstore.delete_webhook_subscriptions("c1") == 1
    assert [s.connection_id for s in wstore.list_webhook_subscriptions()] == ["c2"]


def test_subscribers_keep_their_secret_encrypted(wstore: ConnectionStore) -> None:
    secret = secrets.token_hex(32)
    record = wstore.add_webhook_subscriber(owner_id="o1", url="https://h.example.com", events=["*"], secret=secret)
    assert wstore.get_webhook_subscriber_secret(record.id) == secret
    assert secret not in table_dump(wstore)
    assert wstore.list_webhook_subscribers(owner_id="o1") == [record]
    assert wstore.list_webhook_subscribers(owner_id="o2") == []
    assert wstore.get_webhook_subscriber(record.id) == record
    wstore.commit_events([EventCandidate(rows=(row(record.id),))], now=1)
    assert not wstore.delete_webhook_subscriber(owner_id="o2", id=record.id)
    assert wstore.delete_webhook_subscriber(owner_id="o1", id=record.id)
    assert wstore.get_webhook_subscriber(record.id) is None
    assert wstore.get_webhook_subscriber_secret(record.id) is None
    assert wstore.list_outbox() == []
