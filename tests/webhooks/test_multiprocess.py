"""Two worker processes subscribing at once end with ONE Kustomer webhook (SQLite file and PostgreSQL)."""

from __future__ import annotations

import asyncio
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
from sqlalchemy import text

from connectors import Connectors, Settings
from connectors.kustomer.sandbox import running_sandbox
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore, _table_names

from .conftest import RECEIVE_URL, sandbox_settings

PROCESSES = 2


@pytest.fixture(scope="module")
def workers() -> Iterator[ModuleType]:
    here = str(Path(__file__).parent)
    sys.path.insert(0, here)
    try:
        yield importlib.import_module("webhooks_mp_workers")
    finally:
        sys.path.remove(here)


@pytest.fixture(
    params=[pytest.param("file", id="sqlite-file"), pytest.param("pg", id="postgres", marks=pytest.mark.postgres)]
)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url = str(request.getfixturevalue("postgres_url"))
    with ConnectionStore(url, secret_box=SecretBox(secrets.token_bytes(32))) as store, store.engine.begin() as c:
        for table in _table_names():
            if table != "connectors_schema_version":
                c.execute(text(f"DELETE FROM {table}"))
    return url


@pytest.mark.slow
def test_concurrent_subscribers_share_one_webhook(shared_url: str, workers: ModuleType) -> None:
    key = secrets.token_bytes(32)
    plans = {
        "owner-0": ["genericContact::created", "crmEngagement::created"],
        "owner-1": ["genericUser::created", "genericContact::created", "genericWorkspace::updated"],
    }
    with running_sandbox(sandbox_settings()) as (sb, base_url):

        async def setup() -> None:
            store = ConnectionStore(shared_url, secret_box=SecretBox(key))
            hub = Connectors(settings=Settings(), store=store)
            for owner in plans:
                await hub.connect("kustomer", owner, api_key=sb.mint_api_key(name=owner), base_url=base_url)
            await hub.aclose()
            store.close()

        asyncio.run(setup())
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(PROCESSES)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=workers.subscribe_worker, args=(shared_url, key, owner, events, RECEIVE_URL, barrier, results)
            )
            for owner, events in plans.items()
        ]
        for proc in procs:
            proc.start()
        outcomes: dict[str, Any] = {}
        try:
            for _ in procs:
                status, owner, value = results.get(timeout=120)
                assert status == "ok", f"{owner} failed: {value}"
                outcomes[owner] = value
        except queue.Empty:  # pragma: no cover
            pytest.fail("a worker process did not report")
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():  # pragma: no cover
                    proc.kill()
            results.close()
        hooks = list(sb.state.outbound_webhooks)
        assert len(hooks) == 1
        assert sorted(hooks[0].attrs["events"]) == [
            "kustomer.conversation.create",
            "kustomer.customer.create",
            "kustomer.team.update",
            "kustomer.user.create",
        ]
        native_ids = {i for ids in outcomes.values() for i in ids if i is not None}
        assert native_ids == {hooks[0].id}
