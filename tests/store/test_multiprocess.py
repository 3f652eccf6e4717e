"""Cross-process guarantees, with real ``spawn`` processes on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import importlib
import multiprocessing
import queue
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from connectors.runtime.secrets import SecretBox, Secrets
from connectors.runtime.store import ConnectionStore

PROCESSES = 4
ROUNDS = 5


@pytest.fixture(scope="module")
def workers() -> Iterator[ModuleType]:
    """The worker module, importable by name in spawned children (they inherit ``sys.path``)."""
    here = str(Path(__file__).parent)
    sys.path.insert(0, here)
    try:
        yield importlib.import_module("store_mp_workers")
    finally:
        sys.path.remove(here)


def run_processes(target: Any, args: tuple[Any, ...]) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    outcomes: list[Any] = []
    try:
        for _ in procs:
            status, value = results.get(timeout=120)
            assert status == "ok", f"worker failed: {value}"
            outcomes.append(value)
    except queue.Empty:  # pragma: no cover
        pytest.fail("a worker process did not report")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():  # pragma: no cover
                proc.kill()
        results.close()
    assert all(proc.exitcode == 0 for proc in procs)
    return outcomes


def test_seen_once_across_processes(shared_url: str, workers: ModuleType) -> None:
    key = secrets.token_bytes(32)
    ConnectionStore(shared_url, secret_box=SecretBox(key)).close()  # schema exists before the race
    outcomes = run_processes(workers.seen_once_worker, (shared_url, key))
    assert sorted(outcomes) == [False] * (PROCESSES - 1) + [True]


def test_refresh_lock_across_processes(shared_url: str, workers: ModuleType) -> None:
    key = secrets.token_bytes(32)
    with ConnectionStore(shared_url, secret_box=SecretBox(key)) as store:
        record = store.upsert_connection(
            connector_id="kustomer",
            owner_id="tenant-mp",
            auth_type="oauth2",
            status="active",
            region="us",
            org=None,
            base_url=None,
            operations=(),
            granted_roles=None,
            settings={},
            metadata={},
            secrets=Secrets(access_token="at-0", refresh_token="rt-0", extra={"counter": "0"}),
            access_expires_at=None,
        )
    outcomes = run_processes(workers.refresh_worker, (shared_url, key, record.id, ROUNDS))
    assert outcomes == [ROUNDS] * PROCESSES
    with ConnectionStore(shared_url, secret_box=SecretBox(key)) as store:
        final = store.get_by_id(record.id)
    assert final is not None
    assert final.token_version == record.token_version + PROCESSES * ROUNDS  # no CAS failure, no lost write
    assert final.secrets.extra == {"counter": str(PROCESSES * ROUNDS)}  # read-modify-write never interleaved
    assert final.secrets.refresh_token == "rt-0"
